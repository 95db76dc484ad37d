#include "bdev/modules/fault.h"

#include <algorithm>
#include <thread>

#include "harness.h"

namespace castor::bdev::test {
namespace {

struct FaultEnv : Env {
  std::shared_ptr<Bdev> f, m;
  FaultEnv() {
    EXPECT_TRUE(reg->create("malloc:///m0?size_mb=1"));
    EXPECT_TRUE(reg->create("fault:///f0?base=m0"));
    f = reg->find("f0");
    m = reg->find("m0");
  }
  ~FaultEnv() {
    f.reset();
    m.reset();
  }
  IoStatus write(uint64_t lba, uint8_t v, size_t r = 0) {
    DmaBuffer b(4096);
    std::memset(b.data(), v, 4096);
    return do_io(*this, r, *f, IoType::kWrite, lba, 1, b.data(), 4096);
  }
  int read_base(uint64_t lba) {
    DmaBuffer b(4096);
    EXPECT_EQ(do_io(*this, 0, *m, IoType::kRead, lba, 1, b.data(), 4096), IoStatus::kSuccess);
    return b.data()[0];
  }
};

FaultRuleSpec spec(FaultMode mode, uint32_t ops = io_type_bit(IoType::kWrite)) {
  FaultRuleSpec s;
  s.mode = mode;
  s.ops_mask = ops;
  return s;
}

TEST(FaultBdev, ErrorWithStatusRangeSkipAndCount) {
  FaultEnv e;
  auto s = spec(FaultMode::kError);
  s.error_status = IoStatus::kNoSpace;
  s.lba_start = 10;
  s.lba_end = 20;
  s.skip = 1;
  s.count = 2;
  auto id = FaultControl::inject(*e.f, s);
  ASSERT_TRUE(id);
  EXPECT_EQ(e.write(5, 1), IoStatus::kSuccess);    // outside the range
  EXPECT_EQ(e.write(10, 1), IoStatus::kSuccess);   // skipped (first match)
  EXPECT_EQ(e.write(11, 2), IoStatus::kNoSpace);   // faulted
  EXPECT_EQ(e.write(12, 3, 1), IoStatus::kNoSpace);  // faulted, other reactor
  EXPECT_EQ(e.write(13, 4), IoStatus::kSuccess);   // count exhausted
  EXPECT_EQ(e.read_base(11), 0);                   // a failed write never reached the base
  EXPECT_EQ(e.read_base(13), 4);
  auto rules = FaultControl::list(*e.f);
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].matched, 4u);
  EXPECT_EQ(rules[0].fired, 2u);
  // Reads were not selected.
  DmaBuffer b(4096);
  EXPECT_EQ(do_io(e, 0, *e.f, IoType::kRead, 11, 1, b.data(), 4096), IoStatus::kSuccess);
  ASSERT_TRUE(FaultControl::clear(*e.f, *id));
  EXPECT_EQ(FaultControl::clear(*e.f, *id).code(), Errc::kNotFound);
}

TEST(FaultBdev, DropWriteAcknowledgesButWritesNothing) {
  FaultEnv e;
  ASSERT_EQ(e.write(1, 7), IoStatus::kSuccess);
  auto s = spec(FaultMode::kDropWrite);
  s.skip = 1;  // "drop every write after the first"
  ASSERT_TRUE(FaultControl::inject(*e.f, s));
  EXPECT_EQ(e.write(2, 8), IoStatus::kSuccess);
  EXPECT_EQ(e.write(1, 9), IoStatus::kSuccess);
  EXPECT_EQ(e.read_base(2), 8);
  EXPECT_EQ(e.read_base(1), 7);  // acknowledged, not written
}

TEST(FaultBdev, DelayHoldsTheIo) {
  FaultEnv e;
  auto s = spec(FaultMode::kDelay);
  s.delay_us = 50'000;
  ASSERT_TRUE(FaultControl::inject(*e.f, s));
  DmaBuffer b(4096);
  uint64_t lat = 0;
  ASSERT_EQ(do_io(e, 0, *e.f, IoType::kWrite, 0, 1, b.data(), 4096, &lat), IoStatus::kSuccess);
  EXPECT_GE(lat, 50'000'000u);
  ASSERT_EQ(do_io(e, 0, *e.f, IoType::kRead, 0, 1, b.data(), 4096, &lat), IoStatus::kSuccess);
  EXPECT_LT(lat, 50'000'000u);
}

