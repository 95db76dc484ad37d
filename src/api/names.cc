#include "api/names.h"

#include <array>

namespace castor::api {
namespace {

constexpr std::array<const char*, bdev::kNumIoTypes> kOpNames = {"read",  "write",        "flush",
                                                                 "unmap", "write_zeroes", "reset"};
constexpr std::array<const char*, 4> kModeNames = {"error", "delay", "hang", "drop"};
constexpr std::array<const char*, bdev::kNumIoStatuses> kStatusNames = {
    "ok", "io_error", "no_space", "aborted", "timed_out", "invalid", "path_unavailable", "reservation_conflict"};

static_assert(static_cast<int>(bdev::IoType::kWriteZeroes) == 4 &&
              static_cast<int>(bdev::IoType::kReset) == 5);
static_assert(static_cast<int>(bdev::FaultMode::kDropWrite) == 3);
static_assert(static_cast<int>(bdev::IoStatus::kInvalid) == 5 &&
              static_cast<int>(bdev::IoStatus::kReservationConflict) == 7);

}  // namespace

const char* op_name(bdev::IoType t) {
  auto i = static_cast<size_t>(t);
  return i < kOpNames.size() ? kOpNames[i] : "unknown";
}

Result<bdev::IoType> parse_op(std::string_view s) {
  for (size_t i = 0; i < kOpNames.size(); ++i) {
    if (s == kOpNames[i]) return static_cast<bdev::IoType>(i);
  }
  return make_error(Errc::kInvalidArgument,
                    "unknown operation '{}' (expected read, write, flush, unmap, "
                    "write_zeroes, reset or all)",
                    s);
}

Result<uint32_t> parse_op_mask(const std::vector<std::string>& names, uint32_t def) {
  if (names.empty()) return def;
  uint32_t mask = 0;
  for (const auto& n : names) {
    if (n == "all") {
      mask |= kAllOpsMask;
      continue;
    }
    auto t = parse_op(n);
    if (!t) return t.status();
    mask |= bdev::io_type_bit(*t);
  }
  return mask;
}

std::vector<std::string> op_names(uint32_t mask) {
  std::vector<std::string> out;
  for (int i = 0; i < bdev::kNumIoTypes; ++i) {
    if (mask & (1u << i)) out.emplace_back(kOpNames[static_cast<size_t>(i)]);
  }
  return out;
}

std::string join_names(const std::vector<std::string>& names, std::string_view sep) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += sep;
    out += n;
  }
  return out;
}

const char* fault_mode_string(bdev::FaultMode m) {
  auto i = static_cast<size_t>(m);
  return i < kModeNames.size() ? kModeNames[i] : "unknown";
}

Result<bdev::FaultMode> parse_fault_mode(std::string_view s) {
  if (s.empty()) return bdev::FaultMode::kError;
  for (size_t i = 0; i < kModeNames.size(); ++i) {
    if (s == kModeNames[i]) return static_cast<bdev::FaultMode>(i);
  }
  return make_error(Errc::kInvalidArgument,
                    "unknown fault mode '{}' (expected error, delay, hang or drop)", s);
}

const char* io_status_string(bdev::IoStatus s) {
  auto i = static_cast<size_t>(s);
  return i < kStatusNames.size() ? kStatusNames[i] : "unknown";
}

Result<bdev::IoStatus> parse_error_status(std::string_view s) {
  if (s.empty()) return bdev::IoStatus::kIoError;
  for (size_t i = 1; i < kStatusNames.size(); ++i) {
    if (s == kStatusNames[i]) return static_cast<bdev::IoStatus>(i);
  }
  return make_error(Errc::kInvalidArgument,
                    "unknown error status '{}' (expected io_error, no_space, aborted, "
                    "timed_out, invalid, path_unavailable or reservation_conflict)",
                    s);
}

}  // namespace castor::api
