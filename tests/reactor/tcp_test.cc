// TCP on the reactor: an echo server on one reactor, clients on plain threads.
#include "reactor/tcp.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <random>

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

}  // namespace
}  // namespace castor::reactor
