#include <cstring>
#include <string>
#include <vector>

#include "nvmf/codec/pdu.h"

using namespace castor::nvmf;

extern const std::vector<std::string> kFuzzSeeds = [] {
  std::vector<std::string> out;
  uint8_t b[256];
  // Host to controller: ICReq then a capsule with 64 bytes in-capsule data.
  std::string s(1, '\0');
  size_t n = build_icreq(b, false, false, 0);
  s.append(reinterpret_cast<char*>(b), n);
  Sqe sqe{};
  sqe.opcode = io_op::kWrite;
  n = build_capsule_cmd(b, sqe, 64, false, false);
  s.append(reinterpret_cast<char*>(b), n);
  s.append(64, 'x');
  out.push_back(s);
  // Controller to host with header digests: capsule response, R2T, C2H data.
  std::string c(1, static_cast<char>(1 | 2 | 4));
  Cqe cqe{};
  n = build_capsule_resp(b, cqe, true);
  c.append(reinterpret_cast<char*>(b), n);
  n = build_r2t(b, 1, 2, 0, 4096, true);
  c.append(reinterpret_cast<char*>(b), n);
  n = build_data_header(b, PduType::kC2HData, 1, 0, 0, 16, true, false, true, false);
  c.append(reinterpret_cast<char*>(b), n);
  c.append(16, 'd');
  out.push_back(c);
  return out;
}();
