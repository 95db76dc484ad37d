#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <latch>

#include "bdev/bdev.h"
#include "harness.h"

namespace castor::bdev::test {
namespace {

// Each reactor writes a random pattern over its own region with random offsets and
// sizes, keeping `qd` I/Os in flight, then reads every block back and compares.
struct VerifyJob {
  Bdev* bdev = nullptr;
  BdevDesc desc;  // open while the job runs
  BdevChannel* ch = nullptr;
  uint64_t first = 0, count = 0;  // region in blocks
  uint32_t bs = 0;
  std::vector<uint8_t> model;     // expected content of the region
  std::mt19937_64 rng;
  int remaining = 0;
  int inflight = 0;
  bool reading = false;
  uint64_t read_cursor = 0;
  uint64_t mismatches = 0, errors = 0;
  std::latch* done = nullptr;
  struct Slot {
    IoRequest req;
    iovec iov;
    DmaBuffer buf;
    VerifyJob* job;
  };
  std::vector<std::unique_ptr<Slot>> slots;

  void start(int qd, int ops) {
    remaining = ops;
    for (int i = 0; i < qd; ++i) {
      auto s = std::make_unique<Slot>();
      s->buf = DmaBuffer(size_t{bs} * 8);
      s->job = this;
      s->req.cb = &VerifyJob::on_done;
      s->req.cb_arg = s.get();
      slots.push_back(std::move(s));
    }
    for (auto& s : slots) next(*s);
  }
  void next(Slot& s) {
    if (!reading && remaining > 0) {
      --remaining;
      uint64_t n = 1 + rng() % 8;
      if (n > count) n = count;
      uint64_t off = rng() % (count - n + 1);
      uint8_t* p = s.buf.data();
      for (size_t i = 0; i < n * bs; ++i) p[i] = static_cast<uint8_t>(rng());
      // The model is updated when the write completes; writes run one at a time, so
      // completion order is the order the device applied them.
      s.req.type = IoType::kWrite;
      s.req.offset_blocks = first + off;
      s.req.num_blocks = n;
      s.iov = {p, n * bs};
      s.req.iovs = &s.iov;
      s.req.iovcnt = 1;
      ++inflight;
      ch->submit(s.req);
      return;
    }
    if (!reading) {
      if (inflight > 0) return;  // wait for all writes before reading back
      reading = true;
      for (auto& o : slots) next(*o);
      return;
    }
    if (read_cursor < count) {
      uint64_t n = std::min<uint64_t>(8, count - read_cursor);
      s.req.type = IoType::kRead;
      s.req.offset_blocks = first + read_cursor;
      s.req.num_blocks = n;
      s.iov = {s.buf.data(), n * bs};
      s.req.iovs = &s.iov;
      s.req.iovcnt = 1;
      read_cursor += n;
      ++inflight;
      ch->submit(s.req);
      return;
    }
    if (inflight == 0) done->count_down();
  }
  static void on_done(IoRequest& r, void* arg) {
    auto* s = static_cast<Slot*>(arg);
    VerifyJob* j = s->job;
    --j->inflight;
    if (r.status != IoStatus::kSuccess) j->errors++;
    size_t off = (r.offset_blocks - j->first) * j->bs;
    size_t len = r.num_blocks * j->bs;
    if (r.type == IoType::kWrite) {
      std::memcpy(&j->model[off], s->buf.data(), len);
    } else if (std::memcmp(&j->model[off], s->buf.data(), len) != 0) {
      j->mismatches++;
    }
    j->next(*s);
  }
};

void verify_concurrently(Env& env, const std::string& name, int qd) {
  auto desc = env.reg->open(name);
  ASSERT_TRUE(desc) << desc.status().to_string();
  Bdev& b = *desc->bdev();
  size_t n = env.group.size();
  std::latch done(static_cast<std::ptrdiff_t>(n));
  std::vector<std::unique_ptr<VerifyJob>> jobs;
  for (size_t i = 0; i < n; ++i) {
    auto j = std::make_unique<VerifyJob>();
    j->bdev = &b;
    j->bs = b.block_size();
    j->count = b.num_blocks() / n;
    j->first = i * j->count;
    j->model.assign(j->count * j->bs, 0);
    j->rng.seed(42 + i);
    j->done = &done;
    jobs.push_back(std::move(j));
  }
  // Writes within one job must not overlap while in flight (the device may apply them
  // in any order), so the write phase uses queue depth 1 and the read phase `qd`.
  for (size_t i = 0; i < n; ++i) {
    VerifyJob* j = jobs[i].get();
    reactor::Reactor& r = env.group.at(i);
    j->desc = BdevDesc(&b);
    r.send([j, &r, qd] {
      j->ch = &j->desc.channel(r);
      j->start(1, 400);
      for (int k = 1; k < qd; ++k) {
        // extra slots join for the read-back phase
        auto s = std::make_unique<VerifyJob::Slot>();
        s->buf = DmaBuffer(size_t{j->bs} * 8);
        s->job = j;
        s->req.cb = &VerifyJob::on_done;
        s->req.cb_arg = s.get();
        j->slots.push_back(std::move(s));
      }
    });
  }
  done.wait();
  for (auto& j : jobs) {
    EXPECT_EQ(j->errors, 0u) << name;
    EXPECT_EQ(j->mismatches, 0u) << name;
  }
}

TEST(Bdev, MallocVerifiedConcurrentIo) {
  Env env;
  ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=4&blk_size=512"));
  verify_concurrently(env, "m0", 16);
}

TEST(Bdev, FileVerifiedConcurrentIo) {
  Env env;
  auto info = env.reg->create("file://" + env.path("d0.img") + "?size_mb=8");
  ASSERT_TRUE(info) << info.status().to_string();
  EXPECT_EQ(info->module, "uring");
  EXPECT_EQ(info->num_blocks * info->block_size, 8u << 20);
  verify_concurrently(env, "d0.img", 16);
}

TEST(Bdev, BufferedUringVerifiedConcurrentIo) {
  Env env;
  auto info = env.reg->create("file://" + env.path("d1.img") + "?size_mb=4&direct=0&blk_size=512");
  ASSERT_TRUE(info) << info.status().to_string();
  EXPECT_EQ(info->buf_align, 1u);
  verify_concurrently(env, "d1.img", 8);
}

TEST(Bdev, FaultPassThroughVerifiedConcurrentIo) {
  Env env;
  ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=4"));
  ASSERT_TRUE(env.reg->create("fault:///f0?base=m0"));
  verify_concurrently(env, "f0", 8);
  // The data went through to the base.
  auto st = env.reg->stats("m0");
  ASSERT_TRUE(st);
  EXPECT_GT(st->per_type[static_cast<int>(IoType::kWrite)].ops, 0u);
}

TEST(Bdev, InvalidRequestsAreRejectedAndChangeNothing) {
  Env env;
  ASSERT_TRUE(env.reg->create("file://" + env.path("d.img") + "?size_mb=1&direct=1"));
  ASSERT_TRUE(env.reg->create("malloc:///m0?num_blocks=256&blk_size=4096"));
  for (const char* name : {"d.img", "m0"}) {
    auto b = env.reg->find(name);
    const uint64_t nb = b->num_blocks();
    const uint32_t bs = b->block_size();
    DmaBuffer buf(bs * 2);
    std::memset(buf.data(), 0x5a, bs * 2);
    ASSERT_EQ(do_io(env, 0, *b, IoType::kWrite, 0, 1, buf.data(), bs), IoStatus::kSuccess);
    // Out of range: past the end, straddling the end, offset overflow.
    EXPECT_EQ(do_io(env, 0, *b, IoType::kWrite, nb, 1, buf.data(), bs), IoStatus::kInvalid);
    EXPECT_EQ(do_io(env, 0, *b, IoType::kWrite, nb - 1, 2, buf.data(), bs * 2), IoStatus::kInvalid);
    EXPECT_EQ(do_io(env, 0, *b, IoType::kRead, UINT64_MAX, 1, buf.data(), bs), IoStatus::kInvalid);
    EXPECT_EQ(do_io(env, 0, *b, IoType::kUnmap, nb - 1, 5, nullptr, 0), IoStatus::kInvalid);
    // Length mismatch and zero-length.
    EXPECT_EQ(do_io(env, 0, *b, IoType::kWrite, 0, 2, buf.data(), bs), IoStatus::kInvalid);
    EXPECT_EQ(do_io(env, 0, *b, IoType::kRead, 0, 0, buf.data(), 0), IoStatus::kInvalid);
    // Block 0 still holds what was written.
    DmaBuffer rd(bs);
    ASSERT_EQ(do_io(env, 1, *b, IoType::kRead, 0, 1, rd.data(), bs), IoStatus::kSuccess);
    EXPECT_EQ(std::memcmp(rd.data(), buf.data(), bs), 0);
    auto st = env.reg->stats(name);
    EXPECT_EQ(st->per_type[static_cast<int>(IoType::kWrite)].errors, 3u);
  }
  // Misaligned buffer on an O_DIRECT file.
  auto d = env.reg->find("d.img");
  if (d->buf_align() > 1) {
    DmaBuffer buf(8192);
    EXPECT_EQ(do_io(env, 0, *d, IoType::kWrite, 0, 1, buf.data() + 1, 4096), IoStatus::kInvalid);
  }
}

TEST(Bdev, WriteZeroesAndUnmapReadBackZero) {
  Env env;
  ASSERT_TRUE(env.reg->create("file://" + env.path("z.img") + "?size_mb=2"));
  ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=2"));
  for (const char* name : {"z.img", "m0"}) {
    auto b = env.reg->find(name);
    const uint32_t bs = b->block_size();
    DmaBuffer buf(bs * 4);
    std::memset(buf.data(), 0xff, bs * 4);
    ASSERT_EQ(do_io(env, 0, *b, IoType::kWrite, 8, 4, buf.data(), bs * 4), IoStatus::kSuccess);
    ASSERT_EQ(do_io(env, 0, *b, IoType::kWriteZeroes, 8, 2, nullptr, 0), IoStatus::kSuccess);
    ASSERT_EQ(do_io(env, 0, *b, IoType::kUnmap, 10, 1, nullptr, 0), IoStatus::kSuccess);
    ASSERT_EQ(do_io(env, 0, *b, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
    DmaBuffer rd(bs * 4);
    ASSERT_EQ(do_io(env, 1, *b, IoType::kRead, 8, 4, rd.data(), bs * 4), IoStatus::kSuccess);
    for (size_t i = 0; i < size_t{bs} * 3; ++i) ASSERT_EQ(rd.data()[i], 0) << name << " @" << i;
    for (size_t i = size_t{bs} * 3; i < size_t{bs} * 4; ++i) ASSERT_EQ(rd.data()[i], 0xff);
  }
}

// FUA: a module that honours it itself (uring writes: RWF_DSYNC; malloc: no cache) gets
// it as it is; for the others (uring write-zeroes and unmap) the channel follows the
// operation with a flush, and the caller's callback sees its own request again.
TEST(Bdev, FuaIsHonouredByTheModuleOrFollowedByAFlush) {
  Env env;
  ASSERT_TRUE(env.reg->create("file://" + env.path("f.img") + "?size_mb=2"));
  ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=2"));
  auto ops = [&](const char* name, IoType t) { return env.reg->stats(name)->per_type[static_cast<int>(t)].ops; };
  auto f = env.reg->find("f.img");
  const uint32_t bs = f->block_size();
  EXPECT_TRUE(f->fua_native(IoType::kWrite));
  EXPECT_FALSE(f->fua_native(IoType::kWriteZeroes));
  DmaBuffer buf(bs);
  std::memset(buf.data(), 0x6b, bs);
  ASSERT_EQ(do_io(env, 0, *f, IoType::kWrite, 3, 1, buf.data(), bs), IoStatus::kSuccess);
  ASSERT_EQ(do_io(env, 0, *f, IoType::kWrite, 4, 1, buf.data(), bs, nullptr, true), IoStatus::kSuccess);
  EXPECT_EQ(ops("f.img", IoType::kFlush), 0u) << "a FUA write is the module's own";
  ASSERT_EQ(do_io(env, 1, *f, IoType::kWriteZeroes, 3, 1, nullptr, 0, nullptr, true), IoStatus::kSuccess);
  EXPECT_EQ(ops("f.img", IoType::kFlush), 1u) << "write-zeroes + flush";
  EXPECT_EQ(ops("f.img", IoType::kWriteZeroes), 1u) << "counted as the caller's write-zeroes";
  ASSERT_EQ(do_io(env, 0, *f, IoType::kUnmap, 5, 1, nullptr, 0, nullptr, true), IoStatus::kSuccess);
  ASSERT_EQ(do_io(env, 0, *f, IoType::kUnmap, 6, 1, nullptr, 0, nullptr, false), IoStatus::kSuccess);
  EXPECT_EQ(ops("f.img", IoType::kFlush), 2u) << "only the FUA unmap is followed by a flush";
  DmaBuffer rd(bs);
  ASSERT_EQ(do_io(env, 1, *f, IoType::kRead, 4, 1, rd.data(), bs), IoStatus::kSuccess);
  EXPECT_EQ(std::memcmp(rd.data(), buf.data(), bs), 0);
  ASSERT_EQ(do_io(env, 1, *f, IoType::kRead, 3, 1, rd.data(), bs), IoStatus::kSuccess);
  EXPECT_EQ(rd.data()[0], 0);
  // No volatile cache, nothing to flush.
  auto m = env.reg->find("m0");
  ASSERT_EQ(do_io(env, 0, *m, IoType::kWriteZeroes, 0, 1, nullptr, 0, nullptr, true), IoStatus::kSuccess);
  EXPECT_EQ(ops("m0", IoType::kFlush), 0u);
}

TEST(Registry, BadUrisGiveClearErrorsAndCreateNothing) {
  Env env;
  struct Case {
    std::string uri;
    Errc code;
    const char* says;
  } cases[] = {
      {"m0", Errc::kInvalidArgument, "no scheme"},
      {"tape:///t0", Errc::kInvalidArgument, "unknown bdev type"},
      {"malloc:///m0?size_mb=abc", Errc::kInvalidArgument, "size_mb=abc"},
      {"malloc:///m0", Errc::kInvalidArgument, "size_mb"},
      {"malloc:///m0?size_mb=1&blk_size=1000", Errc::kInvalidArgument, "blk_size=1000"},
      {"malloc:///m0?size_mb=1&sise=2", Errc::kInvalidArgument, "unknown option 'sise'"},
      {"malloc:///bad name?size_mb=1", Errc::kInvalidArgument, "invalid character"},
      {"malloc:///?size_mb=1", Errc::kInvalidArgument, "names no bdev"},
      {"uring://" + env.path("missing.img"), Errc::kNotFound, "missing.img"},
      {"file://" + env.path("missing2.img"), Errc::kNotFound, "size_mb"},
      {"file://" + env.path("odd.img") + "?size_mb=1&blk_size=3", Errc::kInvalidArgument,
       "blk_size=3"},
      {"fault:///f0", Errc::kInvalidArgument, "base="},
      {"fault:///f0?base=nope", Errc::kNotFound, "nope"},
  };
  for (const auto& c : cases) {
    auto r = env.reg->create(c.uri);
    ASSERT_FALSE(r) << c.uri;
    EXPECT_EQ(r.status().code(), c.code) << c.uri << ": " << r.status().to_string();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos)
        << c.uri << ": " << r.status().to_string();
  }
  EXPECT_TRUE(env.reg->list().empty());
  EXPECT_FALSE(std::filesystem::exists(env.path("odd.img")));
  EXPECT_FALSE(std::filesystem::exists(env.path("missing2.img")));
}

TEST(Registry, DuplicatesUnknownsAndClaims) {
  Env env;
  ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=1"));
  auto dup = env.reg->create("malloc:///m0?size_mb=2");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.status().code(), Errc::kAlreadyExists);
  EXPECT_EQ(env.reg->find("m0")->size_bytes(), 1u << 20);  // the original is untouched
  // A file bdev whose name is taken must not create the file either.
  ASSERT_TRUE(env.reg->create("malloc:///x.img?size_mb=1"));
  EXPECT_FALSE(env.reg->create("file://" + env.path("x.img") + "?size_mb=1"));
  EXPECT_FALSE(std::filesystem::exists(env.path("x.img")));

  EXPECT_EQ(env.reg->destroy("nope").code(), Errc::kNotFound);
  ASSERT_TRUE(env.reg->create("fault:///f0?base=m0"));
  auto busy = env.reg->destroy("m0");
  EXPECT_EQ(busy.code(), Errc::kBusy);
  EXPECT_NE(busy.message().find("f0"), std::string::npos);
  EXPECT_EQ(env.reg->info("m0")->claimed_by, "f0");
  EXPECT_FALSE(env.reg->create("fault:///f1?base=m0"));  // already claimed
  ASSERT_TRUE(env.reg->destroy("f0"));
  EXPECT_TRUE(env.reg->info("m0")->claimed_by.empty());
  {
    auto d = env.reg->open("m0");
    ASSERT_TRUE(d);
    EXPECT_EQ(env.reg->destroy("m0").code(), Errc::kBusy);
  }
  EXPECT_TRUE(env.reg->destroy("m0"));
  EXPECT_EQ(env.reg->list().size(), 1u);
}

// Resident memory of this process in bytes (/proc/self/statm).
uint64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// A malloc bdev's memory is faulted in at create (no I/O pays a first-touch page fault
// later), unless prefault=0 asks for it to be faulted on first use as before.
TEST(Registry, MallocMemoryIsBackedAtCreateUnlessPrefaultIsOff) {
  Env env;
  constexpr uint64_t kSize = 64ull << 20;
  uint64_t before = resident_bytes();
  ASSERT_TRUE(env.reg->create("malloc:///lazy?size_mb=64&prefault=0"));
  EXPECT_LT(resident_bytes() - before, kSize / 4);
  before = resident_bytes();
  ASSERT_TRUE(env.reg->create("malloc:///eager?size_mb=64"));
  EXPECT_GE(resident_bytes() - before, kSize - (2u << 20));
  before = resident_bytes();
  ASSERT_TRUE(env.reg->create("malloc:///eager1?size_mb=64&prefault=1"));
  EXPECT_GE(resident_bytes() - before, kSize - (2u << 20));
  auto bad = env.reg->create("malloc:///m?size_mb=1&prefault=maybe");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("prefault"), std::string::npos) << bad.status().to_string();
}

TEST(Registry, FileReopensWithSameContent) {
  Env env;
  std::string uri = "file://" + env.path("p.img") + "?size_mb=1";
  ASSERT_TRUE(env.reg->create(uri));
  auto b = env.reg->find("p.img");
  DmaBuffer buf(4096);
  std::memset(buf.data(), 0x42, 4096);
  ASSERT_EQ(do_io(env, 0, *b, IoType::kWrite, 3, 1, buf.data(), 4096), IoStatus::kSuccess);
  b.reset();
  ASSERT_TRUE(env.reg->destroy("p.img"));
  ASSERT_TRUE(env.reg->create(uri));  // existing file of the same size is reused
  auto wrong = env.reg->create("file://" + env.path("p.img") + "?size_mb=2&name=other");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.status().code(), Errc::kAlreadyExists);
  b = env.reg->find("p.img");
  DmaBuffer rd(4096);
  ASSERT_EQ(do_io(env, 1, *b, IoType::kRead, 3, 1, rd.data(), 4096), IoStatus::kSuccess);
  EXPECT_EQ(std::memcmp(rd.data(), buf.data(), 4096), 0);
}

