#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "nexus/child_bdev.h"
#include "nexus/nexus.h"
#include "nexus/nexus_channel.h"
#include "nexus/rebuild.h"

// Nexus control path for children and their rebuilds: add, remove, fault, offline,
// online, resize, and starting, stopping and finishing rebuild jobs. Every call holds
// the nexus's control lock (ctl_mu_) and its state lock (mu_), applies its change to
// every reactor's channel, and releases mu_ whenever it waits (wait_unlocked).

namespace castor::nexus {

using bdev::IoType;
using bdev::io_type_bit;

// ---- waiting ----

uint64_t Nexus::wait_ms() const {
  return std::max<uint64_t>(5000, 2ull * opts_.child_io_timeout_ms);
}

uint64_t Nexus::deadline_after(uint64_t ms) { return mono_ns() + ms * 1'000'000; }

Status Nexus::lock_control(ControlLock& ctl, const char* what, uint64_t timeout_ms) {
  if (timeout_ms == 0) timeout_ms = wait_ms();
  ctl = ControlLock(ctl_mu_, std::defer_lock);
  if (!ctl.try_lock_for(std::chrono::milliseconds(timeout_ms))) {
    return make_error(Errc::kBusy,
                      "nexus '{}' is busy: {} has been in progress for over {} ms; retry later",
                      name(), ctl_what_.load(), timeout_ms);
  }
  ctl_what_.store(what);
  return Status::ok();
}

bool Nexus::wait_unlocked(StateLock& lk, uint64_t deadline_ns, const std::function<bool()>& done) {
  lk.unlock();
  bool ok = false;
  for (;;) {
    uint64_t seen;
    {
      std::lock_guard w(wake_mu_);
      seen = wake_gen_;
    }
    if (done()) {
      ok = true;
      break;
    }
    const uint64_t now = mono_ns();
    if (now >= deadline_ns) break;
    std::unique_lock w(wake_mu_);
    const uint64_t nap = std::min(deadline_ns - now, kWaitTickMs * 1'000'000);
    wake_cv_.wait_for(w, std::chrono::nanoseconds(nap), [&] { return wake_gen_ != seen; });
  }
  lk.lock();
  return ok;
}

uint64_t Nexus::outstanding(const Child* c) {
  std::atomic<uint64_t> n{0};
  reactors().run_on_all([&](reactor::Reactor& r) {
    auto* ch = channel_on(r.id());
    if (!ch) return;
    for (size_t s = 0; s < kMaxChildren; ++s) {
      if (c == nullptr || static_cast<int>(s) == c->slot) n += ch->slot_outstanding(s);
    }
  });
  return n.load();
}

Status Nexus::drain_child(StateLock& lk, Child& c, uint64_t deadline_ns) {
  // The child's requests return on their own (or time out and are abandoned), so this
  // polls the reactors; without mu_, so describe() answers meanwhile.
  if (wait_unlocked(lk, deadline_ns, [&] { return outstanding(&c) == 0; })) return Status::ok();
  return make_error(Errc::kBusy,
                    "nexus '{}': child '{}' still has {} I/O(s) outstanding (hung device?)",
                    name(), c.uri, outstanding(&c));
}

Status Nexus::start_job(const std::shared_ptr<Child>& c, bool partial, std::vector<uint64_t> segs) {
  if (c->job && !c->job->applied.load()) {
    return make_error(Errc::kBusy, "nexus '{}': child '{}' is already being rebuilt", name(), c->uri);
  }
  auto& g = reactors();
  reactor::Reactor& home = g.at(std::min<size_t>(opts_.rebuild_reactor, g.size() - 1));
  auto job = std::make_shared<RebuildJob>(*this, c, partial, std::move(segs), opts_.rebuild, home);
  if (!job->source()) {
    return make_error(Errc::kBusy, "nexus '{}': no healthy child to rebuild '{}' from", name(),
                      c->uri);
  }
  c->job = job;
  job->start();
  return Status::ok();
}

Status Nexus::stop_job(StateLock& lk, Child& c, uint64_t deadline_ns, bool abort_to_dest) {
  auto job = c.job;
  if (!job || job->applied.load()) return Status::ok();
  job->stop();
  if (abort_to_dest) job->abort_copies(&c);  // delivered after the stop, in order
  // Bounded, and without mu_: a copy stuck on a hung child would otherwise hold every
  // reader (describe()) for as long as the device hangs. The job notifies when it is
  // quiescent.
  if (deadline_ns == 0) deadline_ns = deadline_after(wait_ms());
  const uint64_t t0 = mono_ns();
  if (!job->quiescent()) {
    lk.unlock();
    const bool done = job->wait_quiescent(deadline_ns);
    lk.lock();
    if (!done) {
      // Left to finish on its own: the worker applies its outcome (Faulted(out_of_sync)
      // for a stopped job) once the stuck I/O returns.
      return make_error(Errc::kBusy,
                        "nexus '{}': the rebuild of '{}' did not stop within {} ms (a copy is "
                        "stuck on a hung child); it stops once that I/O returns, retry then",
                        name(), c.uri, (mono_ns() - t0) / 1'000'000);
    }
  }
  // Applied here unless the worker's finish_rebuild got to it first while we waited;
  // then that finds it applied.
  if (!job->applied.load()) apply_outcome(c, *job);
  return Status::ok();
}

void Nexus::apply_outcome(Child& c, RebuildJob& job) {
  if (job.state() == RebuildState::kCompleted) {
    // Finished before the stop arrived: keep the copy (unless fenced: the record is the
    // newer nexus's).
    auto st = fenced() ? make_error(Errc::kUnavailable, "fenced") : deps_.store.mark_healthy(name(), c.uri);
    if (st && c.state() == ChildState::kOutOfSync) {
      c.log->clear();
      c.log_active.store(false);
      c.log_valid.store(false);
      c.set_state(ChildState::kHealthy, FaultReason::kNone, RecordState::kClean);
    }
  } else if (c.state() == ChildState::kOutOfSync) {
    c.log_active.store(true);
    c.log_valid.store(false);
    c.set_state(ChildState::kFaulted,
                job.dest_failed() ? FaultReason::kRebuildFailed : FaultReason::kOutOfSync,
                RecordState::kDurable);
  }
  sync_all();
  job.applied.store(true);
  wake();
}

void Nexus::finish_rebuild(const std::shared_ptr<RebuildJob>& job) {
  if (job->applied.load()) return;  // a control call already applied it
  // mu_ is never held while waiting, so the worker may block on it: a control call
  // holding it does only short work (store writes, run_on_all) and never waits for this.
  std::lock_guard lk(mu_);
  if (job->applied.load()) return;
  Child& c = *job->dest();
  if (std::find(children_.begin(), children_.end(), job->dest()) == children_.end()) {
    job->applied.store(true);
    wake();
    return;
  }
  switch (job->state()) {
    case RebuildState::kCompleted: {
      if (c.state() != ChildState::kOutOfSync) break;  // faulted meanwhile
      auto st = fenced() ? make_error(Errc::kUnavailable, "nexus '{}' is fenced: it records nothing", name())
                         : deps_.store.mark_healthy(name(), c.uri);
      if (is_stale_nexus(st)) fence(st.message());
      if (!st) {
        spdlog::error("nexus={} rebuild of {} done but the record failed: {}", name(), c.uri,
                      st.to_string());
        c.log_active.store(true);
        c.log_valid.store(false);
        c.set_state(ChildState::kFaulted, FaultReason::kRebuildFailed, RecordState::kDurable);
        break;
      }
      c.log->clear();
      c.log_active.store(false);
      c.log_valid.store(false);
      c.set_state(ChildState::kHealthy, FaultReason::kNone, RecordState::kClean);
      spdlog::info("nexus={} child={} rebuilt, healthy", name(), c.uri);
      break;
    }
    case RebuildState::kFailed:
    case RebuildState::kStopped:
      if (c.state() == ChildState::kOutOfSync) {
        c.log_active.store(true);
        c.log_valid.store(false);
        c.set_state(ChildState::kFaulted,
                    job->dest_failed() ? FaultReason::kRebuildFailed : FaultReason::kOutOfSync,
                    RecordState::kDurable);
      }
      break;
    default:
      break;
  }
  sync_all();
  job->applied.store(true);
  wake();
}

Status Nexus::add_child(const std::string& uri, bool rebuild) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "add_child"); !st) return st;
  // Holding ctl_mu_: children_, shut_down_ and the size change only under it. The child
  // is opened (a remote one connects, up to its connect timeout), checked, reserved and
  // recorded stale without mu_, so describe() and the worker are not held up meanwhile.
  if (shut_down_) return make_error(Errc::kBusy, "nexus '{}' is shutting down", name());
  if (children_.size() >= kMaxChildren) {
    return make_error(Errc::kInvalidArgument, "nexus '{}' already has {} children (the limit)",
                      name(), kMaxChildren);
  }
  if (find_child(uri)) {
    return make_error(Errc::kAlreadyExists, "nexus '{}' already has child '{}'", name(), uri);
  }
  // Checked under mu_ (the worker may fault a child at any time), again once it is open.
  auto no_source = [&] {
    return rebuild && healthy_count() == 0
               ? make_error(Errc::kBusy, "nexus '{}' has no healthy child to rebuild '{}' from",
                            name(), uri)
               : Status::ok();
  };
  {
    StateLock lk(mu_);
    if (auto st = no_source(); !st) return st;
  }
  auto oc = open_child_bdev(deps_.registry, name(), uri);
  if (!oc) return oc.status();
  auto c = std::move(oc.value());
  auto fail = [&](Status st) {
    close_child_bdev(deps_.registry, name(), *c);
    return st;
  };
  if (c->bdev->block_size() != block_size()) {
    return fail(make_error(Errc::kInvalidArgument,
                           "nexus '{}': child '{}' has block size {}, the nexus {}", name(), uri,
                           c->bdev->block_size(), block_size()));
  }
  if (c->bdev->num_blocks() < num_blocks()) {
    return fail(make_error(Errc::kInvalidArgument,
                           "nexus '{}': child '{}' ({} bytes) is smaller than the nexus ({} bytes)",
                           name(), uri, c->bdev->size_bytes(), size_bytes()));
  }
  uint32_t need = kNexusOps & ~io_type_bit(IoType::kReset);
  for (int t = 0; t < bdev::kNumIoTypes; ++t) {
    auto it = static_cast<IoType>(t);
    if ((need & io_type_bit(it)) && supports(it) && !c->bdev->supports(it)) {
      return fail(make_error(Errc::kInvalidArgument, "nexus '{}': child '{}' does not support {}",
                             name(), uri, bdev::io_type_name(it)));
    }
  }
  if (c->bdev->buf_align() > buf_align()) {
    return fail(make_error(Errc::kInvalidArgument,
                           "nexus '{}': child '{}' needs buffer alignment {} (the nexus has {})",
                           name(), uri, c->bdev->buf_align(), buf_align()));
  }
  if (auto st = reserve_child(deps_, opts_, name(), *c); !st) return fail(st);
  // Recorded stale before it joins: a crash mid-rebuild must not trust it.
  if (auto st = deps_.store.mark_unhealthy(name(), uri, "out_of_sync"); !st) return fail(st);
  StateLock lk(mu_);
  if (auto st = no_source(); !st) {
    lk.unlock();
    return fail(st);
  }
  int slot = -1;
  for (size_t i = 0; i < kMaxChildren; ++i) {
    if (!slots_[i].load()) {
      slot = static_cast<int>(i);
      break;
    }
  }
  c->slot = slot;
  c->make_logs(num_blocks(), segment_blocks_);
  if (rebuild) {
    c->set_state(ChildState::kOutOfSync, FaultReason::kNone, RecordState::kDurable);
  } else {
    c->log_active.store(true);
    c->set_state(ChildState::kFaulted, FaultReason::kOutOfSync, RecordState::kDurable);
  }
  slots_[slot].store(c.get());
  children_.push_back(c);
  sync_all();
  spdlog::info("nexus={} child={} added slot={} rebuild={}", name(), uri, slot, rebuild);
  if (rebuild) {
    if (auto st = start_job(c, false, {}); !st) {
      c->set_state(ChildState::kFaulted, FaultReason::kOutOfSync, RecordState::kDurable);
      sync_all();
      return st;
    }
  }
  return Status::ok();
}

