#include "reactor/reactor.h"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <latch>
#include <mutex>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "common/clock.h"

namespace castor::reactor {
namespace {
thread_local Reactor* t_current = nullptr;

// The calling thread's involuntary context switches (a yield that ran another thread
// counts as one).
long involuntary_switches() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_nivcsw;
}
}  // namespace

Reactor* Reactor::current() { return t_current; }

Reactor::Reactor(uint32_t id, int cpu, ReactorOptions opts)
    : id_(id), cpu_(cpu), opts_(opts), spin_(opts.spin_ns, opts.spin_adaptive) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + strerror(errno));
}

Reactor::~Reactor() {
  join();
  while (auto* n = inbox_.pop()) delete static_cast<Message*>(n);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Reactor::post(Message* m) {
  inbox_.push(m);
  // Pairs with the fence in sleep(): either the reactor sees the message before it
  // sleeps, or we see sleeping_ and wake it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed) &&
      sleeping_.exchange(false, std::memory_order_acq_rel)) {
    uint64_t one = 1;
    ssize_t rc = write(wake_fd_, &one, sizeof(one));
    (void)rc;  // EAGAIN only if the counter is saturated, which still wakes the reader
  }
}

void Reactor::WakeOp::complete(int32_t, uint32_t) { r_->wake_armed_ = false; }

io_uring_sqe* Reactor::get_sqe(UringOp* op) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    stats_.submits++;
    pending_sqes_ = 0;
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_sqe_set_data(sqe, op);
  ++pending_sqes_;
  ++inflight_;
  return sqe;
}

namespace {
// Appends `t` to the intrusive FIFO head..tail.
void append(Task*& head, Task*& tail, Task* t) {
  t->next = nullptr;
  if (tail) {
    tail->next = t;
  } else {
    head = t;
  }
  tail = t;
}
}  // namespace

void Reactor::defer(Task* t) { append(task_head_, task_tail_, t); }

void Reactor::before_submit(Task* t) { append(flush_head_, flush_tail_, t); }

void Reactor::defer(std::function<void()> fn) {
  struct FnTask : Task {
    std::function<void()> fn;
  };
  auto* t = new FnTask;
  t->fn = std::move(fn);
  t->Task::fn = [](Task* self) {
    auto* ft = static_cast<FnTask*>(self);
    ft->fn();
    delete ft;
  };
  defer(t);
}

Reactor::TimerId Reactor::add_timer(uint64_t delay_ns, std::function<void()> fn) {
  TimerId id{mono_ns() + delay_ns, ++timer_seq_};
  timers_.emplace(id, std::move(fn));
  return id;
}

bool Reactor::cancel_timer(TimerId id) { return timers_.erase(id) > 0; }

Reactor::PollerId Reactor::add_poller(std::function<int()> fn) {
  PollerId id = next_poller_++;
  pollers_.push_back(Poller{id, std::move(fn)});
  return id;
}

void Reactor::remove_poller(PollerId id) {
  for (auto& p : pollers_) {
    if (p.id == id) {
      p.removed = true;
      pollers_dirty_ = true;
    }
  }
}

void Reactor::start() {
  thread_ = std::thread([this] { run(); });
}

void Reactor::request_stop(uint64_t drain_timeout_ns) {
  stop_deadline_ns_ = mono_ns() + drain_timeout_ns;
  stop_requested_.store(true, std::memory_order_release);
  send([] {});  // wakes a sleeping loop so it notices
}

void Reactor::join() {
  if (thread_.joinable()) thread_.join();
}

int Reactor::run_messages() {
  int n = 0;
  // Bounded so a flood of messages cannot starve I/O completions.
  while (n < 256) {
    MpscNode* node = inbox_.pop();
    if (!node) break;
    auto* m = static_cast<Message*>(node);
    m->run();
    delete m;
    ++n;
  }
  stats_.messages += n;
  return n;
}

int Reactor::run_tasks() {
  // Only the tasks queued before this call run now; new ones wait for the next turn.
  Task* t = task_head_;
  task_head_ = task_tail_ = nullptr;
  int n = 0;
  while (t) {
    Task* next = t->next;
    t->fn(t);
    t = next;
    ++n;
  }
  return n;
}

int Reactor::run_before_submit() {
  // Tasks queued while these run (none today) run in this pass too.
  int n = 0;
  while (Task* t = flush_head_) {
    flush_head_ = t->next;
    if (!flush_head_) flush_tail_ = nullptr;
    t->fn(t);
    ++n;
  }
  return n;
}

