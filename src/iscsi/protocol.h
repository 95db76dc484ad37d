#pragma once
// Layer 5: iSCSI wire format (RFC 7143 §11). The 48-byte Basic Header Segment (BHS) is
// handled as bytes with named offsets; every multi-byte field is big-endian. Offsets are
// checked at compile time against the RFC's layout. Nothing here allocates.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/endian.h"

namespace castor::iscsi {

inline constexpr size_t kBhsSize = 48;
inline constexpr size_t kDigestSize = 4;
inline constexpr uint32_t kReservedTag = 0xFFFFFFFF;  // "no ITT/TTT"
inline constexpr uint16_t kDefaultPort = 3260;

// Opcodes (byte 0, bits 5:0). Initiator → target:
namespace op {
inline constexpr uint8_t kNopOut = 0x00, kScsiCmd = 0x01, kTaskMgmt = 0x02, kLogin = 0x03, kText = 0x04,
                         kDataOut = 0x05, kLogout = 0x06, kSnack = 0x10;
// Target → initiator:
inline constexpr uint8_t kNopIn = 0x20, kScsiResp = 0x21, kTaskMgmtResp = 0x22, kLoginResp = 0x23,
                         kTextResp = 0x24, kDataIn = 0x25, kLogoutResp = 0x26, kR2t = 0x31, kAsync = 0x32,
                         kReject = 0x3F;
}  // namespace op

inline constexpr uint8_t kImmediateBit = 0x40;  // byte 0
inline constexpr uint8_t kOpcodeMask = 0x3F;

// Byte 1 flags.
inline constexpr uint8_t kFinal = 0x80;
namespace cmdflag {  // SCSI Command
inline constexpr uint8_t kRead = 0x40, kWrite = 0x20, kAttrMask = 0x07;
}
namespace respflag {  // SCSI Response / Data-In
inline constexpr uint8_t kBidiOverflow = 0x10, kBidiUnderflow = 0x08, kOverflow = 0x04, kUnderflow = 0x02,
                         kStatus = 0x01 /* Data-In only */, kAck = 0x40 /* Data-In only */;
}
namespace loginflag {
inline constexpr uint8_t kTransit = 0x80, kContinue = 0x40;
inline constexpr uint8_t csg(uint8_t b1) { return (b1 >> 2) & 3; }
inline constexpr uint8_t nsg(uint8_t b1) { return b1 & 3; }
}  // namespace loginflag
inline constexpr uint8_t kTextContinue = 0x40;

// Login stages.
namespace stage {
inline constexpr uint8_t kSecurity = 0, kOperational = 1, kFullFeature = 3;
}

// Common BHS field offsets.
namespace off {
inline constexpr size_t kOpcode = 0, kFlags = 1, kTotalAhsLength = 4, kDataSegmentLength = 5, kLun = 8,
                        kItt = 16;
// SCSI Command
inline constexpr size_t kEdtl = 20, kCmdSn = 24, kExpStatSn = 28, kCdb = 32;
// Responses (SCSI Response, Data-In, R2T, NOP-In, Text/Login/Logout/TMF responses, Reject)
inline constexpr size_t kResponse = 2, kStatus = 3, kTtt = 20, kStatSn = 24, kExpCmdSn = 28, kMaxCmdSn = 32;
inline constexpr size_t kExpDataSn = 36, kBidiResidual = 40, kResidual = 44;
// Data-In / Data-Out / R2T
inline constexpr size_t kDataSn = 36, kBufferOffset = 40, kDesiredLength = 44;
// Login request/response
inline constexpr size_t kVersionMax = 2, kVersionMin = 3, kIsid = 8, kTsih = 14, kCid = 20,
                        kLoginCmdSn = 24, kStatusClass = 36, kStatusDetail = 37;
// Task management
inline constexpr size_t kRefTaskTag = 20, kRefCmdSn = 32;
// Logout response
inline constexpr size_t kTime2Wait = 40, kTime2Retain = 42;
}  // namespace off
static_assert(off::kCdb + 16 == kBhsSize, "the CDB fills the BHS to its end");
static_assert(off::kResidual + 4 == kBhsSize, "the residual count is the BHS's last word");
static_assert(off::kTsih + 2 == off::kItt, "ISID(6) and TSIH(2) fill the LUN field of a login PDU");
static_assert(off::kTime2Retain + 2 <= kBhsSize);

// Task management functions and responses (RFC 7143 §11.5, §11.6).
namespace tmf {
inline constexpr uint8_t kAbortTask = 1, kAbortTaskSet = 2, kClearAca = 3, kClearTaskSet = 4, kLunReset = 5,
                         kTargetWarmReset = 6, kTargetColdReset = 7, kTaskReassign = 8;
inline constexpr uint8_t kComplete = 0, kNoTask = 1, kNoLun = 2, kNotSupported = 5, kRejected = 255;
}  // namespace tmf

// Reject reasons (§11.17.1).
namespace reject {
inline constexpr uint8_t kDataDigest = 0x02, kProtocolError = 0x04, kCommandNotSupported = 0x05,
                         kImmediateRejected = 0x06, kInvalidPduField = 0x09, kOutOfResources = 0x0A,
                         kWaitingForLogout = 0x0C;
}

// Login status: class << 8 | detail (§11.13.5).
namespace login_status {
inline constexpr uint16_t kSuccess = 0x0000, kInitiatorError = 0x0200, kAuthFailed = 0x0201,
                          kForbidden = 0x0202, kTargetNotFound = 0x0203, kUnsupportedVersion = 0x0205,
                          kTooManyConnections = 0x0206,
                          kMissingParameter = 0x0207, kSessionTypeUnsupported = 0x0209,
                          kSessionNotFound = 0x020A, kInvalidDuringLogin = 0x020B, kTargetError = 0x0300,
                          kOutOfResources = 0x0302;
}

// Logout reasons and responses.
namespace logout {
inline constexpr uint8_t kCloseSession = 0, kCloseConnection = 1, kRemoveForRecovery = 2;
inline constexpr uint8_t kOk = 0, kCidNotFound = 1, kRecoveryUnsupported = 2;
}  // namespace logout

// One BHS being parsed or built. Plain bytes plus accessors, so a header can be read in
// place from a receive buffer (the 48 bytes are copied once, to get alignment-free
// access and a stable view after the buffer moves on).
struct Bhs {
  uint8_t b[kBhsSize];

