// Nexus data path, states, reconfiguration, faults and the health store.
#include <fstream>
#include <future>
#include <sstream>
#include <tuple>

#include "common/clock.h"
#include "nexus_harness.h"

namespace castor::nexus::test {
namespace {

using bdev::FaultControl;
using bdev::FaultMode;

uint64_t read_ops(NexEnv& e, const std::string& name) {
  auto s = e.reg->stats(name);
  return s ? s->per_type[static_cast<int>(IoType::kRead)].ops : 0;
}

IoStatus write_block(NexEnv& e, Bdev& b, uint64_t lba, uint8_t v, size_t r = 0,
                     uint64_t* lat = nullptr) {
  DmaBuffer buf(b.block_size());
  std::memset(buf.data(), v, b.block_size());
  return do_io(e, r, b, IoType::kWrite, lba, 1, buf.data(), b.block_size(), lat);
}

// A stand-in for a remote replica: module "nvmf", forwards to a local bdev.
class SimRemoteBdev final : public Bdev {
 public:
  SimRemoteBdev(const std::string& name, std::shared_ptr<Bdev> base)
      : Bdev(name, "nvmf", base->block_size(), base->num_blocks()), base_(std::move(base)) {
    set_supported_ops(0x3f);
  }
  class Ch final : public bdev::BdevChannel {
   public:
    Ch(SimRemoteBdev& b, reactor::Reactor& r) : BdevChannel(b, r), base_(b.base_desc_.channel(r)) {}
    void done(IoRequest& p, IoStatus s) { complete_now(p, s); }

   protected:
    void do_submit(IoRequest& req) override {
      struct Fwd {
        IoRequest io;
        IoRequest* parent;
        Ch* ch;
      };
      auto* f = new Fwd{};
      f->parent = &req;
      f->ch = this;
      f->io.type = req.type;
      f->io.offset_blocks = req.offset_blocks;
      f->io.num_blocks = req.num_blocks;
      f->io.iovs = req.iovs;
      f->io.iovcnt = req.iovcnt;
      f->io.cb_arg = f;
      f->io.cb = [](IoRequest& io, void* arg) {
        auto* fw = static_cast<Fwd*>(arg);
        fw->ch->done(*fw->parent, io.status);
        delete fw;
      };
      base_.submit(f->io);
    }

   private:
    bdev::BdevChannel& base_;
  };

 protected:
  std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor& r) override {
    return std::make_unique<Ch>(*this, r);
  }

