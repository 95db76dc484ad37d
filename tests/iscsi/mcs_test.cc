// Multiple connections per session (MC/S, RFC 7143) at error recovery level
// 0, over real TCP with the test initiator of initiator.h: connections joining a session
// by TSIH, the session-wide CmdSN order across connections, responses on the connection
// that carried the command, logout of one connection or of the whole session, the loss
// of a connection, the MaxConnections limit, connection reinstatement by CID, and task
// management reaching commands of another connection.
//
// The target accepts new connections round-robin over the reactors of the group (2
// here), so consecutive connections of one session arrive on different reactors and the
// target must hand them over to the session's reactor; open_session() checks that every
// connection of a session ends up there.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "../bdev/harness.h"
#include "initiator.h"
#include "iscsi/protocol.h"
#include "iscsi/target.h"
#include "iscsi/text.h"

namespace castor::iscsi {
namespace {

using namespace test;

constexpr uint8_t kRead16 = 0x88, kWrite16 = 0x8A;
constexpr uint32_t kBlock = 512;
constexpr uint8_t kGood = 0x00, kCheckCondition = 0x02;
constexpr uint16_t kTooManyConnections = 0x0206;  // login status 02/06
// ITTs must be unique within a session: every connection gets its own range.
constexpr uint32_t kIttBase[] = {0, 0x1, 0x10000, 0x20000, 0x30000};

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 31 + (i >> 9) + seed * 101);
  return s;
}

std::string key(const KeyValues& kvs, const std::string& k) {
  for (const auto& [name, v] : kvs) {
    if (name == k) return v;
  }
  return "(absent)";
}

class IscsiMcsTest : public TargetFixture {
 protected:
  void TearDown() override {
    c1.reset();
    c2.reset();
    c3.reset();
    TargetFixture::TearDown();
  }

  // ---------------------------------------------------------------- login
  // A new TCP connection for the session under test: it shares the session's CmdSN
  // counter and numbers its ITTs from `itt_base`.
  std::unique_ptr<Initiator> connect(uint32_t itt_base) {
    auto c = std::make_unique<Initiator>(port);
    c->share_cmd_sn(&sn);
    c->itt = itt_base;
    return c;
  }

  // Leading login of a new session on `c` as CID 1 (TSIH 0). On success sets `tsih` to
  // the TSIH the target assigned and `lead_keys` to the keys it answered. Returns the
  // login status (0xFFFF: no response).
  uint16_t lead(Initiator& c, const std::string& keys) {
    auto r = c.login_pdu(keys, 0, 1);
    if (!r) {
      ADD_FAILURE() << "no response to the leading login";
      return 0xFFFF;
    }
    EXPECT_EQ(r->h.opcode(), op::kLoginResp);
    const uint16_t st = Initiator::login_status(*r);
    if (st == login_status::kSuccess) {
      tsih = r->h.u16(off::kTsih);
      EXPECT_NE(tsih, 0) << "a new session gets a non-zero TSIH";
      auto parsed = parse_text({reinterpret_cast<const uint8_t*>(r->data.data()), r->data.size()});
      EXPECT_TRUE(parsed.is_ok()) << "login response text";
      lead_keys = parsed.is_ok() ? parsed.value() : KeyValues{};
    }
    return st;
  }

  // Login of connection `cid` into session `with_tsih` (default: the session under
  // test), with only InitiatorName and TargetName plus `keys`. Returns the login status.
  uint16_t join(Initiator& c, uint16_t cid, std::optional<uint16_t> with_tsih = {}, const std::string& keys = "") {
    const uint16_t t = with_tsih.value_or(tsih);
    auto r = c.login_pdu(keys, t, cid);
    if (!r) {
      ADD_FAILURE() << "no response to the login of CID " << cid;
      return 0xFFFF;
    }
    EXPECT_EQ(r->h.opcode(), op::kLoginResp);
    const uint16_t st = Initiator::login_status(*r);
    if (st == login_status::kSuccess) {
      EXPECT_EQ(r->h.u16(off::kTsih), t) << "a connection added to a session keeps the session's TSIH";
    }
    return st;
  }

