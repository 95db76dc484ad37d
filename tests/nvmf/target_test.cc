// Castor's NVMe/TCP target driven by a minimal host written against the codec: the
// command sequence the Linux host sends (reference facts), data in both directions,
// R2T, digests, discovery, allow-lists, malformed PDUs and keep-alive enforcement.
#include "nvmf/target/target.h"

#include <gtest/gtest.h>

#include <thread>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <random>

#include "bdev/modules/fault.h"
#include "nvmf/codec/pdu.h"
#include "pool/pool.h"
#include "../pool/small_pool.h"
#include "raw_host.h"

namespace castor::nvmf {
namespace {

using test::bring_up_admin;
using test::Pdu;
using test::sc_of;
using test::TestHost;

class Target : public ::testing::Test {
 protected:
  void SetUp() override {
    reactor::ReactorOptions o;
    o.pin = false;
    group = std::make_unique<reactor::ReactorGroup>(std::vector<int>{0, 0}, o);
    group->start();
    reg = std::make_unique<bdev::BdevRegistry>(*group);
    ASSERT_TRUE(reg->create("malloc:///m0?size_mb=16&blk_size=512"));
    tgt = std::make_unique<NvmfTarget>(*group, *reg);
    ASSERT_TRUE(tgt->listen("127.0.0.1", 0, &port));
    ASSERT_TRUE(tgt->add_subsystem(kNqn, {}));
    ASSERT_TRUE(tgt->add_namespace(kNqn, "m0"));
    ASSERT_TRUE(tgt->add_subsystem(kLocked, {"nqn.2014-08.org.nvmexpress:uuid:allowed"}));
  }
  void TearDown() override {
    tgt.reset();
    reg.reset();
    group->stop();
  }
  static constexpr const char* kNqn = "nqn.2026-11.io.castor:replica-test";
  static constexpr const char* kLocked = "nqn.2026-11.io.castor:locked";
  static constexpr const char* kHost = "nqn.2014-08.org.nvmexpress:uuid:host";
  std::unique_ptr<reactor::ReactorGroup> group;
  std::unique_ptr<bdev::BdevRegistry> reg;
  std::unique_ptr<NvmfTarget> tgt;
  uint16_t port = 0;
};

// After send_aer(): returns once the target holds the Async Event Request. The admin
// queue's capsules are taken in order, so the answer to a later command proves it (no
// event can come first: none has happened yet). A notice finding no AER is not sent.
void aer_held(TestHost& h) {
  ASSERT_EQ(h.admin(admin_op::kGetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
}

// The held Asynchronous Event Request `cid` completes as a namespace-attribute notice, and
// the Changed Namespace List (log page 04h) names exactly `nsid`.
void expect_ns_changed(TestHost& h, uint16_t cid, uint32_t nsid) {
  Pdu p = h.recv();
  ASSERT_EQ(p.f.type, PduType::kCapsuleResp);
  auto r = p.as<CapsuleRespHeader>();
  EXPECT_EQ(r.cqe.cid, cid);
  EXPECT_EQ(r.cqe.status, 0);
  EXPECT_EQ(r.cqe.dw0, 0x040002u);  // notice, namespace attribute changed, log page 0x04
  std::vector<uint8_t> buf;
  ASSERT_EQ(h.admin(admin_op::kGetLogPage, 0, log_id::kChangedNs | (1023u << 16), 0, &buf, 4096).status, 0);
  uint32_t first = 0, second = 1;
  std::memcpy(&first, buf.data(), 4);
  std::memcpy(&second, buf.data() + 4, 4);
  EXPECT_EQ(first, nsid);
  EXPECT_EQ(second, 0u);
}


// Sends a 16 KiB write with `cid` (more than fits in a capsule) and waits for the R2T
// asking for its data, which is never sent: the command holds its slot and CID.
void write_awaiting_data(TestHost& io, uint16_t cid) {
  Sqe wr{};
  wr.opcode = io_op::kWrite;
  wr.nsid = 1;
  wr.cid = cid;
  wr.flags = 0x40;
  wr.cdw12 = 31;
  wr.sgl1.type = kSglTransportDataBlock;
  wr.sgl1.length = 16384;
  uint8_t h[80];
  io.send_raw(h, build_capsule_cmd(h, wr, 0, false, false));
  Pdu r2t = io.recv();
  ASSERT_EQ(r2t.f.type, PduType::kR2T);
}

TEST_F(Target, AdminSequenceIoQueueAndData) {
  for (bool digests : {false, true}) {
    SCOPED_TRACE(digests ? "with digests" : "without digests");
    TestHost a(port, digests, digests);
    uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
    std::vector<uint8_t> buf;
    ASSERT_EQ(a.admin(admin_op::kIdentify, 0, cns::kController, 0, &buf, 4096).status, 0);
    IdentifyController ic;
    ASSERT_EQ(buf.size(), 4096u);
    std::memcpy(&ic, buf.data(), sizeof(ic));
    EXPECT_EQ(ic.cntlid, cntlid);
    EXPECT_EQ(std::string(ic.subnqn), kNqn);
    Cqe q = a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, (3u << 16) | 3u);
    EXPECT_EQ(q.status, 0);
    EXPECT_EQ(q.dw0 & 0xffff, 3u);  // 4 queues granted (0's based)
    buf.clear();
    ASSERT_EQ(a.admin(admin_op::kIdentify, 0, cns::kActiveNsList, 0, &buf, 4096).status, 0);
    EXPECT_EQ(buf[0], 1);
    buf.clear();
    ASSERT_EQ(a.admin(admin_op::kIdentify, 1, cns::kNamespace, 0, &buf, 4096).status, 0);
    IdentifyNamespace in;
    std::memcpy(&in, buf.data(), sizeof(in));
    EXPECT_EQ(in.nsze, 16u * 2048);
    EXPECT_EQ(in.lbaf[0].lbads, 9);
    EXPECT_EQ(a.admin(admin_op::kKeepAlive, 0, 0, 0).status, 0);
    buf.clear();
    EXPECT_EQ(a.admin(admin_op::kGetLogPage, 0, log_id::kCommandEffects | (1023u << 16), 0, &buf, 4096).status, 0);
    EXPECT_EQ(sc_of(a.admin(0x01, 0, 0, 0)), sc::kInvalidOpcode);  // Create I/O SQ: not on fabrics

    TestHost io(port, digests, digests);
    ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
    // The previous round's controller goes away just after its sockets close.
    for (int i = 0; i < 200 && tgt->list_controllers().size() != 1; ++i) usleep(10000);
    EXPECT_EQ(tgt->list_controllers().size(), 1u);
    std::mt19937 rng(1);
    std::vector<uint8_t> small(4096), big(64 * 1024);
    for (auto& x : small) x = static_cast<uint8_t>(rng());
    for (auto& x : big) x = static_cast<uint8_t>(rng());
    // In-capsule write, R2T write split over several H2CData PDUs, reads back.
    EXPECT_EQ(io.rw(io_op::kWrite, 8, 8, 512, nullptr, small, true).status, 0);
    EXPECT_EQ(io.rw(io_op::kWrite, 100, 128, 512, nullptr, big, false, 16384).status, 0);
    std::vector<uint8_t> got;
    EXPECT_EQ(io.rw(io_op::kRead, 8, 8, 512, &got).status, 0);
    EXPECT_EQ(got, small);
    got.clear();
    EXPECT_EQ(io.rw(io_op::kRead, 100, 128, 512, &got).status, 0);
    EXPECT_EQ(got, big);
    Sqe fl{};
    fl.opcode = io_op::kFlush;
    fl.nsid = 1;
    EXPECT_EQ(io.cmd(fl).status, 0);
    Sqe wz{};
    wz.opcode = io_op::kWriteZeroes;
    wz.nsid = 1;
    wz.cdw10 = 100;
    wz.cdw12 = 7;
    EXPECT_EQ(io.cmd(wz).status, 0);
    got.clear();
    EXPECT_EQ(io.rw(io_op::kRead, 100, 8, 512, &got).status, 0);
    EXPECT_EQ(got, std::vector<uint8_t>(4096, 0));
    // Errors: out of range, unknown namespace, too large a transfer.
    EXPECT_EQ(sc_of(io.rw(io_op::kRead, 16 * 2048 - 1, 2, 512, &got)), sc::kLbaOutOfRange);
    Sqe bad{};
    bad.opcode = io_op::kRead;
    bad.nsid = 9;
    EXPECT_EQ(sc_of(io.cmd(bad)), sc::kInvalidNamespace);
    EXPECT_EQ(sc_of(io.rw(io_op::kRead, 0, 2048, 512, &got)), sc::kInvalidField);  // 1 MiB > MDTS
    // A second I/O queue on the same controller.
    TestHost io2(port, digests, digests);
    ASSERT_EQ(io2.connect(kNqn, kHost, 2, cntlid).status, 0);
    got.clear();
    EXPECT_EQ(io2.rw(io_op::kRead, 8, 8, 512, &got).status, 0);
    EXPECT_EQ(got, small);
    // A second Connect for a queue that exists is refused, as Linux's nvmet does.
    TestHost dup(port, digests, digests);
    EXPECT_EQ(sc_of(dup.connect(kNqn, kHost, 2, cntlid)), sc::kCommandSequenceError);
    // Dataset Management (deallocate one range), in-capsule and by R2T; an SGL shorter
    // than the ranges it announces is refused before any data is asked for.
    uint8_t range[16] = {};
    const uint32_t range_nlb = 8;
    const uint64_t range_slba = 200;
    std::memcpy(range + 4, &range_nlb, 4);
    std::memcpy(range + 8, &range_slba, 8);
    Sqe dsm{};
    dsm.opcode = io_op::kDatasetManagement;
    dsm.nsid = 1;
    dsm.cdw11 = 1u << 2;  // AD
    EXPECT_EQ(io.cmd(dsm, range).status, 0);
    dsm.sgl1.type = kSglTransportDataBlock;
    dsm.sgl1.length = 16;
    EXPECT_EQ(io.cmd(dsm, {}, nullptr, range).status, 0);
    dsm.sgl1.length = 8;
    EXPECT_EQ(sc_of(io.cmd(dsm, {}, nullptr, range)), sc::kSglInvalidData);
    // Linux sends a DSM's ranges in a buffer sized for the maximum of 256 (4 KiB) whatever
    // the number of ranges, in-capsule; the bytes beyond the announced ranges are ignored.
    std::vector<uint8_t> linux_ranges(4096, 0);
    std::memcpy(linux_ranges.data(), range, sizeof range);
    Sqe dsm4k{};
    dsm4k.opcode = io_op::kDatasetManagement;
    dsm4k.nsid = 1;
    dsm4k.cdw11 = 1u << 2;
    EXPECT_EQ(io.cmd(dsm4k, linux_ranges).status, 0);
    // A write whose in-capsule data is longer than its one block: the block gets the first
    // 512 bytes, the rest is ignored (SGLS bit 18).
    std::vector<uint8_t> longer(1024);
    for (size_t i = 0; i < longer.size(); ++i) longer[i] = static_cast<uint8_t>(i * 7 + 3);
    Sqe wr1{};
    wr1.opcode = io_op::kWrite;
    wr1.nsid = 1;
    wr1.cdw10 = 300;
    EXPECT_EQ(io.cmd(wr1, longer).status, 0);
    got.clear();
    EXPECT_EQ(io.rw(io_op::kRead, 300, 1, 512, &got).status, 0);
    EXPECT_EQ(got, std::vector<uint8_t>(longer.begin(), longer.begin() + 512));
    // I/O connect with a wrong cntlid or host is refused.
    TestHost io3(port);
    EXPECT_EQ(sc_of(io3.connect(kNqn, kHost, 3, cntlid + 100)), sc::kConnectInvalidParameters);
  }
}

// A namespace added to a subsystem with a connected controller: the host that enabled
// namespace attribute notices gets one through its outstanding Async Event Request, the
// Changed Namespace List names it, and both admin and I/O queues see it.
// As Linux's nvmet does: until the host enables the controller (CC.EN, then CSTS.RDY),
// and again after it shuts it down (CC.SHN), only Fabrics commands run; admin and I/O
// commands get Command Sequence Error instead of touching the namespace.
TEST_F(Target, CommandsBeforeEnableAndAfterShutdownAreRefused) {
  TestHost a(port);
  Cqe c = a.connect(kNqn, kHost, 0, 0xffff);
  ASSERT_EQ(c.status, 0);
  const uint16_t cntlid = static_cast<uint16_t>(c.dw0);
  std::vector<uint8_t> buf;
  EXPECT_EQ(sc_of(a.admin(admin_op::kIdentify, 0, cns::kController, 0, &buf, 4096)), sc::kCommandSequenceError);
  TestHost io(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);  // connecting a queue is a Fabrics command
  const std::vector<uint8_t> data(4096, 0x5a);
  EXPECT_EQ(sc_of(io.rw(io_op::kWrite, 0, 8, 512, nullptr, data, true)), sc::kCommandSequenceError);

  const uint32_t cc = (6u << 16) | (4u << 20);
  ASSERT_EQ(a.prop_set(prop::kCc, cc | 1).status, 0);
  EXPECT_EQ(a.admin(admin_op::kIdentify, 0, cns::kController, 0, &buf, 4096).status, 0);
  EXPECT_EQ(io.rw(io_op::kWrite, 0, 8, 512, nullptr, data, true).status, 0);
  std::vector<uint8_t> back;
  ASSERT_EQ(io.rw(io_op::kRead, 0, 8, 512, &back).status, 0);
  EXPECT_EQ(back, data);

  ASSERT_EQ(a.prop_set(prop::kCc, cc | 1 | (1u << 14)).status, 0);  // normal shutdown
  EXPECT_EQ(sc_of(io.rw(io_op::kRead, 0, 8, 512, &back)), sc::kCommandSequenceError);
}

// The ANA log page (0Ch) of `h`'s controller: {change count, state of group 1, NSIDs}.
struct AnaLog {
  uint64_t chgcnt = 0;
  uint8_t state = 0;
  std::vector<uint32_t> nsids;
};
AnaLog read_ana_log(TestHost& h, bool groups_only = false) {
  std::vector<uint8_t> buf;
  AnaLog out;
  const uint32_t lsp = groups_only ? 1u << 8 : 0;
  EXPECT_EQ(h.admin(admin_op::kGetLogPage, 0, log_id::kAna | lsp | (1023u << 16), 0, &buf, 4096).status, 0);
  if (buf.size() < sizeof(AnaLogHeader) + sizeof(AnaGroupDescriptor)) return out;
  AnaLogHeader hd;
  AnaGroupDescriptor d;
  std::memcpy(&hd, buf.data(), sizeof(hd));
  std::memcpy(&d, buf.data() + sizeof(hd), sizeof(d));
  EXPECT_EQ(hd.ngrps, 1);
  EXPECT_EQ(d.grpid, 1u);
  EXPECT_EQ(d.chgcnt, hd.chgcnt);
  out.chgcnt = hd.chgcnt;
  out.state = d.state;
  for (uint32_t i = 0; i < d.nnsids; ++i) {
    uint32_t id;
    std::memcpy(&id, buf.data() + sizeof(hd) + sizeof(d) + 4 * i, 4);
    out.nsids.push_back(id);
  }
  return out;
}

// The held Asynchronous Event Request `cid` completes as an ANA change notice.
void expect_ana_notice(TestHost& h, uint16_t cid) {
  Pdu p = h.recv();
  ASSERT_EQ(p.f.type, PduType::kCapsuleResp);
  auto r = p.as<CapsuleRespHeader>();
  EXPECT_EQ(r.cqe.cid, cid);
  EXPECT_EQ(r.cqe.status, 0);
  EXPECT_EQ(r.cqe.dw0, 0x0C0302u);  // notice, ANA change, log page 0x0C
}

TEST_F(Target, AnaStateIsReportedAnnouncedAndEnforced) {
  TestHost a(port);
  uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
  std::vector<uint8_t> buf;
  ASSERT_EQ(a.admin(admin_op::kIdentify, 0, cns::kController, 0, &buf, 4096).status, 0);
  IdentifyController ic;
  std::memcpy(&ic, buf.data(), sizeof(ic));
  EXPECT_EQ(ic.cmic & kCmicAna, kCmicAna);
  EXPECT_EQ(ic.oaes & kOaesAnaChange, kOaesAnaChange);
  EXPECT_EQ(ic.anagrpmax, 1u);
  EXPECT_EQ(ic.nanagrpid, 1u);
  EXPECT_EQ(ic.mnan, ic.nn);
  EXPECT_NE(ic.anacap & anacap::kInaccessible, 0);
  buf.clear();
  ASSERT_EQ(a.admin(admin_op::kIdentify, 1, cns::kNamespace, 0, &buf, 4096).status, 0);
  IdentifyNamespace in;
  std::memcpy(&in, buf.data(), sizeof(in));
  EXPECT_EQ(in.anagrpid, 1u);

  AnaLog l0 = read_ana_log(a);
  EXPECT_EQ(l0.state, static_cast<uint8_t>(AnaState::kOptimized));
  EXPECT_EQ(l0.nsids, std::vector<uint32_t>{1});
  EXPECT_TRUE(read_ana_log(a, true).nsids.empty());  // RGO: groups only

  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kAsyncEventConfig, kOaesAnaChange | kOaesNsAttr).status, 0);
  TestHost io(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
  std::vector<uint8_t> got;
  ASSERT_EQ(io.rw(io_op::kRead, 0, 8, 512, &got).status, 0);

  // Inaccessible: the held AER carries the notice, the log says so with a new change
  // count, and I/O gets the path error (SCT 3, no DNR) a multipath host retries elsewhere.
  a.send_aer(0x7200);
  aer_held(a);
  ASSERT_TRUE(tgt->set_ana_state(kNqn, AnaState::kInaccessible));
  expect_ana_notice(a, 0x7200);
  AnaLog l1 = read_ana_log(a);
  EXPECT_EQ(l1.state, static_cast<uint8_t>(AnaState::kInaccessible));
  EXPECT_GT(l1.chgcnt, l0.chgcnt);
  Cqe r = io.rw(io_op::kRead, 0, 8, 512, &got);
  EXPECT_EQ(status_type(r.status), Sct::kPath);
  EXPECT_EQ(status_code(r.status), sc::kAnaInaccessible);
  EXPECT_EQ(r.status & 0x8000, 0);
  std::vector<uint8_t> w(4096, 0x42);
  Sqe wr{};
  wr.opcode = io_op::kWrite;
  wr.nsid = 1;
  wr.cdw12 = 7;
  EXPECT_EQ(status_code(io.cmd(wr, w).status), sc::kAnaInaccessible);
  auto subs = tgt->list_subsystems();
  auto it = std::find_if(subs.begin(), subs.end(), [](const SubsystemInfo& i) { return i.nqn == kNqn; });
  ASSERT_NE(it, subs.end());
  EXPECT_EQ(it->ana_state, AnaState::kInaccessible);
  // Setting the same state again is no change.
  ASSERT_TRUE(tgt->set_ana_state(kNqn, AnaState::kInaccessible));
  EXPECT_EQ(read_ana_log(a).chgcnt, l1.chgcnt);

  // Back to optimized while no AER is outstanding: the notice is kept for the next one.
  ASSERT_TRUE(tgt->set_ana_state(kNqn, AnaState::kOptimized));
  a.send_aer(0x7201);
  expect_ana_notice(a, 0x7201);
  EXPECT_EQ(read_ana_log(a).state, static_cast<uint8_t>(AnaState::kOptimized));
  EXPECT_EQ(io.cmd(wr, w).status, 0);

  // Transition.
  ASSERT_TRUE(tgt->set_ana_state(kNqn, AnaState::kChange));
  EXPECT_EQ(status_code(io.rw(io_op::kRead, 0, 8, 512, &got).status), sc::kAnaTransition);
  ASSERT_TRUE(tgt->set_ana_state(kNqn, AnaState::kOptimized));

  // Bad arguments change nothing.
  EXPECT_EQ(tgt->set_ana_state(kNqn, static_cast<AnaState>(7)).code(), Errc::kInvalidArgument);
  EXPECT_EQ(tgt->set_ana_state("nqn.2026-11.io.castor:none", AnaState::kInaccessible).code(), Errc::kNotFound);
  EXPECT_EQ(read_ana_log(a).state, static_cast<uint8_t>(AnaState::kOptimized));
}

// A bdev that answers kPathUnavailable (a fenced nexus) takes its subsystem's path away for
// good: that I/O and every later one get the persistent-loss path error, and the ANA log
// and a notice say so.
TEST_F(Target, PathUnavailableFromTheBdevIsAPersistentLossOfThePath) {
  ASSERT_TRUE(reg->create("malloc:///m1?size_mb=4&blk_size=512"));
  ASSERT_TRUE(reg->create("fault:///f1?base=m1"));
  static constexpr const char* kFenced = "nqn.2026-11.io.castor:fenced";
  ASSERT_TRUE(tgt->add_subsystem(kFenced, {}));
  ASSERT_TRUE(tgt->add_namespace(kFenced, "f1"));
  TestHost a(port);
  uint16_t cntlid = bring_up_admin(a, kFenced, kHost);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kAsyncEventConfig, kOaesAnaChange).status, 0);
  TestHost io(port);
  ASSERT_EQ(io.connect(kFenced, kHost, 1, cntlid).status, 0);
  a.send_aer(0x7300);
  aer_held(a);
  bdev::FaultRuleSpec fence;
  fence.mode = bdev::FaultMode::kError;
  fence.error_status = bdev::IoStatus::kPathUnavailable;
  fence.ops_mask = bdev::io_type_bit(bdev::IoType::kWrite);
  ASSERT_TRUE(bdev::FaultControl::inject(*reg->find("f1"), fence));
  std::vector<uint8_t> w(4096, 0x42), got;
  Sqe wr{};
  wr.opcode = io_op::kWrite;
  wr.nsid = 1;
  wr.cdw12 = 7;
  Cqe r = io.cmd(wr, w);
  EXPECT_EQ(status_type(r.status), Sct::kPath);
  EXPECT_EQ(status_code(r.status), sc::kAnaPersistentLoss);
  expect_ana_notice(a, 0x7300);
  EXPECT_EQ(read_ana_log(a).state, static_cast<uint8_t>(AnaState::kPersistentLoss));
  // Reads (which the bdev would serve) are refused too: the path is gone.
  EXPECT_EQ(status_code(io.rw(io_op::kRead, 0, 8, 512, &got).status), sc::kAnaPersistentLoss);
  // The other subsystem is untouched.
  TestHost b(port);
  bring_up_admin(b, kNqn, kHost);
  EXPECT_EQ(read_ana_log(b).state, static_cast<uint8_t>(AnaState::kOptimized));
}

