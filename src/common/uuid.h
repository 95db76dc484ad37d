#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace castor {

struct Uuid {
  std::array<uint8_t, 16> bytes{};

  static Uuid random();  // RFC 4122 version 4
  // Name-based (version 5 layout, FNV-derived hash): stable for a given name.
  static Uuid from_name(const std::string& name);
  static std::optional<Uuid> parse(const std::string& s);
  std::string to_string() const;
  bool is_nil() const;
  bool operator==(const Uuid&) const = default;
};

}  // namespace castor
