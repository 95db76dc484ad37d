#pragma once
// Strict reads of numeric fields from JSON documents Castor stores (nexus health records,
// control-plane specs): bytes from a file, etcd or the network that a bug, another
// version or an operator may have written.
//
// nlohmann::json converts a floating-point number (which is what an integer too large for
// 64 bits parses as) to an integer type with undefined behaviour, and silently accepts a
// negative number for an unsigned field. uint_field() accepts only a JSON unsigned
// integer that fits T, and throws std::invalid_argument naming the field otherwise;
// callers turn that into InvalidArgument, as they do nlohmann's own type errors.

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace castor {

// Field `key` of object `j` as T; `dflt` when absent (none: the field is required).
template <class T>
T uint_field(const nlohmann::json& j, const char* key, std::optional<T> dflt = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (dflt) return *dflt;
    throw std::invalid_argument(fmt::format("field '{}' is missing", key));
  }
  if (!it->is_number_unsigned()) {
    throw std::invalid_argument(fmt::format("field '{}' is not a non-negative integer", key));
  }
  const uint64_t v = it->template get<uint64_t>();
  if (v > std::numeric_limits<T>::max()) {
    throw std::invalid_argument(fmt::format("field '{}' = {} is out of range", key, v));
  }
  return static_cast<T>(v);
}

}  // namespace castor
