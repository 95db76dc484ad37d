// Fuzz target for the NVMe/TCP target's I/O queues: in-capsule and R2T/H2CData writes
// (including the in-place receive of large H2CData payloads), reads (C2HData), flush,
// write zeroes, dataset management, reservation commands, bad SGLs, lengths and offsets,
// digests.
//
// An I/O queue needs a controller, so per input the harness opens an admin connection to
// a live target (over a socketpair, like nvmf_target_fuzz), connects it (ICReq + Fabrics
// Connect, cntlid 0xffff), takes the controller ID from the response and enables the
// controller (Property Set CC.EN = 1, as a host does; I/O before it is refused);
// then it opens a second connection and connects it as I/O queue 1 of that controller.
// The fuzz input is what the host sends on the I/O queue after that:
//
//   byte 0     selector: bit 0 header digest, bit 1 data digest (negotiated by the
//              harness's ICReq; the harness's own Connect carries them), bits 2-3 how
//              the rest is sent: 0 = as fast as possible, 1/2/3 = in pieces of at most
//              4096/16384/1000 bytes, each read by the target before the next (PDUs
//              split across reads: large H2CData payloads take the in-place receive),
//              bit 4: end by closing the admin queue (the controller is torn down with
//              the I/O queue open) instead of half-closing the I/O queue
//   byte 1..   the I/O queue's byte stream after its Connect
//
// The I/O queue is read until the target closes it, then the admin queue is closed and
// read until the target closes it, and the harness waits for the reactor to go idle;
// a controller the target still lists then traps (nothing may outlive the input). A
// chunk the target leaves unread while its reactor is idle is not waited for
// (send_stream in socket_session.h). The target must never crash, hang or leak; an I/O
// queue Connect it refuses for its own live controller traps.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <poll.h>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "nvmf/codec/pdu.h"
#include "nvmf/target/target.h"
#include "socket_session.h"

using namespace castor::nvmf;

