#include "pool/pool.h"

#include <algorithm>
#include <cstring>
#include <future>
#include <set>

#include <spdlog/spdlog.h>

#include "pool/layout.h"
#include "pool/meta_io.h"
#include "pool/pool_internal.h"
#include "pool/replica_bdev.h"

namespace castor::pool {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;

namespace {
Errc errc_of(IoStatus s) { return s == IoStatus::kNoSpace ? Errc::kNoSpace : Errc::kIoError; }
}  // namespace

// ---------------------------------------------------------------------------------
// PoolManager: control-thread API. Each operation validates, then runs its metadata
// work on the home reactor and waits for it.

namespace {

template <class T>
T run_home(Pool& p, std::function<void(std::function<void(T)>)> fn) {
  std::promise<T> pr;
  auto f = pr.get_future();
  p.home().send([&] { fn([&pr](T v) { pr.set_value(std::move(v)); }); });
  return f.get();
}

Status check_pool_name(const std::string& n) {
  if (n.empty() || n.size() > kMaxNameLen) {
    return make_error(Errc::kInvalidArgument, "pool name must have 1 to {} characters", kMaxNameLen);
  }
  for (char c : n) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return make_error(Errc::kInvalidArgument, "pool name '{}' has an invalid character", n);
    }
  }
  return Status::ok();
}

ReplicaInfo replica_info(Pool& p, ReplicaState& replica_state) {
  ReplicaInfo i;
  i.name = replica_state.name;
  i.uuid = replica_state.uuid;
  i.pool = p.name();
  i.size_bytes = replica_state.size_bytes;
  i.thin = replica_state.thin;
  i.allocated_clusters = replica_state.allocated;
  i.uri = "bdev:///" + replica_state.name;
  return i;
}

}  // namespace

PoolManager::PoolManager(bdev::BdevRegistry& registry) : registry_(registry) {}

PoolManager::~PoolManager() {
  std::vector<std::string> names;
  {
    std::lock_guard lk(mu_);
    for (const auto& [n, p] : pools_) names.push_back(n);
  }
  for (const auto& n : names) {
    if (auto st = export_pool(n); !st) spdlog::warn("pool export at shutdown: {}", st.to_string());
  }
}

Result<Pool*> PoolManager::find_pool(const std::string& name) const {
  auto it = pools_.find(name);
  if (it == pools_.end()) return make_error(Errc::kNotFound, "pool '{}' does not exist", name);
  return it->second.get();
}

Result<std::pair<Pool*, Uuid>> PoolManager::find_replica(const std::string& name) const {
  for (const auto& [pn, p] : pools_) {
    Pool* pp = p.get();
    auto hit = run_home<std::optional<Uuid>>(*pp, [pp, &name](auto done) {
      for (const auto& [u, replica_state] : pp->replicas()) {
        if (replica_state->name == name || u == name) return done(replica_state->uuid);
      }
      done(std::nullopt);
    });
    if (hit) return std::pair<Pool*, Uuid>{pp, *hit};
  }
  return make_error(Errc::kNotFound, "replica '{}' does not exist", name);
}

