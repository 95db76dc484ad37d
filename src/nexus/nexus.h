#pragma once
// Layer 4: the nexus, a bdev (module "nexus") composed of up to kMaxChildren children,
// each another bdev (a local replica, a malloc/uring disk, or an nvmf:// remote one).
//
// Data path (NexusChannel, one per reactor, no locks):
//  * write, write_zeroes, unmap, flush, reset go to every writable child (Healthy or
//    OutOfSync) in parallel and complete when all have answered;
//  * a read goes to one readable (Healthy) child: ReadPolicy::kLocalFirst picks a local
//    child (bdev module not "nvmf") before a remote one, then the least busy
//    (BdevChannel::outstanding()); kRoundRobin rotates;
//  * a child that fails an I/O (any status but success or kInvalid; the window policy
//    first tolerates max_errors per window, retrying), or whose I/O outlives
//    child_io_timeout_ms, is retired: it leaves the read and write sets on every reactor
//    and the I/O completes from the remaining children. Before any nexus I/O that
//    depended on the retired child completes, the child is recorded unhealthy in the
//    ChildHealthStore (written by the manager's worker thread; the I/O is held until the
//    record is durable). The caller sees an error only when no healthy child is left (or
//    the record could not be written).
//  * a timed-out child I/O is abandoned: its buffers are redirected to a scratch sink
//    and its late completion is ignored; the per-I/O context is recycled only when every
//    child request has returned.
//
// Control path (any non-reactor thread; calls are serialized per nexus): add, remove,
// fault, offline, online a child, and rebuild control. Each change is applied to every
// reactor's channel by message and the call returns once all have applied it. A call that
// waits (for a rebuild copy, a child's I/O, a record, a flush) waits with a deadline and
// without holding the nexus's state: describe() and rebuild_info() answer meanwhile.
//
// Lifetime: an I/O the nexus submits itself (a rebuild copy, a child request, the
// shutdown flush) completes before the memory it points to, or that its completion
// reaches, is freed. The nexus is freed only once every rebuild job is quiescent and no
// internal message or worker job refers to it; what cannot get there at engine exit (a
// device that never answers) is kept for the life of the process (keep_forever), never
// freed under the I/O.
//
// Range lock (for rebuild): a locked block range holds new application writes that
// overlap it on every reactor; the lock is granted once each reactor's in-flight
// overlapping writes have drained.
//
// Write order: a write that overlaps a write in flight (on any reactor) is held until
// that one has completed (InflightWrites), so every child sees overlapping writes in the
// same order.

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "nexus/health_store.h"
#include "nexus/inflight_writes.h"
#include "nexus/types.h"
#include "nexus/worker.h"

namespace castor::nexus {

class Nexus;
class NexusChannel;
class RebuildJob;

// Record states of a child's unhealthy record (see Child::record).
enum class RecordState : uint8_t { kClean = 0, kPending, kDurable, kFailed };

// Keeps `p` for the life of the process: memory that I/O which may never return still
// points to (a rebuild job with a copy stuck on a hung child, a nexus whose child I/O did
// not drain), when the engine gives up waiting for it at exit. A deliberate leak, which
// the caller logs; reachable from here, so leak checkers do not report it. Thread-safe.
void keep_forever(std::shared_ptr<const void> p);

// One child of a nexus. Created and destroyed by the Nexus (control path). The atomics
// are read by reactors; everything else is guarded by the nexus's locks (Nexus::mu_).
struct Child {
  std::string uri;        // as given at create/add
  std::string bdev_name;
  bool owned = false;     // created by the nexus (destroyed with it)
  bool local = true;      // bdev module is not "nvmf"
  int slot = -1;
  std::shared_ptr<bdev::Bdev> bdev;
  bdev::BdevDesc desc;

