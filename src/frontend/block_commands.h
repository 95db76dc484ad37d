#pragma once
// The semantics of block commands, once for every front end (NBD, NVMe-oF, SCSI): what an
// export of a bdev advertises, and what each command does on the bdev (submit an I/O,
// complete at once, or refuse it for a protocol-neutral reason). Pure functions of the
// bdev's capabilities and the request: no protocol types, no I/O. Each target keeps its
// own decoding and field checks, asks these rules in the order its protocol wants, and
// maps a Reason to its own status (NBD errno, NVMe status, SCSI sense) in one table.
//
// Where protocols differ, the difference is a parameter, never a copy: a discard is
// advisory (NBD TRIM, NVMe DSM deallocate) or must leave zeroes (SCSI UNMAP and WRITE
// SAME with UNMAP, because the LU reports LBPRZ); a write-zeroes may or may not
// deallocate (NBD NO_HOLE), must or need not be fast (NBD FAST_ZERO), and may or may not
// be emulated by writing zero buffers (SCSI WRITE SAME can, the others refuse).
// docs/block-commands.md lists the rules per protocol.

#include <cstdint>
#include <optional>

#include "bdev/bdev.h"

namespace castor::frontend {

// What a bdev can do, as far as the rules care.
struct BdevCaps {
  bool flush = false;         // IoType::kFlush: the bdev may hold a volatile write cache
  bool unmap = false;         // IoType::kUnmap
  bool write_zeroes = false;  // IoType::kWriteZeroes (efficient: no data is transferred)
  // An unmapped block reads back as zeroes. The bdev contract (docs/bdev.md) does not
  // promise it and no module declares it yet, so caps_of() says false; the rules use a
  // zeroing unmap wherever it would be correct once a bdev can say so.
  bool unmap_reads_zeroes = false;
};

// The capabilities of `b` (its supported operations).
BdevCaps caps_of(const bdev::Bdev& b);

// What the protocol promises about the contents of discarded blocks.
enum class Discard : uint8_t {
  kAdvisory,  // may do nothing; the blocks' contents afterwards are undefined (NBD, NVMe)
  kZeroing,   // the blocks read back as zeroes afterwards (SCSI with LBPRZ = 1)
};

// What an export advertises to its clients.
struct Advertised {
  bool read_only = false;
  // Flush means something: NBD SEND_FLUSH, SCSI WCE. (NVMe's VWC is one bit per
  // controller, whose namespaces may differ: it is always set, and a Flush of a
  // namespace without a cache completes at once.)
  bool volatile_write_cache = false;
  // FUA is accepted on writes, write-zeroes and discards (always: the bdev layer honours
  // it or follows the operation with a flush).
  bool fua = true;
  // The discard command is offered (NBD SEND_TRIM; SCSI LBPU, LBPWS and the UNMAP limits).
  bool discard = false;
  // Discarded blocks read back as zeroes (SCSI LBPRZ; NVMe DLFEAT read value 001b).
  bool discard_zeroes = false;
  // Write-zeroes is done by the bdev without transferring data (NBD SEND_WRITE_ZEROES;
  // SCSI WRITE SAME of zeroes as one I/O). A zeroing unmap does not count: a client may
  // ask for the blocks to stay allocated (NBD NO_HOLE).
  bool write_zeroes = false;
};

Advertised advertise(const BdevCaps& caps, bool read_only, Discard discard);

// The block commands, protocol-neutral.
enum class Op : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };
const char* op_name(Op op);

// Whether `op` changes the blocks (refused on a read-only export).
constexpr bool modifies(Op op) {
  return op == Op::kWrite || op == Op::kDiscard || op == Op::kWriteZeroes;
}

// Why a command is refused; each target maps it to its status.
enum class Reason : uint8_t {
  kReadOnly,     // a modifying command on a read-only export
  kOutOfRange,   // the range does not lie inside the bdev
  kUnsupported,  // the bdev cannot do it and the protocol allows no substitute
  kNotFast,      // it could only be done slowly and the client asked for fast (NBD FAST_ZERO)
};
const char* reason_name(Reason r);

// kReadOnly if `op` modifies and the export is read-only.
std::optional<Reason> check_access(Op op, bool read_only);
// kOutOfRange unless [start, start + count) lies inside [0, capacity) (overflow-safe; an
// empty range at the end is inside). Any one unit: blocks, or bytes (NBD checks the range
// before the alignment).
std::optional<Reason> check_range(uint64_t capacity, uint64_t start, uint64_t count);

// One command as the rules see it: its kind and the options that change what it does.
struct Command {
  Op op = Op::kRead;
  // Force Unit Access: complete once durable. Kept on write, discard and write-zeroes,
  // dropped elsewhere (a read or flush has nothing to make durable).
  bool fua = false;
  Discard discard = Discard::kAdvisory;  // kDiscard: what the protocol promises
  // kWriteZeroes:
  bool may_deallocate = true;      // a zeroing unmap may serve it (NBD: unless NO_HOLE)
  bool must_be_fast = false;       // refuse rather than write zeroes slowly (NBD FAST_ZERO)
  bool may_write_buffers = false;  // the target can write zero buffers itself (SCSI WRITE SAME)
};

// What the target does with a command that passed its checks.
struct Action {
  enum class Kind : uint8_t {
    kSubmit,            // submit an IoRequest of `type` with `fua`
    kComplete,          // complete it successfully without any I/O
    kReject,            // refuse it for `reason`
    kWriteZeroBuffers,  // the target writes zero-filled buffers (only if may_write_buffers)
  };
  Kind kind = Kind::kComplete;
  bdev::IoType type = bdev::IoType::kRead;
  bool fua = false;
  Reason reason = Reason::kUnsupported;

  // The fields a kind does not use keep their defaults, so that == compares actions.
  static constexpr Action submit(bdev::IoType t, bool fua) {
    Action a;
    a.kind = Kind::kSubmit;
    a.type = t;
    a.fua = fua;
    return a;
  }
  static constexpr Action complete() { return Action{}; }
  static constexpr Action reject(Reason r) {
    Action a;
    a.kind = Kind::kReject;
    a.reason = r;
    return a;
  }
  static constexpr Action write_zero_buffers(bool fua) {
    Action a;
    a.kind = Kind::kWriteZeroBuffers;
    a.type = bdev::IoType::kWrite;
    a.fua = fua;
    return a;
  }
  bool operator==(const Action&) const = default;
};

// The action for `cmd` on a bdev with `caps`. Access and range are checked separately
// (check_access, check_range), where each protocol wants them; a zero-length discard or
// write-zeroes is the target's to complete (after this, so that NBD FAST_ZERO is still
// refused on a bdev that cannot zero fast).
//  - read, write: submit (write with fua).
//  - flush: submit a flush, or complete at once if the bdev has no flush (no volatile
//    cache, nothing to make durable).
//  - discard, advisory: unmap if the bdev can, else complete at once (nothing done is a
//    valid discard).
//  - discard, zeroing: a zeroing unmap if the bdev has one, else write-zeroes, else
//    kUnsupported.
//  - write-zeroes: the bdev's write-zeroes; else a zeroing unmap if the command may
//    deallocate; else kNotFast if it must be fast; else zero buffers if the target can
//    write them; else kUnsupported. Never a plain unmap: its blocks need not read zero.
Action plan(const BdevCaps& caps, const Command& cmd);

}  // namespace castor::frontend