namespace {

// Opens the disks: bdev:///name uses an existing bdev; other URIs are created and owned.
struct OpenedDisks {
  std::vector<bdev::BdevDesc> descs;
  std::vector<std::string> names;
  std::vector<bool> owned;
};

void release_disks(bdev::BdevRegistry& reg, OpenedDisks& d, const bdev::Claim& claimer) {
  for (size_t i = 0; i < d.descs.size(); ++i) {
    d.descs[i].close();
    reg.release_claim(d.names[i], claimer);
    if (d.owned[i]) (void)reg.destroy(d.names[i]);
  }
  d.descs.clear();
}

Result<OpenedDisks> open_disks(bdev::BdevRegistry& reg, const std::vector<std::string>& disks,
                               const bdev::Claim& claimer) {
  OpenedDisks out;
  if (disks.empty()) return make_error(Errc::kInvalidArgument, "a pool needs at least one disk");
  if (disks.size() > kMaxMembers) {
    return make_error(Errc::kInvalidArgument, "a pool has at most {} disks", kMaxMembers);
  }
  for (const auto& d : disks) {
    std::string name;
    bool owned = false;
    if (d.rfind("bdev:///", 0) == 0) {
      name = d.substr(8);
    } else if (d.find("://") == std::string::npos) {
      name = d;  // a bare bdev name
    } else {
      auto info = reg.create(d);
      if (!info) {
        release_disks(reg, out, claimer);
        return info.status();
      }
      name = info->name;
      owned = true;
    }
    auto desc = reg.open(name, claimer);
    if (!desc) {
      if (owned) (void)reg.destroy(name);
      release_disks(reg, out, claimer);
      return make_error(desc.status().code(), "disk '{}': {}", name, desc.status().message());
    }
    out.descs.push_back(std::move(desc.value()));
    out.names.push_back(name);
    out.owned.push_back(owned);
  }
  uint32_t bs = out.descs[0].bdev()->block_size();
  for (auto& dd : out.descs) {
    if (dd.bdev()->block_size() != bs) {
      release_disks(reg, out, claimer);
      return make_error(Errc::kInvalidArgument, "pool disks must share one block size");
    }
    if (kBlock % dd.bdev()->block_size()) {
      release_disks(reg, out, claimer);
      return make_error(Errc::kInvalidArgument, "disk block size {} does not divide 4096",
                        dd.bdev()->block_size());
    }
  }
  return out;
}

MemberRead disk_reader(reactor::Reactor& r, OpenedDisks& d) {
  return [&r, &d](size_t i, uint64_t off, void* buf, size_t len) {
    return sync_read(r, d.descs[i], off, buf, len);
  };
}

}  // namespace

