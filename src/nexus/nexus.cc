#include "nexus/nexus.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <set>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/uri.h"
#include "nexus/child_bdev.h"
#include "nexus/nexus_channel.h"
#include "nexus/rebuild.h"

namespace castor::nexus {

using bdev::IoType;
using bdev::io_type_bit;

Nexus::Nexus(NexusDeps deps, const std::string& name, uint32_t block_size, uint64_t num_blocks,
             const NexusOptions& opts)
    : Bdev(name, "nexus", block_size, num_blocks),
      deps_(deps),
      reactors_(deps.registry.reactors()),
      opts_(opts),
      segment_blocks_(std::max<uint64_t>(1, uint64_t{opts.rebuild.segment_kb} * 1024 / block_size)) {
  for (auto& s : slots_) s.store(nullptr);
  if (opts.serialize_overlaps) inflight_ = std::make_unique<InflightWrites>(block_size, num_blocks);
}

void keep_forever(std::shared_ptr<const void> p) {
  static std::mutex mu;
  static auto* kept = new std::vector<std::shared_ptr<const void>>;  // never freed
  std::lock_guard lk(mu);
  kept->push_back(std::move(p));
}

Nexus::~Nexus() {
  // Jobs hold their destination child: break the cycle. shutdown() or give_up() left every
  // job quiescent or detached; a job with copies out is never freed (their completions
  // would run it): one that is not detached yet is detached here, as a last resort.
  for (auto* v : {&children_, &graveyard_}) {
    for (auto& c : *v) {
      auto job = std::move(c->job);
      if (!job || job->quiescent()) continue;
      if (!job->detached()) {
        spdlog::error("nexus={} freed while the rebuild of {} has copies in flight; detaching it",
                      name(), c->uri);
        if (reactor::Reactor::current() == nullptr) job->detach();
      }
      keep_forever(std::move(job));
    }
  }
}

Result<std::shared_ptr<Nexus>> Nexus::create(NexusDeps deps, const std::string& name,
                                             uint64_t size_bytes,
                                             const std::vector<std::string>& uris,
                                             const NexusOptions& opts) {
  if (auto st = opts.validate(); !st) return st;
  if (uris.empty()) return make_error(Errc::kInvalidArgument, "nexus '{}' needs children", name);
  if (uris.size() > kMaxChildren) {
    return make_error(Errc::kInvalidArgument, "nexus '{}': {} children given, the limit is {}",
                      name, uris.size(), kMaxChildren);
  }
  if (std::set<std::string>(uris.begin(), uris.end()).size() != uris.size()) {
    return make_error(Errc::kInvalidArgument, "nexus '{}': a child URI is given twice", name);
  }
  std::vector<std::shared_ptr<Child>> opened;
  auto undo = [&] {
    for (auto it = opened.rbegin(); it != opened.rend(); ++it) close_child_bdev(deps.registry, name, **it);
  };
  for (const auto& uri : uris) {
    auto c = open_child_bdev(deps.registry, name, uri);
    if (!c) {
      undo();
      return make_error(c.status().code(), "nexus '{}' child '{}': {}", name, uri,
                        c.status().message());
    }
    opened.push_back(std::move(c.value()));
  }
  // Fence the previous nexus off the children before reading what it recorded: from
  // here on it cannot write to them. First a check of every child, so that a create that
  // a newer nexus refuses on one child has preempted none.
  for (bool check_only : {true, false}) {
    for (const auto& c : opened) {
      if (auto st = reserve_child(deps, opts, name, *c, check_only); !st) {
        undo();
        return st;
      }
    }
  }
  deps.store.bind_generation(name, opts.generation);
  auto recs = deps.store.load(name);
  if (!recs) {
    undo();
    return recs.status();
  }
  const uint32_t bs = opened[0]->bdev->block_size();
  uint64_t min_bytes = UINT64_MAX;
  uint32_t ops = kNexusOps;
  // Buffers aligned to the block size at least, whatever these children need: a child
  // added later may (a local replica does direct I/O), and a nexus's alignment is fixed
  // once its users allocate by it. Every front end allocates 4 KiB-aligned buffers.
  uint32_t align = bs;
  for (const auto& c : opened) {
    if (c->bdev->block_size() != bs) {
      auto st = make_error(Errc::kInvalidArgument,
                           "nexus '{}': child '{}' has block size {}, '{}' has {}", name, c->uri,
                           c->bdev->block_size(), opened[0]->uri, bs);
      undo();
      return st;
    }
    min_bytes = std::min(min_bytes, c->bdev->size_bytes());
    ops &= ops_of(*c->bdev);
    align = std::max(align, c->bdev->buf_align());
  }
  if (size_bytes == 0) size_bytes = min_bytes;
  if (size_bytes % bs || size_bytes > min_bytes || size_bytes == 0) {
    undo();
    return make_error(Errc::kInvalidArgument,
                      "nexus '{}': size {} must be a non-zero multiple of the block size {} and "
                      "at most the smallest child ({} bytes)",
                      name, size_bytes, bs, min_bytes);
  }

  // The stale-child rule.
  std::vector<bool> stale(opened.size(), false);
  size_t nstale = 0;
  for (size_t i = 0; i < opened.size(); ++i) {
    auto it = recs->children.find(opened[i]->uri);
    if (it != recs->children.end() && !it->second.healthy) {
      stale[i] = true;
      ++nstale;
    }
  }
  if (nstale == opened.size()) {
    if (!opts.force) {
      undo();
      return make_error(Errc::kBusy,
                        "nexus '{}': every child is recorded unhealthy (stale), so none can be "
                        "trusted as the source of truth; re-create with force to trust them",
                        name);
    }
    spdlog::warn("nexus={} every child is recorded unhealthy; force: trusting them all", name);
    for (size_t i = 0; i < opened.size(); ++i) {
      if (auto st = deps.store.mark_healthy(name, opened[i]->uri); !st) {
        undo();
        return st;
      }
      stale[i] = false;
    }
  }

  // The unclean-shutdown rule: the previous instance never closed, so children recorded
  // healthy may differ wherever its writes were in flight, and two reads of one block
  // could return different data. One of them (a local one first) is trusted; the others
  // are recorded stale below, before any I/O, and rebuilt from it in full: a crash during
  // that resync then finds them stale and cannot take a half-rebuilt child as the source.
  if (recs->open) {
    int source = -1;
    for (size_t i = 0; i < opened.size() && source < 0; ++i) {
      if (!stale[i] && opened[i]->local) source = static_cast<int>(i);
    }
    for (size_t i = 0; i < opened.size() && source < 0; ++i) {
      if (!stale[i]) source = static_cast<int>(i);
    }
    for (size_t i = 0; i < opened.size(); ++i) {
      if (stale[i] || static_cast<int>(i) == source) continue;
      stale[i] = true;
      auto& rec = recs->children[opened[i]->uri];
      rec.healthy = false;
      rec.reason = kUncleanShutdown;
      rec.log.reset();
    }
    spdlog::warn("nexus={} did not shut down cleanly: {} is the source, {} child(ren) resync from it",
                 name, opened[static_cast<size_t>(source)]->uri,
                 std::count(stale.begin(), stale.end(), true));
  }
  // Open from here on, durably before any I/O can arrive.
  if (auto st = deps.store.set_open(name, true); !st) {
    undo();
    return make_error(st.code(), "nexus '{}': cannot record it open: {}", name, st.message());
  }

  std::shared_ptr<Nexus> n(new Nexus(deps, name, bs, size_bytes / bs, opts));
  if (opts.uuid) n->set_uuid(*opts.uuid);
  n->set_supported_ops(ops | io_type_bit(IoType::kReset));
  n->set_fua_ops(io_type_bit(IoType::kWrite) | io_type_bit(IoType::kWriteZeroes) |
                io_type_bit(IoType::kUnmap));  // passed to each child
  n->set_buf_align(align);
  for (size_t i = 0; i < opened.size(); ++i) {
    auto& c = opened[i];
    c->slot = static_cast<int>(i);
    c->make_logs(n->num_blocks(), n->segment_blocks_);
    if (stale[i]) {
      const auto& rec = recs->children.at(c->uri);
      bool partial = rec.log && (rec.log->clean || rec.log->write_ahead) &&
                     rec.log->segment_blocks == n->segment_blocks_ &&
                     rec.log->num_segments == c->log->num_segments();
      if (partial) {
        c->log->set_runs(rec.log->dirty);
        c->log_valid.store(true);
      }
      // The stored log is used once: rewrite the record without it before any I/O, so a
      // crash from here on forces a full rebuild.
      if (auto st = deps.store.mark_unhealthy(name, c->uri,
                                              rec.reason.empty() ? "out_of_sync" : rec.reason);
          !st) {
        undo();
        return st;
      }
      c->log_active.store(true);
      if (opts.rebuild_stale) {
        c->set_state(ChildState::kOutOfSync, FaultReason::kNone, RecordState::kDurable);
        n->initial_rebuilds_.push_back(c);
      } else {
        c->set_state(ChildState::kFaulted, FaultReason::kOutOfSync, RecordState::kDurable);
      }
      spdlog::warn("nexus={} child={} is recorded unhealthy ({}): {}", name, c->uri, rec.reason,
                   opts.rebuild_stale ? (partial ? "partial rebuild" : "full rebuild")
                                      : "faulted out_of_sync");
    } else {
      c->set_state(ChildState::kHealthy, FaultReason::kNone, RecordState::kClean);
    }
    n->slots_[i].store(c.get());
    n->children_.push_back(c);
  }
  return n;
}

void Nexus::start_initial_rebuilds() {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "start_initial_rebuilds"); !st) {
    spdlog::error("nexus={} cannot start its initial rebuilds: {}", name(), st.to_string());
    return;
  }
  std::lock_guard lk(mu_);
  for (auto& c : initial_rebuilds_) {
    std::vector<uint64_t> segs;
    bool partial = c->log_valid.load();
    // Already in the write set: the log holds only what was missed before the restart.
    c->log_active.store(false);
    if (partial) {
      segs = c->log->take();
    } else {
      c->log->clear();
    }
    c->log_valid.store(false);
    if (auto st = start_job(c, partial, std::move(segs)); !st) {
      spdlog::error("nexus={} cannot rebuild stale child {}: {}", name(), c->uri, st.to_string());
      c->set_state(ChildState::kFaulted, FaultReason::kOutOfSync, RecordState::kDurable);
      sync_all();
    }
  }
  initial_rebuilds_.clear();
}

