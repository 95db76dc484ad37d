// ControlPlane: volume operations (create, destroy, publish, unpublish, resize, scale)
// and the engine steps they share with the reconciler.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/uuid.h"
#include "control/control_plane.h"
#include "control/volume_lock.h"

namespace castor::control {

namespace {

constexpr uint64_t kVolumeAlign = 4096;

bool same_request(const VolumeSpec& v, const CreateVolumeArgs& a, Protocol proto) {
  return v.size_bytes == a.size_bytes && v.replica_count == a.replica_count && v.thin == a.thin &&
         v.protocol == proto && v.topology == a.topology && v.labels == a.labels &&
         (a.name.empty() || v.name == a.name);
}

Status validate_create(const CreateVolumeArgs& a) {
  if (!a.uuid.empty()) {
    auto u = Uuid::parse(a.uuid);
    if (!u || u->is_nil()) return make_error(Errc::kInvalidArgument, "'{}' is not a UUID", a.uuid);
  }
  if (!a.name.empty() && !valid_object_name(a.name, 128)) {
    return make_error(Errc::kInvalidArgument, "bad volume name '{}' ([A-Za-z0-9._-], 1 to 128 bytes)",
                      a.name);
  }
  if (a.size_bytes == 0 || a.size_bytes % kVolumeAlign) {
    return make_error(Errc::kInvalidArgument, "volume size {} is not a positive multiple of {}",
                      a.size_bytes, kVolumeAlign);
  }
  if (a.replica_count == 0 || a.replica_count > kMaxReplicas) {
    return make_error(Errc::kInvalidArgument, "replica count {} is not 1 to {}", a.replica_count,
                      kMaxReplicas);
  }
  if (auto p = parse_protocol(a.protocol); !p) return p.status();
  if (Status s = validate_labels(a.labels); !s) return s;
  if (Status s = validate_labels(a.topology.node_labels); !s) return s;
  if (Status s = validate_labels(a.topology.pool_labels); !s) return s;
  for (const auto& n : a.topology.allowed_nodes) {
    if (!valid_object_name(n)) return make_error(Errc::kInvalidArgument, "bad node name '{}'", n);
  }
  for (const auto& n : a.topology.preferred_nodes) {
    if (!valid_object_name(n)) return make_error(Errc::kInvalidArgument, "bad node name '{}'", n);
  }
  return Status::ok();
}

}  // namespace

// ---------------------------------------------------------------- shared steps

Result<std::vector<ReplicaSpec>> ControlPlane::place(const VolumeSpec& v, uint32_t count) {
  // Replicas go on distinct nodes: first avoiding every node that holds one of the
  // volume's replicas, then, if that finds too few, letting a faulted replica's node take
  // its replacement (with as many nodes as replicas, a node that came back too late
  // would otherwise hold the volume degraded for good; the faulted one is retired once
  // the replacement is current).
  auto placed = place_avoiding(v, count, /*avoid_faulted=*/true);
  if (placed) return placed;
  bool any_faulted = false;
  for (const auto& r : v.replicas) any_faulted = any_faulted || r.state == ReplicaState::kFaulted;
  if (!any_faulted) return placed;
  return place_avoiding(v, count, /*avoid_faulted=*/false);
}

Result<std::vector<ReplicaSpec>> ControlPlane::place_avoiding(const VolumeSpec& v, uint32_t count, bool avoid_faulted) {
  ReplicaPlacementRequest req;
  req.size_bytes = v.size_bytes;
  req.thin = v.thin;
  req.count = count;
  req.topology = v.topology;
  std::vector<PoolCandidate> pools;
  {
    std::lock_guard lk(mu_);
    for (const auto& r : v.replicas) {
      if (r.state == ReplicaState::kRemoving) continue;
      if (r.state == ReplicaState::kFaulted && !avoid_faulted) continue;
      req.exclude_nodes.insert(r.node);
      auto n = nodes_.find(r.node);
      if (n == nodes_.end()) continue;
      for (const auto& key : v.topology.spread_labels) {
        if (auto l = n->second.labels.find(key); l != n->second.labels.end()) {
          req.used_spread_values[key].insert(l->second);
        }
      }
    }
    pools = pool_candidates_locked();
  }
  auto chosen = place_replicas(pools, req, opts_.placement);
  if (!chosen) return chosen.status();
  std::vector<ReplicaSpec> out;
  for (const auto& c : *chosen) {
    out.push_back(ReplicaSpec{.uuid = Uuid::random().to_string(),
                              .node = c.node,
                              .pool = c.pool,
                              .state = ReplicaState::kCreating,
                              .reason = {},
                              .faulted_unix_ms = 0});
  }
  return out;
}

// Creates the replicas `uuids` of `v` (recorded as creating) on their engines. Stops at
// the first failure; what was made stays recorded (the caller undoes or the reconciler
// retries).
Status ControlPlane::create_replicas(VolumeSpec& v, const std::vector<std::string>& uuids) {
  for (const auto& id : uuids) {
    ReplicaSpec* r = v.find_replica(id);
    if (!r) continue;
    auto e = engine(r->node);
    if (!e) return make_error(Errc::kUnavailable, "node '{}' of replica {} is not online", r->node, id);
    Status s = e->create_replica(r->pool, r->uuid, v.size_bytes, v.thin);
    if (!s && s.code() != Errc::kAlreadyExists) {
      return make_error(s.code(), "cannot create replica {} in pool '{}' on node '{}': {}", id,
                        r->pool, r->node, s.message());
    }
    r->state = ReplicaState::kNew;
  }
  return Status::ok();
}

Result<std::string> ControlPlane::child_uri(const ReplicaSpec& r, const std::string& target) {
  auto e = engine(r.node);
  if (!e) return make_error(Errc::kUnavailable, "node '{}' of replica {} is not online", r.node, r.uuid);
  if (r.node == target) {
    // A shared replica is claimed by its subsystem: a local nexus cannot open it.
    Status s = e->unshare_replica(r.uuid);
    if (!s && s.code() != Errc::kNotFound) return s;
    return "bdev:///" + r.uuid;
  }
  return e->share_replica(r.uuid);
}

// The replicas the volume's nexus health document records as unhealthy.
Result<std::set<std::string>> ControlPlane::unhealthy_replicas(const std::string& volume) {
  auto doc = get_nexus_health(volume);
  if (!doc) return doc.status();
  std::set<std::string> out;
  if (doc->empty()) return out;
  try {
    auto j = nlohmann::json::parse(*doc);
    for (const auto& [uri, rec] : j.at("children").items()) {
      if (!rec.value("healthy", true)) {
        if (auto id = replica_of_child_uri(uri)) out.insert(*id);
      }
    }
  } catch (const std::exception& e) {
    return make_error(Errc::kInternal, "health document of {} is damaged: {}", volume, e.what());
  }
  return out;
}

// Re-keys the volume's health document to the child URIs as `target_node` sees them, so
// a nexus created there finds the records of the children it opens. One atomic put; a
// crash before or after leaves a document that is right for one of the two nodes, and
// translating again is idempotent.
Status ControlPlane::translate_health(const VolumeSpec& v, const std::string& target_node) {
  auto doc = get_nexus_health(v.uuid);
  if (!doc) return doc.status();
  if (doc->empty()) return Status::ok();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(*doc);
  } catch (const std::exception& e) {
    return make_error(Errc::kInternal, "health document of {} is damaged: {}", v.uuid, e.what());
  }
  std::map<std::string, std::string> uri_of;  // replica uuid -> URI from target_node
  {
    std::lock_guard lk(mu_);
    for (const auto& r : v.replicas) {
      if (r.node == target_node) {
        uri_of[r.uuid] = "bdev:///" + r.uuid;
        continue;
      }
      auto n = nodes_.find(r.node);
      if (n == nodes_.end() || n->second.nvmf_endpoints.empty()) continue;
      uri_of[r.uuid] = fmt::format("nvmf://{}/{}", n->second.nvmf_endpoints.front(), replica_nqn(r.uuid));
    }
  }
  nlohmann::json by_uri = nlohmann::json::object();
  bool changed = false;
  for (auto& [uri, rec] : j["children"].items()) {
    auto id = replica_of_child_uri(uri);
    auto it = id ? uri_of.find(*id) : uri_of.end();
    if (it == uri_of.end()) continue;  // not a replica of this volume any more
    changed = changed || it->second != uri;
    by_uri[it->second] = rec;
  }
  changed = changed || by_uri.size() != j["children"].size();
  if (!changed) return Status::ok();
  j["children"] = by_uri;
  return put_nexus_health(v.uuid, j.dump());
}

