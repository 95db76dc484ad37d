#include "nbd/front_end.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace castor::nbd {
namespace {

frontend::Export to_export(const ExportInfo& in) {
  frontend::Export e;
  e.protocol = "nbd";
  e.name = in.name;
  e.bdev = in.bdev;
  e.read_only = in.read_only;
  e.description = in.description;
  e.connections = in.connections;
  return e;
}

}  // namespace

NbdFrontEnd::NbdFrontEnd(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
                         ServerOptions opts)
    : registry_(registry), server_(reactors, registry, opts) {}

Result<uint16_t> NbdFrontEnd::listen(const std::string& host, uint16_t port) {
  uint16_t bound = 0;
  if (Status s = server_.listen(host, port, &bound); !s) return s;
  return bound;
}

std::string NbdFrontEnd::default_name(const frontend::ExportSpec& spec) const {
  return spec.bdev;
}

Result<frontend::Export> NbdFrontEnd::add_export(const frontend::ExportSpec& spec) {
  if (!spec.allowed_hosts.empty()) {
    return Status(Errc::kInvalidArgument, "NBD has no access control (no allowed hosts)");
  }
  if (spec.chap.enabled() || spec.mutual_chap.enabled()) {
    return Status(Errc::kInvalidArgument, "CHAP is an iSCSI setting (NBD has no authentication)");
  }
  ExportInfo have;
  if (server_.find_export(*spec.name, &have) && have.bdev == spec.bdev &&
      have.read_only == spec.read_only) {
    return to_export(have);  // the same export again
  }
  auto info = registry_.info(spec.bdev);
  if (!info) return info.status();
  // An NBD client opens the bdev per connection, which a claim would refuse.
  if (info->claim) {
    return make_error(Errc::kBusy, "bdev '{}' is claimed by '{}'", spec.bdev, info->claimed_by);
  }
  ExportInfo e{.name = *spec.name,
               .bdev = spec.bdev,
               .read_only = spec.read_only,
               .description = spec.description,
               .connections = 0};
  if (Status s = server_.add_export(e); !s) return s;
  return to_export(e);
}

Status NbdFrontEnd::remove_export(const std::string& name, bool /*force*/) {
  Status s = server_.remove_export(name);
  if (s) spdlog::info("nbd export '{}' removed", name);
  return s;
}

std::vector<frontend::Export> NbdFrontEnd::exports() const {
  std::vector<frontend::Export> out;
  for (const auto& e : server_.list_exports()) out.push_back(to_export(e));  // sorted by name
  return out;
}

std::string NbdFrontEnd::uri(const std::string& authority, const std::string& name) const {
  return fmt::format("nbd://{}/{}", authority, name);
}

Status NbdFrontEnd::check_resize(const frontend::Export& e) const {
  (void)e;
  return Status(Errc::kBusy, "NBD cannot tell connected clients about a new size");
}

std::vector<frontend::Metric> NbdFrontEnd::metrics() const {
  using Type = frontend::Metric::Type;
  using frontend::Metric;
  Metric conns{
      "castor_nbd_connections", "NBD clients in transmission on the export.", Type::kGauge, {}};
  for (const auto& e : exports()) {
    conns.samples.push_back({{{"export", e.name}}, static_cast<double>(e.connections)});
  }
  const NbdStats n = server_.stats();
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  return {
      std::move(conns),
      Metric::single("castor_nbd_connections_accepted_total", "NBD connections accepted.",
                     Type::kCounter, d(n.connections_accepted)),
      Metric::single("castor_nbd_protocol_errors_total",
                     "NBD connections closed for a protocol violation.", Type::kCounter,
                     d(n.protocol_errors)),
      Metric::single("castor_nbd_dead_clients_total",
                     "NBD connections closed because the client stopped answering "
                     "(--nbd-keepalive-s).",
                     Type::kCounter, d(n.dead_clients)),
      Metric::single("castor_nbd_receive_pauses_total",
                     "Times an NBD connection stopped reading: too many requests or bytes in "
                     "flight.",
                     Type::kCounter, d(n.receive_pauses)),
      Metric::single("castor_nbd_budget_pauses_total",
                     "Of those, pauses because all connections together held the server's buffer "
                     "budget (--target-buffer-mb).",
                     Type::kCounter, d(n.budget_pauses)),
  };
}

void NbdFrontEnd::stop() {
  server_.stop();
}

}  // namespace castor::nbd
