// TCP on the reactor: an echo server on one reactor, clients on plain threads.
#include "reactor/tcp.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

namespace castor::reactor {
namespace {

struct Echo final : Connection::Handler {
  std::unique_ptr<Connection> conn;
  std::vector<std::vector<uint8_t>> held;  // keeps sent bytes alive until sent
  std::atomic<int>* closed;
  size_t on_data(std::span<const uint8_t> buf) override {
    held.emplace_back(buf.begin(), buf.end());
    auto* p = &held.back();
    iovec v{p->data(), p->size()};
    conn->send({&v, 1});
    return buf.size();
  }
  void on_closed(const std::string&) override {
    closed->fetch_add(1);
    delete this;
  }
};

TEST(Tcp, EchoManyClientsAndCleanStop) {
  ReactorOptions o;
  o.pin = false;
  ReactorGroup g({0}, o);
  g.start();
  uint16_t port = 0;
  auto fd = tcp_listen("127.0.0.1", 0, 64, &port);
  ASSERT_TRUE(fd) << fd.status().to_string();
  ASSERT_GT(port, 0);
  std::atomic<int> accepted{0}, closed{0};
  std::unique_ptr<Listener> l;
  g.run_on(0, [&](Reactor& r) {
    l = std::make_unique<Listener>(r, *fd, [&, rp = &r](int cfd) {
      accepted++;
      auto* e = new Echo;
      e->closed = &closed;
      e->conn = std::make_unique<Connection>(*rp, cfd, e, 4096);
      e->conn->start();
    });
    l->start();
  });
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      auto s = tcp_connect("127.0.0.1", port, 2000);
      ASSERT_TRUE(s);
      std::mt19937 rng(c);
      std::vector<uint8_t> out(100000), in(out.size());
      for (auto& b : out) b = static_cast<uint8_t>(rng());
      size_t sent = 0, got = 0;
      while (got < out.size()) {
        if (sent < out.size()) {
          ssize_t n = ::send(*s, out.data() + sent, std::min<size_t>(out.size() - sent, 7000), 0);
          ASSERT_GT(n, 0);
          sent += static_cast<size_t>(n);
        }
        ssize_t n = ::recv(*s, in.data() + got, in.size() - got, sent < out.size() ? MSG_DONTWAIT : 0);
        if (n > 0) got += static_cast<size_t>(n);
        ASSERT_NE(n, 0);
      }
      EXPECT_EQ(in, out);
      ok++;
      ::close(*s);
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 8);
  for (int i = 0; i < 200 && closed.load() < 8; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(accepted.load(), 8);
  EXPECT_EQ(closed.load(), 8);
  std::promise<void> stopped;
  g.run_on(0, [&](Reactor&) { l->stop([&] { stopped.set_value(); }); });
  stopped.get_future().wait();
  g.run_on(0, [&](Reactor&) { l.reset(); });
  g.stop();
  EXPECT_FALSE(tcp_connect("127.0.0.1", port, 500));  // nothing listens any more
}

// ---- Flow control and hand-over: pause_recv(), resume_recv(), detach(), start(initial) ----
// One end of a socketpair is served by a Connection; the other is a plain blocking socket
// the test thread drives (the "client"). Every wait has a timeout, so a broken layer fails
// the test instead of hanging it.

using namespace std::chrono_literals;
using Recs = std::vector<std::string>;

ReactorOptions unpinned() {
  ReactorOptions o;
  o.pin = false;
  return o;
}

// A socket the test owns; closed when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int release() { return std::exchange(fd, -1); }
};

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until `n` bytes have arrived, the peer closes, or `timeout` passes.
std::string read_for(int fd, size_t n, std::chrono::milliseconds timeout) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char b[4096];
    ssize_t k = ::recv(fd, b, std::min(sizeof b, n - out.size()), MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (k <= 0) break;
    out.append(b, static_cast<size_t>(k));
  }
  return out;
}

