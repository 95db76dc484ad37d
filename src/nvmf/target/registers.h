#pragma once
// The controller registers an NVMe-oF controller exposes as properties (CAP, VS, CC,
// CSTS) and the enable/shutdown state machine the Linux host drives through Property
// Set/Get. Pure logic: no I/O, unit-tested on its own.

#include <cstdint>
#include <optional>

namespace castor::nvmf {

struct ControllerLimits {
  uint16_t mqes = 127;      // max queue entries, 0's based (128 entries)
  uint8_t ready_timeout_500ms = 30;  // CAP.TO: 15 s
};

class ControllerRegisters {
 public:
  explicit ControllerRegisters(const ControllerLimits& lim) : lim_(lim) {}

  uint64_t cap() const;
  static constexpr uint32_t vs() { return 0x00010400; }  // NVMe 1.4
  uint32_t cc() const { return cc_; }
  uint32_t csts() const { return csts_; }

  // Property Get: value of the property at `offset` with `size` 4 or 8 bytes, or
  // nullopt for an unknown offset or a size that does not fit it (Invalid Field).
  std::optional<uint64_t> get(uint32_t offset, uint32_t size) const;
  // Property Set. Returns false for a read-only or unknown property or invalid CC
  // values (IOSQES/IOCQES other than 6/4 when enabling), which fail with Invalid Field.
  bool set(uint32_t offset, uint32_t size, uint64_t value);

  bool enabled() const { return csts_ & 1; }
  // True once the host asked for a shutdown (CC.SHN) and it completed.
  bool shut_down() const { return ((csts_ >> 2) & 3) == 2; }
  // Controller fatal status (e.g. after a keep-alive timeout).
  void set_fatal() { csts_ |= 2; }

 private:
  ControllerLimits lim_;
  uint32_t cc_ = 0;
  uint32_t csts_ = 0;
};

}  // namespace castor::nvmf
