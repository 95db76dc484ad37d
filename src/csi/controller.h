#pragma once
// The CSI Controller service: a client of castor-control's API. Volumes are castor-control
// volumes (the CSI volume_id is the volume's UUID; the CSI name is its name, see
// control_volume_name); ControllerPublishVolume publishes the volume's nexus for a node
// and hands the target's URI to the node plugin in publish_context. castor-csi keeps no
// state of its own: everything lives in castor-control's store.
//
// Calls on one volume are serialised (a second is ABORTED while the first runs); calls on
// different volumes run in parallel on gRPC's threads. Every castor-control call has a
// deadline (--control-timeout); castor-control's errors map to CSI's codes per call.

#include <chrono>
#include <memory>

#include "control/client/control_endpoints.h"
#include "csi/operation_locks.h"
#include "csi/v1/csi.grpc.pb.h"

namespace castor::csi {

class ControllerService final : public ::csi::v1::Controller::Service {
 public:
  ControllerService(std::shared_ptr<control::ControlEndpoints> control, std::chrono::milliseconds timeout)
      : control_(std::move(control)), timeout_(timeout) {}

  // OK when castor-control answers (Probe).
  grpc::Status check_control();

  grpc::Status CreateVolume(grpc::ServerContext*, const ::csi::v1::CreateVolumeRequest*,
                            ::csi::v1::CreateVolumeResponse*) override;
  grpc::Status DeleteVolume(grpc::ServerContext*, const ::csi::v1::DeleteVolumeRequest*,
                            ::csi::v1::DeleteVolumeResponse*) override;
  grpc::Status ControllerPublishVolume(grpc::ServerContext*, const ::csi::v1::ControllerPublishVolumeRequest*,
                                       ::csi::v1::ControllerPublishVolumeResponse*) override;
  grpc::Status ControllerUnpublishVolume(grpc::ServerContext*,
                                         const ::csi::v1::ControllerUnpublishVolumeRequest*,
                                         ::csi::v1::ControllerUnpublishVolumeResponse*) override;
  grpc::Status ValidateVolumeCapabilities(grpc::ServerContext*,
                                          const ::csi::v1::ValidateVolumeCapabilitiesRequest*,
                                          ::csi::v1::ValidateVolumeCapabilitiesResponse*) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const ::csi::v1::ListVolumesRequest*,
                           ::csi::v1::ListVolumesResponse*) override;
  grpc::Status GetCapacity(grpc::ServerContext*, const ::csi::v1::GetCapacityRequest*,
                           ::csi::v1::GetCapacityResponse*) override;
  grpc::Status ControllerGetCapabilities(grpc::ServerContext*, const ::csi::v1::ControllerGetCapabilitiesRequest*,
                                         ::csi::v1::ControllerGetCapabilitiesResponse*) override;
  grpc::Status ControllerExpandVolume(grpc::ServerContext*, const ::csi::v1::ControllerExpandVolumeRequest*,
                                      ::csi::v1::ControllerExpandVolumeResponse*) override;
  grpc::Status ControllerGetVolume(grpc::ServerContext*, const ::csi::v1::ControllerGetVolumeRequest*,
                                   ::csi::v1::ControllerGetVolumeResponse*) override;

 private:
  template <class Req, class Resp, class Fn>
  grpc::Status call(const Req& req, Resp* resp, Fn fn);
  // The volume whose UUID is `id` (a name that happens to equal `id` does not count).
  grpc::Status get_volume(const std::string& id, castor::control::v1::Volume* out);

  std::shared_ptr<control::ControlEndpoints> control_;
  std::chrono::milliseconds timeout_;
  OperationLocks locks_;
};

}  // namespace castor::csi

namespace castor::csi {

// The Controller service of a node-only plugin (--mode node): answers
// ControllerGetCapabilities with none, as tools that probe every endpoint expect; every
// other call is UNIMPLEMENTED.
class NoController final : public ::csi::v1::Controller::Service {
 public:
  grpc::Status ControllerGetCapabilities(grpc::ServerContext*, const ::csi::v1::ControllerGetCapabilitiesRequest*,
                                         ::csi::v1::ControllerGetCapabilitiesResponse*) override {
    return grpc::Status::OK;
  }
};

}  // namespace castor::csi