int Reactor::run_timers() {
  int n = 0;
  while (!timers_.empty()) {
    auto it = timers_.begin();
    if (it->first.first > now_ns_) break;
    auto fn = std::move(it->second);
    timers_.erase(it);
    fn();
    ++n;
  }
  return n;
}

int Reactor::run_pollers() {
  int work = 0;
  for (size_t i = 0; i < pollers_.size(); ++i) {
    if (!pollers_[i].removed) work += pollers_[i].fn();
  }
  if (pollers_dirty_) {
    std::erase_if(pollers_, [](const Poller& p) { return p.removed; });
    pollers_dirty_ = false;
  }
  return work;
}

int Reactor::reap() {
  struct Done {
    UringOp* op;
    int32_t res;
    uint32_t flags;
  };
  constexpr unsigned kBatch = 128;
  io_uring_cqe* cqes[kBatch];
  Done done[kBatch];
  unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kBatch);
  for (unsigned i = 0; i < n; ++i) {
    done[i] = {static_cast<UringOp*>(io_uring_cqe_get_data(cqes[i])), cqes[i]->res,
               cqes[i]->flags};
  }
  io_uring_cq_advance(&ring_, n);
  for (unsigned i = 0; i < n; ++i) {
    if (done[i].op == nullptr) continue;
    if (done[i].op != &wake_op_ && !(done[i].flags & IORING_CQE_F_MORE)) --inflight_;
    done[i].op->complete(done[i].res, done[i].flags);
    if (pending_sqes_ >= opts_.submit_batch) {
      io_uring_submit(&ring_);
      stats_.submits++;
      pending_sqes_ = 0;
    }
  }
  stats_.cqes += n;
  return static_cast<int>(n);
}

bool Reactor::has_local_work() const {
  return task_head_ != nullptr || flush_head_ != nullptr || inbox_.maybe_nonempty();
}

void Reactor::sleep() {
  if (!wake_armed_) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    io_uring_prep_read(sqe, wake_fd_, &wake_op_.buf_, sizeof(wake_op_.buf_), 0);
    io_uring_sqe_set_data(sqe, &wake_op_);
    wake_armed_ = true;
  }
  sleeping_.store(true, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (has_local_work()) {
    sleeping_.store(false, std::memory_order_relaxed);
    return;
  }
  __kernel_timespec ts{};
  __kernel_timespec* tsp = nullptr;
  if (!timers_.empty()) {
    uint64_t now = mono_ns();
    uint64_t deadline = timers_.begin()->first.first;
    uint64_t wait = deadline > now ? deadline - now : 0;
    ts.tv_sec = static_cast<int64_t>(wait / 1000000000ull);
    ts.tv_nsec = static_cast<int64_t>(wait % 1000000000ull);
    tsp = &ts;
  }
  if (stopping()) {
    // While draining, wake at least every millisecond to re-check the deadline.
    if (!tsp || ts.tv_sec > 0 || ts.tv_nsec > 1'000'000) {
      ts = {0, 1'000'000};
      tsp = &ts;
    }
  }
  io_uring_cqe* cqe = nullptr;
  stats_.sleeps++;
  io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, tsp, nullptr);
  pending_sqes_ = 0;
  sleeping_.store(false, std::memory_order_relaxed);
}