Status Nexus::remove_child(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "remove_child"); !st) return st;
  StateLock lk(mu_);
  if (shut_down_) return make_error(Errc::kBusy, "nexus '{}' is shutting down", name());
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  auto last_healthy = [&] {
    return c->state() == ChildState::kHealthy && !c->detaching.load() && healthy_count() == 1;
  };
  if (last_healthy()) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  // The waits below release mu_ (describe() answers meanwhile); ctl_mu_ keeps other calls
  // out, and what reactors may change meanwhile (a retirement) is checked again after.
  // A copy stuck on it (a replica whose engine is gone: the nvmf:// host holds the write
  // while it reconnects) is given up rather than waited for: the child is leaving.
  if (auto st = stop_job(lk, *c, 0, /*abort_to_dest=*/true); !st) return st;
  for (const auto& o : children_) {
    if (o != c && o->job && !o->job->applied.load() && o->job->source() == c.get()) {
      spdlog::warn("nexus={} removing {} stops the rebuild of {} (its source)", name(), uri, o->uri);
      if (auto st = stop_job(lk, *o); !st) return st;
    }
  }
  if (last_healthy()) {  // the others were retired while the jobs stopped
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  // Out of the write set from here on, it misses writes that no log records: recorded
  // stale first (which drops a stored missed-write log) and retired by request, so that
  // neither a crash during the drain nor a drain that fails leaves it counted as current
  // or partially rebuildable. Retiring it here (atomically, as a reactor would) also
  // keeps a reactor from retiring it later with a fresh "valid" log that would not
  // cover the writes it skipped while draining.
  if (auto st = deps_.store.mark_unhealthy(name(), uri, fault_reason_name(FaultReason::kByRequest)); !st) {
    return st;
  }
  ChildState was;
  if (c->try_retire(FaultReason::kByRequest, &was)) c->settle_record(RecordState::kDurable);
  c->detaching.store(true);
  sync_all();  // every reactor has dropped it, and any retire() it was running has ended
  c->log_valid.store(false);
  const uint64_t drain_ms = wait_ms();
  if (auto st = drain_child(lk, *c, deadline_after(drain_ms)); !st) {
    // Not removed: it stays as a faulted child (recorded so), to be removed again, or
    // brought back with a full rebuild, once its I/O has drained.
    c->detaching.store(false);
    sync_all();
    return st;
  }
  // The unhealthy record of a retirement is written by the worker (which wakes us); the
  // store may be slow or unreachable, so wait for it only as long as for the drain.
  auto recorded = [&] { return c->record_state() != RecordState::kPending; };
  if (!wait_unlocked(lk, deadline_after(drain_ms), recorded)) {
    c->detaching.store(false);  // a retired child: it stays, Faulted, out of the I/O sets
    sync_all();
    return make_error(Errc::kBusy,
                      "nexus '{}': the unhealthy record of '{}' is still being written to the "
                      "health store after {} ms; not removed",
                      name(), c->uri, drain_ms);
  }
  slots_[c->slot].store(nullptr);
  sync_all();
  std::erase(children_, c);
  graveyard_.push_back(c);
  close_child_bdev(deps_.registry, name(), *c);
  if (auto st = deps_.store.forget(name(), c->uri); !st) {
    spdlog::warn("nexus={} cannot forget child {}: {}", name(), c->uri, st.to_string());
  }
  spdlog::info("nexus={} child={} removed", name(), uri);
  return Status::ok();
}

