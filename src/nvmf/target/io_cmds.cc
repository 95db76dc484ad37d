// The I/O commands of a target queue pair (qpair.h), run on the namespace's bdev: Read,
// Write, Flush, Write Zeroes, Dataset Management (deallocate -> unmap) and the
// reservation commands (their rules in reservation_cmds.cc); the checks before a command
// reaches the bdev (controller ready, namespace, ANA state, reservation access, LBA
// range, SGL), and the bdev's status as an NVMe status. What Flush, Write Zeroes and
// deallocate do on the bdev is decided by the rules every front end shares
// (frontend/block_commands.h).

#include <cstring>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "frontend/block_commands.h"
#include "nvmf/target/qpair.h"
#include "nvmf/target/reservation_cmds.h"

namespace castor::nvmf {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;
using frontend::Action;
using frontend::Op;
using frontend::Reason;

namespace {
// Generic status 20h, Namespace is Write Protected (NVMe base specification).
constexpr uint8_t kNamespaceWriteProtected = 0x20;

// A refusal by the block-command rules as an NVMe status.
uint16_t status_of_reason(Reason r) {
  switch (r) {
    case Reason::kReadOnly: return generic(kNamespaceWriteProtected);
    case Reason::kOutOfRange: return generic(sc::kLbaOutOfRange);
    // The namespace cannot do it although ONCS (one value for every namespace) says the
    // controller can; Linux takes Invalid Command Opcode as "not supported" and stops
    // sending it to this namespace.
    case Reason::kUnsupported: return generic(sc::kInvalidOpcode);
    case Reason::kNotFast: return generic(sc::kInvalidField);  // NVMe never asks
  }
  return generic(sc::kInternalError);
}

// The path error (SCT 3) an I/O command gets in ANA state `st`, or 0 when it may run.
uint16_t ana_path_status(uint8_t st) {
  switch (static_cast<AnaState>(st)) {
    case AnaState::kOptimized:
    case AnaState::kNonOptimized: return 0;
    case AnaState::kInaccessible: return make_status(Sct::kPath, sc::kAnaInaccessible);
    case AnaState::kPersistentLoss: return make_status(Sct::kPath, sc::kAnaPersistentLoss);
    case AnaState::kChange: return make_status(Sct::kPath, sc::kAnaTransition);
  }
  return make_status(Sct::kPath, sc::kAnaInaccessible);
}
}  // namespace

// ---------------------------------------------------------------- dispatch and checks

void Qpair::io(Cmd* c) {
  const Sqe& s = c->sqe;
  if (!ctrl_->ready.load(std::memory_order_acquire)) return finish(c, generic(sc::kCommandSequenceError));
  const NsRef* ns = find_ns(*ns_, s.nsid);
  if (!ns) return finish(c, generic(sc::kInvalidNamespace));
  if (uint16_t path = ana_path_status(ctrl_->ana->state.load(std::memory_order_relaxed))) return finish(c, path);
  c->ns = *ns;  // counted until release(): a removal waits for it
  if (c->ns.inflight) c->ns.inflight->slots[r_.id()].n.fetch_add(1, std::memory_order_relaxed);
  bdev::Bdev& b = *ns->bdev;
  const uint32_t bs = b.block_size();
  // A reservation held by another host may exclude this one (one relaxed load while
  // none is held).
  if (const int w = reservation_access(s.opcode); w >= 0 && !b.reservations().allows(ctrl_->hostid, w, resv_cache_)) {
    return finish(c, generic(sc::kReservationConflict));
  }
  switch (s.opcode) {
    case io_op::kRead:
    case io_op::kWrite: {
      const uint64_t slba = s.cdw10 | (uint64_t{s.cdw11} << 32);
      const uint32_t nlb = (s.cdw12 & 0xffff) + 1;
      const uint64_t len = uint64_t{nlb} * bs;
      if (len > (uint64_t{4096} << t_.opts_.mdts)) return finish(c, generic(sc::kInvalidField));
      if (auto r = frontend::check_range(b.num_blocks(), slba, nlb)) return finish(c, status_of_reason(*r));
      if (s.sgl1.length < len) return finish(c, generic(sc::kSglInvalidData));
      if (s.opcode == io_op::kRead && s.sgl1.type != kSglTransportDataBlock) {
        return finish(c, generic(sc::kSglInvalidType));
      }
      if (s.opcode == io_op::kWrite && c->received < len &&
          (c->received != 0 || s.sgl1.type != kSglTransportDataBlock)) {
        return finish(c, generic(sc::kSglInvalidData));
      }
      c->len = static_cast<uint32_t>(len);
      if (!charge(c)) return;  // started by budget_available()
      return start_rw(c);
    }
    case io_op::kFlush: {
      // VWC is set for every namespace; one without a cache has nothing to flush.
      const Action a = frontend::plan(frontend::caps_of(b), {.op = Op::kFlush});
      if (a.kind != Action::Kind::kSubmit) return finish(c, kSuccess);
      return submit(c, a.type, 0, 0);
    }
    case io_op::kWriteZeroes: {
      const uint64_t slba = s.cdw10 | (uint64_t{s.cdw11} << 32);
      const uint32_t nlb = (s.cdw12 & 0xffff) + 1;
      if (auto r = frontend::check_range(b.num_blocks(), slba, nlb)) return finish(c, status_of_reason(*r));
      // The blocks must read back as zeroes: the bdev's write-zeroes, or an unmap only if
      // unmapped blocks read as zeroes. DEAC is not needed for that (deallocation is
      // invisible to a host that cannot ask for LBA status) and is otherwise ignored.
      const Action a = frontend::plan(frontend::caps_of(b),
                                      {.op = Op::kWriteZeroes, .fua = (s.cdw12 & kCdw12Fua) != 0});
      if (a.kind != Action::Kind::kSubmit) return finish(c, status_of_reason(a.reason));
      return submit(c, a.type, slba, nlb, a.fua);
    }
    case io_op::kDatasetManagement: {
      const uint32_t nr = (s.cdw10 & 0xff) + 1;
      if (s.sgl1.length < nr * 16) return finish(c, generic(sc::kSglInvalidData));
      if (!(s.cdw11 & (1u << 2))) return finish(c, kSuccess);  // only deallocate does anything
      // In-capsule data may be longer than the ranges: Linux always sends a buffer for
      // 256 of them (4 KiB). The excess is ignored (Identify's SGLS says so).
      c->len = nr * 16;
      if (c->received >= c->len) return dsm_next(c, 0);
      if (c->received != 0 || s.sgl1.type != kSglTransportDataBlock) return finish(c, generic(sc::kSglInvalidData));
      return request_data(c);
    }
    case io_op::kReservationRegister:
    case io_op::kReservationAcquire:
    case io_op::kReservationRelease:
      // 16 or 8 bytes of keys, in-capsule or fetched like DSM's ranges.
      c->len = reservation_data_len(s.opcode);
      if (s.sgl1.length < c->len) return finish(c, generic(sc::kSglInvalidData));
      if (c->received >= c->len) return reservation(c);
      if (c->received != 0 || s.sgl1.type != kSglTransportDataBlock) return finish(c, generic(sc::kSglInvalidData));
      return request_data(c);
    case io_op::kReservationReport: {
      std::vector<uint8_t> out;
      if (const uint16_t st = execute_reservation_report(b.reservations(), s, &out)) return finish(c, st);
      return reply_data(c, out.data(), static_cast<uint32_t>(out.size()));
    }
    default: return finish(c, generic(sc::kInvalidOpcode));
  }
}

bool Qpair::charge(Cmd* c) {
  if (budget_parked_.empty() && budget_.try_charge(c->len)) {
    c->charged = c->len;
    return true;
  }
  budget_parked_.push_back(c);  // after the ones already waiting: in order
  if (!waiting_budget_) {
    waiting_budget_ = true;
    budget_.wait(this);
    t_.budget_holds_.fetch_add(1, std::memory_order_relaxed);
  }
  return false;
}

void Qpair::budget_available() {
  waiting_budget_ = false;
  while (!budget_parked_.empty() && !closed_) {
    Cmd* c = budget_parked_.front();
    if (!budget_.try_charge(c->len)) {
      waiting_budget_ = true;
      budget_.wait(this);
      return;
    }
    budget_parked_.pop_front();
    c->charged = c->len;
    start_rw(c);
  }
}

void Qpair::start_rw(Cmd* c) {
  const Sqe& s = c->sqe;
  const uint64_t slba = s.cdw10 | (uint64_t{s.cdw11} << 32);
  const uint32_t nlb = (s.cdw12 & 0xffff) + 1;
  if (s.opcode == io_op::kRead) {
    ensure_buf(c, c->len);
    return submit(c, IoType::kRead, slba, nlb);
  }
  if (c->received >= c->len) return submit(c, IoType::kWrite, slba, nlb, s.cdw12 & kCdw12Fua);  // excess ignored
  return request_data(c);
}

void Qpair::data_received(Cmd* c) {
  const Sqe& s = c->sqe;
  if (s.opcode == io_op::kWrite) {
    const uint64_t slba = s.cdw10 | (uint64_t{s.cdw11} << 32);
    return submit(c, IoType::kWrite, slba, (s.cdw12 & 0xffff) + 1, s.cdw12 & kCdw12Fua);
  }
  if (s.opcode == io_op::kDatasetManagement) return dsm_next(c, 0);
  if (reservation_data_len(s.opcode)) return reservation(c);
  finish(c, generic(sc::kInvalidOpcode));
}

// ---------------------------------------------------------------- reservations

void Qpair::reservation(Cmd* c) {
  const uint16_t st = execute_reservation(c->ns.bdev->reservations(), ctrl_->hostid, c->sqe, {c->buf.data(), c->len});
  const bool preempt_and_abort = c->sqe.opcode == io_op::kReservationAcquire && (c->sqe.cdw10 & 7) == resv::kPreemptAndAbort;
  if (st != kSuccess || !preempt_and_abort) return finish(c, st);
  // The preempted hosts' commands admitted before the preempt may still be running on
  // the bdev (a write of a fenced nexus): Preempt and Abort completes once they have,
  // so whatever the new holder writes next lands after them. Castor aborts nothing: it
  // waits (polling the namespace's in-flight count, this command included) up to
  // kPreemptDrainMs, then completes anyway, saying so.
  drain_then_finish(c, mono_ns() + kPreemptDrainMs * 1'000'000);
}

void Qpair::drain_then_finish(Cmd* c, uint64_t deadline_ns) {
  const uint64_t running = c->ns.inflight ? c->ns.inflight->total() : 1;
  if (running <= 1 || closed_) return finish(c, kSuccess);
  if (mono_ns() >= deadline_ns) {
    spdlog::warn("nvmf: Preempt and Abort on {} completes with {} command(s) still running on the namespace",
                 ctrl_->subnqn, running - 1);
    return finish(c, kSuccess);
  }
  r_.add_timer(1'000'000, [this, c, deadline_ns] { drain_then_finish(c, deadline_ns); });
}

// ---------------------------------------------------------------- onto the bdev

void Qpair::dsm_next(Cmd* c, uint32_t i) {
  const uint32_t nr = c->len / 16;
  bdev::Bdev& b = *c->ns.bdev;
  while (i < nr) {
    uint32_t nlb;
    uint64_t slba;
    std::memcpy(&nlb, c->buf.data() + 16 * i + 4, 4);
    std::memcpy(&slba, c->buf.data() + 16 * i + 8, 8);
    ++i;
    if (nlb == 0) continue;
    if (auto r = frontend::check_range(b.num_blocks(), slba, nlb)) return finish(c, status_of_reason(*r));
    // Deallocate is advisory: without an unmap nothing is done.
    const Action a = frontend::plan(frontend::caps_of(b), {.op = Op::kDiscard, .discard = frontend::Discard::kAdvisory});
    if (a.kind != Action::Kind::kSubmit) continue;
    c->dsm_next = i;
    return submit(c, a.type, slba, nlb, a.fua);
  }
  finish(c, kSuccess);
}

void Qpair::submit(Cmd* c, IoType t, uint64_t slba, uint64_t nlb, bool fua) {
  IoRequest& io = c->io;
  io.type = t;
  io.fua = fua;
  io.offset_blocks = slba;
  io.num_blocks = nlb;
  if (t == IoType::kRead || t == IoType::kWrite) {
    c->iov = {c->buf.data(), c->len};
    io.iovs = &c->iov;
    io.iovcnt = 1;
  } else {
    io.iovs = nullptr;
    io.iovcnt = 0;
  }
  io.cb = &Qpair::io_done;
  io.cb_arg = c;
  c->ns.desc->channel(r_).submit(io);
}

uint16_t Qpair::status_of(const IoRequest& io) {
  switch (io.status) {
    case IoStatus::kSuccess: return kSuccess;
    case IoStatus::kNoSpace: return generic(sc::kCapacityExceeded);
    case IoStatus::kInvalid: return generic(sc::kInvalidField);
    case IoStatus::kAborted: return generic(sc::kAbortRequested, false);
    case IoStatus::kTimedOut: return generic(sc::kInternalError, false);
    case IoStatus::kPathUnavailable: return make_status(Sct::kPath, sc::kAnaPersistentLoss);
    case IoStatus::kReservationConflict: return generic(sc::kReservationConflict);
    case IoStatus::kIoError:
      return make_status(Sct::kMediaError, io.type == IoType::kRead ? sc::kUnrecoveredReadError : sc::kWriteFault);
  }
  return generic(sc::kInternalError);
}

void Qpair::io_done(IoRequest& io, void* arg) {
  auto* c = static_cast<Cmd*>(arg);
  Qpair* q = c->q;
  const uint16_t st = status_of(io);
  if (io.status == IoStatus::kPathUnavailable) q->lose_path();
  if (c->sqe.opcode == io_op::kDatasetManagement && st == kSuccess) return q->dsm_next(c, c->dsm_next);
  if (io.type == IoType::kRead && st == kSuccess) return q->finish_with_data(c, c->len);
  q->finish(c, st);
}

void Qpair::lose_path() {
  AnaGroup& g = *ctrl_->ana;
  uint8_t cur = g.state.load(std::memory_order_acquire);
  const auto lost = static_cast<uint8_t>(AnaState::kPersistentLoss);
  while (cur != lost) {
    if (g.state.compare_exchange_weak(cur, lost, std::memory_order_acq_rel)) {
      spdlog::warn("nvmf: the bdev behind {} cannot serve this path any more: ANA state persistent loss",
                   ctrl_->subnqn);
      g.chgcnt.fetch_add(1, std::memory_order_acq_rel);
      NvmfTarget::notify_ana_change(g);
      return;
    }
  }
}

}  // namespace castor::nvmf
