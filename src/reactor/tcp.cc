#include "reactor/tcp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace castor::reactor {
namespace {

Result<sockaddr_storage> resolve(const std::string& host, uint16_t port, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (host.empty() ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  std::string p = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), p.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    return make_error(Errc::kInvalidArgument, "cannot resolve '{}': {}", host, gai_strerror(rc));
  }
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return ss;
}

void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

Result<SockAddr> tcp_resolve(const std::string& host, uint16_t port) {
  SockAddr a;
  auto ss = resolve(host, port, &a.len);
  if (!ss) return ss.status();
  a.ss = *ss;
  a.text = host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                               : host + ":" + std::to_string(port);
  return a;
}

Status tcp_keepalive(int fd, uint32_t idle_s) {
  if (idle_s == 0) return Status::ok();
  const int on = 1;
  const int idle = static_cast<int>(std::min<uint32_t>(idle_s, 1u << 20));
  const int interval = std::max(1, idle / 3);
  const int probes = 3;
  const unsigned user_timeout_ms = 2u * static_cast<unsigned>(idle) * 1000u;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms)) != 0) {
    return make_error(Errc::kIoError, "cannot set TCP keepalive: {}", strerror(errno));
  }
  return Status::ok();
}

TcpConnector::~TcpConnector() {
  if (fd_ >= 0) ::close(fd_);
}

void TcpConnector::start(const SockAddr& a, uint64_t timeout_ns, Done done) {
  addr_ = a;
  done_ = std::move(done);
  busy_ = true;
  timed_out_ = cancelled_ = false;
  res_ = 0;
  // Non-blocking, so io_uring waits for the connect by polling (cancellable) rather
  // than in a blocked worker thread.
  fd_ = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    res_ = -errno;
    // Report from a later loop turn, like every other outcome.
    r_.defer([this] { maybe_finish(); });
    return;
  }
  connect_inflight_ = true;
  io_uring_sqe* sqe = r_.get_sqe(this);
  io_uring_prep_connect(sqe, fd_, reinterpret_cast<const sockaddr*>(&addr_.ss), addr_.len);
  timer_armed_ = true;
  timer_ = r_.add_timer(timeout_ns, [this] {
    timer_armed_ = false;
    timed_out_ = true;
    issue_cancel();
  });
}

void TcpConnector::cancel() {
  if (!busy_ || cancelled_) return;
  cancelled_ = true;
  issue_cancel();
}

void TcpConnector::issue_cancel() {
  if (!connect_inflight_ || cancel_inflight_) return;
  cancel_inflight_ = true;
  cancel_op_.c = this;
  io_uring_sqe* sqe = r_.get_sqe(&cancel_op_);
  io_uring_prep_cancel(sqe, static_cast<UringOp*>(this), 0);
}

void TcpConnector::complete(int32_t res, uint32_t) {
  connect_inflight_ = false;
  res_ = res;
  maybe_finish();
}

void TcpConnector::maybe_finish() {
  if (!busy_ || connect_inflight_ || cancel_inflight_) return;
  if (timer_armed_) {
    r_.cancel_timer(timer_);
    timer_armed_ = false;
  }
  busy_ = false;
  Result<int> out = make_error(Errc::kIoError, "connect to {}: {}", addr_.text, strerror(-res_));
  if (res_ == 0 && !cancelled_ && !timed_out_) {
    tune(fd_);
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    out = fd_;
    fd_ = -1;
  } else {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (cancelled_) out = make_error(Errc::kAborted, "connect to {} cancelled", addr_.text);
    else if (timed_out_) out = make_error(Errc::kTimedOut, "connect to {} timed out", addr_.text);
  }
  auto d = std::move(done_);
  d(std::move(out));
}

