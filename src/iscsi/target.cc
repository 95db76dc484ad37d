#include "iscsi/target.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>

#include <spdlog/spdlog.h>

#include "iscsi/connection.h"

namespace castor::iscsi {

namespace {
bool valid_node_name(const std::string& n) {
  if (n.empty() || n.size() > 223) return false;
  if (n.rfind("iqn.", 0) != 0 && n.rfind("eui.", 0) != 0 && n.rfind("naa.", 0) != 0) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':';
  });
}
}  // namespace

IscsiTarget::IscsiTarget(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry, TargetOptions opts)
    : reactors_(reactors),
      registry_(registry),
      opts_(std::move(opts)),
      local_sessions_(reactors.size()),
      tcp_(reactors, {.protocol = "iscsi", .buffer_budget_bytes = opts_.buffer_budget_bytes},
           [this](int fd, reactor::Reactor& r) { (new IscsiConnection(*this, r, fd))->start(); }) {
  login_cfg_.limits = opts_.limits;
  login_cfg_.portal_group_tag = opts_.portal_group_tag;
  login_cfg_.cmd_window = opts_.queue_depth;
  login_cfg_.discovery = opts_.discovery;
  login_cfg_.find_target = [this](const std::string& name) -> std::optional<NodeAccess> {
    std::lock_guard g(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end() || it->second.removing) return std::nullopt;
    return it->second.cfg.access;
  };
  login_cfg_.new_tsih = [this] { return new_tsih(); };
}

IscsiTarget::~IscsiTarget() { stop(); }

void IscsiTarget::hand_over(int fd, uint32_t k, std::vector<uint8_t> initial) {
  reactor::Reactor& r = reactors_.at(k);
  r.send([this, &r, fd, b = std::move(initial)]() mutable {
    // stop() marks the server stopping before it sweeps the reactors: a socket that
    // arrives here after that would outlive the sweep.
    if (tcp_.stopping()) {
      ::close(fd);
      return;
    }
    (new IscsiConnection(*this, r, fd, std::move(b)))->start();
  });
}

void IscsiTarget::adopt(int fd, size_t reactor_index) { tcp_.adopt(fd, reactor_index); }

Status IscsiTarget::listen(const std::string& host, uint16_t port, uint16_t* bound) {
  return tcp_.listen(host, port, bound);
}

Status IscsiTarget::add_node(const NodeConfig& cfg) {
  if (!valid_node_name(cfg.name)) {
    return make_error(Errc::kInvalidArgument,
                      "'{}' is not a valid iSCSI name (iqn./eui./naa., lower-case letters, digits, '.', '-', ':')",
                      cfg.name);
  }
  if (cfg.luns.empty()) return make_error(Errc::kInvalidArgument, "target {} has no LUN", cfg.name);
  for (const ChapCredentials* c : {&cfg.access.chap, &cfg.access.mutual_chap}) {
    if (c->enabled() && c->secret.size() < 12) {
      return make_error(Errc::kInvalidArgument, "CHAP secret for '{}' is shorter than 12 bytes", c->user);
    }
  }
  if (cfg.access.mutual_chap.enabled() && !cfg.access.chap.enabled()) {
    return make_error(Errc::kInvalidArgument, "mutual CHAP needs CHAP");
  }
  {
    std::lock_guard g(mu_);
    if (nodes_.count(cfg.name)) return make_error(Errc::kAlreadyExists, "iSCSI target {} already exists", cfg.name);
  }
  scsi::DeviceInfo di;
  di.target_name = cfg.name;
  auto dev = std::make_shared<scsi::Device>(registry_, di);
  for (const auto& l : cfg.luns) {
    if (Status s = dev->add_lun(l); !s) return s;
  }
  std::lock_guard g(mu_);
  if (nodes_.count(cfg.name)) return make_error(Errc::kAlreadyExists, "iSCSI target {} already exists", cfg.name);
  nodes_[cfg.name] = Node{cfg, std::move(dev)};
  spdlog::info("iscsi target {} added ({} LUN(s), chap={})", cfg.name, cfg.luns.size(), cfg.access.chap.enabled());
  return Status::ok();
}

