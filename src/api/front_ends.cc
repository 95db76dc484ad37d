#include "api/front_ends.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

namespace castor::api {
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

}  // namespace

Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return make_error(Errc::kInvalidArgument, "'{}' is not HOST:PORT", address);
  }
  std::string host = address.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return make_error(Errc::kInvalidArgument, "'{}' is not HOST:PORT", address);
    }
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return make_error(Errc::kInvalidArgument, "'{}': write an IPv6 host as [ADDR]:PORT", address);
  }
  const std::string port = address.substr(colon + 1);
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || p > 65535) {
    return make_error(Errc::kInvalidArgument, "'{}' has an invalid port", address);
  }
  return std::make_pair(host, static_cast<uint16_t>(p));
}

std::string uri_authority(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::string castor_nqn(const std::string& kind, const Uuid& uuid) {
  return fmt::format("{}{}-{}", kNqnPrefix, kind, uuid.to_string());
}

FrontEnds::FrontEnds(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
                     pool::PoolManager& pools, FrontEndOptions options)
    : registry_(registry), pools_(pools), nvmf_(reactors, registry, options.nvmf),
      nbd_(reactors, registry, options.nbd), iscsi_(reactors, registry, std::move(options.iscsi)) {}

FrontEnds::~FrontEnds() {
  stop();
}

void FrontEnds::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  iscsi_.stop();
  spdlog::info("iSCSI target stopped");
  nbd_.stop();
  spdlog::info("NBD server stopped");
  nvmf_.stop();
  spdlog::info("NVMe-oF target stopped");
}

// ---- NVMe-oF ----

Result<uint16_t> FrontEnds::nvmf_listen(const std::string& address) {
  auto hp = parse_host_port(address);
  if (!hp) return hp.status();
  std::lock_guard lk(mu_);
  if (stopped_) return Status(Errc::kBusy, "the engine is shutting down");
  uint16_t bound = 0;
  if (Status s = nvmf_.listen(hp->first, hp->second, &bound); !s) return s;
  nvmf_listeners_.push_back({hp->first, bound});
  return bound;
}

std::vector<ListenerAddress> FrontEnds::nvmf_listeners() const {
  std::lock_guard lk(mu_);
  return nvmf_listeners_;
}

void FrontEnds::set_advertised_host(std::string host) {
  std::lock_guard lk(mu_);
  advertised_host_ = std::move(host);
}

std::string FrontEnds::authority_locked(const ListenerAddress& l) const {
  return uri_authority(advertised_host_.empty() ? l.host : advertised_host_, l.port);
}

std::vector<std::string> FrontEnds::nvmf_uris_locked(const std::string& nqn) const {
  std::vector<std::string> out;
  for (const auto& l : nvmf_listeners_) {
    out.push_back(fmt::format("nvmf://{}/{}", authority_locked(l), nqn));
  }
  return out;
}

Result<pool::ReplicaInfo> FrontEnds::find_replica(const std::string& name_or_uuid) const {
  if (name_or_uuid.empty()) return Status(Errc::kInvalidArgument, "replica name is required");
  const auto replicas = pools_.list_replicas();
  for (const auto& r : replicas) {
    if (r.name == name_or_uuid) return r;
  }
  for (const auto& r : replicas) {
    if (r.uuid.to_string() == name_or_uuid) return r;
  }
  return make_error(Errc::kNotFound, "replica '{}' does not exist", name_or_uuid);
}

Result<ShareResult> FrontEnds::share_locked(const std::string& bdev,
                                            const std::vector<std::string>& allowed_hosts) {
  if (bdev.empty()) return Status(Errc::kInvalidArgument, "bdev name is required");
  auto hosts = normalise_hosts(allowed_hosts);
  if (!hosts) return hosts.status();
  auto info = registry_.info(bdev);
  if (!info) return info.status();

  std::string nqn;
  if (info->module == "replica") {
    auto r = find_replica(bdev);
    if (!r) return r.status();
    nqn = castor_nqn("replica", r->uuid);
  } else if (info->module == "nexus") {
    nqn = castor_nqn("nexus", info->uuid);  // a nexus bdev's UUID is the nexus UUID
  } else {
    nqn = castor_nqn("bdev", info->uuid);
  }

  for (const auto& s : nvmf_.list_subsystems()) {
    if (s.nqn != nqn) continue;
    auto existing = s.allowed_hosts;
    std::sort(existing.begin(), existing.end());
    if (existing != *hosts) {
      return make_error(Errc::kAlreadyExists,
                        "bdev '{}' is already shared as '{}' with other allowed hosts (unshare "
                        "it first)",
                        bdev, nqn);
    }
    return ShareResult{nqn, bdev, nvmf_uris_locked(nqn), s.allowed_hosts};
  }
  // An NBD client opens the bdev per connection, which the subsystem's claim would
  // refuse: one front end per bdev.
  if (Status s = check_not_exported(bdev); !s) return s;

  if (Status s = nvmf_.add_subsystem(nqn, *hosts); !s) return s;
  auto nsid = nvmf_.add_namespace(nqn, bdev, 1);
  if (!nsid) {
    if (Status s = nvmf_.remove_subsystem(nqn); !s) {
      spdlog::warn("cannot remove subsystem '{}' after a failed share: {}", nqn, s.to_string());
    }
    return nsid.status();
  }
  spdlog::info("shared bdev '{}' as {} ({})", bdev, nqn,
               hosts->empty() ? std::string("any host") : fmt::format("{} host(s)", hosts->size()));
  return ShareResult{nqn, bdev, nvmf_uris_locked(nqn), *hosts};
}