// A file's data outlives the engine, and so must its identity: an NVMe-oF host that
// reconnects after an engine restart finds the subsystem by an NQN made from the UUID and
// rejects a namespace whose identifiers changed.
TEST(Registry, FileKeepsItsUuidAcrossReopens) {
  Env env;
  const std::string uri = "file://" + env.path("id.img") + "?size_mb=1";
  ASSERT_TRUE(env.reg->create(uri));
  const Uuid first = env.reg->info("id.img")->uuid;
  EXPECT_FALSE(first.is_nil());
  ASSERT_TRUE(env.reg->destroy("id.img"));
  ASSERT_TRUE(env.reg->create(uri));
  EXPECT_EQ(env.reg->info("id.img")->uuid, first);
  ASSERT_TRUE(env.reg->destroy("id.img"));
  // The same file through uring:// under the same name is the same device.
  ASSERT_TRUE(env.reg->create("uring://" + env.path("id.img")));
  EXPECT_EQ(env.reg->info("id.img")->uuid, first);
  ASSERT_TRUE(env.reg->destroy("id.img"));

  // Another file, or the same file under another name, is another device.
  ASSERT_TRUE(env.reg->create("file://" + env.path("id2.img") + "?size_mb=1"));
  EXPECT_NE(env.reg->info("id2.img")->uuid, first);
  ASSERT_TRUE(env.reg->create(uri + "&name=other"));
  EXPECT_NE(env.reg->info("other")->uuid, first);
  ASSERT_TRUE(env.reg->destroy("other"));

  // uuid= pins it; a malformed one is refused and creates nothing.
  const std::string pinned = "0b7c1d5e-2f43-4a6b-9c8d-7e6f5a4b3c2d";
  ASSERT_TRUE(env.reg->create(uri + "&uuid=" + pinned));
  EXPECT_EQ(env.reg->info("id.img")->uuid.to_string(), pinned);
  ASSERT_TRUE(env.reg->destroy("id.img"));
  auto bad = env.reg->create("file://" + env.path("id3.img") + "?size_mb=1&uuid=not-a-uuid");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(env.path("id3.img")));
}

