// NVMe reservations through Castor's target: two hosts (different host identifiers) on
// one namespace register, acquire, conflict, preempt, report, release and clear; bad
// fields leave the state alone; a bdev's own reservation conflict reaches the host as
// SC 83h; Identify and the Command Effects log announce the commands. Plus the pure
// command functions (reservation_cmds.h) on their own.
#include <gtest/gtest.h>

#include <future>

#include "bdev/modules/fault.h"
#include "nvmf/target/identify.h"
#include "nvmf/target/reservation_cmds.h"
#include "nvmf/target/target.h"
#include "raw_host.h"

namespace castor::nvmf::test {
namespace {

constexpr const char* kNqn = "nqn.2026-11.io.castor:resv-test";
constexpr uint32_t kBs = 512;

std::array<uint8_t, 16> hostid(uint8_t n) {
  std::array<uint8_t, 16> h{};
  h[0] = 0x5c;
  h[15] = n;
  return h;
}

struct Keys {
  uint64_t a, b;
};

// One host: an admin queue and I/O queue 1 on the same controller.
struct Host {
  Host(uint16_t port, const char* hostnqn, std::array<uint8_t, 16> id) : admin(port), io(port), id(id) {
    const uint16_t cntlid = bring_up_admin(admin, kNqn, hostnqn, id);
    EXPECT_EQ(io.connect(kNqn, hostnqn, 1, cntlid, 0, id).status, 0);
  }
  // A reservation command with `data` in-capsule, or fetched by R2T when !incapsule.
  Cqe resv(uint8_t op, uint32_t cdw10, std::vector<uint8_t> data, bool incapsule = true) {
    Sqe s{};
    s.opcode = op;
    s.nsid = 1;
    s.cdw10 = cdw10;
    if (incapsule) return io.cmd(s, data);
    s.sgl1.type = kSglTransportDataBlock;
    s.sgl1.length = static_cast<uint32_t>(data.size());
    return io.cmd(s, {}, nullptr, data);
  }
  static std::vector<uint8_t> keys(uint64_t cur, uint64_t other) {
    std::vector<uint8_t> d(16);
    std::memcpy(d.data(), &cur, 8);
    std::memcpy(d.data() + 8, &other, 8);
    return d;
  }
  Cqe reg(uint8_t rrega, uint64_t crkey, uint64_t nrkey, bool iekey = false, uint32_t cptpl = 0,
          bool incapsule = true) {
    return resv(io_op::kReservationRegister, rrega | (iekey ? 8u : 0u) | cptpl << 30, keys(crkey, nrkey), incapsule);
  }
  Cqe acquire(uint8_t racqa, uint8_t rtype, uint64_t crkey, uint64_t prkey = 0, bool iekey = false) {
    return resv(io_op::kReservationAcquire, racqa | (iekey ? 8u : 0u) | uint32_t{rtype} << 8, keys(crkey, prkey));
  }
  Cqe release(uint8_t rrela, uint8_t rtype, uint64_t crkey, bool incapsule = true) {
    std::vector<uint8_t> d(8);
    std::memcpy(d.data(), &crkey, 8);
    return resv(io_op::kReservationRelease, rrela | uint32_t{rtype} << 8, d, incapsule);
  }
  Cqe report(std::vector<uint8_t>* out, bool eds = true, uint32_t bytes = 4096) {
    Sqe s{};
    s.opcode = io_op::kReservationReport;
    s.nsid = 1;
    s.cdw10 = bytes / 4 - 1;
    s.cdw11 = eds ? 1 : 0;
    s.sgl1.type = kSglTransportDataBlock;
    s.sgl1.length = bytes;
    return io.cmd(s, {}, out);
  }
  uint16_t write() {
    std::vector<uint8_t> d(kBs, 0xab);
    return sc_of(io.rw(io_op::kWrite, 3, 1, kBs, nullptr, d, true));
  }
  uint16_t read() {
    std::vector<uint8_t> d;
    return sc_of(io.rw(io_op::kRead, 3, 1, kBs, &d));
  }
  uint16_t simple(uint8_t op, uint32_t cdw10 = 0, uint32_t cdw11 = 0, std::vector<uint8_t> data = {}) {
    Sqe s{};
    s.opcode = op;
    s.nsid = 1;
    s.cdw10 = cdw10;
    s.cdw11 = cdw11;
    return sc_of(io.cmd(s, data));
  }
  TestHost admin, io;
  std::array<uint8_t, 16> id;
};

struct Parsed {
  uint32_t gen = 0;
  uint8_t rtype = 0;
  uint16_t regctl = 0;
  std::vector<RegisteredControllerExtended> regs;
};
Parsed parse(const std::vector<uint8_t>& b) {
  Parsed p;
  EXPECT_GE(b.size(), 64u);
  if (b.size() < 64) return p;
  ReservationStatusHeader h;
  std::memcpy(&h, b.data(), sizeof(h));
  p.gen = h.gen;
  p.rtype = h.rtype;
  p.regctl = h.regctl;
  for (size_t i = 0; i < p.regctl && 64 + 64 * (i + 1) <= b.size(); ++i) {
    RegisteredControllerExtended e;
    std::memcpy(&e, b.data() + 64 + 64 * i, sizeof(e));
    p.regs.push_back(e);
  }
  return p;
}

class Reservations : public ::testing::Test {
 protected:
  void SetUp() override {
    reactor::ReactorOptions o;
    o.pin = false;
    group = std::make_unique<reactor::ReactorGroup>(std::vector<int>{0, 0}, o);
    group->start();
    reg = std::make_unique<bdev::BdevRegistry>(*group);
    ASSERT_TRUE(reg->create("malloc:///m0?size_mb=4&blk_size=512"));
    tgt = std::make_unique<NvmfTarget>(*group, *reg);
    ASSERT_TRUE(tgt->listen("127.0.0.1", 0, &port));
    ASSERT_TRUE(tgt->add_subsystem(kNqn, {}));
  }
  void TearDown() override {
    tgt.reset();
    reg.reset();
    group->stop();
  }
  std::unique_ptr<reactor::ReactorGroup> group;
  std::unique_ptr<bdev::BdevRegistry> reg;
  std::unique_ptr<NvmfTarget> tgt;
  uint16_t port = 0;
};

TEST_F(Reservations, TwoHostsRegisterAcquirePreemptReleaseClear) {
  ASSERT_TRUE(tgt->add_namespace(kNqn, "m0"));
  Host a(port, "nqn.2014-08.org.nvmexpress:uuid:host-a", hostid(1));
  Host b(port, "nqn.2014-08.org.nvmexpress:uuid:host-b", hostid(2));
  ASSERT_EQ(a.reg(resv::kRegister, 0, 0xaaaa).status, 0);
  ASSERT_EQ(b.reg(resv::kRegister, 0, 0xbbbb, false, 0, /*incapsule=*/false).status, 0);  // keys by R2T
  // Registered, nothing reserved: both write.
  EXPECT_EQ(a.write(), 0);
  EXPECT_EQ(b.write(), 0);
  ASSERT_EQ(a.acquire(resv::kAcquire, 1 /* Write Exclusive */, 0xaaaa).status, 0);

  // The other host's writes (every command of the write group) conflict; reads pass.
  EXPECT_EQ(b.write(), sc::kReservationConflict);
  EXPECT_EQ(b.simple(io_op::kWriteZeroes, 3, 0), sc::kReservationConflict);
  EXPECT_EQ(b.simple(io_op::kFlush), sc::kReservationConflict);
  std::vector<uint8_t> range(16, 0);
  range[4] = 1;
  EXPECT_EQ(b.simple(io_op::kDatasetManagement, 0, 1u << 2, range), sc::kReservationConflict);
  EXPECT_EQ(b.read(), 0);
  EXPECT_EQ(a.write(), 0);
  EXPECT_EQ(a.read(), 0);

  std::vector<uint8_t> buf;
  ASSERT_EQ(b.report(&buf).status, 0);
  ASSERT_EQ(buf.size(), 4096u);
  Parsed p = parse(buf);
  EXPECT_EQ(p.gen, 2u);  // two Registers; Acquire does not count
  EXPECT_EQ(p.rtype, 1);
  ASSERT_EQ(p.regctl, 2);
  ASSERT_EQ(p.regs.size(), 2u);
  EXPECT_EQ(p.regs[0].cntlid, 0xffff);
  EXPECT_EQ(p.regs[0].rcsts, 1);
  EXPECT_EQ(p.regs[0].rkey, 0xaaaau);
  EXPECT_EQ(std::memcmp(p.regs[0].hostid, hostid(1).data(), 16), 0);
  EXPECT_EQ(p.regs[1].rcsts, 0);
  EXPECT_EQ(p.regs[1].rkey, 0xbbbbu);
  EXPECT_EQ(std::memcmp(p.regs[1].hostid, hostid(2).data(), 16), 0);
  // A short report is truncated; regctl still counts every registrant.
  buf.clear();
  ASSERT_EQ(a.report(&buf, true, 96).status, 0);
  ASSERT_EQ(buf.size(), 96u);
  EXPECT_EQ(parse(buf).regctl, 2);
  // Host identifiers are 128 bits (CTRATT bit 0): a report without EDS is refused.
  EXPECT_EQ(sc_of(a.report(&buf, false)), kScHostIdInconsistentFormat);

  // B takes it over, preempting A's key: A is no longer registered, its writes conflict,
  // its reads still pass (Write Exclusive), and it cannot take the reservation back.
  EXPECT_EQ(sc_of(b.acquire(resv::kAcquire, 1, 0xbbbb)), sc::kReservationConflict);
  ASSERT_EQ(b.acquire(resv::kPreempt, 1, 0xbbbb, 0xaaaa).status, 0);
  EXPECT_EQ(a.write(), sc::kReservationConflict);
  EXPECT_EQ(a.read(), 0);
  EXPECT_EQ(b.write(), 0);
  EXPECT_EQ(sc_of(a.acquire(resv::kAcquire, 1, 0xaaaa)), sc::kReservationConflict);
  buf.clear();
  ASSERT_EQ(a.report(&buf).status, 0);
  p = parse(buf);
  EXPECT_EQ(p.gen, 3u);
  ASSERT_EQ(p.regctl, 1);
  EXPECT_EQ(p.regs[0].rcsts, 1);
  EXPECT_EQ(p.regs[0].rkey, 0xbbbbu);

  // Exclusive Access for B: A cannot even read. Preempting its own key changes the type.
  ASSERT_EQ(b.acquire(resv::kPreemptAndAbort, 2, 0xbbbb, 0xbbbb).status, 0);
  EXPECT_EQ(a.read(), sc::kReservationConflict);

  // Release needs the type held; then everyone may write again.
  EXPECT_EQ(sc_of(b.release(resv::kRelease, 1, 0xbbbb)), sc::kInvalidField);
  EXPECT_EQ(sc_of(b.release(resv::kRelease, 2, 0x1234)), sc::kReservationConflict);
  ASSERT_EQ(b.release(resv::kRelease, 2, 0xbbbb, /*incapsule=*/false).status, 0);
  EXPECT_EQ(a.write(), 0);
  EXPECT_EQ(a.read(), 0);

  // Clear drops every registration and counts in the generation.
  ASSERT_EQ(a.reg(resv::kRegister, 0, 0xaaaa).status, 0);
  ASSERT_EQ(b.acquire(resv::kAcquire, 3 /* WE registrants only */, 0xbbbb).status, 0);
  EXPECT_EQ(a.write(), 0);  // a registrant
  ASSERT_EQ(a.release(resv::kClear, 0, 0xaaaa).status, 0);
  buf.clear();
  ASSERT_EQ(a.report(&buf).status, 0);
  p = parse(buf);
  EXPECT_EQ(p.regctl, 0);
  EXPECT_EQ(p.rtype, 0);
  EXPECT_EQ(p.gen, 6u);  // + preempt-and-abort, register, clear
  EXPECT_EQ(b.write(), 0);
}

TEST_F(Reservations, BadFieldsAreRefusedWithoutChangingTheState) {
  ASSERT_TRUE(tgt->add_namespace(kNqn, "m0"));
  Host a(port, "nqn.2014-08.org.nvmexpress:uuid:host-a", hostid(1));
  ASSERT_EQ(a.reg(resv::kRegister, 0, 7).status, 0);
  ASSERT_EQ(a.acquire(resv::kAcquire, 1, 7).status, 0);
  std::vector<uint8_t> before, after;
  ASSERT_EQ(a.report(&before).status, 0);
  EXPECT_EQ(sc_of(a.reg(3, 7, 8)), sc::kInvalidField);                      // RREGA 3
  EXPECT_EQ(sc_of(a.reg(resv::kReplace, 7, 8, false, 3)), sc::kInvalidField);  // CPTPL: persist
  EXPECT_EQ(sc_of(a.reg(resv::kReplace, 7, 8, false, 1)), sc::kInvalidField);  // CPTPL reserved
  EXPECT_EQ(sc_of(a.reg(resv::kRegister, 0, 8)), sc::kReservationConflict);  // another key
  EXPECT_EQ(sc_of(a.acquire(3, 1, 7)), sc::kInvalidField);                   // RACQA 3
  EXPECT_EQ(sc_of(a.acquire(resv::kAcquire, 0, 7)), sc::kInvalidField);      // RTYPE 0
  EXPECT_EQ(sc_of(a.acquire(resv::kAcquire, 7, 7)), sc::kInvalidField);      // RTYPE 7
  EXPECT_EQ(sc_of(a.acquire(resv::kAcquire, 1, 7, 0, true)), sc::kInvalidField);  // IEKEY
  EXPECT_EQ(sc_of(a.acquire(resv::kPreempt, 2, 7, 0)), sc::kInvalidField);   // PRKEY 0, not all-registrants
  EXPECT_EQ(sc_of(a.release(2, 1, 7)), sc::kInvalidField);                   // RRELA 2
  EXPECT_EQ(sc_of(a.release(resv::kRelease, 2, 7)), sc::kInvalidField);     // another type
  // Too little data for the keys.
  Sqe s{};
  s.opcode = io_op::kReservationAcquire;
  s.nsid = 1;
  std::vector<uint8_t> eight(8, 0);
  EXPECT_EQ(sc_of(a.io.cmd(s, eight)), sc::kSglInvalidData);
  ASSERT_EQ(a.report(&after).status, 0);
  EXPECT_EQ(before, after);
  // A host without a host identifier cannot register (it would share one registration
  // with every other such host), but may read the state.
  Host z(port, "nqn.2014-08.org.nvmexpress:uuid:host-z", {});
  EXPECT_EQ(sc_of(z.reg(resv::kRegister, 0, 9)), sc::kCommandSequenceError);
  after.clear();
  ASSERT_EQ(z.report(&after).status, 0);
  EXPECT_EQ(before, after);
  EXPECT_EQ(z.write(), sc::kReservationConflict);
}

// Preempt and Abort completes only once the commands the preempted host had running on
// the namespace are done: a write of a fenced nexus stuck in the bdev cannot land after the
// new holder's writes.
TEST_F(Reservations, PreemptAndAbortWaitsForThePreemptedHostsRunningWrites) {
  ASSERT_TRUE(reg->create("fault:///f0?base=m0"));
  ASSERT_TRUE(tgt->add_namespace(kNqn, "f0"));
  Host a(port, "nqn.2014-08.org.nvmexpress:uuid:host-a", hostid(1));
  Host b(port, "nqn.2014-08.org.nvmexpress:uuid:host-b", hostid(2));
  ASSERT_EQ(sc_of(a.reg(resv::kRegister, 0, 0xA)), 0);
  ASSERT_EQ(sc_of(a.acquire(resv::kAcquire, 2, 0xA)), 0);  // Exclusive Access
  ASSERT_EQ(sc_of(b.reg(resv::kRegister, 0, 0xB)), 0);
  // a's write hangs in the bdev.
  bdev::FaultRuleSpec hang;
  hang.mode = bdev::FaultMode::kHang;
  hang.ops_mask = bdev::io_type_bit(bdev::IoType::kWrite);
  auto rule = bdev::FaultControl::inject(*reg->find("f0"), hang);
  ASSERT_TRUE(rule);
  auto stuck = std::async(std::launch::async, [&] { return a.write(); });
  for (int i = 0; i < 1000 && bdev::FaultControl::list(*reg->find("f0"))[0].parked == 0; ++i) usleep(2000);
  ASSERT_EQ(bdev::FaultControl::list(*reg->find("f0"))[0].parked, 1u);
  auto preempt = std::async(std::launch::async, [&] { return sc_of(b.acquire(resv::kPreemptAndAbort, 2, 0xB, 0xA)); });
  EXPECT_EQ(preempt.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "the preempt completed while the preempted host's write was still running";
  ASSERT_TRUE(bdev::FaultControl::clear(*reg->find("f0"), *rule));
  EXPECT_EQ(stuck.get(), 0);  // admitted before the preempt: it ran
  EXPECT_EQ(preempt.get(), 0);
  EXPECT_EQ(a.write(), sc::kReservationConflict);
  EXPECT_EQ(b.write(), 0);
}

TEST_F(Reservations, ABdevConflictReachesTheHostAsReservationConflict) {
  ASSERT_TRUE(reg->create("fault:///f0?base=m0"));
  ASSERT_TRUE(tgt->add_namespace(kNqn, "f0"));
  bdev::FaultRuleSpec rule;
  rule.ops_mask = bdev::io_type_bit(bdev::IoType::kWrite);
  rule.error_status = bdev::IoStatus::kReservationConflict;
  ASSERT_TRUE(bdev::FaultControl::inject(*reg->find("f0"), rule));
  Host a(port, "nqn.2014-08.org.nvmexpress:uuid:host-a", hostid(1));
  Cqe c = [&] {
    std::vector<uint8_t> d(kBs, 1);
    return a.io.rw(io_op::kWrite, 0, 1, kBs, nullptr, d, true);
  }();
  EXPECT_EQ(status_type(c.status), Sct::kGeneric);
  EXPECT_EQ(sc_of(c), sc::kReservationConflict);
  EXPECT_TRUE(c.status & 0x8000) << "do not retry";
  EXPECT_EQ(a.read(), 0);
}

TEST_F(Reservations, IdentifyAndCommandEffectsAnnounceThem) {
  ASSERT_TRUE(tgt->add_namespace(kNqn, "m0"));
  TestHost h(port);
  bring_up_admin(h, kNqn, "nqn.2014-08.org.nvmexpress:uuid:host-a", hostid(1));
  std::vector<uint8_t> buf;
  ASSERT_EQ(h.admin(admin_op::kIdentify, 0, cns::kController, 0, &buf, 4096).status, 0);
  IdentifyController ic;
  std::memcpy(&ic, buf.data(), sizeof(ic));
  EXPECT_TRUE(ic.oncs & kOncsReservations);
  EXPECT_TRUE(ic.ctratt & 1) << "128-bit host identifiers";
  buf.clear();
  ASSERT_EQ(h.admin(admin_op::kIdentify, 1, cns::kNamespace, 0, &buf, 4096).status, 0);
  IdentifyNamespace in;
  std::memcpy(&in, buf.data(), sizeof(in));
  EXPECT_EQ(in.rescap, 0xfe) << "six types + IEKEY (1.3), not persistent";
  buf.clear();
  ASSERT_EQ(h.admin(admin_op::kGetLogPage, 0, log_id::kCommandEffects | (1023u << 16), 0, &buf, 4096).status, 0);
  for (uint8_t op : {io_op::kReservationRegister, io_op::kReservationReport, io_op::kReservationAcquire,
                     io_op::kReservationRelease}) {
    uint32_t e;
    std::memcpy(&e, buf.data() + 1024 + 4 * op, 4);
    EXPECT_EQ(e & 1, 1u) << int(op);
  }
}

// ------------------------------------------------------------------ pure functions

Sqe sqe(uint8_t op, uint32_t cdw10, uint32_t cdw11 = 0) {
  Sqe s{};
  s.opcode = op;
  s.cdw10 = cdw10;
  s.cdw11 = cdw11;
  return s;
}

TEST(ReservationCmds, DecodeAndStatusMapping) {
  bdev::ReservationTable t;
  bdev::HostId a;
  a.bytes[0] = 1;
  ReservationKeys k{0, 0x55};
  auto data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&k), sizeof(k));
  EXPECT_EQ(execute_reservation(t, a, sqe(io_op::kReservationRegister, 0), data), 0);
  EXPECT_EQ(status_code(execute_reservation(t, a, sqe(io_op::kReservationRegister, 0), data.first(8))),
            sc::kSglInvalidData);
  k = {0x55, 0};
  EXPECT_EQ(execute_reservation(t, a, sqe(io_op::kReservationAcquire, 6u << 8), data), 0);
  EXPECT_EQ(t.report().type, bdev::ReservationType::kExclusiveAccessAllRegistrants);
  const uint16_t st = execute_reservation(t, bdev::HostId{{9}}, sqe(io_op::kReservationAcquire, 1u << 8), data);
  EXPECT_EQ(status_code(st), sc::kReservationConflict);
  EXPECT_TRUE(st & 0x8000);
  EXPECT_EQ(status_code(execute_reservation(t, a, sqe(io_op::kRead, 0), data)), sc::kInvalidOpcode);
  std::vector<uint8_t> out;
  EXPECT_EQ(execute_reservation_report(t, sqe(io_op::kReservationReport, 31, 1), &out), 0);
  EXPECT_EQ(out.size(), 128u);
  EXPECT_EQ(out[4], 6);  // RTYPE
  EXPECT_EQ(out[64 + 2], 1);  // every registrant holds an all-registrants reservation
  EXPECT_EQ(status_code(execute_reservation_report(t, sqe(io_op::kReservationReport, (1u << 20) / 4, 1), &out)),
            sc::kInvalidField);
  EXPECT_EQ(reservation_access(io_op::kWrite), 1);
  EXPECT_EQ(reservation_access(io_op::kFlush), 1);
  EXPECT_EQ(reservation_access(io_op::kRead), 0);
  EXPECT_EQ(reservation_access(io_op::kReservationReport), -1);
}

}  // namespace
}  // namespace castor::nvmf::test