std::unique_ptr<bdev::BdevChannel> Nexus::create_channel(reactor::Reactor& r) {
  return std::make_unique<NexusChannel>(*this, r);
}

NexusChannel* Nexus::channel_on(size_t reactor_id) const {
  return static_cast<NexusChannel*>(existing_channel(reactor_id));
}

void Nexus::post_control(std::function<void()> fn) {
  std::lock_guard lk(post_mu_);
  if (worker_gone_) {
    spdlog::warn("nexus={} outlived its manager: internal work dropped", name());
    return;
  }
  async_begin();
  deps_.worker.post([this, fn = std::move(fn)] {
    fn();
    async_end();
  });
}

void Nexus::forget_worker() {
  std::lock_guard lk(post_mu_);
  worker_gone_ = true;
}

void Nexus::wake() {
  {
    std::lock_guard lk(wake_mu_);
    ++wake_gen_;
  }
  wake_cv_.notify_all();
}

void Nexus::broadcast(std::function<void(NexusChannel&)> fn) {
  auto& g = reactors();
  for (size_t i = 0; i < g.size(); ++i) {
    reactor::Reactor& r = g.at(i);
    async_begin();
    r.send([this, fn, &r] {
      if (auto* ch = channel_on(r.id())) fn(*ch);
      async_end();
    });
  }
}