  uint8_t opcode() const { return b[off::kOpcode] & kOpcodeMask; }
  bool immediate() const { return b[off::kOpcode] & kImmediateBit; }
  uint8_t flags() const { return b[off::kFlags]; }
  bool final() const { return b[off::kFlags] & kFinal; }
  uint32_t total_ahs_bytes() const { return uint32_t{b[off::kTotalAhsLength]} * 4; }
  uint32_t data_segment_length() const { return load_be24(b + off::kDataSegmentLength); }
  uint64_t lun_field() const { return load_be64(b + off::kLun); }
  uint32_t itt() const { return load_be32(b + off::kItt); }
  uint32_t u32(size_t o) const { return load_be32(b + o); }
  uint16_t u16(size_t o) const { return load_be16(b + o); }

  void clear() { std::memset(b, 0, sizeof b); }
  void set_opcode(uint8_t op) { b[off::kOpcode] = op; }
  void set_flags(uint8_t f) { b[off::kFlags] = f; }
  void set_data_segment_length(uint32_t n) { store_be24(b + off::kDataSegmentLength, n); }
  void set_itt(uint32_t v) { store_be32(b + off::kItt, v); }
  void set_u32(size_t o, uint32_t v) { store_be32(b + o, v); }
  void set_u16(size_t o, uint16_t v) { store_be16(b + o, v); }
};
static_assert(sizeof(Bhs) == kBhsSize);

// An initiator's Data-Out header (§11.7): for the command `itt`, answering the R2T with
// `ttt` (kReservedTag for unsolicited data), DataSN within its sequence, at `offset`.
// The data segment length is set when the PDU is sent.
inline Bhs data_out_bhs(uint32_t itt, uint32_t ttt, uint32_t data_sn, uint32_t offset, bool final) {
  Bhs b;
  b.clear();
  b.set_opcode(op::kDataOut);
  b.set_flags(final ? kFinal : 0);
  b.set_itt(itt);
  b.set_u32(off::kTtt, ttt);
  b.set_u32(off::kDataSn, data_sn);
  b.set_u32(off::kBufferOffset, offset);
  return b;
}

// The LUN field (SAM-5 §4.7): single-level peripheral (byte 0 = 0x00, byte 1 = LUN) and
// flat (byte 0 = 0x40 | high bits) addressing. Returns the LUN number, or UINT64_MAX for a
// format Castor does not use (the command then sees "LUN not supported").
inline uint64_t decode_lun(uint64_t field) {
  const uint8_t method = static_cast<uint8_t>(field >> 62);
  if ((field & 0x0000FFFFFFFFFFFFull) != 0) return UINT64_MAX;  // second level and beyond
  const uint64_t first = (field >> 48) & 0x3FFF;
  if (method == 0 || method == 1) return first;
  return UINT64_MAX;
}
inline uint64_t encode_lun(uint64_t lun) {
  return lun < 256 ? (lun << 48) : ((0x4000 | (lun & 0x3FFF)) << 48);
}

inline uint32_t pad4(uint32_t n) { return (4 - (n & 3)) & 3; }

// Serial number arithmetic (RFC 1982, 32-bit): a < b.
inline bool sn_lt(uint32_t a, uint32_t b) { return a != b && static_cast<int32_t>(a - b) < 0; }
inline bool sn_le(uint32_t a, uint32_t b) { return a == b || sn_lt(a, b); }

}  // namespace castor::iscsi
