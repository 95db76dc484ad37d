#include "nvmf/target/target.h"

#include <algorithm>
#include <random>
#include <cstring>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "nvmf/codec/pdu.h"
#include "nvmf/target/identify.h"
#include "nvmf/target/registers.h"
#include "nvmf/target/reservation_cmds.h"

namespace castor::nvmf {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;

namespace {
constexpr uint32_t kAdminInCapsule = 8192;
constexpr uint16_t kSuccess = 0;

uint16_t generic(uint8_t code, bool dnr = true) { return make_status(Sct::kGeneric, code, dnr); }
uint16_t specific(uint8_t code, bool dnr = true) { return make_status(Sct::kCommandSpecific, code, dnr); }

std::string nqn_field(const char* p, size_t n) {
  size_t len = strnlen(p, n);
  return std::string(p, len);
}
}  // namespace

// Bdev I/Os in flight on one namespace, one counter per reactor (each written only by its
// reactor, on its own cache line), so that removing the namespace can wait for them
// without a shared counter on the I/O path.
struct NsInflight {
  struct alignas(64) Slot {
    std::atomic<uint32_t> n{0};
  };
  explicit NsInflight(size_t reactors) : slots(reactors) {}
  std::vector<Slot> slots;
  uint64_t total() const {
    uint64_t t = 0;
    for (const auto& s : slots) t += s.n.load(std::memory_order_acquire);
    return t;
  }
};

struct NsRef {
  uint32_t nsid;
  bdev::Bdev* bdev;
  NsInflight* inflight = nullptr;
};

// The ANA group of a subsystem (every namespace is in group 1): this engine's path state.
// `state` is read by every I/O command on any reactor; `controllers` are the ones to
// notify when it changes.
struct AnaGroup {
  static constexpr uint32_t kId = 1;
  std::atomic<uint8_t> state{static_cast<uint8_t>(AnaState::kOptimized)};
  std::atomic<uint64_t> chgcnt{1};
  std::mutex mu;  // guards controllers
  std::vector<std::weak_ptr<Controller>> controllers;
};

// The path error (SCT 3) an I/O command gets in ANA state `st`, or 0 when it may run.
uint16_t ana_path_status(uint8_t st) {
  switch (static_cast<AnaState>(st)) {
    case AnaState::kOptimized:
    case AnaState::kNonOptimized: return 0;
    case AnaState::kInaccessible: return make_status(Sct::kPath, sc::kAnaInaccessible);
    case AnaState::kPersistentLoss: return make_status(Sct::kPath, sc::kAnaPersistentLoss);
    case AnaState::kChange: return make_status(Sct::kPath, sc::kAnaTransition);
  }
  return make_status(Sct::kPath, sc::kAnaInaccessible);
}

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

// Controller state. Fields marked (admin) are touched only on the admin queue's reactor.
class Controller {
 public:
  uint16_t cntlid = 0;
  std::string subnqn, hostnqn;
  bool discovery = false;
  std::string serial;
  // The namespaces as a snapshot: replaced (never edited) when one is added, and each
  // queue pair keeps its own reference, refreshed by a message on its reactor, so the
  // I/O path reads it without a lock. Guarded by `mu` for replacement.
  std::shared_ptr<const std::vector<NsRef>> ns = std::make_shared<std::vector<NsRef>>();
  std::vector<uint32_t> changed_ns;  // (admin) for the Changed Namespace List log page
  ControllerRegisters regs{ControllerLimits{}};  // (admin)
  // CC.EN and CSTS.RDY set and no shutdown: commands other than Fabrics may run. Written
  // on the admin reactor after each Property Set, read by the I/O queues' reactors.
  std::atomic<bool> ready{false};
  uint32_t kato_ms = 0;                          // (admin)
  uint64_t last_keepalive_ns = 0;                // (admin)
  std::optional<reactor::Reactor::TimerId> ka_timer;
  uint16_t granted_io_queues = 0;  // 0: not negotiated yet (admin)
  reactor::Reactor* admin_reactor = nullptr;
  Qpair* admin = nullptr;
  std::vector<uint16_t> aers;  // outstanding AER slots (admin)
  std::shared_ptr<AnaGroup> ana;  // null for a discovery controller
  NvmfTarget* target = nullptr;
  std::mutex mu;               // guards io_qpairs
  std::vector<std::pair<reactor::Reactor*, Qpair*>> io_qpairs;
  std::atomic<bool> dead{false};
  // The host identifier from the admin queue's Connect data: the identity of this
  // controller's host in every namespace's reservation table. Set before any I/O queue
  // can join.
  bdev::HostId hostid;

};

const NsRef* find_ns(const std::vector<NsRef>& v, uint32_t nsid) {
  for (const auto& n : v) {
    if (n.nsid == nsid) return &n;
  }
  return nullptr;
}

// One queue pair: one TCP connection, owned by one reactor.
class Qpair final : public reactor::Connection::Handler {
 public:
  Qpair(NvmfTarget& t, reactor::Reactor& r, int fd)
      : t_(t), r_(r), conn_(std::make_unique<reactor::Connection>(r, fd, this, 256 * 1024)) {
    lim_.max_data = std::max({t.opts_.incapsule, kAdminInCapsule, t.opts_.max_h2c_data});
    // Twice the queue size, so the R2T tag (the slot index) always has room.
    slots_ = std::vector<Cmd>(2 * t.opts_.queue_entries);
    for (size_t i = slots_.size(); i-- > 0;) {
      slots_[i].q = this;
      slots_[i].slot = static_cast<uint16_t>(i);
      free_slots_.push_back(static_cast<uint16_t>(i));
    }
  }

  void start() {
    t_.live_[r_.id()].push_back(this);
    conn_->start();
  }
  void close(const std::string& why) { conn_->close(why); }
  reactor::Reactor& reactor() { return r_; }

