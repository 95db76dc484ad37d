#pragma once
// Progress of long operations as text: the bar and numbers `rebuild watch` prints for a
// nexus child, which `volume get` reuses for replicas being rebuilt.

#include <cstdint>
#include <optional>
#include <string>

namespace castor::cli {

struct Progress {
  double percent = 0;                  // 0..100
  std::optional<uint64_t> done_bytes;  // shown as "7.2/16.0 MiB" when both are known
  std::optional<uint64_t> total_bytes;
  uint64_t rate_bytes_s = 0;
  std::string eta;  // "0:03", "-" (unknown); empty: not shown
};

// 45.04 -> "45.0%".
std::string percent_text(double percent);
// Bytes as MiB with one decimal, no unit: 7549747 -> "7.2".
std::string mib_text(uint64_t bytes);
// "[#####.....]" with `width` marks, `percent` clamped to 0..100.
std::string progress_bar(double percent, int width);
// 123 -> "2:03", 3723 -> "1:02:03".
std::string duration_text(uint64_t seconds);
// " 45.0%  7.2/16.0 MiB  120.5 MiB/s  ETA 0:03" (the percentage right-aligned in 6
// columns); the byte counts and the ETA are left out when unknown.
std::string progress_text(const Progress& p);
// What a terminal shows while following one: "NAME [#####.....]  45.0%  ...".
std::string progress_line(const std::string& name, const Progress& p);

}  // namespace castor::cli
