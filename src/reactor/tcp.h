#pragma once
// TCP on the reactor: a listener that accepts through io_uring and a connection that
// receives into a buffer and sends queued iovecs, all owned by one reactor. The
// front-end targets (NVMe-oF, NBD, iSCSI) and the NVMe-oF host build on these.
//
// Contract: every method of Listener and Connection runs on the owning reactor's
// thread, and so do all callbacks. Objects are destroyed only after on_closed().

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "reactor/reactor.h"

namespace castor::reactor {

// Creates a listening socket on host:port (port 0 picks a free port). Control path.
Result<int> tcp_listen(const std::string& host, uint16_t port, int backlog, uint16_t* bound_port);
// Finds a peer that vanished without closing (host died, cable pulled): TCP keepalive
// probes after `idle_s` seconds of silence, three of them idle_s/3 apart (at least 1 s
// apart), and TCP_USER_TIMEOUT of 2 * idle_s, so that data the peer leaves
// unacknowledged (it died mid-transfer, or stopped reading) ends the connection in the
// same time. The socket's receive or send then fails with ETIMEDOUT. A live peer's kernel
// answers the probes, so an idle client is never cut off. idle_s 0: nothing is changed.
// Errors: IoError (setsockopt).
Status tcp_keepalive(int fd, uint32_t idle_s);
// Blocking connect with a timeout (control path only).
Result<int> tcp_connect(const std::string& host, uint16_t port, int timeout_ms);

// A resolved peer address. Resolve on a control thread (getaddrinfo may block), then
// connect from a reactor with TcpConnector.
struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string text;  // "host:port" as given, for messages
};
Result<SockAddr> tcp_resolve(const std::string& host, uint16_t port);

// An asynchronous connect on a reactor (io_uring connect plus a timer), for hosts that
// reconnect from the I/O path without blocking it. One attempt at a time.
class TcpConnector final : public UringOp {
 public:
  using Done = std::function<void(Result<int>)>;
  explicit TcpConnector(Reactor& r) : r_(r) {}
  // REQUIRES: !busy() (cancel() and wait for `done` first).
  ~TcpConnector();
  // `done` runs once on this reactor with the connected fd (TCP_NODELAY set) or an
  // error: IoError (refused, unreachable), TimedOut, Aborted (cancelled).
  void start(const SockAddr& a, uint64_t timeout_ns, Done done);
  // Ends a running attempt early; `done` then runs with Aborted.
  void cancel();
  bool busy() const { return busy_; }
  void complete(int32_t res, uint32_t flags) override;

 private:
  struct CancelOp final : UringOp {
    TcpConnector* c = nullptr;
    void complete(int32_t, uint32_t) override { c->cancel_inflight_ = false; c->maybe_finish(); }
  };
  void issue_cancel();
  void maybe_finish();
  Reactor& r_;
  int fd_ = -1;
  SockAddr addr_;
  Done done_;
  bool busy_ = false;
  bool connect_inflight_ = false;
  bool cancel_inflight_ = false;
  bool timed_out_ = false;
  bool cancelled_ = false;
  int32_t res_ = 0;
  Reactor::TimerId timer_{};
  bool timer_armed_ = false;
  CancelOp cancel_op_;
};

class Listener final : public UringOp {
 public:
  // `on_accept` receives each new connection's fd (non-blocking, TCP_NODELAY set).
  Listener(Reactor& r, int fd, std::function<void(int)> on_accept);
  ~Listener();
  void start();
  // Stops accepting and closes the socket; `done` runs when the accept is cancelled.
  void stop(std::function<void()> done);
  void complete(int32_t res, uint32_t flags) override;

 private:
  void arm();
  Reactor& r_;
  int fd_;
  std::function<void(int)> on_accept_;
  bool armed_ = false;
  bool stopping_ = false;
  std::function<void()> on_stopped_;
};

class Connection {
 public:
  struct Handler {
    virtual ~Handler() = default;
    // New bytes arrived: `buf` is everything received and not yet consumed. Return how
    // many bytes were consumed (the rest is kept and offered again with more data).
    virtual size_t on_data(std::span<const uint8_t> buf) = 0;
    // The bytes asked for with receive_into() have all arrived.
    virtual void on_received_into() {}
    // The connection is closed (peer closed, error, or close()) and has no I/O in
    // flight; the owner may destroy it now.
    virtual void on_closed(const std::string& reason) = 0;
  };