TEST_F(Target, AddedNamespaceIsAnnouncedThroughAnAsyncEvent) {
  ASSERT_TRUE(reg->create("malloc:///m1?size_mb=4&blk_size=512"));
  TestHost a(port);
  uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kAsyncEventConfig, 1u << 8).status, 0);
  TestHost io(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
  a.send_aer(0x7000);
  aer_held(a);
  auto nsid = tgt->add_namespace(kNqn, "m1");
  ASSERT_TRUE(nsid);
  EXPECT_EQ(*nsid, 2u);
  expect_ns_changed(a, 0x7000, 2);
  std::vector<uint8_t> buf;
  ASSERT_EQ(a.admin(admin_op::kIdentify, 0, cns::kActiveNsList, 0, &buf, 4096).status, 0);
  EXPECT_EQ(buf[0], 1);
  EXPECT_EQ(buf[4], 2);
  buf.clear();
  ASSERT_EQ(a.admin(admin_op::kIdentify, 2, cns::kNamespace, 0, &buf, 4096).status, 0);
  IdentifyNamespace in;
  std::memcpy(&in, buf.data(), sizeof(in));
  EXPECT_EQ(in.nsze, 4u * 2048);
  // The I/O queue that was connected before reaches the new namespace.
  std::vector<uint8_t> w(4096, 0x3c), got;
  Sqe wr{};
  wr.opcode = io_op::kWrite;
  wr.nsid = 2;
  wr.cdw12 = 7;
  EXPECT_EQ(io.cmd(wr, w).status, 0);
  Sqe rd{};
  rd.opcode = io_op::kRead;
  rd.nsid = 2;
  rd.cdw12 = 7;
  rd.sgl1.length = 4096;
  EXPECT_EQ(io.cmd(rd, {}, &got).status, 0);
  EXPECT_EQ(got, w);
  // Read again: the list was cleared.
  buf.clear();
  ASSERT_EQ(a.admin(admin_op::kGetLogPage, 0, log_id::kChangedNs | (1023u << 16), 0, &buf, 4096).status, 0);
  uint32_t first = 1;
  std::memcpy(&first, buf.data(), 4);
  EXPECT_EQ(first, 0u);
}

