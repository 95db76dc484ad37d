// Seeds of iscsi_mcs_fuzz: a selector byte, then records of what the initiator sends on
// connections A (CID 1), B (CID 2) and C (CID 3) after the harness's logins (see
// iscsi_mcs_fuzz.cc for the format). The logins are immediate, so the first command of
// the session has CmdSN 1. ITTs are unique in the session: A numbers from 0x100, B from
// 0x10000, C from 0x20000. The LUN is 4 MiB of 512-byte blocks.
//
// R2T target transfer tags are predictable: a connection's task slots are handed out
// last-first from 136 (queue depth 128 + 8 immediate), so a connection whose earlier
// tasks have all ended takes slot 135 again, and the TTT is generation << 16 | slot,
// the generation counting that connection's tasks (the harness's TEST UNIT READY on A
// counts). Seeds send solicited Data-Out only for such tasks, after a pause.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "iscsi/protocol.h"
#include "iscsi/text.h"
#include "iscsi_pdu.h"

using namespace castor::iscsi;

namespace {
// Selector bits (byte 0), as in iscsi_mcs_fuzz.cc.
constexpr uint8_t kInitialR2t = 0x01, kNoImmediateData = 0x02, kThird = 0x04;
constexpr uint8_t kEndHalfCloseAll = 0 << 3, kEndCloseBFirst = 1 << 3, kEndCloseAFirst = 2 << 3,
                  kEndHalfCloseReverse = 3 << 3;
constexpr uint8_t kClearUa = 0x20, kSmallMrdsl = 0x40, kPipelineJoin = 0x80;
constexpr uint8_t kSolicited = kInitialR2t | kNoImmediateData;  // every write byte by R2T

constexpr int A = 0, B = 1, C = 2;
constexpr uint32_t kBlock = 512;
constexpr uint16_t kSlot = 135;  // the first task slot a connection hands out

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 31 + (i >> 9) + seed * 101);
  return s;
}

struct Seed {
  explicit Seed(uint8_t sel) : sel(sel) {
    out.push_back(static_cast<char>(sel));
    if (sel & kClearUa) tasks[A] = 1;  // the harness's TEST UNIT READY took one
  }
  uint8_t sel;
  std::string out;
  uint32_t sn = 1;  // the session's next CmdSN
  uint32_t itt[3] = {0x100, 0x10000, 0x20000};
  uint32_t tasks[3] = {0, 0, 0};  // SCSI commands each connection took a task slot for

  std::string* capture = nullptr;  // set: rec() appends the bytes here instead

  // One record (or several: at most 16383 bytes each) for connection `conn`.
  void rec(int conn, const std::string& bytes) {
    if (capture) {
      *capture += bytes;
      return;
    }
    size_t off = 0;
    do {
      const size_t n = std::min<size_t>(bytes.size() - off, 16383);
      out.push_back(static_cast<char>(((n >> 8) << 2) | static_cast<size_t>(conn)));
      out.push_back(static_cast<char>(n & 0xff));
      out.append(bytes, off, n);
      off += n;
    } while (off < bytes.size());
  }
  void pause() { out.push_back(3); }

