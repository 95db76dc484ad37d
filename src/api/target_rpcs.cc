// EngineService handlers for the front-end targets: NVMe-oF/TCP listeners, shares,
// subsystems and controllers; NBD listeners and exports; iSCSI portals, target nodes and
// sessions. Each goes through FrontEnds by protocol name; the rules (names, URIs, which
// bdevs may be shared or exported) live there and in each protocol's FrontEnd.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "api/engine_service.h"
#include "api/status_map.h"
#include "iscsi/front_end.h"
#include "nvmf/target/front_end.h"

namespace castor::api {
namespace {

std::vector<std::string> to_vector(const google::protobuf::RepeatedPtrField<std::string>& v) {
  return {v.begin(), v.end()};
}

}  // namespace

void to_proto(const frontend::Export& in, v1::ExportInfo* out) {
  out->set_protocol(in.protocol);
  out->set_name(in.name);
  out->set_bdev(in.bdev);
  out->set_read_only(in.read_only);
  out->set_description(in.description);
  for (const auto& h : in.allowed_hosts) out->add_allowed_hosts(h);
  out->set_chap(in.chap);
  out->set_mutual_chap(in.mutual_chap);
  out->set_connections(in.connections);
  for (const auto& u : in.uris) out->add_uris(u);
}

void to_proto(const frontend::Export& in, v1::ShareInfo* out) {
  out->set_nqn(in.name);
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

void to_proto(const frontend::Export& in, v1::NbdExportInfo* out) {
  out->set_name(in.name);
  out->set_bdev(in.bdev);
  out->set_read_only(in.read_only);
  out->set_description(in.description);
  out->set_connections(in.connections);
  for (const auto& u : in.uris) out->add_uris(u);
}

void to_proto(const frontend::Export& in, v1::IscsiTargetInfo* out) {
  out->set_iqn(in.name);
  out->set_bdev(in.bdev);
  out->set_read_only(in.read_only);
  out->set_chap(in.chap);
  out->set_mutual_chap(in.mutual_chap);
  for (const auto& i : in.allowed_hosts) out->add_allowed_initiators(i);
  out->set_sessions(in.connections);
  for (const auto& u : in.uris) out->add_uris(u);
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

void set_iscsi_access(const std::string& chap_user, const std::string& chap_secret,
                      const std::string& mutual_user, const std::string& mutual_secret,
                      const google::protobuf::RepeatedPtrField<std::string>& allowed_initiators,
                      frontend::ExportSpec* spec) {
  spec->chap = {chap_user, chap_secret};
  spec->mutual_chap = {mutual_user, mutual_secret};
  spec->allowed_hosts = to_vector(allowed_initiators);
}

grpc::Status EngineServiceImpl::listen(const char* protocol, const std::string& address,
                                       uint32_t* port) {
  auto bound = front_ends_.listen(protocol, address);
  if (!bound) {
    spdlog::info("{} listen on '{}' failed: {}", protocol, address, bound.status().to_string());
    return to_grpc(bound.status());
  }
  *port = *bound;
  return grpc::Status::OK;
}

// ---- Any front end, by protocol name ----

grpc::Status EngineServiceImpl::ListFrontEnds(grpc::ServerContext*, const v1::ListFrontEndsRequest*,
                                              v1::ListFrontEndsResponse* resp) {
  for (const auto& protocol : front_ends_.protocols()) {
    auto* f = resp->add_front_ends();
    f->set_protocol(protocol);
    f->set_display_name(front_ends_.find(protocol)->display_name());
    for (const auto& l : front_ends_.listeners(protocol)) {
      f->add_listeners(uri_authority(l.host, l.port));
    }
  }
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::FrontEndListen(grpc::ServerContext*,
                                               const v1::FrontEndListenRequest* req,
                                               v1::FrontEndListenResponse* resp) {
  uint32_t port = 0;
  grpc::Status s = listen(req->protocol().c_str(), req->address(), &port);
  resp->set_port(port);
  return s;
}

grpc::Status EngineServiceImpl::ExportBdev(grpc::ServerContext*, const v1::ExportBdevRequest* req,
                                           v1::ExportInfo* resp) {
  frontend::ExportSpec spec;
  spec.bdev = req->bdev();
  if (req->has_name()) spec.name = req->name();
  spec.read_only = req->read_only();
  spec.description = req->description();
  spec.allowed_hosts = to_vector(req->allowed_hosts());
  spec.chap = {req->chap_user(), req->chap_secret()};
  spec.mutual_chap = {req->mutual_user(), req->mutual_secret()};
  auto e = front_ends_.add_export(req->protocol(), std::move(spec));
  if (!e) {
    spdlog::info("{} export of bdev '{}' failed: {}", req->protocol(), req->bdev(),
                 e.status().to_string());
    return to_grpc(e.status());
  }
  to_proto(*e, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::UnexportBdev(grpc::ServerContext*,
                                             const v1::UnexportBdevRequest* req,
                                             v1::UnexportBdevResponse*) {
  Status s = front_ends_.remove_export(req->protocol(), req->name(), req->force());
  if (!s) spdlog::info("{} unexport of '{}' failed: {}", req->protocol(), req->name(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListExports(grpc::ServerContext*, const v1::ListExportsRequest* req,
                                            v1::ListExportsResponse* resp) {
  if (!req->protocol().empty() && !front_ends_.find(req->protocol())) {
    return to_grpc(make_error(Errc::kInvalidArgument, "unknown protocol '{}'", req->protocol()));
  }
  for (const auto& e : front_ends_.exports(req->protocol())) to_proto(e, resp->add_exports());
  return grpc::Status::OK;
}

// ---- NVMe-oF ----

grpc::Status EngineServiceImpl::NvmfListen(grpc::ServerContext*, const v1::NvmfListenRequest* req,
                                           v1::NvmfListenResponse* resp) {
  uint32_t port = 0;
  grpc::Status s = listen("nvmf", req->address(), &port);
  resp->set_port(port);
  return s;
}

grpc::Status EngineServiceImpl::ShareBdev(grpc::ServerContext*, const v1::ShareBdevRequest* req,
                                          v1::ShareInfo* resp) {
  frontend::ExportSpec spec;
  spec.bdev = req->bdev();
  spec.allowed_hosts = to_vector(req->allowed_hosts());
  auto r = front_ends_.add_export("nvmf", std::move(spec));
  if (!r) {
    spdlog::info("share bdev '{}' failed: {}", req->bdev(), r.status().to_string());
    return to_grpc(r.status());
  }
  to_proto(*r, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::UnshareBdev(grpc::ServerContext*, const v1::UnshareBdevRequest* req,
                                            v1::UnshareBdevResponse*) {
  Status s = front_ends_.remove_export("nvmf", req->bdev(), req->force());
  if (!s) spdlog::info("unshare '{}' failed: {}", req->bdev(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListSubsystems(grpc::ServerContext*,
                                               const v1::ListSubsystemsRequest*,
                                               v1::ListSubsystemsResponse* resp) {
  auto* nvmf = front_ends_.get<nvmf::NvmfFrontEnd>("nvmf");
  if (!nvmf) return grpc::Status::OK;
  std::map<std::string, std::vector<std::string>> uris;  // by NQN
  for (auto& e : front_ends_.exports("nvmf")) uris[e.name] = std::move(e.uris);
  auto subsystems = nvmf->target().list_subsystems();
  std::sort(subsystems.begin(), subsystems.end(),
            [](const auto& a, const auto& b) { return a.nqn < b.nqn; });
  for (const auto& s : subsystems) to_proto(s, uris[s.nqn], resp->add_subsystems());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListControllers(grpc::ServerContext*,
                                                const v1::ListControllersRequest*,
                                                v1::ListControllersResponse* resp) {
  auto* nvmf = front_ends_.get<nvmf::NvmfFrontEnd>("nvmf");
  if (!nvmf) return grpc::Status::OK;
  auto controllers = nvmf->target().list_controllers();
  std::sort(controllers.begin(), controllers.end(),
            [](const auto& a, const auto& b) { return a.cntlid < b.cntlid; });
  for (const auto& c : controllers) to_proto(c, resp->add_controllers());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ShareReplica(grpc::ServerContext*,
                                             const v1::ShareReplicaRequest* req,
                                             v1::ShareInfo* resp) {
  auto fail = [&](const Status& s) {
    spdlog::info("share replica '{}' failed: {}", req->name(), s.to_string());
    return to_grpc(s);
  };
  auto replica = front_ends_.find_replica(req->name());
  if (!replica) return fail(replica.status());
  frontend::ExportSpec spec;
  spec.bdev = replica->name;
  spec.allowed_hosts = to_vector(req->allowed_hosts());
  auto r = front_ends_.add_export("nvmf", std::move(spec));
  if (!r) return fail(r.status());
  to_proto(*r, resp);
  // The local path last: a nexus on this node opens the bdev directly.
  resp->add_uris("bdev:///" + r->bdev);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::UnshareReplica(grpc::ServerContext*,
                                               const v1::UnshareReplicaRequest* req,
                                               v1::UnshareBdevResponse*) {
  auto replica = front_ends_.find_replica(req->name());
  Status s = replica ? front_ends_.remove_export("nvmf", replica->name, req->force())
                     : replica.status();
  if (!s) spdlog::info("unshare replica '{}' failed: {}", req->name(), s.to_string());
  return to_grpc(s);
}

// ---- NBD ----

grpc::Status EngineServiceImpl::NbdListen(grpc::ServerContext*, const v1::NbdListenRequest* req,
                                          v1::NbdListenResponse* resp) {
  uint32_t port = 0;
  grpc::Status s = listen("nbd", req->address(), &port);
  resp->set_port(port);
  return s;
}

grpc::Status EngineServiceImpl::NbdExport(grpc::ServerContext*, const v1::NbdExportRequest* req,
                                          v1::NbdExportInfo* resp) {
  // The NBD default export is named "": the request's name is taken as it is.
  frontend::ExportSpec spec;
  spec.bdev = req->bdev();
  spec.name = req->name();
  spec.read_only = req->read_only();
  spec.description = req->description();
  auto e = front_ends_.add_export("nbd", spec);
  if (!e) {
    spdlog::info("NBD export '{}' of bdev '{}' failed: {}", req->name(), req->bdev(),
                 e.status().to_string());
    return to_grpc(e.status());
  }
  to_proto(*e, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::NbdUnexport(grpc::ServerContext*, const v1::NbdUnexportRequest* req,
                                            v1::NbdUnexportResponse*) {
  Status s = front_ends_.remove_export("nbd", req->name());
  if (!s) spdlog::info("NBD unexport '{}' failed: {}", req->name(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListNbdExports(grpc::ServerContext*,
                                               const v1::ListNbdExportsRequest*,
                                               v1::ListNbdExportsResponse* resp) {
  for (const auto& e : front_ends_.exports("nbd")) to_proto(e, resp->add_exports());
  return grpc::Status::OK;
}

// ---- iSCSI ----

grpc::Status EngineServiceImpl::IscsiListen(grpc::ServerContext*, const v1::IscsiListenRequest* req,
                                            v1::IscsiListenResponse* resp) {
  uint32_t port = 0;
  grpc::Status s = listen("iscsi", req->address(), &port);
  resp->set_port(port);
  return s;
}

grpc::Status EngineServiceImpl::IscsiExport(grpc::ServerContext*, const v1::IscsiExportRequest* req,
                                            v1::IscsiTargetInfo* resp) {
  frontend::ExportSpec spec;
  spec.bdev = req->bdev();
  if (!req->iqn().empty()) spec.name = req->iqn();
  spec.read_only = req->read_only();
  set_iscsi_access(req->chap_user(), req->chap_secret(), req->mutual_user(), req->mutual_secret(),
                   req->allowed_initiators(), &spec);
  auto e = front_ends_.add_export("iscsi", spec);
  if (!e) {
    spdlog::info("iSCSI export of bdev '{}' failed: {}", req->bdev(), e.status().to_string());
    return to_grpc(e.status());
  }
  to_proto(*e, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::IscsiUnexport(grpc::ServerContext*,
                                              const v1::IscsiUnexportRequest* req,
                                              v1::IscsiUnexportResponse*) {
  if (req->iqn().empty()) return to_grpc(Status(Errc::kInvalidArgument, "iqn is required"));
  Status s = front_ends_.remove_export("iscsi", req->iqn());
  if (!s) spdlog::info("iSCSI unexport '{}' failed: {}", req->iqn(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListIscsiTargets(grpc::ServerContext*,
                                                 const v1::ListIscsiTargetsRequest*,
                                                 v1::ListIscsiTargetsResponse* resp) {
  for (const auto& e : front_ends_.exports("iscsi")) to_proto(e, resp->add_targets());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListIscsiSessions(grpc::ServerContext*,
                                                  const v1::ListIscsiSessionsRequest*,
                                                  v1::ListIscsiSessionsResponse* resp) {
  auto* iscsi = front_ends_.get<iscsi::IscsiFrontEnd>("iscsi");
  if (!iscsi) return grpc::Status::OK;
  auto sessions = iscsi->target().list_sessions();
  std::sort(sessions.begin(), sessions.end(), [](const auto& a, const auto& b) {
    return std::tie(a.target, a.tsih, a.cid) < std::tie(b.target, b.tsih, b.cid);
  });
  for (const auto& s : sessions) to_proto(s, resp->add_sessions());
  return grpc::Status::OK;
}

}  // namespace castor::api
