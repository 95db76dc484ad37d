// The nvmf:// bdev with several paths (`paths=`): two targets, each in an "engine" of its
// own (reactors, registry), export one file under the same NQN and namespace identity, as
// two engines do after a nexus switch-over. The host follows the ANA states (I/O to the
// optimized path; a path made inaccessible is left, learned from the change notice),
// survives the loss of the path it uses without an I/O error, returns to a path that
// comes back, parks I/O while no path is usable and fails it after the loss timeout.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "../bdev/harness.h"
#include "common/clock.h"
#include "nvmf/host/nvmf_bdev.h"
#include "nvmf/target/target.h"

namespace castor::nvmf {
namespace {

using bdev::IoStatus;
using bdev::IoType;
using bdev::test::do_io;
using bdev::test::Env;

constexpr char kNqn[] = "nqn.2026-11.io.castor:nexus-multipath-test";
constexpr char kUuid[] = "6d1a35a8-0bd6-4c3e-9a59-0c2f4f0a7e01";

// One engine serving the volume: its reactors, registry and target.
struct Engine {
  Env env;
  std::unique_ptr<NvmfTarget> target;
  uint16_t port = 0;

  void start(const std::string& file, const char* uuid = kUuid) {
    if (!env.reg->find("d")) {
      ASSERT_TRUE(env.reg->create(fmt::format("uring://{}?name=d&blk_size=512&uuid={}", file, uuid)).is_ok());
    }
    target = std::make_unique<NvmfTarget>(env.group, *env.reg);
    ASSERT_TRUE(target->listen("127.0.0.1", port, &port).is_ok());
    ASSERT_TRUE(target->add_subsystem(kNqn, {}).is_ok());
    ASSERT_TRUE(target->add_namespace(kNqn, "d").is_ok());
  }
  void stop() {
    if (!target) return;
    target->stop();
    target.reset();
  }
  uint64_t writes() const { return env.reg->find("d")->stats().per_type[static_cast<int>(IoType::kWrite)].ops; }
};

struct Multipath : ::testing::Test {
  Env host;
  Engine a, b;
  std::string file;

