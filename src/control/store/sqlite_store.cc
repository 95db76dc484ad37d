#include "control/store/sqlite_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>

#include "control/store/batch.h"

namespace castor::control {

namespace {

// The schema this code writes (PRAGMA user_version); a database from a newer Castor is
// refused rather than misread.
constexpr int kSchemaVersion = 1;

// How often a standby retries the leader's lock.
constexpr auto kLockPoll = std::chrono::milliseconds(100);

class Stmt {
 public:
  Stmt() = default;
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  sqlite3_stmt** out() { return &s_; }
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

Errc errc_of(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Errc::kUnavailable;  // another process holds a write lock past busy_timeout
    case SQLITE_FULL:
      return Errc::kNoSpace;
    default:
      return Errc::kIoError;
  }
}

void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

// std::string::data() is never null, so an empty value is a zero-length BLOB, not NULL.
void bind_blob(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

std::string column_string(sqlite3_stmt* s, int i) {
  const void* p = sqlite3_column_blob(s, i);  // null for a zero-length value
  int n = sqlite3_column_bytes(s, i);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

Status sync_parent_dir(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    Status s =
        make_error(Errc::kIoError, "cannot sync directory {}: {}", dir, std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return s;
  }
  ::close(fd);
  return Status::ok();
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

}  // namespace

SqliteStore::SqliteStore(std::string path, StoreOptions opts)
    : path_(std::move(path)), lock_path_(path_ + ".lock"), opts_(std::move(opts)) {}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard lk(mu_);
    if (db_) sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  std::lock_guard lk(lock_mu_);
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock: a standby takes over
    spdlog::info("store {}: leadership released", describe());
  }
}

Status SqliteStore::error(const char* what, int rc) {
  const char* msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  return make_error(errc_of(rc), "sqlite {}: {}: {}", path_, what, msg);
}

Status SqliteStore::exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::ok() : error(sql, rc);
}

Status SqliteStore::open() {
  std::lock_guard lk(mu_);
  if (db_) return Status::ok();
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path_.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status s = make_error(Errc::kIoError, "sqlite {}: cannot open: {}", path_,
                          db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return s;
  }
  db_ = db;
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, static_cast<int>(opts_.request_timeout_ms));

  auto fail = [&](Status s) {
    sqlite3_close_v2(db_);
    db_ = nullptr;
    // Anything but "locked" means the file is unusable: report it as such.
    if (s.code() != Errc::kUnavailable) return Status(Errc::kIoError, s.message());
    return s;
  };

  // journal_mode answers with the mode now in force; a file system without shared
  // memory support (some network file systems) keeps the old one.
  {
    Stmt st;
    rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, st.out(), nullptr);
    if (rc != SQLITE_OK) return fail(error("PRAGMA journal_mode", rc));
    rc = sqlite3_step(st.get());
    if (rc != SQLITE_ROW) return fail(error("PRAGMA journal_mode", rc));
    std::string mode = column_string(st.get(), 0);
    if (mode != "wal") {
      return fail(make_error(Errc::kIoError, "sqlite {}: cannot use WAL mode (journal_mode is {})",
                             path_, mode));
    }
  }
  // FULL: the WAL is synced at every commit, so a committed batch survives power loss
  // (NORMAL would only sync at checkpoints).
  if (Status s = exec("PRAGMA synchronous=FULL"); !s) return fail(s);

  if (Status s = exec("BEGIN IMMEDIATE"); !s) return fail(s);
  int version = -1;
  {
    Stmt st;
    rc = sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, st.out(), nullptr);
    if (rc == SQLITE_OK && sqlite3_step(st.get()) == SQLITE_ROW) {
      version = sqlite3_column_int(st.get(), 0);
    }
  }
  if (version < 0 || version > kSchemaVersion) {
    (void)exec("ROLLBACK");
    if (version < 0) return fail(error("PRAGMA user_version", rc));
    return fail(make_error(Errc::kIoError,
                           "sqlite {}: schema version {} is newer than this castor-control's ({})",
                           path_, version, kSchemaVersion));
  }
  if (version == 0) {
    // WITHOUT ROWID: the table is the key's B-tree itself, already in key order for list().
    const char* schema =
        "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL,"
        " mod_revision INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 0),"
        " revision INTEGER NOT NULL);"
        "INSERT OR IGNORE INTO meta (id, revision) VALUES (0, 0);"
        "PRAGMA user_version = 1;";
    if (Status s = exec(schema); !s) {
      (void)exec("ROLLBACK");
      return fail(s);
    }
  }
  if (Status s = exec("COMMIT"); !s) {
    (void)exec("ROLLBACK");
    return fail(s);
  }
  if (auto rev = read_revision(); !rev) return fail(rev.status());
  // SQLite syncs the WAL's directory entry but not the database file's: make a file
  // created just now survive a power loss too.
  if (Status s = sync_parent_dir(path_); !s) return fail(s);
  spdlog::info("store {}: open (WAL, synchronous=FULL)", describe());
  return Status::ok();
}

