// ControlPlane: start-up and recovery, the node registry, pools, views.

#include "control/control_plane.h"

#include <spdlog/spdlog.h>

#include "control/volume_lock.h"

namespace castor::control {

ControlPlane::ControlPlane(Store& store, EngineConnector& engines, ControlOptions opts)
    : store_(store), engines_(engines), opts_(std::move(opts)) {}

ControlPlane::~ControlPlane() { stop(); }

uint64_t ControlPlane::unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

int64_t ControlPlane::steady_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               epoch_)
      .count();
}

bool ControlPlane::crash(const std::string& point) {
  if (crash_point_ && !crash_point_(point)) dead_ = true;
  return dead_;
}

Status ControlPlane::start(bool run_reconciler) {
  if (Status s = load(); !s) return s;
  recover_operations();
  if (run_reconciler) thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void ControlPlane::stop() {
  {
    std::lock_guard lk(run_mu_);
    stopping_ = true;
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ControlPlane::poke() {
  {
    std::lock_guard lk(run_mu_);
    poked_ = true;
  }
  run_cv_.notify_all();
}

Status ControlPlane::load() {
  auto nodes = store_.list(kNodesPrefix);
  if (!nodes) return nodes.status();
  auto pools = store_.list(kPoolsPrefix);
  if (!pools) return pools.status();
  auto vols = store_.list(kVolumesPrefix);
  if (!vols) return vols.status();
  std::lock_guard lk(mu_);
  const int64_t now = steady_ms();
  for (const auto& kv : *nodes) {
    auto n = node_from_json(kv.value);
    if (!n) return make_error(Errc::kInvalidArgument, "store key {}: {}", kv.key, n.status().message());
    NodeState st;
    st.last_seen_ms = now;  // a grace of one deadline before a silent node is probed
    node_states_[n->name] = st;
    nodes_[n->name] = std::move(*n);
  }
  for (const auto& kv : *pools) {
    auto p = pool_from_json(kv.value);
    if (!p) return make_error(Errc::kInvalidArgument, "store key {}: {}", kv.key, p.status().message());
    pools_[p->node + "/" + p->name] = std::move(*p);
  }
  for (const auto& kv : *vols) {
    auto v = volume_from_json(kv.value);
    if (!v) return make_error(Errc::kInvalidArgument, "store key {}: {}", kv.key, v.status().message());
    set_volume_locked(*v);
  }
  spdlog::info("loaded {} node(s), {} pool(s), {} volume(s) from {}", nodes_.size(), pools_.size(),
               volumes_.size(), store_.describe());
  return Status::ok();
}

// The operation log after a crash: each interrupted operation is finished or undone by
// turning it into a state the reconciler converges from.
//   create    -> deleting (the reconciler destroys what was made and drops the spec)
//   destroy   -> deleting (likewise: the destroy finishes)
//   publish   -> target kept: the reconciler (re)creates and publishes the nexus; the
//                client's retry of publish returns it
//   unpublish -> target dropped: the garbage collector removes the nexus
//   resize    -> kept: the reconciler grows replicas still below the size
//   scale     -> kept: the reconciler adds or removes replicas
void ControlPlane::recover_operations() {
  std::vector<VolumeSpec> todo;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, v] : volumes_) {
      if (v.op.kind != OpKind::kNone) todo.push_back(v);
    }
  }
  for (auto& v : todo) {
    const OpKind k = v.op.kind;
    switch (k) {
      case OpKind::kCreate:
      case OpKind::kDestroy:
        v.status = SpecStatus::kDeleting;
        break;
      case OpKind::kUnpublish:
        v.target.reset();
        break;
      default:
        break;
    }
    v.op = {};
    if (Status s = persist_volume(v); !s) {
      spdlog::warn("volume {}: cannot record the recovery of its interrupted {}: {}", v.uuid,
                   op_name(k), s.to_string());
      continue;
    }
    spdlog::info("volume {}: interrupted {} recovered ({})", v.uuid, op_name(k),
                 k == OpKind::kCreate || k == OpKind::kDestroy ? "deleting" : "reconciling");
  }
}

