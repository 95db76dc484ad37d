// EngineService handlers for the front-end targets: NVMe-oF/TCP listeners, shares,
// subsystems and controllers; NBD listeners and exports. The rules (NQN names, URIs,
// which bdevs may be shared or exported) live in FrontEnds.

#include <spdlog/spdlog.h>

#include "api/engine_service.h"
#include "api/status_map.h"

namespace castor::api {
namespace {

std::vector<std::string> to_vector(const google::protobuf::RepeatedPtrField<std::string>& v) {
  return {v.begin(), v.end()};
}

}  // namespace

void to_proto(const ShareResult& in, v1::ShareInfo* out) {
  out->set_nqn(in.nqn);
  out->set_bdev(in.bdev);
  for (const auto& u : in.uris) out->add_uris(u);
  for (const auto& h : in.allowed_hosts) out->add_allowed_hosts(h);
}

void to_proto(const nvmf::SubsystemInfo& in, const std::vector<std::string>& uris,
              v1::NvmfSubsystem* out) {
  out->set_nqn(in.nqn);
  out->set_serial(in.serial);
  for (const auto& h : in.allowed_hosts) out->add_allowed_hosts(h);
  for (const auto& [nsid, bdev] : in.namespaces) {
    auto* ns = out->add_namespaces();
    ns->set_nsid(nsid);
    ns->set_bdev(bdev);
  }
  out->set_controllers(in.controllers);
  for (const auto& u : uris) out->add_uris(u);
}

void to_proto(const nvmf::ControllerInfo& in, v1::NvmfController* out) {
  out->set_cntlid(in.cntlid);
  out->set_subnqn(in.subnqn);
  out->set_hostnqn(in.hostnqn);
  out->set_io_queues(in.io_queues);
  out->set_kato_ms(in.kato_ms);
}

void to_proto(const nbd::ExportInfo& in, const std::vector<std::string>& uris,
              v1::NbdExportInfo* out) {
  out->set_name(in.name);
  out->set_bdev(in.bdev);
  out->set_read_only(in.read_only);
  out->set_description(in.description);
  out->set_connections(in.connections);
  for (const auto& u : uris) out->add_uris(u);
}

// ---- NVMe-oF ----

grpc::Status EngineServiceImpl::NvmfListen(grpc::ServerContext*, const v1::NvmfListenRequest* req,
                                           v1::NvmfListenResponse* resp) {
  auto port = front_ends_.nvmf_listen(req->address());
  if (!port) {
    spdlog::info("NVMe-oF listen on '{}' failed: {}", req->address(), port.status().to_string());
    return to_grpc(port.status());
  }
  resp->set_port(*port);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ShareBdev(grpc::ServerContext*, const v1::ShareBdevRequest* req,
                                          v1::ShareInfo* resp) {
  auto r = front_ends_.share_bdev(req->bdev(), to_vector(req->allowed_hosts()));
  if (!r) {
    spdlog::info("share bdev '{}' failed: {}", req->bdev(), r.status().to_string());
    return to_grpc(r.status());
  }
  to_proto(*r, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::UnshareBdev(grpc::ServerContext*, const v1::UnshareBdevRequest* req,
                                            v1::UnshareBdevResponse*) {
  Status s = front_ends_.unshare(req->bdev());
  if (!s) spdlog::info("unshare '{}' failed: {}", req->bdev(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListSubsystems(grpc::ServerContext*,
                                               const v1::ListSubsystemsRequest*,
                                               v1::ListSubsystemsResponse* resp) {
  for (const auto& [info, uris] : front_ends_.subsystems()) {
    to_proto(info, uris, resp->add_subsystems());
  }
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListControllers(grpc::ServerContext*,
                                                const v1::ListControllersRequest*,
                                                v1::ListControllersResponse* resp) {
  for (const auto& c : front_ends_.controllers()) to_proto(c, resp->add_controllers());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ShareReplica(grpc::ServerContext*,
                                             const v1::ShareReplicaRequest* req,
                                             v1::ShareInfo* resp) {
  auto r = front_ends_.share_replica(req->name(), to_vector(req->allowed_hosts()));
  if (!r) {
    spdlog::info("share replica '{}' failed: {}", req->name(), r.status().to_string());
    return to_grpc(r.status());
  }
  to_proto(*r, resp);
  // The local path last: a nexus on this node opens the bdev directly.
  resp->add_uris("bdev:///" + r->bdev);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::UnshareReplica(grpc::ServerContext*,
                                               const v1::UnshareReplicaRequest* req,
                                               v1::UnshareBdevResponse*) {
  Status s = front_ends_.unshare_replica(req->name());
  if (!s) spdlog::info("unshare replica '{}' failed: {}", req->name(), s.to_string());
  return to_grpc(s);
}

// ---- NBD ----

grpc::Status EngineServiceImpl::NbdListen(grpc::ServerContext*, const v1::NbdListenRequest* req,
                                          v1::NbdListenResponse* resp) {
  auto port = front_ends_.nbd_listen(req->address());
  if (!port) {
    spdlog::info("NBD listen on '{}' failed: {}", req->address(), port.status().to_string());
    return to_grpc(port.status());
  }
  resp->set_port(*port);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::NbdExport(grpc::ServerContext*, const v1::NbdExportRequest* req,
                                          v1::NbdExportInfo* resp) {
  nbd::ExportInfo e;
  e.name = req->name();
  e.bdev = req->bdev();
  e.read_only = req->read_only();
  e.description = req->description();
  Status s = front_ends_.nbd_export(e);
  if (!s) {
    spdlog::info("NBD export '{}' of bdev '{}' failed: {}", req->name(), req->bdev(),
                 s.to_string());
    return to_grpc(s);
  }
  to_proto(e, front_ends_.nbd_uris(e.name), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::NbdUnexport(grpc::ServerContext*, const v1::NbdUnexportRequest* req,
                                            v1::NbdUnexportResponse*) {
  Status s = front_ends_.nbd_unexport(req->name());
  if (!s) spdlog::info("NBD unexport '{}' failed: {}", req->name(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListNbdExports(grpc::ServerContext*,
                                               const v1::ListNbdExportsRequest*,
                                               v1::ListNbdExportsResponse* resp) {
  for (const auto& e : front_ends_.nbd_exports()) {
    to_proto(e, front_ends_.nbd_uris(e.name), resp->add_exports());
  }
  return grpc::Status::OK;
}

}  // namespace castor::api
