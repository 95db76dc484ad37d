#pragma once
// Layer 4: the nexus. Vocabulary shared by the nexus, its children, the rebuild job,
// the health store and the manager: states, fault reasons, options and the info
// structures the management API reports.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/uuid.h"

namespace castor::nexus {

// Hard limit on children per nexus (the per-I/O context has one child request per slot).
inline constexpr size_t kMaxChildren = 8;

enum class ChildState : uint8_t {
  kHealthy = 0,  // in the read and write sets
  kOutOfSync,    // being rebuilt: receives writes, never serves reads
  kFaulted,      // out of both sets, see FaultReason
  kOffline,      // by request: kept open, out of both sets, missed writes are logged
};
enum class FaultReason : uint8_t {
  kNone = 0,
  kIoError,
  kTimedOut,
  kCannotOpen,
  kOutOfSync,
  kRebuildFailed,
  kByRequest,
  kNoSpace,
};
enum class NexusState : uint8_t {
  kOnline = 0,  // every child healthy
  kDegraded,    // at least one healthy child, not all
  kFaulted,     // no healthy child
  // A newer nexus of the same volume took over its children (a remote child answered
  // Reservation Conflict): it serves nothing any more, every I/O gets kPathUnavailable,
  // and it records nothing in the health store. Only destroying it ends the state.
  kFenced,
};
const char* child_state_name(ChildState s);
const char* fault_reason_name(FaultReason r);
const char* nexus_state_name(NexusState s);
// Accepts the names above ("io_error", "timed_out", ...).
Result<FaultReason> parse_fault_reason(const std::string& s);

enum class ReadPolicy : uint8_t {
  kLocalFirst = 0,  // a child whose bdev is not "nvmf", then the least busy one
  kRoundRobin,      // rotate over the readable children
};
enum class ErrorPolicy : uint8_t {
  kImmediate = 0,  // the first failed child I/O retires the child
  kWindow,         // retire once more than max_errors failures fall in error_window_ms
};

struct RebuildOptions {
  // Copy unit and range-lock unit; also the granularity of the missed-write log.
  uint32_t segment_kb = 128;
  uint32_t parallel_segments = 2;  // segments copied concurrently (1..16)
  uint32_t rate_mb_s = 0;          // copy throttle; 0 = unlimited
  // Copy throttle while the nexus serves application I/O (it completed some within the
  // last kBusyWindowMs), as md's sync_speed_min: the application keeps most of the CPU
  // and the devices, the copy runs at rate_mb_s (or unlimited) whenever it is idle. The
  // lower of the two applies when both are set. 0 = rate_mb_s at all times.
  uint32_t busy_rate_mb_s = 0;
  static constexpr uint64_t kBusyWindowMs = 100;
  bool verify = false;             // read back the destination and compare each segment
  // Application writes all of whose segments the copy has yet to reach skip the
  // destination: the copy of those segments, which reads the source after them, carries
  // them (see RebuildJob). false: every write reaches the destination too (the copy then
  // rewrites what the writes already put there).
  bool defer_writes = true;
};

struct NexusOptions {
  ReadPolicy read_policy = ReadPolicy::kLocalFirst;
  ErrorPolicy error_policy = ErrorPolicy::kImmediate;
  uint32_t max_errors = 10;          // window policy: failures tolerated per window
  uint32_t error_window_ms = 10000;  // window policy: window length
  // A child I/O older than this retires the child. Well below the 30 s that Linux's
  // NVMe, SCSI and NBD drivers give a command: a hung replica must be retired (and the
  // I/O completed from the others) before the application's initiator gives up on it.
  uint32_t child_io_timeout_ms = 10000;
  RebuildOptions rebuild;
  // Children the health store records as unhealthy start OutOfSync and are rebuilt
  // (true), or start Faulted(OutOfSync) (false).
  bool rebuild_stale = true;
  // Create even if the store records every child as unhealthy (they are then trusted).
  bool force = false;
  // Overlapping writes reach the children one after the other (see InflightWrites), so
  // two writes to one block in flight at once cannot leave the children different.
  // false: they go out together, as md's raid1 without serialize_policy does (for
  // measuring the cost only; the children may then differ).
  bool serialize_overlaps = true;
  // Reactor that runs rebuild copies.
  uint32_t rebuild_reactor = 0;
  // The nexus UUID (its NVMe-oF subsystem is nqn...:nexus-<uuid>); unset: random. The
  // control plane sets it to the volume's UUID, so a nexus re-created on another node is
  // the same subsystem to its hosts. Not a from_map key (CreateNexusRequest.uuid).
  std::optional<Uuid> uuid;
  // Fencing (from_map key "generation"): the control plane numbers each nexus it creates
  // for a volume, higher each time. A nexus with a generation registers on each remote
  // (nvmf://) child with a key holding it and takes an Exclusive Access reservation,
  // preempting an older nexus; one that finds a newer nexus there refuses the child.
  // 0: no reservations (a stand-alone nexus).
  uint64_t generation = 0;

