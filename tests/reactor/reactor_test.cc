#include "reactor/reactor.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <latch>
#include <sstream>
#include <thread>

#include "common/clock.h"

namespace castor::reactor {
namespace {

ReactorOptions opts() {
  ReactorOptions o;
  o.pin = false;
  return o;
}

TEST(Reactor, MessagesFromOneSenderRunInOrder) {
  ReactorGroup g({0, 0}, opts());
  g.start();
  constexpr int kN = 100000;
  std::vector<int> seen;  // touched only on reactor 1
  std::latch done(1);
  // Reactor 0 sends kN messages to reactor 1; reactor 1 must see them in order.
  g.at(0).send([&] {
    for (int i = 0; i < kN; ++i) {
      g.at(1).send([&, i] {
        seen.push_back(i);
        if (i == kN - 1) done.count_down();
      });
    }
  });
  done.wait();
  g.stop();
  ASSERT_EQ(seen.size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; ++i) ASSERT_EQ(seen[i], i);
}

TEST(Reactor, ManySendersAllDelivered) {
  ReactorGroup g({0}, opts());
  g.start();
  std::atomic<int> count{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) g.at(0).send([&] { count.fetch_add(1); });
    });
  }
  for (auto& t : ts) t.join();
  g.stop();  // drains the inbox
  EXPECT_EQ(count.load(), 80000);
}

TEST(Reactor, TimersFireInDeadlineOrderAndCancel) {
  ReactorGroup g({0}, opts());
  g.start();
  std::vector<int> order;
  std::latch done(1);
  uint64_t t0 = 0, fired_at = 0;
  g.run_on(0, [&](Reactor& r) {
    t0 = mono_ns();
    r.add_timer(30'000'000, [&] {
      order.push_back(3);
      fired_at = mono_ns();
      done.count_down();
    });
    r.add_timer(10'000'000, [&] { order.push_back(1); });
    auto id = r.add_timer(20'000'000, [&] { order.push_back(99); });
    r.add_timer(20'000'000, [&] { order.push_back(2); });
    EXPECT_TRUE(r.cancel_timer(id));
    EXPECT_FALSE(r.cancel_timer(id));
  });
  done.wait();
  g.stop();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(fired_at - t0, 30'000'000u);
  EXPECT_LT(fired_at - t0, 500'000'000u);  // woke from sleep for the timer, not much later
}

TEST(Reactor, PollersRunAndCanBeRemoved) {
  ReactorGroup g({0}, opts());
  g.start();
  std::atomic<int> calls{0};
  Reactor::PollerId id = 0;
  g.run_on(0, [&](Reactor& r) {
    id = r.add_poller([&] {
      calls++;
      return 1;
    });
  });
  while (calls.load() < 1000) std::this_thread::yield();
  g.run_on(0, [&](Reactor& r) { r.remove_poller(id); });
  int after = calls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(calls.load(), after + 1);
  g.stop();
}

// A nop-read load that resubmits on completion until the reactor is stopping: stop()
// must wait until every submitted operation has completed.
struct Load final : UringOp {
  Reactor* r;
  int fd;
  uint64_t buf = 0;
  std::atomic<uint64_t>* submitted;
  std::atomic<uint64_t>* completed;
  void go() {
    auto* sqe = r->get_sqe(this);
    io_uring_prep_read(sqe, fd, &buf, sizeof(buf), 0);
    submitted->fetch_add(1);
  }
  void complete(int32_t res, uint32_t) override {
    completed->fetch_add(1);
    if (!r->stopping()) go();
  }
};

TEST(Reactor, StopUnderLoadDrainsInFlightWork) {
  int fd = open("/dev/zero", O_RDONLY);
  ASSERT_GE(fd, 0);
  std::atomic<uint64_t> submitted{0}, completed{0};
  std::vector<Load> loads(64);
  {
    ReactorGroup g({0, 0}, opts());
    g.start();
    for (size_t i = 0; i < loads.size(); ++i) {
      Reactor* r = &g.at(i % 2);
      loads[i].r = r;
      loads[i].fd = fd;
      loads[i].submitted = &submitted;
      loads[i].completed = &completed;
      r->send([&l = loads[i]] { l.go(); });
    }
    while (completed.load() < 10000) std::this_thread::yield();
    g.stop();
  }
  close(fd);
  EXPECT_GT(submitted.load(), 10000u);
  EXPECT_EQ(submitted.load(), completed.load());
}

