#pragma once
// The client side of one fuzzed session over a socketpair (run_socket_session), and the
// live server it talks to (ServerWorld). run_socket_session: hands the server end to
// `adopt`, sends `data` while reading whatever comes back, half-closes, then reads until
// the server closes. A server that stops answering for 5 s traps (it wedged).
// stream_session() is the same over a socket the caller has already connected (and set
// up, e.g. a handshake the harness did itself); send_stream() and drain_until_closed()
// are its two halves, for harnesses that do something between them.
//
// Waits are for conditions, not times: whether the server will still read what was
// sent, or has finished with a session, is known from its reactors being idle
// (ReactorIdle: both asleep in io_uring, neither run between two looks). A session ends
// with the server idle, so that its teardown has freed what the input allocated before
// libFuzzer compares mallocs and frees (a difference costs a rerun of the input and a
// whole leak check).
//
// Every wait resumes after a signal: libFuzzer's SIGALRM (every -timeout/2 + 1 s, 601 s by
// default) interrupts poll(), which must not be taken for a timeout (a false "wedged").
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bdev/registry.h"

// poll() that resumes after a signal until `timeout_ms` has passed in all (then 0).
inline int poll_fds(pollfd* fds, nfds_t n, int timeout_ms) {
  using namespace std::chrono;
  const auto deadline = steady_clock::now() + milliseconds(timeout_ms);
  for (;;) {
    int r = poll(fds, n, timeout_ms);
    if (r >= 0 || errno != EINTR) return r;
    auto left = ceil<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) return 0;
    timeout_ms = static_cast<int>(left.count());
  }
}
// read() and send() that resume after a signal.
inline ssize_t read_fd(int fd, void* buf, size_t n) {
  ssize_t r;
  do r = read(fd, buf, n);
  while (r < 0 && errno == EINTR);
  return r;
}
inline ssize_t send_fd(int fd, const void* buf, size_t n, int flags) {
  ssize_t r;
  do r = send(fd, buf, n, flags);
  while (r < 0 && errno == EINTR);
  return r;
}

