#pragma once
// The fault bdev: fault:///<name>?base=<bdev>[&cache=volatile&cache_mb=N] wraps another
// bdev and, controlled at run time, injects errors, delays, hangs and dropped writes.
// Rules are matched in the order they were added; the first rule that fires decides the
// I/O's fate.
//
// Power-loss model (off unless cache=volatile or set_volatile_cache()): a volatile write
// cache in front of the base, as a disk with write-back caching has. While it is on:
//  * A write, write-zeroes or unmap without `fua` is held in the cache and acknowledged;
//    the base is untouched. Every version is kept until it is destaged, so that a power
//    loss can choose among them. Reads see the newest cached version of each block over
//    the base.
//  * A flush writes to the base the newest version (submitted before the flush) of every
//    cached block, flushes the base, then completes.
//  * A write with `fua` goes to the base at once (with `fua`) and, once there, supersedes
//    the older cached versions of its blocks.
//  * Beyond `cache_mb` (default 64; data plus 64 bytes per cached block version), the
//    write that crossed the limit waits while the oldest entries are destaged to the base
//    (without a flush), down to three quarters of the limit.
//  * power_loss(seed) cuts the power: for every cached unit (4 KiB, or one block when
//    blocks are larger) independently, a PRNG seeded with `seed` picks whether none of its
//    unflushed versions reaches the base or which one does (possibly not the newest:
//    reordering). Writes spanning several units are thereby torn at unit granularity.
//    Then the cache is empty and the device stays off: every I/O fails with io_error and
//    nothing reaches the base, until set_volatile_cache() powers it on again.
// Rules apply before the cache: an I/O that a rule errs, drops or parks never reaches it.
// An error rule on every operation with `skip = N` freezes the device at its N-th I/O, so
// a test can cut the power at an exact point of a workload and then call power_loss().

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "bdev/bdev.h"

namespace castor::bdev {

enum class FaultMode : uint8_t {
  kError,      // complete with `error_status` without touching the base
  kDelay,      // pass to the base after `delay_us`
  kHang,       // park the I/O until the rule is cleared (then it proceeds) or a reset
  kDropWrite,  // write/unmap/write-zeroes: acknowledge success but write nothing
};
const char* fault_mode_name(FaultMode m);

struct FaultRuleSpec {
  uint32_t ops_mask = io_type_bit(IoType::kRead) | io_type_bit(IoType::kWrite);
  uint64_t lba_start = 0;             // matches I/Os overlapping [lba_start, lba_end)
  uint64_t lba_end = UINT64_MAX;
  FaultMode mode = FaultMode::kError;
  IoStatus error_status = IoStatus::kIoError;
  uint64_t delay_us = 0;
  uint64_t skip = 0;        // let the first `skip` matching I/Os through untouched
  uint64_t count = 0;       // then fault this many (0: no limit)
  double probability = 1.0; // of faulting each eligible I/O
};

struct FaultRuleInfo {
  uint64_t id = 0;
  FaultRuleSpec spec;
  uint64_t matched = 0;  // I/Os that matched op and range
  uint64_t fired = 0;    // I/Os the rule acted on
  uint64_t parked = 0;   // hung I/Os currently held (kHang)
};

// What power_loss() did to the cached units.
struct PowerLossReport {
  uint64_t units = 0;   // units with unflushed versions at the cut
  uint64_t lost = 0;    // none of the unit's versions reached the base
  uint64_t newest = 0;  // the newest version reached the base
  uint64_t older = 0;   // an older version reached the base (a reordering)
};

struct VolatileCacheInfo {
  bool on = false;
  bool powered = true;    // false between power_loss() and set_volatile_cache()
  uint64_t blocks = 0;    // blocks with cached versions
  uint64_t versions = 0;  // cached block versions
  uint64_t bytes = 0;     // charged against the limit
  uint64_t limit_bytes = 0;
  uint64_t destaged_blocks = 0;  // block versions written to the base by flushes and evictions
};

class FaultBdev;

// Control-plane view of a fault bdev. Thread-safe (not from a reactor thread).
class FaultControl {
 public:
  // Returns the new rule's id. Errors: InvalidArgument (empty range, bad probability,
  // delay without delay_us, drop on a read-only op mask).
  static Result<uint64_t> inject(Bdev& bdev, const FaultRuleSpec& spec);
  // Removes rule `id` (0: all rules); parked I/Os of removed hang rules proceed to
  // the base. Errors: NotFound.
  static Status clear(Bdev& bdev, uint64_t id);
  static std::vector<FaultRuleInfo> list(Bdev& bdev);

  // Switches the volatile write cache on or off. On: also powers the device on again after
  // a power_loss(), with an empty cache. Off: writes the newest cached version of every
  // block to the base, flushes it, then passes I/O straight through again.
  // REQUIRES: no I/O in flight through `bdev`; not from a reactor thread. Errors:
  // InvalidArgument (not a fault bdev), IoError (destaging failed; the cache stays on).
  static Status set_volatile_cache(Bdev& bdev, bool on);
  // Cuts the power (see the header comment) and returns what became of the cached units.
  // I/O in flight through `bdev` does not modify the base afterwards: I/O queued behind the
  // cache (flushes, FUA writes, parked or delayed by rules) fails with io_error; base I/O
  // the cache already issued is waited for (it reached the disk before the cut) and its
  // request fails too. The outcome is a function of `seed` and the cache's contents, so
  // a cut at a point where no I/O is in flight replays exactly. Prints nothing; the
  // caller reports the seed. Not from a reactor thread. Errors: InvalidArgument (not a
  // fault bdev, or its cache is off), IoError (writing the surviving versions failed).
  static Result<PowerLossReport> power_loss(Bdev& bdev, uint64_t seed);
  // Errors: InvalidArgument (not a fault bdev).
  static Result<VolatileCacheInfo> volatile_cache(Bdev& bdev);
  // Errors: InvalidArgument if `bdev` is not a fault bdev.
  static Result<FaultBdev*> cast(Bdev& bdev);
};

}  // namespace castor::bdev