void Reactor::run() {
  t_current = this;
  if (opts_.pin && cpu_ >= 0) {
    cpu_set_t set;
    // A CPU named explicitly (--cores) outside the set this process was started with
    // (taskset, a cpuset) is pinned anyway, which surprises whoever chose that set.
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && !CPU_ISSET(cpu_, &set)) {
      spdlog::warn("reactor={} pinned to cpu={}, outside the CPUs this process was started on "
                   "(taskset or cpuset); use --reactors N to stay within them",
                   id_, cpu_);
    }
    CPU_ZERO(&set);
    CPU_SET(cpu_, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
      spdlog::warn("reactor={} cannot pin to cpu={}", id_, cpu_);
    }
  }
  pthread_setname_np(pthread_self(), ("reactor_" + std::to_string(id_)).c_str());
  if (opts_.sched_batch) {
    sched_param sp{};
    if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) != 0) {
      spdlog::warn("reactor={} cannot switch to SCHED_BATCH", id_);
    }
  }
  // The ring belongs to this thread alone (SINGLE_ISSUER), which DEFER_TASKRUN needs.
  // TASKRUN_FLAG makes the kernel flag pending work in the SQ ring, so that reap()'s
  // io_uring_peek_batch_cqe enters the kernel to run it. A kernel that refuses a mode
  // gets the next one: defer, cooperative, interrupt, then a plain ring.
  constexpr int kPlainRing = static_cast<int>(TaskRun::kInterrupt) + 1;
  io_uring_params p{};
  int rc = -EINVAL;
  for (int mode = static_cast<int>(opts_.task_run); rc == -EINVAL && mode <= kPlainRing; ++mode) {
    p = {};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE;
    p.cq_entries = opts_.ring_entries * 4;
    if (mode == static_cast<int>(TaskRun::kDefer)) {
      p.flags |= IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    } else if (mode == static_cast<int>(TaskRun::kCooperative)) {
      p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    } else if (mode == kPlainRing) {
      p = {};
    }
    rc = io_uring_queue_init_params(opts_.ring_entries, &ring_, &p);
    if (rc == 0 && mode != static_cast<int>(opts_.task_run)) {
      spdlog::warn("reactor={} the kernel refused io_uring task-run mode '{}'; using {}", id_,
                   task_run_name(opts_.task_run),
                   mode < kPlainRing ? task_run_name(static_cast<TaskRun>(mode)) : "a plain ring");
    }
  }
  if (rc < 0) {
    spdlog::critical("reactor={} io_uring_queue_init: {}", id_, strerror(-rc));
    std::abort();
  }
  ring_ok_ = true;
  const char* mode = (p.flags & IORING_SETUP_DEFER_TASKRUN)  ? "defer"
                     : (p.flags & IORING_SETUP_COOP_TASKRUN) ? "coop"
                                                              : "interrupt";
  spdlog::debug("reactor={} cpu={} started poll={} task_run={}", id_, cpu_, opts_.poll, mode);

  // The idle period in progress (0: the last turn found work) and whether the reactor
  // slept in it.
  uint64_t idle_since_ns = 0;
  bool slept = false;
  long switched_out = 0;  // this thread's involuntary context switches at the idle start
  stats_.spin_window_ns = spin_.window_ns(now_ns_);
  for (;;) {
    now_ns_ = mono_ns();
    stats_.loops++;
    int work = run_messages();
    work += run_tasks();
    if (!timers_.empty()) work += run_timers();
    if (!pollers_.empty()) work += run_pollers();
    if (flush_head_) work += run_before_submit();
    if (pending_sqes_) {
      io_uring_submit_and_get_events(&ring_);
      stats_.submits++;
      pending_sqes_ = 0;
    }
    work += reap();
    if (work) {
      if (idle_since_ns) {
        spin_.idle_ended(now_ns_ - idle_since_ns, slept, now_ns_);
        if (!slept) stats_.spin_hits++;
        stats_.spin_grows = spin_.grows();
        stats_.spin_shrinks = spin_.shrinks();
        stats_.spin_pauses = spin_.pauses();
        stats_.spin_window_ns = spin_.window_ns(now_ns_);
        idle_since_ns = 0;
      }
      continue;
    }
    if (stopping()) {
      bool drained = inflight_ == 0 && stop_holds_ <= 0 && !has_local_work();
      if (drained) break;
      if (now_ns_ > stop_deadline_ns_) {
        spdlog::warn("reactor={} stop: abandoning {} in-flight ops and {} holds", id_, inflight_,
                     stop_holds_);
        break;
      }
    }
    if (opts_.poll) continue;
    if (!idle_since_ns) {
      idle_since_ns = now_ns_;
      slept = false;
      if (spin_.window_ns(now_ns_) > 0) switched_out = involuntary_switches();
    }
    if (!slept && now_ns_ - idle_since_ns < spin_.window_ns(now_ns_)) {
      // Polling must not keep a thread that wants this CPU (the application, on a shared
      // core) from running: it may be the one about to send the work polled for.
      sched_yield();
      const uint64_t after = mono_ns();
      // A long yield counts only if another thread ran here meanwhile (the switch counts
      // as involuntary): a yield is as long when the hypervisor runs another virtual CPU
      // (steal time), which polling does not make worse.
      if (after - now_ns_ > SpinPolicy::kLongYieldNs && involuntary_switches() != switched_out) {
        spin_.yielded(after - now_ns_, after);
      }
      continue;
    }
    slept = true;
    sleep();
  }
  // Drop what can no longer run; in-flight SQEs (only after a drain timeout) are torn
  // down with the ring.
  timers_.clear();
  pollers_.clear();
  io_uring_queue_exit(&ring_);
  ring_ok_ = false;
  spdlog::debug("reactor={} stopped loops={} sleeps={} spin hits={} grows={} shrinks={} pauses={}",
                id_, stats_.loops, stats_.sleeps, stats_.spin_hits, stats_.spin_grows,
                stats_.spin_shrinks, stats_.spin_pauses);
  t_current = nullptr;
}

