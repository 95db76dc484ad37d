#include "bdev/modules/fault.h"

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

}  // namespace
}  // namespace castor::bdev::test
