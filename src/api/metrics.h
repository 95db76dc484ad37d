#pragma once
// Prometheus metrics of the engine, computed on each scrape from the bdev registry
// (nothing is cached between scrapes, so a destroyed bdev disappears at once).
//
// Families (labels in braces):
//   castor_bdev_ops_total{bdev,op}          counter, completed I/Os
//   castor_bdev_bytes_total{bdev,op}        counter, bytes transferred
//   castor_bdev_errors_total{bdev,op}       counter, I/Os completed with an error
//   castor_bdev_latency_seconds{bdev,op}    histogram, buckets at 2^10..2^30 ns
//   castor_engine_uptime_seconds            gauge
//   castor_engine_reactors                  gauge
//   castor_engine_info{version}             gauge, always 1
//   castor_nexus_state{nexus,state}         gauge, 1 for the nexus' state, 0 for the others
//   castor_nexus_child_state{nexus,child,state}  gauge, as above per child
//   castor_nexus_rebuild_blocks_done{nexus,child}   gauge, of the running or last rebuild
//   castor_nexus_rebuild_blocks_total{nexus,child}  gauge, of the running or last rebuild
//   castor_<protocol>_*                     each front end's own (FrontEnd::metrics:
//                                           nvmf/target/front_end.cc, nbd/front_end.cc,
//                                           iscsi/front_end.cc; docs/engine.md lists them)
// `op` is one of the operation types the bdev supports (api/names.h).

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <vector>

#include "api/engine_service.h"
#include "api/front_ends.h"
#include "bdev/registry.h"
#include "nexus/manager.h"
#include "reactor/reactor.h"

namespace castor::api {

// Histogram bucket bounds are powers of two nanoseconds from 2^kMinLatencyExp to
// 2^kMaxLatencyExp, exported in seconds.
inline constexpr int kMinLatencyExp = 10;
inline constexpr int kMaxLatencyExp = 30;

class MetricsCollector final : public prometheus::Collectable {
 public:
  // `registry` and `reactors` must outlive every scrape (unregister from the Exposer
  // before destroying them).
  MetricsCollector(bdev::BdevRegistry& registry, nexus::NexusManager& nexuses,
                   FrontEnds& front_ends, reactor::ReactorGroup& reactors,
                   EngineIdentity identity);

  // Called on the HTTP server's threads; reads thread-safe views only.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  void collect_targets(std::vector<prometheus::MetricFamily>& out) const;
  bdev::BdevRegistry& registry_;
  nexus::NexusManager& nexuses_;
  FrontEnds& front_ends_;
  reactor::ReactorGroup& reactors_;
  const EngineIdentity identity_;
};

}  // namespace castor::api
