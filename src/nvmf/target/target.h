#pragma once
// Layer 5: the NVMe-oF/TCP target. Exports bdevs as namespaces of NVM subsystems to
// NVMe/TCP hosts (the Linux kernel initiator, Castor's own host). Dynamic controller
// model; one admin queue and up to `max_io_queues` I/O queues per controller, each queue
// a TCP connection owned by one reactor. A discovery subsystem lists every subsystem on
// every listener.
//
// NvmfTarget's methods are thread-safe control-path calls (never from a reactor).

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "nvmf/codec/ana_log.h"
#include "nvmf/codec/spec.h"
#include "reactor/tcp.h"
#include "reactor/tcp_server.h"

namespace castor::nvmf {

struct TargetOptions {
  uint16_t queue_entries = 128;   // MQES + 1
  uint8_t mdts = 5;               // max transfer 2^mdts * 4 KiB = 128 KiB
  uint32_t incapsule = 8192;      // in-capsule data on I/O queues (admin: 8 KiB)
  uint32_t max_h2c_data = 131072; // MAXH2CDATA
  uint16_t max_io_queues = 8;
  uint32_t default_kato_ms = 120000;
  // The Read and Write data all queue pairs together may have in flight (besides each
  // queue's own limit, queue_entries commands), split evenly over the reactors. A queue
  // pair whose next command does not fit stops reading until half its reactor's share is
  // free; one command alone always fits. 0: no limit beyond the queues' own.
  uint64_t buffer_budget_bytes = 1ull << 30;
};

struct SubsystemInfo {
  std::string nqn;
  std::string serial;
  std::vector<std::string> allowed_hosts;  // empty: any host
  std::vector<std::pair<uint32_t, std::string>> namespaces;  // nsid, bdev
  uint32_t controllers = 0;
  AnaState ana_state = AnaState::kOptimized;
};

struct ControllerInfo {
  uint16_t cntlid = 0;
  std::string subnqn;
  std::string hostnqn;
  uint32_t io_queues = 0;
  uint32_t kato_ms = 0;
};

class Controller;
class Qpair;
struct AnaGroup;
struct NsInflight;
struct NsRef;

class NvmfTarget {
 public:
  NvmfTarget(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry, TargetOptions opts = {});
  ~NvmfTarget();

  // Errors: AlreadyExists (address in use), IoError.
  Status listen(const std::string& host, uint16_t port, uint16_t* bound);
  // Errors: InvalidArgument (NQN syntax), AlreadyExists.
  Status add_subsystem(const std::string& nqn, const std::vector<std::string>& allowed_hosts);
  // Removes a subsystem and releases its bdevs (free when this returns). With controllers
  // connected: Busy, unless `force`, which disconnects them (every queue pair closed)
  // first. Either way the call waits, refusing connects meanwhile, for bdev I/O still
  // running for it. Errors: NotFound; Busy with controllers connected and !force, while
  // it or one of its namespaces is being removed, or when that I/O has not finished
  // within `drain_timeout_ms` (a hung bdev): the subsystem then stays exactly as it was
  // (disconnected hosts may connect again) and removing it again succeeds once it ends.
  Status remove_subsystem(const std::string& nqn, bool force = false, uint64_t drain_timeout_ms = 30000);
  // Adds bdev as a namespace (nsid 0 = the next free). Errors: NotFound, AlreadyExists,
  // Busy (bdev claimed).
  Result<uint32_t> add_namespace(const std::string& nqn, const std::string& bdev, uint32_t nsid = 0);
  // Removes a namespace from a live subsystem. Connected controllers stop seeing it at
  // once (new commands to it fail with Invalid Namespace) and get a namespace-change
  // notice (Changed Namespace List, AER); the call then waits for the bdev I/O already
  // running on it and releases the bdev (free when this returns). Errors: NotFound;
  // Busy while the subsystem or this namespace is being removed, or when that I/O has
  // not finished within `drain_timeout_ms` (a hung bdev): the namespace is then put back
  // as it was, announced to the controllers like an added one, and removing it again
  // succeeds once the I/O ends.
  Status remove_namespace(const std::string& nqn, uint32_t nsid, uint64_t drain_timeout_ms = 30000);
  // The bdev of every namespace named `bdev` has grown (its size is read live, so
  // Identify Namespace reports the new NSZE/NCAP/NUSE at once): each connected
  // controller of those subsystems gets a namespace-attribute notice (the NSID goes on
  // its Changed Namespace List, log page 04h, and an outstanding Async Event Request
  // completes if the host enabled the notice). Returns how many namespaces it announced.
  size_t announce_resize(const std::string& bdev);
  // Asymmetric Namespace Access: every namespace of a subsystem is in ANA group 1, whose
  // state is this engine's path to the subsystem (a host that reaches the subsystem
  // through several engines uses the optimized ones). A new subsystem is optimized. In
  // the inaccessible, persistent-loss and change states every I/O command is answered
  // with the matching path error (SCT 3), which a multipath host retries on another
  // path. A change bumps the ANA change count and sends an ANA change notice to each
  // connected controller that enabled it. A namespace whose bdev completes an I/O with
  // IoStatus::kPathUnavailable (a fenced nexus) moves its subsystem to persistent loss
  // by itself. Errors: NotFound, InvalidArgument (not an ANA state).
  Status set_ana_state(const std::string& nqn, AnaState state);
  std::vector<SubsystemInfo> list_subsystems() const;
  std::vector<ControllerInfo> list_controllers() const;
  // Serves an already connected socket as a new queue pair on reactor `reactor_index`
  // (tests and fuzzing use a socketpair). Takes ownership of `fd`.
  void adopt(int fd, size_t reactor_index);
  void stop();

