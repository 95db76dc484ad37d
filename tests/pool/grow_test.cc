// Growing replicas under I/O (issue 19, item 5).
//
// ThinAndThickGrowUnderAVerifyingWorkload: a thin and a thick replica of a two-disk pool
// grow several times (to sizes that are not cluster multiples, within the last cluster and
// across several) while the verifying workload (../bdev/verify_workload.h) runs on each.
// After every grow the new blocks read as zeroes and take writes; at the end every
// acknowledged write reads back, the workload runs again over the whole new size, and a
// re-import finds the new sizes and the same data.
//
// PowerLossDuringAGrowUnderIo: the pool's disks have volatile write caches. A first
// workload phase is flushed (durable); a second one runs while one replica grows, and the
// power goes off on both disks at a seeded point inside the grow (its N-th zeroing, log
// or flush I/O, after 0-9 of them), or just after it. After the re-import the replica has its old or its new
// size (the new one if the grow was acknowledged), every block holds its durable content
// or a later unflushed write, the new blocks read as zeroes, and the pool grows again.
//
// CASTOR_GROW_SEED (first seed) and CASTOR_GROW_POINTS (trials) select them; a failure
// prints the replay line. The workload's timing is not part of the seed: a replay repeats
// the sizes, the replica and the cut point, not the exact interleaving.
#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <random>
#include <thread>

#include "../bdev/verify_workload.h"
#include "../common/watchdog.h"
#include "bdev/modules/fault.h"
#include "pool_harness.h"
#include "power_cut.h"

