#include "nexus/manager.h"

#include <spdlog/spdlog.h>

namespace castor::nexus {

NexusManager::NexusManager(bdev::BdevRegistry& registry, ChildHealthStore& store, bdev::HostId host_id)
    : registry_(registry), store_(store), host_id_(host_id) {}

NexusManager::~NexusManager() {
  std::vector<std::string> names;
  {
    std::lock_guard lk(mu_);
    for (const auto& [n, _] : nexuses_) names.push_back(n);
  }
  for (const auto& n : names) {
    if (auto st = destroy(n); !st) spdlog::warn("nexus destroy at shutdown: {}", st.to_string());
  }
}

Result<NexusInfo> NexusManager::create(const std::string& name, uint64_t size_bytes,
                                       const std::vector<std::string>& children,
                                       const NexusOptions& opts) {
  std::lock_guard lk(mu_);
  if (nexuses_.count(name)) return make_error(Errc::kAlreadyExists, "nexus '{}' already exists", name);
  if (!registry_.name_free(name)) {
    return make_error(Errc::kAlreadyExists, "a bdev named '{}' already exists", name);
  }
  auto n = Nexus::create(NexusDeps{registry_, store_, worker_, host_id_}, name, size_bytes, children, opts);
  if (!n) return n.status();
  if (auto st = registry_.add(*n, "nexus:///" + name); !st) {
    (*n)->close_children();
    return st;
  }
  nexuses_[name] = *n;
  (*n)->start_initial_rebuilds();
  spdlog::info("nexus created name={} size={} children={}", name, (*n)->size_bytes(),
               children.size());
  return (*n)->describe();
}

Status NexusManager::destroy(const std::string& name, bool purge, uint64_t drain_timeout_ms) {
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(name);
  if (it == nexuses_.end()) return make_error(Errc::kNotFound, "nexus '{}' does not exist", name);
  auto n = it->second;
  if (auto info = registry_.info(name); info && (info->open_descs > 0 || !info->claimed_by.empty())) {
    return make_error(Errc::kBusy, "nexus '{}' is in use ({} open descriptor(s){}{})", name,
                      info->open_descs, info->claimed_by.empty() ? "" : ", claimed by ",
                      info->claimed_by);
  }
  if (auto st = n->shutdown(drain_timeout_ms); !st) return st;
  if (auto st = registry_.destroy(name); !st) return st;
  n->close_children();
  nexuses_.erase(it);
  if (purge) {
    if (auto st = store_.purge(name); !st) {
      spdlog::warn("nexus={} cannot purge its health records: {}", name, st.to_string());
    }
  }
  spdlog::info("nexus destroyed name={}", name);
  return Status::ok();
}

std::shared_ptr<Nexus> NexusManager::find(const std::string& name) const {
  std::lock_guard lk(mu_);
  auto it = nexuses_.find(name);
  return it == nexuses_.end() ? nullptr : it->second;
}

Result<NexusInfo> NexusManager::info(const std::string& name) const {
  auto n = find(name);
  if (!n) return make_error(Errc::kNotFound, "nexus '{}' does not exist", name);
  return n->describe();
}

std::vector<NexusInfo> NexusManager::list() const {
  std::vector<std::shared_ptr<Nexus>> ns;
  {
    std::lock_guard lk(mu_);
    for (const auto& [_, n] : nexuses_) ns.push_back(n);
  }
  std::vector<NexusInfo> out;
  for (const auto& n : ns) out.push_back(n->describe());
  return out;
}

}  // namespace castor::nexus
