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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& w = ServerWorld<castor::iscsi::IscsiTarget>::get([](castor::reactor::ReactorGroup& group, castor::bdev::BdevRegistry& reg) {
    (void)reg.create("malloc:///m0?size_mb=4&blk_size=512");
    (void)reg.create("malloc:///m1?size_mb=1&blk_size=4096");
    auto t = std::make_unique<castor::iscsi::IscsiTarget>(group, reg);
    castor::iscsi::NodeConfig n;
    n.name = "iqn.2026-11.io.castor:fuzz";
    n.luns.push_back(castor::scsi::LunOptions{0, "m0", false, "Castor volume"});
    (void)t->add_node(n);
    castor::iscsi::NodeConfig c;
    c.name = "iqn.2026-11.io.castor:chap";
    c.luns.push_back(castor::scsi::LunOptions{0, "m1", true, "Castor volume"});
    c.access.chap = {"user", "secret-secret-1"};
    c.access.mutual_chap = {"target", "secret-secret-2"};
    (void)t->add_node(c);
    return t;
  });
  w.session(data, size);
  return 0;
}
