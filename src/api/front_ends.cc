#include "api/front_ends.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <set>

namespace castor::api {

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

FrontEnds::FrontEnds(bdev::BdevRegistry& registry, pool::PoolManager& pools)
    : registry_(registry), pools_(pools) {}

FrontEnds::~FrontEnds() {
  stop();
  while (!entries_.empty()) entries_.pop_back();
}

void FrontEnds::add(std::unique_ptr<frontend::FrontEnd> front_end) {
  std::lock_guard lk(mu_);
  assert(!entry_locked(front_end->protocol()));
  entries_.push_back(Entry{std::move(front_end), {}});
}

std::vector<std::string> FrontEnds::protocols() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.emplace_back(e.front_end->protocol());
  return out;
}

const FrontEnds::Entry* FrontEnds::entry_locked(const std::string& protocol) const {
  for (const auto& e : entries_) {
    if (protocol == e.front_end->protocol()) return &e;
  }
  return nullptr;
}

frontend::FrontEnd* FrontEnds::find(const std::string& protocol) const {
  const Entry* e = entry_locked(protocol);
  return e ? e->front_end.get() : nullptr;
}

void FrontEnds::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // entries_ no longer changes: add() comes only before any other call.
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    it->front_end->stop();
    spdlog::info("{} front end stopped", it->front_end->display_name());
  }
}

Result<uint16_t> FrontEnds::listen(const std::string& protocol, const std::string& address) {
  auto hp = parse_host_port(address);
  if (!hp) return hp.status();
  std::lock_guard lk(mu_);
  const Entry* e = entry_locked(protocol);
  if (!e) return make_error(Errc::kInvalidArgument, "unknown protocol '{}'", protocol);
  if (stopped_) return Status(Errc::kBusy, "the engine is shutting down");
  auto bound = e->front_end->listen(hp->first, hp->second);
  if (!bound) return bound.status();
  entries_[static_cast<size_t>(e - entries_.data())].listeners.push_back({hp->first, *bound});
  return *bound;
}

std::vector<ListenerAddress> FrontEnds::listeners(const std::string& protocol) const {
  std::lock_guard lk(mu_);
  const Entry* e = entry_locked(protocol);
  return e ? e->listeners : std::vector<ListenerAddress>{};
}

void FrontEnds::set_advertised_host(std::string host) {
  std::lock_guard lk(mu_);
  advertised_host_ = std::move(host);
}

