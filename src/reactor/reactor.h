#pragma once
// Layer 1: the reactor. One thread per configured core, each owning an io_uring ring,
// timers, pollers, a local task queue and a lock-free inbox of messages from other
// threads. Objects owned by a reactor are touched only on that reactor's thread; to
// reach them from elsewhere, send() a message.
//
// Idle policy: a reactor that found work keeps polling for a while (the spin window,
// reactor/spin_policy.h), yielding its CPU to any thread that wants it; then it sleeps in
// io_uring_enter until a completion, a message (eventfd wake) or the next timer.
// ReactorOptions::poll = true never sleeps (lowest latency, 100 % of a core).

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "reactor/mpsc_queue.h"
#include "reactor/spin_policy.h"

namespace castor::reactor {

// Deferred work on one reactor. Intrusive, so the I/O path defers without allocating.
struct Task {
  Task* next = nullptr;
  void (*fn)(Task*) = nullptr;
};

// Receives the completion of an io_uring operation. The SQE's user_data points here.
class UringOp {
 public:
  // `res` is the CQE result (negative errno on failure); `flags` the CQE flags.
  virtual void complete(int32_t res, uint32_t flags) = 0;

 protected:
  ~UringOp() = default;
};

// When the kernel runs the work that turns a finished operation (a socket that became
// readable, a disk read) into a completion the reactor can reap.
enum class TaskRun : uint8_t {
  // Only when the reactor enters the kernel to collect completions, which its loop does
  // whenever the kernel flags such work (IORING_SETUP_DEFER_TASKRUN): nothing interrupts
  // a busy reactor, and a peer sending to it never pays for waking it. The fastest mode
  // at every queue depth measured (docs/benchmarks.md, "Measurements behind defaults").
  // Linux 6.1+.
  kDefer,
  // At the reactor's next system call, without an interrupt (COOP_TASKRUN). Linux 5.19+.
  kCooperative,
  // At once, interrupting the reactor (an IPI to its CPU): the only mode of older
  // kernels, and the fallback when the others are refused.
  kInterrupt,
};
const char* task_run_name(TaskRun t);
// "defer", "coop" or "interrupt". Errors: InvalidArgument.
Result<TaskRun> parse_task_run(const std::string& s);

struct ReactorOptions {
  bool poll = false;              // pure busy polling, never sleep
  TaskRun task_run = TaskRun::kDefer;
  unsigned ring_entries = 1024;   // SQ size; the CQ is four times that
  // The longest spin window: an idle reactor keeps polling at most this long before it
  // sleeps. 0 never spins.
  uint64_t spin_ns = 50'000;
  // Adapt the window between 0 and spin_ns to the idle gaps seen (SpinPolicy); false
  // always polls spin_ns.
  bool spin_adaptive = true;
  // Run the reactor thread as SCHED_BATCH: when its work arrives it waits for the thread
  // running on its CPU to block or use up its time slice instead of preempting it. On a
  // core shared with the application, the application then issues a whole burst of
  // requests before the reactor takes them all at once (more IOPS, far fewer context
  // switches: docs/benchmarks.md, "Measurements behind defaults"). The cost: an
  // application thread that computes without blocking
  // delays the I/O of its neighbours by up to one time slice (a few ms). No effect on a
  // core the reactor has to itself.
  bool sched_batch = false;
  bool pin = true;                // pin the thread to its CPU
  // While completions are handled, enter the kernel as soon as this many new SQEs are
  // queued. 1 resubmits at once, which keeps a disk's queue steadily full (batching cost
  // random-read IOPS on a virtio disk: docs/benchmarks.md); larger values save system
  // calls where the device is not the bottleneck.
  unsigned submit_batch = 1;
};

struct ReactorStats {
  uint64_t loops = 0;
  uint64_t sleeps = 0;
  uint64_t messages = 0;
  uint64_t cqes = 0;
  uint64_t submits = 0;
  uint64_t spin_hits = 0;    // idle periods that ended while polling
  uint64_t spin_grows = 0;   // ... after a sleep, soon enough that the window grew
  uint64_t spin_shrinks = 0; // ... after a sleep longer than spin_ns: the window shrank
  uint64_t spin_pauses = 0;  // polling paused: a yield let a long-running thread run
  uint64_t spin_window_ns = 0;  // the window now
};

class Reactor {
 public:
  using TimerId = std::pair<uint64_t, uint64_t>;  // (deadline, sequence)
  using PollerId = uint64_t;

  Reactor(uint32_t id, int cpu, ReactorOptions opts);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  uint32_t id() const { return id_; }
  int cpu() const { return cpu_; }
  bool poll_mode() const { return opts_.poll; }
  // The reactor whose thread is calling, or nullptr on any other thread.
  static Reactor* current();
  bool is_current() const { return current() == this; }

  // ---- Any thread ----
  // Runs `f` on this reactor's thread. Lock-free; messages sent by one thread run in
  // the order sent. Allocates one node per message (control path, not the I/O path).
  template <class F>
  void send(F&& f) {
    struct Node : Message {
      explicit Node(F&& fn) : fn_(std::forward<F>(fn)) {}
      void run() override { fn_(); }
      std::decay_t<F> fn_;
    };
    post(new Node(std::forward<F>(f)));
  }