Status ControlPlane::persist_volume(VolumeSpec& v) {
  if (dead_) return make_error(Errc::kInternal, "crashed (crash point)");
  VolumeSpec next = v;
  ++next.generation;
  if (Status s = store_.put(volume_key(next.uuid), to_json(next)); !s) return s;
  v = next;
  std::lock_guard lk(mu_);
  set_volume_locked(v);
  changed_ms_[v.uuid] = steady_ms();
  return Status::ok();
}

Status ControlPlane::erase_volume(const VolumeSpec& v) {
  if (dead_) return make_error(Errc::kInternal, "crashed (crash point)");
  if (Status s = store_.commit({StoreOp::del(volume_key(v.uuid)), StoreOp::del(health_key(v.uuid))});
      !s) {
    return s;
  }
  std::lock_guard lk(mu_);
  if (auto it = volumes_.find(v.uuid); it != volumes_.end()) {
    account_locked(&it->second, nullptr);
    volumes_.erase(it);
  }
  changed_ms_.erase(v.uuid);
  return Status::ok();
}

void ControlPlane::account_locked(const VolumeSpec* before, const VolumeSpec* after) {
  auto apply = [&](const VolumeSpec& v, int d) {
    for (const auto& r : v.replicas) replicas_on_node_[r.node] += d;
    if (v.target) nexuses_on_node_[v.target->node] += d;
  };
  if (before) apply(*before, -1);
  if (after) apply(*after, +1);
}

void ControlPlane::set_volume_locked(const VolumeSpec& v) {
  auto it = volumes_.find(v.uuid);
  account_locked(it == volumes_.end() ? nullptr : &it->second, &v);
  volumes_[v.uuid] = v;
}

Status ControlPlane::persist_node(const NodeSpec& n) {
  if (Status s = store_.put(node_key(n.name), to_json(n)); !s) return s;
  std::lock_guard lk(mu_);
  nodes_[n.name] = n;
  return Status::ok();
}

std::shared_ptr<EngineClient> ControlPlane::engine(const std::string& node) {
  if (dead_) return nullptr;
  std::string endpoint;
  {
    std::lock_guard lk(mu_);
    auto st = node_states_.find(node);
    auto sp = nodes_.find(node);
    if (st == node_states_.end() || sp == nodes_.end() || st->second.status != NodeStatus::kOnline) {
      return nullptr;
    }
    endpoint = sp->second.grpc_endpoint;
  }
  return engines_.connect(node, endpoint);
}

bool ControlPlane::node_usable_locked(const std::string& node) const {
  auto st = node_states_.find(node);
  auto sp = nodes_.find(node);
  return st != node_states_.end() && sp != nodes_.end() &&
         st->second.status == NodeStatus::kOnline && !sp->second.cordoned;
}

// ---------------------------------------------------------------- engines

