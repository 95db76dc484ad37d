#pragma once
// How castor-control talks to one castor-engine: the subset of the engine's management
// API the control plane uses, in the control plane's own terms. Two implementations:
// GrpcEngineClient (the real engine's EngineService) and sim::FakeEngine (in-process,
// for unit tests and the scale simulation).
//
// Contract of every call: synchronous, bounded by the client's request timeout, no side
// effect on failure unless the engine's own call has one. Errors: Unavailable (the
// engine cannot be reached or timed out), and the engine's errors mapped to Errc
// (NotFound, AlreadyExists, Busy for FAILED_PRECONDITION, NoSpace, InvalidArgument).
// Idempotence is the caller's business: e.g. create_replica on an existing replica is
// AlreadyExists, which the reconciler treats as done.
//
// Thread-safety: a client may be used from several threads at once.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "control/model.h"

namespace castor::control {

struct EngineReplica {
  std::string name;  // == uuid for replicas the control plane made
  std::string uuid;
  std::string pool;
  uint64_t size_bytes = 0;
  bool thin = false;
  bool shared = false;  // has an NVMe-oF subsystem
  std::string share_uri;  // nvmf://HOST:PORT/NQN when shared
};

struct EngineChild {
  std::string uri;
  std::string state;   // healthy, out_of_sync, faulted, offline
  std::string reason;  // fault reason
  bool rebuilding = false;
  double rebuild_percent = 0;
  uint64_t rebuild_bytes_s = 0;
  std::string rebuild_state;  // running, paused, stopped, completed, failed; "" if never
};

struct EngineNexus {
  std::string name;
  std::string uuid;
  uint64_t size_bytes = 0;
  std::string state;  // online, degraded, faulted, fenced
  uint64_t generation = 0;
  std::vector<std::string> uris;  // where it is published
  std::vector<EngineChild> children;
};

// Everything the reconciler needs to know about one engine, read in one go.
struct EngineSnapshot {
  std::vector<PoolReport> pools;
  std::vector<EngineReplica> replicas;
  std::vector<EngineNexus> nexuses;
};

class EngineClient {
 public:
  virtual ~EngineClient() = default;

  // The engine answers (liveness probe). Returns its version.
  virtual Result<std::string> ping() = 0;
  virtual Result<EngineSnapshot> snapshot() = 0;

  virtual Result<PoolReport> create_pool(const std::string& name,
                                         const std::vector<std::string>& disks,
                                         uint64_t cluster_size) = 0;
  virtual Result<PoolReport> import_pool(const std::vector<std::string>& disks) = 0;
  virtual Status destroy_pool(const std::string& name) = 0;

  // The replica's engine name and uuid are both `uuid`.
  virtual Status create_replica(const std::string& pool, const std::string& uuid,
                                uint64_t size_bytes, bool thin) = 0;
  virtual Status destroy_replica(const std::string& uuid) = 0;
  virtual Status grow_replica(const std::string& uuid, uint64_t size_bytes) = 0;
  // Shares over NVMe-oF (any host); returns the nvmf:// URI. Sharing a shared replica
  // returns its URI.
  virtual Result<std::string> share_replica(const std::string& uuid) = 0;
  // Removes the share, disconnecting hosts. NotFound when not shared.
  virtual Status unshare_replica(const std::string& uuid) = 0;

  // Creates nexus `name` with nexus uuid `uuid` (so its NVMe-oF subsystem NQN is the
  // same wherever it is re-created) and nexus `options` (NexusOptions keys; castor-control
  // always sets "generation", with which the nexus preempts the reservations of older
  // nexuses on its remote children).
  virtual Result<EngineNexus> create_nexus(const std::string& name, const std::string& uuid,
                                           uint64_t size_bytes,
                                           const std::vector<std::string>& children,
                                           const std::map<std::string, std::string>& options) = 0;
  // Sets the ANA state of the published nexus's NVMe-oF subsystem (optimized,
  // inaccessible, ...). NotFound when not published over NVMe-oF.
  virtual Status set_nexus_ana_state(const std::string& name, const std::string& state) = 0;
  virtual Status destroy_nexus(const std::string& name) = 0;
  virtual Status add_child(const std::string& nexus, const std::string& uri) = 0;
  virtual Status remove_child(const std::string& nexus, const std::string& uri) = 0;
  virtual Status online_child(const std::string& nexus, const std::string& uri) = 0;
  // Faults a child (the nexus records it stale and stops using it).
  virtual Status fault_child(const std::string& nexus, const std::string& uri) = 0;
  // Publishes over `protocol`; returns the first URI. Publishing again with the same
  // protocol returns the existing URI.
  virtual Result<std::string> publish_nexus(const std::string& name, Protocol protocol,
                                            const std::vector<std::string>& allowed_hosts) = 0;
  // NotFound when not published.
  virtual Status unpublish_nexus(const std::string& name) = 0;
  // Grows the nexus while it serves I/O (ResizeNexus); its hosts are told. Busy when a
  // child is smaller than `size_bytes` or the nexus is published over NBD;
  // InvalidArgument when smaller than now. The same size is a no-op.
  virtual Result<EngineNexus> resize_nexus(const std::string& name, uint64_t size_bytes) = 0;
};

// Finds the client for a node's engine (cached per endpoint).
class EngineConnector {
 public:
  virtual ~EngineConnector() = default;
  // `grpc_endpoint` is HOST:PORT as the engine registered it.
  virtual std::shared_ptr<EngineClient> connect(const std::string& node,
                                                const std::string& grpc_endpoint) = 0;
};

// Real engines over gRPC, each call with `request_timeout_ms` as its deadline.
std::unique_ptr<EngineConnector> make_grpc_connector(uint32_t request_timeout_ms);

}  // namespace castor::control
