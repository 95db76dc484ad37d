// bdev::ReservationTable against the rules of NVMe 2.0 section 8.19: registration,
// acquire, preempt (holder's key, other keys, PRKEY 0 on all-registrants types), release,
// clear, the generation counter, the command behaviour table for all six types, the
// cached verdicts of the I/O path, and notifications of preempted hosts.
#include "bdev/reservations.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "bdev/bdev.h"

namespace castor::bdev {
namespace {

using A = ReservationAction;
using T = ReservationType;

HostId host(uint8_t n) {
  HostId h;
  h.bytes[0] = 0xca;
  h.bytes[15] = n;
  return h;
}
const HostId kA = host(1), kB = host(2), kC = host(3);

bool conflict(const Status& s) { return s.code() == Errc::kBusy && s.message().find("reservation conflict") == 0; }
bool invalid(const Status& s) { return s.code() == Errc::kInvalidArgument; }

// Everything a failed command must leave alone.
struct State {
  uint32_t gen;
  T type;
  std::vector<std::tuple<std::string, uint64_t, bool>> regs;
  bool operator==(const State&) const = default;
};
State state(const ReservationTable& t) {
  auto r = t.report();
  State s{r.generation, r.type, {}};
  for (const auto& g : r.registrants) s.regs.emplace_back(g.host.to_string(), g.key, g.holder);
  return s;
}

TEST(Reservations, RegisterIsIdempotentWithTheSameKeyAndConflictsWithAnother) {
  ReservationTable t;
  EXPECT_EQ(t.report().generation, 0u);
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 0x11));
  EXPECT_EQ(t.report().generation, 1u);
  // CRKEY is not used by Register; the same key again succeeds and counts.
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0x999, 0x11));
  EXPECT_EQ(t.report().generation, 2u);
  const State before = state(t);
  EXPECT_TRUE(conflict(t.register_key(kA, A::kRegister, 0x11, 0x22)));
  EXPECT_EQ(state(t), before);
  auto r = t.report();
  ASSERT_EQ(r.registrants.size(), 1u);
  EXPECT_EQ(r.registrants[0].host, kA);
  EXPECT_EQ(r.registrants[0].key, 0x11u);
  EXPECT_FALSE(r.registrants[0].holder);
  EXPECT_EQ(r.type, T::kNone);
  EXPECT_FALSE(t.reserved());
}

TEST(Reservations, UnregisterAndReplaceCheckTheCurrentKeyUnlessIgnored) {
  ReservationTable t;
  EXPECT_TRUE(conflict(t.register_key(kA, A::kUnregister, 0, 0)));  // not registered
  EXPECT_TRUE(conflict(t.register_key(kA, A::kReplace, 0, 5)));
  EXPECT_TRUE(conflict(t.register_key(kA, A::kReplace, 0, 5, true)));  // IEKEY does not register
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  const State before = state(t);
  EXPECT_TRUE(conflict(t.register_key(kA, A::kReplace, 2, 3)));
  EXPECT_TRUE(conflict(t.register_key(kA, A::kUnregister, 2, 0)));
  EXPECT_EQ(state(t), before);
  ASSERT_TRUE(t.register_key(kA, A::kReplace, 1, 3));
  EXPECT_EQ(t.report().registrants.at(0).key, 3u);
  ASSERT_TRUE(t.register_key(kA, A::kReplace, 0xdead, 4, true));
  EXPECT_EQ(t.report().registrants.at(0).key, 4u);
  EXPECT_EQ(t.report().generation, 3u);  // register, replace, replace
  ASSERT_TRUE(t.register_key(kA, A::kUnregister, 0xdead, 0, true));
  EXPECT_TRUE(t.report().registrants.empty());
  EXPECT_EQ(t.report().generation, 4u);
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 7));
  ASSERT_TRUE(t.register_key(kA, A::kUnregister, 7, 0));
  EXPECT_TRUE(t.report().registrants.empty());
  // Only register actions through register_key().
  EXPECT_TRUE(invalid(t.register_key(kA, A::kAcquire, 0, 0)));
}

TEST(Reservations, AcquireNeedsARegistrationWithItsKey) {
  ReservationTable t;
  EXPECT_TRUE(conflict(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 1)));  // not registered
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
  const uint32_t gen = t.report().generation;
  EXPECT_TRUE(conflict(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 9)));  // wrong key
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 1));
  EXPECT_TRUE(t.reserved());
  auto r = t.report();
  EXPECT_EQ(r.type, T::kWriteExclusive);
  ASSERT_TRUE(r.holder);
  EXPECT_EQ(*r.holder, kA);
  EXPECT_EQ(r.generation, gen);  // Acquire does not change the generation
  // Again, same type: success, no change. Another type, or another host: conflict.
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 1));
  const State before = state(t);
  EXPECT_TRUE(conflict(t.acquire(kA, A::kAcquire, T::kExclusiveAccess, 1)));
  EXPECT_TRUE(conflict(t.acquire(kB, A::kAcquire, T::kWriteExclusive, 2)));
  EXPECT_EQ(state(t), before);
}