 private:
  std::shared_ptr<Bdev> base_;
  bdev::BdevDesc base_desc_{base_.get()};  // its channels forward to the base
};

TEST(Nexus, CreateValidatesAndReportsInfo) {
  NexEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///small?size_mb=4"));
  ASSERT_TRUE(e.reg->create("malloc:///b512?size_mb=8&blk_size=512"));
  // Size 0 = the smallest child.
  auto info = e.mgr->create("n0", 0, {"malloc:///a?size_mb=8", "bdev:///small"});
  ASSERT_TRUE(info) << info.status().to_string();
  EXPECT_EQ(info->size_bytes, 4u << 20);
  EXPECT_EQ(info->state, NexusState::kOnline);
  ASSERT_EQ(info->children.size(), 2u);
  EXPECT_EQ(info->children[0].state, ChildState::kHealthy);
  EXPECT_EQ(e.reg->info("small")->claimed_by, "nexus:n0");
  EXPECT_EQ(e.reg->info("n0")->module, "nexus");
  EXPECT_EQ(e.reg->info("n0")->uri, "nexus:///n0");
  // Duplicates, block-size mismatch, too large, too many children, stale options.
  EXPECT_EQ(e.mgr->create("n0", 0, {"malloc:///x?size_mb=8"}).status().code(), Errc::kAlreadyExists);
  EXPECT_EQ(e.mgr->create("n1", 0, {"malloc:///y?size_mb=8", "bdev:///b512"}).status().code(),
            Errc::kInvalidArgument);
  EXPECT_FALSE(e.reg->find("y")) << "a failed create leaves nothing behind";
  EXPECT_EQ(e.mgr->create("n2", 16u << 20, {"malloc:///z?size_mb=8"}).status().code(),
            Errc::kInvalidArgument);
  std::vector<std::string> nine;
  for (int i = 0; i < 9; ++i) nine.push_back(fmt::format("malloc:///k{}?size_mb=1", i));
  auto r9 = e.mgr->create("n3", 0, nine);
  EXPECT_EQ(r9.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(r9.status().message().find("limit"), std::string::npos);
  EXPECT_EQ(e.mgr->create("n4", 0, {"bdev:///small"}).status().code(), Errc::kBusy);  // claimed
  EXPECT_FALSE(NexusOptions::from_map({{"read_policy", "fastest"}}));
  EXPECT_TRUE(NexusOptions::from_map({{"read_policy", "round_robin"}, {"max_errors", "3"}}));
  auto busy = NexusOptions::from_map({{"busy_rate_mb_s", "50"}, {"rate_mb_s", "400"}});
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->rebuild.busy_rate_mb_s, 50u);
  EXPECT_EQ(busy->rebuild.rate_mb_s, 400u);
  EXPECT_FALSE(NexusOptions::from_map({{"busy_rate_mb_s", "fast"}}));
  // Destroy releases the claim and destroys owned children only.
  ASSERT_TRUE(e.mgr->destroy("n0"));
  EXPECT_FALSE(e.reg->find("a"));
  EXPECT_TRUE(e.reg->find("small"));
  EXPECT_EQ(e.reg->info("small")->claimed_by, "");
  EXPECT_FALSE(e.reg->find("n0"));
}

TEST(Nexus, WritesReachAllChildrenUnderWorkload) {
  NexEnv e;
  auto n = e.make("n0", {"malloc:///a?size_mb=8", "malloc:///b?size_mb=8", "malloc:///c?size_mb=8"});
  ASSERT_TRUE(n);
  Workload w(e, *n);
  w.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  w.finish();
  EXPECT_GT(w.ops.load(), 100u);
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  // Unmap and write-zeroes and flush also fan out.
  ASSERT_EQ(do_io(e, 1, *n, IoType::kWriteZeroes, 100, 8, nullptr, 0), IoStatus::kSuccess);
  for (uint64_t i = 100; i < 108; ++i) w.gen[i] = 0;
  ASSERT_EQ(do_io(e, 0, *n, IoType::kUnmap, 200, 4, nullptr, 0), IoStatus::kSuccess);
  for (uint64_t i = 200; i < 204; ++i) w.gen[i] = 0;
  ASSERT_EQ(do_io(e, 0, *n, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
  EXPECT_EQ(w.verify_all(), 0u);
  expect_equal(e, {"a", "b", "c"}, n->num_blocks());
  EXPECT_EQ(n->state(), NexusState::kOnline);
  // The per-I/O contexts were reused: the invalid request is rejected like any bdev's.
  EXPECT_EQ(do_io(e, 0, *n, IoType::kRead, n->num_blocks(), 1, nullptr, 0), IoStatus::kInvalid);
}

TEST(InflightWrites, OverlappingRangesConflictAndAFailedMarkLeavesNothing) {
  InflightWrites m(512, 64 * 8);  // 64 units of 4 KiB: 8 blocks of 512 bytes per unit
  EXPECT_EQ(m.bits(), 64u);
  ASSERT_TRUE(m.try_mark(0, 8));     // unit 0
  EXPECT_FALSE(m.try_mark(7, 2));    // units 0-1: unit 0 is taken
  EXPECT_TRUE(m.try_mark(8, 8));     // unit 1: nothing of the failed call stayed marked
  EXPECT_FALSE(m.try_mark(3, 1));    // same unit, another block: held too
  m.unmark(0, 8);
  EXPECT_TRUE(m.try_mark(3, 1));
  m.unmark(3, 1);
  m.unmark(8, 8);
  // A range wrapping around the table (units 60..67 use bits 60..63 and 0..3), then a
  // unit 64 apart shares a bit: held, never let through.
  ASSERT_TRUE(m.try_mark(60 * 8, 64));
  EXPECT_FALSE(m.try_mark(2 * 8, 1));
  EXPECT_FALSE(m.try_mark(128 * 8, 1));
  EXPECT_TRUE(m.try_mark(10 * 8, 8));
  m.unmark(60 * 8, 64);
  m.unmark(10 * 8, 8);
  // A range longer than the table covers all of it.
  ASSERT_TRUE(m.try_mark(0, 1000 * 8));
  EXPECT_FALSE(m.try_mark(33 * 8, 1));
  m.unmark(0, 1000 * 8);
  EXPECT_TRUE(m.try_mark(33 * 8, 1));
  // 4 KiB blocks: one block per unit; the table is capped at 4 GiB of units.
  InflightWrites big(4096, uint64_t{1} << 30);
  EXPECT_EQ(big.bits(), InflightWrites::kMaxBits);
  ASSERT_TRUE(big.try_mark(5, 1));
  EXPECT_TRUE(big.try_mark(6, 200));  // spans words
  EXPECT_FALSE(big.try_mark(100, 1));
  EXPECT_FALSE(big.try_mark(5 + InflightWrites::kMaxBits, 1));
}

// Overlapping writes in flight at once, from both reactors and from one, while one child
// delays half of its writes (so it would take them in another order than the other
// child): both children end equal, and every block holds what the last of its writes
// left. With serialize_overlaps=false the children end different here.
TEST(Nexus, OverlappingWritesReachEveryChildInOneOrder) {
  NexEnv e;
  auto a = e.fault_child("oa", 4);
  auto b = e.fault_child("ob", 4);
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///" + b});
  ASSERT_TRUE(n);
  bdev::FaultRuleSpec slow = fault_spec(bdev::FaultMode::kDelay, kW);
  slow.delay_us = 300;
  slow.probability = 0.5;
  ASSERT_TRUE(bdev::FaultControl::inject(e.bdev(b), slow));
  Workload w(e, *n);
  w.hot = 32;
  w.start(4);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  w.finish();
  ASSERT_TRUE(bdev::FaultControl::clear(e.bdev(b), 0));
  EXPECT_GT(w.hot_writes.load(), 200u);
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  EXPECT_EQ(w.verify_all(), 0u);
  expect_equal(e, {"oa", "ob"}, n->num_blocks());
}

TEST(Nexus, ReadsPreferLocalChild) {
  NexEnv e;
  ASSERT_TRUE(e.reg->create("malloc:///mr?size_mb=4"));
  ASSERT_TRUE(e.reg->create("malloc:///ml?size_mb=4"));
  ASSERT_TRUE(e.reg->add(std::make_shared<SimRemoteBdev>("r0", e.reg->find("mr")),
                         "nvmf://127.0.0.1:8420/nqn.test:r0"));
  auto n = e.make("n0", {"bdev:///r0", "bdev:///ml"});
  ASSERT_TRUE(n);
  EXPECT_FALSE(child(n->describe(), "bdev:///r0")->local);
  DmaBuffer b(4096);
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(do_io(e, i % 2, *n, IoType::kRead, i, 1, b.data(), 4096), IoStatus::kSuccess);
  }
  EXPECT_EQ(read_ops(e, "ml"), 50u);
  EXPECT_EQ(read_ops(e, "r0"), 0u);
  // The remote one still gets every write.
  ASSERT_EQ(write_block(e, *n, 3, 0x5a), IoStatus::kSuccess);
  DmaBuffer r(4096);
  ASSERT_EQ(do_io(e, 0, e.bdev("r0"), IoType::kRead, 3, 1, r.data(), 4096), IoStatus::kSuccess);
  EXPECT_EQ(r.data()[0], 0x5a);
}

TEST(Nexus, ReadsGoToLeastBusyChildAndRoundRobin) {
  NexEnv e;
  auto slow = e.fault_child("s", 4);
  auto fast = e.fault_child("q", 4);
  auto n = e.make("n0", {"bdev:///" + slow, "bdev:///" + fast});
  ASSERT_TRUE(n);
  auto spec = fault_spec(FaultMode::kDelay, kR);
  spec.delay_us = 20'000;
  ASSERT_TRUE(FaultControl::inject(e.bdev(slow), spec));
  Workload w(e, *n);
  w.start(4);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  w.finish();
  EXPECT_EQ(w.errors.load(), 0u);
  uint64_t s = read_ops(e, slow), f = read_ops(e, fast);
  EXPECT_GT(f, 50u);
  EXPECT_LT(s * 5, f) << "slow=" << s << " fast=" << f;
  ASSERT_TRUE(e.mgr->destroy("n0"));

  NexusOptions o;
  o.read_policy = ReadPolicy::kRoundRobin;
  auto n2 = e.make("n1", {"bdev:///" + slow, "bdev:///" + fast}, o);
  ASSERT_TRUE(FaultControl::clear(e.bdev(slow), 0));
  uint64_t s0 = read_ops(e, slow), f0 = read_ops(e, fast);
  DmaBuffer b(4096);
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(do_io(e, 0, *n2, IoType::kRead, i, 1, b.data(), 4096), IoStatus::kSuccess);
  }
  EXPECT_EQ(read_ops(e, slow) - s0, 20u);
  EXPECT_EQ(read_ops(e, fast) - f0, 20u);
}

TEST(Nexus, ReconfigureUnderWorkload) {
  NexEnv e;
  auto n = e.make("n0", {"malloc:///a?size_mb=8", "malloc:///b?size_mb=8"});
  ASSERT_TRUE(n);
  Workload w(e, *n);
  w.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(n->offline_child("malloc:///b?size_mb=8"));
  EXPECT_EQ(n->state(), NexusState::kDegraded);
  EXPECT_EQ(n->offline_child("malloc:///a?size_mb=8").code(), Errc::kBusy);  // last healthy
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(n->add_child("malloc:///c?size_mb=8"));
  ASSERT_TRUE(n->wait_rebuild("malloc:///c?size_mb=8", 10000));
  ASSERT_TRUE(n->fault_child("malloc:///a?size_mb=8"));
  EXPECT_EQ(child(n->describe(), "malloc:///a?size_mb=8")->reason, FaultReason::kByRequest);
  ASSERT_TRUE(n->remove_child("malloc:///a?size_mb=8"));
  EXPECT_FALSE(e.reg->find("a"));
  ASSERT_TRUE(n->online_child("malloc:///b?size_mb=8"));
  ASSERT_TRUE(n->wait_rebuild("malloc:///b?size_mb=8", 10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  w.finish();
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  EXPECT_EQ(n->state(), NexusState::kOnline);
  EXPECT_EQ(w.verify_all(), 0u);
  expect_equal(e, {"b", "c"}, n->num_blocks());
  EXPECT_EQ(n->remove_child("nope").code(), Errc::kNotFound);
}

// A nexus whose children take any buffer (remote nvmf:// replicas, RAM) still takes a
// child that needs aligned ones (a local replica: direct I/O). castor-control puts a lost
// replica's replacement on the nexus's node when that node holds none, and a nexus
// published on a node without a replica (the application's) refused it for good ("needs
// buffer alignment 512 (the nexus has 1)"): the volume never healed (found by
// control_fault_schedules). A nexus asks for buffers aligned to its block size at least.
TEST(Nexus, AChildThatNeedsAlignedBuffersJoinsChildrenThatDoNot) {
  NexEnv e;
  auto n = e.make("n0", {"malloc:///a?size_mb=8", "malloc:///b?size_mb=8"});
  ASSERT_TRUE(n);
  ASSERT_EQ(e.bdev("a").buf_align(), 1u);
  const std::string file = "file://" + e.path("c.img") + "?size_mb=8&direct=1";
  ASSERT_TRUE(e.reg->create(file));
  ASSERT_GT(e.bdev("c.img").buf_align(), 1u);  // direct I/O
  ASSERT_TRUE(e.reg->destroy("c.img"));
  Workload w(e, *n);
  w.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto added = n->add_child(file);
  ASSERT_TRUE(added) << added.to_string();
  ASSERT_TRUE(n->wait_rebuild(file, 10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  w.finish();
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  EXPECT_EQ(n->state(), NexusState::kOnline);
  EXPECT_EQ(w.verify_all(), 0u);
  expect_equal(e, {"a", "b", "c.img"}, n->num_blocks());
}

// A wrapper that delays every store write and notes when the last one became durable.
class SlowFileStore : public FileChildHealthStore {
 public:
  using FileChildHealthStore::FileChildHealthStore;
  std::atomic<uint64_t> last_durable_ns{0};

 protected:
  Status replace(const std::string& n, const NexusHealth& r) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    auto st = FileChildHealthStore::replace(n, r);
    last_durable_ns = mono_ns();
    return st;
  }
};

TEST(Nexus, ChildErrorIsRetiredAndRecordedBeforeCompletion) {
  bdev::test::Env base;
  SlowFileStore store(base.dir / "health");
  auto m = std::make_unique<NexusManager>(*base.reg, store);
  ASSERT_TRUE(base.reg->create("malloc:///a?size_mb=8"));
  ASSERT_TRUE(base.reg->create("malloc:///b?size_mb=8"));
  ASSERT_TRUE(base.reg->create("malloc:///c?size_mb=8"));
  ASSERT_TRUE(base.reg->create("fault:///fb?base=b"));
  ASSERT_TRUE(m->create("n0", 0, {"bdev:///a", "bdev:///fb", "bdev:///c"}));
  auto n = m->find("n0");
  auto& fb = *base.reg->find("fb");
  ASSERT_TRUE(FaultControl::inject(fb, fault_spec(FaultMode::kError, kRW)));
  DmaBuffer buf(4096);
  std::memset(buf.data(), 0x11, 4096);
  uint64_t lat = 0;
  ASSERT_EQ(do_io(base, 0, *n, IoType::kWrite, 7, 1, buf.data(), 4096, &lat), IoStatus::kSuccess);
  uint64_t completed = mono_ns();
  EXPECT_GE(lat, 150'000'000u) << "the write waited for the record";
  EXPECT_LE(store.last_durable_ns.load(), completed);
  // The file says so, as a fresh reader sees it.
  FileChildHealthStore reader(base.dir / "health");
  auto recs = reader.load("n0");
  ASSERT_TRUE(recs);
  ASSERT_TRUE(recs->children.count("bdev:///fb"));
  EXPECT_FALSE(recs->children.at("bdev:///fb").healthy);
  EXPECT_EQ(recs->children.at("bdev:///fb").reason, "io_error");
  auto ci = child(n->describe(), "bdev:///fb");
  EXPECT_EQ(ci->state, ChildState::kFaulted);
  EXPECT_EQ(ci->reason, FaultReason::kIoError);
  EXPECT_GE(ci->write_errors, 1u);
  EXPECT_EQ(n->state(), NexusState::kDegraded);
  ASSERT_TRUE(m->destroy("n0"));
  m.reset();
}

TEST(Nexus, InjectedErrorDuringVerifyingWorkload) {
  NexEnv e(true);
  auto a = e.fault_child("a"), b = e.fault_child("b"), c = e.fault_child("c");
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///" + b, "bdev:///" + c});
  ASSERT_TRUE(n);
  Workload w(e, *n);
  w.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  uint64_t before = w.ops.load();
  auto spec = fault_spec(FaultMode::kError, kRW);
  spec.probability = 0.5;
  ASSERT_TRUE(FaultControl::inject(e.bdev(b), spec));
  ASSERT_TRUE(wait_until([&] { return n->state() == NexusState::kDegraded; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  w.finish();
  EXPECT_GT(w.ops.load(), before + 50);
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  EXPECT_EQ(w.verify_all(), 0u);
  auto ci = child(n->describe(), "bdev:///" + b);
  EXPECT_EQ(ci->state, ChildState::kFaulted);
  EXPECT_EQ(ci->reason, FaultReason::kIoError);
  auto recs = e.store->load("n0");
  ASSERT_TRUE(recs);
  EXPECT_FALSE(recs->children.at("bdev:///" + b).healthy);
  expect_equal(e, {"a", "c"}, n->num_blocks());
}

TEST(Nexus, HungChildTimesOutAndLateCompletionsAreIgnored) {
  NexEnv e;
  auto a = e.fault_child("a"), b = e.fault_child("b");
  NexusOptions o;
  o.child_io_timeout_ms = 150;
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///" + b}, o);
  ASSERT_TRUE(n);
  Workload w(e, *n);
  w.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto hang = FaultControl::inject(e.bdev(b), fault_spec(FaultMode::kHang, kRW));
  ASSERT_TRUE(hang);
  ASSERT_TRUE(wait_until([&] { return n->state() == NexusState::kDegraded; }));
  uint64_t mid = w.ops.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_GT(w.ops.load(), mid + 50) << "a hung child must not hang the nexus";
  auto ci = child(n->describe(), "bdev:///" + b);
  EXPECT_EQ(ci->state, ChildState::kFaulted);
  EXPECT_EQ(ci->reason, FaultReason::kTimedOut);
  EXPECT_GE(ci->timeouts, 1u);
  EXPECT_TRUE(ci->has_log);
  EXPECT_GT(FaultControl::list(e.bdev(b))[0].parked, 0u);
  // Releasing the hang delivers the late completions, which are ignored.
  ASSERT_TRUE(FaultControl::clear(e.bdev(b), 0));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  w.finish();
  EXPECT_EQ(w.errors.load(), 0u);
  EXPECT_EQ(w.mismatches.load(), 0u);
  EXPECT_EQ(w.verify_all(), 0u);
  // The timed-out child comes back with a partial rebuild of its logged segments.
  uint64_t missed = child(n->describe(), "bdev:///" + b)->missed_segments;
  EXPECT_GT(missed, 0u);
  ASSERT_TRUE(n->online_child("bdev:///" + b));
  auto ri = n->wait_rebuild("bdev:///" + b, 10000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_TRUE(ri->partial);
  EXPECT_EQ(ri->segments_done, missed);
  expect_equal(e, {"a", "b"}, n->num_blocks());
  EXPECT_EQ(n->state(), NexusState::kOnline);
}

// Like an io_uring read already in the kernel: the destination address is taken at
// submit, and a "hung" read writes there when the device wakes up (release()), whatever
// the request's iovecs say by then. Reads that do not hang return 0xAB; writes succeed.
class LateDmaBdev final : public Bdev {
 public:
  LateDmaBdev(const std::string& name, uint32_t bs, uint64_t blocks) : Bdev(name, "late", bs, blocks) {
    set_supported_ops(0x3f);
  }
  std::atomic<bool> hang{false};
  std::atomic<int> parked{0};
  class Ch final : public bdev::BdevChannel {
   public:
    Ch(LateDmaBdev& b, reactor::Reactor& r) : BdevChannel(b, r), b_(b) {}
    void release() {
      for (auto& [req, dst, len] : parked_) {
        std::memset(dst, 0xEE, len);  // the late "DMA", to the address captured at submit
        complete_now(*req, IoStatus::kSuccess);
      }
      parked_.clear();
    }

   protected:
    void do_submit(IoRequest& req) override {
      if (req.type == IoType::kRead && req.iovcnt > 0) {
        auto* dst = static_cast<uint8_t*>(req.iovs[0].iov_base);
        if (b_.hang.load()) {
          parked_.push_back({&req, dst, req.iovs[0].iov_len});
          b_.parked.fetch_add(1);
          return;
        }
        for (int i = 0; i < req.iovcnt; ++i) std::memset(req.iovs[i].iov_base, 0xAB, req.iovs[i].iov_len);
      }
      complete(req, IoStatus::kSuccess);
    }

   private:
    LateDmaBdev& b_;
    std::vector<std::tuple<IoRequest*, uint8_t*, size_t>> parked_;
  };

 protected:
  std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor& r) override {
    return std::make_unique<Ch>(*this, r);
  }
};

// A child whose module can write into a read's buffer after the nexus gave up on it is
// read through the nexus's bounce buffer: the late data must never reach the buffer the
// application already got back (and may be using for something else).
TEST(Nexus, LateReadFromATimedOutChildNeverReachesTheCallersBuffer) {
  NexEnv e;
  auto a = e.fault_child("a");
  auto late = std::make_shared<LateDmaBdev>("late0", e.bdev(a).block_size(), e.bdev(a).num_blocks());
  ASSERT_TRUE(e.reg->add(late, "late:///late0"));
  NexusOptions o;
  o.child_io_timeout_ms = 100;
  o.read_policy = ReadPolicy::kRoundRobin;
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///late0"}, o);
  ASSERT_TRUE(n);
  ASSERT_EQ(write_block(e, *n, 0, 0xAB), IoStatus::kSuccess);
  late->hang = true;
  const uint32_t bs = n->block_size();
  std::vector<DmaBuffer> bufs;
  for (int i = 0; i < 4; ++i) {
    bufs.emplace_back(bs);
    ASSERT_EQ(do_io(e, 0, *n, IoType::kRead, 0, 1, bufs.back().data(), bs), IoStatus::kSuccess);
    EXPECT_EQ(bufs.back().data()[0], 0xAB);
    EXPECT_EQ(bufs.back().data()[bs - 1], 0xAB);
    std::memset(bufs.back().data(), 0x5A, bs);  // the caller reuses its buffer
  }
  ASSERT_GE(child(n->describe(), "bdev:///late0")->timeouts, 1u) << "no read went to the hung child";
  ASSERT_GT(late->parked.load(), 0);
  // The device wakes up and "DMAs" the parked reads.
  std::promise<void> done;
  e.group.at(0).send([&] {
    static_cast<LateDmaBdev::Ch&>(*late->existing_channel(0)).release();
    done.set_value();
  });
  done.get_future().wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (auto& buf : bufs) {
    for (uint32_t i = 0; i < bs; ++i) ASSERT_EQ(buf.data()[i], 0x5A) << "late read landed at byte " << i;
  }
  ASSERT_TRUE(n->remove_child("bdev:///late0"));
}

TEST(Nexus, AllChildrenFailingGivesTheApplicationAnError) {
  NexEnv e;
  auto a = e.fault_child("a"), b = e.fault_child("b");
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///" + b});
  ASSERT_TRUE(n);
  ASSERT_EQ(write_block(e, *n, 1, 1), IoStatus::kSuccess);
  ASSERT_TRUE(FaultControl::inject(e.bdev(a), fault_spec(FaultMode::kError, kRW)));
  ASSERT_TRUE(FaultControl::inject(e.bdev(b), fault_spec(FaultMode::kError, kRW)));
  EXPECT_EQ(write_block(e, *n, 1, 2), IoStatus::kIoError);
  EXPECT_EQ(n->state(), NexusState::kFaulted);
  DmaBuffer buf(4096);
  EXPECT_EQ(do_io(e, 1, *n, IoType::kRead, 1, 1, buf.data(), 4096), IoStatus::kIoError);
  EXPECT_EQ(write_block(e, *n, 2, 2, 1), IoStatus::kIoError);
  // Both are recorded, so a re-create refuses without force.
  ASSERT_TRUE(FaultControl::clear(e.bdev(a), 0));
  ASSERT_TRUE(FaultControl::clear(e.bdev(b), 0));
  ASSERT_TRUE(e.mgr->destroy("n0"));
  auto again = e.mgr->create("n0", 0, {"bdev:///" + a, "bdev:///" + b});
  EXPECT_EQ(again.status().code(), Errc::kBusy);
  EXPECT_NE(again.status().message().find("force"), std::string::npos);
}

TEST(Nexus, ReadErrorIsRetriedOnAnotherChild) {
  NexEnv e;
  auto a = e.fault_child("a"), b = e.fault_child("b");
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///" + b});
  ASSERT_TRUE(n);
  ASSERT_EQ(write_block(e, *n, 5, 0x77), IoStatus::kSuccess);
  ASSERT_TRUE(FaultControl::inject(e.bdev(a), fault_spec(FaultMode::kError, kR)));
  ASSERT_TRUE(FaultControl::inject(e.bdev(b), fault_spec(FaultMode::kError, kR)));
  ASSERT_TRUE(FaultControl::clear(e.bdev(b), 0));
  DmaBuffer buf(4096);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(do_io(e, 0, *n, IoType::kRead, 5, 1, buf.data(), 4096), IoStatus::kSuccess);
    EXPECT_EQ(buf.data()[0], 0x77);
  }
  EXPECT_EQ(child(n->describe(), "bdev:///" + a)->state, ChildState::kFaulted);
}

TEST(Nexus, WindowPolicyToleratesErrorsThenRetires) {
  NexEnv e;
  auto a = e.fault_child("a"), b = e.fault_child("b");
  NexusOptions o;
  o.error_policy = ErrorPolicy::kWindow;
  o.max_errors = 3;
  o.error_window_ms = 60000;
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///" + b}, o);
  ASSERT_TRUE(n);
  auto spec = fault_spec(FaultMode::kError, kW);
  spec.count = 3;
  ASSERT_TRUE(FaultControl::inject(e.bdev(a), spec));
  for (uint64_t i = 0; i < 6; ++i) ASSERT_EQ(write_block(e, *n, i, 0x40 + i), IoStatus::kSuccess);
  auto ci = child(n->describe(), "bdev:///" + a);
  EXPECT_EQ(ci->state, ChildState::kHealthy);
  EXPECT_EQ(ci->write_errors, 3u);
  // The failed writes were retried on the same child: nothing was lost.
  expect_equal(e, {"a", "b"}, n->num_blocks());
  ASSERT_TRUE(FaultControl::clear(e.bdev(a), 0));
  ASSERT_TRUE(FaultControl::inject(e.bdev(a), fault_spec(FaultMode::kError, kW)));
  EXPECT_EQ(write_block(e, *n, 10, 1), IoStatus::kSuccess);
  ci = child(n->describe(), "bdev:///" + a);
  EXPECT_EQ(ci->state, ChildState::kFaulted);
  EXPECT_EQ(ci->reason, FaultReason::kIoError);
  EXPECT_EQ(n->state(), NexusState::kDegraded);
}

TEST(Nexus, StoreWriteFailureFailsTheDependentIo) {
  NexEnv e;
  auto a = e.fault_child("a"), b = e.fault_child("b");
  auto n = e.make("n0", {"bdev:///" + a, "bdev:///" + b});
  ASSERT_TRUE(n);
  e.mem().fail_next_writes(1);
  ASSERT_TRUE(FaultControl::inject(e.bdev(b), fault_spec(FaultMode::kError, kW)));
  EXPECT_EQ(write_block(e, *n, 3, 3), IoStatus::kIoError);
  EXPECT_EQ(child(n->describe(), "bdev:///" + b)->state, ChildState::kFaulted);
  // Later writes no longer depend on the child.
  EXPECT_EQ(write_block(e, *n, 4, 4), IoStatus::kSuccess);
}

TEST(Nexus, StaleChildRuleAcrossRecreate) {
  NexEnv e(true);
  auto a = e.fault_child("a"), b = e.fault_child("b");
  std::vector<std::string> kids = {"bdev:///" + a, "bdev:///" + b};
  auto n = e.make("n0", kids);
  ASSERT_TRUE(n);
  ASSERT_EQ(write_block(e, *n, 1, 1), IoStatus::kSuccess);
  ASSERT_TRUE(FaultControl::inject(e.bdev(b), fault_spec(FaultMode::kError, kW)));
  ASSERT_EQ(write_block(e, *n, 1, 2), IoStatus::kSuccess);
  ASSERT_TRUE(FaultControl::clear(e.bdev(b), 0));
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));
  // The JSON document names the stale child.
  {
    std::ifstream in(e.dir / "health" / "n0.json");
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_NE(ss.str().find("\"io_error\""), std::string::npos) << ss.str();
  }
  // Re-create without rebuilding: b is never read.
  NexusOptions o;
  o.rebuild_stale = false;
  n = e.make("n0", kids, o);
  ASSERT_TRUE(n);
  auto ci = child(n->describe(), "bdev:///" + b);
  EXPECT_EQ(ci->state, ChildState::kFaulted);
  EXPECT_EQ(ci->reason, FaultReason::kOutOfSync);
  uint64_t b_reads = read_ops(e, b);
  DmaBuffer buf(4096);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(do_io(e, i % 2, *n, IoType::kRead, 1, 1, buf.data(), 4096), IoStatus::kSuccess);
    EXPECT_EQ(buf.data()[0], 2);
  }
  EXPECT_EQ(read_ops(e, b), b_reads);
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));
  // Re-create with the default: b starts OutOfSync and is rebuilt.
  n = e.make("n0", kids);
  ASSERT_TRUE(n);
  auto ri = n->wait_rebuild("bdev:///" + b, 10000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_EQ(n->state(), NexusState::kOnline);
  expect_equal(e, {"a", "b"}, n->num_blocks());
  EXPECT_TRUE(e.store->load("n0")->children.at("bdev:///" + b).healthy);
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));
  // Every child recorded unhealthy: refused unless forced.
  ASSERT_TRUE(e.store->mark_unhealthy("n0", kids[0], "io_error"));
  ASSERT_TRUE(e.store->mark_unhealthy("n0", kids[1], "io_error"));
  auto r = e.mgr->create("n0", 0, kids);
  EXPECT_EQ(r.status().code(), Errc::kBusy);
  EXPECT_EQ(e.reg->info(a)->claimed_by, "") << "refused create released its children";
  o = {};
  o.force = true;
  auto forced = e.mgr->create("n0", 0, kids, o);
  ASSERT_TRUE(forced) << forced.status().to_string();
  EXPECT_EQ(forced->state, NexusState::kOnline);
}