  const TargetOptions& options() const { return opts_; }
  // Times a queue pair stopped reading because the host was not reading the responses to
  // commands refused outside the queue (more commands than the queue holds, a CID in use).
  uint64_t receive_holds() const { return receive_holds_.load(std::memory_order_relaxed); }
  // Times a queue pair stopped reading because buffer_budget_bytes was spent.
  uint64_t budget_holds() const { return budget_holds_.load(std::memory_order_relaxed); }

 private:
  friend class Qpair;
  friend class Controller;
  struct Namespace {
    Namespace();
    ~Namespace();
    uint32_t nsid = 0;
    std::string bdev;
    bdev::BdevDesc desc;
    std::unique_ptr<NsInflight> inflight;  // bdev I/Os running on it, per reactor
    bool removing = false;  // remove_namespace() waits for its I/O: hidden from controllers
  };
  struct Subsystem {
    std::string nqn;
    std::string serial;
    std::vector<std::string> allowed_hosts;
    std::map<uint32_t, std::unique_ptr<Namespace>> namespaces;
    std::shared_ptr<AnaGroup> ana;  // shared with its controllers (their I/O path reads it)
    bool removing = false;  // remove_subsystem() waits for its I/O: no connects, not listed
  };

  // Connect-time lookups (under mu_).
  std::shared_ptr<Controller> create_controller(Qpair& admin, const std::string& subnqn, const std::string& hostnqn,
                                                uint32_t kato_ms, uint16_t* status);
  std::shared_ptr<Controller> find_controller(uint16_t cntlid, const std::string& subnqn, const std::string& hostnqn);
  void drop_controller(uint16_t cntlid);
  std::vector<uint8_t> discovery_log() const;
  // Waits until `deadline` for a namespace's running bdev I/O to end; returns how many
  // are left (0: none).
  static uint64_t wait_inflight(const NsInflight& inflight, std::chrono::steady_clock::time_point deadline);
  // Under mu_: gives each live controller of `nqn` the namespace snapshot `edit` makes
  // of its current one, delivered to every queue pair on its reactor (the admin queue
  // last: it records the change and sends the notice for `nsid`).
  void publish_namespaces(const std::string& nqn, uint32_t nsid,
                          const std::function<void(std::vector<NsRef>&)>& edit);
  // Tells every live controller of an ANA group that its state changed, on its admin
  // queue's reactor. Any thread (a reactor too); takes only the group's and the
  // controllers' own locks.
  static void notify_ana_change(AnaGroup& g);
  // Runs fn on the reactor of the queue pair with this connection id, if it is still
  // live there then (an id is never reused, so a queue pair that went away is skipped,
  // not mistaken for a new one at the same address).
  void with_qpair(uint64_t connection, std::function<void(Qpair&)> fn);

  reactor::ReactorGroup& reactors_;
  bdev::BdevRegistry& registry_;
  TargetOptions opts_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Subsystem>> subsystems_;
  std::map<uint16_t, std::weak_ptr<Controller>> controllers_;
  uint16_t next_cntlid_ = 1;
  uint64_t genctr_ = 1;
  std::atomic<uint64_t> receive_holds_{0};
  std::atomic<uint64_t> budget_holds_{0};
  // Listeners and the live queue pairs by connection id. Last: stopped and destroyed
  // first, while the subsystems above are still there.
  reactor::TcpServer tcp_;
};

}  // namespace castor::nvmf
