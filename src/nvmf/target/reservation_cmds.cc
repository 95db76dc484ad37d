#include "nvmf/target/reservation_cmds.h"

#include <algorithm>
#include <cstring>

namespace castor::nvmf {

namespace {
uint16_t generic(uint8_t code) { return make_status(Sct::kGeneric, code, true); }
}  // namespace

uint32_t reservation_data_len(uint8_t opcode) {
  switch (opcode) {
    case io_op::kReservationRegister:
    case io_op::kReservationAcquire: return 16;
    case io_op::kReservationRelease: return 8;
    default: return 0;
  }
}

uint16_t reservation_status(const Status& st) {
  if (st) return 0;
  return generic(st.code() == Errc::kBusy ? sc::kReservationConflict : sc::kInvalidField);
}

uint16_t execute_reservation(bdev::ReservationTable& table, const bdev::HostId& host, const Sqe& sqe,
                             std::span<const uint8_t> data) {
  using A = bdev::ReservationAction;
  const uint32_t need = reservation_data_len(sqe.opcode);
  if (need == 0) return generic(sc::kInvalidOpcode);
  if (data.size() < need) return generic(sc::kSglInvalidData);
  // Without a host identifier every such host would share one registration: refused.
  if (host.is_zero()) return generic(sc::kCommandSequenceError);
  ReservationKeys k{};
  std::memcpy(&k, data.data(), need);
  const uint32_t cdw10 = sqe.cdw10;
  const uint8_t action = cdw10 & 7;
  bdev::ReservationCommand cmd;
  cmd.ignore_key = cdw10 & (1u << 3);
  cmd.crkey = k.current;
  cmd.type = static_cast<bdev::ReservationType>((cdw10 >> 8) & 0xff);
  switch (sqe.opcode) {
    case io_op::kReservationRegister: {
      static constexpr A kActions[] = {A::kRegister, A::kUnregister, A::kReplace};
      if (action > resv::kReplace) return generic(sc::kInvalidField);
      // CPTPL: 00b no change and 10b "do not persist" are what this table does; 11b
      // (persist through power loss) is not offered (RESCAP bit 0) and 01b is reserved.
      const uint32_t cptpl = cdw10 >> 30;
      if (cptpl == 1 || cptpl == 3) return generic(sc::kInvalidField);
      cmd.action = kActions[action];
      cmd.type = bdev::ReservationType::kNone;
      cmd.nrkey = k.other;
      break;
    }
    case io_op::kReservationAcquire: {
      static constexpr A kActions[] = {A::kAcquire, A::kPreempt, A::kPreemptAndAbort};
      if (action > resv::kPreemptAndAbort) return generic(sc::kInvalidField);
      cmd.action = kActions[action];
      cmd.prkey = k.other;
      break;
    }
    default: {  // Release
      if (action > resv::kClear) return generic(sc::kInvalidField);
      cmd.action = action == resv::kRelease ? A::kRelease : A::kClear;
      break;
    }
  }
  return reservation_status(table.apply(host, cmd));
}

std::vector<uint8_t> encode_reservation_report(const bdev::ReservationReport& r) {
  constexpr size_t kHeader = 64, kEntry = sizeof(RegisteredControllerExtended);
  std::vector<uint8_t> out(kHeader + kEntry * r.registrants.size(), 0);
  ReservationStatusHeader h{};
  h.gen = r.generation;
  h.rtype = static_cast<uint8_t>(r.type);
  h.regctl = static_cast<uint16_t>(std::min<size_t>(r.registrants.size(), 0xffff));
  h.ptpls = 0;  // not persistent
  std::memcpy(out.data(), &h, sizeof(h));
  for (size_t i = 0; i < r.registrants.size(); ++i) {
    const auto& g = r.registrants[i];
    RegisteredControllerExtended e{};
    // Registrations are per host, not per controller: the dynamic controller id.
    e.cntlid = 0xffff;
    e.rcsts = g.holder ? 1 : 0;
    e.rkey = g.key;
    std::memcpy(e.hostid, g.host.bytes.data(), 16);
    std::memcpy(out.data() + kHeader + i * kEntry, &e, kEntry);
  }
  return out;
}

uint16_t execute_reservation_report(const bdev::ReservationTable& table, const Sqe& sqe, std::vector<uint8_t>* out) {
  if (!(sqe.cdw11 & 1)) return generic(kScHostIdInconsistentFormat);
  const uint64_t len = (uint64_t{sqe.cdw10} + 1) * 4;
  if (len > (1u << 20)) return generic(sc::kInvalidField);
  *out = encode_reservation_report(table.report());
  out->resize(len, 0);
  return 0;
}

}  // namespace castor::nvmf
