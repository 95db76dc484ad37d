// Rebuild (full, partial, persisted partial), pause/resume/stop, verify mode, and a
// randomized fault schedule test.
#include <random>

#include "common/clock.h"
#include "nexus_harness.h"
#include "pool/pool.h"

namespace castor::nexus::test {
namespace {

using bdev::FaultControl;
using bdev::FaultMode;

IoStatus write_blocks(NexEnv& e, Bdev& b, uint64_t lba, uint64_t n, uint8_t v) {
  DmaBuffer buf(n * b.block_size());
  std::memset(buf.data(), v, n * b.block_size());
  return do_io(e, 0, b, IoType::kWrite, lba, n, buf.data(), n * b.block_size());
}

TEST(Rebuild, NewChildUnderVerifyingWorkloadWithPauseResume) {
  NexEnv e;
  NexusOptions o;
  o.rebuild.rate_mb_s = 16;  // 8 MiB: about half a second, so pause/resume are observable
  auto n = e.make("n0", {"malloc:///a?size_mb=8", "malloc:///b?size_mb=8"}, o);
  ASSERT_TRUE(n);
  Workload w(e, *n);
  w.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string c = "malloc:///c?size_mb=8";
  ASSERT_TRUE(n->add_child(c));
  EXPECT_EQ(child(n->describe(), c)->state, ChildState::kOutOfSync);
  EXPECT_EQ(n->state(), NexusState::kDegraded);
  ASSERT_TRUE(wait_until([&] { return n->rebuild_info(c)->blocks_done > 0; }));
  ASSERT_TRUE(n->pause_rebuild(c));
  ASSERT_TRUE(wait_until([&] { return n->rebuild_info(c)->state == RebuildState::kPaused; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  uint64_t p1 = n->rebuild_info(c)->blocks_done;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto paused = n->rebuild_info(c);
  EXPECT_EQ(paused->blocks_done, p1) << "no progress while paused";
  EXPECT_LT(paused->blocks_done, paused->blocks_total);
  EXPECT_EQ(paused->blocks_total, n->num_blocks());
  EXPECT_FALSE(paused->partial);
  ASSERT_TRUE(n->resume_rebuild(c));
  auto ri = n->wait_rebuild(c, 20000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_EQ(ri->blocks_done, ri->blocks_total);
  EXPECT_GT(ri->rate_bytes_s, 0u);
  EXPECT_LT(ri->rate_bytes_s, 24u << 20) << "throttled to about 16 MiB/s";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  w.finish();
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  EXPECT_EQ(n->state(), NexusState::kOnline);
  EXPECT_EQ(w.verify_all(), 0u);
  expect_equal(e, {"a", "b", "c"}, n->num_blocks());
  EXPECT_TRUE(e.store->load("n0")->children.at(c).healthy);
}

// busy_rate_mb_s holds the copy back while the application does I/O and lets it run at
// rate_mb_s once the application is idle (as md's sync_speed_min and _max).
TEST(Rebuild, BusyRateAppliesOnlyWhileTheApplicationDoesIo) {
  NexEnv e;
  NexusOptions o;
  o.rebuild.rate_mb_s = 64;      // idle: the 64 MiB copy would take about 1 s
  o.rebuild.busy_rate_mb_s = 4;  // busy: 4 MiB/s
  auto n = e.make("n0", {"malloc:///a?size_mb=64"}, o);
  ASSERT_TRUE(n);
  Workload w(e, *n);
  w.start();
  ASSERT_TRUE(wait_until([&] { return w.ops.load() > 100; }));
  const std::string c = "malloc:///c?size_mb=64";
  ASSERT_TRUE(n->add_child(c));
  const uint64_t t0 = mono_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  auto busy = n->rebuild_info(c);
  ASSERT_TRUE(busy);
  const double busy_s = static_cast<double>(mono_ns() - t0) / 1e9;
  const double busy_mib = static_cast<double>(busy->blocks_done * busy->block_size) / 1048576.0;
  // 4 MiB/s for about a second, plus the throttle's 10 ms of slack; an application that
  // stalls for over 100 ms (a loaded machine) lets a little through at 64 MiB/s.
  EXPECT_LT(busy_mib, 4 * busy_s + 12) << "copied while the application was busy, in " << busy_s << " s";
  EXPECT_EQ(busy->state, RebuildState::kRunning);
  w.finish();  // idle from here: 64 MiB/s
  const uint64_t t1 = mono_ns();
  auto ri = n->wait_rebuild(c, 30000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  const double idle_s = static_cast<double>(mono_ns() - t1) / 1e9;
  const double idle_mib = 64 - busy_mib;
  EXPECT_GT(idle_mib / idle_s, 8) << "idle, the copy runs faster than busy_rate_mb_s";
  EXPECT_LT(idle_mib / idle_s, 64 * 1.25) << "and no faster than rate_mb_s";
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.verify_all(), 0u);
  expect_equal(e, {"a", "c"}, n->num_blocks());
}

TEST(Rebuild, StopLeavesTheChildFaultedOutOfSyncAndVerifyModeWorks) {
  NexEnv e;
  NexusOptions o;
  o.rebuild.rate_mb_s = 8;
  o.rebuild.verify = true;
  auto n = e.make("n0", {"malloc:///a?size_mb=8"}, o);
  ASSERT_TRUE(n);
  ASSERT_EQ(write_blocks(e, *n, 0, 64, 0x21), IoStatus::kSuccess);
  const std::string c = "malloc:///c?size_mb=8";
  ASSERT_TRUE(n->add_child(c));
  ASSERT_TRUE(wait_until([&] { return n->rebuild_info(c)->blocks_done > 0; }));
  ASSERT_TRUE(n->stop_rebuild(c));
  auto ri = n->rebuild_info(c);
  EXPECT_EQ(ri->state, RebuildState::kStopped);
  EXPECT_LT(ri->blocks_done, ri->blocks_total);
  auto ci = child(n->describe(), c);
  EXPECT_EQ(ci->state, ChildState::kFaulted);
  EXPECT_EQ(ci->reason, FaultReason::kOutOfSync);
  EXPECT_EQ(n->pause_rebuild(c).code(), Errc::kNotFound);
  // Restarting rebuilds it fully (with verification) to the end.
  ASSERT_TRUE(n->start_rebuild(c));
  ri = n->wait_rebuild(c, 20000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_FALSE(ri->partial);
  expect_equal(e, {"a", "c"}, n->num_blocks());
}

TEST(Rebuild, DestinationFailureFailsTheJob) {
  NexEnv e;
  auto d = e.fault_child("d");
  auto n = e.make("n0", {"malloc:///a?size_mb=8"});
  ASSERT_TRUE(n);
  auto spec = fault_spec(FaultMode::kError, kW);
  spec.skip = 5;
  ASSERT_TRUE(FaultControl::inject(e.bdev(d), spec));
  ASSERT_TRUE(n->add_child("bdev:///" + d));
  auto ri = n->wait_rebuild("bdev:///" + d, 10000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kFailed);
  EXPECT_NE(ri->error.find("write failed"), std::string::npos) << ri->error;
  auto ci = child(n->describe(), "bdev:///" + d);
  EXPECT_EQ(ci->state, ChildState::kFaulted);
  EXPECT_EQ(ci->reason, FaultReason::kRebuildFailed);
  EXPECT_EQ(n->state(), NexusState::kDegraded);
}

TEST(Rebuild, PartialRebuildCopiesOnlyMissedSegments) {
  NexEnv e;
  auto n = e.make("n0", {"malloc:///a?size_mb=8", "malloc:///b?size_mb=8"});
  ASSERT_TRUE(n);
  const uint64_t seg = n->segment_blocks();  // 128 KiB / 4 KiB = 32
  ASSERT_EQ(seg, 32u);
  for (uint64_t i = 0; i < 64; ++i) ASSERT_EQ(write_blocks(e, *n, i * seg, 1, 1), IoStatus::kSuccess);
  const std::string b = "malloc:///b?size_mb=8";
  ASSERT_TRUE(n->offline_child(b));
  EXPECT_EQ(child(n->describe(), b)->state, ChildState::kOffline);
  // Missed: segments 3, 7, 20, and 30+31 (one write spanning both), 7 twice.
  ASSERT_EQ(write_blocks(e, *n, 3 * seg + 5, 1, 2), IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, *n, 7 * seg, 2, 3), IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, *n, 7 * seg + 9, 1, 4), IoStatus::kSuccess);
  ASSERT_EQ(do_io(e, 1, *n, IoType::kWriteZeroes, 20 * seg + 1, 3, nullptr, 0), IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, *n, 31 * seg - 2, 4, 5), IoStatus::kSuccess);
  EXPECT_EQ(child(n->describe(), b)->missed_segments, 5u);
  ASSERT_TRUE(n->online_child(b));
  auto ri = n->wait_rebuild(b, 10000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_TRUE(ri->partial);
  EXPECT_EQ(ri->segments_total, 5u);
  EXPECT_EQ(ri->segments_done, 5u);
  EXPECT_EQ(ri->blocks_done, 5 * seg);
  expect_equal(e, {"a", "b"}, n->num_blocks());
  EXPECT_EQ(n->state(), NexusState::kOnline);
}

TEST(Rebuild, PartialLogSurvivesCleanRecreate) {
  NexEnv e(true);
  ASSERT_TRUE(e.reg->create("malloc:///a?size_mb=8"));
  ASSERT_TRUE(e.reg->create("malloc:///b?size_mb=8"));
  std::vector<std::string> kids = {"bdev:///a", "bdev:///b"};
  auto n = e.make("n0", kids);
  ASSERT_TRUE(n);
  const uint64_t seg = n->segment_blocks();
  ASSERT_TRUE(n->offline_child("bdev:///b"));
  ASSERT_EQ(write_blocks(e, *n, 10 * seg, 1, 9), IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, *n, 40 * seg + 3, 2, 9), IoStatus::kSuccess);
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));
  auto rec = e.store->load("n0")->children.at("bdev:///b");
  ASSERT_TRUE(rec.log);
  EXPECT_TRUE(rec.log->clean);
  EXPECT_EQ(rec.log->dirty.size(), 2u);
  // Re-created: b is stale and gets a partial rebuild of exactly those 2 segments.
  n = e.make("n0", kids);
  ASSERT_TRUE(n);
  EXPECT_FALSE(e.store->load("n0")->children.at("bdev:///b").log) << "a used log is dropped at once";
  auto ri = n->wait_rebuild("bdev:///b", 10000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_TRUE(ri->partial);
  EXPECT_EQ(ri->segments_done, 2u);
  expect_equal(e, {"a", "b"}, n->num_blocks());
  EXPECT_EQ(n->state(), NexusState::kOnline);
}

// Thin replicas in a pool with 1 MiB clusters (8 segments of 128 KiB each).
struct ThinPool {
  NexEnv& e;
  pool::PoolManager pools;
  explicit ThinPool(NexEnv& env) : e(env), pools(*env.reg) {
    pool::PoolCreateOptions po;
    po.name = "p0";
    po.disks = {"malloc:///disk?size_mb=160"};
    po.cluster_size = 1 << 20;
    po.log_size = 1 << 20;
    EXPECT_TRUE(pools.create(po));
  }
  std::string replica(const std::string& name, uint64_t mb = 32) {
    pool::ReplicaCreateOptions ro;
    ro.pool = "p0";
    ro.name = name;
    ro.size_bytes = mb << 20;
    ro.thin = true;
    auto r = pools.create_replica(ro);
    EXPECT_TRUE(r) << r.status().to_string();
    return "bdev:///" + name;
  }
  std::vector<std::pair<uint64_t, uint64_t>> allocated(const std::string& name) {
    auto r = pools.allocated_ranges(name);
    EXPECT_TRUE(r) << r.status().to_string();
    return r ? *r : std::vector<std::pair<uint64_t, uint64_t>>{};
  }
};

TEST(Rebuild, SkipsRangesTheThinSourceNeverAllocatedAndZeroesAStaleDestination) {
  NexEnv e;
  ThinPool tp(e);
  NexusOptions o;
  o.rebuild.verify = true;
  auto src = tp.replica("src");
  auto n = e.make("n0", {src}, o);
  ASSERT_TRUE(n);
  const uint64_t cluster_blocks = (1 << 20) / n->block_size();
  // Source data in clusters 0 (partly), 5 and 21..22 (one write across the boundary).
  ASSERT_EQ(write_blocks(e, *n, 3, 2, 0x11), IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, *n, 5 * cluster_blocks + 100, 40, 0x22), IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, *n, 22 * cluster_blocks - 1, 2, 0x33), IoStatus::kSuccess);
  const auto src_alloc = tp.allocated("src");
  ASSERT_EQ(src_alloc.size(), 3u);
  EXPECT_FALSE(e.bdev("src").range_allocated(cluster_blocks, 4 * cluster_blocks));
  EXPECT_TRUE(e.bdev("src").range_allocated(cluster_blocks, 5 * cluster_blocks));
  // The same as runs (NBD BLOCK_STATUS): 0 | 1..4 | 5 | 6..20 | 21..22 | 23.. clusters,
  // each cut at the asked length.
  std::vector<std::pair<uint64_t, bool>> runs;
  for (uint64_t b = 0; b < n->num_blocks();) {
    bool allocated = false;
    const uint64_t len = e.bdev("src").allocation_run(b, n->num_blocks() - b, &allocated);
    ASSERT_GT(len, 0u);
    runs.emplace_back(len / cluster_blocks, allocated);
    b += len;
  }
  const uint64_t clusters = n->num_blocks() / cluster_blocks;
  EXPECT_EQ(runs, (std::vector<std::pair<uint64_t, bool>>{
                      {1, true}, {4, false}, {1, true}, {15, false}, {2, true}, {clusters - 23, false}}));
  bool allocated = true;
  EXPECT_EQ(e.bdev("src").allocation_run(cluster_blocks + 5, 10, &allocated), 10u);
  EXPECT_FALSE(allocated);