// Creates (if missing) and publishes the volume's nexus on v.target->node from its
// current replicas, and records the URI in `v` (the caller persists). Children the
// health document records as unhealthy are left out (never a stale source).
Status ControlPlane::ensure_nexus(VolumeSpec& v) {
  const std::string target = v.target->node;
  auto e = engine(target);
  if (!e) return make_error(Errc::kUnavailable, "node '{}' for the nexus is not online", target);
  auto stale = unhealthy_replicas(v.uuid);
  if (!stale) return stale.status();
  // Whether the nexus exists, as the node's last poll saw it. That view may be out of date
  // (a nexus destroyed since): a publish that finds no nexus makes it after all.
  bool exists = false;
  {
    std::lock_guard lk(mu_);
    auto snap = snapshots_.find(target);
    if (snap != snapshots_.end() && snap->second.ok) {
      for (const auto& n : snap->second.data.nexuses) exists = exists || n.name == v.uuid;
    }
  }
  auto create = [&]() -> Status {
    if (Status s = translate_health(v, target); !s) return s;
    std::vector<std::string> uris;
    std::vector<std::string> skipped;
    std::vector<std::string> left_out;  // online replicas that will not be children
    for (const auto& r : v.replicas) {
      if (r.state != ReplicaState::kOnline) continue;
      if (stale->count(r.uuid)) {
        skipped.push_back(r.uuid + " (recorded stale)");
        left_out.push_back(r.uuid);
        continue;
      }
      auto uri = child_uri(r, target);
      if (!uri) {
        skipped.push_back(fmt::format("{} ({})", r.uuid, uri.status().message()));
        left_out.push_back(r.uuid);
        continue;
      }
      uris.push_back(*uri);
    }
    if (uris.empty()) {
      std::string why;
      for (const auto& s : skipped) why += (why.empty() ? "" : "; ") + s;
      return make_error(Errc::kUnavailable, "volume {} has no current replica to build a nexus from{}{}",
                        v.uuid, why.empty() ? "" : ": ", why);
    }
    // The view that said "no nexus" may be out of date (castor-control restarted, a
    // snapshot from before a create): ask the engine. The volume's latest nexus is kept
    // (creating another would raise the generation and so fence the one serving the
    // volume); a nexus of an older generation there is a leftover, replaced. An engine
    // that does not answer is no "no nexus": it may hold the one serving the volume and
    // be busy (a child removal waiting for a stuck rebuild copy holds its nexus for up to
    // twice the child I/O timeout). Creating blind would raise the generation, the
    // create would meet that nexus (AlreadyExists) and leave it serving under a
    // superseded generation: every health record it writes refused, for good.
    auto snap = e->snapshot();
    if (!snap) {
      return make_error(snap.status().code(), "cannot tell whether node '{}' holds the nexus of volume {}: {}", target,
                        v.uuid, snap.status().message());
    }
    for (const auto& n : snap->nexuses) {
      if (n.name != v.uuid) continue;
      if (n.generation == v.nexus_generation) return Status::ok();
      spdlog::info("volume {}: node {} holds a nexus of generation {} (the volume's is {}): replacing it", v.uuid,
                   target, n.generation, v.nexus_generation);
      if (Status s = teardown_nexus(target, v.uuid); !s) return s;
    }
    // The new nexus's generation is durable before it exists: a later one is always higher.
    ++v.nexus_generation;
    if (Status s = persist_volume(v); !s) return s;
    if (crash("nexus:create")) return make_error(Errc::kInternal, "crash point");
    std::map<std::string, std::string> options{{"generation", std::to_string(v.nexus_generation)}};
    if (opts_.nexus_child_io_timeout_ms) {
      options["child_io_timeout_ms"] = std::to_string(opts_.nexus_child_io_timeout_ms);
    }
    if (opts_.rebuild_busy_rate_mb_s) {
      options["busy_rate_mb_s"] = std::to_string(opts_.rebuild_busy_rate_mb_s);
    }
    auto made = e->create_nexus(v.uuid, v.uuid, v.size_bytes, uris, options);
    if (!made && made.status().code() == Errc::kAlreadyExists) {
      // A nexus appeared between the snapshot and the create. It is ours only if it has
      // the generation just made durable; any other would serve under a superseded
      // generation (its health records refused): not success, and the next pass
      // replaces it as a leftover.
      auto again = e->snapshot();
      for (const auto& n : again ? again->nexuses : std::vector<EngineNexus>{}) {
        if (n.name == v.uuid && n.generation == v.nexus_generation) made = n;
      }
      if (!made) {
        return make_error(Errc::kUnavailable,
                          "node '{}' created a nexus for volume {} meanwhile, not of generation {} "
                          "(replaced on the next pass)",
                          target, v.uuid, v.nexus_generation);
      }
    }
    if (!made) {
      return make_error(made.status().code(), "cannot create the nexus of volume {} on node '{}': {}",
                        v.uuid, target, made.status().message());
    }
    spdlog::info("volume {}: nexus created on node {} with {} child(ren)", v.uuid, target, uris.size());
    // A replica the new nexus does not have misses its writes from now on: it is no
    // longer current, whatever the spec said. Recorded `new`, it is added back to the
    // nexus (a full rebuild) like any replica waiting for one. Left `online`, the volume
    // would report it current, and nothing would ever add it (a nexus re-created while
    // it resynced children after an unclean end kept only its source, with the volume
    // reported online with three replicas).
    for (auto& r : v.replicas) {
      if (std::find(left_out.begin(), left_out.end(), r.uuid) == left_out.end()) continue;
      r.state = ReplicaState::kNew;
      r.reason = "left out of the nexus created on " + target;
      spdlog::warn("volume {}: replica {} on node {} is not in the new nexus: to be added back and rebuilt",
                   v.uuid, r.uuid, r.node);
    }
    return Status::ok();
  };
  if (!exists) {
    if (Status s = create(); !s) return s;
  }
  if (crash("nexus:publish")) return make_error(Errc::kInternal, "crash point");
  auto uri = e->publish_nexus(v.uuid, v.protocol, v.target->allowed_hosts);
  if (!uri && uri.status().code() == Errc::kNotFound && exists) {
    if (Status s = create(); !s) return s;
    uri = e->publish_nexus(v.uuid, v.protocol, v.target->allowed_hosts);
  }
  if (!uri) {
    return make_error(uri.status().code(), "cannot publish the nexus of volume {} on node '{}': {}",
                      v.uuid, target, uri.status().message());
  }
  v.target->uri = *uri;
  return Status::ok();
}

