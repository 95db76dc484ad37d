// The iSCSI target over real TCP, driven by a small initiator written for the test, for
// the paths libiscsi's tools never take: data digests (libiscsi never offers them),
// InitialR2T=Yes with small bursts, Data-In split at the initiator's segment length and
// burst boundaries, many large reads in flight at once, digest errors, and the CmdSN
// window.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "../bdev/harness.h"
#include "bdev/modules/fault.h"
#include "initiator.h"
#include "common/crc32c.h"
#include "iscsi/protocol.h"
#include "iscsi/target.h"
#include "iscsi/text.h"
#include "pool/pool.h"
#include "../pool/small_pool.h"

namespace castor::iscsi {
namespace {

using namespace test;  // Pdu, Initiator, cdb16, wait_for, kIqn (initiator.h)

class IscsiTargetTest : public TargetFixture {
 protected:

  // Reads the next PDU of `ini`, skipping nothing; fails the test on timeout.
  Pdu next(Initiator& ini) {
    auto p = ini.recv();
    EXPECT_TRUE(p.has_value()) << "no PDU from the target";
    return p.value_or(Pdu{});
  }
  // Sends TEST UNIT READY until the power-on unit attention is gone.
  void clear_ua(Initiator& ini) {
    for (int i = 0; i < 3; ++i) {
      uint8_t tur[16] = {};
      ini.send(ini.command(tur, 16, kFinal, 0), "");
      Pdu r = next(ini);
      if (r.h.b[off::kStatus] == 0) return;
    }
    FAIL() << "unit attention did not clear";
  }
};

TEST_F(IscsiTargetTest, DigestsR2tAndDataInSplitAtBurstBoundaries) {
  Initiator ini(port);
  ini.hd = ini.dd = true;
  ASSERT_EQ(ini.login(text_pairs({{"HeaderDigest", "CRC32C"}, {"DataDigest", "CRC32C"}, {"InitialR2T", "Yes"},
                          {"ImmediateData", "No"}, {"MaxBurstLength", "16384"}, {"FirstBurstLength", "8192"},
                          {"MaxRecvDataSegmentLength", "4096"}})),
            0);
  clear_ua(ini);

  // WRITE(16) of 64 KiB: everything must be solicited by R2Ts of at most 16 KiB.
  std::string pattern(65536, '\0');
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 31 + (i >> 9));
  uint8_t c[16];
  cdb16(c, 0x8a, 100, 128);
  Bhs cmd = ini.command(c, 16, kFinal | cmdflag::kWrite, 65536);
  ini.send(cmd, "");
  uint32_t sent = 0, r2ts = 0;
  while (sent < pattern.size()) {
    Pdu r2t = next(ini);
    ASSERT_EQ(r2t.h.opcode(), op::kR2t);
    EXPECT_EQ(r2t.h.u32(off::kDataSn), r2ts++);  // R2TSN
    const uint32_t offset = r2t.h.u32(off::kBufferOffset), len = r2t.h.u32(off::kDesiredLength);
    EXPECT_EQ(offset, sent);
    EXPECT_LE(len, 16384u);
    for (uint32_t o = 0, sn = 0; o < len; o += 4096, ++sn) {
      ini.send(data_out_bhs(cmd.itt(), r2t.h.u32(off::kTtt), sn, offset + o, o + 4096 >= len),
               pattern.substr(offset + o, std::min<uint32_t>(4096, len - o)));
    }
    sent += len;
  }
  Pdu resp = next(ini);
  ASSERT_EQ(resp.h.opcode(), op::kScsiResp);
  EXPECT_EQ(resp.h.b[off::kStatus], 0);
  EXPECT_EQ(resp.h.u32(off::kExpDataSn), r2ts);
  EXPECT_EQ(r2ts, 4u);