void Nexus::sync_all() {
  reactors().run_on_all([this](reactor::Reactor& r) {
    if (auto* ch = channel_on(r.id())) ch->sync();
  });
}

void Nexus::fence(const std::string& why) {
  if (fenced_.exchange(true, std::memory_order_acq_rel)) return;
  spdlog::error("nexus={} generation={} fenced: {}; it serves no more I/O (a newer nexus has its children)", name(),
                opts_.generation, why);
  // What is in flight completes now (as fenced), not when the children answer or time out.
  broadcast([](NexusChannel& ch) { ch.abandon_all(); });
}

Status Nexus::reserve_child(const NexusDeps& deps, const NexusOptions& opts, const std::string& nexus, Child& c,
                            bool check_only) {
  if (opts.generation == 0 || c.local) return Status::ok();
  auto fail = [&](const Status& st) {
    return make_error(st.code(), "nexus '{}' child '{}': cannot take its reservation: {}", nexus, c.uri,
                      st.message());
  };
  if (deps.host_id.is_zero()) {
    return fail(make_error(Errc::kUnsupported, "the engine has no host identifier"));
  }
  const uint64_t key = reservation_key(opts.generation);
  bdev::ReservationReport rep;
  bdev::ReservationCommand cmd;
  cmd.action = bdev::ReservationAction::kReport;
  if (auto st = c.bdev->reservation(deps.host_id, cmd, &rep); !st) return fail(st);
  const bdev::ReservationRegistrant* me = nullptr;
  const bdev::ReservationRegistrant* holder = nullptr;
  for (const auto& r : rep.registrants) {
    if (r.host == deps.host_id) me = &r;
    if (r.holder && !bdev::all_registrants(rep.type)) holder = &r;
    if (r.holder && generation_of_key(r.key) > opts.generation) {
      return fail(make_error(Errc::kBusy, "a newer nexus (generation {}) holds it; this one is {}",
                             generation_of_key(r.key), opts.generation));
    }
  }
  if (check_only) return Status::ok();
  // Registered under this generation's key (a new registration, or the old key replaced).
  if (!me || me->key != key) {
    bdev::ReservationCommand reg;
    reg.action = me ? bdev::ReservationAction::kReplace : bdev::ReservationAction::kRegister;
    reg.crkey = me ? me->key : 0;
    reg.nrkey = key;
    if (auto st = c.bdev->reservation(deps.host_id, reg); !st) return fail(st);
  }
  const bool held_by_me = holder && holder->host == deps.host_id;
  if (held_by_me && rep.type == bdev::ReservationType::kExclusiveAccess) return Status::ok();
  bdev::ReservationCommand acq;
  acq.type = bdev::ReservationType::kExclusiveAccess;
  acq.crkey = key;
  if (rep.type == bdev::ReservationType::kNone) {
    acq.action = bdev::ReservationAction::kAcquire;
  } else if (held_by_me) {
    // Ours, of another type (set by hand): release it and take the right one.
    bdev::ReservationCommand rel;
    rel.action = bdev::ReservationAction::kRelease;
    rel.type = rep.type;
    rel.crkey = key;
    if (auto st = c.bdev->reservation(deps.host_id, rel); !st) return fail(st);
    acq.action = bdev::ReservationAction::kAcquire;
  } else {
    // Another host's (an older nexus): preempt its key, which also unregisters it (and
    // asks the target to abort that host's commands in flight; Castor's target does not
    // yet wait for them). For the all-registrants types, PRKEY 0 preempts every other
    // registrant.
    acq.action = bdev::ReservationAction::kPreemptAndAbort;
    acq.prkey = holder ? holder->key : 0;
    spdlog::info("nexus={} generation={} preempts the reservation on {} (held with key {:#x})", nexus,
                 opts.generation, c.uri, acq.prkey);
  }
  if (auto st = c.bdev->reservation(deps.host_id, acq); !st) return fail(st);
  return Status::ok();
}