namespace {
constexpr char kSubnqn[] = "nqn.2026-11.io.castor:fuzz";
constexpr char kHostnqn[] = "nqn.2014-08.org.nvmexpress:uuid:fuzz";

// One whole PDU from the target (common header first); false on EOF or a bad length.
bool read_pdu(int fd, std::vector<uint8_t>& pdu) {
  CommonHeader ch;
  if (!read_exact(fd, reinterpret_cast<uint8_t*>(&ch), sizeof(ch))) return false;
  if (ch.plen < sizeof(ch) || ch.plen > (1u << 20)) return false;
  pdu.resize(ch.plen);
  std::memcpy(pdu.data(), &ch, sizeof(ch));
  return read_exact(fd, pdu.data() + sizeof(ch), ch.plen - sizeof(ch));
}

// ICReq and a Fabrics Connect for queue `qid` of controller `cntlid` (0xffff: a new
// one), with the digests the ICReq negotiates.
std::string connect_pdus(uint16_t qid, uint16_t cntlid, bool hdgst, bool ddgst) {
  std::string s;
  uint8_t b[128];
  build_icreq(b, hdgst, ddgst, 0);
  s.append(reinterpret_cast<const char*>(b), 128);
  ConnectCmd c{};
  c.opcode = admin_op::kFabrics;
  c.cid = 0x4321;
  c.fctype = fctype::kConnect;
  c.qid = qid;
  c.sqsize = 127;  // the target's queue_entries - 1: the most commands it takes at once
  c.sgl1.type = kSglDataBlockOffset;
  c.sgl1.length = sizeof(ConnectData);
  ConnectData d{};
  d.cntlid = cntlid;
  std::strcpy(d.subnqn, kSubnqn);
  std::strcpy(d.hostnqn, kHostnqn);
  d.hostid[0] = 0xf0;  // a host identifier, so that reservation commands get past it
  Sqe sqe;
  std::memcpy(&sqe, &c, sizeof(sqe));
  size_t n = build_capsule_cmd(b, sqe, sizeof(d), hdgst, ddgst);
  s.append(reinterpret_cast<const char*>(b), n);
  s.append(reinterpret_cast<const char*>(&d), sizeof(d));
  if (ddgst) {
    uint32_t dg = digest({reinterpret_cast<const uint8_t*>(&d), sizeof(d)});
    s.append(reinterpret_cast<const char*>(&dg), 4);
  }
  return s;
}

// Sends ICReq + Connect on `fd` and reads the ICResp and the Connect's response. Returns
// the Connect's completion (status 0xffff when the exchange itself failed).
Cqe handshake(int fd, uint16_t qid, uint16_t cntlid, bool hdgst, bool ddgst) {
  Cqe failed{};
  failed.status = 0xffff;
  if (!write_all(fd, connect_pdus(qid, cntlid, hdgst, ddgst))) return failed;
  std::vector<uint8_t> pdu;
  if (!read_pdu(fd, pdu) || pdu[0] != static_cast<uint8_t>(PduType::kICResp)) return failed;
  if (!read_pdu(fd, pdu) || pdu[0] != static_cast<uint8_t>(PduType::kCapsuleResp) ||
      pdu.size() < sizeof(CapsuleRespHeader)) {
    return failed;
  }
  CapsuleRespHeader h;
  std::memcpy(&h, pdu.data(), sizeof(h));
  return h.cqe;
}

// Enables the controller on its admin queue (no digests) like a host does before it
// connects I/O queues: Property Set CC.EN = 1 with the queue entry sizes. Returns the
// completion status (0xffff when the exchange itself failed).
uint16_t enable_controller(int fd) {
  PropertyCmd p{};
  p.opcode = admin_op::kFabrics;
  p.cid = 0x4322;
  p.fctype = fctype::kPropertySet;
  p.ofst = prop::kCc;
  p.value = 1 | (6u << 16) | (4u << 20);  // EN, IOSQES 64 B, IOCQES 16 B
  Sqe sqe;
  std::memcpy(&sqe, &p, sizeof(sqe));
  sqe.sgl1.type = kSglTransportDataBlock;
  uint8_t b[80];
  size_t n = build_capsule_cmd(b, sqe, 0, false, false);
  if (!write_all(fd, std::string(reinterpret_cast<const char*>(b), n))) return 0xffff;
  std::vector<uint8_t> pdu;
  if (!read_pdu(fd, pdu) || pdu[0] != static_cast<uint8_t>(PduType::kCapsuleResp) ||
      pdu.size() < sizeof(CapsuleRespHeader)) {
    return 0xffff;
  }
  CapsuleRespHeader h;
  std::memcpy(&h, pdu.data(), sizeof(h));
  return h.cqe.status;
}

// Half-closes `fd`, reads until the target closes it, closes it.
void finish(int fd) {
  shutdown(fd, SHUT_WR);
  drain_until_closed(fd);
  close(fd);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using castor::bdev::BdevRegistry;
  using castor::reactor::ReactorGroup;
  auto& w = ServerWorld<NvmfTarget>::get([](ReactorGroup& group, BdevRegistry& reg) {
    (void)reg.create("malloc:///m0?size_mb=4&blk_size=512");
    TargetOptions o;
    o.default_kato_ms = 0;  // no keep-alive timer: inputs end when their bytes do
    auto t = std::make_unique<NvmfTarget>(group, reg, o);
    (void)t->add_subsystem(kSubnqn, {});
    (void)t->add_namespace(kSubnqn, "m0");
    return t;
  });
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const bool hdgst = sel & 1, ddgst = sel & 2;
  static constexpr size_t kChunks[4] = {0, 4096, 16384, 1000};
  const size_t chunk = kChunks[(sel >> 2) & 3];
  const bool teardown = sel & 0x10;

  const int admin = w.connect();
  if (admin < 0) return 0;
  const Cqe a = handshake(admin, 0, 0xffff, false, false);
  if (a.status != 0) {
    finish(admin);
    return 0;
  }
  const uint16_t cntlid = static_cast<uint16_t>(a.dw0);
  if (enable_controller(admin) != 0) {
    finish(admin);
    return 0;
  }

  const int io = w.connect();
  if (io < 0) {
    finish(admin);
    return 0;
  }
  const Cqe q = handshake(io, 1, cntlid, hdgst, ddgst);
  if (q.status != 0) {
    // The controller is live (its admin queue is open): refusing its I/O queue is a bug.
    std::fprintf(stderr,
                 "nvmf_io_queue_fuzz: I/O queue Connect to controller %u failed: status 0x%04x\n",
                 unsigned{cntlid}, unsigned{q.status});
    __builtin_trap();
  }
  if (teardown) {
    send_stream(io, data + 1, size - 1, chunk);
    shutdown(admin, SHUT_WR);  // the target tears the controller down, closing the I/O queue
    drain_until_closed(io);
    close(io);
    drain_until_closed(admin);
    close(admin);
  } else {
    stream_session(io, data + 1, size - 1, chunk);
    close(io);
    finish(admin);
  }
  // The controller's teardown runs on the reactor after the sockets close: let it end,
  // so that libFuzzer's malloc/free balance sees this input whole.
  if (w.wait_idle()) {
    // Nothing of the controller may outlive its queues.
    if (const auto left = w.srv->list_controllers(); !left.empty()) {
      std::fprintf(stderr, "nvmf_io_queue_fuzz: controller %u still listed after both its queues closed\n",
                   unsigned{left[0].cntlid});
      __builtin_trap();
    }
  }
  return 0;
}