Result<int64_t> SqliteStore::read_revision() {
  Stmt st;
  int rc = sqlite3_prepare_v2(db_, "SELECT revision FROM meta WHERE id = 0", -1, st.out(), nullptr);
  if (rc != SQLITE_OK) return error("read revision", rc);
  rc = sqlite3_step(st.get());
  if (rc != SQLITE_ROW) {
    if (rc == SQLITE_DONE) {
      return make_error(Errc::kIoError, "sqlite {}: the meta table has no revision row", path_);
    }
    return error("read revision", rc);
  }
  return static_cast<int64_t>(sqlite3_column_int64(st.get(), 0));
}

Result<std::optional<KeyValue>> SqliteStore::get(const std::string& key) {
  std::lock_guard lk(mu_);
  if (!db_) return make_error(Errc::kUnavailable, "sqlite {}: not open", path_);
  Stmt st;
  int rc = sqlite3_prepare_v2(db_, "SELECT value, mod_revision FROM kv WHERE key = ?1", -1,
                              st.out(), nullptr);
  if (rc != SQLITE_OK) return error("get", rc);
  bind_text(st.get(), 1, key);
  rc = sqlite3_step(st.get());
  if (rc == SQLITE_DONE) return std::optional<KeyValue>();
  if (rc != SQLITE_ROW) return error("get", rc);
  return std::optional<KeyValue>(
      KeyValue{key, column_string(st.get(), 0), sqlite3_column_int64(st.get(), 1)});
}

Result<std::vector<KeyValue>> SqliteStore::list(const std::string& prefix) {
  std::lock_guard lk(mu_);
  if (!db_) return make_error(Errc::kUnavailable, "sqlite {}: not open", path_);
  // A key range rather than LIKE: LIKE treats '%' and '_' in the prefix as wildcards, is
  // case-insensitive for ASCII and cannot use the primary key's order.
  std::string end = prefix_end(prefix);
  Stmt st;
  const char* sql = end.empty()
                        ? "SELECT key, value, mod_revision FROM kv WHERE key >= ?1 ORDER BY key"
                        : "SELECT key, value, mod_revision FROM kv WHERE key >= ?1 AND key < ?2 "
                          "ORDER BY key";
  int rc = sqlite3_prepare_v2(db_, sql, -1, st.out(), nullptr);
  if (rc != SQLITE_OK) return error("list", rc);
  bind_text(st.get(), 1, prefix);
  if (!end.empty()) bind_text(st.get(), 2, end);
  std::vector<KeyValue> out;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    out.push_back(KeyValue{column_string(st.get(), 0), column_string(st.get(), 1),
                           sqlite3_column_int64(st.get(), 2)});
  }
  if (rc != SQLITE_DONE) return error("list", rc);
  return out;
}

