// Fencing a nexus by generation: two engines (each its own reactors, registry and nvmf
// host identity) build a nexus of one volume over the same two remote replicas, the way
// castor-control moves a volume's nexus while the old one still runs (a partition). The
// newer nexus preempts the older one's reservations; the older one's next I/O meets
// Reservation Conflict, after which it serves nothing (kPathUnavailable, which the NVMe-oF
// front end turns into a lost path) and writes nothing to the health store the two share.
#include <gtest/gtest.h>

#include "../bdev/harness.h"
#include "bdev/modules/fault.h"
#include "bdev/reservations.h"
#include "nexus/manager.h"
#include "nvmf/host/nvmf_bdev.h"
#include "nvmf/target/target.h"

namespace castor::nexus::test {
namespace {

using bdev::Bdev;
using bdev::IoStatus;
using bdev::IoType;
using bdev::test::do_io;
using bdev::test::Env;

constexpr uint32_t kBs = 4096;

// A storage node: replicas r0 and r1 exported over NVMe/TCP on its own reactors.
struct ReplicaNode {
  Env env;
  std::unique_ptr<nvmf::NvmfTarget> target;
  uint16_t port = 0;
  ReplicaNode() {
    target = std::make_unique<nvmf::NvmfTarget>(env.group, *env.reg);
    EXPECT_TRUE(target->listen("127.0.0.1", 0, &port));
    for (const char* r : {"r0", "r1"}) {
      EXPECT_TRUE(env.reg->create(fmt::format("malloc:///{}?size_mb=8&blk_size={}", r, kBs)));
      EXPECT_TRUE(target->add_subsystem(nqn(r), {}));
      EXPECT_TRUE(target->add_namespace(nqn(r), r));
    }
  }
  ~ReplicaNode() { target->stop(); }
  static std::string nqn(const std::string& r) { return "nqn.2026-11.io.castor:replica-" + r; }
  bdev::ReservationReport report(const std::string& r) { return env.reg->find(r)->reservations().report(); }
};

// An engine hosting a nexus: its nvmf:// children connect as `hostnqn`.
struct NexusNode {
  Env env;
  std::string hostnqn;
  bdev::HostId host;
  std::unique_ptr<NexusManager> mgr;
  NexusNode(const std::string& name, ChildHealthStore& store) : hostnqn("nqn.2026-11.io.castor:node:" + name) {
    env.reg->register_module(nvmf::make_nvmf_bdev_module());
    nvmf::NvmfHostOptions o;
    o.hostnqn = hostnqn;
    host = o.host_id();
    mgr = std::make_unique<NexusManager>(*env.reg, store, host);
  }
  ~NexusNode() { mgr.reset(); }
  std::vector<std::string> children(const ReplicaNode& n) const {
    std::vector<std::string> out;
    for (const char* r : {"r0", "r1"}) {
      out.push_back(fmt::format("nvmf://127.0.0.1:{}/{}?hostnqn={}&io_timeout_ms=2000&ctrl_loss_timeout_ms=2000",
                                n.port, ReplicaNode::nqn(r), hostnqn));
    }
    return out;
  }
  Result<NexusInfo> create(const ReplicaNode& n, uint64_t generation, std::vector<std::string> uris = {}) {
    NexusOptions o;
    o.generation = generation;
    return mgr->create("vol", 0, uris.empty() ? children(n) : uris, o);
  }
  IoStatus write(uint64_t lba, uint8_t tag) {
    std::vector<uint8_t> b(kBs, tag);
    bdev::DmaBuffer buf(kBs);
    std::memcpy(buf.data(), b.data(), kBs);
    return do_io(env, 0, *env.reg->find("vol"), IoType::kWrite, lba, 1, buf.data(), kBs);
  }
  IoStatus read(uint64_t lba, uint8_t* tag) {
    bdev::DmaBuffer buf(kBs);
    IoStatus st = do_io(env, 1, *env.reg->find("vol"), IoType::kRead, lba, 1, buf.data(), kBs);
    *tag = buf.data()[0];
    return st;
  }
};

uint8_t replica_byte(ReplicaNode& n, const std::string& r, uint64_t lba) {
  bdev::DmaBuffer buf(kBs);
  EXPECT_EQ(do_io(n.env, 0, *n.env.reg->find(r), IoType::kRead, lba, 1, buf.data(), kBs), IoStatus::kSuccess);
  return buf.data()[0];
}

TEST(Fencing, ANewerNexusFencesTheOlderOneOffItsReplicas) {
  ReplicaNode storage;
  MemChildHealthStore store;  // castor-control's store: both nexuses of the volume see it
  NexusNode a("a", store), b("b", store);
  ASSERT_NE(a.host, b.host);

  auto na = a.create(storage, 1);
  ASSERT_TRUE(na) << na.status().to_string();
  EXPECT_EQ(na->generation, 1u);
  for (uint64_t lba = 0; lba < 16; ++lba) ASSERT_EQ(a.write(lba, 0xA1), IoStatus::kSuccess);
  for (const char* r : {"r0", "r1"}) {
    auto rep = storage.report(r);
    EXPECT_EQ(rep.type, bdev::ReservationType::kExclusiveAccess) << r;
    ASSERT_TRUE(rep.holder) << r;
    EXPECT_EQ(*rep.holder, a.host) << r;
    ASSERT_EQ(rep.registrants.size(), 1u);
    EXPECT_EQ(rep.registrants[0].key, reservation_key(1));
  }

  // The volume's nexus moves to b while a still runs.
  auto nb = b.create(storage, 2);
  ASSERT_TRUE(nb) << nb.status().to_string();
  for (const char* r : {"r0", "r1"}) {
    auto rep = storage.report(r);
    ASSERT_TRUE(rep.holder) << r;
    EXPECT_EQ(*rep.holder, b.host) << r;
    // The preempt unregistered the older key.
    ASSERT_EQ(rep.registrants.size(), 1u) << r;
    EXPECT_EQ(rep.registrants[0].key, reservation_key(2)) << r;
  }
  auto before = store.load("vol");
  ASSERT_TRUE(before);
  EXPECT_TRUE(before->open);

  // The older nexus: its next write is refused by the replicas and fences it; so is every
  // later I/O, reads included, and nothing of it reaches a replica.
  EXPECT_EQ(a.write(3, 0xA2), IoStatus::kPathUnavailable);
  EXPECT_EQ(a.mgr->find("vol")->state(), NexusState::kFenced);
  uint8_t tag = 0;
  EXPECT_EQ(a.read(3, &tag), IoStatus::kPathUnavailable);
  EXPECT_EQ(a.write(4, 0xA3), IoStatus::kPathUnavailable);
  for (const char* r : {"r0", "r1"}) {
    EXPECT_EQ(replica_byte(storage, r, 3), 0xA1) << r;
    EXPECT_EQ(replica_byte(storage, r, 4), 0xA1) << r;
  }
  // It retired no child and wrote nothing: the health record is the newer nexus's as it
  // left it (which resyncs one child: the older nexus never shut down cleanly).
  auto after = store.load("vol");
  ASSERT_TRUE(after);
  ASSERT_EQ(after->children.size(), before->children.size());
  for (const auto& [uri, rec] : after->children) {
    ASSERT_TRUE(before->children.count(uri)) << uri;
    EXPECT_EQ(rec.healthy, before->children.at(uri).healthy) << uri;
    EXPECT_EQ(rec.reason, before->children.at(uri).reason) << uri;
    EXPECT_NE(uri.find("node:b"), std::string::npos) << uri;  // none of a's child URIs
  }
  auto ia = a.mgr->info("vol");
  ASSERT_TRUE(ia);
  for (const auto& c : ia->children) EXPECT_EQ(c.state, ChildState::kHealthy) << c.uri;

  // The newer nexus serves the volume.
  ASSERT_EQ(b.write(3, 0xB1), IoStatus::kSuccess);
  ASSERT_EQ(b.read(3, &tag), IoStatus::kSuccess);
  EXPECT_EQ(tag, 0xB1);
  EXPECT_EQ(b.read(5, &tag), IoStatus::kSuccess);
  EXPECT_EQ(tag, 0xA1);

  // A nexus of an older generation cannot take the replicas back.
  MemChildHealthStore other;
  NexusNode c("c", other);
  auto nc = c.create(storage, 1);
  ASSERT_FALSE(nc);
  EXPECT_EQ(nc.status().code(), Errc::kBusy);
  EXPECT_NE(nc.status().message().find("newer nexus (generation 2)"), std::string::npos) << nc.status().message();
  EXPECT_EQ(*storage.report("r0").holder, b.host);

  // b resyncs r1 from r0 (the unclean end of a); then the two replicas are equal.
  auto rb = b.mgr->find("vol")->wait_rebuild(b.children(storage)[1], 20000);
  ASSERT_TRUE(rb) << rb.status().to_string();
  EXPECT_EQ(rb->state, RebuildState::kCompleted);

  // Destroying the fenced nexus records nothing: the volume stays recorded open by b.
  ASSERT_TRUE(a.mgr->destroy("vol"));
  auto end = store.load("vol");
  ASSERT_TRUE(end);
  EXPECT_TRUE(end->open);
  ASSERT_TRUE(b.mgr->destroy("vol"));
  EXPECT_FALSE(store.load("vol")->open);
  for (uint64_t lba = 0; lba < 16; ++lba) {
    EXPECT_EQ(replica_byte(storage, "r0", lba), replica_byte(storage, "r1", lba)) << lba;
  }
}

// A create that a newer nexus refuses on one child preempts none: the older holder of the
// other child keeps it.
TEST(Fencing, ACreateRefusedOnOneChildPreemptsNoOther) {
  ReplicaNode storage;
  MemChildHealthStore sa, sb, sc;
  NexusNode a("a", sa), b("b", sb), c("c", sc);
  ASSERT_TRUE(a.create(storage, 1));
  ASSERT_TRUE(b.create(storage, 3, {b.children(storage)[1]}));  // takes r1 only
  auto nc = c.create(storage, 2);
  ASSERT_FALSE(nc);
  EXPECT_EQ(nc.status().code(), Errc::kBusy);
  EXPECT_EQ(*storage.report("r0").holder, a.host);
  EXPECT_EQ(*storage.report("r1").holder, b.host);
  EXPECT_EQ(a.write(0, 0x11), IoStatus::kPathUnavailable);  // a lost r1 to b
  ASSERT_TRUE(b.mgr->destroy("vol"));
  ASSERT_TRUE(a.mgr->destroy("vol"));
}

// A store that has been told a newer nexus owns the record (castor-control's, after a
// move) refuses this nexus's writes as stale.
class SupersededStore : public MemChildHealthStore {
 public:
  std::atomic<bool> superseded{false};