  ChildState state() const { return static_cast<ChildState>(packed_.load() & 0xff); }
  FaultReason reason() const { return static_cast<FaultReason>((packed_.load() >> 8) & 0xff); }
  // Progress of the unhealthy record of the latest retirement.
  RecordState record_state() const {
    return static_cast<RecordState>((packed_.load() >> 16) & 0xff);
  }
  void set_state(ChildState s, FaultReason r, RecordState rec) {
    packed_.store(pack(s, r, rec));
  }
  // Healthy or OutOfSync -> Faulted(r) with a pending record, atomically. False if the
  // child already left the write set. `before` receives the state it left.
  bool try_retire(FaultReason r, ChildState* before) {
    uint32_t cur = packed_.load();
    for (;;) {
      auto st = static_cast<ChildState>(cur & 0xff);
      if (st != ChildState::kHealthy && st != ChildState::kOutOfSync) return false;
      if (packed_.compare_exchange_weak(cur, pack(ChildState::kFaulted, r, RecordState::kPending))) {
        *before = st;
        return true;
      }
    }
  }
  // Pending -> `rec` (the worker wrote, or failed to write, the record).
  void settle_record(RecordState rec) {
    uint32_t cur = packed_.load();
    while (((cur >> 16) & 0xff) == static_cast<uint32_t>(RecordState::kPending) &&
           !packed_.compare_exchange_weak(cur, (cur & 0xffff) | static_cast<uint32_t>(rec) << 16)) {
    }
  }

  // Set while the child is being removed: out of both sets, draining.
  std::atomic<bool> detaching{false};

  // Missed-write log: `log_active` makes writes the child does not receive set bits;
  // `log_valid` says the bits cover every write missed since the child was last in sync.
  std::unique_ptr<SegmentLog> log;
  std::atomic<bool> log_active{false};
  std::atomic<bool> log_valid{false};
  // Write-ahead persistence of a valid log, so a partial rebuild survives a crash: a
  // write that skips this child completes only once its segments are in a persisted log.
  // `durable` holds the segments known persisted (reset when a valid log starts);
  // `log_gen` is bumped after each segment newly logged, and `log_durable_gen` tells up
  // to which bump the store has it. Flushes run on the control worker, one at a time.
  std::unique_ptr<SegmentLog> durable;
  std::atomic<uint64_t> log_gen{0};
  std::atomic<uint64_t> log_durable_gen{0};
  std::atomic<bool> log_flush_queued{false};
  std::atomic<bool> log_persist_failed{false};

  // Segments the child's running rebuild has yet to copy (RebuildOptions::defer_writes):
  // the job sets them at its start and clears each one before it range-locks that
  // segment, and clears them all when it ends. A write all of whose segments are set
  // skips this child: it is in flight, or has reached the source, before the lock of its
  // segment is granted, so the copy reads it from the source.
  std::unique_ptr<SegmentLog> copy_pending;
  std::atomic<uint64_t> writes_deferred{0};  // writes that skipped it so (any reactor)

  // The per-segment sets above, for a nexus of `num_blocks`; grow_logs before the nexus
  // grows (control path).
  void make_logs(uint64_t num_blocks, uint64_t segment_blocks) {
    log = std::make_unique<SegmentLog>(num_blocks, segment_blocks);
    durable = std::make_unique<SegmentLog>(num_blocks, segment_blocks);
    copy_pending = std::make_unique<SegmentLog>(num_blocks, segment_blocks);
  }
  void grow_logs(uint64_t num_blocks) {
    log->grow(num_blocks);
    durable->grow(num_blocks);
    copy_pending->grow(num_blocks);
  }

  // Error accounting (any reactor).
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> write_errors{0};
  std::atomic<uint64_t> timeouts{0};
  // Window policy: a fixed window opened by its first error.
  std::atomic<uint64_t> window_start_ns{0};
  std::atomic<uint32_t> window_errors{0};

  std::shared_ptr<RebuildJob> job;         // running or last job (see Nexus::mu_)

 private:
  static uint32_t pack(ChildState s, FaultReason r, RecordState rec) {
    return static_cast<uint32_t>(s) | static_cast<uint32_t>(r) << 8 |
           static_cast<uint32_t>(rec) << 16;
  }
  std::atomic<uint32_t> packed_{0};
};

struct NexusDeps {
  bdev::BdevRegistry& registry;
  ChildHealthStore& store;
  ControlWorker& worker;
  // This engine's host identifier: the one its nvmf:// children connect with, under
  // which a nexus with a generation registers on them. Zero: reservations unavailable.
  bdev::HostId host_id{};
};

class Nexus final : public bdev::Bdev {
 public:
  // Opens or creates the children, applies the stale-child rule from the store and
  // returns the nexus (not yet registered; NexusManager does that). `size_bytes` 0 =
  // the smallest child. Errors: InvalidArgument (no children, > kMaxChildren, duplicate
  // URI, block sizes differ, child too small, bad size/options), NotFound / Busy (a
  // bdev:/// child missing or claimed), FailedPrecondition-like kBusy when every child
  // is recorded unhealthy and !opts.force; a failed create leaves nothing behind.
  static Result<std::shared_ptr<Nexus>> create(NexusDeps deps, const std::string& name,
                                               uint64_t size_bytes,
                                               const std::vector<std::string>& children,
                                               const NexusOptions& opts);
  ~Nexus() override;

