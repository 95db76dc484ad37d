#include "control/model.h"

#include <nlohmann/json.hpp>

#include "common/json_fields.h"

namespace castor::control {

using nlohmann::json;

const char* node_status_name(NodeStatus s) {
  switch (s) {
    case NodeStatus::kUnknown: return "unknown";
    case NodeStatus::kOnline: return "online";
    case NodeStatus::kOffline: return "offline";
  }
  return "unknown";
}

const char* spec_status_name(SpecStatus s) {
  switch (s) {
    case SpecStatus::kCreating: return "creating";
    case SpecStatus::kCreated: return "created";
    case SpecStatus::kDeleting: return "deleting";
  }
  return "creating";
}

const char* protocol_name(Protocol p) {
  switch (p) {
    case Protocol::kNvmf: return "nvmf";
    case Protocol::kIscsi: return "iscsi";
    case Protocol::kNbd: return "nbd";
  }
  return "nvmf";
}

Result<Protocol> parse_protocol(const std::string& s) {
  if (s.empty() || s == "nvmf") return Protocol::kNvmf;
  if (s == "iscsi") return Protocol::kIscsi;
  if (s == "nbd") return Protocol::kNbd;
  return make_error(Errc::kInvalidArgument, "unknown protocol '{}' (nvmf, iscsi or nbd)", s);
}

const char* replica_state_name(ReplicaState s) {
  switch (s) {
    case ReplicaState::kCreating: return "creating";
    case ReplicaState::kNew: return "new";
    case ReplicaState::kOnline: return "online";
    case ReplicaState::kFaulted: return "faulted";
    case ReplicaState::kRemoving: return "removing";
  }
  return "creating";
}

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::kNone: return "";
    case OpKind::kCreate: return "create";
    case OpKind::kDestroy: return "destroy";
    case OpKind::kPublish: return "publish";
    case OpKind::kUnpublish: return "unpublish";
    case OpKind::kResize: return "resize";
    case OpKind::kScale: return "scale";
  }
  return "";
}

ReplicaSpec* VolumeSpec::find_replica(const std::string& id) {
  for (auto& r : replicas) {
    if (r.uuid == id) return &r;
  }
  return nullptr;
}

uint32_t VolumeSpec::live_replicas() const {
  uint32_t n = 0;
  for (const auto& r : replicas) {
    if (r.state == ReplicaState::kCreating || r.state == ReplicaState::kNew ||
        r.state == ReplicaState::kOnline) {
      ++n;
    }
  }
  return n;
}

uint32_t VolumeSpec::online_replicas() const {
  uint32_t n = 0;
  for (const auto& r : replicas) n += r.state == ReplicaState::kOnline;
  return n;
}

std::string node_key(const std::string& name) { return kNodesPrefix + name; }
std::string pool_key(const std::string& node, const std::string& name) {
  return std::string(kPoolsPrefix) + node + "/" + name;
}
std::string volume_key(const std::string& uuid) { return kVolumesPrefix + uuid; }
std::string health_key(const std::string& nexus) { return kHealthPrefix + nexus; }

// ---------------------------------------------------------------- JSON

namespace {

template <class E, class F>
Result<E> enum_from(const std::string& s, F name_of, std::initializer_list<E> all,
                    const char* what) {
  for (E e : all) {
    if (s == name_of(e)) return e;
  }
  return make_error(Errc::kInvalidArgument, "unknown {} '{}'", what, s);
}

// Runs `f` and turns a JSON type/shape error into InvalidArgument: a document the store
// holds may be damaged or from another version, and must never crash the process.
template <class T, class F>
Result<T> parse_doc(const std::string& text, const char* kind, F&& f) {
  try {
    json j = json::parse(text);
    if (!j.is_object() || j.value("kind", "") != kind) {
      return make_error(Errc::kInvalidArgument, "not a {} document", kind);
    }
    return f(j);
  } catch (const std::exception& e) {
    return make_error(Errc::kInvalidArgument, "bad {} document: {}", kind, e.what());
  }
}

json topology_json(const Topology& t) {
  return json{{"allowed_nodes", t.allowed_nodes},
              {"preferred_nodes", t.preferred_nodes},
              {"node_labels", t.node_labels},
              {"spread_labels", t.spread_labels},
              {"pool_labels", t.pool_labels}};
}

Topology topology_from(const json& j) {
  Topology t;
  t.allowed_nodes = j.value("allowed_nodes", std::vector<std::string>{});
  t.preferred_nodes = j.value("preferred_nodes", std::vector<std::string>{});
  t.node_labels = j.value("node_labels", Labels{});
  t.spread_labels = j.value("spread_labels", std::vector<std::string>{});
  t.pool_labels = j.value("pool_labels", Labels{});
  return t;
}

}  // namespace