TEST(Reservations, InvalidFieldsChangeNothing) {
  ReservationTable t;
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 1));
  const State before = state(t);
  for (int ty : {0, 7, 255}) {
    EXPECT_TRUE(invalid(t.acquire(kA, A::kAcquire, static_cast<T>(ty), 1))) << ty;
    EXPECT_TRUE(invalid(t.acquire(kA, A::kPreempt, static_cast<T>(ty), 1, 1))) << ty;
  }
  // IEKEY is reserved on Acquire and Release (NVMe 1.3 and later).
  for (A a : {A::kAcquire, A::kPreempt, A::kPreemptAndAbort, A::kRelease, A::kClear}) {
    ReservationCommand c;
    c.action = a;
    c.type = T::kWriteExclusive;
    c.crkey = 1;
    c.prkey = 1;
    c.ignore_key = true;
    EXPECT_TRUE(invalid(t.apply(kA, c))) << reservation_action_name(a);
  }
  // Release of another type than the one held.
  EXPECT_TRUE(invalid(t.release(kA, A::kRelease, T::kExclusiveAccess, 1)));
  // PRKEY 0 means something only for the all-registrants types.
  EXPECT_TRUE(invalid(t.acquire(kA, A::kPreempt, T::kExclusiveAccess, 1, 0)));
  // A zero host identifier cannot register.
  EXPECT_TRUE(invalid(t.register_key(HostId{}, A::kRegister, 0, 1)));
  EXPECT_EQ(state(t), before);
}

TEST(Reservations, ReleaseByTheHolderWithItsTypeReleasesAndByOthersDoesNothing) {
  ReservationTable t;
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kExclusiveAccessRegistrantsOnly, 1));
  const State before = state(t);
  EXPECT_TRUE(conflict(t.release(kC, A::kRelease, T::kExclusiveAccessRegistrantsOnly, 0)));  // not registered
  EXPECT_TRUE(conflict(t.release(kB, A::kRelease, T::kExclusiveAccessRegistrantsOnly, 9)));  // wrong key
  ASSERT_TRUE(t.release(kB, A::kRelease, T::kExclusiveAccessRegistrantsOnly, 2));  // not the holder: no effect
  ASSERT_TRUE(t.release(kB, A::kRelease, T::kWriteExclusive, 2));  // type not even checked then
  EXPECT_EQ(state(t), before);
  ASSERT_TRUE(t.release(kA, A::kRelease, T::kExclusiveAccessRegistrantsOnly, 1));
  EXPECT_EQ(t.report().type, T::kNone);
  EXPECT_FALSE(t.reserved());
  EXPECT_EQ(t.report().registrants.size(), 2u);  // registrations stay
  EXPECT_EQ(t.report().generation, before.gen);   // Release does not change the generation
  ASSERT_TRUE(t.release(kA, A::kRelease, T::kWriteExclusive, 1));  // nothing held: no effect
}

TEST(Reservations, PreemptWithTheHoldersKeyMovesTheReservation) {
  ReservationTable t;
  std::vector<ReservationNotice> seen;
  const uint64_t tok = t.subscribe(kA, [&](const ReservationNotice& n) { seen.push_back(n); });
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 0xa));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 0xb));
  ASSERT_TRUE(t.register_key(kC, A::kRegister, 0, 0xa));  // shares A's key
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 0xa));
  const uint32_t gen = t.report().generation;
  ASSERT_TRUE(t.acquire(kB, A::kPreempt, T::kExclusiveAccess, 0xb, 0xa));
  auto r = t.report();
  EXPECT_EQ(r.generation, gen + 1);
  EXPECT_EQ(r.type, T::kExclusiveAccess);
  ASSERT_TRUE(r.holder);
  EXPECT_EQ(*r.holder, kB);
  ASSERT_EQ(r.registrants.size(), 1u);  // A and C (key 0xa) are gone
  EXPECT_EQ(r.registrants[0].host, kB);
  EXPECT_TRUE(r.registrants[0].holder);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].host, kA);
  EXPECT_EQ(seen[0].by, kB);
  EXPECT_EQ(seen[0].action, A::kPreempt);
  EXPECT_EQ(seen[0].generation, gen + 1);
  // A, preempted, is no longer registered: everything it tries conflicts.
  EXPECT_TRUE(conflict(t.acquire(kA, A::kAcquire, T::kExclusiveAccess, 0xa)));
  EXPECT_FALSE(t.check(kA, true));
  EXPECT_FALSE(t.check(kA, false));
  t.unsubscribe(tok);
}