// The missed-write log of an offline child is written ahead of the writes it covers, so
// the store as a crash leaves it (taken right after the writes were acknowledged, with
// no clean shutdown) still gives a partial rebuild of exactly those segments.
TEST(Nexus, MissedWriteLogSurvivesACrash) {
  NexEnv e(true);
  auto a = e.fault_child("a"), b = e.fault_child("b");
  std::vector<std::string> kids = {"bdev:///" + a, "bdev:///" + b};
  auto n = e.make("n0", kids);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->offline_child("bdev:///" + b));
  const uint64_t seg = n->segment_blocks();
  for (uint64_t lba : {uint64_t{1}, 3 * seg + 2, 40 * seg}) {
    ASSERT_EQ(write_block(e, *n, lba, 7, lba % 2), IoStatus::kSuccess);
  }
  // A second write into an already persisted segment needs no new flush.
  ASSERT_EQ(write_block(e, *n, 2, 8), IoStatus::kSuccess);
  const auto file = e.dir / "health" / "n0.json";
  std::string at_crash;
  {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    at_crash = ss.str();
  }
  EXPECT_NE(at_crash.find("\"write_ahead\": true"), std::string::npos) << at_crash;
  // "Crash": the engine dies here. Tear the nexus down and put the store back as it was.
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));
  {
    std::ofstream out(file, std::ios::trunc);
    out << at_crash;
  }
  n = e.make("n0", kids);
  ASSERT_TRUE(n);
  auto ri = n->wait_rebuild("bdev:///" + b, 10000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_TRUE(ri->partial) << "the crash left no usable log: full rebuild";
  EXPECT_EQ(ri->segments_done, 3u);
  expect_equal(e, {"a", "b"}, n->num_blocks());
}

