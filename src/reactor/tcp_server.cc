#include "reactor/tcp_server.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <future>
#include <thread>

namespace castor::reactor {
namespace {

// Stops each listener (on reactor 0) and waits until its accept is cancelled; the caller
// then destroys them on reactor 0.
void stop_listeners(ReactorGroup& g, const std::vector<Listener*>& listeners) {
  for (Listener* l : listeners) {
    std::promise<void> p;
    g.run_on(0, [l, &p](Reactor&) { l->stop([&p] { p.set_value(); }); });
    p.get_future().wait();
  }
}

// Asks reactor i every 10 ms whether done() (called there) holds, for at most
// timeout_ms. Returns whether it did.
bool wait_on_reactor(ReactorGroup& g, size_t i, const std::function<bool()>& done,
                     int timeout_ms) {
  // A poll: the state lives on reactor i and is read there by message. The deadline is
  // on the clock, so time spent reaching the reactor counts too.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    bool ok = false;
    g.run_on(i, [&](Reactor&) { ok = done(); });
    if (ok) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

TcpServer::TcpServer(ReactorGroup& reactors, TcpServerOptions options, Serve serve)
    : reactors_(reactors), options_(std::move(options)), serve_(std::move(serve)), live_(reactors.size()) {
  const uint64_t share = options_.buffer_budget_bytes
                             ? std::max<uint64_t>(1, options_.buffer_budget_bytes / reactors.size())
                             : 0;
  for (size_t i = 0; i < reactors.size(); ++i) budgets_.push_back(std::make_unique<ByteBudget>(share));
}

TcpServer::~TcpServer() { stop(); }

Status TcpServer::listen(const std::string& host, uint16_t port, uint16_t* bound) {
  if (stopping()) return make_error(Errc::kBusy, "{} target is stopping", options_.protocol);
  uint16_t got = 0;
  auto fd = tcp_listen(host, port, options_.backlog, &got);
  if (!fd) return fd.status();
  if (bound) *bound = got;
  auto l = std::make_unique<Listener>(reactors_.at(0), *fd, [this](int cfd) {
    if (Status s = tcp_keepalive(cfd, options_.keepalive_s); !s) {
      spdlog::warn("{}: {}; a client that vanishes will not be noticed", options_.protocol, s.message());
    }
    accepted_.fetch_add(1, std::memory_order_relaxed);
    serve_on(next_reactor_.fetch_add(1, std::memory_order_relaxed) % reactors_.size(), cfd);
  });
  Listener* lp = l.get();
  {
    std::lock_guard lk(mu_);
    if (stopped_) {
      return make_error(Errc::kBusy, "{} target is stopping", options_.protocol);  // closes fd
    }
    listeners_.push_back({{host, got}, std::move(l)});
  }
  reactors_.run_on(0, [lp](Reactor&) { lp->start(); });
  spdlog::info("{} listening on {}:{}", options_.protocol, host, got);
  return Status::ok();
}

std::vector<ListenAddress> TcpServer::listeners() const {
  std::lock_guard lk(mu_);
  std::vector<ListenAddress> out;
  for (const auto& l : listeners_) out.push_back(l.address);
  return out;
}

void TcpServer::adopt(int fd, size_t reactor_index) {
  accepted_.fetch_add(1, std::memory_order_relaxed);
  serve_on(reactor_index % reactors_.size(), fd);
}

void TcpServer::serve_on(size_t reactor_index, int fd) {
  Reactor& r = reactors_.at(reactor_index);
  r.send([this, &r, fd] {
    // A socket that reaches its reactor after stop() began would outlive the stop.
    if (stopping()) {
      ::close(fd);
      return;
    }
    serve_(fd, r);
  });
}

void TcpServer::attach(Reactor& r, ServedConnection& c) {
  c.id_ = next_id_.fetch_add(1, std::memory_order_relaxed) << kReactorBits | r.id();
  live_[r.id()][c.id_] = &c;
}

void TcpServer::detach(Reactor& r, ServedConnection& c) { live_[r.id()].erase(c.id_); }

ServedConnection* TcpServer::find(size_t reactor_index, uint64_t id) const {
  const auto& m = live_[reactor_index];
  auto it = m.find(id);
  return it == m.end() ? nullptr : it->second;
}

void TcpServer::for_each_connection(size_t reactor_index, const std::function<void(ServedConnection&)>& fn) {
  std::vector<ServedConnection*> v;
  v.reserve(live_[reactor_index].size());
  for (const auto& [id, c] : live_[reactor_index]) v.push_back(c);
  for (ServedConnection* c : v) {
    if (live_[reactor_index].count(c->connection_id())) fn(*c);  // an earlier fn may have ended it
  }
}

bool TcpServer::close_connection(uint64_t id) {
  const size_t i = reactor_of(id);
  if (i >= reactors_.size()) return false;
  bool found = false;
  reactors_.run_on(i, [&](Reactor&) {
    if (ServedConnection* c = find(i, id)) {
      found = true;
      c->shut_down();
    }
  });
  return found;
}

void TcpServer::stop() {
  std::vector<Listener*> ls;
  {
    std::lock_guard lk(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_.store(true, std::memory_order_release);
    for (auto& l : listeners_) ls.push_back(l.listener.get());
  }
  stop_listeners(reactors_, ls);
  // Listeners are destroyed on their reactor (their accept was cancelled above).
  std::vector<ListenerEntry> gone;
  {
    std::lock_guard lk(mu_);
    gone.swap(listeners_);
  }
  reactors_.run_on(0, [&gone](Reactor&) { gone.clear(); });
  for (size_t i = 0; i < reactors_.size(); ++i) {
    reactors_.run_on(i, [this, i](Reactor&) { for_each_connection(i, [](ServedConnection& c) { c.shut_down(); }); });
    if (!wait_on_reactor(reactors_, i, [this, i] { return live_[i].empty(); }, 5000)) {
      spdlog::warn("{}: connections on reactor {} still open 5 s after stop", options_.protocol, i);
    }
  }
}

}  // namespace castor::reactor
