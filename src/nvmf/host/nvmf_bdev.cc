#include "nvmf/host/nvmf_bdev.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "nvmf/codec/ana_log.h"
#include "nvmf/codec/spec.h"
#include "nvmf/host/qpair.h"
#include "reactor/tcp.h"

namespace castor::nvmf {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;

const char* controller_state_name(ControllerState s) {
  switch (s) {
    case ControllerState::kConnecting: return "connecting";
    case ControllerState::kLive: return "live";
    case ControllerState::kResetting: return "resetting";
    case ControllerState::kLost: return "lost";
    case ControllerState::kStopped: return "stopped";
  }
  return "?";
}

Result<NvmfHostOptions> NvmfHostOptions::from_uri(const Uri& uri, const NvmfHostOptions& defaults) {
  if (auto st = uri.check_keys({"hostnqn", "hostid", "hdgst", "ddgst", "qd", "io_timeout_ms", "keep_alive_ms",
                                "connect_timeout_ms", "reconnect_delay_ms", "reconnect_delay_max_ms",
                                "ctrl_loss_timeout_ms", "nsid", "name", "paths"});
      !st) {
    return st;
  }
  NvmfHostOptions o = defaults;
  o.hostnqn = uri.get("hostnqn", o.hostnqn);
  if (o.hostnqn.empty() || o.hostnqn.size() > 223) {
    return make_error(Errc::kInvalidArgument, "hostnqn must be 1..223 characters");
  }
  if (auto h = uri.get("hostid"); !h.empty()) {
    auto u = Uuid::parse(h);
    if (!u || u->is_nil()) return make_error(Errc::kInvalidArgument, "hostid '{}' is not a non-zero UUID", h);
    o.hostid = *u;
  }
  auto b = [&](const char* k, bool& out) -> Status {
    auto v = uri.get_bool(k, out);
    if (!v) return v.status();
    out = *v;
    return Status::ok();
  };
  auto u = [&](const char* k, uint64_t& out, uint64_t lo, uint64_t hi) -> Status {
    auto v = uri.get_u64(k, out);
    if (!v) return v.status();
    if (*v < lo || *v > hi) return make_error(Errc::kInvalidArgument, "{} must be in [{}, {}]", k, lo, hi);
    out = *v;
    return Status::ok();
  };
  uint64_t qd = o.queue_depth, kato = o.keep_alive_ms, nsid = o.nsid;
  for (auto st : {b("hdgst", o.hdgst), b("ddgst", o.ddgst), u("qd", qd, 2, 1024),
                  u("io_timeout_ms", o.io_timeout_ms, 1, 3'600'000), u("keep_alive_ms", kato, 100, 3'600'000),
                  u("connect_timeout_ms", o.connect_timeout_ms, 1, 600'000),
                  u("reconnect_delay_ms", o.reconnect_delay_ms, 1, 600'000),
                  u("reconnect_delay_max_ms", o.reconnect_delay_max_ms, 1, 3'600'000),
                  u("ctrl_loss_timeout_ms", o.ctrl_loss_timeout_ms, 0, UINT64_MAX / 1'000'000),
                  u("nsid", nsid, 1, 0xfffffffe)}) {
    if (!st) return st;
  }
  o.queue_depth = static_cast<uint16_t>(qd);
  o.keep_alive_ms = static_cast<uint32_t>(kato);
  o.nsid = static_cast<uint32_t>(nsid);
  o.reconnect_delay_max_ms = std::max(o.reconnect_delay_max_ms, o.reconnect_delay_ms);
  return o;
}

bdev::HostId NvmfHostOptions::host_id() const {
  if (hostid) return bdev::HostId::from_uuid(*hostid);
  static constexpr std::string_view kUuidNqn = "nqn.2014-08.org.nvmexpress:uuid:";
  if (hostnqn.rfind(kUuidNqn, 0) == 0) {
    if (auto u = Uuid::parse(hostnqn.substr(kUuidNqn.size())); u && !u->is_nil()) return bdev::HostId::from_uuid(*u);
  }
  return bdev::HostId::from_uuid(Uuid::from_name(hostnqn));
}

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint32_t kMaxBlocksPerCmd = 65536;  // write-zeroes NLB is 16 bits

class Controller;
class NvmfChannel;

// One I/O request on the wire: possibly several commands (MDTS split, or unmap and
// write-zeroes in 64 Ki-block pieces), issued as queue slots allow.
struct Ctx {
  IoRequest* req = nullptr;
  uint64_t next = 0, end = 0;  // blocks still to issue: [next, end)
  uint32_t chunk = 0;          // blocks per command
  uint32_t inflight = 0;
  IoStatus st = IoStatus::kSuccess;
  bool conn_lost = false;
  bool abandoned = false;  // completed early (timeout): drop what comes back
  bool waiting = false;    // on the queue's list of contexts wanting slots
  uint8_t dsm[16] = {};    // unmap: the range of the command in flight
  uint8_t* buf = nullptr;  // contiguous data (the iovec, or `bounce`)
  bdev::DmaBuffer bounce;
  Ctx* next_free = nullptr;
  bool done_issuing() const { return next >= end || st != IoStatus::kSuccess || conn_lost || abandoned; }
};

// The I/O queue of one reactor. Touched only on that reactor's thread; the controller
// (on the home reactor) drives it by messages.
class IoQueue {
 public:
  IoQueue(Controller& c, reactor::Reactor& r, uint16_t qid) : c_(c), r_(r), qid_(qid), conn_(r) {}
  ~IoQueue() {
    for (Ctx* x : all_) delete x;
  }

  void submit(IoRequest& req);
  bool abort(IoRequest& req);
  void disconnect(uint64_t gen, const std::string& why);
  void connect(uint64_t gen, uint16_t cntlid);
  void declare_lost();
  void stop();
  // A command of the caller's own (reservations) on this queue's connection: `done(status)`
  // runs on this reactor with the completion status, 0xFFFF if the queue is not live or
  // its connection closes first, 0xFFFE if it is full. The spans stay valid until then.
  void passthru(Sqe s, std::span<const uint8_t> out, std::span<uint8_t> in, std::function<void(uint16_t)> done);
  bool idle() const { return !qp_ && pending_resets_ == 0 && !conn_.busy(); }
  // `path`: this queue's index among the channel's paths. `failfast` (a bdev with several
  // paths): a request this queue cannot carry now (not connected, its connection lost, a
  // path error, a timeout) is handed back at once with kPathUnavailable or kTimedOut for
  // the channel to send on another path, instead of waiting here for a reconnect.
  void set_channel(NvmfChannel* ch, size_t path = 0, bool failfast = false) {
    chan_ = ch;
    path_ = path;
    failfast_ = failfast;
  }
  bool live() const { return st_ == St::kLive; }

 private:
  enum class St { kDown, kConnecting, kLive, kLost, kStopped };
  struct Cmd {
    Ctx* ctx = nullptr;
    uint64_t t0 = 0;
  };
  void start(IoRequest& req);
  void pump(Ctx* x);
  void on_cmd_done(const Cqe& c);
  void finish_ctx(Ctx* x);
  void finish(IoRequest& req, IoStatus s);
  void drain();
  void pend_front(IoRequest& req);
  void pend_back(IoRequest& req);
  void fail_pending(IoStatus s);
  void scan_timeouts();
  void arm_scan();
  void on_qp_closed(uint64_t gen, const std::string& why);
  void requeue_waiting();
  Ctx* alloc();
  void release(Ctx* x);
  void report_failure(uint64_t gen, const std::string& why);

  Controller& c_;
  reactor::Reactor& r_;
  const uint16_t qid_;
  reactor::TcpConnector conn_;
  std::unique_ptr<HostQpair> qp_;
  St st_ = St::kDown;
  uint64_t gen_ = 0;
  NvmfChannel* chan_ = nullptr;
  size_t path_ = 0;
  bool failfast_ = false;
  bool in_submit_ = false;
  std::vector<Cmd> cmds_;
  std::vector<Ctx*> all_;
  Ctx* free_ = nullptr;
  std::vector<Ctx*> waiting_;  // partly issued contexts, oldest first
  std::vector<Ctx*> scratch_;  // drain()'s working copy (keeps its capacity)
  IoRequest* pend_head_ = nullptr;
  IoRequest* pend_tail_ = nullptr;
  bool scan_armed_ = false;
  int pending_resets_ = 0;  // deferred qp_ resets queued
  reactor::Reactor::TimerId scan_timer_{};
  ConnectData cdata_{};
};

class Controller {
 public:
  Controller(reactor::ReactorGroup& g, reactor::SockAddr addr, std::string subnqn, NvmfHostOptions o)
      : g_(g), home_(g.at(0)), addr_(std::move(addr)), subnqn_(std::move(subnqn)), o_(std::move(o)), admin_conn_(home_) {
    for (size_t i = 0; i < g.size(); ++i) {
      queues_.push_back(std::make_unique<IoQueue>(*this, g.at(i), static_cast<uint16_t>(i + 1)));
    }
  }

  // Control thread: the first connection, waited for. Errors: IoError, TimedOut,
  // InvalidArgument (host refused), InvalidArgument (no such namespace).
  Status connect_first();
  // Control thread, after connect_first() failed: keeps trying in the background as a
  // reset does (back-off, lost after ctrl_loss_timeout_ms), and once connected must find
  // the namespace `like` has (same format and NGUID, at least its size) or is lost. For
  // a second path whose target does not serve the subsystem yet.
  void connect_later(const Controller& like);
  // Control thread: tears everything down and waits until no connection remains.
  void shutdown();
  // Control thread: Identify Namespace again and adopt a larger size (the namespace may
  // have grown). Returns the namespace size in blocks. Errors: Unavailable (the
  // controller is not live or reset meanwhile), IoError (refused, or a different
  // namespace), TimedOut.
  Result<uint64_t> reidentify();
  // Control thread: the reservation command `cmd` on the namespace (reactor 0's I/O
  // queue), then, with `report`, a Reservation Report into it. Errors as
  // Bdev::reservation().
  Status reservation(const bdev::ReservationCommand& cmd, bdev::ReservationReport* report);
  const bdev::HostId& host_id() const { return host_id_; }
  // Control thread, once: `fn(blocks)` runs on the home reactor whenever the namespace
  // is found larger (a namespace-attribute notice, a reidentify(), a reconnect).
  void set_on_grow(std::function<void(uint64_t)> fn) {
    g_.run_on(0, [this, &fn](reactor::Reactor&) { on_grow_ = std::move(fn); });
  }

  // Any reactor: a queue of generation `gen` failed.
  void report_failure(uint64_t gen, std::string why) {
    home_.send([this, gen, why = std::move(why)] { fail(gen, why); });
  }
  void report_queue_ready(uint64_t gen) {
    home_.send([this, gen] { queue_ready(gen); });
  }
  void note_timeout() { timeouts_.fetch_add(1, std::memory_order_relaxed); }

  IoQueue& queue(size_t i) { return *queues_[i]; }
  const reactor::SockAddr& addr() const { return addr_; }
  const std::string& subnqn() const { return subnqn_; }
  const NvmfHostOptions& options() const { return o_; }
  uint32_t block_size() const { return lba_size_; }
  uint64_t num_blocks() const { return nlbas_.load(std::memory_order_acquire); }
  uint32_t max_xfer_blocks() const { return max_xfer_blocks_; }
  uint16_t oncs() const { return oncs_; }
  bool vwc() const { return vwc_; }
  const uint8_t* nguid() const { return nguid_; }
  bool live() const { return state_.load() == ControllerState::kLive; }
  // This path's ANA state for the namespace, as last read from the ANA log page (at each
  // connection and on every ANA change notice); optimized for a controller that does not
  // report ANA. Any thread.
  AnaState ana_state() const { return static_cast<AnaState>(ana_.load(std::memory_order_acquire)); }
  NvmfBdevStatus status() const {
    NvmfBdevStatus s;
    s.state = state_.load();
    s.resets = resets_.load();
    s.reconnects = reconnects_.load();
    s.timeouts = timeouts_.load();
    s.events = events_.load();
    std::lock_guard lk(err_mu_);
    s.last_error = last_error_;
    return s;
  }

 private:
  using CqeFn = std::function<void(const Cqe&)>;
  // Control thread: `s` on reactor 0's I/O queue with `out` data, `in_len` bytes back
  // into *in; returns the completion status. Errors: TimedOut.
  Result<uint16_t> run_io_cmd(Sqe s, std::vector<uint8_t> out, size_t in_len, std::vector<uint8_t>* in);
  void attempt();
  void admin_cmd(Sqe sqe, std::span<const uint8_t> out, std::span<uint8_t> in, CqeFn fn);
  void after_connect(uint64_t gen);
  void wait_ready(uint64_t gen, int tries);
  void identify(uint64_t gen);
  // Home reactor: Identify Namespace on the live admin queue; `done` always runs (on the
  // home reactor) with the namespace size in blocks, after adopting a larger one.
  void identify_ns(std::function<void(Result<uint64_t>)> done);
  void adopt_size(uint64_t nsze);
  // Asynchronous events: enables namespace-attribute notices and keeps one Async Event
  // Request outstanding; a notice reads the Changed Namespace List and identifies the
  // namespace again.
  void enable_events(uint64_t gen);
  void submit_aer(uint64_t gen);
  // Reads the ANA log page and adopts the state of the group listing our namespace.
  void read_ana(uint64_t gen);
  void queue_ready(uint64_t gen);
  void fail(uint64_t gen, const std::string& why);
  void teardown(const std::string& why);
  // Destroys admin queues whose connection has closed.
  void reap_admin() {
    std::erase_if(dying_, [](const auto& q) { return q->closed(); });
  }
  void keep_alive();
  void set_error(const std::string& e) {
    std::lock_guard lk(err_mu_);
    last_error_ = e;
  }

  reactor::ReactorGroup& g_;
  reactor::Reactor& home_;
  const reactor::SockAddr addr_;
  const std::string subnqn_;
  const NvmfHostOptions o_;
  const bdev::HostId host_id_ = o_.host_id();
  std::vector<std::unique_ptr<IoQueue>> queues_;

  // Learned at the first connection; constant afterwards, but for the size, which only
  // grows (written on the home reactor).
  uint32_t lba_size_ = 0;
  std::atomic<uint64_t> nlbas_{0};
  uint32_t oaes_ = 0;
  bool ana_reporting_ = false;  // CMIC.ANA
  std::atomic<uint8_t> ana_{static_cast<uint8_t>(AnaState::kOptimized)};
  std::function<void(uint64_t)> on_grow_;  // home reactor
  uint32_t max_xfer_blocks_ = 0;
  uint16_t oncs_ = 0;
  bool vwc_ = false;
  uint8_t nguid_[16] = {};

  // Home reactor only.
  std::unique_ptr<HostQpair> admin_;
  std::vector<std::unique_ptr<HostQpair>> dying_;  // closed by a teardown, not yet gone
  int pending_reaps_ = 0;                           // deferred reap_admin() calls queued
  reactor::TcpConnector admin_conn_;
  uint64_t gen_ = 0;
  bool first_ = true;
  std::function<void(Status)> first_done_;
  uint16_t cntlid_ = 0;
  size_t queues_ready_ = 0;
  uint64_t lost_at_ns_ = 0;
  uint64_t delay_ns_ = 0;
  bool ka_outstanding_ = false;
  uint64_t ka_sent_ns_ = 0;
  std::optional<reactor::Reactor::TimerId> ka_timer_, retry_timer_, watchdog_, ready_timer_;
  ConnectData cdata_{};
  std::vector<uint8_t> idbuf_ = std::vector<uint8_t>(4096);

  std::atomic<ControllerState> state_{ControllerState::kConnecting};
  std::atomic<uint64_t> resets_{0}, reconnects_{0}, timeouts_{0}, events_{0};
  mutable std::mutex err_mu_;
  std::string last_error_;
};

// One reactor's channel: its I/O queue on each path (one path, or several controllers of
// the same subsystem at different addresses).
//
// Several paths: a request goes to the first path whose queue is connected and whose ANA
// state is optimized, else the first non-optimized one. The queues fail fast (see
// IoQueue::set_channel), and a request handed back with kPathUnavailable or kTimedOut
// goes to another path; the path it left is passed over for kPathAvoidNs. With no usable
// path the request waits in this channel, tried again every kRetryNs, and fails with
// kIoError once ctrl_loss_timeout_ms have passed since it was submitted. A timed-out request's connection is
// closed before it is handed back, so nothing late lands in its buffers; the target may
// still carry out a write it had received (as with any NVMe multipath host): a volume's
// old nexus is fenced against that (docs/nexus.md).
class NvmfChannel final : public bdev::BdevChannel {
 public:
  struct Path {
    IoQueue* queue;
    const Controller* controller;
  };
  NvmfChannel(bdev::Bdev& b, reactor::Reactor& r, std::vector<Path> paths, uint64_t give_up_ns)
      : BdevChannel(b, r), paths_(std::move(paths)), avoid_until_(paths_.size(), 0), give_up_ns_(give_up_ns) {
    for (size_t i = 0; i < paths_.size(); ++i) paths_[i].queue->set_channel(this, i, paths_.size() > 1);
  }
  // No I/O is in flight or parked (the Bdev's contract); a retry timer still armed (its
  // requests were aborted) finds the channel gone through `alive_`, as the destructor may
  // run on another thread than the reactor's.
  ~NvmfChannel() override {
    for (auto& p : paths_) p.queue->set_channel(nullptr);
  }
  // From queue `path`: completes now (async context) or on a later turn (inside submit).
  void finish(IoRequest& req, IoStatus s, bool later, size_t path) {
    if (paths_.size() > 1 && (s == IoStatus::kPathUnavailable || s == IoStatus::kTimedOut)) {
      avoid_until_[path] = mono_ns() + kPathAvoidNs;
      return route(req);
    }
    if (later) complete(req, s);
    else complete_now(req, s);
  }

 protected:
  void do_submit(IoRequest& req) override {
    if (paths_.size() == 1) return paths_[0].queue->submit(req);
    if (req.type == IoType::kReset) return complete(req, IoStatus::kSuccess);  // nothing is cached host-side
    route(req);
  }

 public:
  bool abort(IoRequest& req) override {
    for (auto it = parked_.begin(); it != parked_.end(); ++it) {
      if (*it != &req) continue;
      parked_.erase(it);
      complete(req, IoStatus::kAborted);
      return true;
    }
    for (auto& p : paths_) {
      if (p.queue->abort(req)) return true;
    }
    return false;
  }
  bool late_read_writes() const override { return false; }  // abort() drops the connection

 private:
  static constexpr uint64_t kPathAvoidNs = 100 * kMs;
  static constexpr uint64_t kRetryNs = 10 * kMs;

  // The path to use now, or -1.
  int choose(uint64_t now) const {
    int fallback = -1;
    for (size_t i = 0; i < paths_.size(); ++i) {
      if (!paths_[i].queue->live() || now < avoid_until_[i]) continue;
      const AnaState st = paths_[i].controller->ana_state();
      if (st == AnaState::kOptimized) return static_cast<int>(i);
      if (st == AnaState::kNonOptimized && fallback < 0) fallback = static_cast<int>(i);
    }
    return fallback;
  }
  // Sends `req` on the best path, or parks it. A queue that cannot take it hands it back
  // through finish(), which passes that path over and routes again: at most one hop per
  // path before the request parks.
  void route(IoRequest& req) {
    if (const int i = choose(reactor().loop_now_ns()); i >= 0) return paths_[static_cast<size_t>(i)].queue->submit(req);
    parked_.push_back(&req);
    arm_retry();
  }
  void arm_retry() {
    if (retry_armed_) return;
    retry_armed_ = true;
    reactor().add_timer(kRetryNs, [this, alive = std::weak_ptr<bool>(alive_)] {
      if (alive.expired()) return;
      retry_armed_ = false;
      retry_parked();
    });
  }
  void retry_parked() {
    std::vector<IoRequest*> parked;
    parked.swap(parked_);
    for (IoRequest* req : parked) {
      const uint64_t now = mono_ns();
      if (choose(now) >= 0) route(*req);  // may park it again
      else if (now - req->start_ns >= give_up_ns_) complete_now(*req, IoStatus::kIoError);
      else parked_.push_back(req);
    }
    if (!parked_.empty()) arm_retry();
  }

  std::vector<Path> paths_;
  std::vector<uint64_t> avoid_until_;
  const uint64_t give_up_ns_;
  std::vector<IoRequest*> parked_;  // waiting for a usable path, oldest first
  bool retry_armed_ = false;
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A remote namespace through one controller per path (the first is the URI's address,
// the others its `paths`); all paths lead to one namespace (same NGUID and format).
class NvmfBdev final : public bdev::Bdev {
 public:
  NvmfBdev(const std::string& name, std::vector<std::shared_ptr<Controller>> cs)
      : Bdev(name, "nvmf", cs.at(0)->block_size(), cs.at(0)->num_blocks()), cs_(std::move(cs)) {
    Controller& c = *cs_[0];
    uint32_t ops = bdev::io_type_bit(IoType::kRead) | bdev::io_type_bit(IoType::kWrite) |
                   bdev::io_type_bit(IoType::kReset) | bdev::io_type_bit(IoType::kFlush);
    if (c.oncs() & (1u << 2)) ops |= bdev::io_type_bit(IoType::kUnmap);
    if (c.oncs() & (1u << 3)) ops |= bdev::io_type_bit(IoType::kWriteZeroes);
    set_supported_ops(ops);
    // FUA is the Write / Write Zeroes command's own bit: the target makes the data
    // durable before it answers.
    set_fua_ops(bdev::io_type_bit(IoType::kWrite) | bdev::io_type_bit(IoType::kWriteZeroes));
    Uuid u;
    bool any = false;
    for (int i = 0; i < 16; ++i) any |= c.nguid()[i] != 0;
    if (any) {
      std::memcpy(&u, c.nguid(), std::min(sizeof(u), size_t{16}));
      set_uuid(u);
    }
    for (auto& p : cs_) {
      p->set_on_grow([this](uint64_t blocks) {
        if (blocks > num_blocks()) set_num_blocks(blocks);
      });
      if (p->num_blocks() > num_blocks()) set_num_blocks(p->num_blocks());  // grew before the hook
    }
  }
  // The channels go before the controllers: each one points at its reactor's IoQueues,
  // which the controllers own (and the last references to them may be cs_).
  ~NvmfBdev() override {
    for (auto& c : cs_) c->shutdown();
    destroy_channels();
  }
  // The first path's controller (status, host identifier).
  Controller& controller() { return *cs_[0]; }
  const std::vector<std::shared_ptr<Controller>>& paths() const { return cs_; }
  Result<uint64_t> refresh_size() override {
    if (auto n = live_path().reidentify(); !n) return n.status();
    return num_blocks();
  }
  // The remote namespace's reservations, not this bdev's own table (which only a
  // target exporting this bdev would use). Sent on a live path: every path connects as
  // the same host, so the target holds the reservation for all of them.
  Status reservation(const bdev::HostId& self, const bdev::ReservationCommand& cmd,
                     bdev::ReservationReport* report) override {
    if (!(self == controller().host_id())) {
      return make_error(Errc::kInvalidArgument,
                        "nvmf bdev '{}' connects as host {}, not {}: reservations are taken as the connection's host",
                        name(), controller().host_id().to_string(), self.to_string());
    }
    return live_path().reservation(cmd, report);
  }

 protected:
  std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor& r) override {
    std::vector<NvmfChannel::Path> paths;
    for (auto& c : cs_) paths.push_back({&c->queue(r.id()), c.get()});
    return std::make_unique<NvmfChannel>(*this, r, std::move(paths), cs_[0]->options().ctrl_loss_timeout_ms * kMs);
  }

 private:
  // The first live path whose ANA state allows I/O, else the first live one, else the first.
  Controller& live_path() {
    Controller* live = nullptr;
    for (auto& c : cs_) {
      if (!c->live()) continue;
      if (ana_accessible(c->ana_state())) return *c;
      if (!live) live = c.get();
    }
    return live ? *live : *cs_[0];
  }

  std::vector<std::shared_ptr<Controller>> cs_;
};

IoStatus map_status(uint16_t status) {
  const uint16_t sc = (status >> 1) & 0xff, sct = (status >> 9) & 0x7;
  if (sc == 0 && sct == 0) return IoStatus::kSuccess;
  if (sct == 0 && sc == 0x80) return IoStatus::kInvalid;   // LBA out of range
  if (sct == 0 && sc == 0x81) return IoStatus::kNoSpace;   // capacity exceeded
  if (sct == 0 && sc == 0x07) return IoStatus::kAborted;   // command abort requested
  if (sct == 0 && sc == 0x83) return IoStatus::kReservationConflict;  // fenced: never retried
  return IoStatus::kIoError;
}

// ------------------------------------------------------------------------- IoQueue

Ctx* IoQueue::alloc() {
  Ctx* x = free_;
  if (x) {
    free_ = x->next_free;
  } else {
    x = new Ctx;
    all_.push_back(x);
  }
  return x;
}

void IoQueue::release(Ctx* x) {
  x->req = nullptr;
  x->bounce = bdev::DmaBuffer();
  x->buf = nullptr;
  x->next_free = free_;
  free_ = x;
}

void IoQueue::finish(IoRequest& req, IoStatus s) {
  if (chan_) chan_->finish(req, s, in_submit_, path_);
}

void IoQueue::pend_back(IoRequest& req) {
  req.Task::next = nullptr;
  if (pend_tail_) pend_tail_->Task::next = &req;
  else pend_head_ = &req;
  pend_tail_ = &req;
}

void IoQueue::pend_front(IoRequest& req) {
  req.Task::next = pend_head_;
  pend_head_ = &req;
  if (!pend_tail_) pend_tail_ = &req;
}

void IoQueue::fail_pending(IoStatus s) {
  while (IoRequest* q = pend_head_) {
    pend_head_ = static_cast<IoRequest*>(q->Task::next);
    if (!pend_head_) pend_tail_ = nullptr;
    q->Task::next = nullptr;
    finish(*q, s);
  }
}

void IoQueue::submit(IoRequest& req) {
  in_submit_ = true;
  if (st_ == St::kLost) {
    finish(req, IoStatus::kIoError);
  } else if (st_ == St::kStopped) {
    finish(req, IoStatus::kAborted);
  } else if (req.type == IoType::kReset) {
    finish(req, IoStatus::kSuccess);
  } else if (failfast_ && st_ != St::kLive) {
    finish(req, IoStatus::kPathUnavailable);
  } else if (st_ != St::kLive || pend_head_ || !waiting_.empty()) {
    pend_back(req);
  } else {
    start(req);
  }
  in_submit_ = false;
}

bool IoQueue::abort(IoRequest& req) {
  if (!chan_) return false;
  // Not started yet: just take it off the list.
  for (IoRequest *q = pend_head_, *prev = nullptr; q; prev = q, q = static_cast<IoRequest*>(q->Task::next)) {
    if (q != &req) continue;
    IoRequest* after = static_cast<IoRequest*>(q->Task::next);
    if (prev) prev->Task::next = after;
    else pend_head_ = after;
    if (pend_tail_ == q) pend_tail_ = prev;
    q->Task::next = nullptr;
    chan_->finish(req, IoStatus::kAborted, true, path_);
    return true;
  }
  for (Ctx* x : all_) {
    if (x->req != &req || x->abandoned) continue;
    // Its commands may still be answered: drop the connection first (nothing more is
    // received once it is closing), then hand the request back. The controller resets
    // and the other requests of this queue are re-issued on the new connection.
    x->abandoned = true;
    if (x->waiting) {
      std::erase(waiting_, x);
      x->waiting = false;
    }
    if (x->inflight == 0) release(x);
    if (qp_) qp_->close("command aborted");
    chan_->finish(req, IoStatus::kAborted, true, path_);
    report_failure(gen_, "a command was aborted by its owner");
    return true;
  }
  return false;
}

void IoQueue::start(IoRequest& req) {
  Ctx* x = alloc();
  x->req = &req;
  x->st = IoStatus::kSuccess;
  x->conn_lost = x->abandoned = x->waiting = false;
  x->inflight = 0;
  x->next = req.offset_blocks;
  x->end = req.offset_blocks + req.num_blocks;
  const uint32_t bs = c_.block_size();
  switch (req.type) {
    case IoType::kRead:
    case IoType::kWrite:
      x->chunk = c_.max_xfer_blocks();
      if (req.iovcnt == 1) {
        x->buf = static_cast<uint8_t*>(req.iovs[0].iov_base);
      } else {
        x->bounce = bdev::DmaBuffer(req.num_blocks * bs);
        x->buf = x->bounce.data();
        if (req.type == IoType::kWrite) {
          size_t off = 0;
          for (int i = 0; i < req.iovcnt; ++i) {
            std::memcpy(x->buf + off, req.iovs[i].iov_base, req.iovs[i].iov_len);
            off += req.iovs[i].iov_len;
          }
        }
      }
      break;
    case IoType::kFlush:
      x->next = 0;
      x->end = 1;
      x->chunk = 1;
      break;
    default:
      x->chunk = kMaxBlocksPerCmd;
      break;
  }
  pump(x);
}

void IoQueue::pump(Ctx* x) {
  IoRequest& req = *x->req;
  const uint32_t bs = c_.block_size();
  const uint32_t nsid = c_.options().nsid;
  while (!x->done_issuing()) {
    if (!qp_ || qp_->inflight() >= qp_->depth()) break;
    // An unmap's range lives in its context: one command at a time.
    if (req.type == IoType::kUnmap && x->inflight > 0) break;
    const uint64_t slba = x->next;
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(x->chunk, x->end - x->next));
    Sqe s{};
    s.nsid = nsid;
    s.cdw10 = static_cast<uint32_t>(slba);
    s.cdw11 = static_cast<uint32_t>(slba >> 32);
    s.cdw12 = n - 1;
    std::span<const uint8_t> out;
    std::span<uint8_t> in;
    uint8_t* data = x->buf ? x->buf + (slba - req.offset_blocks) * bs : nullptr;
    switch (req.type) {
      case IoType::kRead:
        s.opcode = io_op::kRead;
        in = {data, size_t{n} * bs};
        break;
      case IoType::kWrite:
        s.opcode = io_op::kWrite;
        if (req.fua) s.cdw12 |= kCdw12Fua;
        out = {data, size_t{n} * bs};
        break;
      case IoType::kFlush:
        s.opcode = io_op::kFlush;
        s.cdw10 = s.cdw11 = s.cdw12 = 0;
        break;
      case IoType::kWriteZeroes:
        s.opcode = io_op::kWriteZeroes;
        if (req.fua) s.cdw12 |= kCdw12Fua;
        break;
      case IoType::kUnmap: {
        s.opcode = io_op::kDatasetManagement;
        s.cdw10 = 0;        // one range
        s.cdw11 = 1u << 2;  // AD: deallocate
        s.cdw12 = 0;
        const uint32_t cattr = 0;
        std::memcpy(x->dsm, &cattr, 4);
        std::memcpy(x->dsm + 4, &n, 4);
        std::memcpy(x->dsm + 8, &slba, 8);
        out = {x->dsm, 16};
        break;
      }
      default:
        x->st = IoStatus::kInvalid;
        continue;
    }
    int cid = qp_->submit(s, out, in, [this](const Cqe& c) { on_cmd_done(c); });
    if (cid < 0) break;
    cmds_[cid].ctx = x;
    cmds_[cid].t0 = r_.loop_now_ns();
    x->next += n;
    ++x->inflight;
  }
  if (!x->done_issuing() && !x->waiting) {
    x->waiting = true;
    waiting_.push_back(x);
  }
  if (x->inflight == 0 && x->done_issuing()) finish_ctx(x);
}

void IoQueue::on_cmd_done(const Cqe& c) {
  if (c.cid >= cmds_.size()) return;
  Ctx* x = cmds_[c.cid].ctx;
  cmds_[c.cid].ctx = nullptr;
  if (!x) return;
  --x->inflight;
  if (c.status == 0xffff) {
    x->conn_lost = true;
  } else if (IoStatus s = map_status(c.status); s != IoStatus::kSuccess && x->st == IoStatus::kSuccess) {
    // A path error (SCT 3: this controller's ANA state) is for another path to retry.
    x->st = failfast_ && ((c.status >> 9) & 7) == static_cast<uint8_t>(Sct::kPath) ? IoStatus::kPathUnavailable : s;
  }
  if (x->inflight == 0 && x->done_issuing()) finish_ctx(x);
  if (st_ == St::kLive) drain();
}

void IoQueue::finish_ctx(Ctx* x) {
  if (x->waiting) {
    std::erase(waiting_, x);
    x->waiting = false;
  }
  IoRequest* req = x->req;
  if (x->abandoned) {
    release(x);
    return;
  }
  if (x->conn_lost && x->st == IoStatus::kSuccess) {
    // The connection went away under it: run it again once the controller is back
    // (or fail it if the controller is declared lost).
    release(x);
    if (st_ == St::kStopped) finish(*req, IoStatus::kAborted);
    else if (failfast_) finish(*req, IoStatus::kPathUnavailable);
    else if (st_ == St::kLost) finish(*req, IoStatus::kIoError);
    else pend_front(*req);
    return;
  }
  if (x->st == IoStatus::kSuccess && req->type == IoType::kRead && x->bounce.data()) {
    size_t off = 0;
    for (int i = 0; i < req->iovcnt; ++i) {
      std::memcpy(req->iovs[i].iov_base, x->buf + off, req->iovs[i].iov_len);
      off += req->iovs[i].iov_len;
    }
  }
  IoStatus s = x->st;
  release(x);
  finish(*req, s);
}

void IoQueue::drain() {
  // Partly issued requests first, oldest first: each issues what the free slots allow
  // and goes back on the list (in the same order) if it still has commands to issue.
  if (!waiting_.empty() && qp_ && qp_->inflight() < qp_->depth()) {
    scratch_.clear();
    scratch_.swap(waiting_);
    for (Ctx* x : scratch_) x->waiting = false;
    for (Ctx* x : scratch_) pump(x);
  }
  while (pend_head_ && waiting_.empty() && st_ == St::kLive && qp_ && qp_->inflight() < qp_->depth()) {
    IoRequest* q = pend_head_;
    pend_head_ = static_cast<IoRequest*>(q->Task::next);
    if (!pend_head_) pend_tail_ = nullptr;
    q->Task::next = nullptr;
    start(*q);
  }
}

void IoQueue::arm_scan() {
  if (scan_armed_) return;
  scan_armed_ = true;
  const uint64_t period = std::clamp<uint64_t>(c_.options().io_timeout_ms * kMs / 4, 10 * kMs, 1000 * kMs);
  scan_timer_ = r_.add_timer(period, [this] {
    scan_armed_ = false;
    if (st_ == St::kStopped) return;
    scan_timeouts();
    arm_scan();
  });
}

void IoQueue::scan_timeouts() {
  if (!qp_ || qp_->inflight() == 0) return;
  const uint64_t now = mono_ns();
  const uint64_t limit = c_.options().io_timeout_ms * kMs;
  bool expired = false;
  for (auto& cmd : cmds_) {
    Ctx* x = cmd.ctx;
    if (!x || x->abandoned || now - cmd.t0 < limit) continue;
    expired = true;
    x->abandoned = true;
    c_.note_timeout();
    IoRequest* req = x->req;
    // Close first: once the connection is closing nothing more is received, so no late
    // data can land in the caller's buffer after it gets the request back.
    qp_->close("command timed out");
    finish(*req, IoStatus::kTimedOut);
  }
  if (expired) {
    spdlog::warn("nvmf host {}: I/O queue {} command timed out after {} ms; resetting the controller",
                 c_.addr().text, qid_, c_.options().io_timeout_ms);
    report_failure(gen_, "command timed out");
  }
}

void IoQueue::report_failure(uint64_t gen, const std::string& why) {
  if (st_ == St::kLive || st_ == St::kConnecting) st_ = St::kDown;
  c_.report_failure(gen, why);
}

void IoQueue::on_qp_closed(uint64_t gen, const std::string& why) {
  // The HostQpair failed its commands before calling this; destroy it on a later turn
  // (we are inside its callback).
  ++pending_resets_;
  r_.defer([this] {
    --pending_resets_;
    if (qp_ && qp_->closed()) qp_.reset();
  });
  if (gen == gen_ && (st_ == St::kLive || st_ == St::kConnecting)) report_failure(gen, why);
}

void IoQueue::disconnect(uint64_t gen, const std::string& why) {
  gen_ = gen;
  if (st_ != St::kLost && st_ != St::kStopped) st_ = St::kDown;
  conn_.cancel();
  if (qp_) qp_->close(why);
  requeue_waiting();
  if (failfast_) fail_pending(IoStatus::kPathUnavailable);
}

void IoQueue::requeue_waiting() {
  // Partly issued requests waiting for queue slots: their commands in flight come back
  // failed with the connection; once none is left they go back to the pending list.
  auto w = waiting_;
  for (Ctx* x : w) {
    x->conn_lost = true;
    if (x->inflight == 0) finish_ctx(x);
  }
}

void IoQueue::connect(uint64_t gen, uint16_t cntlid) {
  if (st_ == St::kStopped || st_ == St::kLost) return;
  gen_ = gen;
  st_ = St::kConnecting;
  if (cmds_.empty()) cmds_.resize(c_.options().queue_depth);
  conn_.start(c_.addr(), c_.options().connect_timeout_ms * kMs, [this, gen, cntlid](Result<int> fd) {
    if (gen != gen_ || st_ != St::kConnecting) {
      if (fd) ::close(*fd);
      return;
    }
    if (!fd) return report_failure(gen, fd.status().message());
    if (qp_) {
      // The previous connection is still closing; it cannot be, as disconnect precedes
      // connect and the reset waits a back-off, but never leak a socket over it.
      ::close(*fd);
      return report_failure(gen, "previous connection still closing");
    }
    HostQpairOptions qo;
    qo.hdgst = c_.options().hdgst;
    qo.ddgst = c_.options().ddgst;
    qo.queue_entries = c_.options().queue_depth;
    qp_ = std::make_unique<HostQpair>(
        r_, *fd, qo,
        [this, gen, cntlid](bool ok, std::string why) {
          if (!ok || gen != gen_) return;  // on_closed reports
          ConnectCmd cc{};
          cc.opcode = admin_op::kFabrics;
          cc.fctype = fctype::kConnect;
          cc.qid = qid_;
          cc.sqsize = static_cast<uint16_t>(c_.options().queue_depth - 1);
          cdata_ = ConnectData{};
          cdata_.cntlid = cntlid;
          std::strncpy(cdata_.subnqn, c_.subnqn().c_str(), sizeof(cdata_.subnqn) - 1);
          std::strncpy(cdata_.hostnqn, c_.options().hostnqn.c_str(), sizeof(cdata_.hostnqn) - 1);
          std::memcpy(cdata_.hostid, c_.host_id().bytes.data(), sizeof(cdata_.hostid));
          Sqe s;
          std::memcpy(&s, &cc, sizeof(s));
          int cid = qp_->submit(s, {reinterpret_cast<const uint8_t*>(&cdata_), sizeof(cdata_)}, {},
                                [this, gen](const Cqe& c) {
                                  if (gen != gen_ || st_ != St::kConnecting) return;
                                  if (c.status == 0xffff) return;  // on_closed reports
                                  if (c.status != 0) {
                                    qp_->close("I/O queue connect refused");
                                    return report_failure(
                                        gen, fmt::format("I/O queue connect refused (status 0x{:04x})", c.status));
                                  }
                                  st_ = St::kLive;
                                  arm_scan();
                                  c_.report_queue_ready(gen);
                                  drain();
                                });
          if (cid < 0) qp_->close("cannot send Connect");
        },
        [this, gen](std::string why) { on_qp_closed(gen, why); });
    qp_->start();
  });
}

void IoQueue::declare_lost() {
  if (st_ == St::kStopped) return;
  st_ = St::kLost;
  requeue_waiting();
  fail_pending(failfast_ ? IoStatus::kPathUnavailable : IoStatus::kIoError);
}

void IoQueue::passthru(Sqe s, std::span<const uint8_t> out, std::span<uint8_t> in,
                       std::function<void(uint16_t)> done) {
  if (st_ != St::kLive || !qp_) return done(0xffff);
  s.nsid = c_.options().nsid;
  // Not in cmds_: the timeout scan does not see it (the caller waits with its own
  // deadline), and on_cmd_done() never does.
  const int cid = qp_->submit(s, out, in, [this, done](const Cqe& c) {
    done(c.status);
    if (st_ == St::kLive) drain();
  });
  if (cid < 0) done(0xfffe);
}

void IoQueue::stop() {
  st_ = St::kStopped;
  if (scan_armed_) {
    r_.cancel_timer(scan_timer_);
    scan_armed_ = false;
  }
  ++gen_;
  conn_.cancel();
  if (qp_) qp_->close("controller stopped");
  requeue_waiting();
  fail_pending(IoStatus::kAborted);
}

// ----------------------------------------------------------------------- Controller

Status Controller::connect_first() {
  std::promise<Status> p;
  auto f = p.get_future();
  home_.send([this, &p] {
    first_done_ = [&p](Status st) { p.set_value(std::move(st)); };
    attempt();
  });
  return f.get();
}

void Controller::connect_later(const Controller& like) {
  lba_size_ = like.lba_size_;
  nlbas_.store(like.num_blocks(), std::memory_order_release);
  max_xfer_blocks_ = like.max_xfer_blocks_;
  oncs_ = like.oncs_;
  vwc_ = like.vwc_;
  std::memcpy(nguid_, like.nguid_, sizeof(nguid_));
  std::promise<void> p;
  home_.send([this, &p] {
    first_ = false;
    state_ = ControllerState::kResetting;
    lost_at_ns_ = mono_ns();
    delay_ns_ = o_.reconnect_delay_ms * kMs;
    retry_timer_ = home_.add_timer(delay_ns_, [this] {
      retry_timer_.reset();
      if (state_ == ControllerState::kResetting) attempt();
    });
    p.set_value();
  });
  p.get_future().wait();
}

void Controller::attempt() {
  const uint64_t gen = ++gen_;
  queues_ready_ = 0;
  if (!first_) state_ = ControllerState::kResetting;
  // A watchdog over the whole sequence: a target that accepts but never answers must
  // not stall the reconnect loop.
  watchdog_ = home_.add_timer(std::max<uint64_t>(o_.connect_timeout_ms, 1000) * 3 * kMs, [this, gen] {
    watchdog_.reset();
    fail(gen, "controller set-up timed out");
  });
  admin_conn_.start(addr_, o_.connect_timeout_ms * kMs, [this, gen](Result<int> fd) {
    if (gen != gen_) {
      if (fd) ::close(*fd);
      return;
    }
    if (!fd) return fail(gen, fd.status().message());
    HostQpairOptions qo;
    qo.hdgst = o_.hdgst;
    qo.ddgst = o_.ddgst;
    qo.queue_entries = 32;
    admin_ = std::make_unique<HostQpair>(
        home_, *fd, qo,
        [this, gen](bool ok, std::string) {
          if (!ok || gen != gen_) return;
          ConnectCmd cc{};
          cc.opcode = admin_op::kFabrics;
          cc.fctype = fctype::kConnect;
          cc.qid = 0;
          cc.sqsize = 31;
          cc.kato = o_.keep_alive_ms;
          cdata_ = ConnectData{};
          cdata_.cntlid = 0xffff;
          std::strncpy(cdata_.subnqn, subnqn_.c_str(), sizeof(cdata_.subnqn) - 1);
          std::strncpy(cdata_.hostnqn, o_.hostnqn.c_str(), sizeof(cdata_.hostnqn) - 1);
          std::memcpy(cdata_.hostid, host_id_.bytes.data(), sizeof(cdata_.hostid));
          Sqe s;
          std::memcpy(&s, &cc, sizeof(s));
          admin_cmd(s, {reinterpret_cast<const uint8_t*>(&cdata_), sizeof(cdata_)}, {}, [this, gen](const Cqe& c) {
            if (c.status != 0) {
              const uint16_t sc = (c.status >> 1) & 0xff, sct = (c.status >> 9) & 7;
              if (sct == 1 && sc == sc::kConnectInvalidHost) {
                return fail(gen, fmt::format("host {} is not allowed to connect to {}", o_.hostnqn, subnqn_));
              }
              return fail(gen, fmt::format("admin queue connect refused (status 0x{:04x})", c.status));
            }
            cntlid_ = static_cast<uint16_t>(c.dw0);
            after_connect(gen);
          });
        },
        [this, gen](std::string why) {
          ++pending_reaps_;
          home_.defer([this] {
            --pending_reaps_;
            reap_admin();
          });
          fail(gen, "admin queue closed: " + why);
        });
    admin_->start();
  });
}

void Controller::admin_cmd(Sqe sqe, std::span<const uint8_t> out, std::span<uint8_t> in, CqeFn fn) {
  const uint64_t gen = gen_;
  if (!admin_ || admin_->submit(sqe, out, in, [this, gen, fn = std::move(fn)](const Cqe& c) {
        if (gen != gen_) return;
        if (c.status == 0xffff) return;  // the close handler reports
        fn(c);
      }) < 0) {
    fail(gen, "cannot submit an admin command");
  }
}

void Controller::after_connect(uint64_t gen) {
  PropertyCmd p{};
  p.opcode = admin_op::kFabrics;
  p.fctype = fctype::kPropertySet;
  p.ofst = prop::kCc;
  p.value = (6u << 16) | (4u << 20) | 1u;  // IOSQES 64 B, IOCQES 16 B, EN
  Sqe s;
  std::memcpy(&s, &p, sizeof(s));
  admin_cmd(s, {}, {}, [this, gen](const Cqe& c) {
    if (c.status != 0) return fail(gen, "enabling the controller failed");
    wait_ready(gen, 0);
  });
}

void Controller::wait_ready(uint64_t gen, int tries) {
  PropertyCmd p{};
  p.opcode = admin_op::kFabrics;
  p.fctype = fctype::kPropertyGet;
  p.ofst = prop::kCsts;
  Sqe s;
  std::memcpy(&s, &p, sizeof(s));
  admin_cmd(s, {}, {}, [this, gen, tries](const Cqe& c) {
    if (c.status != 0) return fail(gen, "reading CSTS failed");
    if (c.dw0 & 2) return fail(gen, "controller fatal status (CSTS.CFS)");
    if (!(c.dw0 & 1)) {
      if (tries >= 100) return fail(gen, "controller did not become ready");
      ready_timer_ = home_.add_timer(10 * kMs, [this, gen, tries] {
        ready_timer_.reset();
        if (gen == gen_) wait_ready(gen, tries + 1);
      });
      return;
    }
    Sqe nq{};
    nq.opcode = admin_op::kSetFeatures;
    nq.cdw10 = feature::kNumberOfQueues;
    const uint32_t n = static_cast<uint32_t>(queues_.size() - 1);
    nq.cdw11 = n | (n << 16);
    admin_cmd(nq, {}, {}, [this, gen](const Cqe& c) {
      if (c.status != 0) return fail(gen, "Set Features (number of queues) failed");
      const uint32_t got = std::min(c.dw0 & 0xffff, c.dw0 >> 16) + 1;
      if (got < queues_.size()) {
        return fail(gen, fmt::format("the target allows {} I/O queues, {} needed", got, queues_.size()));
      }
      identify(gen);
    });
  });
}

void Controller::identify(uint64_t gen) {
  Sqe id{};
  id.opcode = admin_op::kIdentify;
  id.cdw10 = cns::kController;
  admin_cmd(id, {}, idbuf_, [this, gen](const Cqe& c) {
    if (c.status != 0) return fail(gen, "Identify Controller failed");
    IdentifyController ic;
    std::memcpy(&ic, idbuf_.data(), sizeof(ic));
    Sqe ns{};
    ns.opcode = admin_op::kIdentify;
    ns.nsid = o_.nsid;
    ns.cdw10 = cns::kNamespace;
    const uint8_t mdts = ic.mdts;
    const uint16_t oncs = ic.oncs;
    const bool vwc = ic.vwc & 1;
    oaes_ = ic.oaes;
    ana_reporting_ = ic.cmic & kCmicAna;
    admin_cmd(ns, {}, idbuf_, [this, gen, mdts, oncs, vwc](const Cqe& c) {
      if (c.status != 0) return fail(gen, fmt::format("Identify Namespace {} failed", o_.nsid));
      IdentifyNamespace in;
      std::memcpy(&in, idbuf_.data(), sizeof(in));
      const uint8_t lbads = in.lbaf[in.flbas & 0xf].lbads;
      if (in.nsze == 0 || lbads < 9 || lbads > 16) {
        return fail(gen, fmt::format("namespace {} does not exist or has an unusable format", o_.nsid));
      }
      const uint32_t lba = 1u << lbads;
      if (first_) {
        lba_size_ = lba;
        nlbas_ = in.nsze;
        // MDTS is in units of the minimum page size (4 KiB); 0 means no limit. Cap a
        // command at 1 MiB either way so one request cannot hog the queue.
        uint64_t max_bytes = mdts ? (uint64_t{4096} << mdts) : (1u << 20);
        max_bytes = std::min<uint64_t>(max_bytes, 1u << 20);
        max_xfer_blocks_ = static_cast<uint32_t>(std::max<uint64_t>(max_bytes / lba, 1));
        oncs_ = oncs;
        vwc_ = vwc;
        std::memcpy(nguid_, in.nguid, 16);
      } else if (lba != lba_size_ || in.nsze < nlbas_ || std::memcmp(nguid_, in.nguid, 16) != 0) {
        // A different namespace answers at this address now: never write to it.
        lost_at_ns_ = 1;  // make fail() declare the controller lost
        return fail(gen, "the namespace changed (size, format or NGUID) across the reconnect");
      } else {
        adopt_size(in.nsze);  // it may have grown meanwhile
      }
      for (size_t i = 0; i < queues_.size(); ++i) {
        IoQueue* q = queues_[i].get();
        const uint16_t cntlid = cntlid_;
        g_.at(i).send([q, gen, cntlid] { q->connect(gen, cntlid); });
      }
    });
  });
}

void Controller::queue_ready(uint64_t gen) {
  if (gen != gen_) return;
  if (++queues_ready_ < queues_.size()) return;
  if (watchdog_) {
    home_.cancel_timer(*watchdog_);
    watchdog_.reset();
  }
  if (!first_) {
    reconnects_.fetch_add(1);
    spdlog::info("nvmf host {}: controller {} of {} reconnected", addr_.text, cntlid_, subnqn_);
  }
  state_ = ControllerState::kLive;
  lost_at_ns_ = 0;
  delay_ns_ = o_.reconnect_delay_ms * kMs;
  ka_outstanding_ = false;
  keep_alive();
  if (ana_reporting_) read_ana(gen);
  if (oaes_ & (kOaesNsAttr | kOaesAnaChange)) enable_events(gen);
  if (first_) {
    first_ = false;
    auto d = std::move(first_done_);
    d(Status::ok());
  }
}

void Controller::adopt_size(uint64_t nsze) {
  const uint64_t old = nlbas_.load(std::memory_order_relaxed);
  if (nsze <= old) return;
  nlbas_.store(nsze, std::memory_order_release);
  spdlog::info("nvmf host {}: namespace {} of {} grew from {} to {} blocks", addr_.text, o_.nsid, subnqn_, old,
               nsze);
  if (on_grow_) on_grow_(nsze);
}

void Controller::identify_ns(std::function<void(Result<uint64_t>)> done) {
  if (state_ != ControllerState::kLive || !admin_) {
    return done(make_error(Errc::kUnavailable, "the controller of {} at {} is {}", subnqn_, addr_.text,
                           controller_state_name(state_.load())));
  }
  auto buf = std::make_shared<std::vector<uint8_t>>(4096);
  Sqe ns{};
  ns.opcode = admin_op::kIdentify;
  ns.nsid = o_.nsid;
  ns.cdw10 = cns::kNamespace;
  const uint64_t gen = gen_;
  // Straight on the queue pair, not admin_cmd(): `done` must run even if the
  // connection closes first (its commands then complete with status 0xFFFF).
  int cid = admin_->submit(ns, {}, *buf, [this, gen, buf, done](const Cqe& c) {
    if (c.status == 0xffff || gen != gen_) {
      return done(make_error(Errc::kUnavailable, "the controller of {} reset during Identify", subnqn_));
    }
    if (c.status != 0) {
      return done(make_error(Errc::kIoError, "Identify Namespace {} of {} failed (status 0x{:04x})", o_.nsid,
                             subnqn_, c.status));
    }
    IdentifyNamespace in;
    std::memcpy(&in, buf->data(), sizeof(in));
    const uint8_t lbads = in.lbaf[in.flbas & 0xf].lbads;
    if (lbads < 9 || lbads > 16 || (1u << lbads) != lba_size_ || std::memcmp(nguid_, in.nguid, 16) != 0) {
      return done(make_error(Errc::kIoError, "namespace {} of {} changed its format or NGUID", o_.nsid, subnqn_));
    }
    if (in.nsze < nlbas_.load(std::memory_order_relaxed)) {
      return done(make_error(Errc::kIoError, "namespace {} of {} shrank from {} to {} blocks", o_.nsid, subnqn_,
                             nlbas_.load(), in.nsze));
    }
    adopt_size(in.nsze);
    done(nlbas_.load(std::memory_order_relaxed));
  });
  if (cid < 0) done(make_error(Errc::kUnavailable, "cannot submit Identify to {} (admin queue full or closed)", subnqn_));
}

Result<uint16_t> Controller::run_io_cmd(Sqe s, std::vector<uint8_t> out, size_t in_len, std::vector<uint8_t>* in) {
  struct Op {
    std::vector<uint8_t> out, in;
    std::promise<uint16_t> done;
  };
  // Shared with the reactor: a command answered after the deadline still has its buffers.
  auto op = std::make_shared<Op>();
  op->out = std::move(out);
  op->in.assign(in_len, 0);
  auto f = op->done.get_future();
  IoQueue* q = queues_[0].get();
  g_.at(0).send([q, op, s] {
    q->passthru(s, op->out, op->in, [op](uint16_t st) { op->done.set_value(st); });
  });
  const uint64_t wait_ms = std::max<uint64_t>(o_.io_timeout_ms, 1000);
  if (f.wait_for(std::chrono::milliseconds(wait_ms)) != std::future_status::ready) {
    return make_error(Errc::kTimedOut, "reservation command {:#04x} to {} not answered in {} ms", s.opcode, subnqn_,
                      wait_ms);
  }
  const uint16_t st = f.get();
  if (in) *in = std::move(op->in);
  return st;
}

Status Controller::reservation(const bdev::ReservationCommand& cmd, bdev::ReservationReport* report) {
  using A = bdev::ReservationAction;
  auto check = [&](const char* what, Result<uint16_t> r) -> Status {
    if (!r) return r.status();
    const uint16_t st = *r;
    if (st == 0) return Status::ok();
    if (st == 0xffff || st == 0xfffe) {
      return make_error(Errc::kUnavailable, "{} to {} at {}: the I/O queue is {}", what, subnqn_, addr_.text,
                        st == 0xffff ? "not connected" : "full");
    }
    const uint8_t code = status_code(st);
    if (status_type(st) == Sct::kGeneric && code == sc::kReservationConflict) {
      return make_error(Errc::kBusy, "reservation conflict: {} refused by {} at {}", what, subnqn_, addr_.text);
    }
    if (status_type(st) == Sct::kGeneric && code == sc::kInvalidField) {
      return make_error(Errc::kInvalidArgument, "{} refused by {} at {}: invalid field", what, subnqn_, addr_.text);
    }
    return make_error(Errc::kIoError, "{} to {} at {} failed (status 0x{:04x})", what, subnqn_, addr_.text, st);
  };
  if (cmd.action != A::kReport) {
    Sqe s{};
    const uint32_t iekey = cmd.ignore_key ? 1u << 3 : 0;
    const uint32_t rtype = uint32_t{static_cast<uint8_t>(cmd.type)} << 8;
    uint64_t other = 0;
    size_t len = 16;
    switch (cmd.action) {
      case A::kRegister:
      case A::kUnregister:
      case A::kReplace:
        s.opcode = io_op::kReservationRegister;
        s.cdw10 = (cmd.action == A::kRegister ? resv::kRegister
                   : cmd.action == A::kUnregister ? resv::kUnregister
                                                  : resv::kReplace) | iekey;
        other = cmd.nrkey;
        break;
      case A::kAcquire:
      case A::kPreempt:
      case A::kPreemptAndAbort:
        s.opcode = io_op::kReservationAcquire;
        s.cdw10 = (cmd.action == A::kAcquire ? resv::kAcquire
                   : cmd.action == A::kPreempt ? resv::kPreempt
                                               : resv::kPreemptAndAbort) | iekey | rtype;
        other = cmd.prkey;
        break;
      default:  // release, clear
        s.opcode = io_op::kReservationRelease;
        s.cdw10 = (cmd.action == A::kRelease ? resv::kRelease : resv::kClear) | iekey | rtype;
        len = 8;
        break;
    }
    std::vector<uint8_t> data(len);
    std::memcpy(data.data(), &cmd.crkey, 8);
    if (len == 16) std::memcpy(data.data() + 8, &other, 8);
    if (auto st = check(bdev::reservation_action_name(cmd.action), run_io_cmd(s, std::move(data), 0, nullptr)); !st) {
      return st;
    }
  }
  if (!report) return Status::ok();
  // Extended data (128-bit host identifiers); asked again, larger, if the registrants
  // did not fit.
  uint32_t len = 4096;
  for (int tries = 0; tries < 4; ++tries) {
    Sqe s{};
    s.opcode = io_op::kReservationReport;
    s.cdw10 = len / 4 - 1;
    s.cdw11 = 1;  // EDS
    std::vector<uint8_t> buf;
    if (auto st = check("report", run_io_cmd(s, {}, len, &buf)); !st) return st;
    ReservationStatusHeader h;
    std::memcpy(&h, buf.data(), sizeof(h));
    const uint32_t need = 64 + 64 * uint32_t{h.regctl};
    if (need > len) {
      len = need;
      continue;
    }
    bdev::ReservationReport r;
    r.generation = h.gen;
    r.type = static_cast<bdev::ReservationType>(h.rtype);
    for (uint32_t i = 0; i < h.regctl; ++i) {
      RegisteredControllerExtended e;
      std::memcpy(&e, buf.data() + 64 + 64 * i, sizeof(e));
      bdev::ReservationRegistrant g;
      std::memcpy(g.host.bytes.data(), e.hostid, 16);
      g.key = e.rkey;
      g.holder = e.rcsts & 1;
      if (g.holder && !bdev::all_registrants(r.type)) r.holder = g.host;
      r.registrants.push_back(g);
    }
    *report = std::move(r);
    return Status::ok();
  }
  return make_error(Errc::kIoError, "reservation report of {}: the registrants keep growing", subnqn_);
}

Result<uint64_t> Controller::reidentify() {
  auto p = std::make_shared<std::promise<Result<uint64_t>>>();
  auto f = p->get_future();
  home_.send([this, p] { identify_ns([p](Result<uint64_t> r) { p->set_value(std::move(r)); }); });
  const uint64_t wait_ms = std::max<uint64_t>(o_.io_timeout_ms, 1000);
  if (f.wait_for(std::chrono::milliseconds(wait_ms)) != std::future_status::ready) {
    return make_error(Errc::kTimedOut, "Identify Namespace of {} not answered in {} ms", subnqn_, wait_ms);
  }
  return f.get();
}

void Controller::enable_events(uint64_t gen) {
  Sqe sf{};
  sf.opcode = admin_op::kSetFeatures;
  sf.cdw10 = feature::kAsyncEventConfig;
  sf.cdw11 = oaes_ & (kOaesNsAttr | kOaesAnaChange);  // namespace attribute and ANA change notices
  admin_cmd(sf, {}, {}, [this, gen](const Cqe& c) {
    if (c.status != 0) {
      spdlog::warn("nvmf host {}: {} refused asynchronous event configuration (status 0x{:04x})", addr_.text,
                   subnqn_, c.status);
      return;
    }
    submit_aer(gen);
  });
}

void Controller::submit_aer(uint64_t gen) {
  if (gen != gen_ || state_ != ControllerState::kLive) return;
  Sqe aer{};
  aer.opcode = admin_op::kAsyncEventRequest;
  admin_cmd(aer, {}, {}, [this, gen](const Cqe& c) {
    if (c.status != 0) return;  // aborted or refused: no more events on this connection
    events_.fetch_add(1, std::memory_order_relaxed);
    const uint32_t type = c.dw0 & 7, info = (c.dw0 >> 8) & 0xff, lid = (c.dw0 >> 16) & 0xff;
    submit_aer(gen);
    if (type == aen::kTypeNotice && info == aen::kNoticeAnaChange) return read_ana(gen);
    if (type != aen::kTypeNotice || info != aen::kNoticeNsAttrChanged) return;
    // Read (and so clear) the Changed Namespace List, then identify the namespace again.
    auto page = std::make_shared<std::vector<uint8_t>>(4096);
    Sqe gl{};
    gl.opcode = admin_op::kGetLogPage;
    gl.nsid = 0xffffffff;
    gl.cdw10 = lid | (1023u << 16);  // 1024 dwords
    admin_cmd(gl, {}, *page, [this, page](const Cqe&) {
      identify_ns([this](Result<uint64_t> r) {
        if (!r) spdlog::warn("nvmf host {}: after a namespace notice: {}", addr_.text, r.status().to_string());
      });
    });
  });
}

void Controller::read_ana(uint64_t gen) {
  if (gen != gen_) return;
  auto page = std::make_shared<std::vector<uint8_t>>(4096);
  Sqe gl{};
  gl.opcode = admin_op::kGetLogPage;
  gl.nsid = 0xffffffff;
  gl.cdw10 = log_id::kAna | (1023u << 16);  // 1024 dwords
  admin_cmd(gl, {}, *page, [this, gen, page](const Cqe& c) {
    if (gen != gen_) return;
    if (c.status != 0) {
      spdlog::warn("nvmf host {}: {} refused the ANA log page (status 0x{:04x})", addr_.text, subnqn_, c.status);
      return;
    }
    auto st = ana_state_of(*page, o_.nsid);
    if (!st) {
      spdlog::warn("nvmf host {}: {}: {}", addr_.text, subnqn_, st.status().to_string());
      return;
    }
    const auto prev = static_cast<AnaState>(ana_.exchange(static_cast<uint8_t>(*st), std::memory_order_acq_rel));
    if (prev != *st) {
      spdlog::info("nvmf host {}: path to {} is {} (was {})", addr_.text, subnqn_, ana_state_name(*st),
                   ana_state_name(prev));
    }
  });
}

void Controller::keep_alive() {
  const uint64_t gen = gen_;
  ka_timer_ = home_.add_timer(uint64_t{o_.keep_alive_ms} * kMs / 2, [this, gen] {
    ka_timer_.reset();
    if (gen != gen_ || state_ != ControllerState::kLive) return;
    const uint64_t now = mono_ns();
    if (ka_outstanding_) {
      if (now - ka_sent_ns_ >= uint64_t{o_.keep_alive_ms} * kMs) {
        return fail(gen, "keep-alive not answered");
      }
    } else {
      Sqe ka{};
      ka.opcode = admin_op::kKeepAlive;
      ka_outstanding_ = true;
      ka_sent_ns_ = now;
      admin_cmd(ka, {}, {}, [this, gen](const Cqe& c) {
        ka_outstanding_ = false;
        if (c.status != 0) fail(gen, "keep-alive refused");
      });
    }
    keep_alive();
  });
}

void Controller::teardown(const std::string& why) {
  for (auto* t : {&ka_timer_, &retry_timer_, &watchdog_, &ready_timer_}) {
    if (*t) {
      home_.cancel_timer(**t);
      t->reset();
    }
  }
  admin_conn_.cancel();
  if (admin_) {
    admin_->close(why);
    dying_.push_back(std::move(admin_));
  }
  reap_admin();
  const uint64_t gen = gen_;
  for (size_t i = 0; i < queues_.size(); ++i) {
    IoQueue* q = queues_[i].get();
    g_.at(i).send([q, gen, why] { q->disconnect(gen, why); });
  }
}

void Controller::fail(uint64_t gen, const std::string& why) {
  if (gen != gen_ || state_ == ControllerState::kStopped || state_ == ControllerState::kLost) return;
  ++gen_;  // everything of the failed attempt is now stale
  set_error(why);
  teardown(why);
  if (first_) {
    state_ = ControllerState::kLost;
    auto d = std::move(first_done_);
    const bool refused = why.find("not allowed") != std::string::npos;
    d(make_error(refused ? Errc::kInvalidArgument : Errc::kIoError, "cannot attach {} at {}: {}", subnqn_,
                 addr_.text, why));
    return;
  }
  const uint64_t now = mono_ns();
  if (state_ == ControllerState::kLive) {
    resets_.fetch_add(1);
    spdlog::warn("nvmf host {}: controller of {} failed: {}; reconnecting", addr_.text, subnqn_, why);
  }
  if (lost_at_ns_ == 0) lost_at_ns_ = now;
  if (lost_at_ns_ == 1 || now - lost_at_ns_ >= o_.ctrl_loss_timeout_ms * kMs) {
    state_ = ControllerState::kLost;
    spdlog::error("nvmf host {}: controller of {} lost ({}); failing its I/O", addr_.text, subnqn_, why);
    for (size_t i = 0; i < queues_.size(); ++i) {
      IoQueue* q = queues_[i].get();
      g_.at(i).send([q] { q->declare_lost(); });
    }
    return;
  }
  state_ = ControllerState::kResetting;
  const uint64_t delay = delay_ns_ ? delay_ns_ : o_.reconnect_delay_ms * kMs;
  delay_ns_ = std::min(delay * 2, o_.reconnect_delay_max_ms * kMs);
  retry_timer_ = home_.add_timer(delay, [this] {
    retry_timer_.reset();
    if (state_ == ControllerState::kResetting) attempt();
  });
}

void Controller::shutdown() {
  home_.send([this] {
    state_ = ControllerState::kStopped;
    ++gen_;
    teardown("controller stopped");
  });
  for (size_t i = 0; i < queues_.size(); ++i) {
    IoQueue* q = queues_[i].get();
    g_.run_on(i, [q](reactor::Reactor&) { q->stop(); });
  }
  // Wait until every connection (and connect attempt) is gone.
  for (;;) {
    bool idle = true;
    g_.run_on(0, [&](reactor::Reactor&) { idle = !admin_ && dying_.empty() && pending_reaps_ == 0 && !admin_conn_.busy(); });
    for (size_t i = 0; i < queues_.size() && idle; ++i) {
      IoQueue* q = queues_[i].get();
      g_.run_on(i, [&](reactor::Reactor&) { idle = q->idle(); });
    }
    if (idle) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// --------------------------------------------------------------------------- module

// The URI's own address, then each of `paths` (HOST:PORT, comma-separated; an IPv6 host
// in brackets). Errors: InvalidArgument (a malformed or repeated address), NotFound (a
// host that does not resolve).
Result<std::vector<reactor::SockAddr>> path_addresses(const Uri& uri) {
  auto strip = [](std::string h) {
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    return h;
  };
  std::vector<reactor::SockAddr> out;
  auto add = [&](const std::string& host, uint16_t port) -> Status {
    auto a = reactor::tcp_resolve(strip(host), port);
    if (!a) return a.status();
    for (const auto& o : out) {
      if (o.text == a->text) return make_error(Errc::kInvalidArgument, "nvmf URI '{}': path {} given twice", uri.text, a->text);
    }
    out.push_back(*a);
    return Status::ok();
  };
  if (auto st = add(uri.host, uri.port.value_or(8420)); !st) return st;
  const std::string list = uri.get("paths");
  for (size_t pos = 0; pos < list.size();) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    const std::string item = list.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t colon = item.rfind(':');
    const bool bracketed_v6 = !item.empty() && item.front() == '[' && (colon == std::string::npos || colon < item.rfind(']'));
    std::string host = item;
    uint64_t port = 8420;
    if (colon != std::string::npos && !bracketed_v6) {
      host = item.substr(0, colon);
      const std::string p = item.substr(colon + 1);
      if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos ||
          (port = std::stoull(p)) == 0 || port > 65535) {
        return make_error(Errc::kInvalidArgument, "nvmf URI '{}': path '{}' has a bad port", uri.text, item);
      }
    }
    if (host.empty()) return make_error(Errc::kInvalidArgument, "nvmf URI '{}': an empty path in paths=", uri.text);
    if (auto st = add(host, static_cast<uint16_t>(port)); !st) return st;
  }
  if (out.size() > 8) return make_error(Errc::kInvalidArgument, "nvmf URI '{}': at most 8 paths", uri.text);
  return out;
}

class NvmfModule final : public bdev::BdevModule {
 public:
  explicit NvmfModule(NvmfHostOptions defaults) : defaults_(std::move(defaults)) {}
  const char* scheme() const override { return "nvmf"; }
  Result<std::string> name_for(const Uri& uri) const override {
    if (auto n = uri.get("name"); !n.empty()) return n;
    std::string nqn = uri.name_from_path();
    if (nqn.empty()) return make_error(Errc::kInvalidArgument, "URI '{}' names no subsystem NQN", uri.text);
    auto c = nqn.rfind(':');
    return c == std::string::npos ? nqn : nqn.substr(c + 1);
  }
  Result<std::unique_ptr<bdev::Bdev>> create(const Uri& uri, const std::string& name,
                                             bdev::BdevRegistry& registry) override {
    auto o = NvmfHostOptions::from_uri(uri, defaults_);
    if (!o) return o.status();
    if (uri.host.empty()) return make_error(Errc::kInvalidArgument, "nvmf URI '{}' has no host", uri.text);
    std::string nqn = uri.name_from_path();
    if (nqn.empty() || nqn.size() > 223) {
      return make_error(Errc::kInvalidArgument, "nvmf URI '{}': the path must be a subsystem NQN", uri.text);
    }
    if (registry.reactors().size() > 0xfffe) return make_error(Errc::kInvalidArgument, "too many reactors");
    auto addrs = path_addresses(uri);
    if (!addrs) return addrs.status();
    // The first path must connect now; another that does not (its engine does not serve
    // the subsystem yet) keeps trying in the background. A path that connects must lead
    // to the first one's namespace.
    std::vector<std::shared_ptr<Controller>> cs;
    auto undo = [&cs](Status st) {
      for (auto& c : cs) c->shutdown();
      return st;
    };
    for (const auto& addr : *addrs) {
      cs.push_back(std::make_shared<Controller>(registry.reactors(), addr, nqn, *o));
      if (auto st = cs.back()->connect_first(); !st) {
        if (cs.size() == 1) return undo(st);
        spdlog::warn("nvmf host: path {} of {} does not connect yet ({}); it keeps trying", addr.text, nqn,
                     st.message());
        cs.back()->connect_later(*cs.front());
        continue;
      }
      const Controller& first = *cs.front();
      const Controller& c = *cs.back();
      if (c.block_size() != first.block_size() || std::memcmp(c.nguid(), first.nguid(), 16) != 0) {
        return undo(make_error(Errc::kInvalidArgument,
                               "nvmf URI '{}': the path at {} leads to another namespace than the one at {} "
                               "(block size or NGUID differ)",
                               uri.text, c.addr().text, first.addr().text));
      }
    }
    return std::unique_ptr<bdev::Bdev>(std::make_unique<NvmfBdev>(name, std::move(cs)));
  }

 private:
  NvmfHostOptions defaults_;
};

}  // namespace

std::unique_ptr<bdev::BdevModule> make_nvmf_bdev_module(NvmfHostOptions defaults) {
  return std::make_unique<NvmfModule>(std::move(defaults));
}

Result<NvmfBdevStatus> nvmf_bdev_status(bdev::Bdev& b) {
  auto* nb = dynamic_cast<NvmfBdev*>(&b);
  if (!nb) return make_error(Errc::kInvalidArgument, "bdev '{}' is not an nvmf bdev", b.name());
  NvmfBdevStatus st = nb->controller().status();
  for (const auto& c : nb->paths()) {
    st.paths.push_back({c->addr().text, c->status().state, ana_state_name(c->ana_state())});
  }
  return st;
}

Result<bdev::HostId> nvmf_bdev_host_id(bdev::Bdev& b) {
  auto* nb = dynamic_cast<NvmfBdev*>(&b);
  if (!nb) return make_error(Errc::kInvalidArgument, "bdev '{}' is not an nvmf bdev", b.name());
  return nb->controller().host_id();
}

}  // namespace castor::nvmf
