#include "bdev/registry.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "bdev/modules/modules.h"

namespace castor::bdev {

Result<std::string> BdevModule::name_for(const Uri& uri) const {
  std::string n = uri.get("name");
  if (n.empty()) n = uri.name_from_path();
  if (n.empty()) {
    return make_error(Errc::kInvalidArgument, "URI '{}' names no bdev (give a path or name=)",
                      uri.text);
  }
  return n;
}

namespace {
Status check_name(const std::string& n) {
  if (n.size() > 128) return make_error(Errc::kInvalidArgument, "bdev name too long (max 128)");
  for (char c : n) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) {
      return make_error(Errc::kInvalidArgument,
                        "bdev name '{}' has an invalid character (allowed: A-Z a-z 0-9 - _ . :)",
                        n);
    }
  }
  return Status::ok();
}
}  // namespace

BdevRegistry::BdevRegistry(reactor::ReactorGroup& reactors) : reactors_(reactors) {
  register_module(make_malloc_module());
  register_module(make_null_module());
  register_module(make_uring_module());
  register_module(make_file_module());
  register_module(make_fault_module());
}

BdevRegistry::~BdevRegistry() { destroy_all(); }

void BdevRegistry::register_module(std::unique_ptr<BdevModule> m) {
  std::lock_guard lk(mu_);
  std::string s = m->scheme();
  modules_[s] = std::move(m);
}

std::vector<std::string> BdevRegistry::schemes() const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (const auto& [k, v] : modules_) out.push_back(k);
  return out;
}

Result<BdevInfo> BdevRegistry::create(const std::string& uri_text) {
  auto uri = Uri::parse(uri_text);
  if (!uri) return uri.status();
  BdevModule* module = nullptr;
  std::string name;
  {
    std::lock_guard lk(mu_);
    auto mit = modules_.find(uri->scheme);
    if (mit == modules_.end()) {
      std::string known;
      for (const auto& [k, v] : modules_) known += (known.empty() ? "" : ", ") + k;
      return make_error(Errc::kInvalidArgument, "unknown bdev type '{}' in '{}' (known: {})",
                        uri->scheme, uri_text, known);
    }
    auto n = mit->second->name_for(*uri);
    if (!n) return n.status();
    if (auto st = check_name(*n); !st) return st;
    if (!name_free_locked(*n)) {
      return make_error(Errc::kAlreadyExists, "bdev '{}' already exists", *n);
    }
    module = mit->second.get();
    name = *n;
    creating_.insert(name);  // reserved until it is added or the create fails
  }
  // Without the lock: a module may take long (an nvmf:// bdev connects, up to its connect
  // timeout; a large RAM disk is faulted in), and every lookup, listing and stats scrape
  // would wait for it.
  auto b = module->create(*uri, name, *this);
  std::lock_guard lk(mu_);
  creating_.erase(name);
  if (!b) return b.status();
  std::shared_ptr<Bdev> bdev(std::move(b.value()));
  bdev->uri_ = uri_text;
  bdev->set_reactor_count(reactors_.size());
  bdevs_[name] = bdev;
  order_.push_back(name);
  spdlog::info("bdev created name={} module={} block_size={} num_blocks={} uri={}", bdev->name(),
               bdev->module(), bdev->block_size(), bdev->num_blocks(), uri_text);
  return bdev->info();
}

Status BdevRegistry::add(std::shared_ptr<Bdev> bdev, const std::string& uri) {
  if (auto st = check_name(bdev->name()); !st) return st;
  std::lock_guard lk(mu_);
  if (!name_free_locked(bdev->name())) {
    return make_error(Errc::kAlreadyExists, "bdev '{}' already exists", bdev->name());
  }
  bdev->uri_ = uri;
  bdev->set_reactor_count(reactors_.size());
  order_.push_back(bdev->name());
  bdevs_[bdev->name()] = std::move(bdev);
  return Status::ok();
}

bool BdevRegistry::name_free(const std::string& name) const {
  std::lock_guard lk(mu_);
  return name_free_locked(name);
}

bool BdevRegistry::name_free_locked(const std::string& name) const {
  return bdevs_.count(name) == 0 && creating_.count(name) == 0;
}