uint64_t flush_ops(NexEnv& e, const std::string& name) {
  auto s = e.reg->stats(name);
  return s ? s->per_type[static_cast<int>(IoType::kFlush)].ops : 0;
}

// An unclean end (the store still records the nexus open): children recorded healthy may
// differ where the dead nexus's writes were in flight. The re-created nexus trusts one
// (local first, then the first given) and rebuilds the others in full before reading
// from them, so every read returns one answer. A clean destroy flushes the children and
// records the nexus closed, so the next create rebuilds nothing.
TEST(Nexus, UncleanShutdownResyncsEveryChildFromOne) {
  NexEnv e;
  auto a = e.fault_child("a"), b = e.fault_child("b");
  std::vector<std::string> kids = {"bdev:///" + a, "bdev:///" + b};
  auto n = e.make("n0", kids);
  ASSERT_TRUE(n);
  EXPECT_TRUE(e.store->load("n0")->open) << "recorded open before any I/O";
  for (uint64_t lba = 0; lba < 64; ++lba) ASSERT_EQ(write_block(e, *n, lba, 1), IoStatus::kSuccess);
  const uint64_t nblocks = n->num_blocks();
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));
  EXPECT_FALSE(e.store->load("n0")->open) << "a clean destroy records the nexus closed";
  EXPECT_GE(flush_ops(e, a), 1u) << "children flushed before the nexus is recorded closed";
  EXPECT_GE(flush_ops(e, b), 1u);
  // Clean: re-created, nothing is rebuilt.
  n = e.make("n0", kids);
  ASSERT_TRUE(n);
  for (const auto& c : n->describe().children) EXPECT_EQ(c.state, ChildState::kHealthy) << c.uri;
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));

  // The end of a nexus that died with writes in flight: some reached b only.
  ASSERT_TRUE(e.store->set_open("n0", true));
  DmaBuffer buf(4096);
  std::memset(buf.data(), 9, 4096);
  for (uint64_t lba = 5; lba < 10; ++lba) {
    ASSERT_EQ(do_io(e, 0, e.bdev(b), IoType::kWrite, lba, 1, buf.data(), 4096), IoStatus::kSuccess);
  }
  const uint64_t b_flushes = flush_ops(e, b);
  n = e.make("n0", kids);
  ASSERT_TRUE(n);
  EXPECT_EQ(child(n->describe(), kids[0])->state, ChildState::kHealthy) << "the source";
  auto ri = n->wait_rebuild(kids[1], 10000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
  EXPECT_FALSE(ri->partial) << "nothing says where the children differ: a full rebuild";
  expect_equal(e, {a, b}, nblocks);
  for (uint64_t lba = 5; lba < 10; ++lba) {
    ASSERT_EQ(do_io(e, lba % 2, *n, IoType::kRead, lba, 1, buf.data(), 4096), IoStatus::kSuccess);
    EXPECT_EQ(buf.data()[0], 1) << "block " << lba << " comes from the source";
  }
  EXPECT_GT(flush_ops(e, b), b_flushes) << "a rebuild ends with a flush of its destination";
  auto h = e.store->load("n0");
  EXPECT_TRUE(h->open);
  EXPECT_TRUE(h->children.at(kids[1]).healthy);
}

