#pragma once
// ControlPlane: castor-control's core. It holds the specs (loaded from the Store at start,
// written through to it on every change), the engines' last reported state, and runs the
// reconciler that drives engines toward the specs. The gRPC and REST front doors
// (service.h) translate requests into calls here; nothing else changes cluster state.
//
// Concurrency: API calls arrive on server threads, the reconciler runs on its own
// thread. In-memory state is guarded by one mutex that is never held across an engine
// or store call. Each volume has at most one operation at a time: an API operation
// finding another API operation in flight fails with Aborted ("busy, retry"); one
// finding the reconciler working on the volume waits for it (a reconciler step is
// short).
//
// Crash safety: every operation records itself in the volume's spec (the operation log)
// before it acts, and every resource is recorded in the spec before an engine creates
// it, so after a kill -9 recover_operations() and the reconciler finish or undo what was
// in flight and the garbage collector removes anything an engine has that no spec
// names.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "control/engine_client.h"
#include "control/model.h"
#include "control/placement.h"
#include "control/store/store.h"

namespace castor::control {

struct ControlOptions {
  // Engines heartbeat this often (told in RegisterNodeResponse).
  uint32_t heartbeat_interval_ms = 1000;
  // A node with no heartbeat for this long is probed; not answering, it is Offline.
  uint32_t node_deadline_ms = 5000;
  // The nexus option child_io_timeout_ms of every nexus it creates; 0: the engine's
  // default (10 s).
  uint32_t nexus_child_io_timeout_ms = 0;
  // The nexus option busy_rate_mb_s of every nexus it creates (the rebuild's throttle
  // while the application does I/O); 0: none, rebuilds run at full speed.
  uint32_t rebuild_busy_rate_mb_s = 0;
  // Reconciler pass period (and sooner when an event pokes it).
  uint32_t reconcile_period_ms = 2000;
  // A faulted replica whose node may come back is given this long before it is
  // replaced; a replica found healthy again on its node within it gets a (partial)
  // rebuild instead.
  uint32_t faulted_child_wait_ms = 10000;
  // Replicas and nexuses an engine has but no spec names are destroyed after this long.
  uint32_t gc_grace_ms = 30000;
  // Compact the store's history every this many passes (etcd).
  uint32_t compact_every_passes = 300;
  PlacementPolicy placement;
  std::string identity;  // this process, as shown to others
};

// A volume as the API shows it: the spec plus what the engines report.
struct VolumeView {
  VolumeSpec spec;
  std::string status;        // creating, online, degraded, faulted, deleting
  std::string target_state;  // online, degraded, faulted, missing (node down), ""
  struct ReplicaView {
    std::string uri;
    bool local = false;
    bool rebuilding = false;
    double rebuild_percent = 0;
    uint64_t rebuild_bytes_s = 0;
  };
  std::map<std::string, ReplicaView> replicas;  // by uuid
};

struct NodeView {
  NodeSpec spec;
  NodeState state;
  std::string drain;  // "", draining, drained
  uint32_t replicas = 0;
  uint32_t nexuses = 0;
};

struct PoolView {
  PoolSpec spec;
  std::string status;  // creating, online, unknown, error, deleting
  std::optional<PoolReport> report;
};

struct RegisterRequest {
  std::string name;
  Labels labels;
  std::string grpc_endpoint;
  std::vector<std::string> nvmf_endpoints;
  std::string nbd_endpoint;
  std::string iscsi_endpoint;
  std::string instance_uuid;
  std::string version;
  std::string host_nqn;
  std::vector<PoolReport> pools;
};

struct CreateVolumeArgs {
  std::string uuid;
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t replica_count = 0;
  bool thin = false;
  std::string protocol;
  Topology topology;
  Labels labels;
};

struct PublishArgs {
  std::string uuid;
  std::string node;
  std::vector<std::string> allowed_hosts;
  std::string frontend_node;
};

struct ClusterCounts {
  uint32_t nodes = 0, pools = 0, volumes = 0;
  uint64_t passes = 0;
};

class ControlPlane {
 public:
  // `store` must be open and this process must lead (acquire_leadership) before start().
  ControlPlane(Store& store, EngineConnector& engines, ControlOptions opts);
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Loads every spec, finishes or undoes the operations a crash interrupted, and starts
  // the reconciler thread (unless `run_reconciler` is false: tests call reconcile_once).
  // Errors: the store's, InvalidArgument (a damaged spec document).
  Status start(bool run_reconciler = true);
  void stop();

  // ---- engines ----
  Result<uint32_t> register_node(const RegisterRequest& req);
  Status deregister_node(const std::string& name, const std::string& instance_uuid);
  // `generation`: the writing nexus's (0: not checked); Busy ("stale nexus: ...") when
  // the volume's nexus_generation is higher.
  Status put_nexus_health(const std::string& nexus, const std::string& document, uint64_t generation = 0);
  Result<std::string> get_nexus_health(const std::string& nexus);

  // ---- nodes ----
  std::vector<NodeView> list_nodes();
  Result<NodeView> get_node(const std::string& name);
  Result<NodeView> cordon_node(const std::string& name, bool cordon);
  Result<NodeView> drain_node(const std::string& name);
  Result<NodeView> label_node(const std::string& name, const Labels& changes);

  // ---- pools ----
  Result<PoolView> create_pool(const PoolSpec& spec);
  Status destroy_pool(const std::string& node, const std::string& name);
  std::vector<PoolView> list_pools(const std::string& node);
  Result<PoolView> get_pool(const std::string& node, const std::string& name);

