#pragma once
// ReplicaBdev: a replica of a pool as a bdev (module "replica"). Its channels translate
// logical blocks to (member disk, offset) through the replica's cluster map, split an I/O
// at cluster boundaries into member requests, return zeroes for unallocated clusters of a
// thin replica, and hold a thin replica's write to an unallocated cluster until the home
// reactor has allocated it (Pool::ensure_alloc). No locks: the map is published
// atomically and clusters are never unmapped.

#include <memory>

#include "pool/pool_internal.h"

namespace castor::pool {

class ReplicaBdev final : public bdev::Bdev {
 public:
  ReplicaBdev(Pool& pool, std::shared_ptr<ReplicaState> replica_state);
  Pool& pool() { return pool_; }
  const std::shared_ptr<ReplicaState>& state() { return replica_state_; }
  void resized(uint64_t bytes) { set_num_blocks(bytes / block_size()); }
  // Any thread: the map is published atomically, old versions live as long as the
  // replica, and clusters are never unmapped, so an allocated answer stays true.
  bool range_allocated(uint64_t offset_blocks, uint64_t num_blocks) const override;
  uint64_t allocation_run(uint64_t offset_blocks, uint64_t max_blocks, bool* allocated) const override;

 protected:
  std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor& r) override;

 private:
  Pool& pool_;
  std::shared_ptr<ReplicaState> replica_state_;
};

}  // namespace castor::pool
