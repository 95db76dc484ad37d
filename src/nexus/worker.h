#pragma once
// A small control thread for work that blocks (health-store writes) or waits for every
// reactor (ReactorGroup::run_on_all), which a reactor must never do itself. Jobs run in
// the order posted. post() takes a mutex: it is called from reactors only on fault and
// rebuild-completion events, never per I/O.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace castor::nexus {

class ControlWorker {
 public:
  ControlWorker() : thread_([this] { run(); }) {}
  // Runs every job already posted, then joins.
  ~ControlWorker() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  ControlWorker(const ControlWorker&) = delete;
  ControlWorker& operator=(const ControlWorker&) = delete;

  // Any thread, including reactors.
  void post(std::function<void()> fn) {
    {
      std::lock_guard lk(mu_);
      jobs_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  bool on_worker_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void run() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lk.unlock();
      fn();
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace castor::nexus
