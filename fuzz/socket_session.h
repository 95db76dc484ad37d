#pragma once
// The client side of one fuzzed session over a socketpair (run_socket_session), and the
// live server it talks to (ServerWorld). run_socket_session: hands the server end to
// `adopt`, sends `data` while reading whatever comes back, half-closes, then reads until
// the server closes. A server that stops answering for 5 s traps (it wedged).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>

#include "bdev/registry.h"

template <class Adopt>
void run_socket_session(const uint8_t* data, size_t size, Adopt&& adopt) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
  adopt(sv[1]);
  size_t off = 0;
  static uint8_t sink[1 << 20];
  while (off < size) {
    pollfd p[1] = {{sv[0], POLLOUT | POLLIN, 0}};
    if (poll(p, 1, 2000) <= 0) break;
    if (p[0].revents & POLLIN) {
      if (read(sv[0], sink, sizeof(sink)) <= 0) break;
    }
    if (p[0].revents & POLLOUT) {
      ssize_t n = send(sv[0], data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    if (p[0].revents & (POLLHUP | POLLERR)) break;
  }
  shutdown(sv[0], SHUT_WR);
  for (;;) {
    pollfd p{sv[0], POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) __builtin_trap();
    if (read(sv[0], sink, sizeof(sink)) <= 0) break;
  }
  close(sv[0]);
}

// The live server a socket-session fuzz target talks to: one unpinned reactor, a bdev
// registry and the server `make` builds on them (with its bdevs), created on first use
// and stopped at exit before static destructors run (spdlog's among them: a connection
// closing at exit would otherwise log into a freed registry). `Server` needs stop() and
// adopt(fd, reactor_index).
template <class Server>
struct ServerWorld {
  using Make = std::function<std::unique_ptr<Server>(castor::reactor::ReactorGroup&, castor::bdev::BdevRegistry&)>;
  castor::reactor::ReactorGroup group{{0}, [] {
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

 private:
  static ServerWorld*& instance() {
    static ServerWorld* p = nullptr;
    return p;
  }
};
