// ControlPlane: the reconciler. Each pass compares the specs with what the engines
// report and takes the next step toward the specs. Every step is idempotent and is
// recorded in the spec before (or as) it acts, so a crash anywhere is repaired by the
// next pass of this or another castor-control.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "control/control_plane.h"
#include "control/volume_lock.h"

namespace castor::control {

void ControlPlane::run() {
  for (;;) {
    {
      std::unique_lock lk(run_mu_);
      run_cv_.wait_for(lk, std::chrono::milliseconds(opts_.reconcile_period_ms),
                       [&] { return poked_ || stopping_; });
      if (stopping_) return;
      poked_ = false;
    }
    reconcile_once();
  }
}

void ControlPlane::reconcile_once() {
  check_liveness();
  take_snapshots();
  reconcile_pools();
  std::vector<VolumeSpec> vols;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, v] : volumes_) vols.push_back(v);
  }
  for (auto& v : vols) reconcile_volume(std::move(v));
  collect_garbage();
  uint64_t pass;
  {
    std::lock_guard lk(mu_);
    pass = ++passes_;
  }
  if (opts_.compact_every_passes && pass % opts_.compact_every_passes == 0) {
    if (Status s = store_.compact(); !s) spdlog::warn("store compaction failed: {}", s.to_string());
  }
}

// A node silent past the deadline is probed; if it does not answer it is Offline. (A
// node that answers but does not heartbeat stays Online: it serves I/O, which is what
// matters to its volumes.)
void ControlPlane::check_liveness() {
  std::vector<std::pair<std::string, std::string>> probe;  // node, endpoint
  const int64_t now = steady_ms();
  {
    std::lock_guard lk(mu_);
    for (auto& [name, st] : node_states_) {
      if (st.status == NodeStatus::kOffline) continue;
      if (now - st.last_seen_ms > static_cast<int64_t>(opts_.node_deadline_ms)) {
        probe.emplace_back(name, nodes_.at(name).grpc_endpoint);
      }
    }
  }
  for (const auto& [name, endpoint] : probe) {
    auto client = engines_.connect(name, endpoint);
    bool answers = client && client->ping().is_ok();
    std::lock_guard lk(mu_);
    auto& st = node_states_[name];
    if (answers) {
      if (st.status == NodeStatus::kUnknown && !st.instance_uuid.empty()) continue;
      if (st.status != NodeStatus::kOnline) spdlog::info("node {} answers: online", name);
      st.status = NodeStatus::kOnline;
      st.last_seen_ms = steady_ms();
    } else if (st.status != NodeStatus::kOffline) {
      spdlog::warn("node {} missed its heartbeats and does not answer: offline", name);
      st.status = NodeStatus::kOffline;
      snapshots_.erase(name);
    }
  }
}

bool ControlPlane::suspected_locked(const std::string& node) const {
  auto st = node_states_.find(node);
  if (st == node_states_.end() || st->second.status != NodeStatus::kOnline) return false;
  return steady_ms() - st->second.last_seen_ms > 3 * static_cast<int64_t>(opts_.heartbeat_interval_ms);
}