Result<PoolInfo> PoolManager::create(const PoolCreateOptions& o) {
  std::lock_guard lk(mu_);
  if (auto st = check_pool_name(o.name); !st) return st;
  if (pools_.count(o.name)) return make_error(Errc::kAlreadyExists, "pool '{}' already exists", o.name);
  const uint64_t cs = o.cluster_size;
  if (cs < kMinClusterSize || cs > kMaxClusterSize || (cs & (cs - 1))) {
    return make_error(Errc::kInvalidArgument,
                      "cluster size {} is invalid (a power of two from 64 KiB to 1 GiB)", cs);
  }
  const bdev::Claim claimer = bdev::Claim::pool(o.name);
  auto disks = open_disks(registry_, o.disks, claimer);
  if (!disks) return disks.status();
  auto& R = registry_.reactors().at(0);
  auto fail = [&](Status st) {
    release_disks(registry_, *disks, claimer);
    return st;
  };
  // Refuse disks that already hold a pool.
  std::vector<uint8_t> blk(2 * kBlock);
  for (size_t i = 0; i < disks->descs.size(); ++i) {
    auto& b = *disks->descs[i].bdev();
    if (b.size_bytes() < 2 * kBlock) return fail(make_error(Errc::kInvalidArgument, "disk '{}' is too small", b.name()));
    if (auto st = sync_read(R, disks->descs[i], 0, blk.data(), blk.size()); !st) return fail(st);
    for (int c = 0; c < 2; ++c) {
      auto l = decode_label(std::span(blk).subspan(c * kBlock, kBlock));
      if (l) {
        return fail(make_error(Errc::kBusy, "disk '{}' already belongs to pool '{}' (destroy that pool first)",
                               b.name(), l->pool_name));
      }
    }
  }
  Label L;
  L.pool_uuid = Uuid::random();
  L.pool_name = o.name;
  L.cluster_size = cs;
  L.member_count = static_cast<uint32_t>(disks->descs.size());
  uint64_t total_guess = 0;
  for (auto& dd : disks->descs) total_guess += dd.bdev()->size_bytes() / cs;
  const uint64_t record_max = 16 + 1 + kMaxNameLen + 8 + 1 + 4;
  L.meta_offset = 2 * kBlock;
  L.slot_size = (sizeof(CheckpointHeaderRaw) + 4 + kMaxReplicas * record_max + total_guess * 12 + kBlock - 1) /
                kBlock * kBlock;
  L.log_offset = L.meta_offset + 2 * L.slot_size;
  L.log_size = o.log_size ? o.log_size : kLogBytes;
  if (L.log_size % kBlock || L.log_size < 4 * kBlock) {
    return fail(make_error(Errc::kInvalidArgument, "log size must be a multiple of 4096, at least 16 KiB"));
  }
  L.data_offset = (L.log_offset + L.log_size + cs - 1) / cs * cs;
  for (size_t i = 0; i < disks->descs.size(); ++i) {
    uint64_t sz = disks->descs[i].bdev()->size_bytes() / cs * cs;
    uint64_t need = i == 0 ? L.data_offset + cs : 2 * cs;
    if (sz < need) {
      return fail(make_error(Errc::kInvalidArgument,
                             "disk '{}' ({} bytes) is too small for a pool with {} byte clusters (needs {})",
                             disks->names[i], disks->descs[i].bdev()->size_bytes(), cs, need));
    }
    L.members.emplace_back(Uuid::random(), sz);
  }
  // Order: empty checkpoint in slot A, slot B and log start cleared, then labels (other
  // members first, member 0 last), then flush. A crash before the last label write
  // leaves disks that do not import as this pool.
  const auto& m0 = disks->descs[0];
  Checkpoint c0;
  c0.generation = 1;
  c0.log_seq = 0;
  auto enc = encode_checkpoint(L.pool_uuid, c0, L.slot_size);
  if (!enc) return fail(enc.status());
  std::vector<uint8_t> zero(kBlock, 0);
  if (auto st = sync_write(R, m0, L.meta_offset, enc->data(), enc->size()); !st) return fail(st);
  if (auto st = sync_write(R, m0, L.meta_offset + L.slot_size, zero.data(), zero.size()); !st) return fail(st);
  if (auto st = sync_write(R, m0, L.log_offset, zero.data(), zero.size()); !st) return fail(st);
  if (auto st = sync_flush(R, m0); !st) return fail(st);
  for (size_t k = disks->descs.size(); k-- > 0;) {
    Label li = L;
    li.member_index = static_cast<uint32_t>(k);
    auto lb = encode_label(li);
    lb.resize(2 * kBlock);
    std::memcpy(lb.data() + kBlock, lb.data(), kBlock);
    if (auto st = sync_write(R, disks->descs[k], 0, lb.data(), lb.size()); !st) return fail(st);
    if (auto st = sync_flush(R, disks->descs[k]); !st) return fail(st);
  }
  auto impl = std::make_unique<Pool>(registry_, L, std::move(disks->descs), disks->names, disks->owned);
  Loaded ld;
  ld.label = L;
  ld.generation = 1;
  ld.next_seq = 1;
  impl->adopt(ld);
  spdlog::info("pool created name={} uuid={} disks={} cluster_size={} clusters={}", o.name,
               L.pool_uuid.to_string(), fmt::join(impl->member_names(), ","), cs, impl->layout().total);
  pools_[o.name] = std::move(impl);
  return info_locked(o.name);
}

Status PoolManager::register_replica(Pool& p, const std::string& uuid) {
  auto replica_state = run_home<std::shared_ptr<ReplicaState>>(p, [&p, &uuid](auto done) {
    auto it = p.replicas().find(uuid);
    done(it == p.replicas().end() ? nullptr : it->second);
  });
  if (!replica_state) return make_error(Errc::kInternal, "replica {} vanished", uuid);
  auto b = std::make_shared<ReplicaBdev>(p, replica_state);
  replica_state->bdev = b;
  if (auto st = registry_.add(b, "replica://" + p.name() + "/" + replica_state->name); !st) return st;
  // The pool owns its replicas' bdevs: a plain bdev destroy must not remove one.
  return registry_.set_owner(replica_state->name, bdev::Claim::pool(p.name()));
}

