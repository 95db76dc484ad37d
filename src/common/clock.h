#pragma once
#include <cstdint>
#include <ctime>

namespace castor {

// Monotonic nanoseconds (vDSO clock_gettime: no system call on a TSC clocksource).
inline uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace castor
