// EngineService handlers for nexuses: create/destroy/list, child management, publishing
// over NVMe-oF (FrontEnds shares, subsystem nqn.2026-11.io.castor:nexus-<uuid>), NBD or
// iSCSI (target node iqn.2026-11.io.castor:nexus-<uuid>), and rebuild control. The nexus
// layer (castor::nexus::NexusManager, Nexus) does the work; these handlers validate,
// translate and report.
//
// Publishing rule: a published nexus cannot be destroyed (FAILED_PRECONDITION naming
// where it is published); UnpublishNexus first.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "api/engine_service.h"
#include "api/status_map.h"
#include "nvmf/target/front_end.h"

namespace castor::api {
namespace {

constexpr size_t kMaxNexusName = 64;
// Longest wait for a finished rebuild's outcome to be applied to its child.
constexpr uint64_t kApplyWaitMs = 5000;

std::vector<std::string> to_vector(const google::protobuf::RepeatedPtrField<std::string>& v) {
  return {v.begin(), v.end()};
}

Result<std::shared_ptr<nexus::Nexus>> find_nexus(const nexus::NexusManager& m,
                                                 const std::string& name) {
  if (name.empty()) return Status(Errc::kInvalidArgument, "nexus name is required");
  auto n = m.find(name);
  if (!n) return make_error(Errc::kNotFound, "nexus '{}' does not exist", name);
  return n;
}

}  // namespace

Status check_nexus_name(const std::string& name) {
  if (name.empty()) return Status(Errc::kInvalidArgument, "nexus name is required");
  const bool chars_ok = std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
  });
  if (!chars_ok || name.size() > kMaxNexusName || name.front() == '.') {
    return make_error(Errc::kInvalidArgument,
                      "nexus name '{}' is invalid (1..{} characters of A-Z a-z 0-9 . _ -, not "
                      "starting with '.')",
                      name, kMaxNexusName);
  }
  return Status::ok();
}

void to_proto(const std::string& nexus, const nexus::RebuildInfo& in, v1::RebuildInfo* out) {
  out->set_nexus(nexus);
  out->set_child(in.child_uri);
  out->set_source(in.source_uri);
  out->set_state(nexus::rebuild_state_name(in.state));
  out->set_partial(in.partial);
  out->set_blocks_done(in.blocks_done);
  out->set_blocks_total(in.blocks_total);
  out->set_blocks_skipped(in.blocks_skipped);
  double pct = in.blocks_total ? 100.0 * static_cast<double>(in.blocks_done) /
                                     static_cast<double>(in.blocks_total)
                               : (in.state == nexus::RebuildState::kCompleted ? 100.0 : 0.0);
  out->set_percent(pct);
  out->set_rate_bytes_s(in.rate_bytes_s);
  out->set_segments_done(in.segments_done);
  out->set_segments_total(in.segments_total);
  out->set_block_size(in.block_size);
  out->set_start_unix_ms(in.start_unix_ms);
  out->set_elapsed_ms(in.elapsed_ms);
  out->set_error(in.error);
}

void to_proto(const nexus::NexusInfo& in, const std::vector<std::string>& uris,
              v1::NexusInfo* out) {
  out->set_name(in.name);
  out->set_uuid(in.uuid);
  out->set_size_bytes(in.size_bytes);
  out->set_block_size(in.block_size);
  out->set_state(nexus::nexus_state_name(in.state));
  out->set_generation(in.generation);
  for (const auto& u : uris) out->add_uris(u);
  for (const auto& c : in.children) {
    auto* child_pb = out->add_children();
    child_pb->set_uri(c.uri);
    child_pb->set_bdev(c.bdev_name);
    child_pb->set_state(nexus::child_state_name(c.state));
    child_pb->set_fault_reason(nexus::fault_reason_name(c.reason));
    child_pb->set_local(c.local);
    child_pb->set_read_errors(c.read_errors);
    child_pb->set_write_errors(c.write_errors);
    child_pb->set_timeouts(c.timeouts);
    child_pb->set_has_log(c.has_log);
    child_pb->set_missed_segments(c.missed_segments);
    if (c.rebuild) to_proto(in.name, *c.rebuild, child_pb->mutable_rebuild());
  }
}

