#pragma once
// Private to the nvmf bdev module (src/nvmf/host): the host's side of one controller,
// the path to one address. Its member functions are defined by concern:
//
//   controller.cc    connecting (admin queue set-up, then an I/O queue per reactor),
//                    keep-alive, failure, reset and reconnect with back-off, loss,
//                    shutdown
//   async_events.cc  Async Event Requests; the ANA log page (this path's ANA state);
//                    Identify Namespace again and a namespace that grew
//   reservations.cc  the reservation commands, sent on reactor 0's I/O queue

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bdev/bdev.h"
#include "nvmf/codec/spec.h"
#include "nvmf/host/io_queue.h"
#include "nvmf/host/nvmf_bdev.h"
#include "nvmf/host/qpair.h"
#include "reactor/reactor.h"
#include "reactor/tcp.h"

namespace castor::nvmf::host {

// One controller of the remote subsystem, at one address (a path): an admin queue on the
// home reactor (reactor 0), where its state machine runs, and an I/O queue per reactor.
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
  // ------------------------------------------------------- controller.cc
  void attempt();
  void admin_cmd(Sqe sqe, std::span<const uint8_t> out, std::span<uint8_t> in, CqeFn fn);
  void after_connect(uint64_t gen);
  void wait_ready(uint64_t gen, int tries);
  void identify(uint64_t gen);
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
  // ------------------------------------------------------- async_events.cc
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
  // ------------------------------------------------------- reservations.cc
  // Control thread: `s` on reactor 0's I/O queue with `out` data, `in_len` bytes back
  // into *in; returns the completion status. Errors: TimedOut.
  Result<uint16_t> run_io_cmd(Sqe s, std::vector<uint8_t> out, size_t in_len, std::vector<uint8_t>* in);

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

}  // namespace castor::nvmf::host