// Whether the peer closes within `timeout` (anything it sends first is discarded).
bool sees_eof(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char b[4096];
    ssize_t k = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (k <= 0) return true;  // EOF, or the reset of a socket closed with unread data
  }
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A handler whose observations the test thread can wait for. Its Connection lives on
// reactor `ri`, and is created, used and destroyed only there.
struct Probe : Connection::Handler {
  size_t ri = 0;
  Reactor* r = nullptr;
  std::unique_ptr<Connection> conn;
  bool detached = false;  // reactor only: detach() handed the fd out

  // Each on_data() call appends what it was offered; each consumed record is appended to
  // `records`. `depth` catches on_data() re-entered from inside itself.
  void enter(std::span<const uint8_t> buf) {
    std::lock_guard l(mu);
    offered.emplace_back(reinterpret_cast<const char*>(buf.data()), buf.size());
    max_depth = std::max(max_depth, ++depth);
  }
  void leave() {
    std::lock_guard l(mu);
    --depth;
  }
  void add_record(std::string rec) {
    std::lock_guard l(mu);
    records.push_back(std::move(rec));
    cv.notify_all();
  }
  void on_closed(const std::string& why) override {
    std::lock_guard l(mu);
    ++closed_calls;
    close_reason = why;
    cv.notify_all();
  }

  // Waits until pred() (called with `mu` held) holds.
  template <class P>
  bool wait(P pred, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock l(mu);
    return cv.wait_for(l, timeout, pred);
  }
  Recs recs() {
    std::lock_guard l(mu);
    return records;
  }
  Recs offers() {
    std::lock_guard l(mu);
    return offered;
  }
  int closed() {
    std::lock_guard l(mu);
    return closed_calls;
  }
  std::string reason() {
    std::lock_guard l(mu);
    return close_reason;
  }
  int deepest() {
    std::lock_guard l(mu);
    return max_depth;
  }

  std::mutex mu;
  std::condition_variable cv;
  Recs offered, records;
  int depth = 0, max_depth = 0;
  int closed_calls = 0;
  std::string close_reason;
};

// Consumes '\n'-terminated records, as many as it is offered unless `after` says stop.
struct Lines : Probe {
  // Runs on the reactor after each record is consumed; false leaves the rest unconsumed.
  std::function<bool(Lines&, const std::string&)> after;
  std::deque<std::string> held;  // bytes echo() queued, kept alive until the end

  size_t on_data(std::span<const uint8_t> buf) override {
    enter(buf);
    size_t used = 0;
    while (used < buf.size()) {
      const void* nl = std::memchr(buf.data() + used, '\n', buf.size() - used);
      if (!nl) break;
      const size_t end = static_cast<size_t>(static_cast<const uint8_t*>(nl) - buf.data()) + 1;
      std::string rec(reinterpret_cast<const char*>(buf.data()) + used, end - used);
      used = end;
      add_record(rec);
      if (after && !after(*this, rec)) break;
    }
    leave();
    return used;
  }
  void echo(const std::string& s) {
    held.push_back(s);
    iovec v{held.back().data(), held.back().size()};
    conn->send({&v, 1});
  }
};

// Two reactors and the connections the test opened on them. Declare it after the probes:
// its destructor closes every connection that is still open, waits for on_closed(),
// destroys the connections on their reactors and stops the group.
struct Rig {
  ReactorGroup group{{0, 0}, unpinned()};
  std::vector<Probe*> probes;

  Rig() { group.start(); }
  ~Rig() {
    for (Probe* p : probes) {
      bool wait = false;
      group.run_on(p->ri, [&](Reactor&) {
        if (!p->conn || p->detached) return;
        p->conn->close("test over");  // a no-op if it is already closing
        wait = true;
      });
      if (wait && !p->wait([&] { return p->closed_calls > 0; })) {
        ADD_FAILURE() << "on_closed() never ran; leaking the connection";
        group.run_on(p->ri, [&](Reactor&) { (void)p->conn.release(); });
        continue;
      }
      group.run_on(p->ri, [&](Reactor&) { p->conn.reset(); });
    }
    group.stop();
  }

