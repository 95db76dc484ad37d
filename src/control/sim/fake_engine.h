#pragma once
// In-process engines that answer the EngineClient API from memory: what the control
// plane's unit tests drive with injected failures, and what the scale simulation runs a
// thousand of. They keep the rules of the real engine that the control plane relies on
// (names unique, a pool's capacity and thick/thin accounting, a shared replica cannot be
// opened locally, a published nexus cannot be destroyed, a nexus child needs a reachable
// replica), not its data.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "control/engine_client.h"

namespace castor::control::sim {

class FakeCluster;

class FakeEngine final : public EngineClient {
 public:
  FakeEngine(FakeCluster& cluster, std::string node, std::string nvmf_endpoint);

  Result<std::string> ping() override;
  Result<EngineSnapshot> snapshot() override;
  Result<PoolReport> create_pool(const std::string& name, const std::vector<std::string>& disks,
                                 uint64_t cluster_size) override;
  Result<PoolReport> import_pool(const std::vector<std::string>& disks) override;
  Status destroy_pool(const std::string& name) override;
  Status create_replica(const std::string& pool, const std::string& uuid, uint64_t size_bytes,
                        bool thin) override;
  Status destroy_replica(const std::string& uuid) override;
  Status grow_replica(const std::string& uuid, uint64_t size_bytes) override;
  Result<std::string> share_replica(const std::string& uuid) override;
  Status unshare_replica(const std::string& uuid) override;
  Result<EngineNexus> create_nexus(const std::string& name, const std::string& uuid,
                                   uint64_t size_bytes, const std::vector<std::string>& children,
                                   const std::map<std::string, std::string>& options) override;
  Status set_nexus_ana_state(const std::string& name, const std::string& state) override;
  Status destroy_nexus(const std::string& name) override;
  Status add_child(const std::string& nexus, const std::string& uri) override;
  Status remove_child(const std::string& nexus, const std::string& uri) override;
  Status online_child(const std::string& nexus, const std::string& uri) override;
  Status fault_child(const std::string& nexus, const std::string& uri) override;
  Result<std::string> publish_nexus(const std::string& name, Protocol protocol,
                                    const std::vector<std::string>& allowed_hosts) override;
  Status unpublish_nexus(const std::string& name) override;
  Result<EngineNexus> resize_nexus(const std::string& name, uint64_t size_bytes) override;

  // ---- test controls ----
  // A down engine answers nothing (Unavailable). restart(): comes back as a new
  // instance that lost its nexuses and shares and must re-import its pools (the disks,
  // and so the pools' replicas, survive).
  void set_down(bool down);
  bool down() const { return down_.load(); }
  void restart();
  // The next `times` calls of `op` (a method name: "create_replica", ...) fail with `s`.
  void fail_next(const std::string& op, Status s, uint32_t times = 1);
  // A rebuild completes after this many snapshot() calls (0: at once).
  void set_rebuild_polls(uint32_t n) { rebuild_polls_ = n; }
  // The child starts a rebuild by the nexus's own decision (as a nexus re-created after
  // an unclean end resyncs its children). False if there is no such child. Counts as no
  // call.
  bool resync_child(const std::string& nexus, const std::string& uri);
  uint64_t calls() const { return calls_.load(); }
  const std::string& node() const { return node_; }
  std::string nvmf_endpoint() const { return nvmf_endpoint_; }
  // Adds a disk of `bytes` that create_pool can use by URI.
  void add_disk(const std::string& uri, uint64_t bytes);
  size_t replica_count() const;
  size_t nexus_count() const;
  // The replica exists (its pool imported) and is shared. Counts as no call.
  bool replica_shared(const std::string& uuid) const;
  // The replica's size, 0 if it does not exist. Counts as no call.
  uint64_t replica_size(const std::string& uuid) const;
  // The nexus's size, 0 if it does not exist. Counts as no call.
  uint64_t nexus_size(const std::string& name) const;

 private:
  struct Replica {
    std::string pool;
    uint64_t size = 0;
    bool thin = false;
    bool shared = false;
    std::string claimed_by;  // nexus name when a local child
  };
  struct Pool {
    std::string uuid;
    std::vector<std::string> disks;
    uint64_t capacity = 0;
    uint64_t cluster = 4 << 20;
    bool imported = true;
  };
  struct Child {
    std::string uri;
    std::string state = "healthy";
    std::string reason = "none";
    uint32_t rebuild_left = 0;  // snapshots until the rebuild completes
    bool rebuilt = false;
  };
  struct Nexus {
    std::string uuid;
    uint64_t size = 0;
    std::vector<Child> children;
    std::string published_uri;
    uint64_t generation = 0;
    std::string ana_state = "optimized";
  };

  Status enter(const char* op);  // counts the call; down or an injected failure
  uint64_t used_locked(const std::string& pool) const;
  uint64_t committed_locked(const std::string& pool) const;
  PoolReport report_locked(const std::string& name, const Pool& p) const;
  // Remote (nvmf://) children must name a shared replica of a running engine.
  Status reachable(const std::vector<std::string>& uris);
  Status open_child_locked(const std::string& nexus, const std::string& uri);
  void close_child_locked(const std::string& uri);

  FakeCluster& cluster_;
  const std::string node_;
  const std::string nvmf_endpoint_;
  std::atomic<bool> down_{false};
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint32_t> rebuild_polls_{0};
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> disks_;  // uri -> bytes
  std::map<std::string, Pool> pools_;
  std::map<std::string, Replica> replicas_;  // by uuid
  std::map<std::string, Nexus> nexuses_;
  std::map<std::string, std::pair<Status, uint32_t>> fail_next_;  // op -> failure, calls left
};

// Every fake engine of a simulation, so a nexus on one can check that a remote child's
// replica exists and is shared on another. Also an EngineConnector: grpc endpoints
// "fake://<node>" map to the engines.
class FakeCluster final : public EngineConnector {
 public:
  FakeEngine& add(const std::string& node);
  FakeEngine* find(const std::string& node);
  std::shared_ptr<EngineClient> connect(const std::string& node,
                                        const std::string& grpc_endpoint) override;
  // True if the replica exists on a running engine and is reachable as `uri`.
  bool child_reachable(const std::string& uri);
  // The size of the replica a reachable nvmf:// child names; 0 if unreachable.
  uint64_t child_size(const std::string& uri);
  std::vector<std::string> nodes() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<FakeEngine>> engines_;
};

}  // namespace castor::control::sim