const char* task_run_name(TaskRun t) {
  switch (t) {
    case TaskRun::kDefer: return "defer";
    case TaskRun::kCooperative: return "coop";
    case TaskRun::kInterrupt: return "interrupt";
  }
  return "?";
}

Result<TaskRun> parse_task_run(const std::string& s) {
  for (TaskRun t : {TaskRun::kDefer, TaskRun::kCooperative, TaskRun::kInterrupt}) {
    if (s == task_run_name(t)) return t;
  }
  return make_error(Errc::kInvalidArgument,
                    "invalid io_uring task-run mode '{}' (expected defer, coop or interrupt)", s);
}

std::vector<int> cpus_for_reactor_count(unsigned n) {
  std::vector<int> allowed;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) allowed.push_back(c);
    }
  }
  if (allowed.empty()) {
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned c = 0; c < hw; ++c) allowed.push_back(static_cast<int>(c));
  }
  std::vector<int> cpus;
  for (unsigned i = 0; i < n; ++i) cpus.push_back(allowed[i % allowed.size()]);
  return cpus;
}

Result<std::vector<int>> parse_cpu_list(const std::string& spec) {
  std::vector<int> out;
  long ncpu = sysconf(_SC_NPROCESSORS_CONF);
  size_t pos = 0;
  auto bad = [&] {
    return make_error(Errc::kInvalidArgument,
                      "invalid core list '{}' (expected e.g. 0,1 or 0-3; this machine has cpus "
                      "0-{})",
                      spec, ncpu - 1);
  };
  if (spec.empty()) return bad();
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string part = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (part.empty()) return bad();
    int lo, hi;
    try {
      size_t dash = part.find('-');
      size_t n1 = 0, n2 = 0;
      if (dash == std::string::npos) {
        lo = hi = std::stoi(part, &n1);
        if (n1 != part.size()) return bad();
      } else {
        lo = std::stoi(part.substr(0, dash), &n1);
        hi = std::stoi(part.substr(dash + 1), &n2);
        if (n1 != dash || n2 != part.size() - dash - 1) return bad();
      }
    } catch (...) {
      return bad();
    }
    if (lo < 0 || hi < lo || hi >= ncpu) return bad();
    for (int c = lo; c <= hi; ++c) out.push_back(c);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

ReactorGroup::ReactorGroup(std::vector<int> cpus, ReactorOptions opts) : cpus_(std::move(cpus)) {
  for (size_t i = 0; i < cpus_.size(); ++i) {
    reactors_.push_back(std::make_unique<Reactor>(static_cast<uint32_t>(i), cpus_[i], opts));
  }
}

ReactorGroup::~ReactorGroup() { stop(); }

void ReactorGroup::start() {
  if (started_) return;
  started_ = true;
  for (auto& r : reactors_) r->start();
}

void ReactorGroup::stop(uint64_t drain_timeout_ns) {
  if (!started_ || stopped_) return;
  stopped_ = true;
  for (auto& r : reactors_) r->request_stop(drain_timeout_ns);
  for (auto& r : reactors_) r->join();
}

void ReactorGroup::run_on_all(const std::function<void(Reactor&)>& fn) {
  std::latch done(static_cast<std::ptrdiff_t>(reactors_.size()));
  for (auto& r : reactors_) {
    Reactor* rp = r.get();
    rp->send([&fn, &done, rp] {
      fn(*rp);
      done.count_down();
    });
  }
  done.wait();
}

void ReactorGroup::run_on(size_t i, const std::function<void(Reactor&)>& fn) {
  std::latch done(1);
  Reactor* rp = reactors_.at(i).get();
  rp->send([&] {
    fn(*rp);
    done.count_down();
  });
  done.wait();
}

}  // namespace castor::reactor