Status BdevRegistry::destroy(const std::string& name) {
  std::shared_ptr<Bdev> b;
  {
    std::lock_guard lk(mu_);
    auto it = bdevs_.find(name);
    if (it == bdevs_.end()) return make_error(Errc::kNotFound, "bdev '{}' does not exist", name);
    b = it->second;
    if (b->owner) {
      return make_error(Errc::kBusy, "bdev '{}' belongs to '{}'; destroy it there", name, b->owner->to_string());
    }
    if (b->claim) {
      return make_error(Errc::kBusy, "bdev '{}' is in use by '{}'", name, b->claim->to_string());
    }
    if (uint32_t n = b->open_descs.load(); n > 0) {
      return make_error(Errc::kBusy, "bdev '{}' has {} open descriptor(s)", name, n);
    }
    bdevs_.erase(it);
    std::erase(order_, name);
  }
  // Channels belong to their reactors: each reactor drops its own.
  reactors_.run_on_all([&](reactor::Reactor& r) { b->drop_channel(r.id()); });
  b.reset();  // releases claims the bdev holds on others (fault base) in its destructor
  spdlog::info("bdev destroyed name={}", name);
  return Status::ok();
}

void BdevRegistry::destroy_all() {
  for (;;) {
    std::string name;
    {
      std::lock_guard lk(mu_);
      if (order_.empty()) return;
      name = order_.back();
    }
    auto st = destroy(name);
    if (!st) {
      spdlog::warn("bdev destroy at shutdown: {}", st.to_string());
      std::lock_guard lk(mu_);
      bdevs_.erase(name);
      std::erase(order_, name);
    }
  }
}

std::vector<BdevInfo> BdevRegistry::list() const {
  std::lock_guard lk(mu_);
  std::vector<BdevInfo> out;
  for (const auto& n : order_) out.push_back(bdevs_.at(n)->info());
  return out;
}

Result<BdevInfo> BdevRegistry::info(const std::string& name) const {
  auto b = find(name);
  if (!b) return make_error(Errc::kNotFound, "bdev '{}' does not exist", name);
  std::lock_guard lk(mu_);
  return b->info();
}

Result<BdevStatsSnapshot> BdevRegistry::stats(const std::string& name) const {
  // Read under the lock rather than through a shared_ptr copy: a scrape then never holds
  // the last reference, so destroy() stays the point where the bdev dies (and a fault
  // bdev's claim on its base ends). The read itself touches only Bdev-owned storage.
  std::lock_guard lk(mu_);
  auto it = bdevs_.find(name);
  if (it == bdevs_.end()) return make_error(Errc::kNotFound, "bdev '{}' does not exist", name);
  return it->second->stats();
}

std::shared_ptr<Bdev> BdevRegistry::find(const std::string& name) const {
  std::lock_guard lk(mu_);
  auto it = bdevs_.find(name);
  return it == bdevs_.end() ? nullptr : it->second;
}

Result<BdevDesc> BdevRegistry::open(const std::string& name) {
  std::lock_guard lk(mu_);
  auto it = bdevs_.find(name);
  if (it == bdevs_.end()) return make_error(Errc::kNotFound, "bdev '{}' does not exist", name);
  Bdev* b = it->second.get();
  if (b->claim) return make_error(Errc::kBusy, "bdev '{}' is claimed by '{}'", name, b->claim->to_string());
  return BdevDesc(b);
}

Result<BdevDesc> BdevRegistry::open(const std::string& name, const Claim& claim) {
  std::lock_guard lk(mu_);
  auto d = open(name);  // recursive mutex
  if (d) bdevs_.at(name)->claim = claim;
  return d;
}

Status BdevRegistry::set_owner(const std::string& name, std::optional<Claim> owner) {
  std::lock_guard lk(mu_);
  auto it = bdevs_.find(name);
  if (it == bdevs_.end()) return make_error(Errc::kNotFound, "bdev '{}' does not exist", name);
  it->second->owner = std::move(owner);
  return Status::ok();
}

void BdevRegistry::release_claim(const std::string& name, const Claim& claim) {
  std::lock_guard lk(mu_);
  auto it = bdevs_.find(name);
  if (it != bdevs_.end() && it->second->claim == claim) it->second->claim.reset();
}

}  // namespace castor::bdev
