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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& w = ServerWorld<castor::nvmf::NvmfTarget>::get([](castor::reactor::ReactorGroup& group, castor::bdev::BdevRegistry& reg) {
    (void)reg.create("malloc:///m0?size_mb=4&blk_size=512");
    castor::nvmf::TargetOptions o;
    o.default_kato_ms = 0;
    auto t = std::make_unique<castor::nvmf::NvmfTarget>(group, reg, o);
    (void)t->add_subsystem("nqn.2026-11.io.castor:fuzz", {});
    (void)t->add_namespace("nqn.2026-11.io.castor:fuzz", "m0");
    return t;
  });
  w.session(data, size);
  return 0;
}
