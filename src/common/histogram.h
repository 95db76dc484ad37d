#pragma once
// Latency histogram with log-linear buckets (8 sub-buckets per power of two, so a
// percentile is within 12.5 %). One writer (the owning reactor) records with relaxed
// stores; any thread may read a snapshot. No locks, no allocation after construction.

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <vector>

namespace castor {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 3;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kMaxExp = 44;  // values up to 2^44 ns (~4.9 hours)
  static constexpr int kBuckets = (kMaxExp + 1) * kSub;

  // Single-writer record; `ns` is clamped to the top bucket.
  void record(uint64_t ns) {
    auto& b = buckets_[bucket_of(ns)];
    b.store(b.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    count_.store(count_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    sum_.store(sum_.load(std::memory_order_relaxed) + ns, std::memory_order_relaxed);
  }

  static int bucket_of(uint64_t ns) {
    if (ns < kSub) return static_cast<int>(ns);
    int e = 63 - std::countl_zero(ns);  // >= kSubBits
    if (e > kMaxExp) return kBuckets - 1;
    int sub = static_cast<int>((ns >> (e - kSubBits)) & (kSub - 1));
    return (e - kSubBits + 1) * kSub + sub;
  }
  // Smallest value that falls in bucket i.
  static uint64_t bucket_low(int i) {
    if (i < kSub) return static_cast<uint64_t>(i);
    int e = i / kSub + kSubBits - 1;
    uint64_t sub = static_cast<uint64_t>(i % kSub);
    return (uint64_t{1} << e) | (sub << (e - kSubBits));
  }

  struct Snapshot {
    std::vector<uint64_t> buckets = std::vector<uint64_t>(kBuckets, 0);
    uint64_t count = 0;
    uint64_t sum_ns = 0;
    void merge(const Snapshot& o);
    // p in [0,100]; returns 0 when empty.
    uint64_t percentile(double p) const;
    double mean() const { return count ? static_cast<double>(sum_ns) / count : 0; }
    // Count of samples strictly below `ns` when `ns` is a power of two (exact at those
    // boundaries), used for Prometheus' cumulative buckets.
    uint64_t count_below_pow2(uint64_t ns) const;
  };
  void snapshot_into(Snapshot& s) const;
  void reset();

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
};

}  // namespace castor
