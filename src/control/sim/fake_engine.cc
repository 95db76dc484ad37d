#include "control/sim/fake_engine.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/uuid.h"

namespace castor::control::sim {

namespace {
constexpr uint64_t kBlock = 4096;
uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }
}  // namespace

FakeEngine::FakeEngine(FakeCluster& cluster, std::string node, std::string nvmf_endpoint)
    : cluster_(cluster), node_(std::move(node)), nvmf_endpoint_(std::move(nvmf_endpoint)) {}

Status FakeEngine::enter(const char* op) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (down_.load()) return make_error(Errc::kUnavailable, "engine {} is down", node_);
  std::lock_guard lk(mu_);
  if (auto it = fail_next_.find(op); it != fail_next_.end()) {
    Status s = it->second.first;
    if (--it->second.second == 0) fail_next_.erase(it);
    return s;
  }
  return Status::ok();
}

void FakeEngine::set_down(bool down) { down_.store(down); }

void FakeEngine::restart() {
  std::lock_guard lk(mu_);
  for (auto& [uuid, r] : replicas_) {
    r.shared = false;
    r.claimed_by.clear();
  }
  nexuses_.clear();
  // Pools must be imported again; their replicas come back with them.
  for (auto& [name, p] : pools_) p.imported = false;
  down_.store(false);
}

void FakeEngine::fail_next(const std::string& op, Status s, uint32_t times) {
  std::lock_guard lk(mu_);
  if (times) fail_next_[op] = {std::move(s), times};
}

void FakeEngine::add_disk(const std::string& uri, uint64_t bytes) {
  std::lock_guard lk(mu_);
  disks_[uri] = bytes;
}

size_t FakeEngine::replica_count() const {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const auto& [u, r] : replicas_) n += pools_.at(r.pool).imported;
  return n;
}

bool FakeEngine::replica_shared(const std::string& uuid) const {
  std::lock_guard lk(mu_);
  auto it = replicas_.find(uuid);
  return it != replicas_.end() && pools_.at(it->second.pool).imported && it->second.shared;
}

uint64_t FakeEngine::replica_size(const std::string& uuid) const {
  std::lock_guard lk(mu_);
  auto it = replicas_.find(uuid);
  return it == replicas_.end() ? 0 : it->second.size;
}

uint64_t FakeEngine::nexus_size(const std::string& name) const {
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(name);
  return it == nexuses_.end() ? 0 : it->second.size;
}

size_t FakeEngine::nexus_count() const {
  std::lock_guard lk(mu_);
  return nexuses_.size();
}

uint64_t FakeEngine::used_locked(const std::string& pool) const {
  uint64_t used = 0;
  const auto& p = pools_.at(pool);
  for (const auto& [u, r] : replicas_) {
    // A thin replica is charged one cluster here: the fake keeps no data.
    if (r.pool == pool) used += r.thin ? p.cluster : round_up(r.size, p.cluster);
  }
  return used;
}

uint64_t FakeEngine::committed_locked(const std::string& pool) const {
  uint64_t c = 0;
  for (const auto& [u, r] : replicas_) c += r.pool == pool ? r.size : 0;
  return c;
}

PoolReport FakeEngine::report_locked(const std::string& name, const Pool& p) const {
  PoolReport r;
  r.name = name;
  r.uuid = p.uuid;
  r.disks = p.disks;
  r.capacity_bytes = p.capacity;
  r.used_bytes = used_locked(name);
  r.committed_bytes = committed_locked(name);
  for (const auto& [u, rep] : replicas_) r.replicas += rep.pool == name;
  return r;
}

Result<std::string> FakeEngine::ping() {
  if (Status s = enter("ping"); !s) return s;
  return std::string("fake");
}