  // Parses string options as given by the API/CLI: read_policy, error_policy,
  // max_errors, error_window_ms, child_io_timeout_ms, segment_kb, parallel_segments,
  // rate_mb_s, busy_rate_mb_s, verify, rebuild_stale, force, serialize_overlaps. Unknown keys and bad values are errors.
  static Result<NexusOptions> from_map(const std::map<std::string, std::string>& kv);
  Status validate() const;
};

enum class RebuildState : uint8_t { kRunning = 0, kPaused, kStopped, kCompleted, kFailed };
const char* rebuild_state_name(RebuildState s);

struct RebuildInfo {
  std::string child_uri;
  std::string source_uri;
  RebuildState state = RebuildState::kRunning;
  bool partial = false;          // copies only the segments in the missed-write log
  uint64_t blocks_total = 0;     // blocks this job must copy
  uint64_t blocks_done = 0;
  uint64_t blocks_skipped = 0;   // of blocks_done: unallocated on the source, not copied
  uint64_t segments_total = 0;
  uint64_t segments_done = 0;
  uint64_t segment_blocks = 0;
  uint32_t block_size = 0;
  uint64_t rate_bytes_s = 0;     // average since start
  uint64_t start_unix_ms = 0;
  uint64_t elapsed_ms = 0;
  std::string error;             // why it failed
};

struct ChildInfo {
  std::string uri;
  std::string bdev_name;
  ChildState state = ChildState::kHealthy;
  FaultReason reason = FaultReason::kNone;
  bool local = true;
  uint64_t read_errors = 0;
  uint64_t write_errors = 0;
  uint64_t timeouts = 0;
  bool has_log = false;           // a valid missed-write log exists (partial rebuild)
  uint64_t missed_segments = 0;   // segments set in that log
  std::optional<RebuildInfo> rebuild;  // running or last finished job
};

struct NexusInfo {
  std::string name;
  std::string uuid;
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;
  NexusState state = NexusState::kOnline;
  uint64_t generation = 0;
  std::vector<ChildInfo> children;
};

// The reservation key a nexus of `generation` registers on its remote children: a tag
// (0xCA57) in the top 16 bits, the generation (< 2^48) below.
inline constexpr uint64_t kReservationKeyTag = 0xCA57ull << 48;
inline constexpr uint64_t kMaxGeneration = (1ull << 48) - 1;
inline constexpr uint64_t reservation_key(uint64_t generation) { return kReservationKeyTag | generation; }
// The generation a key holds, or 0 for a key that is not a nexus's.
inline constexpr uint64_t generation_of_key(uint64_t key) {
  return (key >> 48) == (kReservationKeyTag >> 48) ? key & kMaxGeneration : 0;
}

// Per-child bitmap of segments whose writes the child missed while out of the write set.
// Bits are set from any reactor with an atomic OR (no lock); taken by the control path.
//
// It grows with the nexus (grow()) without moving a word: the words live in chunks that
// double in size (chunk 0 holds the first `base` words, chunk k >= 1 the next
// base * 2^(k-1)), published before the segment count that makes them reachable, so a
// reactor marking a segment never races with a reallocation.
class SegmentLog {
 public:
  SegmentLog(uint64_t num_blocks, uint64_t segment_blocks);
  uint64_t segment_blocks() const { return segment_blocks_; }
  uint64_t num_segments() const { return nseg_.load(std::memory_order_acquire); }
  // Sets the segments overlapping [first, first + n). Any thread.
  void mark(uint64_t first_block, uint64_t n);
  void mark_segment(uint64_t seg);
  bool test(uint64_t seg) const;
  // Clears one segment; sets every segment. Any thread.
  void unmark_segment(uint64_t seg);
  void mark_all();
  // True if every segment overlapping [first, first + n) is set (segments past the end
  // count as set).
  bool covers(uint64_t first_block, uint64_t n) const;
  // The same, but segments past the end count as clear.
  bool all_set(uint64_t first_block, uint64_t n) const;
  // Sets every segment set in `other` (same geometry). Any thread.
  void merge(const std::vector<std::pair<uint64_t, uint64_t>>& runs);
  uint64_t count() const;
  // Returns the set segments and clears them.
  std::vector<uint64_t> take();
  void clear();
  // As runs [first, count] (the persistent form) and back.
  std::vector<std::pair<uint64_t, uint64_t>> runs() const;
  void set_runs(const std::vector<std::pair<uint64_t, uint64_t>>& runs);
  // Covers `num_blocks` blocks from now on (never shrinks); the new segments are clear.
  // Control path, one caller at a time; marks and tests may run meanwhile on any thread
  // (a reactor sees the new segments once it has synchronized with this call, e.g. by a
  // message sent after it).
  void grow(uint64_t num_blocks);

 private:
  static constexpr size_t kMaxChunks = 40;
  std::atomic<uint64_t>& word(uint64_t w) const;
  uint64_t nwords() const { return (num_segments() + 63) / 64; }
  uint64_t segment_blocks_;
  uint64_t base_;  // words in chunk 0, a power of two
  std::atomic<uint64_t> nseg_;
  size_t nchunks_ = 0;  // chunks allocated (control path)
  std::array<std::atomic<std::atomic<uint64_t>*>, kMaxChunks> chunks_{};
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> owned_;
};

}  // namespace castor::nexus
