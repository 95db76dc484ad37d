#pragma once
// URIs name every bdev: scheme://[host[:port]]/path?key=value&...
// Examples: malloc:///m0?size_mb=64, file:///var/lib/d.img?size_mb=1024,
//           nvmf://10.0.0.2:8420/nqn.2026-11.io.castor:replica-<uuid>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/status.h"

namespace castor {

struct Uri {
  std::string scheme;
  std::string host;  // empty for local schemes
  std::optional<uint16_t> port;
  std::string path;  // percent-decoded, starts with '/' when present
  std::map<std::string, std::string> query;  // percent-decoded
  std::string text;                          // the original string

  // Parses `s`. Rejects: missing "://", empty or non [a-z0-9+.-] scheme, bad port,
  // malformed percent escapes, duplicate query keys, empty keys.
  static Result<Uri> parse(const std::string& s);

  // Query accessors. Return the default when absent; an error naming the key when
  // present but not a valid number / boolean.
  Result<uint64_t> get_u64(const std::string& key, uint64_t def) const;
  Result<double> get_double(const std::string& key, double def) const;
  Result<bool> get_bool(const std::string& key, bool def) const;
  std::string get(const std::string& key, const std::string& def = "") const;

  // Fails naming the first key not in `allowed` (catches typos like size_mbb=).
  Status check_keys(std::initializer_list<const char*> allowed) const;

  // Path without the leading '/' (the bdev name for malloc:///m0).
  std::string name_from_path() const;
};

}  // namespace castor
