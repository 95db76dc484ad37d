#include <cstring>
#include <string>
#include <vector>

#include "nvmf/codec/pdu.h"

using namespace castor::nvmf;

namespace {
void append(std::string& s, const void* p, size_t n) { s.append(static_cast<const char*>(p), n); }

void capsule(std::string& s, Sqe sqe, const std::string& data) {
  uint8_t h[80];
  if (!data.empty()) {
    sqe.sgl1.type = kSglDataBlockOffset;
    sqe.sgl1.length = static_cast<uint32_t>(data.size());
  } else {
    sqe.sgl1.type = kSglTransportDataBlock;
  }
  size_t n = build_capsule_cmd(h, sqe, static_cast<uint32_t>(data.size()), false, false);
  append(s, h, n);
  s += data;
}

std::string session(bool io_cmds) {
  std::string s;
  uint8_t b[128];
  build_icreq(b, false, false, 0);
  append(s, b, 128);
  ConnectCmd c{};
  c.opcode = admin_op::kFabrics;
  c.fctype = fctype::kConnect;
  c.sqsize = 31;
  ConnectData d{};
  d.cntlid = 0xffff;
  std::strcpy(d.subnqn, "nqn.2026-11.io.castor:fuzz");
  std::strcpy(d.hostnqn, "nqn.2014-08.org.nvmexpress:uuid:fuzz");
  Sqe sqe;
  std::memcpy(&sqe, &c, sizeof(sqe));
  sqe.cid = 1;
  capsule(s, sqe, std::string(reinterpret_cast<char*>(&d), sizeof(d)));
  PropertyCmd p{};
  p.opcode = admin_op::kFabrics;
  p.fctype = fctype::kPropertySet;
  p.ofst = prop::kCc;
  p.value = 1 | (6u << 16) | (4u << 20);
  std::memcpy(&sqe, &p, sizeof(sqe));
  sqe.cid = 2;
  capsule(s, sqe, "");
  Sqe id{};
  id.opcode = admin_op::kIdentify;
  id.cid = 3;
  id.cdw10 = cns::kController;
  id.sgl1.length = 4096;
  capsule(s, id, "");
  Sqe lp{};
  lp.opcode = admin_op::kGetLogPage;
  lp.cid = 4;
  lp.cdw10 = log_id::kCommandEffects | (1023u << 16);
  lp.sgl1.length = 4096;
  capsule(s, lp, "");
  if (io_cmds) {
    // I/O opcodes on the admin queue and a keep-alive.
    Sqe w{};
    w.opcode = io_op::kWrite;
    w.cid = 5;
    w.nsid = 1;
    capsule(s, w, std::string(512, 'w'));
    Sqe ka{};
    ka.opcode = admin_op::kKeepAlive;
    ka.cid = 6;
    capsule(s, ka, "");
  }
  return s;
}
}  // namespace

extern const std::vector<std::string> kFuzzSeeds = {session(false), session(true)};
