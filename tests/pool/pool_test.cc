#include <gtest/gtest.h>

#include "bdev/modules/fault.h"
#include "pool_harness.h"

namespace castor::pool::test {
namespace {

constexpr uint64_t kMiB = 1 << 20;

PoolCreateOptions opts(const std::string& name, std::vector<std::string> disks, uint64_t cs = kMiB) {
  PoolCreateOptions o;
  o.name = name;
  o.disks = std::move(disks);
  o.cluster_size = cs;
  o.log_size = 64 * 1024;
  return o;
}

ReplicaCreateOptions ropts(const std::string& pool, const std::string& name, uint64_t size, bool thin) {
  ReplicaCreateOptions o;
  o.pool = pool;
  o.name = name;
  o.size_bytes = size;
  o.thin = thin;
  return o;
}

TEST(Pool, CreateReplicasIoExportImport) {
  PoolEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///d0?size_mb=64"));
  auto p = e.pools->create(opts("p0", {"bdev:///d0"}));
  ASSERT_TRUE(p) << p.status().to_string();
  EXPECT_EQ(p->disks, std::vector<std::string>{"d0"});
  EXPECT_GT(p->total_clusters, 50u);
  EXPECT_EQ(p->used_clusters, 0u);
  EXPECT_EQ(e.reg->info("d0")->claimed_by, "pool:p0");

  auto thick = e.pools->create_replica(ropts("p0", "r-thick", 8 * kMiB, false));
  ASSERT_TRUE(thick) << thick.status().to_string();
  EXPECT_EQ(thick->allocated_clusters, 8u);
  EXPECT_EQ(thick->uri, "bdev:///r-thick");
  auto thin = e.pools->create_replica(ropts("p0", "r-thin", 32 * kMiB, true));
  ASSERT_TRUE(thin);
  EXPECT_EQ(thin->allocated_clusters, 0u);
  EXPECT_EQ(e.pools->info("p0")->used_clusters, 8u);
  EXPECT_EQ(e.pools->info("p0")->committed_bytes, 40 * kMiB);

  // A new thick replica reads zeroes; writes spanning a cluster boundary read back.
  EXPECT_TRUE(e.all(e.read("r-thick", 0, 16), 0));
  ASSERT_EQ(e.fill("r-thick", 250, 12, 0xab), bdev::IoStatus::kSuccess);  // 4 KiB blocks: crosses 1 MiB
  EXPECT_TRUE(e.all(e.read("r-thick", 250, 12), 0xab));
  // Thin: unallocated reads are zero, a first write allocates exactly the clusters it
  // touches, the rest of the cluster reads zero.
  EXPECT_TRUE(e.all(e.read("r-thin", 1000, 8), 0));
  ASSERT_EQ(e.fill("r-thin", 255, 2, 0x11), bdev::IoStatus::kSuccess);  // clusters 0 and 1
  ASSERT_EQ(e.fill("r-thin", 2048 + 7, 1, 0x22, 1), bdev::IoStatus::kSuccess);  // cluster 8, reactor 1
  auto reps = e.pools->list_replicas("p0");
  ASSERT_EQ(reps.size(), 2u);
  EXPECT_EQ(reps[1].name, "r-thin");
  EXPECT_EQ(reps[1].allocated_clusters, 3u);
  EXPECT_TRUE(e.all(e.read("r-thin", 255, 2), 0x11));
  EXPECT_TRUE(e.all(e.read("r-thin", 2048, 7), 0));
  EXPECT_TRUE(e.all(e.read("r-thin", 2048 + 7, 1), 0x22));
  auto ranges = e.pools->allocated_ranges("r-thin");
  ASSERT_TRUE(ranges);
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0], std::make_pair(uint64_t{0}, 2 * kMiB));
  EXPECT_EQ((*ranges)[1], std::make_pair(8 * kMiB, kMiB));