Result<uint32_t> ControlPlane::register_node(const RegisterRequest& req) {
  if (!valid_object_name(req.name)) {
    return make_error(Errc::kInvalidArgument,
                      "bad node name '{}' ([A-Za-z0-9._-], 1 to 63 bytes)", req.name);
  }
  if (req.grpc_endpoint.empty() || req.instance_uuid.empty()) {
    return make_error(Errc::kInvalidArgument, "node '{}': grpc_endpoint and instance_uuid are required",
                      req.name);
  }
  if (Status s = validate_labels(req.labels); !s) return s;
  std::optional<NodeSpec> changed;
  bool is_new_instance = false;
  {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(req.name);
    NodeSpec spec;
    if (it == nodes_.end()) {
      spec.name = req.name;
    } else {
      spec = it->second;
    }
    if (it == nodes_.end()) spec.labels = req.labels;
    if (spec.grpc_endpoint != req.grpc_endpoint || spec.nvmf_endpoints != req.nvmf_endpoints ||
        spec.nbd_endpoint != req.nbd_endpoint || spec.iscsi_endpoint != req.iscsi_endpoint ||
        it == nodes_.end()) {
      spec.grpc_endpoint = req.grpc_endpoint;
      spec.nvmf_endpoints = req.nvmf_endpoints;
      spec.nbd_endpoint = req.nbd_endpoint;
      spec.iscsi_endpoint = req.iscsi_endpoint;
      changed = spec;
    }
  }
  if (changed) {
    if (Status s = persist_node(*changed); !s) return s;
  }
  {
    std::lock_guard lk(mu_);
    auto& st = node_states_[req.name];
    is_new_instance = st.instance_uuid != req.instance_uuid;
    const bool was_online = st.status == NodeStatus::kOnline;
    st.status = NodeStatus::kOnline;
    st.instance_uuid = req.instance_uuid;
    st.version = req.version;
    st.host_nqn = req.host_nqn;
    st.pools = req.pools;
    st.last_seen_ms = steady_ms();
    st.last_seen_unix_ms = unix_ms();
    if (is_new_instance || !was_online) {
      spdlog::info("node {} online (instance {}, gRPC {})", req.name, req.instance_uuid,
                   req.grpc_endpoint);
    }
  }
  if (is_new_instance || changed) poke();
  return opts_.heartbeat_interval_ms;
}

Status ControlPlane::deregister_node(const std::string& name, const std::string& instance_uuid) {
  std::lock_guard lk(mu_);
  auto it = node_states_.find(name);
  if (it == node_states_.end()) return make_error(Errc::kNotFound, "no node '{}'", name);
  if (!instance_uuid.empty() && it->second.instance_uuid != instance_uuid) return Status::ok();
  it->second.status = NodeStatus::kUnknown;
  it->second.last_seen_ms = steady_ms();
  spdlog::info("node {} deregistered (unknown)", name);
  return Status::ok();
}

Status ControlPlane::put_nexus_health(const std::string& nexus, const std::string& document,
                                      uint64_t generation) {
  if (nexus.empty() || nexus.size() > 128) {
    return make_error(Errc::kInvalidArgument, "bad nexus name '{}'", nexus);
  }
  if (generation) {
    // A nexus superseded by a newer one of its volume (fenced, or about to be) must not
    // rewrite the record the newer one reads and keeps. The newer generation is stored
    // before that nexus is created, so from then on the older one's writes stop here.
    std::lock_guard lk(mu_);
    if (auto v = volumes_.find(nexus); v != volumes_.end() && v->second.nexus_generation > generation) {
      return make_error(Errc::kBusy, "stale nexus: generation {} of volume {} is superseded by {}", generation,
                        nexus, v->second.nexus_generation);
    }
  }
  if (document.size() > (1u << 20)) {
    return make_error(Errc::kInvalidArgument, "health document of {} bytes is too large",
                      document.size());
  }
  return document.empty() ? store_.del(health_key(nexus))
                          : store_.put(health_key(nexus), document);
}

Result<std::string> ControlPlane::get_nexus_health(const std::string& nexus) {
  auto kv = store_.get(health_key(nexus));
  if (!kv) return kv.status();
  return *kv ? (*kv)->value : std::string();
}

// ---------------------------------------------------------------- nodes

NodeView ControlPlane::node_view_locked(const std::string& name) const {
  NodeView v;
  v.spec = nodes_.at(name);
  if (auto it = node_states_.find(name); it != node_states_.end()) v.state = it->second;
  if (auto it = replicas_on_node_.find(name); it != replicas_on_node_.end()) v.replicas = it->second;
  if (auto it = nexuses_on_node_.find(name); it != nexuses_on_node_.end()) v.nexuses = it->second;
  if (v.spec.draining) v.drain = v.nexuses ? "draining" : "drained";
  return v;
}

std::vector<NodeView> ControlPlane::list_nodes() {
  std::lock_guard lk(mu_);
  std::vector<NodeView> out;
  for (const auto& [name, spec] : nodes_) out.push_back(node_view_locked(name));
  return out;
}

