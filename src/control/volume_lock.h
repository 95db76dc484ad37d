#pragma once
// ControlPlane::VolumeLock: one operation per volume at a time (internal to the control
// plane's .cc files).

#include <memory>

#include "control/control_plane.h"

namespace castor::control {

class ControlPlane::VolumeLock {
 public:
  // The API side: Aborted at once when another API operation holds the volume; waits up
  // to `wait` while the reconciler does (its steps are short), then Aborted.
  // The reconciler side: Aborted at once when anyone holds it (it tries again next pass).
  static Result<std::unique_ptr<VolumeLock>> acquire(
      ControlPlane& cp, const std::string& uuid, Holder who,
      std::chrono::milliseconds wait = std::chrono::seconds(5)) {
    std::unique_lock lk(cp.mu_);
    auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
      auto it = cp.busy_.find(uuid);
      if (it == cp.busy_.end()) break;
      if (who == Holder::kReconciler || it->second == Holder::kApi) {
        return make_error(Errc::kAborted,
                          "volume {} has an operation in flight (busy, retry later)", uuid);
      }
      if (cp.busy_cv_.wait_until(lk, deadline) == std::cv_status::timeout &&
          cp.busy_.count(uuid)) {
        return make_error(Errc::kAborted, "volume {} is being reconciled (busy, retry later)",
                          uuid);
      }
    }
    cp.busy_[uuid] = who;
    return std::unique_ptr<VolumeLock>(new VolumeLock(cp, uuid));
  }

  ~VolumeLock() {
    {
      std::lock_guard lk(cp_.mu_);
      cp_.busy_.erase(uuid_);
    }
    cp_.busy_cv_.notify_all();
  }
  VolumeLock(const VolumeLock&) = delete;
  VolumeLock& operator=(const VolumeLock&) = delete;

 private:
  VolumeLock(ControlPlane& cp, std::string uuid) : cp_(cp), uuid_(std::move(uuid)) {}
  ControlPlane& cp_;
  std::string uuid_;
};

}  // namespace castor::control
