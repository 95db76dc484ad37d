// scsi::Device over a malloc bdev on a live reactor group: every command is executed on
// a reactor exactly as a transport would, and the status, sense and data checked byte by
// byte against SPC-4/SBC-3 and the iscsi-test-cu expectations.
#include "scsi/device.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <future>
#include <vector>

#include "../bdev/harness.h"
#include "pool/pool.h"
#include "scsi/logical_unit.h"
#include "scsi/sense.h"
#include "scsi/wire.h"
#include "../pool/small_pool.h"

namespace castor::scsi {
namespace {

using Bytes = std::vector<uint8_t>;

struct Reply {
  Status status = Status::kGood;
  Bytes data;   // Data-In actually returned (min(xfer_len, edtl))
  Bytes sense;
  uint32_t xfer_len = 0;
  DataDir dir = DataDir::kNone;
  bool done_inside_execute = false;

  uint8_t key() const { return sense.size() > 2 ? sense[2] & 0x0F : 0xFF; }
  uint16_t asc() const { return sense.size() > 13 ? uint16_t(sense[12] << 8 | sense[13]) : 0xFFFF; }
};

constexpr uint64_t kBlocks = 128ull * 1024 * 1024 / 512;  // larger than the maximum transfer

class ScsiDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=128&blk_size=512").is_ok());
    ASSERT_TRUE(env.reg->create("malloc:///ro?size_mb=4&blk_size=4096").is_ok());
    DeviceInfo info;
    info.target_name = "iqn.2026-01.io.castor:t1";
    dev = std::make_unique<Device>(*env.reg, info);
    ASSERT_TRUE(dev->add_lun({0, "m0", false, "Castor volume"}).is_ok());
    ASSERT_TRUE(dev->add_lun({3, "ro", true, "Castor ro"}).is_ok());
    EXPECT_FALSE(dev->add_lun({0, "m0", false, ""}).is_ok());
    EXPECT_FALSE(dev->add_lun({5, "nope", false, ""}).is_ok());
    EXPECT_FALSE(dev->add_lun({300, "m0", false, ""}).is_ok());
    n1.id = 1;
    n1.initiator_name = "iqn.2026-01.test:init1";
    n1.initiator_port = "iqn.2026-01.test:init1,i,0x000000000001";
    n1.target_port = "iqn.2026-01.io.castor:t1,t,0x0001";
    n1.relative_port = 1;
    n2 = n1;
    n2.id = 2;
    n2.initiator_name = "iqn.2026-01.test:init2";
    n2.initiator_port = "iqn.2026-01.test:init2,i,0x000000000002";
    n2.relative_port = 2;
    dev->attach(n1);
    dev->attach(n2);
    // Consume the power-on unit attentions.
    for (const ItNexus* n : {&n1, &n2}) {
      for (uint64_t lun : {0, 3}) {
        Reply r = run(*n, {op::kTestUnitReady, 0, 0, 0, 0, 0}, {}, 0, lun);
        ASSERT_EQ(r.status, Status::kCheckCondition);
        ASSERT_EQ(r.key(), sense_key::kUnitAttention);
        ASSERT_EQ(r.asc(), 0x2900);
      }
    }
  }
  void TearDown() override {
    dev->detach(n1);
    dev->detach(n2);
  }

  Reply run(const ItNexus& n, Bytes cdb, const Bytes& out = {}, uint32_t edtl = UINT32_MAX,
            uint64_t lun = 0, size_t reactor = 0) {
    Command c;
    std::memcpy(c.cdb, cdb.data(), std::min<size_t>(cdb.size(), 16));
    c.lun = lun;
    c.nexus = &n;
    c.edtl = edtl == UINT32_MAX ? static_cast<uint32_t>(out.size() ? out.size() : 1 << 20) : edtl;
    c.data_out_len = static_cast<uint32_t>(std::min<size_t>(out.size(), c.edtl));
    c.buf = bdev::DmaBuffer(std::max<size_t>(out.size(), 4096));
    if (!out.empty()) std::memcpy(c.buf.data(), out.data(), out.size());
    const bool violated = exec(c, reactor);
    Reply rep;
    rep.status = c.status;
    rep.xfer_len = c.xfer_len;
    rep.dir = c.dir;
    rep.done_inside_execute = violated;
    rep.sense.assign(c.sense, c.sense + c.sense_len);
    if (c.dir == DataDir::kIn && c.status != Status::kCheckCondition) {
      const size_t n = std::min<size_t>(c.xfer_len, c.edtl);
      rep.data.assign(c.buf.data(), c.buf.data() + n);
    }
    EXPECT_FALSE(rep.done_inside_execute);
    return rep;
  }
  // Executes `c` on a reactor and waits; returns true if `done` ran inside execute().
  bool exec(Command& c, size_t reactor = 0) {
    struct Ctx {
      std::promise<void> p;
      std::atomic<bool> in_execute{false};
      bool violated = false;
    } ctx;
    c.done = [](Command&, void* arg) {
      auto* x = static_cast<Ctx*>(arg);
      if (x->in_execute.load()) x->violated = true;
      x->p.set_value();
    };
    c.done_arg = &ctx;
    auto f = ctx.p.get_future();
    reactor::Reactor& r = env.group.at(reactor);
    r.send([&] {
      ctx.in_execute = true;
      dev->execute(c, r);
      ctx.in_execute = false;
    });
    f.get();
    return ctx.violated;
  }
  Reply run1(Bytes cdb, const Bytes& out = {}, uint32_t edtl = UINT32_MAX) {
    return run(n1, std::move(cdb), out, edtl);
  }

  static Bytes cdb10(uint8_t op, uint32_t lba, uint16_t blocks, uint8_t flags = 0) {
    Bytes c(10, 0);
    c[0] = op;
    c[1] = flags;
    store_be32(&c[2], lba);
    store_be16(&c[7], blocks);
    return c;
  }
  static Bytes cdb16(uint8_t op, uint64_t lba, uint32_t blocks, uint8_t flags = 0) {
    Bytes c(16, 0);
    c[0] = op;
    c[1] = flags;
    store_be64(&c[2], lba);
    store_be32(&c[10], blocks);
    return c;
  }
  static Bytes pattern(size_t n, uint8_t seed) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
    return b;
  }
  Bytes read16(uint64_t lba, uint32_t blocks) {
    Reply r = run1(cdb16(op::kRead16, lba, blocks));
    EXPECT_EQ(r.status, Status::kGood);
    return r.data;
  }
  void expect_check(const Reply& r, uint8_t key, uint16_t asc) {
    EXPECT_EQ(r.status, Status::kCheckCondition);
    EXPECT_EQ(r.key(), key);
    EXPECT_EQ(r.asc(), asc) << std::hex << r.asc();
  }

  bdev::test::Env env;
  std::unique_ptr<Device> dev;
  ItNexus n1, n2;
};

