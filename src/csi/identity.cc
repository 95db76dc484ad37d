#include "csi/identity.h"

#include "common/version.h"
#include "csi/parameters.h"

namespace castor::csi {

namespace v1 = ::csi::v1;

grpc::Status IdentityService::GetPluginInfo(grpc::ServerContext*, const v1::GetPluginInfoRequest*,
                                            v1::GetPluginInfoResponse* resp) {
  resp->set_name(kDriverName);
  resp->set_vendor_version(kVersion);
  return grpc::Status::OK;
}

grpc::Status IdentityService::GetPluginCapabilities(grpc::ServerContext*,
                                                    const v1::GetPluginCapabilitiesRequest*,
                                                    v1::GetPluginCapabilitiesResponse* resp) {
  using Svc = v1::PluginCapability::Service;
  if (controller_) {
    resp->add_capabilities()->mutable_service()->set_type(Svc::CONTROLLER_SERVICE);
  }
  resp->add_capabilities()->mutable_service()->set_type(Svc::VOLUME_ACCESSIBILITY_CONSTRAINTS);
  resp->add_capabilities()->mutable_volume_expansion()->set_type(
      v1::PluginCapability::VolumeExpansion::ONLINE);
  return grpc::Status::OK;
}

grpc::Status IdentityService::Probe(grpc::ServerContext*, const v1::ProbeRequest*, v1::ProbeResponse* resp) {
  grpc::Status s = ready_ ? ready_() : grpc::Status::OK;
  if (!s.ok()) return s;
  resp->mutable_ready()->set_value(true);
  return grpc::Status::OK;
}

}  // namespace castor::csi