Result<PoolInfo> PoolManager::import(const std::vector<std::string>& disk_uris) {
  std::lock_guard lk(mu_);
  // Claim under a temporary name; the label tells the pool's name.
  const bdev::Claim tmp_claimer = bdev::Claim::pool("(importing)");
  auto disks = open_disks(registry_, disk_uris, tmp_claimer);
  if (!disks) return disks.status();
  auto& R = registry_.reactors().at(0);
  std::vector<uint64_t> sizes;
  for (auto& d : disks->descs) sizes.push_back(d.bdev()->size_bytes());
  auto ld = load_metadata(disks->descs.size(), disk_reader(R, *disks), sizes);
  if (!ld) {
    release_disks(registry_, *disks, tmp_claimer);
    return make_error(ld.status().code(), "cannot import: {}", ld.status().message());
  }
  Layout y = Layout::from(ld->label);
  uint64_t used = 0;
  auto problems = validate_state(y, ld->state, &used);
  const std::string& name = ld->label.pool_name;
  if (!problems.empty()) {
    release_disks(registry_, *disks, tmp_claimer);
    return make_error(Errc::kInvalidArgument, "cannot import pool '{}': {}", name, problems[0]);
  }
  if (pools_.count(name)) {
    release_disks(registry_, *disks, tmp_claimer);
    return make_error(Errc::kAlreadyExists, "pool '{}' is already imported", name);
  }
  for (const auto& r : ld->state.replicas) {
    if (!registry_.name_free(r.name)) {
      release_disks(registry_, *disks, tmp_claimer);
      return make_error(Errc::kAlreadyExists, "cannot import pool '{}': bdev name '{}' of one of its replicas is taken",
                        name, r.name);
    }
  }
  for (const auto& n : ld->notes) spdlog::info("pool={} import: {}", name, n);
  // Re-order the disks by member index and re-claim them under the pool's name.
  OpenedDisks ordered;
  for (size_t m = 0; m < ld->order.size(); ++m) {
    size_t d = ld->order[m];
    ordered.descs.push_back(std::move(disks->descs[d]));
    ordered.names.push_back(disks->names[d]);
    ordered.owned.push_back(disks->owned[d]);
    registry_.release_claim(disks->names[d], tmp_claimer);
  }
  const bdev::Claim claimer = bdev::Claim::pool(name);
  for (auto& n : ordered.names) {
    // The descriptors stay open; only the claim's name changes.
    auto again = registry_.open(n, claimer);
    if (again) again->close();
  }
  auto impl = std::make_unique<Pool>(registry_, ld->label, std::move(ordered.descs), ordered.names,
                                         ordered.owned);
  impl->adopt(ld.value());
  Pool* p = impl.get();
  pools_[name] = std::move(impl);
  std::vector<std::string> uuids;
  for (const auto& r : ld->state.replicas) uuids.push_back(r.uuid.to_string());
  for (const auto& u : uuids) {
    if (auto st = register_replica(*p, u); !st) spdlog::error("pool={} replica {}: {}", name, u, st.message());
  }
  spdlog::info("pool imported name={} uuid={} replicas={} used_clusters={}/{}", name,
               ld->label.pool_uuid.to_string(), uuids.size(), used, y.total);
  return info_locked(name);
}