// One snapshot per online engine, read by up to kSnapshotThreads threads at once: each
// read is four RPCs, and a pass over a thousand engines one after the other would take
// seconds (or a dead engine's timeout, several times over).
void ControlPlane::take_snapshots() {
  constexpr size_t kSnapshotThreads = 16;
  std::vector<std::pair<std::string, std::string>> online;  // node, instance
  {
    std::lock_guard lk(mu_);
    for (const auto& [name, st] : node_states_) {
      // A suspected node keeps its last snapshot until the liveness check decides.
      if (st.status == NodeStatus::kOnline && !suspected_locked(name)) online.emplace_back(name, st.instance_uuid);
    }
  }
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < online.size();) {
      const auto& [name, instance] = online[i];
      auto e = engine(name);
      if (!e) continue;
      const int64_t taken = steady_ms();
      auto snap = e->snapshot();
      std::lock_guard lk(mu_);
      auto& s = snapshots_[name];
      s.ok = snap.is_ok();
      s.instance = instance;
      s.taken_ms = taken;
      if (snap) {
        s.data = std::move(*snap);
      } else {
        spdlog::debug("node {}: snapshot failed: {}", name, snap.status().to_string());
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(kSnapshotThreads, online.size()); ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
}

void ControlPlane::reconcile_pools() {
  std::vector<PoolSpec> pools;
  {
    std::lock_guard lk(mu_);
    for (const auto& [k, p] : pools_) pools.push_back(p);
  }
  for (auto& p : pools) {
    bool present = false;
    {
      std::lock_guard lk(mu_);
      auto snap = snapshots_.find(p.node);
      if (snap == snapshots_.end() || !snap->second.ok) continue;
      for (const auto& r : snap->second.data.pools) present = present || r.name == p.name;
    }
    auto e = engine(p.node);
    if (!e) continue;
    const std::string key = p.node + "/" + p.name;
    if (p.status == SpecStatus::kDeleting) {
      Status s = present ? e->destroy_pool(p.name) : Status::ok();
      if (s || s.code() == Errc::kNotFound) {
        if (store_.del(pool_key(p.node, p.name))) {
          std::lock_guard lk(mu_);
          pools_.erase(key);
          pool_errors_.erase(key);
        }
      }
      continue;
    }
    if (present) {
      if (p.status == SpecStatus::kCreating) {
        p.status = SpecStatus::kCreated;
        if (store_.put(pool_key(p.node, p.name), to_json(p))) {
          std::lock_guard lk(mu_);
          pools_[key] = p;
        }
      }
      std::lock_guard lk(mu_);
      pool_errors_.erase(key);
      continue;
    }
    // Missing on a live engine: a declared pool is created (once) or imported (always
    // after the first success: formatting a pool's disks again would lose its data).
    Result<PoolReport> made = make_error(Errc::kNotFound, "");
    if (p.status == SpecStatus::kCreating) {
      made = e->create_pool(p.name, p.disks, p.cluster_size);
      if (!made && (made.status().code() == Errc::kAlreadyExists || made.status().code() == Errc::kBusy)) {
        made = e->import_pool(p.disks);
      }
    } else {
      made = e->import_pool(p.disks);
    }
    std::lock_guard lk(mu_);
    if (!made) {
      if (pool_errors_[key] != made.status().message()) {
        spdlog::warn("pool {} on node {}: {}", p.name, p.node, made.status().message());
      }
      pool_errors_[key] = made.status().message();
      continue;
    }
    spdlog::info("pool {} on node {} {}", p.name, p.node,
                 p.status == SpecStatus::kCreating ? "created" : "imported");
    pool_errors_.erase(key);
    snapshots_[p.node].data.pools.push_back(*made);
    if (p.status == SpecStatus::kCreating) {
      p.status = SpecStatus::kCreated;
      if (store_.put(pool_key(p.node, p.name), to_json(p))) pools_[key] = p;
    }
  }
}

void ControlPlane::reconcile_volume(VolumeSpec v) {
  auto lock = VolumeLock::acquire(*this, v.uuid, Holder::kReconciler);
  if (!lock) return;
  {
    // The copy may be stale: an API operation may have changed the spec since.
    std::lock_guard lk(mu_);
    auto it = volumes_.find(v.uuid);
    if (it == volumes_.end()) return;
    v = it->second;
  }
  if (v.op.kind != OpKind::kNone) return;  // an API operation owns it (or crashed: recovered at start)

  if (v.status == SpecStatus::kDeleting) {
    if (v.target) {
      if (!teardown_nexus(v.target->node, v.uuid)) return;
      v.target.reset();
    }
    std::vector<ReplicaSpec> left;
    for (const auto& r : v.replicas) {
      Status s = destroy_replica(r);
      // A replica on an unreachable node is left to the garbage collector.
      if (!s && s.code() != Errc::kUnavailable) left.push_back(r);
    }
    if (left.empty()) {
      if (erase_volume(v)) spdlog::info("volume {} deleted", v.uuid);
      return;
    }
    v.replicas = std::move(left);
    (void)persist_volume(v);
    return;
  }
  if (v.status != SpecStatus::kCreated) return;

  const uint64_t now_unix = unix_ms();
  bool dirty = false;
  // Replicas recorded but maybe never made (a crash, or a node that was away).
  std::vector<std::string> creating;
  for (auto& r : v.replicas) {
    if (r.state == ReplicaState::kCreating) creating.push_back(r.uuid);
  }
  if (!creating.empty()) {
    Status s = create_replicas(v, creating);
    dirty = true;
    if (!s) {
      for (const auto& id : creating) {
        ReplicaSpec* r = v.find_replica(id);
        if (r && r->state == ReplicaState::kCreating) {
          r->state = ReplicaState::kRemoving;
          r->reason = s.message();
        }
      }
    }
  }

  // What the replicas' engines say: a replica missing from its live engine (pool
  // imported, replica gone) is faulted; one on a node that is down is faulted too once
  // the node is declared Offline.
  {
    std::lock_guard lk(mu_);
    for (auto& r : v.replicas) {
      if (r.state != ReplicaState::kOnline && r.state != ReplicaState::kNew) continue;
      auto st = node_states_.find(r.node);
      if (st == node_states_.end() || st->second.status == NodeStatus::kOffline) {
        if (!v.target) continue;  // nothing reads or writes it now: decide at publish
        r.state = ReplicaState::kFaulted;
        r.reason = "node offline";
        r.faulted_unix_ms = now_unix;
        dirty = true;
        continue;
      }
      auto snap = snapshots_.find(r.node);
      if (snap == snapshots_.end() || !snap->second.ok) continue;
      if (auto ch = changed_ms_.find(v.uuid); ch != changed_ms_.end() && snap->second.taken_ms <= ch->second) {
        continue;  // read before the spec's last change: it may predate this replica
      }
      bool pool_up = false, found = false;
      for (const auto& p : snap->second.data.pools) pool_up = pool_up || p.name == r.pool;
      for (const auto& er : snap->second.data.replicas) found = found || er.uuid == r.uuid;
      if (pool_up && !found) {
        r.state = ReplicaState::kFaulted;
        r.reason = "missing from its pool";
        r.faulted_unix_ms = now_unix;
        dirty = true;
      }
    }
  }
  if (dirty) {
    if (!persist_volume(v)) return;
    dirty = false;
  }

  // Grow replicas below the volume size (a resize the crash or an absent node cut short).
  for (auto& r : v.replicas) {
    if (r.state == ReplicaState::kRemoving || r.state == ReplicaState::kFaulted) continue;
    bool small = false;
    {
      std::lock_guard lk(mu_);
      auto snap = snapshots_.find(r.node);
      if (snap == snapshots_.end() || !snap->second.ok) continue;
      for (const auto& er : snap->second.data.replicas) {
        small = small || (er.uuid == r.uuid && er.size_bytes < v.size_bytes);
      }
    }
    if (auto e = small ? engine(r.node) : nullptr) (void)e->grow_replica(r.uuid, v.size_bytes);
  }

  if (v.target) reconcile_target(v);

  // Replica count: replace faulted replicas whose wait is over, add missing ones, and
  // retire extra ones.
  uint32_t waiting = 0;
  for (const auto& r : v.replicas) {
    if (r.state == ReplicaState::kFaulted &&
        now_unix - r.faulted_unix_ms < opts_.faulted_child_wait_ms) {
      ++waiting;
    }
  }
  const uint32_t live = v.live_replicas();
  if (v.online_replicas() == 0) {
    // No current replica is left to copy from: a replacement could never be rebuilt.
    // The volume stays faulted until a node with a current replica comes back.
    spdlog::debug("volume {}: no current replica; not placing replacements", v.uuid);
  } else if (live + waiting < v.replica_count) {
    auto placed = place(v, v.replica_count - live - waiting);
    if (!placed) {
      spdlog::debug("volume {}: cannot place a replacement now: {}", v.uuid, placed.status().message());
    } else {
      std::vector<std::string> ids;
      for (auto& r : *placed) {
        ids.push_back(r.uuid);
        spdlog::info("volume {}: new replica {} on node {} (pool {})", v.uuid, r.uuid, r.node, r.pool);
        v.replicas.push_back(std::move(r));
      }
      if (!persist_volume(v)) return;
      Status s = create_replicas(v, ids);
      if (!s) spdlog::warn("volume {}: {}", v.uuid, s.message());
      (void)persist_volume(v);  // created ones are New; the rest are retried next pass
    }
  }
  // Faulted replicas are retired once enough current replicas exist without them; extra
  // replicas beyond the count are retired too (non-local first).
  if (v.online_replicas() >= v.replica_count) {
    bool changed = false;
    for (auto& r : v.replicas) {
      if (r.state == ReplicaState::kFaulted) {
        r.state = ReplicaState::kRemoving;
        changed = true;
      }
    }
    uint32_t extra = v.live_replicas() > v.replica_count ? v.live_replicas() - v.replica_count : 0;
    auto retire = [&](bool local) {
      for (auto& r : v.replicas) {
        if (!extra) return;
        bool is_local = v.target && v.target->node == r.node;
        if (is_local != local || r.state == ReplicaState::kRemoving ||
            r.state == ReplicaState::kFaulted) {
          continue;
        }
        // Keep at least replica_count current ones: retire new ones first.
        if (r.state == ReplicaState::kOnline && v.online_replicas() <= v.replica_count) continue;
        r.state = ReplicaState::kRemoving;
        r.reason = "scaled down";
        --extra;
        changed = true;
      }
    };
    retire(false);
    retire(true);
    if (changed && !persist_volume(v)) return;
  }
  // Removing: out of the nexus, then destroyed, then out of the spec.
  std::vector<ReplicaSpec> keep;
  bool removed = false;
  for (const auto& r : v.replicas) {
    if (r.state != ReplicaState::kRemoving) {
      keep.push_back(r);
      continue;
    }
    if (v.target) {
      if (auto e = engine(v.target->node)) {
        std::string uri;
        {
          std::lock_guard lk(mu_);
          auto snap = snapshots_.find(v.target->node);
          if (snap != snapshots_.end()) {
            for (const auto& n : snap->second.data.nexuses) {
              if (n.name != v.uuid) continue;
              for (const auto& c : n.children) {
                if (replica_of_child_uri(c.uri) == r.uuid) uri = c.uri;
              }
            }
          }
        }
        if (!uri.empty()) {
          if (Status s = e->remove_child(v.uuid, uri); !s && s.code() != Errc::kNotFound) {
            spdlog::warn("volume {}: cannot remove child {}: {}", v.uuid, uri, s.to_string());
            keep.push_back(r);
            continue;
          }
        }
      } else {
        keep.push_back(r);  // the nexus node is away: it may still use the child
        continue;
      }
    }
    Status s = destroy_replica(r);
    if (!s && s.code() != Errc::kUnavailable) {
      keep.push_back(r);
      continue;
    }
    spdlog::info("volume {}: replica {} on node {} removed ({})", v.uuid, r.uuid, r.node,
                 r.reason.empty() ? "retired" : r.reason);
    removed = true;
  }
  if (removed) {
    v.replicas = std::move(keep);
    (void)persist_volume(v);
  }
}

// The published volume's nexus: exists on a live node, is published, and its children
// match the replicas.
void ControlPlane::reconcile_target(VolumeSpec& v) {
  const uint64_t now_unix = unix_ms();
  NodeStatus status = NodeStatus::kUnknown;
  bool draining = false;
  {
    std::lock_guard lk(mu_);
    if (auto st = node_states_.find(v.target->node); st != node_states_.end()) status = st->second.status;
    if (auto n = nodes_.find(v.target->node); n != nodes_.end()) draining = n->second.draining;
    // Silent: wait for the verdict (online again, or offline and the nexus moves) rather
    // than wait out request timeouts on a frozen or partitioned engine.
    if (status == NodeStatus::kOnline && !draining && suspected_locked(v.target->node)) return;
  }
  if (status == NodeStatus::kOffline || draining) {
    // Move the nexus: a new one on another node from the current children, at the same
    // NQN (nexus uuid = volume uuid). The old node's nexus, if it ever comes back, is
    // no longer in any spec and is garbage-collected.
    std::string node;
    {
      std::lock_guard lk(mu_);
      auto chosen = choose_nexus_node(nexus_candidates_locked(v), "", {v.target->node});
      if (!chosen) {
        spdlog::warn("volume {}: nexus node {} is {} and no other node can take it: {}", v.uuid,
                     v.target->node, draining ? "draining" : "offline", chosen.status().message());
        return;
      }
      node = *chosen;
    }
    const std::string old = v.target->node;
    if (draining && status == NodeStatus::kOnline) {
      // A planned move: the old path first becomes inaccessible (ANA), so a multipath
      // host stops sending to it and queues its I/O until the new path is live, instead
      // of finding the connection dropped. Best effort: the teardown follows anyway.
      if (auto e = engine(old); e && v.protocol == Protocol::kNvmf) {
        if (Status s = e->set_nexus_ana_state(v.uuid, "inaccessible"); !s && s.code() != Errc::kNotFound) {
          spdlog::warn("volume {}: cannot make the old path on {} inaccessible: {}", v.uuid, old, s.message());
        }
      }
      if (Status s = teardown_nexus(old, v.uuid); !s) {
        spdlog::warn("volume {}: cannot take the nexus off draining node {}: {}", v.uuid, old,
                     s.to_string());
        return;
      }
    }
    v.target->node = node;
    v.target->uri.clear();
    if (!persist_volume(v)) return;
    spdlog::info("volume {}: nexus moves from {} node {} to node {}", v.uuid,
                 draining ? "draining" : "offline", old, node);
  } else if (status != NodeStatus::kOnline) {
    return;  // unknown: wait for the deadline to decide
  }

  const EngineNexus* nexus = nullptr;
  EngineNexus copy;
  {
    std::lock_guard lk(mu_);
    auto snap = snapshots_.find(v.target->node);
    if (snap != snapshots_.end() && snap->second.ok) {
      for (const auto& n : snap->second.data.nexuses) {
        if (n.name == v.uuid) {
          copy = n;
          nexus = &copy;
        }
      }
    }
  }
  auto e = engine(v.target->node);
  if (!e) return;
  // No nexus, or not published, or published but not recorded (castor-control stopped
  // between the engine's answer and writing the URI): ensure_nexus finishes it.
  if (!nexus || nexus->uris.empty() || v.target->uri.empty()) {
    const std::string before = v.target->uri;
    std::vector<ReplicaState> states_before;
    for (const auto& r : v.replicas) states_before.push_back(r.state);
    if (Status s = ensure_nexus(v); !s) {
      spdlog::warn("volume {}: {}", v.uuid, s.message());
      return;
    }
    bool states_changed = false;
    for (size_t i = 0; i < v.replicas.size(); ++i) states_changed |= v.replicas[i].state != states_before[i];
    if (v.target->uri != before || states_changed) {
      // Only a change is written: a snapshot read before a publish finished shows no
      // nexus, and ensure_nexus then finds it and changes nothing. A nexus created
      // without some replica changed that replica's state.
      if (v.target->uri != before) {
        spdlog::info("volume {}: nexus on node {} published at {}", v.uuid, v.target->node, v.target->uri);
      }
      (void)persist_volume(v);
    }
    return;  // children are looked at next pass, from a fresh snapshot
  }
  // A nexus smaller than the volume: a resize recorded the new size (every replica had
  // grown) but could not grow the nexus. Grow it now (the engine checks its children).
  if (nexus->size_bytes < v.size_bytes && v.protocol != Protocol::kNbd) {
    if (auto grown = e->resize_nexus(v.uuid, v.size_bytes); grown) {
      spdlog::info("volume {}: nexus on node {} grown from {} to {} bytes (finishing a resize)", v.uuid,
                   v.target->node, nexus->size_bytes, grown->size_bytes);
      std::lock_guard lk(mu_);
      if (auto snap = snapshots_.find(v.target->node); snap != snapshots_.end()) {
        for (auto& n : snap->second.data.nexuses) {
          if (n.name == v.uuid) n.size_bytes = grown->size_bytes;
        }
      }
    } else {
      spdlog::warn("volume {}: nexus on node {} is {} bytes, the volume {}; cannot grow it yet: {}", v.uuid,
                   v.target->node, nexus->size_bytes, v.size_bytes, grown.status().message());
    }
  }

  auto node_offline = [&](const std::string& node) {
    std::lock_guard lk(mu_);
    auto st = node_states_.find(node);
    return st == node_states_.end() || st->second.status == NodeStatus::kOffline;
  };
  bool dirty = false;
  std::set<std::string> children;
  for (const auto& c : nexus->children) {
    auto id = replica_of_child_uri(c.uri);
    ReplicaSpec* r = id ? v.find_replica(*id) : nullptr;
    if (!r) {
      // Not a replica of the volume (any more): take it out.
      if (Status s = e->remove_child(v.uuid, c.uri); s) {
        spdlog::info("volume {}: removed unknown child {}", v.uuid, c.uri);
      }
      continue;
    }
    children.insert(r->uuid);
    if (c.state == "faulted" && (r->state == ReplicaState::kOnline || r->state == ReplicaState::kNew)) {
      r->state = ReplicaState::kFaulted;
      r->reason = "child " + c.reason;
      r->faulted_unix_ms = now_unix;
      dirty = true;
      spdlog::warn("volume {}: replica {} on node {} faulted ({})", v.uuid, r->uuid, r->node, c.reason);
    } else if (c.state == "healthy" && r->state == ReplicaState::kFaulted && node_offline(r->node)) {
      // The control plane gave up on the replica (its node is offline) before the nexus
      // noticed (no I/O reached the child yet). The nexus must record it stale before a
      // replacement is made, or it would still count as current if the node came back.
      if (Status s = e->fault_child(v.uuid, c.uri); s) {
        spdlog::warn("volume {}: child {} faulted (its node {} is offline)", v.uuid, c.uri, r->node);
      } else {
        spdlog::warn("volume {}: cannot fault child {}: {}", v.uuid, c.uri, s.to_string());
      }
    } else if (c.state == "out_of_sync" && r->state == ReplicaState::kOnline) {
      // Being rebuilt, so not current until it is healthy again: a nexus re-created after
      // an unclean end resyncs every child but its source. Recorded `new` (shown as
      // rebuilding), it does not count as current for a move or a replacement meanwhile.
      r->state = ReplicaState::kNew;
      r->reason = "resyncing";
      dirty = true;
      spdlog::info("volume {}: replica {} on node {} is being resynced", v.uuid, r->uuid, r->node);
    } else if (c.state == "healthy" && (r->state == ReplicaState::kNew || r->state == ReplicaState::kFaulted)) {
      // In sync: rebuilt, or never stale in the nexus's eyes (a healthy child has every
      // acknowledged write).
      r->state = ReplicaState::kOnline;
      r->reason.clear();
      dirty = true;
      spdlog::info("volume {}: replica {} on node {} is in sync", v.uuid, r->uuid, r->node);
    } else if (c.state == "faulted" && r->state == ReplicaState::kFaulted &&
               now_unix - r->faulted_unix_ms < opts_.faulted_child_wait_ms) {
      // Within the wait: if its node answers and has the replica, bring it back (a
      // partial rebuild when the nexus kept a missed-write log).
      bool there = false;
      {
        std::lock_guard lk(mu_);
        auto snap = snapshots_.find(r->node);
        if (snap != snapshots_.end() && snap->second.ok &&
            node_states_[r->node].status == NodeStatus::kOnline) {
          for (const auto& er : snap->second.data.replicas) there = there || er.uuid == r->uuid;
        }
      }
      if (there) {
        // Grown first if a resize passed it by (a child smaller than the nexus would
        // fail the rebuild's writes past its end).
        uint64_t size = 0;
        {
          std::lock_guard lk(mu_);
          for (const auto& er : snapshots_[r->node].data.replicas) {
            if (er.uuid == r->uuid) size = er.size_bytes;
          }
        }
        if (size < v.size_bytes) {
          if (auto re = engine(r->node)) (void)re->grow_replica(r->uuid, v.size_bytes);
        }
        // Shared again first (an engine restart drops its shares), then back in place;
        // a child that cannot come back in place (a new URI, a dead connection) is
        // removed and added again (a full rebuild).
        auto uri = child_uri(*r, v.target->node);
        Status s = uri ? (*uri == c.uri ? e->online_child(v.uuid, c.uri)
                                        : make_error(Errc::kNotFound, "new URI"))
                       : uri.status();
        if (!s && uri && e->remove_child(v.uuid, c.uri)) s = e->add_child(v.uuid, *uri);
        if (s) {
          spdlog::info("volume {}: replica {} on node {} is back; rebuilding it", v.uuid, r->uuid, r->node);
          r->state = ReplicaState::kNew;
          dirty = true;
        }
      }
    }
  }
  // New replicas not yet children: add them (the nexus rebuilds them).
  for (auto& r : v.replicas) {
    if (r.state != ReplicaState::kNew || children.count(r.uuid)) continue;
    auto uri = child_uri(r, v.target->node);
    Status s = uri ? e->add_child(v.uuid, *uri) : uri.status();
    if (!s && s.code() != Errc::kAlreadyExists) {
      spdlog::warn("volume {}: cannot add replica {} to the nexus: {}", v.uuid, r.uuid, s.message());
      continue;
    }
    spdlog::info("volume {}: replica {} on node {} added to the nexus; rebuilding", v.uuid, r.uuid, r.node);
  }
  // Faulted replicas whose wait is over and that are still children: out of the nexus
  // (replacement is placed by the caller).
  if (dirty) (void)persist_volume(v);
}

// Replicas and nexuses that engines hold but no spec names, in pools the control plane
// manages, are destroyed once they have been seen for gc_grace_ms (a grace so a
// volume being created by another leader's in-flight operation is not raced).
void ControlPlane::collect_garbage() {
  struct Victim {
    std::string node, kind, name;
  };
  std::vector<Victim> victims;
  const int64_t now = steady_ms();
  {
    std::lock_guard lk(mu_);
    std::set<std::string> replicas, targets;  // replica uuids; "node/volume"
    for (const auto& [id, v] : volumes_) {
      for (const auto& r : v.replicas) replicas.insert(r.uuid);
      if (v.target) targets.insert(v.target->node + "/" + id);
    }
    std::set<std::string> seen;
    for (const auto& [node, snap] : snapshots_) {
      if (!snap.ok) continue;
      auto st = node_states_.find(node);
      if (st == node_states_.end() || st->second.status != NodeStatus::kOnline) continue;
      for (const auto& r : snap.data.replicas) {
        if (!pools_.count(node + "/" + r.pool) || replicas.count(r.uuid)) continue;
        if (r.name != r.uuid) continue;  // not made by the control plane
        seen.insert(node + "/replica/" + r.uuid);
      }
      for (const auto& n : snap.data.nexuses) {
        // Only nexuses named like a volume (by uuid) are the control plane's.
        bool is_volume_name = n.name.size() == 36 && n.name == n.uuid;
        if (!is_volume_name || targets.count(node + "/" + n.name)) continue;
        seen.insert(node + "/nexus/" + n.name);
      }
    }
    std::erase_if(orphans_, [&](const auto& kv) { return !seen.count(kv.first); });
    for (const auto& key : seen) {
      auto [it, fresh] = orphans_.emplace(key, now);
      if (!fresh && now - it->second >= static_cast<int64_t>(opts_.gc_grace_ms)) {
        auto a = key.find('/'), b = key.find('/', a + 1);
        victims.push_back(Victim{key.substr(0, a), key.substr(a + 1, b - a - 1), key.substr(b + 1)});
      }
    }
  }
  for (const auto& vic : victims) {
    auto e = engine(vic.node);
    if (!e) continue;
    Status s;
    if (vic.kind == "replica") {
      ReplicaSpec orphan;
      orphan.uuid = vic.name;
      orphan.node = vic.node;
      s = destroy_replica(orphan);
    } else {
      s = teardown_nexus(vic.node, vic.name);
    }
    spdlog::info("garbage collector: {} {} on node {}: {}", vic.kind, vic.name, vic.node,
                 s ? "destroyed" : s.to_string());
    if (s) {
      std::lock_guard lk(mu_);
      orphans_.erase(vic.node + "/" + vic.kind + "/" + vic.name);
    }
  }
}

}  // namespace castor::control