  void SetUp() override {
    file = host.path("volume.img");
    {
      std::FILE* f = std::fopen(file.c_str(), "wb");
      ASSERT_NE(f, nullptr);
      ASSERT_EQ(ftruncate(fileno(f), 16 << 20), 0);
      std::fclose(f);
    }
    a.start(file);
    b.start(file);
    host.reg->register_module(make_nvmf_bdev_module());
  }
  void TearDown() override {
    host.reg.reset();
    a.stop();
    b.stop();
  }
  std::string uri(const std::string& opts = "") const {
    return fmt::format("nvmf://127.0.0.1:{}/{}?name=mp&paths=127.0.0.1:{}&reconnect_delay_ms=20"
                       "&reconnect_delay_max_ms=100{}",
                       a.port, kNqn, b.port, opts);
  }
  bdev::Bdev& mp() { return *host.reg->find("mp"); }
  // Waits until path `i` (0: a, 1: b) shows `ana` and `live`.
  bool path_is(size_t i, const std::string& ana, bool live = true) {
    for (int n = 0; n < 500; ++n) {
      auto st = nvmf_bdev_status(mp());
      if (st && st->paths.size() == 2 && st->paths[i].ana_state == ana &&
          (st->paths[i].state == ControllerState::kLive) == live) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& c : v) c = static_cast<uint8_t>(rng());
  return v;
}

// Writes `n` 4 KiB blocks from `lba` on alternating reactors, each read back; every I/O
// must succeed and return what was written.
void write_and_verify(Env& host, bdev::Bdev& b, uint64_t lba, int n, uint32_t seed) {
  for (int i = 0; i < n; ++i) {
    auto w = pattern(4096, seed + static_cast<uint32_t>(i));
    ASSERT_EQ(do_io(host, i % 2, b, IoType::kWrite, lba + 8 * static_cast<uint64_t>(i), 8, w.data(), w.size()),
              IoStatus::kSuccess)
        << "write " << i;
    std::vector<uint8_t> r(4096);
    ASSERT_EQ(do_io(host, (i + 1) % 2, b, IoType::kRead, lba + 8 * static_cast<uint64_t>(i), 8, r.data(), r.size()),
              IoStatus::kSuccess)
        << "read " << i;
    ASSERT_EQ(r, w) << "block " << i;
  }
}

TEST_F(Multipath, FollowsAnaAndSurvivesTheLossOfItsPath) {
  auto info = host.reg->create(uri());
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  ASSERT_TRUE(path_is(0, "optimized"));
  ASSERT_TRUE(path_is(1, "optimized"));

  // Both optimized: the first path carries the I/O.
  uint64_t a0 = a.writes(), b0 = b.writes();
  write_and_verify(host, mp(), 0, 16, 1);
  EXPECT_GE(a.writes() - a0, 16u);
  EXPECT_EQ(b.writes(), b0);

  // The first path becomes inaccessible (a planned move's first step): the host learns
  // it from the ANA change notice and sends everything to the second.
  ASSERT_TRUE(a.target->set_ana_state(kNqn, AnaState::kInaccessible));
  ASSERT_TRUE(path_is(0, "inaccessible"));
  a0 = a.writes();
  b0 = b.writes();
  write_and_verify(host, mp(), 1000, 16, 100);
  EXPECT_EQ(a.writes(), a0);
  EXPECT_GE(b.writes() - b0, 16u);

  // Back to optimized on the first, non-optimized on the second: the first again.
  ASSERT_TRUE(b.target->set_ana_state(kNqn, AnaState::kNonOptimized));
  ASSERT_TRUE(a.target->set_ana_state(kNqn, AnaState::kOptimized));
  ASSERT_TRUE(path_is(0, "optimized"));
  ASSERT_TRUE(path_is(1, "non_optimized"));
  a0 = a.writes();
  write_and_verify(host, mp(), 2000, 8, 200);
  EXPECT_GE(a.writes() - a0, 8u);

  // The first engine goes away under a writer on both reactors: no request fails, and
  // the non-optimized path carries on.
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, done{0};
  std::thread writer([&] {
    for (uint32_t i = 0; !stop; ++i) {
      auto w = pattern(4096, 5000 + i);
      const uint64_t lba = 3000 + 8 * (i % 256);
      if (do_io(host, i % 2, mp(), IoType::kWrite, lba, 8, w.data(), w.size()) != IoStatus::kSuccess) ++errors;
      std::vector<uint8_t> r(4096);
      if (do_io(host, (i + 1) % 2, mp(), IoType::kRead, lba, 8, r.data(), r.size()) != IoStatus::kSuccess ||
          r != w) {
        ++errors;
      }
      ++done;
    }
  });
  while (done < 20) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const uint64_t t0 = mono_ns();
  a.stop();
  const int at_stop = done;
  while (done < at_stop + 50) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double switch_ms = static_cast<double>(mono_ns() - t0) / 1e6;
  stop = true;
  writer.join();
  EXPECT_EQ(errors, 0);
  auto st = nvmf_bdev_status(mp());
  ASSERT_TRUE(st);
  EXPECT_NE(st->paths[0].state, ControllerState::kLive);
  std::printf("50 write+read pairs after the path was lost took %.1f ms\n", switch_ms);

  // The first engine comes back at the same address: the host reconnects the path and,
  // as it is optimized, uses it again.
  a.start(file);
  ASSERT_TRUE(path_is(0, "optimized"));
  // A channel passes over a path for 100 ms after it handed a request back.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  a0 = a.writes();
  write_and_verify(host, mp(), 4000, 8, 300);
  EXPECT_GE(a.writes() - a0, 8u);
}

TEST_F(Multipath, NoUsablePathParksIoUntilOneReturnsOrTheLossTimeout) {
  ASSERT_TRUE(host.reg->create(uri("&ctrl_loss_timeout_ms=3000")).is_ok());
  auto w = pattern(4096, 7);
  ASSERT_EQ(do_io(host, 0, mp(), IoType::kWrite, 0, 8, w.data(), w.size()), IoStatus::kSuccess);
  // Neither path accessible: I/O waits, and completes once one is optimized again.
  ASSERT_TRUE(a.target->set_ana_state(kNqn, AnaState::kInaccessible));
  ASSERT_TRUE(b.target->set_ana_state(kNqn, AnaState::kInaccessible));
  ASSERT_TRUE(path_is(0, "inaccessible"));
  ASSERT_TRUE(path_is(1, "inaccessible"));
  bdev::test::SyncIo s;
  std::vector<uint8_t> r(4096);
  auto f = bdev::test::start_io(host, 1, mp(), s, IoType::kRead, 0, 8, r.data(), r.size());
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  ASSERT_TRUE(b.target->set_ana_state(kNqn, AnaState::kOptimized));
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f.get(), IoStatus::kSuccess);
  EXPECT_EQ(r, w);

