// The nvmf bdev's I/O queue on one reactor (io_queue.h): its connection and Connect,
// requests split into commands (MDTS, 64 Ki-block unmap/write-zeroes pieces) as queue
// slots allow, bounce buffers, the NVMe status as an IoStatus, command timeouts, and
// what happens to requests when the connection drops, the controller is lost or stops
// (re-issued, handed back to the channel at once with several paths, or failed).

#include "nvmf/host/io_queue.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "nvmf/host/controller.h"
#include "nvmf/host/multipath.h"

namespace castor::nvmf::host {

namespace {
IoStatus map_status(uint16_t status) {
  const uint16_t sc = (status >> 1) & 0xff, sct = (status >> 9) & 0x7;
  if (sc == 0 && sct == 0) return IoStatus::kSuccess;
  if (sct == 0 && sc == 0x80) return IoStatus::kInvalid;   // LBA out of range
  if (sct == 0 && sc == 0x81) return IoStatus::kNoSpace;   // capacity exceeded
  if (sct == 0 && sc == 0x07) return IoStatus::kAborted;   // command abort requested
  if (sct == 0 && sc == 0x83) return IoStatus::kReservationConflict;  // fenced: never retried
  return IoStatus::kIoError;
}

}  // namespace

Ctx* IoQueue::alloc() {
  Ctx* x = free_;
  if (x) {
    free_ = x->next_free;
  } else {
    x = new Ctx;
    all_.push_back(x);
  }
  return x;
}

void IoQueue::release(Ctx* x) {
  x->req = nullptr;
  x->bounce = bdev::DmaBuffer();
  x->buf = nullptr;
  x->next_free = free_;
  free_ = x;
}

void IoQueue::finish(IoRequest& req, IoStatus s) {
  if (chan_) chan_->finish(req, s, in_submit_, path_);
}

void IoQueue::pend_back(IoRequest& req) {
  req.Task::next = nullptr;
  if (pend_tail_) pend_tail_->Task::next = &req;
  else pend_head_ = &req;
  pend_tail_ = &req;
}

void IoQueue::pend_front(IoRequest& req) {
  req.Task::next = pend_head_;
  pend_head_ = &req;
  if (!pend_tail_) pend_tail_ = &req;
}

void IoQueue::fail_pending(IoStatus s) {
  while (IoRequest* q = pend_head_) {
    pend_head_ = static_cast<IoRequest*>(q->Task::next);
    if (!pend_head_) pend_tail_ = nullptr;
    q->Task::next = nullptr;
    finish(*q, s);
  }
}

void IoQueue::submit(IoRequest& req) {
  in_submit_ = true;
  if (st_ == St::kLost) {
    finish(req, IoStatus::kIoError);
  } else if (st_ == St::kStopped) {
    finish(req, IoStatus::kAborted);
  } else if (req.type == IoType::kReset) {
    finish(req, IoStatus::kSuccess);
  } else if (failfast_ && st_ != St::kLive) {
    finish(req, IoStatus::kPathUnavailable);
  } else if (st_ != St::kLive || pend_head_ || !waiting_.empty()) {
    pend_back(req);
  } else {
    start(req);
  }
  in_submit_ = false;
}

bool IoQueue::abort(IoRequest& req) {
  if (!chan_) return false;
  // Not started yet: just take it off the list.
  for (IoRequest *q = pend_head_, *prev = nullptr; q; prev = q, q = static_cast<IoRequest*>(q->Task::next)) {
    if (q != &req) continue;
    IoRequest* after = static_cast<IoRequest*>(q->Task::next);
    if (prev) prev->Task::next = after;
    else pend_head_ = after;
    if (pend_tail_ == q) pend_tail_ = prev;
    q->Task::next = nullptr;
    chan_->finish(req, IoStatus::kAborted, true, path_);
    return true;
  }
  for (Ctx* x : all_) {
    if (x->req != &req || x->abandoned) continue;
    // Its commands may still be answered: drop the connection first (nothing more is
    // received once it is closing), then hand the request back. The controller resets
    // and the other requests of this queue are re-issued on the new connection.
    x->abandoned = true;
    if (x->waiting) {
      std::erase(waiting_, x);
      x->waiting = false;
    }
    if (x->inflight == 0) release(x);
    if (qp_) qp_->close("command aborted");
    chan_->finish(req, IoStatus::kAborted, true, path_);
    report_failure(gen_, "a command was aborted by its owner");
    return true;
  }
  return false;
}

void IoQueue::start(IoRequest& req) {
  Ctx* x = alloc();
  x->req = &req;
  x->st = IoStatus::kSuccess;
  x->conn_lost = x->abandoned = x->waiting = false;
  x->inflight = 0;
  x->next = req.offset_blocks;
  x->end = req.offset_blocks + req.num_blocks;
  const uint32_t bs = c_.block_size();
  switch (req.type) {
    case IoType::kRead:
    case IoType::kWrite:
      x->chunk = c_.max_xfer_blocks();
      if (req.iovcnt == 1) {
        x->buf = static_cast<uint8_t*>(req.iovs[0].iov_base);
      } else {
        x->bounce = bdev::DmaBuffer(req.num_blocks * bs);
        x->buf = x->bounce.data();
        if (req.type == IoType::kWrite) {
          size_t off = 0;
          for (int i = 0; i < req.iovcnt; ++i) {
            std::memcpy(x->buf + off, req.iovs[i].iov_base, req.iovs[i].iov_len);
            off += req.iovs[i].iov_len;
          }
        }
      }
      break;
    case IoType::kFlush:
      x->next = 0;
      x->end = 1;
      x->chunk = 1;
      break;
    default:
      x->chunk = kMaxBlocksPerCmd;
      break;
  }
  pump(x);
}

void IoQueue::pump(Ctx* x) {
  IoRequest& req = *x->req;
  const uint32_t bs = c_.block_size();
  const uint32_t nsid = c_.options().nsid;
  while (!x->done_issuing()) {
    if (!qp_ || qp_->inflight() >= qp_->depth()) break;
    // An unmap's range lives in its context: one command at a time.
    if (req.type == IoType::kUnmap && x->inflight > 0) break;
    const uint64_t slba = x->next;
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(x->chunk, x->end - x->next));
    Sqe s{};
    s.nsid = nsid;
    s.cdw10 = static_cast<uint32_t>(slba);
    s.cdw11 = static_cast<uint32_t>(slba >> 32);
    s.cdw12 = n - 1;
    std::span<const uint8_t> out;
    std::span<uint8_t> in;
    uint8_t* data = x->buf ? x->buf + (slba - req.offset_blocks) * bs : nullptr;
    switch (req.type) {
      case IoType::kRead:
        s.opcode = io_op::kRead;
        in = {data, size_t{n} * bs};
        break;
      case IoType::kWrite:
        s.opcode = io_op::kWrite;
        if (req.fua) s.cdw12 |= kCdw12Fua;
        out = {data, size_t{n} * bs};
        break;
      case IoType::kFlush:
        s.opcode = io_op::kFlush;
        s.cdw10 = s.cdw11 = s.cdw12 = 0;
        break;
      case IoType::kWriteZeroes:
        s.opcode = io_op::kWriteZeroes;
        if (req.fua) s.cdw12 |= kCdw12Fua;
        break;
      case IoType::kUnmap: {
        s.opcode = io_op::kDatasetManagement;
        s.cdw10 = 0;        // one range
        s.cdw11 = 1u << 2;  // AD: deallocate
        s.cdw12 = 0;
        const uint32_t cattr = 0;
        std::memcpy(x->dsm, &cattr, 4);
        std::memcpy(x->dsm + 4, &n, 4);
        std::memcpy(x->dsm + 8, &slba, 8);
        out = {x->dsm, 16};
        break;
      }
      default:
        x->st = IoStatus::kInvalid;
        continue;
    }
    int cid = qp_->submit(s, out, in, [this](const Cqe& c) { on_cmd_done(c); });
    if (cid < 0) break;
    cmds_[cid].ctx = x;
    cmds_[cid].t0 = r_.loop_now_ns();
    x->next += n;
    ++x->inflight;
  }
  if (!x->done_issuing() && !x->waiting) {
    x->waiting = true;
    waiting_.push_back(x);
  }
  if (x->inflight == 0 && x->done_issuing()) finish_ctx(x);
}