  // Starts the rebuilds create() decided on (stale children). After registration.
  void start_initial_rebuilds();

  NexusState state() const;
  // A remote child answered Reservation Conflict: a newer nexus of the volume took its
  // children over. From now on every I/O completes with kPathUnavailable (NVMe-oF turns
  // that into a lost path, and the host continues on the new nexus's), and nothing is
  // written to the health store. Any thread; idempotent.
  void fence(const std::string& why);
  bool fenced() const { return fenced_.load(std::memory_order_acquire); }
  NexusInfo describe() const;
  const NexusOptions& options() const { return opts_; }

  // ---- Control path (not from a reactor thread) ----
  // Each call below that changes the nexus may also fail with Busy when another control
  // call of this nexus is still in progress after max(5 s, 2 x child_io_timeout_ms).
  // Adds a child; it starts OutOfSync and is rebuilt from a healthy child (`rebuild`),
  // or starts Faulted(OutOfSync). Errors: InvalidArgument (limit, size, block size),
  // AlreadyExists, NotFound/Busy (open), and the creation error of an owned child.
  Status add_child(const std::string& uri, bool rebuild = true);
  // Records it unhealthy, stops its rebuild, drains its in-flight I/O, closes it
  // (destroys it if owned) and forgets its record. Errors: NotFound; Busy if it is the
  // last healthy child (a nexus keeps one source of truth) or its I/O does not drain (a
  // hung device: the child then stays, Faulted(by_request)).
  Status remove_child(const std::string& uri);
  // Faulted(ByRequest), recorded unhealthy first. Errors: NotFound, Busy (last healthy).
  Status fault_child(const std::string& uri);
  // Offline: kept open, out of the I/O sets, its missed writes logged (partial rebuild
  // on online). Errors: NotFound, Busy (last healthy).
  Status offline_child(const std::string& uri);
  // From Offline or Faulted: OutOfSync, then a partial rebuild if a valid missed-write
  // log exists, else a full one. Errors: NotFound, InvalidArgument (wrong state), Busy
  // (no healthy source, or I/O of the child still outstanding).
  Status online_child(const std::string& uri);

  // Grows the nexus to `bytes` while I/O runs. Every child (whatever its state) must
  // already be at least that big: a child that looks smaller is asked to re-read its size
  // first (Bdev::refresh_size: a remote nvmf:// child identifies its namespace again).
  // The missed-write logs grow with it; rebuilds already running keep their range (the
  // new blocks hold no data yet and every write to them reaches every writable child).
  // Front ends read the size from the bdev, so the caller tells their hosts. The same
  // size is a no-op. Errors: InvalidArgument (zero, not a multiple of the block size,
  // smaller than now: a nexus never shrinks), Busy (a child smaller than `bytes`
  // after the refresh, or shutting down), and the refresh's error naming the child.
  Status resize(uint64_t bytes);

  Status start_rebuild(const std::string& uri);  // OutOfSync child without a running job
  Status pause_rebuild(const std::string& uri);
  Status resume_rebuild(const std::string& uri);
  Status stop_rebuild(const std::string& uri);   // child becomes Faulted(OutOfSync)
  Result<RebuildInfo> rebuild_info(const std::string& uri) const;
  // Waits until the child's job is finished (completed/failed/stopped) and its outcome
  // applied. Errors: NotFound, TimedOut.
  Result<RebuildInfo> wait_rebuild(const std::string& uri, uint64_t timeout_ms);

