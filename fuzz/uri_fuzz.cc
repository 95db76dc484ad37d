// Fuzz target for the URI parser (bytes from gRPC requests and config files).
// Invariants: parse never crashes; a parsed URI's accessors never crash; every error
// is an InvalidArgument with a message.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/uri.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  auto u = castor::Uri::parse(s);
  if (!u) {
    if (u.status().code() != castor::Errc::kInvalidArgument || u.status().message().empty()) {
      __builtin_trap();
    }
    return 0;
  }
  for (const auto& [k, v] : u->query) {
    (void)u->get_u64(k, 0);
    (void)u->get_double(k, 0);
    (void)u->get_bool(k, false);
  }
  (void)u->check_keys({"size_mb", "blk_size"});
  (void)u->name_from_path();
  return 0;
}