// ---------------- INQUIRY ----------------

TEST_F(ScsiDevice, InquiryStandard) {
  Reply r = run1({op::kInquiry, 0, 0, 0, 255, 0});
  ASSERT_EQ(r.status, Status::kGood);
  ASSERT_EQ(r.data.size(), 96u);
  const Bytes& d = r.data;
  EXPECT_EQ(d[0], 0x00);
  EXPECT_EQ(d[1], 0x00);  // not removable
  EXPECT_EQ(d[2], 0x06);
  EXPECT_EQ(d[3], 0x12);
  EXPECT_EQ(d[4], 96 - 5);
  EXPECT_EQ(d[7], 0x02);
  EXPECT_EQ(std::string(d.begin() + 8, d.begin() + 16), "CASTOR  ");
  EXPECT_EQ(std::string(d.begin() + 16, d.begin() + 32), "Castor volume   ");
  EXPECT_EQ(load_be16(&d[58]), 0x00A0);
  EXPECT_EQ(load_be16(&d[60]), 0x0960);
  EXPECT_EQ(load_be16(&d[62]), 0x0460);
  EXPECT_EQ(load_be16(&d[64]), 0x04C0);
  for (size_t i = 66; i < d.size(); ++i) EXPECT_EQ(d[i], 0) << i;
  for (uint16_t alloc = 5; alloc <= 255; alloc += 25) {
    Reply a = run1({op::kInquiry, 0, 0, 0, static_cast<uint8_t>(alloc), 0});
    EXPECT_EQ(a.status, Status::kGood);
    EXPECT_EQ(a.xfer_len, std::min<uint32_t>(alloc, 96));
  }
  Reply a511 = run1({op::kInquiry, 0, 0, 0x01, 0xFF, 0});
  Reply a512 = run1({op::kInquiry, 0, 0, 0x02, 0x00, 0});
  EXPECT_EQ(a511.data, a512.data);
  // EVPD = 0 with a page code, CMDDT: invalid field with a field pointer.
  Reply bad = run1({op::kInquiry, 0, 0x80, 0, 255, 0});
  expect_check(bad, sense_key::kIllegalRequest, 0x2400);
  EXPECT_EQ(bad.sense[15], 0xC0);  // SKSV | C/D
  EXPECT_EQ(load_be16(&bad.sense[16]), 2);
  expect_check(run1({op::kInquiry, 0x02, 0, 0, 255, 0}), sense_key::kIllegalRequest, 0x2400);
  expect_check(run1({op::kInquiry, 0x01, 0x42, 0, 255, 0}), sense_key::kIllegalRequest, 0x2400);
}

TEST_F(ScsiDevice, InquiryVpdPages) {
  Reply p0 = run1({op::kInquiry, 1, 0x00, 0, 255, 0});
  ASSERT_EQ(p0.status, Status::kGood);
  EXPECT_EQ(p0.data, (Bytes{0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2}));
  for (size_t i = 4; i < p0.data.size(); ++i) {
    Reply p = run1({op::kInquiry, 1, p0.data[i], 0, 255, 0});
    EXPECT_EQ(p.status, Status::kGood) << int(p0.data[i]);
    EXPECT_EQ(p.data[1], p0.data[i]);
  }
  Reply sn = run1({op::kInquiry, 1, 0x80, 0, 255, 0});
  ASSERT_EQ(sn.data.size(), 4u + 32u);
  EXPECT_EQ(sn.data[3], 32);
  for (size_t i = 4; i < sn.data.size(); ++i) EXPECT_TRUE(isxdigit(sn.data[i]));

  Reply id = run1({op::kInquiry, 1, 0x83, 0x01, 0x00, 0});
  ASSERT_EQ(id.status, Status::kGood);
  const Bytes& d = id.data;
  ASSERT_EQ(load_be16(&d[2]) + 4u, d.size());
  bool naa = false, relport = false, port_name = false, target_name = false;
  for (size_t off = 4; off + 4 <= d.size();) {
    const uint8_t* x = &d[off];
    const uint8_t type = x[1] & 0x0F, assoc = (x[1] >> 4) & 3;
    if (type == 3) {
      naa = true;
      EXPECT_EQ(x[3], 16);
      EXPECT_EQ(x[4] >> 4, 6);
      EXPECT_EQ(assoc, 0);
    } else if (type == 4) {
      relport = true;
      EXPECT_EQ(x[0], 0x51);
      EXPECT_EQ(x[1] & 0x80, 0x80);
      EXPECT_EQ(load_be16(x + 6), 1);
    } else if (type == 8) {
      EXPECT_EQ(x[3] % 4, 0);
      std::string s(reinterpret_cast<const char*>(x + 4));
      if (assoc == 1) {
        port_name = true;
        EXPECT_EQ(s, n1.target_port);
      } else if (assoc == 2) {
        target_name = true;
        EXPECT_EQ(s, "iqn.2026-01.io.castor:t1");
      }
    }
    off += 4 + x[3];
  }
  EXPECT_TRUE(naa && relport && port_name && target_name);
  // Same NAA from the other nexus/reactor; relative port follows the nexus.
  Reply id2 = run(n2, {op::kInquiry, 1, 0x83, 0x01, 0x00, 0}, {}, UINT32_MAX, 0, 1);
  EXPECT_TRUE(std::equal(d.begin() + 4, d.begin() + 24, id2.data.begin() + 4));

  Reply b0 = run1({op::kInquiry, 1, 0xB0, 0, 255, 0});
  ASSERT_EQ(b0.data.size(), 64u);
  EXPECT_EQ(load_be16(&b0.data[2]), 0x3C);
  EXPECT_EQ(b0.data[4], 0x01);  // WSNZ
  EXPECT_EQ(b0.data[5], 1);     // MAX CAW LEN
  EXPECT_EQ(load_be32(&b0.data[8]), kMaxTransferBytes / 512);
  EXPECT_EQ(load_be32(&b0.data[20]), kMaxUnmapBlocks);
  EXPECT_EQ(load_be32(&b0.data[24]), 256u);
  EXPECT_EQ(load_be64(&b0.data[36]), 1u << 22);
  for (size_t i = 44; i < 64; ++i) EXPECT_EQ(b0.data[i], 0);

  Reply b1 = run1({op::kInquiry, 1, 0xB1, 0, 255, 0});
  ASSERT_EQ(b1.data.size(), 64u);
  EXPECT_EQ(load_be16(&b1.data[4]), 1);

  Reply b2 = run1({op::kInquiry, 1, 0xB2, 0, 255, 0});
  ASSERT_EQ(b2.data.size(), 8u);
  EXPECT_EQ(b2.data[5], 0xE4);  // LBPU LBPWS LBPWS10 LBPRZ
}