  // READ(16) of the same: Data-In PDUs of at most 4 KiB, F at every 16 KiB, S on the last.
  cdb16(c, 0x88, 100, 128);
  ini.send(ini.command(c, 16, kFinal | cmdflag::kRead, 65536), "");
  std::string got;
  for (uint32_t sn = 0;; ++sn) {
    Pdu d = next(ini);
    ASSERT_EQ(d.h.opcode(), op::kDataIn);
    EXPECT_EQ(d.h.u32(off::kDataSn), sn);
    EXPECT_EQ(d.h.u32(off::kBufferOffset), got.size());
    EXPECT_LE(d.data.size(), 4096u);
    got += d.data;
    EXPECT_EQ(static_cast<bool>(d.h.flags() & kFinal), got.size() % 16384 == 0);
    if (d.h.flags() & respflag::kStatus) {
      EXPECT_EQ(d.h.b[off::kStatus], 0);
      break;
    }
  }
  EXPECT_EQ(got, pattern);
}

TEST_F(IscsiTargetTest, BadDataDigestIsRejectedAndClosesTheConnection) {
  Initiator ini(port);
  ini.hd = ini.dd = true;
  ASSERT_EQ(ini.login(text_pairs({{"HeaderDigest", "CRC32C"}, {"DataDigest", "CRC32C"}, {"ImmediateData", "Yes"}})), 0);
  clear_ua(ini);
  uint8_t c[16];
  cdb16(c, 0x8a, 0, 1);
  ini.send(ini.command(c, 16, kFinal | cmdflag::kWrite, 512), std::string(512, 'x'), /*corrupt*/ true);
  Pdu rej = next(ini);
  EXPECT_EQ(rej.h.opcode(), op::kReject);
  EXPECT_EQ(rej.h.b[off::kResponse], reject::kDataDigest);
  EXPECT_TRUE(ini.wait_closed(2000));  // a command's lost data leaves a CmdSN gap: session recovery
  EXPECT_GE(target->stats().digest_errors, 1u);
  // Nothing was written.
  Initiator again(port);
  ASSERT_EQ(again.login(""), 0);
  clear_ua(again);
  cdb16(c, 0x88, 0, 1);
  again.send(again.command(c, 16, kFinal | cmdflag::kRead, 512), "");
  Pdu d = next(again);
  EXPECT_EQ(d.data, std::string(512, '\0'));
}

// A lost Data-Out (RFC 7143 §7.8, §7.9) ends its command with CHECK CONDITION, ABORTED
// COMMAND, PROTOCOL SERVICE CRC ERROR once the burst is over; nothing of it is written and
// the connection goes on. libiscsi's iSCSIDataSnInvalid checks the DataSN half of this.
class LostDataOutTest : public IscsiTargetTest {
 protected:
  // WRITE(16) of 4 blocks, all solicited; returns the R2T.
  Pdu start_write(Initiator& ini, Bhs* cmd) {
    uint8_t c[16];
    cdb16(c, 0x8a, 8, 4);
    *cmd = ini.command(c, 16, kFinal | cmdflag::kWrite, 2048);
    ini.send(*cmd, "");
    Pdu r2t = next(ini);
    EXPECT_EQ(r2t.h.opcode(), op::kR2t);
    EXPECT_EQ(r2t.h.u32(off::kDesiredLength), 2048u);
    return r2t;
  }
  void data_out(Initiator& ini, const Bhs& cmd, const Pdu& r2t, uint32_t data_sn, uint32_t offset,
                bool final, bool corrupt = false) {
    ini.send(data_out_bhs(cmd.itt(), r2t.h.u32(off::kTtt), data_sn, offset, final), std::string(1024, 'w'),
             corrupt);
  }
  void expect_crc_error(const Pdu& r) {
    ASSERT_EQ(r.h.opcode(), op::kScsiResp);
    EXPECT_EQ(r.h.b[off::kResponse], 0);
    ASSERT_EQ(r.h.b[off::kStatus], static_cast<uint8_t>(scsi::Status::kCheckCondition));
    ASSERT_GE(r.data.size(), 2u + 14u);
    EXPECT_EQ(r.data[2 + 2] & 0x0F, scsi::sense_key::kAbortedCommand);
    EXPECT_EQ(static_cast<uint8_t>(r.data[2 + 12]), 0x47);
    EXPECT_EQ(static_cast<uint8_t>(r.data[2 + 13]), 0x05);
  }
  // The blocks of the failed write still read as zeros, on the same connection.
  void expect_unwritten(Initiator& ini) {
    uint8_t c[16];
    cdb16(c, 0x88, 8, 4);
    ini.send(ini.command(c, 16, kFinal | cmdflag::kRead, 2048), "");
    Pdu d = next(ini);
    ASSERT_EQ(d.h.opcode(), op::kDataIn);
    EXPECT_EQ(d.data, std::string(2048, '\0'));
  }
};

TEST_F(LostDataOutTest, DataSnOutOfOrderFailsTheCommandAfterTheBurst) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(text_pairs({{"InitialR2T", "Yes"}, {"ImmediateData", "No"}})), 0);
  clear_ua(ini);
  Bhs cmd;
  Pdu r2t = start_write(ini, &cmd);
  data_out(ini, cmd, r2t, 1, 0, false);  // DataSN 1 first: DataSN 0 was "lost"
  EXPECT_FALSE(ini.recv(200).has_value()) << "the target must wait for the end of the burst";
  data_out(ini, cmd, r2t, 0, 1024, true);
  expect_crc_error(next(ini));
  expect_unwritten(ini);
  EXPECT_EQ(target->stats().lost_data_outs, 1u);
  EXPECT_EQ(target->stats().protocol_errors, 0u);
}