Status Nexus::fault_child(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "fault_child"); !st) return st;
  StateLock lk(mu_);
  if (shut_down_) return make_error(Errc::kBusy, "nexus '{}' is shutting down", name());
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (c->state() == ChildState::kFaulted) return Status::ok();
  auto last_healthy = [&] { return c->state() == ChildState::kHealthy && healthy_count() == 1; };
  if (last_healthy()) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  if (auto st = stop_job(lk, *c); !st) return st;  // may wait, without mu_
  if (c->state() == ChildState::kFaulted) return Status::ok();
  if (last_healthy()) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  if (auto st = deps_.store.mark_unhealthy(name(), uri, fault_reason_name(FaultReason::kByRequest));
      !st) {
    return st;
  }
  c->log_active.store(true);
  c->log_valid.store(false);
  c->set_state(ChildState::kFaulted, FaultReason::kByRequest, RecordState::kDurable);
  sync_all();
  spdlog::info("nexus={} child={} faulted by request", name(), uri);
  return Status::ok();
}

Status Nexus::offline_child(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "offline_child"); !st) return st;
  StateLock lk(mu_);
  if (shut_down_) return make_error(Errc::kBusy, "nexus '{}' is shutting down", name());
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (c->state() == ChildState::kOffline) return Status::ok();
  auto last_healthy = [&] { return c->state() == ChildState::kHealthy && healthy_count() == 1; };
  if (last_healthy()) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  if (auto st = stop_job(lk, *c); !st) return st;  // may wait, without mu_
  if (last_healthy()) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  const bool in_sync = c->state() == ChildState::kHealthy;
  // Persist first: once it leaves the write set, acknowledged writes skip it.
  if (auto st = deps_.store.mark_unhealthy(name(), uri, "offline"); !st) return st;
  if (in_sync) {
    c->log->clear();
    c->durable->clear();
    c->log_persist_failed.store(false);
    c->log_valid.store(true);
  } else if (c->state() != ChildState::kFaulted) {
    c->log_valid.store(false);
  }
  c->log_active.store(true);
  c->set_state(ChildState::kOffline, FaultReason::kNone, RecordState::kDurable);
  sync_all();
  spdlog::info("nexus={} child={} offline (missed-write log {})", name(), uri,
               c->log_valid.load() ? "valid" : "not valid");
  return Status::ok();
}