Result<NodeView> ControlPlane::get_node(const std::string& name) {
  std::lock_guard lk(mu_);
  if (!nodes_.count(name)) return make_error(Errc::kNotFound, "no node '{}'", name);
  return node_view_locked(name);
}

Result<NodeView> ControlPlane::cordon_node(const std::string& name, bool cordon) {
  NodeSpec spec;
  {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) return make_error(Errc::kNotFound, "no node '{}'", name);
    spec = it->second;
  }
  spec.cordoned = cordon;
  if (!cordon) spec.draining = false;
  if (Status s = persist_node(spec); !s) return s;
  spdlog::info("node {} {}", name, cordon ? "cordoned" : "uncordoned");
  return get_node(name);
}

Result<NodeView> ControlPlane::drain_node(const std::string& name) {
  NodeSpec spec;
  {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) return make_error(Errc::kNotFound, "no node '{}'", name);
    spec = it->second;
  }
  spec.cordoned = true;
  spec.draining = true;
  if (Status s = persist_node(spec); !s) return s;
  spdlog::info("node {} draining", name);
  poke();
  return get_node(name);
}

Result<NodeView> ControlPlane::label_node(const std::string& name, const Labels& changes) {
  if (Status s = validate_labels(changes, /*allow_empty_values=*/true); !s) return s;
  NodeSpec spec;
  {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) return make_error(Errc::kNotFound, "no node '{}'", name);
    spec = it->second;
  }
  for (const auto& [k, v] : changes) {
    if (v.empty()) {
      spec.labels.erase(k);
    } else {
      spec.labels[k] = v;
    }
  }
  if (Status s = persist_node(spec); !s) return s;
  return get_node(name);
}

// ---------------------------------------------------------------- pools

PoolView ControlPlane::pool_view_locked(const PoolSpec& p) const {
  PoolView v;
  v.spec = p;
  if (auto e = pool_errors_.find(p.node + "/" + p.name); e != pool_errors_.end()) {
    v.spec.error = e->second;
  }
  // The last snapshot's pools (or what create/import just returned), even if the last
  // snapshot attempt failed: the node's status says whether it is reachable.
  auto snap = snapshots_.find(p.node);
  if (snap != snapshots_.end()) {
    for (const auto& r : snap->second.data.pools) {
      if (r.name == p.name) v.report = r;
    }
  }
  const bool online = node_states_.count(p.node) &&
                      node_states_.at(p.node).status == NodeStatus::kOnline;
  if (p.status == SpecStatus::kDeleting) {
    v.status = "deleting";
  } else if (!online) {
    v.status = "unknown";
  } else if (v.report) {
    v.status = "online";
  } else if (!v.spec.error.empty()) {
    v.status = "error";
  } else {
    v.status = "creating";
  }
  return v;
}

