#include "cli/progress.h"

#include <fmt/format.h>

#include <algorithm>

#include "cli/table.h"

namespace castor::cli {

namespace {
constexpr int kBarWidth = 30;
}  // namespace

std::string percent_text(double percent) {
  return fixed(percent, 1) + "%";
}

std::string mib_text(uint64_t bytes) {
  return fixed(static_cast<double>(bytes) / (1024.0 * 1024.0), 1);
}

std::string progress_bar(double percent, int width) {
  int full = static_cast<int>(std::clamp(percent, 0.0, 100.0) / 100.0 * width + 0.5);
  return "[" + std::string(static_cast<size_t>(full), '#') +
         std::string(static_cast<size_t>(width - full), '.') + "]";
}

std::string duration_text(uint64_t s) {
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string progress_text(const Progress& p) {
  std::string text = fmt::format("{:>6}", percent_text(p.percent));
  if (p.done_bytes && p.total_bytes) {
    text += fmt::format("  {}/{} MiB", mib_text(*p.done_bytes), mib_text(*p.total_bytes));
  }
  text += fmt::format("  {} MiB/s", mib_text(p.rate_bytes_s));
  if (!p.eta.empty()) text += "  ETA " + p.eta;
  return text;
}

std::string progress_line(const std::string& name, const Progress& p) {
  return fmt::format("{} {} {}", name, progress_bar(p.percent, kBarWidth), progress_text(p));
}

}  // namespace castor::cli
