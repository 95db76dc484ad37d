// Fuzz target for the ANA log page (0Ch) as Castor's host parses it: the first four
// bytes are the NSID asked for, the rest the page. A parse either names one of the five
// states or fails; it never reads past the bytes given.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "nvmf/codec/ana_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace castor::nvmf;
  if (size < 4) return 0;
  uint32_t nsid;
  std::memcpy(&nsid, data, 4);
  auto st = ana_state_of(std::span<const uint8_t>(data + 4, size - 4), nsid);
  if (st && std::string(ana_state_name(*st)) == "unknown") __builtin_trap();
  if (st) {
    auto back = parse_ana_state(ana_state_name(*st));
    if (!back || *back != *st) __builtin_trap();
  }
  return 0;
}