TEST(Reservations, HolderPreemptingItsOwnKeyChangesTheTypeAndDropsTheOthersWithIt) {
  ReservationTable t;
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 0xa));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 0xa));
  ASSERT_TRUE(t.register_key(kC, A::kRegister, 0, 0xc));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 0xa));
  ASSERT_TRUE(t.acquire(kA, A::kPreemptAndAbort, T::kExclusiveAccess, 0xa, 0xa));
  auto r = t.report();
  EXPECT_EQ(r.type, T::kExclusiveAccess);
  EXPECT_EQ(*r.holder, kA);
  ASSERT_EQ(r.registrants.size(), 2u);
  EXPECT_EQ(r.registrants[0].host, kA);
  EXPECT_EQ(r.registrants[1].host, kC);
}

TEST(Reservations, PreemptWithAnotherKeyRemovesOnlyThoseRegistrations) {
  ReservationTable t;
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 0xa));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 0xb));
  ASSERT_TRUE(t.register_key(kC, A::kRegister, 0, 0xc));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusiveRegistrantsOnly, 0xa));
  const State before = state(t);
  EXPECT_TRUE(conflict(t.acquire(kB, A::kPreempt, T::kWriteExclusive, 0xb, 0x77)));  // nobody has 0x77
  EXPECT_EQ(state(t), before);
  ASSERT_TRUE(t.acquire(kB, A::kPreempt, T::kWriteExclusive, 0xb, 0xc));
  auto r = t.report();
  EXPECT_EQ(r.type, T::kWriteExclusiveRegistrantsOnly);  // untouched
  EXPECT_EQ(*r.holder, kA);
  EXPECT_EQ(r.generation, before.gen + 1);
  ASSERT_EQ(r.registrants.size(), 2u);
  EXPECT_EQ(r.registrants[1].host, kB);
  // With no reservation at all, a preempt only removes registrations too.
  ASSERT_TRUE(t.release(kA, A::kRelease, T::kWriteExclusiveRegistrantsOnly, 0xa));
  ASSERT_TRUE(t.acquire(kB, A::kPreempt, T::kWriteExclusive, 0xb, 0xa));
  r = t.report();
  EXPECT_EQ(r.type, T::kNone);
  ASSERT_EQ(r.registrants.size(), 1u);
  EXPECT_EQ(r.registrants[0].host, kB);
}

TEST(Reservations, AllRegistrantsTypesMakeEveryRegistrantAHolder) {
  for (T ty : {T::kWriteExclusiveAllRegistrants, T::kExclusiveAccessAllRegistrants}) {
    SCOPED_TRACE(reservation_type_name(ty));
    ReservationTable t;
    std::vector<HostId> preempted;
    t.subscribe(kB, [&](const ReservationNotice& n) { preempted.push_back(n.host); });
    t.subscribe(kC, [&](const ReservationNotice& n) { preempted.push_back(n.host); });
    ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 0xa));
    ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 0xb));
    ASSERT_TRUE(t.acquire(kA, A::kAcquire, ty, 0xa));
    ASSERT_TRUE(t.register_key(kC, A::kRegister, 0, 0xc));  // registering later also makes a holder
    auto r = t.report();
    EXPECT_FALSE(r.holder);
    for (const auto& g : r.registrants) EXPECT_TRUE(g.holder);
    // B holds it too: acquiring the same type succeeds, another conflicts.
    ASSERT_TRUE(t.acquire(kB, A::kAcquire, ty, 0xb));
    EXPECT_TRUE(conflict(t.acquire(kB, A::kAcquire, T::kWriteExclusive, 0xb)));
    // Any registrant may release it.
    ASSERT_TRUE(t.release(kC, A::kRelease, ty, 0xc));
    EXPECT_EQ(t.report().type, T::kNone);
    ASSERT_TRUE(t.acquire(kA, A::kAcquire, ty, 0xa));
    // A non-zero PRKEY removes those registrations; the reservation stays.
    ASSERT_TRUE(t.acquire(kA, A::kPreempt, ty, 0xa, 0xc));
    EXPECT_EQ(t.report().type, ty);
    EXPECT_EQ(t.report().registrants.size(), 2u);
    EXPECT_TRUE(conflict(t.acquire(kA, A::kPreempt, ty, 0xa, 0x99)));
    // PRKEY 0 preempts everyone else; the caller holds a reservation of the new type.
    ASSERT_TRUE(t.register_key(kC, A::kRegister, 0, 0xc));
    const uint32_t gen = t.report().generation;
    ASSERT_TRUE(t.acquire(kA, A::kPreempt, T::kWriteExclusive, 0xa, 0));
    r = t.report();
    EXPECT_EQ(r.generation, gen + 1);
    EXPECT_EQ(r.type, T::kWriteExclusive);
    EXPECT_EQ(*r.holder, kA);
    ASSERT_EQ(r.registrants.size(), 1u);
    EXPECT_EQ(preempted, (std::vector<HostId>{kC, kB, kC}));
  }
}