Result<PoolView> ControlPlane::create_pool(const PoolSpec& req) {
  if (!valid_object_name(req.name)) {
    return make_error(Errc::kInvalidArgument, "bad pool name '{}' ([A-Za-z0-9._-], 1 to 63 bytes)",
                      req.name);
  }
  if (req.disks.empty()) return make_error(Errc::kInvalidArgument, "pool '{}' needs disks", req.name);
  for (const auto& d : req.disks) {
    if (d.empty() || d.size() > 1024) {
      return make_error(Errc::kInvalidArgument, "bad disk URI '{}'", d);
    }
  }
  if (Status s = validate_labels(req.labels); !s) return s;
  if (req.cluster_size && (req.cluster_size & (req.cluster_size - 1))) {
    return make_error(Errc::kInvalidArgument, "cluster size {} is not a power of two",
                      req.cluster_size);
  }
  PoolSpec spec = req;
  spec.status = SpecStatus::kCreating;
  spec.error.clear();
  {
    std::lock_guard lk(mu_);
    if (!nodes_.count(req.node)) return make_error(Errc::kNotFound, "no node '{}'", req.node);
    auto it = pools_.find(req.node + "/" + req.name);
    if (it != pools_.end()) {
      if (it->second.disks == req.disks && it->second.labels == req.labels &&
          it->second.status != SpecStatus::kDeleting) {
        return pool_view_locked(it->second);
      }
      return make_error(Errc::kAlreadyExists, "pool '{}' on node '{}' exists with other parameters",
                        req.name, req.node);
    }
    for (const auto& [k, p] : pools_) {
      if (p.node != req.node) continue;
      for (const auto& d : req.disks) {
        if (std::find(p.disks.begin(), p.disks.end(), d) != p.disks.end()) {
          return make_error(Errc::kAlreadyExists, "disk '{}' on node '{}' belongs to pool '{}'", d,
                            req.node, p.name);
        }
      }
    }
  }
  if (Status s = store_.put(pool_key(spec.node, spec.name), to_json(spec)); !s) return s;
  {
    std::lock_guard lk(mu_);
    pools_[spec.node + "/" + spec.name] = spec;
  }
  spdlog::info("pool {} on node {} declared ({} disk(s))", spec.name, spec.node, spec.disks.size());
  // Create it now if the node answers, so the caller sees the result; the reconciler
  // retries otherwise.
  if (auto e = engine(spec.node)) {
    auto made = e->create_pool(spec.name, spec.disks, spec.cluster_size);
    if (!made && (made.status().code() == Errc::kAlreadyExists || made.status().code() == Errc::kBusy)) {
      made = e->import_pool(spec.disks);
    }
    if (made) {
      spec.status = SpecStatus::kCreated;
      if (Status s = store_.put(pool_key(spec.node, spec.name), to_json(spec)); !s) return s;
      std::lock_guard lk(mu_);
      pools_[spec.node + "/" + spec.name] = spec;
      pool_errors_.erase(spec.node + "/" + spec.name);
      auto& snap = snapshots_[spec.node];
      std::erase_if(snap.data.pools, [&](const PoolReport& r) { return r.name == spec.name; });
      snap.data.pools.push_back(*made);
    } else {
      std::lock_guard lk(mu_);
      pool_errors_[spec.node + "/" + spec.name] = made.status().message();
    }
  }
  poke();
  return get_pool(spec.node, spec.name);
}

Status ControlPlane::destroy_pool(const std::string& node, const std::string& name) {
  PoolSpec spec;
  {
    std::lock_guard lk(mu_);
    auto it = pools_.find(node + "/" + name);
    if (it == pools_.end()) return make_error(Errc::kNotFound, "no pool '{}' on node '{}'", name, node);
    for (const auto& [id, v] : volumes_) {
      for (const auto& r : v.replicas) {
        if (r.node == node && r.pool == name) {
          return make_error(Errc::kBusy, "pool '{}' on node '{}' holds replica {} of volume {}",
                            name, node, r.uuid, id);
        }
      }
    }
    spec = it->second;
  }
  spec.status = SpecStatus::kDeleting;
  if (Status s = store_.put(pool_key(node, name), to_json(spec)); !s) return s;
  {
    std::lock_guard lk(mu_);
    pools_[node + "/" + name] = spec;
  }
  if (auto e = engine(node)) {
    Status s = e->destroy_pool(name);
    if (!s && s.code() != Errc::kNotFound) return s;
    if (Status d = store_.del(pool_key(node, name)); !d) return d;
    std::lock_guard lk(mu_);
    pools_.erase(node + "/" + name);
    pool_errors_.erase(node + "/" + name);
    std::erase_if(snapshots_[node].data.pools, [&](const PoolReport& r) { return r.name == name; });
    spdlog::info("pool {} on node {} destroyed", name, node);
    return Status::ok();
  }
  // The node is away: the reconciler destroys the pool when it is back.
  return Status::ok();
}

std::vector<PoolView> ControlPlane::list_pools(const std::string& node) {
  std::lock_guard lk(mu_);
  std::vector<PoolView> out;
  for (const auto& [k, p] : pools_) {
    if (node.empty() || p.node == node) out.push_back(pool_view_locked(p));
  }
  return out;
}

