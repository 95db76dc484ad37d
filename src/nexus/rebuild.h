#pragma once
// RebuildJob: copies a nexus' data from a healthy child (the source) to an OutOfSync
// child (the destination), segment by segment, on one reactor ("home"). The destination
// is already in the write set, so every new application write reaches it, except those
// whose segments are all still to copy (RebuildOptions::defer_writes, Child::
// copy_pending): the copy carries them. Each segment is copied under a nexus range lock
// that holds only the application writes overlapping that segment, so the copy never
// overwrites newer data, and its pending bit is cleared before the lock is asked for.
//
// Full rebuild: every segment. Partial rebuild: only the segments of the destination's
// missed-write log. A segment the source never allocated (a thin replica's unwritten
// clusters, Bdev::range_allocated) is not read or sent: the destination gets Write Zeroes
// there, or nothing if it has not allocated the segment either. Up to
// `parallel_segments` segments are in flight; `rate_mb_s` (0 = unlimited) throttles, and
// `busy_rate_mb_s` while the nexus serves application I/O; `verify` reads the destination
// back and compares each segment.
// The source is the first healthy child (local first); if it leaves the read set, the
// job switches to another healthy child. A failed source read or destination write fails
// the job (the destination then becomes Faulted(RebuildFailed) if it was at fault).
//
// The copy ends with a flush of the destination, so that a child marked healthy holds
// durably what the source held.
//
// The nexus applies the outcome (Healthy and recorded healthy, or Faulted) on its worker
// thread once the job is final and idle.
//
// Lifetime: a copy in flight points into the job (its Task: request, buffers) and its
// completion runs the job, which reaches the nexus and the manager's worker. So the job
// is never freed while a copy is out: the nexus waits until it is quiescent (notified,
// wait_quiescent) before it lets go of it, and one that never becomes quiescent (a copy
// stuck on a hung child at engine exit) is detached and kept for the life of the process.

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nexus/nexus.h"

namespace castor::nexus {

class RebuildJob : public std::enable_shared_from_this<RebuildJob> {
 public:
  // `segments`: for a partial rebuild, the segment numbers to copy (else ignored).
  RebuildJob(Nexus& nexus, std::shared_ptr<Child> dest, bool partial,
             std::vector<uint64_t> segments, const RebuildOptions& opts,
             reactor::Reactor& home);

  // Any thread. Control messages are delivered to the home reactor in order. Once a stop
  // has reached it, the job submits nothing new: a copy that returns after the stop ends
  // there (the destination is left out of sync anyway).
  void start();
  void pause();
  void resume();
  void stop();
  // Any thread, after stop(): gives up the copies in flight on children that can abort a
  // request (BdevChannel::abort; an nvmf:// child hands back a request queued for a lost
  // connection at once), which then complete as aborted. The others return whenever their
  // device answers. `only`: just the copies in flight to or from that child.
  void abort_copies(const Child* only = nullptr);
  // Not on a reactor thread. Waits until quiescent() or `deadline_ns` (mono_ns()); true if
  // quiescent. Woken by the job itself, not polled.
  bool wait_quiescent(uint64_t deadline_ns) const;
  // For a nexus that must be freed while this job still has copies out (engine exit, a
  // child that cannot abort and never answers): from now on their completions touch
  // nothing but the job (no nexus, no worker, no child). The caller keeps the job for the
  // life of the process (keep_forever), so the memory those requests point to stays
  // valid. Not on a reactor thread; returns once the home reactor applied it, with the
  // number of copies still out.
  size_t detach();
  bool detached() const { return detached_.load(); }

  RebuildState state() const { return state_.load(); }
  bool final() const {
    auto s = state();
    return s == RebuildState::kStopped || s == RebuildState::kCompleted ||
           s == RebuildState::kFailed;
  }
  // Final and no copy in flight (safe to apply the outcome and drop the destination).
  bool quiescent() const { return quiescent_.load(); }
  // True when the job failed because of the destination.
  bool dest_failed() const { return dest_failed_.load(); }
  Child* source() const { return source_.load(); }
  const std::shared_ptr<Child>& dest() const { return dest_; }
  RebuildInfo info() const;

