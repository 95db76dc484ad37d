#pragma once
// The CSI Identity service: the driver's name and version, its capabilities, and
// readiness. Every mode serves it.

#include <functional>

#include "csi/v1/csi.grpc.pb.h"

namespace castor::csi {

class IdentityService final : public ::csi::v1::Identity::Service {
 public:
  // `controller`: advertise the controller service (modes controller and all).
  // `ready`: the Probe's answer; OK means ready, an error (FAILED_PRECONDITION, with
  // why) means a dependency is missing (castor-control not answering).
  IdentityService(bool controller, std::function<grpc::Status()> ready)
      : controller_(controller), ready_(std::move(ready)) {}

  grpc::Status GetPluginInfo(grpc::ServerContext*, const ::csi::v1::GetPluginInfoRequest*,
                             ::csi::v1::GetPluginInfoResponse*) override;
  grpc::Status GetPluginCapabilities(grpc::ServerContext*, const ::csi::v1::GetPluginCapabilitiesRequest*,
                                     ::csi::v1::GetPluginCapabilitiesResponse*) override;
  grpc::Status Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*, ::csi::v1::ProbeResponse*) override;

 private:
  bool controller_;
  std::function<grpc::Status()> ready_;
};

}  // namespace castor::csi
