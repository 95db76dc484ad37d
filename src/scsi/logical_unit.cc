// Logical unit: dispatch, the media-access commands and the I/O state machine.
#include "scsi/logical_unit.h"

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "scsi/sense.h"
#include "scsi/wire.h"

namespace castor::scsi {

using bdev::IoStatus;
using bdev::IoType;
using frontend::Action;
using frontend::Op;
using frontend::Reason;

namespace {
// CDB layouts of the LBA-addressed commands (SBC-3 5.x): offset of the LBA and of the
// transfer length, and their widths.
struct LbaLayout {
  size_t lba_off;
  size_t lba_bytes;  // 4 or 8 (READ/WRITE(6) are decoded separately)
  size_t len_off;
  size_t len_bytes;  // 2 or 4
};
constexpr LbaLayout k10{2, 4, 7, 2};
constexpr LbaLayout k12{2, 4, 6, 4};
constexpr LbaLayout k16{2, 8, 10, 4};
// READ/WRITE(6): 21-bit LBA in bytes 1..3, length in byte 4 (0 = 256 blocks).
constexpr size_t kRw6Lba = 1, kRw6Len = 4;
constexpr uint32_t kRw6LbaMask = 0x1FFFFF;
constexpr uint8_t kRw6Reserved = 0xE0;
// COMPARE AND WRITE: LBA at 2 (8 bytes), NUMBER OF LOGICAL BLOCKS at 13.
constexpr size_t kCawLba = 2, kCawLen = 13;
// UNMAP parameter list: header then 16-byte descriptors {LBA(8), blocks(4), rsvd(4)}.
constexpr size_t kUnmapHeader = 8, kUnmapDescLen = 2, kUnmapDescSize = 16;
// START STOP UNIT / PREVENT ALLOW MEDIUM REMOVAL.
constexpr size_t kSsuFlags = 4, kPreventByte = 4;
constexpr uint8_t kSsuLoej = 0x02, kPreventMask = 0x03;
constexpr uint64_t kFuaFlag = 1;

uint64_t lba_of(const uint8_t* cdb, const LbaLayout& l) {
  return l.lba_bytes == 8 ? load_be64(cdb + l.lba_off) : load_be32(cdb + l.lba_off);
}
uint32_t len_of(const uint8_t* cdb, const LbaLayout& l) {
  return l.len_bytes == 4 ? load_be32(cdb + l.len_off) : load_be16(cdb + l.len_off);
}
const LbaLayout& layout_of(uint8_t op) {
  switch (op >> 5) {
    case 1:
    case 2: return k10;
    case 5: return k12;
    default: return k16;
  }
}
size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Offset of the first byte where a and b differ, or `n` if equal.
size_t first_mismatch(const uint8_t* a, const uint8_t* b, size_t n) {
  if (std::memcmp(a, b, n) == 0) return n;
  size_t i = 0;
  while (a[i] == b[i]) ++i;
  return i;
}

bool implemented(uint8_t o) {
  switch (o) {
    case op::kTestUnitReady: case op::kRequestSense: case op::kInquiry:
    case op::kModeSense6: case op::kModeSense10: case op::kModeSelect6: case op::kModeSelect10:
    case op::kReadCapacity10: case op::kServiceActionIn16: case op::kMaintenanceIn:
    case op::kRead6: case op::kRead10: case op::kRead12: case op::kRead16:
    case op::kWrite6: case op::kWrite10: case op::kWrite12: case op::kWrite16:
    case op::kWriteVerify10: case op::kWriteVerify12: case op::kWriteVerify16:
    case op::kVerify10: case op::kVerify12: case op::kVerify16:
    case op::kSyncCache10: case op::kSyncCache16: case op::kPreFetch10: case op::kPreFetch16:
    case op::kWriteSame10: case op::kWriteSame16: case op::kUnmap: case op::kCompareAndWrite:
    case op::kStartStopUnit: case op::kPreventAllow: case op::kReserve6: case op::kRelease6:
    case op::kPrIn: case op::kPrOut:
      return true;
    default:
      return false;
  }
}

bool all_zero(const uint8_t* p, size_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}
}  // namespace

void finish_later(Command& c) {
  c.io.cb_arg = &c;
  c.io.Task::fn = [](reactor::Task* t) {
    auto* io = static_cast<bdev::IoRequest*>(t);
    auto* cmd = static_cast<Command*>(io->cb_arg);
    cmd->done(*cmd, cmd->done_arg);
  };
  c.reactor->defer(&c.io);
}

void grow_buffer(Command& c, size_t n, size_t keep, size_t align) {
  if (c.buf.size() >= n) return;
  bdev::DmaBuffer nb(n, std::max<size_t>(4096, align));
  keep = std::min(keep, c.buf.size());
  if (keep) std::memcpy(nb.data(), c.buf.data(), keep);
  c.buf = std::move(nb);
}

LogicalUnit::LogicalUnit(const DeviceInfo& info, const LunOptions& o, bdev::BdevDesc desc)
    : info_(info), opts_(o), desc_(std::move(desc)) {
  bs_ = bdev().block_size();
  caps_ = frontend::caps_of(bdev());
  adv_ = frontend::advertise(caps_, opts_.read_only, frontend::Discard::kZeroing);
}

// ---- helpers ----

void LogicalUnit::fail(Command& c, uint8_t key, uint16_t asc_ascq) {
  check_condition(c, key, asc_ascq);
  // Short Data-Out (0E/03) keeps the CDB's transfer length: the transport reports the
  // residual against it (RFC 7143 §11.4.5.2, and libiscsi's residual tests check it).
  if (asc_ascq != asc::kInvalidFieldInCommandIu) c.xfer_len = 0;
  finish_later(c);
}

void LogicalUnit::fail_field(Command& c, uint32_t byte, int bit) {
  invalid_cdb_field(c, byte, bit);
  c.xfer_len = 0;
  finish_later(c);
}

void LogicalUnit::refuse(Command& c, Reason r) {
  switch (r) {
    case Reason::kReadOnly: return fail(c, sense_key::kDataProtect, asc::kWriteProtected);
    case Reason::kOutOfRange: return fail(c, sense_key::kIllegalRequest, asc::kLbaOutOfRange);
    case Reason::kUnsupported: return fail(c, sense_key::kIllegalRequest, asc::kInvalidOpcode);
    case Reason::kNotFast: break;  // SCSI never asks for it
  }
  fail(c, sense_key::kHardwareError, asc::kInternalTargetFailure);
}

bool LogicalUnit::check_range(Command& c, uint64_t lba, uint64_t blocks) {
  if (auto r = frontend::check_range(bdev().num_blocks(), lba, blocks)) {
    refuse(c, *r);
    return false;
  }
  return true;
}

void LogicalUnit::ensure_buf(Command& c, size_t n, size_t keep) {
  grow_buffer(c, n, keep, bdev().buf_align());
}

uint8_t* LogicalUnit::data_in(Command& c, size_t n) {
  ensure_buf(c, n, 0);
  std::memset(c.buf.data(), 0, n);
  return c.buf.data();
}

void LogicalUnit::send_data_in(Command& c, size_t avail, size_t alloc) {
  c.dir = DataDir::kIn;
  c.xfer_len = static_cast<uint32_t>(std::min(avail, alloc));
  good(c);
}

// ---- dispatch ----

void LogicalUnit::execute(Command& c) {
  c.owner = this;
  dispatch(c);
}

void LogicalUnit::dispatch(Command& c) {
  const uint8_t op = c.cdb[0];
  Access a = Access::kAllowed;
  switch (op) {
    case op::kInquiry:
    case op::kReportLuns:
    case op::kRequestSense:
      a = Access::kUaExempt;
      break;
    case op::kRead6: case op::kRead10: case op::kRead12: case op::kRead16:
    case op::kVerify10: case op::kVerify12: case op::kVerify16:
    case op::kPreFetch10: case op::kPreFetch16:
    case op::kModeSense6: case op::kModeSense10:
      a = Access::kRead;
      break;
    case op::kServiceActionIn16:
      a = (c.cdb[cdb::kSaByte] & cdb::kSaMask) == kSaGetLbaStatus ? Access::kRead
                                                                  : Access::kAllowed;
      break;
    case op::kWrite6: case op::kWrite10: case op::kWrite12: case op::kWrite16:
    case op::kWriteVerify10: case op::kWriteVerify12: case op::kWriteVerify16:
    case op::kWriteSame10: case op::kWriteSame16: case op::kUnmap:
    case op::kCompareAndWrite: case op::kSyncCache10: case op::kSyncCache16:
    case op::kModeSelect6: case op::kModeSelect10: case op::kStartStopUnit:
    case op::kPreventAllow:
      a = Access::kWrite;
      break;
    default:
      break;
  }
  if (!admit(c, a, op)) {
    c.xfer_len = 0;
    finish_later(c);
    return;
  }
  // Opcodes this LU does not implement get 05/20/00 before any field is looked at.
  if (!implemented(op)) return fail(c, sense_key::kIllegalRequest, asc::kInvalidOpcode);
  if (size_t len = cdb_length(op); len && (c.cdb[len - 1] & cdb::kNaca)) {
    fail_field(c, static_cast<uint32_t>(len - 1), 2);
    return;
  }
  switch (op) {
    case op::kTestUnitReady: good(c); return;
    case op::kRequestSense: {
      constexpr size_t kDescByte = 1, kAllocByte = 4;
      if (c.cdb[kDescByte] & 0x01) return fail_field(c, kDescByte, 0);
      uint8_t* p = data_in(c, kSenseFixedLen);
      request_sense(c.nexus, p);
      return send_data_in(c, kSenseFixedLen, c.cdb[kAllocByte]);
    }
    case op::kInquiry: return inquiry(c);
    case op::kModeSense6: return mode_sense(c, false);
    case op::kModeSense10: return mode_sense(c, true);
    case op::kModeSelect6: return mode_select(c, false);
    case op::kModeSelect10: return mode_select(c, true);
    case op::kReadCapacity10: return read_capacity10(c);
    case op::kServiceActionIn16:
      switch (c.cdb[cdb::kSaByte] & cdb::kSaMask) {
        case kSaReadCapacity16: return read_capacity16(c);
        case kSaGetLbaStatus: return get_lba_status(c);
        default: return fail_field(c, cdb::kSaByte, 4);
      }
    case op::kMaintenanceIn:
      if ((c.cdb[cdb::kSaByte] & cdb::kSaMask) == kSaReportSupportedOpcodes) {
        return report_supported_opcodes(c);
      }
      return fail_field(c, cdb::kSaByte, 4);
    case op::kRead6: case op::kRead10: case op::kRead12: case op::kRead16:
    case op::kWrite6: case op::kWrite10: case op::kWrite12: case op::kWrite16:
    case op::kWriteVerify10: case op::kWriteVerify12: case op::kWriteVerify16:
      return rw(c, op);
    case op::kVerify10: case op::kVerify12: case op::kVerify16: return verify(c, op);
    case op::kSyncCache10: case op::kSyncCache16: return sync_cache(c, op);
    case op::kPreFetch10: case op::kPreFetch16: return prefetch(c, op);
    case op::kWriteSame10: case op::kWriteSame16: return write_same(c, op);
    case op::kUnmap: return unmap(c);
    case op::kCompareAndWrite: return compare_and_write(c);
    case op::kStartStopUnit: return start_stop(c);
    case op::kPreventAllow: return prevent_allow(c);
    case op::kReserve6: return reserve6(c);
    case op::kRelease6: return release6(c);
    case op::kPrIn: return pr_in(c);
    case op::kPrOut: return pr_out(c);
    default:
      return fail(c, sense_key::kIllegalRequest, asc::kInvalidOpcode);
  }
}

// ---- READ / WRITE / WRITE AND VERIFY ----

void LogicalUnit::rw(Command& c, uint8_t op) {
  const uint8_t* cdb = c.cdb;
  const bool write = op == op::kWrite6 || op == op::kWrite10 || op == op::kWrite12 ||
                     op == op::kWrite16 || op == op::kWriteVerify10 ||
                     op == op::kWriteVerify12 || op == op::kWriteVerify16;
  const bool wv = op == op::kWriteVerify10 || op == op::kWriteVerify12 || op == op::kWriteVerify16;
  uint64_t lba;
  uint64_t blocks;
  uint32_t len_off;
  bool fua = false;
  c.dir = write ? DataDir::kOut : DataDir::kIn;
  if (op == op::kRead6 || op == op::kWrite6) {
    if (cdb[kRw6Lba] & kRw6Reserved) return fail_field(c, kRw6Lba, 7);
    lba = load_be24(cdb + kRw6Lba) & kRw6LbaMask;
    blocks = cdb[kRw6Len] ? cdb[kRw6Len] : 256;
    len_off = kRw6Len;
  } else {
    const LbaLayout& l = layout_of(op);
    if (cdb[cdb::kFlags] & cdb::kProtectMask) return fail_field(c, cdb::kFlags, 7);
    if (wv) {
      // BYTCHK 00 (verify the medium) and 01 (compare with the Data-Out, which is what
      // was just written) are both satisfied by the write; 1x is reserved.
      if (cdb[cdb::kFlags] & 0x04) return fail_field(c, cdb::kFlags, 2);
    } else {
      fua = cdb[cdb::kFlags] & cdb::kFua;
    }
    lba = lba_of(cdb, l);
    blocks = len_of(cdb, l);
    len_off = static_cast<uint32_t>(l.len_off);
  }
  if (auto r = frontend::check_access(write ? Op::kWrite : Op::kRead, opts_.read_only)) return refuse(c, *r);
  if (!check_range(c, lba, blocks)) return;
  if (blocks == 0) return good(c);
  if (blocks * bs_ > kMaxTransferBytes) return fail_field(c, len_off);
  const uint32_t bytes = static_cast<uint32_t>(blocks * bs_);
  c.xfer_len = bytes;
  if (!write) {
    // Only what the initiator takes is read: the transport sends min(xfer_len, edtl), so a
    // short EDTL cannot make the device buffer (and read) more than that.
    const uint64_t wanted = std::min<uint64_t>(blocks, (uint64_t{c.edtl} + bs_ - 1) / bs_);
    if (wanted == 0) return good(c);
    ensure_buf(c, wanted * bs_, 0);
    const Action a = frontend::plan(caps_, {.op = Op::kRead});
    return submit(c, a.type, lba, wanted, c.buf.data(), kStageReadDone);
  }
  const uint32_t have = static_cast<uint32_t>(std::min<size_t>(c.data_out_len, c.buf.size()));
  if (have < bytes) {
    // The initiator sent less than the CDB asks for: whole blocks are written, a
    // partial block is an error (SAM-5 5.4.3 / iSCSI underflow).
    if (have % bs_) return fail(c, sense_key::kIllegalRequest, asc::kInvalidFieldInCommandIu);
    blocks = have / bs_;
    if (blocks == 0) return good(c);
  }
  if (gate_.load(std::memory_order_relaxed) & kGateCaw) {
    std::lock_guard lk(mu_);
    if (caw_busy_ && caw_lba_ >= lba && caw_lba_ < lba + blocks) {
      caw_waiters_.push_back(&c);  // re-dispatched when the COMPARE AND WRITE ends
      return;
    }
  }
  const Action a = frontend::plan(caps_, {.op = Op::kWrite, .fua = fua});
  submit(c, a.type, lba, blocks, c.buf.data(), kStageWriteDone, a.fua);
}

// ---- VERIFY ----

void LogicalUnit::verify(Command& c, uint8_t op) {
  const uint8_t* cdb = c.cdb;
  const LbaLayout& l = layout_of(op);
  if (cdb[cdb::kFlags] & cdb::kProtectMask) return fail_field(c, cdb::kFlags, 7);
  const uint8_t bytchk = (cdb[cdb::kFlags] & cdb::kBytchkMask) >> 1;
  if (bytchk == 2) return fail_field(c, cdb::kFlags, 2);
  const uint64_t lba = lba_of(cdb, l);
  uint64_t blocks = len_of(cdb, l);
  c.dir = bytchk ? DataDir::kOut : DataDir::kNone;
  if (!check_range(c, lba, blocks)) return;
  if (blocks == 0 || bytchk == 0) return good(c);  // no medium errors to find in RAM/files
  if (blocks * bs_ > kMaxTransferBytes) return fail_field(c, static_cast<uint32_t>(l.len_off));
  // BYTCHK 01: the Data-Out holds every block; 11: one block compared with each.
  uint32_t need = bytchk == 1 ? static_cast<uint32_t>(blocks * bs_) : bs_;
  c.xfer_len = need;
  const uint32_t have = static_cast<uint32_t>(std::min<size_t>(c.data_out_len, c.buf.size()));
  if (have < need) {
    if (bytchk != 1 || have % bs_) {
      return fail(c, sense_key::kIllegalRequest, asc::kInvalidFieldInCommandIu);
    }
    blocks = have / bs_;
    if (blocks == 0) return good(c);
    need = have;
  }
  const size_t align = std::max<size_t>(4096, bdev().buf_align());
  const size_t read_off = align_up(need, align);
  ensure_buf(c, read_off + blocks * bs_, need);
  c.aux = read_off;
  c.aux2 = bytchk;
  submit(c, IoType::kRead, lba, blocks, c.buf.data() + read_off, kStageVerifyRead);
}

// ---- SYNCHRONIZE CACHE / PRE-FETCH ----

void LogicalUnit::sync_cache(Command& c, uint8_t op) {
  const LbaLayout& l = layout_of(op);
  if (!check_range(c, lba_of(c.cdb, l), len_of(c.cdb, l))) return;
  // The whole cache is flushed, whatever the range; without a cache, GOOD at once.
  const Action a = frontend::plan(caps_, {.op = Op::kFlush});
  if (a.kind != Action::Kind::kSubmit) return good(c);
  submit(c, a.type, 0, 0, nullptr, kStageFlushDone);
}

void LogicalUnit::prefetch(Command& c, uint8_t op) {
  const LbaLayout& l = layout_of(op);
  if (!check_range(c, lba_of(c.cdb, l), len_of(c.cdb, l))) return;
  // Nothing to stage: the range "is in the cache" as far as the initiator can tell.
  c.status = Status::kConditionMet;
  good(c);
}

// ---- WRITE SAME ----

void LogicalUnit::write_same(Command& c, uint8_t op) {
  const uint8_t* cdb = c.cdb;
  const LbaLayout& l = layout_of(op);
  const uint8_t flags = cdb[cdb::kFlags];
  const bool sixteen = op == op::kWriteSame16;
  if (flags & cdb::kProtectMask) return fail_field(c, cdb::kFlags, 7);
  if (flags & 0x06) return fail_field(c, cdb::kFlags, 2);  // LBDATA/PBDATA: obsolete
  if (!sixteen && (flags & 0x01)) return fail_field(c, cdb::kFlags, 0);
  if (flags & cdb::kWsAnchor) return fail_field(c, cdb::kFlags, 4);  // ANC_SUP = 0
  const bool unmap_bit = flags & cdb::kWsUnmap;
  const bool ndob = sixteen && (flags & cdb::kWsNdob);
  if (unmap_bit && !adv_.discard) return fail_field(c, cdb::kFlags, 3);
  if (auto r = frontend::check_access(Op::kWrite, opts_.read_only)) return refuse(c, *r);
  const uint64_t lba = lba_of(cdb, l);
  const uint64_t blocks = len_of(cdb, l);
  c.dir = ndob ? DataDir::kNone : DataDir::kOut;
  // WSNZ = 1: zero blocks (meaning "to the end") is not supported.
  if (blocks == 0 || blocks > kMaxWriteSameBlocks) {
    return fail_field(c, static_cast<uint32_t>(l.len_off));
  }
  if (!check_range(c, lba, blocks)) return;
  if (!ndob) {
    c.xfer_len = bs_;
    const size_t have = std::min<size_t>(c.data_out_len, c.buf.size());
    if (have < bs_ || c.edtl != bs_) {
      return fail(c, sense_key::kIllegalRequest, asc::kInvalidFieldInCommandIu);
    }
  }
  const bool zero = ndob || all_zero(c.buf.data(), bs_);
  if (zero) {
    // With UNMAP, a (zeroing) discard; without, a write-zeroes that keeps the blocks
    // mapped, written as zero buffers below if the bdev cannot.
    const Action a = frontend::plan(
        caps_, unmap_bit ? frontend::Command{.op = Op::kDiscard, .discard = frontend::Discard::kZeroing}
                         : frontend::Command{.op = Op::kWriteZeroes, .may_deallocate = false,
                                             .may_write_buffers = true});
    if (a.kind == Action::Kind::kSubmit) return submit(c, a.type, lba, blocks, nullptr, kStageZeroDone);
  }
  const uint64_t chunk_blocks = std::max<uint64_t>(1, kWriteSameChunkBytes / bs_);
  const uint64_t chunk = std::min(blocks, chunk_blocks);
  ensure_buf(c, chunk * bs_, ndob ? 0 : bs_);
  uint8_t* p = c.buf.data();
  if (ndob) std::memset(p, 0, bs_);
  for (uint64_t i = 1; i < chunk; ++i) std::memcpy(p + i * bs_, p, bs_);
  c.aux = lba;
  c.aux2 = lba + blocks;
  ws_next(c);
}

void LogicalUnit::ws_next(Command& c) {
  if (c.aux >= c.aux2) return finish_now(c);
  const uint64_t chunk_blocks = std::max<uint64_t>(1, kWriteSameChunkBytes / bs_);
  const uint64_t n = std::min(c.aux2 - c.aux, chunk_blocks);
  const uint64_t lba = c.aux;
  c.aux += n;
  submit(c, IoType::kWrite, lba, n, c.buf.data(), kStageWsWrite);
}

// ---- UNMAP ----

void LogicalUnit::unmap(Command& c) {
  const uint8_t* cdb = c.cdb;
  if (!adv_.discard) return refuse(c, Reason::kUnsupported);
  if (cdb[cdb::kFlags] & cdb::kUnmapAnchor) return fail_field(c, cdb::kFlags, 0);
  if (auto r = frontend::check_access(Op::kDiscard, opts_.read_only)) return refuse(c, *r);
  const uint32_t plen = load_be16(cdb + cdb::kUnmapLen);
  c.dir = DataDir::kOut;
  c.xfer_len = plen;
  if (plen == 0) return good(c);
  if (plen < kUnmapHeader) {
    return fail(c, sense_key::kIllegalRequest, asc::kParameterListLengthError);
  }
  if (std::min<size_t>(c.data_out_len, c.buf.size()) < plen) {
    return fail(c, sense_key::kIllegalRequest, asc::kInvalidFieldInCommandIu);
  }
  const uint8_t* p = c.buf.data();
  // A descriptor area longer than the list is truncated to what was sent; a partial
  // trailing descriptor is ignored (SBC-3 5.28.2).
  const uint32_t desc_bytes = std::min<uint32_t>(load_be16(p + kUnmapDescLen), plen - kUnmapHeader);
  const uint32_t n = desc_bytes / kUnmapDescSize;
  if (n > kMaxUnmapDescriptors) {
    invalid_param_field(c, kUnmapDescLen);
    c.xfer_len = 0;
    return finish_later(c);
  }
  uint64_t total = 0;
  bool any = false;
  for (uint32_t i = 0; i < n; ++i) {
    const uint8_t* d = p + kUnmapHeader + i * kUnmapDescSize;
    const uint64_t lba = load_be64(d);
    const uint32_t nb = load_be32(d + 8);
    total += nb;
    if (total > kMaxUnmapBlocks) {
      invalid_param_field(c, kUnmapHeader + i * kUnmapDescSize + 8);
      c.xfer_len = 0;
      return finish_later(c);
    }
    if (!check_range(c, lba, nb)) return;
    any |= nb != 0;
  }
  if (!any) return good(c);
  c.aux = 0;
  c.aux2 = n;
  unmap_next(c);
}

void LogicalUnit::unmap_next(Command& c) {
  const uint8_t* p = c.buf.data();
  while (c.aux < c.aux2) {
    const uint8_t* d = p + kUnmapHeader + c.aux * kUnmapDescSize;
    ++c.aux;
    const uint64_t lba = load_be64(d);
    const uint32_t nb = load_be32(d + 8);
    if (nb == 0) continue;
    // A zeroing discard (LBPRZ = 1: unmapped blocks read zero), never a plain unmap;
    // plannable since adv_.discard was checked.
    const Action a = frontend::plan(caps_, {.op = Op::kDiscard, .discard = frontend::Discard::kZeroing});
    return submit(c, a.type, lba, nb, nullptr, kStageUnmap);
  }
  finish_now(c);
}

// ---- COMPARE AND WRITE ----

void LogicalUnit::compare_and_write(Command& c) {
  const uint8_t* cdb = c.cdb;
  if (cdb[cdb::kFlags] & cdb::kProtectMask) return fail_field(c, cdb::kFlags, 7);
  if (auto r = frontend::check_access(Op::kWrite, opts_.read_only)) return refuse(c, *r);
  const bool fua = cdb[cdb::kFlags] & cdb::kFua;
  const uint64_t lba = load_be64(cdb + kCawLba);
  const uint32_t blocks = cdb[kCawLen];
  c.dir = DataDir::kOut;
  if (!check_range(c, lba, blocks)) return;
  // 0 blocks is a no-op, but only with no data: an initiator that meant 256 blocks
  // (the 8-bit field wrapped) must hear that the length is invalid.
  if (blocks == 0) return c.edtl == 0 ? good(c) : fail_field(c, kCawLen);
  const uint32_t n = blocks * bs_;
  if (blocks > kMaxCawBlocks || c.edtl != 2 * n) return fail_field(c, kCawLen);
  c.xfer_len = 2 * n;
  if (std::min<size_t>(c.data_out_len, c.buf.size()) < 2 * n) {
    return fail(c, sense_key::kIllegalRequest, asc::kInvalidFieldInCommandIu);
  }
  // Layout: [0,n) verify data, [n,2n) write data, read_off: the medium's blocks,
  // write_off: the write data again at an offset the bdev's alignment accepts.
  const size_t align = std::max<size_t>(4096, bdev().buf_align());
  const size_t read_off = align_up(2 * n, align);
  const size_t write_off = align_up(read_off + n, align);
  ensure_buf(c, write_off + n, 2 * n);
  std::memcpy(c.buf.data() + write_off, c.buf.data() + n, n);
  c.aux = read_off | uint64_t{write_off} << 32;
  c.aux2 = fua ? kFuaFlag : 0;
  {
    std::lock_guard lk(mu_);
    if (caw_busy_) {
      caw_waiters_.push_back(&c);
      return;
    }
    caw_busy_ = true;
    caw_lba_ = lba;
    update_gate_locked();
  }
  submit(c, IoType::kRead, lba, blocks, c.buf.data() + read_off, kStageCawRead);
}

void LogicalUnit::caw_release(Command& c) {
  std::vector<Command*> waiters;
  {
    std::lock_guard lk(mu_);
    caw_busy_ = false;
    update_gate_locked();
    waiters.swap(caw_waiters_);
  }
  for (Command* w : waiters) {
    w->reactor->send([this, w] { dispatch(*w); });
  }
}

// ---- START STOP UNIT / PREVENT ALLOW MEDIUM REMOVAL (RMB = 0) ----

void LogicalUnit::start_stop(Command& c) {
  // Power conditions and START are accepted and have no effect; there is no medium
  // to eject.
  if (c.cdb[kSsuFlags] & kSsuLoej) return fail_field(c, kSsuFlags, 1);
  good(c);
}

void LogicalUnit::prevent_allow(Command& c) {
  if ((c.cdb[kPreventByte] & kPreventMask) > 1) return fail_field(c, kPreventByte, 1);
  good(c);
}

// ---- I/O state machine ----

void LogicalUnit::submit(Command& c, IoType t, uint64_t lba, uint64_t blocks, uint8_t* buf,
                         Stage next, bool fua) {
  c.stage = next;
  c.io.type = t;
  c.io.fua = fua;
  c.io.offset_blocks = lba;
  c.io.num_blocks = blocks;
  if (buf) {
    c.iov = {buf, static_cast<size_t>(blocks * bs_)};
    c.io.iovs = &c.iov;
    c.io.iovcnt = 1;
  } else {
    c.io.iovs = nullptr;
    c.io.iovcnt = 0;
  }
  c.io.cb = &LogicalUnit::on_io;
  c.io.cb_arg = &c;
  desc_.channel(*c.reactor).submit(c.io);
}

void LogicalUnit::on_io(bdev::IoRequest& req, void* arg) {
  auto& c = *static_cast<Command*>(arg);
  auto* lu = static_cast<LogicalUnit*>(c.owner);
  if (req.status != IoStatus::kSuccess) return lu->io_failed(c, req.status);
  lu->advance(c);
}

void LogicalUnit::io_failed(Command& c, IoStatus s) {
  const Stage stage = static_cast<Stage>(c.stage);
  if (stage == kStageCawRead || stage == kStageCawWrite) caw_release(c);
  const bool reading = c.io.type == IoType::kRead;
  spdlog::debug("scsi lun {}: {} failed: {}", opts_.lun, bdev::io_type_name(c.io.type),
                bdev::io_status_name(s));
  switch (s) {
    case IoStatus::kIoError:
      check_condition(c, sense_key::kMediumError,
                      reading ? asc::kUnrecoveredReadError : asc::kWriteError);
      break;
    case IoStatus::kNoSpace:
      check_condition(c, sense_key::kDataProtect, asc::kSpaceAllocFailedWp);
      break;
    case IoStatus::kAborted:
    case IoStatus::kTimedOut:
      check_condition(c, sense_key::kAbortedCommand, asc::kNoAdditional);
      break;
    case IoStatus::kReservationConflict:
      // The device below (an NVMe namespace) refused this engine: RESERVATION CONFLICT
      // status, no sense data (SAM-5), as for a conflict with the LU's own reservations.
      c.status = Status::kReservationConflict;
      break;
    default:
      check_condition(c, sense_key::kHardwareError, asc::kInternalTargetFailure);
      break;
  }
  c.xfer_len = 0;
  finish_now(c);
}

void LogicalUnit::advance(Command& c) {
  switch (static_cast<Stage>(c.stage)) {
    case kStageWriteDone:
      return finish_now(c);
    case kStageVerifyRead: {
      const uint8_t* p = c.buf.data();
      const uint8_t* medium = p + c.aux;
      const size_t len = c.io.num_blocks * bs_;
      if (c.aux2 == 1) {
        if (size_t i = first_mismatch(p, medium, len); i < len) {
          miscompare(c, static_cast<uint32_t>(i));
        }
      } else {
        for (size_t off = 0; off < len; off += bs_) {
          if (size_t i = first_mismatch(p, medium + off, bs_); i < bs_) {
            miscompare(c, static_cast<uint32_t>(off + i));
            break;
          }
        }
      }
      return finish_now(c);
    }
    case kStageCawRead: {
      const size_t n = c.io.num_blocks * bs_;
      const uint8_t* p = c.buf.data();
      const size_t read_off = c.aux & 0xFFFFFFFF, write_off = c.aux >> 32;
      if (size_t i = first_mismatch(p, p + read_off, n); i < n) {
        miscompare(c, static_cast<uint32_t>(i));
        caw_release(c);
        return finish_now(c);
      }
      return submit(c, IoType::kWrite, c.io.offset_blocks, c.io.num_blocks,
                    c.buf.data() + write_off, kStageCawWrite, c.aux2 & kFuaFlag);
    }
    case kStageCawWrite:
      caw_release(c);
      return finish_now(c);
    case kStageWsWrite: return ws_next(c);
    case kStageUnmap: return unmap_next(c);
    case kStageReadDone:
    case kStageFlushDone:
    case kStageZeroDone:
    case kStageNone:
      return finish_now(c);
  }
}

}  // namespace castor::scsi
