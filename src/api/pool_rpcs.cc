// EngineService handlers for pools, replicas and block I/O.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "api/block_io.h"
#include "api/engine_service.h"
#include "api/names.h"
#include "api/status_map.h"

namespace castor::api {
namespace {

// Longest wait for one WriteBlocks / ReadBlocks I/O when the call has no nearer deadline.
constexpr std::chrono::milliseconds kMaxBlockIoWait = std::chrono::seconds(60);

// The time left until `ctx`'s deadline, capped at kMaxBlockIoWait.
std::chrono::milliseconds io_timeout(const grpc::ServerContext& ctx) {
  auto now = std::chrono::system_clock::now();
  auto deadline = ctx.deadline();
  if (deadline >= now + kMaxBlockIoWait) return kMaxBlockIoWait;
  if (deadline <= now) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
}

// The cluster size of every pool, for ReplicaInfo.allocated_bytes.
std::map<std::string, uint64_t> cluster_sizes(const pool::PoolManager& pools) {
  std::map<std::string, uint64_t> out;
  for (const auto& p : pools.list()) out[p.name] = p.cluster_size;
  return out;
}

uint64_t cluster_size_of(const pool::PoolManager& pools, const std::string& pool) {
  auto info = pools.info(pool);
  return info ? info->cluster_size : 0;
}

// The replicas (bdev names) of `pool`; empty for an unknown pool.
std::vector<std::string> replica_names(const pool::PoolManager& pools, const std::string& pool) {
  std::vector<std::string> out;
  if (!pools.info(pool)) return out;
  for (const auto& r : pools.list_replicas(pool)) out.push_back(r.name);
  return out;
}

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& v) {
  return join_names(std::vector<std::string>(v.begin(), v.end()));
}

}  // namespace

void to_proto(const pool::PoolInfo& in, v1::PoolInfo* out) {
  out->set_name(in.name);
  out->set_uuid(in.uuid.to_string());
  out->set_cluster_size(in.cluster_size);
  for (const auto& d : in.disks) out->add_disks(d);
  out->set_total_clusters(in.total_clusters);
  out->set_used_clusters(in.used_clusters);
  out->set_capacity_bytes(in.capacity_bytes);
  out->set_used_bytes(in.used_bytes);
  out->set_committed_bytes(in.committed_bytes);
  out->set_replicas(in.replicas);
  out->set_state(in.state);
}

void to_proto(const pool::ReplicaInfo& in, uint64_t cluster_size, v1::ReplicaInfo* out) {
  out->set_name(in.name);
  out->set_uuid(in.uuid.to_string());
  out->set_pool(in.pool);
  out->set_size_bytes(in.size_bytes);
  out->set_thin(in.thin);
  out->set_allocated_clusters(in.allocated_clusters);
  out->set_uri(in.uri);
  out->set_allocated_bytes(in.allocated_clusters * cluster_size);
}