  // Serves `fd` with a Connection for `p` on reactor `ri`, started there by `start`.
  void open(Probe& p, size_t ri, int fd,
            const std::function<void(Connection&)>& start = [](Connection& c) { c.start(); },
            Connection::SendBatching batching = Connection::SendBatching::kEager) {
    probes.push_back(&p);
    p.ri = ri;
    group.run_on(ri, [&](Reactor& r) {
      p.r = &r;
      p.conn = std::make_unique<Connection>(r, fd, &p, 4096, batching);
      start(*p.conn);
    });
  }
  // Runs f() on reactor `ri` and returns its result.
  template <class F>
  auto on(size_t ri, F f) {
    decltype(f()) out{};
    group.run_on(ri, [&](Reactor&) { out = f(); });
    return out;
  }
  // Lets tasks a reactor deferred run: a full loop turn passes between two messages.
  void settle(size_t ri) {
    group.run_on(ri, [](Reactor&) {});
    group.run_on(ri, [](Reactor&) {});
  }
};

TEST(TcpFlow, PausedConnectionKeepsUnconsumedRecordsUntilResumed) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd client(sv[1]);
  Lines h;
  // Like an iSCSI command that must wait for its CmdSN: stop after record 1.
  h.after = [](Lines& self, const std::string& rec) {
    if (rec != "rec1\n") return true;
    self.conn->pause_recv();
    return false;
  };
  Rig rig;
  rig.open(h, 0, sv[0]);

  ASSERT_TRUE(write_all(client.fd, "rec1\nrec2\nrec3\n"));  // three records in one write
  ASSERT_TRUE(h.wait([&] { return !h.records.empty(); })) << "record 1 never arrived";
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.recs(), Recs{"rec1\n"});
  const uint64_t rx = rig.on(0, [&] { return h.conn->bytes_received(); });
  EXPECT_EQ(rx, 15u) << "premise: one receive read all three records";

  // Bytes sent while paused are neither delivered nor even received (no buffer growth).
  ASSERT_TRUE(write_all(client.fd, "rec4\n"));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.recs(), Recs{"rec1\n"}) << "records delivered while paused";
  EXPECT_EQ(h.offers().size(), 1u) << "on_data() called while paused";
  EXPECT_EQ(rig.on(0, [&] { return h.conn->bytes_received(); }), rx) << "received while paused";

  // resume_recv() offers the buffered records at once, before it returns...
  Recs at_resume;
  rig.group.run_on(0, [&](Reactor&) {
    h.conn->resume_recv();
    at_resume = h.recs();
  });
  EXPECT_EQ(at_resume, (Recs{"rec1\n", "rec2\n", "rec3\n"}));
  // ...then receives again: what was sent while paused follows, in order.
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 4; })) << "no receive after resume";
  ASSERT_TRUE(write_all(client.fd, "rec5\n"));
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 5; }));
  EXPECT_EQ(h.recs(), (Recs{"rec1\n", "rec2\n", "rec3\n", "rec4\n", "rec5\n"}));
  EXPECT_EQ(h.closed(), 0);
  EXPECT_EQ(h.deepest(), 1);
}