  // Opens a session of `conns` connections (CIDs 1..conns in c1..c3) and clears the
  // session's power-on unit attention on c1.
  void open_session(int conns, const std::string& keys) {
    c1 = connect(kIttBase[1]);
    ASSERT_EQ(lead(*c1, keys), login_status::kSuccess);
    if (conns >= 2) {
      c2 = connect(kIttBase[2]);
      ASSERT_EQ(join(*c2, 2), login_status::kSuccess) << "second connection";
    }
    if (conns >= 3) {
      c3 = connect(kIttBase[3]);
      ASSERT_EQ(join(*c3, 3), login_status::kSuccess) << "third connection";
    }
    const auto conns_listed = target->list_sessions();
    ASSERT_EQ(conns_listed.size(), static_cast<size_t>(conns));
    for (const SessionInfo& i : conns_listed) {
      EXPECT_EQ(i.tsih, tsih);
      EXPECT_EQ(i.reactor, conns_listed[0].reactor) << "CID " << i.cid << " is not on its session's reactor";
    }
    ASSERT_NO_FATAL_FAILURE(clear_ua(*c1));
  }

  static std::string lead_keys_with(std::initializer_list<std::pair<std::string, std::string>> more) {
    std::string s = text_pairs({{"MaxConnections", "4"}});
    return s + text_pairs(more);
  }

  // ---------------------------------------------------------------- SCSI commands
  // The next PDU on `c`, which must answer command `cmd` (same ITT).
  std::optional<Pdu> answer(Initiator& c, const Bhs& cmd, int ms = 5000) {
    auto r = c.recv(ms);
    if (!r) {
      ADD_FAILURE() << "nothing answered ITT " << std::hex << cmd.itt()
                    << (c.eof() ? ": the target closed the connection" : ": timeout");
      return std::nullopt;
    }
    EXPECT_EQ(r->h.itt(), cmd.itt()) << "a PDU for another task (opcode " << std::hex << int(r->h.opcode()) << ")";
    if (r->h.itt() != cmd.itt()) return std::nullopt;
    return r;
  }

  // The SCSI status of the response to `cmd` on `c`; -1 if none came.
  int status_of(Initiator& c, const Bhs& cmd, Pdu* resp = nullptr) {
    auto r = answer(c, cmd);
    if (!r) return -1;
    EXPECT_EQ(r->h.opcode(), op::kScsiResp);
    if (r->h.opcode() != op::kScsiResp) return -1;
    if (resp) *resp = *r;
    return r->h.b[off::kStatus];
  }

  // TEST UNIT READY on `c`: its status, -1 if no response.
  int tur(Initiator& c) {
    uint8_t cdb[16] = {};
    Bhs b = c.command(cdb, 16, kFinal, 0);
    c.send(b, "");
    return status_of(c, b);
  }

  void clear_ua(Initiator& c) {
    for (int i = 0; i < 3; ++i) {
      const int st = tur(c);
      if (st == kGood) return;
      if (st < 0) FAIL() << "no answer to TEST UNIT READY";
    }
    FAIL() << "unit attention did not clear";
  }

  // Sends WRITE(16) of `blocks` at `lba` carrying `immediate` as immediate data (empty:
  // all data solicited by R2T). `cmd_sn` overrides the CmdSN from the session counter.
  Bhs write16(Initiator& c, uint64_t lba, uint32_t blocks, const std::string& immediate,
              std::optional<uint32_t> cmd_sn = {}) {
    uint8_t cdb[16];
    cdb16(cdb, kWrite16, lba, blocks);
    Bhs b = c.command(cdb, 16, kFinal | cmdflag::kWrite, blocks * kBlock);
    if (cmd_sn) b.set_u32(off::kCmdSn, *cmd_sn);
    c.send(b, immediate);
    return b;
  }