  size_t on_data(std::span<const uint8_t> buf) override {
    size_t used = 0;
    while (!conn_->closing()) {
      if (loose_resps_ >= kMaxLooseResps) {
        // The host sends commands past its queue and does not read the refusals: stop
        // reading it until half of them have gone out, rather than queue one for each.
        held_ = true;
        conn_->pause_recv();
        t_.receive_holds_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      std::span<const uint8_t> b = buf.subspan(used);
      if (b.size() < sizeof(CommonHeader)) break;
      CommonHeader ch;
      std::memcpy(&ch, b.data(), sizeof(ch));
      PduFrame f;
      if (auto e = parse_header(ch, Direction::kHostToController, lim_, &f)) {
        term(*e, b.subspan(0, std::min<size_t>(b.size(), 128)));
        break;
      }
      if (b.size() < f.plen) {
        if (receive_h2c_direct(f, b)) used = buf.size();
        break;
      }
      auto pdu = b.subspan(0, f.plen);
      if (auto e = check_header_digest(f, pdu.subspan(0, f.header_bytes))) {
        term(*e, pdu.subspan(0, std::min<uint32_t>(f.hlen, 128)));
        break;
      }
      process(f, pdu);
      used += f.plen;
    }
    return used;
  }

  void on_closed(const std::string& reason) override {
    closed_ = true;
    std::erase(t_.live_[r_.id()], this);
    // Writes still waiting for the host's data will never get it, and nothing else would
    // free their slots (the queue pair would never be destroyed).
    for (Cmd& c : slots_) {
      if (c.busy && c.waiting_h2c) release(&c);
    }
    spdlog::debug("nvmf qpair closed qid={} cntlid={}: {}", qid_, ctrl_ ? ctrl_->cntlid : 0, reason);
    if (ctrl_) {
      if (qid_ == 0) {
        teardown_controller(reason);
      } else {
        std::lock_guard lk(ctrl_->mu);
        std::erase_if(ctrl_->io_qpairs, [this](const auto& p) { return p.second == this; });
      }
    }
    maybe_destroy();
  }

 private:
  struct Cmd {
    Qpair* q = nullptr;
    uint16_t slot = 0;
    bool busy = false;
    Sqe sqe{};
    IoRequest io;
    iovec iov{};
    bdev::DmaBuffer buf;
    uint32_t len = 0;       // data length of the command
    uint32_t received = 0;  // host data received so far (R2T)
    bool waiting_h2c = false;
    NsRef ns{0, nullptr};  // by value: the snapshot it came from may be replaced
    uint8_t c2h[32];
    uint8_t resp[32];
    uint32_t ddgst = 0;
    uint32_t dsm_next = 0;  // DSM: next range to deallocate
  };

  // ---------------------------------------------------------------- framing
  void term(const PduError& e, std::span<const uint8_t> hdr) {
    spdlog::warn("nvmf: closing connection after a malformed PDU: {}", e.what);
    auto* out = new uint8_t[24 + kTermReqMaxData];
    size_t n = build_term_req(out, Direction::kControllerToHost, e, hdr);
    iovec v{out, n};
    conn_->send({&v, 1}, [this, out] {
      delete[] out;
      conn_->close("malformed PDU");
    });
    lim_.ic_done = false;  // ignore anything else the host sends
    terminating_ = true;
  }

  void process(const PduFrame& f, std::span<const uint8_t> pdu) {
    if (terminating_) return;
    switch (f.type) {
      case PduType::kICReq: return icreq(pdu);
      case PduType::kH2CTermReq:
        conn_->close("host terminated the connection");
        return;
      case PduType::kCapsuleCmd: return capsule(f, pdu);
      case PduType::kH2CData: return h2c_data(f, pdu);
      default: return;
    }
  }

  void icreq(std::span<const uint8_t> pdu) {
    ICReq req;
    std::memcpy(&req, pdu.data(), sizeof(req));
    if (req.pfv != 0) return term({TermFes::kUnsupportedParameter, 8, "unsupported PDU format version"}, pdu.subspan(0, 128));
    if (req.hpda != 0) return term({TermFes::kUnsupportedParameter, 10, "unsupported host PDU data alignment"}, pdu.subspan(0, 128));
    lim_.hdgst = req.dgst & 1;
    lim_.ddgst = req.dgst & 2;
    lim_.ic_done = true;
    auto* out = new uint8_t[128];
    build_icresp(out, lim_.hdgst, lim_.ddgst, t_.opts_.max_h2c_data);
    iovec v{out, 128};
    conn_->send({&v, 1}, [out] { delete[] out; });
  }

  // O(1) on the I/O path: a free list of command slots and a bitmap of CIDs in use.
  Cmd* get_slot(uint16_t cid) {
    if (cids_[cid] || free_slots_.empty()) return nullptr;  // CID conflict or queue overrun
    Cmd* c = &slots_[free_slots_.back()];
    free_slots_.pop_back();
    cids_[cid] = true;
    c->busy = true;
    c->received = 0;
    c->len = 0;
    c->waiting_h2c = false;
    ++outstanding_;
    return c;
  }
  void release(Cmd* c) {
    if (c->ns.inflight) c->ns.inflight->slots[r_.id()].n.fetch_sub(1, std::memory_order_release);
    c->ns = NsRef{0, nullptr};
    c->busy = false;
    cids_[c->sqe.cid] = false;
    free_slots_.push_back(c->slot);
    --outstanding_;
    maybe_destroy();
  }

  void capsule(const PduFrame& f, std::span<const uint8_t> pdu) {
    Sqe sqe;
    std::memcpy(&sqe, pdu.data() + sizeof(CommonHeader), sizeof(sqe));
    sqhd_ = static_cast<uint16_t>((sqhd_ + 1) % sq_entries_);
    std::span<const uint8_t> data;
    if (f.data_len) {
      data = pdu.subspan(f.data_offset, f.data_len);
      uint32_t dg = 0;
      if (f.has_ddgst) std::memcpy(&dg, pdu.data() + f.data_offset + f.data_len, 4);
      if (check_data_digest(f, data, dg)) {
        conn_->close("data digest mismatch");
        return;
      }
    }
    Cmd* c = get_slot(sqe.cid);
    if (!c) {
      // Either more commands than the queue holds or a CID already in use.
      send_resp_only(sqe.cid, generic(sc::kCidConflict));
      return;
    }
    c->sqe = sqe;  // release() clears this CID
    // In-capsule data goes with the command; anything larger is fetched with R2T later.
    const SglDescriptor& sgl = sqe.sgl1;
    const uint32_t limit = qid_ == 0 ? kAdminInCapsule : t_.opts_.incapsule;
    if (f.data_len) {
      if (sgl.type != kSglDataBlockOffset || sgl.address != 0 || sgl.length != f.data_len) {
        return finish(c, generic(sc::kSglInvalidOffset));
      }
      if (f.data_len > limit) return finish(c, generic(sc::kSglInvalidData));
      ensure_buf(c, f.data_len);
      std::memcpy(c->buf.data(), data.data(), f.data_len);
      c->received = f.data_len;
      c->len = f.data_len;
    }
    if (!connected_) {
      if (sqe.opcode != admin_op::kFabrics || reinterpret_cast<FabricsCmd&>(sqe).fctype != fctype::kConnect) {
        return finish(c, generic(sc::kCommandSequenceError));
      }
      return connect(c);
    }
    if (qid_ == 0) return admin(c);
    return io(c);
  }

  void ensure_buf(Cmd* c, uint32_t len) {
    if (c->buf.size() < len) c->buf = bdev::DmaBuffer(std::max<uint32_t>(len, 4096), 4096);
  }

  // ---------------------------------------------------------------- responses
  void fill_resp(Cmd* c, uint16_t status, uint32_t dw0, uint32_t dw1, size_t* n) {
    Cqe cqe{};
    cqe.dw0 = dw0;
    cqe.dw1 = dw1;
    cqe.sqhd = sqhd_;
    cqe.sqid = qid_;
    cqe.cid = c->sqe.cid;
    cqe.status = status;
    *n = build_capsule_resp(c->resp, cqe, lim_.hdgst);
  }

  void finish(Cmd* c, uint16_t status, uint32_t dw0 = 0, uint32_t dw1 = 0) {
    if (closed_ || conn_->closing()) return release(c);
    size_t n;
    fill_resp(c, status, dw0, dw1, &n);
    iovec v{c->resp, n};
    conn_->send({&v, 1}, [this, c] { release(c); });
  }

  void send_resp_only(uint16_t cid, uint16_t status) {
    auto* out = new uint8_t[32];
    Cqe cqe{};
    cqe.sqhd = sqhd_;
    cqe.sqid = qid_;
    cqe.cid = cid;
    cqe.status = status;
    size_t n = build_capsule_resp(out, cqe, lim_.hdgst);
    iovec v{out, n};
    ++loose_resps_;
    conn_->send({&v, 1}, [this, out] {
      delete[] out;
      --loose_resps_;
      if (held_ && loose_resps_ <= kMaxLooseResps / 2 && !conn_->closing()) {
        held_ = false;
        conn_->resume_recv();
      }
    });
  }

  // Data to the host (C2HData, one PDU) then the response, in one send.
  void finish_with_data(Cmd* c, uint32_t len, uint16_t status = kSuccess) {
    if (closed_ || conn_->closing()) return release(c);
    const uint32_t host_len = c->sqe.sgl1.length;
    len = std::min(len, host_len);
    if (len == 0) return finish(c, status);
    size_t hn = build_data_header(c->c2h, PduType::kC2HData, c->sqe.cid, 0, 0, len, true, false, lim_.hdgst,
                                  lim_.ddgst);
    iovec v[4];
    int k = 0;
    v[k++] = {c->c2h, hn};
    v[k++] = {c->buf.data(), len};
    if (lim_.ddgst) {
      c->ddgst = digest({c->buf.data(), len});
      v[k++] = {&c->ddgst, 4};
    }
    size_t rn;
    fill_resp(c, status, 0, 0, &rn);
    v[k++] = {c->resp, rn};
    conn_->send({v, static_cast<size_t>(k)}, [this, c] { release(c); });
  }

  // Copies `data` into the command's buffer and sends it.
  void reply_data(Cmd* c, const void* data, uint32_t len) {
    ensure_buf(c, len);
    std::memcpy(c->buf.data(), data, len);
    finish_with_data(c, len);
  }

  // ---------------------------------------------------------------- connect
  void connect(Cmd* c) {
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
        ctrl_->admin_reactor = &r_;
        ctrl_->admin = this;
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
      for (const auto& entry : ctrl->io_qpairs) {
        if (entry.second->qid_ == cmd.qid) {
          // As Linux's nvmet answers: the queue exists already.
          return finish(c, generic(sc::kCommandSequenceError), 0);
        }
      }
      qid_ = cmd.qid;
      ctrl->io_qpairs.emplace_back(&r_, this);
      ns_ = ctrl->ns;
    }
    ctrl_ = ctrl;
    connected_ = true;
    return finish(c, kSuccess, ctrl_->cntlid);
  }

