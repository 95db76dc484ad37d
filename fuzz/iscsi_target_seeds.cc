// Seed inputs for iscsi_target_fuzz: whole initiator sessions. A normal session (login in
// one PDU, INQUIRY, READ CAPACITY, WRITE with immediate and unsolicited data, READ, NOP,
// text, ABORT TASK, LU RESET, logout), the same with header and data digests, a
// write that loses a Data-Out, a discovery session (SendTargets), and a CHAP login
// exchange.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "iscsi/protocol.h"
#include "iscsi/text.h"

using namespace castor::iscsi;

namespace {
struct Session {
  std::string out;
  uint32_t cmd_sn = 1;
  uint32_t itt = 1;
  bool hd = false, dd = false;

  void pdu(Bhs b, const std::string& data) {
    b.set_data_segment_length(static_cast<uint32_t>(data.size()));
    out.append(reinterpret_cast<const char*>(b.b), kBhsSize);
    if (hd) {
      uint32_t c = castor::crc32c(b.b, kBhsSize);
      out.append(reinterpret_cast<const char*>(&c), 4);
    }
    std::string padded = data + std::string(pad4(static_cast<uint32_t>(data.size())), '\0');
    out += padded;
    if (dd && !data.empty()) {
      uint32_t c = castor::crc32c(padded.data(), padded.size());
      out.append(reinterpret_cast<const char*>(&c), 4);
    }
  }
  Bhs hdr(uint8_t op, uint8_t flags) {
    Bhs b;
    b.clear();
    b.set_opcode(op);
    b.set_flags(flags);
    b.set_itt(itt++);
    return b;
  }
  void login(const std::string& text, uint8_t flags = 0x87) {
    Bhs b = hdr(op::kLogin | kImmediateBit, flags);
    const uint8_t isid[6] = {0x80, 0, 0, 1, 2, 3};
    std::memcpy(b.b + off::kIsid, isid, 6);
    b.set_u32(off::kLoginCmdSn, cmd_sn);
    pdu(b, text);
  }
  void scsi(const uint8_t* cdb, size_t n, uint8_t flags, uint32_t edtl, const std::string& imm = {}) {
    Bhs b = hdr(op::kScsiCmd, flags);
    b.set_u32(off::kEdtl, edtl);
    b.set_u32(off::kCmdSn, cmd_sn++);
    std::memcpy(b.b + off::kCdb, cdb, n);
    pdu(b, imm);
  }
  void data_out(uint32_t for_itt, uint32_t data_sn, uint32_t offset, const std::string& d, bool final) {
    pdu(data_out_bhs(for_itt, kReservedTag, data_sn, offset, final), d);
  }
};

std::string normal(bool digests) {
  Session s;
  s.login(text_pairs({{"InitiatorName", "iqn.fuzz:init"}, {"TargetName", "iqn.2026-11.io.castor:fuzz"},
              {"HeaderDigest", digests ? "CRC32C" : "None"}, {"DataDigest", digests ? "CRC32C" : "None"},
              {"InitialR2T", "No"}, {"ImmediateData", "Yes"}, {"MaxRecvDataSegmentLength", "8192"},
              {"FirstBurstLength", "65536"}, {"MaxBurstLength", "262144"}}));
  s.hd = s.dd = digests;
  const uint8_t inquiry[6] = {0x12, 0, 0, 0, 96, 0};
  s.scsi(inquiry, 6, kFinal | cmdflag::kRead, 96);
  const uint8_t vpd83[6] = {0x12, 1, 0x83, 0, 255, 0};
  s.scsi(vpd83, 6, kFinal | cmdflag::kRead, 255);
  const uint8_t rc16[16] = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};
  s.scsi(rc16, 16, kFinal | cmdflag::kRead, 32);
  const uint8_t w10[10] = {0x2a, 0, 0, 0, 0, 8, 0, 0, 4, 0};  // 4 blocks at LBA 8
  s.scsi(w10, 10, cmdflag::kWrite, 2048, std::string(512, 'a'));
  const uint32_t witt = s.itt - 1;
  s.data_out(witt, 0, 512, std::string(1024, 'b'), false);
  s.data_out(witt, 1, 1536, std::string(512, 'c'), true);
  const uint8_t r10[10] = {0x28, 0, 0, 0, 0, 8, 0, 0, 4, 0};
  s.scsi(r10, 10, kFinal | cmdflag::kRead, 2048);
  const uint8_t unmap[10] = {0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0};
  std::string params = std::string("\x00\x16\x00\x10\x00\x00\x00\x00", 8) +
                       std::string("\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x08\x00\x00\x00\x00", 16);
  s.scsi(unmap, 10, kFinal | cmdflag::kWrite, 24, params);
  Bhs nop = s.hdr(op::kNopOut | kImmediateBit, kFinal);
  nop.set_u32(off::kTtt, kReservedTag);
  nop.set_u32(off::kCmdSn, s.cmd_sn);
  s.pdu(nop, "ping");
  Bhs text = s.hdr(op::kText, kFinal);
  text.set_u32(off::kTtt, kReservedTag);
  text.set_u32(off::kCmdSn, s.cmd_sn++);
  s.pdu(text, text_pairs({{"SendTargets", ""}}));
  Bhs tmf = s.hdr(op::kTaskMgmt | kImmediateBit, kFinal | tmf::kAbortTask);
  tmf.set_u32(off::kRefTaskTag, 3);
  tmf.set_u32(off::kCmdSn, s.cmd_sn);
  s.pdu(tmf, "");
  Bhs reset = s.hdr(op::kTaskMgmt | kImmediateBit, kFinal | tmf::kLunReset);
  reset.set_u32(off::kCmdSn, s.cmd_sn);
  s.pdu(reset, "");
  Bhs lo = s.hdr(op::kLogout | kImmediateBit, kFinal | logout::kCloseSession);
  lo.set_u32(off::kCmdSn, s.cmd_sn);
  s.pdu(lo, "");
  return s.out;
}