  // ---- This reactor's thread only ----
  // An SQE whose user_data is set to `op`; never null (submits to make room). Each SQE
  // counts as in-flight until its (final) CQE arrives, which delays stop().
  io_uring_sqe* get_sqe(UringOp* op);
  void defer(Task* t);                   // runs on a later loop iteration, in FIFO order
  void defer(std::function<void()> fn);  // allocating convenience
  // Runs `t` once, later in this loop iteration, just before the reactor submits the SQEs
  // queued meanwhile (FIFO; `t` stays valid until it has run). Work that several
  // completions of one iteration add to (a host connection's commands) then becomes one
  // operation instead of one per completion. REQUIRES: `t` is not already queued.
  void before_submit(Task* t);
  TimerId add_timer(uint64_t delay_ns, std::function<void()> fn);
  bool cancel_timer(TimerId id);  // false if already fired or unknown
  // A poller runs every loop iteration and returns how much work it did (0 = idle).
  PollerId add_poller(std::function<int()> fn);
  void remove_poller(PollerId id);
  // Work in flight that the reactor cannot see (e.g. an I/O parked on a timer) holds off
  // its stop: stop() waits until every hold_stop() is balanced by a release_stop().
  void hold_stop() { ++stop_holds_; }
  void release_stop() { --stop_holds_; }
  // Time at the start of this loop iteration (cheap), or now (exact).
  uint64_t loop_now_ns() const { return now_ns_; }
  bool stopping() const { return stop_requested_.load(std::memory_order_acquire); }
  const ReactorStats& stats() const { return stats_; }
  uint64_t inflight() const { return inflight_; }

  // ---- Lifecycle (owner thread) ----
  void start();
  // Asks the loop to finish: it keeps running until no messages, tasks, io_uring
  // operations or holds remain (or `drain_timeout_ns` passes), then exits.
  void request_stop(uint64_t drain_timeout_ns);
  void join();

 private:
  struct Message : MpscNode {
    virtual ~Message() = default;
    virtual void run() = 0;
  };
  class WakeOp final : public UringOp {
   public:
    explicit WakeOp(Reactor* r) : r_(r) {}
    void complete(int32_t res, uint32_t flags) override;
    Reactor* r_;
    uint64_t buf_ = 0;
  };
  struct Poller {
    PollerId id;
    std::function<int()> fn;
    bool removed = false;
  };

  void post(Message* m);
  void run();
  int run_messages();
  int run_tasks();
  int run_before_submit();
  int run_timers();
  int run_pollers();
  int reap();
  void sleep();
  bool has_local_work() const;

  const uint32_t id_;
  const int cpu_;
  const ReactorOptions opts_;
  std::thread thread_;
  io_uring ring_{};
  bool ring_ok_ = false;
  int wake_fd_ = -1;
  WakeOp wake_op_{this};
  bool wake_armed_ = false;

  MpscQueue inbox_;
  alignas(64) std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_requested_{false};
  uint64_t stop_deadline_ns_ = 0;

  Task* task_head_ = nullptr;
  Task* task_tail_ = nullptr;
  Task* flush_head_ = nullptr;  // before_submit() tasks
  Task* flush_tail_ = nullptr;
  std::map<TimerId, std::function<void()>> timers_;
  uint64_t timer_seq_ = 0;
  std::vector<Poller> pollers_;
  PollerId next_poller_ = 1;
  bool pollers_dirty_ = false;

  unsigned pending_sqes_ = 0;
  uint64_t inflight_ = 0;
  int64_t stop_holds_ = 0;
  uint64_t now_ns_ = 0;
  ReactorStats stats_;
  SpinPolicy spin_;
};

// Parses "0,1", "0-3", "0,2-3" into a CPU list; rejects CPUs this machine lacks.
Result<std::vector<int>> parse_cpu_list(const std::string& spec);
// CPUs for `n` reactors: the CPUs this process may run on (its affinity, so `taskset`
// is respected), in order, wrapping around when n exceeds them (so reactor i uses CPU i
// on an unrestricted machine).
std::vector<int> cpus_for_reactor_count(unsigned n);

// The engine's set of reactors.
class ReactorGroup {
 public:
  ReactorGroup(std::vector<int> cpus, ReactorOptions opts);
  ~ReactorGroup();
  void start();
  // Drains in-flight work on every reactor, then joins the threads. Idempotent.
  void stop(uint64_t drain_timeout_ns = 10'000'000'000ull);
  size_t size() const { return reactors_.size(); }
  Reactor& at(size_t i) { return *reactors_[i]; }
  const std::vector<int>& cpus() const { return cpus_; }
  // Runs `fn` on every reactor and returns when all have run it. Must not be called
  // from a reactor thread (it would deadlock waiting on itself).
  void run_on_all(const std::function<void(Reactor&)>& fn);
  // Runs `fn` on reactor `i` and waits for it. Not from a reactor thread.
  void run_on(size_t i, const std::function<void(Reactor&)>& fn);

 private:
  std::vector<int> cpus_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace castor::reactor