 protected:
  Status replace(const std::string& nexus, const NexusHealth& health) override {
    if (superseded.load()) {
      return make_error(Errc::kBusy, "castor-control PutNexusHealth at test: stale nexus: generation 1 of volume {} "
                        "is superseded by 2", nexus);
    }
    return MemChildHealthStore::replace(nexus, health);
  }
};

// A nexus whose health record write is refused as stale is superseded: it fences itself,
// and the I/O that waited for the record completes as fenced (kPathUnavailable), not as
// an error the application would see.
TEST(Fencing, AStaleHealthRecordWriteFencesTheNexus) {
  Env env;
  SupersededStore store;
  NexusManager mgr(*env.reg, store);
  for (const char* m : {"m0", "m1"}) {
    ASSERT_TRUE(env.reg->create(fmt::format("malloc:///{}?size_mb=8&blk_size={}", m, kBs)));
  }
  ASSERT_TRUE(env.reg->create("fault:///f1?base=m1"));
  NexusOptions o;
  o.generation = 1;
  ASSERT_TRUE(mgr.create("vol", 0, {"bdev:///m0", "bdev:///f1"}, o));
  bdev::DmaBuffer buf(kBs);
  std::memset(buf.data(), 0x5a, kBs);
  Bdev& vol = *env.reg->find("vol");
  ASSERT_EQ(do_io(env, 0, vol, IoType::kWrite, 0, 1, buf.data(), kBs), IoStatus::kSuccess);
  store.superseded = true;
  bdev::FaultRuleSpec err;
  err.ops_mask = bdev::io_type_bit(IoType::kWrite);
  ASSERT_TRUE(bdev::FaultControl::inject(*env.reg->find("f1"), err));
  // The child fails, its unhealthy record is refused as stale: fenced.
  EXPECT_EQ(do_io(env, 0, vol, IoType::kWrite, 1, 1, buf.data(), kBs), IoStatus::kPathUnavailable);
  EXPECT_EQ(mgr.find("vol")->state(), NexusState::kFenced);
  EXPECT_EQ(do_io(env, 1, vol, IoType::kRead, 0, 1, buf.data(), kBs), IoStatus::kPathUnavailable);
  ASSERT_TRUE(mgr.destroy("vol"));
}

// Without a generation a nexus takes no reservation (a stand-alone engine), and one with a
// generation re-created on the same engine (a restart) takes its own replicas back.
TEST(Fencing, NoGenerationNoReservationAndTheSameHostRecreatesFreely) {
  ReplicaNode storage;
  MemChildHealthStore store;
  NexusNode a("a", store);
  ASSERT_TRUE(a.create(storage, 0));
  EXPECT_EQ(storage.report("r0").type, bdev::ReservationType::kNone);
  EXPECT_TRUE(storage.report("r0").registrants.empty());
  ASSERT_TRUE(a.mgr->destroy("vol"));
  ASSERT_TRUE(a.create(storage, 3));
  ASSERT_EQ(a.write(0, 0x33), IoStatus::kSuccess);
  ASSERT_TRUE(a.mgr->destroy("vol"));
  auto again = a.create(storage, 4);
  ASSERT_TRUE(again) << again.status().to_string();
  ASSERT_EQ(a.write(0, 0x34), IoStatus::kSuccess);
  auto rep = storage.report("r1");
  ASSERT_EQ(rep.registrants.size(), 1u);
  EXPECT_EQ(rep.registrants[0].key, reservation_key(4));
  EXPECT_EQ(*rep.holder, a.host);
  ASSERT_TRUE(a.mgr->destroy("vol"));
}

}  // namespace
}  // namespace castor::nexus::test