// Unpublishes and destroys the nexus of volume `uuid` on `node`. Ok when it is not
// there (or the node is away: the garbage collector gets it when the node is back).
Status ControlPlane::teardown_nexus(const std::string& node, const std::string& uuid) {
  auto e = engine(node);
  if (!e) return Status::ok();
  Status s = e->unpublish_nexus(uuid);
  if (!s && s.code() != Errc::kNotFound) return s;
  s = e->destroy_nexus(uuid);
  if (!s && s.code() != Errc::kNotFound) return s;
  std::lock_guard lk(mu_);
  if (auto snap = snapshots_.find(node); snap != snapshots_.end()) {
    auto& nx = snap->second.data.nexuses;
    nx.erase(std::remove_if(nx.begin(), nx.end(), [&](const auto& n) { return n.name == uuid; }), nx.end());
  }
  return Status::ok();
}

// Unshares and destroys a replica. Ok when it is gone already. Unavailable when its node
// is away (the garbage collector destroys it when the node is back, as no spec names it).
Status ControlPlane::destroy_replica(const ReplicaSpec& r) {
  auto e = engine(r.node);
  if (!e) return make_error(Errc::kUnavailable, "node '{}' is not online", r.node);
  Status s = e->unshare_replica(r.uuid);
  if (!s && s.code() != Errc::kNotFound) return s;
  s = e->destroy_replica(r.uuid);
  if (!s && s.code() != Errc::kNotFound) return s;
  return Status::ok();
}

