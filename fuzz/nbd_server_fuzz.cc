// Fuzz target for the NBD server's negotiation and transmission parsing: each input is
// the byte stream a client sends over a socketpair to a live server (a reactor, a RAM
// bdev exported as "e0"), read until the server closes or the stream ends. The server
// must never crash, hang or leak.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "bdev/registry.h"
#include "nbd/server.h"

namespace {
struct World {
  castor::reactor::ReactorGroup group{{0}, [] {
                                        castor::reactor::ReactorOptions o;
                                        o.pin = false;
                                        return o;
                                      }()};
  std::unique_ptr<castor::bdev::BdevRegistry> reg;
  std::unique_ptr<castor::nbd::NbdServer> srv;
  World() {
    group.start();
    reg = std::make_unique<castor::bdev::BdevRegistry>(group);
    (void)reg->create("malloc:///m0?size_mb=4&blk_size=512");
    srv = std::make_unique<castor::nbd::NbdServer>(group, *reg);
    // Built whole (assigning short literals field by field trips GCC 12's -O3
    // -Wmaybe-uninitialized false positive).
    const castor::nbd::ExportInfo e{std::string("e0"), std::string("m0"), false, std::string(), 0};
    (void)srv->add_export(e);
    // Stop the server and its reactor before static destructors run (spdlog's among
    // them): a connection closing at exit would otherwise log into a freed registry.
    std::atexit([] {
      World& w = *instance;
      w.srv->stop();
      w.srv.reset();
      w.reg.reset();
      w.group.stop();
    });
  }
  static World* instance;
};
World* World::instance = nullptr;
World& world() {
  if (!World::instance) World::instance = new World;  // lives until exit
  return *World::instance;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  w.srv->adopt(sv[1], 0);
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
    if (poll(&p, 1, 5000) <= 0) __builtin_trap();  // the server wedged
    if (read(sv[0], sink, sizeof(sink)) <= 0) break;
  }
  close(sv[0]);
  return 0;
}
