#include <gtest/gtest.h>

#include <cstring>

#include "nvmf/target/identify.h"
#include "nvmf/target/registers.h"

namespace castor::nvmf {
namespace {

TEST(Registers, LinuxEnableAndShutdownSequence) {
  ControllerRegisters r(ControllerLimits{});
  uint64_t cap = *r.get(prop::kCap, 8);
  EXPECT_EQ(cap & 0xffff, 127u);          // MQES
  EXPECT_TRUE(cap & (1ull << 37));        // NVM command set
  EXPECT_EQ((cap >> 48) & 0xf, 0u);       // MPSMIN 4 KiB
  EXPECT_EQ(*r.get(prop::kVs, 4), 0x00010400u);
  // Disable with the host's parameters, then enable: CSTS.RDY follows.
  uint32_t cc = (6u << 16) | (4u << 20);
  EXPECT_TRUE(r.set(prop::kCc, 4, cc));
  EXPECT_EQ(*r.get(prop::kCsts, 4) & 1, 0u);
  EXPECT_TRUE(r.set(prop::kCc, 4, cc | 1));
  EXPECT_EQ(*r.get(prop::kCsts, 4) & 1, 1u);
  EXPECT_TRUE(r.enabled());
  // Normal shutdown: SHST becomes "complete".
  EXPECT_TRUE(r.set(prop::kCc, 4, cc | 1 | (1u << 14)));
  EXPECT_TRUE(r.shut_down());
  EXPECT_EQ((*r.get(prop::kCsts, 4) >> 2) & 3, 2u);
}

TEST(Registers, RejectsBadAccesses) {
  ControllerRegisters r(ControllerLimits{});
  EXPECT_FALSE(r.get(0x99, 4));
  EXPECT_FALSE(r.get(prop::kVs, 8));
  EXPECT_FALSE(r.get(prop::kCc, 2));
  EXPECT_FALSE(r.set(prop::kCap, 8, 0));        // read-only
  EXPECT_FALSE(r.set(prop::kCc, 4, 1));         // IOSQES/IOCQES not 6/4
  EXPECT_FALSE(r.set(prop::kCc, 4, 1 | (6u << 16) | (4u << 20) | (1u << 7)));  // 8 KiB pages
  EXPECT_FALSE(r.enabled());
}

TEST(Identify, ControllerFieldsLinuxDependsOn) {
  ControllerIdentity id;
  id.subnqn = "nqn.2026-11.io.castor:replica-x";
  id.serial = serial_from_uuid(Uuid::from_name("s"));
  id.cntlid = 7;
  IdentifyController c;
  build_identify_controller(id, &c);
  EXPECT_EQ(c.cntlid, 7);
  EXPECT_EQ(c.sqes, 0x66);
  EXPECT_EQ(c.cqes, 0x44);
  EXPECT_NE(c.sgls & 3, 0u);
  EXPECT_EQ(c.icdoff, 0);
  EXPECT_EQ(c.msdbd, 1);
  EXPECT_EQ(c.cntrltype, 1);
  EXPECT_EQ(c.ioccsz * 16u, 64u + 8192);
  EXPECT_EQ(std::string(c.subnqn), id.subnqn);
  EXPECT_EQ(std::string(c.sn, 20), id.serial);
  EXPECT_EQ(id.serial.size(), 20u);
  EXPECT_EQ(std::string(c.mn, 14), "Castor NVMe-oF");
  EXPECT_EQ(c.mn[14], ' ');
  id.discovery = true;
  build_identify_controller(id, &c);
  EXPECT_EQ(c.cntrltype, 2);
  EXPECT_EQ(c.nn, 0u);
  EXPECT_TRUE(c.oaes & (1u << 31));
}

TEST(Identify, NamespaceDescriptorsAndLists) {
  NamespaceIdentity ns;
  ns.nsid = 3;
  ns.num_blocks = 1 << 20;
  ns.block_size = 4096;
  ns.uuid = Uuid::from_name("bdev");
  IdentifyNamespace n;
  build_identify_namespace(ns, &n);
  EXPECT_EQ(n.nsze, 1u << 20);
  EXPECT_EQ(n.lbaf[0].lbads, 12);
  EXPECT_EQ(std::memcmp(n.nguid, ns.uuid.bytes.data(), 16), 0);
  EXPECT_EQ(n.dlfeat, 0x08);  // Write Zeroes takes DEAC; deallocated blocks: not reported
  ns.deallocated_reads_zeroes = true;
  build_identify_namespace(ns, &n);
  EXPECT_EQ(n.dlfeat, 0x09);  // ... read as zeroes
  auto d = build_ns_descriptors(ns);
  EXPECT_EQ(d[0], 2);
  EXPECT_EQ(d[1], 16);
  EXPECT_EQ(d[20], 3);
  EXPECT_EQ(d[40], 0);  // terminator
  auto l = build_active_ns_list({5, 1, 3}, 1);
  uint32_t ids[3];
  std::memcpy(ids, l.data(), 12);
  EXPECT_EQ(ids[0], 3u);
  EXPECT_EQ(ids[1], 5u);
  EXPECT_EQ(ids[2], 0u);
}

TEST(Identify, DiscoveryLog) {
  auto log = build_discovery_log(4, {{"nqn.a", "127.0.0.1", "4420", false, 1, false},
                                     {kDiscoveryNqn, "127.0.0.1", "4420", false, 1, true}});
  ASSERT_EQ(log.size(), 3u * 1024);
  DiscoveryLogHeader h;
  std::memcpy(&h, log.data(), sizeof(h));
  EXPECT_EQ(h.genctr, 4u);
  EXPECT_EQ(h.numrec, 2u);
  DiscoveryLogEntry e;
  std::memcpy(&e, log.data() + 1024, sizeof(e));
  EXPECT_EQ(e.trtype, 3);
  EXPECT_EQ(e.subtype, 2);
  EXPECT_EQ(std::string(e.subnqn), "nqn.a");
  EXPECT_EQ(std::string(e.trsvcid, 4), "4420");
  EXPECT_EQ(e.trsvcid[4], ' ');
  std::memcpy(&e, log.data() + 2048, sizeof(e));
  EXPECT_EQ(e.subtype, 3);
}

}  // namespace
}  // namespace castor::nvmf
