// Randomized crash test: a fault bdev acknowledges but drops every write after the N-th
// (a crash at that instant), while a random stream of pool operations runs. After each
// crash the pool is re-imported from the base disk: the checker must pass, every
// operation acknowledged before the crash point must be present, and every write
// acknowledged before a flush that completed before the crash must read back.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "bdev/modules/fault.h"
#include "pool_harness.h"

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
    for (const auto& n : durable.gone) EXPECT_FALSE(e.reg->find(n)) << "destroyed replica " << n << " is back";
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

}  // namespace
}  // namespace castor::pool::test