TEST(FaultBdev, HangUntilClearedThenCompletes) {
  FaultEnv e;
  auto id = FaultControl::inject(*e.f, spec(FaultMode::kHang));
  ASSERT_TRUE(id);
  std::atomic<bool> finished{false};
  IoStatus st = IoStatus::kIoError;
  std::thread t([&] {
    st = e.write(3, 0x33);
    finished = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(finished.load());
  auto rules = FaultControl::list(*e.f);
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].parked, 1u);
  EXPECT_EQ(e.read_base(3), 0);
  ASSERT_TRUE(FaultControl::clear(*e.f, 0));
  t.join();
  EXPECT_EQ(st, IoStatus::kSuccess);
  EXPECT_EQ(e.read_base(3), 0x33);
}

TEST(FaultBdev, ResetAbortsHungIo) {
  FaultEnv e;
  ASSERT_TRUE(FaultControl::inject(*e.f, spec(FaultMode::kHang)));
  IoStatus st = IoStatus::kSuccess;
  std::thread t([&] { st = e.write(4, 1); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(do_io(e, 0, *e.f, IoType::kReset, 0, 0, nullptr, 0), IoStatus::kSuccess);
  t.join();
  EXPECT_EQ(st, IoStatus::kAborted);
}

TEST(FaultBdev, ProbabilityFaultsAboutThatShare) {
  FaultEnv e;
  auto s = spec(FaultMode::kError);
  s.probability = 0.5;
  ASSERT_TRUE(FaultControl::inject(*e.f, s));
  int failed = 0;
  for (int i = 0; i < 400; ++i) failed += e.write(i % 200, 1, i % 2) != IoStatus::kSuccess;
  EXPECT_GT(failed, 120);
  EXPECT_LT(failed, 280);
}

TEST(FaultBdev, RejectsBadRules) {
  FaultEnv e;
  auto s = spec(FaultMode::kDelay);
  EXPECT_EQ(FaultControl::inject(*e.f, s).status().code(), Errc::kInvalidArgument);
  s = spec(FaultMode::kDropWrite, io_type_bit(IoType::kRead));
  EXPECT_EQ(FaultControl::inject(*e.f, s).status().code(), Errc::kInvalidArgument);
  s = spec(FaultMode::kError);
  s.probability = 0;
  EXPECT_FALSE(FaultControl::inject(*e.f, s));
  s = spec(FaultMode::kError);
  s.lba_start = 5;
  s.lba_end = 5;
  EXPECT_FALSE(FaultControl::inject(*e.f, s));
  EXPECT_FALSE(FaultControl::inject(*e.m, spec(FaultMode::kError)));  // not a fault bdev
  EXPECT_TRUE(FaultControl::list(*e.f).empty());
}

// ---- Volatile write cache and power loss ----

// A fault bdev with a volatile cache over a malloc disk; values are one byte per block.
struct CacheEnv : Env {
  std::shared_ptr<Bdev> f, m;
  uint32_t bs;
  explicit CacheEnv(const std::string& malloc_opts = "size_mb=1", const std::string& fault_opts = "") {
    EXPECT_TRUE(reg->create("malloc:///m0?" + malloc_opts));
    EXPECT_TRUE(reg->create("fault:///f0?base=m0&cache=volatile" + fault_opts));
    f = reg->find("f0");
    m = reg->find("m0");
    bs = m->block_size();
  }
  ~CacheEnv() {
    f.reset();
    m.reset();
  }
  IoStatus write(uint64_t lba, uint64_t n, uint8_t v, bool fua = false, size_t r = 0) {
    DmaBuffer b(n * bs);
    std::memset(b.data(), v, n * bs);
    return do_io(*this, r, *f, IoType::kWrite, lba, n, b.data(), n * bs, nullptr, fua);
  }
  IoStatus flush(size_t r = 0) { return do_io(*this, r, *f, IoType::kFlush, 0, 0, nullptr, 0); }
  // The blocks' bytes through `b`; every byte of a block must be equal (else -1).
  std::vector<int> blocks(Bdev& b, uint64_t lba, uint64_t n, size_t r = 0) {
    DmaBuffer buf(n * bs);
    std::vector<int> out;
    if (do_io(*this, r, b, IoType::kRead, lba, n, buf.data(), n * bs) != IoStatus::kSuccess) return out;
    for (uint64_t i = 0; i < n; ++i) {
      const uint8_t* p = buf.data() + i * bs;
      out.push_back(std::all_of(p, p + bs, [p](uint8_t x) { return x == p[0]; }) ? p[0] : -1);
    }
    return out;
  }
  std::vector<int> base(uint64_t lba, uint64_t n) { return blocks(*m, lba, n); }
};

TEST(FaultCache, WritesWaitInTheCacheUntilAFlush) {
  CacheEnv e;
  ASSERT_EQ(e.write(1, 1, 7), IoStatus::kSuccess);
  ASSERT_EQ(e.write(2, 2, 8, false, 1), IoStatus::kSuccess);  // another reactor, same cache
  EXPECT_EQ(e.base(0, 4), (std::vector<int>{0, 0, 0, 0}));   // the base is untouched
  // Reads see the cache over the base, whole or partly cached, on any reactor.
  EXPECT_EQ(e.blocks(*e.f, 0, 4), (std::vector<int>{0, 7, 8, 8}));
  EXPECT_EQ(e.blocks(*e.f, 2, 1, 1), (std::vector<int>{8}));
  ASSERT_EQ(e.write(2, 1, 9), IoStatus::kSuccess);
  EXPECT_EQ(e.blocks(*e.f, 1, 3, 1), (std::vector<int>{7, 9, 8}));
  auto info = FaultControl::volatile_cache(*e.f);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->on);
  EXPECT_EQ(info->blocks, 3u);
  EXPECT_EQ(info->versions, 4u);  // block 2 has two
  ASSERT_EQ(e.flush(1), IoStatus::kSuccess);
  EXPECT_EQ(e.base(0, 4), (std::vector<int>{0, 7, 9, 8}));
  EXPECT_EQ(FaultControl::volatile_cache(*e.f)->versions, 0u);
  // Write-zeroes and unmap are cached too.
  ASSERT_EQ(do_io(e, 0, *e.f, IoType::kWriteZeroes, 1, 1, nullptr, 0), IoStatus::kSuccess);
  ASSERT_EQ(do_io(e, 0, *e.f, IoType::kUnmap, 3, 1, nullptr, 0), IoStatus::kSuccess);
  EXPECT_EQ(e.blocks(*e.f, 0, 4), (std::vector<int>{0, 0, 9, 0}));
  EXPECT_EQ(e.base(0, 4), (std::vector<int>{0, 7, 9, 8}));
  ASSERT_EQ(e.flush(), IoStatus::kSuccess);
  EXPECT_EQ(e.base(0, 4), (std::vector<int>{0, 0, 9, 0}));
}

TEST(FaultCache, PowerLossLosesSomeUnflushedWritesButNoFlushedOne) {
  CacheEnv e;
  for (uint64_t b = 0; b < 64; ++b) ASSERT_EQ(e.write(b, 1, 1), IoStatus::kSuccess);
  ASSERT_EQ(e.write(100, 32, 3), IoStatus::kSuccess);
  ASSERT_EQ(e.flush(), IoStatus::kSuccess);
  for (uint64_t b = 0; b < 64; ++b) ASSERT_EQ(e.write(b, 1, 2), IoStatus::kSuccess);  // not flushed
  for (uint64_t b = 150; b < 214; ++b) ASSERT_EQ(e.write(b, 1, 4), IoStatus::kSuccess);
  const uint64_t seed = 11;
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto rep = FaultControl::power_loss(*e.f, seed);
  ASSERT_TRUE(rep) << rep.status().to_string();
  EXPECT_EQ(rep->units, 128u);
  EXPECT_EQ(rep->lost + rep->newest + rep->older, rep->units);
  EXPECT_GT(rep->lost, 0u);
  EXPECT_GT(rep->newest, 0u);
  auto got = e.base(0, 64);
  EXPECT_EQ(std::count(got.begin(), got.end(), 1) + std::count(got.begin(), got.end(), 2), 64);
  EXPECT_GT(std::count(got.begin(), got.end(), 1), 0);  // lost: the flushed version remains
  EXPECT_GT(std::count(got.begin(), got.end(), 2), 0);
  got = e.base(150, 64);
  EXPECT_GT(std::count(got.begin(), got.end(), 0), 0);  // never flushed, lost
  EXPECT_EQ(std::count(got.begin(), got.end(), 0) + std::count(got.begin(), got.end(), 4), 64);
  EXPECT_EQ(e.base(100, 32), std::vector<int>(32, 3));  // flushed: always there
  EXPECT_EQ(FaultControl::volatile_cache(*e.f)->versions, 0u);
}

TEST(FaultCache, FuaWritesSurviveAndSupersedeCachedVersions) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    CacheEnv e;
    ASSERT_EQ(e.write(5, 4, 1), IoStatus::kSuccess);           // cached
    ASSERT_EQ(e.write(6, 2, 2, true, 1), IoStatus::kSuccess);  // FUA over part of it
    EXPECT_EQ(e.base(5, 4), (std::vector<int>{0, 2, 2, 0}));   // on the base at completion
    ASSERT_EQ(do_io(e, 0, *e.f, IoType::kWriteZeroes, 20, 1, nullptr, 0, nullptr, true), IoStatus::kSuccess);
    ASSERT_TRUE(FaultControl::power_loss(*e.f, seed));
    auto got = e.base(5, 4);
    EXPECT_EQ(got[1], 2);  // the older cached version 1 never overwrites the FUA write
    EXPECT_EQ(got[2], 2);
    EXPECT_TRUE(got[0] == 0 || got[0] == 1);
  }
}