Status Nexus::online_child(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "online_child"); !st) return st;
  StateLock lk(mu_);
  if (shut_down_) return make_error(Errc::kBusy, "nexus '{}' is shutting down", name());
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  auto s = c->state();
  if (s != ChildState::kOffline && s != ChildState::kFaulted) {
    return make_error(Errc::kInvalidArgument, "nexus '{}': child '{}' is {}, not offline/faulted",
                      name(), uri, child_state_name(s));
  }
  if (c->job && !c->job->applied.load()) {
    return make_error(Errc::kBusy, "nexus '{}': child '{}' has a rebuild finishing", name(), uri);
  }
  if (healthy_count() == 0) {
    return make_error(Errc::kBusy, "nexus '{}' has no healthy child to rebuild '{}' from", name(),
                      uri);
  }
  // Late completions of abandoned I/O must land before the copy, never after it.
  if (auto st = drain_child(lk, *c, deadline_after(5000)); !st) return st;
  // Offline and faulted children stay so while mu_ was released: reactors retire only
  // children in the write set, the worker changes only children being rebuilt.
  const bool partial = c->log_valid.load();
  c->set_state(ChildState::kOutOfSync, FaultReason::kNone, RecordState::kDurable);
  sync_all();  // from here every write reaches the child
  std::vector<uint64_t> segs;
  c->log_active.store(false);
  if (partial) {
    segs = c->log->take();
  } else {
    c->log->clear();
  }
  c->log_valid.store(false);
  spdlog::info("nexus={} child={} online: {} rebuild{}", name(), uri, partial ? "partial" : "full",
               partial ? fmt::format(" of {} segments", segs.size()) : "");
  if (auto st = start_job(c, partial, std::move(segs)); !st) {
    c->log_active.store(true);
    c->set_state(ChildState::kFaulted, FaultReason::kOutOfSync, RecordState::kDurable);
    sync_all();
    return st;
  }
  return Status::ok();
}

