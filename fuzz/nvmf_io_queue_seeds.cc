// Seeds of nvmf_io_queue_fuzz: a selector byte, then what the host sends on I/O queue 1
// after the harness's ICReq + Connect (see nvmf_io_queue_fuzz.cc). The namespace is 4 MiB
// of 512-byte blocks (8192 blocks); the target's R2T transfer tag is the command's slot,
// 0 for the first command of a fresh queue, so each seed's first command is the one
// whose data goes by R2T.
#include <cstring>
#include <string>
#include <vector>

#include "nvmf/codec/pdu.h"

using namespace castor::nvmf;

namespace {
// Selector bits (byte 0).
constexpr uint8_t kHdgst = 0x01, kDdgst = 0x02;
constexpr uint8_t kChunk4k = 0x04, kChunk16k = 0x08, kChunk1000 = 0x0c;
constexpr uint8_t kTeardown = 0x10;
constexpr uint32_t kBlocks = 8192;

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7 + (i >> 9));
  return s;
}

struct Stream {
  explicit Stream(uint8_t sel) : hd(sel & kHdgst), dd(sel & kDdgst) {
    s.push_back(static_cast<char>(sel));
  }
  bool hd, dd;
  std::string s;

  void append(const void* p, size_t n) { s.append(static_cast<const char*>(p), n); }
  void data_and_digest(const std::string& data, bool bad_digest = false) {
    s += data;
    if (dd && !data.empty()) {
      uint32_t dg = digest({reinterpret_cast<const uint8_t*>(data.data()), data.size()});
      if (bad_digest) dg ^= 1;
      append(&dg, 4);
    }
  }
  // A command capsule; with `data` in-capsule (SGL data block, offset 0, its length)
  // unless `keep_sgl`, otherwise the SGL the caller set.
  void cmd(Sqe sqe, const std::string& data = {}, bool keep_sgl = false, bool bad_digest = false) {
    if (!data.empty() && !keep_sgl) {
      sqe.sgl1.type = kSglDataBlockOffset;
      sqe.sgl1.address = 0;
      sqe.sgl1.length = static_cast<uint32_t>(data.size());
    }
    uint8_t h[80];
    size_t n = build_capsule_cmd(h, sqe, static_cast<uint32_t>(data.size()), hd, dd);
    append(h, n);
    data_and_digest(data, bad_digest);
  }
  void h2c(uint16_t cid, uint16_t ttag, uint32_t off, const std::string& data, bool last) {
    uint8_t h[32];
    size_t n = build_data_header(h, PduType::kH2CData, cid, ttag, off,
                                 static_cast<uint32_t>(data.size()), last, false, hd, dd);
    append(h, n);
    data_and_digest(data);
  }
};

Sqe rw(uint8_t op, uint16_t cid, uint64_t slba, uint32_t nlb, uint32_t bs = 512) {
  Sqe s{};
  s.opcode = op;
  s.flags = 0x40;  // PSDT: SGL
  s.cid = cid;
  s.nsid = 1;
  s.cdw10 = static_cast<uint32_t>(slba);
  s.cdw11 = static_cast<uint32_t>(slba >> 32);
  s.cdw12 = (nlb - 1) & 0xffff;
  s.sgl1.type = kSglTransportDataBlock;  // data by R2T (write) or C2HData (read)
  s.sgl1.length = nlb * bs;
  return s;
}

Sqe plain(uint8_t op, uint16_t cid, uint32_t nsid = 1) {
  Sqe s{};
  s.opcode = op;
  s.flags = 0x40;
  s.cid = cid;
  s.nsid = nsid;
  s.sgl1.type = kSglTransportDataBlock;
  return s;
}

// Dataset Management ranges: (context attributes 0, nlb, slba).
std::string dsm_ranges(const std::vector<std::pair<uint64_t, uint32_t>>& r) {
  std::string s;
  for (const auto& [slba, nlb] : r) {
    uint32_t attr = 0;
    s.append(reinterpret_cast<const char*>(&attr), 4);
    s.append(reinterpret_cast<const char*>(&nlb), 4);
    s.append(reinterpret_cast<const char*>(&slba), 8);
  }
  return s;
}

