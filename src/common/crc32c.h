#pragma once
#include <cstddef>
#include <cstdint>

namespace castor {
// CRC32C (Castagnoli), as used by iSCSI and NVMe/TCP digests; isa-l's SIMD kernel.
// crc32c("123456789") == 0xE3069283. `prev` chains: crc32c(b, n2, crc32c(a, n1)).
uint32_t crc32c(const void* data, size_t len, uint32_t prev = 0);
}  // namespace castor
