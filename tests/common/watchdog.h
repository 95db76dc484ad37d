#pragma once
// A deadline for one scope of a test: if the scope has not ended within `limit`, the
// watchdog prints what it guards, the phase the test last named and every thread's stack
// (through gdb, when the machine has it), then aborts. A hang then fails with where it
// hung, instead of a bare CTest timeout whose output says nothing.
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace castor::test {

class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, std::string what) : what_(std::move(what)) {
    thread_ = std::thread([this, limit] {
      std::unique_lock lk(mu_);
      if (cv_.wait_for(lk, limit, [this] { return done_; })) return;
      std::fprintf(stderr, "WATCHDOG: %s did not finish in %lld s (phase: %s); every thread's stack follows\n",
                   what_.c_str(), static_cast<long long>(limit.count()), phase_.c_str());
      std::fflush(stderr);
      std::fflush(stdout);
      ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
      const std::string cmd = "gdb -batch -p " + std::to_string(::getpid()) +
                              " -ex 'thread apply all bt' 2>&1 | grep -v '^\\[New LWP' | head -400 >&2";
      if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "WATCHDOG: no stacks (gdb missing or refused)\n");
      std::abort();
    });
  }
  ~Watchdog() {
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Names what the test does now (printed if it hangs there).
  void phase(std::string p) {
    std::lock_guard lk(mu_);
    phase_ = std::move(p);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string what_;
  std::string phase_ = "start";
  std::thread thread_;
};

}  // namespace castor::test
