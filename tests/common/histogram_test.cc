#include "common/histogram.h"

#include <gtest/gtest.h>

namespace castor {

TEST(LatencyHistogram, BucketsAreMonotonicAndTight) {
  int prev = -1;
  for (uint64_t v = 0; v < (1u << 20); v += 37) {
    int b = LatencyHistogram::bucket_of(v);
    EXPECT_GE(b, prev);
    prev = b;
    EXPECT_LE(LatencyHistogram::bucket_low(b), v);
    if (b + 1 < LatencyHistogram::kBuckets) {
      EXPECT_GT(LatencyHistogram::bucket_low(b + 1), v);
    }
  }
}

TEST(LatencyHistogram, PercentilesWithinBucketPrecision) {
  LatencyHistogram h;
  for (uint64_t i = 1; i <= 10000; ++i) h.record(i * 1000);  // 1 us .. 10 ms uniform
  LatencyHistogram::Snapshot s;
  h.snapshot_into(s);
  EXPECT_EQ(s.count, 10000u);
  EXPECT_NEAR(static_cast<double>(s.percentile(50)), 5e6, 5e6 * 0.13);
  EXPECT_NEAR(static_cast<double>(s.percentile(99)), 9.9e6, 9.9e6 * 0.13);
  EXPECT_EQ(s.count_below_pow2(1 << 20), 1048u);  // values < 1048576 ns: 1..1048 us
}

}  // namespace castor
