// Freeing a nexus while a rebuild copy is stuck on a hung child, as at engine exit: the
// manager destroys every nexus (NexusManager::destroy_all, which its destructor runs), and
// one whose orderly destroy fails is given up (Nexus::give_up). A copy in flight points
// into its job (the request and buffers of a Task) and its completion runs the job, so
// neither may be freed before the copy has returned. Run under ASan: before, the job went
// with the nexus and the copy's late completion touched freed memory.
#include "bdev/modules/fault.h"
#include "common/clock.h"
#include "nexus_harness.h"
#include "nvmf/host/nvmf_bdev.h"
#include "nvmf/target/target.h"

namespace castor::nexus::test {
namespace {

using bdev::FaultControl;
using bdev::FaultMode;

// A nexus over a local child and a remote one whose engine went away while it was being
// rebuilt: its nvmf bdev queues the job's writes while it tries to reconnect (until its
// controller is declared lost, not within these tests).
struct LostRemoteRebuild {
  bdev::test::Env storage;  // the remote replica's engine
  std::unique_ptr<nvmf::NvmfTarget> target;
  NexEnv e;
  std::shared_ptr<Nexus> n;
  std::string remote, child_bdev;

  void start() {
    target = std::make_unique<nvmf::NvmfTarget>(storage.group, *storage.reg);
    uint16_t port = 0;
    ASSERT_TRUE(target->listen("127.0.0.1", 0, &port));
    const std::string nqn = "nqn.2026-11.io.castor:replica-r0";
    ASSERT_TRUE(storage.reg->create("malloc:///r0?size_mb=4"));
    ASSERT_TRUE(target->add_subsystem(nqn, {}));
    ASSERT_TRUE(target->add_namespace(nqn, "r0"));
    e.reg->register_module(nvmf::make_nvmf_bdev_module());
    ASSERT_TRUE(e.reg->create("malloc:///a?size_mb=4"));
    remote = fmt::format("nvmf://127.0.0.1:{}/{}?ctrl_loss_timeout_ms=600000", port, nqn);
    n = e.make("n0", {"bdev:///a", remote});
    ASSERT_TRUE(n);
    ASSERT_TRUE(n->fault_child(remote));
    child_bdev = n->describe().children.at(1).bdev_name;
    target->stop();  // gone: from now on the host holds the child's I/O and reconnects
    ASSERT_TRUE(wait_until([&] {
      auto s = nvmf::nvmf_bdev_status(e.bdev(child_bdev));
      return s && s->state != nvmf::ControllerState::kLive;
    }));
    ASSERT_TRUE(n->online_child(remote));  // a full rebuild, whose writes wait in the host
    // A segment read from the local child is written to the remote one in the same turn.
    ASSERT_TRUE(wait_until([&] {
      auto s = e.reg->stats("a");
      return s && s->per_type[static_cast<int>(IoType::kRead)].ops > 0;
    }));
  }
};

// At exit the copies are aborted (the nvmf bdev hands a queued request back at once), the
// job stops while the nexus, its children and the worker are all alive, and the nexus and
// its remote child are freed. Before, the job was freed first and the child's controller,
// shutting down, failed the queued write into it (heap-use-after-free in
// IoQueue::fail_pending).
TEST(NexusTeardown, ACopyQueuedForALostRemoteChildIsAbortedBeforeTheNexusIsFreed) {
  LostRemoteRebuild x;
  ASSERT_NO_FATAL_FAILURE(x.start());
  NexEnv& e = x.e;
  // The copies are stuck: an orderly destroy cannot stop the job.
  Status st = e.mgr->destroy("n0", false, 300);
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  x.n.reset();  // as in the engine, the manager holds the only reference
  e.mgr->destroy_all(500);
  EXPECT_TRUE(e.mgr->list().empty());
  // What the registry may still hold goes too, as at engine exit (registry.destroy_all
  // after the manager), while the host still holds the requests: it looks at each one it
  // parked for a lost path every 10 ms, so give it a few turns.
  (void)e.reg->destroy("n0");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(e.reg->find("n0"));
  // Its own remote child went with it (nothing of the job was left in it by then).
  EXPECT_FALSE(e.reg->find(x.child_bdev));
}

// Removing that remote child (what the control plane does to replace a replica whose node
// is gone) gives up the copies queued for it instead of waiting for them: the child is
// leaving, so a late write of an aborted copy can only land on a replica the nexus no
// longer has. Before, remove_child waited for the stuck copy until its deadline
// (max(5 s, 2 x child_io_timeout_ms) = 20 s here) and failed with Busy, on every retry,
// for as long as the host kept reconnecting.
TEST(NexusTeardown, RemovingARemoteChildGivesUpTheCopiesQueuedForIt) {
  LostRemoteRebuild x;
  ASSERT_NO_FATAL_FAILURE(x.start());
  const uint64_t t0 = mono_ns();
  Status st = x.n->remove_child(x.remote);
  EXPECT_TRUE(st) << st.to_string();
  EXPECT_LT(mono_ns() - t0, 2'000'000'000ull) << "waited for the stuck copy";
  EXPECT_EQ(x.n->describe().children.size(), 1u);
  EXPECT_EQ(x.n->state(), NexusState::kOnline);
  EXPECT_FALSE(x.e.reg->find(x.child_bdev)) << "the nexus's own remote child is destroyed";
  ASSERT_TRUE(x.e.mgr->destroy("n0"));
}

// A copy parked by a child that cannot abort it (a hung local device): nothing gets it
// back, so at exit the job is detached and kept (a deliberate, logged leak) and the nexus
// is freed around it. When the device answers later, the completion lands in the kept job
// and touches nothing freed. Before, the job went with the nexus and the completion ran
// it from freed memory.
TEST(NexusTeardown, ACopyStuckOnAChildThatCannotAbortIsKeptNotFreed) {
  NexEnv e;
  auto a = e.fault_child("a", 4), b = e.fault_child("b", 4);
  auto n = e.make("n0", {"bdev:///" + a});
  ASSERT_TRUE(n);
  auto hang = FaultControl::inject(e.bdev(b), fault_spec(FaultMode::kHang, kW));
  ASSERT_TRUE(hang);
  ASSERT_TRUE(n->add_child("bdev:///" + b));
  ASSERT_TRUE(wait_until([&] { return FaultControl::list(e.bdev(b))[0].parked > 0; }));
  n.reset();
  e.mgr->destroy_all(300);
  EXPECT_TRUE(e.mgr->list().empty());
  // What the registry may still hold goes too, as at engine exit (registry.destroy_all
  // after the manager), before the device answers.
  (void)e.reg->destroy("n0");
  EXPECT_FALSE(e.reg->find("n0"));
  auto info = e.reg->info(b);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->claim) << "the nexus released its child";
  // The device answers: the parked write completes, into the kept job.
  ASSERT_TRUE(FaultControl::clear(e.bdev(b), *hang));
  ASSERT_TRUE(wait_until([&] {
    auto s = e.reg->stats(b);
    return s && s->per_type[static_cast<int>(IoType::kWrite)].ops > 0;
  }));
}

}  // namespace
}  // namespace castor::nexus::test
