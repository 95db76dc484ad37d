#pragma once
// The control plane's persistent store: a small key-value interface with two back ends,
// embedded SQLite (one host, no other service) and etcd v3 (a real cluster). Nothing
// else in castor-control keeps cluster state across a restart.
//
// Keys are UTF-8 paths without a leading slash ("volumes/<uuid>"); each back end puts its
// own prefix in front. Values are opaque bytes (castor-control writes JSON).
//
// Leadership and fencing. Several castor-controls may share one store; only the leader
// writes. acquire_leadership() blocks until this process leads; from then on every
// commit() is *fenced*: the back end applies it only if this process still holds the
// leadership it acquired (etcd: a Txn conditioned on the election key created under
// this process's lease; SQLite: an exclusive lock on the database file held for the
// process's lifetime). A commit refused by the fence fails with Errc::kAborted and
// changes nothing; the caller must then stop acting as leader (castor-control exits).
//
// Thread-safety: every method may be called from any thread concurrently.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "common/status.h"

namespace castor::control {

struct KeyValue {
  std::string key;    // without the back end's prefix
  std::string value;
  int64_t mod_revision = 0;  // revision of the last change; increases with every commit
};

// One write of an atomic batch.
struct StoreOp {
  enum class Kind { kPut, kDelete };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;  // kPut only

  static StoreOp put(std::string k, std::string v) {
    return {Kind::kPut, std::move(k), std::move(v)};
  }
  static StoreOp del(std::string k) { return {Kind::kDelete, std::move(k), {}}; }
};

// A condition of a commit: `key`'s mod_revision equals `mod_revision` (0: the key is
// absent). Lets a writer update a record only if nobody changed it since it was read.
struct StoreCompare {
  std::string key;
  int64_t mod_revision = 0;
};

struct StoreStats {
  uint64_t keys = 0;
  uint64_t bytes = 0;        // keys + values
  uint64_t file_bytes = 0;   // on-disk size (SQLite file and WAL; etcd db size)
  int64_t revision = 0;      // current revision
  int64_t compacted_revision = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Connects (etcd) or opens (SQLite) and checks the back end works. Errors:
  // Unavailable (cannot reach it), IoError (cannot open the file), InvalidArgument.
  virtual Status open() = 0;

  // Reads one key. Linearizable (sees every commit that completed before the call).
  // Errors: Unavailable.
  virtual Result<std::optional<KeyValue>> get(const std::string& key) = 0;

  // Every key starting with `prefix`, in key order. The back end pages through large
  // ranges (etcd: `page_limit` keys per request), so the result may be large but no one
  // request is. Errors: Unavailable.
  virtual Result<std::vector<KeyValue>> list(const std::string& prefix) = 0;

  // Applies `ops` atomically (all or none), if every compare holds and this process
  // still leads. Errors: Aborted (not the leader any more: fenced), FailedPrecondition
  // is reported as Errc::kBusy (a compare failed; nothing written), Unavailable (the
  // back end cannot be reached: the batch may or may not have been applied, so the
  // caller retries with the same idempotent batch), InvalidArgument (empty batch, an empty
  // key, a key twice, more than 120 ops or compares, a key under the back end's reserved
  // "election/" prefix).
  virtual Status commit(const std::vector<StoreOp>& ops,
                        const std::vector<StoreCompare>& compares = {}) = 0;

  // Shorthands for one-op commits.
  Status put(const std::string& key, const std::string& value) {
    return commit({StoreOp::put(key, value)});
  }
  Status del(const std::string& key) { return commit({StoreOp::del(key)}); }

  // Blocks until this process leads (or `stop` is requested: Aborted). `identity`
  // names this process to others (shown as the leader). Call once, before commit().
  // `on_lost` runs (on a back-end thread) if the leadership is later lost.
  virtual Status acquire_leadership(const std::string& identity, std::stop_token stop,
                                    std::function<void()> on_lost) = 0;
  // True between acquire_leadership() returning ok and the leadership being lost.
  virtual bool leading() const = 0;
  // The identity of the current leader, if any is known.
  virtual Result<std::string> leader() = 0;

  // Drops history older than the current revision where the back end keeps any (etcd:
  // Compact; SQLite: nothing to do). Errors: Unavailable.
  virtual Status compact() = 0;
  virtual Result<StoreStats> stats() = 0;

  // "sqlite:///path" or "etcd://host:port,host:port" as given.
  virtual std::string describe() const = 0;
};

struct StoreOptions {
  // etcd: keys per Range request when listing.
  uint32_t page_limit = 500;
  // etcd: the leader lease's TTL; keep-alives go every ttl/3. The minimum etcd allows
  // is 2 s.
  uint32_t lease_ttl_s = 10;
  // etcd: deadline of one request.
  uint32_t request_timeout_ms = 5000;
  // Prefix of every key (etcd) or nothing (SQLite keeps one database per cluster).
  std::string prefix = "/castor/v1/";
};

// Creates a store from a URI:
//   sqlite:///absolute/path/to/castor.db   (created if missing; WAL mode)
//   etcd://host:port[,host:port...]
// Errors: InvalidArgument (unknown scheme, bad address list).
Result<std::unique_ptr<Store>> make_store(const std::string& uri, const StoreOptions& opts = {});

}  // namespace castor::control
