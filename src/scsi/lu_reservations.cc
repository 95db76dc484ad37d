// Logical unit: unit attentions, RESERVE(6)/RELEASE(6) and persistent reservations
// (SPC-4 5.12), all in memory.
#include <algorithm>
#include <cstring>

#include "scsi/logical_unit.h"
#include "scsi/sense.h"
#include "scsi/wire.h"

namespace castor::scsi {

namespace {
constexpr size_t kMaxPendingUas = 8;
// PERSISTENT RESERVE OUT parameter list (SPC-4 6.16.3).
constexpr uint32_t kPrOutParamLen = 24;
constexpr size_t kPoKey = 0, kPoSaKey = 8, kPoFlags = 20;
constexpr uint8_t kSpecIPt = 0x08, kAllTgPt = 0x04, kAptpl = 0x01;
// READ FULL STATUS descriptor.
constexpr size_t kFsDescHeader = 24;
constexpr uint8_t kRHolder = 0x01;
// iSCSI TransportID, format 01b (SPC-4 7.6.4.6): "<name>,i,0x<ISID>".
constexpr uint8_t kTransportIdIscsiPort = 0x40 | 0x05;

bool valid_type(uint8_t t) {
  return t == pr_type::kWriteExclusive || t == pr_type::kExclusiveAccess ||
         t == pr_type::kWriteExclusiveRegOnly || t == pr_type::kExclusiveAccessRegOnly ||
         t == pr_type::kWriteExclusiveAllReg || t == pr_type::kExclusiveAccessAllReg;
}
bool all_registrants(uint8_t t) {
  return t == pr_type::kWriteExclusiveAllReg || t == pr_type::kExclusiveAccessAllReg;
}
bool registrants_only(uint8_t t) {
  return t == pr_type::kWriteExclusiveRegOnly || t == pr_type::kExclusiveAccessRegOnly;
}
size_t transport_id_len(const std::string& port) {
  const size_t n = std::min<size_t>(port.size(), 250) + 1;  // NUL-terminated
  return 4 + std::max<size_t>(20, (n + 3) / 4 * 4);
}
size_t put_transport_id(uint8_t* p, const std::string& port) {
  const size_t len = transport_id_len(port);
  std::memset(p, 0, len);
  p[0] = kTransportIdIscsiPort;
  store_be16(p + 2, static_cast<uint16_t>(len - 4));
  std::memcpy(p + 4, port.data(), std::min<size_t>(port.size(), 250));
  return len;
}
}  // namespace

// ---- unit attentions and the gate ----

void LogicalUnit::update_gate_locked() {
  uint32_t g = 0;
  if (!ua_.empty()) g |= kGateUa;
  if (reserve6_holder_) g |= kGateReserve6;
  if (pr_active_) g |= kGatePr;
  if (caw_busy_) g |= kGateCaw;
  gate_.store(g, std::memory_order_relaxed);
}

void LogicalUnit::add_ua_locked(uint64_t nexus, uint16_t asc_ascq) {
  auto& q = ua_[nexus];
  for (const Ua& u : q) {
    if (u.asc_ascq == asc_ascq || u.asc_ascq == asc::kPowerOnReset) return;
  }
  if (q.size() < kMaxPendingUas) q.push_back({asc_ascq});
}

void LogicalUnit::add_ua_registrants_locked(const std::string& except_port, uint16_t asc_ascq) {
  for (const auto& [id, port] : nexuses_) {
    if (port != except_port && registrants_.count(port)) add_ua_locked(id, asc_ascq);
  }
}

void LogicalUnit::attach(const ItNexus& n) {
  std::lock_guard lk(mu_);
  nexuses_[n.id] = n.initiator_port;
  ua_[n.id] = {Ua{asc::kPowerOnReset}};
  update_gate_locked();
}

void LogicalUnit::detach(const ItNexus& n) {
  std::lock_guard lk(mu_);
  nexuses_.erase(n.id);
  ua_.erase(n.id);
  if (reserve6_holder_ == n.id) reserve6_holder_.reset();
  update_gate_locked();
}

void LogicalUnit::reset(const ItNexus& by) {
  std::lock_guard lk(mu_);
  reserve6_holder_.reset();
  for (const auto& [id, port] : nexuses_) {
    if (id != by.id) add_ua_locked(id, asc::kLunReset);
  }
  update_gate_locked();
}

void LogicalUnit::capacity_changed() {
  std::lock_guard lk(mu_);
  for (const auto& [id, port] : nexuses_) add_ua_locked(id, asc::kCapacityDataChanged);
  update_gate_locked();
}

void LogicalUnit::request_sense(const ItNexus* n, uint8_t* out) {
  uint16_t code = asc::kNoAdditional;
  uint8_t key = sense_key::kNoSense;
  if (n) {
    std::lock_guard lk(mu_);
    auto it = ua_.find(n->id);
    if (it != ua_.end() && !it->second.empty()) {
      code = it->second.front().asc_ascq;
      key = sense_key::kUnitAttention;
      it->second.erase(it->second.begin());
      if (it->second.empty()) ua_.erase(it);
      update_gate_locked();
    }
  }
  build_fixed_sense(out, key, code);
}

// ---- admission: unit attentions and reservation conflicts ----

bool LogicalUnit::admit(Command& c, Access a, uint8_t op) {
  if (gate_.load(std::memory_order_relaxed) == 0) return true;
  std::lock_guard lk(mu_);
  return admit_locked(c, a, op);
}

bool LogicalUnit::admit_locked(Command& c, Access a, uint8_t op) {
  const uint64_t id = c.nexus ? c.nexus->id : 0;
  if (a != Access::kUaExempt) {
    auto it = ua_.find(id);
    if (it != ua_.end() && !it->second.empty()) {
      check_condition(c, sense_key::kUnitAttention, it->second.front().asc_ascq);
      it->second.erase(it->second.begin());
      if (it->second.empty()) ua_.erase(it);
      update_gate_locked();
      return false;
    }
  }
  if (a == Access::kUaExempt || a == Access::kAllowed) return true;
  if (reserve6_holder_ && *reserve6_holder_ != id) {
    c.status = Status::kReservationConflict;
    return false;
  }
  if (pr_active_ && pr_conflict_locked(c.nexus ? c.nexus->initiator_port : std::string(), a)) {
    c.status = Status::kReservationConflict;
    return false;
  }
  return true;
}

// SPC-4 table 63, reduced to "reads" and "writes" of the medium or its state.
bool LogicalUnit::pr_conflict_locked(const std::string& port, Access a) const {
  const bool registered = registrants_.count(port) != 0;
  const bool holder = all_registrants(pr_type_) ? registered : pr_holder_ == port;
  if (holder) return false;
  switch (pr_type_) {
    case pr_type::kWriteExclusive: return a == Access::kWrite;
    case pr_type::kExclusiveAccess: return true;
    case pr_type::kWriteExclusiveRegOnly:
    case pr_type::kWriteExclusiveAllReg: return a == Access::kWrite && !registered;
    case pr_type::kExclusiveAccessRegOnly:
    case pr_type::kExclusiveAccessAllReg: return !registered;
    default: return false;
  }
}

// ---- RESERVE(6) / RELEASE(6) ----

void LogicalUnit::reserve6(Command& c) {
  const uint64_t id = c.nexus ? c.nexus->id : 0;
  {
    std::lock_guard lk(mu_);
    // SPC-4 5.12.3: SPC-2 reservations conflict with any persistent reservation state.
    if (pr_active_ || !registrants_.empty() || (reserve6_holder_ && *reserve6_holder_ != id)) {
      c.status = Status::kReservationConflict;
    } else {
      reserve6_holder_ = id;
      update_gate_locked();
    }
  }
  good(c);
}

void LogicalUnit::release6(Command& c) {
  const uint64_t id = c.nexus ? c.nexus->id : 0;
  {
    std::lock_guard lk(mu_);
    if (pr_active_ || !registrants_.empty()) {
      c.status = Status::kReservationConflict;
    } else if (reserve6_holder_ == id) {
      // A non-holder's RELEASE is a no-op (SPC-2 7.21).
      reserve6_holder_.reset();
      update_gate_locked();
    }
  }
  good(c);
}

// ---- PERSISTENT RESERVE IN ----

void LogicalUnit::pr_in(Command& c) {
  const uint8_t sa = c.cdb[cdb::kSaByte] & cdb::kSaMask;
  const uint32_t alloc = load_be16(c.cdb + cdb::kPrInAlloc);
  if (sa > pr_in::kReadFullStatus) return fail_field(c, cdb::kSaByte, 4);
  const uint64_t id = c.nexus ? c.nexus->id : 0;
  std::unique_lock lk(mu_);
  if (reserve6_holder_ && *reserve6_holder_ != id) {
    lk.unlock();
    c.status = Status::kReservationConflict;
    return good(c);
  }
  size_t n = 0;
  uint8_t* p = nullptr;
  switch (sa) {
    case pr_in::kReadKeys: {
      n = 8 + 8 * registrants_.size();
      p = data_in(c, n);
      store_be32(p, pr_generation_);
      store_be32(p + 4, static_cast<uint32_t>(n - 8));
      size_t off = 8;
      for (const auto& [port, r] : registrants_) {
        store_be64(p + off, r.key);
        off += 8;
      }
      break;
    }
    case pr_in::kReadReservation: {
      n = pr_active_ ? 24 : 8;
      p = data_in(c, n);
      store_be32(p, pr_generation_);
      store_be32(p + 4, static_cast<uint32_t>(n - 8));
      if (pr_active_) {
        uint64_t key = 0;
        if (!all_registrants(pr_type_)) {
          auto it = registrants_.find(pr_holder_);
          if (it != registrants_.end()) key = it->second.key;
        }
        store_be64(p + 8, key);
        p[21] = pr_type_;  // scope 0 (LU_SCOPE)
      }
      break;
    }
    case pr_in::kReportCapabilities: {
      n = 8;
      p = data_in(c, n);
      store_be16(p, 8);
      p[2] = 0x00;  // CRH, SIP_C, ATP_C, PTPL_C all 0
      p[3] = 0x80;  // TMV: the type mask below is valid
      p[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;  // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
      p[5] = 0x01;                              // EX_AC_AR
      break;
    }
    case pr_in::kReadFullStatus: {
      n = 8;
      for (const auto& [port, r] : registrants_) n += kFsDescHeader + transport_id_len(port);
      p = data_in(c, n);
      store_be32(p, pr_generation_);
      store_be32(p + 4, static_cast<uint32_t>(n - 8));
      size_t off = 8;
      for (const auto& [port, r] : registrants_) {
        uint8_t* d = p + off;
        store_be64(d, r.key);
        const bool holder =
            pr_active_ && (all_registrants(pr_type_) || pr_holder_ == port);
        if (holder) {
          d[12] = kRHolder;
          d[13] = pr_type_;
        }
        store_be16(d + 18, r.rel_port);
        const size_t tl = put_transport_id(d + kFsDescHeader, port);
        store_be32(d + 20, static_cast<uint32_t>(tl));
        off += kFsDescHeader + tl;
      }
      break;
    }
  }
  lk.unlock();
  send_data_in(c, n, alloc);
}

// ---- PERSISTENT RESERVE OUT ----

void LogicalUnit::pr_out(Command& c) {
  const uint8_t* cdb = c.cdb;
  const uint8_t sa = cdb[cdb::kSaByte] & cdb::kSaMask;
  const uint8_t scope = cdb[cdb::kPrScopeType] >> 4;
  const uint8_t type = cdb[cdb::kPrScopeType] & 0x0F;
  const uint32_t plen = load_be32(cdb + cdb::kPrOutLen);
  c.dir = DataDir::kOut;
  c.xfer_len = plen;
  if (sa > pr_out::kRegisterAndIgnore) return fail_field(c, cdb::kSaByte, 4);  // incl. MOVE
  const bool typed = sa == pr_out::kReserve || sa == pr_out::kRelease ||
                     sa == pr_out::kPreempt || sa == pr_out::kPreemptAndAbort;
  if (typed && scope != 0) return fail_field(c, cdb::kPrScopeType, 7);
  if (typed && !valid_type(type)) return fail_field(c, cdb::kPrScopeType, 3);
  if (plen != kPrOutParamLen) {
    return fail(c, sense_key::kIllegalRequest, asc::kParameterListLengthError);
  }
  if (std::min<size_t>(c.data_out_len, c.buf.size()) < plen) {
    return fail(c, sense_key::kIllegalRequest, asc::kInvalidFieldInCommandIu);
  }
  const uint8_t* p = c.buf.data();
  const uint64_t key = load_be64(p + kPoKey);
  const uint64_t sa_key = load_be64(p + kPoSaKey);
  const uint8_t flags = p[kPoFlags];
  auto bad_param = [&](uint32_t byte, int bit) {
    invalid_param_field(c, byte, bit);
    c.xfer_len = 0;
    finish_later(c);
  };
  if (flags & kSpecIPt) return bad_param(kPoFlags, 3);
  if (flags & kAllTgPt) return bad_param(kPoFlags, 2);
  if (flags & kAptpl) return bad_param(kPoFlags, 0);  // PTPL_C = 0: nothing persists

  const uint64_t id = c.nexus ? c.nexus->id : 0;
  const std::string port = c.nexus ? c.nexus->initiator_port : std::string();
  const uint16_t rel_port = c.nexus ? c.nexus->relative_port : 1;
  std::unique_lock lk(mu_);
  auto conflict = [&] {
    lk.unlock();
    c.status = Status::kReservationConflict;
    good(c);
  };
  if (reserve6_holder_ && *reserve6_holder_ != id) return conflict();
  auto self = registrants_.find(port);
  const bool registered = self != registrants_.end();
  auto release_locked = [&](bool notify) {
    const uint8_t old = pr_type_;
    pr_active_ = false;
    pr_holder_.clear();
    pr_type_ = 0;
    // SPC-4 5.12.11.2: releasing a registrants-only or all-registrants reservation
    // notifies the other registrants; WE/EA releases do not.
    if (notify && (registrants_only(old) || all_registrants(old))) {
      add_ua_registrants_locked(port, asc::kReservationsReleased);
    }
  };
  auto unregister_locked = [&](const std::string& who) {
    registrants_.erase(who);
    if (!pr_active_) return;
    if (all_registrants(pr_type_)) {
      if (registrants_.empty()) release_locked(false);
    } else if (pr_holder_ == who) {
      const uint8_t old = pr_type_;
      release_locked(false);
      if (registrants_only(old)) add_ua_registrants_locked(who, asc::kReservationsReleased);
    }
  };
  // Removes every registration with `k` except the caller's; UA 2A/05 to their nexuses.
  auto preempt_key_locked = [&](uint64_t k, bool all_others) {
    bool removed = false;
    for (auto it = registrants_.begin(); it != registrants_.end();) {
      if (it->first != port && (all_others || it->second.key == k)) {
        for (const auto& [nid, nport] : nexuses_) {
          if (nport == it->first) add_ua_locked(nid, asc::kRegistrationsPreempted);
        }
        if (pr_active_ && !all_registrants(pr_type_) && pr_holder_ == it->first) {
          pr_holder_.clear();
        }
        it = registrants_.erase(it);
        removed = true;
      } else {
        ++it;
      }
    }
    return removed;
  };

  switch (sa) {
    case pr_out::kRegister:
    case pr_out::kRegisterAndIgnore: {
      const bool ignore = sa == pr_out::kRegisterAndIgnore;
      if (!registered) {
        if (!ignore && key != 0) return conflict();
        if (sa_key != 0) {
          registrants_[port] = Registrant{sa_key, rel_port};
          ++pr_generation_;
        }
      } else {
        if (!ignore && key != self->second.key) return conflict();
        if (sa_key != 0) {
          self->second.key = sa_key;
        } else {
          unregister_locked(port);
        }
        ++pr_generation_;
      }
      break;
    }
    case pr_out::kReserve: {
      if (!registered || key != self->second.key) return conflict();
      if (pr_active_) {
        const bool holder = all_registrants(pr_type_) || pr_holder_ == port;
        if (!holder || pr_type_ != type) return conflict();
      } else {
        pr_active_ = true;
        pr_type_ = type;
        pr_holder_ = all_registrants(type) ? std::string() : port;
      }
      break;
    }
    case pr_out::kRelease: {
      if (!registered || key != self->second.key) return conflict();
      if (!pr_active_) break;
      const bool holder = all_registrants(pr_type_) || pr_holder_ == port;
      if (!holder) break;
      if (pr_type_ != type) {
        lk.unlock();
        return fail(c, sense_key::kIllegalRequest, asc::kInvalidReleaseOfPr);
      }
      release_locked(true);
      break;
    }
    case pr_out::kClear: {
      if (!registered || key != self->second.key) return conflict();
      add_ua_registrants_locked(port, asc::kReservationsPreempted);
      registrants_.clear();
      pr_active_ = false;
      pr_holder_.clear();
      pr_type_ = 0;
      ++pr_generation_;
      break;
    }
    case pr_out::kPreempt:
    case pr_out::kPreemptAndAbort: {
      if (!registered || key != self->second.key) return conflict();
      if (!pr_active_) {
        if (sa_key == 0) {
          lk.unlock();
          return bad_param(kPoSaKey, -1);
        }
        if (!preempt_key_locked(sa_key, false)) return conflict();
      } else if (all_registrants(pr_type_)) {
        if (sa_key == 0) {
          // Preempt everybody and take the reservation with the new type.
          preempt_key_locked(0, true);
          pr_type_ = type;
          pr_holder_ = all_registrants(type) ? std::string() : port;
        } else if (!preempt_key_locked(sa_key, false)) {
          return conflict();
        }
      } else {
        auto h = registrants_.find(pr_holder_);
        const uint64_t holder_key = h != registrants_.end() ? h->second.key : 0;
        if (sa_key == holder_key) {
          const uint8_t old = pr_type_;
          preempt_key_locked(sa_key, false);
          pr_type_ = type;
          pr_holder_ = all_registrants(type) ? std::string() : port;
          if (old != type) add_ua_registrants_locked(port, asc::kReservationsReleased);
        } else if (sa_key == 0) {
          lk.unlock();
          return bad_param(kPoSaKey, -1);
        } else if (!preempt_key_locked(sa_key, false)) {
          return conflict();
        }
      }
      ++pr_generation_;
      break;
    }
    default:
      break;
  }
  update_gate_locked();
  lk.unlock();
  good(c);
}

}  // namespace castor::scsi