Sqe dsm(uint16_t cid, uint32_t nr, bool deallocate) {
  Sqe s = plain(io_op::kDatasetManagement, cid);
  s.cdw10 = nr - 1;
  s.cdw11 = deallocate ? 1u << 2 : 0;
  s.sgl1.length = nr * 16;
  return s;
}

// In-capsule write of 4 KiB, read back, flush.
std::string incapsule_write_read(uint8_t sel) {
  Stream t(sel);
  t.cmd(rw(io_op::kWrite, 1, 0, 8), pattern(4096, 'a'));
  t.cmd(rw(io_op::kRead, 2, 0, 8));
  t.cmd(plain(io_op::kFlush, 3));
  t.cmd(rw(io_op::kWrite, 4, kBlocks - 2, 2), pattern(1024, 'b'));
  t.cmd(rw(io_op::kRead, 5, kBlocks - 4, 4));
  return t.s;
}

// A 32 KiB write asking for its data with R2T, sent as two H2CData PDUs (8 KiB, then
// 24 KiB: the second large enough for the in-place receive), then read back.
std::string r2t_write_read(uint8_t sel) {
  Stream t(sel);
  const std::string d = pattern(32768, 'r');
  t.cmd(rw(io_op::kWrite, 1, 64, 64));
  t.h2c(1, 0, 0, d.substr(0, 8192), false);
  t.h2c(1, 0, 8192, d.substr(8192), true);
  t.cmd(rw(io_op::kRead, 2, 64, 64));
  t.cmd(plain(io_op::kFlush, 3));
  return t.s;
}

// The largest transfer (MDTS 5: 128 KiB) in one H2CData PDU, read back.
std::string max_write_read(uint8_t sel) {
  Stream t(sel);
  t.cmd(rw(io_op::kWrite, 7, 1024, 256));
  t.h2c(7, 0, 0, pattern(131072, 'm'), true);
  t.cmd(rw(io_op::kRead, 8, 1024, 256));
  return t.s;
}

// Write Zeroes and Dataset Management with in-capsule ranges.
std::string zeroes_and_dsm() {
  Stream t(0);
  Sqe wz = plain(io_op::kWriteZeroes, 1);
  wz.cdw10 = 0;
  wz.cdw12 = 15;
  t.cmd(wz);
  t.cmd(dsm(2, 2, true), dsm_ranges({{0, 8}, {100, 0}}));
  t.cmd(dsm(3, 1, false), dsm_ranges({{0, 8}}));
  Sqe wz2 = plain(io_op::kWriteZeroes, 4);
  wz2.cdw10 = kBlocks - 1;
  wz2.cdw12 = 1;  // two blocks from the last one: out of range
  t.cmd(wz2);
  t.cmd(dsm(5, 1, true), dsm_ranges({{kBlocks - 1, 2}}));
  t.cmd(rw(io_op::kRead, 6, 0, 16));
  // As Linux sends them: one range in a 4 KiB buffer (room for 256); and a write whose
  // in-capsule data is longer than its blocks. The excess is ignored.
  std::string linux_ranges = dsm_ranges({{16, 8}});
  linux_ranges.resize(4096, '\0');
  t.cmd(dsm(7, 1, true), linux_ranges);
  t.cmd(rw(io_op::kWrite, 8, 32, 1), pattern(1024, 'x'));
  return t.s;
}

// Dataset Management whose ranges come by R2T.
std::string dsm_r2t() {
  Stream t(0);
  t.cmd(dsm(1, 2, true));
  t.h2c(1, 0, 0, dsm_ranges({{8, 8}, {64, 32}}), true);
  t.cmd(plain(io_op::kFlush, 2));
  return t.s;
}