std::string to_json(const NodeSpec& s) {
  json j{{"kind", "node"},
         {"name", s.name},
         {"labels", s.labels},
         {"cordoned", s.cordoned},
         {"draining", s.draining},
         {"grpc_endpoint", s.grpc_endpoint},
         {"nvmf_endpoints", s.nvmf_endpoints},
         {"nbd_endpoint", s.nbd_endpoint},
         {"iscsi_endpoint", s.iscsi_endpoint}};
  return j.dump();
}

Result<NodeSpec> node_from_json(const std::string& text) {
  return parse_doc<NodeSpec>(text, "node", [](const json& j) -> Result<NodeSpec> {
    NodeSpec s;
    s.name = j.at("name").get<std::string>();
    s.labels = j.value("labels", Labels{});
    s.cordoned = j.value("cordoned", false);
    s.draining = j.value("draining", false);
    s.grpc_endpoint = j.value("grpc_endpoint", "");
    s.nvmf_endpoints = j.value("nvmf_endpoints", std::vector<std::string>{});
    s.nbd_endpoint = j.value("nbd_endpoint", "");
    s.iscsi_endpoint = j.value("iscsi_endpoint", "");
    return s;
  });
}

std::string to_json(const PoolSpec& s) {
  json j{{"kind", "pool"},
         {"node", s.node},
         {"name", s.name},
         {"disks", s.disks},
         {"labels", s.labels},
         {"cluster_size", s.cluster_size},
         {"status", spec_status_name(s.status)}};
  return j.dump();
}

Result<PoolSpec> pool_from_json(const std::string& text) {
  return parse_doc<PoolSpec>(text, "pool", [](const json& j) -> Result<PoolSpec> {
    PoolSpec s;
    s.node = j.at("node").get<std::string>();
    s.name = j.at("name").get<std::string>();
    s.disks = j.value("disks", std::vector<std::string>{});
    s.labels = j.value("labels", Labels{});
    s.cluster_size = uint_field<uint64_t>(j, "cluster_size", 0);
    auto st = enum_from<SpecStatus>(j.value("status", ""), spec_status_name,
                                    {SpecStatus::kCreating, SpecStatus::kCreated,
                                     SpecStatus::kDeleting},
                                    "pool status");
    if (!st) return st.status();
    s.status = *st;
    return s;
  });
}

std::string to_json(const VolumeSpec& s) {
  json replicas = json::array();
  for (const auto& r : s.replicas) {
    replicas.push_back(json{{"uuid", r.uuid},
                            {"node", r.node},
                            {"pool", r.pool},
                            {"state", replica_state_name(r.state)},
                            {"reason", r.reason},
                            {"faulted_unix_ms", r.faulted_unix_ms}});
  }
  json j{{"kind", "volume"},
         {"uuid", s.uuid},
         {"name", s.name},
         {"size_bytes", s.size_bytes},
         {"replica_count", s.replica_count},
         {"thin", s.thin},
         {"protocol", protocol_name(s.protocol)},
         {"topology", topology_json(s.topology)},
         {"labels", s.labels},
         {"status", spec_status_name(s.status)},
         {"replicas", replicas},
         {"operation", json{{"kind", op_name(s.op.kind)}, {"started_unix_ms", s.op.started_unix_ms}}},
         {"generation", s.generation},
         {"nexus_generation", s.nexus_generation}};
  if (s.target) {
    j["target"] = json{{"node", s.target->node},
                       {"allowed_hosts", s.target->allowed_hosts},
                       {"frontend_node", s.target->frontend_node},
                       {"uri", s.target->uri}};
  }
  return j.dump();
}