// A crash during the resync: the child being rebuilt is recorded stale before the first
// I/O, so the next open rebuilds it again from the same source and never reads from it.
TEST(Nexus, CrashDuringUncleanResyncKeepsTheSameSource) {
  NexEnv e;
  auto a = e.fault_child("a"), b = e.fault_child("b");
  std::vector<std::string> kids = {"bdev:///" + a, "bdev:///" + b};
  ASSERT_TRUE(e.store->set_open("n0", true));
  NexusOptions o;
  o.rebuild_stale = false;  // the resync never runs: as if the engine died at once
  auto n = e.make("n0", kids, o);
  ASSERT_TRUE(n);
  auto rec = e.store->load("n0")->children.at(kids[1]);
  EXPECT_FALSE(rec.healthy);
  EXPECT_EQ(rec.reason, kUncleanShutdown);
  n.reset();
  ASSERT_TRUE(e.mgr->destroy("n0"));
  // Even unclean again, a stays the source: b is stale, not a candidate.
  ASSERT_TRUE(e.store->set_open("n0", true));
  n = e.make("n0", kids);
  ASSERT_TRUE(n);
  EXPECT_EQ(child(n->describe(), kids[0])->state, ChildState::kHealthy);
  auto ri = n->wait_rebuild(kids[1], 10000);
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->state, RebuildState::kCompleted);
}

