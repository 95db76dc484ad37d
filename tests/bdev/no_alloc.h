#pragma once
// Counts operator new calls per thread and drives a bdev with 32 I/Os in a loop from
// one reactor: after a warm-up, the I/O path must allocate nothing. Include from exactly
// one file per test binary (it replaces the global operator new).
#include <atomic>
#include <cstdlib>
#include <latch>
#include <new>

#include "harness.h"

namespace {
thread_local uint64_t t_allocs = 0;
}

void* operator new(size_t n) {
  ++t_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace castor::bdev::test {

struct Loop {
  BdevChannel* ch = nullptr;
  uint64_t slots = 0;
  uint64_t done = 0, warm = 0, total = 0;
  uint64_t allocs_at_warm = 0, allocs_at_end = 0;
  uint64_t errors = 0;
  uint64_t rng = 88172645463325252ull;
  std::latch* finished = nullptr;
  struct Slot {
    IoRequest req;
    iovec iov;
    DmaBuffer buf{4096};
    Loop* loop;
  };
  std::vector<std::unique_ptr<Slot>> s;
  int outstanding = 0;

  void issue(Slot& sl) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    sl.req.type = (rng & 1) ? IoType::kRead : IoType::kWrite;
    sl.req.offset_blocks = rng % slots;
    ch->submit(sl.req);
  }
  static void cb(IoRequest& r, void* arg) {
    auto* sl = static_cast<Slot*>(arg);
    Loop* l = sl->loop;
    if (r.status != IoStatus::kSuccess) l->errors++;
    ++l->done;
    if (l->done == l->warm) l->allocs_at_warm = t_allocs;
    if (l->done + l->outstanding - 1 < l->total) {
      l->issue(*sl);
      return;
    }
    if (--l->outstanding == 0) {
      l->allocs_at_end = t_allocs;
      l->finished->count_down();
    }
  }
};

// `timer_allowance`: allocations tolerated over the ~55,000 measured I/Os for periodic
// timers (a reactor timer is a map node): they scale with time, not with I/O.
inline void expect_no_alloc(Env& env, const std::string& name, uint64_t timer_allowance = 0) {
  auto desc = env.reg->open(name);
  ASSERT_TRUE(desc);
  Bdev& b = *desc->bdev();
  Loop l;
  l.slots = b.num_blocks();
  l.warm = 5000;
  l.total = 60000;
  std::latch fin(1);
  l.finished = &fin;
  for (int i = 0; i < 32; ++i) {
    auto sl = std::make_unique<Loop::Slot>();
    sl->loop = &l;
    sl->iov = {sl->buf.data(), 4096};
    sl->req.iovs = &sl->iov;
    sl->req.iovcnt = 1;
    sl->req.num_blocks = 1;
    sl->req.cb = &Loop::cb;
    sl->req.cb_arg = sl.get();
    l.s.push_back(std::move(sl));
  }
  reactor::Reactor& r = env.group.at(0);
  r.send([&] {
    l.ch = &desc->channel(r);
    l.outstanding = 32;
    for (auto& sl : l.s) l.issue(*sl);
  });
  fin.wait();
  EXPECT_EQ(l.errors, 0u) << name;
  EXPECT_GT(l.allocs_at_warm, 0u) << "the counter must see the channel's creation";
  EXPECT_LE(l.allocs_at_end - l.allocs_at_warm, timer_allowance)
      << name << ": the I/O path allocated in steady state";
}

}  // namespace castor::bdev::test
