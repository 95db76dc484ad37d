#pragma once
// The persistent record of which children of a nexus are unhealthy (stale), so that a
// re-created nexus never reads from a child that missed writes, and of whether the nexus
// is open (it did not shut down cleanly, so its children may differ where writes were in
// flight). Mayastor keeps the same record ("NexusInfo", with its clean-shutdown flag) in
// etcd; Castor keeps it behind this interface, with a JSON file per nexus as the
// node-local implementation and castor-control's store as the cluster one.
//
// Contract: every call is synchronous and durable when it returns ok. Calls block
// (disk I/O), so they never run on a reactor thread: the nexus calls them from the
// NexusManager's worker thread or from control-path threads. Thread-safe.

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "nexus/types.h"

namespace castor::nexus {

// The persisted form of a child's missed-write log.
struct MissedWriteLog {
  uint64_t segment_blocks = 0;
  uint64_t num_segments = 0;
  // True only when written at a clean nexus destroy: the log then covers every write the
  // child missed.
  bool clean = false;
  // True when written ahead of the writes it covers (every write that skipped the child
  // completed only after its segment was in a persisted log), so it is complete even
  // after a crash. A log that is neither clean nor write-ahead is never used (a full
  // rebuild follows).
  bool write_ahead = false;
  std::vector<std::pair<uint64_t, uint64_t>> dirty;  // runs [first segment, count]
};

// The reason recorded for children made stale because their nexus ended uncleanly.
inline constexpr char kUncleanShutdown[] = "unclean_shutdown";

struct ChildRecord {
  bool healthy = true;
  std::string reason;           // fault_reason_name() or "offline"
  uint64_t updated_unix_ms = 0;
  std::optional<MissedWriteLog> log;
};

using ChildRecords = std::map<std::string, ChildRecord>;  // by child URI

// The persisted health of one nexus.
struct NexusHealth {
  // Set, durably, before a nexus serves I/O; cleared at a clean shutdown once every
  // writable child has been flushed. Found set when a nexus opens: the previous instance
  // ended uncleanly (a crash, a kill, a lost node).
  bool open = false;
  ChildRecords children;
  bool empty() const { return !open && children.empty(); }
};

class ChildHealthStore {
 public:
  virtual ~ChildHealthStore() = default;
  // Records the child as unhealthy (drops any stored log).
  virtual Status mark_unhealthy(const std::string& nexus, const std::string& child_uri,
                                const std::string& reason);
  // Records the child as healthy (in sync).
  virtual Status mark_healthy(const std::string& nexus, const std::string& child_uri);
  // Stores the missed-write log of an unhealthy child. Errors: NotFound (no record).
  virtual Status save_log(const std::string& nexus, const std::string& child_uri,
                          const MissedWriteLog& log);
  // Forgets the child (removed from the nexus).
  virtual Status forget(const std::string& nexus, const std::string& child_uri);
  // Records whether the nexus is open (see NexusHealth::open).
  virtual Status set_open(const std::string& nexus, bool open);
  // Forgets the whole nexus.
  virtual Status purge(const std::string& nexus);
  // The record of `nexus` (empty if none).
  virtual Result<NexusHealth> load(const std::string& nexus) = 0;
  // The fencing generation of the nexus that writes `nexus`'s record from now on (0:
  // none). A store shared by the nexuses of a volume (castor-control's) refuses the
  // writes of a superseded generation with is_stale_nexus() errors; the others ignore it.
  virtual void bind_generation(const std::string& nexus, uint64_t generation) {}

 protected:
  // Atomically replaces the nexus' record; an empty one may delete the document.
  virtual Status replace(const std::string& nexus, const NexusHealth& health) = 0;

 private:
  template <class F>
  Status update(const std::string& nexus, F&& f);
  std::mutex update_mu_;  // serializes load-modify-replace
};

// In memory, for unit tests. Can be told to fail or delay writes.
// A write refused because a newer nexus of the volume owns the record: the writer is fenced.
inline bool is_stale_nexus(const Status& s) {
  return s.code() == Errc::kBusy && s.message().find("stale nexus:") != std::string::npos;
}

class MemChildHealthStore : public ChildHealthStore {
 public:
  Result<NexusHealth> load(const std::string& nexus) override;
  // Test hooks: the next `n` writes fail with IoError; every write sleeps `delay_ms`.
  void fail_next_writes(int n) { fail_.store(n); }
  void set_write_delay_ms(uint32_t ms) { delay_ms_.store(ms); }
  uint64_t writes() const { return writes_.load(); }

 protected:
  Status replace(const std::string& nexus, const NexusHealth& health) override;

 private:
  std::mutex mu_;
  std::map<std::string, NexusHealth> docs_;
  std::atomic<int> fail_{0};
  std::atomic<uint32_t> delay_ms_{0};
  std::atomic<uint64_t> writes_{0};
};

// One JSON file per nexus, `<dir>/<nexus>.json`, replaced by write-to-temp, fsync,
// rename, fsync(dir): a crash leaves either the old or the new document.
class FileChildHealthStore : public ChildHealthStore {
 public:
  // Creates `dir` if missing.
  explicit FileChildHealthStore(std::filesystem::path dir);
  Result<NexusHealth> load(const std::string& nexus) override;
  std::filesystem::path path_for(const std::string& nexus) const;

 protected:
  Status replace(const std::string& nexus, const NexusHealth& health) override;

 private:
  std::filesystem::path dir_;
};

// JSON (de)serialization of one nexus document (exposed for tests and tools).
std::string health_to_json(const std::string& nexus, const NexusHealth& health);
Result<NexusHealth> health_from_json(const std::string& text);

}  // namespace castor::nexus