// ---------------------------------------------------------------- create / destroy

Result<VolumeView> ControlPlane::create_volume(const CreateVolumeArgs& args) {
  if (Status s = validate_create(args); !s) return s;
  const Protocol proto = *parse_protocol(args.protocol);
  VolumeSpec v;
  v.uuid = args.uuid.empty() ? Uuid::random().to_string() : args.uuid;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, existing] : volumes_) {
      if (id != v.uuid && (args.name.empty() || existing.name != args.name)) continue;
      if (!same_request(existing, args, proto) || (id != v.uuid && !args.uuid.empty())) {
        return make_error(Errc::kAlreadyExists,
                          "volume {} ({}) exists with other parameters", id,
                          existing.name.empty() ? "no name" : existing.name);
      }
      if (existing.status == SpecStatus::kCreated) return view_locked(existing);
      return make_error(Errc::kAborted, "volume {} is being {} (retry later)", id,
                        existing.status == SpecStatus::kCreating ? "created" : "deleted");
    }
    uint32_t usable = 0;
    for (const auto& [n, s] : nodes_) usable += node_usable_locked(n);
    if (usable < args.replica_count) {
      return make_error(Errc::kBusy,
                        "{} replica(s) need as many online, uncordoned nodes; the cluster has {}",
                        args.replica_count, usable);
    }
  }
  auto lock = VolumeLock::acquire(*this, v.uuid, Holder::kApi);
  if (!lock) return lock.status();
  v.name = args.name;
  v.size_bytes = args.size_bytes;
  v.replica_count = args.replica_count;
  v.thin = args.thin;
  v.protocol = proto;
  v.topology = args.topology;
  v.labels = args.labels;
  v.status = SpecStatus::kCreating;
  v.op = OperationRecord{.kind = OpKind::kCreate, .started_unix_ms = unix_ms()};

  auto placed = place(v, v.replica_count);
  if (!placed) return placed.status();  // nothing made, nothing recorded
  v.replicas = std::move(*placed);
  if (Status s = persist_volume(v); !s) return s;
  if (crash("create:replicas")) return make_error(Errc::kInternal, "crash point");

  std::vector<std::string> ids;
  for (const auto& r : v.replicas) ids.push_back(r.uuid);
  if (Status s = create_replicas(v, ids); !s) {
    spdlog::info("volume {}: create failed, undoing: {}", v.uuid, s.message());
    bool undone = true;
    for (const auto& r : v.replicas) {
      if (Status d = destroy_replica(r); !d) {
        undone = false;
        spdlog::warn("volume {}: cannot destroy replica {} on {}: {}", v.uuid, r.uuid, r.node,
                     d.to_string());
      }
    }
    if (undone) {
      (void)erase_volume(v);
    } else {
      v.status = SpecStatus::kDeleting;  // the reconciler finishes the undo
      v.op = {};
      (void)persist_volume(v);
    }
    return s;
  }
  if (crash("create:commit")) return make_error(Errc::kInternal, "crash point");
  // Fresh replicas hold the same (no) data: all are current.
  for (auto& r : v.replicas) r.state = ReplicaState::kOnline;
  v.status = SpecStatus::kCreated;
  v.op = {};
  if (Status s = persist_volume(v); !s) return s;
  spdlog::info("volume {} created: {} bytes, {} replica(s) on {}", v.uuid, v.size_bytes,
               v.replica_count, [&] {
                 std::string s;
                 for (const auto& r : v.replicas) s += (s.empty() ? "" : ",") + r.node;
                 return s;
               }());
  std::lock_guard lk(mu_);
  return view_locked(v);
}