void Nexus::on_child_retired(Child* c, FaultReason why) {
  // Other reactors stop using the child at once; the record follows on the worker, and
  // the I/Os that depend on it are released when it is durable.
  broadcast([](NexusChannel& ch) { ch.sync(); });
  post_control([this, c, why] {
    if (fenced()) {
      // The health record is the newer nexus's now: write nothing. The I/Os waiting for
      // this record complete as fenced.
      c->settle_record(RecordState::kFailed);
      broadcast([](NexusChannel& ch) { ch.recheck_records(); });
      wake();
      return;
    }
    Status st = deps_.store.mark_unhealthy(name(), c->uri, fault_reason_name(why));
    // A timeout keeps a valid log: write it with the record, so the writes abandoned
    // by the retirement (waiting for this record) are in a persisted log too.
    if (st && c->log_valid.load()) st = persist_log(c, fault_reason_name(why), /*after_mark=*/true);
    // Refused because a newer nexus owns the record: this one is superseded. Fenced first,
    // so the I/Os waiting for the record complete as fenced, not as errors.
    if (is_stale_nexus(st)) fence(st.message());
    if (!st) {
      spdlog::error("nexus={} cannot record child {} unhealthy: {}", name(), c->uri,
                    st.to_string());
    }
    c->settle_record(st ? RecordState::kDurable : RecordState::kFailed);
    broadcast([](NexusChannel& ch) { ch.recheck_records(); });
    wake();  // remove_child may be waiting for this record
  });
}