// A namespace whose bdev grew (a pool replica, resized online): Identify Namespace
// reports the new size at once, and announce_resize() completes the outstanding Async
// Event Request with a namespace-attribute notice listing it; I/O past the old end works.
TEST_F(Target, GrownNamespaceIsIdentifiedWithItsNewSizeAndAnnounced) {
  pool::PoolManager pools(*reg);
  testing::make_small_pool(pools, 48, "r", 8 << 20);
  if (HasFatalFailure()) return;
  auto added = tgt->add_namespace(kNqn, "r", 2);
  ASSERT_TRUE(added) << added.status().to_string();
  ASSERT_EQ(*added, 2u);
  const uint32_t bs = reg->find("r")->block_size();
  const uint64_t old_blocks = (8u << 20) / bs, new_blocks = (16u << 20) / bs;

  TestHost a(port);
  uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kAsyncEventConfig, 1u << 8).status, 0);
  TestHost io(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
  auto identify = [&](uint64_t want) {
    std::vector<uint8_t> buf;
    ASSERT_EQ(a.admin(admin_op::kIdentify, 2, cns::kNamespace, 0, &buf, 4096).status, 0);
    IdentifyNamespace in;
    std::memcpy(&in, buf.data(), sizeof(in));
    EXPECT_EQ(in.nsze, want);
    EXPECT_EQ(in.ncap, want);
    EXPECT_EQ(in.nuse, want);
  };
  identify(old_blocks);
  a.send_aer(0x7100);
  aer_held(a);

  ASSERT_TRUE(pools.grow_replica("r", 16 << 20));
  identify(new_blocks);  // read live, before any notice
  EXPECT_EQ(tgt->announce_resize("r"), 1u);
  EXPECT_EQ(tgt->announce_resize("m0-nothing"), 0u);
  expect_ns_changed(a, 0x7100, 2);

  // The last block of the grown namespace is writable; one past it is out of range.
  std::vector<uint8_t> w(bs, 0x5e), got;
  Sqe wr{};
  wr.opcode = io_op::kWrite;
  wr.nsid = 2;
  wr.cdw10 = static_cast<uint32_t>(new_blocks - 1);
  EXPECT_EQ(io.cmd(wr, w).status, 0);
  Sqe rd{};
  rd.opcode = io_op::kRead;
  rd.nsid = 2;
  rd.cdw10 = static_cast<uint32_t>(new_blocks - 1);
  rd.sgl1.length = bs;
  EXPECT_EQ(io.cmd(rd, {}, &got).status, 0);
  EXPECT_EQ(got, w);
  wr.cdw10 = static_cast<uint32_t>(new_blocks);
  EXPECT_EQ(sc_of(io.cmd(wr, w)), sc::kLbaOutOfRange);
  ASSERT_TRUE(tgt->remove_namespace(kNqn, 2));
}