void IoQueue::on_cmd_done(const Cqe& c) {
  if (c.cid >= cmds_.size()) return;
  Ctx* x = cmds_[c.cid].ctx;
  cmds_[c.cid].ctx = nullptr;
  if (!x) return;
  --x->inflight;
  if (c.status == 0xffff) {
    x->conn_lost = true;
  } else if (IoStatus s = map_status(c.status); s != IoStatus::kSuccess && x->st == IoStatus::kSuccess) {
    // A path error (SCT 3: this controller's ANA state) is for another path to retry.
    x->st = failfast_ && ((c.status >> 9) & 7) == static_cast<uint8_t>(Sct::kPath) ? IoStatus::kPathUnavailable : s;
  }
  if (x->inflight == 0 && x->done_issuing()) finish_ctx(x);
  if (st_ == St::kLive) drain();
}

void IoQueue::finish_ctx(Ctx* x) {
  if (x->waiting) {
    std::erase(waiting_, x);
    x->waiting = false;
  }
  IoRequest* req = x->req;
  if (x->abandoned) {
    release(x);
    return;
  }
  if (x->conn_lost && x->st == IoStatus::kSuccess) {
    // The connection went away under it: run it again once the controller is back
    // (or fail it if the controller is declared lost).
    release(x);
    if (st_ == St::kStopped) finish(*req, IoStatus::kAborted);
    else if (failfast_) finish(*req, IoStatus::kPathUnavailable);
    else if (st_ == St::kLost) finish(*req, IoStatus::kIoError);
    else pend_front(*req);
    return;
  }
  if (x->st == IoStatus::kSuccess && req->type == IoType::kRead && x->bounce.data()) {
    size_t off = 0;
    for (int i = 0; i < req->iovcnt; ++i) {
      std::memcpy(req->iovs[i].iov_base, x->buf + off, req->iovs[i].iov_len);
      off += req->iovs[i].iov_len;
    }
  }
  IoStatus s = x->st;
  release(x);
  finish(*req, s);
}

