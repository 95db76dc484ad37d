#pragma once
// Layer 2: block devices. One interface (Bdev) with per-reactor channels (BdevChannel),
// so the I/O path takes no locks: a channel belongs to one reactor and is used only on
// its thread. Modules (malloc, uring, null, fault, ...) implement Bdev and BdevChannel.
//
// The I/O contract:
//  * The caller owns the IoRequest and its iovecs until the completion callback runs.
//  * submit() validates the request (operation supported, range inside the device, iovec
//    length equal to num_blocks * block_size, buffer alignment); an invalid request
//    completes with IoStatus::kInvalid and touches nothing.
//  * The callback always runs on the submitting reactor, never from inside submit(), so
//    a callback may resubmit without recursion.
//  * Durability: a completed write is durable once a flush submitted after its completion
//    has completed, or at its own completion if it was submitted with `fua` set. Modules
//    that honour `fua` themselves say so with set_fua_ops(); for the other write types
//    the channel runs a flush after the write and completes the request when the flush
//    has (a module without a flush has no volatile cache, so `fua` costs nothing there).

#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bdev/reservations.h"
#include "common/histogram.h"
#include "common/status.h"
#include "common/uuid.h"
#include "reactor/reactor.h"

namespace castor::bdev {

enum class IoType : uint8_t { kRead = 0, kWrite, kFlush, kUnmap, kWriteZeroes, kReset };
inline constexpr int kNumIoTypes = 6;
const char* io_type_name(IoType t);
inline constexpr uint32_t io_type_bit(IoType t) { return 1u << static_cast<unsigned>(t); }

enum class IoStatus : uint8_t {
  kSuccess = 0,
  kIoError,
  kNoSpace,
  kAborted,
  kTimedOut,
  kInvalid,  // rejected before reaching the device: range, alignment, unsupported op
  // Not executed: this device can no longer serve I/O through this path (a nexus that
  // was fenced by a newer one, or is handing over); the same volume may be reachable
  // through another path. NVMe-oF answers it with an ANA path error, which a multipath
  // host retries elsewhere.
  kPathUnavailable,
  // Not executed: the device holds an NVMe reservation that excludes the submitter (a
  // remote namespace answered Reservation Conflict). Retrying cannot help: a nexus whose
  // registration was preempted has been fenced.
  kReservationConflict,
};
inline constexpr int kNumIoStatuses = 8;
const char* io_status_name(IoStatus s);

class BdevChannel;
struct IoRequest;

// Calls fn(uint8_t* p, uint64_t n) for each piece of `req`'s iovecs that covers the byte
// range [off, off + len) of its data, in order. Stops at the end of the iovecs.
template <class F>
void for_each_iov_piece(const IoRequest& req, uint64_t off, uint64_t len, F&& fn);

struct IoRequest : reactor::Task {
  using Callback = void (*)(IoRequest& req, void* arg);

  IoType type = IoType::kRead;
  IoStatus status = IoStatus::kSuccess;  // valid in the callback
  uint64_t offset_blocks = 0;
  uint64_t num_blocks = 0;
  iovec* iovs = nullptr;  // read and write only
  int iovcnt = 0;
  // Write, write-zeroes and unmap: Force Unit Access, complete only once the change is
  // durable. Ignored by the other types. The caller sets it on every submission.
  bool fua = false;
  Callback cb = nullptr;
  void* cb_arg = nullptr;

