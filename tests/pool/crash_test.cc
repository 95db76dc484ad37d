// Randomized crash tests.
//
// RandomizedDroppedWritesAfterNthWrite: a fault bdev acknowledges but drops every write
// after the N-th (a crash at that instant), while a random stream of pool operations runs.
// After each crash the pool is re-imported from the base disk: the checker must pass, every
// operation acknowledged before the crash point must be present, and every write
// acknowledged before a flush that completed before the crash must read back. Everything
// before the cut stays in order, so a missing flush goes unseen.
//
// RandomizedPowerLossWithVolatileCache: the same checks through the fault bdev's volatile
// write cache, where a power loss keeps only what was flushed (or written with FUA) and any
// subset of the rest, reordered and torn at 4 KiB. See the test for the replay variables.
//
// MultiDiskPowerLossOnEveryDisk, MultiDiskOneDiskLosesItsCache: the same over pools of 2-3
// disks, each with its own volatile cache, cut at one instant across all of them
// (power_cut.h): every disk loses its own subset, or one disk goes off and loses its cache
// while the others run on and keep theirs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "bdev/modules/fault.h"
#include "pool_harness.h"
#include "power_cut.h"

namespace castor::pool::test {
namespace {

constexpr uint64_t kMiB = 1 << 20;

struct Durable {
  bool pool = false;
  std::map<std::string, std::pair<uint64_t, bool>> replicas;  // name -> size, thin
  std::map<std::string, std::map<uint64_t, uint8_t>> data;    // name -> lba -> byte
  std::set<std::string> gone;                                  // durably destroyed
};

struct Trial {
  PoolEnv e;
  std::shared_ptr<bdev::Bdev> f;
  uint64_t crash_at = 0;
  Durable durable;
  std::map<std::string, std::map<uint64_t, uint8_t>> pending;  // written, not yet flushed
  std::mt19937_64 rng;

  explicit Trial(uint64_t seed, uint64_t n) : crash_at(n), rng(seed) {
    EXPECT_TRUE(e.reg->create("malloc:///m?size_mb=24"));
    EXPECT_TRUE(e.reg->create("fault:///f?base=m"));
    f = e.reg->find("f");
    if (n) {
      bdev::FaultRuleSpec s;
      s.mode = bdev::FaultMode::kDropWrite;
      s.ops_mask = bdev::io_type_bit(bdev::IoType::kWrite) | bdev::io_type_bit(bdev::IoType::kWriteZeroes) |
                   bdev::io_type_bit(bdev::IoType::kUnmap);
      s.skip = n;
      EXPECT_TRUE(bdev::FaultControl::inject(*f, s));
    }
  }
  uint64_t writes_so_far() {
    auto rules = bdev::FaultControl::list(*f);
    if (rules.empty()) return f->stats().per_type[1].ops + f->stats().per_type[4].ops + f->stats().per_type[3].ops;
    return rules[0].matched;
  }
  bool before_crash() { return crash_at == 0 || writes_so_far() <= crash_at; }

  void run(int nops) {
    PoolCreateOptions po;
    po.name = "cp";
    po.disks = {"f"};
    po.cluster_size = kMiB;
    po.log_size = 32 * 1024;
    if (!e.pools->create(po)) return;
    durable.pool = before_crash();
    std::vector<std::string> live;
    int next = 0;
    for (int i = 0; i < nops; ++i) {
      int op = static_cast<int>(rng() % 10);
      if (live.empty() || op < 2) {
        std::string n = "r" + std::to_string(next++);
        bool thin = rng() % 2;
        uint64_t size = (1 + rng() % 3) * kMiB;
        if (e.pools->create_replica({"cp", n, size, thin, std::nullopt})) {
          live.push_back(n);
          if (before_crash()) durable.replicas[n] = {size, thin};
        }
      } else if (op < 3) {
        size_t k = rng() % live.size();
        std::string n = live[k];
        if (e.pools->destroy_replica(n)) {
          live.erase(live.begin() + static_cast<long>(k));
          pending.erase(n);
          // Acknowledged after the crash point, the destroy may or may not have
          // landed; before it, the replica must be gone.
          durable.replicas.erase(n);
          durable.data.erase(n);
          if (before_crash()) durable.gone.insert(n);
        }
      } else if (op < 4) {
        std::string n = live[rng() % live.size()];
        uint64_t cur = e.reg->find(n)->size_bytes();
        if (e.pools->grow_replica(n, cur + kMiB) && before_crash() && durable.replicas.count(n)) {
          durable.replicas[n].first = cur + kMiB;
        }
      } else {
        std::string n = live[rng() % live.size()];
        auto b = e.reg->find(n);
        uint64_t lba = rng() % b->num_blocks();
        uint8_t v = static_cast<uint8_t>(1 + rng() % 250);
        // Until a flush covers it, the block may hold the old or the new value.
        if (durable.data.count(n)) durable.data[n].erase(lba);
        if (e.fill(n, lba, 1, v, rng() % 2) == bdev::IoStatus::kSuccess) pending[n][lba] = v;
        if (op == 9) {
          // Flush: everything written so far is durable if the flush beat the crash.
          if (bdev::test::do_io(e, 0, *b, bdev::IoType::kFlush, 0, 0, nullptr, 0) == bdev::IoStatus::kSuccess &&
              before_crash()) {
            for (auto& [rn, m] : pending) {
              if (!durable.replicas.count(rn)) continue;
              for (auto& [l, x] : m) durable.data[rn][l] = x;
            }
          }
          pending.clear();
        }
      }
    }
  }