// A write whose first unsolicited Data-Out is "lost" (DataSN starts at 1): the target
// fails it with 0B/47/05 after the final Data-Out and the session goes on with a read.
std::string lost_data_out() {
  Session s;
  s.login(text_pairs({{"InitiatorName", "iqn.fuzz:init"}, {"TargetName", "iqn.2026-11.io.castor:fuzz"},
              {"InitialR2T", "No"}, {"ImmediateData", "No"}, {"FirstBurstLength", "65536"}}));
  const uint8_t w10[10] = {0x2a, 0, 0, 0, 0, 8, 0, 0, 4, 0};
  s.scsi(w10, 10, cmdflag::kWrite, 2048);
  const uint32_t witt = s.itt - 1;
  s.data_out(witt, 1, 0, std::string(1024, 'b'), false);
  s.data_out(witt, 2, 1024, std::string(1024, 'c'), true);
  const uint8_t r10[10] = {0x28, 0, 0, 0, 0, 8, 0, 0, 4, 0};
  s.scsi(r10, 10, kFinal | cmdflag::kRead, 2048);
  return s.out;
}

std::string discovery() {
  Session s;
  s.login(text_pairs({{"InitiatorName", "iqn.fuzz:init"}, {"SessionType", "Discovery"}}));
  Bhs text = s.hdr(op::kText, kFinal);
  text.set_u32(off::kTtt, kReservedTag);
  text.set_u32(off::kCmdSn, s.cmd_sn++);
  s.pdu(text, text_pairs({{"SendTargets", "All"}}));
  Bhs lo = s.hdr(op::kLogout | kImmediateBit, kFinal);
  lo.set_u32(off::kCmdSn, s.cmd_sn);
  s.pdu(lo, "");
  return s.out;
}

std::string chap() {
  Session s;
  // Security stage: CSG 0 -> NSG 1 with T; then CHAP_A; then a (wrong) response.
  s.login(text_pairs({{"InitiatorName", "iqn.fuzz:init"}, {"TargetName", "iqn.2026-11.io.castor:chap"},
              {"AuthMethod", "CHAP,None"}}),
          0x81);
  s.login(text_pairs({{"CHAP_A", "5"}}), 0x01);
  s.login(text_pairs({{"CHAP_N", "user"}, {"CHAP_R", "0x00112233445566778899aabbccddeeff"},
              {"CHAP_I", "7"}, {"CHAP_C", "0x0102030405060708090a0b0c0d0e0f10"}}),
          0x81);
  return s.out;
}
}  // namespace

extern const std::vector<std::string> kFuzzSeeds = {normal(false), normal(true), lost_data_out(), discovery(),
                                                  chap()};
