#pragma once
// NexusChannel: a nexus' channel on one reactor. Holds this reactor's copy of the child
// set (which slots are readable/writable, their child channels), the per-I/O contexts
// (a free list that grows to the peak queue depth and is reused, so steady state
// allocates nothing), the in-flight list scanned by the timeout timer, the range locks,
// and the writes held by a range lock or by an overlapping write in flight (the nexus's
// InflightWrites). Used only on its reactor's thread.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "bdev/bdev.h"
#include "nexus/nexus.h"

namespace castor::nexus {

class NexusChannel final : public bdev::BdevChannel {
 public:
  NexusChannel(Nexus& nexus, reactor::Reactor& r);
  ~NexusChannel() override;  // REQUIRES: no I/O in flight

  // Re-reads the child set from the nexus (slot -> child, child state). Idempotent.
  void sync();
  // Child requests of `slot` not yet returned (including abandoned ones).
  uint64_t slot_outstanding(size_t slot) const { return slots_[slot].outstanding; }
  // Nexus I/Os submitted and not yet completed, held writes included.
  uint64_t active_ios() const { return active_; }
  // Range lock: records the lock and calls `drained` (on this reactor) once every
  // overlapping write in flight before the lock has completed.
  void add_lock(uint64_t id, uint64_t first, uint64_t n, std::function<void()> drained);
  // Drops the lock and releases the held writes that no longer overlap a lock.
  void remove_lock(uint64_t id);
  // A child's unhealthy record became durable (or failed): complete waiting I/Os.
  void recheck_records();
  // The nexus was fenced: gives up every child request in flight (as a timeout does: its
  // buffers are redirected or the request aborted, its late completion ignored), so each
  // nexus I/O completes now, with kPathUnavailable, instead of when its children answer.
  void abandon_all();

 protected:
  void do_submit(bdev::IoRequest& req) override;

 private:
  struct Io;
  struct ChildIo {
    bdev::IoRequest req;
    Io* io = nullptr;
    uint8_t slot = 0;
    bool active = false;     // submitted and not returned
    bool abandoned = false;  // timed out: the result is ignored
    bool bounced = false;    // a read into `bounce` (copied to the parent on success)
    bdev::DmaBuffer bounce;  // grows to the largest bounced read; kept with the Io
    iovec inline_iov[4];
    std::vector<iovec> big_iov;
  };
  struct Io {
    bdev::IoRequest* parent = nullptr;
    NexusChannel* ch = nullptr;
    std::array<ChildIo, kMaxChildren> child_ios;
    uint8_t outstanding = 0;  // child requests not returned
    uint8_t waiting = 0;      // child results still needed
    uint8_t ok_mask = 0;      // slots that succeeded
    uint8_t tried_mask = 0;   // reads: slots tried
    uint8_t retired_mask = 0; // slots retired during this I/O (record must be durable)
    uint8_t log_wait_mask = 0;  // slots whose log must be persisted up to log_need[slot]
    std::array<uint64_t, kMaxChildren> log_need{};
    uint16_t retries = 0;
    bool invalid = false;     // a child rejected the request (kInvalid)
    bool done = false;        // parent completed
    bool in_flight_list = false;
    uint64_t seq = 0;
    Io* prev = nullptr;
    Io* next = nullptr;
    Io* next_free = nullptr;
  };
  uint64_t cb_now_ns_ = 0;  // inside a child's callback: its completion time
  struct Slot {
    Child* child = nullptr;
    bdev::BdevChannel* ch = nullptr;
    bool readable = false;
    bool writable = false;
    bool rebuilding = false;  // writable and OutOfSync: its writes may be deferred to the copy
    bool log = false;
    bool local = true;
    bool bounce = false;  // reads go through ChildIo::bounce (see late_read_writes())
    uint64_t outstanding = 0;
  };
  struct Lock {
    uint64_t id, first, n;
    uint64_t seq;       // writes with a smaller seq were in flight when it was taken
    uint64_t pending;   // of those, overlapping and not yet completed
    std::function<void()> drained;
  };

  // How soon a write held by another reactor's overlapping write looks again.
  static constexpr uint64_t kOverlapRetryNs = 20'000;

  static bool write_like(bdev::IoType t) {
    return t == bdev::IoType::kWrite || t == bdev::IoType::kWriteZeroes ||
           t == bdev::IoType::kUnmap;
  }
  static bool overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
    return a < b + bn && b < a + an;
  }
  bool blocked(const bdev::IoRequest& req) const;
  // A write may go to the children now: no range lock holds it and it marked its units
  // in InflightWrites (or the nexus does not serialize overlaps).
  bool admit(const bdev::IoRequest& req);
  void hold(bdev::IoRequest& req);
  // Admits the held writes that can go now, oldest first; the rest stay held. Each local
  // write completion retries them; with no local write in flight, a write held by another
  // reactor's write is retried on a short timer (that reactor's completion is not seen here).
  void release_held();
  // Unmarks an admitted write's units (then writes it held may go).
  void end_write(const bdev::IoRequest& req);
  void dispatch(bdev::IoRequest& req);
  // Completes a request that dispatch() could not send to any child.
  void refuse(bdev::IoRequest& req, bdev::IoStatus st);
  Io* get_io();
  void put_io(Io* io);
  void submit_kid(Io* io, int slot);
  int pick_reader(uint8_t exclude);
  static void on_child_done(bdev::IoRequest& r, void* arg);
  void kid_done(ChildIo& k);
  void kid_failed(Io* io, int slot, bdev::IoStatus st);
  void retire(int slot, FaultReason why);
  void give_up_kid(Io* io, int slot, bool write);
  // Logs a write that `slot`'s child does not get; with a valid log, the write then waits
  // until its segments are persisted (write-ahead), unless they already are.
  void note_missed(Io* io, int slot);
  // Retires `slot` for `why` and finishes `io` without it: a read moves to another
  // readable child if there is one.
  void retire_kid(Io* io, int slot, FaultReason why);
  void maybe_finish(Io* io);
  void finish(Io* io);
  void complete_parent(Io* io, bdev::IoStatus st);
  void link(Io* io);
  void unlink(Io* io);
  void arm_timer();
  void scan_timeouts();
  void abandon(Io* io, int slot, bool timed_out = true);
  uint8_t* sink(size_t bytes);

  Nexus& nexus_;
  InflightWrites* const inflight_;  // null: overlapping writes are not serialized
  std::array<Slot, kMaxChildren> slots_;
  std::vector<std::unique_ptr<Io>> all_;
  Io* free_ = nullptr;
  Io* head_ = nullptr;  // in-flight list (parents not yet completed)
  Io* tail_ = nullptr;
  std::vector<Io*> record_waiters_;
  bdev::IoRequest* held_head_ = nullptr;  // writes held by a range lock, FIFO
  bdev::IoRequest* held_tail_ = nullptr;
  std::vector<Lock> locks_;
  uint64_t seq_ = 0;
  uint64_t active_ = 0;
  uint32_t rr_ = 0;
  uint64_t timeout_ns_;
  uint64_t scan_ns_;
  bool timer_armed_ = false;
  reactor::Reactor::TimerId timer_{};
  bool overlap_held_ = false;  // a held write found its units marked (release_held retries)
  uint64_t writes_in_flight_ = 0;  // write-like nexus I/Os dispatched and not completed
  bool retry_armed_ = false;
  reactor::Reactor::TimerId retry_timer_{};
  std::vector<bdev::DmaBuffer> sinks_;
};

}  // namespace castor::nexus
