#include "common/crc32c.h"

#include <isa-l/crc.h>

namespace castor {
uint32_t crc32c(const void* data, size_t len, uint32_t prev) {
  uint32_t c = ~prev;
  auto* p = static_cast<const unsigned char*>(data);
  // isa-l takes an int length: feed it in chunks.
  while (len) {
    size_t n = len > (1u << 30) ? (1u << 30) : len;
    c = crc32_iscsi(const_cast<unsigned char*>(p), static_cast<int>(n), c);
    p += n;
    len -= n;
  }
  return ~c;
}
}  // namespace castor