Result<int> tcp_listen(const std::string& host, uint16_t port, int backlog, uint16_t* bound_port) {
  socklen_t len = 0;
  auto addr = resolve(host, port, &len);
  if (!addr) return addr.status();
  int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(Errc::kIoError, "socket: {}", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr.value()), len) != 0 || listen(fd, backlog) != 0) {
    int e = errno;
    ::close(fd);
    return make_error(e == EADDRINUSE ? Errc::kAlreadyExists : Errc::kIoError, "cannot listen on {}:{}: {}", host, port,
                      strerror(e));
  }
  if (bound_port) {
    sockaddr_storage got{};
    socklen_t gl = sizeof(got);
    getsockname(fd, reinterpret_cast<sockaddr*>(&got), &gl);
    *bound_port = ntohs(got.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&got)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&got)->sin_port);
  }
  return fd;
}

Result<int> tcp_connect(const std::string& host, uint16_t port, int timeout_ms) {
  socklen_t len = 0;
  auto addr = resolve(host, port, &len);
  if (!addr) return addr.status();
  int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return make_error(Errc::kIoError, "socket: {}", strerror(errno));
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr.value()), len);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    rc = poll(&p, 1, timeout_ms);
    if (rc == 0) {
      ::close(fd);
      return make_error(Errc::kTimedOut, "connect to {}:{} timed out", host, port);
    }
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
      ::close(fd);
      return make_error(Errc::kIoError, "connect to {}:{}: {}", host, port, strerror(err));
    }
  } else if (rc != 0) {
    int e = errno;
    ::close(fd);
    return make_error(Errc::kIoError, "connect to {}:{}: {}", host, port, strerror(e));
  }
  tune(fd);
  // Back to blocking: io_uring then waits for readiness itself.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

Listener::Listener(Reactor& r, int fd, std::function<void(int)> on_accept)
    : r_(r), fd_(fd), on_accept_(std::move(on_accept)) {}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

void Listener::start() { arm(); }

void Listener::arm() {
  if (stopping_ || armed_) return;
  auto* sqe = r_.get_sqe(this);
  // Blocking sockets: io_uring waits for readiness itself (poll-armed), no EAGAIN.
  io_uring_prep_accept(sqe, fd_, nullptr, nullptr, SOCK_CLOEXEC);
  armed_ = true;
}

void Listener::complete(int32_t res, uint32_t) {
  armed_ = false;
  if (stopping_) {
    if (res >= 0) ::close(res);
    if (on_stopped_) {
      auto f = std::move(on_stopped_);
      f();
    }
    return;
  }
  if (res >= 0) {
    tune(res);
    on_accept_(res);
  }
  arm();
}

void Listener::stop(std::function<void()> done) {
  stopping_ = true;
  if (!armed_) {
    done();
    return;
  }
  on_stopped_ = std::move(done);
  struct Ignore final : UringOp {
    void complete(int32_t, uint32_t) override { delete this; }
  };
  auto* sqe = r_.get_sqe(new Ignore);
  io_uring_prep_cancel(sqe, this, 0);  // the accept completes with -ECANCELED
}