TEST(TcpFlow, PauseFromOutsideOnDataLetsTheReceiveInFlightFinish) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd client(sv[1]);
  Lines h;
  Rig rig;
  rig.open(h, 0, sv[0]);
  ASSERT_TRUE(write_all(client.fd, "a\n"));
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 1; }));

  // Paused from another event while a receive is armed: that receive still delivers...
  rig.group.run_on(0, [&](Reactor&) { h.conn->pause_recv(); });
  ASSERT_TRUE(write_all(client.fd, "b\n"));
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 2; })) << "the armed receive was lost";
  // ...but no further receive is armed.
  ASSERT_TRUE(write_all(client.fd, "c\n"));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.recs(), (Recs{"a\n", "b\n"})) << "received while paused";

  // Resuming with nothing buffered just receives again.
  rig.group.run_on(0, [&](Reactor&) { h.conn->resume_recv(); });
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 3; })) << "no receive after resume";
  // Pausing and resuming while a receive is in flight loses and duplicates nothing.
  rig.group.run_on(0, [&](Reactor&) {
    h.conn->pause_recv();
    h.conn->resume_recv();
  });
  ASSERT_TRUE(write_all(client.fd, "d\n"));
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 4; }));
  ASSERT_TRUE(write_all(client.fd, "e\n"));
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 5; }));
  EXPECT_EQ(h.recs(), (Recs{"a\n", "b\n", "c\n", "d\n", "e\n"}));
  EXPECT_EQ(h.closed(), 0);
}

TEST(TcpFlow, ResumeInsideOnDataOnlyLiftsThePause) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd client(sv[1]);
  Lines h;
  h.after = [](Lines& self, const std::string& rec) {
    if (rec != "p1\n") return true;
    self.conn->pause_recv();
    self.conn->resume_recv();  // must not offer the buffer again from in here
    return false;              // leaves "p2\n" for the next on_data()
  };
  Rig rig;
  rig.open(h, 0, sv[0]);
  ASSERT_TRUE(write_all(client.fd, "p1\np2\n"));
  ASSERT_TRUE(h.wait([&] { return !h.records.empty(); }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.recs(), Recs{"p1\n"});
  EXPECT_EQ(h.deepest(), 1) << "resume_recv() re-entered on_data()";

  // The pause is lifted: more bytes are received, and the kept record comes with them.
  ASSERT_TRUE(write_all(client.fd, "p3\n"));
  ASSERT_TRUE(h.wait([&] { return h.records.size() >= 3; })) << "still paused";
  EXPECT_EQ(h.recs(), (Recs{"p1\n", "p2\n", "p3\n"}));
  EXPECT_EQ(h.offers(), (Recs{"p1\np2\n", "p2\np3\n"}));
  EXPECT_EQ(h.deepest(), 1);
}

TEST(TcpFlow, PeerCloseWhilePausedIsNoticedAfterResume) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd client(sv[1]);
  Lines h;
  h.after = [](Lines& self, const std::string& rec) {
    if (rec != "r1\n") return true;
    self.conn->pause_recv();
    return false;
  };
  // The client sends two records and hangs up before the connection even starts.
  ASSERT_TRUE(write_all(client.fd, "r1\nr2\n"));
  client.reset();
  Rig rig;
  rig.open(h, 0, sv[0]);
  ASSERT_TRUE(h.wait([&] { return !h.records.empty(); }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.closed(), 0) << "closed while paused, with a record still buffered";
  EXPECT_EQ(h.recs(), Recs{"r1\n"});

  Recs at_resume;
  rig.group.run_on(0, [&](Reactor&) {
    h.conn->resume_recv();
    at_resume = h.recs();
  });
  EXPECT_EQ(at_resume, (Recs{"r1\n", "r2\n"}));
  ASSERT_TRUE(h.wait([&] { return h.closed_calls > 0; })) << "peer close never noticed";
  EXPECT_EQ(h.closed(), 1);
  EXPECT_EQ(h.reason(), "peer closed the connection");
}

// Reads the first record, then hands the socket over together with what it read ahead,
// as a front-end that moves each session to the reactor of its choice does.
struct Handoff : Probe {
  struct Out {
    int fd = -1;
    std::string rest;            // the bytes after the first record
    bool open_after_destroy = false;
  };
  std::promise<Out> handed;

