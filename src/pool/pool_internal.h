#pragma once
// Private to the pool library: one imported pool at run time (Pool) and the state of its
// replicas that the replica bdevs share with it. Pool owns its member disks, the cluster
// allocation and the metadata log; it lives on its home reactor (reactor 0): every method
// below "home reactor" runs there, the accessors above it are fixed after import.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "pool/layout.h"
#include "pool/meta_io.h"
#include "pool/metadata_log.h"

namespace castor::pool {

// A replica's cluster map version. Grows replace the version (old ones stay alive until
// the replica is destroyed, so a channel holding a stale pointer reads valid memory).
struct MapVersion {
  explicit MapVersion(uint64_t n) : len(n), e(new std::atomic<uint32_t>[n]) {
    for (uint64_t i = 0; i < n; ++i) e[i].store(kUnallocated, std::memory_order_relaxed);
  }
  uint64_t len;
  std::unique_ptr<std::atomic<uint32_t>[]> e;
};

class ReplicaBdev;

// Runtime state of one replica, shared by its bdev (any reactor) and the pool (home).
struct ReplicaState {
  Uuid uuid;
  std::string name;
  bool thin = false;
  std::atomic<MapVersion*> map{nullptr};
  std::vector<std::unique_ptr<MapVersion>> versions;  // home reactor only
  uint64_t size_bytes = 0;                            // home reactor only
  uint64_t allocated = 0;                             // home reactor only
  // Thin allocations in progress: logical cluster -> waiters (home reactor only).
  std::map<uint32_t, std::vector<std::function<void(bdev::IoStatus)>>> pending;
  std::weak_ptr<ReplicaBdev> bdev;
};

class Pool {
 public:
  Pool(bdev::BdevRegistry& reg, Label label, std::vector<bdev::BdevDesc> descs,
       std::vector<std::string> member_names, std::vector<bool> owned)
      : reg_(reg),
        home_(reg.reactors().at(0)),
        label_(std::move(label)),
        layout_(Layout::from(label_)),
        descs_(std::move(descs)),
        member_names_(std::move(member_names)),
        owned_(std::move(owned)),
        log_(home_, descs_[0], label_, layout_),
        used_(layout_.total, false) {}

  const std::string& name() const { return label_.pool_name; }
  const Label& label() const { return label_; }
  const Layout& layout() const { return layout_; }
  // Member disk i's open descriptor: its channels carry the pool's I/O to it.
  const bdev::BdevDesc& member(size_t i) const { return descs_[i]; }
  reactor::Reactor& home() { return home_; }
  const std::vector<std::string>& member_names() const { return member_names_; }
  const std::vector<bool>& owned() const { return owned_; }
  uint32_t block_size() const { return descs_[0].bdev()->block_size(); }
  uint64_t nclusters(uint64_t size) const { return (size + layout_.cs - 1) / layout_.cs; }

  // Set-up from loaded metadata (control thread, before any I/O): the log's state and
  // every replica's cluster map.
  void adopt(const Loaded& ld);

  // ---- home reactor ----

  // Appends `ops` to the metadata log (MetadataLog::commit).
  void commit(std::vector<LogOp> ops, std::function<void(Status)> done) { log_.commit(std::move(ops), std::move(done)); }
  // Picks `n` free clusters and marks them used (uncommitted until the caller commits).
  std::optional<std::vector<uint32_t>> reserve(uint64_t n);
  void unreserve(const std::vector<uint32_t>& cs);
  // Writes zeroes over the clusters and makes that durable (so a committed cluster never
  // shows another replica's old data).
  void zero(const std::vector<uint32_t>& clusters, IoDone done) { range_op(clusters, bdev::IoType::kWriteZeroes, true, std::move(done)); }
  void unmap(const std::vector<uint32_t>& clusters, IoDone done) {
    range_op(clusters, bdev::IoType::kUnmap, false, std::move(done));
  }
  // Thin allocation of logical cluster `logical_cluster` of `replica_state`: a fresh
  // physical cluster, zeroed and flushed, then recorded in the log; `reply` runs on the
  // home reactor once the cluster is mapped (or with the failure). Concurrent requests
  // for one cluster share one allocation.
  void ensure_alloc(const std::shared_ptr<ReplicaState>& replica_state, uint32_t logical_cluster,
                    std::function<void(bdev::IoStatus)> reply);

  std::map<std::string, std::shared_ptr<ReplicaState>>& replicas() { return replicas_; }
  uint64_t used_count() const { return used_count_; }
  bool failed() const { return log_.failed(); }

 private:
  void finish_alloc(const std::shared_ptr<ReplicaState>& replica_state, uint32_t logical_cluster, bdev::IoStatus st);
  void range_op(const std::vector<uint32_t>& clusters, bdev::IoType type, bool flush, IoDone done);

  bdev::BdevRegistry& reg_;
  reactor::Reactor& home_;
  Label label_;
  Layout layout_;
  std::vector<bdev::BdevDesc> descs_;
  std::vector<std::string> member_names_;
  std::vector<bool> owned_;
  MetadataLog log_;
  // Home reactor state.
  std::map<std::string, std::shared_ptr<ReplicaState>> replicas_;  // by uuid string
  std::vector<bool> used_;
  uint64_t used_count_ = 0;
  uint64_t hint_ = 0;
};

}  // namespace castor::pool