Status PoolManager::export_pool(const std::string& name) {
  std::lock_guard lk(mu_);
  auto p = find_pool(name);
  if (!p) return p.status();
  Pool* pool = *p;
  auto names = run_home<std::vector<std::string>>(*pool, [pool](auto done) {
    std::vector<std::string> n;
    for (const auto& [u, replica_state] : pool->replicas()) n.push_back(replica_state->name);
    done(n);
  });
  for (const auto& n : names) {
    auto info = registry_.info(n);
    if (info && info->open_descs > 0) {
      return make_error(Errc::kBusy, "pool '{}': replica '{}' is open", name, n);
    }
  }
  for (const auto& n : names) {
    (void)registry_.set_owner(n, std::nullopt);
    (void)registry_.destroy(n);
  }
  // Wait for in-flight metadata work (there is none without open replicas) and close.
  run_home<int>(*pool, [](auto done) { done(0); });
  auto impl = std::move(pools_[name]);
  pools_.erase(name);
  const auto member_names = impl->member_names();
  const auto owned = impl->owned();
  impl.reset();  // closes the member descriptors
  for (size_t i = 0; i < member_names.size(); ++i) {
    registry_.release_claim(member_names[i], bdev::Claim::pool(name));
    if (owned[i]) (void)registry_.destroy(member_names[i]);
  }
  spdlog::info("pool exported name={}", name);
  return Status::ok();
}

Status PoolManager::destroy(const std::string& name) {
  std::lock_guard lk(mu_);
  {
    auto p = find_pool(name);
    if (!p) return p.status();
    Pool* pool = *p;
    auto replicas = run_home<std::vector<std::string>>(*pool, [pool](auto done) {
      std::vector<std::string> n;
      for (const auto& [u, replica_state] : pool->replicas()) n.push_back(replica_state->name);
      done(n);
    });
    for (const auto& r : replicas) {
      if (auto st = destroy_replica_locked(r); !st) return st;
    }
  }
  auto p = find_pool(name);
  if (!p) return p.status();
  Pool* pool = *p;
  auto& R = registry_.reactors().at(0);
  std::vector<uint8_t> zero(2 * kBlock, 0);
  for (size_t i = 0; i < pool->label().member_count; ++i) {
    if (auto st = sync_write(R, pool->member(i), 0, zero.data(), zero.size()); !st) return st;
    if (auto st = sync_flush(R, pool->member(i)); !st) return st;
  }
  auto names = pool->member_names();
  auto owned = pool->owned();
  pools_.erase(name);
  for (size_t i = 0; i < names.size(); ++i) {
    registry_.release_claim(names[i], bdev::Claim::pool(name));
    if (owned[i]) (void)registry_.destroy(names[i]);
  }
  spdlog::info("pool destroyed name={}", name);
  return Status::ok();
}

Result<PoolInfo> PoolManager::info_locked(const std::string& name) const {
  auto p = find_pool(name);
  if (!p) return p.status();
  Pool* pool = *p;
  PoolInfo i;
  i.name = name;
  i.uuid = pool->label().pool_uuid;
  i.cluster_size = pool->layout().cs;
  i.disks = pool->member_names();
  i.total_clusters = pool->layout().total;
  i.capacity_bytes = i.total_clusters * i.cluster_size;
  run_home<int>(*pool, [pool, &i](auto done) {
    i.used_clusters = pool->used_count();
    for (const auto& [u, replica_state] : pool->replicas()) {
      i.committed_bytes += replica_state->size_bytes;
      i.replicas++;
    }
    i.state = pool->failed() ? "faulted" : "online";
    done(0);
  });
  i.used_bytes = i.used_clusters * i.cluster_size;
  return i;
}

Result<PoolInfo> PoolManager::info(const std::string& name) const {
  std::lock_guard lk(mu_);
  return info_locked(name);
}

std::vector<PoolInfo> PoolManager::list() const {
  std::lock_guard lk(mu_);
  std::vector<PoolInfo> out;
  for (const auto& [n, p] : pools_) {
    if (auto i = info_locked(n)) out.push_back(i.value());
  }
  return out;
}