TEST_F(Target, RemovedNamespaceIsAnnouncedAndReleasedOnceItsIoEnds) {
  ASSERT_TRUE(reg->create("malloc:///m1?size_mb=4&blk_size=512"));
  ASSERT_TRUE(reg->create("fault:///f1?base=m1"));
  auto nsid = tgt->add_namespace(kNqn, "f1");
  ASSERT_TRUE(nsid);
  ASSERT_EQ(*nsid, 2u);
  TestHost a(port);
  uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, (1u << 16) | 1u).status, 0);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kAsyncEventConfig, 1u << 8).status, 0);
  TestHost io(port), stuck(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
  ASSERT_EQ(stuck.connect(kNqn, kHost, 2, cntlid).status, 0);

  // A write to namespace 2 that hangs in its bdev.
  bdev::FaultRuleSpec hang;
  hang.mode = bdev::FaultMode::kHang;
  hang.ops_mask = bdev::io_type_bit(bdev::IoType::kWrite);
  auto rule = bdev::FaultControl::inject(*reg->find("f1"), hang);
  ASSERT_TRUE(rule);
  std::vector<uint8_t> w(4096, 0x5a);
  auto hung = std::async(std::launch::async, [&] {
    Sqe wr{};
    wr.opcode = io_op::kWrite;
    wr.nsid = 2;
    wr.cdw12 = 7;
    return stuck.cmd(wr, w);
  });
  for (int i = 0; i < 500; ++i) {
    auto l = bdev::FaultControl::list(*reg->find("f1"));
    if (!l.empty() && l[0].parked == 1) break;
    usleep(2000);
  }
  ASSERT_EQ(bdev::FaultControl::list(*reg->find("f1"))[0].parked, 1u);

  a.send_aer(0x7001);
  aer_held(a);
  auto removed = std::async(std::launch::async, [&] { return tgt->remove_namespace(kNqn, 2, 10000); });

  expect_ns_changed(a, 0x7001, 2);
  std::vector<uint8_t> buf;
  ASSERT_EQ(a.admin(admin_op::kIdentify, 0, cns::kActiveNsList, 0, &buf, 4096).status, 0);
  EXPECT_EQ(buf[0], 1);
  EXPECT_EQ(buf[4], 0) << "namespace 2 is no longer active";
  // New commands to it fail; namespace 1 carries on.
  std::vector<uint8_t> got;
  Sqe rd{};
  rd.opcode = io_op::kRead;
  rd.nsid = 2;
  rd.sgl1.length = 512;
  EXPECT_EQ(sc_of(io.cmd(rd, {}, &got)), sc::kInvalidNamespace);
  rd.nsid = 1;
  EXPECT_EQ(io.cmd(rd, {}, &got).status, 0);

  // The removal waits for the write that was already running, and keeps the bdev claimed.
  EXPECT_EQ(removed.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  EXPECT_FALSE(reg->destroy("f1"));
  ASSERT_TRUE(bdev::FaultControl::clear(*reg->find("f1"), *rule));
  EXPECT_EQ(hung.get().status, 0) << "the write in flight completes normally";
  auto st = removed.get();
  EXPECT_TRUE(st) << st.to_string();
  EXPECT_TRUE(reg->destroy("f1")) << "released";
  EXPECT_TRUE(tgt->remove_namespace(kNqn, 2).code() == Errc::kNotFound);
}

TEST_F(Target, WriteWaitingForDataWhenTheHostGoesAwayIsReleased) {
  {
    TestHost a(port);
    uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
    ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
    TestHost io(port);
    ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
    write_awaiting_data(io, 9);
  }  // both connections close with the write still waiting for its data
  // Nothing holds namespace 1 any more (and, under ASan, the queue pair is not leaked).
  auto st = tgt->remove_namespace(kNqn, 1, 2000);
  EXPECT_TRUE(st) << st.to_string();
  EXPECT_TRUE(reg->destroy("m0"));
}

// A host that sends commands past its queue without reading the refusals is held back
// (the queue pair stops reading it) instead of making the target queue a response for
// each: with a write holding CID 9 (it waits for its data), 300000 more commands with
// CID 9 each get Command ID Conflict, far more than the socket buffers take. Every
// refusal then arrives once the host reads, and the queue pair still works.
TEST_F(Target, HostNotReadingItsRefusalsIsHeldBack) {
  TestHost a(port);
  uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
  TestHost io(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
  write_awaiting_data(io, 9);

  uint8_t h[80];
  Sqe flush{};
  flush.opcode = io_op::kFlush;
  flush.nsid = 1;
  flush.cid = 9;
  flush.flags = 0x40;
  flush.sgl1.type = kSglTransportDataBlock;
  const size_t n = build_capsule_cmd(h, flush, 0, false, false);
  constexpr int kCommands = 300000;
  std::vector<uint8_t> flood;
  flood.reserve(n * kCommands);
  for (int i = 0; i < kCommands; ++i) flood.insert(flood.end(), h, h + n);
  std::thread writer([&] { io.send_raw(flood.data(), flood.size()); });
  for (int i = 0; i < 250 && tgt->receive_holds() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(tgt->receive_holds(), 1u);
  for (int i = 0; i < kCommands; ++i) {
    Pdu p = io.recv();
    ASSERT_EQ(p.f.type, PduType::kCapsuleResp) << "response " << i;
    Cqe c = p.as<CapsuleRespHeader>().cqe;
    ASSERT_EQ(c.cid, 9);
    ASSERT_EQ(sc_of(c), sc::kCidConflict);
  }
  writer.join();
  // The queue pair goes on.
  std::vector<uint8_t> got;
  EXPECT_EQ(io.rw(io_op::kRead, 0, 8, 512, &got).status, 0);
}

// The target-wide buffer budget: with 32 KiB per reactor, two 16 KiB writes awaiting
// their data hold it all, and a third write waits (no R2T) while the queue pair keeps
// reading; the first write's data completes it, which frees enough for the third to get
// its R2T. Every write lands.
TEST_F(Target, WritesBeyondTheBufferBudgetWaitWhileTheQueueKeepsReading) {
  TargetOptions o;
  o.buffer_budget_bytes = 64 * 1024;  // two reactors: 32 KiB each
  NvmfTarget small(*group, *reg, o);
  uint16_t p = 0;
  ASSERT_TRUE(small.listen("127.0.0.1", 0, &p));
  ASSERT_TRUE(tgt->remove_subsystem(kNqn, 2000));
  ASSERT_TRUE(small.add_subsystem(kNqn, {}));
  ASSERT_TRUE(small.add_namespace(kNqn, "m0"));
  TestHost a(p);
  uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, 0).status, 0);
  TestHost io(p);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
  auto send_write = [&](uint16_t cid, uint64_t slba) {
    Sqe wr{};
    wr.opcode = io_op::kWrite;
    wr.nsid = 1;
    wr.cid = cid;
    wr.flags = 0x40;
    wr.cdw10 = static_cast<uint32_t>(slba);
    wr.cdw12 = 31;  // 32 blocks of 512 bytes
    wr.sgl1.type = kSglTransportDataBlock;
    wr.sgl1.length = 16384;
    uint8_t h[80];
    io.send_raw(h, build_capsule_cmd(h, wr, 0, false, false));
  };
  auto data = [](uint16_t cid) { return std::vector<uint8_t>(16384, static_cast<uint8_t>(cid)); };
  auto send_data = [&](const R2THeader& r) {
    auto d = data(r.cccid);
    uint8_t dh[32];
    size_t hn = build_data_header(dh, PduType::kH2CData, r.cccid, r.ttag, 0, 16384, true, false, false, false);
    std::vector<uint8_t> pd(dh, dh + hn);
    pd.insert(pd.end(), d.begin(), d.end());
    io.send_raw(pd.data(), pd.size());
  };
  send_write(101, 0);
  send_write(102, 32);
  Pdu r1 = io.recv();
  Pdu r2 = io.recv();
  ASSERT_EQ(r1.f.type, PduType::kR2T);
  ASSERT_EQ(r2.f.type, PduType::kR2T);
  send_write(103, 64);
  for (int i = 0; i < 250 && small.budget_holds() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(small.budget_holds(), 1u);
  // The queue still reads: the first write's data arrives and completes it, and the
  // third write then gets its R2T.
  send_data(r1.as<R2THeader>());
  std::vector<uint16_t> done;
  std::optional<R2THeader> r3;
  while (done.size() < 1 || !r3) {
    Pdu p3 = io.recv();
    if (p3.f.type == PduType::kCapsuleResp) {
      ASSERT_EQ(p3.as<CapsuleRespHeader>().cqe.status, 0);
      done.push_back(p3.as<CapsuleRespHeader>().cqe.cid);
    } else {
      ASSERT_EQ(p3.f.type, PduType::kR2T);
      r3 = p3.as<R2THeader>();
    }
  }
  EXPECT_EQ(done[0], 101);
  EXPECT_EQ(r3->cccid, 103);
  send_data(r2.as<R2THeader>());
  send_data(*r3);
  for (int i = 0; i < 2; ++i) {
    Pdu p4 = io.recv();
    ASSERT_EQ(p4.f.type, PduType::kCapsuleResp);
    EXPECT_EQ(p4.as<CapsuleRespHeader>().cqe.status, 0);
  }
  for (uint16_t cid : {101, 102, 103}) {
    std::vector<uint8_t> got;
    ASSERT_EQ(io.rw(io_op::kRead, (cid - 101) * 32, 32, 512, &got).status, 0);
    EXPECT_EQ(got, data(cid)) << cid;
  }
}

TEST_F(Target, DiscoveryAndAllowList) {
  TestHost d(port);
  ASSERT_EQ(d.connect(kDiscoveryNqn, kHost, 0, 0xffff).status, 0);
  std::vector<uint8_t> log;
  ASSERT_EQ(d.admin(admin_op::kGetLogPage, 0, log_id::kDiscovery | (1023u << 16), 0, &log, 4096).status, 0);
  DiscoveryLogHeader h;
  std::memcpy(&h, log.data(), sizeof(h));
  EXPECT_EQ(h.numrec, 3u);  // two subsystems and the discovery subsystem
  DiscoveryLogEntry e;
  std::memcpy(&e, log.data() + 1024, sizeof(e));
  EXPECT_EQ(e.trtype, 3);
  EXPECT_EQ(std::string(e.trsvcid, std::to_string(port).size()), std::to_string(port));

  TestHost refused(port);
  Cqe c = refused.connect(kLocked, kHost, 0, 0xffff);
  EXPECT_EQ(status_type(c.status), Sct::kCommandSpecific);
  EXPECT_EQ(sc_of(c), sc::kConnectInvalidHost);
  TestHost allowed(port);
  EXPECT_EQ(allowed.connect(kLocked, "nqn.2014-08.org.nvmexpress:uuid:allowed", 0, 0xffff).status, 0);
  TestHost unknown(port);
  EXPECT_EQ(sc_of(unknown.connect("nqn.2026-11.io.castor:nope", kHost, 0, 0xffff)), sc::kConnectInvalidParameters);
}

TEST_F(Target, MalformedPduGetsTermReqAndOnlyThatConnectionCloses) {
  TestHost good(port);
  bring_up_admin(good, kNqn, kHost);
  TestHost bad(port);
  CommonHeader ch{static_cast<uint8_t>(PduType::kCapsuleCmd), 0, 64, 0, 64};  // wrong hlen
  std::vector<uint8_t> b(64, 0);
  std::memcpy(b.data(), &ch, sizeof(ch));
  bad.send_raw(b.data(), b.size());
  Pdu t = bad.recv();
  ASSERT_EQ(t.f.type, PduType::kC2HTermReq);
  EXPECT_EQ(t.as<TermReq>().fes, static_cast<uint16_t>(TermFes::kInvalidHeaderField));
  EXPECT_EQ(t.as<TermReq>().fei, 2u);
  EXPECT_TRUE(bad.closed());
  EXPECT_EQ(good.admin(admin_op::kKeepAlive, 0, 0, 0).status, 0);
}

TEST_F(Target, KeepAliveTimeoutTearsDownTheController) {
  TestHost a(port);
  Cqe c = a.connect(kNqn, kHost, 0, 0xffff, 400);
  ASSERT_EQ(c.status, 0);
  TestHost io(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, static_cast<uint16_t>(c.dw0)).status, 0);
  // Silence: within ~2 KATO both queues are closed and the controller is gone.
  EXPECT_TRUE(a.closed());
  EXPECT_TRUE(io.closed());
  // The controller is dropped when its admin queue finishes closing, just after the
  // host sees the socket close.
  for (int i = 0; i < 200 && !tgt->list_controllers().empty(); ++i) usleep(10000);
  EXPECT_TRUE(tgt->list_controllers().empty());
}

// A removal that cannot release its bdev (a write stuck on a hung device) fails with Busy
// naming the bdev and leaves the export as it was: the namespace is back in the
// subsystem, the subsystem still takes connects. Once the hang clears, removing it again
// succeeds and the bdev is free as soon as that returns.
TEST_F(Target, RemovalBlockedByAHungIoIsBusyAndLeavesTheExportAsItWas) {
  auto hang_writes = [&](const char* bdev) {
    bdev::FaultRuleSpec hang;
    hang.mode = bdev::FaultMode::kHang;
    hang.ops_mask = bdev::io_type_bit(bdev::IoType::kWrite);
    auto rule = bdev::FaultControl::inject(*reg->find(bdev), hang);
    EXPECT_TRUE(rule);
    return rule ? *rule : 0;
  };
  auto parked = [&](const char* bdev) {
    for (int i = 0; i < 1000; ++i) {
      auto l = bdev::FaultControl::list(*reg->find(bdev));
      if (!l.empty() && l[0].parked == 1) return true;
      usleep(2000);
    }
    return false;
  };
  auto active_nsids = [](TestHost& a) {
    std::vector<uint8_t> buf;
    EXPECT_EQ(a.admin(admin_op::kIdentify, 0, cns::kActiveNsList, 0, &buf, 4096).status, 0);
    std::vector<uint32_t> out;
    for (size_t i = 0; i + 4 <= buf.size(); i += 4) {
      uint32_t id;
      std::memcpy(&id, buf.data() + i, 4);
      if (id == 0) break;
      out.push_back(id);
    }
    return out;
  };
  std::vector<uint8_t> w(4096, 0x5a);
  auto write_to = [&](TestHost& h, uint32_t nsid) {
    Sqe wr{};
    wr.opcode = io_op::kWrite;
    wr.nsid = nsid;
    wr.cdw12 = 7;
    return h.cmd(wr, w);
  };

  ASSERT_TRUE(reg->create("malloc:///m1?size_mb=4&blk_size=512"));
  ASSERT_TRUE(reg->create("fault:///f1?base=m1"));
  ASSERT_EQ(*tgt->add_namespace(kNqn, "f1"), 2u);
  TestHost a(port);
  uint16_t cntlid = bring_up_admin(a, kNqn, kHost);
  ASSERT_EQ(a.admin(admin_op::kSetFeatures, 0, feature::kNumberOfQueues, (1u << 16) | 1u).status, 0);
  TestHost io(port), stuck(port);
  ASSERT_EQ(io.connect(kNqn, kHost, 1, cntlid).status, 0);
  ASSERT_EQ(stuck.connect(kNqn, kHost, 2, cntlid).status, 0);

  // Namespace removal.
  uint64_t rule = hang_writes("f1");
  auto hung = std::async(std::launch::async, [&] { return write_to(stuck, 2); });
  ASSERT_TRUE(parked("f1"));
  Status st = tgt->remove_namespace(kNqn, 2, 300);
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  EXPECT_NE(st.message().find("'f1'"), std::string::npos) << st.to_string();
  EXPECT_EQ(active_nsids(a), (std::vector<uint32_t>{1, 2})) << "namespace 2 is back";
  std::vector<uint8_t> got;
  Sqe rd{};
  rd.opcode = io_op::kRead;
  rd.nsid = 2;
  rd.sgl1.length = 512;
  EXPECT_EQ(io.cmd(rd, {}, &got).status, 0) << "and serves I/O";
  EXPECT_FALSE(reg->destroy("f1")) << "still claimed by the subsystem";
  ASSERT_TRUE(bdev::FaultControl::clear(*reg->find("f1"), rule));
  EXPECT_EQ(hung.get().status, 0) << "the write in flight completes normally";
  st = tgt->remove_namespace(kNqn, 2, 5000);
  EXPECT_TRUE(st) << st.to_string();
  EXPECT_TRUE(reg->destroy("f1")) << "released when remove_namespace returned";
  EXPECT_EQ(active_nsids(a), (std::vector<uint32_t>{1}));

  // Subsystem removal (forced: hosts are connected).
  ASSERT_TRUE(reg->create("fault:///f2?base=m1"));
  ASSERT_EQ(*tgt->add_namespace(kNqn, "f2"), 2u);
  rule = hang_writes("f2");
  auto hung2 = std::async(std::launch::async, [&] { return write_to(stuck, 2); });
  ASSERT_TRUE(parked("f2"));
  st = tgt->remove_subsystem(kNqn, true, 300);
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  EXPECT_NE(st.message().find("'f2'"), std::string::npos) << st.to_string();
  bool listed = false;
  for (const auto& s : tgt->list_subsystems()) listed |= s.nqn == kNqn && s.namespaces.size() == 2;
  EXPECT_TRUE(listed) << "the subsystem stays, with both namespaces";
  EXPECT_FALSE(reg->destroy("f2"));
  {
    TestHost again(port);
    bring_up_admin(again, kNqn, kHost);  // connects again
    EXPECT_EQ(active_nsids(again), (std::vector<uint32_t>{1, 2}));
  }
  ASSERT_TRUE(bdev::FaultControl::clear(*reg->find("f2"), rule));
  (void)hung2.get();  // its queue pair was closed: the response may never come
  st = tgt->remove_subsystem(kNqn, true, 5000);
  EXPECT_TRUE(st) << st.to_string();
  EXPECT_TRUE(reg->destroy("f2")) << "released when remove_subsystem returned";
  EXPECT_TRUE(reg->destroy("m0"));
  EXPECT_EQ(tgt->remove_subsystem(kNqn).code(), Errc::kNotFound);
}

}  // namespace
}  // namespace castor::nvmf