  Bhs read16(Initiator& c, uint64_t lba, uint32_t blocks, std::optional<uint32_t> cmd_sn = {}) {
    uint8_t cdb[16];
    cdb16(cdb, kRead16, lba, blocks);
    Bhs b = c.command(cdb, 16, kFinal | cmdflag::kRead, blocks * kBlock);
    if (cmd_sn) b.set_u32(off::kCmdSn, *cmd_sn);
    c.send(b, "");
    return b;
  }

  // Collects the Data-In of read `cmd` on `c` up to its status (in the last Data-In or a
  // separate SCSI Response). *status gets the SCSI status (-1: none); *last the PDU that
  // carried it.
  std::string read_data(Initiator& c, const Bhs& cmd, int* status, Pdu* last = nullptr) {
    std::string got;
    *status = -1;
    for (;;) {
      auto p = answer(c, cmd);
      if (!p) return got;
      if (p->h.opcode() == op::kScsiResp) {
        *status = p->h.b[off::kStatus];
        if (last) *last = *p;
        return got;
      }
      EXPECT_EQ(p->h.opcode(), op::kDataIn);
      if (p->h.opcode() != op::kDataIn) return got;
      EXPECT_EQ(p->h.u32(off::kBufferOffset), got.size());
      got += p->data;
      if (p->h.flags() & respflag::kStatus) {
        *status = p->h.b[off::kStatus];
        if (last) *last = *p;
        return got;
      }
    }
  }

  // Answers every R2T of write `cmd` on `c` with Data-Out PDUs of at most 8 KiB taken from
  // `data`, until all of it is sent. `between` runs once, after the first R2T arrived.
  template <class F>
  void send_solicited(Initiator& c, const Bhs& cmd, const std::string& data, F&& between) {
    uint32_t sent = 0;
    bool first = true;
    while (sent < data.size()) {
      auto r2t = answer(c, cmd);
      ASSERT_TRUE(r2t.has_value()) << "no R2T";
      ASSERT_EQ(r2t->h.opcode(), op::kR2t);
      const uint32_t offset = r2t->h.u32(off::kBufferOffset), len = r2t->h.u32(off::kDesiredLength);
      ASSERT_EQ(offset, sent);
      ASSERT_GT(len, 0u);
      ASSERT_LE(offset + len, data.size());
      if (first) {
        first = false;
        between();
      }
      for (uint32_t o = 0, dsn = 0; o < len; o += 8192, ++dsn) {
        const uint32_t n = std::min<uint32_t>(8192, len - o);
        c.send(data_out_bhs(cmd.itt(), r2t->h.u32(off::kTtt), dsn, offset + o, o + n >= len),
               data.substr(offset + o, n));
      }
      sent += len;
    }
  }

  // ---------------------------------------------------------------- logout, TMF
  // Sends an immediate Logout Request on `c` (reason 0: close the session, 1: close the
  // connection `cid`) and returns the Logout Response's response code, -1 if none came.
  int logout(Initiator& c, uint8_t reason, uint16_t cid) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kLogout | kImmediateBit);
    b.set_flags(kFinal | reason);
    b.set_itt(c.itt++);
    b.set_u16(off::kCid, cid);
    b.set_u32(off::kCmdSn, c.sn());
    c.send(b, "");
    auto r = answer(c, b);
    if (!r) return -1;
    EXPECT_EQ(r->h.opcode(), op::kLogoutResp);
    if (r->h.opcode() != op::kLogoutResp) return -1;
    return r->h.b[off::kResponse];
  }

  // Sends an immediate task management request on `c` (LUN 0) and returns the response
  // code, -1 if none came.
  int task_mgmt(Initiator& c, uint8_t fn, uint32_t ref_itt, uint32_t ref_cmd_sn) {
    Bhs t;
    t.clear();
    t.set_opcode(op::kTaskMgmt | kImmediateBit);
    t.set_flags(kFinal | fn);
    t.set_itt(c.itt++);
    t.set_u32(off::kRefTaskTag, ref_itt);
    t.set_u32(off::kCmdSn, c.sn());
    t.set_u32(off::kRefCmdSn, ref_cmd_sn);
    c.send(t, "");
    auto r = answer(c, t);
    if (!r) return -1;
    EXPECT_EQ(r->h.opcode(), op::kTaskMgmtResp);
    if (r->h.opcode() != op::kTaskMgmtResp) return -1;
    return r->h.b[off::kResponse];
  }

  uint32_t sn = 1;  // the session's CmdSN counter, shared by its connections
  uint16_t tsih = 0;
  KeyValues lead_keys;
  std::unique_ptr<Initiator> c1, c2, c3;
};