Result<ReplicaInfo> PoolManager::create_replica(const ReplicaCreateOptions& o) {
  std::lock_guard lk(mu_);
  auto p = find_pool(o.pool);
  if (!p) return p.status();
  Pool* pool = *p;
  if (o.name.empty() || o.name.size() > kMaxNameLen) {
    return make_error(Errc::kInvalidArgument, "replica name must have 1 to {} characters", kMaxNameLen);
  }
  const uint32_t bs = pool->block_size();
  if (o.size_bytes == 0 || o.size_bytes % bs) {
    return make_error(Errc::kInvalidArgument, "replica size {} must be a positive multiple of {} bytes",
                      o.size_bytes, bs);
  }
  const uint64_t ncl = pool->nclusters(o.size_bytes);
  if (ncl > kMaxReplicaClusters) {
    return make_error(Errc::kInvalidArgument, "replica size {} is too large (at most {} clusters)", o.size_bytes,
                      kMaxReplicaClusters);
  }
  if (!registry_.name_free(o.name)) {
    return make_error(Errc::kAlreadyExists, "a bdev named '{}' already exists", o.name);
  }
  Uuid uuid = o.uuid ? *o.uuid : Uuid::random();
  for (const auto& [pn, pp] : pools_) {
    Pool* q = pp.get();
    bool clash = run_home<bool>(*q, [q, &uuid, &o](auto done) {
      for (const auto& [u, replica_state] : q->replicas()) {
        if (replica_state->uuid == uuid || replica_state->name == o.name) return done(true);
      }
      done(false);
    });
    if (clash) return make_error(Errc::kAlreadyExists, "replica '{}' or uuid {} already exists", o.name, uuid.to_string());
  }
  Status st = run_home<Status>(*pool, [pool, &o, uuid, ncl](std::function<void(Status)> done) {
    std::vector<uint32_t> clusters;
    if (!o.thin) {
      auto got = pool->reserve(ncl);
      if (!got) {
        return done(make_error(Errc::kNoSpace, "pool '{}' has {} free clusters, the replica needs {}", pool->name(),
                               pool->layout().total - pool->used_count(), ncl));
      }
      clusters = std::move(*got);
    }
    // The replica state is private until the create record is durable.
    auto replica_state = std::make_shared<ReplicaState>();
    replica_state->uuid = uuid;
    replica_state->name = o.name;
    replica_state->thin = o.thin;
    replica_state->size_bytes = o.size_bytes;
    replica_state->allocated = clusters.size();
    auto mv = std::make_unique<MapVersion>(ncl);
    for (uint64_t i = 0; i < clusters.size(); ++i) mv->e[i].store(clusters[i], std::memory_order_relaxed);
    replica_state->map.store(mv.get(), std::memory_order_release);
    replica_state->versions.push_back(std::move(mv));
    LogOp op;
    op.type = OpType::kCreate;
    op.replica.uuid = uuid;
    op.replica.name = o.name;
    op.replica.size_bytes = o.size_bytes;
    op.replica.thin = o.thin;
    std::vector<uint32_t> m(ncl, kUnallocated);
    std::copy(clusters.begin(), clusters.end(), m.begin());
    op.replica.extents = map_to_extents(m);
    pool->zero(clusters, [pool, clusters, op, replica_state, done](IoStatus zs) {
      if (zs != IoStatus::kSuccess) {
        pool->unreserve(clusters);
        return done(make_error(errc_of(zs), "zeroing the new replica's clusters failed: {}",
                               bdev::io_status_name(zs)));
      }
      pool->commit({op}, [pool, clusters, replica_state, done](Status cs) {
        if (!cs) {
          pool->unreserve(clusters);
          return done(cs);
        }
        pool->replicas()[replica_state->uuid.to_string()] = replica_state;
        done(Status::ok());
      });
    });
  });
  if (!st) return st;
  if (auto rst = register_replica(*pool, uuid.to_string()); !rst) return rst;
  spdlog::info("replica created pool={} name={} uuid={} size={} thin={}", o.pool, o.name, uuid.to_string(),
               o.size_bytes, o.thin);
  auto out = run_home<ReplicaInfo>(*pool, [pool, &uuid](auto done) {
    done(replica_info(*pool, *pool->replicas().at(uuid.to_string())));
  });
  return out;
}

