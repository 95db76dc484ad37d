#pragma once
// The NVMe reservation commands (Reservation Register 0Dh, Report 0Eh, Acquire 11h,
// Release 15h) against a namespace's bdev::ReservationTable, and the access check of the
// other I/O commands. Pure functions of the command's dwords and data, unit-tested; the
// target's queue pair fetches the data (in-capsule or by R2T) and sends the answer.
//
// Wire format (NVMe 2.0 section 7.x):
//   Register  CDW10 bits 2:0 RREGA (0 register, 1 unregister, 2 replace), bit 3 IEKEY,
//             bits 31:30 CPTPL; data CRKEY, NRKEY (16 bytes).
//   Acquire   CDW10 bits 2:0 RACQA (0 acquire, 1 preempt, 2 preempt and abort), bit 3
//             IEKEY, bits 15:8 RTYPE; data CRKEY, PRKEY (16 bytes).
//   Release   CDW10 bits 2:0 RRELA (0 release, 1 clear), bit 3 IEKEY, bits 15:8 RTYPE;
//             data CRKEY (8 bytes).
//   Report    CDW10 NUMD (0's based dwords), CDW11 bit 0 EDS; returns the reservation
//             status data structure (extended: 64-byte header and 64-byte entries).

#include <cstdint>
#include <span>
#include <vector>

#include "bdev/reservations.h"
#include "nvmf/codec/spec.h"

namespace castor::nvmf {

// Generic status 18h, Host Identifier Inconsistent Format: a Report without EDS while
// host identifiers are 128 bits (Identify Controller CTRATT bit 0).
inline constexpr uint8_t kScHostIdInconsistentFormat = 0x18;

// RESCAP (Identify Namespace byte 31): the six types, and IEKEY with NVMe 1.3 semantics
// (bit 7). Bit 0 (persist through power loss) is not offered.
inline constexpr uint8_t kRescap = 0x7e | 0x80;

// Bytes of host data the command carries: 16 (Register, Acquire), 8 (Release), else 0.
uint32_t reservation_data_len(uint8_t opcode);

// Register, Acquire or Release from `host` with its `data` (at least
// reservation_data_len() bytes). Returns the NVMe status (0: success; 83h Reservation
// Conflict; Invalid Field; Command Sequence Error for a zero host identifier, which
// cannot register), with DNR on errors. A failed command changes nothing.
uint16_t execute_reservation(bdev::ReservationTable& table, const bdev::HostId& host, const Sqe& sqe,
                             std::span<const uint8_t> data);

// Report: on success (0) *out holds NUMD * 4 bytes of the reservation status data
// structure (truncated, or zero-padded). Errors: Host Identifier Inconsistent Format
// without EDS; Invalid Field above 1 MiB.
uint16_t execute_reservation_report(const bdev::ReservationTable& table, const Sqe& sqe, std::vector<uint8_t>* out);

// The extended reservation status data structure for `r`, whole (64 + 64 per registrant).
std::vector<uint8_t> encode_reservation_report(const bdev::ReservationReport& r);

// Which reservation access an I/O opcode needs: 1 the write group (Write, Write Zeroes,
// Dataset Management, Flush), 0 a read (Read), -1 none (the reservation commands check
// registrations themselves).
inline int reservation_access(uint8_t opcode) {
  switch (opcode) {
    case io_op::kWrite:
    case io_op::kWriteZeroes:
    case io_op::kDatasetManagement:
    case io_op::kFlush: return 1;
    case io_op::kRead: return 0;
    default: return -1;
  }
}

// The NVMe status for a ReservationTable error: Busy -> Reservation Conflict, anything
// else -> Invalid Field (DNR either way); 0 for ok.
uint16_t reservation_status(const Status& st);

}  // namespace castor::nvmf