  size_t on_data(std::span<const uint8_t> buf) override {
    enter(buf);
    const void* nl = std::memchr(buf.data(), '\n', buf.size());
    if (!nl) {
      leave();
      return 0;
    }
    const size_t end = static_cast<size_t>(static_cast<const uint8_t*>(nl) - buf.data()) + 1;
    add_record(std::string(reinterpret_cast<const char*>(buf.data()), end));
    Out o;
    o.fd = conn->detach();
    detached = o.fd >= 0;
    o.rest.assign(reinterpret_cast<const char*>(buf.data()) + end, buf.size() - end);
    // The owner destroys the Connection once on_data() has returned.
    r->defer([this, o]() mutable {
      if (detached) {
        conn.reset();
        o.open_after_destroy = ::fcntl(o.fd, F_GETFD) != -1;
      }
      handed.set_value(std::move(o));
    });
    leave();
    return end;
  }
};

TEST(TcpFlow, DetachHandsTheSocketAndUnreadBytesToAnotherReactor) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd client(sv[1]);
  // Sent before the first connection starts, so its first receive reads all of it: the
  // first record, a whole second one and the head of a third.
  ASSERT_TRUE(write_all(client.fd, "hello\nleftover-1\nleft"));
  Handoff h1;
  Lines h2;
  h2.after = [](Lines& self, const std::string& rec) {
    self.echo(rec);
    return true;
  };
  Rig rig;
  rig.open(h1, 0, sv[0]);
  auto f = h1.handed.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready) << "on_data() never ran";
  Handoff::Out out = f.get();
  ASSERT_GE(out.fd, 0) << "detach() refused on a fresh connection's first bytes";
  Fd handed(out.fd);
  EXPECT_TRUE(out.open_after_destroy) << "destroying the detached Connection closed the fd";
  EXPECT_EQ(out.rest, "leftover-1\nleft");
  EXPECT_EQ(h1.recs(), Recs{"hello\n"});

  // Serve it on the other reactor, starting with the bytes the first connection read.
  rig.open(h2, 1, handed.release(), [&](Connection& c) { c.start(bytes(out.rest)); });
  ASSERT_TRUE(h2.wait([&] { return !h2.records.empty(); })) << "start(initial) lost the bytes";
  EXPECT_EQ(h2.offers(), Recs{"leftover-1\nleft"}) << "on_data() must see `initial` first";
  EXPECT_EQ(h2.recs(), Recs{"leftover-1\n"});

  // New bytes from the client complete the record kept from `initial`.
  ASSERT_TRUE(write_all(client.fd, "over-2\n"));
  ASSERT_TRUE(h2.wait([&] { return h2.records.size() >= 2; })) << "nothing received after start";
  EXPECT_EQ(h2.recs(), (Recs{"leftover-1\n", "leftover-2\n"}));
  // Replies sent through the second connection reach the client.
  EXPECT_EQ(read_for(client.fd, 22, 5000ms), "leftover-1\nleftover-2\n");

  // The first connection is gone for good: no more on_data(), and never on_closed().
  rig.settle(0);
  EXPECT_EQ(h1.offers().size(), 1u);
  EXPECT_EQ(h1.closed(), 0);
  EXPECT_EQ(h2.closed(), 0);
}

// Queues a reply and then tries to hand the socket over, which must be refused.
struct SendThenDetach : Probe {
  std::string reply = "busy\n";
  std::atomic<int> rc{0};
  std::atomic<bool> send_done{false};
  size_t on_data(std::span<const uint8_t> buf) override {
    enter(buf);
    iovec v{reply.data(), reply.size()};
    conn->send({&v, 1}, [this] { send_done = true; });
    rc = conn->detach();
    leave();
    return buf.size();
  }
};