  // Export, then import: same replicas, same data.
  ASSERT_TRUE(e.pools->export_pool("p0"));
  EXPECT_FALSE(e.reg->find("r-thin"));
  EXPECT_TRUE(e.reg->info("d0")->claimed_by.empty());
  auto rep = e.check({"d0"});
  EXPECT_TRUE(rep.ok) << (rep.problems.empty() ? "" : rep.problems[0]);
  EXPECT_EQ(rep.used_clusters, 11u);
  auto imp = e.pools->import({"bdev:///d0"});
  ASSERT_TRUE(imp) << imp.status().to_string();
  EXPECT_EQ(imp->name, "p0");
  EXPECT_EQ(imp->used_clusters, 11u);
  EXPECT_EQ(imp->replicas, 2u);
  EXPECT_TRUE(e.all(e.read("r-thick", 250, 12), 0xab));
  EXPECT_TRUE(e.all(e.read("r-thin", 255, 2), 0x11));
  EXPECT_TRUE(e.all(e.read("r-thin", 2048 + 7, 1), 0x22));
  EXPECT_EQ(e.reg->find("r-thin")->uuid(), thin->uuid);
}

TEST(Pool, ErrorsSayWhatIsWrong) {
  PoolEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///d0?size_mb=32"));
  ASSERT_TRUE(e.reg->create("malloc:///d1?size_mb=32"));
  ASSERT_TRUE(e.reg->create("malloc:///tiny?size_mb=1"));
  EXPECT_EQ(e.pools->create(opts("bad name", {"d0"})).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(e.pools->create(opts("p", {"d0"}, 3 * kMiB)).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(e.pools->create(opts("p", {"nope"})).status().code(), Errc::kNotFound);
  auto small = e.pools->create(opts("p", {"tiny"}));
  EXPECT_EQ(small.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(small.status().message().find("too small"), std::string::npos);
  ASSERT_TRUE(e.pools->create(opts("p0", {"d0"})));
  EXPECT_EQ(e.pools->create(opts("p0", {"d1"})).status().code(), Errc::kAlreadyExists);
  auto inuse = e.pools->create(opts("p1", {"d0"}));
  EXPECT_EQ(inuse.status().code(), Errc::kBusy);
  // A disk holding another pool's label is refused even when not imported.
  ASSERT_TRUE(e.pools->export_pool("p0"));
  auto labelled = e.pools->create(opts("p1", {"d0"}));
  EXPECT_EQ(labelled.status().code(), Errc::kBusy);
  EXPECT_NE(labelled.status().message().find("already belongs to pool 'p0'"), std::string::npos);
  ASSERT_TRUE(e.pools->import({"d0"}));

  EXPECT_EQ(e.pools->create_replica(ropts("nope", "r", kMiB, false)).status().code(), Errc::kNotFound);
  EXPECT_EQ(e.pools->create_replica(ropts("p0", "r", 0, false)).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(e.pools->create_replica(ropts("p0", "r", 1000, false)).status().code(), Errc::kInvalidArgument);
  auto big = e.pools->create_replica(ropts("p0", "r", 64 * kMiB, false));
  EXPECT_EQ(big.status().code(), Errc::kNoSpace);
  EXPECT_NE(big.status().message().find("free clusters"), std::string::npos);
  EXPECT_EQ(e.pools->info("p0")->used_clusters, 0u);  // the failed create reserved nothing
  ASSERT_TRUE(e.pools->create_replica(ropts("p0", "r", kMiB, false)));
  EXPECT_EQ(e.pools->create_replica(ropts("p0", "r", kMiB, true)).status().code(), Errc::kAlreadyExists);
  EXPECT_EQ(e.pools->create_replica(ropts("p0", "d1", kMiB, true)).status().code(), Errc::kAlreadyExists);
  EXPECT_EQ(e.pools->destroy_replica("zz").code(), Errc::kNotFound);
  EXPECT_EQ(e.pools->grow_replica("r", kMiB / 2).status().code(), Errc::kInvalidArgument);
  {
    auto d = e.reg->open("r");
    ASSERT_TRUE(d);
    EXPECT_EQ(e.pools->destroy_replica("r").code(), Errc::kBusy);
    EXPECT_EQ(e.pools->export_pool("p0").code(), Errc::kBusy);
  }
  ASSERT_TRUE(e.pools->destroy_replica("r"));
  EXPECT_EQ(e.pools->info("p0")->used_clusters, 0u);
}

TEST(Pool, ThinOutOfSpaceFailsOnlyThatWrite) {
  PoolEnv e;
  auto p = e.pools->create(opts("p0", {"malloc:///d0?size_mb=16"}));
  ASSERT_TRUE(p);
  const uint64_t free = p->total_clusters;
  ASSERT_TRUE(e.pools->create_replica(ropts("p0", "a", free * kMiB, true)));
  ASSERT_TRUE(e.pools->create_replica(ropts("p0", "b", free * kMiB, true)));
  for (uint64_t c = 0; c + 1 < free; ++c) ASSERT_EQ(e.fill("a", c * 256, 1, 0x5a), bdev::IoStatus::kSuccess);
  ASSERT_EQ(e.fill("b", 0, 1, 0x6b), bdev::IoStatus::kSuccess);  // the last cluster
  EXPECT_EQ(e.fill("a", (free - 1) * 256, 1, 0x77), bdev::IoStatus::kNoSpace);
  EXPECT_EQ(e.fill("b", 256, 1, 0x77, 1), bdev::IoStatus::kNoSpace);
  // Allocated clusters still take writes; nothing else changed.
  EXPECT_EQ(e.fill("a", 5, 1, 0x5b), bdev::IoStatus::kSuccess);
  EXPECT_TRUE(e.all(e.read("a", 0, 1), 0x5a));
  EXPECT_TRUE(e.all(e.read("a", 5, 1), 0x5b));
  EXPECT_TRUE(e.all(e.read("b", 0, 1), 0x6b));
  EXPECT_TRUE(e.all(e.read("b", 256, 1), 0));
  EXPECT_EQ(e.pools->info("p0")->used_clusters, free);
  // Freeing space makes the write succeed.
  ASSERT_TRUE(e.pools->destroy_replica("a"));
  EXPECT_EQ(e.fill("b", 256, 1, 0x77), bdev::IoStatus::kSuccess);
}

TEST(Pool, GrowThinAndThick) {
  PoolEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///d0?size_mb=32"));
  ASSERT_TRUE(e.pools->create(opts("p0", {"d0"})));
  ASSERT_TRUE(e.pools->create_replica(ropts("p0", "t", 2 * kMiB, false)));
  ASSERT_TRUE(e.pools->create_replica(ropts("p0", "n", 2 * kMiB, true)));
  ASSERT_EQ(e.fill("t", 511, 1, 0x31), bdev::IoStatus::kSuccess);
  EXPECT_EQ(e.fill("t", 512, 1, 0x31), bdev::IoStatus::kInvalid);  // past the end
  auto g = e.pools->grow_replica("t", 4 * kMiB);
  ASSERT_TRUE(g) << g.status().to_string();
  EXPECT_EQ(g->allocated_clusters, 4u);
  EXPECT_EQ(e.reg->find("t")->num_blocks(), 1024u);
  ASSERT_EQ(e.fill("t", 1000, 1, 0x32), bdev::IoStatus::kSuccess);
  EXPECT_TRUE(e.all(e.read("t", 511, 1), 0x31));
  EXPECT_TRUE(e.all(e.read("t", 512, 100), 0));
  auto gn = e.pools->grow_replica("n", 1024 * kMiB);  // thin may exceed the pool
  ASSERT_TRUE(gn);
  EXPECT_EQ(gn->allocated_clusters, 0u);
  EXPECT_EQ(e.pools->grow_replica("t", 1024 * kMiB).status().code(), Errc::kNoSpace);
  ASSERT_TRUE(e.pools->export_pool("p0"));
  auto imp = e.pools->import({"d0"});
  ASSERT_TRUE(imp) << imp.status().to_string();
  EXPECT_EQ(e.reg->find("t")->num_blocks(), 1024u);
  EXPECT_EQ(e.reg->find("n")->size_bytes(), 1024 * kMiB);
  EXPECT_TRUE(e.all(e.read("t", 1000, 1), 0x32));
}

TEST(Pool, MultiDiskImportInAnyOrderAndMissingMember) {
  PoolEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///a?size_mb=16"));
  ASSERT_TRUE(e.reg->create("malloc:///b?size_mb=16"));
  ASSERT_TRUE(e.reg->create("malloc:///c?size_mb=16"));
  auto p = e.pools->create(opts("mp", {"a", "b", "c"}));
  ASSERT_TRUE(p) << p.status().to_string();
  ASSERT_TRUE(e.pools->create_replica(ropts("mp", "big", 30 * kMiB, false)));
  // Write a distinct byte into every MiB so clusters on every disk are used.
  for (uint64_t c = 0; c < 30; ++c) ASSERT_EQ(e.fill("big", c * 256 + 3, 1, static_cast<uint8_t>(c + 1)), bdev::IoStatus::kSuccess);
  ASSERT_TRUE(e.pools->export_pool("mp"));
  auto missing = e.pools->import({"a", "c"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().code(), Errc::kNotFound);
  EXPECT_NE(missing.status().message().find("member 1"), std::string::npos) << missing.status().message();
  auto imp = e.pools->import({"c", "a", "b"});
  ASSERT_TRUE(imp) << imp.status().to_string();
  EXPECT_EQ(imp->disks, (std::vector<std::string>{"a", "b", "c"}));
  for (uint64_t c = 0; c < 30; ++c) EXPECT_TRUE(e.all(e.read("big", c * 256 + 3, 1), static_cast<uint8_t>(c + 1))) << c;
}

TEST(Pool, DestroyWipesLabels) {
  PoolEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///d0?size_mb=16"));
  ASSERT_TRUE(e.pools->create(opts("p0", {"d0"})));
  ASSERT_TRUE(e.pools->create_replica(ropts("p0", "r", kMiB, false)));
  ASSERT_TRUE(e.pools->destroy("p0"));
  EXPECT_FALSE(e.reg->find("r"));
  auto imp = e.pools->import({"d0"});
  ASSERT_FALSE(imp);
  EXPECT_NE(imp.status().message().find("not a Castor pool"), std::string::npos) << imp.status().message();
  EXPECT_TRUE(e.pools->create(opts("p1", {"d0"})));  // the disk is free again
}

TEST(Pool, ManyOpsCheckpointAndReplay) {
  // A 64 KiB log holds few records: hundreds of operations force many checkpoints.
  PoolEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///d0?size_mb=64"));
  ASSERT_TRUE(e.pools->create(opts("p0", {"d0"})));
  ASSERT_TRUE(e.pools->create_replica(ropts("p0", "thin", 48 * kMiB, true)));
  for (int i = 0; i < 40; ++i) {
    std::string n = "r" + std::to_string(i);
    ASSERT_TRUE(e.pools->create_replica(ropts("p0", n, kMiB, i % 2)));
    ASSERT_EQ(e.fill("thin", uint64_t(i) * 256, 1, static_cast<uint8_t>(i + 1)), bdev::IoStatus::kSuccess);
    if (i % 3 == 0) {
      ASSERT_TRUE(e.pools->destroy_replica(n));
    }
  }
  auto before = e.pools->info("p0");
  ASSERT_TRUE(e.pools->export_pool("p0"));
  auto rep = e.check({"d0"});
  ASSERT_TRUE(rep.ok) << rep.problems[0];
  auto imp = e.pools->import({"d0"});
  ASSERT_TRUE(imp) << imp.status().to_string();
  EXPECT_EQ(imp->used_clusters, before->used_clusters);
  EXPECT_EQ(imp->replicas, before->replicas);
  for (int i = 0; i < 40; ++i) EXPECT_TRUE(e.all(e.read("thin", uint64_t(i) * 256, 1), static_cast<uint8_t>(i + 1)));
}

}  // namespace
}  // namespace castor::pool::test

namespace castor::pool::test {
namespace {

// A failed metadata write or flush makes the pool's metadata read-only, with an error that
// says so (and, for a failed flush, that the change may or may not be durable); the
// replicas keep serving I/O; a re-import reads back whatever reached the disk and the
// pool is writable again. Nothing acknowledged is lost.
TEST(Pool, MetadataIoErrorMakesThePoolReadOnly) {
  for (const auto op : {bdev::IoType::kWrite, bdev::IoType::kFlush}) {
    SCOPED_TRACE(bdev::io_type_name(op));
    PoolEnv e;
    ASSERT_TRUE(e.reg->create("malloc:///m?size_mb=32"));
    ASSERT_TRUE(e.reg->create("fault:///d0?base=m"));
    ASSERT_TRUE(e.pools->create(opts("p0", {"d0"})));
    ASSERT_TRUE(e.pools->create_replica(ropts("p0", "r1", 2 * kMiB, false)));
    ASSERT_EQ(e.fill("r1", 0, 4, 0x11), bdev::IoStatus::kSuccess);
    bdev::FaultRuleSpec spec;
    spec.mode = bdev::FaultMode::kError;
    spec.ops_mask = bdev::io_type_bit(op);
    auto id = bdev::FaultControl::inject(*e.reg->find("d0"), spec);
    ASSERT_TRUE(id);
    auto r2 = e.pools->create_replica(ropts("p0", "r2", kMiB, true));
    ASSERT_FALSE(r2);
    EXPECT_NE(r2.status().message().find("read-only"), std::string::npos) << r2.status().message();
    if (op == bdev::IoType::kFlush) {
      EXPECT_NE(r2.status().message().find("may or may not be durable"), std::string::npos)
          << r2.status().message();
    }
    ASSERT_TRUE(bdev::FaultControl::clear(*e.reg->find("d0"), 0));
    // Read-only even with the disk well again: the in-memory state may disagree with it.
    auto r3 = e.pools->create_replica(ropts("p0", "r3", kMiB, true));
    ASSERT_FALSE(r3);
    EXPECT_NE(r3.status().message().find("read-only"), std::string::npos) << r3.status().message();
    auto info = e.pools->list();
    ASSERT_EQ(info.size(), 1u);
    EXPECT_EQ(info[0].state, "faulted");
    // The replica still serves I/O to what it has.
    ASSERT_EQ(e.fill("r1", 4, 4, 0x22), bdev::IoStatus::kSuccess);
    EXPECT_TRUE(e.all(e.read("r1", 0, 4), 0x11));
    ASSERT_TRUE(e.pools->export_pool("p0"));
    auto imp = e.pools->import({"d0"});
    ASSERT_TRUE(imp) << imp.status().to_string();
    EXPECT_TRUE(e.all(e.read("r1", 0, 4), 0x11));
    EXPECT_TRUE(e.all(e.read("r1", 4, 4), 0x22));
    EXPECT_FALSE(e.reg->find("r3"));
    // A failed write left no record; a failed flush left it on this (cacheless) disk.
    EXPECT_EQ(static_cast<bool>(e.reg->find("r2")), op == bdev::IoType::kFlush);
    EXPECT_TRUE(e.pools->create_replica(ropts("p0", "r4", kMiB, true))) << "writable again";
  }
}

}  // namespace
}  // namespace castor::pool::test
