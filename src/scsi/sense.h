#pragma once
// Sense data (SPC-4 4.5.3): fixed format only (response code 0x70), since the Control
// mode page reports D_SENSE=0. Every helper sets the command's status and sense bytes;
// none touches its data.

#include <cstdint>

#include "scsi/command.h"

namespace castor::scsi {

// Fixed-format layout.
inline constexpr uint8_t kSenseFixedCurrent = 0x70, kSenseValid = 0x80;
inline constexpr uint8_t kSenseFixedLen = 18;
inline constexpr uint8_t kSksv = 0x80, kSksCd = 0x40, kSksBpv = 0x08;

// Additional sense codes (ASC << 8 | ASCQ).
namespace asc {
inline constexpr uint16_t kNoAdditional = 0x0000, kWriteError = 0x0C00,
                          kInvalidFieldInCommandIu = 0x0E03, kUnrecoveredReadError = 0x1100,
                          kParameterListLengthError = 0x1A00, kMiscompare = 0x1D00,
                          kInvalidOpcode = 0x2000, kLbaOutOfRange = 0x2100,
                          kInvalidFieldInCdb = 0x2400, kLunNotSupported = 0x2500,
                          kInvalidFieldInParamList = 0x2600, kInvalidReleaseOfPr = 0x2604,
                          kWriteProtected = 0x2700, kSpaceAllocFailedWp = 0x2707,
                          kPowerOnReset = 0x2900, kLunReset = 0x2903,
                          kModeParametersChanged = 0x2A01, kReservationsPreempted = 0x2A03,
                          kReservationsReleased = 0x2A04, kRegistrationsPreempted = 0x2A05,
                          kCapacityDataChanged = 0x2A09,
                          kSavingNotSupported = 0x3900, kInternalTargetFailure = 0x4400,
                          kCrcErrorDetected = 0x4705;
}  // namespace asc

// Writes fixed-format sense data into `out` (at least 18 bytes); returns its length.
// `info` (when has_info) goes into INFORMATION with VALID set; `sks` (when nonzero) is
// the 3-byte sense-key-specific field, SKSV included.
uint8_t build_fixed_sense(uint8_t* out, uint8_t key, uint16_t asc_ascq, bool has_info = false,
                          uint32_t info = 0, uint32_t sks = 0);

// CHECK CONDITION with the given key and ASC/ASCQ.
void check_condition(Command& c, uint8_t key, uint16_t asc_ascq);
// 05/24/00 with SKSV, C/D=1 and the field pointer at CDB byte `byte` (bit `bit` when
// bit >= 0, BPV set).
void invalid_cdb_field(Command& c, uint32_t byte, int bit = -1);
// 05/26/00 with SKSV, C/D=0 and the field pointer at parameter-list byte `byte`.
void invalid_param_field(Command& c, uint32_t byte, int bit = -1);
// 0E/1D/00 with VALID and INFORMATION = byte offset of the first mismatching byte.
void miscompare(Command& c, uint32_t offset);

}  // namespace castor::scsi
