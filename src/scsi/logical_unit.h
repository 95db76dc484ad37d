#pragma once
// One SCSI logical unit (SBC-3 direct-access block device) backed by one bdev: command
// decoding and validation, the data path onto the bdev, unit attentions, RESERVE(6) and
// persistent reservations. Device owns the LUs and routes commands to them.
//
// Threading: execute() runs on any reactor; the I/O and the completion of a command stay
// on the reactor it arrived on (the bdev channel of that reactor). Unit attentions,
// reservations and the COMPARE AND WRITE lock are shared by all reactors and guarded by
// mu_; `gate_` mirrors "anything under mu_ that READ/WRITE must look at" so the fast
// path only loads one relaxed atomic when nothing is pending.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bdev/bdev.h"
#include "frontend/block_commands.h"
#include "scsi/command.h"
#include "scsi/device.h"

namespace castor::scsi {

// Limits reported in VPD page B0 and enforced on the CDBs.
inline constexpr uint32_t kMaxTransferBytes = 64u << 20;   // per READ/WRITE/VERIFY
inline constexpr uint32_t kMaxUnmapDescriptors = 256;
inline constexpr uint32_t kMaxUnmapBlocks = 1u << 20;      // per UNMAP command (libiscsi: <= 1 Mi)
inline constexpr uint64_t kMaxWriteSameBlocks = 1u << 22;  // per WRITE SAME
inline constexpr uint32_t kWriteSameChunkBytes = 256u << 10;  // replicate buffer
inline constexpr uint8_t kMaxCawBlocks = 1;

// Completes `c` on a later loop turn of c.reactor (required whenever the completion is
// decided inside execute()).
void finish_later(Command& c);
// Grows c.buf to at least `n` bytes (alignment max(4096, align)), keeping its first
// `keep` bytes. Allocates only when the buffer is too small.
void grow_buffer(Command& c, size_t n, size_t keep, size_t align);
// Runs `c.done` now. REQUIRES: not inside execute() (an I/O callback or a message).
inline void finish_now(Command& c) { c.done(c, c.done_arg); }

class LogicalUnit {
 public:
  LogicalUnit(const DeviceInfo& info, const LunOptions& o, bdev::BdevDesc desc);
  LogicalUnit(const LogicalUnit&) = delete;
  LogicalUnit& operator=(const LogicalUnit&) = delete;

  uint64_t lun() const { return opts_.lun; }
  bdev::Bdev& bdev() const { return *desc_.bdev(); }

  // Nexus lifecycle (see Device). attach() queues a 29/00 unit attention for `n`.
  void attach(const ItNexus& n);
  // Drops `n`'s unit attentions and its RESERVE(6) reservation.
  void detach(const ItNexus& n);
  // LOGICAL UNIT RESET: releases RESERVE(6), unit attention 29/03 for the other nexuses.
  void reset(const ItNexus& by);
  // The bdev grew (READ CAPACITY reads its size live): unit attention 2A/09 CAPACITY
  // DATA HAS CHANGED for every attached nexus.
  void capacity_changed();

  // Runs `c`, whose LUN is this LU. REQUIRES: c.reactor set to the calling reactor,
  // c.reset_result() done. `done` runs once, on a later loop turn.
  void execute(Command& c);

  // REQUEST SENSE: fills `out` (18 bytes) with the oldest pending unit attention of the
  // nexus (and clears it) or NO SENSE.
  void request_sense(const ItNexus* n, uint8_t* out);

 private:
  // What a command does, for unit attentions and reservation conflicts (SPC-4 5.12.1).
  enum class Access : uint8_t {
    kUaExempt,  // INQUIRY, REPORT LUNS, REQUEST SENSE: no UA, no conflict
    kAllowed,   // no conflict with any reservation (READ CAPACITY, TUR, PR IN/OUT, ...)
    kRead,      // reads the medium or its state
    kWrite,     // changes the medium or its state
  };
  struct Ua {
    uint16_t asc_ascq;
  };
  struct Registrant {
    uint64_t key = 0;
    uint16_t rel_port = 1;
  };
  enum Gate : uint32_t { kGateUa = 1, kGateReserve6 = 2, kGatePr = 4, kGateCaw = 8 };

  // ---- shared state (mu_) ----
  // Returns false (and sets the status/sense of c) if `c` must not run: a pending unit
  // attention or a reservation conflict. REQUIRES: mu_ held.
  bool admit_locked(Command& c, Access a, uint8_t op);
  bool pr_conflict_locked(const std::string& port, Access a) const;
  void add_ua_locked(uint64_t nexus, uint16_t asc_ascq);
  void add_ua_registrants_locked(const std::string& except_port, uint16_t asc_ascq);
  void update_gate_locked();
  // Takes mu_ only when the gate says something is pending.
  bool admit(Command& c, Access a, uint8_t op);

