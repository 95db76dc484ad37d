#pragma once
// Private to the nvmf bdev module (src/nvmf/host): the I/O queue a controller has on each
// reactor, and the requests it carries. Defined in io_queue.cc.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bdev/bdev.h"
#include "nvmf/codec/spec.h"
#include "nvmf/host/qpair.h"
#include "reactor/reactor.h"
#include "reactor/tcp.h"

namespace castor::nvmf::host {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;

inline constexpr uint64_t kMs = 1'000'000;
inline constexpr uint32_t kMaxBlocksPerCmd = 65536;  // write-zeroes NLB is 16 bits

class Controller;
class NvmfChannel;

// One I/O request on the wire: possibly several commands (MDTS split, or unmap and
// write-zeroes in 64 Ki-block pieces), issued as queue slots allow.
struct Ctx {
  IoRequest* req = nullptr;
  uint64_t next = 0, end = 0;  // blocks still to issue: [next, end)
  uint32_t chunk = 0;          // blocks per command
  uint32_t inflight = 0;
  IoStatus st = IoStatus::kSuccess;
  bool conn_lost = false;
  bool abandoned = false;  // completed early (timeout): drop what comes back
  bool waiting = false;    // on the queue's list of contexts wanting slots
  uint8_t dsm[16] = {};    // unmap: the range of the command in flight
  uint8_t* buf = nullptr;  // contiguous data (the iovec, or `bounce`)
  bdev::DmaBuffer bounce;
  Ctx* next_free = nullptr;
  bool done_issuing() const { return next >= end || st != IoStatus::kSuccess || conn_lost || abandoned; }
};

// The I/O queue of one reactor. Touched only on that reactor's thread; the controller
// (on the home reactor) drives it by messages.
class IoQueue {
 public:
  IoQueue(Controller& c, reactor::Reactor& r, uint16_t qid) : c_(c), r_(r), qid_(qid), conn_(r) {}
  ~IoQueue() {
    for (Ctx* x : all_) delete x;
  }

  void submit(IoRequest& req);
  bool abort(IoRequest& req);
  void disconnect(uint64_t gen, const std::string& why);
  void connect(uint64_t gen, uint16_t cntlid);
  void declare_lost();
  void stop();
  // A command of the caller's own (reservations) on this queue's connection: `done(status)`
  // runs on this reactor with the completion status, 0xFFFF if the queue is not live or
  // its connection closes first, 0xFFFE if it is full. The spans stay valid until then.
  void passthru(Sqe s, std::span<const uint8_t> out, std::span<uint8_t> in, std::function<void(uint16_t)> done);
  bool idle() const { return !qp_ && pending_resets_ == 0 && !conn_.busy(); }
  // `path`: this queue's index among the channel's paths. `failfast` (a bdev with several
  // paths): a request this queue cannot carry now (not connected, its connection lost, a
  // path error, a timeout) is handed back at once with kPathUnavailable or kTimedOut for
  // the channel to send on another path, instead of waiting here for a reconnect.
  void set_channel(NvmfChannel* ch, size_t path = 0, bool failfast = false) {
    chan_ = ch;
    path_ = path;
    failfast_ = failfast;
  }
  bool live() const { return st_ == St::kLive; }

 private:
  enum class St { kDown, kConnecting, kLive, kLost, kStopped };
  struct Cmd {
    Ctx* ctx = nullptr;
    uint64_t t0 = 0;
  };
  void start(IoRequest& req);
  void pump(Ctx* x);
  void on_cmd_done(const Cqe& c);
  void finish_ctx(Ctx* x);
  void finish(IoRequest& req, IoStatus s);
  void drain();
  void pend_front(IoRequest& req);
  void pend_back(IoRequest& req);
  void fail_pending(IoStatus s);
  void scan_timeouts();
  void arm_scan();
  void on_qp_closed(uint64_t gen, const std::string& why);
  void requeue_waiting();
  Ctx* alloc();
  void release(Ctx* x);
  void report_failure(uint64_t gen, const std::string& why);

  Controller& c_;
  reactor::Reactor& r_;
  const uint16_t qid_;
  reactor::TcpConnector conn_;
  std::unique_ptr<HostQpair> qp_;
  St st_ = St::kDown;
  uint64_t gen_ = 0;
  NvmfChannel* chan_ = nullptr;
  size_t path_ = 0;
  bool failfast_ = false;
  bool in_submit_ = false;
  std::vector<Cmd> cmds_;
  std::vector<Ctx*> all_;
  Ctx* free_ = nullptr;
  std::vector<Ctx*> waiting_;  // partly issued contexts, oldest first
  std::vector<Ctx*> scratch_;  // drain()'s working copy (keeps its capacity)
  IoRequest* pend_head_ = nullptr;
  IoRequest* pend_tail_ = nullptr;
  bool scan_armed_ = false;
  int pending_resets_ = 0;  // deferred qp_ resets queued
  reactor::Reactor::TimerId scan_timer_{};
  ConnectData cdata_{};
};

}  // namespace castor::nvmf::host