Status Nexus::resize(uint64_t bytes) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "resize"); !st) return st;
  StateLock lk(mu_);
  if (shut_down_) return make_error(Errc::kBusy, "nexus '{}' is shutting down", name());
  const uint32_t bs = block_size();
  if (bytes == 0 || bytes % bs) {
    return make_error(Errc::kInvalidArgument,
                      "nexus '{}': size {} is not a non-zero multiple of the block size {}", name(),
                      bytes, bs);
  }
  const uint64_t blocks = bytes / bs;
  if (blocks < num_blocks()) {
    return make_error(Errc::kInvalidArgument, "nexus '{}' is {} bytes; a nexus never shrinks (asked {})",
                      name(), size_bytes(), bytes);
  }
  if (blocks == num_blocks()) return Status::ok();
  // Every child first: a child that cannot hold the new blocks would fail the writes to
  // them (or, rebuilt later, be taken as current while too small).
  for (const auto& c : children_) {
    if (c->bdev->num_blocks() >= blocks) continue;
    auto got = c->bdev->refresh_size();
    if (!got) {
      return make_error(got.status().code(), "nexus '{}': cannot read the size of child '{}': {}", name(),
                        c->uri, got.status().message());
    }
    if (c->bdev->num_blocks() < blocks) {
      return make_error(Errc::kBusy,
                        "nexus '{}': child '{}' is {} bytes, smaller than {} (grow it first)", name(),
                        c->uri, c->bdev->size_bytes(), bytes);
    }
  }
  // The logs cover the new segments before any write can reach them: every reactor
  // synchronizes with the growth (sync_all's messages) before the size changes.
  for (const auto& c : children_) c->grow_logs(blocks);
  sync_all();
  const uint64_t old = size_bytes();
  set_num_blocks(blocks);
  spdlog::info("nexus={} grown from {} to {} bytes", name(), old, bytes);
  return Status::ok();
}

