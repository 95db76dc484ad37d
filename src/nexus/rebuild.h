#pragma once
// RebuildJob: copies a nexus' data from a healthy child (the source) to an OutOfSync
// child (the destination), segment by segment, on one reactor ("home"). The destination
// is already in the write set, so every new application write reaches it; each segment
// is copied under a nexus range lock that holds only the application writes overlapping
// that segment, so the copy never overwrites newer data.
//
// Full rebuild: every segment. Partial rebuild: only the segments of the destination's
// missed-write log. A segment the source never allocated (a thin replica's unwritten
// clusters, Bdev::range_allocated) is not read or sent: the destination gets Write Zeroes
// there, or nothing if it has not allocated the segment either. Up to `parallel_segments` segments are in flight; `rate_mb_s` (0 =
// unlimited) throttles; `verify` reads the destination back and compares each segment.
// The source is the first healthy child (local first); if it leaves the read set, the
// job switches to another healthy child. A failed source read or destination write fails
// the job (the destination then becomes Faulted(RebuildFailed) if it was at fault).
//
// The copy ends with a flush of the destination, so that a child marked healthy holds
// durably what the source held.
//
// The nexus applies the outcome (Healthy and recorded healthy, or Faulted) on its worker
// thread once the job is final and idle.

#include <atomic>
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

  // Any thread. Control messages are delivered to the home reactor in order.
  void start();
  void pause();
  void resume();
  void stop();

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
    RebuildJob* job = nullptr;
    void (RebuildJob::*next)(Task*) = nullptr;  // continuation of the request in flight
    bdev::DmaBuffer buf, vbuf;
    bdev::IoRequest io;
    iovec iov{};
  };

  void kick();
  bool throttled();
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
  uint64_t bytes_issued_ = 0;
  bool stop_requested_ = false;
  bool failed_ = false;
  bool started_ = false;
  bool dest_flushed_ = false;  // the final flush of the destination completed
  bool timer_armed_ = false;
  reactor::Reactor::TimerId timer_{};

  // Read by any thread.
  std::atomic<RebuildState> state_{RebuildState::kRunning};
  std::atomic<bool> quiescent_{false};
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
