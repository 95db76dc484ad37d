// Fuzz target for the pool's on-disk decoders (labels, checkpoints, log records) and
// for replaying decoded ops onto a state: bytes from disk must never crash the engine.
// The first byte picks the decoder; the rest is the block.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/crc32c.h"

#include "pool/format.h"
#include "pool/layout.h"

namespace {
const castor::Uuid kPool = castor::Uuid::from_name("fuzz-pool");
}

// Checksums would stop almost every mutation at the first check: recompute them (over
// whatever lengths the input claims, clamped) so the fuzzer reaches the field checks.
template <class Raw>
void fix_header(std::vector<uint8_t>& v, size_t payload_len_off, size_t payload_crc_off) {
  using castor::crc32c;
  if (v.size() < sizeof(Raw)) return;
  uint64_t plen = 0;
  std::memcpy(&plen, v.data() + payload_len_off, 8);
  uint64_t avail = v.size() - sizeof(Raw);
  uint32_t pcrc = crc32c(v.data() + sizeof(Raw), std::min<uint64_t>(plen, avail));
  std::memcpy(v.data() + payload_crc_off, &pcrc, 4);
  uint32_t hcrc = crc32c(v.data(), offsetof(Raw, header_crc));
  std::memcpy(v.data() + offsetof(Raw, header_crc), &hcrc, 4);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace castor::pool;
  if (size < 2) return 0;
  std::vector<uint8_t> v(data + 2, data + size);
  if (data[1] & 1) {
    switch (data[0] % 3) {
      case 0:
        if (v.size() >= sizeof(LabelRaw)) {
          uint32_t c = castor::crc32c(v.data(), offsetof(LabelRaw, crc));
          std::memcpy(v.data() + offsetof(LabelRaw, crc), &c, 4);
        }
        break;
      case 1:
        fix_header<CheckpointHeaderRaw>(v, offsetof(CheckpointHeaderRaw, payload_len),
                                        offsetof(CheckpointHeaderRaw, payload_crc));
        break;
      case 2:
        fix_header<LogRecordHeaderRaw>(v, offsetof(LogRecordHeaderRaw, payload_len),
                                       offsetof(LogRecordHeaderRaw, payload_crc));
        break;
    }
  }
  std::span<const uint8_t> b(v);
  switch (data[0] % 3) {
    case 0: {
      auto l = decode_label(b);
      if (l) {
        Layout y = Layout::from(*l);
        if (y.total) (void)y.locate(y.total - 1);
      }
      break;
    }
    case 1: {
      auto c = decode_checkpoint(kPool, b);
      if (c) {
        Label l;
        l.cluster_size = 1 << 20;
        l.data_offset = 1 << 20;
        l.members = {{castor::Uuid{}, 64ull << 20}};
        uint64_t used = 0;
        (void)validate_state(Layout::from(l), c->state, &used);
      }
      break;
    }
    case 2: {
      auto r = decode_log_record(kPool, b);
      if (r) {
        PoolState s;
        for (const auto& op : r->ops) (void)apply_op(s, op);
      }
      break;
    }
  }
  return 0;
}
