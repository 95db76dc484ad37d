#pragma once
// A small pool for tests that need a real pool replica (one that can grow): pool "p0" on
// a RAM disk of `disk_mb` MiB with 1 MiB clusters and a 1 MiB metadata log, holding one
// thick replica `replica` of `replica_bytes`. Header-only; used across the test folders.

#include <gtest/gtest.h>

#include <string>

#include "pool/pool.h"

namespace castor::testing {

inline void make_small_pool(pool::PoolManager& pools, uint64_t disk_mb, const std::string& replica,
                            uint64_t replica_bytes) {
  pool::PoolCreateOptions po;
  po.name = "p0";
  po.disks = {"malloc:///pdisk?size_mb=" + std::to_string(disk_mb)};
  po.cluster_size = 1 << 20;
  po.log_size = 1 << 20;
  ASSERT_TRUE(pools.create(po));
  pool::ReplicaCreateOptions ro;
  ro.pool = "p0";
  ro.name = replica;
  ro.size_bytes = replica_bytes;
  ASSERT_TRUE(pools.create_replica(ro));
}

}  // namespace castor::testing