  void crash_and_verify(uint64_t seed) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " crash after write " + std::to_string(crash_at));
    (void)e.pools->export_pool("cp");  // writes nothing: the in-memory state is dropped
    ASSERT_TRUE(bdev::FaultControl::clear(*f, 0));
    auto rep = e.check({"f"});
    if (!durable.pool) {
      if (!rep.ok) return;  // the create never became durable: nothing to find
    }
    ASSERT_TRUE(rep.ok) << rep.problems[0];
    if (getenv("CRASH_DEBUG")) {
      for (auto& n : rep.notes) fprintf(stderr, "note: %s\n", n.c_str());
      for (auto& r : rep.state.replicas) fprintf(stderr, "on disk: %s\n", r.name.c_str());
      for (auto& [n, st] : durable.replicas) fprintf(stderr, "durable: %s\n", n.c_str());
    }
    auto imp = e.pools->import({"f"});
    ASSERT_TRUE(imp) << imp.status().to_string();
    for (const auto& [n, st] : durable.replicas) {
      auto b = e.reg->find(n);
      ASSERT_TRUE(b) << "durable replica " << n << " is missing";
      EXPECT_GE(b->size_bytes(), st.first) << n;
    }
    for (const auto& n : durable.gone) {
      EXPECT_FALSE(e.reg->find(n)) << "destroyed replica " << n << " is back";
    }
    for (const auto& [n, m] : durable.data) {
      for (const auto& [lba, v] : m) {
        auto got = e.read(n, lba, 1, 0);
        ASSERT_FALSE(got.empty());
        EXPECT_TRUE(e.all(got, v)) << n << " lba " << lba << " lost a flushed write";
      }
    }
  }
};

TEST(PoolCrash, RandomizedDroppedWritesAfterNthWrite) {
  constexpr int kOps = 40;
  constexpr int kCrashPoints = 200;
  // Measure how many writes the stream makes without a crash, then spread crash
  // points over that range (and a little beyond, where nothing is lost).
  uint64_t total = 0;
  {
    Trial t(7, 0);
    t.run(kOps);
    total = t.writes_so_far();
  }
  ASSERT_GT(total, 50u);
  for (int i = 0; i < kCrashPoints; ++i) {
    uint64_t seed = 1000 + static_cast<uint64_t>(i);
    uint64_t n = 1 + (static_cast<uint64_t>(i) * (total + 10)) / kCrashPoints;
    Trial t(seed, n);
    t.run(kOps);
    t.crash_and_verify(seed);
    if (HasFatalFailure()) return;
  }
}

