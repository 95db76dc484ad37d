#include "common/histogram.h"

#include <cmath>

namespace castor {

void LatencyHistogram::snapshot_into(Snapshot& s) const {
  for (int i = 0; i < kBuckets; ++i) s.buckets[i] += buckets_[i].load(std::memory_order_relaxed);
  s.count += count_.load(std::memory_order_relaxed);
  s.sum_ns += sum_.load(std::memory_order_relaxed);
}

void LatencyHistogram::reset() {
  for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
}

void LatencyHistogram::Snapshot::merge(const Snapshot& o) {
  for (int i = 0; i < kBuckets; ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum_ns += o.sum_ns;
}

uint64_t LatencyHistogram::Snapshot::percentile(double p) const {
  uint64_t total = 0;
  for (auto b : buckets) total += b;
  if (total == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets[i];
    if (seen >= rank) {
      // Report the bucket's midpoint.
      uint64_t lo = bucket_low(i);
      uint64_t hi = i + 1 < kBuckets ? bucket_low(i + 1) : lo;
      return lo + (hi - lo) / 2;
    }
  }
  return bucket_low(kBuckets - 1);
}

uint64_t LatencyHistogram::Snapshot::count_below_pow2(uint64_t ns) const {
  int limit = bucket_of(ns);
  uint64_t c = 0;
  for (int i = 0; i < limit && i < kBuckets; ++i) c += buckets[i];
  return c;
}

}  // namespace castor