Status PoolManager::destroy_replica(const std::string& name) {
  std::lock_guard lk(mu_);
  return destroy_replica_locked(name);
}

Status PoolManager::destroy_replica_locked(const std::string& name) {
  auto hit = find_replica(name);
  if (!hit) return hit.status();
  Pool* pool = hit->first;
  const Uuid uuid = hit->second;
  std::string bdev_name = run_home<std::string>(*pool, [pool, uuid](auto done) {
    done(pool->replicas().at(uuid.to_string())->name);
  });
  // No descriptor may be open: after this no I/O reaches the replica.
  (void)registry_.set_owner(bdev_name, std::nullopt);
  if (auto st = registry_.destroy(bdev_name); !st && st.code() != Errc::kNotFound) {
    (void)registry_.set_owner(bdev_name, bdev::Claim::pool(pool->name()));
    return st;
  }
  Status st = run_home<Status>(*pool, [pool, uuid](std::function<void(Status)> done) {
    auto replica_state = pool->replicas().at(uuid.to_string());
    LogOp op;
    op.type = OpType::kDestroy;
    op.replica.uuid = uuid;
    pool->commit({op}, [pool, replica_state, done](Status cs) {
      if (!cs) return done(cs);
      pool->replicas().erase(replica_state->uuid.to_string());
      // Unmap the freed clusters before they can be handed out again.
      std::vector<uint32_t> clusters;
      MapVersion* mv = replica_state->map.load(std::memory_order_acquire);
      for (uint64_t i = 0; i < mv->len; ++i) {
        uint32_t physical_cluster = mv->e[i].load(std::memory_order_relaxed);
        if (physical_cluster != kUnallocated) clusters.push_back(physical_cluster);
      }
      pool->unmap(clusters, [pool, clusters, done](IoStatus) {
        pool->unreserve(clusters);
        done(Status::ok());
      });
    });
  });
  if (st) spdlog::info("replica destroyed pool={} name={}", pool->name(), bdev_name);
  return st;
}