// ---- Power loss through a volatile write cache ----
//
// The pool's disk is fault (cache=volatile) over malloc. A seeded stream of pool operations
// runs until its N-th I/O reaches the disk; an error rule fails that I/O and every later one
// (the device is frozen at that instant), and power_loss() with the trial's seed decides
// which unflushed block versions reached the malloc disk. The pool is then imported from
// the malloc disk itself: the checker must pass; every acknowledged create, grow and
// destroy must be there; every write acknowledged with FUA, or before a flush that
// completed, must read back; and a block of a replica that no write ever touched must
// read as zeroes (its cluster was zeroed durably before the pool handed it out).
// CASTOR_CRASH_SEED (first seed, default 5000) and CASTOR_CRASH_POINTS (trials, default
// 400) select the trials; trial i uses seed CASTOR_CRASH_SEED + i for the operations, the
// cut point and the power loss, so CASTOR_CRASH_SEED=<seed> CASTOR_CRASH_POINTS=1 replays
// one.

uint64_t env_u64(const char* name, uint64_t def) {
  const char* v = getenv(name);
  if (!v || !*v) return def;
  return std::strtoull(v, nullptr, 10);
}

constexpr uint32_t kAllIo = bdev::io_type_bit(bdev::IoType::kRead) | bdev::io_type_bit(bdev::IoType::kWrite) |
                            bdev::io_type_bit(bdev::IoType::kFlush) | bdev::io_type_bit(bdev::IoType::kUnmap) |
                            bdev::io_type_bit(bdev::IoType::kWriteZeroes);

// Where a trial's pool lives and what the cut does to it.
enum class Loss {
  kOneDiskPool,  // one disk, frozen by a fault rule at its N-th I/O (the original test)
  kEveryDisk,    // 2-3 disks, all off at the same instant, each losing its own subset
  kOneDisk,      // 2-3 disks, one goes off (and loses its cache), the others run on
};

struct PowerTrial {
  PoolEnv e;
  std::shared_ptr<bdev::Bdev> f;  // kOneDiskPool: the fault disk
  uint64_t seed = 0;
  uint64_t cut = 0;  // I/Os that reach the disks before the cut (0: never)
  Loss loss;
  size_t ndisks = 1;
  size_t victim = 0;  // kOneDisk: the member that goes off
  std::shared_ptr<CutClock> clock = std::make_shared<CutClock>();
  std::vector<std::string> pool_disks;
  Durable durable;
  std::map<std::string, std::map<uint64_t, uint8_t>> pending;  // written, not yet flushed
  std::map<std::string, std::set<uint64_t>> written;           // blocks any write was tried on
  std::mt19937_64 rng;
  bdev::PowerLossReport report;

  PowerTrial(uint64_t s, uint64_t n, Loss l = Loss::kOneDiskPool) : seed(s), cut(n), loss(l), rng(s) {
    if (loss == Loss::kOneDiskPool) {
      EXPECT_TRUE(e.reg->create("malloc:///m?size_mb=24"));
      EXPECT_TRUE(e.reg->create("fault:///f?base=m&cache=volatile"));
      f = e.reg->find("f");
      bdev::FaultRuleSpec r;
      r.mode = bdev::FaultMode::kError;
      r.ops_mask = kAllIo;
      r.skip = n ? n : UINT64_MAX;
      EXPECT_TRUE(bdev::FaultControl::inject(*f, r));
      pool_disks = {"f"};
      return;
    }
    // Members k = 0..ndisks-1: malloc mk (4-7 MiB: 3-6 clusters) < fault fk (volatile cache) < gate gk.
    // Its own generator, so that the operation stream of a seed does not depend on it.
    std::mt19937_64 setup(s ^ 0xd15c5);
    ndisks = 2 + setup() % 2;
    victim = setup() % ndisks;
    clock->cut = n ? n : UINT64_MAX;
    for (size_t k = 0; k < ndisks; ++k) {
      const std::string ks = std::to_string(k);
      EXPECT_TRUE(e.reg->create("malloc:///m" + ks + "?size_mb=" + std::to_string(4 + setup() % 4)));
      EXPECT_TRUE(e.reg->create("fault:///f" + ks + "?base=m" + ks + "&cache=volatile"));
      EXPECT_TRUE(add_gate(*e.reg, "g" + ks, "f" + ks, clock, loss == Loss::kEveryDisk || k == victim));
      pool_disks.push_back("g" + ks);
    }
  }
  uint64_t ios() { return loss == Loss::kOneDiskPool ? bdev::FaultControl::list(*f)[0].matched : clock->ticks.load(); }
  bool frozen() { return cut && ios() > cut; }

