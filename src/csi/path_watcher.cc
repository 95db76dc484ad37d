#include "csi/path_watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace castor::csi {

namespace cv1 = castor::control::v1;

PathWatcher::PathWatcher(NodeState& state, OperationLocks& locks,
                         std::shared_ptr<control::ControlEndpoints> control, InitiatorOptions opts,
                         std::chrono::milliseconds period)
    : state_(state), locks_(locks), control_(std::move(control)), opts_(opts), period_(period) {}

PathWatcher::~PathWatcher() { stop(); }

void PathWatcher::start() {
  thread_ = std::thread([this] {
    std::unique_lock lk(mu_);
    while (!stopping_) {
      lk.unlock();
      check_once();
      lk.lock();
      cv_.wait_for(lk, period_, [this] { return stopping_; });
    }
  });
}

void PathWatcher::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PathWatcher::check_once() {
  for (const auto& id : state_.list()) check_volume(id);
}

// Whether `id` needs the watcher: an NVMe/TCP volume with no live path, or with a path
// that is not live and not at the recorded address. Read without the volume's lock (the
// record is replaced atomically), so a healthy volume never holds up a CSI call.
bool PathWatcher::needs_work(const std::string& id) {
  auto rec = state_.load(id);
  if (!rec || !*rec) return false;
  auto t = TargetAddress::parse((*rec)->uri);
  if (!t || t->protocol != "nvmf") return false;
  const auto ctrls = nvme_controllers(t->name);
  const bool live = std::any_of(ctrls.begin(), ctrls.end(), [](const auto& c) { return c.state == "live"; });
  if (!live) return !ctrls.empty();
  return std::any_of(ctrls.begin(), ctrls.end(), [&](const auto& c) {
    return c.state != "live" && !(c.host == t->host && c.port == t->port);
  });
}

void PathWatcher::check_volume(const std::string& id) {
  if (!needs_work(id)) return;
  auto held = locks_.try_acquire(id);
  if (!held) return;  // a CSI call is working on it
  auto rec = state_.load(id);
  if (!rec || !*rec) return;
  StagedVolume& v = **rec;
  auto t = TargetAddress::parse(v.uri);
  if (!t || t->protocol != "nvmf") return;
  const auto ctrls = nvme_controllers(t->name);
  const bool live = std::any_of(ctrls.begin(), ctrls.end(), [](const auto& c) { return c.state == "live"; });
  if (live) {
    for (const auto& c : ctrls) {
      if (c.state == "live" || (c.host == t->host && c.port == t->port)) continue;
      // A path to where the nexus was: it will never come back there.
      if (Status s = nvme_disconnect_controller(c.name); s) {
        spdlog::info("volume {}: dropped the path {} to {}:{} (the nexus is at {})", id, c.name, c.host, c.port,
                     v.uri);
      }
    }
    return;
  }
  if (ctrls.empty()) return;  // not connected at all: nothing to follow (unstaged, or lost)
  cv1::GetVolumeRequest req;
  req.set_uuid(id);
  cv1::Volume vol;
  grpc::Status s = control_->call(std::chrono::seconds(5), [&](control::ControlEndpoints::Endpoint& ep,
                                                               grpc::ClientContext& ctx) {
    return ep.stub->GetVolume(&ctx, req, &vol);
  });
  if (!s.ok() || vol.uuid() != id || !vol.has_target() || vol.target().uri().empty()) return;
  auto nt = TargetAddress::parse(vol.target().uri());
  if (!nt || nt->protocol != "nvmf" || nt->name != t->name) return;
  if (nt->host == t->host && nt->port == t->port) return;  // same address: the kernel reconnects itself
  if (std::any_of(ctrls.begin(), ctrls.end(), [&](const auto& c) { return c.host == nt->host && c.port == nt->port; })) {
    return;  // connecting there already
  }
  spdlog::info("volume {}: no live path; its nexus is now at {} (was {}): connecting", id, nt->uri, v.uri);
  if (Status c = nvme_connect_path(*nt, opts_); !c) {
    spdlog::warn("volume {}: cannot connect {}: {}", id, nt->uri, c.message());
    return;
  }
  v.uri = nt->uri;
  if (Status w = state_.save(v); !w) spdlog::warn("volume {}: {}", id, w.message());
}

}  // namespace castor::csi
