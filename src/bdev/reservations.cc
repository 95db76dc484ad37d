#include "bdev/reservations.h"

#include <algorithm>

#include "bdev/bdev.h"

namespace castor::bdev {

bool HostId::is_zero() const {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

const char* reservation_type_name(ReservationType t) {
  switch (t) {
    case ReservationType::kNone: return "none";
    case ReservationType::kWriteExclusive: return "write_exclusive";
    case ReservationType::kExclusiveAccess: return "exclusive_access";
    case ReservationType::kWriteExclusiveRegistrantsOnly: return "write_exclusive_registrants_only";
    case ReservationType::kExclusiveAccessRegistrantsOnly: return "exclusive_access_registrants_only";
    case ReservationType::kWriteExclusiveAllRegistrants: return "write_exclusive_all_registrants";
    case ReservationType::kExclusiveAccessAllRegistrants: return "exclusive_access_all_registrants";
  }
  return "unknown";
}

const char* reservation_action_name(ReservationAction a) {
  switch (a) {
    case ReservationAction::kRegister: return "register";
    case ReservationAction::kUnregister: return "unregister";
    case ReservationAction::kReplace: return "replace";
    case ReservationAction::kAcquire: return "acquire";
    case ReservationAction::kPreempt: return "preempt";
    case ReservationAction::kPreemptAndAbort: return "preempt_and_abort";
    case ReservationAction::kRelease: return "release";
    case ReservationAction::kClear: return "clear";
    case ReservationAction::kReport: return "report";
  }
  return "unknown";
}

namespace {

template <class... Args>
Status conflict(fmt::format_string<Args...> f, Args&&... args) {
  return Status(Errc::kBusy, "reservation conflict: " + fmt::format(f, std::forward<Args>(args)...));
}

bool valid_type(ReservationType t) {
  return t >= ReservationType::kWriteExclusive && t <= ReservationType::kExclusiveAccessAllRegistrants;
}

}  // namespace

ReservationTable::Registrant* ReservationTable::find_locked(const HostId& host) {
  for (auto& r : regs_) {
    if (r.host == host) return &r;
  }
  return nullptr;
}

bool ReservationTable::holds_locked(const HostId& host) const {
  if (type_ == ReservationType::kNone) return false;
  if (all_registrants(type_)) {
    return std::any_of(regs_.begin(), regs_.end(), [&](const Registrant& r) { return r.host == host; });
  }
  return holder_ == host;
}

bool ReservationTable::allowed_locked(const HostId& host, bool is_write) const {
  if (type_ == ReservationType::kNone || holds_locked(host)) return true;
  const bool registered =
      std::any_of(regs_.begin(), regs_.end(), [&](const Registrant& r) { return r.host == host; });
  // NVMe 2.0, "Command Behavior in the Presence of a Reservation", for a host that does
  // not hold it.
  switch (type_) {
    case ReservationType::kWriteExclusive: return !is_write;
    case ReservationType::kExclusiveAccess: return false;
    case ReservationType::kWriteExclusiveRegistrantsOnly:
    case ReservationType::kWriteExclusiveAllRegistrants: return !is_write || registered;
    case ReservationType::kExclusiveAccessRegistrantsOnly:
    case ReservationType::kExclusiveAccessAllRegistrants: return registered;
    case ReservationType::kNone: return true;
  }
  return false;
}

template <class Pred>
bool ReservationTable::unregister_if_locked(Pred pred, const HostId& by, ReservationAction why,
                                            std::vector<ReservationNotice>* notices) {
  bool any = false;
  for (auto it = regs_.begin(); it != regs_.end();) {
    if (!pred(*it)) {
      ++it;
      continue;
    }
    any = true;
    const HostId gone = it->host;
    it = regs_.erase(it);
    // The holder of a single-holder reservation going releases it.
    if (type_ != ReservationType::kNone && !all_registrants(type_) && holder_ == gone) type_ = ReservationType::kNone;
    if (notices && !(gone == by)) notices->push_back({gone, by, why, 0});
  }
  if (all_registrants(type_) && regs_.empty()) type_ = ReservationType::kNone;
  return any;
}

void ReservationTable::commit_locked(bool bump_generation) {
  if (bump_generation) ++generation_;
  ++changes_;
  version_.store((changes_ << 1) | (type_ != ReservationType::kNone ? kReservedBit : 0), std::memory_order_release);
}

Status ReservationTable::do_apply_locked(const HostId& host, const ReservationCommand& cmd,
                                         std::vector<ReservationNotice>* notices) {
  using A = ReservationAction;
  if (cmd.action == A::kReport) return Status::ok();
  if (host.is_zero()) return make_error(Errc::kInvalidArgument, "a zero host identifier cannot register");
  Registrant* self = find_locked(host);
  switch (cmd.action) {
    case A::kRegister:
      // The current key is not used; registering again with the same key is a no-op
      // that still succeeds (and counts as a Register for the generation).
      if (self && self->key != cmd.nrkey) return conflict("host {} is registered with another key", host.to_string());
      if (!self) regs_.push_back({host, cmd.nrkey});
      commit_locked(true);
      return Status::ok();
    case A::kUnregister:
    case A::kReplace:
      if (!self) return conflict("host {} is not registered", host.to_string());
      if (!cmd.ignore_key && self->key != cmd.crkey) return conflict("the current key does not match");
      if (cmd.action == A::kReplace) {
        self->key = cmd.nrkey;
      } else {
        unregister_if_locked([&](const Registrant& r) { return r.host == host; }, host, cmd.action, nullptr);
      }
      commit_locked(true);
      return Status::ok();
    default: break;
  }
  // Acquire and Release: IEKEY is reserved since NVMe 1.3 (RESCAP bit 7).
  if (cmd.ignore_key) {
    return make_error(Errc::kInvalidArgument, "IEKEY is not valid for {}", reservation_action_name(cmd.action));
  }
  const bool acquiring = cmd.action == A::kAcquire || cmd.action == A::kPreempt || cmd.action == A::kPreemptAndAbort;
  if (acquiring && !valid_type(cmd.type)) {
    return make_error(Errc::kInvalidArgument, "reservation type {} is not valid", static_cast<int>(cmd.type));
  }
  if (!self) return conflict("host {} is not registered", host.to_string());
  if (self->key != cmd.crkey) return conflict("the current key does not match");
  switch (cmd.action) {
    case A::kAcquire:
      if (type_ == ReservationType::kNone) {
        type_ = cmd.type;
        holder_ = host;
        commit_locked(false);
        return Status::ok();
      }
      if (holds_locked(host) && type_ == cmd.type) return Status::ok();
      return conflict("a {} reservation is held{}", reservation_type_name(type_),
                      holds_locked(host) ? " by this host (another type)" : " by another host");
    case A::kPreempt:
    case A::kPreemptAndAbort: {
      const uint64_t prkey = cmd.prkey;
      if (type_ != ReservationType::kNone && all_registrants(type_)) {
        if (prkey == 0) {
          // Every registrant holds it: PRKEY 0 preempts them all.
          unregister_if_locked([&](const Registrant& r) { return !(r.host == host); }, host, cmd.action, notices);
          type_ = cmd.type;
          holder_ = host;
        } else if (!unregister_if_locked([&](const Registrant& r) { return r.key == prkey; }, host, cmd.action,
                                         notices)) {
          return conflict("no registrant has key {:#x}", prkey);
        }
        commit_locked(true);
        return Status::ok();
      }
      const Registrant* holder = nullptr;
      if (type_ != ReservationType::kNone) {
        for (const auto& r : regs_) {
          if (r.host == holder_) holder = &r;
        }
      }
      if (holder && holder->key == prkey) {
        // The holder's key: those registrants go (not the caller), and the caller holds
        // a new reservation of the requested type.
        unregister_if_locked([&](const Registrant& r) { return r.key == prkey && !(r.host == host); }, host,
                             cmd.action, notices);
        type_ = cmd.type;
        holder_ = host;
        commit_locked(true);
        return Status::ok();
      }
      if (prkey == 0) {
        return make_error(Errc::kInvalidArgument, "PRKEY 0 preempts only an all-registrants reservation");
      }
      // Not the holder's key: only the registrations with that key go; the reservation
      // stays as it is.
      if (!unregister_if_locked([&](const Registrant& r) { return r.key == prkey; }, host, cmd.action, notices)) {
        return conflict("no registrant has key {:#x}", prkey);
      }
      commit_locked(true);
      return Status::ok();
    }
    case A::kRelease:
      if (!holds_locked(host)) return Status::ok();  // nothing held by it: no effect
      if (cmd.type != type_) {
        return make_error(Errc::kInvalidArgument, "release of type {} but the reservation is {}",
                          reservation_type_name(cmd.type), reservation_type_name(type_));
      }
      type_ = ReservationType::kNone;
      commit_locked(false);
      return Status::ok();
    case A::kClear:
      unregister_if_locked([](const Registrant&) { return true; }, host, cmd.action, notices);
      type_ = ReservationType::kNone;
      commit_locked(true);
      return Status::ok();
    default: break;
  }
  return make_error(Errc::kInvalidArgument, "unknown reservation action {}", static_cast<int>(cmd.action));
}

Status ReservationTable::apply(const HostId& host, const ReservationCommand& cmd) {
  std::vector<ReservationNotice> notices;
  Status st;
  {
    std::lock_guard lk(mu_);
    st = do_apply_locked(host, cmd, &notices);
    for (auto& n : notices) n.generation = generation_;
  }
  if (!notices.empty()) notify(std::move(notices));
  return st;
}

Status ReservationTable::register_key(const HostId& host, ReservationAction action, uint64_t crkey, uint64_t nrkey,
                                      bool ignore_key) {
  if (action != ReservationAction::kRegister && action != ReservationAction::kUnregister &&
      action != ReservationAction::kReplace) {
    return make_error(Errc::kInvalidArgument, "{} is not a register action", reservation_action_name(action));
  }
  ReservationCommand c;
  c.action = action;
  c.crkey = crkey;
  c.nrkey = nrkey;
  c.ignore_key = ignore_key;
  return apply(host, c);
}

Status ReservationTable::acquire(const HostId& host, ReservationAction action, ReservationType type, uint64_t crkey,
                                 uint64_t prkey) {
  if (action != ReservationAction::kAcquire && action != ReservationAction::kPreempt &&
      action != ReservationAction::kPreemptAndAbort) {
    return make_error(Errc::kInvalidArgument, "{} is not an acquire action", reservation_action_name(action));
  }
  ReservationCommand c;
  c.action = action;
  c.type = type;
  c.crkey = crkey;
  c.prkey = prkey;
  return apply(host, c);
}

Status ReservationTable::release(const HostId& host, ReservationAction action, ReservationType type, uint64_t crkey) {
  if (action != ReservationAction::kRelease && action != ReservationAction::kClear) {
    return make_error(Errc::kInvalidArgument, "{} is not a release action", reservation_action_name(action));
  }
  ReservationCommand c;
  c.action = action;
  c.type = type;
  c.crkey = crkey;
  return apply(host, c);
}

ReservationReport ReservationTable::report() const {
  std::lock_guard lk(mu_);
  ReservationReport r;
  r.generation = generation_;
  r.type = type_;
  if (type_ != ReservationType::kNone && !all_registrants(type_)) r.holder = holder_;
  for (const auto& g : regs_) r.registrants.push_back({g.host, g.key, holds_locked(g.host)});
  return r;
}

bool ReservationTable::check(const HostId& host, bool is_write) const {
  if (!reserved()) return true;
  std::lock_guard lk(mu_);
  return allowed_locked(host, is_write);
}

void ReservationTable::refresh(const HostId& host, ReservationAccessCache& cache) const {
  std::lock_guard lk(mu_);
  cache.table = this;
  cache.version = version_.load(std::memory_order_relaxed);
  cache.allowed = static_cast<uint8_t>((allowed_locked(host, false) ? 1 : 0) | (allowed_locked(host, true) ? 2 : 0));
}

uint64_t ReservationTable::subscribe(const HostId& host, std::function<void(const ReservationNotice&)> fn) {
  std::lock_guard lk(subs_mu_);
  const uint64_t t = next_token_++;
  subs_.push_back({t, host, std::move(fn)});
  return t;
}

void ReservationTable::unsubscribe(uint64_t token) {
  std::lock_guard n(notify_mu_);  // waits for a callback running now
  std::lock_guard lk(subs_mu_);
  std::erase_if(subs_, [token](const Subscriber& s) { return s.token == token; });
}

void ReservationTable::notify(std::vector<ReservationNotice> notices) {
  std::lock_guard n(notify_mu_);
  for (const auto& notice : notices) {
    // Copies: a subscribe() from a callback may grow subs_ (unsubscribe() cannot run
    // meanwhile: it waits for notify_mu_).
    std::vector<std::function<void(const ReservationNotice&)>> fns;
    {
      std::lock_guard lk(subs_mu_);
      for (const auto& s : subs_) {
        if (s.host == notice.host) fns.push_back(s.fn);
      }
    }
    for (auto& f : fns) f(notice);
  }
}

Status Bdev::reservation(const HostId& self, const ReservationCommand& cmd, ReservationReport* report) {
  Status st = reservations_->apply(self, cmd);
  if (st && report) *report = reservations_->report();
  return st;
}

}  // namespace castor::bdev