const std::string kMc4 = text_pairs({{"MaxConnections", "4"}});

// ---------------------------------------------------------------------------------------

TEST_F(IscsiMcsTest, SecondConnectionJoinsTheSessionAndSharesItsCmdSn) {
  c1 = connect(kIttBase[1]);
  ASSERT_EQ(lead(*c1, text_pairs({{"MaxConnections", "4"}, {"InitialR2T", "No"}, {"ImmediateData", "Yes"}})), 0);
  EXPECT_EQ(key(lead_keys, "MaxConnections"), "4") << "min(offer 4, the target's 8)";
  const uint16_t session_tsih = tsih;
  c2 = connect(kIttBase[2]);
  auto r = c2->login_pdu("", tsih, 2);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(Initiator::login_status(*r), login_status::kSuccess);
  EXPECT_EQ(r->h.u16(off::kTsih), session_tsih);
  ASSERT_NO_FATAL_FAILURE(clear_ua(*c1));

  // A write on connection 1 is answered there...
  const uint32_t n = sn;
  const std::string pat = pattern(8 * kBlock, 1);
  Bhs w = write16(*c1, 64, 8, pat);
  EXPECT_EQ(w.u32(off::kCmdSn), n);
  Pdu wresp;
  EXPECT_EQ(status_of(*c1, w, &wresp), kGood);
  EXPECT_TRUE(sn_le(n + 1, wresp.h.u32(off::kExpCmdSn))) << "ExpCmdSN " << wresp.h.u32(off::kExpCmdSn);

  // ...and a read of the same blocks on connection 2 sees its data and is answered on
  // connection 2, with the session-wide ExpCmdSN (which counts the write of connection 1).
  Bhs rd = read16(*c2, 64, 8);
  EXPECT_EQ(rd.u32(off::kCmdSn), n + 1);
  int st = -1;
  Pdu last;
  EXPECT_EQ(read_data(*c2, rd, &st, &last), pat);
  EXPECT_EQ(st, kGood);
  EXPECT_TRUE(sn_le(n + 2, last.h.u32(off::kExpCmdSn))) << "ExpCmdSN " << last.h.u32(off::kExpCmdSn);
}

TEST_F(IscsiMcsTest, CommandsExecuteInCmdSnOrderAcrossConnections) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, lead_keys_with({{"InitialR2T", "No"}, {"ImmediateData", "Yes"}})));
  const std::string old_pat = pattern(8 * kBlock, 2), new_pat = pattern(8 * kBlock, 3);
  EXPECT_EQ(status_of(*c1, write16(*c1, 128, 8, old_pat)), kGood);

  // The read with CmdSN n+1 reaches the target before the write with CmdSN n: it must wait.
  const uint32_t n = sn;
  Bhs rd = read16(*c2, 128, 8, n + 1);
  EXPECT_FALSE(c2->recv(300).has_value()) << "CmdSN n+1 ran before CmdSN n had arrived";
  EXPECT_FALSE(c2->eof()) << "the target closed connection 2";
  Bhs w = write16(*c1, 128, 8, new_pat, n);
  sn = n + 2;
  EXPECT_EQ(status_of(*c1, w), kGood);
  int st = -1;
  EXPECT_EQ(read_data(*c2, rd, &st), new_pat) << "the read did not wait for the write before it";
  EXPECT_EQ(st, kGood);
  EXPECT_EQ(tur(*c1), kGood);
  EXPECT_EQ(tur(*c2), kGood);
}

