#include "nvmf/target/registers.h"

#include "nvmf/codec/spec.h"

namespace castor::nvmf {

uint64_t ControllerRegisters::cap() const {
  uint64_t c = 0;
  c |= lim_.mqes;                                   // MQES
  c |= uint64_t{1} << 16;                           // CQR: contiguous queues required
  c |= uint64_t{lim_.ready_timeout_500ms} << 24;    // TO
  c |= uint64_t{1} << 37;                           // CSS: NVM command set
  // MPSMIN = MPSMAX = 0: 4 KiB pages. DSTRD 0.
  return c;
}

std::optional<uint64_t> ControllerRegisters::get(uint32_t offset, uint32_t size) const {
  if (size != 4 && size != 8) return std::nullopt;
  switch (offset) {
    case prop::kCap: return size == 8 ? std::optional<uint64_t>(cap()) : std::optional<uint64_t>(cap() & 0xffffffff);
    case prop::kCap + 4: return size == 4 ? std::optional<uint64_t>(cap() >> 32) : std::nullopt;
    case prop::kVs: return size == 4 ? std::optional<uint64_t>(vs()) : std::nullopt;
    case prop::kCc: return size == 4 ? std::optional<uint64_t>(cc_) : std::nullopt;
    case prop::kCsts: return size == 4 ? std::optional<uint64_t>(csts_) : std::nullopt;
    case prop::kNssr: return size == 4 ? std::optional<uint64_t>(0) : std::nullopt;
    default: return std::nullopt;
  }
}

bool ControllerRegisters::set(uint32_t offset, uint32_t size, uint64_t value) {
  if (offset == prop::kNssr && size == 4) return true;  // subsystem reset: accepted, nothing to do
  if (offset != prop::kCc || size != 4) return false;
  const uint32_t v = static_cast<uint32_t>(value);
  const bool en = v & 1;
  const uint32_t shn = (v >> 14) & 3;
  const uint32_t iosqes = (v >> 16) & 0xf;
  const uint32_t iocqes = (v >> 20) & 0xf;
  const uint32_t css = (v >> 4) & 7;
  const uint32_t mps = (v >> 7) & 0xf;
  if (en && !(cc_ & 1)) {
    // Enabling: the queue entry sizes must be the NVMe ones and the page size 4 KiB.
    if (iosqes != 6 || iocqes != 4 || mps != 0 || (css != 0 && css != 6)) return false;
    csts_ |= 1;  // RDY
  } else if (!en && (cc_ & 1)) {
    csts_ &= ~uint32_t{1};
  }
  if (shn) {
    // Normal or abrupt shutdown: nothing is cached, so it completes at once.
    csts_ = (csts_ & ~uint32_t{0xc}) | (2u << 2);
  } else if (((cc_ >> 14) & 3) && !shn) {
    csts_ &= ~uint32_t{0xc};
  }
  cc_ = v;
  return true;
}

}  // namespace castor::nvmf