Result<ShareResult> FrontEnds::share_bdev(const std::string& bdev,
                                          const std::vector<std::string>& allowed_hosts) {
  std::lock_guard lk(mu_);
  return share_locked(bdev, allowed_hosts);
}

Result<ShareResult> FrontEnds::share_replica(const std::string& name,
                                             const std::vector<std::string>& allowed_hosts) {
  std::lock_guard lk(mu_);
  auto r = find_replica(name);
  if (!r) return r.status();
  return share_locked(r->name, allowed_hosts);
}

Status FrontEnds::unshare_locked(const std::string& bdev_or_nqn, bool force) {
  if (bdev_or_nqn.empty()) return Status(Errc::kInvalidArgument, "bdev name or NQN is required");
  const bool by_nqn = bdev_or_nqn.rfind("nqn.", 0) == 0;
  std::string nqn;
  for (const auto& s : nvmf_.list_subsystems()) {
    if (by_nqn && s.nqn == bdev_or_nqn) nqn = s.nqn;
    for (const auto& [nsid, b] : s.namespaces) {
      if (!by_nqn && b == bdev_or_nqn) nqn = s.nqn;
    }
    if (!nqn.empty()) break;
  }
  if (nqn.empty()) {
    if (by_nqn) return make_error(Errc::kNotFound, "subsystem '{}' does not exist", bdev_or_nqn);
    if (!registry_.find(bdev_or_nqn)) {
      return make_error(Errc::kNotFound, "bdev '{}' does not exist", bdev_or_nqn);
    }
    return make_error(Errc::kNotFound, "bdev '{}' is not shared", bdev_or_nqn);
  }
  if (Status s = nvmf_.remove_subsystem(nqn, force); !s) return s;
  spdlog::info("unshared {} ({})", nqn, bdev_or_nqn);
  return Status::ok();
}

Status FrontEnds::unshare(const std::string& bdev_or_nqn, bool force) {
  std::lock_guard lk(mu_);
  return unshare_locked(bdev_or_nqn, force);
}

Status FrontEnds::unshare_replica(const std::string& name, bool force) {
  std::lock_guard lk(mu_);
  auto r = find_replica(name);
  if (!r) return r.status();
  return unshare_locked(r->name, force);
}

Status FrontEnds::set_ana_state(const std::string& bdev, nvmf::AnaState state) {
  std::lock_guard lk(mu_);
  for (const auto& s : nvmf_.list_subsystems()) {
    for (const auto& ns : s.namespaces) {
      if (ns.second == bdev) return nvmf_.set_ana_state(s.nqn, state);
    }
  }
  return make_error(Errc::kNotFound, "'{}' is not shared over NVMe-oF", bdev);
}

std::vector<std::pair<nvmf::SubsystemInfo, std::vector<std::string>>> FrontEnds::subsystems()
    const {
  std::lock_guard lk(mu_);
  std::vector<std::pair<nvmf::SubsystemInfo, std::vector<std::string>>> out;
  for (auto& s : nvmf_.list_subsystems()) {
    auto uris = nvmf_uris_locked(s.nqn);
    out.emplace_back(std::move(s), std::move(uris));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first.nqn < b.first.nqn; });
  return out;
}

std::vector<nvmf::ControllerInfo> FrontEnds::controllers() const {
  auto out = nvmf_.list_controllers();
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.cntlid < b.cntlid; });
  return out;
}

// ---- NBD ----

Result<uint16_t> FrontEnds::nbd_listen(const std::string& address) {
  auto hp = parse_host_port(address);
  if (!hp) return hp.status();
  std::lock_guard lk(mu_);
  if (stopped_) return Status(Errc::kBusy, "the engine is shutting down");
  uint16_t bound = 0;
  if (Status s = nbd_.listen(hp->first, hp->second, &bound); !s) return s;
  nbd_listeners_.push_back({hp->first, bound});
  return bound;
}

std::vector<ListenerAddress> FrontEnds::nbd_listeners() const {
  std::lock_guard lk(mu_);
  return nbd_listeners_;
}

Status FrontEnds::nbd_export(const nbd::ExportInfo& e) {
  if (e.bdev.empty()) return Status(Errc::kInvalidArgument, "bdev name is required");
  std::lock_guard lk(mu_);
  auto info = registry_.info(e.bdev);
  if (!info) return info.status();
  if (info->claim) {
    return make_error(Errc::kBusy, "bdev '{}' is claimed by '{}'", e.bdev, info->claimed_by);
  }
  return nbd_.add_export(e);
}