// A command ahead of ExpCmdSN parks its connection only while another connection still
// reads: were every connection parked, none would ever read the missing command (or its
// peer closing) again. Found by iscsi_mcs_fuzz.
TEST_F(IscsiMcsTest, LastReadingConnectionDropsACommandAheadInsteadOfParking) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, kMc4));
  const uint32_t n = sn;
  Bhs rd2 = read16(*c2, 0, 1, n + 1);  // connection 2 parks, waiting for n
  EXPECT_FALSE(c2->recv(200).has_value());
  Bhs ahead = read16(*c1, 0, 1, n + 2);  // connection 1 is the last that reads: dropped
  EXPECT_FALSE(c1->recv(300).has_value()) << "CmdSN n+2 ran before n";
  Bhs rd1 = read16(*c1, 0, 1, n);  // so connection 1 still reads, and n arrives
  int st = -1;
  read_data(*c1, rd1, &st);
  EXPECT_EQ(st, kGood);
  read_data(*c2, rd2, &st);
  EXPECT_EQ(st, kGood) << "connection 2 did not resume once n arrived";
  // The dropped n+2 never gets an answer; sent again, it runs.
  Bhs again = read16(*c1, 0, 1, n + 2);
  read_data(*c1, again, &st);
  EXPECT_EQ(st, kGood);
  EXPECT_NE(again.itt(), ahead.itt());
  sn = n + 3;
  EXPECT_EQ(tur(*c2), kGood);
}

TEST_F(IscsiMcsTest, LogoutOfOneConnectionKeepsTheSession) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, kMc4));
  EXPECT_EQ(logout(*c2, logout::kCloseConnection, 2), logout::kOk);
  EXPECT_TRUE(c2->wait_closed(5000)) << "the target keeps the logged-out connection open";
  EXPECT_EQ(tur(*c1), kGood);
  EXPECT_FALSE(target->list_sessions().empty());
  // The CID is free again: a new connection may take it.
  auto again = connect(kIttBase[4]);
  EXPECT_EQ(join(*again, 2), login_status::kSuccess);
  EXPECT_EQ(tur(*again), kGood);
  EXPECT_EQ(tur(*c1), kGood);
}

TEST_F(IscsiMcsTest, LogoutOnOneConnectionClosesAnotherNamedByCid) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, kMc4));
  EXPECT_EQ(logout(*c1, logout::kCloseConnection, 2), logout::kOk);
  EXPECT_TRUE(c2->wait_closed(5000)) << "connection 2 was not closed";
  EXPECT_EQ(tur(*c1), kGood);
  EXPECT_EQ(logout(*c1, logout::kCloseConnection, 9), logout::kCidNotFound);
  EXPECT_EQ(tur(*c1), kGood);
}

TEST_F(IscsiMcsTest, LogoutOfTheSessionClosesEveryConnection) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, kMc4));
  EXPECT_EQ(logout(*c1, logout::kCloseSession, 1), logout::kOk);
  EXPECT_TRUE(c1->wait_closed(5000)) << "connection 1 (the one that logged out) stays open";
  EXPECT_TRUE(c2->wait_closed(5000)) << "connection 2 stays open";
  EXPECT_TRUE(wait_for([&] { return target->list_sessions().empty(); }));
}