TEST_F(LostDataOutTest, BadDataDigestOnADataOutIsRejectedAndFailsOnlyItsCommand) {
  Initiator ini(port);
  ini.hd = ini.dd = true;
  ASSERT_EQ(ini.login(text_pairs({{"HeaderDigest", "CRC32C"}, {"DataDigest", "CRC32C"}, {"InitialR2T", "Yes"},
                          {"ImmediateData", "No"}})),
            0);
  clear_ua(ini);
  Bhs cmd;
  Pdu r2t = start_write(ini, &cmd);
  data_out(ini, cmd, r2t, 0, 0, false, /*corrupt*/ true);
  Pdu rej = next(ini);
  ASSERT_EQ(rej.h.opcode(), op::kReject);
  EXPECT_EQ(rej.h.b[off::kResponse], reject::kDataDigest);
  data_out(ini, cmd, r2t, 1, 1024, true);
  expect_crc_error(next(ini));
  expect_unwritten(ini);
  EXPECT_EQ(target->stats().digest_errors, 1u);
  EXPECT_EQ(target->stats().lost_data_outs, 1u);
}

// Dead initiators are found by NOP-In pings (TargetOptions::nop_in_interval_ms), here
// after 300 ms of silence, with 300 ms to answer.
class NopInPingTest : public IscsiTargetTest {
 protected:
  TargetOptions options() const override {
    TargetOptions o;
    o.nop_in_interval_ms = 300;
    o.nop_in_timeout_ms = 300;
    return o;
  }
  // Answers a ping as an initiator must: a NOP-Out with its TTT, ITT 0xffffffff.
  static void answer(Initiator& ini, const Pdu& ping) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kNopOut | kImmediateBit);
    b.set_flags(kFinal);
    b.set_itt(kReservedTag);
    b.set_u32(off::kTtt, ping.h.u32(off::kTtt));
    b.set_u32(off::kCmdSn, ini.sn());
    ini.send(b, "");
  }
};

TEST_F(NopInPingTest, BusyInitiatorIsNotPingedAndIdleOneAnswersAndStays) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(""), 0);
  clear_ua(ini);
  // Busy: a command every 30 ms for 600 ms; nothing but their responses comes back.
  for (int i = 0; i < 20; ++i) {
    uint8_t tur[16] = {};
    ini.send(ini.command(tur, 16, kFinal, 0), "");
    Pdu r = next(ini);
    ASSERT_EQ(r.h.opcode(), op::kScsiResp) << "a busy initiator was pinged";
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  EXPECT_EQ(target->stats().nop_in_pings, 0u);
  // Idle for 2 s, answering each ping as an initiator must.
  uint32_t pings = 0, stat_sn = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(2000);
  while (std::chrono::steady_clock::now() < end) {
    auto p = ini.recv(100);
    if (!p) continue;
    ASSERT_EQ(p->h.opcode(), op::kNopIn);
    EXPECT_EQ(p->h.itt(), kReservedTag);
    ASSERT_NE(p->h.u32(off::kTtt), kReservedTag);
    // A ping does not advance StatSN: every one carries the same.
    if (pings++ == 0) stat_sn = p->h.u32(off::kStatSn);
    EXPECT_EQ(p->h.u32(off::kStatSn), stat_sn);
    answer(ini, *p);
  }
  EXPECT_GE(pings, 2u);
  EXPECT_EQ(target->stats().nop_in_timeouts, 0u);
  // Still logged in: a command works (a ping sent just as the loop ended may come first).
  uint8_t tur[16] = {};
  ini.send(ini.command(tur, 16, kFinal, 0), "");
  Pdu r = next(ini);
  if (r.h.opcode() == op::kNopIn) {
    answer(ini, r);
    r = next(ini);
  }
  EXPECT_EQ(r.h.opcode(), op::kScsiResp);
  EXPECT_EQ(r.h.b[off::kStatus], 0);
}

TEST_F(NopInPingTest, InitiatorThatDoesNotAnswerIsClosedAndItsSessionEnds) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(""), 0);
  ASSERT_EQ(target->list_sessions().size(), 1u);
  int discarded = 0;
  EXPECT_TRUE(ini.wait_closed(3000, &discarded));  // 300 ms idle + 300 ms unanswered
  EXPECT_EQ(discarded, 1);                          // the one ping
  EXPECT_EQ(target->stats().nop_in_timeouts, 1u);
  EXPECT_TRUE(wait_for([&] { return target->list_sessions().empty(); }));
}