  void arm_keepalive() {
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

  void teardown_controller(const std::string& reason) {
    auto ctrl = ctrl_;
    if (ctrl->dead.exchange(true)) return;
    if (ctrl->ka_timer) r_.cancel_timer(*ctrl->ka_timer);
    std::vector<std::pair<reactor::Reactor*, Qpair*>> io;
    {
      std::lock_guard lk(ctrl->mu);
      io = ctrl->io_qpairs;
    }
    for (const auto& entry : io) {
      reactor::Reactor* rp = entry.first;
      Qpair* q = entry.second;
      NvmfTarget* t = &t_;
      rp->send([t, rp, q] {
        auto& live = t->live_[rp->id()];
        if (std::find(live.begin(), live.end(), q) != live.end()) q->close("controller torn down");
      });
    }
    t_.drop_controller(ctrl->cntlid);
    spdlog::info("nvmf controller {} destroyed: {}", ctrl->cntlid, reason);
  }

  // ---------------------------------------------------------------- admin
  void admin(Cmd* c) {
    const Sqe& s = c->sqe;
    Controller& ctrl = *ctrl_;
    switch (s.opcode) {
      case admin_op::kFabrics: {
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
      default: break;
    }
    // Like Linux's nvmet: a controller that is not enabled and ready runs only Fabrics
    // commands (a discovery controller answers regardless).
    if (!ctrl.discovery && !ctrl.ready.load(std::memory_order_relaxed)) {
      return finish(c, generic(sc::kCommandSequenceError));
    }
    switch (s.opcode) {
      case admin_op::kIdentify: return identify(c);
      case admin_op::kGetLogPage: return get_log_page(c);
      case admin_op::kSetFeatures:
      case admin_op::kGetFeatures: return features(c);
      case admin_op::kKeepAlive:
        ctrl.last_keepalive_ns = mono_ns();
        return finish(c, kSuccess);
      case admin_op::kAsyncEventRequest:
        if (ctrl.aers.size() > 3) return finish(c, specific(sc::kAsyncEventLimitExceeded));
        ctrl.aers.push_back(c->slot);  // completed when an event happens or the queue closes
        if (!retained_events_.empty()) {
          const uint32_t dw0 = retained_events_.front();
          retained_events_.erase(retained_events_.begin());
          post_event(dw0);
        }
        return;
      case admin_op::kAbort:
        return finish(c, kSuccess, 1);  // bit 0: the command was not aborted
      default: return finish(c, generic(sc::kInvalidOpcode));
    }
  }

  ControllerIdentity identity() const {
    ControllerIdentity id;
    id.subnqn = ctrl_->subnqn;
    id.serial = ctrl_->serial;
    id.cntlid = ctrl_->cntlid;
    id.discovery = ctrl_->discovery;
    id.mdts = t_.opts_.mdts;
    id.maxcmd = t_.opts_.queue_entries;
    id.incapsule = t_.opts_.incapsule;
    return id;
  }

  void identify(Cmd* c) {
    const uint8_t cns = c->sqe.cdw10 & 0xff;
    const uint32_t nsid = c->sqe.nsid;
    if (cns == cns::kController) {
      IdentifyController ic;
      build_identify_controller(identity(), &ic);
      return reply_data(c, &ic, sizeof(ic));
    }
    if (ctrl_->discovery) return finish(c, generic(sc::kInvalidField));
    if (cns == cns::kNamespace) {
      IdentifyNamespace in;
      std::memset(&in, 0, sizeof(in));
      if (const NsRef* n = find_ns(*ns_, nsid)) build_identify_namespace(ns_identity(*n), &in);
      else if (nsid == 0 || nsid == 0xffffffff) return finish(c, generic(sc::kInvalidNamespace));
      return reply_data(c, &in, sizeof(in));
    }
    if (cns == cns::kActiveNsList) {
      std::vector<uint32_t> ids;
      for (const auto& n : *ns_) ids.push_back(n.nsid);
      auto l = build_active_ns_list(ids, nsid);
      return reply_data(c, l.data(), static_cast<uint32_t>(l.size()));
    }
    if (cns == cns::kNsDescriptors) {
      const NsRef* n = find_ns(*ns_, nsid);
      if (!n) return finish(c, generic(sc::kInvalidNamespace));
      auto d = build_ns_descriptors(ns_identity(*n));
      return reply_data(c, d.data(), static_cast<uint32_t>(d.size()));
    }
    return finish(c, generic(sc::kInvalidField));
  }

  static NamespaceIdentity ns_identity(const NsRef& n) {
    NamespaceIdentity id;
    id.nsid = n.nsid;
    id.num_blocks = n.bdev->num_blocks();
    id.block_size = n.bdev->block_size();
    id.uuid = n.bdev->uuid();
    return id;
  }

  void get_log_page(Cmd* c) {
    const Sqe& s = c->sqe;
    const uint8_t lid = s.cdw10 & 0xff;
    const uint64_t numd = ((uint64_t{s.cdw11 & 0xffff} << 16) | (s.cdw10 >> 16)) + 1;
    const uint64_t len = numd * 4;
    const uint64_t off = s.cdw12 | (uint64_t{s.cdw13} << 32);
    std::vector<uint8_t> page;
    switch (lid) {
      case log_id::kError: page.assign(64, 0); break;
      case log_id::kSmart: {
        page.assign(512, 0);
        uint16_t kelvin = 273 + 30;
        std::memcpy(page.data() + 1, &kelvin, 2);  // composite temperature
        page[3] = 100;                            // available spare
        page[4] = 10;                             // spare threshold
        break;
      }
      case log_id::kFirmware:
        page.assign(512, 0);
        page[0] = 1;  // active slot 1
        std::memcpy(page.data() + 8, "0.1.0   ", 8);
        break;
      case log_id::kChangedNs: {
        // Up to 1024 NSIDs; reading it clears the list (it is re-armed by the next change).
        page.assign(4096, 0);
        auto& ch = ctrl_->changed_ns;
        if (ch.size() > 1024) {
          const uint32_t overflow = 0xffffffff;
          std::memcpy(page.data(), &overflow, 4);
        } else {
          for (size_t i = 0; i < ch.size(); ++i) std::memcpy(page.data() + 4 * i, &ch[i], 4);
        }
        ch.clear();
        break;
      }
      case log_id::kCommandEffects: {
        page.assign(4096, 0);
        auto mark = [&](size_t base, uint8_t op, uint32_t bits) {
          std::memcpy(page.data() + base + 4 * op, &bits, 4);
        };
        for (uint8_t op : {admin_op::kGetLogPage, admin_op::kIdentify, admin_op::kAbort, admin_op::kSetFeatures,
                           admin_op::kGetFeatures, admin_op::kAsyncEventRequest, admin_op::kKeepAlive}) {
          mark(0, op, 1);
        }
        for (uint8_t op : {io_op::kReservationRegister, io_op::kReservationReport, io_op::kReservationAcquire,
                           io_op::kReservationRelease}) {
          mark(1024, op, 1);  // CSUPP
        }
        for (uint8_t op : {io_op::kFlush, io_op::kWrite, io_op::kRead, io_op::kWriteZeroes, io_op::kDatasetManagement}) {
          mark(1024, op, op == io_op::kRead || op == io_op::kFlush ? 1 : 3);  // CSUPP (+LBCC for writes)
        }
        break;
      }
      case log_id::kDiscovery:
        if (!ctrl_->discovery) return finish(c, specific(sc::kInvalidLogPage));
        page = t_.discovery_log();
        break;
      case log_id::kAna: {
        if (!ctrl_->ana) return finish(c, specific(sc::kInvalidLogPage));
        // One group. LSP bit 0 (RGO): the group descriptors only, without NSIDs.
        AnaLogGroup g;
        g.grpid = AnaGroup::kId;
        g.chgcnt = ctrl_->ana->chgcnt.load(std::memory_order_acquire);
        g.state = static_cast<AnaState>(ctrl_->ana->state.load(std::memory_order_acquire));
        for (const auto& n : *ns_) g.nsids.push_back(n.nsid);
        std::sort(g.nsids.begin(), g.nsids.end());
        page = build_ana_log(g.chgcnt, {&g, 1}, (s.cdw10 >> 8) & 1);
        break;
      }
      default: return finish(c, specific(sc::kInvalidLogPage));
    }
    if (off > page.size()) return finish(c, generic(sc::kInvalidField));
    if (len > (1u << 20)) return finish(c, generic(sc::kInvalidField));
    std::vector<uint8_t> out(len, 0);
    std::memcpy(out.data(), page.data() + off, std::min<uint64_t>(len, page.size() - off));
    return reply_data(c, out.data(), static_cast<uint32_t>(len));
  }

  void features(Cmd* c) {
    const Sqe& s = c->sqe;
    const bool set = s.opcode == admin_op::kSetFeatures;
    const uint8_t fid = s.cdw10 & 0xff;
    Controller& ctrl = *ctrl_;
    switch (fid) {
      case feature::kNumberOfQueues: {
        if (set) {
          if (ctrl.granted_io_queues) return finish(c, generic(sc::kCommandSequenceError));
          uint32_t nsq = (s.cdw11 & 0xffff) + 1, ncq = (s.cdw11 >> 16) + 1;
          if (nsq == 0x10000 || ncq == 0x10000) return finish(c, generic(sc::kInvalidField));
          ctrl.granted_io_queues = static_cast<uint16_t>(std::min<uint32_t>({nsq, ncq, t_.opts_.max_io_queues}));
        }
        uint32_t g = (ctrl.granted_io_queues ? ctrl.granted_io_queues : t_.opts_.max_io_queues) - 1u;
        return finish(c, kSuccess, g | g << 16);
      }
      case feature::kKeepAliveTimer:
        if (set) {
          ctrl.kato_ms = s.cdw11;
          ctrl.last_keepalive_ns = mono_ns();
          if (ctrl.ka_timer) r_.cancel_timer(*ctrl.ka_timer);
          ctrl.ka_timer.reset();
          arm_keepalive();
        }
        return finish(c, kSuccess, ctrl.kato_ms);
      case feature::kAsyncEventConfig:
        if (set) aec_ = s.cdw11;
        return finish(c, kSuccess, aec_);
      case feature::kVolatileWriteCache:
        if (ctrl.discovery) return finish(c, generic(sc::kInvalidField));
        return finish(c, kSuccess, 1);  // enabled; Flush makes writes durable
      case feature::kErrorRecovery:
        if (set) error_recovery_ = s.cdw11;
        return finish(c, kSuccess, error_recovery_);
      default: return finish(c, generic(sc::kInvalidField));
    }
  }

  // ---------------------------------------------------------------- I/O
  void io(Cmd* c) {
    const Sqe& s = c->sqe;
    if (!ctrl_->ready.load(std::memory_order_acquire)) return finish(c, generic(sc::kCommandSequenceError));
    const NsRef* ns = find_ns(*ns_, s.nsid);
    if (!ns) return finish(c, generic(sc::kInvalidNamespace));
    if (uint16_t path = ana_path_status(ctrl_->ana->state.load(std::memory_order_relaxed))) return finish(c, path);
    c->ns = *ns;  // counted until release(): a removal waits for it
    if (c->ns.inflight) c->ns.inflight->slots[r_.id()].n.fetch_add(1, std::memory_order_relaxed);
    bdev::Bdev& b = *ns->bdev;
    const uint32_t bs = b.block_size();
    // A reservation held by another host may exclude this one (one relaxed load while
    // none is held).
    if (const int w = reservation_access(s.opcode); w >= 0 && !b.reservations().allows(ctrl_->hostid, w, resv_cache_)) {
      return finish(c, generic(sc::kReservationConflict));
    }
    switch (s.opcode) {
      case io_op::kRead:
      case io_op::kWrite: {
        const uint64_t slba = s.cdw10 | (uint64_t{s.cdw11} << 32);
        const uint32_t nlb = (s.cdw12 & 0xffff) + 1;
        const uint64_t len = uint64_t{nlb} * bs;
        if (len > (uint64_t{4096} << t_.opts_.mdts)) return finish(c, generic(sc::kInvalidField));
        if (slba > b.num_blocks() || nlb > b.num_blocks() - slba) return finish(c, generic(sc::kLbaOutOfRange));
        if (s.sgl1.length < len) return finish(c, generic(sc::kSglInvalidData));
        if (s.opcode == io_op::kRead) {
          if (s.sgl1.type != kSglTransportDataBlock) return finish(c, generic(sc::kSglInvalidType));
          ensure_buf(c, static_cast<uint32_t>(len));
          c->len = static_cast<uint32_t>(len);
          return submit(c, IoType::kRead, slba, nlb);
        }
        c->len = static_cast<uint32_t>(len);
        if (c->received >= len) return submit(c, IoType::kWrite, slba, nlb, s.cdw12 & kCdw12Fua);  // excess ignored
        if (c->received != 0 || s.sgl1.type != kSglTransportDataBlock) return finish(c, generic(sc::kSglInvalidData));
        return request_data(c);
      }
      case io_op::kFlush: return submit(c, IoType::kFlush, 0, 0);
      case io_op::kWriteZeroes: {
        const uint64_t slba = s.cdw10 | (uint64_t{s.cdw11} << 32);
        const uint32_t nlb = (s.cdw12 & 0xffff) + 1;
        if (slba > b.num_blocks() || nlb > b.num_blocks() - slba) return finish(c, generic(sc::kLbaOutOfRange));
        return submit(c, b.supports(IoType::kWriteZeroes) ? IoType::kWriteZeroes : IoType::kUnmap, slba, nlb,
                      s.cdw12 & kCdw12Fua);
      }
      case io_op::kDatasetManagement: {
        const uint32_t nr = (s.cdw10 & 0xff) + 1;
        if (s.sgl1.length < nr * 16) return finish(c, generic(sc::kSglInvalidData));
        if (!(s.cdw11 & (1u << 2))) return finish(c, kSuccess);  // only deallocate does anything
        // In-capsule data may be longer than the ranges: Linux always sends a buffer for
        // 256 of them (4 KiB). The excess is ignored (Identify's SGLS says so).
        c->len = nr * 16;
        if (c->received >= c->len) return dsm_next(c, 0);
        if (c->received != 0 || s.sgl1.type != kSglTransportDataBlock) return finish(c, generic(sc::kSglInvalidData));
        return request_data(c);
      }
      case io_op::kReservationRegister:
      case io_op::kReservationAcquire:
      case io_op::kReservationRelease:
        // 16 or 8 bytes of keys, in-capsule or fetched like DSM's ranges.
        c->len = reservation_data_len(s.opcode);
        if (s.sgl1.length < c->len) return finish(c, generic(sc::kSglInvalidData));
        if (c->received >= c->len) return reservation(c);
        if (c->received != 0 || s.sgl1.type != kSglTransportDataBlock) return finish(c, generic(sc::kSglInvalidData));
        return request_data(c);
      case io_op::kReservationReport: {
        std::vector<uint8_t> out;
        if (const uint16_t st = execute_reservation_report(b.reservations(), s, &out)) return finish(c, st);
        return reply_data(c, out.data(), static_cast<uint32_t>(out.size()));
      }
      default: return finish(c, generic(sc::kInvalidOpcode));
    }
  }

  // Asks the host for the command's data with one R2T for all of it.
  void request_data(Cmd* c) {
    ensure_buf(c, c->len);
    c->waiting_h2c = true;
    c->received = 0;
    // The command's C2H header buffer is idle while it waits for data: no allocation.
    size_t n = build_r2t(c->c2h, c->sqe.cid, c->slot, 0, c->len, lim_.hdgst);
    iovec v{c->c2h, n};
    conn_->send({&v, 1});
  }

  // The command an H2CData header is for, after every check of its fields; nullptr when
  // the connection is being terminated.
  Cmd* h2c_target(const PduFrame& f, std::span<const uint8_t> hdr) {
    DataHeader h;
    std::memcpy(&h, hdr.data(), sizeof(h));
    auto bad = [&](TermFes fes, uint32_t field, const char* what) -> Cmd* {
      term({fes, field, what}, hdr.subspan(0, f.hlen));
      return nullptr;
    };
    if (h.ttag >= slots_.size() || !slots_[h.ttag].busy || !slots_[h.ttag].waiting_h2c ||
        slots_[h.ttag].sqe.cid != h.cccid) {
      return bad(TermFes::kInvalidHeaderField, 10, "H2CData for no outstanding R2T");
    }
    Cmd* c = &slots_[h.ttag];
    if (h.datal != f.data_len) return bad(TermFes::kInvalidHeaderField, 16, "H2CData datal does not match plen");
    if (h.datao != c->received) return bad(TermFes::kDataOutOfRange, 12, "H2CData at an unexpected offset");
    if (uint64_t{h.datao} + h.datal > c->len) return bad(TermFes::kDataOutOfRange, 16, "H2CData beyond the command's data");
    return c;
  }

  // A large H2CData PDU still arriving (`b` holds its start): once its header is here
  // and checked, the payload goes straight into the command's buffer (what has arrived
  // is copied, the rest is received in place) instead of through the connection's
  // buffer. Not with data digests, whose check needs the whole payload at hand.
  bool receive_h2c_direct(const PduFrame& f, std::span<const uint8_t> b) {
    static constexpr uint32_t kDirectMin = 16 * 1024;
    if (f.type != PduType::kH2CData || f.has_ddgst || f.data_len < kDirectMin ||
        f.data_offset + f.data_len != f.plen || b.size() < f.data_offset) {
      return false;
    }
    if (auto e = check_header_digest(f, b.subspan(0, f.header_bytes))) {
      term(*e, b.subspan(0, std::min<uint32_t>(f.hlen, 128)));
      return false;
    }
    Cmd* c = h2c_target(f, b);
    if (!c) return false;
    const size_t have = b.size() - f.data_offset;
    uint8_t* dst = c->buf.data() + c->received;
    std::memcpy(dst, b.data() + f.data_offset, have);
    direct_cmd_ = c;
    direct_len_ = f.data_len;
    conn_->receive_into(dst + have, f.data_len - have);
    return true;
  }

 public:
  void on_received_into() override {
    Cmd* c = direct_cmd_;
    direct_cmd_ = nullptr;
    if (c) h2c_landed(c, direct_len_);
  }

 private:
  void h2c_data(const PduFrame& f, std::span<const uint8_t> pdu) {
    Cmd* c = h2c_target(f, pdu);
    if (!c) return;
    auto data = pdu.subspan(f.data_offset, f.data_len);
    uint32_t dg = 0;
    if (f.has_ddgst) std::memcpy(&dg, pdu.data() + f.data_offset + f.data_len, 4);
    if (check_data_digest(f, data, dg)) {
      conn_->close("data digest mismatch");
      return;
    }
    std::memcpy(c->buf.data() + c->received, data.data(), data.size());
    h2c_landed(c, f.data_len);
  }

  // `len` more bytes of the command's data are in its buffer.
  void h2c_landed(Cmd* c, uint32_t len) {
    c->received += len;
    if (c->received < c->len) return;
    c->waiting_h2c = false;
    const Sqe& s = c->sqe;
    if (s.opcode == io_op::kWrite) {
      const uint64_t slba = s.cdw10 | (uint64_t{s.cdw11} << 32);
      return submit(c, IoType::kWrite, slba, (s.cdw12 & 0xffff) + 1, s.cdw12 & kCdw12Fua);
    }
    if (s.opcode == io_op::kDatasetManagement) return dsm_next(c, 0);
    if (reservation_data_len(s.opcode)) return reservation(c);
    finish(c, generic(sc::kInvalidOpcode));
  }

  // Register, Acquire or Release with its keys in the command's buffer, as this
  // controller's host. A preempt's notifications run here, on this reactor.
  void reservation(Cmd* c) {
    const uint16_t st = execute_reservation(c->ns.bdev->reservations(), ctrl_->hostid, c->sqe, {c->buf.data(), c->len});
    const bool preempt_and_abort = c->sqe.opcode == io_op::kReservationAcquire && (c->sqe.cdw10 & 7) == resv::kPreemptAndAbort;
    if (st != kSuccess || !preempt_and_abort) return finish(c, st);
    // The preempted hosts' commands admitted before the preempt may still be running on
    // the bdev (a write of a fenced nexus): Preempt and Abort completes once they have,
    // so whatever the new holder writes next lands after them. Castor aborts nothing: it
    // waits (polling the namespace's in-flight count, this command included) up to
    // kPreemptDrainMs, then completes anyway, saying so.
    drain_then_finish(c, mono_ns() + kPreemptDrainMs * 1'000'000);
  }
  static constexpr uint64_t kPreemptDrainMs = 10'000;
  void drain_then_finish(Cmd* c, uint64_t deadline_ns) {
    const uint64_t running = c->ns.inflight ? c->ns.inflight->total() : 1;
    if (running <= 1 || closed_) return finish(c, kSuccess);
    if (mono_ns() >= deadline_ns) {
      spdlog::warn("nvmf: Preempt and Abort on {} completes with {} command(s) still running on the namespace",
                   ctrl_->subnqn, running - 1);
      return finish(c, kSuccess);
    }
    r_.add_timer(1'000'000, [this, c, deadline_ns] { drain_then_finish(c, deadline_ns); });
  }

  void dsm_next(Cmd* c, uint32_t i) {
    const uint32_t nr = c->len / 16;
    bdev::Bdev& b = *c->ns.bdev;
    while (i < nr) {
      uint32_t nlb;
      uint64_t slba;
      std::memcpy(&nlb, c->buf.data() + 16 * i + 4, 4);
      std::memcpy(&slba, c->buf.data() + 16 * i + 8, 8);
      ++i;
      if (nlb == 0) continue;
      if (slba > b.num_blocks() || nlb > b.num_blocks() - slba) return finish(c, generic(sc::kLbaOutOfRange));
      if (!b.supports(IoType::kUnmap)) continue;  // deallocate is advisory
      c->dsm_next = i;
      return submit(c, IoType::kUnmap, slba, nlb);
    }
    finish(c, kSuccess);
  }

  // `fua`: the command's Force Unit Access bit (writes): the bdev layer completes the
  // request only once the data is durable.
  void submit(Cmd* c, IoType t, uint64_t slba, uint64_t nlb, bool fua = false) {
    IoRequest& io = c->io;
    io.type = t;
    io.fua = fua;
    io.offset_blocks = slba;
    io.num_blocks = nlb;
    if (t == IoType::kRead || t == IoType::kWrite) {
      c->iov = {c->buf.data(), c->len};
      io.iovs = &c->iov;
      io.iovcnt = 1;
    } else {
      io.iovs = nullptr;
      io.iovcnt = 0;
    }
    io.cb = &Qpair::io_done;
    io.cb_arg = c;
    c->ns.bdev->channel(r_).submit(io);
  }

  static uint16_t status_of(const IoRequest& io) {
    switch (io.status) {
      case IoStatus::kSuccess: return kSuccess;
      case IoStatus::kNoSpace: return generic(sc::kCapacityExceeded);
      case IoStatus::kInvalid: return generic(sc::kInvalidField);
      case IoStatus::kAborted: return generic(sc::kAbortRequested, false);
      case IoStatus::kTimedOut: return generic(sc::kInternalError, false);
      case IoStatus::kPathUnavailable: return make_status(Sct::kPath, sc::kAnaPersistentLoss);
      case IoStatus::kReservationConflict: return generic(sc::kReservationConflict);
      case IoStatus::kIoError:
        return make_status(Sct::kMediaError, io.type == IoType::kRead ? sc::kUnrecoveredReadError : sc::kWriteFault);
    }
    return generic(sc::kInternalError);
  }

  static void io_done(IoRequest& io, void* arg) {
    auto* c = static_cast<Cmd*>(arg);
    Qpair* q = c->q;
    const uint16_t st = status_of(io);
    if (io.status == IoStatus::kPathUnavailable) q->lose_path();
    if (c->sqe.opcode == io_op::kDatasetManagement && st == kSuccess) return q->dsm_next(c, c->dsm_next);
    if (io.type == IoType::kRead && st == kSuccess) return q->finish_with_data(c, c->len);
    q->finish(c, st);
  }

  // The bdev behind this subsystem said it cannot serve I/O through this engine any more
  // (its nexus was fenced): the path is lost for good, and the host is told so, so that
  // it stops retrying here. Any reactor.
  void lose_path() {
    AnaGroup& g = *ctrl_->ana;
    uint8_t cur = g.state.load(std::memory_order_acquire);
    const auto lost = static_cast<uint8_t>(AnaState::kPersistentLoss);
    while (cur != lost) {
      if (g.state.compare_exchange_weak(cur, lost, std::memory_order_acq_rel)) {
        spdlog::warn("nvmf: the bdev behind {} cannot serve this path any more: ANA state persistent loss",
                     ctrl_->subnqn);
        g.chgcnt.fetch_add(1, std::memory_order_acq_rel);
        NvmfTarget::notify_ana_change(g);
        return;
      }
    }
  }

  void maybe_destroy() {
    if (!closed_ || outstanding_ > aer_held() || dying_) return;
    dying_ = true;
    r_.defer([this] { delete this; });
  }
  uint32_t aer_held() const { return ctrl_ && qid_ == 0 ? static_cast<uint32_t>(ctrl_->aers.size()) : 0; }

  NvmfTarget& t_;
  reactor::Reactor& r_;
  std::unique_ptr<reactor::Connection> conn_;
  PduLimits lim_;
  std::vector<Cmd> slots_;
  std::vector<uint16_t> free_slots_;
  // Responses to commands that got no slot (send_resp_only), not yet sent; past the limit
  // on_data() holds the input (held_) until half have gone out.
  static constexpr uint32_t kMaxLooseResps = 128;
  uint32_t loose_resps_ = 0;
  bool held_ = false;
  std::vector<bool> cids_ = std::vector<bool>(65536, false);
  std::shared_ptr<Controller> ctrl_;
  uint16_t qid_ = 0;
  uint16_t sqhd_ = 0;
  uint16_t sq_entries_ = 32;
  bool connected_ = false;
  bool terminating_ = false;
  bool closed_ = false;
  bool dying_ = false;
  uint32_t outstanding_ = 0;
  Cmd* direct_cmd_ = nullptr;  // receiving an H2CData payload in place (receive_into)
  uint32_t direct_len_ = 0;
  uint32_t aec_ = 0;
  uint32_t error_recovery_ = 0;
  bdev::ReservationAccessCache resv_cache_;  // the I/O path's verdict for ctrl_'s host
  std::vector<uint32_t> retained_events_;  // (admin) events that found no outstanding AER
  std::shared_ptr<const std::vector<NsRef>> ns_ = std::make_shared<std::vector<NsRef>>();

 public:
  // On this qpair's reactor: adopt a new namespace snapshot; on the admin queue also
  // record the change and, if the host enabled namespace attribute notices, complete an
  // outstanding Async Event Request with one.
  void namespaces_changed(std::shared_ptr<const std::vector<NsRef>> snap, uint32_t nsid) {
    ns_ = std::move(snap);
    if (qid_ != 0 || !ctrl_ || closed_) return;
    auto& ch = ctrl_->changed_ns;
    if (std::find(ch.begin(), ch.end(), nsid) == ch.end()) ch.push_back(nsid);
    if (aec_ & kOaesNsAttr) post_event(aen::make(aen::kTypeNotice, aen::kNoticeNsAttrChanged, log_id::kChangedNs));
  }
  // On the admin queue's reactor: the subsystem's ANA state changed.
  void ana_changed() {
    if (qid_ != 0 || !ctrl_ || closed_) return;
    if (aec_ & kOaesAnaChange) post_event(aen::make(aen::kTypeNotice, aen::kNoticeAnaChange, log_id::kAna));
  }
  // Completes an outstanding Async Event Request with `dw0`, or keeps the event (once)
  // for the next one the host sends.
  void post_event(uint32_t dw0) {
    if (ctrl_->aers.empty()) {
      if (std::find(retained_events_.begin(), retained_events_.end(), dw0) == retained_events_.end()) {
        retained_events_.push_back(dw0);
      }
      return;
    }
    const uint16_t slot = ctrl_->aers.front();
    ctrl_->aers.erase(ctrl_->aers.begin());
    finish(&slots_[slot], kSuccess, dw0);
  }
  bool is_admin_of(const Controller* c) const { return qid_ == 0 && ctrl_.get() == c; }
  bool serves(const std::string& nqn) const { return ctrl_ && ctrl_->subnqn == nqn; }
  bool belongs_to(const Controller* c) const { return ctrl_.get() == c; }
};

// ---------------------------------------------------------------------------------

NvmfTarget::Namespace::Namespace() = default;
NvmfTarget::Namespace::~Namespace() = default;

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
    reactor::Reactor* r;
    Qpair* admin;
    {
      std::lock_guard ck(ctrl->mu);
      r = ctrl->admin_reactor;
      admin = ctrl->admin;
    }
    if (!r || !admin) continue;
    NvmfTarget* t = ctrl->target;
    r->send([t, r, admin, ctrl] {
      auto& live = t->live_[r->id()];
      if (std::find(live.begin(), live.end(), admin) == live.end() || !admin->belongs_to(ctrl.get())) return;
      admin->ana_changed();
    });
  }
}

// Controller ids start at a random point: one subsystem served by two engines (a volume's
// nexus before and after it moves) is one multipath subsystem to a host, which refuses a
// controller whose id another of its controllers there has. Ids are unique within an
// engine; across engines a clash is unlikely, and fails only that connect (the host's
// next attempt gets the next id).
NvmfTarget::NvmfTarget(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry, TargetOptions opts)
    : reactors_(reactors), registry_(registry), opts_(opts), live_(reactors.size()) {
  next_cntlid_ = static_cast<uint16_t>(1 + std::random_device{}() % 0xffef);
}

NvmfTarget::~NvmfTarget() {
  stop();
  std::lock_guard lk(mu_);
  // The connections are closed, but bdev I/O may still be running for them (a nexus
  // holding writes until a health record is durable): each completes into its queue
  // pair, which counts it off its namespace. Wait for that; a namespace whose I/O does
  // not end is left allocated (and its bdev claimed) rather than freed under it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (auto& [n, s] : subsystems_) {
    for (auto& [id, ns] : s->namespaces) {
      if (uint64_t left = wait_inflight(*ns->inflight, deadline)) {
        spdlog::error("nvmf: {} I/O(s) of namespace {} of {} ({}) still running at target shutdown; left allocated",
                      left, id, n, ns->bdev);
        (void)ns.release();
        continue;
      }
      ns->desc.close();
      registry_.release_claim(ns->bdev, "nvmf:" + n);
    }
  }
}

