// The nvmf:// bdev (Castor's host) against Castor's target in the same process, on
// loopback: every I/O path (split, bounced, unmap, write-zeroes, flush), the allow-list
// refusal, a command timeout when the target's bdev hangs, reconnect after the target
// restarts, and the controller-loss timeout.
#include "nvmf/host/nvmf_bdev.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "../bdev/harness.h"
#include "bdev/modules/fault.h"
#include "common/clock.h"
#include "nvmf/target/target.h"
#include "pool/pool.h"
#include "../pool/small_pool.h"

namespace castor::nvmf {
namespace {

using bdev::IoStatus;
using bdev::IoType;
using bdev::test::do_io;
using bdev::test::Env;

constexpr char kNqn[] = "nqn.2026-11.io.castor:replica-test";

struct Fixture : ::testing::Test {
  Env tenv;  // the target's process, in effect
  Env henv;  // the host's
  std::unique_ptr<NvmfTarget> target;
  uint16_t port = 0;

  void SetUp() override {
    ASSERT_TRUE(tenv.reg->create("malloc:///m0?size_mb=16&blk_size=512").is_ok());
    ASSERT_TRUE(tenv.reg->create("fault:///f0?base=m0").is_ok());
    start_target(0);
    henv.reg->register_module(make_nvmf_bdev_module());
  }
  void TearDown() override {
    henv.reg.reset();
    if (target) target->stop();
    target.reset();
  }
  void start_target(uint16_t want, std::vector<std::string> hosts = {}) {
    target = std::make_unique<NvmfTarget>(tenv.group, *tenv.reg);
    ASSERT_TRUE(target->listen("127.0.0.1", want, &port).is_ok());
    ASSERT_TRUE(target->add_subsystem(kNqn, hosts).is_ok());
    ASSERT_TRUE(target->add_namespace(kNqn, "f0").is_ok());
  }
  void stop_target() {
    target->stop();
    target.reset();
  }
  std::string uri(const std::string& opts = "") const {
    return fmt::format("nvmf://127.0.0.1:{}/{}?name=r0{}", port, kNqn, opts);
  }
  bdev::Bdev& host_bdev() { return *henv.reg->find("r0"); }
};

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST_F(Fixture, AttachesWithTheNamespaceGeometryAndMovesDataBothWays) {
  auto info = henv.reg->create(uri());
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(info->module, "nvmf");
  EXPECT_EQ(info->block_size, 512u);
  EXPECT_EQ(info->num_blocks, 16u * 2048);
  auto& b = host_bdev();
  auto& tb = *tenv.reg->find("m0");
  EXPECT_TRUE(b.supports(IoType::kUnmap));
  EXPECT_TRUE(b.supports(IoType::kWriteZeroes));

  // 4 KiB (in-capsule), 64 KiB (R2T), 1 MiB (split over MDTS = 128 KiB), from both reactors.
  uint64_t lba = 8;
  uint32_t seed = 1;
  for (size_t len : {4096u, 65536u, 1u << 20}) {
    for (size_t ri = 0; ri < 2; ++ri) {
      auto w = pattern(len, seed++);
      ASSERT_EQ(do_io(henv, ri, b, IoType::kWrite, lba, len / 512, w.data(), len), IoStatus::kSuccess);
      std::vector<uint8_t> r(len), t(len);
      ASSERT_EQ(do_io(henv, 1 - ri, b, IoType::kRead, lba, len / 512, r.data(), len), IoStatus::kSuccess);
      EXPECT_EQ(r, w) << len;
      ASSERT_EQ(do_io(tenv, 0, tb, IoType::kRead, lba, len / 512, t.data(), len), IoStatus::kSuccess);
      EXPECT_EQ(t, w) << "target's bdev, " << len;
      lba += len / 512 + 8;
    }
  }

  // Several iovecs: bounced through one buffer.
  {
    auto w = pattern(8192, 99);
    bdev::test::SyncIo s;
    iovec iov[2] = {{w.data(), 4096}, {w.data() + 4096, 4096}};
    s.req.type = IoType::kWrite;
    s.req.offset_blocks = 4000;
    s.req.num_blocks = 16;
    s.req.iovs = iov;
    s.req.iovcnt = 2;
    s.req.cb = [](bdev::IoRequest& r, void* a) { static_cast<bdev::test::SyncIo*>(a)->p.set_value(r.status); };
    s.req.cb_arg = &s;
    auto f = s.p.get_future();
    auto& r = henv.group.at(0);
    const bdev::BdevDesc d(&b);
    r.send([&] { d.channel(r).submit(s.req); });
    ASSERT_EQ(f.get(), IoStatus::kSuccess);
    std::vector<uint8_t> t(8192);
    ASSERT_EQ(do_io(tenv, 0, tb, IoType::kRead, 4000, 16, t.data(), t.size()), IoStatus::kSuccess);
    EXPECT_EQ(t, w);
  }

  // Write zeroes and unmap reach the target; flush succeeds.
  auto w = pattern(65536, 7);
  ASSERT_EQ(do_io(henv, 0, b, IoType::kWrite, 6000, 128, w.data(), w.size()), IoStatus::kSuccess);
  ASSERT_EQ(do_io(henv, 0, b, IoType::kWriteZeroes, 6000, 64, nullptr, 0), IoStatus::kSuccess);
  std::vector<uint8_t> t(65536);
  ASSERT_EQ(do_io(tenv, 0, tb, IoType::kRead, 6000, 128, t.data(), t.size()), IoStatus::kSuccess);
  EXPECT_TRUE(std::all_of(t.begin(), t.begin() + 32768, [](uint8_t c) { return c == 0; }));
  EXPECT_TRUE(std::equal(t.begin() + 32768, t.end(), w.begin() + 32768));
  EXPECT_EQ(do_io(henv, 1, b, IoType::kUnmap, 6000, 128, nullptr, 0), IoStatus::kSuccess);
  EXPECT_EQ(do_io(henv, 1, b, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
  // Beyond the end: refused before the wire.
  std::vector<uint8_t> big(4096);
  EXPECT_EQ(do_io(henv, 0, b, IoType::kRead, 16u * 2048 - 4, 8, big.data(), big.size()), IoStatus::kInvalid);

  auto st = nvmf_bdev_status(b);
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->state, ControllerState::kLive);
  EXPECT_EQ(st->resets, 0u);
  ASSERT_TRUE(henv.reg->destroy("r0").is_ok());
  // The target sees the controller go.
  for (int i = 0; i < 200 && !target->list_controllers().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(target->list_controllers().empty());
}

// Unmaps larger than one command go out one command at a time (the range lives in the
// request's context); a second one queued behind the first finishes too.
// FUA crosses the wire: the host sets the Write Zeroes command's FUA bit, the target
// hands it to its bdev, whose channel makes the zeroes durable (a file: fallocate, then
// fdatasync) before the command completes. Without FUA, no flush.
TEST_F(Fixture, FuaReachesTheTargetsBdev) {
  ASSERT_TRUE(tenv.reg->create("file://" + tenv.path("z.img") + "?size_mb=4").is_ok());
  const std::string nqn = std::string(kNqn) + "-fua";
  ASSERT_TRUE(target->add_subsystem(nqn, {}).is_ok());
  ASSERT_TRUE(target->add_namespace(nqn, "z.img").is_ok());
  auto info = henv.reg->create(fmt::format("nvmf://127.0.0.1:{}/{}?name=rz", port, nqn));
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  auto& b = *henv.reg->find("rz");
  EXPECT_TRUE(b.fua_native(IoType::kWrite));
  auto flushes = [&] { return tenv.reg->stats("z.img")->per_type[static_cast<int>(IoType::kFlush)].ops; };
  ASSERT_EQ(do_io(henv, 0, b, IoType::kWriteZeroes, 8, 8, nullptr, 0), IoStatus::kSuccess);
  EXPECT_EQ(flushes(), 0u);
  ASSERT_EQ(do_io(henv, 1, b, IoType::kWriteZeroes, 8, 8, nullptr, 0, nullptr, true), IoStatus::kSuccess);
  EXPECT_EQ(flushes(), 1u);
  EXPECT_EQ(henv.reg->stats("rz")->per_type[static_cast<int>(IoType::kFlush)].ops, 0u)
      << "the host sends the bit, not a Flush command";
  ASSERT_TRUE(henv.reg->destroy("rz").is_ok());
}

TEST_F(Fixture, ConcurrentMultiCommandUnmapsComplete) {
  ASSERT_TRUE(tenv.reg->create("malloc:///m2?size_mb=64&blk_size=512").is_ok());
  ASSERT_TRUE(target->add_namespace(kNqn, "m2").is_ok());
  ASSERT_TRUE(henv.reg->create(uri("&nsid=2")).is_ok());
  auto& b = host_bdev();
  ASSERT_EQ(b.num_blocks(), 131072u);
  bdev::test::SyncIo u1, u2;
  for (auto* u : {&u1, &u2}) {
    u->req.type = IoType::kUnmap;
    u->req.offset_blocks = 0;
    u->req.num_blocks = 131072;
    u->req.cb = [](bdev::IoRequest& q, void* a) { static_cast<bdev::test::SyncIo*>(a)->p.set_value(q.status); };
    u->req.cb_arg = u;
  }
  auto f1 = u1.p.get_future(), f2 = u2.p.get_future();
  auto& r = henv.group.at(0);
  const bdev::BdevDesc d(&b);
  r.send([&] {
    d.channel(r).submit(u1.req);
    d.channel(r).submit(u2.req);
  });
  ASSERT_EQ(f1.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  ASSERT_EQ(f2.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f1.get(), IoStatus::kSuccess);
  EXPECT_EQ(f2.get(), IoStatus::kSuccess);
}

TEST_F(Fixture, BadUrisAndRefusedHostsGiveClearErrors) {
  auto bad = henv.reg->create(uri("&qd=1"));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("qd"), std::string::npos);
  bad = henv.reg->create(uri("&hdgst=maybe"));
  EXPECT_FALSE(bad.is_ok());
  bad = henv.reg->create(uri("&bogus=1"));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("bogus"), std::string::npos);
  // Nobody listens there.
  bad = henv.reg->create("nvmf://127.0.0.1:1/nqn.2026-11.io.castor:x?connect_timeout_ms=500");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), Errc::kIoError);

