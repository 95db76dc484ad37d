#include "frontend/block_commands.h"

namespace castor::frontend {

using bdev::IoType;

BdevCaps caps_of(const bdev::Bdev& b) {
  BdevCaps c;
  c.flush = b.supports(IoType::kFlush);
  c.unmap = b.supports(IoType::kUnmap);
  c.write_zeroes = b.supports(IoType::kWriteZeroes);
  c.unmap_reads_zeroes = false;  // not part of the bdev contract (see BdevCaps)
  return c;
}

namespace {
// Discarded blocks can be made to read zeroes without writing data.
bool zeroing_unmap(const BdevCaps& c) {
  return c.unmap && c.unmap_reads_zeroes;
}
}  // namespace

Advertised advertise(const BdevCaps& caps, bool read_only, Discard discard) {
  Advertised a;
  a.read_only = read_only;
  a.volatile_write_cache = caps.flush;
  a.fua = true;
  a.write_zeroes = caps.write_zeroes;
  switch (discard) {
    case Discard::kAdvisory:
      // Offered when it does something; its blocks read zeroes only after a zeroing unmap.
      a.discard = caps.unmap;
      a.discard_zeroes = zeroing_unmap(caps);
      break;
    case Discard::kZeroing:
      // Offered only when it can keep the promise without writing data.
      a.discard = zeroing_unmap(caps) || caps.write_zeroes;
      a.discard_zeroes = a.discard;
      break;
  }
  return a;
}

const char* op_name(Op op) {
  switch (op) {
    case Op::kRead:
      return "read";
    case Op::kWrite:
      return "write";
    case Op::kFlush:
      return "flush";
    case Op::kDiscard:
      return "discard";
    case Op::kWriteZeroes:
      return "write_zeroes";
  }
  return "?";
}

const char* reason_name(Reason r) {
  switch (r) {
    case Reason::kReadOnly:
      return "read_only";
    case Reason::kOutOfRange:
      return "out_of_range";
    case Reason::kUnsupported:
      return "unsupported";
    case Reason::kNotFast:
      return "not_fast";
  }
  return "?";
}

std::optional<Reason> check_access(Op op, bool read_only) {
  if (read_only && modifies(op)) return Reason::kReadOnly;
  return std::nullopt;
}

std::optional<Reason> check_range(uint64_t capacity, uint64_t start, uint64_t count) {
  if (start > capacity || count > capacity - start) return Reason::kOutOfRange;
  return std::nullopt;
}

Action plan(const BdevCaps& caps, const Command& cmd) {
  switch (cmd.op) {
    case Op::kRead:
      return Action::submit(IoType::kRead, false);
    case Op::kWrite:
      return Action::submit(IoType::kWrite, cmd.fua);
    case Op::kFlush:
      // A bdev without a flush has no volatile cache: every completed write is durable.
      return caps.flush ? Action::submit(IoType::kFlush, false) : Action::complete();
    case Op::kDiscard:
      switch (cmd.discard) {
        case Discard::kAdvisory:
          return caps.unmap ? Action::submit(IoType::kUnmap, cmd.fua) : Action::complete();
        case Discard::kZeroing:
          if (zeroing_unmap(caps)) return Action::submit(IoType::kUnmap, cmd.fua);
          if (caps.write_zeroes) return Action::submit(IoType::kWriteZeroes, cmd.fua);
          return Action::reject(Reason::kUnsupported);
      }
      break;
    case Op::kWriteZeroes:
      if (caps.write_zeroes) return Action::submit(IoType::kWriteZeroes, cmd.fua);
      if (cmd.may_deallocate && zeroing_unmap(caps)) return Action::submit(IoType::kUnmap, cmd.fua);
      if (cmd.must_be_fast) return Action::reject(Reason::kNotFast);
      if (cmd.may_write_buffers) return Action::write_zero_buffers(cmd.fua);
      return Action::reject(Reason::kUnsupported);
  }
  return Action::reject(Reason::kUnsupported);
}

}  // namespace castor::frontend
