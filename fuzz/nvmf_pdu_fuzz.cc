// Fuzz target for NVMe/TCP PDU framing as both the target and the host receive it:
// the first byte selects direction and negotiated digests; the rest is a byte stream
// parsed PDU by PDU the way a connection would.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "nvmf/codec/pdu.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace castor::nvmf;
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const Direction dir = (mode & 1) ? Direction::kControllerToHost : Direction::kHostToController;
  PduLimits lim;
  lim.ic_done = mode & 2;
  lim.hdgst = mode & 4;
  lim.ddgst = mode & 8;
  lim.max_data = 1u << ((mode >> 4) + 4);
  size_t pos = 1;
  while (size - pos >= sizeof(CommonHeader)) {
    CommonHeader ch;
    std::memcpy(&ch, data + pos, sizeof(ch));
    PduFrame f;
    if (auto e = parse_header(ch, dir, lim, &f)) {
      uint8_t out[24 + 128];
      (void)build_term_req(out, dir, *e, {data + pos, std::min<size_t>(size - pos, 128)});
      return 0;
    }
    if (size - pos < f.plen) return 0;
    std::span<const uint8_t> pdu(data + pos, f.plen);
    if (check_header_digest(f, pdu.subspan(0, f.header_bytes))) return 0;
    if (f.data_len) {
      // Framing guarantees the data and its digest lie inside plen.
      if (f.data_offset + f.data_len + (f.has_ddgst ? 4 : 0) > f.plen) __builtin_trap();
      uint32_t dg = 0;
      if (f.has_ddgst) std::memcpy(&dg, data + pos + f.data_offset + f.data_len, 4);
      (void)check_data_digest(f, pdu.subspan(f.data_offset, f.data_len), dg);
    }
    if (f.type == PduType::kICReq || f.type == PduType::kICResp) lim.ic_done = true;
    pos += f.plen;
  }
  return 0;
}
