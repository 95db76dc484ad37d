#include "nexus/nexus_channel.h"

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/clock.h"

namespace castor::nexus {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;

namespace {
constexpr uint8_t bit(int s) { return static_cast<uint8_t>(1u << s); }
}  // namespace

NexusChannel::NexusChannel(Nexus& nexus, reactor::Reactor& r)
    : BdevChannel(nexus, r), nexus_(nexus), inflight_(nexus.inflight_writes()) {
  timeout_ns_ = uint64_t{nexus.options().child_io_timeout_ms} * 1'000'000;
  scan_ns_ = std::min<uint64_t>(timeout_ns_ / 4, 100'000'000);
  if (scan_ns_ == 0) scan_ns_ = 1'000'000;
  sync();
  for (const auto& l : nexus.lock_snapshot()) locks_.push_back({l.id, l.first, l.n, 0, 0, nullptr});
  record_waiters_.reserve(16);
}

NexusChannel::~NexusChannel() {
  if (timer_armed_) reactor().cancel_timer(timer_);
  if (retry_armed_) reactor().cancel_timer(retry_timer_);
}

void NexusChannel::sync() {
  for (size_t i = 0; i < kMaxChildren; ++i) {
    Child* c = nexus_.child_at(i);
    Slot& s = slots_[i];
    if (c != s.child) {
      // The removal protocol empties a slot only once its child requests have returned.
      if (s.outstanding != 0) {
        spdlog::error("nexus={} slot={} changes child with {} child I/Os outstanding",
                      nexus_.name(), i, s.outstanding);
      }
      s.child = c;
      s.ch = c ? &c->desc.channel(reactor()) : nullptr;
      s.local = c ? c->local : true;
      s.bounce = s.ch && s.ch->late_read_writes();
    }
    if (!c) {
      s.readable = s.writable = s.log = s.rebuilding = false;
      continue;
    }
    ChildState st = c->state();
    bool det = c->detaching.load();
    s.readable = !det && st == ChildState::kHealthy;
    s.writable = !det && (st == ChildState::kHealthy || st == ChildState::kOutOfSync);
    s.rebuilding = s.writable && st == ChildState::kOutOfSync;
    s.log = c->log_active.load();
  }
}

// ---- submission ----

bool NexusChannel::blocked(const IoRequest& req) const {
  for (const auto& l : locks_) {
    if (overlaps(req.offset_blocks, req.num_blocks, l.first, l.n)) return true;
  }
  return false;
}

void NexusChannel::do_submit(IoRequest& req) {
  ++active_;
  if (write_like(req.type) && !admit(req)) {
    hold(req);
    return;
  }
  dispatch(req);
}

bool NexusChannel::admit(const IoRequest& req) {
  if (!locks_.empty() && blocked(req)) return false;
  if (inflight_ && req.num_blocks > 0 && !inflight_->try_mark(req.offset_blocks, req.num_blocks)) {
    overlap_held_ = true;
    return false;
  }
  return true;
}

void NexusChannel::hold(IoRequest& req) {
  // Counted so a stopping reactor waits for it.
  req.next = nullptr;
  if (held_tail_) {
    held_tail_->next = &req;
  } else {
    held_head_ = &req;
  }
  held_tail_ = &req;
  reactor().hold_stop();
  // While a write of this channel is in flight, its completion retries the held ones;
  // the timer is for a hold by another reactor's writes alone (and allocates: not on the
  // steady-state path).
  if (overlap_held_ && writes_in_flight_ == 0 && !retry_armed_) {
    retry_armed_ = true;
    retry_timer_ = reactor().add_timer(kOverlapRetryNs, [this] {
      retry_armed_ = false;
      release_held();
    });
  }
}

void NexusChannel::release_held() {
  IoRequest* q = held_head_;
  held_head_ = held_tail_ = nullptr;
  overlap_held_ = false;
  while (q) {
    IoRequest* next = static_cast<IoRequest*>(q->next);
    q->next = nullptr;
    reactor().release_stop();
    if (admit(*q)) {
      dispatch(*q);
    } else {
      hold(*q);
    }
    q = next;
  }
}

void NexusChannel::end_write(const IoRequest& req) {
  if (inflight_ && req.num_blocks > 0) inflight_->unmark(req.offset_blocks, req.num_blocks);
}

void NexusChannel::refuse(IoRequest& req, IoStatus st) {
  --active_;
  if (write_like(req.type)) {
    end_write(req);
    if (held_head_) release_held();
  }
  complete(req, st);
}

void NexusChannel::dispatch(IoRequest& req) {
  if (nexus_.fenced()) {
    refuse(req, IoStatus::kPathUnavailable);
    return;
  }
  Io* io = get_io();
  io->parent = &req;
  io->seq = ++seq_;
  if (req.type == IoType::kRead) {
    int s = pick_reader(0);
    if (s < 0) {
      put_io(io);
      refuse(req, IoStatus::kIoError);  // no healthy child: the nexus is faulted
      return;
    }
    link(io);
    io->tried_mask |= bit(s);
    io->waiting = 1;
    submit_kid(io, s);
  } else {
    uint8_t targets = 0, deferred = 0, in_sync = 0;
    for (int s = 0; s < static_cast<int>(kMaxChildren); ++s) {
      const Slot& sl = slots_[s];
      if (sl.writable) {
        targets |= bit(s);
        if (sl.readable) in_sync |= bit(s);
        if (sl.rebuilding && write_like(req.type) &&
            sl.child->copy_pending->all_set(req.offset_blocks, req.num_blocks)) {
          deferred |= bit(s);
        }
      } else if (sl.child && sl.log && write_like(req.type)) {
        note_missed(io, s);
      }
    }
    // A write the rebuild copy will carry skips its destination, as long as an in-sync
    // child takes it (the copy reads it from one: Child::copy_pending).
    if (deferred && in_sync) {
      targets &= static_cast<uint8_t>(~deferred);
      for (int s = 0; s < static_cast<int>(kMaxChildren); ++s) {
        if (deferred & bit(s)) slots_[s].child->writes_deferred.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (!targets) {
      put_io(io);
      refuse(req, IoStatus::kIoError);
      return;
    }
    link(io);
    if (write_like(req.type)) ++writes_in_flight_;
    io->waiting = static_cast<uint8_t>(__builtin_popcount(targets));
    for (int s = 0; s < static_cast<int>(kMaxChildren); ++s) {
      if (targets & bit(s)) submit_kid(io, s);
    }
  }
  arm_timer();
}

NexusChannel::Io* NexusChannel::get_io() {
  Io* io = free_;
  if (io) {
    free_ = io->next_free;
  } else {
    all_.push_back(std::make_unique<Io>());  // grows to the peak queue depth
    io = all_.back().get();
    io->ch = this;
    for (size_t s = 0; s < kMaxChildren; ++s) {
      io->child_ios[s].io = io;
      io->child_ios[s].slot = static_cast<uint8_t>(s);
      io->child_ios[s].req.cb = &NexusChannel::on_child_done;
      io->child_ios[s].req.cb_arg = &io->child_ios[s];
    }
  }
  io->outstanding = io->waiting = io->ok_mask = io->tried_mask = io->retired_mask = 0;
  io->log_wait_mask = 0;
  io->retries = 0;
  io->invalid = io->done = false;
  io->next_free = nullptr;
  return io;
}

void NexusChannel::put_io(Io* io) {
  io->parent = nullptr;
  io->next_free = free_;
  free_ = io;
}

void NexusChannel::submit_kid(Io* io, int s) {
  ChildIo& k = io->child_ios[s];
  const IoRequest& p = *io->parent;
  k.active = true;
  k.abandoned = false;
  k.req.type = p.type;
  k.req.status = IoStatus::kSuccess;
  k.req.offset_blocks = p.offset_blocks;
  k.req.num_blocks = p.num_blocks;
  k.req.fua = p.fua;  // every child makes a FUA write durable before it answers
  k.bounced = false;
  if (p.type == IoType::kRead && slots_[s].bounce && p.iovcnt > 0 && p.iovs) {
    // This child may write into the buffer after a timeout has handed it back: read
    // into the nexus's own buffer and copy on success.
    size_t len = 0;
    for (int i = 0; i < p.iovcnt; ++i) len += p.iovs[i].iov_len;
    if (k.bounce.size() < len) {
      k.bounce = bdev::DmaBuffer(len, std::max<size_t>(4096, slots_[s].child->bdev->buf_align()));
    }
    k.inline_iov[0] = {k.bounce.data(), len};
    k.req.iovs = k.inline_iov;
    k.req.iovcnt = 1;
    k.bounced = true;
  } else if (p.iovcnt > 0 && p.iovs) {
    // Each child request owns a copy of the iovecs, so a timed-out one can be pointed
    // at a sink without touching the others.
    iovec* v = k.inline_iov;
    if (p.iovcnt > 4) {
      if (k.big_iov.size() < static_cast<size_t>(p.iovcnt)) k.big_iov.resize(p.iovcnt);
      v = k.big_iov.data();
    }
    std::copy(p.iovs, p.iovs + p.iovcnt, v);
    k.req.iovs = v;
    k.req.iovcnt = p.iovcnt;
  } else {
    k.req.iovs = nullptr;
    k.req.iovcnt = 0;
  }
  ++io->outstanding;
  ++slots_[s].outstanding;
  // The parent's start saves a clock read when it arrived in this loop turn; a held or
  // retried parent is older than that, so its children start at this turn's time
  // (the timeout scan measures from it).
  slots_[s].ch->submit_at(k.req, std::max(p.start_ns, reactor().loop_now_ns()));
}

int NexusChannel::pick_reader(uint8_t exclude) {
  int best = -1;
  uint64_t best_key = UINT64_MAX;
  const bool rr = nexus_.options().read_policy == ReadPolicy::kRoundRobin;
  for (uint32_t i = 1; i <= kMaxChildren; ++i) {
    int s = static_cast<int>((rr_ + i) % kMaxChildren);
    const Slot& sl = slots_[s];
    if (!sl.readable || (exclude & bit(s))) continue;
    if (rr) {
      rr_ = static_cast<uint32_t>(s);
      return s;
    }
    uint64_t key = (sl.local ? 0 : uint64_t{1} << 62) + sl.ch->outstanding();
    if (key < best_key) {
      best_key = key;
      best = s;
    }
  }
  // Ties rotate: the scan starts after the last pick.
  if (best >= 0) rr_ = static_cast<uint32_t>(best);
  return best;
}

// ---- completion ----

void NexusChannel::on_child_done(IoRequest& r, void* arg) {
  auto* k = static_cast<ChildIo*>(arg);
  NexusChannel* ch = k->io->ch;
  // The child's completion time is fresh: the parent completed from here reuses it.
  ch->cb_now_ns_ = r.done_ns;
  ch->kid_done(*k);
  ch->cb_now_ns_ = 0;
}

void NexusChannel::kid_done(ChildIo& k) {
  Io* io = k.io;
  const int s = k.slot;
  k.active = false;
  --io->outstanding;
  --slots_[s].outstanding;
  if (k.abandoned) {
    // A late completion of a timed-out request: the nexus I/O moved on without it.
    if (io->done && io->outstanding == 0) put_io(io);
    return;
  }
  const IoStatus st = k.req.status;
  if (st == IoStatus::kSuccess) {
    if (k.bounced) {
      const IoRequest& p = *io->parent;
      const uint8_t* src = k.bounce.data();
      for (int i = 0; i < p.iovcnt; ++i) {
        std::memcpy(p.iovs[i].iov_base, src, p.iovs[i].iov_len);
        src += p.iovs[i].iov_len;
      }
    }
    io->ok_mask |= bit(s);
    --io->waiting;
    maybe_finish(io);
  } else if (st == IoStatus::kInvalid) {
    io->invalid = true;
    --io->waiting;
    maybe_finish(io);
  } else if (st == IoStatus::kReservationConflict || nexus_.fenced()) {
    // Not the child's fault: a newer nexus holds the children. Retiring it would tell the
    // health store (now the newer nexus's) a lie.
    if (st == IoStatus::kReservationConflict) {
      nexus_.fence(fmt::format("child {} answered reservation conflict", slots_[s].child->uri));
    }
    --io->waiting;
    maybe_finish(io);
  } else {
    kid_failed(io, s, st);
  }
}

void NexusChannel::kid_failed(Io* io, int s, IoStatus st) {
  Child* c = slots_[s].child;
  const bool rd = io->parent->type == IoType::kRead;
  (rd ? c->read_errors : c->write_errors).fetch_add(1, std::memory_order_relaxed);
  const auto& o = nexus_.options();
  bool retire_now = true;
  if (o.error_policy == ErrorPolicy::kWindow) {
    uint64_t now = mono_ns();
    uint64_t start = c->window_start_ns.load(std::memory_order_relaxed);
    if (start == 0 || now - start > uint64_t{o.error_window_ms} * 1'000'000) {
      if (c->window_start_ns.compare_exchange_strong(start, now)) c->window_errors.store(0);
    }
    uint32_t n = c->window_errors.fetch_add(1) + 1;
    retire_now = n > o.max_errors;
  }
  if (!retire_now && io->retries <= o.max_errors) {
    // Tolerated: retry (a read preferably on another child, a write on the same one,
    // so the child does not silently miss it).
    ++io->retries;
    int t = s;
    if (rd) {
      int other = pick_reader(io->tried_mask);
      if (other >= 0) t = other;
      io->tried_mask |= bit(t);
    }
    submit_kid(io, t);
    return;
  }
  FaultReason why = st == IoStatus::kNoSpace    ? FaultReason::kNoSpace
                    : st == IoStatus::kTimedOut ? FaultReason::kTimedOut
                                                : FaultReason::kIoError;
  retire_kid(io, s, why);
}

void NexusChannel::retire_kid(Io* io, int s, FaultReason why) {
  const bool rd = io->parent->type == IoType::kRead;
  give_up_kid(io, s, !rd);
  retire(s, why);
  io->retired_mask |= bit(s);
  if (rd) {
    int other = pick_reader(io->tried_mask);
    if (other >= 0) {
      io->tried_mask |= bit(other);
      submit_kid(io, other);
      return;
    }
  }
  --io->waiting;
  maybe_finish(io);
}

void NexusChannel::give_up_kid(Io* io, int s, bool write) {
  if (write && write_like(io->parent->type)) note_missed(io, s);
}

void NexusChannel::note_missed(Io* io, int s) {
  Child* c = slots_[s].child;
  const uint64_t first = io->parent->offset_blocks, n = io->parent->num_blocks;
  c->log->mark(first, n);
  if (!c->log_valid.load(std::memory_order_acquire)) return;  // a full rebuild follows anyway
  if (c->durable->covers(first, n)) return;                   // already in a persisted log
  // Bump after marking (release): the flush that reads this generation sees the bits.
  const uint64_t g = c->log_gen.fetch_add(1, std::memory_order_acq_rel) + 1;
  io->log_need[s] = std::max(io->log_need[s], g);
  io->log_wait_mask |= bit(s);
  nexus_.request_log_flush(c);
}

void NexusChannel::retire(int s, FaultReason why) {
  Child* c = slots_[s].child;
  c->log_active.store(true);  // from now on its missed writes are logged
  ChildState before = ChildState::kHealthy;
  if (c->try_retire(why, &before)) {
    // A log started while the child was in sync covers everything it misses; only a
    // transient fault (timeout) keeps it for a partial rebuild.
    const bool valid = why == FaultReason::kTimedOut && before == ChildState::kHealthy;
    if (valid) {
      c->durable->clear();  // a new log starts: nothing of it is persisted yet
      c->log_persist_failed.store(false);
    }
    c->log_valid.store(valid);
    spdlog::warn("nexus={} child={} retired reason={}", nexus_.name(), c->uri,
                 fault_reason_name(why));
    nexus_.on_child_retired(c, why);
  }
  Slot& sl = slots_[s];
  sl.readable = sl.writable = sl.rebuilding = false;
  sl.log = true;
}

void NexusChannel::maybe_finish(Io* io) {
  if (io->waiting == 0) finish(io);
}

void NexusChannel::finish(Io* io) {
  const IoRequest& p = *io->parent;
  if (nexus_.fenced()) {
    // Whatever the children did, the host must retry it through the newer nexus.
    complete_parent(io, IoStatus::kPathUnavailable);
    return;
  }
  IoStatus st;
  if (p.type == IoType::kRead) {
    st = io->ok_mask ? IoStatus::kSuccess : io->invalid ? IoStatus::kInvalid : IoStatus::kIoError;
  } else {
    bool healthy_ok = false;
    for (int s = 0; s < static_cast<int>(kMaxChildren); ++s) {
      if ((io->ok_mask & bit(s)) && slots_[s].readable) healthy_ok = true;
    }
    st = healthy_ok ? IoStatus::kSuccess : io->invalid ? IoStatus::kInvalid : IoStatus::kIoError;
    // Nothing that skipped a retired child completes before the child is recorded
    // unhealthy, so a restart never trusts it.
    for (int s = 0; s < static_cast<int>(kMaxChildren); ++s) {
      if (!(io->retired_mask & bit(s))) continue;
      RecordState record = slots_[s].child->record_state();
      if (record == RecordState::kPending) {
        reactor().hold_stop();
        record_waiters_.push_back(io);
        return;
      }
      if (record == RecordState::kFailed) st = IoStatus::kIoError;
    }
    // Nor before the segments it skipped are in a persisted missed-write log, so a
    // partial rebuild after a crash still copies them.
    for (int s = 0; s < static_cast<int>(kMaxChildren); ++s) {
      if (!(io->log_wait_mask & bit(s))) continue;
      Child* c = slots_[s].child;
      if (!c) continue;  // removed meanwhile: no log to wait for
      if (c->log_durable_gen.load(std::memory_order_acquire) < io->log_need[s]) {
        reactor().hold_stop();
        record_waiters_.push_back(io);
        return;
      }
      if (c->log_persist_failed.load()) st = IoStatus::kIoError;
    }
  }
  complete_parent(io, st);
}

void NexusChannel::recheck_records() {
  if (record_waiters_.empty()) return;
  std::vector<Io*> w;
  w.swap(record_waiters_);
  record_waiters_.reserve(w.capacity());
  for (Io* io : w) {
    reactor().release_stop();
    finish(io);
  }
}

void NexusChannel::complete_parent(Io* io, IoStatus st) {
  unlink(io);
  io->done = true;
  IoRequest* p = io->parent;
  if (write_like(p->type)) {
    // Writes it held go first, before the caller can send a new overlapping one.
    end_write(*p);
    --writes_in_flight_;
    for (auto& l : locks_) {
      if (l.pending && io->seq < l.seq &&
          overlaps(p->offset_blocks, p->num_blocks, l.first, l.n) && --l.pending == 0) {
        auto fn = std::move(l.drained);
        l.drained = nullptr;
        if (fn) fn();
      }
    }
  }
  --active_;
  if (io->outstanding == 0) put_io(io);
  if (held_head_ && write_like(p->type)) release_held();
  if (cb_now_ns_) complete_now(*p, st, cb_now_ns_);
  else complete_now(*p, st);
}

void NexusChannel::link(Io* io) {
  io->prev = tail_;
  io->next = nullptr;
  if (tail_) {
    tail_->next = io;
  } else {
    head_ = io;
  }
  tail_ = io;
  io->in_flight_list = true;
}

void NexusChannel::unlink(Io* io) {
  if (!io->in_flight_list) return;
  if (io->prev) {
    io->prev->next = io->next;
  } else {
    head_ = io->next;
  }
  if (io->next) {
    io->next->prev = io->prev;
  } else {
    tail_ = io->prev;
  }
  io->prev = io->next = nullptr;
  io->in_flight_list = false;
}

// ---- timeouts ----

void NexusChannel::arm_timer() {
  if (timer_armed_) return;
  timer_armed_ = true;
  timer_ = reactor().add_timer(scan_ns_, [this] {
    timer_armed_ = false;
    scan_timeouts();
    if (head_) arm_timer();  // idle channels keep no timer, so idle reactors sleep
  });
}

void NexusChannel::scan_timeouts() {
  const uint64_t now = mono_ns();
  for (Io* io = head_; io;) {
    Io* next = io->next;
    for (int s = 0; s < static_cast<int>(kMaxChildren) && !io->done; ++s) {
      ChildIo& k = io->child_ios[s];
      // start_ns may be later than `now`: a retry issued during this scan.
      if (k.active && !k.abandoned && k.req.start_ns + timeout_ns_ < now) abandon(io, s);
    }
    io = next;
  }
}

uint8_t* NexusChannel::sink(size_t bytes) {
  for (auto& b : sinks_) {
    if (b.size() >= bytes) return b.data();
  }
  sinks_.emplace_back(bytes);  // slow path: kept until the channel goes away
  return sinks_.back().data();
}

void NexusChannel::abandon_all() {
  for (Io* io = head_; io;) {
    Io* next = io->next;
    for (int s = 0; s < static_cast<int>(kMaxChildren) && !io->done; ++s) {
      ChildIo& k = io->child_ios[s];
      if (k.active && !k.abandoned) abandon(io, s, /*timed_out=*/false);
    }
    io = next;
  }
}

void NexusChannel::abandon(Io* io, int s, bool timed_out) {
  ChildIo& k = io->child_ios[s];
  k.abandoned = true;
  Child* c = slots_[s].child;
  // A module that can abort stops touching the buffers now (the nvmf bdev drops the
  // connection); for the others, redirect the buffers below.
  const bool aborted = slots_[s].ch->abort(k.req);
  if (!aborted && !k.bounced && k.req.iovcnt > 0) {
    // The device may still read or write these buffers when it wakes up; the caller's
    // memory is returned to it now, so point the request at a scratch sink instead.
    size_t len = 0;
    for (int i = 0; i < k.req.iovcnt; ++i) len += k.req.iovs[i].iov_len;
    uint8_t* p = sink(len);
    for (int i = 0; i < k.req.iovcnt; ++i) {
      k.req.iovs[i].iov_base = p;
      p += k.req.iovs[i].iov_len;
    }
  }
  if (!timed_out) {
    // Fenced: the children answer to a newer nexus now; nothing is retired or logged,
    // and the I/O completes as fenced.
    --io->waiting;
    maybe_finish(io);
    return;
  }
  c->timeouts.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("nexus={} child={} I/O timed out after {} ms (lba={} blocks={})", nexus_.name(),
               c->uri, nexus_.options().child_io_timeout_ms, k.req.offset_blocks,
               k.req.num_blocks);
  retire_kid(io, s, FaultReason::kTimedOut);
}

// ---- range locks ----

void NexusChannel::add_lock(uint64_t id, uint64_t first, uint64_t n, std::function<void()> drained) {
  for (const auto& l : locks_) {
    if (l.id == id) {  // copied at construction: no older write can be in flight here
      drained();
      return;
    }
  }
  Lock l{id, first, n, seq_ + 1, 0, nullptr};
  for (Io* io = head_; io; io = io->next) {
    if (write_like(io->parent->type) &&
        overlaps(io->parent->offset_blocks, io->parent->num_blocks, first, n)) {
      ++l.pending;
    }
  }
  if (l.pending == 0) {
    locks_.push_back(std::move(l));
    drained();
    return;
  }
  l.drained = std::move(drained);
  locks_.push_back(std::move(l));
}

void NexusChannel::remove_lock(uint64_t id) {
  std::erase_if(locks_, [id](const Lock& l) { return l.id == id; });
  release_held();
}

}  // namespace castor::nexus
