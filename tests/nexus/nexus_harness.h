#pragma once
// Nexus test harness: reactors + registry (from the bdev harness), a health store and a
// NexusManager, a verifying workload that runs on the reactors, and block-for-block
// comparison of children.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "../bdev/harness.h"
#include "bdev/modules/fault.h"
#include "nexus/manager.h"

namespace castor::nexus::test {

using bdev::Bdev;
using bdev::DmaBuffer;
using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;
using bdev::test::do_io;

struct NexEnv : bdev::test::Env {
  std::unique_ptr<ChildHealthStore> store;
  std::unique_ptr<NexusManager> mgr;
  explicit NexEnv(bool file_store = false) {
    if (file_store) {
      store = std::make_unique<FileChildHealthStore>(dir / "health");
    } else {
      store = std::make_unique<MemChildHealthStore>();
    }
    mgr = std::make_unique<NexusManager>(*reg, *store);
  }
  ~NexEnv() {
    mgr.reset();
    store.reset();
  }
  MemChildHealthStore& mem() { return static_cast<MemChildHealthStore&>(*store); }
  // malloc:///<name> of `mb` MiB plus fault:///f<name>?base=<name>; returns the fault name.
  std::string fault_child(const std::string& name, uint64_t mb = 8) {
    EXPECT_TRUE(reg->create(fmt::format("malloc:///{}?size_mb={}", name, mb)));
    EXPECT_TRUE(reg->create(fmt::format("fault:///f{}?base={}", name, name)));
    return "f" + name;
  }
  std::shared_ptr<Nexus> make(const std::string& name, const std::vector<std::string>& uris,
                              const NexusOptions& o = {}, uint64_t size = 0) {
    auto r = mgr->create(name, size, uris, o);
    EXPECT_TRUE(r) << r.status().to_string();
    return mgr->find(name);
  }
  Bdev& bdev(const std::string& name) {
    auto b = reg->find(name);
    EXPECT_TRUE(b) << name;
    return *b;
  }
};

inline bdev::FaultRuleSpec fault_spec(bdev::FaultMode mode, uint32_t ops) {
  bdev::FaultRuleSpec s;
  s.mode = mode;
  s.ops_mask = ops;
  return s;
}
inline constexpr uint32_t kRW = bdev::io_type_bit(IoType::kRead) | bdev::io_type_bit(IoType::kWrite);
inline constexpr uint32_t kW = bdev::io_type_bit(IoType::kWrite);
inline constexpr uint32_t kR = bdev::io_type_bit(IoType::kRead);

template <class F>
bool wait_until(F&& f, int timeout_ms = 5000) {
  for (int i = 0; i < timeout_ms; i += 2) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return f();
}

inline void fill_block(uint8_t* p, uint32_t bs, uint64_t lba, uint32_t gen) {
  std::memset(p, static_cast<int>((lba * 7 + gen) & 0xff), bs);
  std::memcpy(p, &lba, 8);
  std::memcpy(p + 8, &gen, 4);
}

// Random reads and writes from `qd` slots on each reactor. Each slot owns disjoint
// 4-block chunks and has one I/O at a time, so the expected content of every block is
// known: reads are verified against it.
struct Workload {
  static constexpr uint64_t kChunk = 4;
  static constexpr uint32_t kUnknown = UINT32_MAX;
  NexEnv& env;
  Bdev& nx;
  uint32_t bs;
  uint64_t nblocks;
  std::vector<uint32_t> gen;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops{0}, errors{0}, mismatches{0};
  std::atomic<int> running{0};
  uint64_t total_slots = 0;
  struct Slot {
    Workload* w;
    reactor::Reactor* r;
    IoRequest req;
    iovec iov;
    DmaBuffer buf;
    uint64_t id, rng, seq = 0;
    bool is_write = false;
  };
  std::vector<std::unique_ptr<Slot>> slots;

  Workload(NexEnv& e, Bdev& n) : env(e), nx(n), bs(n.block_size()), nblocks(n.num_blocks()) {
    gen.assign(nblocks, 0);
  }
  ~Workload() { finish(); }