TEST_F(IscsiMcsTest, LostConnectionEndsTheSessionAtErrorRecoveryLevelZero) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, kMc4));
  const uint16_t old_tsih = tsih;
  c2->close();  // no logout: the connection is lost
  EXPECT_TRUE(c1->wait_closed(5000)) << "the session survived the loss of a connection";
  EXPECT_TRUE(wait_for([&] { return target->list_sessions().empty(); }));
  {
    auto late = connect(kIttBase[3]);
    EXPECT_EQ(join(*late, 2, old_tsih), login_status::kSessionNotFound);
  }
  // The same initiator port starts a new session...
  auto fresh = connect(kIttBase[1]);
  ASSERT_EQ(lead(*fresh, kMc4), login_status::kSuccess);
  ASSERT_NE(tsih, old_tsih) << "test assumption: the target does not reuse a TSIH at once";
  // ...and the old session stays gone.
  auto late = connect(kIttBase[3]);
  EXPECT_EQ(join(*late, 2, old_tsih), login_status::kSessionNotFound);
  ASSERT_NO_FATAL_FAILURE(clear_ua(*fresh));
}

// The same with a write on the lost connection still waiting for its data: releasing
// that task must not keep the session from failing.
TEST_F(IscsiMcsTest, LostConnectionWithAWriteAwaitingDataEndsTheSession) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, lead_keys_with({{"InitialR2T", "Yes"}, {"ImmediateData", "No"}})));
  Bhs w = write16(*c2, 0, 16, "");
  auto r2t = answer(*c2, w);
  ASSERT_TRUE(r2t.has_value());
  ASSERT_EQ(r2t->h.opcode(), op::kR2t);
  c2->close();  // lost with the write's data never sent
  EXPECT_TRUE(c1->wait_closed(5000)) << "the session survived the loss of a connection";
  EXPECT_TRUE(wait_for([&] { return target->list_sessions().empty(); }));
}

TEST_F(IscsiMcsTest, JoinsBeyondMaxConnectionsOrToAnotherSessionOrWithSessionKeysAreRefused) {
  c1 = connect(kIttBase[1]);
  ASSERT_EQ(lead(*c1, text_pairs({{"MaxConnections", "2"}})), login_status::kSuccess);
  EXPECT_EQ(key(lead_keys, "MaxConnections"), "2");
  {
    auto c = connect(kIttBase[3]);
    EXPECT_EQ(join(*c, 2, tsih, text_pairs({{"InitialR2T", "Yes"}})), login_status::kInitiatorError)
        << "InitialR2T is negotiated by the leading login only";
    EXPECT_TRUE(c->wait_closed(5000));
  }
  {
    auto c = connect(kIttBase[3]);
    EXPECT_EQ(join(*c, 2, tsih, text_pairs({{"MaxConnections", "2"}})), login_status::kInitiatorError)
        << "MaxConnections is negotiated by the leading login only";
  }
  {
    auto c = connect(kIttBase[3]);
    c->isid_qualifier = 1;  // another initiator port
    EXPECT_EQ(join(*c, 2), login_status::kSessionNotFound) << "the TSIH belongs to another ISID";
  }
  {
    auto c = connect(kIttBase[3]);
    EXPECT_EQ(join(*c, 2, static_cast<uint16_t>(tsih + 0x1234)), login_status::kSessionNotFound);
  }
  c2 = connect(kIttBase[2]);
  ASSERT_EQ(join(*c2, 2), login_status::kSuccess);
  c3 = connect(kIttBase[3]);
  EXPECT_EQ(join(*c3, 3), kTooManyConnections);
  EXPECT_TRUE(c3->wait_closed(5000));
  // The refused logins left the session alone.
  ASSERT_NO_FATAL_FAILURE(clear_ua(*c1));
  EXPECT_EQ(tur(*c2), kGood);
}

