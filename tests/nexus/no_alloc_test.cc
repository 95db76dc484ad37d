// Steady-state I/O through a nexus (over RAM children, and over a RAM child plus a
// remote one through the nvmf bdev) and through the nvmf bdev alone allocates nothing per
// I/O on the submitting reactor: only the periodic timeout and keep-alive timers (a few
// over the run) allocate. Before the TCP send queue became a ring, the nvmf path made
// one allocation every three sends (std::deque nodes).
#include "../bdev/no_alloc.h"

#include "nexus/manager.h"
#include "nvmf/host/nvmf_bdev.h"
#include "nvmf/target/target.h"

namespace castor::bdev::test {
namespace {

TEST(NexusIoPath, AllocatesNothingInSteadyState) {
  Env tenv;  // a remote node: the target's own reactors
  ASSERT_TRUE(tenv.reg->create("malloc:///t0?size_mb=16"));
  nvmf::NvmfTarget target(tenv.group, *tenv.reg);
  uint16_t port = 0;
  ASSERT_TRUE(target.listen("127.0.0.1", 0, &port));
  const std::string nqn = "nqn.2026-11.io.castor:replica-noalloc";
  ASSERT_TRUE(target.add_subsystem(nqn, {}));
  ASSERT_TRUE(target.add_namespace(nqn, "t0"));

  Env env;
  env.reg->register_module(nvmf::make_nvmf_bdev_module());
  ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=16"));
  ASSERT_TRUE(env.reg->create("malloc:///m1?size_mb=16"));
  ASSERT_TRUE(env.reg->create("malloc:///m2?size_mb=16"));
  ASSERT_TRUE(env.reg->create(fmt::format("nvmf://127.0.0.1:{}/{}?name=r0", port, nqn)));
  expect_no_alloc(env, "r0", 20);
  {
    nexus::MemChildHealthStore store;
    nexus::NexusManager mgr(*env.reg, store);
    ASSERT_TRUE(mgr.create("nx", 0, {"bdev:///m0", "bdev:///m1"}));
    expect_no_alloc(env, "nx", 20);
    ASSERT_TRUE(mgr.destroy("nx", true));
    ASSERT_TRUE(mgr.create("nr", 0, {"bdev:///m2", "bdev:///r0"}));
    expect_no_alloc(env, "nr", 20);
    ASSERT_TRUE(mgr.destroy("nr", true));
  }
  env.reg.reset();
  target.stop();
}

}  // namespace
}  // namespace castor::bdev::test