Status ControlPlane::destroy_volume(const std::string& uuid) {
  VolumeSpec v;
  auto lock = VolumeLock::acquire(*this, uuid, Holder::kApi);
  if (!lock) return lock.status();
  {
    std::lock_guard lk(mu_);
    auto it = volumes_.find(uuid);
    if (it == volumes_.end()) return make_error(Errc::kNotFound, "no volume {}", uuid);
    v = it->second;
  }
  v.status = SpecStatus::kDeleting;
  v.op = OperationRecord{.kind = OpKind::kDestroy, .started_unix_ms = unix_ms()};
  if (Status s = persist_volume(v); !s) return s;
  if (crash("destroy:nexus")) return make_error(Errc::kInternal, "crash point");
  if (v.target) {
    if (Status s = teardown_nexus(v.target->node, v.uuid); !s) return s;
    v.target.reset();
  }
  if (crash("destroy:replicas")) return make_error(Errc::kInternal, "crash point");
  for (const auto& r : v.replicas) {
    if (Status s = destroy_replica(r); !s && s.code() != Errc::kUnavailable) return s;
  }
  if (Status s = erase_volume(v); !s) return s;
  spdlog::info("volume {} destroyed", uuid);
  return Status::ok();
}

// ---------------------------------------------------------------- queries