void EngineServiceImpl::nexus_to_proto(const nexus::NexusInfo& info, v1::NexusInfo* out) const {
  to_proto(info, published_uris(info.name), out);
  if (auto* nvmf = front_ends_.get<nvmf::NvmfFrontEnd>("nvmf")) {
    if (auto state = nvmf->ana_state(info.name)) out->set_ana_state(nvmf::ana_state_name(*state));
  }
}

std::vector<std::string> EngineServiceImpl::published_uris(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& e : front_ends_.exports_of(name)) {
    // No listener (yet): PROTOCOL:NAME still says where it is published.
    if (e.uris.empty()) out.push_back(e.protocol + ":" + e.name);
    out.insert(out.end(), e.uris.begin(), e.uris.end());
  }
  return out;
}

grpc::Status EngineServiceImpl::CreateNexus(grpc::ServerContext*, const v1::CreateNexusRequest* req,
                                            v1::NexusInfo* resp) {
  if (Status s = check_nexus_name(req->name()); !s) return to_grpc(s);
  std::map<std::string, std::string> kv(req->options().begin(), req->options().end());
  auto opts = nexus::NexusOptions::from_map(kv);
  if (!opts) {
    spdlog::info("create nexus '{}' failed: {}", req->name(), opts.status().to_string());
    return to_grpc(Status(Errc::kInvalidArgument, opts.status().message()));
  }
  if (!req->uuid().empty()) {
    auto u = Uuid::parse(req->uuid());
    if (!u || u->is_nil()) {
      return to_grpc(make_error(Errc::kInvalidArgument, "nexus uuid '{}' is not a UUID", req->uuid()));
    }
    opts->uuid = *u;
  }
  auto info = nexuses_.create(req->name(), req->size_bytes(), to_vector(req->children()), *opts);
  if (!info) {
    spdlog::info("create nexus '{}' failed: {}", req->name(), info.status().to_string());
    return to_grpc(info.status());
  }
  to_proto(*info, {}, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::DestroyNexus(grpc::ServerContext*,
                                             const v1::DestroyNexusRequest* req,
                                             v1::DestroyNexusResponse*) {
  auto n = find_nexus(nexuses_, req->name());
  if (!n) return to_grpc(n.status());
  const std::string& name = req->name();
  auto fail = [&](const Status& s) {
    spdlog::info("destroy nexus '{}' failed: {}", name, s.to_string());
    return to_grpc(s);
  };
  if (auto uris = published_uris(name); !uris.empty()) {
    return fail(make_error(Errc::kBusy, "nexus '{}' is published at {} (unpublish it first)", name,
                           uris.front()));
  }
  // No export of it can be added while it drains (FrontEnds refuses a bdev being destroyed),
  // and the drain holds up no other bdev's export.
  Status s = front_ends_.destroy_unless_exported({name}, [&]() -> Status {
    if (auto info = registry_.info(name); info && info->claim && info->claim->kind == bdev::Claim::Kind::kNvmfSubsystem) {
      return make_error(Errc::kBusy, "nexus '{}' is published as {} (unpublish it first)", name,
                        info->claim->holder);
    }
    return nexuses_.destroy(name, req->purge());
  });
  if (!s) return fail(s);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListNexuses(grpc::ServerContext*, const v1::ListNexusesRequest*,
                                            v1::ListNexusesResponse* resp) {
  auto all = nexuses_.list();
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& n : all) nexus_to_proto(n, resp->add_nexuses());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::GetNexus(grpc::ServerContext*, const v1::GetNexusRequest* req,
                                         v1::NexusInfo* resp) {
  auto n = find_nexus(nexuses_, req->name());
  if (!n) return to_grpc(n.status());
  nexus_to_proto((*n)->describe(), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::child_op(const char* what, const v1::ChildRequest& req,
                                         v1::NexusInfo* resp,
                                         Status (nexus::Nexus::*op)(const std::string&)) {
  auto n = find_nexus(nexuses_, req.nexus());
  if (!n) return to_grpc(n.status());
  if (req.uri().empty()) return to_grpc(Status(Errc::kInvalidArgument, "child URI is required"));
  if (Status s = ((**n).*op)(req.uri()); !s) {
    spdlog::info("{} '{}' of nexus '{}' failed: {}", what, req.uri(), req.nexus(), s.to_string());
    return to_grpc(s);
  }
  spdlog::info("nexus '{}': {} '{}'", req.nexus(), what, req.uri());
  nexus_to_proto((*n)->describe(), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::AddChild(grpc::ServerContext*, const v1::AddChildRequest* req,
                                         v1::NexusInfo* resp) {
  auto n = find_nexus(nexuses_, req->nexus());
  if (!n) return to_grpc(n.status());
  if (req->uri().empty()) return to_grpc(Status(Errc::kInvalidArgument, "child URI is required"));
  if (Status s = (*n)->add_child(req->uri(), !req->no_rebuild()); !s) {
    spdlog::info("add child '{}' to nexus '{}' failed: {}", req->uri(), req->nexus(),
                 s.to_string());
    return to_grpc(s);
  }
  spdlog::info("nexus '{}': added child '{}'{}", req->nexus(), req->uri(),
               req->no_rebuild() ? " (no rebuild)" : "");
  nexus_to_proto((*n)->describe(), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::RemoveChild(grpc::ServerContext*, const v1::ChildRequest* req,
                                            v1::NexusInfo* resp) {
  return child_op("remove child", *req, resp, &nexus::Nexus::remove_child);
}

grpc::Status EngineServiceImpl::FaultChild(grpc::ServerContext*, const v1::ChildRequest* req,
                                           v1::NexusInfo* resp) {
  return child_op("fault child", *req, resp, &nexus::Nexus::fault_child);
}

grpc::Status EngineServiceImpl::OfflineChild(grpc::ServerContext*, const v1::ChildRequest* req,
                                             v1::NexusInfo* resp) {
  return child_op("offline child", *req, resp, &nexus::Nexus::offline_child);
}

grpc::Status EngineServiceImpl::OnlineChild(grpc::ServerContext*, const v1::ChildRequest* req,
                                            v1::NexusInfo* resp) {
  return child_op("online child", *req, resp, &nexus::Nexus::online_child);
}

grpc::Status EngineServiceImpl::PublishNexus(grpc::ServerContext*,
                                             const v1::PublishNexusRequest* req,
                                             v1::PublishNexusResponse* resp) {
  auto n = find_nexus(nexuses_, req->name());
  if (!n) return to_grpc(n.status());
  const std::string& name = req->name();
  const std::string protocol = req->protocol().empty() ? "nvmf" : req->protocol();
  auto fail = [&](const Status& s) {
    spdlog::info("publish nexus '{}' over {} failed: {}", name, protocol, s.to_string());
    return to_grpc(s);
  };
  frontend::FrontEnd* fe = front_ends_.find(protocol);
  if (!fe) {
    const auto known = front_ends_.protocols();
    std::string list;
    for (size_t i = 0; i < known.size(); ++i) {
      list += (i == 0 ? "" : (i + 1 == known.size() ? " or " : ", ")) + known[i];
    }
    return fail(make_error(Errc::kInvalidArgument, "protocol '{}' is not {}", protocol, list));
  }
  // Each protocol-specific field of the request belongs to one protocol.
  const struct {
    const char* field;
    const char* protocol;
    bool set;
  } fields[] = {
      {"allowed_hosts", "nvmf", !req->allowed_hosts().empty()},
      {"nbd_name", "nbd", !req->nbd_name().empty()},
      {"iscsi_iqn", "iscsi", !req->iscsi_iqn().empty()},
      {"chap_user", "iscsi", !req->chap_user().empty()},
      {"chap_secret", "iscsi", !req->chap_secret().empty()},
      {"mutual_user", "iscsi", !req->mutual_user().empty()},
      {"mutual_secret", "iscsi", !req->mutual_secret().empty()},
      {"allowed_initiators", "iscsi", !req->allowed_initiators().empty()},
  };
  for (const auto& f : fields) {
    if (f.set && protocol != f.protocol) {
      return fail(make_error(Errc::kInvalidArgument, "{} is only valid with protocol {}", f.field,
                             f.protocol));
    }
  }
  if (front_ends_.listeners(protocol).empty()) {
    std::string rpc = protocol;
    rpc[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(rpc[0])));
    return fail(make_error(Errc::kBusy,
                           "the engine has no {} listener (add one with --{}-listen or {}Listen)",
                           fe->display_name(), protocol, rpc));
  }
  frontend::ExportSpec spec;
  spec.bdev = name;
  spec.kind = "nexus";
  spec.uuid = Uuid::parse((*n)->describe().uuid).value_or(Uuid{});
  spec.description = "castor nexus " + name;
  spec.allowed_hosts = to_vector(req->allowed_hosts());
  if (!req->nbd_name().empty()) spec.name = req->nbd_name();
  if (!req->iscsi_iqn().empty()) spec.name = req->iscsi_iqn();
  spec.chap = {req->chap_user(), req->chap_secret()};
  spec.mutual_chap = {req->mutual_user(), req->mutual_secret()};
  // Host NQNs (NVMe-oF) or initiator IQNs (iSCSI): one list, the fields check above
  // leaves at most one of the two set.
  for (const auto& i : req->allowed_initiators()) spec.allowed_hosts.push_back(i);
  const std::string wanted = spec.name.value_or(fe->default_name(spec));
  // One export per nexus: publishing again with the same settings is idempotent.
  const auto existing = front_ends_.exports_of(name);
  for (const auto& e : existing) {
    if (e.protocol != protocol) {
      return fail(make_error(Errc::kBusy,
                             "nexus '{}' is already published over {} as {} (unpublish it first)",
                             name, front_ends_.find(e.protocol)->display_name(), e.name));
    }
    if (e.name != wanted) {
      return fail(make_error(Errc::kAlreadyExists,
                             "nexus '{}' is already published over {} as {} (unpublish it first)",
                             name, fe->display_name(), e.name));
    }
  }
  auto made = front_ends_.add_export(protocol, spec);
  if (!made) {
    if (made.status().code() == Errc::kAlreadyExists && !existing.empty()) {
      return fail(make_error(Errc::kAlreadyExists,
                             "nexus '{}' is already published over {} as {} with other settings "
                             "(unpublish it first)",
                             name, fe->display_name(), existing.front().name));
    }
    return fail(made.status());
  }
  if (existing.empty()) {
    spdlog::info("nexus '{}' published over {} as {}", name, fe->display_name(), made->name);
  }
  if (!made->uris.empty()) resp->set_uri(made->uris.front());
  for (const auto& u : made->uris) resp->add_uris(u);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::SetNexusAnaState(grpc::ServerContext*, const v1::SetNexusAnaStateRequest* req,
                                                 v1::NexusInfo* resp) {
  auto n = find_nexus(nexuses_, req->name());
  if (!n) return to_grpc(n.status());
  auto state = nvmf::parse_ana_state(req->state());
  if (!state) return to_grpc(state.status());
  auto* nvmf = front_ends_.get<nvmf::NvmfFrontEnd>("nvmf");
  Status set = nvmf ? nvmf->set_ana_state(req->name(), *state)
                    : Status(Errc::kNotFound, "the engine has no NVMe-oF front end");
  if (Status s = set; !s) {
    spdlog::info("ANA state {} for nexus '{}' failed: {}", req->state(), req->name(), s.to_string());
    return to_grpc(s);
  }
  nexus_to_proto((*n)->describe(), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ResizeNexus(grpc::ServerContext*, const v1::ResizeNexusRequest* req,
                                            v1::NexusInfo* resp) {
  auto n = find_nexus(nexuses_, req->name());
  if (!n) return to_grpc(n.status());
  const std::string& name = req->name();
  const uint64_t old = (*n)->size_bytes();
  Status s = front_ends_.grow_if_allowed(
      name, [&] { return (*n)->resize(req->size_bytes()); }, "nexus");
  if (!s) {
    spdlog::info("resize nexus '{}' to {} bytes failed: {}", name, req->size_bytes(), s.to_string());
    return to_grpc(s);
  }
  if (old != (*n)->size_bytes()) {
    spdlog::info("nexus '{}' resized from {} to {} bytes", name, old, (*n)->size_bytes());
  }
  nexus_to_proto((*n)->describe(), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::UnpublishNexus(grpc::ServerContext*,
                                               const v1::UnpublishNexusRequest* req,
                                               v1::UnpublishNexusResponse*) {
  auto n = find_nexus(nexuses_, req->name());
  if (!n) return to_grpc(n.status());
  const std::string& name = req->name();
  const auto exports = front_ends_.exports_of(name);
  if (exports.empty()) {
    return to_grpc(make_error(Errc::kNotFound, "nexus '{}' is not published", name));
  }
  for (const auto& e : exports) {
    if (Status s = front_ends_.remove_export(e.protocol, e.name, req->force()); !s) {
      spdlog::info("unpublish nexus '{}' failed: {}", name, s.to_string());
      return to_grpc(s);
    }
  }
  spdlog::info("nexus '{}' unpublished", name);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::rebuild_op(const char* what, const v1::RebuildRequest& req,
                                           v1::RebuildInfo* resp,
                                           Status (nexus::Nexus::*op)(const std::string&)) {
  auto n = find_nexus(nexuses_, req.nexus());
  if (!n) return to_grpc(n.status());
  if (req.child().empty()) return to_grpc(Status(Errc::kInvalidArgument, "child URI is required"));
  if (op) {
    if (Status s = ((**n).*op)(req.child()); !s) {
      spdlog::info("{} of child '{}' of nexus '{}' failed: {}", what, req.child(), req.nexus(),
                   s.to_string());
      return to_grpc(s);
    }
    spdlog::info("nexus '{}': {} of child '{}'", req.nexus(), what, req.child());
  }
  auto info = (*n)->rebuild_info(req.child());
  if (!info) return to_grpc(info.status());
  // Pause and resume are applied by the job's reactor just after the call: answer with
  // the state they lead to (within a short wait), not the one they leave.
  const bool pausing = op == &nexus::Nexus::pause_rebuild;
  if (pausing || op == &nexus::Nexus::resume_rebuild) {
    const auto leaving = pausing ? nexus::RebuildState::kRunning : nexus::RebuildState::kPaused;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kApplyWaitMs);
    while (info->state == leaving && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      info = (*n)->rebuild_info(req.child());
      if (!info) return to_grpc(info.status());
    }
  }
  if (info->state != nexus::RebuildState::kRunning && info->state != nexus::RebuildState::kPaused) {
    // A finished job's outcome (the child healthy or faulted) is applied by the manager's
    // worker just after: report the final state only once the child reflects it.
    if (auto applied = (*n)->wait_rebuild(req.child(), kApplyWaitMs)) info = std::move(applied);
  }
  to_proto(req.nexus(), *info, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::StartRebuild(grpc::ServerContext*, const v1::RebuildRequest* req,
                                             v1::RebuildInfo* resp) {
  return rebuild_op("start rebuild", *req, resp, &nexus::Nexus::start_rebuild);
}

grpc::Status EngineServiceImpl::StopRebuild(grpc::ServerContext*, const v1::RebuildRequest* req,
                                            v1::RebuildInfo* resp) {
  return rebuild_op("stop rebuild", *req, resp, &nexus::Nexus::stop_rebuild);
}

grpc::Status EngineServiceImpl::PauseRebuild(grpc::ServerContext*, const v1::RebuildRequest* req,
                                             v1::RebuildInfo* resp) {
  return rebuild_op("pause rebuild", *req, resp, &nexus::Nexus::pause_rebuild);
}

grpc::Status EngineServiceImpl::ResumeRebuild(grpc::ServerContext*, const v1::RebuildRequest* req,
                                              v1::RebuildInfo* resp) {
  return rebuild_op("resume rebuild", *req, resp, &nexus::Nexus::resume_rebuild);
}

grpc::Status EngineServiceImpl::GetRebuild(grpc::ServerContext*, const v1::RebuildRequest* req,
                                           v1::RebuildInfo* resp) {
  return rebuild_op("get rebuild", *req, resp, nullptr);
}

grpc::Status EngineServiceImpl::ListRebuilds(grpc::ServerContext*,
                                             const v1::ListRebuildsRequest* req,
                                             v1::ListRebuildsResponse* resp) {
  std::vector<nexus::NexusInfo> infos;
  if (req->nexus().empty()) {
    infos = nexuses_.list();
    std::sort(infos.begin(), infos.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
  } else {
    auto n = find_nexus(nexuses_, req->nexus());
    if (!n) return to_grpc(n.status());
    infos.push_back((*n)->describe());
  }
  for (const auto& n : infos) {
    for (const auto& c : n.children) {
      if (c.rebuild) to_proto(n.name, *c.rebuild, resp->add_rebuilds());
    }
  }
  return grpc::Status::OK;
}

}  // namespace castor::api