Status Nexus::persist_log(Child* c, const std::string& reason, bool after_mark) {
  if (fenced()) return make_error(Errc::kUnavailable, "nexus '{}' is fenced: it records nothing", name());
  // Read the generation first: every segment logged before a bump up to `g` is set in
  // the log by then (mark, then bump with release), so the snapshot below holds it.
  const uint64_t g = c->log_gen.load(std::memory_order_acquire);
  MissedWriteLog log;
  log.segment_blocks = segment_blocks_;
  log.num_segments = c->log->num_segments();
  log.write_ahead = true;
  log.dirty = c->log->runs();
  // mark_unhealthy drops any stored log, so the record and the log are written in this
  // order; a crash between the two leaves no log, which means a full rebuild (safe).
  Status st = after_mark ? Status::ok() : deps_.store.mark_unhealthy(name(), c->uri, reason);
  if (st) st = deps_.store.save_log(name(), c->uri, log);
  if (st) {
    c->durable->merge(log.dirty);
  } else {
    c->log_persist_failed.store(true);
  }
  uint64_t cur = c->log_durable_gen.load();
  while (cur < g && !c->log_durable_gen.compare_exchange_weak(cur, g)) {
  }
  return st;
}

void Nexus::request_log_flush(Child* c) {
  if (c->log_flush_queued.exchange(true)) return;  // the queued flush will see this bump
  post_control([this, c] {
    c->log_flush_queued.store(false);
    if (c->log_valid.load()) {
      const ChildState s = c->state();
      const std::string reason = s == ChildState::kOffline ? "offline" : fault_reason_name(c->reason());
      if (Status st = persist_log(c, reason, /*after_mark=*/false); !st) {
        if (is_stale_nexus(st)) fence(st.message());
        spdlog::error("nexus={} cannot persist the missed-write log of {}: {}", name(), c->uri,
                      st.to_string());
      }
    } else {
      // No longer a valid log (a full rebuild will follow): nothing to wait for.
      c->log_durable_gen.store(c->log_gen.load());
    }
    broadcast([](NexusChannel& ch) { ch.recheck_records(); });
  });
}

// ---- range locks ----

void Nexus::lock_range(uint64_t id, uint64_t first, uint64_t n, reactor::Reactor& home,
                       std::function<void()> granted) {
  {
    std::lock_guard lk(lock_mu_);
    locks_.push_back({id, first, n});
  }
  struct Pending {
    std::atomic<size_t> left;
    std::function<void()> granted;
    reactor::Reactor* home;
  };
  auto& g = reactors();
  auto p = std::make_shared<Pending>();
  p->left.store(g.size());
  p->granted = std::move(granted);
  p->home = &home;
  auto ack = [this, p] {
    if (p->left.fetch_sub(1) == 1) {
      async_begin();
      p->home->send([this, p] {
        p->granted();
        async_end();
      });
    }
  };
  for (size_t i = 0; i < g.size(); ++i) {
    reactor::Reactor& r = g.at(i);
    async_begin();
    r.send([this, &r, id, first, n, ack] {
      if (auto* ch = channel_on(r.id())) {
        ch->add_lock(id, first, n, ack);
      } else {
        ack();
      }
      async_end();
    });
  }
}

void Nexus::unlock_range(uint64_t id) {
  {
    std::lock_guard lk(lock_mu_);
    std::erase_if(locks_, [id](const LockRange& l) { return l.id == id; });
  }
  broadcast([id](NexusChannel& ch) { ch.remove_lock(id); });
}

std::vector<Nexus::LockRange> Nexus::lock_snapshot() const {
  std::lock_guard lk(lock_mu_);
  return locks_;
}

// ---- state and info ----

NexusState Nexus::state() const {
  if (fenced()) return NexusState::kFenced;
  size_t total = 0, healthy = 0;
  for (const auto& s : slots_) {
    Child* c = s.load();
    if (!c) continue;
    ++total;
    if (c->state() == ChildState::kHealthy && !c->detaching.load()) ++healthy;
  }
  if (healthy == 0) return NexusState::kFaulted;
  return healthy == total ? NexusState::kOnline : NexusState::kDegraded;
}

int Nexus::healthy_count() const {
  int n = 0;
  for (const auto& c : children_) {
    if (c->state() == ChildState::kHealthy && !c->detaching.load()) ++n;
  }
  return n;
}

