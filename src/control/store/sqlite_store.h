#pragma once
// The embedded back end: one SQLite database file on this host, no other service.
//
// Layout: table kv(key TEXT PRIMARY KEY, value BLOB, mod_revision INTEGER) and the
// one-row table meta(revision): every commit() is one transaction that bumps the revision
// by one and stamps every key it writes with it. WAL journal with synchronous=FULL, so a
// commit() that returned ok survives a power loss. StoreOptions::prefix is not used (one
// database per cluster).
//
// Leadership: an exclusive flock() on "<path>.lock", held from acquire_leadership() until
// the store is destroyed (or the process dies: the kernel drops the lock). The lock file
// holds the leader's identity. A second process on the same file waits in
// acquire_leadership() as a standby. Since the lock cannot be lost while the process
// lives, leading() stays true and on_lost never runs; commit() before
// acquire_leadership() fails with Aborted. The lock only excludes processes on the same
// host and a local file system (flock over NFS is not reliable), and nobody may delete
// the lock file while a leader runs.
//
// One connection, serialized by a mutex: the control plane's write rate is low and this
// keeps every call trivially linearizable.

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "control/store/store.h"

struct sqlite3;

namespace castor::control {

class SqliteStore : public Store {
 public:
  // `path`: absolute path of the database file (created by open() if missing; its
  // directory must exist).
  SqliteStore(std::string path, StoreOptions opts);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Status open() override;
  Result<std::optional<KeyValue>> get(const std::string& key) override;
  Result<std::vector<KeyValue>> list(const std::string& prefix) override;
  Status commit(const std::vector<StoreOp>& ops,
                const std::vector<StoreCompare>& compares = {}) override;
  Status acquire_leadership(const std::string& identity, std::stop_token stop,
                            std::function<void()> on_lost) override;
  bool leading() const override { return leading_.load(); }
  // NotFound when no process holds the lock.
  Result<std::string> leader() override;
  // SQLite keeps no history: nothing to do.
  Status compact() override { return Status::ok(); }
  // compacted_revision equals revision: no older revision can be read.
  Result<StoreStats> stats() override;
  std::string describe() const override { return "sqlite://" + path_; }

  const std::string& lock_path() const { return lock_path_; }

 private:
  // One caller's batch waiting for (or in) a group commit.
  struct Pending {
    const std::vector<StoreOp>* ops;
    const std::vector<StoreCompare>* compares;
    Status status;
    bool done;
  };
  Status commit_group(const std::vector<Pending*>& group);
  Status apply_locked(const std::vector<StoreOp>& ops, const std::vector<StoreCompare>& compares);
  Status exec(const char* sql);
  Status error(const char* what, int rc);
  Result<int64_t> read_revision();

  const std::string path_;
  const std::string lock_path_;
  const StoreOptions opts_;

  std::mutex mu_;  // guards db_ (one connection, one statement at a time)
  std::mutex queue_mu_;  // guards queue_, committing_, and every Pending's status/done
  std::condition_variable queue_cv_;
  std::vector<Pending*> queue_;
  bool committing_ = false;
  sqlite3* db_ = nullptr;

  std::mutex lock_mu_;  // guards lock_fd_, identity_
  int lock_fd_ = -1;    // open and flock()ed while leading
  std::string identity_;
  std::atomic<bool> leading_{false};
};

}  // namespace castor::control