TEST_F(ScsiDevice, UnknownLunAndReportLuns) {
  Reply inq = run(n1, {op::kInquiry, 0, 0, 0, 96, 0}, {}, UINT32_MAX, 7);
  ASSERT_EQ(inq.status, Status::kGood);
  EXPECT_EQ(inq.data[0], 0x7F);
  expect_check(run(n1, {op::kTestUnitReady, 0, 0, 0, 0, 0}, {}, 0, 7), sense_key::kIllegalRequest,
               0x2500);
  Reply rl = run(n1, {op::kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, {}, UINT32_MAX, 7);
  ASSERT_EQ(rl.status, Status::kGood);
  ASSERT_EQ(rl.data.size(), 24u);
  EXPECT_EQ(load_be32(&rl.data[0]), 16u);
  EXPECT_EQ(rl.data[9], 0);
  EXPECT_EQ(rl.data[17], 3);
  expect_check(run1({op::kReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0}),
               sense_key::kIllegalRequest, 0x2400);
  expect_check(run1({0xC7, 0, 0, 0, 0, 0}), sense_key::kIllegalRequest, 0x2000);
  expect_check(run1({0x48, 0, 0, 0, 0, 0, 0, 0, 0, 0}), sense_key::kIllegalRequest, 0x2000);
  // Unimplemented opcodes are 05/20 whatever their fields say (here the control byte).
  expect_check(run1({0xA1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF}), sense_key::kIllegalRequest, 0x2000);
  // NACA is not supported: 05/24 pointing at the control byte.
  Reply naca = run1({op::kTestUnitReady, 0, 0, 0, 0, 0x04});
  expect_check(naca, sense_key::kIllegalRequest, 0x2400);
  EXPECT_EQ(load_be16(&naca.sense[16]), 5);
}

// ---------------- capacity and data path ----------------

TEST_F(ScsiDevice, ReadCapacity) {
  Reply rc = run1({op::kReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  ASSERT_EQ(rc.status, Status::kGood);
  ASSERT_EQ(rc.data.size(), 8u);
  EXPECT_EQ(load_be32(&rc.data[0]), kBlocks - 1);
  EXPECT_EQ(load_be32(&rc.data[4]), 512u);
  Bytes c16(16, 0);
  c16[0] = op::kServiceActionIn16;
  c16[1] = kSaReadCapacity16;
  c16[13] = 32;
  Reply r16 = run1(c16);
  ASSERT_EQ(r16.data.size(), 32u);
  EXPECT_EQ(load_be64(&r16.data[0]), kBlocks - 1);
  EXPECT_EQ(load_be32(&r16.data[8]), 512u);
  EXPECT_EQ(r16.data[14], 0xC0);  // LBPME | LBPRZ
  for (uint8_t alloc = 0; alloc < 16; ++alloc) {
    c16[13] = alloc;
    Reply r = run1(c16);
    EXPECT_EQ(r.status, Status::kGood);
    EXPECT_EQ(r.xfer_len, alloc);
  }
}

TEST_F(ScsiDevice, WriteReadRoundTrip) {
  const Bytes a = pattern(8 * 512, 1), b = pattern(3 * 512, 99);
  ASSERT_EQ(run1(cdb10(op::kWrite10, 100, 8), a).status, Status::kGood);
  Reply r = run1(cdb10(op::kRead10, 100, 8));
  ASSERT_EQ(r.status, Status::kGood);
  EXPECT_EQ(r.dir, DataDir::kIn);
  EXPECT_EQ(r.data, a);
  ASSERT_EQ(run1(cdb16(op::kWrite16, kBlocks - 3, 3, 0x08 /* FUA */), b).status, Status::kGood);
  EXPECT_EQ(read16(kBlocks - 3, 3), b);
  // 12-byte and 6-byte forms on the other reactor.
  Bytes c12(12, 0);
  c12[0] = op::kRead12;
  store_be32(&c12[2], 100);
  store_be32(&c12[6], 8);
  EXPECT_EQ(run(n1, c12, {}, UINT32_MAX, 0, 1).data, a);
  Bytes w6{op::kWrite6, 0, 0, 50, 1, 0};
  ASSERT_EQ(run1(w6, pattern(512, 5)).status, Status::kGood);
  Reply r6 = run1({op::kRead6, 0, 0, 50, 1, 0});
  EXPECT_EQ(r6.data, pattern(512, 5));
  Reply r6z = run1({op::kRead6, 0, 0, 0, 0, 0});  // 0 = 256 blocks
  EXPECT_EQ(r6z.xfer_len, 256u * 512);
  // WRITE AND VERIFY.
  ASSERT_EQ(run1(cdb10(op::kWriteVerify10, 200, 1, 0x02), pattern(512, 7)).status, Status::kGood);
  EXPECT_EQ(read16(200, 1), pattern(512, 7));
  // RDPROTECT is rejected with a bit pointer.
  Reply pr = run1(cdb10(op::kRead10, 0, 1, 0x20));
  expect_check(pr, sense_key::kIllegalRequest, 0x2400);
  EXPECT_EQ(pr.sense[15], 0xC8 | 7);
  EXPECT_EQ(load_be16(&pr.sense[16]), 1);
}

TEST_F(ScsiDevice, CommandBufferIsReusedOnceLargeEnough) {
  Command c;
  c.nexus = &n1;
  c.edtl = 1 << 20;
  c.buf = bdev::DmaBuffer(64 * 1024);
  const Bytes cdb = cdb10(op::kRead10, 0, 8);
  std::memcpy(c.cdb, cdb.data(), cdb.size());
  const uint8_t* first = c.buf.data();
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(exec(c, i % 2));
    EXPECT_EQ(c.status, Status::kGood);
    EXPECT_EQ(c.xfer_len, 4096u);
    EXPECT_EQ(c.buf.data(), first);  // no allocation on the warm path
  }
  const Bytes big = cdb10(op::kRead10, 0, 512);  // 256 KiB: grows once
  std::memcpy(c.cdb, big.data(), big.size());
  EXPECT_FALSE(exec(c));
  EXPECT_EQ(c.status, Status::kGood);
  EXPECT_GE(c.buf.size(), 256u * 1024);
  const uint8_t* grown = c.buf.data();
  EXPECT_FALSE(exec(c));
  EXPECT_EQ(c.buf.data(), grown);
}

TEST_F(ScsiDevice, OutOfRange) {
  for (uint64_t lba : {kBlocks, kBlocks + 1, uint64_t{1} << 63, ~uint64_t{0}}) {
    expect_check(run1(cdb16(op::kRead16, lba, 1)), sense_key::kIllegalRequest, 0x2100);
    expect_check(run1(cdb16(op::kWrite16, lba, 1), Bytes(512)), sense_key::kIllegalRequest,
                 0x2100);
    expect_check(run1(cdb16(op::kVerify16, lba, 1)), sense_key::kIllegalRequest, 0x2100);
  }
  // "All but one block past the end".
  expect_check(run1(cdb16(op::kRead16, 1, static_cast<uint32_t>(kBlocks))),
               sense_key::kIllegalRequest, 0x2100);
  // 0 blocks: LBA = capacity passes, capacity + 1 fails.
  EXPECT_EQ(run1(cdb16(op::kRead16, kBlocks, 0)).status, Status::kGood);
  expect_check(run1(cdb16(op::kRead16, kBlocks + 1, 0)), sense_key::kIllegalRequest, 0x2100);
  expect_check(run1(cdb10(op::kRead10, 0x80000000u, 1)), sense_key::kIllegalRequest, 0x2100);
  expect_check(run1(cdb10(op::kSyncCache10, static_cast<uint32_t>(kBlocks), 1)),
               sense_key::kIllegalRequest, 0x2100);
  EXPECT_EQ(run1(cdb10(op::kSyncCache10, 0, 0)).status, Status::kGood);
  EXPECT_EQ(run1(cdb10(op::kPreFetch10, 0, 8)).status, Status::kConditionMet);
  expect_check(run1(cdb16(op::kPreFetch16, ~uint64_t{0}, 1)), sense_key::kIllegalRequest, 0x2100);
  Bytes gls(16, 0);
  gls[0] = op::kServiceActionIn16;
  gls[1] = kSaGetLbaStatus;
  store_be64(&gls[2], kBlocks);
  store_be32(&gls[10], 24);
  expect_check(run1(gls), sense_key::kIllegalRequest, 0x2100);
  store_be64(&gls[2], 10);
  Reply g = run1(gls);
  ASSERT_EQ(g.status, Status::kGood);
  EXPECT_EQ(load_be64(&g.data[8]), 10u);
  EXPECT_EQ(load_be32(&g.data[16]), kBlocks - 10);
  EXPECT_EQ(g.data[20], 0);
  // Over the maximum transfer length.
  expect_check(run1(cdb16(op::kRead16, 0, kMaxTransferBytes / 512 + 1)), sense_key::kIllegalRequest,
               0x2400);
}

TEST_F(ScsiDevice, ZeroBlocksAndShortDataOut) {
  const Bytes before = read16(300, 2);
  Reply z = run1(cdb10(op::kWrite10, 300, 0), {}, 0);
  EXPECT_EQ(z.status, Status::kGood);
  EXPECT_EQ(z.xfer_len, 0u);
  EXPECT_EQ(read16(300, 2), before);
  // Asks for 2 blocks, sends 1: GOOD, only the block sent is written.
  const Bytes one = pattern(512, 42);
  Reply s = run1(cdb10(op::kWrite10, 300, 2), one, 512);
  EXPECT_EQ(s.status, Status::kGood);
  EXPECT_EQ(s.xfer_len, 1024u);
  Bytes now = read16(300, 2);
  EXPECT_TRUE(std::equal(one.begin(), one.end(), now.begin()));
  EXPECT_TRUE(std::equal(before.begin() + 512, before.end(), now.begin() + 512));
  // A partial block is an error and writes nothing.
  expect_check(run1(cdb10(op::kWrite10, 310, 2), pattern(700, 1), 700),
               sense_key::kIllegalRequest, 0x0E03);
  EXPECT_EQ(read16(310, 1), Bytes(512, 0));
}

TEST_F(ScsiDevice, VerifyCompare) {
  const Bytes a = pattern(4 * 512, 3);
  ASSERT_EQ(run1(cdb10(op::kWrite10, 400, 4), a).status, Status::kGood);
  EXPECT_EQ(run1(cdb10(op::kVerify10, 400, 4)).status, Status::kGood);  // BYTCHK 0
  EXPECT_EQ(run1(cdb10(op::kVerify10, 400, 4, 0x02), a).status, Status::kGood);
  Bytes bad = a;
  bad[1234] ^= 0xFF;
  Reply m = run1(cdb16(op::kVerify16, 400, 4, 0x02), bad);
  expect_check(m, sense_key::kMiscompare, 0x1D00);
  EXPECT_EQ(m.sense[0], 0xF0);  // VALID
  EXPECT_EQ(load_be32(&m.sense[3]), 1234u);
  // BYTCHK 11b: one block compared with each.
  ASSERT_EQ(run1(cdb10(op::kWriteSame10, 500, 3), pattern(512, 9)).status, Status::kGood);
  EXPECT_EQ(run1(cdb10(op::kVerify10, 500, 3, 0x06), pattern(512, 9)).status, Status::kGood);
  Reply m3 = run1(cdb10(op::kVerify10, 499, 3, 0x06), pattern(512, 9));
  expect_check(m3, sense_key::kMiscompare, 0x1D00);
  EXPECT_EQ(load_be32(&m3.sense[3]), 0u);
}

TEST_F(ScsiDevice, CompareAndWrite) {
  const Bytes old = pattern(512, 11), neu = pattern(512, 77);
  ASSERT_EQ(run1(cdb16(op::kWrite16, 600, 1), old).status, Status::kGood);
  Bytes caw(16, 0);
  caw[0] = op::kCompareAndWrite;
  store_be64(&caw[2], 600);
  caw[13] = 1;
  Bytes data = old;
  data.insert(data.end(), neu.begin(), neu.end());
  EXPECT_EQ(run1(caw, data).status, Status::kGood);
  EXPECT_EQ(read16(600, 1), neu);
  // Mismatch: the first differing byte is reported, nothing is written.
  Bytes wrong = old;
  const Bytes other = pattern(512, 200);
  wrong.insert(wrong.end(), other.begin(), other.end());
  for (size_t i = 0; i < 512; ++i) wrong[i] = neu[i];
  wrong[17] ^= 1;
  Reply m = run1(caw, wrong);
  expect_check(m, sense_key::kMiscompare, 0x1D00);
  EXPECT_EQ(load_be32(&m.sense[3]), 17u);
  EXPECT_EQ(read16(600, 1), neu);
  // More than MAX CAW LEN, or a Data-Out length that is not 2 x blocks.
  caw[13] = 2;
  expect_check(run1(caw, Bytes(2048)), sense_key::kIllegalRequest, 0x2400);
  caw[13] = 1;
  expect_check(run1(caw, Bytes(512)), sense_key::kIllegalRequest, 0x2400);
  store_be64(&caw[2], kBlocks);
  expect_check(run1(caw, data), sense_key::kIllegalRequest, 0x2100);
}

TEST_F(ScsiDevice, CompareAndWriteIsAtomicAcrossReactors) {
  // Many concurrent CAWs on both reactors, all comparing against the same block:
  // exactly one may win.
  const Bytes base = pattern(512, 1);
  ASSERT_EQ(run1(cdb16(op::kWrite16, 700, 1), base).status, Status::kGood);
  constexpr int kN = 16;
  std::vector<std::future<Reply>> fs;
  for (int i = 0; i < kN; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      Bytes caw(16, 0);
      caw[0] = op::kCompareAndWrite;
      store_be64(&caw[2], 700);
      caw[13] = 1;
      Bytes d = base;
      Bytes w = pattern(512, static_cast<uint8_t>(100 + i));
      d.insert(d.end(), w.begin(), w.end());
      return run(i % 2 ? n1 : n2, caw, d, UINT32_MAX, 0, i % 2);
    }));
  }
  int good = 0, miscompares = 0;
  for (auto& f : fs) {
    Reply r = f.get();
    if (r.status == Status::kGood) ++good;
    if (r.status == Status::kCheckCondition && r.key() == sense_key::kMiscompare) ++miscompares;
  }
  EXPECT_EQ(good, 1);
  EXPECT_EQ(miscompares, kN - 1);
}

