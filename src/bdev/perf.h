#pragma once
// The built-in block benchmark (part of the bdev layer, so the engine API can run it
// without linking a tool): drives a bdev from one or more reactors with a fixed
// queue depth each, and reports IOPS, bandwidth and latency percentiles. Used by the
// castor-bdevperf program and by the engine's RunBenchmark API.

#include <cstdint>
#include <string>
#include <vector>

#include "bdev/registry.h"

namespace castor::bdev {

struct PerfOptions {
  // randread, randwrite, read, write, randrw (mix by rw_mix_read), rw
  std::string workload = "randread";
  uint32_t block_size = 4096;
  uint32_t queue_depth = 32;  // per reactor
  double duration_s = 5.0;
  uint32_t rw_mix_read = 70;    // percent of reads for the mixed workloads
  std::vector<size_t> reactors;  // reactor indices; empty = every reactor
  uint64_t seed = 1;
};

struct PerfResult {
  std::string bdev;
  std::string workload;
  uint32_t block_size = 0;
  uint32_t queue_depth = 0;
  uint32_t reactors = 0;
  uint64_t ios = 0;
  uint64_t errors = 0;
  double seconds = 0;
  double iops = 0;
  double mib_s = 0;
  double mean_us = 0;
  double p50_us = 0;
  double p99_us = 0;
  double p999_us = 0;
};

// Validates the options against the bdev (block size a multiple of the bdev's, the
// workload supported, queue depth 1..4096, duration > 0) and runs the benchmark,
// blocking the calling thread, which must not be a reactor thread.
// Errors: NotFound (bdev), InvalidArgument (options), Busy (claimed bdev).
Result<PerfResult> run_perf(BdevRegistry& registry, const std::string& bdev_name,
                            const PerfOptions& opts);

}  // namespace castor::bdev