// Reads exactly `n` bytes of a harness's own exchange; false on end of file or error.
// The target staying silent for 5 s is a hang: prints `what` and traps.
inline bool read_exact(int fd, uint8_t* p, size_t n, const char* what = "the target") {
  while (n) {
    pollfd pf{fd, POLLIN, 0};
    if (poll_fds(&pf, 1, 5000) <= 0) {
      std::fprintf(stderr, "%s did not answer for 5 s\n", what);
      __builtin_trap();
    }
    ssize_t r = read_fd(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Writes all of `s` (blocking socket); false once the peer has gone.
inline bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send_fd(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Whether the server's reactors have nothing left to do: every thread of this process
// named reactor_N (the ServerWorld's) asleep in io_uring waiting for a completion, and
// none of them run between two looks (so there was a moment when all slept at once,
// with nothing sent between them: a reactor that messages another wakes it first). Lets a harness wait for a condition (the server has
// handled everything sent so far, a connection's teardown is over, a connection reads
// nothing because the target parked it) instead of for a guessed time. Read from
// /proc/self/task (wchan, schedstat's count of times run), so it needs no hook in the
// server. A reactor that sleeps with a timer armed is idle too (its timer is the
// target's own time-based work, e.g. a ping).
class ReactorIdle {
 public:
  explicit ReactorIdle(size_t reactors) : want_(reactors) {}
  ReactorIdle(const ReactorIdle&) = delete;
  ReactorIdle& operator=(const ReactorIdle&) = delete;
  ~ReactorIdle() {
    for (Probe& p : probes_) p.close_all();
  }

  // One look (two passes over the reactors). False when the reactors cannot be found (no
  // /proc): callers then fall back to waiting for time.
  bool idle() {
    if (!attach()) return false;
    uint64_t runs[8];
    for (size_t i = 0; i < probes_.size(); ++i) {
      if (!probes_[i].asleep(&runs[i])) return false;
    }
    for (size_t i = 0; i < probes_.size(); ++i) {
      uint64_t again = 0;
      if (!probes_[i].asleep(&again) || again != runs[i]) return false;
    }
    return true;
  }
  // Waits until idle(); false if that did not happen within `timeout_ms` (or cannot be
  // known). Yields the CPU between looks (the reactors may need it to finish), then
  // sleeps 50 us at a time.
  bool wait(int timeout_ms = 5000) {
    if (!attach()) return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (int i = 0;; ++i) {
      if (idle()) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (i < 64) {
        sched_yield();
      } else {
        timespec ts{0, 50'000};
        nanosleep(&ts, nullptr);
      }
    }
  }
  bool available() { return attach(); }

 private:
  struct Probe {
    int wchan = -1, sched = -1;
    void close_all() {
      for (int* fd : {&wchan, &sched}) {
        if (*fd >= 0) ::close(*fd);
        *fd = -1;
      }
    }
    static ssize_t read_at0(int fd, char* buf, size_t n) {
      ssize_t r;
      do r = pread(fd, buf, n - 1, 0);
      while (r < 0 && errno == EINTR);
      buf[r > 0 ? r : 0] = 0;
      return r;
    }
    // Asleep in io_uring: wchan names where a sleeping thread waits ("0" for one that
    // runs or is about to: woken, on a run queue), io_cqring_wait for a reactor waiting
    // for completions. *runs: times it has been put on a CPU so far (schedstat's third
    // field).
    bool asleep(uint64_t* runs) const {
      char buf[128];
      if (read_at0(wchan, buf, sizeof(buf)) <= 0 || std::strncmp(buf, "io_", 3) != 0) return false;
      if (read_at0(sched, buf, sizeof(buf)) <= 0) return false;
      const char* p = buf;
      for (int field = 0; field < 2; ++field) {
        p = std::strchr(p, ' ');
        if (!p) return false;
        ++p;
      }
      uint64_t n = 0;
      for (; *p >= '0' && *p <= '9'; ++p) n = n * 10 + static_cast<uint64_t>(*p - '0');
      *runs = n;
      return true;
    }
  };

  bool attach() {
    if (probes_.size() == want_) return true;
    if (failed_) return false;
    for (Probe& p : probes_) p.close_all();
    probes_.clear();
    DIR* d = opendir("/proc/self/task");
    if (!d) {
      failed_ = true;
      return false;
    }
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string base = std::string("/proc/self/task/") + e->d_name;
      char comm[32] = {};
      int fd = ::open((base + "/comm").c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      Probe::read_at0(fd, comm, sizeof(comm));
      ::close(fd);
      if (std::strncmp(comm, "reactor_", 8) != 0) continue;
      Probe p;
      p.wchan = ::open((base + "/wchan").c_str(), O_RDONLY | O_CLOEXEC);
      p.sched = ::open((base + "/schedstat").c_str(), O_RDONLY | O_CLOEXEC);
      probes_.push_back(p);
      if (p.wchan < 0 || p.sched < 0) failed_ = true;
    }
    closedir(d);
    // The reactors name their threads when they start: look again until all are there
    // (a few tries), then give up for good.
    if (probes_.size() != want_ || probes_.size() > 8) {
      if (++tries_ > 1000 || probes_.size() > 8) failed_ = true;
      if (!failed_) sched_yield();
    }
    if (failed_) {
      std::fprintf(stderr, "socket_session: cannot watch the reactor threads in /proc/self/task; "
                           "waiting for time instead\n");
      for (Probe& p : probes_) p.close_all();
      probes_.clear();
      return false;
    }
    return probes_.size() == want_;
  }

  size_t want_;
  std::vector<Probe> probes_;
  int tries_ = 0;
  bool failed_ = false;
};

namespace socket_session_detail {
inline uint8_t* sink() {
  static uint8_t buf[1 << 20];
  return buf;
}
constexpr size_t kSinkSize = 1 << 20;

// The reactors of the live server (ServerWorld sets it), or null.
inline ReactorIdle*& watched_reactors() {
  static ReactorIdle* p = nullptr;
  return p;
}
inline bool reactors_watched() {
  ReactorIdle* w = watched_reactors();
  return w && w->available();
}

// Sleeps until one of `fds` is ready or 50 us have passed (resuming after a signal is
// left to the caller's loop).
inline int poll_briefly(pollfd* fds, nfds_t n) {
  timespec ts{0, 50'000};
  return ppoll(fds, n, &ts, nullptr);
}

// Waits until the peer has read every byte sent on `fd` (SIOCOUTQ: bytes not yet
// consumed), reading its replies meanwhile. false: the peer closed (EOF, hang-up).
// Gives up (true: the caller goes on; drain_until_closed() traps if the peer wedged)
// when the server's reactors are idle with bytes still queued (the peer does not read
// them now: it holds them back on purpose, e.g. until the host reads, or it parked the
// connection), or without watched reactors after about 5 s.
inline bool wait_consumed(int fd) {
  const bool watched = reactors_watched();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (int i = 0;; ++i) {
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) != 0 || queued == 0) return true;
    pollfd p{fd, POLLIN, 0};
    int r = i < 256 ? poll_fds(&p, 1, 0) : watched ? poll_briefly(&p, 1) : poll_fds(&p, 1, 1);
    if (r > 0) {
      if (p.revents & POLLIN) {
        if (read_fd(fd, sink(), kSinkSize) <= 0) return false;
      } else if (p.revents & (POLLHUP | POLLERR)) {
        return false;
      }
      continue;
    }
    if (watched && i >= 16 && watched_reactors()->idle()) {
      // Idle: anything it sent is in our receive queue already; if there is nothing and
      // the queue is as it was, it is not going to read more.
      int again = 0;
      p.revents = 0;
      if (poll_fds(&p, 1, 0) == 0 && ioctl(fd, SIOCOUTQ, &again) == 0 && again == queued) return true;
      continue;
    }
    if (std::chrono::steady_clock::now() > deadline) return true;
    if (i >= 16 && i < 256) sched_yield();
  }
}

// poll_fds() for a server's reply: also returns 0 (nothing ready) early once the
// server's reactors are idle and nothing is ready (so nothing will be, until the client
// does something).
inline int poll_server(pollfd* fds, nfds_t n, int timeout_ms) {
  if (!reactors_watched()) return poll_fds(fds, n, timeout_ms);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int i = 0;; ++i) {
    int r = i < 16 ? poll_fds(fds, n, 0) : poll_briefly(fds, n);
    if (r > 0 || (r < 0 && errno != EINTR)) return r;
    if (i >= 16 && watched_reactors()->idle()) {
      for (nfds_t k = 0; k < n; ++k) fds[k].revents = 0;
      return poll_fds(fds, n, 0);
    }
    if (std::chrono::steady_clock::now() > deadline) return 0;
  }
}
}  // namespace socket_session_detail

// Sends `data` over the connected socket `fd` while reading whatever comes back; stops
// early when the peer closes or stops reading (its reactors idle while it reads nothing:
// ServerWorld; otherwise after 2 s). `chunk` > 0: sends at most that many bytes at a time
// and waits until the peer has read them before the next, so that the peer receives the
// stream in pieces of at most `chunk` bytes (PDUs split across reads) instead of in
// whatever pieces the kernel makes.
inline void send_stream(int fd, const uint8_t* data, size_t size, size_t chunk = 0) {
  using namespace socket_session_detail;
  size_t off = 0;
  while (off < size) {
    pollfd p[1] = {{fd, POLLOUT | POLLIN, 0}};
    if (poll_server(p, 1, 2000) <= 0) break;
    if (p[0].revents & POLLIN) {
      if (read_fd(fd, sink(), kSinkSize) <= 0) break;
    }
    if (p[0].revents & POLLOUT) {
      const size_t want = chunk ? std::min(chunk, size - off) : size - off;
      ssize_t n = send_fd(fd, data + off, want, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
      if (chunk && !wait_consumed(fd)) break;
    }
    if (p[0].revents & (POLLHUP | POLLERR)) break;
  }
}

// Reads from `fd` until the peer closes it; traps if the peer sends nothing and does not
// close for 5 s (it wedged).
inline void drain_until_closed(int fd) {
  using namespace socket_session_detail;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll_fds(&p, 1, 5000) <= 0) __builtin_trap();
    if (read_fd(fd, sink(), kSinkSize) <= 0) break;
  }
}

// send_stream(), half-close, drain_until_closed(). Does not close `fd`.
inline void stream_session(int fd, const uint8_t* data, size_t size, size_t chunk = 0) {
  send_stream(fd, data, size, chunk);
  shutdown(fd, SHUT_WR);
  drain_until_closed(fd);
}

template <class Adopt>
void run_socket_session(const uint8_t* data, size_t size, Adopt&& adopt) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
  adopt(sv[1]);
  stream_session(sv[0], data, size);
  close(sv[0]);
}

// The live server a socket-session fuzz target talks to: one unpinned reactor (or
// `Reactors` of them), a bdev registry and the server `make` builds on them (with its
// bdevs), created on first use and stopped at exit before static destructors run
// (spdlog's among them: a connection closing at exit would otherwise log into a freed
// registry). `Server` needs stop() and adopt(fd, reactor_index).
template <class Server, size_t Reactors = 1>
struct ServerWorld {
  static_assert(Reactors >= 1);
  using Make = std::function<std::unique_ptr<Server>(castor::reactor::ReactorGroup&, castor::bdev::BdevRegistry&)>;
  castor::reactor::ReactorGroup group{[] {
                                        std::vector<int> cpus(Reactors);
                                        for (size_t i = 0; i < Reactors; ++i) cpus[i] = static_cast<int>(i);
                                        return cpus;
                                      }(),
                                      [] {
                                        castor::reactor::ReactorOptions o;
                                        o.pin = false;
                                        return o;
                                      }()};
  std::unique_ptr<castor::bdev::BdevRegistry> reg;
  std::unique_ptr<Server> srv;
  ReactorIdle reactors_idle{Reactors};

  static ServerWorld& get(const Make& make) {
    ServerWorld*& w = instance();
    if (!w) {
      w = new ServerWorld;  // lives until exit
      w->group.start();
      w->reg = std::make_unique<castor::bdev::BdevRegistry>(w->group);
      w->srv = make(w->group, *w->reg);
      socket_session_detail::watched_reactors() = &w->reactors_idle;
      std::atexit([] {
        ServerWorld& s = *instance();
        socket_session_detail::watched_reactors() = nullptr;
        s.srv->stop();
        s.srv.reset();
        s.reg.reset();
        s.group.stop();
      });
    }
    return *w;
  }
  // Serves one fuzz input as a whole client session, and waits until the server has
  // finished with it (its reactors idle: the connection's teardown is over), so that
  // what the input allocated is freed before libFuzzer compares mallocs and frees (a
  // difference makes it run the input again and then a whole leak check).
  void session(const uint8_t* data, size_t size) {
    run_socket_session(data, size, [&](int fd) { srv->adopt(fd, 0); });
    wait_idle();
  }
  // Waits until the server's reactors are idle (ReactorIdle); false after `timeout_ms`
  // or when that cannot be known.
  bool wait_idle(int timeout_ms = 5000) { return reactors_idle.wait(timeout_ms); }
  // A new connection to the server: returns the client end (-1 on failure), the server
  // end is adopted.
  int connect() { return connect_on(0); }
  // The same, served on reactor `reactor_index`.
  int connect_on(size_t reactor_index) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    srv->adopt(sv[1], reactor_index);
    return sv[0];
  }

 private:
  static ServerWorld*& instance() {
    static ServerWorld* p = nullptr;
    return p;
  }
};