  // Both engines gone: the I/O fails once the loss timeout has passed since it was
  // submitted, not before.
  a.stop();
  b.stop();
  const uint64_t t0 = mono_ns();
  EXPECT_EQ(do_io(host, 0, mp(), IoType::kRead, 0, 8, r.data(), r.size()), IoStatus::kIoError);
  const uint64_t waited_ms = (mono_ns() - t0) / 1'000'000;
  EXPECT_GE(waited_ms, 2500u);
  EXPECT_LT(waited_ms, 10000u);
}

// A switch-over as the host sees it: the second engine does not serve the volume when
// the bdev is made; its path connects once it does, and carries the I/O when the first
// engine goes.
TEST_F(Multipath, APathThatComesLaterCarriesTheIoWhenTheFirstGoes) {
  b.stop();
  auto info = host.reg->create(uri("&ctrl_loss_timeout_ms=20000"));
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  auto st = nvmf_bdev_status(mp());
  ASSERT_TRUE(st);
  EXPECT_NE(st->paths[1].state, ControllerState::kLive);
  write_and_verify(host, mp(), 0, 8, 1);
  b.start(file);
  ASSERT_TRUE(path_is(1, "optimized"));
  ASSERT_TRUE(a.target->set_ana_state(kNqn, AnaState::kInaccessible));
  ASSERT_TRUE(path_is(0, "inaccessible"));
  a.stop();
  const uint64_t b0 = b.writes();
  write_and_verify(host, mp(), 500, 16, 50);
  EXPECT_GE(b.writes() - b0, 16u);
}

TEST_F(Multipath, BadPathListsAreRefusedWithClearErrors) {
  auto expect_refused = [&](const std::string& u, const std::string& words) {
    auto r = host.reg->create(u);
    ASSERT_FALSE(r.is_ok()) << u;
    EXPECT_EQ(r.status().code(), Errc::kInvalidArgument) << r.status().to_string();
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().to_string();
    EXPECT_EQ(host.reg->find("mp"), nullptr);
  };
  const std::string base = fmt::format("nvmf://127.0.0.1:{}/{}?name=mp&paths=", a.port, kNqn);
  expect_refused(base + fmt::format("127.0.0.1:{}", a.port), "given twice");
  expect_refused(base + "127.0.0.1:0", "bad port");
  expect_refused(base + "127.0.0.1:99999", "bad port");
  expect_refused(base + ",", "empty path");
  // A path to another namespace (another identity under the same NQN) is refused, and
  // the paths already connected are let go.
  Engine other;
  other.start(file, "0f0e0d0c-0b0a-4908-8706-050403020100");
  expect_refused(base + fmt::format("127.0.0.1:{}", other.port), "another namespace");
  other.stop();
  EXPECT_TRUE(a.target->list_controllers().empty() || [&] {
    for (int i = 0; i < 200 && !a.target->list_controllers().empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return a.target->list_controllers().empty();
  }());
}

}  // namespace
}  // namespace castor::nvmf
