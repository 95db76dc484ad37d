#pragma once
// Layer 5 (front-end targets), shared SCSI part: a SCSI target device (SAM-5) whose
// logical units are bdevs, implementing the block commands (SBC-3) and primary commands
// (SPC-4) that Linux, VMware and libiscsi's conformance suite use. Transports (iSCSI)
// parse their own protocol and hand each command here as a scsi::Command.
//
// Threading: add_lun() and the ItNexus calls are control-path calls (any thread, not a
// reactor). execute() runs on the reactor that owns the calling connection; a command's
// I/O and its completion stay on that reactor. Shared state that several reactors see
// (reservations, unit attentions) is behind a mutex that the READ/WRITE fast path only
// takes when an attention or reservation exists (checked with one relaxed atomic load).

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "scsi/command.h"

namespace castor::scsi {

struct LunOptions {
  uint64_t lun = 0;
  std::string bdev;
  bool read_only = false;
  // Product identification reported by INQUIRY; the unit serial number (VPD 0x80) and
  // NAA designator (VPD 0x83) derive from the bdev's UUID so they are stable.
  std::string product = "Castor volume";
};

struct DeviceInfo {
  std::string target_name;  // e.g. the iSCSI target IQN; used in VPD 0x83 SCSI names
  std::string vendor = "CASTOR";
};

class LogicalUnit;

class Device {
 public:
  Device(bdev::BdevRegistry& registry, DeviceInfo info);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Opens the bdev (held open while the device lives). REQUIRES: before the device is
  // reachable by any transport. Errors: NotFound (bdev), AlreadyExists (LUN number),
  // InvalidArgument (LUN > 255 or block size not 512..4096 power of two).
  castor::Status add_lun(const LunOptions& o);
  std::vector<uint64_t> luns() const;
  const DeviceInfo& info() const { return info_; }

  // I_T nexus lifecycle. attach() at login (a new nexus sees a power-on unit attention,
  // 29/00, on its first command other than INQUIRY, REPORT LUNS and REQUEST SENSE);
  // detach() at logout or connection loss (releases its RESERVE(6) reservation; its
  // persistent-reservation registrations stay).
  void attach(const ItNexus& n);
  void detach(const ItNexus& n);

  // Executes `c` on reactor `r` (the caller's thread). `c.done` runs exactly once, on
  // `r`, on a later loop turn (never inside execute()). Unknown LUNs: INQUIRY answers
  // with peripheral qualifier 3, REPORT LUNS and REQUEST SENSE work, anything else gets
  // CHECK CONDITION 05/25/00.
  void execute(Command& c, reactor::Reactor& r);

  // Task management (after the transport has finished or aborted the nexus' tasks on
  // that LUN): LOGICAL UNIT RESET releases RESERVE(6) reservations and raises a unit
  // attention 29/03 on every other nexus. Returns false for an unknown LUN.
  bool lun_reset(uint64_t lun, const ItNexus& by);

  // Bdev `bdev` has grown: every LU over it queues a unit attention 2A/09 (CAPACITY
  // DATA HAS CHANGED) for every attached nexus; READ CAPACITY already answers the new
  // size. Returns the number of LUs over that bdev.
  size_t capacity_changed(const std::string& bdev);

 private:
  LogicalUnit* find(uint64_t lun) const;
  bdev::BdevRegistry& registry_;
  DeviceInfo info_;
  std::map<uint64_t, std::unique_ptr<LogicalUnit>> luns_;
  // Attached nexuses (id -> nexus), so LUs added later and LU resets can reach them.
  mutable std::mutex nexus_mu_;
  std::map<uint64_t, const ItNexus*> nexuses_;
};

}  // namespace castor::scsi