void IoQueue::drain() {
  // Partly issued requests first, oldest first: each issues what the free slots allow
  // and goes back on the list (in the same order) if it still has commands to issue.
  if (!waiting_.empty() && qp_ && qp_->inflight() < qp_->depth()) {
    scratch_.clear();
    scratch_.swap(waiting_);
    for (Ctx* x : scratch_) x->waiting = false;
    for (Ctx* x : scratch_) pump(x);
  }
  while (pend_head_ && waiting_.empty() && st_ == St::kLive && qp_ && qp_->inflight() < qp_->depth()) {
    IoRequest* q = pend_head_;
    pend_head_ = static_cast<IoRequest*>(q->Task::next);
    if (!pend_head_) pend_tail_ = nullptr;
    q->Task::next = nullptr;
    start(*q);
  }
}

void IoQueue::arm_scan() {
  if (scan_armed_) return;
  scan_armed_ = true;
  const uint64_t period = std::clamp<uint64_t>(c_.options().io_timeout_ms * kMs / 4, 10 * kMs, 1000 * kMs);
  scan_timer_ = r_.add_timer(period, [this] {
    scan_armed_ = false;
    if (st_ == St::kStopped) return;
    scan_timeouts();
    arm_scan();
  });
}

void IoQueue::scan_timeouts() {
  if (!qp_ || qp_->inflight() == 0) return;
  const uint64_t now = mono_ns();
  const uint64_t limit = c_.options().io_timeout_ms * kMs;
  bool expired = false;
  for (auto& cmd : cmds_) {
    Ctx* x = cmd.ctx;
    if (!x || x->abandoned || now - cmd.t0 < limit) continue;
    expired = true;
    x->abandoned = true;
    c_.note_timeout();
    IoRequest* req = x->req;
    // Close first: once the connection is closing nothing more is received, so no late
    // data can land in the caller's buffer after it gets the request back.
    qp_->close("command timed out");
    finish(*req, IoStatus::kTimedOut);
  }
  if (expired) {
    spdlog::warn("nvmf host {}: I/O queue {} command timed out after {} ms; resetting the controller",
                 c_.addr().text, qid_, c_.options().io_timeout_ms);
    report_failure(gen_, "command timed out");
  }
}

void IoQueue::report_failure(uint64_t gen, const std::string& why) {
  if (st_ == St::kLive || st_ == St::kConnecting) st_ = St::kDown;
  c_.report_failure(gen, why);
}

void IoQueue::on_qp_closed(uint64_t gen, const std::string& why) {
  // The HostQpair failed its commands before calling this; destroy it on a later turn
  // (we are inside its callback).
  ++pending_resets_;
  r_.defer([this] {
    --pending_resets_;
    if (qp_ && qp_->closed()) qp_.reset();
  });
  if (gen == gen_ && (st_ == St::kLive || st_ == St::kConnecting)) report_failure(gen, why);
}

void IoQueue::disconnect(uint64_t gen, const std::string& why) {
  gen_ = gen;
  if (st_ != St::kLost && st_ != St::kStopped) st_ = St::kDown;
  conn_.cancel();
  if (qp_) qp_->close(why);
  requeue_waiting();
  if (failfast_) fail_pending(IoStatus::kPathUnavailable);
}

