#pragma once
// Where a volume's replicas and nexus go. Pure functions over a view of the cluster, so
// they are unit-tested without engines.
//
// Replicas (place_replicas):
//   node filters: online, not cordoned, in topology.allowed_nodes (if any), carrying
//   every topology.node_labels pair, not already holding a replica of the volume, and a
//   value of each topology.spread_labels key that no other replica's node has;
//   pool filters: online, carrying every topology.pool_labels pair, and room:
//     thick: free >= size;
//     thin:  free >= kThinMinFree and committed + size <= capacity * overcommit%.
//   Order: nodes in topology.preferred_nodes first (in their order), then by score,
//   highest first, then by node and pool name (deterministic):
//     thick: 40 * (1 - replicas_on_node / max) + 60 * free / capacity
//     thin:  25 * (1 - replicas_on_node / max) + 40 * free / capacity
//            + 35 * (1 - committed / (capacity * overcommit%))
//   (Mayastor's weights.) One replica per node: the best pool of each node competes.
// Nexus (choose_nexus_node): the requested node if it is online, not cordoned and not
//   excluded; else the online, uncordoned node with the fewest nexuses, ties to a node
//   holding a current replica of the volume (local reads), then by name.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "control/model.h"

namespace castor::control {

inline constexpr uint64_t kThinMinFree = 16ull << 20;

struct PlacementPolicy {
  uint32_t thin_overcommit_percent = 250;  // committed may reach 2.5x capacity
};

struct PoolCandidate {
  std::string node;
  std::string pool;
  Labels node_labels;
  Labels pool_labels;
  bool usable = true;  // node online and not cordoned, pool online
  uint64_t capacity = 0;
  uint64_t used = 0;
  uint64_t committed = 0;
  uint32_t node_replicas = 0;  // replicas of any volume on the node
};

struct ReplicaPlacementRequest {
  uint64_t size_bytes = 0;
  bool thin = false;
  uint32_t count = 1;
  Topology topology;
  std::set<std::string> exclude_nodes;  // nodes already holding a replica of the volume
  // label key -> values already used by the volume's replicas (for spread_labels)
  std::map<std::string, std::set<std::string>> used_spread_values;
};

// Picks `count` pools on distinct nodes. Errors: NoSpace (not enough nodes/pools with
// room), with a message that says how many qualified and why the others did not.
Result<std::vector<PoolCandidate>> place_replicas(const std::vector<PoolCandidate>& pools,
                                                  const ReplicaPlacementRequest& req,
                                                  const PlacementPolicy& policy = {});

struct NexusCandidate {
  std::string node;
  bool usable = false;  // online and not cordoned
  uint32_t nexuses = 0;
  bool has_replica = false;
};

// Errors: Unavailable (no usable node).
Result<std::string> choose_nexus_node(const std::vector<NexusCandidate>& nodes,
                                      const std::string& requested,
                                      const std::set<std::string>& exclude = {});

}  // namespace castor::control