  // Owned by the bdev layer while the request is in flight.
  uint64_t start_ns = 0;  // set by submit()
  uint64_t done_ns = 0;   // set at completion, valid in the callback
  BdevChannel* channel = nullptr;
  // FUA emulation: the flush that follows the write is pending (1) or in flight (2);
  // the request's type is `fua_type` again before the callback runs.
  uint8_t fua_stage = 0;
  IoType fua_type = IoType::kRead;
};

template <class F>
void for_each_iov_piece(const IoRequest& req, uint64_t off, uint64_t len, F&& fn) {
  for (int i = 0; i < req.iovcnt && len; ++i) {
    const iovec& v = req.iovs[i];
    if (off >= v.iov_len) {
      off -= v.iov_len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(v.iov_len - off, len);
    fn(static_cast<uint8_t*>(v.iov_base) + off, n);
    len -= n;
    off = 0;
  }
}

// Per-operation counters of one reactor's channel; single writer (that reactor), read by
// any thread with relaxed loads. Owned by the Bdev, not the channel, so a reader never
// touches freed memory while a destroy drops the channels on their reactors.
struct ChannelStats {
  struct PerType {
    std::atomic<uint64_t> ops{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> errors{0};
  };
  PerType per_type[kNumIoTypes];
  LatencyHistogram latency[kNumIoTypes];
};

// Aggregated statistics of one bdev (sum over its channels).
struct BdevStatsSnapshot {
  struct PerType {
    uint64_t ops = 0, bytes = 0, errors = 0;
    LatencyHistogram::Snapshot latency;
  };
  PerType per_type[kNumIoTypes];
};

class Bdev;

class BdevChannel {
 public:
  // Counts into `bdev`'s statistics slot for `reactor` (Bdev::stats_slot).
  BdevChannel(Bdev& bdev, reactor::Reactor& reactor);
  virtual ~BdevChannel();

  // Validates and submits. REQUIRES: called on reactor()'s thread.
  void submit(IoRequest& req);
  // The same, with the submission time given by a caller that has just read the clock
  // (a nexus passing its own request's start to a child's), saving a clock read.
  void submit_at(IoRequest& req, uint64_t now_ns);

  // Gives up on `req`, submitted to this channel and not yet completed (a nexus whose
  // child I/O timed out). Returns true if the module guarantees that, from now on, it
  // writes nothing more into the request's buffers; it then completes `req` on a later
  // loop turn (kAborted, or the real status if it had just finished). Returns false if
  // it cannot (the default): `req` completes normally, whenever the device answers.
  // REQUIRES: on reactor()'s thread.
  virtual bool abort(IoRequest& req) { return false; }

  // Whether the module may write into a read's buffers after submit() returned, in a way
  // abort() cannot stop (an io_uring read already in the kernel, a request parked by the
  // fault module). A nexus reads from such a child through its own bounce buffer, so a
  // timed-out read can never land in memory it has handed back. Modules that copy at
  // submit (malloc, null) or whose abort() is a guarantee (nvmf) say false.
  virtual bool late_read_writes() const { return true; }

  Bdev& bdev() { return bdev_; }
  reactor::Reactor& reactor() { return reactor_; }
  const ChannelStats& stats() const { return *stats_; }
  // I/Os submitted to this channel and not yet completed.
  uint64_t outstanding() const { return outstanding_; }

 protected:
  // Module entry point: the request has passed validation.
  virtual void do_submit(IoRequest& req) = 0;
  // Completes `req` on a later loop iteration (safe from inside do_submit).
  void complete(IoRequest& req, IoStatus status);
  // Completes `req` now. Only from an asynchronous context (a CQE, a timer, a
  // message), never from inside do_submit().
  void complete_now(IoRequest& req, IoStatus status);
  // The same, with the completion time given by a caller that has just read the clock
  // (a nexus completing inside its last child's callback, whose done_ns is fresh).
  void complete_now(IoRequest& req, IoStatus status, uint64_t now_ns);

 private:
  void account(IoRequest& req, IoStatus status);
  void deliver(IoRequest& req, uint64_t now_ns);
  // FUA emulation: true if `req` was turned into its flush (the caller then stops).
  bool fua_flush(IoRequest& req, IoStatus status);
  Bdev& bdev_;
  reactor::Reactor& reactor_;
  // The Bdev's slot for this reactor, or own_stats_ for a channel made outside
  // Bdev::channel() (no slot): then Bdev::stats() does not see it.
  ChannelStats* stats_;
  std::unique_ptr<ChannelStats> own_stats_;
  uint64_t outstanding_ = 0;
};

// Who holds a bdev exclusively (BdevRegistry::open with a claim) or manages its lifetime
// (BdevRegistry::set_owner): the kind of holder and its name. Compared by value and
// never parsed back from text.
struct Claim {
  enum class Kind : uint8_t {
    kBdev,           // a bdev built on this one (a fault bdev's base): holder = its name
    kPool,           // a pool's member disk, or (as owner) a pool's replica
    kNexus,          // a nexus's child
    kNvmfSubsystem,  // a namespace of an NVMe-oF subsystem: holder = its NQN
  };
  Kind kind = Kind::kBdev;
  std::string holder;
  static Claim bdev(std::string name) { return {Kind::kBdev, std::move(name)}; }
  static Claim pool(std::string name) { return {Kind::kPool, std::move(name)}; }
  static Claim nexus(std::string name) { return {Kind::kNexus, std::move(name)}; }
  static Claim nvmf_subsystem(std::string nqn) { return {Kind::kNvmfSubsystem, std::move(nqn)}; }
  // As people read it: "pool:p0", "nexus:n0", "nvmf:<nqn>", or a bdev's own name.
  std::string to_string() const;
  bool operator==(const Claim&) const = default;
};

struct BdevInfo {
  std::string name;
  Uuid uuid;
  std::string module;  // "malloc", "uring", ...
  std::string uri;     // the URI it was created from
  uint32_t block_size = 0;
  uint64_t num_blocks = 0;
  uint32_t buf_align = 1;      // required alignment of iovec bases and lengths
  uint32_t supported_ops = 0;  // io_type_bit() mask
  std::optional<Claim> claim;  // who holds it exclusively, if anyone
  std::string claimed_by;      // claim->to_string(), or empty
  uint32_t open_descs = 0;
};

class Bdev {
 public:
  Bdev(std::string name, std::string module, uint32_t block_size, uint64_t num_blocks);
  virtual ~Bdev();
  Bdev(const Bdev&) = delete;
  Bdev& operator=(const Bdev&) = delete;

  const std::string& name() const { return name_; }
  const std::string& module() const { return module_; }
  const Uuid& uuid() const { return uuid_; }
  uint32_t block_size() const { return block_size_; }
  uint64_t num_blocks() const { return num_blocks_.load(std::memory_order_relaxed); }
  uint64_t size_bytes() const { return uint64_t{block_size_} * num_blocks(); }
  uint32_t buf_align() const { return buf_align_; }
  bool supports(IoType t) const { return supported_ops_ & io_type_bit(t); }
  // Whether the module honours IoRequest::fua itself for type `t` (else the channel
  // follows a FUA write with a flush).
  bool fua_native(IoType t) const { return fua_ops_ & io_type_bit(t); }
  const std::string& uri() const { return uri_; }
  BdevInfo info() const;

  // Allocation, for rebuilds that skip unallocated thin ranges. False only if no block of
  // [offset_blocks, offset_blocks + num_blocks) is backed by storage, so that the whole
  // range reads as zeroes; bdevs that do not track allocation answer true (the default).
  // Lock-free and callable on any thread, but the answer is a snapshot: it can turn true
  // at any moment unless the caller holds off writes to the range (a rebuild asks under
  // its segment's range lock).
  virtual bool range_allocated(uint64_t offset_blocks, uint64_t num_blocks) const {
    (void)offset_blocks;
    (void)num_blocks;
    return true;
  }
  // Allocation as runs, for clients that map a device (NBD BLOCK_STATUS): how many blocks
  // from `offset_blocks` on (at least 1, at most `max_blocks`) share one allocation state,
  // which goes to *allocated. Unallocated blocks read as zeroes. A snapshot, as
  // range_allocated(). REQUIRES: max_blocks > 0 and the range inside the bdev. The
  // default (no allocation tracked): all of it, allocated.
  virtual uint64_t allocation_run(uint64_t offset_blocks, uint64_t max_blocks, bool* allocated) const {
    (void)offset_blocks;
    *allocated = true;
    return max_blocks;
  }

  // Re-reads the device's size from where it lives, for a device that may have grown
  // since it was opened (a remote namespace is identified again; a wrapper asks its
  // base), and adopts it if it is larger. Returns num_blocks() afterwards. Blocking: a
  // control-path thread, never a reactor. The default, for devices whose num_blocks()
  // is always current (they grow in place, e.g. a pool replica): num_blocks().
  virtual Result<uint64_t> refresh_size() { return num_blocks(); }

  // NVMe reservations (bdev/reservations.h) on this device, as host `self`: register,
  // acquire, preempt, release, clear or report, per `cmd`. With `report`, also returns
  // the state after the command (for kReport, only that). Blocking: a control-path
  // thread, never a reactor. Errors: Busy for a reservation conflict ("reservation
  // conflict: ..."), InvalidArgument for an invalid field; a remote device also
  // Unavailable, TimedOut, IoError. The default applies `cmd` to reservations(), the
  // table every front end of this bdev checks; a remote device (nvmf) overrides it to
  // send the NVMe commands, and then `self` must be its connection's host identifier.
  virtual Status reservation(const HostId& self, const ReservationCommand& cmd, ReservationReport* report = nullptr);
  // This bdev's own reservation table: the NVMe-oF target answers reservation commands
  // from it and checks it before each I/O command. Lives as long as the bdev; empty
  // after a restart (not persistent).
  ReservationTable& reservations() const { return *reservations_; }

  // Sum of every reactor's statistics, including those of channels already dropped. Any
  // thread, for as long as the caller keeps the Bdev alive (BdevRegistry::stats() does);
  // it reads only storage the Bdev owns, never a channel.
  BdevStatsSnapshot stats() const;

  // Sizes the channel table; called once by the registry before any I/O.
  void set_reactor_count(size_t n);
  // Destroys channel `i`; REQUIRES: on reactor i's thread, no outstanding I/O.
  void drop_channel(size_t i);
  // Reactor i's statistics, created on first use and kept until the Bdev is destroyed;
  // nullptr if i is beyond the channel table. REQUIRES: on reactor i's thread (channel
  // construction).
  ChannelStats* stats_slot(size_t i);
  // Channel `i` if it was created, else nullptr. Dereference only on reactor i.
  BdevChannel* existing_channel(size_t i) const {
    return i < nchannels_ ? channels_[i].load(std::memory_order_acquire) : nullptr;
  }

  // Descriptor bookkeeping (see BdevDesc).
  std::atomic<uint32_t> open_descs{0};
  std::optional<Claim> claim;  // guarded by the registry's lock
  std::optional<Claim> owner;  // manages the lifetime (a pool its replicas); guarded likewise

 private:
  friend class BdevDesc;
  // This reactor's channel, created on first use. REQUIRES: on `r`'s thread. Reached
  // only through an open descriptor (BdevDesc::channel): I/O goes to an opened bdev.
  BdevChannel& channel(reactor::Reactor& r);

 protected:
  virtual std::unique_ptr<BdevChannel> create_channel(reactor::Reactor& r) = 0;
  void set_uuid(const Uuid& u) { uuid_ = u; }
  void set_buf_align(uint32_t a) { buf_align_ = a; }
  void set_supported_ops(uint32_t mask) { supported_ops_ = mask; }
  // The write types whose `fua` the module honours itself (io_type_bit() mask): it sets
  // FUA on the device command, or has no volatile cache, or passes `fua` down to bdevs
  // that honour it. Default: none.
  void set_fua_ops(uint32_t mask) { fua_ops_ = mask; }
  // Grows the device (a replica or nexus resize). Existing I/O is unaffected; I/O
  // submitted after a reactor has synchronized with the caller sees the new size.
  void set_num_blocks(uint64_t n) { num_blocks_.store(n, std::memory_order_relaxed); }
  // Deletes every channel now (~Bdev does it otherwise): for a module whose channels refer
  // to state its own destructor frees, which runs before ~Bdev. No I/O may be in flight.
  void destroy_channels();

 private:
  friend class BdevRegistry;
  std::string name_;
  std::string module_;
  std::string uri_;
  Uuid uuid_;
  uint32_t block_size_;
  std::atomic<uint64_t> num_blocks_;
  uint32_t buf_align_ = 1;
  uint32_t supported_ops_ = 0;
  uint32_t fua_ops_ = 0;
  std::unique_ptr<std::atomic<BdevChannel*>[]> channels_;
  // Per-reactor statistics, indexed like channels_; each written once (on its reactor)
  // and freed only by ~Bdev, after the channels.
  std::unique_ptr<std::atomic<ChannelStats*>[]> stats_;
  size_t nchannels_ = 0;
  const std::unique_ptr<ReservationTable> reservations_ = std::make_unique<ReservationTable>();
};

// An open handle on a bdev. While any descriptor is open the bdev cannot be destroyed.
// Close only after every I/O submitted through it has completed.
class BdevDesc {
 public:
  BdevDesc() = default;
  explicit BdevDesc(Bdev* b) : bdev_(b) { bdev_->open_descs.fetch_add(1); }
  ~BdevDesc() { close(); }
  BdevDesc(BdevDesc&& o) noexcept : bdev_(o.bdev_) { o.bdev_ = nullptr; }
  BdevDesc& operator=(BdevDesc&& o) noexcept {
    if (this != &o) {
      close();
      bdev_ = o.bdev_;
      o.bdev_ = nullptr;
    }
    return *this;
  }
  void close() {
    if (bdev_) bdev_->open_descs.fetch_sub(1);
    bdev_ = nullptr;
  }
  Bdev* bdev() const { return bdev_; }
  explicit operator bool() const { return bdev_ != nullptr; }
  // The open bdev's channel on reactor `r`, created on first use. REQUIRES: open, on
  // `r`'s thread.
  BdevChannel& channel(reactor::Reactor& r) const { return bdev_->channel(r); }

 private:
  Bdev* bdev_ = nullptr;
};

// Page-aligned buffer suitable for O_DIRECT I/O.
class DmaBuffer {
 public:
  DmaBuffer() = default;
  explicit DmaBuffer(size_t size, size_t align = 4096);
  ~DmaBuffer();
  DmaBuffer(DmaBuffer&& o) noexcept : p_(o.p_), size_(o.size_) { o.p_ = nullptr; o.size_ = 0; }
  DmaBuffer& operator=(DmaBuffer&& o) noexcept;
  uint8_t* data() const { return p_; }
  size_t size() const { return size_; }

 private:
  uint8_t* p_ = nullptr;
  size_t size_ = 0;
};

}  // namespace castor::bdev
