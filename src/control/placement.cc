#include "control/placement.h"

#include <algorithm>
#include <map>

namespace castor::control {

namespace {

bool labels_match(const Labels& have, const Labels& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

double score(const PoolCandidate& p, bool thin, uint32_t max_replicas, uint32_t overcommit) {
  const double cap = p.capacity ? static_cast<double>(p.capacity) : 1.0;
  const double free = p.capacity > p.used ? static_cast<double>(p.capacity - p.used) : 0.0;
  const double count = max_replicas ? 1.0 - static_cast<double>(p.node_replicas) / max_replicas
                                    : 1.0;
  if (!thin) return 40 * count + 60 * free / cap;
  const double limit = cap * overcommit / 100.0;
  const double commit = std::min(1.0, static_cast<double>(p.committed) / limit);
  return 25 * count + 40 * free / cap + 35 * (1.0 - commit);
}

}  // namespace

Result<std::vector<PoolCandidate>> place_replicas(const std::vector<PoolCandidate>& pools,
                                                  const ReplicaPlacementRequest& req,
                                                  const PlacementPolicy& policy) {
  const auto& topo = req.topology;
  size_t not_usable = 0, filtered = 0, no_room = 0;
  std::vector<const PoolCandidate*> fit;
  uint32_t max_replicas = 0;
  for (const auto& p : pools) max_replicas = std::max(max_replicas, p.node_replicas);
  for (const auto& p : pools) {
    if (!p.usable) {
      ++not_usable;
      continue;
    }
    if (req.exclude_nodes.count(p.node) ||
        (!topo.allowed_nodes.empty() &&
         std::find(topo.allowed_nodes.begin(), topo.allowed_nodes.end(), p.node) ==
             topo.allowed_nodes.end()) ||
        !labels_match(p.node_labels, topo.node_labels) ||
        !labels_match(p.pool_labels, topo.pool_labels)) {
      ++filtered;
      continue;
    }
    bool spread_ok = true;
    for (const auto& key : topo.spread_labels) {
      auto it = p.node_labels.find(key);
      if (it == p.node_labels.end()) {
        spread_ok = false;  // a node without the key cannot prove it is elsewhere
        break;
      }
      auto used = req.used_spread_values.find(key);
      if (used != req.used_spread_values.end() && used->second.count(it->second)) {
        spread_ok = false;
        break;
      }
    }
    if (!spread_ok) {
      ++filtered;
      continue;
    }
    const uint64_t free = p.capacity > p.used ? p.capacity - p.used : 0;
    bool room = req.thin ? (free >= kThinMinFree &&
                            static_cast<double>(p.committed + req.size_bytes) <=
                                static_cast<double>(p.capacity) *
                                    policy.thin_overcommit_percent / 100.0)
                         : free >= req.size_bytes;
    if (!room) {
      ++no_room;
      continue;
    }
    fit.push_back(&p);
  }

  auto preferred_rank = [&](const std::string& node) -> size_t {
    auto it = std::find(topo.preferred_nodes.begin(), topo.preferred_nodes.end(), node);
    return it == topo.preferred_nodes.end() ? topo.preferred_nodes.size()
                                            : static_cast<size_t>(it - topo.preferred_nodes.begin());
  };
  std::vector<std::pair<double, const PoolCandidate*>> ranked;
  for (const auto* p : fit) {
    ranked.emplace_back(score(*p, req.thin, max_replicas, policy.thin_overcommit_percent), p);
  }
  std::sort(ranked.begin(), ranked.end(), [&](const auto& a, const auto& b) {
    size_t ra = preferred_rank(a.second->node), rb = preferred_rank(b.second->node);
    if (ra != rb) return ra < rb;
    if (a.first != b.first) return a.first > b.first;
    if (a.second->node != b.second->node) return a.second->node < b.second->node;
    return a.second->pool < b.second->pool;
  });

  std::vector<PoolCandidate> chosen;
  std::set<std::string> nodes = req.exclude_nodes;
  auto spread_used = req.used_spread_values;
  for (const auto& [s, p] : ranked) {
    if (chosen.size() == req.count) break;
    if (nodes.count(p->node)) continue;
    bool clash = false;
    for (const auto& key : topo.spread_labels) {
      if (spread_used[key].count(p->node_labels.at(key))) clash = true;
    }
    if (clash) continue;
    nodes.insert(p->node);
    for (const auto& key : topo.spread_labels) spread_used[key].insert(p->node_labels.at(key));
    chosen.push_back(*p);
  }
  if (chosen.size() < req.count) {
    return make_error(Errc::kNoSpace,
                      "cannot place {} replica(s) of {} bytes on distinct nodes: {} placeable "
                      "({} pool(s) on nodes offline/cordoned or not online, {} excluded by "
                      "topology or already holding a replica, {} without room)",
                      req.count, req.size_bytes, chosen.size(), not_usable, filtered, no_room);
  }
  return chosen;
}

Result<std::string> choose_nexus_node(const std::vector<NexusCandidate>& nodes,
                                      const std::string& requested,
                                      const std::set<std::string>& exclude) {
  if (!requested.empty() && !exclude.count(requested)) {
    for (const auto& n : nodes) {
      if (n.node == requested && n.usable) return n.node;
    }
  }
  const NexusCandidate* best = nullptr;
  for (const auto& n : nodes) {
    if (!n.usable || exclude.count(n.node)) continue;
    if (!best || n.nexuses < best->nexuses ||
        (n.nexuses == best->nexuses && n.has_replica && !best->has_replica) ||
        (n.nexuses == best->nexuses && n.has_replica == best->has_replica && n.node < best->node)) {
      best = &n;
    }
  }
  if (!best) return make_error(Errc::kUnavailable, "no online, uncordoned node for the nexus");
  return best->node;
}

}  // namespace castor::control
