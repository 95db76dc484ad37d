#pragma once
// Layer 5 (front-end targets), shared SCSI part: one SCSI command as a transport (iSCSI
// today) hands it to a scsi::Device, and what comes back (status, sense, data).
//
// Ownership: the transport owns each Command from receipt until `done` runs, and reuses
// it afterwards (so `buf` keeps its capacity and the I/O path allocates nothing once warm).

#include <cstdint>
#include <span>
#include <string>

#include "bdev/bdev.h"

namespace castor::scsi {

// SAM-5 status codes.
enum class Status : uint8_t {
  kGood = 0x00,
  kCheckCondition = 0x02,
  kConditionMet = 0x04,
  kBusy = 0x08,
  kReservationConflict = 0x18,
  kTaskSetFull = 0x28,
  kTaskAborted = 0x40,
};

namespace sense_key {
inline constexpr uint8_t kNoSense = 0x0, kNotReady = 0x2, kMediumError = 0x3, kHardwareError = 0x4,
                         kIllegalRequest = 0x5, kUnitAttention = 0x6, kDataProtect = 0x7,
                         kAbortedCommand = 0xB, kMiscompare = 0xE;
}

// One I_T nexus (SAM-5): an initiator port talking to a target port. The transport
// creates it at login and keeps it alive while its session lives. Reservations and
// unit attentions are kept per nexus.
struct ItNexus {
  uint64_t id = 0;                // unique per Device for the process lifetime
  std::string initiator_name;     // iSCSI: the InitiatorName
  std::string initiator_port;     // iSCSI: "<InitiatorName>,i,0x<ISID hex>"
  std::string target_port;        // iSCSI: "<TargetName>,t,0x<TPGT hex>"
  uint16_t relative_port = 1;     // relative target port identifier
};

enum class DataDir : uint8_t { kNone, kIn, kOut };

struct Command;
using CommandDone = void (*)(Command& c, void* arg);

struct Command {
  // ---- set by the transport before Device::execute ----
  uint8_t cdb[16]{};
  uint64_t lun = 0;            // the LUN number (iSCSI: from the LUN field, flat/peripheral)
  const ItNexus* nexus = nullptr;
  uint32_t edtl = 0;           // expected data transfer length the initiator announced
  // Data-Out the initiator sent (writes), in buf[0, data_out_len). Never more than edtl.
  uint32_t data_out_len = 0;
  // Data buffer: Data-Out arrives here; Data-In is produced here. The device grows it
  // when needed (allocation only when a bigger command than ever before arrives).
  bdev::DmaBuffer buf;
  CommandDone done = nullptr;
  void* done_arg = nullptr;

  // ---- set by the device before `done` runs ----
  Status status = Status::kGood;
  // Bytes the command transfers according to its CDB (for Data-In: what it would
  // return, already capped by its allocation length; for Data-Out: what the CDB asks
  // for). The transport sends min(xfer_len, edtl) Data-In bytes from buf and derives
  // the residual (overflow/underflow) from xfer_len against edtl.
  uint32_t xfer_len = 0;
  DataDir dir = DataDir::kNone;
  uint8_t sense[32]{};
  uint8_t sense_len = 0;

  // ---- device-private scratch, valid while executing ----
  bdev::IoRequest io;
  iovec iov{};
  uint32_t stage = 0;
  uint64_t aux = 0;
  uint64_t aux2 = 0;
  void* owner = nullptr;                // the logical unit running the command
  reactor::Reactor* reactor = nullptr;  // the reactor execute() was called on

  void reset_result() {
    status = Status::kGood;
    xfer_len = 0;
    dir = DataDir::kNone;
    sense_len = 0;
    stage = 0;
    aux = 0;
    aux2 = 0;
  }
};

}  // namespace castor::scsi