// Statistics are read by gRPC and Prometheus threads while bdevs are created, used and
// destroyed; a destroy deletes the bdev's channels on their reactors. A reader must never
// touch a deleted channel (under ASan a use-after-free), and a reader holding the bdev
// must not keep it alive past destroy(): the fault bdev's claim on its base ends there,
// so the base can be destroyed right after.
TEST(Registry, StatsReadWhileBdevsAreDestroyedTouchNoFreedChannel) {
  Env env;
  constexpr int kNames = 3;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  auto reader = [&] {
    while (!stop.load(std::memory_order_relaxed)) {
      for (int k = 0; k < kNames; ++k) {
        const std::string base = "sm" + std::to_string(k);
        for (const std::string& n : {base, "sf" + std::to_string(k)}) {
          if (auto st = env.reg->stats(n)) reads.fetch_add(st->per_type[0].ops + 1);
        }
        // A holder of the object (find()) reads it directly: the same storage. (Only the
        // base: holding the fault bdev would rightly delay the end of its claim.)
        if (auto b = env.reg->find(base)) reads.fetch_add(b->stats().per_type[1].ops + 1);
      }
    }
  };
  std::thread r1(reader), r2(reader);
  DmaBuffer buf(4096);
  std::memset(buf.data(), 0x3c, buf.size());
  for (int round = 0; round < 300; ++round) {
    const std::string k = std::to_string(round % kNames);
    ASSERT_TRUE(env.reg->create("malloc:///sm" + k + "?size_mb=1"));
    ASSERT_TRUE(env.reg->create("fault:///sf" + k + "?base=sm" + k));
    {
      auto f = env.reg->find("sf" + k);
      ASSERT_TRUE(f);
      // A channel on every reactor, each with counters to read.
      for (size_t r = 0; r < env.group.size(); ++r) {
        ASSERT_EQ(do_io(env, r, *f, IoType::kWrite, r, 1, buf.data(), 4096), IoStatus::kSuccess);
        ASSERT_EQ(do_io(env, r, *f, IoType::kRead, r, 1, buf.data(), 4096), IoStatus::kSuccess);
      }
      auto st = env.reg->stats("sf" + k);
      ASSERT_TRUE(st);
      EXPECT_EQ(st->per_type[static_cast<int>(IoType::kWrite)].ops, env.group.size());
      EXPECT_EQ(st->per_type[static_cast<int>(IoType::kRead)].latency.count, env.group.size());
    }
    Status d = env.reg->destroy("sf" + k);
    ASSERT_TRUE(d) << d.to_string();
    d = env.reg->destroy("sm" + k);
    ASSERT_TRUE(d) << "round " << round << ": " << d.to_string();
  }
  stop = true;
  r1.join();
  r2.join();
  EXPECT_GT(reads.load(), 0u);
}

}  // namespace
}  // namespace castor::bdev::test