// Group commit: concurrent commits share one transaction and so one WAL fsync. The
// first caller to find no commit running becomes the committer: it takes every batch
// queued so far, applies each under its own savepoint (a batch whose compare fails is
// rolled back alone and gets its own error), commits once, and wakes the others. A
// batch is acknowledged only after the COMMIT that made it durable returned.
Status SqliteStore::commit(const std::vector<StoreOp>& ops,
                           const std::vector<StoreCompare>& compares) {
  if (Status s = check_batch(ops, compares); !s) return s;
  if (!leading_.load()) {
    return make_error(Errc::kAborted,
                      "sqlite {}: not the leader (commit before acquire_leadership)", path_);
  }
  Pending me{&ops, &compares, Status::ok(), false};
  std::unique_lock q(queue_mu_);
  queue_.push_back(&me);
  queue_cv_.wait(q, [&] { return me.done || !committing_; });
  if (me.done) return me.status;
  committing_ = true;
  std::vector<Pending*> group;
  group.swap(queue_);
  q.unlock();
  Status overall = commit_group(group);
  q.lock();
  for (Pending* p : group) {
    if (!overall) p->status = overall;
    p->done = true;
  }
  committing_ = false;
  queue_cv_.notify_all();
  return me.status;
}

Status SqliteStore::commit_group(const std::vector<Pending*>& group) {
  std::lock_guard lk(mu_);
  if (!db_) return make_error(Errc::kUnavailable, "sqlite {}: not open", path_);
  // IMMEDIATE: take the write lock now, so the compares and the writes see one state.
  if (Status s = exec("BEGIN IMMEDIATE"); !s) return s;
  for (Pending* p : group) {
    if (Status s = exec("SAVEPOINT batch"); !s) {
      (void)exec("ROLLBACK");
      return s;
    }
    p->status = apply_locked(*p->ops, *p->compares);
    Status end = p->status ? exec("RELEASE batch")
                           : (exec("ROLLBACK TO batch").is_ok() ? exec("RELEASE batch")
                                                                : error("rollback to savepoint", 0));
    if (!end) {
      (void)exec("ROLLBACK");
      return end;
    }
  }
  if (Status s = exec("COMMIT"); !s) {
    (void)exec("ROLLBACK");
    return s;
  }
  return Status::ok();
}

// Applies one batch inside the open transaction (the caller holds mu_ and wraps it in a
// savepoint, so a failing batch leaves nothing behind).
Status SqliteStore::apply_locked(const std::vector<StoreOp>& ops,
                                 const std::vector<StoreCompare>& compares) {
  auto rollback = [](Status s) { return s; };

  for (const auto& c : compares) {
    Stmt st;
    int rc = sqlite3_prepare_v2(db_, "SELECT mod_revision FROM kv WHERE key = ?1", -1, st.out(),
                                nullptr);
    if (rc != SQLITE_OK) return rollback(error("compare", rc));
    bind_text(st.get(), 1, c.key);
    rc = sqlite3_step(st.get());
    int64_t found = 0;
    if (rc == SQLITE_ROW) {
      found = sqlite3_column_int64(st.get(), 0);
    } else if (rc != SQLITE_DONE) {
      return rollback(error("compare", rc));
    }
    if (found != c.mod_revision) {
      return rollback(make_error(Errc::kBusy, "compare failed: '{}' is at revision {}, expected {}",
                                 c.key, found, c.mod_revision));
    }
  }

  auto rev = read_revision();
  if (!rev) return rollback(rev.status());
  const int64_t next = *rev + 1;
  {
    Stmt st;
    int rc = sqlite3_prepare_v2(db_, "UPDATE meta SET revision = ?1 WHERE id = 0", -1, st.out(),
                                nullptr);
    if (rc != SQLITE_OK) return rollback(error("bump revision", rc));
    sqlite3_bind_int64(st.get(), 1, next);
    rc = sqlite3_step(st.get());
    if (rc != SQLITE_DONE) return rollback(error("bump revision", rc));
  }

  Stmt put;
  Stmt del;
  for (const auto& op : ops) {
    int rc;
    sqlite3_stmt* s;
    if (op.kind == StoreOp::Kind::kPut) {
      if (!put.get()) {
        rc = sqlite3_prepare_v2(db_,
                                "INSERT INTO kv (key, value, mod_revision) VALUES (?1, ?2, ?3) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                                "mod_revision = excluded.mod_revision",
                                -1, put.out(), nullptr);
        if (rc != SQLITE_OK) return rollback(error("put", rc));
      }
      s = put.get();
      sqlite3_reset(s);
      bind_text(s, 1, op.key);
      bind_blob(s, 2, op.value);
      sqlite3_bind_int64(s, 3, next);
    } else {
      if (!del.get()) {
        rc = sqlite3_prepare_v2(db_, "DELETE FROM kv WHERE key = ?1", -1, del.out(), nullptr);
        if (rc != SQLITE_OK) return rollback(error("delete", rc));
      }
      s = del.get();
      sqlite3_reset(s);
      bind_text(s, 1, op.key);
    }
    rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
      return rollback(error(op.kind == StoreOp::Kind::kPut ? "put" : "delete", rc));
  }
  return Status::ok();
}

