#include "nvmf/target/front_end.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

namespace castor::nvmf {
namespace {

constexpr size_t kMaxNqnLength = 223;

bool is_nqn(const std::string& s) {
  return s.size() > 4 && s.size() <= kMaxNqnLength && s.rfind("nqn.", 0) == 0;
}

// Allowed hosts as a sorted set of validated NQNs.
Result<std::vector<std::string>> normalise_hosts(const std::vector<std::string>& hosts) {
  std::set<std::string> out;
  for (const auto& h : hosts) {
    if (!is_nqn(h)) {
      return make_error(Errc::kInvalidArgument,
                        "allowed host '{}' is not a host NQN (nqn.yyyy-mm.domain:name, at most "
                        "{} bytes)",
                        h, kMaxNqnLength);
    }
    out.insert(h);
  }
  return std::vector<std::string>(out.begin(), out.end());
}

frontend::Export to_export(const SubsystemInfo& s, const std::string& bdev) {
  frontend::Export e;
  e.protocol = "nvmf";
  e.name = s.nqn;
  e.bdev = bdev;
  e.allowed_hosts = s.allowed_hosts;
  std::sort(e.allowed_hosts.begin(), e.allowed_hosts.end());
  e.connections = s.controllers;
  return e;
}

}  // namespace

std::string castor_nqn(const std::string& kind, const Uuid& uuid) {
  return fmt::format("{}{}-{}", kNqnPrefix, kind, uuid.to_string());
}

NvmfFrontEnd::NvmfFrontEnd(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
                           TargetOptions opts)
    : target_(reactors, registry, opts) {}

Result<uint16_t> NvmfFrontEnd::listen(const std::string& host, uint16_t port) {
  uint16_t bound = 0;
  if (Status s = target_.listen(host, port, &bound); !s) return s;
  return bound;
}

std::string NvmfFrontEnd::default_name(const frontend::ExportSpec& spec) const {
  return castor_nqn(spec.kind, spec.uuid);
}

Result<frontend::Export> NvmfFrontEnd::add_export(const frontend::ExportSpec& spec) {
  if (spec.read_only) {
    return Status(Errc::kInvalidArgument, "NVMe-oF shares are read-write (no read-only share)");
  }
  if (spec.chap.enabled() || spec.mutual_chap.enabled()) {
    return Status(Errc::kInvalidArgument,
                  "CHAP is an iSCSI setting (NVMe-oF shares allow hosts by NQN)");
  }
  auto hosts = normalise_hosts(spec.allowed_hosts);
  if (!hosts) return hosts.status();
  const std::string& nqn = *spec.name;
  for (const auto& s : target_.list_subsystems()) {
    if (s.nqn != nqn) continue;
    auto existing = to_export(s, spec.bdev);
    if (existing.allowed_hosts != *hosts) {
      return make_error(Errc::kAlreadyExists,
                        "bdev '{}' is already shared as '{}' with other allowed hosts (unshare "
                        "it first)",
                        spec.bdev, nqn);
    }
    const bool same_bdev = std::any_of(s.namespaces.begin(), s.namespaces.end(),
                                       [&](const auto& ns) { return ns.second == spec.bdev; });
    if (!same_bdev) {
      return make_error(Errc::kAlreadyExists, "subsystem '{}' exists and does not hold bdev '{}'",
                        nqn, spec.bdev);
    }
    return existing;
  }
  if (Status s = target_.add_subsystem(nqn, *hosts); !s) return s;
  auto nsid = target_.add_namespace(nqn, spec.bdev, 1);
  if (!nsid) {
    if (Status s = target_.remove_subsystem(nqn); !s) {
      spdlog::warn("cannot remove subsystem '{}' after a failed share: {}", nqn, s.to_string());
    }
    return nsid.status();
  }
  spdlog::info("shared bdev '{}' as {} ({})", spec.bdev, nqn,
               hosts->empty() ? std::string("any host") : fmt::format("{} host(s)", hosts->size()));
  frontend::Export e;
  e.protocol = protocol();
  e.name = nqn;
  e.bdev = spec.bdev;
  e.allowed_hosts = *hosts;
  return e;
}

Status NvmfFrontEnd::remove_export(const std::string& nqn, bool force) {
  if (Status s = target_.remove_subsystem(nqn, force); !s) return s;
  spdlog::info("unshared {}", nqn);
  return Status::ok();
}

std::vector<frontend::Export> NvmfFrontEnd::exports() const {
  std::vector<frontend::Export> out;
  for (const auto& s : target_.list_subsystems()) {
    for (const auto& [nsid, bdev] : s.namespaces) out.push_back(to_export(s, bdev));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string NvmfFrontEnd::uri(const std::string& authority, const std::string& nqn) const {
  return fmt::format("nvmf://{}/{}", authority, nqn);
}

void NvmfFrontEnd::announce_resize(const std::string& bdev) {
  target_.announce_resize(bdev);
}

std::vector<frontend::Metric> NvmfFrontEnd::metrics() const {
  using Type = frontend::Metric::Type;
  frontend::Metric ctrls{"castor_nvmf_controllers",
                         "NVMe-oF controllers connected to the subsystem.",
                         Type::kGauge,
                         {}};
  auto subsystems = target_.list_subsystems();
  std::sort(subsystems.begin(), subsystems.end(),
            [](const auto& a, const auto& b) { return a.nqn < b.nqn; });
  for (const auto& s : subsystems) {
    ctrls.samples.push_back({{{"subsystem", s.nqn}}, static_cast<double>(s.controllers)});
  }
  return {
      std::move(ctrls),
      frontend::Metric::single(
          "castor_nvmf_receive_holds_total",
          "Times an NVMe-oF queue pair stopped reading: the host sent commands past its queue "
          "and did not read the refusals.",
          Type::kCounter, static_cast<double>(target_.receive_holds())),
      frontend::Metric::single(
          "castor_nvmf_budget_holds_total",
          "Times an NVMe-oF read or write waited because the target-wide buffer budget "
          "(--target-buffer-mb) was spent.",
          Type::kCounter, static_cast<double>(target_.budget_holds())),
  };
}

Status NvmfFrontEnd::set_ana_state(const std::string& bdev, AnaState state) {
  for (const auto& s : target_.list_subsystems()) {
    for (const auto& ns : s.namespaces) {
      if (ns.second == bdev) return target_.set_ana_state(s.nqn, state);
    }
  }
  return make_error(Errc::kNotFound, "'{}' is not shared over NVMe-oF", bdev);
}

std::optional<AnaState> NvmfFrontEnd::ana_state(const std::string& bdev) const {
  for (const auto& s : target_.list_subsystems()) {
    for (const auto& ns : s.namespaces) {
      if (ns.second == bdev) return s.ana_state;
    }
  }
  return std::nullopt;
}

void NvmfFrontEnd::stop() {
  target_.stop();
}

}  // namespace castor::nvmf