namespace castor::pool::test {
namespace {

using bdev::DmaBuffer;
using bdev::IoStatus;
using bdev::IoType;
using bdev::test::fill_block;
using bdev::test::Workload;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint32_t kBs = 4096;
// Generations this file writes itself; the workload's are below 2^26 (slot ids < 16).
constexpr uint32_t kOwnGen = 0x70000000;

uint64_t env_u64(const char* name, uint64_t def) {
  const char* v = getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : def;
}

template <class F>
bool wait_until(F&& f, int timeout_ms = 20000) {
  for (int i = 0; i < timeout_ms; i += 2) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return f();
}

// Reads [lba, lba + n) of `b` on reactor `r` in pieces; returns the first block that is not
// zeroes, or UINT64_MAX (also reports a failed read as a test failure).
uint64_t first_nonzero(PoolEnv& e, bdev::Bdev& b, uint64_t lba, uint64_t n, size_t r = 1) {
  DmaBuffer buf(64 * kBs);
  for (uint64_t at = lba; at < lba + n; at += 64) {
    const uint64_t k = std::min<uint64_t>(64, lba + n - at);
    EXPECT_EQ(do_io(e, r, b, IoType::kRead, at, k, buf.data(), k * kBs), IoStatus::kSuccess) << b.name() << " " << at;
    for (uint64_t i = 0; i < k; ++i) {
      const uint8_t* p = buf.data() + i * kBs;
      if (std::any_of(p, p + kBs, [](uint8_t x) { return x != 0; })) return at + i;
    }
  }
  return UINT64_MAX;
}

IoStatus write_gen(PoolEnv& e, bdev::Bdev& b, uint64_t lba, uint32_t gen, size_t r = 0) {
  DmaBuffer buf(kBs);
  fill_block(buf.data(), kBs, lba, gen);
  return do_io(e, r, b, IoType::kWrite, lba, 1, buf.data(), kBs);
}

// A replica size: `mib` MiB plus `extra` blocks (so the last cluster may be partial).
uint64_t size_of(uint64_t mib, uint64_t extra) { return mib * kMiB + extra * kBs; }

// Leaves old data (0xee) in every free cluster of `pool`: a thick replica over all of them,
// written, flushed and destroyed. On disks without unmap the data stays there, and the
// next replica or grow that gets such a cluster must zero it (durably) before mapping it.
void fill_and_destroy_scratch(PoolEnv& e, const std::string& pool) {
  auto info = e.pools->info(pool);
  ASSERT_TRUE(info);
  const uint64_t free_clusters = info->total_clusters - info->used_clusters;
  ASSERT_TRUE(e.pools->create_replica({pool, "scratch", free_clusters * info->cluster_size, false, std::nullopt}));
  auto sb = e.reg->find("scratch");
  ASSERT_TRUE(sb);
  DmaBuffer junk(kMiB);
  std::memset(junk.data(), 0xee, kMiB);
  for (uint64_t at = 0; at < sb->num_blocks(); at += kMiB / kBs) {
    ASSERT_EQ(do_io(e, at / (kMiB / kBs) % 2, *sb, IoType::kWrite, at, kMiB / kBs, junk.data(), kMiB), IoStatus::kSuccess);
  }
  ASSERT_EQ(do_io(e, 0, *sb, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
  sb.reset();
  ASSERT_TRUE(e.pools->destroy_replica("scratch"));
}

TEST(PoolGrow, ThinAndThickGrowUnderAVerifyingWorkload) {
  const uint64_t seed = env_u64("CASTOR_GROW_SEED", 4100);
  printf("PoolGrow.ThinAndThickGrowUnderAVerifyingWorkload: seed %" PRIu64
         " (replay: CASTOR_GROW_SEED=%" PRIu64 ")\n", seed, seed);
  fflush(stdout);
  SCOPED_TRACE("CASTOR_GROW_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::srand(static_cast<unsigned>(seed));  // the workload's slots draw their streams from rand()
  PoolEnv e;
  PoolCreateOptions po;
  po.name = "gp";
  // Disks the test creates (a pool destroys the disks it created when it is exported),
  // behind gates without unmap (never cut), so that clusters a destroy frees keep their
  // data: the scratch replica below leaves old data in every cluster the grows get.
  auto clock = std::make_shared<CutClock>();
  for (const char* d : {"d0", "d1"}) {
    ASSERT_TRUE(e.reg->create(std::string("malloc:///") + d + "?size_mb=24"));
    ASSERT_TRUE(add_gate(*e.reg, std::string("g") + d, d, clock, false, 0, false));
  }
  po.disks = {"gd0", "gd1"};
  po.cluster_size = kMiB;
  po.log_size = 64 * 1024;  // small: the grows and thin allocations wrap it (checkpoints)
  ASSERT_TRUE(e.pools->create(po));
  fill_and_destroy_scratch(e, "gp");
  if (HasFailure()) return;
  const std::vector<std::string> names = {"t", "k"};  // thin, thick
  for (const auto& n : names) {
    auto r = e.pools->create_replica({"gp", n, size_of(3, 1 + rng() % 255), n == "t", std::nullopt});
    ASSERT_TRUE(r) << r.status().to_string();
  }
  std::vector<std::shared_ptr<bdev::Bdev>> b = {e.reg->find("t"), e.reg->find("k")};
  std::vector<std::unique_ptr<Workload>> w;
  for (auto& x : b) {
    w.push_back(std::make_unique<Workload>(e, *x));
    w.back()->start(3);
  }
  auto progress = [&](uint64_t more) {
    std::vector<uint64_t> at;
    for (auto& x : w) at.push_back(x->ops.load());
    ASSERT_TRUE(wait_until([&] {
      for (size_t i = 0; i < w.size(); ++i) {
        if (w[i]->ops.load() < at[i] + more) return false;
      }
      return true;
    })) << "the workload stalled";
  };
  progress(200);
  // own[i]: blocks past the workload's range written here, with their generations.
  std::vector<std::map<uint64_t, uint32_t>> own(2);
  uint32_t next_gen = kOwnGen;
  for (int step = 0; step < 4; ++step) {
    for (size_t i = 0; i < 2; ++i) {
      const uint64_t old_blocks = b[i]->num_blocks();
      // Within the last cluster, or one to three clusters more; any block count.
      const uint64_t add = rng() % 4 == 0 ? 1 + rng() % 8 : (1 + rng() % 3) * (kMiB / kBs) + rng() % 200;
      const uint64_t new_size = (old_blocks + add) * kBs;
      auto g = e.pools->grow_replica(names[i], new_size);
      ASSERT_TRUE(g) << g.status().to_string();
      ASSERT_EQ(g->size_bytes, new_size);
      ASSERT_EQ(b[i]->num_blocks(), old_blocks + add) << names[i] << " did not take its new size";
      // The new blocks read as zeroes, on either reactor, while the workload runs below.
      EXPECT_EQ(first_nonzero(e, *b[i], old_blocks, add, step % 2), UINT64_MAX)
          << names[i] << ": a block past the old end is not zeroes after grow " << step;
      // And take writes: the first and the last new block and one between.
      for (uint64_t lba : {old_blocks, old_blocks + add - 1, old_blocks + rng() % add}) {
        const uint32_t gen = next_gen++;
        ASSERT_EQ(write_gen(e, *b[i], lba, gen, rng() % 2), IoStatus::kSuccess) << names[i] << " lba " << lba;
        own[i][lba] = gen;
      }
      DmaBuffer past(kBs);
      EXPECT_EQ(do_io(e, 0, *b[i], IoType::kWrite, old_blocks + add, 1, past.data(), kBs), IoStatus::kInvalid)
          << "a write past the new end";
    }
    progress(100);
  }
  for (auto& x : w) x->finish();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(w[i]->errors.load(), 0u) << names[i];
    EXPECT_EQ(w[i]->mismatches.load(), 0u) << names[i];
    EXPECT_EQ(w[i]->verify_all(), 0u) << names[i];
  }
  // The whole new size: what the workload wrote, the blocks written here, zeroes elsewhere.
  // Then the workload again over all of it (thin allocations in the new space).
  auto expect_of = [&](size_t i, Workload& v) {
    std::copy(w[i]->gen.begin(), w[i]->gen.end(), v.gen.begin());
    for (auto [lba, gen] : own[i]) v.gen[lba] = gen;
  };
  std::vector<std::unique_ptr<Workload>> all;
  for (size_t i = 0; i < 2; ++i) {
    all.push_back(std::make_unique<Workload>(e, *b[i]));
    expect_of(i, *all.back());
    EXPECT_EQ(all.back()->verify_all(), 0u) << names[i] << " after the grows";
    all.back()->first_seq = Workload::kSecondPhase;
    all.back()->start(3);
  }
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(wait_until([&] { return all[i]->ops.load() > 600; })) << "the workload stalled";
  }
  for (auto& x : all) x->finish();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(all[i]->errors.load(), 0u) << names[i];
    EXPECT_EQ(all[i]->mismatches.load(), 0u) << names[i];
    EXPECT_EQ(all[i]->verify_all(), 0u) << names[i];
  }
  const std::vector<uint64_t> sizes = {b[0]->size_bytes(), b[1]->size_bytes()};
  const auto gens = std::vector<std::vector<uint32_t>>{all[0]->gen, all[1]->gen};
  w.clear();
  all.clear();
  b.clear();
  // Re-import: the new sizes and the same data (flush first: nothing here may be lost).
  for (const auto& n : names) {
    ASSERT_EQ(do_io(e, 0, *e.reg->find(n), IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
  }
  ASSERT_TRUE(e.pools->export_pool("gp"));
  auto chk = e.check({"gd0", "gd1"});
  ASSERT_TRUE(chk.ok) << chk.problems[0];
  ASSERT_TRUE(e.pools->import({"gd1", "gd0"}));
  for (size_t i = 0; i < 2; ++i) {
    auto x = e.reg->find(names[i]);
    ASSERT_TRUE(x) << names[i];
    EXPECT_EQ(x->size_bytes(), sizes[i]) << names[i] << " after the re-import";
    Workload v(e, *x);
    v.gen = gens[i];
    EXPECT_EQ(v.verify_all(), 0u) << names[i] << " after the re-import";
  }
}

// ---- A power loss inside a grow ----

// What one trial found, for the summary.
struct GrowOutcome {
  bool acked = false;      // grow_replica() returned OK
  bool new_size = false;   // the re-imported replica has the new size
  uint64_t later = 0;      // blocks holding an unflushed second-phase write
};

// The content of block `lba` (one block at `p`) is allowed: its durable generation
// `durable` (0: zeroes), or a second-phase workload write (an unflushed write may land).
bool allowed_block(const uint8_t* p, uint64_t lba, uint32_t durable, bool* later) {
  std::vector<uint8_t> want(kBs, 0);
  if (durable) fill_block(want.data(), kBs, lba, durable);
  if (std::memcmp(want.data(), p, kBs) == 0) return true;
  uint64_t got_lba;
  uint32_t got_gen;
  std::memcpy(&got_lba, p, 8);
  std::memcpy(&got_gen, p + 8, 4);
  if (got_lba != lba || (got_gen & 0x3fffff) < Workload::kSecondPhase || got_gen >= kOwnGen) return false;
  fill_block(want.data(), kBs, lba, got_gen);
  *later = true;
  return std::memcmp(want.data(), p, kBs) == 0;
}

GrowOutcome grow_power_loss_trial(uint64_t seed) {
  GrowOutcome out;
  // A trial takes well under a second; one run hung once (to CTest's timeout, with
  // nothing printed): the watchdog names the phase and prints the stacks instead.
  castor::test::Watchdog watchdog(std::chrono::seconds(120), "PoolGrow power-loss trial, seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::srand(static_cast<unsigned>(seed));
  PoolEnv e;
  // m<k> (10 MiB) < f<k> (volatile cache) < g<k> (the gates: one cut for both disks).
  // The clock counts only the I/O kinds a grow makes (write-zeroes, flushes, writes to
  // member 0's metadata area), not the workload's reads and writes.
  auto clock = std::make_shared<CutClock>();
  clock->counted_ops = bdev::io_type_bit(IoType::kWriteZeroes) | bdev::io_type_bit(IoType::kFlush) |
                       bdev::io_type_bit(IoType::kUnmap);
  for (int k = 0; k < 2; ++k) {
    const std::string ks = std::to_string(k);
    EXPECT_TRUE(e.reg->create("malloc:///m" + ks + "?size_mb=10"));
    EXPECT_TRUE(e.reg->create("fault:///f" + ks + "?base=m" + ks + "&cache=volatile"));
    // Member 0's first cluster (1 MiB) holds labels, checkpoints and the log. No unmap:
    // clusters a destroy frees keep their old data.
    EXPECT_TRUE(add_gate(*e.reg, "g" + ks, "f" + ks, clock, true, k == 0 ? kMiB / kBs : 0, false));
  }
  PoolCreateOptions po;
  po.name = "gp";
  po.disks = {"g0", "g1"};
  po.cluster_size = kMiB;
  po.log_size = 32 * 1024;  // 8 records: grows often take a checkpoint first
  EXPECT_TRUE(e.pools->create(po));
  if (::testing::Test::HasFailure()) return out;
  {
    std::vector<uint8_t> lb(kBs);
    EXPECT_TRUE(sync_read(e.group.at(0), bdev::BdevDesc(e.reg->find("f0").get()), 0, lb.data(), kBs));
    auto label = decode_label(lb);
    EXPECT_TRUE(label);
    if (!label) return out;
    EXPECT_EQ(label->data_offset, kMiB) << "the gate's metadata area is member 0's first cluster";
  }
  const std::vector<std::string> names = {"t", "k"};
  for (const auto& n : names) {
    auto r = e.pools->create_replica({"gp", n, size_of(2 + rng() % 2, rng() % 64), n == "t", std::nullopt});
    EXPECT_TRUE(r) << r.status().to_string();
  }
  if (::testing::Test::HasFailure()) return out;
  // Old data in every free cluster: the grow and the thin allocations below get these
  // clusters, so a zeroing that is not durable before the record that maps them shows.
  fill_and_destroy_scratch(e, "gp");
  if (::testing::Test::HasFailure()) return out;
  std::vector<std::shared_ptr<bdev::Bdev>> b = {e.reg->find("t"), e.reg->find("k")};
  watchdog.phase("first workload, flushed");
  // Phase 1, made durable by a flush of each replica.
  std::vector<std::vector<uint32_t>> durable;
  {
    std::vector<std::unique_ptr<Workload>> w;
    for (auto& x : b) {
      w.push_back(std::make_unique<Workload>(e, *x));
      w.back()->start(2);
    }
    EXPECT_TRUE(wait_until([&] { return w[0]->ops.load() > 150 && w[1]->ops.load() > 150; }));
    for (auto& x : w) x->finish();
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(w[i]->errors.load() + w[i]->mismatches.load(), 0u) << names[i];
      durable.push_back(w[i]->gen);
    }
    // Every cluster of the thin replica allocated now, so that the second phase makes no
    // allocation I/O and the cut lands in the grow.
    const uint64_t per = kMiB / kBs;
    for (uint64_t lba = 0; lba < b[0]->num_blocks(); lba += per) {
      EXPECT_EQ(write_gen(e, *b[0], lba, kOwnGen), IoStatus::kSuccess);
      durable[0][lba] = kOwnGen;
    }
    for (auto& x : b) EXPECT_EQ(do_io(e, 1, *x, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
  }
  if (::testing::Test::HasFailure()) return out;
  watchdog.phase("second workload and the grow under the cut");
  // Phase 2: the workload again (newer generations), and a grow of one replica of which
  // only the first `at` counted I/Os reach the disks (all of them if it makes fewer: the
  // power then goes off just after it returned).
  const size_t g = rng() % 2;
  const uint64_t old_bytes = b[g]->size_bytes();
  const uint64_t new_bytes =
      old_bytes + (rng() % 4 == 0 ? (1 + rng() % 8) * kBs : (1 + rng() % 3) * kMiB + rng() % 64 * kBs);
  const uint64_t at = rng() % 10;
  std::vector<std::unique_ptr<Workload>> w2;
  for (size_t i = 0; i < 2; ++i) {
    w2.push_back(std::make_unique<Workload>(e, *b[i]));
    w2.back()->gen = durable[i];
    w2.back()->first_seq = Workload::kSecondPhase;
    w2.back()->start(2);
  }
  EXPECT_TRUE(wait_until([&] { return w2[0]->ops.load() > 50 && w2[1]->ops.load() > 50; }));
  clock->cut = clock->ticks.load() + at;
  out.acked = static_cast<bool>(e.pools->grow_replica(names[g], new_bytes));
  clock->off = true;  // the power goes off now if the cut has not come yet
  watchdog.phase(std::string("the second workload ends (grow acknowledged: ") + (out.acked ? "yes)" : "no)"));
  for (auto& x : w2) x->finish();
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(w2[i]->mismatches.load(), 0u) << names[i] << " read a wrong block";
  watchdog.phase("power loss, export and import");
  w2.clear();
  b.clear();
  for (int k = 0; k < 2; ++k) {
    auto rep = bdev::FaultControl::power_loss(*e.reg->find("f" + std::to_string(k)), std::mt19937_64(seed * 31 + k)());
    EXPECT_TRUE(rep) << rep.status().to_string();
  }
  (void)e.pools->export_pool("gp");  // writes nothing
  for (int k = 0; k < 2; ++k) {
    EXPECT_TRUE(e.reg->destroy("g" + std::to_string(k)));
    EXPECT_TRUE(e.reg->destroy("f" + std::to_string(k)));
  }
  watchdog.phase("checks after the re-import");
  auto chk = e.check({"m0", "m1"});
  EXPECT_TRUE(chk.ok) << chk.problems[0];
  auto imp = e.pools->import({"m1", "m0"});
  EXPECT_TRUE(imp) << imp.status().to_string();
  if (::testing::Test::HasFailure()) return out;
  for (size_t i = 0; i < 2; ++i) {
    auto x = e.reg->find(names[i]);
    EXPECT_TRUE(x) << names[i] << " is missing";
    if (!x) return out;
    const uint64_t size = x->size_bytes();
    const uint64_t old_i = i == g ? old_bytes : durable[i].size() * kBs;
    if (i == g) {
      EXPECT_TRUE(size == old_bytes || size == new_bytes)
          << names[i] << " has " << size << " bytes, neither the old " << old_bytes << " nor the new " << new_bytes;
      if (out.acked) {
        EXPECT_EQ(size, new_bytes) << names[i] << " lost an acknowledged grow";
      }
      out.new_size = size == new_bytes;
    } else {
      EXPECT_EQ(size, old_i) << names[i] << " changed size";
    }
    // Durable data, and nothing but durable data or a later write, below the old end.
    DmaBuffer buf(64 * kBs);
    const uint64_t old_blocks = old_i / kBs;
    uint64_t bad = 0;
    for (uint64_t at_b = 0; at_b < old_blocks; at_b += 64) {
      const uint64_t n = std::min<uint64_t>(64, old_blocks - at_b);
      EXPECT_EQ(do_io(e, 0, *x, IoType::kRead, at_b, n, buf.data(), n * kBs), IoStatus::kSuccess);
      for (uint64_t k = 0; k < n; ++k) {
        bool later = false;
        if (!allowed_block(buf.data() + k * kBs, at_b + k, durable[i][at_b + k], &later)) {
          if (++bad <= 3) ADD_FAILURE() << names[i] << " lba " << at_b + k << " lost its durable content";
        }
        out.later += later;
      }
    }
    // The new blocks (if the grow landed) read as zeroes and take a write; then it grows again.
    if (size > old_i) {
      EXPECT_EQ(first_nonzero(e, *x, old_blocks, size / kBs - old_blocks, 0), UINT64_MAX)
          << names[i] << ": a block past the old end is not zeroes";
      EXPECT_EQ(write_gen(e, *x, size / kBs - 1, kOwnGen + 1), IoStatus::kSuccess);
      std::vector<uint8_t> want(kBs);
      fill_block(want.data(), kBs, size / kBs - 1, kOwnGen + 1);
      DmaBuffer got(kBs);
      EXPECT_EQ(do_io(e, 1, *x, IoType::kRead, size / kBs - 1, 1, got.data(), kBs), IoStatus::kSuccess);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), kBs), 0) << names[i] << " new last block";
    }
    auto again = e.pools->grow_replica(names[i], size + kMiB);
    EXPECT_TRUE(again) << names[i] << " does not grow after the re-import: " << again.status().to_string();
  }
  return out;
}

TEST(PoolGrow, PowerLossDuringAGrowUnderIo) {
  const uint64_t base = env_u64("CASTOR_GROW_SEED", 4200);
  const uint64_t points = env_u64("CASTOR_GROW_POINTS", 80);
  printf("PoolGrow.PowerLossDuringAGrowUnderIo: seeds %" PRIu64 "..%" PRIu64
         " (replay one with CASTOR_GROW_SEED=<seed> CASTOR_GROW_POINTS=1 "
         "--gtest_filter=PoolGrow.PowerLossDuringAGrowUnderIo)\n",
         base, base + points - 1);
  fflush(stdout);
  uint64_t acked = 0, new_size = 0, later = 0;
  for (uint64_t i = 0; i < points; ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE("CASTOR_GROW_SEED=" + std::to_string(seed) + " CASTOR_GROW_POINTS=1");
    auto o = grow_power_loss_trial(seed);
    acked += o.acked;
    new_size += o.new_size;
    later += o.later;
    if (HasFailure()) {
      printf("FAILED at seed %" PRIu64 ": replay with CASTOR_GROW_SEED=%" PRIu64
             " CASTOR_GROW_POINTS=1 --gtest_filter=PoolGrow.PowerLossDuringAGrowUnderIo\n",
             seed, seed);
      return;
    }
  }
  printf("PoolGrow.PowerLossDuringAGrowUnderIo: %" PRIu64 " trials: %" PRIu64 " grows acknowledged, %" PRIu64
         " replicas with the new size after the power loss (%" PRIu64 " with the old), %" PRIu64
         " blocks holding an unflushed later write\n",
         points, acked, new_size, points - new_size, later);
}

}  // namespace
}  // namespace castor::pool::test