  void start(size_t qd = 4) {
    size_t nr = env.group.size();
    total_slots = nr * qd;
    for (size_t r = 0; r < nr; ++r) {
      for (size_t q = 0; q < qd; ++q) {
        auto s = std::make_unique<Slot>();
        s->w = this;
        s->r = &env.group.at(r);
        s->buf = DmaBuffer(kChunk * bs);
        s->id = slots.size();
        s->rng = 0x9E3779B97F4A7C15ull * (s->id + 1) + static_cast<uint64_t>(std::rand());
        slots.push_back(std::move(s));
      }
    }
    running = static_cast<int>(slots.size());
    for (auto& s : slots) {
      Slot* sp = s.get();
      sp->r->send([sp] { sp->w->issue(*sp); });
    }
  }
  // Stops issuing and waits for the slots to go idle.
  void finish() {
    stop = true;
    while (running.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  static uint64_t next(uint64_t& x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
  void issue(Slot& s) {
    if (stop.load()) {
      running.fetch_sub(1);
      return;
    }
    uint64_t nchunks = nblocks / kChunk;
    uint64_t mine = (nchunks + total_slots - 1 - s.id) / total_slots;
    uint64_t c = s.id + (next(s.rng) % mine) * total_slots;
    uint64_t off = next(s.rng) % kChunk;
    uint64_t n = 1 + next(s.rng) % (kChunk - off);
    s.req.offset_blocks = c * kChunk + off;
    s.req.num_blocks = n;
    s.is_write = next(s.rng) % 100 < 60;
    s.iov = {s.buf.data(), n * bs};
    s.req.iovs = &s.iov;
    s.req.iovcnt = 1;
    if (s.is_write) {
      s.req.type = IoType::kWrite;
      for (uint64_t i = 0; i < n; ++i) {
        uint32_t g = static_cast<uint32_t>((s.id + 1) << 22 | (++s.seq & 0x3fffff));
        gen[s.req.offset_blocks + i] = g;
        fill_block(s.buf.data() + i * bs, bs, s.req.offset_blocks + i, g);
      }
    } else {
      s.req.type = IoType::kRead;
    }
    s.req.cb = [](IoRequest& r, void* arg) { static_cast<Slot*>(arg)->w->done(*static_cast<Slot*>(arg)); };
    s.req.cb_arg = &s;
    nx.channel(*s.r).submit(s.req);
  }
  bool check_block(const uint8_t* p, uint64_t lba) {
    uint32_t g = gen[lba];
    if (g == kUnknown) return true;
    std::vector<uint8_t> exp(bs, 0);
    if (g != 0) fill_block(exp.data(), bs, lba, g);
    if (std::memcmp(exp.data(), p, bs) == 0) return true;
    uint64_t got_lba;
    uint32_t got_gen;
    std::memcpy(&got_lba, p, 8);
    std::memcpy(&got_gen, p + 8, 4);
    if (mismatches.load() < 5) {
      std::fprintf(stderr, "mismatch lba=%lu expected gen=%u got lba=%lu gen=%u\n",
                   static_cast<unsigned long>(lba), g, static_cast<unsigned long>(got_lba), got_gen);
    }
    return false;
  }
  void done(Slot& s) {
    if (s.req.status != IoStatus::kSuccess) {
      errors.fetch_add(1);
      if (s.is_write) {
        for (uint64_t i = 0; i < s.req.num_blocks; ++i) gen[s.req.offset_blocks + i] = kUnknown;
      }
    } else if (!s.is_write) {
      for (uint64_t i = 0; i < s.req.num_blocks; ++i) {
        if (!check_block(s.buf.data() + i * bs, s.req.offset_blocks + i)) mismatches.fetch_add(1);
      }
    }
    ops.fetch_add(1);
    issue(s);
  }
  // Reads the whole nexus back (after finish()) and checks every block.
  uint64_t verify_all() {
    uint64_t bad = 0;
    const uint64_t step = 64;
    DmaBuffer b(step * bs);
    for (uint64_t lba = 0; lba < nblocks; lba += step) {
      uint64_t n = std::min(step, nblocks - lba);
      if (do_io(env, 0, nx, IoType::kRead, lba, n, b.data(), n * bs) != IoStatus::kSuccess) {
        return UINT64_MAX;
      }
      for (uint64_t i = 0; i < n; ++i) bad += !check_block(b.data() + i * bs, lba + i);
    }
    return bad;
  }
};

inline std::vector<uint8_t> read_all(NexEnv& env, Bdev& b, uint64_t nblocks) {
  const uint32_t bs = b.block_size();
  const uint64_t step = 256;
  std::vector<uint8_t> out(nblocks * bs);
  DmaBuffer buf(step * bs);
  for (uint64_t lba = 0; lba < nblocks; lba += step) {
    uint64_t n = std::min(step, nblocks - lba);
    EXPECT_EQ(do_io(env, 0, b, IoType::kRead, lba, n, buf.data(), n * bs), IoStatus::kSuccess);
    std::memcpy(out.data() + lba * bs, buf.data(), n * bs);
  }
  return out;
}

// Index of the first differing block, or -1.
inline int64_t first_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b,
                          uint32_t bs) {
  for (size_t i = 0; i < a.size(); i += bs) {
    if (std::memcmp(a.data() + i, b.data() + i, bs) != 0) return static_cast<int64_t>(i / bs);
  }
  return -1;
}

// Compares every named bdev block for block over the nexus' size.
inline void expect_equal(NexEnv& env, const std::vector<std::string>& names, uint64_t nblocks) {
  ASSERT_FALSE(names.empty());
  auto ref = read_all(env, env.bdev(names[0]), nblocks);
  uint32_t bs = env.bdev(names[0]).block_size();
  for (size_t i = 1; i < names.size(); ++i) {
    auto other = read_all(env, env.bdev(names[i]), nblocks);
    EXPECT_EQ(first_diff(ref, other, bs), -1) << names[0] << " vs " << names[i];
  }
}

inline std::optional<ChildInfo> child(const NexusInfo& i, const std::string& uri) {
  for (const auto& c : i.children) {
    if (c.uri == uri) return c;
  }
  ADD_FAILURE() << "no child " << uri;
  return ChildInfo{};
}

}  // namespace castor::nexus::test
