#pragma once
// One CSI operation per volume at a time: a second call for a volume whose operation is
// still running gets ABORTED (the spec's rule; the CO backs off and retries), instead of
// two calls racing on one volume's mounts, connections or castor-control state.

#include <mutex>
#include <set>
#include <string>

namespace castor::csi {

class OperationLocks {
 public:
  class Held {
   public:
    Held() = default;
    Held(OperationLocks* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    Held(Held&& o) noexcept : owner_(o.owner_), key_(std::move(o.key_)) { o.owner_ = nullptr; }
    Held& operator=(Held&&) = delete;
    ~Held() {
      if (owner_) owner_->release(key_);
    }
    explicit operator bool() const { return owner_ != nullptr; }

   private:
    OperationLocks* owner_ = nullptr;
    std::string key_;
  };

  // Empty (false) when an operation on `key` is in flight.
  Held try_acquire(const std::string& key) {
    std::lock_guard lk(mu_);
    if (!keys_.insert(key).second) return {};
    return Held(this, key);
  }

 private:
  void release(const std::string& key) {
    std::lock_guard lk(mu_);
    keys_.erase(key);
  }
  std::mutex mu_;
  std::set<std::string> keys_;
};

}  // namespace castor::csi