  // A fresh thin destination: only the source's 4 clusters are copied, the rest skipped,
  // and the destination allocates exactly what the source has.
  auto dst = tp.replica("dst");
  ASSERT_TRUE(n->add_child(dst));
  auto ri = n->wait_rebuild(dst, 10000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted) << ri->error;
  EXPECT_EQ(ri->blocks_done, n->num_blocks());
  EXPECT_EQ(ri->blocks_skipped, n->num_blocks() - 4 * cluster_blocks);
  EXPECT_EQ(tp.allocated("dst"), src_alloc);

  // A destination with old data where the source has none: those ranges get zeroes
  // (Write Zeroes, checked by the verify pass), never the stale bytes.
  auto stale = tp.replica("stale");
  ASSERT_EQ(write_blocks(e, e.bdev("stale"), 10 * cluster_blocks + 7, 3 * cluster_blocks, 0xEE),
            IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, e.bdev("stale"), 5 * cluster_blocks, 1, 0xEE), IoStatus::kSuccess);
  ASSERT_TRUE(n->add_child(stale));
  ri = n->wait_rebuild(stale, 10000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted) << ri->error;
  EXPECT_EQ(ri->blocks_skipped, n->num_blocks() - 4 * cluster_blocks);
  EXPECT_EQ(n->state(), NexusState::kOnline);
  expect_equal(e, {"src", "dst", "stale"}, n->num_blocks());
  ASSERT_TRUE(e.mgr->destroy("n0"));
}