TEST_F(ScsiDevice, UnmapAndWriteSame) {
  ASSERT_EQ(run1(cdb10(op::kWrite10, 800, 8), pattern(8 * 512, 5)).status, Status::kGood);
  Bytes list(8 + 2 * 16, 0);
  store_be16(&list[0], static_cast<uint16_t>(list.size() - 2));
  store_be16(&list[2], 32);
  store_be64(&list[8], 801);
  store_be32(&list[16], 2);
  store_be64(&list[24], kBlocks);  // 0 blocks at LBA = capacity: fine
  Bytes cdb{op::kUnmap, 0, 0, 0, 0, 0, 0, 0, static_cast<uint8_t>(list.size()), 0};
  ASSERT_EQ(run1(cdb, list).status, Status::kGood);
  Bytes after = read16(800, 8);
  EXPECT_EQ(Bytes(after.begin() + 512, after.begin() + 3 * 512), Bytes(1024, 0));
  EXPECT_NE(Bytes(after.begin(), after.begin() + 512), Bytes(512, 0));
  EXPECT_NE(Bytes(after.begin() + 3 * 512, after.begin() + 4 * 512), Bytes(512, 0));
  // Parameter list length 0 and an empty list are GOOD.
  EXPECT_EQ(run1({op::kUnmap, 0, 0, 0, 0, 0, 0, 0, 0, 0}).status, Status::kGood);
  EXPECT_EQ(run1({op::kUnmap, 0, 0, 0, 0, 0, 0, 0, 8, 0}, Bytes{0, 6, 0, 0, 0, 0, 0, 0}).status,
            Status::kGood);
  // Past the end: 05/21; too many blocks: 05/26; ANCHOR: 05/24.
  store_be64(&list[24], kBlocks - 1);
  store_be32(&list[32], 2);
  expect_check(run1(cdb, list), sense_key::kIllegalRequest, 0x2100);
  store_be64(&list[24], 0);
  store_be32(&list[32], (1u << 22));
  expect_check(run1(cdb, list), sense_key::kIllegalRequest, 0x2600);
  cdb[1] = 1;
  expect_check(run1(cdb, list), sense_key::kIllegalRequest, 0x2400);

  // WRITE SAME replicates the block (across several chunks).
  const Bytes blk = pattern(512, 123);
  const uint32_t n = 1100;
  ASSERT_EQ(run1(cdb16(op::kWriteSame16, 10000, n), blk).status, Status::kGood);
  Bytes all = read16(10000, n);
  for (uint32_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::equal(blk.begin(), blk.end(), all.begin() + i * 512)) << i;
  }
  EXPECT_EQ(read16(10000 + n, 1), Bytes(512, 0));
  // WRITE SAME with UNMAP and a zero block deallocates (reads zero).
  ASSERT_EQ(run1(cdb10(op::kWriteSame10, 10000, 100, 0x08), Bytes(512, 0)).status, Status::kGood);
  EXPECT_EQ(read16(10000, 100), Bytes(100 * 512, 0));
  EXPECT_EQ(read16(10100, 1), blk);
  // 0 blocks (WSNZ=1), ANCHOR without UNMAP, wrong Data-Out size.
  expect_check(run1(cdb10(op::kWriteSame10, 0, 0), blk), sense_key::kIllegalRequest, 0x2400);
  expect_check(run1(cdb10(op::kWriteSame10, 0, 1, 0x10), blk), sense_key::kIllegalRequest, 0x2400);
  expect_check(run1(cdb10(op::kWriteSame10, 0, 1), Bytes(1024, 1)), sense_key::kIllegalRequest,
               0x0E03);
  expect_check(run1(cdb16(op::kWriteSame16, kBlocks - 1, 2), blk), sense_key::kIllegalRequest,
               0x2100);
}

