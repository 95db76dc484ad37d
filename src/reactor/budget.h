#pragma once
// A byte budget owned by one reactor: the front-end targets charge the data buffers of the
// requests their clients have in flight on that reactor, so that many connections
// together cannot make the engine allocate without bound (each connection also has its
// own, smaller, limit). A target keeps one per reactor (budget / reactors each), so
// charging takes no lock and no atomic.
//
// Contract: every method runs on the owning reactor's thread.

#include <algorithm>
#include <cstdint>
#include <vector>

namespace castor::reactor {

class ByteBudget {
 public:
  // Told when bytes are free again after a charge was refused.
  struct Waiter {
    virtual ~Waiter() = default;
    // The usage fell to half the limit or less. The waiter is no longer registered; it
    // may charge (and wait) again from here.
    virtual void budget_available() = 0;
  };

  // limit 0: unlimited.
  explicit ByteBudget(uint64_t limit = 0) : limit_(limit) {}

  // Takes n bytes if they fit, or if nothing is charged (one request alone always fits,
  // whatever its size). False: nothing taken.
  bool try_charge(uint64_t n) {
    if (limit_ && used_ && used_ + n > limit_) return false;
    used_ += n;
    peak_ = std::max(peak_, used_);
    return true;
  }
  // Returns n bytes taken by try_charge(). Wakes the waiters once the usage is at most
  // half the limit (not at the first free byte: fewer pause/resume round trips).
  void release(uint64_t n) {
    used_ -= n;
    if (!waiters_.empty() && used_ <= limit_ / 2) {
      std::vector<Waiter*> w;
      w.swap(waiters_);
      for (Waiter* x : w) x->budget_available();
    }
  }
  // Registers w for one budget_available() call. REQUIRES: w not already waiting.
  void wait(Waiter* w) { waiters_.push_back(w); }
  // Unregisters w (a connection closing while it waits); no-op if not waiting.
  void cancel_wait(Waiter* w) { std::erase(waiters_, w); }

  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_; }
  uint64_t peak() const { return peak_; }

 private:
  uint64_t limit_;
  uint64_t used_ = 0;
  uint64_t peak_ = 0;
  std::vector<Waiter*> waiters_;
};

}  // namespace castor::reactor