TEST(TcpFlow, DetachWithASendQueuedIsRefusedAndCloses) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd client(sv[1]);
  SendThenDetach h;
  Rig rig;
  rig.open(h, 0, sv[0]);
  ASSERT_TRUE(write_all(client.fd, "x\n"));
  ASSERT_TRUE(h.wait([&] { return h.closed_calls > 0; })) << "on_closed() never ran";
  EXPECT_EQ(h.rc.load(), -1);
  EXPECT_EQ(h.closed(), 1);
  EXPECT_TRUE(h.send_done.load()) << "the queued send's done callback never ran";
  EXPECT_EQ(h.offers().size(), 1u);
  // The connection really closed (the socket was not handed out): the client sees EOF.
  EXPECT_TRUE(sees_eof(client.fd, 5000ms));
  EXPECT_TRUE(rig.on(0, [&] { return h.conn->closing(); }));
}

// Sends from the test: `n` pieces of `size` bytes queued within one reactor turn.
struct Sender : Probe {
  std::deque<std::string> held;  // kept alive until the end
  std::atomic<int> sends_done{0};
  size_t on_data(std::span<const uint8_t> buf) override { return buf.size(); }
  std::string queue(int n, size_t size) {  // on the reactor
    std::string all;
    for (int i = 0; i < n; ++i) {
      held.emplace_back(size, static_cast<char>('a' + i % 26));
      all += held.back();
      iovec v{held.back().data(), size};
      conn->send({&v, 1}, [this] { sends_done++; });
    }
    return all;
  }
};

struct Batching {
  Connection::SendBatching mode;
  int n;
  size_t size;
  uint64_t sendmsgs;
};

// What a peer notices: every byte arrives, in order; and how many sendmsgs carried it.
TEST(TcpSend, ATurnsSendsLeaveTogetherAsTheBatchingModeSays) {
  using enum Connection::SendBatching;
  for (const Batching& b : {
           // A target: the first reply at once, the 19 queued behind it in one more.
           Batching{kEager, 20, 10, 2},
           // A host: the whole turn in one sendmsg.
           Batching{kPerLoop, 20, 10, 1},
           // ... unless 16 KiB are queued: those go at once, the rest after them.
           Batching{kPerLoop, 3, 8192, 2},
       }) {
    SCOPED_TRACE(testing::Message() << "mode " << static_cast<int>(b.mode) << ", " << b.n
                                    << " x " << b.size);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    Fd client(sv[1]);
    Sender h;
    Rig rig;
    rig.open(h, 0, sv[0], [](Connection& c) { c.start(); }, b.mode);
    const std::string want = rig.on(0, [&] { return h.queue(b.n, b.size); });
    EXPECT_EQ(read_for(client.fd, want.size(), 5000ms), want);
    rig.settle(0);
    EXPECT_EQ(h.sends_done.load(), b.n);
    EXPECT_EQ(rig.on(0, [&] { return h.conn->sendmsgs(); }), b.sendmsgs);
    EXPECT_EQ(rig.on(0, [&] { return h.conn->bytes_sent(); }), want.size());
  }
}

// A connection closed while its batched send waits for the reactor's submit: the send's
// callback still runs, on_closed() runs once (after the waiting flush, so the owner may
// destroy the connection), and the peer sees the connection end.
TEST(TcpSend, CloseWhileABatchedSendWaitsForTheSubmit) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd client(sv[1]);
  Sender h;
  Rig rig;
  rig.open(h, 0, sv[0], [](Connection& c) { c.start(); }, Connection::SendBatching::kPerLoop);
  rig.on(0, [&] {
    h.queue(1, 100);
    h.conn->close("closed by the test");
    return 0;
  });
  ASSERT_TRUE(h.wait([&] { return h.closed_calls > 0; })) << "on_closed() never ran";
  rig.settle(0);
  EXPECT_EQ(h.closed(), 1);
  EXPECT_EQ(h.reason(), "closed by the test");
  EXPECT_EQ(h.sends_done.load(), 1) << "the queued send's callback never ran";
  EXPECT_EQ(rig.on(0, [&] { return h.conn->sendmsgs(); }), 0u);
  EXPECT_TRUE(sees_eof(client.fd, 5000ms));
}

}  // namespace
}  // namespace castor::reactor