std::vector<frontend::Export> FrontEnds::with_uris_locked(
    const Entry& e, std::vector<frontend::Export> exports) const {
  for (auto& x : exports) {
    for (const auto& l : e.listeners) {
      const std::string authority =
          uri_authority(advertised_host_.empty() ? l.host : advertised_host_, l.port);
      x.uris.push_back(e.front_end->uri(authority, x.name));
    }
  }
  return exports;
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

Result<frontend::Export> FrontEnds::add_export(const std::string& protocol,
                                               frontend::ExportSpec spec) {
  if (spec.bdev.empty()) return Status(Errc::kInvalidArgument, "bdev name is required");
  std::lock_guard lk(mu_);
  const Entry* e = entry_locked(protocol);
  if (!e) return make_error(Errc::kInvalidArgument, "unknown protocol '{}'", protocol);
  if (Status s = check_not_retiring_locked(spec.bdev); !s) return s;
  auto info = registry_.info(spec.bdev);
  if (!info) return info.status();
  if (spec.kind == "bdev" && spec.uuid.is_nil()) {
    spec.uuid = info->uuid;  // a nexus bdev's UUID is the nexus UUID
    if (info->module == "nexus") spec.kind = "nexus";
    if (info->module == "replica") {
      auto r = find_replica(spec.bdev);
      if (!r) return r.status();
      spec.kind = "replica";
      spec.uuid = r->uuid;
    }
  }
  if (!spec.name) spec.name = e->front_end->default_name(spec);
  // One protocol per bdev: each holds the bdev in its own way (an NVMe-oF namespace
  // claims it; an NBD client opens it per connection, which the claim would refuse).
  for (const auto& other : entries_) {
    if (&other == e) continue;
    for (const auto& x : other.front_end->exports()) {
      if (x.bdev != spec.bdev) continue;
      return make_error(Errc::kBusy, "bdev '{}' is exported over {} as '{}' (unexport it first)",
                        spec.bdev, other.front_end->display_name(), x.name);
    }
  }
  auto made = e->front_end->add_export(spec);
  if (!made) return made.status();
  return std::move(with_uris_locked(*e, {std::move(*made)}).front());
}

Status FrontEnds::remove_export(const std::string& protocol, const std::string& name_or_bdev,
                                bool force) {
  frontend::FrontEnd* fe = nullptr;
  std::string name = name_or_bdev, bdev;
  {
    std::lock_guard lk(mu_);
    const Entry* e = entry_locked(protocol);
    if (!e) return make_error(Errc::kInvalidArgument, "unknown protocol '{}'", protocol);
    const auto all = e->front_end->exports();
    // By name first (NBD's default export is named ""), else by bdev.
    if (std::none_of(all.begin(), all.end(), [&](const auto& x) { return x.name == name; })) {
      for (const auto& x : all) {
        if (x.bdev == name_or_bdev) name = x.name;
      }
    }
    const char* display = e->front_end->display_name();
    auto x = std::find_if(all.begin(), all.end(), [&](const auto& x) { return x.name == name; });
    if (x == all.end()) {
      if (name_or_bdev.empty()) return Status(Errc::kInvalidArgument, "an export name is required");
      if (registry_.find(name_or_bdev)) {
        return make_error(Errc::kNotFound, "bdev '{}' is not exported over {}", name_or_bdev,
                          display);
      }
      return make_error(Errc::kNotFound, "{} export '{}' does not exist", display, name_or_bdev);
    }
    bdev = x->bdev;
    if (Status s = check_not_retiring_locked(bdev); !s) return s;
    retiring_[bdev] = "being unexported";
    fe = e->front_end.get();
  }
  // Without the lock: a removal may wait for its clients' I/O (an iSCSI node drains its
  // sessions for up to 5 s), and other exports, and listing them, go on meanwhile.
  const Status s = fe->remove_export(name, force);
  std::lock_guard lk(mu_);
  retiring_.erase(bdev);
  return s;
}

std::vector<frontend::Export> FrontEnds::exports(const std::string& protocol) const {
  std::lock_guard lk(mu_);
  std::vector<frontend::Export> out;
  for (const auto& e : entries_) {
    if (!protocol.empty() && protocol != e.front_end->protocol()) continue;
    for (auto& x : with_uris_locked(e, e.front_end->exports())) out.push_back(std::move(x));
  }
  return out;
}

std::vector<frontend::Export> FrontEnds::exports_of(const std::string& bdev) const {
  auto out = exports();
  std::erase_if(out, [&](const auto& x) { return x.bdev != bdev; });
  return out;
}

Status FrontEnds::check_not_exported_locked(const std::string& bdev) const {
  for (const auto& e : entries_) {
    for (const auto& x : e.front_end->exports()) {
      if (x.bdev != bdev) continue;
      return make_error(Errc::kBusy, "bdev '{}' is exported over {} as '{}' (unexport it first)",
                        bdev, e.front_end->display_name(), x.name);
    }
  }
  return Status::ok();
}

Status FrontEnds::destroy_unless_exported(const std::vector<std::string>& bdevs,
                                          const std::function<Status()>& destroy) {
  const std::set<std::string> names(bdevs.begin(), bdevs.end());
  {
    std::lock_guard lk(mu_);
    for (const auto& b : names) {
      if (Status s = check_not_retiring_locked(b); !s) return s;
      if (Status s = check_not_exported_locked(b); !s) return s;
    }
    for (const auto& b : names) retiring_[b] = "being destroyed";
  }
  const Status s = destroy();
  std::lock_guard lk(mu_);
  for (const auto& b : names) retiring_.erase(b);
  return s;
}

Status FrontEnds::check_not_retiring_locked(const std::string& bdev) const {
  auto it = retiring_.find(bdev);
  if (it == retiring_.end()) return Status::ok();
  return make_error(Errc::kBusy, "bdev '{}' is {}", bdev, it->second);
}

Status FrontEnds::grow_if_allowed(const std::string& bdev, const std::function<Status()>& grow,
                                  const char* noun) {
  std::lock_guard lk(mu_);
  for (const auto& e : entries_) {
    for (const auto& x : e.front_end->exports()) {
      if (x.bdev != bdev) continue;
      if (Status s = e.front_end->check_resize(x); !s) {
        const bool nexus = std::string_view(noun) == "nexus";
        return make_error(s.code(), "{} '{}' is {} over {} as '{}': {} ({} it, {} it, {} it again)",
                          noun, bdev, nexus ? "published" : "exported", e.front_end->display_name(),
                          x.name, s.message(), nexus ? "unpublish" : "unexport",
                          nexus ? "resize" : "grow", nexus ? "publish" : "export");
      }
    }
  }
  if (Status s = grow(); !s) return s;
  for (const auto& e : entries_) e.front_end->announce_resize(bdev);
  return Status::ok();
}

void FrontEnds::announce_resize(const std::string& bdev) {
  std::lock_guard lk(mu_);
  for (const auto& e : entries_) e.front_end->announce_resize(bdev);
}

std::vector<frontend::Metric> FrontEnds::metrics() const {
  std::vector<frontend::Metric> out;
  for (const auto& e : entries_) {
    for (auto& m : e.front_end->metrics()) out.push_back(std::move(m));
  }
  return out;
}

}  // namespace castor::api