// ---------------- MODE SENSE / SELECT ----------------

TEST_F(ScsiDevice, ModeSense) {
  Reply all = run1({op::kModeSense6, 0, 0x3F, 0, 255, 0});
  ASSERT_EQ(all.status, Status::kGood);
  const Bytes& d = all.data;
  ASSERT_EQ(d.size(), 4u + 8 + 20 + 12 + 12);
  EXPECT_EQ(d[0], d.size() - 1);
  EXPECT_EQ(d[2], 0x10);  // DPOFUA, not WP
  EXPECT_EQ(d[3], 8);
  EXPECT_EQ(load_be32(&d[4]), kBlocks);
  EXPECT_EQ(load_be32(&d[8]) & 0xFFFFFF, 512u);
  EXPECT_EQ(d[12], 0x08);
  EXPECT_EQ(d[13], 0x12);
  EXPECT_EQ(d[14], 0x04);  // WCE
  EXPECT_EQ(d[32], 0x0A);
  EXPECT_EQ(d[33], 0x0A);
  EXPECT_EQ(d[44], 0x1C);
  // Control page alone equals the one inside 0x3F; DBD drops the block descriptor.
  Reply ctl = run1({op::kModeSense6, 0x08, 0x0A, 0, 255, 0});
  ASSERT_EQ(ctl.data.size(), 4u + 12);
  EXPECT_EQ(ctl.data[0], 15);
  EXPECT_EQ(ctl.data[3], 0);
  EXPECT_TRUE(std::equal(ctl.data.begin() + 4, ctl.data.end(), d.begin() + 32));
  // PC=1 (changeable) returns the control page with an all-zero mask.
  Reply ch = run1({op::kModeSense6, 0x08, 0x4A, 0, 255, 0});
  ASSERT_EQ(ch.status, Status::kGood);
  ASSERT_EQ(ch.data.size(), 16u);
  EXPECT_EQ(ch.data[4], 0x0A);
  EXPECT_EQ(ch.data[5], 0x0A);
  for (size_t i = 6; i < 16; ++i) EXPECT_EQ(ch.data[i], 0);
  // Allocation length 4: only the header.
  Reply a4 = run1({op::kModeSense6, 0, 0x3F, 0, 4, 0});
  EXPECT_EQ(a4.data.size(), 4u);
  expect_check(run1({op::kModeSense6, 0, 0xCA, 0, 255, 0}), sense_key::kIllegalRequest, 0x3900);
  expect_check(run1({op::kModeSense6, 0, 0x19, 0, 255, 0}), sense_key::kIllegalRequest, 0x2400);
  // MODE SENSE(10) header.
  Reply ten = run1({op::kModeSense10, 0, 0x3F, 0, 0, 0, 0, 1, 0, 0});
  ASSERT_EQ(ten.status, Status::kGood);
  EXPECT_EQ(load_be16(&ten.data[0]), ten.data.size() - 2);
  EXPECT_EQ(ten.data[3], 0x10);
  EXPECT_EQ(load_be16(&ten.data[6]), 8);
  // Read-only LU reports WP.
  Reply ro = run(n1, {op::kModeSense6, 0, 0x3F, 0, 255, 0}, {}, UINT32_MAX, 3);
  EXPECT_EQ(ro.data[2], 0x90);
  // MODE SELECT restating the current control page is accepted; a change is not.
  Bytes sel(4 + 12, 0);
  std::copy(ctl.data.begin() + 4, ctl.data.end(), sel.begin() + 4);
  EXPECT_EQ(run1({op::kModeSelect6, 0x10, 0, 0, 16, 0}, sel).status, Status::kGood);
  sel[6] |= 0x04;  // D_SENSE
  expect_check(run1({op::kModeSelect6, 0x10, 0, 0, 16, 0}, sel), sense_key::kIllegalRequest,
               0x2600);
}