Status NvmfTarget::listen(const std::string& host, uint16_t port, uint16_t* bound) {
  uint16_t got = 0;
  auto fd = reactor::tcp_listen(host, port, 128, &got);
  if (!fd) return fd.status();
  if (bound) *bound = got;
  std::unique_lock lk(mu_);
  if (stopped_) {
    ::close(*fd);
    return make_error(Errc::kAborted, "the NVMe-oF target is stopped");
  }
  auto l = std::make_unique<reactor::Listener>(reactors_.at(0), *fd, [this](int cfd) {
    size_t k;
    {
      std::lock_guard g(mu_);
      k = next_reactor_++ % reactors_.size();
    }
    reactor::Reactor& r = reactors_.at(k);
    r.send([this, &r, cfd] { (new Qpair(*this, r, cfd))->start(); });
  });
  reactor::Listener* lp = l.get();
  listeners_.push_back({host, got, std::move(l)});
  genctr_++;
  // Not under the lock: reactor 0 may be accepting a connection, which takes it.
  lk.unlock();
  reactors_.run_on(0, [lp](reactor::Reactor&) { lp->start(); });
  spdlog::info("nvmf listening on {}:{}", host, got);
  return Status::ok();
}

void NvmfTarget::adopt(int fd, size_t reactor_index) {
  reactor::Reactor& r = reactors_.at(reactor_index % reactors_.size());
  r.send([this, &r, fd] { (new Qpair(*this, r, fd))->start(); });
}

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
          auto v = live_[i];
          for (Qpair* q : v) {
            if (!q->serves(nqn)) continue;
            ++open;
            q->close("subsystem removed");
          }
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
    registry_.release_claim(ns->bdev, "nvmf:" + nqn);
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
  auto d = registry_.open(bdev, "nvmf:" + nqn);
  if (!d) return d.status();
  auto ns = std::make_unique<Namespace>();
  ns->nsid = nsid;
  ns->bdev = bdev;
  ns->desc = std::move(d.value());
  ns->inflight = std::make_unique<NsInflight>(reactors_.size());
  const NsRef added{nsid, ns->desc.bdev(), ns->inflight.get()};
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
    ref = {nsid, ns.desc.bdev(), ns.inflight.get()};
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
  registry_.release_claim(bdev, "nvmf:" + nqn);
  spdlog::info("nvmf: namespace {} ({}) removed from {}", nsid, bdev, nqn);
  return Status::ok();
}

