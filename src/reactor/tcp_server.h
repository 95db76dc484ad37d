#pragma once
// TcpServer: the accepting half that every front end (NVMe-oF/TCP, iSCSI, NBD) shares.
// It listens on any number of addresses (the listeners live on reactor 0), hands each
// accepted socket to the next reactor in turn, keeps each reactor's live connections by
// id, holds the target-wide buffer budget (one share per reactor), and stops in one
// sequence: listeners first, then every connection, waiting for each to be gone.
//
// A front end gives the server a `serve` function that builds its connection object on
// the chosen reactor. That object derives from ServedConnection, registers itself with
// attach() when it starts and leaves with detach() just before it is destroyed.
//
// Threading: listen(), listeners(), adopt(), close_connection(), stop() and the counters
// are control-path calls (any thread but a reactor's). attach(), detach(), find() and
// budget(i) run on the connection's own reactor i.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "reactor/budget.h"
#include "reactor/reactor.h"
#include "reactor/tcp.h"

namespace castor::reactor {

class TcpServer;

class ServedConnection {
 public:
  virtual ~ServedConnection() = default;
  // Asks the connection to close (on its reactor); it detach()es once it is gone.
  virtual void shut_down() = 0;
  // Unique for the server's lifetime (never reused, unlike an address); 0 until attached.
  // It names the reactor too, so the server finds the connection from any thread.
  uint64_t connection_id() const { return id_; }

 private:
  friend class TcpServer;
  uint64_t id_ = 0;
};

struct TcpServerOptions {
  std::string protocol = "tcp";  // in log lines: "nbd", "iscsi", "nvmf"
  // tcp_keepalive() on every accepted socket (0: off).
  uint32_t keepalive_s = 0;
  // The data buffers all connections together may hold, split evenly over the reactors
  // (ByteBudget). 0: no limit.
  uint64_t buffer_budget_bytes = 0;
  int backlog = 128;
};

struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};

class TcpServer {
 public:
  // Runs on reactor `r` with a connected socket the callee now owns.
  using Serve = std::function<void(int fd, Reactor& r)>;
  TcpServer(ReactorGroup& reactors, TcpServerOptions options, Serve serve);
  // REQUIRES: stop() has returned, or nothing was ever listened on or adopted.
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  // Listens on host:port (port 0 picks one; *bound gets it). Errors: AlreadyExists (in
  // use), IoError, Busy (stopping).
  Status listen(const std::string& host, uint16_t port, uint16_t* bound);
  // In the order they were added.
  std::vector<ListenAddress> listeners() const;
  // Serves an already connected socket on reactor `reactor_index` (modulo the reactor
  // count) as if accepted: tests and fuzzing use a socketpair. Takes ownership of `fd`
  // (closed at once when stopping).
  void adopt(int fd, size_t reactor_index);

  // On the connection's reactor: registers `c` (gives it its id) / unregisters it.
  void attach(Reactor& r, ServedConnection& c);
  void detach(Reactor& r, ServedConnection& c);
  // On reactor `reactor_index`: the live connection with this id there, or nullptr.
  ServedConnection* find(size_t reactor_index, uint64_t id) const;
  // Calls fn for each live connection of reactor `reactor_index`, on it (a connection may
  // detach inside fn).
  void for_each_connection(size_t reactor_index, const std::function<void(ServedConnection&)>& fn);
  // The reactor a connection id lives on.
  static size_t reactor_of(uint64_t id) { return static_cast<size_t>(id & kReactorMask); }
  // Control thread: shut_down() of the connection with this id, if it is still live;
  // returns whether it was. Does not wait for it to be gone.
  bool close_connection(uint64_t id);

  // Reactor i's share of buffer_budget_bytes. REQUIRES: on reactor i.
  ByteBudget& budget(size_t i) { return *budgets_[i]; }
  uint64_t connections_accepted() const { return accepted_.load(std::memory_order_relaxed); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  ReactorGroup& reactors() { return reactors_; }
  const TcpServerOptions& options() const { return options_; }

  // Stops every listener (waiting until each accept is cancelled), then shuts every
  // connection down, one reactor after the other, waiting up to 5 s per reactor for its
  // connections to be gone. Idempotent; later adopt()s close their socket.
  void stop();

 private:
  static constexpr uint64_t kReactorBits = 8;
  static constexpr uint64_t kReactorMask = (uint64_t{1} << kReactorBits) - 1;
  struct ListenerEntry {
    ListenAddress address;
    std::unique_ptr<Listener> listener;
  };
  void serve_on(size_t reactor_index, int fd);

  ReactorGroup& reactors_;
  const TcpServerOptions options_;
  const Serve serve_;
  mutable std::mutex mu_;  // listeners_
  std::vector<ListenerEntry> listeners_;
  std::atomic<size_t> next_reactor_{0};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;  // mu_
  std::vector<std::unique_ptr<ByteBudget>> budgets_;  // one per reactor
  // Live connections per reactor, touched only on that reactor.
  std::vector<std::unordered_map<uint64_t, ServedConnection*>> live_;
};

}  // namespace castor::reactor