Status FrontEnds::nbd_unexport(const std::string& name) {
  std::lock_guard lk(mu_);
  Status s = nbd_.remove_export(name);
  if (s) spdlog::info("nbd export '{}' removed", name);
  return s;
}

std::vector<nbd::ExportInfo> FrontEnds::nbd_exports() const {
  auto out = nbd_.list_exports();
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::vector<std::string> FrontEnds::nbd_uris(const std::string& export_name) const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (const auto& l : nbd_listeners_) {
    out.push_back(fmt::format("nbd://{}/{}", authority_locked(l), export_name));
  }
  return out;
}

// ---- iSCSI ----

Result<uint16_t> FrontEnds::iscsi_listen(const std::string& address) {
  auto hp = parse_host_port(address);
  if (!hp) return hp.status();
  std::lock_guard lk(mu_);
  if (stopped_) return Status(Errc::kBusy, "the engine is shutting down");
  uint16_t bound = 0;
  if (Status s = iscsi_.listen(hp->first, hp->second, &bound); !s) return s;
  iscsi_listeners_.push_back({hp->first, bound});
  return bound;
}

std::vector<ListenerAddress> FrontEnds::iscsi_listeners() const {
  std::lock_guard lk(mu_);
  return iscsi_listeners_;
}

Result<std::string> FrontEnds::iscsi_export(const IscsiExportSpec& e) {
  if (e.bdev.empty()) return Status(Errc::kInvalidArgument, "bdev name is required");
  std::string iqn = e.iqn;
  if (iqn.empty()) {
    iqn = kIqnPrefix;
    for (char c : e.bdev) {
      const char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      iqn += (std::isalnum(static_cast<unsigned char>(l)) || l == '.' || l == '-') ? l : '-';
    }
  }
  std::lock_guard lk(mu_);
  auto info = registry_.info(e.bdev);
  if (!info) return info.status();
  if (info->claim) {
    return make_error(Errc::kBusy, "bdev '{}' is claimed by '{}'", e.bdev, info->claimed_by);
  }
  iscsi::NodeConfig cfg;
  cfg.name = iqn;
  cfg.luns.push_back(scsi::LunOptions{.lun = 0, .bdev = e.bdev, .read_only = e.read_only});
  cfg.access = e.access;
  if (Status s = iscsi_.add_node(cfg); !s) return s;
  return iqn;
}

Status FrontEnds::iscsi_unexport(const std::string& iqn) {
  std::lock_guard lk(mu_);
  return iscsi_.remove_node(iqn);
}

std::vector<iscsi::NodeInfo> FrontEnds::iscsi_targets() const { return iscsi_.list_nodes(); }

std::vector<iscsi::SessionInfo> FrontEnds::iscsi_sessions() const { return iscsi_.list_sessions(); }

iscsi::TargetStats FrontEnds::iscsi_stats() const { return iscsi_.stats(); }

nbd::NbdStats FrontEnds::nbd_stats() const { return nbd_.stats(); }

uint64_t FrontEnds::nvmf_receive_holds() const { return nvmf_.receive_holds(); }
uint64_t FrontEnds::nvmf_budget_holds() const { return nvmf_.budget_holds(); }

std::vector<std::string> FrontEnds::iscsi_uris(const std::string& iqn) const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (const auto& l : iscsi_listeners_) {
    out.push_back(fmt::format("iscsi://{}/{}/0", authority_locked(l), iqn));
  }
  return out;
}

Status FrontEnds::destroy_unless_exported(const std::vector<std::string>& bdevs,
                                          const std::function<Status()>& destroy) {
  std::lock_guard lk(mu_);
  for (const auto& b : bdevs) {
    if (Status s = check_not_exported(b); !s) return s;
  }
  return destroy();
}

Status FrontEnds::grow_unless_nbd(const std::string& bdev, const std::function<Status()>& grow) {
  std::lock_guard lk(mu_);
  for (const auto& e : nbd_.list_exports()) {
    if (e.bdev == bdev) {
      return make_error(Errc::kBusy,
                        "bdev '{}' is exported over NBD as '{}': NBD cannot tell connected clients "
                        "about a new size (unexport it, grow it, export it again)",
                        bdev, e.name);
    }
  }
  if (Status s = grow(); !s) return s;
  nvmf_.announce_resize(bdev);
  iscsi_.announce_resize(bdev);
  return Status::ok();
}

void FrontEnds::announce_resize(const std::string& bdev) {
  std::lock_guard lk(mu_);
  nvmf_.announce_resize(bdev);
  iscsi_.announce_resize(bdev);
}

Status FrontEnds::check_not_exported(const std::string& bdev) const {
  for (const auto& e : nbd_.list_exports()) {
    if (e.bdev == bdev) {
      return make_error(Errc::kBusy, "bdev '{}' is exported over NBD as '{}' (unexport it first)",
                        bdev, e.name);
    }
  }
  for (const auto& n : iscsi_.list_nodes()) {
    for (const auto& l : n.luns) {
      if (l.bdev == bdev) {
        return make_error(Errc::kBusy, "bdev '{}' is exported over iSCSI as {} (unexport it first)", bdev, n.name);
      }
    }
  }
  return Status::ok();
}

}  // namespace castor::api
