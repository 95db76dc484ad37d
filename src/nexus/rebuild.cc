#include "nexus/rebuild.h"

#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/clock.h"

namespace castor::nexus {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;

namespace {
std::atomic<uint64_t> g_lock_ids{1};
}

RebuildJob::RebuildJob(Nexus& nexus, std::shared_ptr<Child> dest, bool partial,
                       std::vector<uint64_t> segments, const RebuildOptions& opts,
                       reactor::Reactor& home)
    : nexus_(nexus),
      dest_(std::move(dest)),
      partial_(partial),
      segments_(std::move(segments)),
      opts_(opts),
      home_(home),
      seg_blocks_(nexus.segment_blocks()),
      block_size_(nexus.block_size()),
      nexus_blocks_(nexus.num_blocks()) {
  uint64_t nseg = (nexus_blocks_ + seg_blocks_ - 1) / seg_blocks_;
  if (partial_) {
    std::erase_if(segments_, [nseg](uint64_t s) { return s >= nseg; });
    total_segments_ = segments_.size();
    for (uint64_t s : segments_) {
      total_blocks_ += std::min(seg_blocks_, nexus_blocks_ - s * seg_blocks_);
    }
  } else {
    total_segments_ = nseg;
    total_blocks_ = nexus_blocks_;
  }
  for (uint32_t i = 0; i < opts_.parallel_segments; ++i) {
    auto t = std::make_unique<Task>();
    t->buf = bdev::DmaBuffer(seg_blocks_ * block_size_);
    if (opts_.verify) t->vbuf = bdev::DmaBuffer(seg_blocks_ * block_size_);
    tasks_.push_back(std::move(t));
  }
  source_.store(pick_source(nullptr));
}

Child* RebuildJob::pick_source(Child* not_this) const {
  Child* remote = nullptr;
  for (size_t i = 0; i < kMaxChildren; ++i) {
    Child* c = nexus_.child_at(i);
    if (!c || c == dest_.get() || c == not_this || c->detaching.load() ||
        c->state() != ChildState::kHealthy) {
      continue;
    }
    if (c->local) return c;
    if (!remote) remote = c;
  }
  return remote;
}

void RebuildJob::start() {
  start_unix_ms_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  start_ns_.store(mono_ns());
  // Before the first segment is locked (kick runs on the home reactor after this): from
  // here, writes to segments still to copy may skip the destination.
  SegmentLog& pending = *dest_->copy_pending;
  pending.clear();
  dest_->writes_deferred.store(0);
  if (opts_.defer_writes) {
    if (partial_) {
      for (uint64_t s : segments_) pending.mark_segment(s);
    } else {
      pending.mark_all();
    }
  }
  spdlog::info("nexus={} rebuild start child={} partial={} segments={} blocks={}", nexus_.name(),
               dest_->uri, partial_, total_segments_, total_blocks_);
  home_.send([self = shared_from_this()] {
    self->started_ = true;
    self->kick();
  });
}

void RebuildJob::pause() {
  home_.send([self = shared_from_this()] {
    if (self->state_.load() == RebuildState::kRunning) self->state_.store(RebuildState::kPaused);
  });
}

void RebuildJob::resume() {
  home_.send([self = shared_from_this()] {
    if (self->state_.load() == RebuildState::kPaused) {
      self->state_.store(RebuildState::kRunning);
      self->kick();
    }
  });
}

void RebuildJob::stop() {
  home_.send([self = shared_from_this()] {
    if (self->final()) return;
    self->stop_requested_ = true;
    self->kick();
  });
}

void RebuildJob::abort_copies(const Child* only) {
  home_.send([self = shared_from_this(), only] {
    if (self->detached_.load()) return;
    for (auto& t : self->tasks_) {
      // The child is open: the nexus closes it only once the job is quiescent or detached.
      if (t->out && (!only || t->to == only)) (void)t->to->desc.channel(self->home_).abort(t->io);
    }
  });
}

bool RebuildJob::wait_quiescent(uint64_t deadline_ns) const {
  std::unique_lock lk(quiescent_mu_);
  for (;;) {
    if (quiescent_.load()) return true;
    const uint64_t now = mono_ns();
    if (now >= deadline_ns) return false;
    quiescent_cv_.wait_for(lk, std::chrono::nanoseconds(deadline_ns - now));
  }
}

size_t RebuildJob::detach() {
  size_t out = 0;
  nexus_.reactors().run_on(home_.id(), [&](reactor::Reactor&) {
    detached_.store(true);
    if (timer_armed_) {
      home_.cancel_timer(timer_);
      timer_armed_ = false;
    }
    for (auto& t : tasks_) out += t->out ? 1 : 0;
  });
  return out;
}

void RebuildJob::set_quiescent() {
  // Notified under the mutex: a waiter holds a reference to the job, and nothing here
  // touches the job once the mutex is released.
  std::lock_guard lk(quiescent_mu_);
  quiescent_.store(true);
  quiescent_cv_.notify_all();
}

RebuildInfo RebuildJob::info() const {
  RebuildInfo i;
  i.child_uri = dest_->uri;
  if (Child* s = source_.load()) i.source_uri = s->uri;
  i.state = state_.load();
  i.partial = partial_;
  i.blocks_total = total_blocks_;
  i.blocks_done = blocks_done_.load();
  i.blocks_skipped = blocks_skipped_.load();
  i.segments_total = total_segments_;
  i.segments_done = segments_done_.load();
  i.segment_blocks = seg_blocks_;
  i.block_size = block_size_;
  i.start_unix_ms = start_unix_ms_;
  uint64_t start = start_ns_.load();
  uint64_t end = end_ns_.load();
  if (start) {
    uint64_t el = (end ? end : mono_ns()) - start;
    i.elapsed_ms = el / 1'000'000;
    if (el > 0) {
      i.rate_bytes_s = static_cast<uint64_t>(static_cast<double>(i.blocks_done) * block_size_ *
                                             1e9 / static_cast<double>(el));
    }
  }
  std::lock_guard lk(err_mu_);
  i.error = error_;
  return i;
}

// ---- home reactor ----

uint32_t RebuildJob::rate_now() {
  if (opts_.busy_rate_mb_s == 0) return opts_.rate_mb_s;
  const uint64_t now = mono_ns();
  // The nexus's own statistics count the application's I/O (the copies go to the
  // children directly); read every kBusyCheckNs, not per segment.
  if (now >= app_checked_ns_ + kBusyCheckNs) {
    app_checked_ns_ = now;
    const bdev::BdevStatsSnapshot st = nexus_.stats();
    uint64_t ops = 0;
    for (const auto& t : st.per_type) ops += t.ops;
    if (ops != app_ops_seen_) {
      app_ops_seen_ = ops;
      app_busy_until_ns_ = now + RebuildOptions::kBusyWindowMs * 1'000'000;
    }
  }
  if (now >= app_busy_until_ns_) return opts_.rate_mb_s;
  return opts_.rate_mb_s ? std::min(opts_.rate_mb_s, opts_.busy_rate_mb_s) : opts_.busy_rate_mb_s;
}

bool RebuildJob::throttled() {
  if (rate_now() == 0) return false;
  const uint64_t now = mono_ns();
  if (now >= throttle_ns_) return false;
  if (!timer_armed_) {
    timer_armed_ = true;
    timer_ = home_.add_timer(throttle_ns_ - now, [self = shared_from_this()] {
      self->timer_armed_ = false;
      self->kick();
    });
  }
  return true;
}

void RebuildJob::charge(Task* t) {
  t->charged_ns = 0;
  const uint32_t rate = rate_now();
  if (rate == 0) return;
  const uint64_t now = mono_ns();
  throttle_ns_ = std::max(throttle_ns_, now > kThrottleSlackNs ? now - kThrottleSlackNs : 0);
  t->charged_ns = static_cast<uint64_t>(static_cast<double>(t->n * block_size_) * 1e9 / (rate * 1048576.0));
  throttle_ns_ += t->charged_ns;
}

void RebuildJob::kick() {
  if (!started_ || final() || detached_.load()) return;
  while (!stop_requested_ && !failed_ && state_.load() == RebuildState::kRunning &&
         inflight_ < tasks_.size() && cursor_ < total_segments_ && !throttled()) {
    Task* t = nullptr;
    for (auto& tp : tasks_) {
      if (!tp->busy) {
        t = tp.get();
        break;
      }
    }
    t->busy = true;
    t->seg = partial_ ? segments_[cursor_] : cursor_;
    ++cursor_;
    ++inflight_;
    begin(t);
  }
  if (inflight_ > 0) return;
  if (stop_requested_) {
    finish(RebuildState::kStopped);
  } else if (failed_) {
    finish(RebuildState::kFailed);
  } else if (cursor_ >= total_segments_ && state_.load() == RebuildState::kRunning) {
    // Every segment is written; the destination is in sync only once they are durable
    // (the source's copy of flushed data was durable, and it may be removed next).
    if (!dest_flushed_ && dest_->bdev->supports(IoType::kFlush)) return flush_dest();
    finish(RebuildState::kCompleted);
  }
}

void RebuildJob::flush_dest() {
  Task* t = tasks_.front().get();
  t->busy = true;
  ++inflight_;
  t->first = t->n = 0;
  submit(t, dest_.get(), IoType::kFlush, nullptr, &RebuildJob::on_flush);
}

void RebuildJob::on_flush(Task* t) {
  if (stop_requested_) {
    task_done(t, false);
    return;
  }
  if (t->io.status != IoStatus::kSuccess) {
    fail(fmt::format("destination {} flush failed: {}", dest_->uri, bdev::io_status_name(t->io.status)), true);
  } else {
    dest_flushed_ = true;
  }
  task_done(t, false);
}

void RebuildJob::begin(Task* t) {
  t->first = t->seg * seg_blocks_;
  t->n = std::min(seg_blocks_, nexus_blocks_ - t->first);
  t->retried_source = false;
  charge(t);
  if (dest_->detaching.load() || dest_->state() != ChildState::kOutOfSync) {
    fail(fmt::format("destination {} left the write set ({}/{})", dest_->uri,
                     child_state_name(dest_->state()), fault_reason_name(dest_->reason())),
         false);
    task_done(t, false);
    return;
  }
  // Cleared before the lock is asked for, so that every reactor sees it clear once it has
  // taken the lock: a write that still skipped the destination is then in flight (the lock
  // waits for it) or done, and the copy reads it from the source.
  dest_->copy_pending->unmark_segment(t->seg);
  t->lock_id = g_lock_ids.fetch_add(1);
  nexus_.lock_range(t->lock_id, t->first, t->n, home_,
                    [self = shared_from_this(), t] { self->locked(t); });
}

void RebuildJob::locked(Task* t) {
  if (detached_.load()) return;
  if (stop_requested_ || failed_) {
    task_done(t, true);
    return;
  }
  read_source(t);
}

void RebuildJob::read_source(Task* t) {
  Child* src = source_.load();
  if (!src || src->detaching.load() || src->state() != ChildState::kHealthy) {
    src = pick_source(nullptr);
    source_.store(src);
  }
  if (!src) {
    fail("no healthy child left to rebuild from", false);
    task_done(t, true);
    return;
  }
  t->src = src;
  // Asked under the segment's range lock, so no write can allocate it meanwhile.
  if (!src->bdev->range_allocated(t->first, t->n)) {
    copy_unallocated(t);
    return;
  }
  submit(t, src, IoType::kRead, t->buf.data(), &RebuildJob::on_read);
}

// The source never wrote this segment, so it reads as zeroes: nothing is read or sent.
// A destination that holds no data there either is left alone (a thin replica stays
// thin); one that may (a reused replica, an nvmf:// child whose allocation is unknown)
// gets zeroes, by Write Zeroes where it supports that.
void RebuildJob::copy_unallocated(Task* t) {
  blocks_skipped_.fetch_add(t->n);
  throttle_ns_ -= t->charged_ns;  // moves no data: not charged to the throttle
  t->charged_ns = 0;
  if (!dest_->bdev->range_allocated(t->first, t->n)) {
    segment_done(t);
    return;
  }
  if (opts_.verify || !dest_->bdev->supports(IoType::kWriteZeroes)) {
    std::memset(t->buf.data(), 0, t->n * block_size_);
  }
  if (dest_->bdev->supports(IoType::kWriteZeroes)) {
    submit(t, dest_.get(), IoType::kWriteZeroes, nullptr, &RebuildJob::on_write);
  } else {
    submit(t, dest_.get(), IoType::kWrite, t->buf.data(), &RebuildJob::on_write);
  }
}

void RebuildJob::submit(Task* t, Child* c, IoType type, uint8_t* buf,
                        void (RebuildJob::*next)(Task*)) {
  t->iov = {buf, t->n * block_size_};
  t->io.type = type;
  t->io.offset_blocks = t->first;
  t->io.num_blocks = t->n;
  t->io.iovs = buf ? &t->iov : nullptr;
  t->io.iovcnt = buf ? 1 : 0;
  t->io.cb_arg = t;
  t->job = this;
  t->next = next;
  t->io.cb = [](IoRequest&, void* arg) {
    auto* task = static_cast<Task*>(arg);
    task->out = false;
    // Its nexus may be gone: the job (kept alive for this) is all a late completion touches.
    if (task->job->detached_.load()) return;
    (task->job->*(task->next))(task);
  };
  t->out = true;
  t->to = c;
  c->desc.channel(home_).submit(t->io);
}

void RebuildJob::on_read(Task* t) {
  if (stop_requested_) {  // stopped (and perhaps aborted): nothing more goes out
    task_done(t, true);
    return;
  }
  if (t->io.status != IoStatus::kSuccess) {
    Child* other = t->retried_source ? nullptr : pick_source(t->src);
    if (other && !stop_requested_ && !failed_) {
      t->retried_source = true;
      source_.store(other);
      t->src = other;
      submit(t, other, IoType::kRead, t->buf.data(), &RebuildJob::on_read);
      return;
    }
    fail(fmt::format("source {} read failed at block {}: {}", t->src->uri, t->first,
                     bdev::io_status_name(t->io.status)),
         false);
    task_done(t, true);
    return;
  }
  if (dest_->detaching.load() || dest_->state() != ChildState::kOutOfSync) {
    fail(fmt::format("destination {} left the write set ({}/{})", dest_->uri,
                     child_state_name(dest_->state()), fault_reason_name(dest_->reason())),
         false);
    task_done(t, true);
    return;
  }
  submit(t, dest_.get(), IoType::kWrite, t->buf.data(), &RebuildJob::on_write);
}

void RebuildJob::on_write(Task* t) {
  if (stop_requested_) {
    task_done(t, true);
    return;
  }
  if (t->io.status != IoStatus::kSuccess) {
    fail(fmt::format("destination {} write failed at block {}: {}", dest_->uri, t->first,
                     bdev::io_status_name(t->io.status)),
         true);
    task_done(t, true);
    return;
  }
  if (opts_.verify) {
    submit(t, dest_.get(), IoType::kRead, t->vbuf.data(), &RebuildJob::on_verify);
    return;
  }
  segment_done(t);
}

void RebuildJob::on_verify(Task* t) {
  if (stop_requested_) {
    task_done(t, true);
    return;
  }
  if (t->io.status != IoStatus::kSuccess) {
    fail(fmt::format("destination {} verify read failed at block {}: {}", dest_->uri, t->first,
                     bdev::io_status_name(t->io.status)),
         true);
    task_done(t, true);
    return;
  }
  if (std::memcmp(t->buf.data(), t->vbuf.data(), t->n * block_size_) != 0) {
    fail(fmt::format("verify mismatch on {} in segment {} (blocks {}..{})", dest_->uri, t->seg,
                     t->first, t->first + t->n - 1),
         true);
    task_done(t, true);
    return;
  }
  segment_done(t);
}

void RebuildJob::segment_done(Task* t) {
  blocks_done_.fetch_add(t->n);
  segments_done_.fetch_add(1);
  task_done(t, true);
}

void RebuildJob::task_done(Task* t, bool unlock) {
  if (unlock) nexus_.unlock_range(t->lock_id);
  t->busy = false;
  --inflight_;
  kick();
}

void RebuildJob::fail(const std::string& why, bool dest) {
  if (failed_) return;
  failed_ = true;
  if (dest) dest_failed_.store(true);
  {
    std::lock_guard lk(err_mu_);
    error_ = why;
  }
  spdlog::error("nexus={} rebuild of {} failed: {}", nexus_.name(), dest_->uri, why);
}

void RebuildJob::finish(RebuildState s) {
  if (timer_armed_) {
    home_.cancel_timer(timer_);
    timer_armed_ = false;
  }
  end_ns_.store(mono_ns());
  // Writes reach the destination again (it is faulted next unless the copy completed).
  dest_->copy_pending->clear();
  state_.store(s);
  spdlog::info("nexus={} rebuild of {} {}: {} of {} segments ({} blocks unallocated on the "
               "source, not copied; {} application writes left to the copy)",
               nexus_.name(), dest_->uri, rebuild_state_name(s), segments_done_.load(),
               total_segments_, blocks_skipped_.load(), dest_->writes_deferred.load());
  // Posted before the job says it is quiescent, so that whoever waits for that and then
  // for the nexus's internal work (shutdown) waits for this too; the nexus may be freed
  // as soon as both are done, so nothing below touches it.
  nexus_.post_control([n = &nexus_, self = shared_from_this()] { n->finish_rebuild(self); });
  set_quiescent();
}

}  // namespace castor::nexus