Result<EngineSnapshot> FakeEngine::snapshot() {
  if (Status s = enter("snapshot"); !s) return s;
  std::lock_guard lk(mu_);
  EngineSnapshot snap;
  for (const auto& [name, p] : pools_) {
    if (p.imported) snap.pools.push_back(report_locked(name, p));
  }
  for (const auto& [uuid, r] : replicas_) {
    if (!pools_.at(r.pool).imported) continue;
    snap.replicas.push_back(EngineReplica{
        .name = uuid,
        .uuid = uuid,
        .pool = r.pool,
        .size_bytes = r.size,
        .thin = r.thin,
        .shared = r.shared,
        .share_uri = r.shared ? fmt::format("nvmf://{}/{}", nvmf_endpoint_, replica_nqn(uuid))
                              : std::string()});
  }
  for (auto& [name, n] : nexuses_) {
    EngineNexus en{.name = name, .uuid = n.uuid, .size_bytes = n.size, .state = {}, .generation = n.generation, .uris = {},
                   .children = {}};
    if (!n.published_uri.empty()) en.uris.push_back(n.published_uri);
    size_t healthy = 0;
    for (auto& c : n.children) {
      if (c.state == "out_of_sync") {
        if (c.rebuild_left > 0) {
          --c.rebuild_left;
        } else {
          c.state = "healthy";
          c.rebuilt = true;
        }
      }
      healthy += c.state == "healthy";
      EngineChild ec{.uri = c.uri,
                     .state = c.state,
                     .reason = c.reason,
                     .rebuilding = c.state == "out_of_sync",
                     .rebuild_percent = c.state == "out_of_sync" ? 50.0 : 100.0,
                     .rebuild_bytes_s = 0,
                     .rebuild_state = c.rebuilt ? "completed"
                                                : (c.state == "out_of_sync" ? "running" : "")};
      en.children.push_back(std::move(ec));
    }
    en.state = healthy == n.children.size() ? "online" : (healthy ? "degraded" : "faulted");
    snap.nexuses.push_back(std::move(en));
  }
  return snap;
}

Result<PoolReport> FakeEngine::create_pool(const std::string& name,
                                           const std::vector<std::string>& disks,
                                           uint64_t cluster_size) {
  if (Status s = enter("create_pool"); !s) return s;
  std::lock_guard lk(mu_);
  if (pools_.count(name)) {
    return make_error(Errc::kAlreadyExists, "pool '{}' exists", name);
  }
  uint64_t cap = 0;
  for (const auto& d : disks) {
    auto it = disks_.find(d);
    if (it == disks_.end()) return make_error(Errc::kInvalidArgument, "no disk '{}'", d);
    for (const auto& [pn, p] : pools_) {
      if (std::find(p.disks.begin(), p.disks.end(), d) != p.disks.end()) {
        return make_error(Errc::kBusy, "disk '{}' already holds pool '{}'", d, pn);
      }
    }
    cap += it->second;
  }
  Pool p{.uuid = Uuid::random().to_string(),
         .disks = disks,
         .capacity = cap,
         .cluster = cluster_size ? cluster_size : (4 << 20),
         .imported = true};
  auto& stored = pools_[name] = std::move(p);
  return report_locked(name, stored);
}

Result<PoolReport> FakeEngine::import_pool(const std::vector<std::string>& disks) {
  if (Status s = enter("import_pool"); !s) return s;
  std::lock_guard lk(mu_);
  for (auto& [name, p] : pools_) {
    if (p.disks == disks) {
      if (p.imported) return make_error(Errc::kAlreadyExists, "pool '{}' is imported", name);
      p.imported = true;
      return report_locked(name, p);
    }
  }
  return make_error(Errc::kNotFound, "no pool on those disks");
}

