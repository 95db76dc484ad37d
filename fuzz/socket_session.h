#pragma once
// The client side of one fuzzed session over a socketpair (run_socket_session), and the
// live server it talks to (ServerWorld). run_socket_session: hands the server end to
// `adopt`, sends `data` while reading whatever comes back, half-closes, then reads until
// the server closes. A server that stops answering for 5 s traps (it wedged).
// stream_session() is the same over a socket the caller has already connected (and set
// up, e.g. a handshake the harness did itself); send_stream() and drain_until_closed()
// are its two halves, for harnesses that do something between them.
//
// Every wait resumes after a signal: libFuzzer's SIGALRM (every -timeout/2 + 1 s, 601 s by
// default) interrupts poll(), which must not be taken for a timeout (a false "wedged").
#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

namespace socket_session_detail {
inline uint8_t* sink() {
  static uint8_t buf[1 << 20];
  return buf;
}
constexpr size_t kSinkSize = 1 << 20;

// Waits until the peer has read every byte sent on `fd` (SIOCOUTQ: bytes not yet
// consumed), reading its replies meanwhile. false: the peer closed (EOF, hang-up).
// Gives up after about 5 s (true: the caller goes on; drain_until_closed() traps if the
// peer wedged).
inline bool wait_consumed(int fd) {
  for (int i = 0; i < 5000 + 256; ++i) {
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) != 0 || queued == 0) return true;
    pollfd p{fd, POLLIN, 0};
    int r = poll_fds(&p, 1, i < 256 ? 0 : 1);  // spin briefly, then sleep a millisecond at a time
    if (r > 0) {
      if (p.revents & POLLIN) {
        if (read_fd(fd, sink(), kSinkSize) <= 0) return false;
      } else if (p.revents & (POLLHUP | POLLERR)) {
        return false;
      }
    }
  }
  return true;
}
}  // namespace socket_session_detail

// Sends `data` over the connected socket `fd` while reading whatever comes back; stops
// early when the peer closes or stops reading for 2 s. `chunk` > 0: sends at most that
// many bytes at a time and waits until the peer has read them before the next, so that
// the peer receives the stream in pieces of at most `chunk` bytes (PDUs split across
// reads) instead of in whatever pieces the kernel makes.
inline void send_stream(int fd, const uint8_t* data, size_t size, size_t chunk = 0) {
  using namespace socket_session_detail;
  size_t off = 0;
  while (off < size) {
    pollfd p[1] = {{fd, POLLOUT | POLLIN, 0}};
    if (poll_fds(p, 1, 2000) <= 0) break;
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

  static ServerWorld& get(const Make& make) {
    ServerWorld*& w = instance();
    if (!w) {
      w = new ServerWorld;  // lives until exit
      w->group.start();
      w->reg = std::make_unique<castor::bdev::BdevRegistry>(w->group);
      w->srv = make(w->group, *w->reg);
      std::atexit([] {
        ServerWorld& s = *instance();
        s.srv->stop();
        s.srv.reset();
        s.reg.reset();
        s.group.stop();
      });
    }
    return *w;
  }
  // Serves one fuzz input as a whole client session.
  void session(const uint8_t* data, size_t size) {
    run_socket_session(data, size, [&](int fd) { srv->adopt(fd, 0); });
  }
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
