// Reservations through the host's controller (controller.h): Reservation Register,
// Acquire and Release, then a Reservation Report with extended data, sent on reactor 0's
// I/O queue from the control thread and waited for; the NVMe status as a Status.

#include <chrono>
#include <cstring>
#include <future>

#include "nvmf/host/controller.h"

namespace castor::nvmf::host {

Result<uint16_t> Controller::run_io_cmd(Sqe s, std::vector<uint8_t> out, size_t in_len, std::vector<uint8_t>* in) {
  struct Op {
    std::vector<uint8_t> out, in;
    std::promise<uint16_t> done;
  };
  // Shared with the reactor: a command answered after the deadline still has its buffers.
  auto op = std::make_shared<Op>();
  op->out = std::move(out);
  op->in.assign(in_len, 0);
  auto f = op->done.get_future();
  IoQueue* q = queues_[0].get();
  g_.at(0).send([q, op, s] {
    q->passthru(s, op->out, op->in, [op](uint16_t st) { op->done.set_value(st); });
  });
  const uint64_t wait_ms = std::max<uint64_t>(o_.io_timeout_ms, 1000);
  if (f.wait_for(std::chrono::milliseconds(wait_ms)) != std::future_status::ready) {
    return make_error(Errc::kTimedOut, "reservation command {:#04x} to {} not answered in {} ms", s.opcode, subnqn_,
                      wait_ms);
  }
  const uint16_t st = f.get();
  if (in) *in = std::move(op->in);
  return st;
}

Status Controller::reservation(const bdev::ReservationCommand& cmd, bdev::ReservationReport* report) {
  using A = bdev::ReservationAction;
  auto check = [&](const char* what, Result<uint16_t> r) -> Status {
    if (!r) return r.status();
    const uint16_t st = *r;
    if (st == 0) return Status::ok();
    if (st == 0xffff || st == 0xfffe) {
      return make_error(Errc::kUnavailable, "{} to {} at {}: the I/O queue is {}", what, subnqn_, addr_.text,
                        st == 0xffff ? "not connected" : "full");
    }
    const uint8_t code = status_code(st);
    if (status_type(st) == Sct::kGeneric && code == sc::kReservationConflict) {
      return make_error(Errc::kBusy, "reservation conflict: {} refused by {} at {}", what, subnqn_, addr_.text);
    }
    if (status_type(st) == Sct::kGeneric && code == sc::kInvalidField) {
      return make_error(Errc::kInvalidArgument, "{} refused by {} at {}: invalid field", what, subnqn_, addr_.text);
    }
    return make_error(Errc::kIoError, "{} to {} at {} failed (status 0x{:04x})", what, subnqn_, addr_.text, st);
  };
  if (cmd.action != A::kReport) {
    Sqe s{};
    const uint32_t iekey = cmd.ignore_key ? 1u << 3 : 0;
    const uint32_t rtype = uint32_t{static_cast<uint8_t>(cmd.type)} << 8;
    uint64_t other = 0;
    size_t len = 16;
    switch (cmd.action) {
      case A::kRegister:
      case A::kUnregister:
      case A::kReplace:
        s.opcode = io_op::kReservationRegister;
        s.cdw10 = (cmd.action == A::kRegister ? resv::kRegister
                   : cmd.action == A::kUnregister ? resv::kUnregister
                                                  : resv::kReplace) | iekey;
        other = cmd.nrkey;
        break;
      case A::kAcquire:
      case A::kPreempt:
      case A::kPreemptAndAbort:
        s.opcode = io_op::kReservationAcquire;
        s.cdw10 = (cmd.action == A::kAcquire ? resv::kAcquire
                   : cmd.action == A::kPreempt ? resv::kPreempt
                                               : resv::kPreemptAndAbort) | iekey | rtype;
        other = cmd.prkey;
        break;
      default:  // release, clear
        s.opcode = io_op::kReservationRelease;
        s.cdw10 = (cmd.action == A::kRelease ? resv::kRelease : resv::kClear) | iekey | rtype;
        len = 8;
        break;
    }
    std::vector<uint8_t> data(len);
    std::memcpy(data.data(), &cmd.crkey, 8);
    if (len == 16) std::memcpy(data.data() + 8, &other, 8);
    if (auto st = check(bdev::reservation_action_name(cmd.action), run_io_cmd(s, std::move(data), 0, nullptr)); !st) {
      return st;
    }
  }
  if (!report) return Status::ok();
  // Extended data (128-bit host identifiers); asked again, larger, if the registrants
  // did not fit.
  uint32_t len = 4096;
  for (int tries = 0; tries < 4; ++tries) {
    Sqe s{};
    s.opcode = io_op::kReservationReport;
    s.cdw10 = len / 4 - 1;
    s.cdw11 = 1;  // EDS
    std::vector<uint8_t> buf;
    if (auto st = check("report", run_io_cmd(s, {}, len, &buf)); !st) return st;
    ReservationStatusHeader h;
    std::memcpy(&h, buf.data(), sizeof(h));
    const uint32_t need = 64 + 64 * uint32_t{h.regctl};
    if (need > len) {
      len = need;
      continue;
    }
    bdev::ReservationReport r;
    r.generation = h.gen;
    r.type = static_cast<bdev::ReservationType>(h.rtype);
    for (uint32_t i = 0; i < h.regctl; ++i) {
      RegisteredControllerExtended e;
      std::memcpy(&e, buf.data() + 64 + 64 * i, sizeof(e));
      bdev::ReservationRegistrant g;
      std::memcpy(g.host.bytes.data(), e.hostid, 16);
      g.key = e.rkey;
      g.holder = e.rcsts & 1;
      if (g.holder && !bdev::all_registrants(r.type)) r.holder = g.host;
      r.registrants.push_back(g);
    }
    *report = std::move(r);
    return Status::ok();
  }
  return make_error(Errc::kIoError, "reservation report of {}: the registrants keep growing", subnqn_);
}

}  // namespace castor::nvmf::host