// Commands every check must refuse (each answered with an error status).
std::string bad_commands() {
  Stream t(0);
  t.cmd(rw(io_op::kRead, 1, kBlocks - 2, 4));  // beyond the namespace end
  t.cmd(rw(io_op::kRead, 2, ~uint64_t{0}, 1));  // SLBA overflow
  t.cmd(rw(io_op::kWrite, 3, 0, 65536));  // beyond MDTS
  Sqe shortsgl = rw(io_op::kRead, 4, 0, 8);
  shortsgl.sgl1.length = 512;  // SGL shorter than the data
  t.cmd(shortsgl);
  Sqe inread = rw(io_op::kRead, 5, 0, 1);
  inread.sgl1.type = kSglDataBlockOffset;  // read into "in-capsule"
  t.cmd(inread);
  Sqe off = rw(io_op::kWrite, 6, 0, 1);
  off.sgl1.type = kSglDataBlockOffset;
  off.sgl1.address = 4;  // in-capsule offset
  off.sgl1.length = 512;
  t.cmd(off, pattern(512, 'o'), true);
  t.cmd(rw(io_op::kWrite, 7, 0, 32), pattern(16384, 'x'));  // in-capsule beyond 8 KiB
  t.cmd(rw(io_op::kWrite, 8, 0, 2), pattern(512, 'y'));  // in-capsule shorter than NLB
  Sqe nosgl = rw(io_op::kWrite, 9, 0, 1);
  nosgl.sgl1.type = 0;  // neither in-capsule nor R2T
  t.cmd(nosgl);
  t.cmd(rw(io_op::kWrite, 10, 0, 1));  // R2T never answered
  Sqe badns = rw(io_op::kRead, 11, 0, 1);
  badns.nsid = 2;
  t.cmd(badns);
  badns.cid = 12;
  badns.nsid = 0xffffffff;
  t.cmd(badns);
  t.cmd(plain(0x7e, 13));  // no such opcode
  t.cmd(plain(admin_op::kAsyncEventRequest, 14));  // admin opcodes
  t.cmd(plain(admin_op::kIdentify, 15));
  FabricsCmd fc{};
  fc.opcode = admin_op::kFabrics;
  fc.cid = 16;
  fc.fctype = fctype::kPropertyGet;
  Sqe pg;
  std::memcpy(&pg, &fc, sizeof(pg));
  t.cmd(pg);  // Fabrics on an I/O queue
  return t.s;
}

// Keep-alive (an admin command) on the I/O queue, then a write.
std::string keepalive() {
  Stream t(0);
  t.cmd(plain(admin_op::kKeepAlive, 1, 0));
  t.cmd(plain(admin_op::kKeepAlive, 2, 1));
  t.cmd(rw(io_op::kWrite, 3, 8, 1), pattern(512, 'k'));
  return t.s;
}

// H2CData the target must refuse with a TermReq: at the wrong offset, for a transfer tag
// with no R2T, beyond the command's data (in the in-place receive), with no R2T at all.
std::string h2c_wrong_offset() {
  Stream t(kChunk4k);
  t.cmd(rw(io_op::kWrite, 1, 0, 64));
  t.h2c(1, 0, 4096, pattern(8192, 'w'), false);
  return t.s;
}
std::string h2c_wrong_ttag() {
  Stream t(kChunk4k);
  t.cmd(rw(io_op::kWrite, 1, 0, 64));
  t.h2c(1, 5, 0, pattern(8192, 't'), false);
  return t.s;
}
std::string h2c_beyond_data() {
  Stream t(kChunk4k);
  t.cmd(rw(io_op::kWrite, 1, 0, 64));
  t.h2c(1, 0, 0, pattern(8192, 'b'), false);
  t.h2c(1, 0, 8192, pattern(28672, 'c'), true);
  return t.s;
}
std::string h2c_unsolicited() {
  Stream t(0);
  t.h2c(1, 0, 0, pattern(512, 'u'), true);
  return t.s;
}

// A write waiting for its data when the controller goes away (admin queue closed), with
// a second command reusing its CID meanwhile.
std::string teardown_mid_r2t() {
  Stream t(kTeardown | kChunk4k);
  t.cmd(rw(io_op::kWrite, 1, 0, 64));
  t.h2c(1, 0, 0, pattern(20480, 'd'), false);
  t.cmd(rw(io_op::kRead, 1, 0, 1));  // CID 1 is still in use
  t.cmd(rw(io_op::kRead, 2, 0, 8));
  return t.s;
}