// A connection's commands may hold at most max_buffered_bytes of data buffers (here
// 8 KiB): writes waiting for their Data-Out hold theirs, and a command beyond the budget
// gets TASK SET FULL instead of a buffer; once a write completes, commands fit again.
class BufferBudgetTest : public IscsiTargetTest {
 protected:
  TargetOptions options() const override {
    TargetOptions o;
    o.max_buffered_bytes = 8192;
    return o;
  }
};

TEST_F(BufferBudgetTest, CommandBeyondTheBudgetGetsTaskSetFullAndLaterOnesFit) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(text_pairs({{"InitialR2T", "Yes"}, {"ImmediateData", "No"}})), 0);
  clear_ua(ini);
  auto write4k = [&](uint64_t lba) {
    uint8_t c[16];
    cdb16(c, 0x8a, lba, 8);
    Bhs cmd = ini.command(c, 16, kFinal | cmdflag::kWrite, 4096);
    ini.send(cmd, "");
    return cmd;
  };
  auto send_data = [&](const Bhs& cmd, const Pdu& r2t, char fill) {
    ini.send(data_out_bhs(cmd.itt(), r2t.h.u32(off::kTtt), 0, 0, true), std::string(4096, fill));
  };
  Bhs w1 = write4k(0);
  Pdu r1 = next(ini);
  ASSERT_EQ(r1.h.opcode(), op::kR2t);
  Bhs w2 = write4k(8);
  Pdu r2 = next(ini);
  ASSERT_EQ(r2.h.opcode(), op::kR2t);
  // 8 KiB held by two writes awaiting data: a third does not fit.
  write4k(16);
  Pdu full = next(ini);
  ASSERT_EQ(full.h.opcode(), op::kScsiResp);
  EXPECT_EQ(full.h.b[off::kStatus], static_cast<uint8_t>(scsi::Status::kTaskSetFull));
  EXPECT_EQ(target->stats().buffer_limit_hits, 1u);
  // The first write completes; then a new one fits.
  send_data(w1, r1, 'a');
  Pdu done = next(ini);
  ASSERT_EQ(done.h.opcode(), op::kScsiResp);
  EXPECT_EQ(done.h.b[off::kStatus], 0);
  Bhs w3 = write4k(16);
  Pdu r3 = next(ini);
  ASSERT_EQ(r3.h.opcode(), op::kR2t);
  send_data(w2, r2, 'b');
  send_data(w3, r3, 'c');
  for (int i = 0; i < 2; ++i) {
    Pdu r = next(ini);
    ASSERT_EQ(r.h.opcode(), op::kScsiResp);
    EXPECT_EQ(r.h.b[off::kStatus], 0);
  }
  // All three writes landed where they should.
  uint8_t c[16];
  cdb16(c, 0x88, 0, 24);
  ini.send(ini.command(c, 16, kFinal | cmdflag::kRead, 4096), "");  // EDTL: the first 8 blocks
  Pdu d = next(ini);
  ASSERT_EQ(d.h.opcode(), op::kDataIn);
  EXPECT_EQ(d.data, std::string(4096, 'a'));
  cdb16(c, 0x88, 8, 16);
  ini.send(ini.command(c, 16, kFinal | cmdflag::kRead, 8192), "");
  d = next(ini);
  ASSERT_EQ(d.h.opcode(), op::kDataIn);
  EXPECT_EQ(d.data, std::string(4096, 'b') + std::string(4096, 'c'));
  EXPECT_EQ(target->stats().buffer_limit_hits, 1u);
}

// An initiator that sends NOP-Outs without reading the NOP-Ins they ask for is held back
// (the target stops reading it) instead of making the target queue an echo for each:
// 4000 pings of 8 KiB, 32 MiB of echoes, far more than the socket buffers take. Every
// echo then arrives, in order, once the initiator reads.
TEST_F(IscsiTargetTest, InitiatorNotReadingItsNopInsIsHeldBack) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(""), 0);
  constexpr uint32_t kPings = 4000;
  const std::string payload(8192, 'p');
  std::thread writer([&] {
    for (uint32_t i = 0; i < kPings; ++i) {
      Bhs b;
      b.clear();
      b.set_opcode(op::kNopOut | kImmediateBit);
      b.set_flags(kFinal);
      b.set_itt(0x1000 + i);
      b.set_u32(off::kTtt, kReservedTag);
      b.set_u32(off::kCmdSn, ini.sn());
      ini.send(b, payload);
    }
  });
  EXPECT_TRUE(wait_for([&] { return target->stats().receive_holds >= 1; }));
  for (uint32_t i = 0; i < kPings; ++i) {
    auto p = ini.recv();
    ASSERT_TRUE(p.has_value()) << "echo " << i;
    ASSERT_EQ(p->h.opcode(), op::kNopIn);
    ASSERT_EQ(p->h.itt(), 0x1000 + i);
    ASSERT_EQ(p->data, payload);
  }
  writer.join();
}

