#pragma once
// SCSI wire constants: opcodes, service actions and CDB field offsets. Multi-byte fields
// are big-endian throughout; they go through common/endian.h (load_be*/store_be*).

#include <cstddef>
#include <cstdint>

#include "common/endian.h"

namespace castor::scsi {

// ---- Operation codes (SPC-4, SBC-3) ----
namespace op {
inline constexpr uint8_t kTestUnitReady = 0x00, kRequestSense = 0x03, kRead6 = 0x08,
                         kWrite6 = 0x0A, kInquiry = 0x12, kModeSelect6 = 0x15,
                         kReserve6 = 0x16, kRelease6 = 0x17, kModeSense6 = 0x1A,
                         kStartStopUnit = 0x1B, kPreventAllow = 0x1E, kReadCapacity10 = 0x25,
                         kRead10 = 0x28, kWrite10 = 0x2A, kWriteVerify10 = 0x2E,
                         kVerify10 = 0x2F, kPreFetch10 = 0x34, kSyncCache10 = 0x35,
                         kWriteSame10 = 0x41, kUnmap = 0x42, kModeSelect10 = 0x55,
                         kModeSense10 = 0x5A, kPrIn = 0x5E, kPrOut = 0x5F, kRead16 = 0x88,
                         kCompareAndWrite = 0x89, kWrite16 = 0x8A, kWriteVerify16 = 0x8E,
                         kVerify16 = 0x8F, kPreFetch16 = 0x90, kSyncCache16 = 0x91,
                         kWriteSame16 = 0x93, kServiceActionIn16 = 0x9E, kReportLuns = 0xA0,
                         kMaintenanceIn = 0xA3, kRead12 = 0xA8, kWrite12 = 0xAA,
                         kWriteVerify12 = 0xAE, kVerify12 = 0xAF;
}  // namespace op

// Service actions.
inline constexpr uint8_t kSaReadCapacity16 = 0x10, kSaGetLbaStatus = 0x12,
                         kSaReportSupportedOpcodes = 0x0C;
namespace pr_in {
inline constexpr uint8_t kReadKeys = 0, kReadReservation = 1, kReportCapabilities = 2,
                         kReadFullStatus = 3;
}
namespace pr_out {
inline constexpr uint8_t kRegister = 0, kReserve = 1, kRelease = 2, kClear = 3, kPreempt = 4,
                         kPreemptAndAbort = 5, kRegisterAndIgnore = 6, kRegisterAndMove = 7;
}
// Persistent reservation types (SPC-4 table 187).
namespace pr_type {
inline constexpr uint8_t kWriteExclusive = 1, kExclusiveAccess = 3, kWriteExclusiveRegOnly = 5,
                         kExclusiveAccessRegOnly = 6, kWriteExclusiveAllReg = 7,
                         kExclusiveAccessAllReg = 8;
}

// ---- CDB field offsets and bits ----
namespace cdb {
// READ/WRITE/VERIFY(10/12/16) byte 1.
inline constexpr size_t kFlags = 1;
inline constexpr uint8_t kProtectMask = 0xE0, kDpo = 0x10, kFua = 0x08, kBytchkMask = 0x06;
// Control byte (last byte of the CDB): NACA is not supported.
inline constexpr uint8_t kNaca = 0x04;
// WRITE SAME byte 1.
inline constexpr uint8_t kWsAnchor = 0x10, kWsUnmap = 0x08, kWsNdob = 0x01;
// Immediate bit of SYNC CACHE / PRE-FETCH byte 1.
inline constexpr uint8_t kImmed = 0x02;
// INQUIRY.
inline constexpr size_t kInqFlags = 1, kInqPage = 2, kInqAlloc = 3;
inline constexpr uint8_t kEvpd = 0x01;
// MODE SENSE.
inline constexpr size_t kMsFlags = 1, kMsPage = 2, kMsSubpage = 3, kMs6Alloc = 4,
                        kMs10Alloc = 7;
inline constexpr uint8_t kDbd = 0x08, kLlbaa = 0x10;
// MODE SELECT.
inline constexpr size_t kMsel6Len = 4, kMsel10Len = 7;
inline constexpr uint8_t kPf = 0x10, kSp = 0x01;
// UNMAP.
inline constexpr size_t kUnmapLen = 7;
inline constexpr uint8_t kUnmapAnchor = 0x01;
// SERVICE ACTION IN(16) / MAINTENANCE IN.
inline constexpr size_t kSaByte = 1;
inline constexpr uint8_t kSaMask = 0x1F;
// REPORT LUNS.
inline constexpr size_t kRlSelect = 2, kRlAlloc = 6;
// PERSISTENT RESERVE IN/OUT.
inline constexpr size_t kPrScopeType = 2, kPrInAlloc = 7, kPrOutLen = 5;
}  // namespace cdb

// The length of a CDB from its opcode's group code (SPC-4 4.2.5.1); 0 = vendor/reserved.
inline size_t cdb_length(uint8_t opcode) {
  switch (opcode >> 5) {
    case 0: return 6;
    case 1:
    case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0;
  }
}

}  // namespace castor::scsi