// Application writes that allocate clusters while the rebuild runs: each segment's
// allocation is asked under its range lock, so none of them is skipped wrongly.
TEST(Rebuild, ThinSourceAllocatingUnderAWorkloadStillRebuildsEveryWrite) {
  NexEnv e;
  ThinPool tp(e);
  NexusOptions o;
  o.rebuild.rate_mb_s = 64;
  auto src = tp.replica("src", 64);
  auto n = e.make("n0", {src}, o);
  ASSERT_TRUE(n);
  {
    Workload w(e, *n);
    w.start(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto dst = tp.replica("dst", 64);
    ASSERT_TRUE(n->add_child(dst));
    auto ri = n->wait_rebuild(dst, 20000);
    ASSERT_TRUE(ri) << ri.status().to_string();
    EXPECT_EQ(ri->state, RebuildState::kCompleted) << ri->error;
    w.finish();
    EXPECT_EQ(w.errors.load(), 0u);
    EXPECT_EQ(w.mismatches.load(), 0u);
    EXPECT_EQ(w.verify_all(), 0u);
  }
  EXPECT_EQ(n->state(), NexusState::kOnline);
  expect_equal(e, {"src", "dst"}, n->num_blocks());
  EXPECT_EQ(tp.allocated("dst"), tp.allocated("src"));
  ASSERT_TRUE(e.mgr->destroy("n0"));
}

// Application writes that reached bdev `name` so far (all reactors).
uint64_t writes_to(NexEnv& e, const std::string& name) {
  return e.bdev(name).stats().per_type[static_cast<size_t>(IoType::kWrite)].ops;
}

// A write to a segment the copy has yet to reach skips the destination (the copy carries
// it); one to a segment already copied, or one the copy will not touch (a partial
// rebuild's unlisted segments), reaches it; with defer_writes=false every write does.
// Whatever the case, the children end equal.
void check_deferral(bool defer) {
  NexEnv e;
  NexusOptions o;
  o.rebuild.rate_mb_s = 1;  // a segment (128 KiB) every 125 ms: the pause lands first
  o.rebuild.defer_writes = defer;
  auto n = e.make("n0", {"malloc:///a?size_mb=2", "malloc:///b?size_mb=2"}, o);
  ASSERT_TRUE(n);
  const uint64_t seg = n->segment_blocks();
  const uint64_t nseg = n->num_blocks() / seg;
  for (uint64_t i = 0; i < nseg; ++i) ASSERT_EQ(write_blocks(e, *n, i * seg, 1, 1), IoStatus::kSuccess);

  // A full rebuild of a new child, paused after its first segment.
  const std::string b = "malloc:///b?size_mb=2", c = "malloc:///c?size_mb=2";
  ASSERT_TRUE(n->add_child(c));
  ASSERT_TRUE(n->pause_rebuild(c));
  // The job began segment 0 at once, the throttle holds the next for 125 ms: the pause
  // arrives first, so once segment 0 is copied nothing is in flight.
  ASSERT_TRUE(wait_until([&] {
    auto ri = n->rebuild_info(c);
    return ri->state == RebuildState::kPaused && ri->segments_done == 1;
  }));
  uint64_t w0 = writes_to(e, "c");
  ASSERT_EQ(write_blocks(e, *n, (nseg - 1) * seg + 3, 2, 0x5a), IoStatus::kSuccess);  // not copied yet
  EXPECT_EQ(writes_to(e, "c") - w0, defer ? 0u : 1u);
  w0 = writes_to(e, "c");
  ASSERT_EQ(write_blocks(e, *n, 0, 1, 0x5b), IoStatus::kSuccess);  // segment 0: copied
  EXPECT_EQ(writes_to(e, "c") - w0, 1u);
  ASSERT_TRUE(n->resume_rebuild(c));
  auto ri = n->wait_rebuild(c, 30000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted) << ri->error;
  expect_equal(e, {"a", "b", "c"}, n->num_blocks());

  // Partial rebuild of segments 3 and nseg - 2 (missed while offline), paused likewise.
  ASSERT_TRUE(n->offline_child(b));
  ASSERT_EQ(write_blocks(e, *n, 3 * seg, 1, 2), IoStatus::kSuccess);
  ASSERT_EQ(write_blocks(e, *n, (nseg - 2) * seg, 1, 3), IoStatus::kSuccess);
  ASSERT_TRUE(n->online_child(b));
  ASSERT_TRUE(n->pause_rebuild(b));
  ASSERT_TRUE(wait_until([&] {
    auto ri = n->rebuild_info(b);
    return ri->state == RebuildState::kPaused && ri->segments_done == 1;  // segment 3
  }));
  ASSERT_TRUE(n->rebuild_info(b)->partial);
  w0 = writes_to(e, "b");
  ASSERT_EQ(write_blocks(e, *n, (nseg - 2) * seg + 7, 1, 4), IoStatus::kSuccess);  // listed
  EXPECT_EQ(writes_to(e, "b") - w0, defer ? 0u : 1u);
  w0 = writes_to(e, "b");
  ASSERT_EQ(write_blocks(e, *n, 5 * seg + 1, 1, 6), IoStatus::kSuccess);  // not listed
  EXPECT_EQ(writes_to(e, "b") - w0, 1u);
  ASSERT_TRUE(n->resume_rebuild(b));
  ri = n->wait_rebuild(b, 30000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted) << ri->error;
  EXPECT_EQ(n->state(), NexusState::kOnline);
  expect_equal(e, {"a", "b", "c"}, n->num_blocks());
}

TEST(Rebuild, WritesToSegmentsNotYetCopiedAreLeftToTheCopy) { check_deferral(true); }
TEST(Rebuild, WithDeferWritesOffEveryWriteReachesTheDestination) { check_deferral(false); }

}  // namespace
}  // namespace castor::nexus::test