// The target-wide budget (buffer_budget_bytes, here 8 KiB per reactor) bounds what the
// sessions of one reactor hold together, though each is far below its own limit: while
// one session's two writes await their data, another session's write on the same reactor
// gets TASK SET FULL; once a write completes it fits.
class TargetBudgetTest : public IscsiTargetTest {
 protected:
  TargetOptions options() const override {
    TargetOptions o;
    o.buffer_budget_bytes = 8192 * env.group.size();
    return o;
  }
};

TEST_F(TargetBudgetTest, SessionsOfOneReactorShareTheBudget) {
  // Sessions until two share a reactor (connections are spread over the reactors).
  std::vector<std::unique_ptr<Initiator>> inis;
  std::map<uint32_t, Initiator*> on_reactor;
  Initiator* holder = nullptr;
  Initiator* other = nullptr;
  for (int i = 0; i <= static_cast<int>(env.group.size()) && !other; ++i) {
    auto ini = std::make_unique<Initiator>(port);
    ini->initiator_name = std::string(kInitiatorName) + "-" + std::to_string(i);
    ASSERT_EQ(ini->login(text_pairs({{"InitialR2T", "Yes"}, {"ImmediateData", "No"}})), 0);
    clear_ua(*ini);
    for (const auto& si : target->list_sessions()) {
      if (si.initiator != ini->initiator_name) continue;
      auto [it, fresh] = on_reactor.emplace(si.reactor, ini.get());
      if (!fresh) {
        holder = it->second;
        other = ini.get();
      }
    }
    inis.push_back(std::move(ini));
  }
  ASSERT_NE(other, nullptr) << "no two sessions on one reactor";
  auto write4k = [&](Initiator& ini, uint64_t lba) {
    uint8_t c[16];
    cdb16(c, 0x8a, lba, 8);
    Bhs cmd = ini.command(c, 16, kFinal | cmdflag::kWrite, 4096);
    ini.send(cmd, "");
    return cmd;
  };
  auto send_data = [&](Initiator& ini, const Bhs& cmd, const Pdu& r2t, char fill) {
    ini.send(data_out_bhs(cmd.itt(), r2t.h.u32(off::kTtt), 0, 0, true), std::string(4096, fill));
  };
  Bhs w1 = write4k(*holder, 0);
  Pdu r1 = next(*holder);
  ASSERT_EQ(r1.h.opcode(), op::kR2t);
  Bhs w2 = write4k(*holder, 8);
  Pdu r2 = next(*holder);
  ASSERT_EQ(r2.h.opcode(), op::kR2t);
  write4k(*other, 16);
  Pdu full = next(*other);
  ASSERT_EQ(full.h.opcode(), op::kScsiResp);
  EXPECT_EQ(full.h.b[off::kStatus], static_cast<uint8_t>(scsi::Status::kTaskSetFull));
  EXPECT_EQ(target->stats().budget_limit_hits, 1u);
  EXPECT_EQ(target->stats().buffer_limit_hits, 1u);
  send_data(*holder, w1, r1, 'a');
  Pdu done = next(*holder);
  ASSERT_EQ(done.h.opcode(), op::kScsiResp);
  EXPECT_EQ(done.h.b[off::kStatus], 0);
  Bhs w3 = write4k(*other, 16);
  Pdu r3 = next(*other);
  ASSERT_EQ(r3.h.opcode(), op::kR2t);
  send_data(*holder, w2, r2, 'b');
  send_data(*other, w3, r3, 'c');
  for (Initiator* ini : {holder, other}) {
    Pdu r = next(*ini);
    ASSERT_EQ(r.h.opcode(), op::kScsiResp);
    EXPECT_EQ(r.h.b[off::kStatus], 0);
  }
  uint8_t c[16];
  cdb16(c, 0x88, 0, 24);
  other->send(other->command(c, 16, kFinal | cmdflag::kRead, 12288), "");
  std::string got;
  while (got.size() < 12288) {
    Pdu d = next(*other);
    ASSERT_EQ(d.h.opcode(), op::kDataIn);
    got += d.data;
  }
  EXPECT_EQ(got, std::string(4096, 'a') + std::string(4096, 'b') + std::string(4096, 'c'));
  EXPECT_EQ(target->stats().budget_limit_hits, 1u);
}