Status IscsiTarget::remove_node(const std::string& name, uint64_t drain_timeout_ms) {
  std::shared_ptr<scsi::Device> dev;
  std::vector<std::string> bdevs;
  {
    std::lock_guard g(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) return make_error(Errc::kNotFound, "iSCSI target {} does not exist", name);
    if (it->second.removing) return make_error(Errc::kBusy, "iSCSI target {} is already being removed", name);
    it->second.removing = true;  // no new logins or sessions from here on
    dev = it->second.dev;
    for (const auto& l : it->second.cfg.luns) bdevs.push_back("'" + l.bdev + "'");
  }
  close_sessions(name, 0);  // connection ids start at 1
  // The node's bdevs are held by its device, which its sessions share: wait until ours
  // (the node's and this copy) are the only references left, i.e. every connection that
  // used it is gone, including those still running a command on a hung bdev.
  // session_ended() signals each end; the periodic re-check is only a safety net.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_timeout_ms);
  std::unique_lock lk(mu_);
  while (dev.use_count() > 2) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    released_cv_.wait_until(lk, std::min(deadline, now + std::chrono::milliseconds(50)));
  }
  auto it = nodes_.find(name);
  const bool ours = it != nodes_.end() && it->second.dev == dev;
  if (dev.use_count() > 2) {
    // Not removed: the node stays exactly as it was (logins allowed again), so that the
    // bdevs are never held by a target that no longer lists them.
    if (ours) it->second.removing = false;
    std::set<std::string> initiators;
    size_t conns = 0;
    for (const auto& [id, sess] : sessions_) {
      if (sess.info.target != name) continue;
      ++conns;
      initiators.insert(sess.info.initiator);
    }
    auto list = [](const auto& v) {
      std::string out;
      for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
      return out;
    };
    return make_error(Errc::kBusy,
                      "iSCSI target {} is still in use after {} ms: {} closing connection(s){}{} "
                      "still running commands on bdev {} (a hung device?); the target stays "
                      "exported, remove it again once they finish",
                      name, drain_timeout_ms, conns, initiators.empty() ? "" : " from ",
                      list(initiators), list(bdevs));
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // the reactors' last use of `dev`
  if (ours) nodes_.erase(it);
  lk.unlock();
  dev.reset();  // closes the LUNs' descriptors: the bdevs are free when this returns
  spdlog::info("iscsi target {} removed", name);
  return Status::ok();
}

std::vector<NodeInfo> IscsiTarget::list_nodes() const {
  std::lock_guard g(mu_);
  std::vector<NodeInfo> out;
  for (const auto& [n, node] : nodes_) {
    NodeInfo i;
    i.name = n;
    i.alias = node.cfg.alias;
    i.luns = node.cfg.luns;
    i.chap = node.cfg.access.chap.enabled();
    i.mutual_chap = node.cfg.access.mutual_chap.enabled();
    i.allowed_initiators = node.cfg.access.allowed_initiators;
    std::vector<uint16_t> seen;
    for (const auto& [id, s] : sessions_) {
      if (s.info.target == n && std::find(seen.begin(), seen.end(), s.info.tsih) == seen.end()) {
        seen.push_back(s.info.tsih);
      }
    }
    i.sessions = static_cast<uint32_t>(seen.size());
    out.push_back(std::move(i));
  }
  return out;
}

size_t IscsiTarget::announce_resize(const std::string& bdev) {
  std::vector<std::shared_ptr<scsi::Device>> devs;
  {
    std::lock_guard g(mu_);
    for (const auto& [name, node] : nodes_) {
      if (!node.removing) devs.push_back(node.dev);
    }
  }
  size_t n = 0;
  for (const auto& d : devs) n += d->capacity_changed(bdev);
  return n;
}

std::shared_ptr<scsi::Device> IscsiTarget::device(const std::string& node) const {
  std::lock_guard g(mu_);
  auto it = nodes_.find(node);
  return it == nodes_.end() || it->second.removing ? nullptr : it->second.dev;
}

std::vector<std::string> IscsiTarget::node_names() const {
  std::lock_guard g(mu_);
  std::vector<std::string> out;
  for (const auto& [n, node] : nodes_) {
    if (!node.removing) out.push_back(n);
  }
  return out;
}

void IscsiTarget::count(uint64_t TargetStats::*field) {
  std::lock_guard g(mu_);
  stats_.*field += 1;
}

TargetStats IscsiTarget::stats() const {
  std::lock_guard g(mu_);
  TargetStats s = stats_;
  s.connections_accepted = tcp_.connections_accepted();
  return s;
}

void IscsiTarget::stop() {
  tcp_.stop();
  std::lock_guard lk(mu_);
  nodes_.clear();
}

}  // namespace castor::iscsi