Result<VolumeSpec> volume_from_json(const std::string& text) {
  return parse_doc<VolumeSpec>(text, "volume", [](const json& j) -> Result<VolumeSpec> {
    VolumeSpec s;
    s.uuid = j.at("uuid").get<std::string>();
    s.name = j.value("name", "");
    s.size_bytes = uint_field<uint64_t>(j, "size_bytes");
    s.replica_count = uint_field<uint32_t>(j, "replica_count");
    s.thin = j.value("thin", false);
    auto proto = parse_protocol(j.value("protocol", "nvmf"));
    if (!proto) return proto.status();
    s.protocol = *proto;
    if (j.contains("topology")) s.topology = topology_from(j.at("topology"));
    s.labels = j.value("labels", Labels{});
    auto st = enum_from<SpecStatus>(j.value("status", ""), spec_status_name,
                                    {SpecStatus::kCreating, SpecStatus::kCreated,
                                     SpecStatus::kDeleting},
                                    "volume status");
    if (!st) return st.status();
    s.status = *st;
    for (const auto& rj : j.value("replicas", json::array())) {
      ReplicaSpec r;
      r.uuid = rj.at("uuid").get<std::string>();
      r.node = rj.at("node").get<std::string>();
      r.pool = rj.at("pool").get<std::string>();
      auto state = enum_from<ReplicaState>(
          rj.value("state", ""), replica_state_name,
          {ReplicaState::kCreating, ReplicaState::kNew, ReplicaState::kOnline,
           ReplicaState::kFaulted, ReplicaState::kRemoving},
          "replica state");
      if (!state) return state.status();
      r.state = *state;
      r.reason = rj.value("reason", "");
      r.faulted_unix_ms = uint_field<uint64_t>(rj, "faulted_unix_ms", 0);
      s.replicas.push_back(std::move(r));
    }
    if (j.contains("target")) {
      const auto& t = j.at("target");
      TargetSpec ts;
      ts.node = t.at("node").get<std::string>();
      ts.allowed_hosts = t.value("allowed_hosts", std::vector<std::string>{});
      ts.frontend_node = t.value("frontend_node", "");
      ts.uri = t.value("uri", "");
      s.target = std::move(ts);
    }
    if (j.contains("operation")) {
      const auto& o = j.at("operation");
      auto k = enum_from<OpKind>(o.value("kind", ""), op_name,
                                 {OpKind::kNone, OpKind::kCreate, OpKind::kDestroy,
                                  OpKind::kPublish, OpKind::kUnpublish, OpKind::kResize,
                                  OpKind::kScale},
                                 "operation");
      if (!k) return k.status();
      s.op.kind = *k;
      s.op.started_unix_ms = uint_field<uint64_t>(o, "started_unix_ms", 0);
    }
    s.generation = uint_field<uint64_t>(j, "generation", 0);
    s.nexus_generation = uint_field<uint64_t>(j, "nexus_generation", 0);
    return s;
  });
}

// ---------------------------------------------------------------- names

bool valid_object_name(const std::string& s, size_t max_len) {
  if (s.empty() || s.size() > max_len || s[0] == '.' || s[0] == '-') return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Status validate_labels(const Labels& labels, bool allow_empty_values) {
  for (const auto& [k, v] : labels) {
    bool key_ok = !k.empty() && k.size() <= 63;
    for (char c : k) {
      key_ok = key_ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '/');
    }
    if (!key_ok) {
      return make_error(Errc::kInvalidArgument,
                        "bad label key '{}' ([A-Za-z0-9._/-], 1 to 63 bytes)", k);
    }
    if ((v.empty() && !allow_empty_values) || v.size() > 63) {
      return make_error(Errc::kInvalidArgument, "bad value for label '{}' (1 to 63 bytes)", k);
    }
    for (char c : v) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return make_error(Errc::kInvalidArgument, "label '{}' has a control character", k);
      }
    }
  }
  return Status::ok();
}

std::string replica_nqn(const std::string& replica_uuid) {
  return std::string(kNqnPrefix) + "replica-" + replica_uuid;
}

std::string nexus_nqn(const std::string& volume_uuid) {
  return std::string(kNqnPrefix) + "nexus-" + volume_uuid;
}

std::optional<std::string> replica_of_child_uri(const std::string& uri) {
  static const std::string kBdev = "bdev:///";
  if (uri.rfind(kBdev, 0) == 0) return uri.substr(kBdev.size());
  static const std::string kTag = std::string(kNqnPrefix) + "replica-";
  auto pos = uri.find(kTag);
  if (uri.rfind("nvmf://", 0) == 0 && pos != std::string::npos) {
    std::string id = uri.substr(pos + kTag.size());
    auto q = id.find('?');
    if (q != std::string::npos) id.resize(q);
    return id;
  }
  return std::nullopt;
}

}  // namespace castor::control