  // ---- command handlers (each sets the result and completes c) ----
  void dispatch(Command& c);
  void fail(Command& c, uint8_t key, uint16_t asc_ascq);
  void fail_field(Command& c, uint32_t byte, int bit = -1);
  void good(Command& c) { finish_later(c); }
  // Completes `c` with the sense data of a refusal by the block-command rules.
  void refuse(Command& c, frontend::Reason r);
  // Range check (overflow-safe): false and 05/21/00 if lba + blocks > capacity.
  bool check_range(Command& c, uint64_t lba, uint64_t blocks);
  // Data-In staging: a zeroed buffer of at least `n` bytes.
  uint8_t* data_in(Command& c, size_t n);
  void send_data_in(Command& c, size_t avail, size_t alloc);
  // Grows c.buf to `n` bytes keeping its first `keep` bytes.
  void ensure_buf(Command& c, size_t n, size_t keep);

  void inquiry(Command& c);
  size_t vpd_page(Command& c, uint8_t page, uint8_t* p);
  void mode_sense(Command& c, bool ten);
  size_t mode_page(uint8_t page, uint8_t pc, uint8_t* p) const;
  void mode_select(Command& c, bool ten);
  void read_capacity10(Command& c);
  void read_capacity16(Command& c);
  void get_lba_status(Command& c);
  void report_supported_opcodes(Command& c);

  void rw(Command& c, uint8_t op);
  void verify(Command& c, uint8_t op);
  void sync_cache(Command& c, uint8_t op);
  void prefetch(Command& c, uint8_t op);
  void write_same(Command& c, uint8_t op);
  void unmap(Command& c);
  void compare_and_write(Command& c);
  void start_stop(Command& c);
  void prevent_allow(Command& c);

  void reserve6(Command& c);
  void release6(Command& c);
  void pr_in(Command& c);
  void pr_out(Command& c);

  // ---- I/O state machine ----
  enum Stage : uint32_t {
    kStageNone = 0,
    kStageReadDone,     // READ finished
    kStageWriteDone,    // WRITE finished (durable already if it had FUA)
    kStageFlushDone,    // SYNCHRONIZE CACHE finished
    kStageVerifyRead,   // VERIFY BYTCHK: medium read into buf + aux; aux2 = bytchk
    kStageCawRead,      // COMPARE AND WRITE: medium read into buf + 2*bs
    kStageCawWrite,     // COMPARE AND WRITE: write done
    kStageWsWrite,      // WRITE SAME replicate: aux = next LBA, aux2 = end LBA
    kStageZeroDone,     // WRITE SAME via write-zeroes
    kStageUnmap,        // UNMAP: aux = next descriptor index, aux2 = count
  };
  // `fua`: a write whose CDB had FUA set; the bdev layer completes it once durable.
  void submit(Command& c, bdev::IoType t, uint64_t lba, uint64_t blocks, uint8_t* buf,
              Stage next, bool fua = false);
  static void on_io(bdev::IoRequest& req, void* arg);
  void advance(Command& c);
  void io_failed(Command& c, bdev::IoStatus s);
  void ws_next(Command& c);
  void unmap_next(Command& c);
  void caw_start(Command& c);
  void caw_release(Command& c);

  const DeviceInfo& info_;
  LunOptions opts_;
  bdev::BdevDesc desc_;
  uint32_t bs_ = 512;
  // The block-command rules' view of the bdev and what this LU advertises. Discards
  // (UNMAP, WRITE SAME with UNMAP) must zero, since LBPRZ is reported with them; logical
  // block provisioning (LBPU, LBPWS, the UNMAP limits) is offered iff adv_.discard.
  frontend::BdevCaps caps_;
  frontend::Advertised adv_;

  mutable std::mutex mu_;
  std::atomic<uint32_t> gate_{0};
  std::map<uint64_t, std::string> nexuses_;  // attached: id -> initiator port
  std::map<uint64_t, std::vector<Ua>> ua_;
  std::optional<uint64_t> reserve6_holder_;
  // Persistent reservations, by initiator port (in memory only: PTPL_C = 0).
  uint32_t pr_generation_ = 0;
  std::map<std::string, Registrant> registrants_;
  bool pr_active_ = false;
  std::string pr_holder_;  // empty for all-registrants types
  uint8_t pr_type_ = 0;
  // COMPARE AND WRITE: one at a time per LU; writes overlapping its LBA wait too.
  bool caw_busy_ = false;
  uint64_t caw_lba_ = 0;
  std::vector<Command*> caw_waiters_;
};

}  // namespace castor::scsi