// FUA reaches every child: the nexus passes it down and each child's channel honours it
// (a file's write-zeroes: write-zeroes + fdatasync).
TEST(Nexus, FuaReachesEveryChild) {
  NexEnv e;
  ASSERT_TRUE(e.reg->create("file://" + e.path("c1.img") + "?size_mb=4"));
  ASSERT_TRUE(e.reg->create("file://" + e.path("c2.img") + "?size_mb=4"));
  auto n = e.make("n0", {"bdev:///c1.img", "bdev:///c2.img"});
  ASSERT_TRUE(n);
  ASSERT_EQ(do_io(e, 0, *n, IoType::kWriteZeroes, 8, 2, nullptr, 0, nullptr, true), IoStatus::kSuccess);
  EXPECT_EQ(flush_ops(e, "c1.img"), 1u);
  EXPECT_EQ(flush_ops(e, "c2.img"), 1u);
  ASSERT_EQ(do_io(e, 1, *n, IoType::kWriteZeroes, 8, 2, nullptr, 0, nullptr, false), IoStatus::kSuccess);
  EXPECT_EQ(flush_ops(e, "c1.img"), 1u) << "no FUA, no flush";
}

TEST(HealthStore, JsonRoundTripAndFileReplace) {
  bdev::test::Env base;
  FileChildHealthStore s(base.dir / "h");
  ASSERT_TRUE(s.mark_unhealthy("n", "bdev:///x", "timed_out"));
  MissedWriteLog log;
  log.segment_blocks = 32;
  log.num_segments = 100;
  log.clean = true;
  log.dirty = {{1, 2}, {50, 1}};
  ASSERT_TRUE(s.save_log("n", "bdev:///x", log));
  EXPECT_EQ(s.save_log("n", "bdev:///y", log).code(), Errc::kNotFound);
  ASSERT_TRUE(s.mark_healthy("n", "bdev:///y"));
  auto r = s.load("n");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->children.size(), 2u);
  EXPECT_FALSE(r->children.at("bdev:///x").healthy);
  ASSERT_TRUE(r->children.at("bdev:///x").log);
  EXPECT_EQ(r->children.at("bdev:///x").log->dirty.size(), 2u);
  EXPECT_TRUE(r->children.at("bdev:///y").healthy);
  EXPECT_FALSE(std::filesystem::exists(s.path_for("n").string() + ".tmp"));
  ASSERT_TRUE(s.forget("n", "bdev:///x"));
  EXPECT_EQ(s.load("n")->children.size(), 1u);
  ASSERT_TRUE(s.purge("n"));
  EXPECT_FALSE(std::filesystem::exists(s.path_for("n")));
  EXPECT_TRUE(s.load("none")->empty());
  EXPECT_FALSE(health_from_json("{\"format\":\"other\"}"));
}

