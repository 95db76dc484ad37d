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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& w = ServerWorld<castor::nbd::NbdServer>::get([](castor::reactor::ReactorGroup& group, castor::bdev::BdevRegistry& reg) {
    (void)reg.create("malloc:///m0?size_mb=4&blk_size=512");
    auto s = std::make_unique<castor::nbd::NbdServer>(group, reg);
    // Built whole (assigning short literals field by field trips GCC 12's -O3
    // -Wmaybe-uninitialized false positive).
    const castor::nbd::ExportInfo e{std::string("e0"), std::string("m0"), false, std::string(), 0};
    (void)s->add_export(e);
    return s;
  });
  w.session(data, size);
  return 0;
}
