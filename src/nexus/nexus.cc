#include "nexus/nexus.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/uri.h"
#include "nexus/nexus_channel.h"
#include "nexus/rebuild.h"

namespace castor::nexus {

using bdev::IoType;
using bdev::io_type_bit;

namespace {

constexpr uint32_t kNexusOps = io_type_bit(IoType::kRead) | io_type_bit(IoType::kWrite) |
                               io_type_bit(IoType::kFlush) | io_type_bit(IoType::kUnmap) |
                               io_type_bit(IoType::kWriteZeroes) | io_type_bit(IoType::kReset);

uint32_t ops_of(const bdev::Bdev& b) {
  uint32_t m = 0;
  for (int t = 0; t < bdev::kNumIoTypes; ++t) {
    if (b.supports(static_cast<IoType>(t))) m |= io_type_bit(static_cast<IoType>(t));
  }
  return m;
}

// Opens (bdev:///name) or creates (any other URI) one child bdev and claims it.
Result<std::shared_ptr<Child>> open_child_bdev(bdev::BdevRegistry& reg, const std::string& nexus,
                                               const std::string& uri) {
  auto u = Uri::parse(uri);
  if (!u) return u.status();
  auto c = std::make_shared<Child>();
  c->uri = uri;
  if (u->scheme == "bdev") {
    c->bdev_name = u->name_from_path();
    if (c->bdev_name.empty()) {
      return make_error(Errc::kInvalidArgument, "child URI '{}' names no bdev", uri);
    }
  } else if (u->scheme == "nexus") {
    return make_error(Errc::kInvalidArgument, "a nexus cannot be a child of a nexus ('{}')", uri);
  } else {
    auto info = reg.create(uri);
    if (!info) return info.status();
    c->bdev_name = info->name;
    c->owned = true;
  }
  auto desc = reg.open(c->bdev_name, "nexus:" + nexus);
  if (!desc) {
    if (c->owned) (void)reg.destroy(c->bdev_name);
    return desc.status();
  }
  c->desc = std::move(desc.value());
  c->bdev = reg.find(c->bdev_name);
  c->local = c->bdev->module() != "nvmf";
  return c;
}

void close_child_bdev(bdev::BdevRegistry& reg, const std::string& nexus, Child& c) {
  if (!c.desc) return;
  c.desc.close();
  reg.release_claim(c.bdev_name, "nexus:" + nexus);
  c.bdev.reset();
  if (c.owned) {
    if (auto st = reg.destroy(c.bdev_name); !st) {
      spdlog::warn("nexus={} cannot destroy child bdev {}: {}", nexus, c.bdev_name,
                   st.to_string());
    }
  }
}

}  // namespace

Nexus::Nexus(NexusDeps deps, const std::string& name, uint32_t block_size, uint64_t num_blocks,
             const NexusOptions& opts)
    : Bdev(name, "nexus", block_size, num_blocks),
      deps_(deps),
      opts_(opts),
      segment_blocks_(std::max<uint64_t>(1, uint64_t{opts.rebuild.segment_kb} * 1024 / block_size)) {
  for (auto& s : slots_) s.store(nullptr);
  if (opts.serialize_overlaps) inflight_ = std::make_unique<InflightWrites>(block_size, num_blocks);
}

Nexus::~Nexus() {
  // Jobs hold their destination child: break the cycle (they are quiescent by now).
  for (auto& c : children_) c->job.reset();
  for (auto& c : graveyard_) c->job.reset();
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
  uint32_t align = 1;
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
    c->log = std::make_unique<SegmentLog>(n->num_blocks(), n->segment_blocks_);
    c->durable = std::make_unique<SegmentLog>(n->num_blocks(), n->segment_blocks_);
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
  async_begin();
  deps_.worker.post([this, fn = std::move(fn)] {
    fn();
    async_end();
  });
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

// ---- control path ----

Status Nexus::drain_child(Child& c, uint64_t timeout_ms) {
  const uint64_t deadline = mono_ns() + timeout_ms * 1'000'000;
  for (;;) {
    std::atomic<uint64_t> outstanding{0};
    reactors().run_on_all([&](reactor::Reactor& r) {
      if (auto* ch = channel_on(r.id())) outstanding += ch->slot_outstanding(c.slot);
    });
    if (outstanding.load() == 0) return Status::ok();
    if (mono_ns() > deadline) {
      return make_error(Errc::kBusy,
                        "nexus '{}': child '{}' still has {} I/O(s) outstanding (hung device?)",
                        name(), c.uri, outstanding.load());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
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

Status Nexus::stop_job_locked(Child& c, uint64_t timeout_ms) {
  auto job = c.job;
  if (!job || job->applied.load()) return Status::ok();
  job->stop();
  // The job runs on its reactor and publishes only a flag, so this polls it; bounded,
  // because a copy stuck on a hung child would otherwise hold mu_ (every control call
  // and describe()) for as long as the device hangs.
  if (timeout_ms == 0) timeout_ms = std::max<uint64_t>(5000, 2ull * opts_.child_io_timeout_ms);
  const uint64_t deadline = mono_ns() + timeout_ms * 1'000'000;
  while (!job->quiescent()) {
    if (mono_ns() > deadline) {
      // Left to finish on its own: the worker applies its outcome (Faulted(out_of_sync)
      // for a stopped job) once the stuck I/O returns.
      return make_error(Errc::kBusy,
                        "nexus '{}': the rebuild of '{}' did not stop within {} ms (a copy is "
                        "stuck on a hung child); it stops once that I/O returns, retry then",
                        name(), c.uri, timeout_ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Apply the outcome here; the worker's finish_rebuild then finds it applied.
  job->applied.store(true);
  if (job->state() == RebuildState::kCompleted) {
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
                job->dest_failed() ? FaultReason::kRebuildFailed : FaultReason::kOutOfSync,
                RecordState::kDurable);
  }
  sync_all();
  return Status::ok();
}

void Nexus::finish_rebuild(const std::shared_ptr<RebuildJob>& job) {
  if (job->applied.load()) return;  // a control call already applied it
  std::unique_lock lk(mu_, std::try_to_lock);
  if (!lk) {
    // A control call holds the nexus and may be waiting on work queued behind us.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    post_control([this, job] { finish_rebuild(job); });
    return;
  }
  if (job->applied.load()) return;
  Child& c = *job->dest();
  if (std::find(children_.begin(), children_.end(), job->dest()) == children_.end()) {
    job->applied.store(true);
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
}

Status Nexus::add_child(const std::string& uri, bool rebuild) {
  std::lock_guard lk(mu_);
  if (shut_down_) return make_error(Errc::kBusy, "nexus '{}' is shutting down", name());
  if (children_.size() >= kMaxChildren) {
    return make_error(Errc::kInvalidArgument, "nexus '{}' already has {} children (the limit)",
                      name(), kMaxChildren);
  }
  if (find_child(uri)) {
    return make_error(Errc::kAlreadyExists, "nexus '{}' already has child '{}'", name(), uri);
  }
  if (rebuild && healthy_count() == 0) {
    return make_error(Errc::kBusy, "nexus '{}' has no healthy child to rebuild '{}' from", name(),
                      uri);
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
  int slot = -1;
  for (size_t i = 0; i < kMaxChildren; ++i) {
    if (!slots_[i].load()) {
      slot = static_cast<int>(i);
      break;
    }
  }
  c->slot = slot;
  c->log = std::make_unique<SegmentLog>(num_blocks(), segment_blocks_);
  c->durable = std::make_unique<SegmentLog>(num_blocks(), segment_blocks_);
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
  std::lock_guard lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (c->state() == ChildState::kHealthy && !c->detaching.load() && healthy_count() == 1) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  if (auto st = stop_job_locked(*c); !st) return st;
  for (const auto& o : children_) {
    if (o != c && o->job && !o->job->applied.load() && o->job->source() == c.get()) {
      spdlog::warn("nexus={} removing {} stops the rebuild of {} (its source)", name(), uri, o->uri);
      if (auto st = stop_job_locked(*o); !st) return st;
    }
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
  uint64_t drain_ms = std::max<uint64_t>(5000, 2ull * opts_.child_io_timeout_ms);
  if (auto st = drain_child(*c, drain_ms); !st) {
    // Not removed: it stays as a faulted child (recorded so), to be removed again, or
    // brought back with a full rebuild, once its I/O has drained.
    c->detaching.store(false);
    sync_all();
    return st;
  }
  // The unhealthy record of a retirement is written by the worker; the store may be slow
  // or unreachable, so wait for it only as long as for the drain.
  for (const uint64_t deadline = mono_ns() + drain_ms * 1'000'000; c->record_state() == RecordState::kPending;) {
    if (mono_ns() > deadline) {
      c->detaching.store(false);  // a retired child: it stays, Faulted, out of the I/O sets
      sync_all();
      return make_error(Errc::kBusy,
                        "nexus '{}': the unhealthy record of '{}' is still being written to the "
                        "health store after {} ms; not removed",
                        name(), c->uri, drain_ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
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
  std::lock_guard lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (c->state() == ChildState::kFaulted) return Status::ok();
  if (c->state() == ChildState::kHealthy && healthy_count() == 1) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  if (auto st = stop_job_locked(*c); !st) return st;
  if (c->state() == ChildState::kFaulted) return Status::ok();
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
  std::lock_guard lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (c->state() == ChildState::kOffline) return Status::ok();
  if (c->state() == ChildState::kHealthy && healthy_count() == 1) {
    return make_error(Errc::kBusy, "nexus '{}': '{}' is the last healthy child", name(), uri);
  }
  if (auto st = stop_job_locked(*c); !st) return st;
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
  std::lock_guard lk(mu_);
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
  if (auto st = drain_child(*c, 5000); !st) return st;
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
  std::lock_guard lk(mu_);
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
  for (const auto& c : children_) {
    c->log->grow(blocks);
    c->durable->grow(blocks);
  }
  sync_all();
  const uint64_t old = size_bytes();
  set_num_blocks(blocks);
  spdlog::info("nexus={} grown from {} to {} bytes", name(), old, bytes);
  return Status::ok();
}

Status Nexus::start_rebuild(const std::string& uri) {
  std::unique_lock lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  auto s = c->state();
  if (s == ChildState::kOffline || s == ChildState::kFaulted) {
    lk.unlock();
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
  std::lock_guard lk(mu_);
  return with_job(find_child(uri), name(), uri, [](RebuildJob& j) { j.pause(); });
}

Status Nexus::resume_rebuild(const std::string& uri) {
  std::lock_guard lk(mu_);
  return with_job(find_child(uri), name(), uri, [](RebuildJob& j) { j.resume(); });
}

Status Nexus::stop_rebuild(const std::string& uri) {
  std::lock_guard lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (!c->job || c->job->applied.load()) {
    return make_error(Errc::kNotFound, "nexus '{}': child '{}' has no running rebuild", name(), uri);
  }
  return stop_job_locked(*c);
}

Result<RebuildInfo> Nexus::rebuild_info(const std::string& uri) const {
  std::lock_guard lk(mu_);
  auto c = find_child(uri);
  if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
  if (!c->job) return make_error(Errc::kNotFound, "nexus '{}': child '{}' was never rebuilt", name(), uri);
  return c->job->info();
}

Result<RebuildInfo> Nexus::wait_rebuild(const std::string& uri, uint64_t timeout_ms) {
  const uint64_t deadline = mono_ns() + timeout_ms * 1'000'000;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      auto c = find_child(uri);
      if (!c) return make_error(Errc::kNotFound, "nexus '{}' has no child '{}'", name(), uri);
      if (!c->job) {
        return make_error(Errc::kNotFound, "nexus '{}': child '{}' was never rebuilt", name(), uri);
      }
      if (c->job->applied.load()) return c->job->info();
    }
    if (mono_ns() > deadline) {
      return make_error(Errc::kTimedOut, "nexus '{}': rebuild of '{}' still running after {} ms",
                        name(), uri, timeout_ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Status Nexus::shutdown(uint64_t drain_timeout_ms) {
  std::lock_guard lk(mu_);
  shut_down_ = true;
  for (auto& c : children_) {
    if (auto st = stop_job_locked(*c, drain_timeout_ms); !st) {
      shut_down_ = false;
      return st;
    }
  }
  for (auto& c : children_) {
    if (auto st = drain_child(*c, drain_timeout_ms); !st) {
      shut_down_ = false;
      return st;
    }
  }
  const uint64_t deadline = mono_ns() + drain_timeout_ms * 1'000'000;
  while (async_.load() > 0 && mono_ns() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (async_.load() > 0) {
    shut_down_ = false;
    return make_error(Errc::kBusy, "nexus '{}': {} internal operation(s) did not finish", name(),
                      async_.load());
  }
  // Every writable child durable, then recorded closed: a re-created nexus may then read
  // from any child recorded healthy. A failed flush leaves the nexus recorded open (the
  // next one resyncs); a flush that does not finish keeps the nexus, as a drain would.
  if (fenced()) {
    // The health record belongs to the nexus that fenced this one.
    spdlog::info("nexus={} is fenced: its shutdown records nothing", name());
    return Status::ok();
  }
  if (auto st = flush_children(drain_timeout_ms); st.code() == Errc::kBusy) {
    shut_down_ = false;
    return st;
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

Status Nexus::flush_children(uint64_t timeout_ms) {
  struct Flush {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
    std::string failed;  // the first child that failed, with its status
    // The child's URI, not the Child: a flush that does not finish in time outlives the
    // nexus (its completion then reads only this Flush).
    std::vector<std::pair<std::string, bdev::IoRequest>> reqs;
    std::vector<bdev::Bdev*> bdevs;  // reqs[i] goes to bdevs[i] (held by the registry)
    std::shared_ptr<Flush> self;  // kept alive until the last completion
  };
  auto f = std::make_shared<Flush>();
  for (auto& c : children_) {
    const ChildState s = c->state();
    if ((s == ChildState::kHealthy || s == ChildState::kOutOfSync) && c->bdev->supports(IoType::kFlush)) {
      f->reqs.emplace_back(c->uri, bdev::IoRequest{});
      f->bdevs.push_back(c->bdev.get());
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
      f->bdevs[i]->channel(r).submit(req);
    }
  });
  std::unique_lock lk(f->mu);
  if (!f->cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return f->left == 0; })) {
    return make_error(Errc::kBusy, "nexus '{}': a child flush did not finish in {} ms", name(), timeout_ms);
  }
  if (!f->failed.empty()) return make_error(Errc::kIoError, "{}", f->failed);
  return Status::ok();
}

void Nexus::close_children() {
  std::lock_guard lk(mu_);
  for (auto& c : children_) {
    slots_[c->slot].store(nullptr);
    close_child_bdev(deps_.registry, name(), *c);
    graveyard_.push_back(c);
  }
  children_.clear();
}

}  // namespace castor::nexus
