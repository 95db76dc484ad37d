#pragma once
// Layer 3: pools and replicas. A pool turns one or more disks (bdevs, concatenated) into
// clusters for replicas: thin or thick logical volumes, each exposed as a bdev. The
// on-disk format (pool/format.h, docs/pool-format.md) is crash-consistent: metadata
// changes are records in a checksummed log, acknowledged only once durable, folded into
// alternating checkpoints when the log fills.
//
// Threading: PoolManager's methods are thread-safe and block; call them from control
// threads (gRPC, engine start-up, tests), never from a reactor. A pool's metadata is
// owned by reactor 0 ("home"); replica I/O runs on any reactor without locks and asks
// the home reactor only when a thin replica first writes a cluster.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "pool/format.h"

namespace castor::pool {

struct PoolCreateOptions {
  std::string name;
  // Disks as bdev URIs: an existing bdev as bdev:///<name>, or any module URI
  // (file:///..., uring:///..., malloc:///...) which the pool creates and owns.
  std::vector<std::string> disks;
  uint64_t cluster_size = kDefaultClusterSize;
  uint64_t log_size = 0;  // metadata log ring bytes; 0 = kLogBytes (tests use small logs)
};

struct PoolInfo {
  std::string name;
  Uuid uuid;
  uint64_t cluster_size = 0;
  std::vector<std::string> disks;  // member bdev names, in member order
  uint64_t total_clusters = 0;
  uint64_t used_clusters = 0;
  uint64_t capacity_bytes = 0;   // total_clusters * cluster_size
  uint64_t used_bytes = 0;       // used_clusters * cluster_size
  uint64_t committed_bytes = 0;  // sum of replica sizes (thin ones may exceed capacity)
  uint32_t replicas = 0;
  std::string state = "online";
};

struct ReplicaInfo {
  std::string name;  // also its bdev name
  Uuid uuid;
  std::string pool;
  uint64_t size_bytes = 0;
  bool thin = false;
  uint64_t allocated_clusters = 0;
  std::string uri;  // how a nexus names a local replica: bdev:///<name>
};

struct ReplicaCreateOptions {
  std::string pool;
  std::string name;
  uint64_t size_bytes = 0;
  bool thin = false;
  std::optional<Uuid> uuid;  // random when absent
};

class Pool;

class PoolManager {
 public:
  explicit PoolManager(bdev::BdevRegistry& registry);
  // Exports every pool (nothing is written: the log is always durable).
  ~PoolManager();

  // Formats the disks. Errors: InvalidArgument (name, cluster size, disk too small),
  // AlreadyExists (pool name), Busy (disk already in a pool or claimed), NotFound.
  Result<PoolInfo> create(const PoolCreateOptions& opts);
  // Imports the pool on `disks` (every member must be given). Errors name what is
  // wrong: a missing member (by index and UUID), a corrupt label or checkpoint, a log
  // that contradicts its checkpoint, a doubly-owned cluster.
  Result<PoolInfo> import(const std::vector<std::string>& disks);
  // Closes the pool; its disks import again later. Errors: NotFound, Busy (a replica
  // is open).
  Status export_pool(const std::string& name);
  // Destroys the replicas and wipes the labels: the disks no longer import.
  Status destroy(const std::string& name);
  std::vector<PoolInfo> list() const;
  Result<PoolInfo> info(const std::string& name) const;

  // Errors: NotFound (pool), AlreadyExists (name or uuid), InvalidArgument (size 0 or
  // too big), NoSpace (thick replica larger than the free space).
  Result<ReplicaInfo> create_replica(const ReplicaCreateOptions& opts);
  // Errors: NotFound, Busy (open).
  Status destroy_replica(const std::string& name);
  // Grows to `new_size` bytes (never shrinks). Errors: NotFound, InvalidArgument, NoSpace.
  Result<ReplicaInfo> grow_replica(const std::string& name, uint64_t new_size);
  std::vector<ReplicaInfo> list_replicas(const std::string& pool = "") const;
  // Allocated ranges of a replica in bytes (offset, length), for rebuilds that skip
  // unallocated thin ranges.
  Result<std::vector<std::pair<uint64_t, uint64_t>>> allocated_ranges(const std::string& name) const;

 private:
  Result<Pool*> find_pool(const std::string& name) const;
  Result<PoolInfo> info_locked(const std::string& name) const;
  Status register_replica(Pool& p, const std::string& uuid);
  Status destroy_replica_locked(const std::string& name);
  Result<std::pair<Pool*, Uuid>> find_replica(const std::string& name) const;

  bdev::BdevRegistry& registry_;
  mutable std::mutex mu_;  // serializes control operations
  std::map<std::string, std::unique_ptr<Pool>> pools_;
};

// ---- Offline check (castor-pool-check) ----

// Reads `len` bytes at `offset` of member disk `i` (as given to check_pool).
using MemberReader = std::function<Status(size_t member, uint64_t offset, void* buf, size_t len)>;

struct CheckReport {
  bool ok = false;
  std::vector<std::string> problems;  // empty when ok
  std::vector<std::string> notes;     // what was found (slots, log records, ...)
  Label label;
  PoolState state;
  uint64_t total_clusters = 0;
  uint64_t used_clusters = 0;
};

// Verifies every invariant of the pool on `nmembers` disks: labels (both copies agree),
// checkpoint checksums, log records replay on the checkpoint without contradiction, no
// cluster owned twice, every mapped cluster inside the pool, thick replicas fully
// allocated, counts consistent. Never throws or crashes on corrupt input.
CheckReport check_pool(size_t nmembers, const MemberReader& read,
                       const std::vector<uint64_t>& member_sizes);

}  // namespace castor::pool
