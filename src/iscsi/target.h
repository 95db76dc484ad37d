#pragma once
// Layer 5: the iSCSI target (RFC 7143). Exports bdevs as SCSI logical units of target
// nodes (one IQN each) to initiators such as open-iscsi, VMware and libiscsi.
//
// Model: error recovery level 0. A session may have several connections (MC/S, up to
// TargetLimits::max_connections); all of them run on the reactor of the session's
// leading connection, so a session's state (CmdSN window, tasks) is reached without
// locks on the I/O path. Sessions are spread over the reactors. Login supports no
// authentication or CHAP (optionally mutual), per target node, plus an initiator
// allow-list.
//
// IscsiTarget's methods are thread-safe control-path calls (not from a reactor thread).

#include <atomic>
#include <condition_variable>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "iscsi/login.h"
#include "reactor/budget.h"
#include "reactor/tcp_server.h"
#include "reactor/tcp.h"
#include "scsi/device.h"

namespace castor::iscsi {

struct NodeConfig {
  std::string name;  // the target IQN (or eui./naa. name)
  std::string alias;
  std::vector<scsi::LunOptions> luns;  // LUN 0 first, usually just one
  NodeAccess access;
};

struct NodeInfo {
  std::string name;
  std::string alias;
  std::vector<scsi::LunOptions> luns;
  bool chap = false;
  bool mutual_chap = false;
  std::vector<std::string> allowed_initiators;
  uint32_t sessions = 0;  // distinct sessions (not connections)
};

// One connection of a session (list_sessions() returns one per connection; the
// connections of a session share its TSIH).
struct SessionInfo {
  std::string target;
  std::string initiator;
  std::string isid;  // hex
  uint16_t tsih = 0;
  uint16_t cid = 0;  // connection ID within the session
  std::string peer;  // address of the initiator
  bool header_digest = false, data_digest = false;
  uint32_t reactor = 0;
};

struct TargetStats {
  uint64_t connections_accepted = 0;
  uint64_t logins_ok = 0;
  uint64_t logins_failed = 0;
  uint64_t protocol_errors = 0;  // connections closed for a protocol violation
  uint64_t digest_errors = 0;
  uint64_t lost_data_outs = 0;  // commands failed 0B/47/05: a Data-Out lost (digest, DataSN)
  uint64_t nop_in_pings = 0;    // NOP-In pings sent to idle initiators
  uint64_t nop_in_timeouts = 0;  // connections closed: no answer to a ping
  uint64_t buffer_limit_hits = 0;  // commands answered TASK SET FULL: a buffer limit spent
  uint64_t budget_limit_hits = 0;  // of those, the target-wide buffer_budget_bytes
  // Times a connection stopped reading because the initiator was not reading the replies
  // the target makes for it (NOP-In echoes, rejects, refused commands' status).
  uint64_t receive_holds = 0;
};

struct TargetOptions {
  TargetLimits limits;
  uint16_t portal_group_tag = 1;
  uint32_t queue_depth = 128;  // commands in flight per session (the CmdSN window)
  // Largest transfer one command may ask for; bigger ones get CHECK CONDITION. (libiscsi's
  // conformance suite writes 65536 blocks in one command.)
  uint32_t max_transfer_bytes = 64u << 20;
  // The data buffers one connection's commands may hold at once (each command counts its
  // EDTL, at most max_transfer_bytes). A command beyond it gets TASK SET FULL, which
  // initiators retry; one command alone always fits. Bounds what an initiator that never
  // reads its Data-In (or never sends its Data-Out) can make the engine allocate.
  uint64_t max_buffered_bytes = 256ull << 20;
  // The same, for all connections together (split evenly over the reactors), so that many
  // sessions cannot add up to more. One command alone always fits. 0: no limit beyond
  // the connections' own.
  uint64_t buffer_budget_bytes = 1ull << 30;
  // A task's data buffer larger than this is freed when the task ends, so a burst of
  // huge commands does not pin memory in every task slot.
  uint32_t keep_buffer_bytes = 1u << 20;
  NodeAccess discovery;  // CHAP for SendTargets discovery sessions (optional)
  // A connection still logging in after this long is closed.
  uint32_t login_timeout_ms = 30'000;
  // Dead initiators: after nop_in_interval_ms without a byte from the initiator, the
  // target pings it with a NOP-In that asks for a NOP-Out (RFC 7143 §11.19); with still
  // nothing nop_in_timeout_ms after the ping, it closes the connection, which at ERL 0
  // fails the session. 0 disables the pings.
  uint32_t nop_in_interval_ms = 15'000;
  uint32_t nop_in_timeout_ms = 30'000;
};

class IscsiConnection;
struct IscsiSession;

class IscsiTarget {
 public:
  IscsiTarget(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry, TargetOptions opts = {});
  // Stops listening and closes every session.
  ~IscsiTarget();