Status SqliteStore::acquire_leadership(const std::string& identity, std::stop_token stop,
                                       std::function<void()> on_lost) {
  {
    std::lock_guard lk(lock_mu_);
    if (lock_fd_ >= 0) return make_error(Errc::kInvalidArgument, "already leading");
  }
  int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(Errc::kIoError, "cannot open lock file {}: {}", lock_path_,
                      std::strerror(errno));
  }
  bool logged_wait = false;
  std::mutex wait_mu;
  std::condition_variable_any wait_cv;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) {
      Status s = make_error(Errc::kIoError, "cannot lock {}: {}", lock_path_, std::strerror(errno));
      ::close(fd);
      return s;
    }
    if (!logged_wait) {
      spdlog::info("store {}: another process leads; waiting as a standby", describe());
      logged_wait = true;
    }
    std::unique_lock lk(wait_mu);
    wait_cv.wait_for(lk, stop, kLockPoll, [] { return false; });
    if (stop.stop_requested()) {
      ::close(fd);
      return make_error(Errc::kAborted, "stopped while waiting for leadership");
    }
  }
  // The identity is only informational (leader()); the lock itself is the fence.
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, identity.data(), identity.size(), 0) != static_cast<ssize_t>(identity.size())) {
    spdlog::warn("store {}: cannot write the leader identity to {}: {}", describe(), lock_path_,
                 std::strerror(errno));
  }
  {
    std::lock_guard lk(lock_mu_);
    lock_fd_ = fd;
    identity_ = identity;
  }
  leading_.store(true);
  spdlog::info("store {}: leading as '{}'", describe(), identity);
  return Status::ok();
}

Result<std::string> SqliteStore::leader() {
  {
    std::lock_guard lk(lock_mu_);
    if (lock_fd_ >= 0) return identity_;
  }
  int fd = ::open(lock_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return make_error(Errc::kNotFound, "no leader ({} does not exist)", lock_path_);
    return make_error(Errc::kIoError, "cannot open {}: {}", lock_path_, std::strerror(errno));
  }
  // A shared lock we can take means nobody holds the exclusive one.
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    ::close(fd);
    return make_error(Errc::kNotFound, "no leader (nobody holds {})", lock_path_);
  }
  std::string identity;
  char buf[512];
  ssize_t n;
  off_t off = 0;
  while ((n = ::pread(fd, buf, sizeof(buf), off)) > 0) {
    identity.append(buf, static_cast<size_t>(n));
    off += n;
  }
  ::close(fd);
  // Between the leader's flock() and its write the file is empty (or holds the previous
  // leader's name, which is then overwritten).
  if (identity.empty())
    return make_error(Errc::kNotFound, "the leader has not written its identity yet");
  return identity;
}

Result<StoreStats> SqliteStore::stats() {
  std::lock_guard lk(mu_);
  if (!db_) return make_error(Errc::kUnavailable, "sqlite {}: not open", path_);
  StoreStats out;
  Stmt st;
  // CAST AS BLOB: LENGTH() of TEXT counts characters, not bytes.
  int rc = sqlite3_prepare_v2(
      db_, "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) FROM kv",
      -1, st.out(), nullptr);
  if (rc != SQLITE_OK) return error("stats", rc);
  rc = sqlite3_step(st.get());
  if (rc != SQLITE_ROW) return error("stats", rc);
  out.keys = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 0));
  out.bytes = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 1));
  auto rev = read_revision();
  if (!rev) return rev.status();
  out.revision = *rev;
  out.compacted_revision = *rev;
  out.file_bytes = file_size(path_) + file_size(path_ + "-wal");
  return out;
}

}  // namespace castor::control