  void run(int nops) {
    PoolCreateOptions po;
    po.name = "cp";
    po.disks = pool_disks;
    po.cluster_size = kMiB;
    po.log_size = 32 * 1024;
    if (!e.pools->create(po)) return;
    durable.pool = true;
    std::vector<std::string> live;
    int next = 0;
    for (int i = 0; i < nops; ++i) {
      // 10% creates, 5% destroys (10% over several disks, whose pools are small, so that
      // freed clusters are soon handed out again), 5% grows, the rest writes (1 in 8
      // followed by a flush).
      int op = static_cast<int>(rng() % 20);
      if (op == 4 && loss != Loss::kOneDiskPool) op = 2;
      if (live.empty() || op < 2) {
        std::string n = "r" + std::to_string(next++);
        bool thin = rng() % 2;
        uint64_t size = (1 + rng() % 3) * kMiB;
        if (e.pools->create_replica({"cp", n, size, thin, std::nullopt})) {
          live.push_back(n);
          durable.replicas[n] = {size, thin};
        }
      } else if (op < 3) {
        size_t k = rng() % live.size();
        std::string n = live[k];
        bool ok = static_cast<bool>(e.pools->destroy_replica(n));
        // A failed destroy may or may not have landed; its bdev is gone either way.
        if (ok || !e.reg->find(n)) live.erase(live.begin() + static_cast<long>(k));
        pending.erase(n);
        durable.replicas.erase(n);
        durable.data.erase(n);
        if (ok) durable.gone.insert(n);
      } else if (op < 4) {
        std::string n = live[rng() % live.size()];
        auto b = e.reg->find(n);
        if (!b) continue;
        uint64_t cur = b->size_bytes();
        if (e.pools->grow_replica(n, cur + kMiB) && durable.replicas.count(n)) {
          durable.replicas[n].first = cur + kMiB;
        }
      } else {
        std::string n = live[rng() % live.size()];
        auto b = e.reg->find(n);
        if (!b) continue;
        // Half the writes go to a few hot blocks, so that blocks hold several unflushed
        // versions for the power loss to choose from; up to 4 blocks, so that they tear.
        uint64_t lba = rng() % 2 ? rng() % 4 : rng() % b->num_blocks();
        uint64_t nb = std::min<uint64_t>(1 + rng() % 4, b->num_blocks() - lba);
        uint8_t v = static_cast<uint8_t>(1 + rng() % 250);
        bool fua = rng() % 4 == 0;
        size_t r = rng() % 2;
        b.reset();
        // Until a flush covers it (or FUA), a block may hold the old or the new value.
        for (uint64_t l = lba; l < lba + nb; ++l) {
          durable.data[n].erase(l);
          pending[n].erase(l);
          written[n].insert(l);
        }
        auto st = e.fill(n, lba, nb, v, r, fua);
        if (st == bdev::IoStatus::kSuccess) {
          for (uint64_t l = lba; l < lba + nb; ++l) {
            if (!fua) {
              pending[n][l] = v;
            } else if (durable.replicas.count(n)) {
              durable.data[n][l] = v;
            }
          }
        }
        if (rng() % 8 == 0) {
          auto rb = e.reg->find(n);
          // Flush: everything written before it is durable once it completes.
          if (rb &&
              bdev::test::do_io(e, 0, *rb, bdev::IoType::kFlush, 0, 0, nullptr, 0) == bdev::IoStatus::kSuccess) {
            for (auto& [rn, m] : pending) {
              if (!durable.replicas.count(rn)) continue;
              for (auto& [l, x] : m) durable.data[rn][l] = x;
            }
          }
          pending.clear();
        }
      }
    }
  }

  // The cut on fault disk `name` with `s`: its cache loses, keeps or reorders each unit.
  void lose_cache(const std::string& name, uint64_t s) {
    auto& d = *e.reg->find(name);
    auto ci = bdev::FaultControl::volatile_cache(d);
    auto rep = bdev::FaultControl::power_loss(d, s);
    ASSERT_TRUE(rep) << rep.status().to_string();
    report.units += rep->units;
    report.lost += rep->lost;
    report.newest += rep->newest;
    report.older += rep->older;
    if (getenv("CRASH_DEBUG")) {
      fprintf(stderr,
              "seed %llu %s: %llu I/Os, cache %llu blocks %llu versions; units lost %llu newest %llu older %llu\n",
              static_cast<unsigned long long>(seed), name.c_str(), static_cast<unsigned long long>(ios()),
              static_cast<unsigned long long>(ci->blocks), static_cast<unsigned long long>(ci->versions),
              static_cast<unsigned long long>(rep->lost), static_cast<unsigned long long>(rep->newest),
              static_cast<unsigned long long>(rep->older));
    }
  }