Result<ReplicaInfo> PoolManager::grow_replica(const std::string& name, uint64_t new_size) {
  std::lock_guard lk(mu_);
  auto hit = find_replica(name);
  if (!hit) return hit.status();
  Pool* pool = hit->first;
  const Uuid uuid = hit->second;
  const uint32_t bs = pool->block_size();
  if (new_size == 0 || new_size % bs) {
    return make_error(Errc::kInvalidArgument, "size {} must be a positive multiple of {} bytes", new_size, bs);
  }
  if (pool->nclusters(new_size) > kMaxReplicaClusters) {
    return make_error(Errc::kInvalidArgument, "size {} is too large (at most {} clusters)", new_size,
                      kMaxReplicaClusters);
  }
  Status st = run_home<Status>(*pool, [pool, uuid, new_size](std::function<void(Status)> done) {
    auto replica_state = pool->replicas().at(uuid.to_string());
    if (new_size < replica_state->size_bytes) {
      return done(make_error(Errc::kInvalidArgument, "replica '{}' is {} bytes; replicas only grow",
                             replica_state->name, replica_state->size_bytes));
    }
    if (new_size == replica_state->size_bytes) return done(Status::ok());
    const uint64_t old_n = pool->nclusters(replica_state->size_bytes);
    const uint64_t new_n = pool->nclusters(new_size);
    std::vector<uint32_t> clusters;
    if (!replica_state->thin && new_n > old_n) {
      auto got = pool->reserve(new_n - old_n);
      if (!got) {
        return done(make_error(Errc::kNoSpace, "pool '{}' has {} free clusters, growing needs {}", pool->name(),
                               pool->layout().total - pool->used_count(), new_n - old_n));
      }
      clusters = std::move(*got);
    }
    LogOp op;
    op.type = OpType::kResize;
    op.replica.uuid = replica_state->uuid;
    op.new_size = new_size;
    for (uint64_t i = 0; i < clusters.size(); ++i) {
      uint32_t logical_cluster = static_cast<uint32_t>(old_n + i);
      if (!op.extents.empty() && op.extents.back().logical + op.extents.back().count == logical_cluster &&
          op.extents.back().physical + op.extents.back().count == clusters[i]) {
        op.extents.back().count++;
      } else {
        op.extents.push_back({logical_cluster, clusters[i], 1});
      }
    }
    pool->zero(clusters, [pool, replica_state, op, clusters, new_size, old_n, new_n, done](IoStatus zs) {
      if (zs != IoStatus::kSuccess) {
        pool->unreserve(clusters);
        return done(make_error(errc_of(zs), "zeroing new clusters failed"));
      }
      pool->commit({op}, [pool, replica_state, clusters, new_size, old_n, new_n, done](Status cs) {
        if (!cs) {
          pool->unreserve(clusters);
          return done(cs);
        }
        // Publish a larger map (copy of the old one plus the new clusters), then the size.
        MapVersion* old = replica_state->map.load(std::memory_order_acquire);
        auto mv = std::make_unique<MapVersion>(new_n);
        for (uint64_t i = 0; i < old->len; ++i) mv->e[i].store(old->e[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
        for (uint64_t i = 0; i < clusters.size(); ++i) mv->e[old_n + i].store(clusters[i], std::memory_order_relaxed);
        replica_state->map.store(mv.get(), std::memory_order_release);
        replica_state->versions.push_back(std::move(mv));
        replica_state->allocated += clusters.size();
        replica_state->size_bytes = new_size;
        if (auto b = replica_state->bdev.lock()) b->resized(new_size);
        done(Status::ok());
      });
    });
  });
  if (!st) return st;
  spdlog::info("replica grown pool={} name={} size={}", pool->name(), name, new_size);
  return run_home<ReplicaInfo>(*pool, [pool, uuid](auto done) {
    done(replica_info(*pool, *pool->replicas().at(uuid.to_string())));
  });
}

std::vector<ReplicaInfo> PoolManager::list_replicas(const std::string& pool_name) const {
  std::lock_guard lk(mu_);
  std::vector<ReplicaInfo> out;
  for (const auto& [pn, p] : pools_) {
    if (!pool_name.empty() && pn != pool_name) continue;
    Pool* pool = p.get();
    auto v = run_home<std::vector<ReplicaInfo>>(*pool, [pool](auto done) {
      std::vector<ReplicaInfo> r;
      for (const auto& [u, replica_state] : pool->replicas()) r.push_back(replica_info(*pool, *replica_state));
      done(r);
    });
    out.insert(out.end(), v.begin(), v.end());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<std::vector<std::pair<uint64_t, uint64_t>>> PoolManager::allocated_ranges(const std::string& name) const {
  std::lock_guard lk(mu_);
  auto hit = find_replica(name);
  if (!hit) return hit.status();
  Pool* pool = hit->first;
  const Uuid uuid = hit->second;
  return run_home<std::vector<std::pair<uint64_t, uint64_t>>>(*pool, [pool, uuid](auto done) {
    auto replica_state = pool->replicas().at(uuid.to_string());
    MapVersion* mv = replica_state->map.load(std::memory_order_acquire);
    const uint64_t cs = pool->layout().cs;
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (uint64_t i = 0; i < mv->len; ++i) {
      if (mv->e[i].load(std::memory_order_relaxed) == kUnallocated) continue;
      uint64_t off = i * cs;
      uint64_t len = std::min(cs, replica_state->size_bytes - off);
      if (!out.empty() && out.back().first + out.back().second == off) {
        out.back().second += len;
      } else {
        out.emplace_back(off, len);
      }
    }
    done(out);
  });
}

}  // namespace castor::pool