TEST_F(IscsiMcsTest, LoginWithTheCidOfALiveConnectionReinstatesIt) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, kMc4));
  auto c2b = connect(kIttBase[4]);
  ASSERT_EQ(join(*c2b, 2), login_status::kSuccess);
  EXPECT_TRUE(c2->wait_closed(5000)) << "the reinstated connection was not closed";
  EXPECT_EQ(tur(*c2b), kGood);
  EXPECT_EQ(tur(*c1), kGood);
}

TEST_F(IscsiMcsTest, SolicitedWriteOnOneConnectionWhileTheOthersRead) {
  ASSERT_NO_FATAL_FAILURE(open_session(3, lead_keys_with({{"InitialR2T", "Yes"}, {"ImmediateData", "No"}})));
  const std::string pat = pattern(65536, 4);
  Bhs w = write16(*c3, 200, 128, "");
  Bhs r1{}, r2{};
  ASSERT_NO_FATAL_FAILURE(send_solicited(*c3, w, pat, [&] {
    r1 = read16(*c1, 0, 8);
    r2 = read16(*c2, 8, 8);
  }));
  EXPECT_EQ(status_of(*c3, w), kGood);
  int st = -1;
  EXPECT_EQ(read_data(*c1, r1, &st).size(), 8 * kBlock);
  EXPECT_EQ(st, kGood);
  EXPECT_EQ(read_data(*c2, r2, &st).size(), 8 * kBlock);
  EXPECT_EQ(st, kGood);
  // The data written through connection 3 reads back through connection 1.
  Bhs back = read16(*c1, 200, 128);
  EXPECT_EQ(read_data(*c1, back, &st), pat);
  EXPECT_EQ(st, kGood);
}

TEST_F(IscsiMcsTest, TaskManagementOnOneConnectionReachesCommandsOfAnother) {
  ASSERT_NO_FATAL_FAILURE(open_session(2, lead_keys_with({{"InitialR2T", "Yes"}, {"ImmediateData", "No"}})));

  // ABORT TASK on connection 1 of a write waiting for Data-Out on connection 2.
  Bhs w = write16(*c2, 300, 8, "");
  auto r2t = answer(*c2, w);
  ASSERT_TRUE(r2t.has_value());
  ASSERT_EQ(r2t->h.opcode(), op::kR2t);
  EXPECT_EQ(task_mgmt(*c1, tmf::kAbortTask, w.itt(), w.u32(off::kCmdSn)), tmf::kComplete);
  EXPECT_FALSE(c2->recv(300).has_value()) << "the aborted write was answered";
  EXPECT_EQ(tur(*c2), kGood);

  // LUN RESET on connection 1 while another such write waits on connection 2.
  Bhs w2 = write16(*c2, 300, 8, "");
  r2t = answer(*c2, w2);
  ASSERT_TRUE(r2t.has_value());
  ASSERT_EQ(r2t->h.opcode(), op::kR2t);
  EXPECT_EQ(task_mgmt(*c1, tmf::kLunReset, kReservedTag, 0), tmf::kComplete);
  // Connection 2 still answers (GOOD, or CHECK CONDITION for the reset's unit attention).
  uint8_t cdb[16] = {};
  Bhs t = c2->command(cdb, 16, kFinal, 0);
  c2->send(t, "");
  std::optional<Pdu> resp;
  for (int i = 0; i < 4; ++i) {  // tolerate a response for the reset write before it
    resp = c2->recv();
    if (!resp || resp->h.itt() == t.itt()) break;
  }
  ASSERT_TRUE(resp.has_value()) << "connection 2 no longer answers";
  ASSERT_EQ(resp->h.itt(), t.itt());
  EXPECT_EQ(resp->h.opcode(), op::kScsiResp);
  EXPECT_TRUE(resp->h.b[off::kStatus] == kGood || resp->h.b[off::kStatus] == kCheckCondition)
      << "status " << int(resp->h.b[off::kStatus]);
}

}  // namespace
}  // namespace castor::iscsi
