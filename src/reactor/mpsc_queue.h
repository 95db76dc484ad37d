#pragma once
// Intrusive multi-producer single-consumer queue (D. Vyukov's design): push is one
// atomic exchange and never blocks; pop is consumer-only. Messages from one producer
// are popped in the order that producer pushed them.

#include <atomic>

namespace castor::reactor {

struct MpscNode {
  std::atomic<MpscNode*> next{nullptr};
};

class MpscQueue {
 public:
  MpscQueue() : head_(&stub_), tail_(&stub_) {}
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  // Any thread.
  void push(MpscNode* n) {
    n->next.store(nullptr, std::memory_order_relaxed);
    MpscNode* prev = head_.exchange(n, std::memory_order_acq_rel);
    prev->next.store(n, std::memory_order_release);
  }

  // Consumer only. Returns nullptr when empty or when a producer is mid-push (the
  // node becomes visible moments later; maybe_nonempty() stays true meanwhile).
  MpscNode* pop() {
    MpscNode* tail = tail_;
    MpscNode* next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;
    push(&stub_);
    next = tail->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  // Consumer only: true if something was pushed and not yet popped.
  bool maybe_nonempty() const {
    // tail_ is the next node to hand out unless it is the stub.
    if (tail_ != &stub_) return true;
    return stub_.next.load(std::memory_order_acquire) != nullptr ||
           head_.load(std::memory_order_acquire) != &stub_;
  }

 private:
  alignas(64) std::atomic<MpscNode*> head_;
  alignas(64) MpscNode* tail_;
  MpscNode stub_;
};

}  // namespace castor::reactor
