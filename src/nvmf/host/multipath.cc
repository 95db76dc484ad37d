// Multipath routing of the nvmf bdev (multipath.h): the path a request takes (connected,
// ANA optimized before non-optimized, not recently failed), failing over when a queue
// hands a request back, and requests parked while no path is usable. With one path a
// request goes straight to its queue.

#include "nvmf/host/multipath.h"

#include "common/clock.h"
#include "nvmf/host/controller.h"

namespace castor::nvmf::host {

void NvmfChannel::finish(IoRequest& req, IoStatus s, bool later, size_t path) {
  if (paths_.size() > 1 && (s == IoStatus::kPathUnavailable || s == IoStatus::kTimedOut)) {
    avoid_until_[path] = mono_ns() + kPathAvoidNs;
    return route(req);
  }
  if (later) complete(req, s);
  else complete_now(req, s);
}

void NvmfChannel::do_submit(IoRequest& req) {
  if (paths_.size() == 1) return paths_[0].queue->submit(req);
  if (req.type == IoType::kReset) return complete(req, IoStatus::kSuccess);  // nothing is cached host-side
  route(req);
}

bool NvmfChannel::abort(IoRequest& req) {
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

int NvmfChannel::choose(uint64_t now) const {
  int fallback = -1;
  for (size_t i = 0; i < paths_.size(); ++i) {
    if (!paths_[i].queue->live() || now < avoid_until_[i]) continue;
    const AnaState st = paths_[i].controller->ana_state();
    if (st == AnaState::kOptimized) return static_cast<int>(i);
    if (st == AnaState::kNonOptimized && fallback < 0) fallback = static_cast<int>(i);
  }
  return fallback;
}

void NvmfChannel::route(IoRequest& req) {
  if (const int i = choose(reactor().loop_now_ns()); i >= 0) return paths_[static_cast<size_t>(i)].queue->submit(req);
  parked_.push_back(&req);
  arm_retry();
}

void NvmfChannel::arm_retry() {
  if (retry_armed_) return;
  retry_armed_ = true;
  reactor().add_timer(kRetryNs, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    retry_armed_ = false;
    retry_parked();
  });
}

void NvmfChannel::retry_parked() {
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

}  // namespace castor::nvmf::host