  void power_loss_and_verify() {
    std::vector<std::string> media;  // the disks beneath the caches, imported from
    if (loss == Loss::kOneDiskPool) {
      lose_cache("f", seed);
      if (::testing::Test::HasFatalFailure()) return;
      (void)e.pools->export_pool("cp");  // writes nothing
      f.reset();
      ASSERT_TRUE(e.reg->destroy("f"));  // import from the malloc disk itself
      media = {"m"};
    } else {
      for (size_t k = 0; k < ndisks; ++k) {
        const std::string fk = "f" + std::to_string(k);
        if (loss == Loss::kEveryDisk || k == victim) {
          // Independent outcomes per disk: each has its own seed.
          lose_cache(fk, std::mt19937_64(seed * 31 + k)());
          if (::testing::Test::HasFatalFailure()) return;
        } else {
          // A disk that kept its power writes its cache out.
          ASSERT_TRUE(bdev::FaultControl::set_volatile_cache(*e.reg->find(fk), false));
        }
      }
      (void)e.pools->export_pool("cp");  // writes nothing
      for (size_t k = 0; k < ndisks; ++k) {
        ASSERT_TRUE(e.reg->destroy("g" + std::to_string(k)));
        ASSERT_TRUE(e.reg->destroy("f" + std::to_string(k)));
        media.push_back("m" + std::to_string(k));
      }
      // Import takes the members in any order.
      std::shuffle(media.begin(), media.end(), std::mt19937_64(seed));
    }
    auto chk = e.check(media);
    if (!durable.pool && !chk.ok) return;  // the create never became durable
    ASSERT_TRUE(chk.ok) << chk.problems[0];
    auto imp = e.pools->import(media);
    ASSERT_TRUE(imp) << imp.status().to_string();
    for (const auto& [n, st] : durable.replicas) {
      auto b = e.reg->find(n);
      ASSERT_TRUE(b) << "acknowledged replica " << n << " is missing";
      EXPECT_GE(b->size_bytes(), st.first) << n << " lost an acknowledged grow";
    }
    for (const auto& n : durable.gone) {
      EXPECT_FALSE(e.reg->find(n)) << "destroyed replica " << n << " is back";
    }
    for (const auto& [n, m] : durable.data) {
      for (const auto& [lba, v] : m) {
        auto got = e.read(n, lba, 1, 0);
        ASSERT_FALSE(got.empty());
        EXPECT_TRUE(e.all(got, v)) << n << " lba " << lba << " lost a durable write of " << int(v)
                                   << ", holds " << int(got[0]);
      }
    }
    // Every replica there (acknowledged or not): untouched blocks are zeroes.
    for (const auto& ri : e.pools->list_replicas("cp")) {
      auto b = e.reg->find(ri.name);
      ASSERT_TRUE(b);
      auto got = e.read(ri.name, 0, b->num_blocks(), 1);
      ASSERT_FALSE(got.empty()) << ri.name;
      const auto& w = written[ri.name];
      const uint32_t bs = b->block_size();
      const std::vector<uint8_t> zero(bs, 0);
      for (uint64_t lba = 0; lba < b->num_blocks(); ++lba) {
        if (w.count(lba) || std::memcmp(got.data() + lba * bs, zero.data(), bs) == 0) continue;
        FAIL() << ri.name << " lba " << lba << " was never written but is not zeroes";
      }
    }
  }
};

