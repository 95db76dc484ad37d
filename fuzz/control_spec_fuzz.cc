// Fuzz target for the control plane's spec documents (the JSON castor-control keeps in its
// store: bytes from a file or from etcd that another version, a bug or an operator may
// have written) and for the child-URI parser that maps nexus health records to replicas.
// Invariants: nothing crashes; a rejected document is an InvalidArgument with a message;
// an accepted one serializes to a document that parses back to the same serialization.
#include <cstddef>
#include <cstdint>
#include <string>

#include "control/model.h"

namespace {

template <class Parse>
void check(const std::string& text, Parse parse) {
  auto doc = parse(text);
  if (!doc) {
    if (doc.status().code() != castor::Errc::kInvalidArgument || doc.status().message().empty()) {
      __builtin_trap();
    }
    return;
  }
  const std::string once = castor::control::to_json(*doc);
  auto again = parse(once);
  if (!again || castor::control::to_json(*again) != once) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace castor::control;
  const std::string s(reinterpret_cast<const char*>(data), size);
  check(s, [](const std::string& t) { return volume_from_json(t); });
  check(s, [](const std::string& t) { return pool_from_json(t); });
  check(s, [](const std::string& t) { return node_from_json(t); });
  if (auto id = replica_of_child_uri(s); id && id->size() > s.size()) __builtin_trap();
  return 0;
}