  // Before destroy: stops rebuilds, waits for child I/O and pending records, saves the
  // missed-write logs as clean. Waits `drain_timeout_ms` in all. Errors: Busy (a rebuild
  // copy, a child I/O or the flush did not finish in time; the nexus then stays usable).
  Status shutdown(uint64_t drain_timeout_ms);
  // At engine exit, after shutdown() failed: gives up what is still in flight so that the
  // nexus can be freed. Stops every rebuild and aborts its copies in flight where the
  // child can (an nvmf:// child queuing for a lost connection hands them back at once),
  // waits up to `timeout_ms` for each job to become quiescent, and detaches a job still
  // waiting for a child that cannot abort (logged; its caller keeps it, keep_forever).
  // Returns true if the nexus may then be freed: no child request and no internal message
  // or worker job refers to it any more. False: it must be kept (keep_forever) and never
  // get I/O again.
  bool give_up(uint64_t timeout_ms);
  // After the registry dropped the nexus: closes the children, destroying owned ones.
  void close_children();
  // The manager's worker is going away (a kept nexus outlives it): from now on work for
  // it is dropped, with a log line, instead of posted.
  void forget_worker();

  // ---- Used by NexusChannel and RebuildJob ----
  Child* child_at(size_t slot) const { return slots_[slot].load(std::memory_order_acquire); }
  NexusChannel* channel_on(size_t reactor_id) const;
  reactor::ReactorGroup& reactors() { return reactors_; }
  uint64_t segment_blocks() const { return segment_blocks_; }
  // Null with serialize_overlaps=false.
  InflightWrites* inflight_writes() const { return inflight_.get(); }
  // A reactor retired `c`: persist the record, then re-sync every channel.
  void on_child_retired(Child* c, FaultReason r);
  // A write skipped `c` into segments not yet persisted in its valid log: persist the log
  // (coalesced: one flush in flight per child), then let channels recheck their waiters.
  void request_log_flush(Child* c);
  // Sends `fn(channel)` to every reactor with a channel (reactor-safe, no waiting).
  void broadcast(std::function<void(NexusChannel&)> fn);
  // Range locks (see the header comment). Reactor-safe. `granted` runs on the caller's
  // reactor `home` when every reactor has drained.
  void lock_range(uint64_t id, uint64_t first, uint64_t n, reactor::Reactor& home,
                  std::function<void()> granted);
  void unlock_range(uint64_t id);
  struct LockRange {
    uint64_t id, first, n;
  };
  std::vector<LockRange> lock_snapshot() const;
  // Called by the worker when a job reached a final state.
  void finish_rebuild(const std::shared_ptr<RebuildJob>& job);
  // Runs `fn` on the manager's worker thread (blocking work: store writes, run_on_all).
  void post_control(std::function<void()> fn);
  // Wakes the control calls waiting for a record, a job's outcome or a drain (any thread
  // that keeps the nexus alive meanwhile: the worker, inside post_control's work).
  void wake();
  // On the worker: writes `c`'s log (write-ahead) to the store, after the unhealthy
  // record unless `after_mark` says it was just written; then advances `durable`.
  Status persist_log(Child* c, const std::string& reason, bool after_mark);
  // Tracks asynchronous messages/jobs referring to this nexus (destroy waits).
  void async_begin() { async_.fetch_add(1); }
  void async_end() { async_.fetch_sub(1); }

 protected:
  std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor& r) override;

 private:
  Nexus(NexusDeps deps, const std::string& name, uint32_t block_size, uint64_t num_blocks,
        const NexusOptions& opts);
  Result<std::shared_ptr<Child>> open_child(const std::string& uri);
  // With a generation: registers on a remote child and takes (or preempts) an Exclusive
  // Access reservation; with `check_only`, only checks that no newer nexus holds it (so
  // that a create refused on one child has preempted none). Errors: Busy (a newer nexus
  // holds it), and the child's reservation errors.
  static Status reserve_child(const NexusDeps& deps, const NexusOptions& opts, const std::string& nexus, Child& c,
                              bool check_only = false);
  void release_child(Child& c);
  std::shared_ptr<Child> find_child(const std::string& uri) const;
  int healthy_count() const;
  void sync_all();  // run_on_all(channel.sync())

