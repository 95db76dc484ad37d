// GrpcEngineClient: EngineClient over castor-engine's gRPC EngineService.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <mutex>

#include "castor/v1/engine.grpc.pb.h"
#include "common/grpc_codes.h"
#include "control/engine_client.h"

namespace castor::control {
namespace {

namespace v1 = castor::v1;

PoolReport pool_of(const v1::PoolInfo& p) {
  PoolReport r;
  r.name = p.name();
  r.uuid = p.uuid();
  r.disks.assign(p.disks().begin(), p.disks().end());
  r.capacity_bytes = p.capacity_bytes();
  r.used_bytes = p.used_bytes();
  r.committed_bytes = p.committed_bytes();
  r.replicas = p.replicas();
  return r;
}

EngineNexus nexus_of(const v1::NexusInfo& n) {
  EngineNexus e;
  e.name = n.name();
  e.uuid = n.uuid();
  e.size_bytes = n.size_bytes();
  e.state = n.state();
  e.generation = n.generation();
  e.uris.assign(n.uris().begin(), n.uris().end());
  for (const auto& c : n.children()) {
    EngineChild ec;
    ec.uri = c.uri();
    ec.state = c.state();
    ec.reason = c.fault_reason();
    if (c.has_rebuild()) {
      ec.rebuild_state = c.rebuild().state();
      ec.rebuilding = c.rebuild().state() == "running" || c.rebuild().state() == "paused";
      ec.rebuild_percent = c.rebuild().percent();
      ec.rebuild_bytes_s = c.rebuild().rate_bytes_s();
    }
    e.children.push_back(std::move(ec));
  }
  return e;
}

class GrpcEngineClient final : public EngineClient {
 public:
  GrpcEngineClient(std::string endpoint, uint32_t timeout_ms)
      : endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms) {
    grpc::ChannelArguments args;
    // Fail fast while an engine is down instead of waiting for the reconnect back-off.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    auto channel =
        grpc::CreateCustomChannel(endpoint_, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::EngineService::NewStub(channel);
  }

  Result<std::string> ping() override {
    // A live engine answers at once; a frozen or partitioned one must not hold the
    // liveness check for a whole request timeout.
    v1::EngineInfo info;
    if (Status s = call(&Stub::GetEngineInfo, v1::GetEngineInfoRequest{}, &info, std::min(timeout_ms_, kPingTimeoutMs));
        !s) {
      return s;
    }
    return info.version();
  }

  Result<EngineSnapshot> snapshot() override {
    EngineSnapshot snap;
    v1::ListPoolsResponse pools;
    if (Status s = call(&Stub::ListPools, v1::ListPoolsRequest{}, &pools); !s) return s;
    for (const auto& p : pools.pools()) snap.pools.push_back(pool_of(p));
    v1::ListSubsystemsResponse subs;
    if (Status s = call(&Stub::ListSubsystems, v1::ListSubsystemsRequest{}, &subs); !s) return s;
    std::map<std::string, std::string> share_uri;  // NQN -> first nvmf URI
    for (const auto& sub : subs.subsystems()) {
      share_uri[sub.nqn()] = sub.uris().empty() ? std::string() : sub.uris(0);
    }
    v1::ListReplicasResponse reps;
    if (Status s = call(&Stub::ListReplicas, v1::ListReplicasRequest{}, &reps); !s) return s;
    for (const auto& r : reps.replicas()) {
      EngineReplica er{.name = r.name(),
                       .uuid = r.uuid(),
                       .pool = r.pool(),
                       .size_bytes = r.size_bytes(),
                       .thin = r.thin(),
                       .shared = false,
                       .share_uri = {}};
      if (auto it = share_uri.find(replica_nqn(r.uuid())); it != share_uri.end()) {
        er.shared = true;
        er.share_uri = it->second;
      }
      snap.replicas.push_back(std::move(er));
    }
    v1::ListNexusesResponse nexuses;
    if (Status s = call(&Stub::ListNexuses, v1::ListNexusesRequest{}, &nexuses); !s) return s;
    for (const auto& n : nexuses.nexuses()) snap.nexuses.push_back(nexus_of(n));
    return snap;
  }

  Result<PoolReport> create_pool(const std::string& name, const std::vector<std::string>& disks,
                                 uint64_t cluster_size) override {
    v1::CreatePoolRequest req;
    req.set_name(name);
    for (const auto& d : disks) req.add_disks(d);
    req.set_cluster_size(cluster_size);
    v1::PoolInfo info;
    if (Status s = call(&Stub::CreatePool, req, &info); !s) return s;
    return pool_of(info);
  }

  Result<PoolReport> import_pool(const std::vector<std::string>& disks) override {
    v1::ImportPoolRequest req;
    for (const auto& d : disks) req.add_disks(d);
    v1::PoolInfo info;
    if (Status s = call(&Stub::ImportPool, req, &info); !s) return s;
    return pool_of(info);
  }

  Status destroy_pool(const std::string& name) override {
    v1::DestroyPoolRequest req;
    req.set_name(name);
    v1::DestroyPoolResponse resp;
    return call(&Stub::DestroyPool, req, &resp);
  }

  Status create_replica(const std::string& pool, const std::string& uuid, uint64_t size_bytes,
                        bool thin) override {
    v1::CreateReplicaRequest req;
    req.set_pool(pool);
    req.set_name(uuid);
    req.set_uuid(uuid);
    req.set_size_bytes(size_bytes);
    req.set_thin(thin);
    v1::ReplicaInfo info;
    return call(&Stub::CreateReplica, req, &info);
  }

  Status destroy_replica(const std::string& uuid) override {
    v1::DestroyReplicaRequest req;
    req.set_name(uuid);
    v1::DestroyReplicaResponse resp;
    return call(&Stub::DestroyReplica, req, &resp);
  }

  Status grow_replica(const std::string& uuid, uint64_t size_bytes) override {
    v1::GrowReplicaRequest req;
    req.set_name(uuid);
    req.set_size_bytes(size_bytes);
    v1::ReplicaInfo info;
    return call(&Stub::GrowReplica, req, &info);
  }

  Result<std::string> share_replica(const std::string& uuid) override {
    v1::ShareReplicaRequest req;
    req.set_name(uuid);
    v1::ShareInfo info;
    if (Status s = call(&Stub::ShareReplica, req, &info); !s) return s;
    for (const auto& u : info.uris()) {
      if (u.rfind("nvmf://", 0) == 0) return u;
    }
    return make_error(Errc::kBusy, "engine at {} has no NVMe-oF listener to share replica {}",
                      endpoint_, uuid);
  }

  Status unshare_replica(const std::string& uuid) override {
    v1::UnshareReplicaRequest req;
    req.set_name(uuid);
    req.set_force(true);
    v1::UnshareBdevResponse resp;
    return call(&Stub::UnshareReplica, req, &resp);
  }

  Result<EngineNexus> create_nexus(const std::string& name, const std::string& uuid,
                                   uint64_t size_bytes, const std::vector<std::string>& children,
                                   const std::map<std::string, std::string>& options) override {
    v1::CreateNexusRequest req;
    req.set_name(name);
    req.set_uuid(uuid);
    req.set_size_bytes(size_bytes);
    for (const auto& c : children) req.add_children(c);
    req.mutable_options()->insert(options.begin(), options.end());
    v1::NexusInfo info;
    if (Status s = call(&Stub::CreateNexus, req, &info); !s) return s;
    return nexus_of(info);
  }

  Status destroy_nexus(const std::string& name) override {
    v1::DestroyNexusRequest req;
    req.set_name(name);
    v1::DestroyNexusResponse resp;
    return call(&Stub::DestroyNexus, req, &resp);
  }

  Status add_child(const std::string& nexus, const std::string& uri) override {
    v1::AddChildRequest req;
    req.set_nexus(nexus);
    req.set_uri(uri);
    v1::NexusInfo info;
    return call(&Stub::AddChild, req, &info);
  }

  Status remove_child(const std::string& nexus, const std::string& uri) override {
    return child_call(&Stub::RemoveChild, nexus, uri);
  }

  Status online_child(const std::string& nexus, const std::string& uri) override {
    return child_call(&Stub::OnlineChild, nexus, uri);
  }

  Status fault_child(const std::string& nexus, const std::string& uri) override {
    return child_call(&Stub::FaultChild, nexus, uri);
  }

  Result<std::string> publish_nexus(const std::string& name, Protocol protocol,
                                    const std::vector<std::string>& allowed_hosts) override {
    v1::PublishNexusRequest req;
    req.set_name(name);
    req.set_protocol(protocol_name(protocol));
    for (const auto& h : allowed_hosts) {
      if (protocol == Protocol::kIscsi) {
        req.add_allowed_initiators(h);
      } else if (protocol == Protocol::kNvmf) {
        req.add_allowed_hosts(h);
      }
    }
    v1::PublishNexusResponse resp;
    if (Status s = call(&Stub::PublishNexus, req, &resp); !s) return s;
    return resp.uri();
  }

  Result<EngineNexus> resize_nexus(const std::string& name, uint64_t size_bytes) override {
    v1::ResizeNexusRequest req;
    req.set_name(name);
    req.set_size_bytes(size_bytes);
    v1::NexusInfo info;
    if (Status s = call(&Stub::ResizeNexus, req, &info); !s) return s;
    return nexus_of(info);
  }

  Status set_nexus_ana_state(const std::string& name, const std::string& state) override {
    v1::SetNexusAnaStateRequest req;
    req.set_name(name);
    req.set_state(state);
    v1::NexusInfo info;
    return call(&Stub::SetNexusAnaState, req, &info);
  }

  Status unpublish_nexus(const std::string& name) override {
    v1::UnpublishNexusRequest req;
    req.set_name(name);
    // The control plane unpublishes to serve the volume elsewhere or not at all (unpublish,
    // drain, move, destroy): hosts still connected are disconnected.
    req.set_force(true);
    v1::UnpublishNexusResponse resp;
    return call(&Stub::UnpublishNexus, req, &resp);
  }

 private:
  using Stub = v1::EngineService::Stub;

  static constexpr uint32_t kPingTimeoutMs = 2000;

  template <class Req, class Resp>
  Status call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
              const Req& req, Resp* resp, uint32_t timeout_ms = 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(timeout_ms ? timeout_ms : timeout_ms_));
    grpc::Status st = ((*stub_).*method)(&ctx, req, resp);
    if (st.ok()) return Status::ok();
    Errc code = errc_of(st.error_code());
    if (code == Errc::kUnavailable) {
      return make_error(code, "engine at {} unavailable: {}", endpoint_, st.error_message());
    }
    return Status(code, st.error_message());
  }

  Status child_call(grpc::Status (Stub::*method)(grpc::ClientContext*, const v1::ChildRequest&,
                                                 v1::NexusInfo*),
                    const std::string& nexus, const std::string& uri) {
    v1::ChildRequest req;
    req.set_nexus(nexus);
    req.set_uri(uri);
    v1::NexusInfo info;
    return call(method, req, &info);
  }

  std::string endpoint_;
  uint32_t timeout_ms_;
  std::unique_ptr<Stub> stub_;
};

class GrpcConnector final : public EngineConnector {
 public:
  explicit GrpcConnector(uint32_t timeout_ms) : timeout_ms_(timeout_ms) {}

  std::shared_ptr<EngineClient> connect(const std::string&, const std::string& endpoint) override {
    std::lock_guard lk(mu_);
    auto& c = clients_[endpoint];
    if (!c) c = std::make_shared<GrpcEngineClient>(endpoint, timeout_ms_);
    return c;
  }

 private:
  uint32_t timeout_ms_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<EngineClient>> clients_;
};

}  // namespace

std::unique_ptr<EngineConnector> make_grpc_connector(uint32_t request_timeout_ms) {
  return std::make_unique<GrpcConnector>(request_timeout_ms);
}

}  // namespace castor::control
