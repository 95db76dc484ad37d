#include "common/uuid.h"

#include <random>

#include <fmt/format.h>

namespace castor {

Uuid Uuid::random() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  Uuid u;
  for (int i = 0; i < 16; i += 8) {
    uint64_t v = rng();
    for (int j = 0; j < 8; ++j) u.bytes[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  u.bytes[6] = (u.bytes[6] & 0x0f) | 0x40;
  u.bytes[8] = (u.bytes[8] & 0x3f) | 0x80;
  return u;
}

Uuid Uuid::from_name(const std::string& name) {
  // Two independent 64-bit FNV-1a hashes give 128 bits; not cryptographic, only stable.
  uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
  for (unsigned char c : name) {
    h1 = (h1 ^ c) * 0x100000001b3ull;
    h2 = (h2 ^ (c + 0x5bu)) * 0x100000001b3ull;
  }
  Uuid u;
  for (int j = 0; j < 8; ++j) {
    u.bytes[j] = static_cast<uint8_t>(h1 >> (8 * j));
    u.bytes[8 + j] = static_cast<uint8_t>(h2 >> (8 * j));
  }
  u.bytes[6] = (u.bytes[6] & 0x0f) | 0x50;
  u.bytes[8] = (u.bytes[8] & 0x3f) | 0x80;
  return u;
}

std::optional<Uuid> Uuid::parse(const std::string& s) {
  if (s.size() != 36) return std::nullopt;
  Uuid u;
  int bi = 0;
  for (size_t i = 0; i < s.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    auto hv = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hv(s[i]), lo = hv(s[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    u.bytes[bi++] = static_cast<uint8_t>(hi * 16 + lo);
    i += 2;
  }
  return u;
}

std::string Uuid::to_string() const {
  const auto& b = bytes;
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:"
      "02x}{:02x}",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
      b[14], b[15]);
}

bool Uuid::is_nil() const {
  for (auto v : bytes)
    if (v) return false;
  return true;
}

}  // namespace castor
