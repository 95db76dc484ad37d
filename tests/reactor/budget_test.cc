// reactor::ByteBudget: what fits, and when waiters are told.
#include "reactor/budget.h"

#include <gtest/gtest.h>

#include <vector>

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

// Two connections each streaming requests as large as the budget: they take turns. A
// waiter that charged and waits again for its next request goes behind one that was told
// and still could not charge (it was starved for as long as the first had requests).
TEST(ByteBudget, WaitersTakeTurnsInOrder) {
  struct Streamer : ByteBudget::Waiter {
    ByteBudget* b = nullptr;
    int left = 0;      // requests still to charge
    int charged = 0;   // requests charged so far
    std::vector<char>* order = nullptr;
    char name = 0;
    void next() {  // charges requests until one does not fit or none is left
      while (left > 0 && b->try_charge(100)) {
        --left;
        ++charged;
        order->push_back(name);
      }
      if (left > 0) b->wait(this);
    }
    void budget_available() override { next(); }
  };
  ByteBudget b(100);
  std::vector<char> order;
  Streamer a, c;
  for (auto* s : {&a, &c}) {
    s->b = &b;
    s->left = 3;
    s->order = &order;
  }
  a.name = 'a';
  c.name = 'c';
  a.next();  // charges one, waits for the next
  c.next();  // waits
  ASSERT_EQ(order, std::vector<char>{'a'});
  while (a.left + c.left > 0) {
    const size_t before = order.size();
    b.release(100);  // the request just charged completes
    ASSERT_EQ(order.size(), before + 1) << "a release let exactly one request in";
  }
  b.release(100);
  // a's second request was refused before c's first, so it goes first; from then on
  // they alternate. (Before: a, a, a, c, c, c: a re-registered ahead of c every time.)
  EXPECT_EQ(order, (std::vector<char>{'a', 'a', 'c', 'a', 'c', 'c'}));
  EXPECT_EQ(b.used(), 0u);
}

}  // namespace
}  // namespace castor::reactor
