// Fuzz target for what castor-csi's node plugin parses: its volume records (JSON files in
// --state-dir that a crash, a bug or an operator may have written), the kernel's mount
// table, and target URIs from publish_context (a CO passes them through; what they carry
// ends up on nvme/iscsiadm/nbd-client command lines), and NVMe controllers' sysfs
// addresses. The first byte picks the parser.
// Invariants: nothing crashes; a refused record is InvalidArgument with a message; an
// accepted one serializes to a record that parses back to the same serialization; an
// accepted URI never yields a host or name that starts with '-' or holds a byte outside
// [A-Za-z0-9.:_-].
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

#include "csi/initiator.h"
#include "csi/mounter.h"
#include "csi/node_state.h"

namespace {
bool command_safe(const std::string& s) {
  if (s.empty() || s[0] == '-') return false;
  for (unsigned char c : s) {
    if (!std::isalnum(c) && c != '.' && c != ':' && c != '-' && c != '_') return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace castor;
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto v = csi::staged_from_json(text);
      if (!v) {
        if (v.status().code() != Errc::kInvalidArgument || v.status().message().empty()) __builtin_trap();
        return 0;
      }
      const std::string once = csi::staged_to_json(*v);
      auto again = csi::staged_from_json(once);
      if (!again || csi::staged_to_json(*again) != once) __builtin_trap();
      return 0;
    }
    case 1: {
      for (const auto& e : csi::parse_mountinfo(text)) {
        if (e.fs_type.empty() && e.source.empty() && e.mount_point.empty() && e.options.empty()) {
          __builtin_trap();  // a line with no fields at all must not have parsed
        }
      }
      return 0;
    }
    case 3: {
      csi::NvmeController c;
      csi::parse_nvme_address(text, &c);
      if (c.host.size() > text.size()) __builtin_trap();
      return 0;
    }
    default: {
      auto t = csi::TargetAddress::parse(text);
      if (t && (!command_safe(t->host) || !command_safe(t->name) || t->port == 0)) __builtin_trap();
      return 0;
    }
  }
}