TEST(Reservations, UnregisteringTheHolderReleasesButNotWhileOtherAllRegistrantsRemain) {
  ReservationTable t;
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 1));
  ASSERT_TRUE(t.register_key(kA, A::kUnregister, 1, 0));
  EXPECT_EQ(t.report().type, T::kNone);
  EXPECT_TRUE(t.check(kC, true));

  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kExclusiveAccessAllRegistrants, 1));
  ASSERT_TRUE(t.register_key(kA, A::kUnregister, 1, 0));
  EXPECT_EQ(t.report().type, T::kExclusiveAccessAllRegistrants);  // B still holds it
  EXPECT_FALSE(t.check(kA, false));
  ASSERT_TRUE(t.register_key(kB, A::kUnregister, 2, 0));
  EXPECT_EQ(t.report().type, T::kNone);  // the last one went
  EXPECT_FALSE(t.reserved());
}

TEST(Reservations, ClearRemovesEverythingAndNotifiesTheOthers) {
  ReservationTable t;
  int a_notices = 0, b_notices = 0;
  t.subscribe(kA, [&](const ReservationNotice& n) {
    EXPECT_EQ(n.action, A::kClear);
    ++a_notices;
  });
  t.subscribe(kB, [&](const ReservationNotice&) { ++b_notices; });
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kExclusiveAccess, 1));
  EXPECT_TRUE(conflict(t.release(kB, A::kClear, T::kNone, 9)));  // wrong key
  const uint32_t gen = t.report().generation;
  ASSERT_TRUE(t.release(kB, A::kClear, T::kNone, 2));
  auto r = t.report();
  EXPECT_EQ(r.generation, gen + 1);
  EXPECT_EQ(r.type, T::kNone);
  EXPECT_TRUE(r.registrants.empty());
  EXPECT_EQ(a_notices, 1);
  EXPECT_EQ(b_notices, 0);  // its own command
}

TEST(Reservations, OwnUnregisterDoesNotNotifyAndUnsubscribeStops) {
  ReservationTable t;
  int n = 0;
  const uint64_t tok = t.subscribe(kA, [&](const ReservationNotice&) { ++n; });
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kA, A::kUnregister, 1, 0));
  EXPECT_EQ(n, 0);
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
  t.unsubscribe(tok);
  ASSERT_TRUE(t.acquire(kB, A::kPreempt, T::kWriteExclusive, 2, 1));
  EXPECT_EQ(n, 0);
}

// NVMe 2.0, "Command Behavior in the Presence of a Reservation": every type, for its
// holder, another registrant and a host that is not registered, reading and writing.
TEST(Reservations, AccessTableForAllSixTypes) {
  struct Row {
    T type;
    bool reg_read, reg_write, other_read, other_write;
  };
  const Row rows[] = {
      {T::kWriteExclusive, true, false, true, false},
      {T::kExclusiveAccess, false, false, false, false},
      {T::kWriteExclusiveRegistrantsOnly, true, true, true, false},
      {T::kExclusiveAccessRegistrantsOnly, true, true, false, false},
      {T::kWriteExclusiveAllRegistrants, true, true, true, false},
      {T::kExclusiveAccessAllRegistrants, true, true, false, false},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(reservation_type_name(row.type));
    ReservationTable t;
    ReservationAccessCache ca, cb, cc;
    ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
    ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
    // Registrations alone restrict nothing.
    for (bool w : {false, true}) {
      EXPECT_TRUE(t.allows(kC, w, cc));
      EXPECT_TRUE(t.check(kC, w));
    }
    ASSERT_TRUE(t.acquire(kA, A::kAcquire, row.type, 1));
    struct Case {
      const HostId& h;
      ReservationAccessCache& cache;
      bool read, write;
      const char* who;
    };
    const Case cases[] = {{kA, ca, true, true, "holder"},
                          {kB, cb, row.reg_read, row.reg_write, "registrant"},
                          {kC, cc, row.other_read, row.other_write, "not registered"}};
    for (const Case& c : cases) {
      SCOPED_TRACE(c.who);
      EXPECT_EQ(t.check(c.h, false), c.read);
      EXPECT_EQ(t.check(c.h, true), c.write);
      EXPECT_EQ(t.allows(c.h, false, c.cache), c.read);
      EXPECT_EQ(t.allows(c.h, true, c.cache), c.write);
    }
    // Released: everyone may do anything again, cached verdicts included.
    ASSERT_TRUE(t.release(kA, A::kRelease, row.type, 1));
    for (const Case& c : cases) {
      EXPECT_TRUE(t.allows(c.h, true, c.cache));
      EXPECT_TRUE(t.allows(c.h, false, c.cache));
    }
  }
}