TEST_F(IscsiTargetTest, ManyLargeReadsInFlight) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(text_pairs({{"MaxRecvDataSegmentLength", "65536"}, {"MaxBurstLength", "262144"}})), 0);
  clear_ua(ini);
  // 32 reads of 256 KiB in flight at once, each split into 64 KiB Data-In PDUs: every
  // header must be well formed (queued sends point into per-task header slots) and every
  // read must deliver all its bytes.
  constexpr uint32_t kBlocks = 512;  // 256 KiB per read
  constexpr int kReads = 32;
  std::map<uint32_t, int> itt_to_read;
  uint8_t c[16];
  for (int i = 0; i < kReads; ++i) {
    cdb16(c, 0x88, static_cast<uint64_t>(i) * kBlocks, kBlocks);
    Bhs b = ini.command(c, 16, kFinal | cmdflag::kRead, kBlocks * 512);
    itt_to_read[b.itt()] = i;
    ini.send(b, "");
  }
  std::map<int, uint64_t> bytes;
  int done = 0;
  while (done < kReads) {
    Pdu d = next(ini);
    ASSERT_EQ(d.h.opcode(), op::kDataIn) << "opcode " << int(d.h.opcode());
    ASSERT_EQ(d.h.total_ahs_bytes(), 0u);
    ASSERT_TRUE(itt_to_read.count(d.h.itt()));
    bytes[itt_to_read[d.h.itt()]] += d.data.size();
    if (d.h.flags() & respflag::kStatus) ++done;
  }
  for (int i = 0; i < kReads; ++i) EXPECT_EQ(bytes[i], kBlocks * 512u) << "read " << i;
}

TEST_F(IscsiTargetTest, CommandsOutsideTheWindowAreDroppedSilently) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(""), 0);
  clear_ua(ini);
  uint8_t tur[16] = {};
  Bhs b = ini.command(tur, 16, kFinal, 0);
  b.set_u32(off::kCmdSn, ini.cmd_sn + 1000);  // far beyond MaxCmdSN
  ini.send(b, "");
  EXPECT_FALSE(ini.recv(500).has_value());
  Bhs ok = ini.command(tur, 16, kFinal, 0);
  ok.set_u32(off::kCmdSn, ini.cmd_sn - 2);  // the CmdSN the dropped one should have had
  ini.send(ok, "");
  Pdu r = next(ini);
  EXPECT_EQ(r.h.opcode(), op::kScsiResp);
  EXPECT_EQ(r.h.itt(), ok.itt());
  EXPECT_EQ(r.h.b[off::kStatus], 0);
}

TEST_F(IscsiTargetTest, AbortOfAnUnknownTaskAndUnknownOpcode) {
  Initiator ini(port);
  ASSERT_EQ(ini.login(""), 0);
  Bhs t;
  t.clear();
  t.set_opcode(op::kTaskMgmt | kImmediateBit);
  t.set_flags(kFinal | tmf::kAbortTask);
  t.set_itt(ini.itt++);
  t.set_u32(off::kRefTaskTag, 0x7777);
  t.set_u32(off::kCmdSn, ini.cmd_sn);
  ini.send(t, "");
  Pdu r = next(ini);
  EXPECT_EQ(r.h.opcode(), op::kTaskMgmtResp);
  EXPECT_EQ(r.h.b[off::kResponse], tmf::kNoTask);
  Bhs junk;
  junk.clear();
  junk.set_opcode(0x1c | kImmediateBit);  // not an opcode
  junk.set_itt(ini.itt++);
  ini.send(junk, "");
  Pdu rej = next(ini);
  EXPECT_EQ(rej.h.opcode(), op::kReject);
  EXPECT_EQ(rej.h.b[off::kResponse], reject::kCommandNotSupported);
  EXPECT_EQ(std::string(rej.data.data(), 1)[0] & 0x3F, 0x1c);  // the rejected header comes back
  clear_ua(ini);  // and the session still works
}

Bhs tmf_request(Initiator& ini, uint8_t fn) {
  Bhs t;
  t.clear();
  t.set_opcode(op::kTaskMgmt | kImmediateBit);
  t.set_flags(kFinal | fn);
  t.set_itt(ini.itt++);
  t.set_u32(off::kRefTaskTag, 0xFFFFFFFF);
  t.set_u32(off::kCmdSn, ini.cmd_sn);
  return t;
}