TEST(FaultCache, MultiBlockWritesTearAtFourKiB) {
  {
    CacheEnv e;  // 4 KiB blocks: each block is a unit
    ASSERT_EQ(e.write(0, 16, 9), IoStatus::kSuccess);
    auto rep = FaultControl::power_loss(*e.f, 1);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->units, 16u);
    auto got = e.base(0, 16);
    EXPECT_GT(std::count(got.begin(), got.end(), 9), 0) << "seed 1";
    EXPECT_GT(std::count(got.begin(), got.end(), 0), 0) << "seed 1";
  }
  // 512-byte blocks: a unit is 8 blocks; units tear apart, the blocks of one never do.
  bool torn = false;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    CacheEnv e("size_mb=1&blk_size=512");
    ASSERT_EQ(e.write(8, 64, 5), IoStatus::kSuccess);  // 8 units
    auto rep = FaultControl::power_loss(*e.f, seed);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->units, 8u);
    auto got = e.base(8, 64);
    for (int u = 0; u < 8; ++u) {
      EXPECT_EQ(std::count(got.begin() + u * 8, got.begin() + u * 8 + 8, got[u * 8]), 8) << "unit " << u;
    }
    torn |= std::count(got.begin(), got.end(), 5) > 0 && std::count(got.begin(), got.end(), 0) > 0;
  }
  EXPECT_TRUE(torn);
}