void IoQueue::requeue_waiting() {
  // Partly issued requests waiting for queue slots: their commands in flight come back
  // failed with the connection; once none is left they go back to the pending list.
  auto w = waiting_;
  for (Ctx* x : w) {
    x->conn_lost = true;
    if (x->inflight == 0) finish_ctx(x);
  }
}

void IoQueue::connect(uint64_t gen, uint16_t cntlid) {
  if (st_ == St::kStopped || st_ == St::kLost) return;
  gen_ = gen;
  st_ = St::kConnecting;
  if (cmds_.empty()) cmds_.resize(c_.options().queue_depth);
  conn_.start(c_.addr(), c_.options().connect_timeout_ms * kMs, [this, gen, cntlid](Result<int> fd) {
    if (gen != gen_ || st_ != St::kConnecting) {
      if (fd) ::close(*fd);
      return;
    }
    if (!fd) return report_failure(gen, fd.status().message());
    if (qp_) {
      // The previous connection is still closing; it cannot be, as disconnect precedes
      // connect and the reset waits a back-off, but never leak a socket over it.
      ::close(*fd);
      return report_failure(gen, "previous connection still closing");
    }
    HostQpairOptions qo;
    qo.hdgst = c_.options().hdgst;
    qo.ddgst = c_.options().ddgst;
    qo.queue_entries = c_.options().queue_depth;
    qp_ = std::make_unique<HostQpair>(
        r_, *fd, qo,
        [this, gen, cntlid](bool ok, std::string why) {
          if (!ok || gen != gen_) return;  // on_closed reports
          ConnectCmd cc{};
          cc.opcode = admin_op::kFabrics;
          cc.fctype = fctype::kConnect;
          cc.qid = qid_;
          cc.sqsize = static_cast<uint16_t>(c_.options().queue_depth - 1);
          cdata_ = ConnectData{};
          cdata_.cntlid = cntlid;
          std::strncpy(cdata_.subnqn, c_.subnqn().c_str(), sizeof(cdata_.subnqn) - 1);
          std::strncpy(cdata_.hostnqn, c_.options().hostnqn.c_str(), sizeof(cdata_.hostnqn) - 1);
          std::memcpy(cdata_.hostid, c_.host_id().bytes.data(), sizeof(cdata_.hostid));
          Sqe s;
          std::memcpy(&s, &cc, sizeof(s));
          int cid = qp_->submit(s, {reinterpret_cast<const uint8_t*>(&cdata_), sizeof(cdata_)}, {},
                                [this, gen](const Cqe& c) {
                                  if (gen != gen_ || st_ != St::kConnecting) return;
                                  if (c.status == 0xffff) return;  // on_closed reports
                                  if (c.status != 0) {
                                    qp_->close("I/O queue connect refused");
                                    return report_failure(
                                        gen, fmt::format("I/O queue connect refused (status 0x{:04x})", c.status));
                                  }
                                  st_ = St::kLive;
                                  arm_scan();
                                  c_.report_queue_ready(gen);
                                  drain();
                                });
          if (cid < 0) qp_->close("cannot send Connect");
        },
        [this, gen](std::string why) { on_qp_closed(gen, why); });
    qp_->start();
  });
}

void IoQueue::declare_lost() {
  if (st_ == St::kStopped) return;
  st_ = St::kLost;
  requeue_waiting();
  fail_pending(failfast_ ? IoStatus::kPathUnavailable : IoStatus::kIoError);
}

void IoQueue::passthru(Sqe s, std::span<const uint8_t> out, std::span<uint8_t> in,
                       std::function<void(uint16_t)> done) {
  if (st_ != St::kLive || !qp_) return done(0xffff);
  s.nsid = c_.options().nsid;
  // Not in cmds_: the timeout scan does not see it (the caller waits with its own
  // deadline), and on_cmd_done() never does.
  const int cid = qp_->submit(s, out, in, [this, done](const Cqe& c) {
    done(c.status);
    if (st_ == St::kLive) drain();
  });
  if (cid < 0) done(0xfffe);
}

void IoQueue::stop() {
  st_ = St::kStopped;
  if (scan_armed_) {
    r_.cancel_timer(scan_timer_);
    scan_armed_ = false;
  }
  ++gen_;
  conn_.cancel();
  if (qp_) qp_->close("controller stopped");
  requeue_waiting();
  fail_pending(IoStatus::kAborted);
}

}  // namespace castor::nvmf::host