// Digest failures: a data digest (the target closes the connection) and a header digest
// (TermReq).
std::string bad_data_digest() {
  Stream t(kHdgst | kDdgst);
  t.cmd(rw(io_op::kWrite, 1, 0, 8), pattern(4096, 'g'));
  t.cmd(rw(io_op::kWrite, 2, 0, 8), pattern(4096, 'h'), false, true);
  t.cmd(rw(io_op::kRead, 3, 0, 8));
  return t.s;
}
std::string bad_header_digest() {
  Stream t(kHdgst);
  t.cmd(rw(io_op::kRead, 1, 0, 8));
  const size_t at = t.s.size();
  t.cmd(rw(io_op::kRead, 2, 0, 8));
  t.s[at + 72] ^= 0x5a;  // the header digest of the second command
  return t.s;
}

// The host terminating the connection itself.
std::string host_term() {
  Stream t(0);
  t.cmd(rw(io_op::kWrite, 1, 0, 64));
  TermReq r{};
  r.ch = {static_cast<uint8_t>(PduType::kH2CTermReq), 0, 24, 0, 24};
  r.fes = 1;
  t.append(&r, sizeof(r));
  return t.s;
}
}  // namespace

// Reservations: Register by R2T (first command, ttag 0), then in-capsule; Acquire, the
// write group and a read as the holder, Report with and without EDS, bad fields, a
// Preempt of its own key, Release, Clear.
std::string reservations(uint8_t sel) {
  Stream t(sel);
  auto keys = [](uint64_t cur, uint64_t other) {
    std::string s(16, '\0');
    std::memcpy(s.data(), &cur, 8);
    std::memcpy(s.data() + 8, &other, 8);
    return s;
  };
  Sqe reg = plain(io_op::kReservationRegister, 1);
  reg.sgl1.length = 16;
  t.cmd(reg);  // the target answers with an R2T for slot 0
  t.h2c(1, 0, 0, keys(0, 0x1111), true);
  reg.cid = 2;
  reg.cdw10 = resv::kReplace;
  t.cmd(reg, keys(0x1111, 0x2222));
  Sqe acq = plain(io_op::kReservationAcquire, 3);
  acq.cdw10 = resv::kAcquire | 2u << 8;  // Exclusive Access
  t.cmd(acq, keys(0x2222, 0));
  t.cmd(rw(io_op::kWrite, 4, 16, 1), pattern(512, 'r'));
  t.cmd(rw(io_op::kRead, 5, 16, 1));
  t.cmd(plain(io_op::kFlush, 6));
  Sqe rep = plain(io_op::kReservationReport, 7);
  rep.cdw10 = 4096 / 4 - 1;
  rep.cdw11 = 1;  // EDS
  rep.sgl1.length = 4096;
  t.cmd(rep);
  rep.cid = 8;
  rep.cdw11 = 0;  // no EDS: Host Identifier Inconsistent Format
  t.cmd(rep);
  acq.cid = 9;
  acq.cdw10 = resv::kAcquire | 9u << 8 | 1u << 3;  // bad type and IEKEY
  t.cmd(acq, keys(0x2222, 0));
  acq.cid = 10;
  acq.cdw10 = resv::kPreemptAndAbort | 6u << 8;
  t.cmd(acq, keys(0x2222, 0x2222));
  Sqe rel = plain(io_op::kReservationRelease, 11);
  rel.cdw10 = resv::kRelease | 6u << 8;
  t.cmd(rel, keys(0x2222, 0).substr(0, 8));
  rel.cid = 12;
  rel.cdw10 = resv::kClear;
  t.cmd(rel, keys(0x2222, 0).substr(0, 8));
  return t.s;
}

extern const std::vector<std::string> kFuzzSeeds = {
    incapsule_write_read(0),
    incapsule_write_read(kHdgst | kDdgst),
    incapsule_write_read(kChunk1000 | kHdgst),
    r2t_write_read(kChunk4k),
    r2t_write_read(kChunk4k | kHdgst),
    r2t_write_read(kChunk4k | kHdgst | kDdgst),
    r2t_write_read(kChunk1000),
    max_write_read(kChunk16k),
    max_write_read(kDdgst),
    zeroes_and_dsm(),
    dsm_r2t(),
    bad_commands(),
    keepalive(),
    h2c_wrong_offset(),
    h2c_wrong_ttag(),
    h2c_beyond_data(),
    h2c_unsolicited(),
    teardown_mid_r2t(),
    bad_data_digest(),
    bad_header_digest(),
    host_term(),
    reservations(0),
    reservations(kChunk1000 | kHdgst | kDdgst),
};
