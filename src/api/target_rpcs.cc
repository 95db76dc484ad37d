// EngineService handlers for the front-end targets: NVMe-oF/TCP listeners, shares,
// subsystems and controllers; NBD listeners and exports; iSCSI portals, target nodes and
// sessions. The rules (NQN and IQN names, URIs, which bdevs may be shared or exported)
// live in FrontEnds.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>

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
  out->set_ana_state(nvmf::ana_state_name(in.ana_state));
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

void to_proto(const iscsi::NodeInfo& in, const std::vector<std::string>& uris,
              v1::IscsiTargetInfo* out) {
  out->set_iqn(in.name);
  for (const auto& l : in.luns) {
    if (l.lun != 0) continue;
    out->set_bdev(l.bdev);
    out->set_read_only(l.read_only);
  }
  out->set_chap(in.chap);
  out->set_mutual_chap(in.mutual_chap);
  for (const auto& i : in.allowed_initiators) out->add_allowed_initiators(i);
  out->set_sessions(in.sessions);
  for (const auto& u : uris) out->add_uris(u);
}

void to_proto(const iscsi::SessionInfo& in, v1::IscsiSession* out) {
  out->set_target(in.target);
  out->set_initiator(in.initiator);
  out->set_isid(in.isid);
  out->set_tsih(in.tsih);
  out->set_cid(in.cid);
  out->set_peer(in.peer);
  out->set_header_digest(in.header_digest);
  out->set_data_digest(in.data_digest);
}

Result<iscsi::NodeAccess> iscsi_access(
    const std::string& chap_user, const std::string& chap_secret, const std::string& mutual_user,
    const std::string& mutual_secret,
    const google::protobuf::RepeatedPtrField<std::string>& allowed_initiators) {
  // A secret without its user would silently disable the authentication it asks for.
  if (chap_user.empty() && !chap_secret.empty()) {
    return Status(Errc::kInvalidArgument, "chap_secret needs chap_user");
  }
  if (mutual_user.empty() && !mutual_secret.empty()) {
    return Status(Errc::kInvalidArgument, "mutual_secret needs mutual_user");
  }
  iscsi::NodeAccess a;
  a.chap = {chap_user, chap_secret};
  a.mutual_chap = {mutual_user, mutual_secret};
  a.allowed_initiators = to_vector(allowed_initiators);
  return a;
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
  Status s = front_ends_.unshare(req->bdev(), req->force());
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
  Status s = front_ends_.unshare_replica(req->name(), req->force());
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

// ---- iSCSI ----

grpc::Status EngineServiceImpl::IscsiListen(grpc::ServerContext*, const v1::IscsiListenRequest* req,
                                            v1::IscsiListenResponse* resp) {
  auto port = front_ends_.iscsi_listen(req->address());
  if (!port) {
    spdlog::info("iSCSI listen on '{}' failed: {}", req->address(), port.status().to_string());
    return to_grpc(port.status());
  }
  resp->set_port(*port);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::IscsiExport(grpc::ServerContext*, const v1::IscsiExportRequest* req,
                                            v1::IscsiTargetInfo* resp) {
  auto fail = [&](const Status& s) {
    spdlog::info("iSCSI export of bdev '{}' failed: {}", req->bdev(), s.to_string());
    return to_grpc(s);
  };
  auto access = iscsi_access(req->chap_user(), req->chap_secret(), req->mutual_user(),
                             req->mutual_secret(), req->allowed_initiators());
  if (!access) return fail(access.status());
  auto iqn = front_ends_.iscsi_export(IscsiExportSpec{
      .bdev = req->bdev(), .iqn = req->iqn(), .read_only = req->read_only(), .access = *access});
  if (!iqn) return fail(iqn.status());
  for (const auto& n : front_ends_.iscsi_targets()) {
    if (n.name == *iqn) to_proto(n, front_ends_.iscsi_uris(n.name), resp);
  }
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::IscsiUnexport(grpc::ServerContext*,
                                              const v1::IscsiUnexportRequest* req,
                                              v1::IscsiUnexportResponse*) {
  if (req->iqn().empty()) return to_grpc(Status(Errc::kInvalidArgument, "iqn is required"));
  Status s = front_ends_.iscsi_unexport(req->iqn());
  if (!s) spdlog::info("iSCSI unexport '{}' failed: {}", req->iqn(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListIscsiTargets(grpc::ServerContext*,
                                                 const v1::ListIscsiTargetsRequest*,
                                                 v1::ListIscsiTargetsResponse* resp) {
  for (const auto& n : front_ends_.iscsi_targets()) {
    to_proto(n, front_ends_.iscsi_uris(n.name), resp->add_targets());
  }
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListIscsiSessions(grpc::ServerContext*,
                                                  const v1::ListIscsiSessionsRequest*,
                                                  v1::ListIscsiSessionsResponse* resp) {
  auto sessions = front_ends_.iscsi_sessions();
  std::sort(sessions.begin(), sessions.end(), [](const auto& a, const auto& b) {
    return std::tie(a.target, a.tsih, a.cid) < std::tie(b.target, b.tsih, b.cid);
  });
  for (const auto& s : sessions) to_proto(s, resp->add_sessions());
  return grpc::Status::OK;
}

}  // namespace castor::api
