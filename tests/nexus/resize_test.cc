// Online growth of a nexus: its children (pool replicas) grow first, then the nexus, while
// a verifying workload runs; the blocks past the old end are mirrored, and the missed-write
// logs grow with it (a partial rebuild after the growth copies the new blocks too).
#include "nexus_harness.h"
#include "pool/pool.h"

namespace castor::nexus::test {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// Thick replicas in a pool with 1 MiB clusters on a RAM disk.
struct GrowPool {
  pool::PoolManager pools;
  explicit GrowPool(NexEnv& env) : pools(*env.reg) {
    pool::PoolCreateOptions po;
    po.name = "p0";
    po.disks = {"malloc:///disk?size_mb=96"};
    po.cluster_size = 1 << 20;
    po.log_size = 1 << 20;
    EXPECT_TRUE(pools.create(po));
  }
  std::string replica(const std::string& name, uint64_t mb) {
    pool::ReplicaCreateOptions ro;
    ro.pool = "p0";
    ro.name = name;
    ro.size_bytes = mb * kMiB;
    auto r = pools.create_replica(ro);
    EXPECT_TRUE(r) << r.status().to_string();
    return "bdev:///" + name;
  }
  void grow(const std::string& name, uint64_t mb) {
    auto r = pools.grow_replica(name, mb * kMiB);
    ASSERT_TRUE(r) << r.status().to_string();
  }
};

std::vector<uint8_t> blocks_of(NexEnv& e, Bdev& b, uint64_t lba, uint64_t n) {
  DmaBuffer buf(n * b.block_size());  // aligned as a nexus asks (its block size, at least)
  EXPECT_EQ(do_io(e, 0, b, IoType::kRead, lba, n, buf.data(), n * b.block_size()), IoStatus::kSuccess);
  return std::vector<uint8_t>(buf.data(), buf.data() + n * b.block_size());
}

IoStatus write_pattern(NexEnv& e, Bdev& b, uint64_t lba, uint64_t n, uint8_t v, size_t r = 0) {
  DmaBuffer buf(n * b.block_size());
  std::memset(buf.data(), v, n * b.block_size());
  return do_io(e, r, b, IoType::kWrite, lba, n, buf.data(), n * b.block_size());
}

TEST(NexusResize, GrowsUnderIoOnceEveryChildHasGrownAndMirrorsPastTheOldEnd) {
  NexEnv e;
  GrowPool gp(e);
  auto a = gp.replica("a", 8), b = gp.replica("b", 8);
  auto n = e.make("n0", {a, b});
  ASSERT_TRUE(n);
  const uint32_t bs = n->block_size();
  const uint64_t old_blocks = n->num_blocks();
  ASSERT_EQ(n->size_bytes(), 8 * kMiB);

  // A verifying workload over the old size runs through everything below.
  Workload w(e, *n);
  w.start(4);
  ASSERT_TRUE(wait_until([&] { return w.ops.load() > 200; }));

  // Argument checks: zero, not a block multiple, smaller than now.
  EXPECT_EQ(n->resize(0).code(), Errc::kInvalidArgument);
  EXPECT_EQ(n->resize(16 * kMiB + 1).code(), Errc::kInvalidArgument);
  EXPECT_EQ(n->resize(4 * kMiB).code(), Errc::kInvalidArgument);
  EXPECT_TRUE(n->resize(8 * kMiB)) << "the same size is a no-op";

  // Children still at 8 MiB, then only one grown: refused, naming the small child, and
  // the nexus keeps its size.
  auto st = n->resize(16 * kMiB);
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  gp.grow("a", 16);
  st = n->resize(16 * kMiB);
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  EXPECT_NE(st.message().find(b), std::string::npos) << st.to_string();
  EXPECT_EQ(n->num_blocks(), old_blocks);
  EXPECT_EQ(write_pattern(e, *n, old_blocks, 1, 0x5a), IoStatus::kInvalid) << "past the end before the growth";

  gp.grow("b", 16);
  ASSERT_TRUE(n->resize(16 * kMiB));
  EXPECT_EQ(n->size_bytes(), 16 * kMiB);
  EXPECT_EQ(n->describe().size_bytes, 16 * kMiB);
  EXPECT_EQ(n->state(), NexusState::kOnline);

  // Writes past the old end from both reactors, while the workload keeps going below it.
  const uint64_t new_blocks = n->num_blocks();
  ASSERT_EQ(write_pattern(e, *n, old_blocks, 8, 0x61, 0), IoStatus::kSuccess);
  ASSERT_EQ(write_pattern(e, *n, old_blocks + 1000, 64, 0x62, 1), IoStatus::kSuccess);
  ASSERT_EQ(write_pattern(e, *n, new_blocks - 2, 2, 0x63, 1), IoStatus::kSuccess);
  EXPECT_EQ(write_pattern(e, *n, new_blocks - 1, 2, 0x64), IoStatus::kInvalid) << "past the new end";
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  w.finish();
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  EXPECT_EQ(w.verify_all(), 0u);

  // Read back through the nexus and from each child: the same bytes on both.
  for (auto [lba, len, v] : {std::tuple<uint64_t, uint64_t, uint8_t>{old_blocks, 8, 0x61},
                             {old_blocks + 1000, 64, 0x62},
                             {new_blocks - 2, 2, 0x63}}) {
    const std::vector<uint8_t> want(len * bs, v);
    EXPECT_EQ(blocks_of(e, *n, lba, len), want) << "nexus lba " << lba;
    EXPECT_EQ(blocks_of(e, e.bdev("a"), lba, len), want) << "child a lba " << lba;
    EXPECT_EQ(blocks_of(e, e.bdev("b"), lba, len), want) << "child b lba " << lba;
  }
  expect_equal(e, {"a", "b"}, new_blocks);
  ASSERT_TRUE(e.mgr->destroy("n0"));
}

// A child taken offline after the growth logs the writes it misses past the old end, and
// its partial rebuild copies them: the logs grew with the nexus.
TEST(NexusResize, MissedWriteLogsCoverTheNewBlocks) {
  NexEnv e;
  GrowPool gp(e);
  auto a = gp.replica("a", 8), b = gp.replica("b", 8);
  auto n = e.make("n0", {a, b});
  ASSERT_TRUE(n);
  const uint64_t old_blocks = n->num_blocks();
  gp.grow("a", 24);
  gp.grow("b", 24);
  ASSERT_TRUE(n->resize(24 * kMiB));
  const uint64_t new_blocks = n->num_blocks();

  ASSERT_TRUE(n->offline_child(b));
  ASSERT_EQ(write_pattern(e, *n, 10, 4, 0x11), IoStatus::kSuccess);
  ASSERT_EQ(write_pattern(e, *n, old_blocks + 300, 16, 0x22), IoStatus::kSuccess);
  ASSERT_EQ(write_pattern(e, *n, new_blocks - 1, 1, 0x33), IoStatus::kSuccess);
  auto off = child(n->describe(), b);
  ASSERT_TRUE(off->has_log);
  EXPECT_EQ(off->missed_segments, 3u);

  ASSERT_TRUE(n->online_child(b));
  auto ri = n->wait_rebuild(b, 10000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_TRUE(ri->partial);
  EXPECT_EQ(ri->segments_done, 3u);
  EXPECT_EQ(n->state(), NexusState::kOnline);
  expect_equal(e, {"a", "b"}, new_blocks);
  ASSERT_TRUE(e.mgr->destroy("n0"));
}

TEST(SegmentLog, GrowsWithoutLosingBitsAcrossChunks) {
  SegmentLog l(100 * 32, 32);  // 100 segments: 2 words, chunk 0 holds 2
  EXPECT_EQ(l.num_segments(), 100u);
  l.mark_segment(0);
  l.mark_segment(99);
  l.mark_segment(100);  // beyond: ignored
  EXPECT_EQ(l.count(), 2u);
  l.grow(1000 * 32);
  EXPECT_EQ(l.num_segments(), 1000u);
  EXPECT_TRUE(l.test(0));
  EXPECT_TRUE(l.test(99));
  EXPECT_FALSE(l.test(100));
  for (uint64_t s : {100u, 127u, 128u, 255u, 256u, 511u, 512u, 999u}) l.mark_segment(s);
  EXPECT_EQ(l.count(), 10u);
  EXPECT_EQ(l.runs(), (std::vector<std::pair<uint64_t, uint64_t>>{
                          {0, 1}, {99, 2}, {127, 2}, {255, 2}, {511, 2}, {999, 1}}));
  l.grow(10 * 32);  // never shrinks
  EXPECT_EQ(l.num_segments(), 1000u);
  EXPECT_EQ(l.take(), (std::vector<uint64_t>{0, 99, 100, 127, 128, 255, 256, 511, 512, 999}));
  EXPECT_EQ(l.count(), 0u);
  SegmentLog empty(0, 32);
  EXPECT_EQ(empty.num_segments(), 0u);
  empty.grow(64 * 32 * 5);
  empty.mark(64 * 32 * 5 - 1, 1);
  EXPECT_EQ(empty.runs(), (std::vector<std::pair<uint64_t, uint64_t>>{{319, 1}}));
}

}  // namespace
}  // namespace castor::nexus::test