TEST(FaultCache, PowerLossMayKeepAnOlderVersion) {
  CacheEnv e;
  for (uint8_t v = 1; v <= 3; ++v) ASSERT_EQ(e.write(0, 64, v), IoStatus::kSuccess);
  auto rep = FaultControl::power_loss(*e.f, 5);
  ASSERT_TRUE(rep);
  EXPECT_GT(rep->older, 0u);
  auto got = e.base(0, 64);
  for (int v = 0; v <= 3; ++v) {
    EXPECT_GT(std::count(got.begin(), got.end(), v), 0) << "value " << v << ", seed 5";
  }
}

TEST(FaultCache, TheSameSeedReplaysAndAnotherDiffers) {
  auto run = [](uint64_t seed) {
    CacheEnv e;
    EXPECT_EQ(e.write(0, 32, 1), IoStatus::kSuccess);
    EXPECT_EQ(e.flush(), IoStatus::kSuccess);
    for (uint64_t b = 0; b < 32; b += 2) {
      EXPECT_EQ(e.write(b, 2, static_cast<uint8_t>(10 + b), false, b % 4 / 2), IoStatus::kSuccess);
    }
    EXPECT_EQ(e.write(8, 16, 99), IoStatus::kSuccess);
    EXPECT_TRUE(FaultControl::power_loss(*e.f, seed));
    return e.base(0, 32);
  };
  auto a = run(42);
  EXPECT_EQ(run(42), a);
  EXPECT_NE(run(43), a);
  EXPECT_NE(run(44), a);
}

