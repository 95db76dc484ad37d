// The I/O path allocates nothing in steady state: count operator new calls made on the
// reactor thread while 32 I/Os circulate through malloc, fault-over-malloc and uring
// bdevs.
#include "no_alloc.h"

namespace castor::bdev::test {
namespace {

TEST(IoPath, AllocatesNothingInSteadyState) {
  Env env;
  ASSERT_TRUE(env.reg->create("malloc:///m0?size_mb=16"));
  ASSERT_TRUE(env.reg->create("malloc:///m1?size_mb=16"));
  ASSERT_TRUE(env.reg->create("fault:///f0?base=m1"));
  ASSERT_TRUE(env.reg->create("file://" + env.path("a.img") + "?size_mb=16"));
  for (const char* n : {"m0", "f0", "a.img"}) expect_no_alloc(env, n);
}

}  // namespace
}  // namespace castor::bdev::test
