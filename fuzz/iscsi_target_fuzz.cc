// Fuzz target for the iSCSI target: each input is the byte stream an initiator sends
// over a socketpair to a live target (one reactor, a RAM bdev as LUN 0 of
// iqn.2026-11.io.castor:fuzz, and a CHAP-protected node), read until the target closes or
// the stream ends. Login text, PDU framing, digests, CmdSN handling, Data-Out
// reassembly, task management and the SCSI command set all sit behind it. The target
// must never crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "bdev/registry.h"
#include "iscsi/target.h"
#include "socket_session.h"

namespace {
struct World {
  castor::reactor::ReactorGroup group{{0}, [] {
                                        castor::reactor::ReactorOptions o;
                                        o.pin = false;
                                        return o;
                                      }()};
  std::unique_ptr<castor::bdev::BdevRegistry> reg;
  std::unique_ptr<castor::iscsi::IscsiTarget> tgt;
  World() {
    group.start();
    reg = std::make_unique<castor::bdev::BdevRegistry>(group);
    (void)reg->create("malloc:///m0?size_mb=4&blk_size=512");
    (void)reg->create("malloc:///m1?size_mb=1&blk_size=4096");
    tgt = std::make_unique<castor::iscsi::IscsiTarget>(group, *reg);
    castor::iscsi::NodeConfig n;
    n.name = "iqn.2026-11.io.castor:fuzz";
    n.luns.push_back(castor::scsi::LunOptions{0, "m0", false, "Castor volume"});
    (void)tgt->add_node(n);
    castor::iscsi::NodeConfig c;
    c.name = "iqn.2026-11.io.castor:chap";
    c.luns.push_back(castor::scsi::LunOptions{0, "m1", true, "Castor volume"});
    c.access.chap = {"user", "secret-secret-1"};
    c.access.mutual_chap = {"target", "secret-secret-2"};
    (void)tgt->add_node(c);
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