Result<std::pair<std::vector<VolumeView>, std::string>> ControlPlane::list_volumes(
    uint32_t max, const std::string& token) {
  std::lock_guard lk(mu_);
  auto it = volumes_.begin();
  if (!token.empty()) {
    auto parsed = Uuid::parse(token);
    if (!parsed) return make_error(Errc::kAborted, "bad starting token '{}'", token);
    it = volumes_.upper_bound(token);
  }
  std::vector<VolumeView> out;
  std::string next;
  for (; it != volumes_.end(); ++it) {
    if (max && out.size() == max) {
      next = out.back().spec.uuid;
      break;
    }
    out.push_back(view_locked(it->second));
  }
  return std::make_pair(std::move(out), next);
}

Result<VolumeView> ControlPlane::get_volume(const std::string& id) {
  std::lock_guard lk(mu_);
  if (auto it = volumes_.find(id); it != volumes_.end()) return view_locked(it->second);
  for (const auto& [u, v] : volumes_) {
    if (!v.name.empty() && v.name == id) return view_locked(v);
  }
  return make_error(Errc::kNotFound, "no volume {}", id);
}

// ---------------------------------------------------------------- publish

Result<VolumeView> ControlPlane::publish_volume(const PublishArgs& args) {
  for (const auto& h : args.allowed_hosts) {
    if (h.empty() || h.size() > 223) return make_error(Errc::kInvalidArgument, "bad host name '{}'", h);
  }
  if (!args.node.empty() && !valid_object_name(args.node)) {
    return make_error(Errc::kInvalidArgument, "bad node name '{}'", args.node);
  }
  auto lock = VolumeLock::acquire(*this, args.uuid, Holder::kApi);
  if (!lock) return lock.status();
  VolumeSpec v;
  std::string node;
  {
    std::lock_guard lk(mu_);
    auto it = volumes_.find(args.uuid);
    if (it == volumes_.end()) return make_error(Errc::kNotFound, "no volume {}", args.uuid);
    v = it->second;
    if (v.status != SpecStatus::kCreated) {
      return make_error(Errc::kBusy, "volume {} is {}", v.uuid, spec_status_name(v.status));
    }
    if (v.target) {
      auto want = args.allowed_hosts, have = v.target->allowed_hosts;
      std::sort(want.begin(), want.end());
      std::sort(have.begin(), have.end());
      if (want != have) {
        return make_error(Errc::kBusy,
                          "volume {} is published on node '{}' for other hosts (unpublish first)",
                          v.uuid, v.target->node);
      }
      if (!v.target->uri.empty()) return view_locked(v);
      node = v.target->node;  // a publish that has not finished: finish it
    }
  }
  if (node.empty()) {
    std::lock_guard lk(mu_);
    auto chosen = choose_nexus_node(nexus_candidates_locked(v), args.node);
    if (!chosen) return chosen.status();
    node = *chosen;
  }
  v.target = TargetSpec{.node = node,
                        .allowed_hosts = args.allowed_hosts,
                        .frontend_node = args.frontend_node,
                        .uri = {}};
  v.op = OperationRecord{.kind = OpKind::kPublish, .started_unix_ms = unix_ms()};
  if (Status s = persist_volume(v); !s) return s;
  if (crash("publish:nexus")) return make_error(Errc::kInternal, "crash point");
  if (Status s = ensure_nexus(v); !s) {
    spdlog::info("volume {}: publish on {} failed, undoing: {}", v.uuid, node, s.message());
    (void)teardown_nexus(node, v.uuid);
    v.target.reset();
    v.op = {};
    (void)persist_volume(v);
    return s;
  }
  if (crash("publish:record")) return make_error(Errc::kInternal, "crash point");  // published, not recorded
  v.op = {};
  if (Status s = persist_volume(v); !s) return s;
  spdlog::info("volume {} published on node {} at {}", v.uuid, node, v.target->uri);
  poke();  // new replicas waiting for a nexus get added
  std::lock_guard lk(mu_);
  return view_locked(v);
}

Result<VolumeView> ControlPlane::unpublish_volume(const std::string& uuid) {
  auto lock = VolumeLock::acquire(*this, uuid, Holder::kApi);
  if (!lock) return lock.status();
  VolumeSpec v;
  {
    std::lock_guard lk(mu_);
    auto it = volumes_.find(uuid);
    if (it == volumes_.end()) return make_error(Errc::kNotFound, "no volume {}", uuid);
    v = it->second;
    if (!v.target) return view_locked(v);
  }
  v.op = OperationRecord{.kind = OpKind::kUnpublish, .started_unix_ms = unix_ms()};
  if (Status s = persist_volume(v); !s) return s;
  if (crash("unpublish:nexus")) return make_error(Errc::kInternal, "crash point");
  if (Status s = teardown_nexus(v.target->node, v.uuid); !s) return s;
  spdlog::info("volume {} unpublished from node {}", v.uuid, v.target->node);
  v.target.reset();
  v.op = {};
  if (Status s = persist_volume(v); !s) return s;
  std::lock_guard lk(mu_);
  return view_locked(v);
}