  // ---- SCSI commands: each returns its ITT (or ITT and TTT of a solicited write)
  Bhs command(int conn, const uint8_t* cdb, size_t n, uint8_t flags, uint32_t edtl,
              std::optional<uint32_t> cmd_sn, bool immediate = false) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kScsiCmd | (immediate ? kImmediateBit : 0));
    b.set_flags(flags);
    b.set_itt(itt[conn]++);
    b.set_u32(off::kEdtl, edtl);
    b.set_u32(off::kCmdSn, cmd_sn ? *cmd_sn : immediate ? sn : sn++);
    std::memcpy(b.b + off::kCdb, cdb, n);
    ++tasks[conn];
    return b;
  }
  static void cdb16(uint8_t* c, uint8_t op, uint64_t lba, uint32_t blocks) {
    std::memset(c, 0, 16);
    c[0] = op;
    castor::store_be64(c + 2, lba);
    castor::store_be32(c + 10, blocks);
  }
  uint32_t read16(int conn, uint64_t lba, uint32_t blocks, std::optional<uint32_t> cmd_sn = {}) {
    uint8_t cdb[16];
    cdb16(cdb, 0x88, lba, blocks);
    Bhs b = command(conn, cdb, 16, kFinal | cmdflag::kRead, blocks * kBlock, cmd_sn);
    rec(conn, pdu_bytes(b, ""));
    return b.itt();
  }
  // WRITE(16) carrying `immediate`; `final` false announces unsolicited Data-Out.
  uint32_t write16(int conn, uint64_t lba, uint32_t blocks, const std::string& immediate, bool final = true,
                   std::optional<uint32_t> cmd_sn = {}) {
    uint8_t cdb[16];
    cdb16(cdb, 0x8a, lba, blocks);
    Bhs b = command(conn, cdb, 16, (final ? kFinal : 0) | cmdflag::kWrite, blocks * kBlock, cmd_sn);
    rec(conn, pdu_bytes(b, immediate));
    return b.itt();
  }
  // The TTT of the R2T for the command just sent on `conn`, if the connection's earlier
  // tasks have ended.
  uint32_t ttt(int conn) const { return (tasks[conn] << 16) | kSlot; }
  uint32_t tur(int conn, std::optional<uint32_t> cmd_sn = {}) {
    uint8_t cdb[16] = {};
    Bhs b = command(conn, cdb, 16, kFinal, 0, cmd_sn);
    rec(conn, pdu_bytes(b, ""));
    return b.itt();
  }
  uint32_t inquiry(int conn) {
    const uint8_t cdb[6] = {0x12, 0, 0, 0, 96, 0};
    Bhs b = command(conn, cdb, 6, kFinal | cmdflag::kRead, 96, {});
    rec(conn, pdu_bytes(b, ""));
    return b.itt();
  }
  void data_out(int conn, uint32_t for_itt, uint32_t ttt_value, uint32_t data_sn, uint32_t offset,
                const std::string& d, bool final) {
    rec(conn, pdu_bytes(data_out_bhs(for_itt, ttt_value, data_sn, offset, final), d));
  }

  // ---- control PDUs. Immediate ones carry the next CmdSN without taking it.
  void nop(int conn, bool immediate, const std::string& ping, bool reply_to_target = false) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kNopOut | (immediate ? kImmediateBit : 0));
    b.set_flags(kFinal);
    b.set_itt(reply_to_target ? kReservedTag : itt[conn]++);
    b.set_u32(off::kTtt, kReservedTag);
    b.set_u32(off::kCmdSn, immediate ? sn : sn++);
    rec(conn, pdu_bytes(b, ping));
  }
  void text(int conn, bool immediate, const std::string& keys) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kText | (immediate ? kImmediateBit : 0));
    b.set_flags(kFinal);
    b.set_itt(itt[conn]++);
    b.set_u32(off::kTtt, kReservedTag);
    b.set_u32(off::kCmdSn, immediate ? sn : sn++);
    rec(conn, pdu_bytes(b, keys));
  }
  void tmf(int conn, uint8_t fn, uint32_t ref_itt = kReservedTag, uint32_t ref_cmd_sn = 0) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kTaskMgmt | kImmediateBit);
    b.set_flags(kFinal | fn);
    b.set_itt(itt[conn]++);
    b.set_u32(off::kRefTaskTag, ref_itt);
    b.set_u32(off::kCmdSn, sn);
    b.set_u32(off::kRefCmdSn, ref_cmd_sn);
    rec(conn, pdu_bytes(b, ""));
  }
  void logout(int conn, uint8_t reason, uint16_t cid) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kLogout | kImmediateBit);
    b.set_flags(kFinal | reason);
    b.set_itt(itt[conn]++);
    b.set_u16(off::kCid, cid);
    b.set_u32(off::kCmdSn, sn);
    rec(conn, pdu_bytes(b, ""));
  }
};

// Interleaved READ/WRITE(16) on A and B in CmdSN order, immediate and unsolicited data.
std::string interleaved() {
  Seed s(kClearUa | kEndHalfCloseAll);
  s.write16(A, 0, 8, pattern(8 * kBlock, 1));
  s.write16(B, 8, 8, pattern(8 * kBlock, 2));
  s.read16(A, 8, 8);
  s.read16(B, 0, 8);
  const uint32_t w = s.write16(A, 16, 4, pattern(1024, 3), false);  // + unsolicited Data-Out
  s.data_out(A, w, kReservedTag, 0, 1024, pattern(1024, 4), true);
  s.pause();
  s.read16(B, 16, 4);
  s.read16(A, 0, 16);
  return s.out;
}

// B sends CmdSN n+1 before A sends n: B parks until A's command arrives.
std::string out_of_order() {
  Seed s(kClearUa | kEndHalfCloseAll);
  s.write16(A, 100, 8, pattern(8 * kBlock, 5));
  s.pause();
  const uint32_t n = s.sn;
  s.read16(B, 100, 8, n + 1);
  s.pause();  // B is parked
  s.write16(A, 100, 8, pattern(8 * kBlock, 6), true, n);
  s.sn = n + 2;
  s.pause();
  s.tur(B);
  s.tur(A);
  s.logout(A, logout::kCloseSession, 1);
  return s.out;
}

