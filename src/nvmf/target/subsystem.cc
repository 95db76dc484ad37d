// The target's subsystems and namespaces (target.h, controller.h): exporting and
// unexporting them, live namespace changes delivered to the controllers as snapshots
// and notices, waiting for the bdev I/O still running on what is removed, a subsystem's
// ANA state and its change notices, and the discovery log page.

#include <algorithm>
#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "nvmf/target/identify.h"
#include "nvmf/target/qpair.h"

namespace castor::nvmf {

namespace {
bool is_ana_state(AnaState st) {
  switch (st) {
    case AnaState::kOptimized:
    case AnaState::kNonOptimized:
    case AnaState::kInaccessible:
    case AnaState::kPersistentLoss:
    case AnaState::kChange: return true;
  }
  return false;
}
}  // namespace

NvmfTarget::Namespace::Namespace() = default;
NvmfTarget::Namespace::~Namespace() = default;

// ---------------------------------------------------------------- subsystems

Status NvmfTarget::add_subsystem(const std::string& nqn, const std::vector<std::string>& allowed_hosts) {
  if (nqn.size() < 5 || nqn.size() > 223 || nqn.rfind("nqn.", 0) != 0) {
    return make_error(Errc::kInvalidArgument, "'{}' is not an NQN (nqn.yyyy-mm.reverse.domain:name, <= 223 bytes)", nqn);
  }
  if (nqn == kDiscoveryNqn) return make_error(Errc::kInvalidArgument, "the discovery NQN is reserved");
  std::lock_guard lk(mu_);
  if (subsystems_.count(nqn)) return make_error(Errc::kAlreadyExists, "subsystem '{}' already exists", nqn);
  auto s = std::make_unique<Subsystem>();
  s->nqn = nqn;
  s->serial = serial_from_uuid(Uuid::from_name(nqn));
  s->allowed_hosts = allowed_hosts;
  s->ana = std::make_shared<AnaGroup>();
  subsystems_[nqn] = std::move(s);
  genctr_++;
  return Status::ok();
}

Status NvmfTarget::remove_subsystem(const std::string& nqn, bool force, uint64_t drain_timeout_ms) {
  std::vector<std::pair<std::string, const NsInflight*>> held;  // bdev, its running I/O
  {
    std::lock_guard lk(mu_);
    auto it = subsystems_.find(nqn);
    if (it == subsystems_.end()) return make_error(Errc::kNotFound, "subsystem '{}' does not exist", nqn);
    Subsystem& s = *it->second;
    if (s.removing) return make_error(Errc::kBusy, "subsystem '{}' is already being removed", nqn);
    for (const auto& [id, ns] : s.namespaces) {
      if (ns->removing) return make_error(Errc::kBusy, "namespace {} of '{}' is being removed", id, nqn);
    }
    for (const auto& [id, w] : controllers_) {
      auto c = w.lock();
      if (!force && c && c->subnqn == nqn) {
        return make_error(Errc::kBusy, "subsystem '{}' has connected controllers", nqn);
      }
    }
    // From now on nobody can connect to it, and its namespaces stay as they are (adding
    // and removing them is refused), so `held` stays valid.
    s.removing = true;
    genctr_++;
    for (const auto& [id, ns] : s.namespaces) held.emplace_back(ns->bdev, ns->inflight.get());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_timeout_ms);
  if (force) {
    // Close every queue pair of its controllers (again, for an I/O queue that joined a
    // controller meanwhile) until none is left. A poll: queue pairs live on their
    // reactors and are reached by message.
    for (;;) {
      size_t open = 0;
      for (size_t i = 0; i < reactors_.size(); ++i) {
        reactors_.run_on(i, [this, i, &nqn, &open](reactor::Reactor&) {
          tcp_.for_each_connection(i, [&](reactor::ServedConnection& c) {
            auto& q = static_cast<Qpair&>(c);
            if (!q.serves(nqn)) return;
            ++open;
            q.close("subsystem removed");
          });
        });
      }
      if (open == 0) break;
      if (std::chrono::steady_clock::now() >= deadline) break;  // the drain below reports it
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    spdlog::warn("nvmf: subsystem {} being removed with its hosts connected; they were disconnected", nqn);
  }
  // Commands of the closed queue pairs may still be running on the bdevs.
  std::string busy;
  for (const auto& [bdev, inflight] : held) {
    if (uint64_t left = wait_inflight(*inflight, deadline)) {
      busy += fmt::format("{}bdev '{}' still has {} I/O(s) running", busy.empty() ? "" : ", ", bdev, left);
    }
  }
  std::map<uint32_t, std::unique_ptr<Namespace>> gone;
  {
    std::lock_guard lk(mu_);
    auto it = subsystems_.find(nqn);  // still there: only this call removes it
    if (!busy.empty()) {
      // Not removed: exported again as it was (connects and discovery).
      it->second->removing = false;
      genctr_++;
      return make_error(Errc::kBusy,
                        "subsystem '{}' not removed: {} after {} ms (a hung device?); it stays{}, "
                        "remove it again once they finish",
                        nqn, busy, drain_timeout_ms,
                        force ? " (its hosts were disconnected and may connect again)" : "");
    }
    gone = std::move(it->second->namespaces);
    subsystems_.erase(it);
  }
  for (auto& [nsid, ns] : gone) {
    ns->desc.close();
    registry_.release_claim(ns->bdev, bdev::Claim::nvmf_subsystem(nqn));
  }
  return Status::ok();
}

uint64_t NvmfTarget::wait_inflight(const NsInflight& inflight, std::chrono::steady_clock::time_point deadline) {
  // The counters are bumped on the I/O path (one per reactor, no lock, no wake-up), so
  // this polls them.
  while (inflight.total() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return inflight.total();
}

// ---------------------------------------------------------------- namespaces

Result<uint32_t> NvmfTarget::add_namespace(const std::string& nqn, const std::string& bdev, uint32_t nsid) {
  std::lock_guard lk(mu_);
  auto it = subsystems_.find(nqn);
  if (it == subsystems_.end()) return make_error(Errc::kNotFound, "subsystem '{}' does not exist", nqn);
  auto& s = *it->second;
  if (s.removing) return make_error(Errc::kBusy, "subsystem '{}' is being removed", nqn);
  if (nsid == 0) {
    nsid = 1;
    while (s.namespaces.count(nsid)) ++nsid;
  }
  if (s.namespaces.count(nsid)) return make_error(Errc::kAlreadyExists, "namespace {} of '{}' exists", nsid, nqn);
  auto d = registry_.open(bdev, bdev::Claim::nvmf_subsystem(nqn));
  if (!d) return d.status();
  auto ns = std::make_unique<Namespace>();
  ns->nsid = nsid;
  ns->bdev = bdev;
  ns->desc = std::move(d.value());
  ns->inflight = std::make_unique<NsInflight>(reactors_.size());
  const NsRef added{nsid, ns->desc.bdev(), ns->inflight.get(), &ns->desc};
  s.namespaces[nsid] = std::move(ns);
  publish_namespaces(nqn, nsid, [added](std::vector<NsRef>& v) {
    v.push_back(added);
    std::sort(v.begin(), v.end(), [](const NsRef& a, const NsRef& b) { return a.nsid < b.nsid; });
  });
  return nsid;
}

Status NvmfTarget::remove_namespace(const std::string& nqn, uint32_t nsid, uint64_t drain_timeout_ms) {
  NsRef ref{};
  std::string bdev;
  {
    std::lock_guard lk(mu_);
    auto it = subsystems_.find(nqn);
    if (it == subsystems_.end()) return make_error(Errc::kNotFound, "subsystem '{}' does not exist", nqn);
    if (it->second->removing) return make_error(Errc::kBusy, "subsystem '{}' is being removed", nqn);
    auto n = it->second->namespaces.find(nsid);
    if (n == it->second->namespaces.end()) {
      return make_error(Errc::kNotFound, "subsystem '{}' has no namespace {}", nqn, nsid);
    }
    Namespace& ns = *n->second;
    if (ns.removing) return make_error(Errc::kBusy, "namespace {} of '{}' is already being removed", nsid, nqn);
    // Hidden from every controller (and from new ones), but kept in the map: the NSID
    // stays taken and the subsystem stays while the removal is undecided.
    ns.removing = true;
    ref = {nsid, ns.desc.bdev(), ns.inflight.get(), &ns.desc};
    bdev = ns.bdev;
    publish_namespaces(nqn, nsid, [nsid](std::vector<NsRef>& v) {
      std::erase_if(v, [nsid](const NsRef& r) { return r.nsid == nsid; });
    });
  }
  // Messages from one thread run in order: once this returns, every queue pair has the
  // snapshot without the namespace, so no new command can find it.
  reactors_.run_on_all([](reactor::Reactor&) {});
  // Commands that found it before may still be running on the bdev; once they end,
  // nothing refers to it.
  const uint64_t left = wait_inflight(
      *ref.inflight, std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_timeout_ms));
  std::unique_ptr<Namespace> gone;
  {
    std::lock_guard lk(mu_);
    auto it = subsystems_.find(nqn);  // a subsystem with a namespace being removed stays
    auto n = it->second->namespaces.find(nsid);
    if (left == 0) {
      gone = std::move(n->second);
      it->second->namespaces.erase(n);
    } else {
      // Not removed: back in the subsystem as it was, announced like an added namespace.
      n->second->removing = false;
      publish_namespaces(nqn, nsid, [ref](std::vector<NsRef>& v) {
        if (std::any_of(v.begin(), v.end(), [&](const NsRef& r) { return r.nsid == ref.nsid; })) return;
        v.push_back(ref);
        std::sort(v.begin(), v.end(), [](const NsRef& a, const NsRef& b) { return a.nsid < b.nsid; });
      });
    }
  }
  if (!gone) {
    reactors_.run_on_all([](reactor::Reactor&) {});  // every queue pair sees it again
    return make_error(Errc::kBusy,
                      "namespace {} of '{}' not removed: bdev '{}' still has {} I/O(s) running "
                      "after {} ms (a hung device?); it stays in the subsystem, remove it again "
                      "once they finish",
                      nsid, nqn, bdev, left, drain_timeout_ms);
  }
  gone->desc.close();
  registry_.release_claim(bdev, bdev::Claim::nvmf_subsystem(nqn));
  spdlog::info("nvmf: namespace {} ({}) removed from {}", nsid, bdev, nqn);
  return Status::ok();
}

void NvmfTarget::publish_namespaces(const std::string& nqn, uint32_t nsid,
                                    const std::function<void(std::vector<NsRef>&)>& edit) {
  for (const auto& [cid, w] : controllers_) {
    auto ctrl = w.lock();
    if (!ctrl || ctrl->subnqn != nqn || ctrl->dead) continue;
    std::vector<uint64_t> qps;
    std::shared_ptr<const std::vector<NsRef>> snap;
    {
      std::lock_guard ck(ctrl->mu);
      auto v = std::make_shared<std::vector<NsRef>>(*ctrl->ns);
      edit(*v);
      ctrl->ns = v;
      snap = v;
      for (const auto& q : ctrl->io_qpairs) qps.push_back(q.connection);
      if (ctrl->admin_connection) qps.push_back(ctrl->admin_connection);  // last: notice after the I/O queues
    }
    for (uint64_t id : qps) {
      with_qpair(id, [ctrl, snap, nsid](Qpair& qp) {
        if (qp.belongs_to(ctrl.get())) qp.namespaces_changed(snap, nsid);
      });
    }
  }
}

size_t NvmfTarget::announce_resize(const std::string& bdev) {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const auto& [nqn, sub] : subsystems_) {
    if (sub->removing) continue;
    for (const auto& [nsid, ns] : sub->namespaces) {
      if (ns->bdev != bdev || ns->removing) continue;
      // The same namespaces, as a new snapshot: what matters is the notice it carries.
      publish_namespaces(nqn, nsid, [](std::vector<NsRef>&) {});
      spdlog::info("nvmf: namespace {} of {} ({}) resized to {} blocks; controllers notified", nsid, nqn, bdev,
                   ns->desc.bdev()->num_blocks());
      ++n;
    }
  }
  return n;
}

// ---------------------------------------------------------------- ANA

Status NvmfTarget::set_ana_state(const std::string& nqn, AnaState state) {
  if (!is_ana_state(state)) return make_error(Errc::kInvalidArgument, "{} is not an ANA state", static_cast<int>(state));
  std::shared_ptr<AnaGroup> g;
  {
    std::lock_guard lk(mu_);
    auto it = subsystems_.find(nqn);
    if (it == subsystems_.end() || it->second->removing) return make_error(Errc::kNotFound, "no subsystem '{}'", nqn);
    g = it->second->ana;
  }
  const auto prev = g->state.exchange(static_cast<uint8_t>(state), std::memory_order_acq_rel);
  if (prev == static_cast<uint8_t>(state)) return Status::ok();
  g->chgcnt.fetch_add(1, std::memory_order_acq_rel);
  spdlog::info("nvmf: ANA state of {} is now {} (was {})", nqn, ana_state_name(state),
               ana_state_name(static_cast<AnaState>(prev)));
  notify_ana_change(*g);
  return Status::ok();
}

void NvmfTarget::notify_ana_change(AnaGroup& g) {
  std::vector<std::shared_ptr<Controller>> ctrls;
  {
    std::lock_guard lk(g.mu);
    std::erase_if(g.controllers, [](const auto& w) { return w.expired(); });
    for (const auto& w : g.controllers) {
      if (auto c = w.lock(); c && !c->dead) ctrls.push_back(std::move(c));
    }
  }
  for (auto& ctrl : ctrls) {
    uint64_t admin;
    {
      std::lock_guard ck(ctrl->mu);
      admin = ctrl->admin_connection;
    }
    if (!admin) continue;
    ctrl->target->with_qpair(admin, [ctrl](Qpair& qp) {
      if (qp.belongs_to(ctrl.get())) qp.ana_changed();
    });
  }
}

// ---------------------------------------------------------------- listing, discovery

std::vector<SubsystemInfo> NvmfTarget::list_subsystems() const {
  std::lock_guard lk(mu_);
  std::vector<SubsystemInfo> out;
  for (const auto& [n, s] : subsystems_) {
    SubsystemInfo i;
    i.nqn = n;
    i.serial = s->serial;
    i.allowed_hosts = s->allowed_hosts;
    for (const auto& [id, ns] : s->namespaces) i.namespaces.emplace_back(id, ns->bdev);
    i.ana_state = static_cast<AnaState>(s->ana->state.load(std::memory_order_acquire));
    for (const auto& [cid, w] : controllers_) {
      if (auto c = w.lock(); c && c->subnqn == n) i.controllers++;
    }
    out.push_back(i);
  }
  return out;
}

std::vector<uint8_t> NvmfTarget::discovery_log() const {
  std::lock_guard lk(mu_);
  std::vector<DiscoveryEntry> e;
  for (const auto& l : tcp_.listeners()) {
    const bool v6 = l.host.find(':') != std::string::npos;
    for (const auto& [n, s] : subsystems_) {
      if (!s->removing) e.push_back({n, l.host, std::to_string(l.port), v6, 1, false});
    }
    e.push_back({kDiscoveryNqn, l.host, std::to_string(l.port), v6, 1, true});
  }
  return build_discovery_log(genctr_, e);
}

}  // namespace castor::nvmf
