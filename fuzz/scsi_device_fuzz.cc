// Fuzz target for the SCSI device layer: each input is a short sequence of commands
// (CDB + EDTL + Data-Out) run against a fresh scsi::Device over RAM bdevs on a live
// reactor, from two nexuses, with LU resets and nexus loss mixed in. The device must
// never crash, overrun a buffer, leak, complete a command twice or inside execute(), or
// claim more Data-In than its buffer holds.
//
// Record layout: flags(1) cdb(16) edtl(4, big-endian) data_len(2, big-endian) data.
//   flags bit 0: second nexus; bit 1: LUN 1 (read-only, 4 KiB blocks); bit 2: LUN 7
//   (absent); bit 3: LOGICAL UNIT RESET first; bit 4: detach + re-attach the nexus first.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>

#include "bdev/registry.h"
#include "scsi/device.h"

namespace {
using namespace castor;

struct World {
  reactor::ReactorGroup group{{0}, [] {
                                reactor::ReactorOptions o;
                                o.pin = false;
                                return o;
                              }()};
  std::unique_ptr<bdev::BdevRegistry> reg;
  scsi::ItNexus n[2];
  World() {
    group.start();
    reg = std::make_unique<bdev::BdevRegistry>(group);
    (void)reg->create("malloc:///m0?size_mb=4&blk_size=512");
    (void)reg->create("malloc:///m1?size_mb=4&blk_size=4096");
    for (int i = 0; i < 2; ++i) {
      n[i].id = i + 1;
      n[i].initiator_name = "iqn.2026-01.fuzz:i" + std::to_string(i);
      n[i].initiator_port = n[i].initiator_name + ",i,0x00000000000" + std::to_string(i);
      n[i].target_port = "iqn.2026-01.fuzz:t,t,0x0001";
      n[i].relative_port = static_cast<uint16_t>(i + 1);
    }
    // Stop the reactor before static destructors run (spdlog's among them).
    std::atexit([] {
      World& w = *instance;
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

struct Waiter {
  std::promise<void> p;
  std::atomic<bool> in_execute{false};
  int calls = 0;
};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "scsi_device_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

constexpr size_t kHeader = 1 + 16 + 4 + 2;
constexpr int kMaxCommands = 8;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  scsi::DeviceInfo info;
  info.target_name = "iqn.2026-01.fuzz:t";
  scsi::Device dev(*w.reg, info);
  (void)dev.add_lun({0, "m0", false, "fuzz"});
  (void)dev.add_lun({1, "m1", true, "fuzz ro"});
  dev.attach(w.n[0]);
  dev.attach(w.n[1]);
  scsi::Command c;
  reactor::Reactor& r = w.group.at(0);
  size_t off = 0;
  for (int i = 0; i < kMaxCommands && off + kHeader <= size; ++i) {
    const uint8_t flags = data[off];
    const uint8_t* cdb = data + off + 1;
    const uint32_t edtl = uint32_t{data[off + 17]} << 24 | uint32_t{data[off + 18]} << 16 |
                          uint32_t{data[off + 19]} << 8 | data[off + 20];
    size_t dlen = size_t{data[off + 21]} << 8 | data[off + 22];
    off += kHeader;
    dlen = std::min(dlen, size - off);
    const uint8_t* out = data + off;
    off += dlen;

    const scsi::ItNexus& n = w.n[flags & 1];
    if (flags & 0x08) dev.lun_reset(flags & 2 ? 1 : 0, n);
    if (flags & 0x10) {
      dev.detach(n);
      dev.attach(n);
    }
    std::memcpy(c.cdb, cdb, 16);
    c.lun = (flags & 4) ? 7 : (flags & 2) ? 1 : 0;
    c.nexus = &n;
    c.edtl = edtl;
    c.data_out_len = static_cast<uint32_t>(std::min<size_t>(dlen, edtl));
    if (c.buf.size() < dlen) c.buf = bdev::DmaBuffer(dlen);
    if (dlen) std::memcpy(c.buf.data(), out, dlen);
    Waiter wt;
    c.done = [](scsi::Command&, void* arg) {
      auto* x = static_cast<Waiter*>(arg);
      check(!x->in_execute.load(), "done inside execute()");
      check(++x->calls == 1, "done called twice");
      x->p.set_value();
    };
    c.done_arg = &wt;
    auto f = wt.p.get_future();
    r.send([&] {
      wt.in_execute = true;
      dev.execute(c, r);
      wt.in_execute = false;
    });
    f.get();
    check(c.sense_len <= sizeof(c.sense), "sense length");
    check(c.status != scsi::Status::kCheckCondition || c.sense_len >= 8, "CHECK CONDITION without sense");
    if (c.dir == scsi::DataDir::kIn) {
      check(std::min(c.xfer_len, c.edtl) <= c.buf.size(), "Data-In beyond the buffer");
      // Touch every byte the transport would send.
      volatile uint8_t sink = 0;
      const uint32_t nin = std::min(c.xfer_len, c.edtl);
      for (uint32_t k = 0; k < nin; ++k) sink = sink + c.buf.data()[k];
    }
  }
  // Let the device's LUs go only after the reactor finished with the last command.
  dev.detach(w.n[0]);
  dev.detach(w.n[1]);
  return 0;
}
