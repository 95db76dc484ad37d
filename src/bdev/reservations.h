#pragma once
// NVMe persistent reservations (NVM Express Base Specification 2.0, section 8.19) for one
// bdev: who is registered with which key, who holds the reservation and of which type, and
// whether a host may read or write. One table per Bdev (Bdev::reservations()), shared by
// every front end that reaches the bdev: the NVMe-oF target answers Reservation Register /
// Acquire / Release / Report from it and checks it before each I/O command, and a nexus
// whose child is a local bdev registers with it directly (Bdev::reservation()).
//
// Hosts are identified by their 128-bit host identifier (NVMe: every controller of one
// host shares that host's registration), never by controller.
//
// Errors of the operations (Status):
//   Busy             a reservation conflict (NVMe status 83h): the host is not registered,
//                    its key does not match, or the reservation is held by another host.
//                    The message starts with "reservation conflict".
//   InvalidArgument  an invalid field (NVMe Invalid Field in Command): a reservation type
//                    outside 1..6, IEKEY on Acquire/Release (NVMe 1.3 semantics), a
//                    Release whose type does not match the reservation, a Preempt with
//                    PRKEY 0 that the spec gives no meaning, a zero host identifier.
// A failed operation changes nothing.
//
// Not persistent: the table lives in memory for as long as its bdev and is empty after an
// engine restart (RESCAP bit 0, "persist through power loss", is not reported). Every
// change goes through commit_locked(), so persistence can be added there alone: write the
// new state (report()) before the command completes, and load it when the bdev is opened.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/uuid.h"

namespace castor::bdev {

// A host identifier (NVMe Host Identifier, 128 bits; the Connect data's HOSTID).
struct HostId {
  std::array<uint8_t, 16> bytes{};

  static HostId from_uuid(const Uuid& u) { return HostId{u.bytes}; }
  Uuid uuid() const { return Uuid{bytes}; }
  bool is_zero() const;
  std::string to_string() const { return uuid().to_string(); }
  bool operator==(const HostId&) const = default;
};

// The NVMe reservation types (RTYPE), with their wire values.
enum class ReservationType : uint8_t {
  kNone = 0,
  kWriteExclusive = 1,
  kExclusiveAccess = 2,
  kWriteExclusiveRegistrantsOnly = 3,
  kExclusiveAccessRegistrantsOnly = 4,
  kWriteExclusiveAllRegistrants = 5,
  kExclusiveAccessAllRegistrants = 6,
};
const char* reservation_type_name(ReservationType t);
// Types 5 and 6: every registrant is a holder.
inline constexpr bool all_registrants(ReservationType t) {
  return t == ReservationType::kWriteExclusiveAllRegistrants || t == ReservationType::kExclusiveAccessAllRegistrants;
}

// One reservation command, as the NVMe commands carry it.
enum class ReservationAction : uint8_t {
  kRegister,         // Register (RREGA 0): register `nrkey`
  kUnregister,       // Register (RREGA 1): `crkey` must match unless ignore_key
  kReplace,          // Register (RREGA 2): `crkey` -> `nrkey`, unless ignore_key
  kAcquire,          // Acquire (RACQA 0) of `type`
  kPreempt,          // Acquire (RACQA 1): preempt `prkey`, taking a reservation of `type`
  kPreemptAndAbort,  // Acquire (RACQA 2): as kPreempt (no command is ever queued here to abort)
  kRelease,          // Release (RRELA 0) of `type`
  kClear,            // Release (RRELA 1): every registration and the reservation go
  kReport,           // Report: nothing changes
};
const char* reservation_action_name(ReservationAction a);

struct ReservationCommand {
  ReservationAction action = ReservationAction::kReport;
  ReservationType type = ReservationType::kNone;  // Acquire, Preempt, Release
  uint64_t crkey = 0;        // the caller's current key (all but kRegister and kReport)
  uint64_t nrkey = 0;        // kRegister, kReplace: the new key
  uint64_t prkey = 0;        // kPreempt, kPreemptAndAbort: the key to preempt
  bool ignore_key = false;   // IEKEY: kUnregister and kReplace skip the crkey check
};

struct ReservationRegistrant {
  HostId host;
  uint64_t key = 0;
  bool holder = false;  // holds the reservation (every registrant for types 5 and 6)
};

struct ReservationReport {
  uint32_t generation = 0;  // PRGEN
  ReservationType type = ReservationType::kNone;
  std::optional<HostId> holder;  // the single holder (types 1..4); none for 5 and 6
  std::vector<ReservationRegistrant> registrants;  // in registration order
};

// Why a subscriber's registration went away.
struct ReservationNotice {
  HostId host;       // the subscriber's host, no longer registered
  HostId by;         // the host whose command removed it
  ReservationAction action = ReservationAction::kPreempt;  // kPreempt, kPreemptAndAbort or kClear
  uint32_t generation = 0;  // PRGEN after the change
};

// A caller's cached access verdict (ReservationTable::allows()). One per caller and host:
// a queue pair, a channel. Plain data; starts empty.
struct ReservationAccessCache {
  const void* table = nullptr;
  uint64_t version = 0;
  uint8_t allowed = 0;  // bit 0 read, bit 1 write
};

class ReservationTable {
 public:
  ReservationTable() = default;
  ReservationTable(const ReservationTable&) = delete;
  ReservationTable& operator=(const ReservationTable&) = delete;

