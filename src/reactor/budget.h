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
#include <deque>

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
    ++charges_;
    peak_ = std::max(peak_, used_);
    return true;
  }
  // Returns n bytes taken by try_charge(). Once the usage is at most half the limit (not
  // at the first free byte: fewer pause/resume round trips) tells the waiters, oldest
  // first. Fair: a waiter told that still cannot charge (it waits again from its
  // callback without having charged anything) keeps its place at the head and the round
  // stops there, so the ones behind it are not told before it; a waiter that charged and
  // then waits again for a further request goes to the back. (Without this, a connection
  // streaming large reads re-registered ahead of the others at every release and starved
  // them for as long as it had requests.)
  void release(uint64_t n) {
    used_ -= n;
    if (waking_ || waiters_.empty() || used_ > limit_ / 2) return;
    waking_ = true;
    for (size_t round = waiters_.size(); round > 0 && !waiters_.empty(); --round) {
      told_ = waiters_.front();
      waiters_.pop_front();
      told_charges_ = charges_;
      told_refused_ = false;
      told_->budget_available();
      told_ = nullptr;
      if (told_refused_) break;
    }
    waking_ = false;
  }
  // Registers w for one budget_available() call. REQUIRES: w not already waiting.
  void wait(Waiter* w) {
    if (w == told_ && charges_ == told_charges_) {
      told_refused_ = true;  // keeps its place
      waiters_.push_front(w);
      return;
    }
    waiters_.push_back(w);
  }
  // Unregisters w (a connection closing while it waits); no-op if not waiting.
  void cancel_wait(Waiter* w) { std::erase(waiters_, w); }

  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_; }
  uint64_t peak() const { return peak_; }

 private:
  uint64_t limit_;
  uint64_t used_ = 0;
  uint64_t peak_ = 0;
  uint64_t charges_ = 0;  // successful try_charge() calls, to tell whether a told waiter charged
  std::deque<Waiter*> waiters_;  // oldest first
  bool waking_ = false;          // in release()'s round: a nested release() tells nobody
  Waiter* told_ = nullptr;       // the waiter release() is telling
  uint64_t told_charges_ = 0;    // charges_ when it was told
  bool told_refused_ = false;    // it waited again without charging
};

}  // namespace castor::reactor
