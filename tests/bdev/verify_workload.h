#pragma once
// A verifying random read/write workload over any bdev, running on the reactors (used by
// the nexus and pool tests), and the block pattern it writes: each block carries its LBA
// and a generation, so a block read back tells what wrote it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "harness.h"

namespace castor::bdev::test {

inline void fill_block(uint8_t* p, uint32_t bs, uint64_t lba, uint32_t gen) {
  std::memset(p, static_cast<int>((lba * 7 + gen) & 0xff), bs);
  std::memcpy(p, &lba, 8);
  std::memcpy(p + 8, &gen, 4);
}

// Random reads and writes from `qd` slots on each reactor. Each slot owns disjoint
// 4-block chunks and has one I/O at a time, so the expected content of every block is
// known: reads are verified against it.
//
// With `hot` > 0 (set before start()), the first `hot` blocks are shared instead: two
// slots per reactor (with qd >= 3) only write there, 1-4 blocks at random offsets, so
// overlapping writes are in flight at once, from one reactor and from several. What a hot
// block may hold afterwards is what the last of its overlapping writes left: the write
// submitted last, or any write still in flight when that one was submitted (each
// submission and completion takes a tick of one clock). verify_all() checks hot blocks
// against that set; they are not read during the run.
struct Workload {
  static constexpr uint64_t kChunk = 4;
  static constexpr uint32_t kUnknown = UINT32_MAX;
  Env& env;
  Bdev& nx;
  BdevDesc nx_desc;  // open from start() to finish()
  uint32_t bs;
  uint64_t nblocks;
  std::vector<uint32_t> gen;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops{0}, errors{0}, mismatches{0};
  std::atomic<int> running{0};
  uint64_t total_slots = 0;
  // Each slot's write sequence starts here (set before start()): a second workload over the
  // same blocks with first_seq = kSecondPhase writes generations that the first one, which
  // wrote fewer than 2^21 blocks per slot, never did.
  uint32_t first_seq = 0;
  static constexpr uint32_t kSecondPhase = 1u << 21;
  uint64_t hot = 0;
  struct HotWrite {
    uint32_t gen;
    uint64_t submitted, completed;  // ticks; completed = UINT64_MAX until it completes
  };
  std::mutex hot_mu;
  std::vector<std::vector<HotWrite>> hot_log;  // per hot block, in submission order
  std::atomic<uint64_t> tick{0};
  std::atomic<uint64_t> hot_writes{0};
  struct Slot {
    Workload* w;
    reactor::Reactor* r;
    IoRequest req;
    iovec iov;
    DmaBuffer buf;
    uint64_t id, rng, seq = 0;
    bool is_write = false;
    bool is_hot = false;  // writes only to the shared hot blocks
  };
  std::vector<std::unique_ptr<Slot>> slots;

  Workload(Env& e, Bdev& n) : env(e), nx(n), bs(n.block_size()), nblocks(n.num_blocks()) {
    gen.assign(nblocks, 0);
  }
  ~Workload() { finish(); }