Result<PoolView> ControlPlane::get_pool(const std::string& node, const std::string& name) {
  std::lock_guard lk(mu_);
  auto it = pools_.find(node + "/" + name);
  if (it == pools_.end()) return make_error(Errc::kNotFound, "no pool '{}' on node '{}'", name, node);
  return pool_view_locked(it->second);
}

std::vector<PoolCandidate> ControlPlane::pool_candidates_locked() const {
  std::vector<PoolCandidate> out;
  for (const auto& [k, p] : pools_) {
    PoolView view = pool_view_locked(p);
    PoolCandidate c;
    c.node = p.node;
    c.pool = p.name;
    c.node_labels = nodes_.at(p.node).labels;
    c.pool_labels = p.labels;
    c.usable = node_usable_locked(p.node) && view.status == "online" && view.report.has_value();
    if (view.report) {
      c.capacity = view.report->capacity_bytes;
      c.used = view.report->used_bytes;
      c.committed = view.report->committed_bytes;
    }
    auto count = replicas_on_node_.find(p.node);
    c.node_replicas = count == replicas_on_node_.end() ? 0 : count->second;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<NexusCandidate> ControlPlane::nexus_candidates_locked(const VolumeSpec& v) const {
  std::vector<NexusCandidate> out;
  for (const auto& [name, spec] : nodes_) {
    NexusCandidate c;
    c.node = name;
    c.usable = node_usable_locked(name);
    auto count = nexuses_on_node_.find(name);
    c.nexuses = count == nexuses_on_node_.end() ? 0 : count->second;
    for (const auto& r : v.replicas) {
      c.has_replica = c.has_replica || (r.node == name && r.state == ReplicaState::kOnline);
    }
    out.push_back(c);
  }
  return out;
}

VolumeView ControlPlane::view_locked(const VolumeSpec& v) const {
  VolumeView view;
  view.spec = v;
  const EngineNexus* nexus = nullptr;
  bool target_node_up = false;
  if (v.target) {
    auto st = node_states_.find(v.target->node);
    target_node_up = st != node_states_.end() && st->second.status == NodeStatus::kOnline;
    auto snap = snapshots_.find(v.target->node);
    if (snap != snapshots_.end() && snap->second.ok) {
      for (const auto& n : snap->second.data.nexuses) {
        if (n.name == v.uuid) nexus = &n;
      }
    }
    view.target_state = !target_node_up ? "missing" : (nexus ? nexus->state : "creating");
  }
  for (const auto& r : v.replicas) {
    VolumeView::ReplicaView rv;
    rv.local = v.target && v.target->node == r.node;
    if (nexus) {
      for (const auto& c : nexus->children) {
        if (replica_of_child_uri(c.uri) == r.uuid) {
          rv.uri = c.uri;
          rv.rebuilding = c.rebuilding;
          rv.rebuild_percent = c.rebuild_percent;
          rv.rebuild_bytes_s = c.rebuild_bytes_s;
        }
      }
    }
    view.replicas[r.uuid] = rv;
  }
  const uint32_t online = v.online_replicas();
  if (v.status == SpecStatus::kCreating) {
    view.status = "creating";
  } else if (v.status == SpecStatus::kDeleting) {
    view.status = "deleting";
  } else if (online == 0 || (v.target && nexus && nexus->state == "faulted")) {
    view.status = "faulted";
  } else if (online < v.replica_count || (v.target && (!nexus || nexus->state != "online"))) {
    view.status = "degraded";
  } else {
    view.status = "online";
  }
  return view;
}

ClusterCounts ControlPlane::counts() {
  std::lock_guard lk(mu_);
  return ClusterCounts{.nodes = static_cast<uint32_t>(nodes_.size()),
                       .pools = static_cast<uint32_t>(pools_.size()),
                       .volumes = static_cast<uint32_t>(volumes_.size()),
                       .passes = passes_};
}

}  // namespace castor::control
