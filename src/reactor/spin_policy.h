#pragma once
// How long an idle reactor keeps polling before it sleeps: the spin window.
//
// Sleeping is not free. On the virtual machines Castor is measured on, a reactor that
// sleeps in io_uring_enter and is woken by a peer's data spends 25-40 us of its own CPU
// per sleep (the halt, the wake-up interrupt, the timer reprogramming) and answers 25-30
// us later than a polling one (docs/benchmarks.md, "CPU per I/O against the offered
// load"). Polling costs exactly the time it polls. So, as in any ski-rental problem,
// polling pays while the next work comes within about the cost of a sleep, and sleeping
// pays after that.
//
// The policy is KVM's halt polling, adapted: every idle period ends with work, and the
// policy is told how long the period lasted and whether the reactor slept in it.
//  - Work caught while polling: the window stays.
//  - Work that came after the reactor went to sleep, but within `max_ns` of the period's
//    start: a longer window would have caught it, so the window grows to cover that gap
//    (with a quarter to spare), capped at `max_ns`.
//  - Work that came later than `max_ns`: polling would not have paid; the window halves
//    (and drops to 0 below kMinNs).
// An adaptive window starts at 0: a reactor polls only once it has seen that polling
// would have paid. A fixed window (adaptive = false) is always `max_ns`.
//
// Why the window has to grow: two reactors that serve each other one request at a time
// (a host and a target at queue depth 1) each see the next request come one round trip
// after they went idle. If both windows are shorter than a wake-up, each side's request
// reaches a sleeping peer, whose answer comes only after its wake-up, which the other
// side's window misses too: both sleep on every request and stay that way (14 K IOPS
// measured, against 70 K or more once one side's window covers the other's wake-up).
// Growing the window on short sleeps breaks that state; shrinking on long ones keeps a
// lightly loaded reactor asleep (1 K IOPS: a sleep per request and nothing else).
//
// Polling never holds a CPU another thread wants: each polling turn of the reactor's loop
// yields the CPU (sched_yield, ~0.5 us here when no other thread wants it). On a core
// shared with the application it serves, the application then runs while the reactor
// polls, so its next request arrives during the poll instead of after it.
//
// Yields that keep taking long (kLongYieldsToPause of them over kLongYieldNs within
// kBurstNs) mean a thread that computes rather than waits on I/O shares the core: it runs
// a whole time slice (milliseconds) each time, during which the reactor, runnable but not
// sleeping, cannot be woken early by its work. Polling then costs a time slice of latency
// per request (250 IOPS at QD1 beside a CPU hog, against 6 K sleeping at once), so it
// pauses: the window is 0 for 100 ms, twice as long after each pause that such a burst
// follows again (at most 5 s), and the backoff starts over once none was seen for
// kCalmNs. A single long yield is not enough: kernel threads that run now and then (this
// VM's kdamond, every ~100 ms) would keep a client's polling paused for good.
//
// Not thread-safe: the reactor's thread only.

#include <algorithm>
#include <cstdint>

namespace castor::reactor {

class SpinPolicy {
 public:
  static constexpr uint64_t kMinNs = 1'000;               // below this a window is 0
  static constexpr uint64_t kLongYieldNs = 200'000;       // a yield that let a hog run
  static constexpr uint64_t kLongYieldsToPause = 4;       // ... this many of them
  static constexpr uint64_t kBurstNs = 50'000'000;        // ... within this
  static constexpr uint64_t kFirstPauseNs = 100'000'000;  // then doubling, at most:
  static constexpr uint64_t kMaxPauseNs = 5'000'000'000;
  static constexpr uint64_t kCalmNs = 10'000'000'000;     // no long yield: backoff resets

  SpinPolicy(uint64_t max_ns, bool adaptive)
      : max_ns_(max_ns), adaptive_(adaptive), window_ns_(adaptive ? 0 : max_ns) {}

  // The current window at monotonic time `now`: keep polling until the idle period is
  // this long (0 while paused).
  uint64_t window_ns(uint64_t now) const { return now < paused_until_ ? 0 : window_ns_; }
  uint64_t max_ns() const { return max_ns_; }

  // An idle period of `idle_ns` just ended with work at `now`; `slept` says whether the
  // reactor slept in it (false: the work was found while polling).
  void idle_ended(uint64_t idle_ns, bool slept, uint64_t now) {
    if (!adaptive_ || !slept || now < paused_until_) return;
    if (idle_ns <= max_ns_) {
      ++grows_;
      window_ns_ = std::min(max_ns_, std::max(window_ns_, idle_ns + idle_ns / 4));
    } else if (window_ns_ > 0) {
      ++shrinks_;
      window_ns_ /= 2;
      if (window_ns_ < kMinNs) window_ns_ = 0;
    }
  }

  // A yield while polling, during which another thread ran, returned at `now` after
  // `took_ns`.
  void yielded(uint64_t took_ns, uint64_t now) {
    if (took_ns <= kLongYieldNs) return;
    if (now - burst_start_ > kBurstNs) {
      burst_start_ = now;
      burst_ = 0;
    }
    if (++burst_ < kLongYieldsToPause) return;
    burst_ = 0;
    if (now - last_long_yield_ > kCalmNs) pause_ns_ = 0;
    last_long_yield_ = now;
    pause_ns_ = pause_ns_ ? std::min(2 * pause_ns_, kMaxPauseNs) : kFirstPauseNs;
    paused_until_ = now + pause_ns_;
    ++pauses_;
  }

  uint64_t grows() const { return grows_; }
  uint64_t shrinks() const { return shrinks_; }
  uint64_t pauses() const { return pauses_; }

 private:
  const uint64_t max_ns_;
  const bool adaptive_;
  uint64_t window_ns_;
  uint64_t paused_until_ = 0, pause_ns_ = 0, last_long_yield_ = 0;
  uint64_t burst_start_ = 0, burst_ = 0;  // long yields in the current kBurstNs
  uint64_t grows_ = 0, shrinks_ = 0, pauses_ = 0;
};

}  // namespace castor::reactor