double cpu_seconds_of_self() {
  std::ifstream f("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(f)), {});
  auto p = s.rfind(')');
  std::istringstream in(s.substr(p + 2));
  std::string tok;
  unsigned long utime = 0, stime = 0;
  for (int field = 3; in >> tok; ++field) {
    if (field == 14) utime = std::stoul(tok);
    if (field == 15) {
      stime = std::stoul(tok);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

TEST(Reactor, IdleReactorsSleep) {
  ReactorGroup g({0, 0}, opts());
  g.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  double c0 = cpu_seconds_of_self();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  double used = cpu_seconds_of_self() - c0;
  g.stop();
  EXPECT_LT(used / 3.0, 0.01) << "idle reactors used " << used << " s of CPU in 3 s";
  EXPECT_LT(g.at(0).stats().loops, 1000u);
}

// The spin window (SpinPolicy) follows the idle gaps: work caught while polling keeps
// it; work that came after a sleep but within the maximum grows it to cover that gap;
// work that came later than the maximum halves it, down to 0.
TEST(SpinPolicy, GrowsOnShortSleepsAndShrinksOnLongOnes) {
  constexpr uint64_t kNow = 1'000'000'000;
  SpinPolicy p(50'000, true);
  EXPECT_EQ(p.window_ns(kNow), 0u) << "polls only once polling would have paid";
  p.idle_ended(40'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 50'000u);
  p.idle_ended(10'000, false, kNow);  // caught while polling
  EXPECT_EQ(p.window_ns(kNow), 50'000u);
  p.idle_ended(1'000'000, true, kNow);  // a 1 ms gap: polling would not have paid
  EXPECT_EQ(p.window_ns(kNow), 25'000u);
  for (int i = 0; i < 4; ++i) p.idle_ended(1'000'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 1'562u);
  p.idle_ended(1'000'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 0u) << "below 1 us the window is 0";
  p.idle_ended(1'000'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 0u);
  EXPECT_EQ(p.shrinks(), 6u) << "a window already 0 does not shrink";
  // A 30 us round trip that a window of 0 slept through: the window covers it, with a
  // quarter to spare...
  p.idle_ended(30'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 37'500u);
  // ... never more than the maximum, and never less than it was.
  p.idle_ended(48'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 50'000u);
  p.idle_ended(5'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 50'000u);
  EXPECT_EQ(p.grows(), 4u);
}

TEST(SpinPolicy, AFixedWindowNeverMoves) {
  constexpr uint64_t kNow = 1'000'000'000;
  SpinPolicy p(20'000, false);
  p.idle_ended(1'000'000, true, kNow);
  p.idle_ended(1'000, true, kNow);
  EXPECT_EQ(p.window_ns(kNow), 20'000u);
  EXPECT_EQ(p.grows() + p.shrinks(), 0u);
  SpinPolicy off(0, true);  // --spin-us 0: never polls, whatever the gaps
  off.idle_ended(5'000, true, kNow);
  EXPECT_EQ(off.window_ns(kNow), 0u);
}

// Yields that keep letting another thread run a long time (a CPU hog on the reactor's
// core) pause polling: 100 ms, then twice as long after each pause such a burst follows,
// at most 5 s; short yields (the application answering) and a lone long one (a kernel
// thread now and then) change nothing; after 10 s without a burst the backoff starts
// over. While paused, sleeps do not grow the window.
TEST(SpinPolicy, LongYieldsPausePolling) {
  constexpr uint64_t kMs = 1'000'000;
  SpinPolicy p(50'000, true);
  auto hog = [&p](uint64_t at) {  // a hog's slices: four 4 ms yields, 1 ms apart
    for (uint64_t i = 0; i < SpinPolicy::kLongYieldsToPause; ++i) p.yielded(4 * kMs, at + i * kMs);
    return at + (SpinPolicy::kLongYieldsToPause - 1) * kMs;
  };
  uint64_t t = 1'000 * kMs;
  p.idle_ended(20'000, true, t);
  ASSERT_EQ(p.window_ns(t), 25'000u);
  p.yielded(30'000, t);  // the application ran for 30 us: fine
  for (int i = 0; i < 3; ++i) p.yielded(4 * kMs, t + static_cast<uint64_t>(i) * 20 * kMs);
  EXPECT_EQ(p.pauses(), 0u) << "three long yields in 50 ms are not a hog";
  t += 1'000 * kMs;
  t = hog(t);
  EXPECT_EQ(p.pauses(), 1u);
  EXPECT_EQ(p.window_ns(t + 99 * kMs), 0u);
  p.idle_ended(20'000, true, t + 50 * kMs);  // no growth while paused
  EXPECT_EQ(p.window_ns(t + 100 * kMs), 25'000u) << "the window is kept for after the pause";
  t = hog(t + 100 * kMs);
  EXPECT_EQ(p.window_ns(t + 199 * kMs), 0u) << "the second pause is 200 ms";
  EXPECT_EQ(p.window_ns(t + 200 * kMs), 25'000u);
  for (int i = 0; i < 10; ++i) t = hog(t + 6'000 * kMs);
  EXPECT_EQ(p.window_ns(t + 4'999 * kMs), 0u);
  EXPECT_EQ(p.window_ns(t + 5'000 * kMs), 25'000u) << "pauses stop doubling at 5 s";
  t = hog(t + 11'000 * kMs);  // calm for more than 10 s
  EXPECT_EQ(p.window_ns(t + 100 * kMs), 25'000u) << "the backoff started over";
}

// Work that arrives every millisecond never comes while the reactor polls: each poll is
// pure cost. The adaptive reactor's window shrinks to nothing after a few such gaps and
// it then sleeps at once; a fixed one polls its whole window after every message.
TEST(Reactor, SpinWindowShrinksWhenWorkComesLate) {
  uint64_t turns[2] = {};
  for (bool adaptive : {true, false}) {
    SCOPED_TRACE(adaptive ? "adaptive" : "fixed");
    ReactorOptions o = opts();
    o.spin_ns = 200'000;
    o.spin_adaptive = adaptive;
    ReactorGroup g({0}, o);
    g.start();
    std::atomic<int> ran{0};
    for (int i = 0; i < 300; ++i) {
      g.at(0).send([&] { ran++; });
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ReactorStats s;
    g.run_on(0, [&](Reactor& r) { s = r.stats(); });
    g.stop();
    EXPECT_EQ(ran.load(), 300);
    if (adaptive) {
      EXPECT_EQ(s.spin_window_ns, 0u) << s.spin_shrinks << " shrinks, " << s.spin_grows << " grows";
    } else {
      EXPECT_EQ(s.spin_window_ns, 200'000u);
    }
    turns[adaptive] = s.loops;
  }
  // Polling 200 us after each of the 300 messages is thousands of turns each; with the
  // window at 0 a message takes two or three.
  EXPECT_LT(turns[true] * 3, turns[false]) << "adaptive " << turns[true] << " turns, fixed "
                                           << turns[false];
}

// sched_batch switches the reactor's own thread, and only it, to SCHED_BATCH.
TEST(Reactor, SchedBatchAppliesToTheReactorThread) {
  for (bool batch : {true, false}) {
    ReactorOptions o = opts();
    o.sched_batch = batch;
    ReactorGroup g({0}, o);
    g.start();
    int policy = -1;
    g.run_on(0, [&](Reactor&) { policy = sched_getscheduler(0); });
    g.stop();
    EXPECT_EQ(policy, batch ? SCHED_BATCH : SCHED_OTHER);
    EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER) << "the caller's thread changed";
  }
}

// A reactor pinned (--cores) to a CPU outside the set the process was started on
// (taskset) says so in the log; one inside it does not.
TEST(Reactor, PinningOutsideTheStartingCpuSetWarns) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
  std::vector<int> allowed;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &saved)) allowed.push_back(c);
  }
  if (allowed.size() < 2) GTEST_SKIP() << "needs two CPUs";
  auto logs = [&](int pin_to) {
    std::ostringstream out;
    auto logger = std::make_shared<spdlog::logger>(
        "t", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(logger);
    cpu_set_t only;
    CPU_ZERO(&only);
    CPU_SET(allowed[0], &only);
    EXPECT_EQ(sched_setaffinity(0, sizeof(only), &only), 0);  // threads created now inherit it
    {
      ReactorOptions o;  // pinned
      ReactorGroup g({pin_to}, o);
      g.start();
      g.stop();
    }
    EXPECT_EQ(sched_setaffinity(0, sizeof(saved), &saved), 0);
    spdlog::set_default_logger(previous);
    return out.str();
  };
  EXPECT_NE(logs(allowed[1]).find("outside the CPUs this process was started on"),
            std::string::npos);
  EXPECT_EQ(logs(allowed[0]).find("outside"), std::string::npos);
}

TEST(Reactor, ParseCpuList) {
  EXPECT_EQ(*parse_cpu_list("0"), (std::vector<int>{0}));
  long n = sysconf(_SC_NPROCESSORS_CONF);
  if (n >= 2) {
    EXPECT_EQ(*parse_cpu_list("0-1"), (std::vector<int>{0, 1}));
  }
  for (const char* bad : {"", "a", "1-0", "0,", "-1", "0-", "99999"}) {
    EXPECT_FALSE(parse_cpu_list(bad)) << bad;
  }
}

}  // namespace
}  // namespace castor::reactor
