// A target controller's life (qpair.h, controller.h): Fabrics Connect, which creates a
// controller on the admin queue and joins I/O queues to it; Property Get/Set on its
// registers; keep-alive enforcement; tearing it down with its queues. And the target's
// registry of controllers: unique ids, the allow-list check at Connect.

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "nvmf/target/qpair.h"

namespace castor::nvmf {

namespace {
std::string nqn_field(const char* p, size_t n) {
  size_t len = strnlen(p, n);
  return std::string(p, len);
}
}  // namespace

// ---------------------------------------------------------------- Connect, Property Get/Set

void Qpair::connect(Cmd* c) {
  const auto& cmd = reinterpret_cast<const ConnectCmd&>(c->sqe);
  if (c->received < sizeof(ConnectData)) {
    // Linux sends the 1 KiB of connect data in-capsule (both queues accept 8 KiB).
    return finish(c, specific(sc::kConnectInvalidParameters), 0);
  }
  ConnectData d;
  std::memcpy(&d, c->buf.data(), sizeof(d));
  const std::string subnqn = nqn_field(d.subnqn, sizeof(d.subnqn));
  const std::string hostnqn = nqn_field(d.hostnqn, sizeof(d.hostnqn));
  if (cmd.recfmt != 0) return finish(c, specific(sc::kConnectIncompatibleFormat));
  if (cmd.sqsize == 0 || cmd.sqsize >= t_.opts_.queue_entries) {
    // IPO = offset of SQSIZE in the SQE, IATTR 0.
    return finish(c, specific(sc::kConnectInvalidParameters), 44);
  }
  sq_entries_ = static_cast<uint16_t>(cmd.sqsize + 1);
  if (cmd.qid == 0) {
    uint16_t status = 0;
    auto ctrl = t_.create_controller(*this, subnqn, hostnqn, cmd.kato, &status);
    if (!ctrl) return finish(c, status, status == specific(sc::kConnectInvalidParameters) ? (256u | 1u << 16) : 0);
    ctrl_ = ctrl;
    ctrl_->hostid.bytes = std::to_array(d.hostid);
    qid_ = 0;
    connected_ = true;
    {
      std::lock_guard lk(ctrl_->mu);
      ctrl_->admin_connection = connection_id();
      ns_ = ctrl_->ns;
    }
    ctrl_->last_keepalive_ns = mono_ns();
    arm_keepalive();
    spdlog::info("nvmf controller {} created subnqn={} hostnqn={} kato_ms={}", ctrl_->cntlid, subnqn, hostnqn,
                 cmd.kato);
    return finish(c, kSuccess, ctrl_->cntlid);
  }
  auto ctrl = t_.find_controller(d.cntlid, subnqn, hostnqn);
  if (!ctrl) return finish(c, specific(sc::kConnectInvalidParameters), 16u | 1u << 16);  // CNTLID in data
  const uint16_t max_q = ctrl->granted_io_queues ? ctrl->granted_io_queues : t_.opts_.max_io_queues;
  if (cmd.qid > max_q) return finish(c, specific(sc::kConnectInvalidParameters), 42);
  {
    // Together, so that a namespace added meanwhile either is in this snapshot or
    // reaches this queue by message, and so that two Connects for one queue ID
    // cannot both succeed.
    std::lock_guard lk(ctrl->mu);
    for (const auto& q : ctrl->io_qpairs) {
      if (q.qid == cmd.qid) {
        // As Linux's nvmet answers: the queue exists already.
        return finish(c, generic(sc::kCommandSequenceError), 0);
      }
    }
    qid_ = cmd.qid;
    ctrl->io_qpairs.push_back({connection_id(), cmd.qid});
    ns_ = ctrl->ns;
  }
  ctrl_ = ctrl;
  connected_ = true;
  return finish(c, kSuccess, ctrl_->cntlid);
}

void Qpair::fabrics(Cmd* c) {
  const Sqe& s = c->sqe;
  Controller& ctrl = *ctrl_;
  const uint8_t fc = reinterpret_cast<const FabricsCmd&>(s).fctype;
  const auto& p = reinterpret_cast<const PropertyCmd&>(s);
  const uint32_t size = (p.attrib & 7) == 1 ? 8 : 4;
  if (fc == fctype::kPropertyGet) {
    auto v = ctrl.regs.get(p.ofst, size);
    if (!v) return finish(c, generic(sc::kInvalidField));
    return finish(c, kSuccess, static_cast<uint32_t>(*v), static_cast<uint32_t>(*v >> 32));
  }
  if (fc == fctype::kPropertySet) {
    if (!ctrl.regs.set(p.ofst, size, p.value)) return finish(c, generic(sc::kInvalidField));
    ctrl.ready.store(ctrl.regs.enabled() && !ctrl.regs.shut_down(), std::memory_order_release);
    return finish(c, kSuccess);
  }
  if (fc == fctype::kConnect) return finish(c, generic(sc::kCommandSequenceError));
  return finish(c, generic(sc::kInvalidOpcode));
}

// ---------------------------------------------------------------- keep-alive and teardown

void Qpair::arm_keepalive() {
  if (!ctrl_ || ctrl_->kato_ms == 0) return;
  auto ctrl = ctrl_;
  ctrl_->ka_timer = r_.add_timer(uint64_t{ctrl_->kato_ms} * 1000000 / 2, [this, ctrl] {
    ctrl->ka_timer.reset();
    if (ctrl->dead || closed_) return;
    if (mono_ns() - ctrl->last_keepalive_ns > uint64_t{ctrl->kato_ms} * 1000000) {
      spdlog::warn("nvmf controller {}: keep-alive timeout ({} ms), tearing it down", ctrl->cntlid, ctrl->kato_ms);
      ctrl->regs.set_fatal();
      conn_->close("keep-alive timeout");
      return;
    }
    arm_keepalive();
  });
}

void Qpair::teardown_controller(const std::string& reason) {
  auto ctrl = ctrl_;
  if (ctrl->dead.exchange(true)) return;
  if (ctrl->ka_timer) r_.cancel_timer(*ctrl->ka_timer);
  std::vector<Controller::IoQueueRef> io;
  {
    std::lock_guard lk(ctrl->mu);
    io = ctrl->io_qpairs;
  }
  for (const auto& q : io) {
    t_.with_qpair(q.connection, [ctrl](Qpair& qp) {
      if (qp.belongs_to(ctrl.get())) qp.close("controller torn down");
    });
  }
  t_.drop_controller(ctrl->cntlid);
  spdlog::info("nvmf controller {} destroyed: {}", ctrl->cntlid, reason);
}

// ---------------------------------------------------------------- the registry

std::shared_ptr<Controller> NvmfTarget::create_controller(Qpair& admin, const std::string& subnqn,
                                                          const std::string& hostnqn, uint32_t kato_ms,
                                                          uint16_t* status) {
  std::lock_guard lk(mu_);
  auto c = std::make_shared<Controller>();
  if (subnqn == kDiscoveryNqn) {
    c->discovery = true;
    c->serial = serial_from_uuid(Uuid::from_name(subnqn));
  } else {
    auto it = subsystems_.find(subnqn);
    if (it == subsystems_.end() || it->second->removing) {
      *status = specific(sc::kConnectInvalidParameters);
      spdlog::warn("nvmf connect refused: unknown subsystem '{}' (host '{}')", subnqn, hostnqn);
      return nullptr;
    }
    const auto& s = *it->second;
    if (!s.allowed_hosts.empty() &&
        std::find(s.allowed_hosts.begin(), s.allowed_hosts.end(), hostnqn) == s.allowed_hosts.end()) {
      *status = specific(sc::kConnectInvalidHost);
      spdlog::warn("nvmf connect refused: host '{}' is not allowed on '{}'", hostnqn, subnqn);
      return nullptr;
    }
    c->serial = s.serial;
    c->ana = s.ana;
    {
      std::lock_guard g(s.ana->mu);
      // Controllers that went since are dropped here: an expired weak_ptr still holds
      // the controller's memory (make_shared), so without this every connect of a
      // subsystem whose ANA state never changes would keep ~400 bytes for good.
      std::erase_if(s.ana->controllers, [](const auto& w) { return w.expired(); });
      s.ana->controllers.push_back(c);
    }
    auto v = std::make_shared<std::vector<NsRef>>();
    for (const auto& [id, ns] : s.namespaces) {
      if (!ns->removing) v->push_back({id, ns->desc.bdev(), ns->inflight.get(), &ns->desc});
    }
    c->ns = std::move(v);
  }
  for (int tries = 0; tries < 0xfff0; ++tries) {
    uint16_t id = next_cntlid_++;
    if (next_cntlid_ >= 0xfff0) next_cntlid_ = 1;
    if (!controllers_.count(id) || controllers_[id].expired()) {
      c->cntlid = id;
      break;
    }
  }
  c->subnqn = subnqn;
  c->hostnqn = hostnqn;
  c->target = this;
  c->kato_ms = kato_ms ? kato_ms : (c->discovery ? 0 : opts_.default_kato_ms);
  controllers_[c->cntlid] = c;
  (void)admin;
  return c;
}

std::shared_ptr<Controller> NvmfTarget::find_controller(uint16_t cntlid, const std::string& subnqn,
                                                        const std::string& hostnqn) {
  std::lock_guard lk(mu_);
  auto it = controllers_.find(cntlid);
  if (it == controllers_.end()) return nullptr;
  auto c = it->second.lock();
  if (!c || c->dead || c->subnqn != subnqn || c->hostnqn != hostnqn || c->discovery) return nullptr;
  return c;
}

void NvmfTarget::drop_controller(uint16_t cntlid) {
  std::lock_guard lk(mu_);
  controllers_.erase(cntlid);
}

std::vector<ControllerInfo> NvmfTarget::list_controllers() const {
  std::lock_guard lk(mu_);
  std::vector<ControllerInfo> out;
  for (const auto& [cid, w] : controllers_) {
    auto c = w.lock();
    if (!c) continue;
    std::lock_guard g(c->mu);
    out.push_back({c->cntlid, c->subnqn, c->hostnqn, static_cast<uint32_t>(c->io_qpairs.size()), c->kato_ms});
  }
  return out;
}

}  // namespace castor::nvmf