  // Set by the nexus once it applied the outcome.
  std::atomic<bool> applied{false};

 private:
  struct Task {
    uint64_t seg = 0, first = 0, n = 0, lock_id = 0;
    Child* src = nullptr;
    bool busy = false;
    bool retried_source = false;
    bool out = false;        // `io` is submitted and has not completed
    uint64_t charged_ns = 0;  // what begin() charged to the throttle (refunded if unread)
    Child* to = nullptr;     // the child `io` went to (abort_copies)
    RebuildJob* job = nullptr;
    void (RebuildJob::*next)(Task*) = nullptr;  // continuation of the request in flight
    bdev::DmaBuffer buf, vbuf;
    bdev::IoRequest io;
    iovec iov{};
  };

  void kick();
  bool throttled();
  void charge(Task* t);
  void begin(Task* t);
  void locked(Task* t);
  void read_source(Task* t);
  void copy_unallocated(Task* t);
  void on_read(Task* t);
  void on_write(Task* t);
  void on_verify(Task* t);
  void flush_dest();
  void on_flush(Task* t);
  void segment_done(Task* t);
  void task_done(Task* t, bool unlock);
  void fail(const std::string& why, bool dest);
  void finish(RebuildState s);
  void set_quiescent();
  Child* pick_source(Child* not_this) const;
  void submit(Task* t, Child* c, bdev::IoType type, uint8_t* buf, void (RebuildJob::*next)(Task*));

  Nexus& nexus_;
  std::shared_ptr<Child> dest_;
  const bool partial_;
  std::vector<uint64_t> segments_;
  const RebuildOptions opts_;
  reactor::Reactor& home_;
  const uint64_t seg_blocks_;
  const uint32_t block_size_;
  const uint64_t nexus_blocks_;
  uint64_t total_segments_ = 0;
  uint64_t total_blocks_ = 0;

  // Home reactor only.
  std::vector<std::unique_ptr<Task>> tasks_;
  uint64_t cursor_ = 0;
  uint32_t inflight_ = 0;
  // The throttle: a virtual clock that each segment begun advances by its bytes at the
  // rate then in force (rate_now()); segments begin while it is not ahead of now. It
  // never lags now by more than kThrottleSlackNs, so an idle spell (a pause, a slow
  // source) builds no burst.
  uint64_t throttle_ns_ = 0;
  static constexpr uint64_t kThrottleSlackNs = 10'000'000;
  uint64_t app_ops_seen_ = 0;       // the nexus's completed operations at the last look
  uint64_t app_checked_ns_ = 0;     // when that was
  static constexpr uint64_t kBusyCheckNs = 5'000'000;
  uint64_t app_busy_until_ns_ = 0;  // application I/O seen: busy until then
  uint32_t rate_now();            // MiB/s in force now (0: unlimited)
  bool stop_requested_ = false;
  bool failed_ = false;
  bool started_ = false;
  bool dest_flushed_ = false;  // the final flush of the destination completed
  bool timer_armed_ = false;
  reactor::Reactor::TimerId timer_{};

  // Read by any thread.
  std::atomic<RebuildState> state_{RebuildState::kRunning};
  std::atomic<bool> quiescent_{false};
  std::atomic<bool> detached_{false};  // written on the home reactor
  mutable std::mutex quiescent_mu_;    // with quiescent_cv_: wait_quiescent()
  mutable std::condition_variable quiescent_cv_;
  std::atomic<bool> dest_failed_{false};
  std::atomic<Child*> source_{nullptr};
  std::atomic<uint64_t> blocks_done_{0};
  std::atomic<uint64_t> blocks_skipped_{0};
  std::atomic<uint64_t> segments_done_{0};
  std::atomic<uint64_t> start_ns_{0};
  std::atomic<uint64_t> end_ns_{0};
  uint64_t start_unix_ms_ = 0;
  mutable std::mutex err_mu_;
  std::string error_;
};

}  // namespace castor::nexus