  void start(size_t qd = 4) {
    nx_desc = BdevDesc(&nx);
    size_t nr = env.group.size();
    hot = (hot + kChunk - 1) / kChunk * kChunk;
    const size_t hot_per_reactor = hot && qd >= 3 ? 2 : 0;
    total_slots = nr * (qd - hot_per_reactor);
    hot_log.assign(hot, {});
    for (uint64_t b = 0; b < hot; ++b) gen[b] = kUnknown;
    size_t owner_id = 0, hot_id = total_slots;
    for (size_t r = 0; r < nr; ++r) {
      for (size_t q = 0; q < qd; ++q) {
        auto s = std::make_unique<Slot>();
        s->w = this;
        s->r = &env.group.at(r);
        s->buf = DmaBuffer(kChunk * bs);
        s->is_hot = q < hot_per_reactor;
        s->id = s->is_hot ? hot_id++ : owner_id++;  // owners first: they index the chunks
        s->seq = first_seq;
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
    nx_desc.close();
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
    if (s.is_hot) {
      issue_hot(s);
      return;
    }
    const uint64_t first_chunk = hot / kChunk;
    uint64_t nchunks = nblocks / kChunk - first_chunk;
    uint64_t mine = (nchunks + total_slots - 1 - s.id) / total_slots;
    uint64_t c = first_chunk + s.id + (next(s.rng) % mine) * total_slots;
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
    nx_desc.channel(*s.r).submit(s.req);
  }
  void issue_hot(Slot& s) {
    uint64_t n = 1 + next(s.rng) % kChunk;
    uint64_t off = next(s.rng) % (hot - n + 1);
    s.req.type = IoType::kWrite;
    s.req.offset_blocks = off;
    s.req.num_blocks = n;
    s.is_write = true;
    s.iov = {s.buf.data(), n * bs};
    s.req.iovs = &s.iov;
    s.req.iovcnt = 1;
    const uint32_t g = static_cast<uint32_t>((s.id + 1) << 22 | (++s.seq & 0x3fffff));
    for (uint64_t i = 0; i < n; ++i) fill_block(s.buf.data() + i * bs, bs, off + i, g);
    {
      std::lock_guard lk(hot_mu);
      const uint64_t t = tick.fetch_add(1) + 1;
      for (uint64_t i = 0; i < n; ++i) hot_log[off + i].push_back({g, t, UINT64_MAX});
    }
    s.req.cb = [](IoRequest& r, void* arg) {
      auto& sl = *static_cast<Slot*>(arg);
      sl.w->hot_done(sl);
    };
    s.req.cb_arg = &s;
    nx_desc.channel(*s.r).submit(s.req);
  }
  void hot_done(Slot& s) {
    const uint32_t g = static_cast<uint32_t>((s.id + 1) << 22 | (s.seq & 0x3fffff));
    {
      std::lock_guard lk(hot_mu);
      const uint64_t t = tick.fetch_add(1) + 1;
      for (uint64_t i = 0; i < s.req.num_blocks; ++i) {
        auto& log = hot_log[s.req.offset_blocks + i];
        for (auto it = log.rbegin(); it != log.rend(); ++it) {
          if (it->gen == g) {
            // A failed write may or may not have landed: it stays "in flight" for ever.
            if (s.req.status == IoStatus::kSuccess) it->completed = t;
            break;
          }
        }
      }
    }
    if (s.req.status != IoStatus::kSuccess) errors.fetch_add(1);
    hot_writes.fetch_add(1);
    ops.fetch_add(1);
    issue(s);
  }
  // A hot block may hold the write submitted last or one that had not completed by then
  // (or zeroes if none was written).
  bool check_hot_block(const uint8_t* p, uint64_t lba) {
    const auto& log = hot_log[lba];
    uint32_t got_gen = 0;
    uint64_t got_lba = 0;
    std::memcpy(&got_lba, p, 8);
    std::memcpy(&got_gen, p + 8, 4);
    bool allowed = false;
    if (log.empty()) {
      allowed = got_gen == 0 && got_lba == 0;
    } else {
      const uint64_t last_submit = log.back().submitted;
      for (const auto& w : log) {
        if (w.gen == got_gen && (w.submitted == last_submit || w.completed > last_submit)) {
          allowed = true;
        }
      }
    }
    std::vector<uint8_t> exp(bs, 0);
    if (got_gen != 0 || got_lba != 0) fill_block(exp.data(), bs, lba, got_gen);
    if (allowed && std::memcmp(exp.data(), p, bs) == 0) return true;
    if (mismatches.load() < 5) {
      std::fprintf(stderr, "hot block %lu holds lba=%lu gen=%u, which its %zu writes cannot leave\n",
                   static_cast<unsigned long>(lba), static_cast<unsigned long>(got_lba), got_gen,
                   log.size());
    }
    return false;
  }
  bool check_block(const uint8_t* p, uint64_t lba) {
    if (lba < hot) return check_hot_block(p, lba);
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

}  // namespace castor::bdev::test
