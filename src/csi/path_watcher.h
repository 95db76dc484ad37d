#pragma once
// Follows a volume's nexus when it moves (castor-csi --mode node with --control).
//
// castor-control moves a published volume's nexus to another node when its node is
// drained or lost, and publishes it there at the same subsystem NQN. The kernel keeps
// reconnecting to the old address only. With native NVMe multipath (the engines report
// a multi-controller subsystem and a shared namespace with the same identity on every
// node), a second controller to the new address joins the same namespace head, so the
// mounted file system carries on: I/O queued while no path was live continues on the new
// one. So, every period, for each staged NVMe/TCP volume with no live path, the watcher
// asks castor-control where the volume is published; a new address gets `nvme connect`
// and is recorded. Once a path is live, paths that are not live and not at the recorded
// address (the moved-from nexus) are disconnected.
//
// It looks at a volume without its operation lock, and takes the lock only to act, so it
// never races a CSI call on the same volume (a busy volume is looked at next period) and
// never makes one of a healthy volume's calls ABORTED.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "control/client/control_endpoints.h"
#include "csi/initiator.h"
#include "csi/node_state.h"
#include "csi/operation_locks.h"

namespace castor::csi {

class PathWatcher {
 public:
  PathWatcher(NodeState& state, OperationLocks& locks, std::shared_ptr<control::ControlEndpoints> control,
              InitiatorOptions opts, std::chrono::milliseconds period);
  ~PathWatcher();
  void start();
  void stop();
  // One pass over the staged volumes.
  void check_once();

 private:
  bool needs_work(const std::string& id);
  void check_volume(const std::string& id);

  NodeState& state_;
  OperationLocks& locks_;
  std::shared_ptr<control::ControlEndpoints> control_;
  InitiatorOptions opts_;
  std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace castor::csi