// A write solicited by R2T on B, its Data-Out interleaved with reads on A.
std::string r2t_on_b() {
  Seed s(kSolicited | kClearUa | kEndHalfCloseAll);
  const uint32_t w = s.write16(B, 200, 16, "");
  const uint32_t ttt = s.ttt(B);
  s.pause();  // the R2T went out
  s.read16(A, 0, 8);
  s.data_out(B, w, ttt, 0, 0, pattern(4096, 7), false);
  s.read16(A, 8, 8);
  s.data_out(B, w, ttt, 1, 4096, pattern(4096, 8), true);
  s.pause();
  s.read16(A, 200, 16);
  s.logout(B, logout::kCloseConnection, 2);
  s.pause();
  s.tur(A);
  return s.out;
}

// ABORT TASK on A for a write on B that waits for its Data-Out; then B goes on.
std::string abort_task_across() {
  Seed s(kSolicited | kClearUa | kEndCloseBFirst);
  const uint32_t sn_w = s.sn;
  const uint32_t w = s.write16(B, 300, 8, "");
  const uint32_t ttt = s.ttt(B);
  s.pause();
  s.tmf(A, tmf::kAbortTask, w, sn_w);
  s.pause();
  s.data_out(B, w, ttt, 0, 0, pattern(4096, 9), true);  // for the aborted task: dropped
  s.tur(B);
  s.tmf(A, tmf::kAbortTask, 0xabcdef, 0);  // no such task
  s.read16(A, 300, 8);
  return s.out;
}

// LUN RESET on A while B waits for Data-Out and C reads; everyone goes on afterwards.
std::string lun_reset() {
  Seed s(kSolicited | kThird | kClearUa | kEndHalfCloseAll);
  s.write16(B, 300, 8, "");
  s.read16(C, 0, 64);
  s.pause();
  s.tmf(A, tmf::kLunReset);
  s.pause();
  s.tur(B);
  s.tur(C);
  s.tur(A);
  s.tmf(C, tmf::kAbortTaskSet);
  s.pause();
  s.tmf(B, tmf::kTargetWarmReset);
  s.read16(A, 0, 8);
  return s.out;
}

// Logout of CID 2 sent on A; then an unknown CID and connection recovery on A.
std::string logout_other_cid() {
  Seed s(kClearUa | kEndHalfCloseReverse);
  s.read16(B, 0, 32);
  s.pause();
  s.logout(A, logout::kCloseConnection, 2);
  s.pause();
  s.tur(A);
  s.logout(A, logout::kCloseConnection, 9);
  s.logout(A, logout::kRemoveForRecovery, 1);
  s.read16(A, 0, 8);
  return s.out;
}

// Logout of the whole session on B while A has reads in flight.
std::string logout_session() {
  Seed s(kClearUa | kEndHalfCloseAll);
  s.read16(A, 0, 128);
  s.read16(A, 128, 8);
  s.logout(B, logout::kCloseSession, 2);
  s.tur(A);
  return s.out;
}

// NOP-Out on every connection, immediate and not (taking CmdSNs across connections).
std::string nops() {
  Seed s(kThird | kClearUa | kEndCloseAFirst);
  s.nop(A, true, "ping-a");
  s.nop(B, false, "ping-b");
  s.nop(C, false, "ping-c");
  s.nop(B, true, "", true);  // an answer to a target ping: ignored
  s.nop(A, false, std::string(600, 'n'));
  s.nop(C, true, "");
  s.tur(B);
  return s.out;
}

// Text requests on both connections.
std::string texts() {
  Seed s(kClearUa | kEndHalfCloseAll);
  s.text(B, false, text_pairs({{"SendTargets", ""}}));
  s.text(A, false, text_pairs({{"SendTargets", "All"}, {"X-Castor-Unknown", "1"}}));
  s.text(B, true, text_pairs({{"SendTargets", "iqn.2026-11.io.castor:fuzz"}}));
  s.inquiry(A);
  s.read16(B, 0, 1);
  return s.out;
}

// A bad PDU on B (data segment beyond MaxRecvDataSegmentLength: Reject, close) while A
// has a write waiting for R2T data and a read in flight: the session fails.
std::string bad_pdu() {
  Seed s(kSolicited | kClearUa | kEndHalfCloseAll);
  s.write16(A, 400, 8, "");
  s.read16(A, 0, 64);
  Bhs bad;
  bad.clear();
  bad.set_opcode(op::kScsiCmd);
  bad.set_flags(kFinal | cmdflag::kWrite);
  bad.set_itt(s.itt[B]++);
  bad.set_u32(off::kCmdSn, s.sn);
  bad.set_data_segment_length(0x800000);
  s.rec(B, std::string(reinterpret_cast<const char*>(bad.b), kBhsSize) + pattern(1000, 10));
  s.pause();
  s.tur(A);
  return s.out;
}