Connection::Connection(Reactor& r, int fd, Handler* h, size_t recv_buffer,
                       SendBatching batching)
    : r_(r), fd_(fd), h_(h), buf_(recv_buffer), batching_(batching) {
  recv_op_.c = this;
  send_op_.c = this;
  cancel_op_.c = this;
  flush_task_.c = this;
  flush_task_.fn = [](Task* t) { static_cast<FlushTask*>(t)->c->on_flush(); };
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

void Connection::start() { arm_recv(); }

void Connection::start(std::span<const uint8_t> initial) {
  if (buf_.size() < initial.size()) buf_.grow(initial.size(), 0);
  std::memcpy(buf_.data(), initial.data(), initial.size());
  have_ = initial.size();
  offer_buffered();
}

void Connection::pause_recv() { recv_paused_ = true; }

void Connection::resume_recv() {
  // Inside on_data() the receive completion re-arms afterwards; with a receive in flight
  // (paused from outside on_data()) its completion delivers. Delivering now would move
  // the buffer under that receive.
  if (!recv_paused_ || closing_ || in_on_data_ || recv_armed_) {
    recv_paused_ = false;
    return;
  }
  recv_paused_ = false;
  offer_buffered();
}

void Connection::offer_buffered() {
  if (have_ > 0) {
    deliver();
    if (closing_) {
      maybe_finish_close();
      return;
    }
  }
  arm_recv();
}

int Connection::detach() {
  if (recv_armed_ || send_armed_ || flush_queued_ || !sendq_.empty()) {
    close("internal error: detach() with I/O in flight");
    return -1;
  }
  detached_ = true;
  closing_ = true;  // nothing more is received or sent
  closed_ = true;   // and on_closed() never runs
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void Connection::deliver() {
  in_on_data_ = true;
  size_t used = h_->on_data({buf_.data(), have_});
  in_on_data_ = false;
  if (detached_ || closing_) return;
  if (used) {
    std::memmove(buf_.data(), buf_.data() + used, have_ - used);
    have_ -= used;
  }
}

void Connection::arm_recv() {
  if (closing_ || recv_armed_ || recv_paused_) return;
  auto* sqe = r_.get_sqe(&recv_op_);
  recv_direct_ = direct_left_ > 0;
  if (recv_direct_) {
    io_uring_prep_recv(sqe, fd_, direct_, direct_left_, 0);
  } else {
    if (have_ == buf_.size()) buf_.grow(buf_.size() * 2, have_);  // a PDU larger than the buffer
    io_uring_prep_recv(sqe, fd_, buf_.data() + have_, buf_.size() - have_, 0);
  }
  recv_armed_ = true;
}

void Connection::receive_into(uint8_t* dst, size_t n) {
  direct_ = dst;
  direct_left_ = n;
}

void Connection::on_recv(int32_t res) {
  recv_armed_ = false;
  if (closing_) {
    maybe_finish_close();
    return;
  }
  if (res <= 0) {
    error_ = -res;
    close(res == 0 ? "peer closed the connection" : std::string("receive failed: ") + strerror(-res));
    return;
  }
  rx_bytes_ += static_cast<uint64_t>(res);
  if (recv_direct_) {
    direct_ += res;
    direct_left_ -= static_cast<size_t>(res);
    if (direct_left_ == 0) {
      direct_ = nullptr;
      h_->on_received_into();
      if (closing_) {
        maybe_finish_close();
        return;
      }
    }
    arm_recv();
    return;
  }
  have_ += static_cast<size_t>(res);
  deliver();
  if (detached_) return;
  if (closing_) {
    maybe_finish_close();
    return;
  }
  if (direct_left_ > 0 && have_ != 0) {
    close("internal error: receive_into() with unconsumed data");
    return;
  }
  arm_recv();
}

Connection::Pending& Connection::SendQueue::emplace_back() {
  if (n_ == v_.size()) {
    std::vector<Pending> bigger(std::max<size_t>(16, v_.size() * 2));
    for (size_t i = 0; i < n_; ++i) bigger[i] = std::move((*this)[i]);
    v_ = std::move(bigger);
    head_ = 0;
  }
  ++n_;
  return (*this)[n_ - 1];
}

void Connection::SendQueue::pop_front() {
  Pending& p = front();
  p.more.clear();
  p.done = nullptr;
  p.n = 0;
  p.left = 0;
  head_ = (head_ + 1) & (v_.size() - 1);
  --n_;
}

void Connection::send(std::span<const iovec> iovs, std::function<void()> done) {
  if (closing_) return;
  size_t total = 0;
  for (const auto& v : iovs) total += v.iov_len;
  Pending& p = sendq_.emplace_back();
  p.n = static_cast<uint32_t>(iovs.size());
  if (iovs.size() <= p.inl.size()) {
    std::copy(iovs.begin(), iovs.end(), p.inl.begin());
  } else {
    p.more.assign(iovs.begin(), iovs.end());
  }
  p.left = total;
  queued_bytes_ += total;
  p.done = std::move(done);
  kick_send();
}

void Connection::kick_send() {
  if (send_armed_ || closing_ || sendq_.empty()) return;
  if (batching_ == SendBatching::kEager || queued_bytes_ >= kBatchBytes) {
    arm_send();
  } else if (!flush_queued_) {
    flush_queued_ = true;
    r_.before_submit(&flush_task_);
  }
}

void Connection::on_flush() {
  flush_queued_ = false;
  if (closing_) {
    maybe_finish_close();  // it waited for this task to leave the reactor's list
    return;
  }
  if (!send_armed_ && !sendq_.empty()) arm_send();
}

void Connection::arm_send() {
  send_iov_.clear();
  for (size_t k = 0; k < sendq_.size(); ++k) {
    const Pending& p = sendq_[k];
    for (const auto& v : p.iovs()) {
      if (send_iov_.size() >= 512) break;
      send_iov_.push_back(v);
    }
    if (send_iov_.size() >= 512) break;
  }
  // Advance past bytes of the head entry already sent (partial sends).
  size_t skip = 0;
  {
    const auto& head = sendq_.front();
    size_t head_total = 0;
    for (const auto& v : head.iovs()) head_total += v.iov_len;
    skip = head_total - head.left;
  }
  size_t i = 0;
  while (skip && i < send_iov_.size()) {
    if (skip >= send_iov_[i].iov_len) {
      skip -= send_iov_[i].iov_len;
      send_iov_[i].iov_len = 0;
      ++i;
    } else {
      send_iov_[i].iov_base = static_cast<uint8_t*>(send_iov_[i].iov_base) + skip;
      send_iov_[i].iov_len -= skip;
      skip = 0;
    }
  }
  msg_ = {};
  msg_.msg_iov = send_iov_.data() + i;
  msg_.msg_iovlen = send_iov_.size() - i;
  auto* sqe = r_.get_sqe(&send_op_);
  io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL);
  send_armed_ = true;
  ++sendmsgs_;
}

void Connection::on_send(int32_t res) {
  send_armed_ = false;
  if (closing_) {
    maybe_finish_close();
    return;
  }
  if (res < 0) {
    error_ = -res;
    close(std::string("send failed: ") + strerror(-res));
    return;
  }
  tx_bytes_ += static_cast<uint64_t>(res);
  queued_bytes_ -= static_cast<size_t>(res);
  size_t n = static_cast<size_t>(res);
  // Account every sent byte before running callbacks: a callback may send() again.
  size_t finished = 0;
  for (size_t k = 0; n && k < sendq_.size(); ++k) {
    Pending& p = sendq_[k];
    size_t take = std::min(n, p.left);
    p.left -= take;
    n -= take;
    if (p.left == 0) ++finished;
  }
  // While callbacks run, a send() they make only queues (send_armed_ holds kicks back),
  // so the finished entries still at the front are never sent twice.
  send_armed_ = true;
  while (finished--) {
    auto done = std::move(sendq_.front().done);
    sendq_.pop_front();
    if (done) done();
  }
  send_armed_ = false;
  if (closing_) {
    maybe_finish_close();
    return;
  }
  kick_send();
}

void Connection::close(const std::string& reason) {
  if (closing_) return;
  closing_ = true;
  reason_ = reason;
  ::shutdown(fd_, SHUT_RDWR);  // completes pending recv/send with errors
  maybe_finish_close();
}

void Connection::on_cancel_done() {}

void Connection::maybe_finish_close() {
  if (closed_ || recv_armed_ || send_armed_ || flush_queued_) return;
  closed_ = true;
  // Unsent data will never go out: its owners still get their callback, to free it.
  while (!sendq_.empty()) {
    auto done = std::move(sendq_.front().done);
    sendq_.pop_front();
    if (done) done();  // send() is a no-op now: the queue only shrinks
  }
  // Deferred: the caller may be inside on_data() and touch the connection afterwards,
  // while the handler may destroy it from on_closed().
  Handler* h = h_;
  std::string reason = reason_;
  r_.hold_stop();
  r_.defer([h, reason, this] {
    r_.release_stop();
    h->on_closed(reason);
  });
}

}  // namespace castor::reactor