  // When a queued send goes out.
  enum class SendBatching : uint8_t {
    // At once if no sendmsg is in flight; what is queued meanwhile follows in one
    // sendmsg when it completes. For a target's replies: the peer starts on the first
    // reply while the next are produced. (Batching a target's replies per loop iteration
    // too made host and target fall into lock-step, both CPUs partly idle: see
    // docs/benchmarks.md, "Measurements behind defaults".)
    kEager,
    // Just before the reactor next submits: everything queued in one loop iteration
    // leaves in one sendmsg. For a host's commands, which an application issues in
    // bursts: the target receives them in fewer segments and receives, its main cost.
    // Once kBatchBytes are queued they go at once: holding back data-carrying commands
    // (writes) made random writes slower and erratic (docs/benchmarks.md).
    kPerLoop,
  };
  static constexpr size_t kBatchBytes = 16 * 1024;
  Connection(Reactor& r, int fd, Handler* h, size_t recv_buffer = 256 * 1024,
             SendBatching batching = SendBatching::kEager);
  ~Connection();
  void start();
  // Queues `iovs` (copied; the bytes they point to must stay valid until `done`).
  // Queued sends go out in order, several per sendmsg (SendBatching says when). `done`
  // runs once the bytes are sent, or once the connection has closed without sending them.
  void send(std::span<const iovec> iovs, std::function<void()> done = nullptr);
  // Only from inside on_data(), which must then return buf.size() (everything consumed):
  // the next `n` bytes of the stream are received straight into `dst` (valid until
  // then) instead of through the connection's buffer, and on_received_into() runs once
  // they are all there; on_data() is not called meanwhile. Saves copying a large payload
  // (an NVMe/TCP H2CData PDU) out of the buffer, and moving what follows it.
  void receive_into(uint8_t* dst, size_t n);
  // Stops receiving until resume_recv(): no receive is armed once the one in flight (if
  // any) completes, so a handler that cannot consume its input yet (an iSCSI command
  // waiting for its CmdSN) does not make the buffer grow. The peer closing the socket is
  // noticed only after resume_recv().
  void pause_recv();
  // Offers the bytes already buffered to on_data() at once (synchronously), then
  // receives again. From inside this connection's own on_data() it only lifts the pause.
  void resume_recv();
  // Only from inside on_data(): hands the socket over instead of closing it (to serve it
  // on another reactor). Returns the fd, which the caller now owns; the bytes on_data()
  // does not consume are dropped, so the caller takes what it needs from `buf` first.
  // REQUIRES: nothing queued to send and no receive in flight (true in the on_data() of
  // a fresh connection's first bytes); otherwise the connection closes and -1 is
  // returned. Neither on_data() nor on_closed() runs afterwards;
  // the owner destroys the Connection once on_data() has returned.
  int detach();
  // Starts with `initial` as if it had just been received (the bytes a detach()ed
  // connection had read ahead), then receives.
  void start(std::span<const uint8_t> initial);
  // Closes: in-flight operations are cancelled, then on_closed(reason) runs once.
  void close(const std::string& reason);
  bool closing() const { return closing_; }
  // The errno of the failed receive or send that closed the connection (ETIMEDOUT: the
  // peer stopped answering, see tcp_keepalive); 0 if it closed otherwise.
  int error() const { return error_; }
  int fd() const { return fd_; }
  uint64_t bytes_received() const { return rx_bytes_; }
  uint64_t bytes_sent() const { return tx_bytes_; }
  uint64_t sendmsgs() const { return sendmsgs_; }  // sendmsg operations issued