  stop_target();
  start_target(port, {"nqn.2014-08.org.nvmexpress:uuid:someone-else"});
  bad = henv.reg->create(uri());
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("not allowed"), std::string::npos) << bad.status().to_string();
  EXPECT_TRUE(henv.reg->name_free("r0"));
  auto ok = henv.reg->create(uri("&hostnqn=nqn.2014-08.org.nvmexpress:uuid:someone-else"));
  EXPECT_TRUE(ok.is_ok()) << ok.status().to_string();
}

TEST_F(Fixture, AHungCommandTimesOutAndTheControllerComesBack) {
  ASSERT_TRUE(henv.reg->create(uri("&io_timeout_ms=300&reconnect_delay_ms=50")).is_ok());
  auto& b = host_bdev();
  bdev::FaultRuleSpec hang;
  hang.mode = bdev::FaultMode::kHang;
  auto id = bdev::FaultControl::inject(*tenv.reg->find("f0"), hang);
  ASSERT_TRUE(id.is_ok());
  std::vector<uint8_t> buf(4096);
  const uint64_t t0 = mono_ns();
  EXPECT_EQ(do_io(henv, 0, b, IoType::kRead, 0, 8, buf.data(), buf.size()), IoStatus::kTimedOut);
  const uint64_t took = mono_ns() - t0;
  EXPECT_GE(took, 300'000'000u);
  EXPECT_LT(took, 3'000'000'000u);
  ASSERT_TRUE(bdev::FaultControl::clear(*tenv.reg->find("f0"), *id).is_ok());
  // The reset reconnects; I/O submitted meanwhile waits and then succeeds.
  auto w = pattern(4096, 3);
  EXPECT_EQ(do_io(henv, 1, b, IoType::kWrite, 16, 8, w.data(), w.size()), IoStatus::kSuccess);
  EXPECT_EQ(do_io(henv, 0, b, IoType::kRead, 16, 8, buf.data(), buf.size()), IoStatus::kSuccess);
  EXPECT_EQ(buf, w);
  for (int i = 0; i < 200 && nvmf_bdev_status(b)->state != ControllerState::kLive; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto st = nvmf_bdev_status(b);
  EXPECT_EQ(st->timeouts, 1u);
  EXPECT_GE(st->resets, 1u);
  EXPECT_GE(st->reconnects, 1u);
  EXPECT_EQ(st->state, ControllerState::kLive);
}

TEST_F(Fixture, IoWaitsAcrossATargetRestartAndCompletes) {
  ASSERT_TRUE(henv.reg->create(uri("&reconnect_delay_ms=20&reconnect_delay_max_ms=100")).is_ok());
  auto& b = host_bdev();
  auto w = pattern(65536, 11);
  ASSERT_EQ(do_io(henv, 0, b, IoType::kWrite, 0, 128, w.data(), w.size()), IoStatus::kSuccess);
  stop_target();
  for (int i = 0; i < 500 && nvmf_bdev_status(b)->state == ControllerState::kLive; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Issued while the target is down: parked, not failed.
  bdev::test::SyncIo s;
  std::vector<uint8_t> r(65536);
  auto f = bdev::test::start_io(henv, 1, b, s, IoType::kRead, 0, 128, r.data(), r.size());
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(nvmf_bdev_status(b)->state, ControllerState::kResetting) << nvmf_bdev_status(b)->last_error;
  start_target(port);
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(f.get(), IoStatus::kSuccess);
  EXPECT_EQ(r, w);
  // A queue re-issues its requests as soon as it is connected; the controller counts as
  // live once every queue is (a moment later).
  for (int i = 0; i < 200 && nvmf_bdev_status(b)->state != ControllerState::kLive; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(nvmf_bdev_status(b)->state, ControllerState::kLive);
  EXPECT_GE(nvmf_bdev_status(b)->reconnects, 1u);
}

TEST_F(Fixture, AControllerGoneLongerThanTheLossTimeoutFailsItsIo) {
  ASSERT_TRUE(henv.reg->create(uri("&reconnect_delay_ms=50&ctrl_loss_timeout_ms=400")).is_ok());
  auto& b = host_bdev();
  stop_target();
  std::vector<uint8_t> buf(4096);
  const uint64_t t0 = mono_ns();
  EXPECT_EQ(do_io(henv, 0, b, IoType::kRead, 0, 8, buf.data(), buf.size()), IoStatus::kIoError);
  EXPECT_LT(mono_ns() - t0, 5'000'000'000u);
  auto st = nvmf_bdev_status(b);
  EXPECT_EQ(st->state, ControllerState::kLost);
  EXPECT_FALSE(st->last_error.empty());
  // Later I/O fails at once; the bdev can still be destroyed.
  EXPECT_EQ(do_io(henv, 1, b, IoType::kWrite, 0, 8, buf.data(), buf.size()), IoStatus::kIoError);
  EXPECT_TRUE(henv.reg->destroy("r0").is_ok());
}

TEST_F(Fixture, AnAbortedReadNeverWritesIntoTheCallersBufferLater) {
  ASSERT_TRUE(henv.reg->create(uri("&reconnect_delay_ms=20")).is_ok());
  auto& b = host_bdev();
  auto w = pattern(4096, 5);
  ASSERT_EQ(do_io(henv, 0, b, IoType::kWrite, 64, 8, w.data(), w.size()), IoStatus::kSuccess);
  bdev::FaultRuleSpec hang;
  hang.mode = bdev::FaultMode::kHang;
  auto id = bdev::FaultControl::inject(*tenv.reg->find("f0"), hang);
  ASSERT_TRUE(id.is_ok());
  std::vector<uint8_t> buf(4096, 0xEE);
  bdev::test::SyncIo s;
  auto f = bdev::test::start_io(henv, 0, b, s, IoType::kRead, 64, 8, buf.data(), buf.size());
  // Aborted once it hangs in the target's bdev (not while still on its way there).
  for (int i = 0; i < 1000; ++i) {
    auto l = bdev::FaultControl::list(*tenv.reg->find("f0"));
    if (!l.empty() && l[0].parked == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(bdev::FaultControl::list(*tenv.reg->find("f0"))[0].parked, 1u)
      << "the read never reached the target";
  bool aborted = false;
  henv.group.run_on(0, [&](reactor::Reactor& rr) { aborted = s.desc.channel(rr).abort(s.req); });
  EXPECT_TRUE(aborted);
  ASSERT_EQ(f.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_EQ(f.get(), IoStatus::kAborted);
  // The target wakes up and answers: nothing may land in the returned buffer.
  ASSERT_TRUE(bdev::FaultControl::clear(*tenv.reg->find("f0"), *id).is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](uint8_t c) { return c == 0xEE; }));
  // The queue reconnected; the data is there.
  std::vector<uint8_t> again(4096);
  EXPECT_EQ(do_io(henv, 1, b, IoType::kRead, 64, 8, again.data(), again.size()), IoStatus::kSuccess);
  EXPECT_EQ(again, w);
}

TEST_F(Fixture, ATargetBackWithoutTheSubsystemCountsAsLost) {
  ASSERT_TRUE(henv.reg->create(uri("&reconnect_delay_ms=50&ctrl_loss_timeout_ms=600")).is_ok());
  auto& b = host_bdev();
  const uint16_t p = port;
  stop_target();
  target = std::make_unique<NvmfTarget>(tenv.group, *tenv.reg);
  ASSERT_TRUE(target->listen("127.0.0.1", p, &port).is_ok());
  std::vector<uint8_t> buf(4096);
  const uint64_t t0 = mono_ns();
  EXPECT_EQ(do_io(henv, 0, b, IoType::kRead, 0, 8, buf.data(), buf.size()), IoStatus::kIoError);
  EXPECT_LT(mono_ns() - t0, 5'000'000'000u);
  auto st = nvmf_bdev_status(b);
  EXPECT_EQ(st->state, ControllerState::kLost);
  EXPECT_NE(st->last_error.find("refused"), std::string::npos) << st->last_error;
}

// The namespace grows under the host (a pool replica resized online): the target's
// notice (an Async Event) makes the host identify it again and take the new size, I/O
// past the old end works; refresh_size() identifies it again on demand.
TEST_F(Fixture, TheHostLearnsAGrownNamespaceFromTheNoticeOrWhenAsked) {
  constexpr char kGrowNqn[] = "nqn.2026-11.io.castor:replica-grow";
  pool::PoolManager pools(*tenv.reg);
  testing::make_small_pool(pools, 64, "gr", 8 << 20);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(target->add_subsystem(kGrowNqn, {}).is_ok());
  ASSERT_TRUE(target->add_namespace(kGrowNqn, "gr").is_ok());
  auto info = henv.reg->create(fmt::format("nvmf://127.0.0.1:{}/{}?name=g0", port, kGrowNqn));
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  auto& b = *henv.reg->find("g0");
  auto& tb = *tenv.reg->find("gr");
  const uint32_t bs = b.block_size();
  const uint64_t old_blocks = (8u << 20) / bs, new_blocks = (16u << 20) / bs;
  ASSERT_EQ(b.num_blocks(), old_blocks);

  ASSERT_TRUE(pools.grow_replica("gr", 16 << 20));
  EXPECT_EQ(b.num_blocks(), old_blocks) << "no notice yet";
  EXPECT_EQ(nvmf_bdev_status(b)->events, 0u);
  EXPECT_EQ(target->announce_resize("gr"), 1u);
  for (int i = 0; i < 2500 && b.num_blocks() != new_blocks; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(b.num_blocks(), new_blocks)
      << "the notice made the host identify the namespace again: " << b.num_blocks();
  EXPECT_EQ(nvmf_bdev_status(b)->events, 1u);

  // Past the old end, from both reactors, lands on the target's bdev.
  auto w = pattern(64 * 1024, 21);
  const uint64_t lba = old_blocks + 16;
  ASSERT_EQ(do_io(henv, 1, b, IoType::kWrite, lba, w.size() / bs, w.data(), w.size()), IoStatus::kSuccess);
  std::vector<uint8_t> r(w.size()), t(w.size());
  ASSERT_EQ(do_io(henv, 0, b, IoType::kRead, lba, r.size() / bs, r.data(), r.size()), IoStatus::kSuccess);
  EXPECT_EQ(r, w);
  ASSERT_EQ(do_io(tenv, 0, tb, IoType::kRead, lba, t.size() / bs, t.data(), t.size()), IoStatus::kSuccess);
  EXPECT_EQ(t, w);
  std::vector<uint8_t> one(bs);
  EXPECT_EQ(do_io(henv, 0, b, IoType::kWrite, new_blocks - 1, 1, one.data(), bs), IoStatus::kSuccess);
  EXPECT_EQ(do_io(henv, 0, b, IoType::kWrite, new_blocks, 1, one.data(), bs), IoStatus::kInvalid);

  // Grown again without a notice: refresh_size() asks.
  ASSERT_TRUE(pools.grow_replica("gr", 24 << 20));
  EXPECT_EQ(b.num_blocks(), new_blocks);
  auto n = b.refresh_size();
  ASSERT_TRUE(n) << n.status().to_string();
  EXPECT_EQ(*n, (24u << 20) / bs);
  EXPECT_EQ(b.num_blocks(), (24u << 20) / bs);
  EXPECT_EQ(nvmf_bdev_status(b)->events, 1u);

  ASSERT_TRUE(henv.reg->destroy("g0").is_ok());
  ASSERT_TRUE(target->remove_subsystem(kGrowNqn, true).is_ok());
}

// Two hosts (two nvmf bdevs with different host identifiers) on one namespace: the
// reservation of one fences the other's writes, a preempt moves it, and the target's
// bdev table is what both see.
TEST_F(Fixture, ReservationsFromTwoHostsFenceEachOther) {
  using A = bdev::ReservationAction;
  using T = bdev::ReservationType;
  const std::string ida = "5c000000-0000-4000-8000-0000000000a1", idb = "5c000000-0000-4000-8000-0000000000b2";
  auto make = [&](const char* name, const std::string& id) {
    auto info = henv.reg->create(fmt::format("nvmf://127.0.0.1:{}/{}?name={}&hostid={}", port, kNqn, name, id));
    EXPECT_TRUE(info.is_ok()) << info.status().to_string();
    return henv.reg->find(name);
  };
  auto a = make("ra", ida), b = make("rb", idb);
  ASSERT_TRUE(a && b);
  const bdev::HostId ha = *nvmf_bdev_host_id(*a), hb = *nvmf_bdev_host_id(*b);
  EXPECT_EQ(ha.to_string(), ida);
  EXPECT_EQ(hb.to_string(), idb);

  bdev::ReservationCommand reg;
  reg.action = A::kRegister;
  reg.nrkey = 0xa;
  // Only as the connection's own host.
  EXPECT_EQ(a->reservation(hb, reg).code(), Errc::kInvalidArgument);
  ASSERT_TRUE(a->reservation(ha, reg));
  bdev::ReservationCommand acq;
  acq.action = A::kAcquire;
  acq.type = T::kWriteExclusive;
  acq.crkey = 0xa;
  bdev::ReservationReport rep;
  ASSERT_TRUE(a->reservation(ha, acq, &rep));
  EXPECT_EQ(rep.type, T::kWriteExclusive);
  ASSERT_TRUE(rep.holder);
  EXPECT_EQ(*rep.holder, ha);

  auto w = pattern(4096, 5);
  std::vector<uint8_t> r(4096);
  EXPECT_EQ(do_io(henv, 0, *b, IoType::kWrite, 0, 8, w.data(), w.size()), IoStatus::kReservationConflict);
  EXPECT_EQ(do_io(henv, 1, *b, IoType::kWriteZeroes, 0, 8, nullptr, 0), IoStatus::kReservationConflict);
  EXPECT_EQ(do_io(henv, 0, *b, IoType::kRead, 0, 8, r.data(), r.size()), IoStatus::kSuccess);
  EXPECT_EQ(do_io(henv, 1, *a, IoType::kWrite, 0, 8, w.data(), w.size()), IoStatus::kSuccess);
  EXPECT_EQ(nvmf_bdev_status(*b)->resets, 0u) << "a conflict is an answer, not a path failure";

  // B registers and cannot take it; it preempts A's key instead.
  reg.nrkey = 0xb;
  ASSERT_TRUE(b->reservation(hb, reg));
  acq.crkey = 0xb;
  Status st = b->reservation(hb, acq);
  EXPECT_EQ(st.code(), Errc::kBusy);
  EXPECT_EQ(st.message().rfind("reservation conflict", 0), 0u) << st.to_string();
  bdev::ReservationCommand pre = acq;
  pre.action = A::kPreempt;
  pre.prkey = 0xa;
  ASSERT_TRUE(b->reservation(hb, pre, &rep));
  EXPECT_EQ(*rep.holder, hb);
  ASSERT_EQ(rep.registrants.size(), 1u);
  EXPECT_EQ(rep.registrants[0].host, hb);
  EXPECT_EQ(rep.registrants[0].key, 0xbu);
  EXPECT_TRUE(rep.registrants[0].holder);

  // A is fenced: its writes conflict (reads pass: Write Exclusive), it cannot re-take.
  EXPECT_EQ(do_io(henv, 0, *a, IoType::kWrite, 0, 8, w.data(), w.size()), IoStatus::kReservationConflict);
  EXPECT_EQ(do_io(henv, 0, *a, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kReservationConflict);
  EXPECT_EQ(do_io(henv, 1, *a, IoType::kRead, 0, 8, r.data(), r.size()), IoStatus::kSuccess);
  EXPECT_EQ(r, w);
  EXPECT_EQ(do_io(henv, 0, *b, IoType::kWrite, 0, 8, w.data(), w.size()), IoStatus::kSuccess);
  acq.crkey = 0xa;
  EXPECT_EQ(a->reservation(ha, acq).code(), Errc::kBusy);

  // A's report is the target bdev's table.
  bdev::ReservationCommand report;
  ASSERT_TRUE(a->reservation(ha, report, &rep));
  const auto tr = tenv.reg->find("f0")->reservations().report();
  EXPECT_EQ(rep.generation, tr.generation);
  EXPECT_EQ(rep.generation, 3u);  // two registers, one preempt
  EXPECT_EQ(rep.type, tr.type);
  ASSERT_EQ(tr.registrants.size(), 1u);
  EXPECT_EQ(tr.registrants[0].host, hb);

  // An invalid field is InvalidArgument and changes nothing.
  bdev::ReservationCommand bad;
  bad.action = A::kRelease;
  bad.type = T::kExclusiveAccess;
  bad.crkey = 0xb;
  EXPECT_EQ(b->reservation(hb, bad).code(), Errc::kInvalidArgument);
  bdev::ReservationCommand clear;
  clear.action = A::kClear;
  clear.crkey = 0xb;
  ASSERT_TRUE(b->reservation(hb, clear, &rep));
  EXPECT_TRUE(rep.registrants.empty());
  EXPECT_EQ(do_io(henv, 0, *a, IoType::kWrite, 0, 8, w.data(), w.size()), IoStatus::kSuccess);
}

TEST(NvmfHostOptions, HostIdIsGivenOrDerivedStablyFromTheHostNqn) {
  auto opts = [](const std::string& q) { return NvmfHostOptions::from_uri(*Uri::parse("nvmf://h/nqn.x:y?" + q)); };
  auto o = opts("hostnqn=nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->host_id().to_string(), "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  o = opts("hostnqn=nqn.2026-11.io.castor:engine-7");
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->host_id(), opts("hostnqn=nqn.2026-11.io.castor:engine-7")->host_id());
  EXPECT_NE(o->host_id(), opts("hostnqn=nqn.2026-11.io.castor:engine-8")->host_id());
  EXPECT_FALSE(o->host_id().is_zero());
  EXPECT_FALSE(NvmfHostOptions{}.host_id().is_zero());
  o = opts("hostnqn=nqn.2026-11.io.castor:engine-7&hostid=1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  ASSERT_TRUE(o.is_ok());
  EXPECT_EQ(o->host_id().to_string(), "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  EXPECT_EQ(opts("hostid=nope").status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(opts("hostid=00000000-0000-0000-0000-000000000000").status().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace castor::nvmf
