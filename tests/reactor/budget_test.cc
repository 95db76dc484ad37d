// reactor::ByteBudget: what fits, and when waiters are told.
#include "reactor/budget.h"

#include <gtest/gtest.h>

namespace castor::reactor {
namespace {

struct CountingWaiter : ByteBudget::Waiter {
  int calls = 0;
  void budget_available() override { ++calls; }
};

TEST(ByteBudget, ChargesUpToTheLimitAndOneRequestAloneAlwaysFits) {
  ByteBudget b(100);
  EXPECT_TRUE(b.try_charge(60));
  EXPECT_TRUE(b.try_charge(40));
  EXPECT_FALSE(b.try_charge(1));  // full
  EXPECT_EQ(b.used(), 100u);
  b.release(100);
  EXPECT_TRUE(b.try_charge(500));  // larger than the limit, but alone
  EXPECT_FALSE(b.try_charge(1));
  EXPECT_EQ(b.peak(), 500u);
  b.release(500);
  EXPECT_EQ(b.used(), 0u);

  ByteBudget unlimited;  // limit 0
  EXPECT_TRUE(unlimited.try_charge(1u << 30));
  EXPECT_TRUE(unlimited.try_charge(1u << 30));
}

TEST(ByteBudget, WaitersAreToldOnceWhenHalfIsFree) {
  ByteBudget b(100);
  ASSERT_TRUE(b.try_charge(90));
  CountingWaiter w1, w2, gone;
  b.wait(&w1);
  b.wait(&gone);
  b.wait(&w2);
  b.cancel_wait(&gone);
  b.release(30);  // 60 used: more than half
  EXPECT_EQ(w1.calls, 0);
  b.release(10);  // 50: half
  EXPECT_EQ(w1.calls, 1);
  EXPECT_EQ(w2.calls, 1);
  EXPECT_EQ(gone.calls, 0);
  b.release(50);  // nobody waits any more
  EXPECT_EQ(w1.calls, 1);
}

// A waiter may charge and wait again from its callback (a connection that resumes,
// reads a request that still does not fit, and pauses again).
TEST(ByteBudget, WaiterMayWaitAgainFromItsCallback) {
  struct Again : ByteBudget::Waiter {
    ByteBudget* b = nullptr;
    int calls = 0;
    void budget_available() override {
      ++calls;
      if (!b->try_charge(80)) b->wait(this);
    }
  };
  ByteBudget b(100);
  ASSERT_TRUE(b.try_charge(60));
  ASSERT_TRUE(b.try_charge(10));
  Again a;
  a.b = &b;
  b.wait(&a);
  b.release(20);  // 50: told, 80 does not fit beside 50, waits again
  EXPECT_EQ(a.calls, 1);
  b.release(50);  // 0: told, fits
  EXPECT_EQ(a.calls, 2);
  EXPECT_EQ(b.used(), 80u);
}

}  // namespace
}  // namespace castor::reactor
