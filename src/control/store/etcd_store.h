#pragma once
// The clustered back end: etcd v3 over its own gRPC API (KV, Watch, Lease, Maintenance).
//
// Keys: StoreOptions::prefix + key ("/castor/v1/volumes/<uuid>"); the prefix is stripped
// from every key returned. "<prefix>election/" is reserved for the leader election (one
// key per candidate, attached to the candidate's lease); user writes there are refused
// and list() never returns those keys.
//
// Endpoints: one gRPC channel per "host:port" of the URI. A call starts at the endpoint
// that last answered (skipping channels that are known to be down) and every request
// has a deadline of request_timeout_ms. Reads and other idempotent requests move on to
// the next endpoint on UNAVAILABLE; a commit (a Txn) is never re-sent, since etcd may
// have applied it (then the caller gets Unavailable and retries; the next call starts at
// the next endpoint).
//
// Election (the clientv3 concurrency recipe): a lease of lease_ttl_s, kept alive by a
// back-end thread every ttl/3; the key "<prefix>election/<lease id in hex>" created with
// the lease (value: the identity); the candidate whose key has the lowest create
// revision leads; the others each watch the key created just before theirs until it is
// deleted. Fence: every commit() is a Txn that also requires CREATE(own key) == its
// create revision, which fails once the lease has expired (etcd deletes the key) or the
// key was deleted. Leadership is lost when a keep-alive answers TTL <= 0, when no
// keep-alive is confirmed for a whole TTL, when the key disappears, or when a commit
// finds the fence broken; then leading() turns false and on_lost runs once, on the
// keep-alive thread (so on_lost must not destroy the store).
//
// Thread-safety: as Store; every method may block for up to request_timeout_ms per
// request (list(): per page).

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "control/store/store.h"

namespace castor::control {

class EtcdStore : public Store {
 public:
  // `uri`: as given to make_store() (describe() returns it); `endpoints`: "host:port"
  // each, already validated.
  EtcdStore(std::string uri, std::vector<std::string> endpoints, StoreOptions opts);
  // Resigns: stops the keep-alives and revokes the lease (best effort, one request), so
  // a standby takes over at once instead of after the TTL.
  ~EtcdStore() override;
  EtcdStore(const EtcdStore&) = delete;
  EtcdStore& operator=(const EtcdStore&) = delete;

  // Creates the channels and asks one endpoint for its status. Errors: Unavailable.
  Status open() override;
  Result<std::optional<KeyValue>> get(const std::string& key) override;
  // One snapshot: every page is read at the revision of the first page; if that revision
  // is compacted meanwhile, the list starts over.
  Result<std::vector<KeyValue>> list(const std::string& prefix) override;
  Status commit(const std::vector<StoreOp>& ops,
                const std::vector<StoreCompare>& compares = {}) override;
  // Blocks until leading or `stop`; retries Unavailable errors with a back-off (a standby
  // rides out etcd restarts). A standby whose lease is lost campaigns again with a new
  // one. Errors: Aborted (stopped), InvalidArgument (called twice).
  Status acquire_leadership(const std::string& identity, std::stop_token stop,
                            std::function<void()> on_lost) override;
  bool leading() const override { return leading_.load(); }
  // The value (identity) of the election key with the lowest create revision. Errors:
  // NotFound (no candidate), Unavailable.
  Result<std::string> leader() override;
  // Compacts (physical=false) to the current revision.
  Status compact() override;
  // keys and bytes: the user keys (without prefix) and their values, read with list();
  // file_bytes: the answering member's db size; compacted_revision: the highest revision
  // this process compacted to (etcd does not report it), else 0.
  Result<StoreStats> stats() override;
  std::string describe() const override { return uri_; }

  // Test hook: the keep-alive thread stops renewing the lease and stops checking its
  // expiry, as if this process were frozen: the lease runs out while leading() is still
  // true, and only a commit (refused by the fence) discovers it. on_lost still runs then.
  void test_pause_keepalive();

 private:
  struct Endpoint;
  enum class Lead { kNone, kCampaigning, kLeading, kLost };

  // Runs `fn(endpoint, context)` (a context with the request deadline set) against the
  // endpoints, starting at the current one. `idempotent`: re-sent to the next endpoint on
  // UNAVAILABLE. `code` (optional): the gRPC code of the last attempt.
  template <class Fn>
  Status call(const char* what, bool idempotent, Fn&& fn, int* code = nullptr);
  size_t pick_endpoint() const;
  void poll_loop();
  Status to_status(const char* what, const std::string& endpoint, const grpc::Status& s) const;

  Status campaign(std::stop_token stop);
  Status wait_deleted(const std::string& key, int64_t from_revision, std::stop_token stop);
  void keepalive_loop(std::stop_token stop, int64_t lease, int64_t ttl_s,
                      std::chrono::steady_clock::time_point granted_at);
  // One keep-alive exchange; the lease's remaining TTL (<= 0: gone).
  Result<int64_t> keepalive_once(int64_t lease, std::chrono::milliseconds timeout);
  void stop_keepalive();
  void revoke(int64_t lease);
  // Called by a commit that found the fence broken.
  void fence_broken(const std::string& why);

  std::string full_key(const std::string& key) const { return opts_.prefix + key; }
  std::string election_prefix() const;

  const std::string uri_;
  const std::vector<std::string> addresses_;
  const StoreOptions opts_;

  // Set once by open() (before any other call, by contract), then read-only.
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::once_flag open_once_;
  std::atomic<size_t> current_{0};  // endpoint that last answered

  // Keeps every channel's connection moving. A sync gRPC client makes I/O progress only
  // while some thread waits on the channel; a call on a channel in TRANSIENT_FAILURE
  // fails at once and waits on nothing, so after an outage the reconnection would only
  // advance in gRPC's backup poller (every 5 s) and the store would stay Unavailable for
  // seconds after etcd is back. This thread always waits on every channel's state.
  grpc::CompletionQueue poll_cq_;
  std::atomic<bool> poll_stop_{false};
  std::thread poller_;

  std::atomic<bool> leading_{false};
  std::atomic<int64_t> compacted_revision_{0};

  // The election. The campaign runs on the acquire_leadership() caller's thread, the
  // keep-alives on keepalive_; both meet here.
  mutable std::mutex mu_;
  std::condition_variable_any cv_;  // wakes the keep-alive thread (fence broken)
  Lead lead_ = Lead::kNone;
  bool acquire_called_ = false;
  std::string identity_;
  std::function<void()> on_lost_;
  int64_t lease_id_ = 0;
  bool lease_lost_ = false;                   // the keep-alive thread gave up lease_id_
  std::string election_key_;                  // full key, attached to lease_id_
  int64_t election_rev_ = 0;                  // its create revision: the fence (0: not created yet)
  bool fence_broken_ = false;                 // a commit was refused by the fence
  bool paused_ = false;                       // test_pause_keepalive()
  grpc::ClientContext* watch_ctx_ = nullptr;  // the campaign's watch, cancelled on loss
  std::jthread keepalive_;
};

}  // namespace castor::control
