#pragma once
// The host side of one NVMe/TCP queue pair, on a reactor: connection initialization,
// command submission with in-capsule or R2T-driven write data, C2HData reception and
// completion matching. The base of Castor's NVMe-oF host (castor-perf now; the nvmf://
// bdev next).
//
// Contract: everything runs on the owning reactor's thread, callbacks included.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nvmf/codec/pdu.h"
#include "reactor/tcp.h"

namespace castor::nvmf {

struct HostQpairOptions {
  bool hdgst = false;
  bool ddgst = false;
  uint16_t queue_entries = 128;
  uint32_t incapsule = 8192;  // send writes up to this size in-capsule
};

class HostQpair final : public reactor::Connection::Handler {
 public:
  // `done(cqe)` runs when the command completes; a zeroed CQE with status 0xFFFF means
  // the connection failed or closed first.
  using Done = std::function<void(const Cqe&)>;

  // Takes a connected socket. `on_ready(ok, reason)` runs after ICResp (or failure);
  // `on_closed(reason)` once the connection is gone and no command is in flight.
  HostQpair(reactor::Reactor& r, int fd, HostQpairOptions opts, std::function<void(bool, std::string)> on_ready,
            std::function<void(std::string)> on_closed);
  ~HostQpair() override;
  void start();
  void close(const std::string& why);

  // Submits `sqe` (CID assigned here). `out`: host-to-controller data (writes, Connect
  // data); `in`: where controller-to-host data lands. Both must stay valid until `done`.
  // Returns the command's CID, or -1 if the queue is full or closed. `done` never runs
  // from inside submit().
  int submit(Sqe sqe, std::span<const uint8_t> out, std::span<uint8_t> in, Done done);
  size_t inflight() const { return inflight_; }
  size_t depth() const { return slots_.size(); }
  bool ready() const { return ready_; }
  // True once on_closed has run: the owner may destroy it (from a later loop turn).
  bool closed() const { return closed_; }

  size_t on_data(std::span<const uint8_t> buf) override;
  void on_closed(const std::string& reason) override;

 private:
  struct Slot {
    bool busy = false;
    Sqe sqe{};
    std::span<const uint8_t> out;
    std::span<uint8_t> in;
    Done done;
    uint8_t hdr[96];
    uint32_t ddgst = 0;
  };
  void fail_all();
  bool handle(const PduFrame& f, std::span<const uint8_t> pdu);

  reactor::Reactor& r_;
  HostQpairOptions opts_;
  std::unique_ptr<reactor::Connection> conn_;
  std::function<void(bool, std::string)> on_ready_;
  std::function<void(std::string)> on_closed_;
  PduLimits lim_;
  std::vector<Slot> slots_;
  size_t inflight_ = 0;
  bool ready_ = false;
  bool closed_ = false;
  uint8_t icreq_[128];
};

// Synchronous set-up helpers for a control thread: connect a queue (admin if qid 0),
// enable the controller, identify namespace 1. They run on `r` and wait.
struct HostTarget {
  std::string host;
  uint16_t port = 0;
  std::string subnqn;
  std::string hostnqn = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000ca57";
};

}  // namespace castor::nvmf
