#pragma once
// Private to the nvmf bdev module (src/nvmf/host): a reactor's channel of the nvmf bdev,
// which routes each request to a path. Defined in multipath.cc.

#include <cstdint>
#include <memory>
#include <vector>

#include "bdev/bdev.h"
#include "nvmf/host/io_queue.h"
#include "reactor/reactor.h"

namespace castor::nvmf::host {

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
  void finish(IoRequest& req, IoStatus s, bool later, size_t path);
  bool abort(IoRequest& req) override;
  bool late_read_writes() const override { return false; }  // abort() drops the connection

 protected:
  void do_submit(IoRequest& req) override;

 private:
  static constexpr uint64_t kPathAvoidNs = 100 * kMs;
  static constexpr uint64_t kRetryNs = 10 * kMs;

  // The path to use now, or -1.
  int choose(uint64_t now) const;
  // Sends `req` on the best path, or parks it. A queue that cannot take it hands it back
  // through finish(), which passes that path over and routes again: at most one hop per
  // path before the request parks.
  void route(IoRequest& req);
  void arm_retry();
  void retry_parked();

  std::vector<Path> paths_;
  std::vector<uint64_t> avoid_until_;
  const uint64_t give_up_ns_;
  std::vector<IoRequest*> parked_;  // waiting for a usable path, oldest first
  bool retry_armed_ = false;
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace castor::nvmf::host
