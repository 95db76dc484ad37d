#include <algorithm>
#include <set>

#include "pool/pool_internal.h"

// Pool: cluster allocation on the home reactor (thick replicas reserve all their clusters
// at create/grow, thin ones one cluster at their first write) and the zeroing and
// unmapping of clusters. The metadata records go through MetadataLog.

namespace castor::pool {

using bdev::IoStatus;
using bdev::IoType;

void Pool::adopt(const Loaded& ld) {
  log_.adopt(ld);
  for (const auto& r : ld.state.replicas) {
    auto replica_state = std::make_shared<ReplicaState>();
    replica_state->uuid = r.uuid;
    replica_state->name = r.name;
    replica_state->thin = r.thin;
    replica_state->size_bytes = r.size_bytes;
    uint64_t n = nclusters(r.size_bytes);
    auto mv = std::make_unique<MapVersion>(n);
    for (const auto& e : r.extents) {
      for (uint32_t k = 0; k < e.count; ++k) {
        mv->e[e.logical + k].store(e.physical + k, std::memory_order_relaxed);
        used_[e.physical + k] = true;
        ++used_count_;
        ++replica_state->allocated;
      }
    }
    replica_state->map.store(mv.get(), std::memory_order_release);
    replica_state->versions.push_back(std::move(mv));
    replicas_[r.uuid.to_string()] = replica_state;
  }
}

std::optional<std::vector<uint32_t>> Pool::reserve(uint64_t n) {
  if (layout_.total - used_count_ < n) return std::nullopt;
  std::vector<uint32_t> out;
  out.reserve(n);
  for (uint64_t scanned = 0; out.size() < n && scanned < layout_.total; ++scanned) {
    uint64_t c = hint_;
    hint_ = hint_ + 1 == layout_.total ? 0 : hint_ + 1;
    if (!used_[c]) {
      used_[c] = true;
      out.push_back(static_cast<uint32_t>(c));
    }
  }
  used_count_ += out.size();
  return out;
}
void Pool::unreserve(const std::vector<uint32_t>& cs) {
  for (uint32_t c : cs) used_[c] = false;
  used_count_ -= cs.size();
}

void Pool::ensure_alloc(const std::shared_ptr<ReplicaState>& replica_state, uint32_t logical_cluster,
                  std::function<void(IoStatus)> reply) {
  MapVersion* mv = replica_state->map.load(std::memory_order_acquire);
  if (logical_cluster >= mv->len) {
    reply(IoStatus::kInvalid);
    return;
  }
  if (mv->e[logical_cluster].load(std::memory_order_acquire) != kUnallocated) {
    reply(IoStatus::kSuccess);
    return;
  }
  auto& waiters = replica_state->pending[logical_cluster];
  waiters.push_back(std::move(reply));
  if (waiters.size() > 1) return;  // an allocation of this cluster is already running
  auto got = reserve(1);
  if (!got) {
    finish_alloc(replica_state, logical_cluster, IoStatus::kNoSpace);
    return;
  }
  uint32_t physical_cluster = (*got)[0];
  zero({physical_cluster}, [this, replica_state, logical_cluster, physical_cluster](IoStatus st) {
    if (st != IoStatus::kSuccess) {
      unreserve({physical_cluster});
      finish_alloc(replica_state, logical_cluster, st);
      return;
    }
    LogOp op;
    op.type = OpType::kAlloc;
    op.replica.uuid = replica_state->uuid;
    op.extents = {{logical_cluster, physical_cluster, 1}};
    commit({op}, [this, replica_state, logical_cluster, physical_cluster](Status cs) {
      if (!cs) {
        unreserve({physical_cluster});
        finish_alloc(replica_state, logical_cluster, IoStatus::kIoError);
        return;
      }
      replica_state->map.load(std::memory_order_acquire)
          ->e[logical_cluster]
          .store(physical_cluster, std::memory_order_release);
      replica_state->allocated++;
      finish_alloc(replica_state, logical_cluster, IoStatus::kSuccess);
    });
  });
}

void Pool::finish_alloc(const std::shared_ptr<ReplicaState>& replica_state, uint32_t logical_cluster, IoStatus st) {
  auto waiters = std::move(replica_state->pending[logical_cluster]);
  replica_state->pending.erase(logical_cluster);
  for (auto& w : waiters) w(st);
}

void Pool::range_op(const std::vector<uint32_t>& clusters, IoType type, bool flush, IoDone done) {
  struct Run {
    size_t member;
    uint64_t off, len;
  };
  std::vector<Run> runs;
  std::vector<uint32_t> sorted = clusters;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t c : sorted) {
    auto [m, off] = layout_.locate(c);
    if (!runs.empty() && runs.back().member == m && runs.back().off + runs.back().len == off) {
      runs.back().len += layout_.cs;
    } else {
      runs.push_back({m, off, layout_.cs});
    }
  }
  std::set<size_t> members;
  for (const auto& r : runs) members.insert(r.member);
  auto after = [this, flush, members, done = std::move(done)](IoStatus st) mutable {
    if (st != IoStatus::kSuccess || !flush) {
      done(st);
      return;
    }
    std::vector<size_t> ms(members.begin(), members.end());
    parallel(
        ms.size(),
        [this, ms](size_t i, IoDone d) {
          async_io(home_, member(ms[i]), IoType::kFlush, 0, 0, nullptr, std::move(d));
        },
        std::move(done));
  };
  parallel(
      runs.size(),
      [this, runs, type](size_t i, IoDone d) {
        const auto& r = runs[i];
        if (!member(r.member).bdev()->supports(type)) {
          d(type == IoType::kUnmap ? IoStatus::kSuccess : IoStatus::kInvalid);
          return;
        }
        async_io(home_, member(r.member), type, r.off, r.len, nullptr, std::move(d));
      },
      std::move(after));
}

}  // namespace castor::pool