// Runs CASTOR_CRASH_POINTS trials (default `points`) from seed CASTOR_CRASH_SEED (default
// `first`) of test `name` and prints what the cuts did.
void power_loss_trials(const char* name, Loss loss, uint64_t first, uint64_t points) {
  constexpr int kOps = 40;
  const uint64_t base = env_u64("CASTOR_CRASH_SEED", first);
  points = env_u64("CASTOR_CRASH_POINTS", points);
  // How many I/Os a stream makes (a fixed reference seed, so a replay cuts at the same
  // point): cut points spread over that and a little beyond.
  uint64_t total = 0;
  {
    PowerTrial t(7, 0, loss);
    t.run(kOps);
    total = t.ios();
  }
  ASSERT_GT(total, 50u);
  printf("PoolCrash.%s: seeds %llu..%llu (replay one with CASTOR_CRASH_SEED=<seed> CASTOR_CRASH_POINTS=1 "
         "--gtest_filter=PoolCrash.%s)\n",
         name, static_cast<unsigned long long>(base), static_cast<unsigned long long>(base + points - 1), name);
  fflush(stdout);
  bdev::PowerLossReport sum;
  uint64_t cut_in_stream = 0, no_pool = 0, disks[4] = {};
  for (uint64_t i = 0; i < points; ++i) {
    const uint64_t seed = base + i;
    const uint64_t cut = 1 + std::mt19937_64(seed ^ 0x5eed)() % (total + total / 10);
    PowerTrial t(seed, cut, loss);
    SCOPED_TRACE("CASTOR_CRASH_SEED=" + std::to_string(seed) + " CASTOR_CRASH_POINTS=1 (cut after I/O " +
                 std::to_string(cut) + " of about " + std::to_string(total) + "; " + std::to_string(t.ndisks) +
                 " disk(s)" + (loss == Loss::kOneDisk ? ", member " + std::to_string(t.victim) + " off" : "") + ")");
    t.run(kOps);
    cut_in_stream += t.frozen();
    no_pool += !t.durable.pool;
    ++disks[t.ndisks];
    t.power_loss_and_verify();
    sum.units += t.report.units;
    sum.lost += t.report.lost;
    sum.newest += t.report.newest;
    sum.older += t.report.older;
    if (::testing::Test::HasFailure()) {
      printf("FAILED at seed %llu: replay with CASTOR_CRASH_SEED=%llu CASTOR_CRASH_POINTS=1 "
             "--gtest_filter=PoolCrash.%s\n",
             static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), name);
      return;
    }
  }
  const std::string shape = loss == Loss::kOneDiskPool ? "" : " (" + std::to_string(disks[2]) + " over 2 disks, " +
                                                                 std::to_string(disks[3]) + " over 3)";
  printf("PoolCrash.%s: %llu trials%s, %llu cut inside the stream, %llu before the "
         "pool was durable; cached units at the cuts: %llu lost, %llu newest, %llu older version\n",
         name, static_cast<unsigned long long>(points), shape.c_str(), static_cast<unsigned long long>(cut_in_stream),
         static_cast<unsigned long long>(no_pool), static_cast<unsigned long long>(sum.lost),
         static_cast<unsigned long long>(sum.newest), static_cast<unsigned long long>(sum.older));
}

TEST(PoolCrash, RandomizedPowerLossWithVolatileCache) {
  power_loss_trials("RandomizedPowerLossWithVolatileCache", Loss::kOneDiskPool, 5000, 400);
}

// A pool over 2-3 disks (seeded sizes), each with its own volatile cache. The power goes
// off on every disk at the same instant (the N-th I/O over all of them); each disk keeps
// its own random subset of what it had not flushed. The durability rule is the one disk's:
// a replica flush flushes every member, metadata lives on member 0 and is flushed there,
// and a cluster's zeroing is flushed on its member before the record that maps it.
TEST(PoolCrash, MultiDiskPowerLossOnEveryDisk) {
  power_loss_trials("MultiDiskPowerLossOnEveryDisk", Loss::kEveryDisk, 20000, 200);
}

// The same pools, but only one member (seeded; member 0 holds the metadata) goes off at
// the cut and loses its cache; the others keep serving the pool until the stream ends and
// then write their caches out. The pool sees that member fail every I/O: if it is member 0
// the metadata turns read-only; a replica flush fails (it covers every member), so nothing
// becomes durable through a flush any more, while FUA writes to the other members still
// do. Everything durable must survive. (A disk that loses its cache and then serves I/O
// again as if nothing happened is outside the model: no layer above it can tell what it
// lost, and a later flush would vouch for writes that are gone.)
TEST(PoolCrash, MultiDiskOneDiskLosesItsCache) {
  power_loss_trials("MultiDiskOneDiskLosesItsCache", Loss::kOneDisk, 30000, 200);
}

}  // namespace
}  // namespace castor::pool::test