Status FakeEngine::destroy_pool(const std::string& name) {
  if (Status s = enter("destroy_pool"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end() || !it->second.imported) {
    return make_error(Errc::kNotFound, "no pool '{}'", name);
  }
  for (const auto& [u, r] : replicas_) {
    if (r.pool == name && (r.shared || !r.claimed_by.empty())) {
      return make_error(Errc::kBusy, "replica {} of pool '{}' is in use", u, name);
    }
  }
  std::erase_if(replicas_, [&](const auto& kv) { return kv.second.pool == name; });
  pools_.erase(it);
  return Status::ok();
}

Status FakeEngine::create_replica(const std::string& pool, const std::string& uuid,
                                  uint64_t size_bytes, bool thin) {
  if (Status s = enter("create_replica"); !s) return s;
  std::lock_guard lk(mu_);
  auto pit = pools_.find(pool);
  if (pit == pools_.end() || !pit->second.imported) {
    return make_error(Errc::kNotFound, "no pool '{}'", pool);
  }
  if (replicas_.count(uuid)) return make_error(Errc::kAlreadyExists, "replica {} exists", uuid);
  if (size_bytes == 0 || size_bytes % kBlock) {
    return make_error(Errc::kInvalidArgument, "bad replica size {}", size_bytes);
  }
  uint64_t need = thin ? pit->second.cluster : round_up(size_bytes, pit->second.cluster);
  if (used_locked(pool) + need > pit->second.capacity) {
    return make_error(Errc::kNoSpace, "pool '{}' has no room for {} bytes", pool, size_bytes);
  }
  replicas_[uuid] = Replica{.pool = pool, .size = size_bytes, .thin = thin, .shared = false,
                            .claimed_by = {}};
  return Status::ok();
}

Status FakeEngine::destroy_replica(const std::string& uuid) {
  if (Status s = enter("destroy_replica"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = replicas_.find(uuid);
  if (it == replicas_.end() || !pools_.at(it->second.pool).imported) {
    return make_error(Errc::kNotFound, "no replica {}", uuid);
  }
  if (it->second.shared || !it->second.claimed_by.empty()) {
    return make_error(Errc::kBusy, "replica {} is open", uuid);
  }
  replicas_.erase(it);
  return Status::ok();
}

Status FakeEngine::grow_replica(const std::string& uuid, uint64_t size_bytes) {
  if (Status s = enter("grow_replica"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = replicas_.find(uuid);
  if (it == replicas_.end()) return make_error(Errc::kNotFound, "no replica {}", uuid);
  if (size_bytes < it->second.size) return make_error(Errc::kInvalidArgument, "cannot shrink");
  it->second.size = size_bytes;
  return Status::ok();
}

Result<std::string> FakeEngine::share_replica(const std::string& uuid) {
  if (Status s = enter("share_replica"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = replicas_.find(uuid);
  if (it == replicas_.end() || !pools_.at(it->second.pool).imported) {
    return make_error(Errc::kNotFound, "no replica {}", uuid);
  }
  if (!it->second.claimed_by.empty()) {
    return make_error(Errc::kBusy, "replica {} is claimed by nexus {}", uuid, it->second.claimed_by);
  }
  it->second.shared = true;
  return fmt::format("nvmf://{}/{}", nvmf_endpoint_, replica_nqn(uuid));
}

Status FakeEngine::unshare_replica(const std::string& uuid) {
  if (Status s = enter("unshare_replica"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = replicas_.find(uuid);
  if (it == replicas_.end() || !it->second.shared) {
    return make_error(Errc::kNotFound, "replica {} is not shared", uuid);
  }
  it->second.shared = false;
  return Status::ok();
}

Status FakeEngine::open_child_locked(const std::string& nexus, const std::string& uri) {
  if (uri.rfind("bdev:///", 0) == 0) {
    auto it = replicas_.find(uri.substr(8));
    if (it == replicas_.end() || !pools_.at(it->second.pool).imported) {
      return make_error(Errc::kNotFound, "no bdev {}", uri);
    }
    if (it->second.shared || !it->second.claimed_by.empty()) {
      return make_error(Errc::kBusy, "bdev {} is claimed", uri);
    }
    it->second.claimed_by = nexus;
    return Status::ok();
  }
  return Status::ok();  // remote: checked by reachable() before taking mu_
}

Status FakeEngine::reachable(const std::vector<std::string>& uris) {
  for (const auto& uri : uris) {
    if (uri.rfind("nvmf://", 0) == 0 && !cluster_.child_reachable(uri)) {
      return make_error(Errc::kUnavailable, "cannot connect to {}", uri);
    }
  }
  return Status::ok();
}

void FakeEngine::close_child_locked(const std::string& uri) {
  if (uri.rfind("bdev:///", 0) == 0) {
    if (auto it = replicas_.find(uri.substr(8)); it != replicas_.end()) it->second.claimed_by.clear();
  }
}

Result<EngineNexus> FakeEngine::create_nexus(const std::string& name, const std::string& uuid,
                                             uint64_t size_bytes, const std::vector<std::string>& children,
                                             const std::map<std::string, std::string>& options) {
  uint64_t generation = 0;
  if (auto g = options.find("generation"); g != options.end()) generation = std::stoull(g->second);
  if (Status s = enter("create_nexus"); !s) return s;
  if (Status s = reachable(children); !s) return s;
  {
    std::lock_guard lk(mu_);
    if (nexuses_.count(name)) return make_error(Errc::kAlreadyExists, "nexus {} exists", name);
    if (children.empty()) return make_error(Errc::kInvalidArgument, "no children");
    std::vector<std::string> opened;
    for (const auto& c : children) {
      if (Status s = open_child_locked(name, c); !s) {
        for (const auto& o : opened) close_child_locked(o);
        return s;
      }
      opened.push_back(c);
    }
    Nexus n{.uuid = uuid, .size = size_bytes, .children = {}, .published_uri = {}, .generation = generation};
    for (const auto& c : children) {
      Child k;
      k.uri = c;
      n.children.push_back(std::move(k));
    }
    nexuses_[name] = std::move(n);
  }
  auto snap = snapshot();
  if (!snap) return snap.status();
  for (auto& n : snap->nexuses) {
    if (n.name == name) return n;
  }
  return make_error(Errc::kInternal, "nexus vanished");
}

Status FakeEngine::set_nexus_ana_state(const std::string& name, const std::string& state) {
  if (Status s = enter("set_nexus_ana_state"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(name);
  if (it == nexuses_.end() || it->second.published_uri.empty()) {
    return make_error(Errc::kNotFound, "nexus {} is not published", name);
  }
  it->second.ana_state = state;
  return Status::ok();
}

Status FakeEngine::destroy_nexus(const std::string& name) {
  if (Status s = enter("destroy_nexus"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(name);
  if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", name);
  if (!it->second.published_uri.empty()) return make_error(Errc::kBusy, "nexus {} is published", name);
  for (const auto& c : it->second.children) close_child_locked(c.uri);
  nexuses_.erase(it);
  return Status::ok();
}

Status FakeEngine::add_child(const std::string& nexus, const std::string& uri) {
  if (Status s = enter("add_child"); !s) return s;
  if (Status s = reachable({uri}); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(nexus);
  if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", nexus);
  for (const auto& c : it->second.children) {
    if (c.uri == uri) return make_error(Errc::kAlreadyExists, "child {} exists", uri);
  }
  if (Status s = open_child_locked(nexus, uri); !s) return s;
  it->second.children.push_back(
      Child{.uri = uri, .state = "out_of_sync", .reason = "none", .rebuild_left = rebuild_polls_.load(),
            .rebuilt = false});
  return Status::ok();
}

Status FakeEngine::remove_child(const std::string& nexus, const std::string& uri) {
  if (Status s = enter("remove_child"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(nexus);
  if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", nexus);
  auto& nexus_children = it->second.children;
  auto c = std::find_if(nexus_children.begin(), nexus_children.end(), [&](const Child& k) { return k.uri == uri; });
  if (c == nexus_children.end()) return make_error(Errc::kNotFound, "no child {}", uri);
  size_t healthy = 0;
  for (const auto& k : nexus_children) healthy += k.state == "healthy";
  if (c->state == "healthy" && healthy == 1) {
    return make_error(Errc::kBusy, "child {} is the last healthy child", uri);
  }
  close_child_locked(uri);
  nexus_children.erase(c);
  return Status::ok();
}

bool FakeEngine::resync_child(const std::string& nexus, const std::string& uri) {
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(nexus);
  if (it == nexuses_.end()) return false;
  for (auto& c : it->second.children) {
    if (c.uri != uri) continue;
    c.state = "out_of_sync";
    c.reason = "none";
    c.rebuild_left = rebuild_polls_.load();
    c.rebuilt = false;
    return true;
  }
  return false;
}

Status FakeEngine::online_child(const std::string& nexus, const std::string& uri) {
  if (Status s = enter("online_child"); !s) return s;
  if (Status s = reachable({uri}); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(nexus);
  if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", nexus);
  for (auto& c : it->second.children) {
    if (c.uri != uri) continue;
    if (c.state == "healthy" || c.state == "out_of_sync") return Status::ok();
    c.state = "out_of_sync";
    c.reason = "none";
    c.rebuild_left = rebuild_polls_.load();
    return Status::ok();
  }
  return make_error(Errc::kNotFound, "no child {}", uri);
}

Result<std::string> FakeEngine::publish_nexus(const std::string& name, Protocol protocol,
                                              const std::vector<std::string>&) {
  if (Status s = enter("publish_nexus"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(name);
  if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", name);
  if (it->second.published_uri.empty()) {
    it->second.published_uri =
        protocol == Protocol::kNvmf
            ? fmt::format("nvmf://{}/{}", nvmf_endpoint_, nexus_nqn(it->second.uuid))
            : fmt::format("{}://{}/{}", protocol_name(protocol), node_, name);
  }
  return it->second.published_uri;
}

Result<EngineNexus> FakeEngine::resize_nexus(const std::string& name, uint64_t size_bytes) {
  if (Status s = enter("resize_nexus"); !s) return s;
  std::vector<std::string> remote;
  {
    std::lock_guard lk(mu_);
    auto it = nexuses_.find(name);
    if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", name);
    if (it->second.published_uri.rfind("nbd://", 0) == 0) {
      return make_error(Errc::kBusy, "nexus {} is published over NBD", name);
    }
    if (size_bytes < it->second.size) return make_error(Errc::kInvalidArgument, "a nexus never shrinks");
    for (const auto& c : it->second.children) {
      if (c.uri.rfind("bdev:///", 0) == 0) {
        auto r = replicas_.find(c.uri.substr(8));
        if (r == replicas_.end() || r->second.size < size_bytes) {
          return make_error(Errc::kBusy, "nexus {}: child '{}' is smaller than {}", name, c.uri, size_bytes);
        }
      } else {
        remote.push_back(c.uri);
      }
    }
  }
  for (const auto& uri : remote) {  // outside mu_: another engine's lock
    if (cluster_.child_size(uri) < size_bytes) {
      return make_error(Errc::kBusy, "nexus {}: child '{}' is smaller than {} (or unreachable)", name, uri,
                        size_bytes);
    }
  }
  {
    std::lock_guard lk(mu_);
    auto it = nexuses_.find(name);
    if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", name);
    it->second.size = std::max(it->second.size, size_bytes);
  }
  auto snap = snapshot();
  if (!snap) return snap.status();
  for (auto& n : snap->nexuses) {
    if (n.name == name) return n;
  }
  return make_error(Errc::kInternal, "nexus vanished");
}

Status FakeEngine::unpublish_nexus(const std::string& name) {
  if (Status s = enter("unpublish_nexus"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(name);
  if (it == nexuses_.end() || it->second.published_uri.empty()) {
    return make_error(Errc::kNotFound, "nexus {} is not published", name);
  }
  it->second.published_uri.clear();
  return Status::ok();
}

Status FakeEngine::fault_child(const std::string& nexus, const std::string& uri) {
  if (Status s = enter("fault_child"); !s) return s;
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(nexus);
  if (it == nexuses_.end()) return make_error(Errc::kNotFound, "no nexus {}", nexus);
  for (auto& c : it->second.children) {
    if (c.uri == uri) {
      c.state = "faulted";
      c.reason = "io_error";
      return Status::ok();
    }
  }
  return make_error(Errc::kNotFound, "no child {}", uri);
}

// ---------------------------------------------------------------- FakeCluster

FakeEngine& FakeCluster::add(const std::string& node) {
  std::lock_guard lk(mu_);
  auto& e = engines_[node];
  if (!e) e = std::make_shared<FakeEngine>(*this, node, fmt::format("{}:8420", node));
  return *e;
}

FakeEngine* FakeCluster::find(const std::string& node) {
  std::lock_guard lk(mu_);
  auto it = engines_.find(node);
  return it == engines_.end() ? nullptr : it->second.get();
}

std::shared_ptr<EngineClient> FakeCluster::connect(const std::string& node, const std::string&) {
  std::lock_guard lk(mu_);
  auto it = engines_.find(node);
  if (it == engines_.end()) return nullptr;
  return it->second;
}

bool FakeCluster::child_reachable(const std::string& uri) {
  // nvmf://<node>:8420/<replica nqn>
  if (uri.rfind("nvmf://", 0) != 0) return false;
  auto host_end = uri.find(':', 7);
  if (host_end == std::string::npos) return false;
  std::string node = uri.substr(7, host_end - 7);
  auto id = replica_of_child_uri(uri);
  FakeEngine* e = find(node);
  return e && !e->down() && id && e->replica_shared(*id);
}

uint64_t FakeCluster::child_size(const std::string& uri) {
  if (!child_reachable(uri)) return 0;
  auto host_end = uri.find(':', 7);
  auto id = replica_of_child_uri(uri);
  FakeEngine* e = find(uri.substr(7, host_end - 7));
  return e && id ? e->replica_size(*id) : 0;
}

std::vector<std::string> FakeCluster::nodes() const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (const auto& [n, e] : engines_) out.push_back(n);
  return out;
}

}  // namespace castor::control::sim