TEST_F(ScsiDevice, ReportSupportedOpcodes) {
  Bytes c(12, 0);
  c[0] = op::kMaintenanceIn;
  c[1] = kSaReportSupportedOpcodes;
  store_be32(&c[6], 4096);
  Reply all = run1(c);
  ASSERT_EQ(all.status, Status::kGood);
  EXPECT_EQ(load_be32(&all.data[0]) + 4, all.data.size());
  c[2] = 1;
  c[3] = op::kWrite10;
  Reply one = run1(c);
  ASSERT_EQ(one.status, Status::kGood);
  EXPECT_EQ(one.data[1] & 7, 3);
  EXPECT_EQ(load_be16(&one.data[2]), 10);
  EXPECT_EQ(one.data[4], op::kWrite10);
  EXPECT_EQ(one.data[5] & 0x18, 0x18);  // DPO/FUA, matching DPOFUA=1
  c[3] = 0xC7;
  EXPECT_EQ(run1(c).data[1] & 7, 1);
}

// ---------------- unit attentions and reservations ----------------

TEST_F(ScsiDevice, UnitAttentionAtAttachAndReset) {
  ItNexus n3 = n1;
  n3.id = 3;
  dev->attach(n3);
  EXPECT_EQ(run(n3, {op::kInquiry, 0, 0, 0, 36, 0}).status, Status::kGood);
  // REQUEST SENSE reports and clears it ...
  Reply rs = run(n3, {op::kRequestSense, 0, 0, 0, 18, 0});
  ASSERT_EQ(rs.status, Status::kGood);
  EXPECT_EQ(rs.data[2], sense_key::kUnitAttention);
  EXPECT_EQ(rs.data[12], 0x29);
  Reply again = run(n3, {op::kRequestSense, 0, 0, 0, 18, 0});
  EXPECT_EQ(again.data[2], sense_key::kNoSense);
  EXPECT_EQ(run(n3, {op::kTestUnitReady, 0, 0, 0, 0, 0}).status, Status::kGood);
  dev->detach(n3);
  // ... and so does the first other command.
  dev->attach(n3);
  expect_check(run(n3, cdb10(op::kRead10, 0, 1)), sense_key::kUnitAttention, 0x2900);
  EXPECT_EQ(run(n3, cdb10(op::kRead10, 0, 1)).status, Status::kGood);
  // LU reset: 29/03 for the other nexuses, not for the one that reset.
  EXPECT_TRUE(dev->lun_reset(0, n1));
  EXPECT_FALSE(dev->lun_reset(9, n1));
  EXPECT_EQ(run1(cdb10(op::kRead10, 0, 1)).status, Status::kGood);
  expect_check(run(n2, cdb10(op::kRead10, 0, 1)), sense_key::kUnitAttention, 0x2903);
  expect_check(run(n3, cdb10(op::kRead10, 0, 1)), sense_key::kUnitAttention, 0x2903);
  EXPECT_EQ(run(n2, cdb10(op::kRead10, 0, 1)).status, Status::kGood);
  dev->detach(n3);
}