ChildInfo Nexus::child_info(const Child& c) const {
  ChildInfo i;
  i.uri = c.uri;
  i.bdev_name = c.bdev_name;
  i.state = c.state();
  i.reason = c.reason();
  i.local = c.local;
  i.read_errors = c.read_errors.load();
  i.write_errors = c.write_errors.load();
  i.timeouts = c.timeouts.load();
  i.has_log = c.log_valid.load();
  i.missed_segments = c.log ? c.log->count() : 0;
  if (c.job) i.rebuild = c.job->info();
  return i;
}

NexusInfo Nexus::describe() const {
  std::lock_guard lk(mu_);
  NexusInfo i;
  i.name = name();
  i.uuid = uuid().to_string();
  i.size_bytes = size_bytes();
  i.block_size = block_size();
  i.state = state();
  i.generation = opts_.generation;
  for (const auto& c : children_) i.children.push_back(child_info(*c));
  return i;
}

std::shared_ptr<Child> Nexus::find_child(const std::string& uri) const {
  for (const auto& c : children_) {
    if (c->uri == uri || "bdev:///" + c->bdev_name == uri) return c;
  }
  return nullptr;
}

// ---- shutdown ----

Status Nexus::shutdown(uint64_t drain_timeout_ms) {
  const uint64_t deadline = deadline_after(drain_timeout_ms);
  ControlLock ctl;
  if (auto st = lock_control(ctl, "shutdown", drain_timeout_ms); !st) return st;
  StateLock lk(mu_);
  shut_down_ = true;
  auto fail = [&](Status st) {
    shut_down_ = false;
    return st;
  };
  // The waits below release mu_; children_ stays as it is (this call holds ctl_mu_).
  for (auto& c : children_) {
    if (auto st = stop_job(lk, *c, deadline); !st) return fail(st);
  }
  for (auto& c : children_) {
    if (auto st = drain_child(lk, *c, deadline); !st) return fail(st);
  }
  if (!wait_unlocked(lk, deadline, [this] { return async_.load() == 0; })) {
    return fail(make_error(Errc::kBusy, "nexus '{}': {} internal operation(s) did not finish",
                           name(), async_.load()));
  }
  // Every writable child durable, then recorded closed: a re-created nexus may then read
  // from any child recorded healthy. A failed flush leaves the nexus recorded open (the
  // next one resyncs); a flush that does not finish keeps the nexus, as a drain would.
  if (fenced()) {
    // The health record belongs to the nexus that fenced this one.
    spdlog::info("nexus={} is fenced: its shutdown records nothing", name());
    return Status::ok();
  }
  if (auto st = flush_children(lk, deadline); st.code() == Errc::kBusy) {
    return fail(st);
  } else if (!st) {
    spdlog::warn("nexus={} {}; left recorded open, so the next open resyncs", name(), st.to_string());
  } else if (auto rec = deps_.store.set_open(name(), false); !rec) {
    spdlog::warn("nexus={} cannot record a clean shutdown: {}", name(), rec.to_string());
  }
  // A clean stop: the missed-write logs are complete, so a re-created nexus may use them.
  for (auto& c : children_) {
    if (c->state() == ChildState::kHealthy || !c->log_valid.load()) continue;
    MissedWriteLog log;
    log.segment_blocks = segment_blocks_;
    log.num_segments = c->log->num_segments();
    log.clean = true;
    log.dirty = c->log->runs();
    if (auto st = deps_.store.save_log(name(), c->uri, log); !st) {
      spdlog::warn("nexus={} cannot save the missed-write log of {}: {}", name(), c->uri,
                   st.to_string());
    }
  }
  return Status::ok();
}

bool Nexus::give_up(uint64_t timeout_ms) {
  const uint64_t deadline = deadline_after(timeout_ms);
  ControlLock ctl;
  if (auto st = lock_control(ctl, "give_up", timeout_ms); !st) {
    spdlog::error("nexus={} cannot be given up: {}", name(), st.to_string());
    return false;
  }
  StateLock lk(mu_);
  shut_down_ = true;
  std::vector<std::shared_ptr<RebuildJob>> jobs;
  for (auto& c : children_) {
    if (c->job && !c->job->quiescent()) jobs.push_back(c->job);
  }
  // Stopped first, so that the copies aborted next are the last ones: each then completes
  // (aborted) on its reactor while the nexus, its children and the worker are all alive.
  for (auto& j : jobs) {
    j->stop();
    j->abort_copies();
  }
  for (auto& j : jobs) {
    lk.unlock();
    const bool done = j->wait_quiescent(deadline);
    lk.lock();
    if (done) continue;
    const size_t out = j->detach();
    if (j->quiescent()) continue;  // finished just before the detach took effect
    spdlog::error("nexus={} rebuild of {} still has {} copy(ies) in flight on a child that neither "
                  "answers nor can abort them; its buffers are kept (leaked) so that a late "
                  "completion lands in live memory",
                  name(), j->dest()->uri, out);
    keep_forever(j);
  }
  bool ok = true;
  if (!wait_unlocked(lk, deadline, [this] { return outstanding(nullptr) == 0; })) {
    spdlog::error("nexus={} child I/O still outstanding at exit (a hung child)", name());
    ok = false;
  }
  if (!wait_unlocked(lk, deadline, [this] { return async_.load() == 0; })) {
    spdlog::error("nexus={} {} internal operation(s) still running at exit", name(), async_.load());
    ok = false;
  }
  return ok;
}

