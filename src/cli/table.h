#pragma once
// Plain-text helpers for castorctl: aligned tables, human-readable sizes and the
// parsing of sizes people type.

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace castor::cli {

// A table printed with left-aligned columns separated by two spaces; the header row
// is printed even when there are no rows.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  // REQUIRES: `row` has as many cells as the header.
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  std::string to_string() const;
  void print(std::FILE* out = stdout) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Key/value lines with the keys padded to one width ("version   0.1.0").
std::string key_values(const std::vector<std::pair<std::string, std::string>>& kv);

// 512 -> "512 B", 65536 -> "64.0 KiB", 64 << 20 -> "64.0 MiB" (binary units, one decimal).
std::string human_bytes(uint64_t bytes);
// Parses a byte count: digits with an optional binary unit, K/KiB, M/MiB, G/GiB, T/TiB
// (case-insensitive, also written KB, MB, ...; a trailing B alone means bytes), e.g.
// "65536", "4MiB", "1G", "512 B". nullopt on anything else or on overflow.
std::optional<uint64_t> parse_size(std::string_view s);

// Fixed-point with `decimals` digits: fixed(1.234, 1) -> "1.2".
std::string fixed(double v, int decimals);

}  // namespace castor::cli