TEST_F(IscsiTargetTest, TargetWarmResetRaisesUnitAttentionsAndColdResetEndsEverySession) {
  Initiator a(port), b(port);
  b.isid_qualifier = 1;  // a second session, not a reinstatement of the first
  ASSERT_EQ(a.login(""), 0);
  ASSERT_EQ(b.login(""), 0);
  clear_ua(a);
  clear_ua(b);
  ASSERT_TRUE(wait_for([&] { return target->list_sessions().size() == 2; }));

  a.send(tmf_request(a, tmf::kTargetWarmReset), "");
  Pdu r = next(a);
  EXPECT_EQ(r.h.opcode(), op::kTaskMgmtResp);
  EXPECT_EQ(r.h.b[off::kResponse], tmf::kComplete);
  // The other session's next command reports the reset as a unit attention (06/29/xx).
  uint8_t tur[16] = {};
  b.send(b.command(tur, 16, kFinal, 0), "");
  Pdu ua = next(b);
  EXPECT_EQ(ua.h.opcode(), op::kScsiResp);
  ASSERT_EQ(ua.h.b[off::kStatus], 0x02);
  ASSERT_GE(ua.data.size(), 2u + 13u);
  EXPECT_EQ(ua.data[2 + 2] & 0x0F, 0x06) << "UNIT ATTENTION";
  EXPECT_EQ(static_cast<uint8_t>(ua.data[2 + 12]), 0x29) << "reset occurred";
  clear_ua(a);  // both sessions keep working after a warm reset
  clear_ua(b);

  a.send(tmf_request(a, tmf::kTargetColdReset), "");
  r = next(a);
  EXPECT_EQ(r.h.opcode(), op::kTaskMgmtResp);
  EXPECT_EQ(r.h.b[off::kResponse], tmf::kComplete);
  EXPECT_FALSE(a.recv(3000).has_value()) << "the requester's connection closes after the response";
  EXPECT_FALSE(b.recv(3000).has_value()) << "every other session with the node is closed";
  EXPECT_TRUE(wait_for([&] { return target->list_sessions().empty(); }));
}

// LUN 0 over a pool replica that grows while a session is logged in: after
// announce_resize() the session's next command gets CHECK CONDITION, UNIT ATTENTION,
// CAPACITY DATA HAS CHANGED (2A/09), and READ CAPACITY then answers the new size.
TEST_F(IscsiTargetTest, GrownLunRaisesCapacityDataHasChanged) {
  pool::PoolManager pools(*env.reg);
  testing::make_small_pool(pools, 48, "gr", 8 << 20);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(target->remove_node(kIqn));
  NodeConfig n;
  n.name = kIqn;
  n.luns.push_back(scsi::LunOptions{.lun = 0, .bdev = "gr", .read_only = false, .product = "t"});
  ASSERT_TRUE(target->add_node(n));
  const uint32_t bs = env.reg->find("gr")->block_size();
  const uint64_t new_blocks = (16u << 20) / bs;
  {
    Initiator ini(port);
    ASSERT_EQ(ini.login(""), 0);
    clear_ua(ini);
    ASSERT_TRUE(pools.grow_replica("gr", 16 << 20));
    EXPECT_EQ(target->announce_resize("gr"), 1u);
    EXPECT_EQ(target->announce_resize("d0"), 0u) << "no LUN over it any more";
    uint8_t rc[16] = {0x9E, 0x10};  // READ CAPACITY (16)
    rc[13] = 32;
    ini.send(ini.command(rc, 16, kFinal | cmdflag::kRead, 32), "");
    Pdu ua = next(ini);
    ASSERT_EQ(ua.h.opcode(), op::kScsiResp);
    ASSERT_EQ(ua.h.b[off::kStatus], 0x02);
    ASSERT_GE(ua.data.size(), 2u + 14u);
    EXPECT_EQ(ua.data[2 + 2] & 0x0F, 0x06) << "UNIT ATTENTION";
    EXPECT_EQ(static_cast<uint8_t>(ua.data[2 + 12]), 0x2A);
    EXPECT_EQ(static_cast<uint8_t>(ua.data[2 + 13]), 0x09) << "CAPACITY DATA HAS CHANGED";
    ini.send(ini.command(rc, 16, kFinal | cmdflag::kRead, 32), "");
    Pdu d = next(ini);
    ASSERT_EQ(d.h.opcode(), op::kDataIn);
    ASSERT_GE(d.data.size(), 8u);
    EXPECT_EQ(load_be64(reinterpret_cast<const uint8_t*>(d.data.data())), new_blocks - 1);
    if (!(d.h.flags() & respflag::kStatus)) {
      Pdu st = next(ini);
      EXPECT_EQ(st.h.opcode(), op::kScsiResp);
      EXPECT_EQ(st.h.b[off::kStatus], 0);
    } else {
      EXPECT_EQ(d.h.b[off::kStatus], 0);
    }
  }
  ASSERT_TRUE(target->remove_node(kIqn));
}

}  // namespace
}  // namespace castor::iscsi

