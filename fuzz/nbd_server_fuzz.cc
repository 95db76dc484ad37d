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
#include "socket_session.h"
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
  run_socket_session(data, size, [&](int fd) { w.srv->adopt(fd, 0); });
  return 0;
}