TEST(SegmentLog, MarksRunsAndTakes) {
  SegmentLog l(1000, 32);  // 32 segments
  EXPECT_EQ(l.num_segments(), 32u);
  l.mark(0, 1);
  l.mark(31, 2);   // segments 0 and 1
  l.mark(990, 10); // segments 30 and 31
  EXPECT_EQ(l.count(), 4u);
  auto runs = l.runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0], std::make_pair(uint64_t{0}, uint64_t{2}));
  auto t = l.take();
  EXPECT_EQ(t, (std::vector<uint64_t>{0, 1, 30, 31}));
  EXPECT_EQ(l.count(), 0u);
  l.set_runs(runs);
  EXPECT_EQ(l.count(), 4u);
}

// A nexus over one child to which a second child `cb` (bdev `b`) was just added: its
// rebuild copy is parked by a hang, and a child I/O times out after 100 ms, so a control
// call waits up to max(5 s, 2 x 100 ms) for the copy. unstick() lets the copy return.
struct StuckRebuild {
  NexEnv e;
  std::shared_ptr<Nexus> n;
  uint64_t hang = 0;
  std::string b, cb;

  void start() {
    auto a = e.fault_child("a", 4);
    b = e.fault_child("b", 4);
    NexusOptions o;
    o.child_io_timeout_ms = 100;
    n = e.make("n0", {"bdev:///" + a}, o);
    ASSERT_TRUE(n);
    auto h = FaultControl::inject(e.bdev(b), fault_spec(FaultMode::kHang, kW));
    ASSERT_TRUE(h);
    hang = *h;
    cb = "bdev:///" + b;
    ASSERT_TRUE(n->add_child(cb));
    ASSERT_TRUE(wait_until([&] { return FaultControl::list(e.bdev(b))[0].parked > 0; }));
  }
  bool unstick() { return static_cast<bool>(FaultControl::clear(e.bdev(b), hang)); }
};