grpc::Status EngineServiceImpl::CreatePool(grpc::ServerContext*, const v1::CreatePoolRequest* req,
                                           v1::PoolInfo* resp) {
  pool::PoolCreateOptions opts;
  opts.name = req->name();
  opts.disks.assign(req->disks().begin(), req->disks().end());
  if (req->cluster_size() != 0) opts.cluster_size = req->cluster_size();
  auto info = pools_.create(opts);
  if (!info) {
    spdlog::info("create pool '{}' on {} failed: {}", req->name(), joined(req->disks()),
                 info.status().to_string());
    return to_grpc(info.status());
  }
  to_proto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ImportPool(grpc::ServerContext*, const v1::ImportPoolRequest* req,
                                           v1::PoolInfo* resp) {
  std::vector<std::string> disks(req->disks().begin(), req->disks().end());
  auto info = pools_.import(disks);
  if (!info) {
    spdlog::info("import pool from {} failed: {}", joined(req->disks()), info.status().to_string());
    return to_grpc(info.status());
  }
  to_proto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ExportPool(grpc::ServerContext*, const v1::ExportPoolRequest* req,
                                           v1::ExportPoolResponse*) {
  if (req->name().empty()) return to_grpc(Status(Errc::kInvalidArgument, "pool name is required"));
  Status s = front_ends_.destroy_unless_exported(replica_names(pools_, req->name()),
                                                 [&] { return pools_.export_pool(req->name()); });
  if (!s) spdlog::info("export pool '{}' failed: {}", req->name(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::DestroyPool(grpc::ServerContext*, const v1::DestroyPoolRequest* req,
                                            v1::DestroyPoolResponse*) {
  if (req->name().empty()) return to_grpc(Status(Errc::kInvalidArgument, "pool name is required"));
  Status s = front_ends_.destroy_unless_exported(replica_names(pools_, req->name()),
                                                 [&] { return pools_.destroy(req->name()); });
  if (!s) spdlog::info("destroy pool '{}' failed: {}", req->name(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ListPools(grpc::ServerContext*, const v1::ListPoolsRequest* req,
                                          v1::ListPoolsResponse* resp) {
  if (!req->name().empty()) {
    auto info = pools_.info(req->name());
    if (!info) return to_grpc(info.status());
    to_proto(*info, resp->add_pools());
    return grpc::Status::OK;
  }
  for (const auto& p : pools_.list()) to_proto(p, resp->add_pools());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::CreateReplica(grpc::ServerContext*,
                                              const v1::CreateReplicaRequest* req,
                                              v1::ReplicaInfo* resp) {
  pool::ReplicaCreateOptions opts;
  opts.pool = req->pool();
  opts.name = req->name();
  opts.size_bytes = req->size_bytes();
  opts.thin = req->thin();
  if (!req->uuid().empty()) {
    opts.uuid = Uuid::parse(req->uuid());
    if (!opts.uuid) {
      return to_grpc(make_error(Errc::kInvalidArgument, "'{}' is not a UUID", req->uuid()));
    }
  }
  if (opts.pool.empty()) return to_grpc(Status(Errc::kInvalidArgument, "pool name is required"));
  auto info = pools_.create_replica(opts);
  if (!info) {
    spdlog::info("create replica '{}' in pool '{}' failed: {}", req->name(), req->pool(),
                 info.status().to_string());
    return to_grpc(info.status());
  }
  to_proto(*info, cluster_size_of(pools_, info->pool), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::DestroyReplica(grpc::ServerContext*,
                                               const v1::DestroyReplicaRequest* req,
                                               v1::DestroyReplicaResponse*) {
  if (req->name().empty()) {
    return to_grpc(Status(Errc::kInvalidArgument, "replica name is required"));
  }
  auto destroy = [&] { return pools_.destroy_replica(req->name()); };
  // An NBD export does not hold its replica open: refuse here, as for DestroyBdev.
  auto replica = front_ends_.find_replica(req->name());
  Status s = replica ? front_ends_.destroy_unless_exported({replica->name}, destroy) : destroy();
  if (!s) spdlog::info("destroy replica '{}' failed: {}", req->name(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::GrowReplica(grpc::ServerContext*, const v1::GrowReplicaRequest* req,
                                            v1::ReplicaInfo* resp) {
  if (req->name().empty()) {
    return to_grpc(Status(Errc::kInvalidArgument, "replica name is required"));
  }
  // As a nexus resize: refused while an export cannot tell its clients (NBD), else the
  // exports announce the new size.
  Result<pool::ReplicaInfo> info = Status(Errc::kInternal, "not grown");
  Status s = front_ends_.grow_if_allowed(
      req->name(),
      [&] {
        info = pools_.grow_replica(req->name(), req->size_bytes());
        return info.status();
      },
      "replica");
  if (!s) {
    spdlog::info("grow replica '{}' to {} bytes failed: {}", req->name(), req->size_bytes(),
                 s.to_string());
    return to_grpc(s);
  }
  to_proto(*info, cluster_size_of(pools_, info->pool), resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListReplicas(grpc::ServerContext*,
                                             const v1::ListReplicasRequest* req,
                                             v1::ListReplicasResponse* resp) {
  if (!req->pool().empty()) {
    if (auto info = pools_.info(req->pool()); !info) return to_grpc(info.status());
  }
  auto cs = cluster_sizes(pools_);
  for (const auto& r : pools_.list_replicas(req->pool())) {
    auto it = cs.find(r.pool);
    to_proto(r, it == cs.end() ? 0 : it->second, resp->add_replicas());
  }
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::WriteBlocks(grpc::ServerContext* ctx,
                                            const v1::WriteBlocksRequest* req,
                                            v1::WriteBlocksResponse*) {
  Status s = write_blocks(registry_, req->bdev(), req->offset_bytes(), req->data(), req->flush(),
                          io_timeout(*ctx));
  if (!s) spdlog::debug("write to bdev '{}' failed: {}", req->bdev(), s.to_string());
  return to_grpc(s);
}

grpc::Status EngineServiceImpl::ReadBlocks(grpc::ServerContext* ctx,
                                           const v1::ReadBlocksRequest* req,
                                           v1::ReadBlocksResponse* resp) {
  auto data =
      read_blocks(registry_, req->bdev(), req->offset_bytes(), req->length(), io_timeout(*ctx));
  if (!data) {
    spdlog::debug("read from bdev '{}' failed: {}", req->bdev(), data.status().to_string());
    return to_grpc(data.status());
  }
  *resp->mutable_data() = std::move(data.value());
  return grpc::Status::OK;
}

}  // namespace castor::api