// ---------------------------------------------------------------- resize / scale

// Grows a volume, published or not, while its application keeps doing I/O:
//  1. every replica grows (GrowReplica; the spec still says the old size, so a failure
//     or a crash here leaves a volume that works at the old size: a replica already grown
//     is merely larger than it needs to be, and the next resize uses it);
//  2. the new size is recorded: from here on a nexus (re)created anywhere is made at it,
//     and every replica can hold it;
//  3. a published volume's nexus grows (ResizeNexus on the target node), which tells its
//     hosts (NVMe-oF: a namespace-attribute notice; iSCSI: unit attention 2A/09).
// A failure in 3 leaves the nexus serving the old size with the new one recorded; the
// reconciler grows it at its next passes, as do the next resize and a republish. NBD
// cannot tell its clients about a new size: a volume published over NBD is refused.
Result<VolumeView> ControlPlane::resize_volume(const std::string& uuid, uint64_t size_bytes) {
  if (size_bytes == 0 || size_bytes % kVolumeAlign) {
    return make_error(Errc::kInvalidArgument, "volume size {} is not a positive multiple of {}",
                      size_bytes, kVolumeAlign);
  }
  auto lock = VolumeLock::acquire(*this, uuid, Holder::kApi);
  if (!lock) return lock.status();
  VolumeSpec v;
  {
    std::lock_guard lk(mu_);
    auto it = volumes_.find(uuid);
    if (it == volumes_.end()) return make_error(Errc::kNotFound, "no volume {}", uuid);
    v = it->second;
    if (size_bytes < v.size_bytes) {
      return make_error(Errc::kInvalidArgument, "volume {} is {} bytes; it cannot shrink to {}",
                        uuid, v.size_bytes, size_bytes);
    }
    if (v.status != SpecStatus::kCreated) {
      return make_error(Errc::kBusy, "volume {} is {}", uuid, spec_status_name(v.status));
    }
    if (v.target && v.protocol == Protocol::kNbd) {
      return make_error(Errc::kBusy,
                        "volume {} is published over NBD, which cannot tell its clients about a "
                        "new size; unpublish it to resize",
                        uuid);
    }
    if (size_bytes == v.size_bytes) {
      // Done, unless a published volume's nexus is still smaller (an earlier resize
      // failed at its last step): then this call finishes it.
      if (!v.target || nexus_size_locked(v) >= size_bytes) return view_locked(v);
    }
    for (const auto& r : v.replicas) {
      if (r.state == ReplicaState::kRemoving) continue;
      if (!node_states_.count(r.node) || node_states_.at(r.node).status != NodeStatus::kOnline) {
        return make_error(Errc::kUnavailable, "node '{}' of replica {} is not online", r.node,
                          r.uuid);
      }
    }
    if (v.target && (!node_states_.count(v.target->node) ||
                     node_states_.at(v.target->node).status != NodeStatus::kOnline)) {
      return make_error(Errc::kUnavailable, "node '{}' of the nexus of volume {} is not online",
                        v.target->node, uuid);
    }
  }
  const uint64_t old_size = v.size_bytes;
  v.op = OperationRecord{.kind = OpKind::kResize, .started_unix_ms = unix_ms()};
  if (Status s = persist_volume(v); !s) return s;
  // The operation ends (its record cleared, so the reconciler looks after the volume
  // again) with what is recorded by then.
  auto end_op = [&](Status s) -> Status {
    v.op = {};
    if (Status p = persist_volume(v); !p) {
      spdlog::warn("volume {}: cannot clear its resize record: {}", uuid, p.to_string());
    }
    return s;
  };
  if (crash("resize:replicas")) return make_error(Errc::kInternal, "crash point");
  // 1. The replicas. A faulted one that cannot grow is left: it is not current, and it is
  // replaced (or grown before it is brought back); as a nexus child it makes step 3 fail.
  for (const auto& r : v.replicas) {
    if (r.state == ReplicaState::kRemoving || r.state == ReplicaState::kCreating) continue;
    auto e = engine(r.node);
    Status s = e ? e->grow_replica(r.uuid, size_bytes)
                 : make_error(Errc::kUnavailable, "node '{}' is not online", r.node);
    if (!s && r.state == ReplicaState::kFaulted) {
      spdlog::warn("volume {}: faulted replica {} on node '{}' not grown: {}", uuid, r.uuid, r.node,
                   s.to_string());
      continue;
    }
    if (!s) {
      return end_op(make_error(
          s.code(),
          "volume {}: cannot grow replica {} on node '{}': {}. The volume is unchanged at {} bytes "
          "(replicas grown so far keep their larger size, which the next resize reuses); retry",
          uuid, r.uuid, r.node, s.message(), old_size));
    }
  }
  // 2. The new size, recorded.
  if (crash("resize:record")) return make_error(Errc::kInternal, "crash point");
  v.size_bytes = size_bytes;
  if (Status s = persist_volume(v); !s) return s;
  // 3. The nexus.
  if (v.target) {
    if (crash("resize:nexus")) return make_error(Errc::kInternal, "crash point");
    auto e = engine(v.target->node);
    auto grown = e ? e->resize_nexus(v.uuid, size_bytes)
                   : Result<EngineNexus>(make_error(Errc::kUnavailable, "node '{}' is not online",
                                                    v.target->node));
    if (!grown) {
      return end_op(make_error(
          grown.status().code(),
          "volume {}: every replica has grown and {} bytes is recorded, but its nexus on node '{}' "
          "has not grown: {}. It keeps serving {} bytes and no data is lost; castor-control "
          "retries growing it, and so do the next resize and a republish",
          uuid, size_bytes, v.target->node, grown.status().message(), old_size));
    }
    std::lock_guard lk(mu_);
    if (auto snap = snapshots_.find(v.target->node); snap != snapshots_.end()) {
      for (auto& n : snap->second.data.nexuses) {
        if (n.name == v.uuid) n.size_bytes = grown->size_bytes;
      }
    }
  }
  if (Status s = end_op(Status::ok()); !s) return s;
  spdlog::info("volume {} resized from {} to {} bytes{}", uuid, old_size, size_bytes,
               v.target ? fmt::format(" (published on node {}: its hosts were told)", v.target->node) : "");
  std::lock_guard lk(mu_);
  return view_locked(v);
}