// A rebuild copy stuck on a hung destination must not hold the nexus for as long as the
// device hangs: stopping the job (which waits for its copies, under the nexus' control
// mutex) gives up with Busy after max(5 s, 2 x child_io_timeout_ms) and the nexus answers
// again; once the copy returns, the job stops on its own and its outcome is applied.
TEST(Nexus, StoppingARebuildStuckOnAHungChildIsBusyNotForever) {
  StuckRebuild x;
  ASSERT_NO_FATAL_FAILURE(x.start());
  const uint64_t t0 = mono_ns();
  auto stopping = std::async(std::launch::async, [&] { return x.n->stop_rebuild(x.cb); });
  if (stopping.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "stop_rebuild waits for the hung copy for ever, holding the nexus";
    ASSERT_TRUE(x.unstick());
    (void)stopping.get();
    return;
  }
  Status st = stopping.get();
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  EXPECT_NE(st.message().find(x.cb), std::string::npos) << st.to_string();
  EXPECT_GE(mono_ns() - t0, 4'900'000'000ull) << "gave up before its deadline";
  EXPECT_EQ(child(x.n->describe(), x.cb)->state, ChildState::kOutOfSync);
  // Removing it runs into the same stuck job.
  EXPECT_EQ(x.n->remove_child(x.cb).code(), Errc::kBusy);
  EXPECT_EQ(x.n->describe().children.size(), 2u);
  ASSERT_TRUE(x.unstick());
  auto ri = x.n->wait_rebuild(x.cb, 10000);
  ASSERT_TRUE(ri) << ri.status().to_string();
  EXPECT_EQ(ri->state, RebuildState::kStopped);
  EXPECT_EQ(child(x.n->describe(), x.cb)->state, ChildState::kFaulted);
  Status rm = x.n->remove_child(x.cb);
  EXPECT_TRUE(rm) << rm.to_string();
  EXPECT_EQ(x.n->state(), NexusState::kOnline);
}

// While remove_child waits for a rebuild copy stuck on a hung child, the nexus still
// answers: describe() and rebuild_info() take only its state lock, which a control call
// releases while it waits. Before, the remove held the nexus mutex for its whole wait
// (max(5 s, 2 x child_io_timeout_ms)), and describe(), so every ListNexuses and metrics
// scrape of the engine, waited with it. Once the copy returns, the job notifies and the
// remove goes on at once, not at its deadline.
TEST(Nexus, DescribeAnswersWhileRemoveChildWaitsForAStuckRebuild) {
  StuckRebuild x;
  ASSERT_NO_FATAL_FAILURE(x.start());
  auto removing = std::async(std::launch::async, [&] { return x.n->remove_child(x.cb); });
  // For a second of the remove's wait, each read of the nexus is timed.
  uint64_t worst_ns = 0;
  for (const uint64_t end = mono_ns() + 1'000'000'000; mono_ns() < end;) {
    const uint64_t t0 = mono_ns();
    const NexusInfo info = x.n->describe();
    const auto ri = x.n->rebuild_info(x.cb);
    worst_ns = std::max(worst_ns, mono_ns() - t0);
    EXPECT_EQ(info.children.size(), 2u);
    EXPECT_TRUE(ri) << ri.status().to_string();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_LT(worst_ns, 1'000'000'000ull) << "describe() waited for remove_child";
  const bool waited = removing.wait_for(std::chrono::seconds(0)) == std::future_status::timeout;
  EXPECT_TRUE(waited) << "remove_child did not wait for the stuck copy";
  // The copy returns: the stopped job notifies, and the remove finishes well before its
  // deadline.
  const uint64_t t_clear = mono_ns();
  ASSERT_TRUE(x.unstick());
  Status st = removing.get();
  EXPECT_TRUE(st) << st.to_string();
  EXPECT_LT(mono_ns() - t_clear, 2'000'000'000ull);
  EXPECT_EQ(x.n->describe().children.size(), 1u);
  EXPECT_EQ(x.n->state(), NexusState::kOnline);
}

}  // namespace
}  // namespace castor::nexus::test
