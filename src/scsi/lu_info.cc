// Logical unit: the commands that describe the device (INQUIRY and its VPD pages, MODE
// SENSE/SELECT, READ CAPACITY, GET LBA STATUS, REPORT SUPPORTED OPERATION CODES).
#include <algorithm>
#include <cstring>

#include "common/version.h"
#include "scsi/logical_unit.h"
#include "scsi/sense.h"
#include "scsi/wire.h"

namespace castor::scsi {

namespace {
// Standard INQUIRY data (SPC-4 6.6.2).
constexpr size_t kStdInquiryLen = 96;
constexpr size_t kInqVendor = 8, kInqProduct = 16, kInqRevision = 32, kInqVersionDesc = 58;
constexpr uint8_t kVersionSpc4 = 0x06, kHisupFormat2 = 0x12, kCmdQue = 0x02;
constexpr uint16_t kVersionDescriptors[] = {0x00A0 /* SAM-5 */, 0x0960 /* iSCSI */,
                                            0x0460 /* SPC-4 */, 0x04C0 /* SBC-3 */};
// VPD pages.
constexpr uint8_t kVpdSupported = 0x00, kVpdSerial = 0x80, kVpdDeviceId = 0x83,
                  kVpdBlockLimits = 0xB0, kVpdBlockCharacteristics = 0xB1,
                  kVpdLbp = 0xB2;
constexpr uint8_t kVpdPages[] = {kVpdSupported, kVpdSerial, kVpdDeviceId, kVpdBlockLimits,
                                 kVpdBlockCharacteristics, kVpdLbp};
constexpr size_t kVpdB0Len = 64, kVpdB1Len = 64, kVpdB2Len = 8;
// Designator header bytes (SPC-4 7.8.6.1).
constexpr uint8_t kProtoIscsi = 0x50, kCodeBinary = 0x01, kCodeAscii = 0x02, kCodeUtf8 = 0x03;
constexpr uint8_t kPiv = 0x80, kAssocLu = 0x00, kAssocPort = 0x10, kAssocTarget = 0x20;
constexpr uint8_t kDesigT10 = 0x01, kDesigNaa = 0x03, kDesigRelPort = 0x04, kDesigName = 0x08;
// Mode pages.
constexpr uint8_t kPageCaching = 0x08, kPageControl = 0x0A, kPageInfoExceptions = 0x1C,
                  kPageAll = 0x3F;
constexpr uint8_t kCachingLen = 0x12, kControlLen = 0x0A, kIeLen = 0x0A;
constexpr uint8_t kWce = 0x04, kQamUnrestricted = 0x10;
constexpr uint8_t kPcCurrent = 0, kPcChangeable = 1, kPcDefault = 2, kPcSaved = 3;
constexpr uint8_t kDspWp = 0x80, kDspDpoFua = 0x10;
constexpr size_t kMs6Header = 4, kMs10Header = 8, kShortBd = 8, kLongBd = 16;
// READ CAPACITY.
constexpr size_t kRc10Len = 8, kRc16Len = 32, kRc16Alloc = 10, kRc10Lba = 2, kRc10Pmi = 8;
constexpr uint8_t kLbpme = 0x80, kLbprz = 0x40;
// GET LBA STATUS.
constexpr size_t kGlsLba = 2, kGlsAlloc = 10, kGlsReplyLen = 24;

void put_ascii(uint8_t* p, size_t n, const std::string& s) {
  for (size_t i = 0; i < n; ++i) {
    char ch = i < s.size() ? s[i] : ' ';
    p[i] = (ch >= 0x20 && ch <= 0x7E) ? static_cast<uint8_t>(ch) : ' ';
  }
}

std::string serial_of(const Uuid& u) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : u.bytes) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

// Appends a SCSI name string designator (NUL-terminated, padded to a multiple of 4).
size_t put_name_designator(uint8_t* p, uint8_t assoc, const std::string& name) {
  const size_t n = std::min<size_t>(name.size(), 251);
  const size_t padded = (n + 1 + 3) / 4 * 4;
  p[0] = kProtoIscsi | kCodeUtf8;
  p[1] = kPiv | assoc | kDesigName;
  p[2] = 0;
  p[3] = static_cast<uint8_t>(padded);
  std::memset(p + 4, 0, padded);
  std::memcpy(p + 4, name.data(), n);
  return 4 + padded;
}

// REPORT SUPPORTED OPERATION CODES table: opcode, service action, and the CDB usage
// data (byte 0 = opcode, then the bits this device server accepts as nonzero).
struct OpInfo {
  uint8_t op;
  uint16_t sa;
  bool has_sa;
  uint8_t len;
  uint8_t usage[16];
  bool needs_lbp;
};
constexpr uint8_t F = 0xFF;
constexpr OpInfo kOps[] = {
    {op::kTestUnitReady, 0, false, 6, {0x00, 0, 0, 0, 0, 0}, false},
    {op::kRequestSense, 0, false, 6, {0x03, 0, 0, 0, F, 0}, false},
    {op::kRead6, 0, false, 6, {0x08, 0x1F, F, F, F, 0}, false},
    {op::kWrite6, 0, false, 6, {0x0A, 0x1F, F, F, F, 0}, false},
    {op::kInquiry, 0, false, 6, {0x12, 0x01, F, F, F, 0}, false},
    {op::kModeSelect6, 0, false, 6, {0x15, 0x10, 0, 0, F, 0}, false},
    {op::kReserve6, 0, false, 6, {0x16, 0, 0, 0, 0, 0}, false},
    {op::kRelease6, 0, false, 6, {0x17, 0, 0, 0, 0, 0}, false},
    {op::kModeSense6, 0, false, 6, {0x1A, 0x08, F, F, F, 0}, false},
    {op::kStartStopUnit, 0, false, 6, {0x1B, 0x01, 0, 0x0F, 0xF5, 0}, false},
    {op::kPreventAllow, 0, false, 6, {0x1E, 0, 0, 0, 0x01, 0}, false},
    {op::kReadCapacity10, 0, false, 10, {0x25, 0, F, F, F, F, 0, 0, 0x01, 0}, false},
    {op::kRead10, 0, false, 10, {0x28, 0x18, F, F, F, F, 0x1F, F, F, 0}, false},
    {op::kWrite10, 0, false, 10, {0x2A, 0x18, F, F, F, F, 0x1F, F, F, 0}, false},
    {op::kWriteVerify10, 0, false, 10, {0x2E, 0x12, F, F, F, F, 0x1F, F, F, 0}, false},
    {op::kVerify10, 0, false, 10, {0x2F, 0x16, F, F, F, F, 0x1F, F, F, 0}, false},
    {op::kPreFetch10, 0, false, 10, {0x34, 0x02, F, F, F, F, 0x1F, F, F, 0}, false},
    {op::kSyncCache10, 0, false, 10, {0x35, 0x02, F, F, F, F, 0x1F, F, F, 0}, false},
    {op::kWriteSame10, 0, false, 10, {0x41, 0x08, F, F, F, F, 0x1F, F, F, 0}, false},
    {op::kUnmap, 0, false, 10, {0x42, 0, 0, 0, 0, 0, 0x1F, F, F, 0}, true},
    {op::kModeSelect10, 0, false, 10, {0x55, 0x10, 0, 0, 0, 0, 0, F, F, 0}, false},
    {op::kModeSense10, 0, false, 10, {0x5A, 0x18, F, F, 0, 0, 0, F, F, 0}, false},
    {op::kPrIn, 0, true, 10, {0x5E, 0, 0, 0, 0, 0, 0, F, F, 0}, false},
    {op::kPrIn, 1, true, 10, {0x5E, 1, 0, 0, 0, 0, 0, F, F, 0}, false},
    {op::kPrIn, 2, true, 10, {0x5E, 2, 0, 0, 0, 0, 0, F, F, 0}, false},
    {op::kPrIn, 3, true, 10, {0x5E, 3, 0, 0, 0, 0, 0, F, F, 0}, false},
    {op::kPrOut, 0, true, 10, {0x5F, 0, F, 0, 0, F, F, F, F, 0}, false},
    {op::kPrOut, 1, true, 10, {0x5F, 1, F, 0, 0, F, F, F, F, 0}, false},
    {op::kPrOut, 2, true, 10, {0x5F, 2, F, 0, 0, F, F, F, F, 0}, false},
    {op::kPrOut, 3, true, 10, {0x5F, 3, F, 0, 0, F, F, F, F, 0}, false},
    {op::kPrOut, 4, true, 10, {0x5F, 4, F, 0, 0, F, F, F, F, 0}, false},
    {op::kPrOut, 5, true, 10, {0x5F, 5, F, 0, 0, F, F, F, F, 0}, false},
    {op::kPrOut, 6, true, 10, {0x5F, 6, F, 0, 0, F, F, F, F, 0}, false},
    {op::kRead16, 0, false, 16, {0x88, 0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kCompareAndWrite, 0, false, 16, {0x89, 0x18, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0x1F, 0}, false},
    {op::kWrite16, 0, false, 16, {0x8A, 0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kWriteVerify16, 0, false, 16, {0x8E, 0x12, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kVerify16, 0, false, 16, {0x8F, 0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kPreFetch16, 0, false, 16, {0x90, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kSyncCache16, 0, false, 16, {0x91, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kWriteSame16, 0, false, 16, {0x93, 0x09, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kServiceActionIn16, kSaReadCapacity16, true, 16, {0x9E, 0x10, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0}, false},
    {op::kServiceActionIn16, kSaGetLbaStatus, true, 16, {0x9E, 0x12, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0}, false},
    {op::kReportLuns, 0, false, 12, {0xA0, 0, F, 0, 0, 0, F, F, F, F, 0, 0}, false},
    {op::kMaintenanceIn, kSaReportSupportedOpcodes, true, 12, {0xA3, 0x0C, 0x87, F, F, F, F, F, F, F, 0, 0}, false},
    {op::kRead12, 0, false, 12, {0xA8, 0x18, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kWrite12, 0, false, 12, {0xAA, 0x18, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kWriteVerify12, 0, false, 12, {0xAE, 0x12, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
    {op::kVerify12, 0, false, 12, {0xAF, 0x16, F, F, F, F, F, F, F, F, 0x1F, 0}, false},
};
constexpr size_t kRsocDescLen = 8, kRsocTimeoutsLen = 12;
constexpr uint8_t kRsocRctd = 0x80, kRsocOptionsMask = 0x07, kCtdp = 0x02, kServActv = 0x01;
constexpr uint8_t kSupportStandard = 0x03, kSupportNone = 0x01;
constexpr size_t kRsocOptions = 2, kRsocOp = 3, kRsocSa = 4, kRsocAlloc = 6;
}  // namespace

// ---- INQUIRY ----

void LogicalUnit::inquiry(Command& c) {
  const uint8_t* cdb = c.cdb;
  if (cdb[cdb::kInqFlags] & 0xFE) return fail_field(c, cdb::kInqFlags, 1);  // CMDDT: obsolete
  const bool evpd = cdb[cdb::kInqFlags] & cdb::kEvpd;
  const uint8_t page = cdb[cdb::kInqPage];
  const uint32_t alloc = load_be16(cdb + cdb::kInqAlloc);
  if (!evpd && page != 0) return fail_field(c, cdb::kInqPage);
  if (!evpd) {
    uint8_t* p = data_in(c, kStdInquiryLen);
    p[0] = 0x00;  // PQ 0, direct-access block device
    p[2] = kVersionSpc4;
    p[3] = kHisupFormat2;
    p[4] = kStdInquiryLen - 5;
    p[7] = kCmdQue;
    put_ascii(p + kInqVendor, 8, info_.vendor);
    put_ascii(p + kInqProduct, 16, opts_.product);
    put_ascii(p + kInqRevision, 4, kVersion);
    for (size_t i = 0; i < std::size(kVersionDescriptors); ++i) {
      store_be16(p + kInqVersionDesc + 2 * i, kVersionDescriptors[i]);
    }
    return send_data_in(c, kStdInquiryLen, alloc);
  }
  uint8_t* p = data_in(c, 1024);
  const size_t n = vpd_page(c, page, p);
  if (n == 0) return fail_field(c, cdb::kInqPage);
  send_data_in(c, n, alloc);
}

size_t LogicalUnit::vpd_page(Command& c, uint8_t page, uint8_t* p) {
  p[0] = 0x00;
  p[1] = page;
  switch (page) {
    case kVpdSupported:
      std::memcpy(p + 4, kVpdPages, sizeof(kVpdPages));
      store_be16(p + 2, sizeof(kVpdPages));
      return 4 + sizeof(kVpdPages);
    case kVpdSerial: {
      const std::string s = serial_of(bdev().uuid());
      std::memcpy(p + 4, s.data(), s.size());
      store_be16(p + 2, static_cast<uint16_t>(s.size()));
      return 4 + s.size();
    }
    case kVpdDeviceId: {
      size_t off = 4;
      const auto& u = bdev().uuid().bytes;
      // NAA IEEE Registered Extended (type 6, 16 bytes) from the bdev's UUID: the same
      // on every path and across restarts.
      uint8_t* d = p + off;
      d[0] = kCodeBinary;
      d[1] = kAssocLu | kDesigNaa;
      d[3] = 16;
      d[4] = static_cast<uint8_t>(0x60 | (u[0] & 0x0F));
      std::memcpy(d + 5, u.data() + 1, 15);
      off += 20;
      // T10 vendor ID: vendor + serial.
      const std::string serial = serial_of(bdev().uuid());
      d = p + off;
      d[0] = kCodeAscii;
      d[1] = kAssocLu | kDesigT10;
      d[3] = static_cast<uint8_t>(8 + serial.size());
      put_ascii(d + 4, 8, info_.vendor);
      std::memcpy(d + 12, serial.data(), serial.size());
      off += 4 + 8 + serial.size();
      // Relative target port.
      d = p + off;
      d[0] = kProtoIscsi | kCodeBinary;
      d[1] = kPiv | kAssocPort | kDesigRelPort;
      d[3] = 4;
      store_be16(d + 6, c.nexus ? c.nexus->relative_port : 1);
      off += 8;
      if (c.nexus && !c.nexus->target_port.empty()) {
        off += put_name_designator(p + off, kAssocPort, c.nexus->target_port);
      }
      if (!info_.target_name.empty()) {
        off += put_name_designator(p + off, kAssocTarget, info_.target_name);
      }
      store_be16(p + 2, static_cast<uint16_t>(off - 4));
      return off;
    }
    case kVpdBlockLimits: {
      store_be16(p + 2, kVpdB0Len - 4);
      p[4] = 0x01;  // WSNZ: WRITE SAME with 0 blocks is rejected
      p[5] = kMaxCawBlocks;
      store_be32(p + 8, kMaxTransferBytes / bs_);
      if (adv_.discard) {
        store_be32(p + 20, kMaxUnmapBlocks);
        store_be32(p + 24, kMaxUnmapDescriptors);
        store_be32(p + 28, 1);  // optimal unmap granularity
      }
      store_be64(p + 36, kMaxWriteSameBlocks);
      return kVpdB0Len;
    }
    case kVpdBlockCharacteristics:
      store_be16(p + 2, kVpdB1Len - 4);
      store_be16(p + 4, 1);  // non-rotating medium
      return kVpdB1Len;
    case kVpdLbp:
      store_be16(p + 2, kVpdB2Len - 4);
      if (adv_.discard) {
        p[5] = 0x80 | 0x40 | 0x20;          // LBPU, LBPWS, LBPWS10
        if (adv_.discard_zeroes) p[5] |= 0x04;  // LBPRZ
        p[6] = 0x02;                        // thin provisioned
      }
      return kVpdB2Len;
    default:
      return 0;
  }
}

// ---- MODE SENSE / MODE SELECT ----

size_t LogicalUnit::mode_page(uint8_t page, uint8_t pc, uint8_t* p) const {
  const bool changeable = pc == kPcChangeable;  // nothing is changeable: all-zero masks
  switch (page) {
    case kPageCaching:
      std::memset(p, 0, 2 + kCachingLen);
      p[0] = kPageCaching;
      p[1] = kCachingLen;
      if (!changeable && adv_.volatile_write_cache) p[2] = kWce;
      return 2 + kCachingLen;
    case kPageControl:
      std::memset(p, 0, 2 + kControlLen);
      p[0] = kPageControl;
      p[1] = kControlLen;
      if (!changeable) p[3] = kQamUnrestricted;
      return 2 + kControlLen;
    case kPageInfoExceptions:
      std::memset(p, 0, 2 + kIeLen);
      p[0] = kPageInfoExceptions;
      p[1] = kIeLen;
      return 2 + kIeLen;
    default:
      return 0;
  }
}

void LogicalUnit::mode_sense(Command& c, bool ten) {
  const uint8_t* cdb = c.cdb;
  const bool dbd = cdb[cdb::kMsFlags] & cdb::kDbd;
  const bool llbaa = ten && (cdb[cdb::kMsFlags] & cdb::kLlbaa);
  const uint8_t pc = cdb[cdb::kMsPage] >> 6;
  const uint8_t page = cdb[cdb::kMsPage] & 0x3F;
  const uint8_t subpage = cdb[cdb::kMsSubpage];
  const uint32_t alloc = ten ? load_be16(cdb + cdb::kMs10Alloc) : cdb[cdb::kMs6Alloc];
  if (pc == kPcSaved) return fail(c, sense_key::kIllegalRequest, asc::kSavingNotSupported);
  if (subpage != 0 && subpage != 0xFF) return fail_field(c, cdb::kMsSubpage);
  uint8_t* p = data_in(c, 512);
  const size_t header = ten ? kMs10Header : kMs6Header;
  const size_t bd_len = dbd ? 0 : (llbaa ? kLongBd : kShortBd);
  size_t off = header + bd_len;
  if (page == kPageAll) {
    for (uint8_t pg : {kPageCaching, kPageControl, kPageInfoExceptions}) {
      off += mode_page(pg, pc, p + off);
    }
  } else {
    const size_t n = mode_page(page, pc, p + off);
    if (n == 0) return fail_field(c, cdb::kMsPage, 5);
    off += n;
  }
  const uint8_t dsp = (adv_.fua ? kDspDpoFua : 0) | (adv_.read_only ? kDspWp : 0);
  const uint64_t blocks = bdev().num_blocks();
  uint8_t* bd = p + header;
  if (bd_len == kShortBd) {
    store_be32(bd, static_cast<uint32_t>(std::min<uint64_t>(blocks, 0xFFFFFFFF)));
    store_be32(bd + 4, bs_ & 0xFFFFFF);  // density code 0, block length
  } else if (bd_len == kLongBd) {
    store_be64(bd, blocks);
    store_be32(bd + 12, bs_);
  }
  if (ten) {
    store_be16(p, static_cast<uint16_t>(off - 2));
    p[3] = dsp;
    p[4] = llbaa && bd_len ? 0x01 : 0x00;
    store_be16(p + 6, static_cast<uint16_t>(bd_len));
  } else {
    p[0] = static_cast<uint8_t>(off - 1);
    p[2] = dsp;
    p[3] = static_cast<uint8_t>(bd_len);
  }
  send_data_in(c, off, alloc);
}

void LogicalUnit::mode_select(Command& c, bool ten) {
  const uint8_t* cdb = c.cdb;
  if (cdb[cdb::kMsFlags] & cdb::kSp) return fail_field(c, cdb::kMsFlags, 0);
  const uint32_t len = ten ? load_be16(cdb + cdb::kMsel10Len) : cdb[cdb::kMsel6Len];
  c.dir = DataDir::kOut;
  c.xfer_len = len;
  if (len == 0) return good(c);
  if (std::min<size_t>(c.data_out_len, c.buf.size()) < len) {
    return fail(c, sense_key::kIllegalRequest, asc::kInvalidFieldInCommandIu);
  }
  const uint8_t* p = c.buf.data();
  const size_t header = ten ? kMs10Header : kMs6Header;
  if (len < header) return fail(c, sense_key::kIllegalRequest, asc::kParameterListLengthError);
  const size_t bd_len = ten ? load_be16(p + 6) : p[3];
  if (header + bd_len > len) {
    return fail(c, sense_key::kIllegalRequest, asc::kParameterListLengthError);
  }
  auto bad_param = [&](size_t byte) {
    invalid_param_field(c, static_cast<uint32_t>(byte));
    c.xfer_len = 0;
    finish_later(c);
  };
  // Block descriptors may only restate the block length.
  if (bd_len) {
    const bool long_lba = ten && (p[4] & 0x01);
    const size_t one = long_lba ? kLongBd : kShortBd;
    if (bd_len % one) return bad_param(ten ? 6 : 3);
    for (size_t off = header; off < header + bd_len; off += one) {
      const uint32_t blen = long_lba ? load_be32(p + off + 12) : load_be24(p + off + 5);
      if (blen != bs_) return bad_param(off + (long_lba ? 12 : 5));
    }
  }
  uint8_t cur[64];
  size_t off = header + bd_len;
  while (off < len) {
    if (off + 2 > len) {
      return fail(c, sense_key::kIllegalRequest, asc::kParameterListLengthError);
    }
    if (p[off] & 0x40) return bad_param(off);  // SPF: no subpages
    const uint8_t page = p[off] & 0x3F;
    const size_t plen = p[off + 1];
    if (off + 2 + plen > len) {
      return fail(c, sense_key::kIllegalRequest, asc::kParameterListLengthError);
    }
    const size_t n = mode_page(page, kPcCurrent, cur);
    if (n == 0) return bad_param(off);
    if (n != plen + 2) return bad_param(off + 1);
    // Nothing is changeable: the page must restate the current values.
    for (size_t i = 2; i < n; ++i) {
      if (p[off + i] != cur[i]) return bad_param(off + i);
    }
    off += n;
  }
  good(c);
}

// ---- READ CAPACITY / GET LBA STATUS ----

void LogicalUnit::read_capacity10(Command& c) {
  if (!(c.cdb[kRc10Pmi] & 0x01) && load_be32(c.cdb + kRc10Lba) != 0) {
    return fail_field(c, kRc10Lba);
  }
  uint8_t* p = data_in(c, kRc10Len);
  const uint64_t last = bdev().num_blocks() - 1;
  store_be32(p, static_cast<uint32_t>(std::min<uint64_t>(last, 0xFFFFFFFF)));
  store_be32(p + 4, bs_);
  send_data_in(c, kRc10Len, kRc10Len);
}

void LogicalUnit::read_capacity16(Command& c) {
  const uint32_t alloc = load_be32(c.cdb + kRc16Alloc);
  uint8_t* p = data_in(c, kRc16Len);
  store_be64(p, bdev().num_blocks() - 1);
  store_be32(p + 8, bs_);
  if (adv_.discard) p[14] = kLbpme | (adv_.discard_zeroes ? kLbprz : 0);
  send_data_in(c, kRc16Len, alloc);
}

void LogicalUnit::get_lba_status(Command& c) {
  const uint64_t lba = load_be64(c.cdb + kGlsLba);
  const uint32_t alloc = load_be32(c.cdb + kGlsAlloc);
  const uint64_t cap = bdev().num_blocks();
  if (lba >= cap) return fail(c, sense_key::kIllegalRequest, asc::kLbaOutOfRange);
  // The bdev layer does not report allocation, so every block is reported mapped (true
  // while this LU's discards are write-zeroes: no bdev declares a zeroing unmap yet).
  uint8_t* p = data_in(c, kGlsReplyLen);
  store_be32(p, kGlsReplyLen - 4);
  store_be64(p + 8, lba);
  store_be32(p + 16, static_cast<uint32_t>(std::min<uint64_t>(cap - lba, 0xFFFFFFFF)));
  p[20] = 0;  // mapped
  send_data_in(c, kGlsReplyLen, alloc);
}

// ---- REPORT SUPPORTED OPERATION CODES ----

void LogicalUnit::report_supported_opcodes(Command& c) {
  const uint8_t* cdb = c.cdb;
  const bool rctd = cdb[kRsocOptions] & kRsocRctd;
  const uint8_t options = cdb[kRsocOptions] & kRsocOptionsMask;
  const uint8_t req_op = cdb[kRsocOp];
  const uint16_t req_sa = load_be16(cdb + kRsocSa);
  const uint32_t alloc = load_be32(cdb + kRsocAlloc);
  if (cdb[kRsocOptions] & 0x78) return fail_field(c, kRsocOptions, 6);
  auto listed = [&](const OpInfo& o) { return !o.needs_lbp || adv_.discard; };
  if (options == 0) {
    const size_t per = kRsocDescLen + (rctd ? kRsocTimeoutsLen : 0);
    uint8_t* p = data_in(c, 4 + std::size(kOps) * per);
    size_t off = 4;
    for (const OpInfo& o : kOps) {
      if (!listed(o)) continue;
      p[off] = o.op;
      store_be16(p + off + 2, o.sa);
      p[off + 5] = (o.has_sa ? kServActv : 0) | (rctd ? kCtdp : 0);
      store_be16(p + off + 6, o.len);
      if (rctd) store_be16(p + off + kRsocDescLen, kRsocTimeoutsLen - 2);
      off += per;
    }
    store_be32(p, static_cast<uint32_t>(off - 4));
    return send_data_in(c, off, alloc);
  }
  if (options > 3) return fail_field(c, kRsocOptions, 2);
  const OpInfo* found = nullptr;
  bool op_has_sa = false;
  for (const OpInfo& o : kOps) {
    if (o.op != req_op || !listed(o)) continue;
    op_has_sa = o.has_sa;
    if (!o.has_sa || o.sa == req_sa) {
      found = &o;
      break;
    }
  }
  // Option 1 names an opcode without service actions; option 2 one with them.
  if (options == 1 && op_has_sa) return fail_field(c, kRsocOp);
  if (options == 2 && found && !op_has_sa) return fail_field(c, kRsocOp);
  uint8_t* p = data_in(c, 4 + 16 + kRsocTimeoutsLen);
  size_t off = 4;
  if (found) {
    p[1] = kSupportStandard | (rctd ? 0x80 : 0);
    store_be16(p + 2, found->len);
    std::memcpy(p + 4, found->usage, found->len);
    if (!adv_.discard && (found->op == op::kWriteSame10 || found->op == op::kWriteSame16)) {
      p[5] &= static_cast<uint8_t>(~cdb::kWsUnmap);
    }
    off += found->len;
    if (rctd) {
      store_be16(p + off, kRsocTimeoutsLen - 2);
      off += kRsocTimeoutsLen;
    }
  } else {
    p[1] = kSupportNone;
  }
  send_data_in(c, off, alloc);
}

}  // namespace castor::scsi
