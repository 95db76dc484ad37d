#pragma once
// Private to the target (src/nvmf/target): the state a controller's queue pairs share,
// the namespace snapshots they read on the I/O path, and a subsystem's ANA group.
//
// A controller's behaviour lives with its queue pairs (qpair.h): Connect, Property
// Get/Set, keep-alive and teardown in controller.cc, admin commands and asynchronous
// events in admin_cmds.cc, I/O commands in io_cmds.cc. The subsystems and namespaces it
// serves are NvmfTarget's (subsystem.cc).

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bdev/bdev.h"
#include "nvmf/codec/spec.h"
#include "nvmf/target/registers.h"
#include "nvmf/target/target.h"
#include "reactor/reactor.h"

namespace castor::nvmf {

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
  NsInflight* inflight;
  const bdev::BdevDesc* desc;  // the namespace's open descriptor (its I/O channels)
};

inline const NsRef* find_ns(const std::vector<NsRef>& v, uint32_t nsid) {
  for (const auto& n : v) {
    if (n.nsid == nsid) return &n;
  }
  return nullptr;
}

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
  uint64_t admin_connection = 0;  // the admin queue's TcpServer connection id (mu)
  std::vector<uint16_t> aers;  // outstanding AER slots (admin)
  std::shared_ptr<AnaGroup> ana;  // null for a discovery controller
  NvmfTarget* target = nullptr;
  std::mutex mu;  // guards admin_connection, io_qpairs
  struct IoQueueRef {
    uint64_t connection;  // TcpServer connection id (it names the reactor)
    uint16_t qid;
  };
  std::vector<IoQueueRef> io_qpairs;
  std::atomic<bool> dead{false};
  // The host identifier from the admin queue's Connect data: the identity of this
  // controller's host in every namespace's reservation table. Set before any I/O queue
  // can join.
  bdev::HostId hostid;
};

}  // namespace castor::nvmf