namespace castor::iscsi {
namespace {

TEST(IscsiTargetLogin, ConnectionThatNeverLogsInIsClosed) {
  bdev::test::Env env;
  TargetOptions o;
  o.login_timeout_ms = 200;
  IscsiTarget t(env.group, *env.reg, o);
  uint16_t port = 0;
  ASSERT_TRUE(t.listen("127.0.0.1", 0, &port));
  Initiator idle(port);
  // Nothing is sent; the target closes the socket after the login timeout (well before
  // the 5 s this read would wait for data).
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(idle.recv(5000).has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  // A connection that logs in in time is kept past the timeout.
  ASSERT_TRUE(env.reg->create("malloc:///d1?size_mb=1&blk_size=512"));
  NodeConfig n;
  n.name = kIqn;
  n.luns.push_back(scsi::LunOptions{.lun = 0, .bdev = "d1", .read_only = false, .product = "t"});
  ASSERT_TRUE(t.add_node(n));
  Initiator ini(port);
  ASSERT_EQ(ini.login(""), 0);
  usleep(400'000);
  EXPECT_EQ(t.list_sessions().size(), 1u);
  t.stop();
}

}  // namespace
}  // namespace castor::iscsi

namespace castor::iscsi {
namespace {

// Removing a node while one of its commands is stuck on a hung bdev cannot release the
// bdev: the removal fails with Busy naming what holds it and leaves the node exported as
// it was (a new login works); once the hang clears, removing it again succeeds, and the
// bdev is free as soon as it returns.
TEST_F(IscsiTargetTest, RemovalWhileACommandHangsIsBusyAndLeavesTheNodeExported) {
  ASSERT_TRUE(target->remove_node(kIqn));
  EXPECT_TRUE(env.reg->destroy("d0")) << "a removed node's bdev is free at once";
  ASSERT_TRUE(env.reg->create("malloc:///hm?size_mb=4&blk_size=512"));
  ASSERT_TRUE(env.reg->create("fault:///hf?base=hm"));
  NodeConfig n;
  n.name = kIqn;
  n.luns.push_back(scsi::LunOptions{.lun = 0, .bdev = "hf", .read_only = false, .product = "t"});
  ASSERT_TRUE(target->add_node(n));
  Initiator ini(port);
  ASSERT_EQ(ini.login(""), 0);
  clear_ua(ini);

  bdev::FaultRuleSpec hang;
  hang.mode = bdev::FaultMode::kHang;
  hang.ops_mask = bdev::io_type_bit(bdev::IoType::kWrite);
  auto rule = bdev::FaultControl::inject(*env.reg->find("hf"), hang);
  ASSERT_TRUE(rule);
  uint8_t c[16];
  cdb16(c, 0x8a, 0, 1);
  ini.send(ini.command(c, 16, kFinal | cmdflag::kWrite, 512), std::string(512, 'x'));
  ASSERT_TRUE(wait_for([&] {
    auto l = bdev::FaultControl::list(*env.reg->find("hf"));
    return !l.empty() && l[0].parked == 1;
  }));

  Status st = target->remove_node(kIqn, 300);
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  EXPECT_NE(st.message().find("'hf'"), std::string::npos) << st.to_string();
  EXPECT_NE(st.message().find(kInitiatorName), std::string::npos) << st.to_string();
  ASSERT_EQ(target->list_nodes().size(), 1u) << "still exported";
  EXPECT_FALSE(env.reg->destroy("hf")) << "still held by the node";
  Initiator again(port);
  again.isid_qualifier = 1;
  ASSERT_EQ(again.login(""), 0) << "the node still accepts logins";
  clear_ua(again);

  ASSERT_TRUE(bdev::FaultControl::clear(*env.reg->find("hf"), *rule));
  EXPECT_TRUE(ini.wait_closed(5000)) << "the removal closed the first session";
  st = target->remove_node(kIqn, 5000);
  EXPECT_TRUE(st) << st.to_string();
  EXPECT_TRUE(target->list_nodes().empty());
  EXPECT_TRUE(env.reg->destroy("hf")) << "released when remove_node returned";
  EXPECT_TRUE(env.reg->destroy("hm"));
}

}  // namespace
}  // namespace castor::iscsi