void NvmfTarget::publish_namespaces(const std::string& nqn, uint32_t nsid,
                                    const std::function<void(std::vector<NsRef>&)>& edit) {
  for (const auto& [cid, w] : controllers_) {
    auto ctrl = w.lock();
    if (!ctrl || ctrl->subnqn != nqn || ctrl->dead) continue;
    std::vector<std::pair<reactor::Reactor*, Qpair*>> qps;
    std::shared_ptr<const std::vector<NsRef>> snap;
    {
      std::lock_guard ck(ctrl->mu);
      auto v = std::make_shared<std::vector<NsRef>>(*ctrl->ns);
      edit(*v);
      ctrl->ns = v;
      snap = v;
      qps = ctrl->io_qpairs;
      if (ctrl->admin) qps.emplace_back(ctrl->admin_reactor, ctrl->admin);  // last: notice after the I/O queues
    }
    for (const auto& entry : qps) {
      reactor::Reactor* r = entry.first;  // not a structured binding: clang 14 cannot capture those
      Qpair* qp = entry.second;
      r->send([this, r, qp, ctrl, snap, nsid] {
        auto& live = live_[r->id()];
        if (std::find(live.begin(), live.end(), qp) == live.end() || !qp->belongs_to(ctrl.get())) return;
        qp->namespaces_changed(snap, nsid);
      });
    }
  }
}

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
      s.ana->controllers.push_back(c);
    }
    auto v = std::make_shared<std::vector<NsRef>>();
    for (const auto& [id, ns] : s.namespaces) {
      if (!ns->removing) v->push_back({id, ns->desc.bdev(), ns->inflight.get()});
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

std::vector<uint8_t> NvmfTarget::discovery_log() const {
  std::lock_guard lk(mu_);
  std::vector<DiscoveryEntry> e;
  for (const auto& l : listeners_) {
    const bool v6 = l.host.find(':') != std::string::npos;
    for (const auto& [n, s] : subsystems_) {
      if (!s->removing) e.push_back({n, l.host, std::to_string(l.port), v6, 1, false});
    }
    e.push_back({kDiscoveryNqn, l.host, std::to_string(l.port), v6, 1, true});
  }
  return build_discovery_log(genctr_, e);
}

void NvmfTarget::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  std::vector<reactor::Listener*> ls;
  for (auto& l : listeners_) ls.push_back(l.listener.get());
  reactor::stop_listeners(reactors_, ls);
  reactors_.run_on(0, [this](reactor::Reactor&) {
    for (auto& l : listeners_) l.listener.reset();
  });
  reactor::close_connections(reactors_, live_, [](Qpair* q) { q->close("target stopping"); });
}

}  // namespace castor::nvmf