  // ---- control and command path. Thread-safe (one mutex, held briefly: callable on a
  // reactor). Errors as in the header comment.

  // Register / Unregister / Replace (`action` one of those three).
  Status register_key(const HostId& host, ReservationAction action, uint64_t crkey, uint64_t nrkey,
                      bool ignore_key = false);
  // Acquire / Preempt / Preempt and Abort of `type` (`prkey` for the preempts).
  Status acquire(const HostId& host, ReservationAction action, ReservationType type, uint64_t crkey,
                 uint64_t prkey = 0);
  // Release of `type` / Clear.
  Status release(const HostId& host, ReservationAction action, ReservationType type, uint64_t crkey);
  // Any command, as `host`; kReport changes nothing. IEKEY on Acquire/Release commands
  // (cmd.ignore_key) is InvalidArgument.
  Status apply(const HostId& host, const ReservationCommand& cmd);
  ReservationReport report() const;

  // ---- the I/O path.

  // Whether `host` may run a read (false) or a write-group command (true: Write, Write
  // Zeroes, Dataset Management, Flush) now, per the spec's command behaviour table. With
  // no reservation held this is one relaxed atomic load; with one, one more compare
  // against `cache`, which is recomputed under the mutex only when the table changed.
  // REQUIRES: one `cache` per host (a caller that serves several hosts keeps one each);
  // the cache is not thread-safe, the table is. The verdict is the table's state at
  // the load: a command racing with a change may see either side of it, as with any
  // controller; one that starts after the change completed sees it.
  bool allows(const HostId& host, bool is_write, ReservationAccessCache& cache) const {
    const uint64_t v = version_.load(std::memory_order_relaxed);
    if (!(v & kReservedBit)) return true;
    if (cache.table != this || cache.version != v) refresh(host, cache);
    return cache.allowed & (is_write ? 2 : 1);
  }
  // The same without a cache (takes the mutex when a reservation is held): tests and
  // control paths.
  bool check(const HostId& host, bool is_write) const;
  // True while a reservation is held (any type).
  bool reserved() const { return version_.load(std::memory_order_relaxed) & kReservedBit; }

  // ---- notifications.

  // `fn` runs when `host`'s registration is removed by ANOTHER host's Preempt, Preempt
  // and Abort or Clear (not by the host's own Unregister, Clear or Preempt). It runs on
  // the thread that executed that command (a target reactor, a control thread), after
  // the change is visible to allows()/report() and outside the table's mutex, one
  // notice at a time per table. It must not block and must not call unsubscribe(); it
  // may read the table. Returns a token for unsubscribe().
  uint64_t subscribe(const HostId& host, std::function<void(const ReservationNotice&)> fn);
  // After it returns, the callback is not running and never runs again. REQUIRES: not
  // called from a notification callback.
  void unsubscribe(uint64_t token);

 private:
  static constexpr uint64_t kReservedBit = 1;
  struct Registrant {
    HostId host;
    uint64_t key = 0;
  };
  struct Subscriber {
    uint64_t token;
    HostId host;
    std::function<void(const ReservationNotice&)> fn;
  };

  Registrant* find_locked(const HostId& host);
  bool holds_locked(const HostId& host) const;
  bool allowed_locked(const HostId& host, bool is_write) const;
  // Removes every registrant matching `pred`; true if one was. Releases the reservation
  // when its holder goes (types 1..4) or the last registrant does (5, 6). Records a
  // notice for each removed host other than `by`.
  template <class Pred>
  bool unregister_if_locked(Pred pred, const HostId& by, ReservationAction why,
                            std::vector<ReservationNotice>* notices);
  // After every change, under the mutex: publishes the new version (and the reserved bit).
  void commit_locked(bool bump_generation);
  void refresh(const HostId& host, ReservationAccessCache& cache) const;
  void notify(std::vector<ReservationNotice> notices);
  Status do_apply_locked(const HostId& host, const ReservationCommand& cmd, std::vector<ReservationNotice>* out);

  mutable std::mutex mu_;
  std::vector<Registrant> regs_;  // guarded by mu_
  ReservationType type_ = ReservationType::kNone;
  HostId holder_;  // types 1..4; meaningless otherwise
  uint32_t generation_ = 0;
  uint64_t changes_ = 0;
  // (changes << 1) | reserved: the I/O path's one load.
  std::atomic<uint64_t> version_{0};

  std::mutex notify_mu_;  // serializes callbacks against each other and unsubscribe()
  std::mutex subs_mu_;    // guards subs_
  std::vector<Subscriber> subs_;
  uint64_t next_token_ = 1;
};

}  // namespace castor::bdev