  // ---- volumes ----
  Result<VolumeView> create_volume(const CreateVolumeArgs& args);
  Status destroy_volume(const std::string& uuid);
  // Sorted by uuid. `token` is the uuid to start after ("" = first); Aborted if it is
  // not a token this API could have returned.
  Result<std::pair<std::vector<VolumeView>, std::string>> list_volumes(uint32_t max,
                                                                       const std::string& token);
  Result<VolumeView> get_volume(const std::string& uuid_or_name);
  Result<VolumeView> publish_volume(const PublishArgs& args);
  Result<VolumeView> unpublish_volume(const std::string& uuid);
  Result<VolumeView> resize_volume(const std::string& uuid, uint64_t size_bytes);
  Result<VolumeView> scale_volume(const std::string& uuid, uint32_t replica_count);

  // ---- reconciler ----
  // One pass over everything (the reconciler thread calls it every period). Public for
  // tests and the simulation.
  void reconcile_once();
  // Wakes the reconciler now (after an event: a node registered, a spec changed).
  void poke();
  ClusterCounts counts();
  // A fault-injection seam for crash tests: called with a step name ("create:replicas",
  // "publish:nexus", ...) before each step; if it returns false the operation stops
  // right there as if the process had died: this instance makes no store write and no
  // engine call from then on, so nothing after it runs and nothing is undone.
  void set_crash_point(std::function<bool(const std::string&)> f) { crash_point_ = std::move(f); }

 private:
  enum class Holder { kApi, kReconciler };
  class VolumeLock;
  struct Snapshot {
    std::string instance;  // instance the snapshot was taken of
    int64_t taken_ms = 0;  // steady ms when the read began
    EngineSnapshot data;
    bool ok = false;
  };

  // helpers (control_plane.cc)
  Status load();
  void recover_operations();
  Status persist_volume(VolumeSpec& v);
  Status persist_node(const NodeSpec& n);
  Status erase_volume(const VolumeSpec& v);
  std::shared_ptr<EngineClient> engine(const std::string& node);  // nullptr unless online
  bool node_usable_locked(const std::string& node) const;
  VolumeView view_locked(const VolumeSpec& v) const;
  NodeView node_view_locked(const std::string& name) const;
  PoolView pool_view_locked(const PoolSpec& p) const;
  std::vector<PoolCandidate> pool_candidates_locked() const;
  std::vector<NexusCandidate> nexus_candidates_locked(const VolumeSpec& v) const;
  bool crash(const std::string& point);
  // Moves the per-node counts from `before` (null: a new volume) to `after` (null: gone).
  void account_locked(const VolumeSpec* before, const VolumeSpec* after);
  // Puts `v` in volumes_ (keeping the counts).
  void set_volume_locked(const VolumeSpec& v);
  static uint64_t unix_ms();
  int64_t steady_ms() const;

  // volume operations (volume_ops.cc)
  // `count` new replicas of `v` on nodes without one (a faulted replica's node only when
  // no other fits).
  Result<std::vector<ReplicaSpec>> place(const VolumeSpec& v, uint32_t count);
  // An online node that has missed three heartbeats: probably frozen or cut off. The
  // reconciler sends it nothing (each call would wait a whole request timeout) until the
  // liveness check decides.
  bool suspected_locked(const std::string& node) const;
  Result<std::vector<ReplicaSpec>> place_avoiding(const VolumeSpec& v, uint32_t count, bool avoid_faulted);
  Status create_replicas(VolumeSpec& v, const std::vector<std::string>& uuids);
  Result<std::string> child_uri(const ReplicaSpec& r, const std::string& target_node);
  Status ensure_nexus(VolumeSpec& v);
  // The size of v's nexus in its target node's last snapshot; 0 if not seen. REQUIRES mu_.
  uint64_t nexus_size_locked(const VolumeSpec& v) const;
  Status teardown_nexus(const std::string& node, const std::string& uuid);
  Status destroy_replica(const ReplicaSpec& r);
  Status translate_health(const VolumeSpec& v, const std::string& target_node);
  Result<std::set<std::string>> unhealthy_replicas(const std::string& volume);

  // reconciler (reconciler.cc)
  void run();
  void check_liveness();
  void take_snapshots();
  void reconcile_pools();
  void reconcile_volume(VolumeSpec v);
  void reconcile_target(VolumeSpec& v);
  void collect_garbage();

  Store& store_;
  EngineConnector& engines_;
  const ControlOptions opts_;
  const std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  std::function<bool(const std::string&)> crash_point_;
  // Set when a crash point fires: from then on this instance neither writes the store
  // nor calls engines, as a dead process would not.
  std::atomic<bool> dead_{false};

  mutable std::mutex mu_;
  std::condition_variable busy_cv_;
  std::map<std::string, NodeSpec> nodes_;
  std::map<std::string, NodeState> node_states_;
  std::map<std::string, PoolSpec> pools_;  // by "node/name"
  std::map<std::string, std::string> pool_errors_;
  std::map<std::string, VolumeSpec> volumes_;
  std::map<std::string, Holder> busy_;
  std::map<std::string, Snapshot> snapshots_;  // by node
  std::map<std::string, int64_t> orphans_;     // "node/kind/name" -> first seen (steady ms)
  // Volume uuid -> steady ms of its last spec change: a snapshot read before it cannot
  // show the replicas that change made, so it is no evidence that one is missing.
  std::map<std::string, int64_t> changed_ms_;
  // Replicas and nexus targets per node over every volume spec, kept as specs change
  // (placement reads them for every create and publish).
  std::map<std::string, uint32_t> replicas_on_node_;
  std::map<std::string, uint32_t> nexuses_on_node_;
  uint64_t passes_ = 0;

  std::mutex run_mu_;
  std::condition_variable run_cv_;
  bool poked_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace castor::control