TEST(FaultCache, PoweredOffUntilSwitchedOnAgain) {
  CacheEnv e;
  ASSERT_EQ(e.write(1, 1, 7), IoStatus::kSuccess);
  ASSERT_TRUE(FaultControl::power_loss(*e.f, 3));
  EXPECT_FALSE(FaultControl::volatile_cache(*e.f)->powered);
  EXPECT_EQ(e.write(1, 1, 8), IoStatus::kIoError);
  EXPECT_EQ(e.write(1, 1, 8, true), IoStatus::kIoError);
  EXPECT_EQ(e.flush(), IoStatus::kIoError);
  EXPECT_TRUE(e.blocks(*e.f, 1, 1).empty());  // reads fail too
  ASSERT_TRUE(FaultControl::set_volatile_cache(*e.f, true));
  EXPECT_EQ(e.write(1, 1, 8), IoStatus::kSuccess);
  EXPECT_EQ(e.blocks(*e.f, 1, 1), (std::vector<int>{8}));
  // Switching the cache off writes it to the base.
  ASSERT_TRUE(FaultControl::set_volatile_cache(*e.f, false));
  EXPECT_EQ(e.base(1, 1), (std::vector<int>{8}));
  EXPECT_EQ(e.write(2, 1, 9), IoStatus::kSuccess);
  EXPECT_EQ(e.base(2, 1), (std::vector<int>{9}));  // straight through
  EXPECT_EQ(FaultControl::power_loss(*e.f, 1).status().code(), Errc::kInvalidArgument);
}

TEST(FaultCache, IoParkedAtThePowerLossNeverReachesTheBase) {
  CacheEnv e;
  ASSERT_EQ(e.write(3, 1, 5), IoStatus::kSuccess);
  // A flush and a FUA write held by hang rules when the power goes.
  auto hang = spec(FaultMode::kHang, io_type_bit(IoType::kFlush) | io_type_bit(IoType::kWrite));
  hang.lba_start = 3;
  hang.lba_end = 4;
  ASSERT_TRUE(FaultControl::inject(*e.f, hang));
  IoStatus flush_st = IoStatus::kSuccess, fua_st = IoStatus::kSuccess;
  std::thread t1([&] { flush_st = e.flush(1); });
  std::thread t2([&] { fua_st = e.write(3, 1, 6, true); });
  while (FaultControl::list(*e.f)[0].parked < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(FaultControl::power_loss(*e.f, 9));
  auto after = e.base(3, 1);
  ASSERT_TRUE(after[0] == 0 || after[0] == 5);
  ASSERT_TRUE(FaultControl::clear(*e.f, 0));  // they proceed, into a dead device
  t1.join();
  t2.join();
  EXPECT_EQ(flush_st, IoStatus::kIoError);
  EXPECT_EQ(fua_st, IoStatus::kIoError);
  EXPECT_EQ(e.base(3, 1), after);
}

TEST(FaultCache, EvictsTheOldestWritesBeyondItsLimit) {
  CacheEnv e("size_mb=8", "&cache_mb=1");
  for (uint64_t b = 0; b < 512; ++b) {
    ASSERT_EQ(e.write(b, 1, static_cast<uint8_t>(1 + b % 200), false, b % 2), IoStatus::kSuccess);
  }
  auto info = FaultControl::volatile_cache(*e.f);
  ASSERT_TRUE(info);
  EXPECT_LE(info->bytes, info->limit_bytes);
  EXPECT_GT(info->destaged_blocks, 0u);
  EXPECT_EQ(info->limit_bytes, 1u << 20);
  auto base = e.base(0, 512);
  EXPECT_EQ(base[0], 1);      // the oldest went to the base
  EXPECT_EQ(base[511], 0);    // the newest did not
  auto got = e.blocks(*e.f, 0, 512, 1);
  for (uint64_t b = 0; b < 512; ++b) ASSERT_EQ(got[b], static_cast<int>(1 + b % 200)) << b;
}

TEST(FaultCache, RejectsBadOptions) {
  Env e;
  ASSERT_TRUE(e.reg->create("malloc:///m0?size_mb=1"));
  EXPECT_FALSE(e.reg->create("fault:///f0?base=m0&cache=writeback"));
  EXPECT_FALSE(e.reg->create("fault:///f0?base=m0&cache=volatile&cache_mb=0"));
  EXPECT_FALSE(e.reg->create("fault:///f0?base=m0&cache_mb=x"));
  ASSERT_TRUE(e.reg->create("fault:///f0?base=m0"));
  auto f = e.reg->find("f0");
  EXPECT_FALSE(FaultControl::volatile_cache(*f)->on);
  EXPECT_EQ(FaultControl::power_loss(*f, 1).status().code(), Errc::kInvalidArgument);
  auto m = e.reg->find("m0");
  EXPECT_EQ(FaultControl::set_volatile_cache(*m, true).code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace castor::bdev::test