 private:
  struct RecvOp final : UringOp {
    Connection* c;
    void complete(int32_t res, uint32_t flags) override { c->on_recv(res); }
  };
  struct SendOp final : UringOp {
    Connection* c;
    void complete(int32_t res, uint32_t flags) override { c->on_send(res); }
  };
  struct CancelOp final : UringOp {
    Connection* c;
    void complete(int32_t, uint32_t) override { c->on_cancel_done(); }
  };
  // One send() call. Up to four iovecs are kept inline (the targets' replies use at
  // most four), so queuing a reply allocates nothing once the deque has warmed up.
  struct Pending {
    std::array<iovec, 4> inl{};
    std::vector<iovec> more;
    uint32_t n = 0;
    size_t left = 0;
    std::function<void()> done;
    std::span<const iovec> iovs() const {
      return n <= inl.size() ? std::span<const iovec>(inl.data(), n) : std::span<const iovec>(more);
    }
  };

  void arm_recv();
  void on_recv(int32_t res);
  void kick_send();  // arm_send() now or before the reactor next submits (SendBatching)
  void on_flush();   // flush_task_ runs: arm_send() if still needed
  void arm_send();   // one sendmsg of everything queued. REQUIRES: !send_armed_, queue not empty
  void on_send(int32_t res);
  void on_cancel_done();
  void maybe_finish_close();

  // The receive buffer: bytes [0, have_) are received and not yet consumed. Never
  // zero-filled: only received bytes are offered to the handler, and filling 256-320 KiB
  // per connection cost every connect a page fault per page and a memset (the socket
  // fuzz targets spent 17-20 % of their CPU there).
  class RecvBuffer {
   public:
    explicit RecvBuffer(size_t n) : p_(std::make_unique_for_overwrite<uint8_t[]>(n)), n_(n) {}
    uint8_t* data() const { return p_.get(); }
    size_t size() const { return n_; }
    // Grows to `n` bytes (REQUIRES: n > size()), keeping the first `keep` bytes.
    void grow(size_t n, size_t keep) {
      auto q = std::make_unique_for_overwrite<uint8_t[]>(n);
      std::memcpy(q.get(), p_.get(), keep);
      p_ = std::move(q);
      n_ = n;
    }

   private:
    std::unique_ptr<uint8_t[]> p_;
    size_t n_;
  };

  Reactor& r_;
  int fd_;
  Handler* h_;
  RecvBuffer buf_;
  size_t have_ = 0;
  uint8_t* direct_ = nullptr;  // receive_into(): where the next bytes go
  size_t direct_left_ = 0;
  bool recv_direct_ = false;   // the armed receive targets direct_
  RecvOp recv_op_;
  SendOp send_op_;
  CancelOp cancel_op_;
  struct FlushTask final : Task {
    Connection* c;
  };
  FlushTask flush_task_;
  bool flush_queued_ = false;  // flush_task_ waits for the reactor's submit
  const SendBatching batching_;
  size_t queued_bytes_ = 0;  // in sendq_, not yet sent
  void deliver();  // offers buf_ to on_data() and keeps what it leaves
  void offer_buffered();  // deliver() what is buffered (if any), then receive again
  bool recv_armed_ = false;
  bool recv_paused_ = false;
  bool in_on_data_ = false;
  bool detached_ = false;
  bool send_armed_ = false;
  int cancels_ = 0;
  bool closing_ = false;
  bool closed_ = false;
  int error_ = 0;
  std::string reason_;
  // FIFO of queued sends. A ring over a vector rather than a std::deque: a deque frees
  // and allocates a node every few entries as it moves, which is an allocation every
  // third send; the ring keeps its slots (and their `more` capacity) for reuse.
  class SendQueue {
   public:
    bool empty() const { return n_ == 0; }
    size_t size() const { return n_; }
    Pending& operator[](size_t i) { return v_[(head_ + i) & (v_.size() - 1)]; }
    Pending& front() { return (*this)[0]; }
    Pending& emplace_back();  // reuses a slot; grows (doubling) only when full
    void pop_front();         // resets the slot for reuse
   private:
    std::vector<Pending> v_;
    size_t head_ = 0, n_ = 0;
  };
  SendQueue sendq_;
  std::vector<iovec> send_iov_;
  msghdr msg_{};
  uint64_t rx_bytes_ = 0, tx_bytes_ = 0, sendmsgs_ = 0;
};

}  // namespace castor::reactor
