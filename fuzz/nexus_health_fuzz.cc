// Fuzz target for the nexus health document (`castor-nexus-health` JSON): read from the
// state directory's files and from castor-control's store, so bytes a crash, a bug,
// another version or an operator may have written. Invariants: nothing crashes; a
// rejected document is InvalidArgument or Unsupported (a version) with a message; an
// accepted one serializes to a document that parses back to the same serialization.
#include <cstddef>
#include <cstdint>
#include <string>

#include "nexus/health_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace castor;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto h = nexus::health_from_json(text);
  if (!h) {
    const Errc c = h.status().code();
    if ((c != Errc::kInvalidArgument && c != Errc::kUnsupported) || h.status().message().empty()) {
      __builtin_trap();
    }
    return 0;
  }
  const std::string once = nexus::health_to_json("n", *h);
  auto again = nexus::health_from_json(once);
  if (!again || nexus::health_to_json("n", *again) != once) __builtin_trap();
  return 0;
}