// Three connections whose CmdSNs arrive backwards (C then B then A), then B is lost.
std::string three_backwards() {
  Seed s(kThird | kClearUa | kEndCloseBFirst);
  const uint32_t n = s.sn;
  s.read16(C, 0, 8, n + 2);
  s.write16(B, 0, 8, pattern(4096, 11), true, n + 1);
  s.pause();  // B and C parked
  s.tur(A, n);
  s.sn = n + 3;
  s.pause();
  s.read16(A, 0, 8);
  s.read16(B, 8, 8);
  s.read16(C, 16, 8);
  return s.out;
}

// B parked on a CmdSN gap that is never filled, A closed first: the session fails.
std::string parked_then_a_lost() {
  Seed s(kClearUa | kEndCloseAFirst);
  s.read16(B, 0, 8, s.sn + 4);
  s.pause();
  s.read16(A, 8, 8);
  return s.out;
}

// The same gap, ended by half-closing both: A's end of file fails the session.
std::string parked_then_half_close() {
  Seed s(kSolicited | kClearUa | kEndHalfCloseAll);
  const uint32_t w = s.write16(A, 500, 8, "");
  const uint32_t ttt = s.ttt(A);
  s.pause();
  s.tur(B, s.sn + 1);
  s.pause();
  s.data_out(A, w, ttt, 0, 0, pattern(4096, 12), true);
  s.pause();
  return s.out;
}

// Pipelined join: B's first record goes out with its login PDU (carried by the hand-over).
std::string pipelined_join() {
  Seed s(kPipelineJoin | kClearUa | kEndHalfCloseAll);
  std::string first;
  s.capture = &first;  // B's first record: three PDUs in one
  s.tur(B);
  s.read16(B, 0, 8);
  s.nop(B, true, "early");
  s.capture = nullptr;
  s.rec(B, first);
  s.read16(A, 8, 8);
  s.write16(B, 8, 1, pattern(512, 13));
  return s.out;
}

// B declares MaxRecvDataSegmentLength=512: a long read comes back in 512-byte Data-Ins;
// a write with immediate data and two unsolicited Data-Outs on B.
std::string small_segments() {
  Seed s(kSmallMrdsl | kClearUa | kEndHalfCloseReverse);
  s.read16(B, 0, 64);
  s.read16(A, 0, 8);
  const uint32_t w = s.write16(B, 50, 8, pattern(1024, 14), false);
  s.data_out(B, w, kReservedTag, 0, 1024, pattern(2048, 15), false);
  s.data_out(B, w, kReservedTag, 1, 3072, pattern(1024, 16), true);
  s.pause();
  s.read16(B, 50, 8);
  return s.out;
}

// A logs out B while B is parked; the CmdSN B held is filled on A, then C goes on.
std::string logout_parked() {
  Seed s(kThird | kClearUa | kEndHalfCloseAll);
  const uint32_t n = s.sn;
  s.read16(B, 0, 8, n + 1);
  s.pause();
  s.logout(A, logout::kCloseConnection, 2);
  s.pause();
  s.read16(A, 0, 8, n);
  s.tur(A, n + 1);
  s.sn = n + 2;
  s.tur(C);
  return s.out;
}

// No unit attention clearing: the first command gets it; ABORT TASK on B of A's write
// that waits for unsolicited data.
std::string unit_attention_and_unsolicited_abort() {
  Seed s(kEndHalfCloseAll);
  s.tur(A);
  s.tur(B);
  s.inquiry(A);
  const uint32_t sn_w = s.sn;
  const uint32_t w = s.write16(A, 64, 8, pattern(512, 17), false);
  s.pause();
  s.tmf(B, tmf::kAbortTask, w, sn_w);
  s.pause();
  s.data_out(A, w, kReservedTag, 0, 512, pattern(3584, 18), true);  // dropped
  s.tur(A);
  return s.out;
}

// TARGET COLD RESET on B: every session with the node closes.
std::string cold_reset() {
  Seed s(kThird | kClearUa | kEndHalfCloseAll);
  s.read16(A, 0, 16);
  s.read16(C, 0, 16);
  s.tmf(B, tmf::kTargetColdReset);
  s.pause();
  s.tur(A);
  return s.out;
}
}  // namespace

extern const std::vector<std::string> kFuzzSeeds = {
    interleaved(),        out_of_order(),     r2t_on_b(),          abort_task_across(),
    lun_reset(),          logout_other_cid(), logout_session(),    nops(),
    texts(),              bad_pdu(),          three_backwards(),   parked_then_a_lost(),
    parked_then_half_close(), pipelined_join(), small_segments(),  logout_parked(),
    unit_attention_and_unsolicited_abort(),   cold_reset(),
};
