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

// A family of one unlabelled value.
MetricFamily single(const char* name, const char* help, MetricType type, uint64_t value) {
  MetricFamily f = family(name, help, type);
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = static_cast<double>(value);
  } else {
    m.gauge.value = static_cast<double>(value);
  }
  f.metric.push_back(std::move(m));
  return f;
}

ClientMetric labelled_gauge(const char* label, const std::string& value, double v) {
  ClientMetric m = gauge(v);
  m.label = {{label, value}};
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

// The front-end targets: who is connected, and how often each protection acted.
void MetricsCollector::collect_targets(std::vector<MetricFamily>& out) const {
  constexpr auto kCounter = MetricType::Counter;
  constexpr auto kGauge = MetricType::Gauge;

  auto ctrls = family("castor_nvmf_controllers", "NVMe-oF controllers connected to the subsystem.",
                      kGauge);
  for (const auto& [s, uris] : front_ends_.subsystems()) {
    ctrls.metric.push_back(labelled_gauge("subsystem", s.nqn, s.controllers));
  }
  out.push_back(std::move(ctrls));
  out.push_back(single("castor_nvmf_receive_holds_total",
                       "Times an NVMe-oF queue pair stopped reading: the host sent commands past "
                       "its queue and did not read the refusals.",
                       kCounter, front_ends_.nvmf_receive_holds()));
  out.push_back(single("castor_nvmf_budget_holds_total",
                       "Times an NVMe-oF read or write waited because the target-wide buffer budget "
                       "(--target-buffer-mb) was spent.",
                       kCounter, front_ends_.nvmf_budget_holds()));

  auto nbd_conns = family("castor_nbd_connections", "NBD clients in transmission on the export.",
                          kGauge);
  for (const auto& e : front_ends_.nbd_exports()) {
    nbd_conns.metric.push_back(labelled_gauge("export", e.name, e.connections));
  }
  out.push_back(std::move(nbd_conns));
  const nbd::NbdStats n = front_ends_.nbd_stats();
  out.push_back(single("castor_nbd_connections_accepted_total", "NBD connections accepted.", kCounter,
                       n.connections_accepted));
  out.push_back(single("castor_nbd_protocol_errors_total",
                       "NBD connections closed for a protocol violation.", kCounter,
                       n.protocol_errors));
  out.push_back(single("castor_nbd_dead_clients_total",
                       "NBD connections closed because the client stopped answering "
                       "(--nbd-keepalive-s).",
                       kCounter, n.dead_clients));
  out.push_back(single("castor_nbd_receive_pauses_total",
                       "Times an NBD connection stopped reading: too many requests or bytes in "
                       "flight.",
                       kCounter, n.receive_pauses));
  out.push_back(single("castor_nbd_budget_pauses_total",
                       "Of those, pauses because all connections together held the server's "
                       "buffer budget (--target-buffer-mb).",
                       kCounter, n.budget_pauses));

  auto sessions = family("castor_iscsi_sessions", "iSCSI sessions logged in to the target node.",
                         kGauge);
  for (const auto& t : front_ends_.iscsi_targets()) {
    sessions.metric.push_back(labelled_gauge("target", t.name, t.sessions));
  }
  out.push_back(std::move(sessions));
  out.push_back(single("castor_iscsi_connections", "iSCSI connections in full-feature phase.", kGauge,
                       front_ends_.iscsi_sessions().size()));
  const iscsi::TargetStats i = front_ends_.iscsi_stats();
  out.push_back(single("castor_iscsi_connections_accepted_total", "iSCSI connections accepted.",
                       kCounter, i.connections_accepted));
  auto logins = family("castor_iscsi_logins_total", "iSCSI logins, by result.", kCounter);
  for (auto [result, v] : {std::pair{"ok", i.logins_ok}, std::pair{"failed", i.logins_failed}}) {
    ClientMetric m;
    m.label = {{"result", result}};
    m.counter.value = static_cast<double>(v);
    logins.metric.push_back(std::move(m));
  }
  out.push_back(std::move(logins));
  out.push_back(single("castor_iscsi_protocol_errors_total",
                       "iSCSI connections closed for a protocol violation.", kCounter,
                       i.protocol_errors));
  out.push_back(single("castor_iscsi_digest_errors_total", "iSCSI PDUs with a wrong digest.",
                       kCounter, i.digest_errors));
  out.push_back(single("castor_iscsi_lost_data_outs_total",
                       "iSCSI commands failed because a Data-Out was lost (digest or DataSN).",
                       kCounter, i.lost_data_outs));
  out.push_back(single("castor_iscsi_nop_in_pings_total", "NOP-In pings sent to idle initiators.",
                       kCounter, i.nop_in_pings));
  out.push_back(single("castor_iscsi_nop_in_timeouts_total",
                       "iSCSI connections closed because a NOP-In ping went unanswered.", kCounter,
                       i.nop_in_timeouts));
  out.push_back(single("castor_iscsi_buffer_limit_hits_total",
                       "iSCSI commands answered TASK SET FULL: a buffer limit (the connection's "
                       "or the target's) was spent.",
                       kCounter, i.buffer_limit_hits));
  out.push_back(single("castor_iscsi_budget_limit_hits_total",
                       "Of those, commands refused because all connections together held the "
                       "target's buffer budget (--target-buffer-mb).",
                       kCounter, i.budget_limit_hits));
  out.push_back(single("castor_iscsi_receive_holds_total",
                       "Times an iSCSI connection stopped reading: the initiator was not reading "
                       "the replies the target made for it.",
                       kCounter, i.receive_holds));
}

}  // namespace castor::api
