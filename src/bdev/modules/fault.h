#pragma once
// The fault bdev: fault:///<name>?base=<bdev> wraps another bdev and, controlled at run
// time, injects errors, delays, hangs and dropped writes. Rules are matched in the
// order they were added; the first rule that fires decides the I/O's fate.

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
  // Errors: InvalidArgument if `bdev` is not a fault bdev.
  static Result<FaultBdev*> cast(Bdev& bdev);
};

}  // namespace castor::bdev
