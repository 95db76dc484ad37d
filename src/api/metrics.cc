#include "api/metrics.h"

#include <limits>

#include "api/names.h"
#include "common/version.h"

namespace castor::api {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

ClientMetric counter(const std::string& bdev, const char* op, uint64_t value) {
  ClientMetric m;
  m.label = {{"bdev", bdev}, {"op", op}};
  m.counter.value = static_cast<double>(value);
  return m;
}

ClientMetric gauge(double value) {
  ClientMetric m;
  m.gauge.value = value;
  return m;
}

ClientMetric histogram(const std::string& bdev, const char* op,
                       const LatencyHistogram::Snapshot& snap) {
  ClientMetric m;
  m.label = {{"bdev", bdev}, {"op", op}};
  m.histogram.sample_count = snap.count;
  m.histogram.sample_sum = static_cast<double>(snap.sum_ns) / 1e9;
  for (int e = kMinLatencyExp; e <= kMaxLatencyExp; ++e) {
    uint64_t bound_ns = uint64_t{1} << e;
    ClientMetric::Bucket b;
    b.upper_bound = static_cast<double>(bound_ns) / 1e9;
    b.cumulative_count = snap.count_below_pow2(bound_ns);
    m.histogram.bucket.push_back(b);
  }
  ClientMetric::Bucket inf;
  inf.upper_bound = std::numeric_limits<double>::infinity();
  inf.cumulative_count = snap.count;
  m.histogram.bucket.push_back(inf);
  return m;
}

}  // namespace

MetricsCollector::MetricsCollector(bdev::BdevRegistry& registry, nexus::NexusManager& nexuses,
                                   FrontEnds& front_ends, reactor::ReactorGroup& reactors,
                                   EngineIdentity identity)
    : registry_(registry),
      nexuses_(nexuses),
      front_ends_(front_ends),
      reactors_(reactors),
      identity_(identity) {}

std::vector<MetricFamily> MetricsCollector::Collect() const {
  auto ops = family("castor_bdev_ops_total", "I/Os completed by the bdev.", MetricType::Counter);
  auto bytes =
      family("castor_bdev_bytes_total", "Bytes transferred by the bdev.", MetricType::Counter);
  auto errors = family("castor_bdev_errors_total", "I/Os the bdev completed with an error.",
                       MetricType::Counter);
  auto latency = family("castor_bdev_latency_seconds", "I/O latency from submission to completion.",
                        MetricType::Histogram);

  for (const auto& info : registry_.list()) {
    auto st = registry_.stats(info.name);
    if (!st) continue;  // destroyed since list()
    for (int i = 0; i < bdev::kNumIoTypes; ++i) {
      auto t = static_cast<bdev::IoType>(i);
      if (!(info.supported_ops & bdev::io_type_bit(t))) continue;
      const auto& pt = st->per_type[i];
      const char* op = op_name(t);
      ops.metric.push_back(counter(info.name, op, pt.ops));
      bytes.metric.push_back(counter(info.name, op, pt.bytes));
      errors.metric.push_back(counter(info.name, op, pt.errors));
      latency.metric.push_back(histogram(info.name, op, pt.latency));
    }
  }

  auto uptime = family("castor_engine_uptime_seconds", "Seconds since the engine started.",
                       MetricType::Gauge);
  uptime.metric.push_back(gauge(identity_.uptime_seconds()));
  auto nreactors =
      family("castor_engine_reactors", "Reactor threads of the engine.", MetricType::Gauge);
  nreactors.metric.push_back(gauge(static_cast<double>(reactors_.size())));
  auto info = family("castor_engine_info", "Engine build information (value is always 1).",
                     MetricType::Gauge);
  auto im = gauge(1);
  im.label = {{"version", kVersion}};
  info.metric.push_back(std::move(im));

  auto nstate = family("castor_nexus_state",
                       "Nexus state: 1 for the current state, 0 for the others.",
                       MetricType::Gauge);
  auto cstate = family("castor_nexus_child_state",
                       "Nexus child state: 1 for the current state, 0 for the others.",
                       MetricType::Gauge);
  auto rdone = family("castor_nexus_rebuild_blocks_done",
                      "Blocks copied by the child's running or last rebuild.", MetricType::Gauge);
  auto rtotal = family("castor_nexus_rebuild_blocks_total",
                       "Blocks the child's running or last rebuild must copy.", MetricType::Gauge);
  static constexpr nexus::NexusState kNexusStates[] = {
      nexus::NexusState::kOnline, nexus::NexusState::kDegraded, nexus::NexusState::kFaulted};
  static constexpr nexus::ChildState kChildStates[] = {
      nexus::ChildState::kHealthy, nexus::ChildState::kOutOfSync, nexus::ChildState::kFaulted,
      nexus::ChildState::kOffline};
  for (const auto& n : nexuses_.list()) {
    for (auto s : kNexusStates) {
      auto m = gauge(n.state == s ? 1 : 0);
      m.label = {{"nexus", n.name}, {"state", nexus::nexus_state_name(s)}};
      nstate.metric.push_back(std::move(m));
    }
    for (const auto& c : n.children) {
      for (auto s : kChildStates) {
        auto m = gauge(c.state == s ? 1 : 0);
        m.label = {{"nexus", n.name}, {"child", c.uri}, {"state", nexus::child_state_name(s)}};
        cstate.metric.push_back(std::move(m));
      }
      if (c.rebuild) {
        auto d = gauge(static_cast<double>(c.rebuild->blocks_done));
        d.label = {{"nexus", n.name}, {"child", c.uri}};
        rdone.metric.push_back(std::move(d));
        auto t = gauge(static_cast<double>(c.rebuild->blocks_total));
        t.label = {{"nexus", n.name}, {"child", c.uri}};
        rtotal.metric.push_back(std::move(t));
      }
    }
  }

  std::vector<MetricFamily> out = {
      std::move(ops),       std::move(bytes), std::move(errors), std::move(latency),
      std::move(uptime),    std::move(nreactors), std::move(info), std::move(nstate),
      std::move(cstate),    std::move(rdone), std::move(rtotal)};
  collect_targets(out);
  return out;
}

// The front ends' own families (FrontEnd::metrics: who is connected, and how often each
// protection acted), in Prometheus terms.
void MetricsCollector::collect_targets(std::vector<MetricFamily>& out) const {
  for (const auto& m : front_ends_.metrics()) {
    const bool is_counter = m.type == frontend::Metric::Type::kCounter;
    MetricFamily f;
    f.name = m.name;
    f.help = m.help;
    f.type = is_counter ? MetricType::Counter : MetricType::Gauge;
    for (const auto& sample : m.samples) {
      ClientMetric c;
      for (const auto& [k, v] : sample.labels) c.label.push_back({k, v});
      if (is_counter) {
        c.counter.value = sample.value;
      } else {
        c.gauge.value = sample.value;
      }
      f.metric.push_back(std::move(c));
    }
    out.push_back(std::move(f));
  }
}

}  // namespace castor::api
