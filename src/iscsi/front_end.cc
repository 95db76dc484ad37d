#include "iscsi/front_end.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

namespace castor::iscsi {
namespace {

// LUN 0 of node `n` as an export.
frontend::Export to_export(const NodeInfo& n) {
  frontend::Export e;
  e.protocol = "iscsi";
  e.name = n.name;
  for (const auto& l : n.luns) {
    if (l.lun != 0) continue;
    e.bdev = l.bdev;
    e.read_only = l.read_only;
  }
  e.allowed_hosts = n.allowed_initiators;
  std::sort(e.allowed_hosts.begin(), e.allowed_hosts.end());
  e.chap = n.chap;
  e.mutual_chap = n.mutual_chap;
  e.connections = n.sessions;
  return e;
}

}  // namespace

IscsiFrontEnd::IscsiFrontEnd(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
                             TargetOptions opts)
    : registry_(registry), target_(reactors, registry, std::move(opts)) {}

Result<uint16_t> IscsiFrontEnd::listen(const std::string& host, uint16_t port) {
  uint16_t bound = 0;
  if (Status s = target_.listen(host, port, &bound); !s) return s;
  return bound;
}

std::string IscsiFrontEnd::default_name(const frontend::ExportSpec& spec) const {
  if (spec.kind != "bdev")
    return fmt::format("{}{}-{}", kIqnPrefix, spec.kind, spec.uuid.to_string());
  std::string iqn = kIqnPrefix;
  for (char c : spec.bdev) {
    const char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    iqn += (std::isalnum(static_cast<unsigned char>(l)) || l == '.' || l == '-') ? l : '-';
  }
  return iqn;
}

Result<frontend::Export> IscsiFrontEnd::add_export(const frontend::ExportSpec& spec) {
  // A secret without its user would silently disable the authentication it asks for.
  if (spec.chap.user.empty() && !spec.chap.secret.empty()) {
    return Status(Errc::kInvalidArgument, "chap_secret needs chap_user");
  }
  if (spec.mutual_chap.user.empty() && !spec.mutual_chap.secret.empty()) {
    return Status(Errc::kInvalidArgument, "mutual_secret needs mutual_user");
  }
  auto wanted_hosts = spec.allowed_hosts;
  std::sort(wanted_hosts.begin(), wanted_hosts.end());
  wanted_hosts.erase(std::unique(wanted_hosts.begin(), wanted_hosts.end()), wanted_hosts.end());
  for (const auto& n : target_.list_nodes()) {
    if (n.name != *spec.name) continue;
    auto have = to_export(n);
    if (have.bdev != spec.bdev) break;  // add_node names the conflict
    auto have_hosts = have.allowed_hosts;
    have_hosts.erase(std::unique(have_hosts.begin(), have_hosts.end()), have_hosts.end());
    if (have.read_only != spec.read_only || have.chap != spec.chap.enabled() ||
        have.mutual_chap != spec.mutual_chap.enabled() || have_hosts != wanted_hosts) {
      return make_error(Errc::kAlreadyExists,
                        "bdev '{}' is already exported over iSCSI as {} with other settings "
                        "(unexport it first)",
                        spec.bdev, n.name);
    }
    return have;
  }
  auto info = registry_.info(spec.bdev);
  if (!info) return info.status();
  if (info->claim) {
    return make_error(Errc::kBusy, "bdev '{}' is claimed by '{}'", spec.bdev, info->claimed_by);
  }
  NodeConfig cfg;
  cfg.name = *spec.name;
  cfg.luns.push_back(scsi::LunOptions{.lun = 0, .bdev = spec.bdev, .read_only = spec.read_only});
  cfg.access.chap = {spec.chap.user, spec.chap.secret};
  cfg.access.mutual_chap = {spec.mutual_chap.user, spec.mutual_chap.secret};
  cfg.access.allowed_initiators = spec.allowed_hosts;
  if (Status s = target_.add_node(cfg); !s) return s;
  for (const auto& n : target_.list_nodes()) {
    if (n.name == *spec.name) return to_export(n);
  }
  return make_error(Errc::kNotFound, "iSCSI target {} was removed while being added", *spec.name);
}

Status IscsiFrontEnd::remove_export(const std::string& iqn, bool /*force*/) {
  return target_.remove_node(iqn);
}

std::vector<frontend::Export> IscsiFrontEnd::exports() const {
  std::vector<frontend::Export> out;
  for (const auto& n : target_.list_nodes()) out.push_back(to_export(n));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string IscsiFrontEnd::uri(const std::string& authority, const std::string& iqn) const {
  return fmt::format("iscsi://{}/{}/0", authority, iqn);
}

void IscsiFrontEnd::announce_resize(const std::string& bdev) {
  target_.announce_resize(bdev);
}

std::vector<frontend::Metric> IscsiFrontEnd::metrics() const {
  using Type = frontend::Metric::Type;
  using frontend::Metric;
  Metric sessions{
      "castor_iscsi_sessions", "iSCSI sessions logged in to the target node.", Type::kGauge, {}};
  for (const auto& e : exports()) {
    sessions.samples.push_back({{{"target", e.name}}, static_cast<double>(e.connections)});
  }
  const TargetStats i = target_.stats();
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  Metric logins{
      "castor_iscsi_logins_total",
      "iSCSI logins, by result.",
      Type::kCounter,
      {{{{"result", "ok"}}, d(i.logins_ok)}, {{{"result", "failed"}}, d(i.logins_failed)}}};
  return {
      std::move(sessions),
      Metric::single("castor_iscsi_connections", "iSCSI connections in full-feature phase.",
                     Type::kGauge, d(target_.list_sessions().size())),
      Metric::single("castor_iscsi_connections_accepted_total", "iSCSI connections accepted.",
                     Type::kCounter, d(i.connections_accepted)),
      std::move(logins),
      Metric::single("castor_iscsi_protocol_errors_total",
                     "iSCSI connections closed for a protocol violation.", Type::kCounter,
                     d(i.protocol_errors)),
      Metric::single("castor_iscsi_digest_errors_total", "iSCSI PDUs with a wrong digest.",
                     Type::kCounter, d(i.digest_errors)),
      Metric::single("castor_iscsi_lost_data_outs_total",
                     "iSCSI commands failed because a Data-Out was lost (digest or DataSN).",
                     Type::kCounter, d(i.lost_data_outs)),
      Metric::single("castor_iscsi_nop_in_pings_total", "NOP-In pings sent to idle initiators.",
                     Type::kCounter, d(i.nop_in_pings)),
      Metric::single("castor_iscsi_nop_in_timeouts_total",
                     "iSCSI connections closed because a NOP-In ping went unanswered.",
                     Type::kCounter, d(i.nop_in_timeouts)),
      Metric::single("castor_iscsi_buffer_limit_hits_total",
                     "iSCSI commands answered TASK SET FULL: a buffer limit (the connection's or "
                     "the target's) was spent.",
                     Type::kCounter, d(i.buffer_limit_hits)),
      Metric::single("castor_iscsi_budget_limit_hits_total",
                     "Of those, commands refused because all connections together held the "
                     "target's buffer budget (--target-buffer-mb).",
                     Type::kCounter, d(i.budget_limit_hits)),
      Metric::single("castor_iscsi_receive_holds_total",
                     "Times an iSCSI connection stopped reading: the initiator was not reading the "
                     "replies the target made for it.",
                     Type::kCounter, d(i.receive_holds)),
  };
}

void IscsiFrontEnd::stop() {
  target_.stop();
}

}  // namespace castor::iscsi