Status Nexus::flush_children(StateLock& lk, uint64_t deadline_ns) {
  struct Flush {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
    std::string failed;  // the first child that failed, with its status
    // The child's URI, not the Child: a flush that does not finish in time outlives the
    // nexus (its completion then reads only this Flush).
    std::vector<std::pair<std::string, bdev::IoRequest>> reqs;
    // reqs[i] goes through descs[i], the child's own descriptor. Used only to submit,
    // on reactor 0 at once while the caller waits (the children stay open meanwhile).
    std::vector<const bdev::BdevDesc*> descs;
    std::shared_ptr<Flush> self;  // kept alive until the last completion
  };
  auto f = std::make_shared<Flush>();
  for (auto& c : children_) {
    const ChildState s = c->state();
    if ((s == ChildState::kHealthy || s == ChildState::kOutOfSync) && c->bdev->supports(IoType::kFlush)) {
      f->reqs.emplace_back(c->uri, bdev::IoRequest{});
      f->descs.push_back(&c->desc);
    }
  }
  if (f->reqs.empty()) return Status::ok();
  f->left = f->reqs.size();
  f->self = f;
  reactor::Reactor& r = reactors().at(0);
  r.send([f = f.get(), &r] {
    for (size_t i = 0; i < f->reqs.size(); ++i) {
      bdev::IoRequest& req = f->reqs[i].second;
      req.type = IoType::kFlush;
      req.cb_arg = f;
      req.cb = [](bdev::IoRequest& q, void* arg) {
        auto* fl = static_cast<Flush*>(arg);
        std::shared_ptr<Flush> keep;
        std::lock_guard lk(fl->mu);
        if (q.status != bdev::IoStatus::kSuccess && fl->failed.empty()) {
          for (auto& [ch, rq] : fl->reqs) {
            if (&rq == &q) fl->failed = fmt::format("flush of child {} failed: {}", ch, bdev::io_status_name(q.status));
          }
        }
        if (--fl->left == 0) {
          keep = std::move(fl->self);
          fl->cv.notify_all();
        }
      };
      f->descs[i]->channel(r).submit(req);
    }
  });
  // Waits without mu_: the children stay open (the caller holds ctl_mu_).
  lk.unlock();
  bool done;
  {
    std::unique_lock fl(f->mu);
    const uint64_t now = mono_ns();
    done = f->cv.wait_for(fl, std::chrono::nanoseconds(deadline_ns > now ? deadline_ns - now : 0),
                          [&] { return f->left == 0; });
  }
  lk.lock();
  if (!done) {
    // A flush stuck on a child that does not answer may never complete (a nexus given up
    // at exit keeps its children open, so their bdevs never fail it): its request points
    // into this Flush, which is therefore kept for the life of the process.
    keep_forever(f);
    return make_error(Errc::kBusy, "nexus '{}': a child flush did not finish in time", name());
  }
  if (!f->failed.empty()) return make_error(Errc::kIoError, "{}", f->failed);
  return Status::ok();
}

void Nexus::close_children() {
  ControlLock ctl;
  if (auto st = lock_control(ctl, "close_children"); !st) {
    // Only the manager calls this, after shutdown() or give_up(), with no call left.
    spdlog::error("nexus={} closes its children while {}", name(), st.to_string());
  }
  std::lock_guard lk(mu_);
  for (auto& c : children_) {
    slots_[c->slot].store(nullptr);
    close_child_bdev(deps_.registry, name(), *c);
    graveyard_.push_back(c);
  }
  children_.clear();
}

}  // namespace castor::nexus