TEST(Reservations, CachedVerdictFollowsAPreempt) {
  ReservationTable t;
  ReservationAccessCache ca, cb;
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 1));
  EXPECT_TRUE(t.allows(kA, true, ca));
  EXPECT_FALSE(t.allows(kB, true, cb));
  EXPECT_TRUE(t.allows(kB, false, cb));
  ASSERT_TRUE(t.acquire(kB, A::kPreempt, T::kWriteExclusive, 2, 1));
  EXPECT_FALSE(t.allows(kA, true, ca));
  EXPECT_TRUE(t.allows(kA, false, ca));
  EXPECT_TRUE(t.allows(kB, true, cb));
  // A cache filled for another table is not taken for this one.
  ReservationTable other;
  EXPECT_TRUE(other.allows(kA, true, ca));
}

TEST(Reservations, ChecksRaceWithPreemptsSafely) {
  ReservationTable t;
  ASSERT_TRUE(t.register_key(kA, A::kRegister, 0, 1));
  ASSERT_TRUE(t.register_key(kB, A::kRegister, 0, 2));
  ASSERT_TRUE(t.acquire(kA, A::kAcquire, T::kWriteExclusive, 1));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> checks{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&, i] {
      ReservationAccessCache c;
      const HostId& h = i ? kA : kB;
      while (!stop.load()) {
        (void)t.allows(h, true, c);
        checks.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // A and B take the reservation from each other, re-registering after each preempt.
  for (int i = 0; i < 2000; ++i) {
    const bool a_turn = i % 2;
    const HostId& me = a_turn ? kA : kB;
    const HostId& them = a_turn ? kB : kA;
    const uint64_t mine = a_turn ? 1 : 2, theirs = a_turn ? 2 : 1;
    ASSERT_TRUE(t.acquire(me, A::kPreempt, T::kWriteExclusive, mine, theirs));
    ASSERT_TRUE(t.register_key(them, A::kRegister, 0, theirs));
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_GT(checks.load(), 0u);
  ReservationAccessCache c;
  EXPECT_TRUE(t.allows(kA, true, c));  // A preempted last
  EXPECT_FALSE(t.allows(kB, true, c = {}));
}

// A device without channels: only its reservation table is used.
class TableOnlyBdev final : public Bdev {
 public:
  TableOnlyBdev() : Bdev("t0", "test", 512, 8) {}

 protected:
  std::unique_ptr<BdevChannel> create_channel(reactor::Reactor&) override { return nullptr; }
};

TEST(Reservations, BdevReservationAppliesToItsOwnTable) {
  TableOnlyBdev b;
  ReservationCommand reg;
  reg.action = A::kRegister;
  reg.nrkey = 0x42;
  ReservationReport rep;
  ASSERT_TRUE(b.reservation(kA, reg, &rep));
  ASSERT_EQ(rep.registrants.size(), 1u);
  ReservationCommand acq;
  acq.action = A::kAcquire;
  acq.type = T::kWriteExclusive;
  acq.crkey = 0x42;
  ASSERT_TRUE(b.reservation(kA, acq));
  EXPECT_FALSE(b.reservations().check(kB, true));
  ReservationCommand bad = acq;
  bad.crkey = 1;
  rep = {};
  EXPECT_TRUE(conflict(b.reservation(kA, bad, &rep)));
  EXPECT_TRUE(rep.registrants.empty());  // not filled on failure
  ReservationCommand report;
  ASSERT_TRUE(b.reservation(kB, report, &rep));
  EXPECT_EQ(rep.type, T::kWriteExclusive);
  EXPECT_EQ(*rep.holder, kA);
}

}  // namespace
}  // namespace castor::bdev
