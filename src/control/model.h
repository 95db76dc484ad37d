#pragma once
// The control plane's data model: specs (what users asked for; persisted in the Store as
// JSON, one key per object) and states (what engines report; in memory only, rebuilt
// from heartbeats and polling after a restart).
//
// Key layout (below the store's own prefix):
//   nodes/<node>             NodeSpec
//   pools/<node>/<pool>      PoolSpec
//   volumes/<uuid>           VolumeSpec, with its replicas, target and operation record
//   health/<nexus>           the nexus child-health document (castor-nexus-health JSON)
//
// A volume's replicas live inside its spec, so every change to a volume (a replica
// placed, faulted, replaced; the target moved; an operation begun or ended) is one
// atomic write of one key.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace castor::control {

using Labels = std::map<std::string, std::string>;

inline constexpr uint32_t kMaxReplicas = 8;  // the nexus's child limit
inline constexpr const char* kNqnPrefix = "nqn.2026-11.io.castor:";

// ---------------------------------------------------------------- nodes

enum class NodeStatus { kUnknown, kOnline, kOffline };
const char* node_status_name(NodeStatus s);

struct NodeSpec {
  std::string name;
  Labels labels;
  bool cordoned = false;
  bool draining = false;  // move every nexus off, then report drained
  // Last registered endpoints, kept so a restarted castor-control can reach the engine
  // before its next heartbeat.
  std::string grpc_endpoint;
  std::vector<std::string> nvmf_endpoints;
  std::string nbd_endpoint;
  std::string iscsi_endpoint;
};

struct PoolReport {
  std::string name;
  std::string uuid;
  std::vector<std::string> disks;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t committed_bytes = 0;
  uint32_t replicas = 0;
};

// What a node's engine reported last (memory only).
struct NodeState {
  NodeStatus status = NodeStatus::kUnknown;
  std::string instance_uuid;
  std::string version;
  std::string host_nqn;
  int64_t last_seen_ms = 0;        // steady clock
  uint64_t last_seen_unix_ms = 0;  // wall clock, for display
  std::vector<PoolReport> pools;
  // The engine instance the reconciler last brought up to date; differs from
  // instance_uuid after an engine restart until the reconciler has re-created what the
  // specs place there.
  std::string reconciled_instance;
};

// ---------------------------------------------------------------- pools

enum class SpecStatus { kCreating, kCreated, kDeleting };
const char* spec_status_name(SpecStatus s);

struct PoolSpec {
  std::string node;
  std::string name;
  std::vector<std::string> disks;
  Labels labels;
  uint64_t cluster_size = 0;
  SpecStatus status = SpecStatus::kCreating;
  std::string error;  // last create/import failure, for display (not persisted)
};

// ---------------------------------------------------------------- volumes

enum class Protocol { kNvmf, kIscsi, kNbd };
const char* protocol_name(Protocol p);
Result<Protocol> parse_protocol(const std::string& s);

struct Topology {
  std::vector<std::string> allowed_nodes;
  std::vector<std::string> preferred_nodes;
  Labels node_labels;
  std::vector<std::string> spread_labels;
  Labels pool_labels;
  bool operator==(const Topology&) const = default;
};

// A replica's life, as the control plane sees it.
enum class ReplicaState {
  kCreating,  // recorded before the engine call; may or may not exist yet
  kNew,       // exists; not yet in sync (not yet added to the nexus, or rebuilding)
  kOnline,    // a current member: holds every acknowledged write
  kFaulted,   // stale: to be brought back (partial rebuild) or replaced
  kRemoving,  // to be removed from the nexus and destroyed
};
const char* replica_state_name(ReplicaState s);

struct ReplicaSpec {
  std::string uuid;  // also its name on the engine
  std::string node;
  std::string pool;
  ReplicaState state = ReplicaState::kCreating;
  std::string reason;           // why faulted/removing
  uint64_t faulted_unix_ms = 0; // when it was found faulted
};

struct TargetSpec {
  std::string node;
  std::vector<std::string> allowed_hosts;
  std::string frontend_node;
  std::string uri;  // as last published; empty until the nexus is published
};

enum class OpKind { kNone, kCreate, kDestroy, kPublish, kUnpublish, kResize, kScale };
const char* op_name(OpKind k);

// The operation log entry: written before an operation acts, cleared when it ends.
// After a crash of castor-control, recover_operation() decides how to finish or undo.
struct OperationRecord {
  OpKind kind = OpKind::kNone;
  uint64_t started_unix_ms = 0;
};

struct VolumeSpec {
  std::string uuid;
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t replica_count = 1;
  bool thin = false;
  Protocol protocol = Protocol::kNvmf;
  Topology topology;
  Labels labels;
  SpecStatus status = SpecStatus::kCreating;
  std::vector<ReplicaSpec> replicas;
  std::optional<TargetSpec> target;
  OperationRecord op;
  uint64_t generation = 0;
  // Fencing: the generation of the volume's latest nexus, one higher for each nexus
  // castor-control creates (persisted before the create), never reset (an unpublished
  // volume's old nexus may still be running somewhere). A nexus preempts the
  // reservations of lower generations on its replicas.
  uint64_t nexus_generation = 0;

  ReplicaSpec* find_replica(const std::string& uuid);
  // Replicas counted toward replica_count: creating, new or online.
  uint32_t live_replicas() const;
  uint32_t online_replicas() const;
};

// ---------------------------------------------------------------- keys and JSON

std::string node_key(const std::string& name);
std::string pool_key(const std::string& node, const std::string& name);
std::string volume_key(const std::string& uuid);
std::string health_key(const std::string& nexus);
inline constexpr const char* kNodesPrefix = "nodes/";
inline constexpr const char* kPoolsPrefix = "pools/";
inline constexpr const char* kVolumesPrefix = "volumes/";
inline constexpr const char* kHealthPrefix = "health/";

std::string to_json(const NodeSpec& s);
std::string to_json(const PoolSpec& s);
std::string to_json(const VolumeSpec& s);
// Errors: InvalidArgument (not the expected document).
Result<NodeSpec> node_from_json(const std::string& text);
Result<PoolSpec> pool_from_json(const std::string& text);
Result<VolumeSpec> volume_from_json(const std::string& text);

// ---------------------------------------------------------------- names

// Node and pool names: [A-Za-z0-9._-], 1..63 bytes, not starting with '.' or '-'.
bool valid_object_name(const std::string& s, size_t max_len = 63);
// Label keys: [A-Za-z0-9._/-], 1..63 bytes; values: printable, at most 63 bytes.
Status validate_labels(const Labels& labels, bool allow_empty_values = false);

// The NQN of a replica's share and of a volume's nexus (nexus uuid = volume uuid).
std::string replica_nqn(const std::string& replica_uuid);
std::string nexus_nqn(const std::string& volume_uuid);
// The replica uuid a child URI names: bdev:///<uuid> or nvmf://.../<replica nqn>.
std::optional<std::string> replica_of_child_uri(const std::string& uri);

}  // namespace castor::control