  // ---- Waiting (see mu_) ----
  using ControlLock = std::unique_lock<std::timed_mutex>;
  using StateLock = std::unique_lock<std::mutex>;
  // How long a control call waits for one thing: max(5 s, 2 x child_io_timeout_ms).
  uint64_t wait_ms() const;
  static uint64_t deadline_after(uint64_t ms);  // mono_ns() + ms
  // Takes ctl_mu_ for the call `what`, waiting for a call in progress at most `timeout_ms`
  // (0: wait_ms()). Errors: Busy, naming the call in progress.
  Status lock_control(ControlLock& ctl, const char* what, uint64_t timeout_ms = 0);
  // Waits until `done()` or `deadline_ns` with `lk` released (held again on return); the
  // caller holds ctl_mu_, so only reactors and the worker change the nexus meanwhile, and
  // re-checks what they may have changed. `done` runs without mu_; it is re-evaluated on
  // wake() and every kWaitTickMs. True if done.
  bool wait_unlocked(StateLock& lk, uint64_t deadline_ns, const std::function<bool()>& done);
  static constexpr uint64_t kWaitTickMs = 2;
  // Child requests of `c` (nullptr: of every child) still out on any reactor.
  uint64_t outstanding(const Child* c);
  // Waits (as wait_unlocked) until c's child requests have returned. Errors: Busy.
  Status drain_child(StateLock& lk, Child& c, uint64_t deadline_ns);
  // Flushes every writable child (on reactor 0) and waits (as wait_unlocked). Errors: Busy
  // (not finished in time: the requests are still out), IoError (a child failed it).
  Status flush_children(StateLock& lk, uint64_t deadline_ns);
  Status start_job(const std::shared_ptr<Child>& c, bool partial, std::vector<uint64_t> segs);
  // Stops c's running job and applies its outcome. Waits (as wait_unlocked, notified by
  // the job) until `deadline_ns` (0: wait_ms() from now) for its copies in flight; Busy if
  // they have not returned by then (the job then finishes, and the worker applies its
  // outcome, on its own). `abort_to_dest`: also gives up the copies in flight to c where
  // its device can (RebuildJob::abort_copies), for a child that leaves the nexus: a late
  // write of an aborted copy can then land only on a child that is no longer ours.
  Status stop_job(StateLock& lk, Child& c, uint64_t deadline_ns = 0, bool abort_to_dest = false);
  // Applies a quiescent job's outcome to its destination `c` (under mu_).
  void apply_outcome(Child& c, RebuildJob& job);
  ChildInfo child_info(const Child& c) const;

  NexusDeps deps_;
  reactor::ReactorGroup& reactors_;  // outlives the registry (engine exit)
  NexusOptions opts_;
  uint64_t segment_blocks_;
  std::unique_ptr<InflightWrites> inflight_;
  // Two locks. ctl_mu_ serializes the control calls; one holds it from start to end.
  // mu_ guards the nexus's state for readers (describe, rebuild_info, wait_rebuild) and
  // for the worker applying rebuild outcomes; a control call holds it too, but releases
  // it whenever it waits (wait_unlocked), so a call waiting for a hung child never holds
  // up a reader or the worker. children_, graveyard_ and Child::job change only under
  // both; a holder of either may read them. Order: ctl_mu_, then mu_.
  std::timed_mutex ctl_mu_;
  std::atomic<const char*> ctl_what_{""};  // the call holding ctl_mu_ (for Busy messages)
  mutable std::mutex mu_;
  std::mutex wake_mu_;  // with wake_cv_, wake_gen_: wake()
  std::condition_variable wake_cv_;
  uint64_t wake_gen_ = 0;
  std::mutex post_mu_;  // post_control() against forget_worker()
  bool worker_gone_ = false;
  std::vector<std::shared_ptr<Child>> children_;   // live children
  std::vector<std::shared_ptr<Child>> graveyard_;  // removed; kept for late references
  std::array<std::atomic<Child*>, kMaxChildren> slots_{};
  std::vector<std::shared_ptr<Child>> initial_rebuilds_;
  std::vector<std::pair<std::shared_ptr<Child>, std::vector<uint64_t>>> initial_partial_;
  mutable std::mutex lock_mu_;  // the master list of range locks
  std::vector<LockRange> locks_;
  std::atomic<int> async_{0};
  std::atomic<bool> fenced_{false};
  bool shut_down_ = false;
};

}  // namespace castor::nexus
