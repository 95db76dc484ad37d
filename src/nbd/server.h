#pragma once
// Layer 5: the NBD target. Exports any bdev over the NBD protocol (fixed newstyle) to
// clients such as libnbd's tools, nbdfuse, fio's nbd engine, QEMU and the Linux
// nbd-client. Connections are spread over the reactors; each connection's state and
// I/O stay on its reactor.
//
// NbdServer's methods are thread-safe control-path calls (not from a reactor thread).

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "reactor/budget.h"
#include "reactor/tcp.h"
#include "reactor/tcp_server.h"

namespace castor::nbd {

struct ExportInfo {
  std::string name;  // the NBD export name ("" is the default export)
  std::string bdev;
  bool read_only = false;
  std::string description;
  uint32_t connections = 0;
};

struct ServerOptions {
  // A client silent this long is probed with TCP keepalives; one that answers none, or
  // leaves the engine's data unacknowledged for twice as long, is cut off and its
  // requests' buffers freed (reactor::tcp_keepalive). NBD itself has no ping. 0: off.
  uint32_t keepalive_s = 30;
  // The READ and WRITE buffers all connections together may hold (besides each
  // connection's own kMaxBytesInFlight), split evenly over the reactors. A connection
  // whose request does not fit stops reading until half its reactor's share is free. One
  // request alone always fits. 0: no limit beyond the connections' own.
  uint64_t buffer_budget_bytes = 1ull << 30;
};

struct NbdStats {
  uint64_t connections_accepted = 0;
  uint64_t protocol_errors = 0;  // connections closed for a protocol violation
  uint64_t dead_clients = 0;     // connections closed: the client stopped answering
  // A connection with kMaxRequestsInFlight requests or kMaxBytesInFlight bytes of
  // buffers in flight stops reading its socket until replies drain (TCP then pushes
  // back on the client): how often that happened, and the most bytes one connection held.
  uint64_t receive_pauses = 0;
  uint64_t peak_bytes_in_flight = 0;
  // Of the pauses, those because the server-wide budget (buffer_budget_bytes) was spent,
  // and the most bytes one reactor's connections held together.
  uint64_t budget_pauses = 0;
  uint64_t peak_budget_bytes = 0;
};

class NbdConnection;

class NbdServer {
 public:
  NbdServer(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
            ServerOptions options = {});
  // Stops listening and closes every connection.
  ~NbdServer();

  // Listens on host:port (port 0 picks one; *bound gets it). Errors: AlreadyExists (in
  // use), IoError.
  Status listen(const std::string& host, uint16_t port, uint16_t* bound);
  // Holds the bdev open while exported. Errors: NotFound (bdev), AlreadyExists (export
  // name), Busy (claimed by someone else), InvalidArgument.
  Status add_export(const ExportInfo& e);
  // Existing connections keep working until they close. Errors: NotFound.
  Status remove_export(const std::string& name);
  std::vector<ExportInfo> list_exports() const;
  // Serves an already connected socket on reactor `reactor_index` as if accepted (tests
  // and fuzzing use a socketpair). Takes ownership of `fd`.
  void adopt(int fd, size_t reactor_index);
  NbdStats stats() const;
  void stop();

  // Used by connections (any reactor): a snapshot of an export.
  bool find_export(const std::string& name, ExportInfo* out) const;
  bdev::BdevRegistry& registry() { return registry_; }
  void count_protocol_error();
  void count_dead_client() { dead_clients_.fetch_add(1, std::memory_order_relaxed); }
  const ServerOptions& options() const { return options_; }
  void count_receive_pause() { receive_pauses_.fetch_add(1, std::memory_order_relaxed); }
  void note_bytes_in_flight(uint64_t n);
  void count_budget_pause() { budget_pauses_.fetch_add(1, std::memory_order_relaxed); }
  void note_budget_bytes(uint64_t n);
  void connection_opened(const std::string& export_name, int delta);

 private:
  bdev::BdevRegistry& registry_;
  const ServerOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, ExportInfo> exports_;
  // Each export holds a descriptor, so its bdev cannot be destroyed while exported.
  std::map<std::string, bdev::BdevDesc> export_descs_;
  NbdStats stats_;
  std::atomic<uint64_t> receive_pauses_{0}, peak_bytes_in_flight_{0}, dead_clients_{0};
  std::atomic<uint64_t> budget_pauses_{0}, peak_budget_bytes_{0};
  // Listeners, connections by id, the buffer budget (one share per reactor), stopping.
  // Last: destroyed (stopped) first, while the state above is still there.
  reactor::TcpServer tcp_;
  friend class NbdConnection;
};

}  // namespace castor::nbd