  // Listens on host:port (port 0 picks one; *bound gets it). Errors: AlreadyExists (in
  // use), IoError.
  Status listen(const std::string& host, uint16_t port, uint16_t* bound);
  // Creates a target node whose LUNs are the given bdevs (held open while the node
  // exists). Errors: AlreadyExists (name), NotFound (bdev), InvalidArgument (bad name,
  // no LUN, CHAP secret shorter than 12 bytes as RFC 7143 §12.1.3 requires).
  Status add_node(const NodeConfig& cfg);
  // Closes the node's sessions, waits up to `drain_timeout_ms` for them to end (commands
  // still running on the bdevs included), then removes the node and releases its bdevs:
  // they are free when this returns. Meanwhile no new login to the node is accepted.
  // Errors: NotFound; Busy if a session has not ended by then (a command stuck on a hung
  // bdev) or another removal of it is running: the node then stays exported as it was
  // (its closed sessions are not restored), and removing it again succeeds once they end.
  Status remove_node(const std::string& name, uint64_t drain_timeout_ms = 5000);
  std::vector<NodeInfo> list_nodes() const;
  // Bdev `bdev` has grown: each target node with a LUN over it queues the unit attention
  // CAPACITY DATA HAS CHANGED (2A/09) for every logged-in session (scsi::Device::
  // capacity_changed). Returns the number of LUNs over it.
  size_t announce_resize(const std::string& bdev);
  std::vector<SessionInfo> list_sessions() const;
  // Serves an already connected socket on reactor `reactor_index` as if accepted (tests
  // and fuzzing use a socketpair). Takes ownership of `fd`.
  void adopt(int fd, size_t reactor_index);
  TargetStats stats() const;
  void stop();

  // ---- used by connections ----
  std::shared_ptr<scsi::Device> device(const std::string& node) const;
  std::vector<std::string> node_names() const;
  const TargetOptions& options() const { return opts_; }
  const LoginConfig& login_config() const { return login_cfg_; }
  // Registers a connection entering full feature phase. If the same initiator port
  // already has another session with this target (reinstatement), that session's
  // connections are closed.
  void session_started(IscsiConnection* c, const SessionInfo& s, uint64_t conn_id);
  void session_ended(uint64_t conn_id);
  // The reactor serving session `tsih`, if it exists. Any thread.
  std::optional<uint32_t> session_reactor(uint16_t tsih) const;
  // Session `tsih` of reactor `r`, or null. Only on reactor r.
  IscsiSession* local_session(size_t r, uint16_t tsih) const;
  // Serves `fd` on reactor `r`, starting with `initial` (bytes already read from it).
  void hand_over(int fd, uint32_t r, std::vector<uint8_t> initial);
  // Closes every session with target node `node` except connection `except_conn` (0:
  // none; a TARGET COLD RESET spares its own until the response is sent). Any thread;
  // does not wait.
  void close_sessions(const std::string& node, uint64_t except_conn);
  void count(uint64_t TargetStats::*field);
  // Reactor i's share of buffer_budget_bytes. REQUIRES: on reactor i.
  reactor::ByteBudget& budget(size_t i) { return tcp_.budget(i); }

 private:
  void close_connection(uint32_t reactor, uint64_t conn_id);
  // A TSIH that no registered session has, never 0 (LoginConfig::new_tsih).
  uint16_t new_tsih();

  reactor::ReactorGroup& reactors_;
  bdev::BdevRegistry& registry_;
  TargetOptions opts_;
  LoginConfig login_cfg_;
  mutable std::mutex mu_;
  struct Node {
    NodeConfig cfg;
    std::shared_ptr<scsi::Device> dev;
    bool removing = false;  // remove_node() is waiting for its sessions: no new logins
  };
  std::map<std::string, Node> nodes_;
  struct Session {
    SessionInfo info;
    uint64_t conn_id;
  };
  std::map<uint64_t, Session> sessions_;  // by connection id
  std::condition_variable released_cv_;   // a session ended (with mu_)
  TargetStats stats_;
  uint16_t next_tsih_ = 1;
  // Sessions by TSIH per reactor, touched only on that reactor.
  std::vector<std::map<uint16_t, IscsiSession*>> local_sessions_;
  // Listeners, the live connections, the buffer budget (one share per reactor). Last:
  // stopped and destroyed first, while the state above is still there.
  reactor::TcpServer tcp_;
  friend class IscsiConnection;
};

}  // namespace castor::iscsi