// An LU whose bdev grew (a pool replica, resized online): every nexus gets the unit
// attention CAPACITY DATA HAS CHANGED once, then READ CAPACITY answers the new size and
// blocks past the old end are readable and writable.
TEST_F(ScsiDevice, GrownLuRaisesCapacityDataHasChangedAndReportsTheNewSize) {
  pool::PoolManager pools(*env.reg);
  testing::make_small_pool(pools, 48, "gr", 8 << 20);
  if (HasFatalFailure()) return;
  // Its own device, destroyed before the pool (the fixture's `dev` is swapped back).
  DeviceInfo info;
  info.target_name = "iqn.2026-01.io.castor:grow";
  auto grow_dev = std::make_unique<Device>(*env.reg, info);
  ASSERT_TRUE(grow_dev->add_lun({0, "gr", false, "Castor volume"}).is_ok());
  std::swap(dev, grow_dev);
  struct OnExit {
    std::function<void()> fn;
    ~OnExit() { fn(); }
  } swap_back{[&] {
    dev->detach(n1);
    dev->detach(n2);
    std::swap(dev, grow_dev);
  }};
  dev->attach(n1);
  dev->attach(n2);
  for (const ItNexus* n : {&n1, &n2}) {
    expect_check(run(*n, {op::kTestUnitReady, 0, 0, 0, 0, 0}), sense_key::kUnitAttention, 0x2900);
  }
  const uint32_t bs = env.reg->find("gr")->block_size();
  const uint64_t old_blocks = (8u << 20) / bs, new_blocks = (16u << 20) / bs;
  Bytes c16(16, 0);
  c16[0] = op::kServiceActionIn16;
  c16[1] = kSaReadCapacity16;
  c16[13] = 32;
  Reply r = run(n1, c16);
  ASSERT_EQ(r.status, Status::kGood);
  EXPECT_EQ(load_be64(&r.data[0]), old_blocks - 1);

  ASSERT_TRUE(pools.grow_replica("gr", 16 << 20));
  EXPECT_EQ(dev->capacity_changed("gr"), 1u);
  EXPECT_EQ(dev->capacity_changed("m0"), 0u);
  // n1: the attention first (READ CAPACITY is not exempt), then the new size; once.
  expect_check(run(n1, c16), sense_key::kUnitAttention, asc::kCapacityDataChanged);
  r = run(n1, c16);
  ASSERT_EQ(r.status, Status::kGood);
  EXPECT_EQ(load_be64(&r.data[0]), new_blocks - 1);
  Reply r10 = run(n1, {op::kReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  ASSERT_EQ(r10.status, Status::kGood);
  EXPECT_EQ(load_be32(&r10.data[0]), new_blocks - 1);
  // n2: its WRITE past the old end gets the attention, then goes through.
  const Bytes w = pattern(bs, 0x42);
  expect_check(run(n2, cdb16(op::kWrite16, new_blocks - 1, 1), w), sense_key::kUnitAttention,
               asc::kCapacityDataChanged);
  EXPECT_EQ(run(n2, cdb16(op::kWrite16, new_blocks - 1, 1), w).status, Status::kGood);
  Reply rd = run(n2, cdb16(op::kRead16, new_blocks - 1, 1));
  ASSERT_EQ(rd.status, Status::kGood);
  EXPECT_EQ(rd.data, w);
  expect_check(run(n2, cdb16(op::kRead16, new_blocks, 1)), sense_key::kIllegalRequest, asc::kLbaOutOfRange);
}

TEST_F(ScsiDevice, Reserve6) {
  const Bytes res{op::kReserve6, 0, 0, 0, 0, 0}, rel{op::kRelease6, 0, 0, 0, 0, 0};
  const Bytes ms{op::kModeSense6, 0, 0x3F, 0, 255, 0};
  ASSERT_EQ(run1(res).status, Status::kGood);
  ASSERT_EQ(run1(res).status, Status::kGood);
  EXPECT_EQ(run(n2, res).status, Status::kReservationConflict);
  EXPECT_EQ(run(n2, rel).status, Status::kGood);  // non-holder: no-op
  EXPECT_EQ(run1(ms).status, Status::kGood);
  EXPECT_EQ(run(n2, ms).status, Status::kReservationConflict);
  EXPECT_EQ(run(n2, cdb10(op::kRead10, 0, 1)).status, Status::kReservationConflict);
  EXPECT_EQ(run(n2, cdb10(op::kWrite10, 0, 1), Bytes(512)).status, Status::kReservationConflict);
  EXPECT_EQ(run(n2, {op::kInquiry, 0, 0, 0, 36, 0}).status, Status::kGood);
  EXPECT_EQ(run(n2, {op::kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}).status, Status::kGood);
  EXPECT_EQ(run(n2, res, {}, UINT32_MAX, 3).status, Status::kGood);  // other LU: independent
  EXPECT_EQ(run(n2, rel, {}, UINT32_MAX, 3).status, Status::kGood);
  // Released on detach (nexus loss).
  dev->detach(n1);
  EXPECT_EQ(run(n2, cdb10(op::kRead10, 0, 1)).status, Status::kGood);
  dev->attach(n1);
  EXPECT_EQ(run1(ms).status, Status::kCheckCondition);  // power-on UA
  // Released by a LU reset.
  ASSERT_EQ(run(n2, res).status, Status::kGood);
  EXPECT_EQ(run1(ms).status, Status::kReservationConflict);
  dev->lun_reset(0, n2);
  expect_check(run1(ms), sense_key::kUnitAttention, 0x2903);
  EXPECT_EQ(run1(ms).status, Status::kGood);
  ASSERT_EQ(run1(res).status, Status::kGood);
  ASSERT_EQ(run1(rel).status, Status::kGood);
  EXPECT_EQ(run(n2, ms).status, Status::kGood);
}

Bytes prout_params(uint64_t key, uint64_t sa_key, uint8_t flags = 0) {
  Bytes p(24, 0);
  store_be64(&p[0], key);
  store_be64(&p[8], sa_key);
  p[20] = flags;
  return p;
}
Bytes prout_cdb(uint8_t sa, uint8_t type = 0) {
  return {op::kPrOut, sa, type, 0, 0, 0, 0, 0, 24, 0};
}
Bytes prin_cdb(uint8_t sa) { return {op::kPrIn, sa, 0, 0, 0, 0, 0, 0x10, 0, 0}; }

TEST_F(ScsiDevice, PersistentReservations) {
  using namespace pr_out;
  // REGISTER both; wrong key for an unregistered nexus conflicts.
  EXPECT_EQ(run1(prout_cdb(kRegister), prout_params(5, 0xA)).status,
            Status::kReservationConflict);
  ASSERT_EQ(run1(prout_cdb(kRegister), prout_params(0, 0xA)).status, Status::kGood);
  ASSERT_EQ(run(n2, prout_cdb(kRegister), prout_params(0, 0xB)).status, Status::kGood);
  Reply keys = run1(prin_cdb(pr_in::kReadKeys));
  ASSERT_EQ(keys.status, Status::kGood);
  EXPECT_EQ(load_be32(&keys.data[0]), 2u);  // generation
  EXPECT_EQ(load_be32(&keys.data[4]), 16u);
  // RESERVE Write Exclusive by n1: n2 may read, not write.
  ASSERT_EQ(run1(prout_cdb(kReserve, pr_type::kWriteExclusive), prout_params(0xA, 0)).status,
            Status::kGood);
  EXPECT_EQ(run(n2, prout_cdb(kReserve, pr_type::kWriteExclusive), prout_params(0xB, 0)).status,
            Status::kReservationConflict);
  Reply rr = run1(prin_cdb(pr_in::kReadReservation));
  ASSERT_EQ(rr.data.size(), 24u);
  EXPECT_EQ(load_be64(&rr.data[8]), 0xAu);
  EXPECT_EQ(rr.data[21], pr_type::kWriteExclusive);
  EXPECT_EQ(run(n2, cdb10(op::kRead10, 0, 1)).status, Status::kGood);
  EXPECT_EQ(run(n2, cdb10(op::kWrite10, 0, 1), Bytes(512)).status, Status::kReservationConflict);
  EXPECT_EQ(run1(cdb10(op::kWrite10, 0, 1), Bytes(512)).status, Status::kGood);
  // RESERVE(6) conflicts with persistent reservations.
  EXPECT_EQ(run1({op::kReserve6, 0, 0, 0, 0, 0}).status, Status::kReservationConflict);
  // Full status lists both with TransportIDs.
  Reply fs = run1(prin_cdb(pr_in::kReadFullStatus));
  ASSERT_EQ(fs.status, Status::kGood);
  EXPECT_EQ(load_be32(&fs.data[4]) + 8, fs.data.size());
  // Release by the holder with the wrong type: 05/26/04.
  expect_check(run1(prout_cdb(kRelease, pr_type::kExclusiveAccess), prout_params(0xA, 0)),
               sense_key::kIllegalRequest, 0x2604);
  // PREEMPT: n2 takes the reservation as Exclusive Access, n1's registration goes.
  ASSERT_EQ(run(n2, prout_cdb(kPreempt, pr_type::kExclusiveAccess), prout_params(0xB, 0xA)).status,
            Status::kGood);
  expect_check(run1(cdb10(op::kRead10, 0, 1)), sense_key::kUnitAttention, 0x2A05);
  EXPECT_EQ(run1(cdb10(op::kRead10, 0, 1)).status, Status::kReservationConflict);
  EXPECT_EQ(run(n2, cdb10(op::kWrite10, 0, 1), Bytes(512)).status, Status::kGood);
  keys = run1(prin_cdb(pr_in::kReadKeys));
  EXPECT_EQ(load_be32(&keys.data[4]), 8u);
  EXPECT_EQ(load_be64(&keys.data[8]), 0xBu);
  // n1 re-registers; Exclusive Access keeps it out even when registered.
  ASSERT_EQ(run1(prout_cdb(kRegisterAndIgnore), prout_params(0, 0xC)).status, Status::kGood);
  EXPECT_EQ(run1(cdb10(op::kRead10, 0, 1)).status, Status::kReservationConflict);
  // Release: no UA for EA releases; n1 may read again.
  ASSERT_EQ(run(n2, prout_cdb(kRelease, pr_type::kExclusiveAccess), prout_params(0xB, 0)).status,
            Status::kGood);
  EXPECT_EQ(run1(cdb10(op::kRead10, 0, 1)).status, Status::kGood);
  // Exclusive Access, Registrants Only: registered nexuses are in, release notifies.
  ASSERT_EQ(run(n2, prout_cdb(kReserve, pr_type::kExclusiveAccessRegOnly), prout_params(0xB, 0))
                .status,
            Status::kGood);
  EXPECT_EQ(run1(cdb10(op::kWrite10, 0, 1), Bytes(512)).status, Status::kGood);
  ASSERT_EQ(run(n2, prout_cdb(kRelease, pr_type::kExclusiveAccessRegOnly), prout_params(0xB, 0))
                .status,
            Status::kGood);
  expect_check(run1(cdb10(op::kRead10, 0, 1)), sense_key::kUnitAttention, 0x2A04);
  // CLEAR drops everything.
  ASSERT_EQ(run1(prout_cdb(kClear), prout_params(0xC, 0)).status, Status::kGood);
  keys = run1(prin_cdb(pr_in::kReadKeys));
  EXPECT_EQ(load_be32(&keys.data[4]), 0u);
  expect_check(run(n2, cdb10(op::kRead10, 0, 1)), sense_key::kUnitAttention, 0x2A03);
  // Unsupported service actions and APTPL.
  expect_check(run1(prin_cdb(4)), sense_key::kIllegalRequest, 0x2400);
  expect_check(run1(prout_cdb(kRegister), prout_params(0, 1, 0x01)), sense_key::kIllegalRequest,
               0x2600);
  Reply caps = run1(prin_cdb(pr_in::kReportCapabilities));
  ASSERT_EQ(caps.data.size(), 8u);
  EXPECT_EQ(caps.data[3] & 0x80, 0x80);
}

TEST_F(ScsiDevice, ReadOnlyLu) {
  auto on3 = [&](Bytes cdb, const Bytes& out = {}) { return run(n1, cdb, out, UINT32_MAX, 3); };
  EXPECT_EQ(on3(cdb10(op::kRead10, 0, 1)).status, Status::kGood);
  expect_check(on3(cdb10(op::kWrite10, 0, 1), Bytes(4096)), sense_key::kDataProtect, 0x2700);
  expect_check(on3(cdb16(op::kWrite16, 0, 1), Bytes(4096)), sense_key::kDataProtect, 0x2700);
  expect_check(on3(cdb10(op::kWriteVerify10, 0, 1), Bytes(4096)), sense_key::kDataProtect, 0x2700);
  expect_check(on3(cdb10(op::kWriteSame10, 0, 1), Bytes(4096)), sense_key::kDataProtect, 0x2700);
  expect_check(on3({op::kUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0}, Bytes(24)), sense_key::kDataProtect,
               0x2700);
  Bytes caw(16, 0);
  caw[0] = op::kCompareAndWrite;
  caw[13] = 1;
  expect_check(on3(caw, Bytes(8192)), sense_key::kDataProtect, 0x2700);
  expect_check(on3({op::kWrite6, 0, 0, 0, 1, 0}, Bytes(4096)), sense_key::kDataProtect, 0x2700);
}

}  // namespace
}  // namespace castor::scsi