Status Nexus::start_rebuild(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "start_rebuild"); !st) return st;
  StateLock lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  auto s = c->state();
  if (s == ChildState::kOffline || s == ChildState::kFaulted) {
    lk.unlock();
    ctl.unlock();
    return online_child(uri);
  }
  if (s != ChildState::kOutOfSync) {
    return make_error(Errc::kInvalidArgument, "nexus '{}': child '{}' is {}; nothing to rebuild",
                      name(), uri, child_state_name(s));
  }
  return start_job(c, false, {});
}

namespace {
template <class F>
Status with_job(const std::shared_ptr<Child>& c, const std::string& nexus, const std::string& uri,
                F&& f) {
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", nexus, uri);
  if (!c->job || c->job->final()) {
    return make_error(Errc::kNotFound, "nexus '{}': child '{}' has no running rebuild", nexus, uri);
  }
  f(*c->job);
  return Status::ok();
}
}  // namespace

Status Nexus::pause_rebuild(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "pause_rebuild"); !st) return st;
  std::lock_guard lk(mu_);
  return with_job(find_child(uri), name(), uri, [](RebuildJob& j) { j.pause(); });
}

Status Nexus::resume_rebuild(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "resume_rebuild"); !st) return st;
  std::lock_guard lk(mu_);
  return with_job(find_child(uri), name(), uri, [](RebuildJob& j) { j.resume(); });
}

Status Nexus::stop_rebuild(const std::string& uri) {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "stop_rebuild"); !st) return st;
  StateLock lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (!c->job || c->job->applied.load()) {
    return make_error(Errc::kNotFound, "nexus '{}': child '{}' has no running rebuild", name(), uri);
  }
  return stop_job(lk, *c);
}

Result<RebuildInfo> Nexus::rebuild_info(const std::string& uri) const {
  std::lock_guard lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (!c->job) return make_error(Errc::kNotFound, "nexus '{}': child '{}' was never rebuilt", name(), uri);
  return c->job->info();
}

Result<RebuildInfo> Nexus::wait_rebuild(const std::string& uri, uint64_t timeout_ms) {
  // A reader: mu_ only, and released while it waits (woken when an outcome is applied).
  StateLock lk(mu_);
  (void)wait_unlocked(lk, deadline_after(timeout_ms), [&] {
    std::lock_guard relock(mu_);
    auto c = find_child(uri);
    return !c || !c->job || c->job->applied.load();
  });
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (!c->job) {
    return make_error(Errc::kNotFound, "nexus '{}': child '{}' was never rebuilt", name(), uri);
  }
  if (c->job->applied.load()) return c->job->info();
  return make_error(Errc::kTimedOut, "nexus '{}': rebuild of '{}' still running after {} ms",
                    name(), uri, timeout_ms);
}

}  // namespace castor::nexus
