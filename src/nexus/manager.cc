#include "nexus/manager.h"

#include <spdlog/spdlog.h>

namespace castor::nexus {

NexusManager::NexusManager(bdev::BdevRegistry& registry, ChildHealthStore& store, bdev::HostId host_id)
    : registry_(registry), store_(store), host_id_(host_id) {}

NexusManager::~NexusManager() { destroy_all(); }

void NexusManager::destroy_all(uint64_t drain_timeout_ms) {
  std::vector<std::string> names;
  {
    std::lock_guard lk(mu_);
    for (const auto& [n, _] : nexuses_) names.push_back(n);
  }
  for (const auto& name : names) {
    auto n = find(name);
    if (!n) continue;
    auto st = destroy(name, false, drain_timeout_ms);
    if (st || st.code() == Errc::kNotFound) continue;
    spdlog::warn("nexus destroy at shutdown: {}; giving it up", st.to_string());
    tear_down(name, n, drain_timeout_ms);
  }
}

void NexusManager::tear_down(const std::string& name, const std::shared_ptr<Nexus>& n,
                             uint64_t timeout_ms) {
  // Its rebuild copies and child requests point into it and its jobs, and their
  // completions reach the worker: it is freed only once none is left (give_up), and not
  // while anyone may still submit to it (the registry drops its channels first).
  bool freeable = n->give_up(timeout_ms);
  if (freeable) {
    if (auto st = registry_.destroy(name); !st) {
      spdlog::error("nexus={} cannot be unregistered at shutdown: {}", name, st.to_string());
      freeable = false;
    }
  }
  if (freeable) {
    n->close_children();  // owned children are destroyed: nothing of the nexus is in them now
  } else {
    // Kept with its children open and a descriptor of its own, so that the registry never
    // drops its channels or destroys the children that still have its requests.
    spdlog::error("nexus={} still has I/O in flight at shutdown; kept (leaked), not freed under it",
                  name);
    n->forget_worker();
    keep_forever(n);
    keep_forever(std::make_shared<bdev::BdevDesc>(n.get()));
  }
  std::lock_guard lk(mu_);
  nexuses_.erase(name);
}

Result<NexusInfo> NexusManager::create(const std::string& name, uint64_t size_bytes,
                                       const std::vector<std::string>& children,
                                       const NexusOptions& opts) {
  {
    std::lock_guard lk(mu_);
    if (nexuses_.count(name) || creating_.count(name)) {
      return make_error(Errc::kAlreadyExists, "nexus '{}' already exists", name);
    }
    if (!registry_.name_free(name)) {
      return make_error(Errc::kAlreadyExists, "a bdev named '{}' already exists", name);
    }
    creating_.insert(name);
  }
  // Opening the children (connects to remote replicas, each up to its connect timeout)
  // and the health store's calls run without the manager's lock: find(), info(), list()
  // and the other nexuses' calls answer meanwhile. The name is reserved (creating_).
  auto n = Nexus::create(NexusDeps{registry_, store_, worker_, host_id_}, name, size_bytes, children, opts);
  std::lock_guard lk(mu_);
  creating_.erase(name);
  if (!n) return n.status();
  if (auto st = registry_.add(*n, "nexus:///" + name); !st) {
    (*n)->close_children();  // a bdev of that name was created meanwhile
    return st;
  }
  nexuses_[name] = *n;
  (*n)->start_initial_rebuilds();
  spdlog::info("nexus created name={} size={} children={}", name, (*n)->size_bytes(),
               children.size());
  return (*n)->describe();
}

Status NexusManager::destroy(const std::string& name, bool purge, uint64_t drain_timeout_ms) {
  std::shared_ptr<Nexus> n;
  {
    std::lock_guard lk(mu_);
    auto it = nexuses_.find(name);
    if (it == nexuses_.end()) return make_error(Errc::kNotFound, "nexus '{}' does not exist", name);
    if (destroying_.count(name)) {
      return make_error(Errc::kBusy, "nexus '{}' is being destroyed", name);
    }
    n = it->second;
    if (auto info = registry_.info(name);
        info && (info->open_descs > 0 || !info->claimed_by.empty())) {
      return make_error(Errc::kBusy, "nexus '{}' is in use ({} open descriptor(s){}{})", name,
                        info->open_descs, info->claimed_by.empty() ? "" : ", claimed by ",
                        info->claimed_by);
    }
    destroying_.insert(name);
  }
  // The shutdown waits (up to drain_timeout_ms) without the manager's lock.
  const Status down = n->shutdown(drain_timeout_ms);
  std::lock_guard lk(mu_);
  destroying_.erase(name);
  if (!down) return down;
  if (auto st = registry_.destroy(name); !st) return st;
  n->close_children();
  nexuses_.erase(name);
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