// The size of the volume's nexus as its node's last poll saw it; 0 if not seen.
uint64_t ControlPlane::nexus_size_locked(const VolumeSpec& v) const {
  if (!v.target) return 0;
  auto snap = snapshots_.find(v.target->node);
  if (snap == snapshots_.end() || !snap->second.ok) return 0;
  for (const auto& n : snap->second.data.nexuses) {
    if (n.name == v.uuid) return n.size_bytes;
  }
  return 0;
}

Result<VolumeView> ControlPlane::scale_volume(const std::string& uuid, uint32_t count) {
  if (count == 0 || count > kMaxReplicas) {
    return make_error(Errc::kInvalidArgument, "replica count {} is not 1 to {}", count, kMaxReplicas);
  }
  auto lock = VolumeLock::acquire(*this, uuid, Holder::kApi);
  if (!lock) return lock.status();
  VolumeSpec v;
  {
    std::lock_guard lk(mu_);
    auto it = volumes_.find(uuid);
    if (it == volumes_.end()) return make_error(Errc::kNotFound, "no volume {}", uuid);
    v = it->second;
    if (v.status != SpecStatus::kCreated) {
      return make_error(Errc::kBusy, "volume {} is {}", uuid, spec_status_name(v.status));
    }
    if (count == v.replica_count) return view_locked(v);
    uint32_t usable = 0;
    for (const auto& [n, s] : nodes_) usable += node_usable_locked(n);
    if (count > v.replica_count && usable < count) {
      return make_error(Errc::kBusy, "{} replicas need as many online, uncordoned nodes; the "
                                     "cluster has {}",
                        count, usable);
    }
  }
  v.replica_count = count;
  if (Status s = persist_volume(v); !s) return s;
  spdlog::info("volume {} scaled to {} replica(s)", uuid, count);
  poke();
  std::lock_guard lk(mu_);
  return view_locked(v);
}

}  // namespace castor::control
