// Fuzz target for the NVMe/TCP target's PDU handling and command dispatch: each input is
// a byte stream sent by a "host" over a socketpair to a live target (reactors, a RAM
// namespace, a subsystem and the discovery subsystem), read until the target closes
// or the stream ends. The target must never crash, hang or leak.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <poll.h>

#include "bdev/registry.h"
#include "socket_session.h"
#include "nvmf/target/target.h"

namespace {
struct World {
  castor::reactor::ReactorGroup group{{0}, [] {
                                        castor::reactor::ReactorOptions o;
                                        o.pin = false;
                                        return o;
                                      }()};
  std::unique_ptr<castor::bdev::BdevRegistry> reg;
  std::unique_ptr<castor::nvmf::NvmfTarget> tgt;
  World() {
    group.start();
    reg = std::make_unique<castor::bdev::BdevRegistry>(group);
    (void)reg->create("malloc:///m0?size_mb=4&blk_size=512");
    castor::nvmf::TargetOptions o;
    o.default_kato_ms = 0;
    tgt = std::make_unique<castor::nvmf::NvmfTarget>(group, *reg, o);
    (void)tgt->add_subsystem("nqn.2026-11.io.castor:fuzz", {});
    (void)tgt->add_namespace("nqn.2026-11.io.castor:fuzz", "m0");
    // Stop the target and its reactor before static destructors run (spdlog's among
    // them): a connection closing at exit would otherwise log into a freed registry.
    std::atexit([] {
      World& w = *instance;
      w.tgt->stop();
      w.tgt.reset();
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
  run_socket_session(data, size, [&](int fd) { w.tgt->adopt(fd, 0); });
  return 0;
}
