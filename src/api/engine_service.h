#pragma once
// The gRPC EngineService over a BdevRegistry, a PoolManager, the front-end targets and a
// ReactorGroup.
//
// Handlers run on gRPC's threads. They reach bdevs only through the registry,
// FaultControl, run_perf, the PoolManager, FrontEnds and block_io, which are safe to
// call from any non-reactor thread; no handler touches reactor-owned state directly.

#include <chrono>
#include <memory>

#include "api/front_ends.h"
#include "bdev/modules/fault.h"
#include "bdev/registry.h"
#include "castor/v1/engine.grpc.pb.h"
#include "iscsi/target.h"
#include "nvmf/target/target.h"
#include "nexus/manager.h"
#include "pool/pool.h"
#include "reactor/reactor.h"

namespace castor::api {

// Facts about the running engine that are not owned by a lower layer.
struct EngineIdentity {
  bool poll_mode = false;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  double uptime_seconds() const;
};

class EngineServiceImpl final : public castor::v1::EngineService::Service {
 public:
  // `registry`, `pools`, `nexuses`, `front_ends` and `reactors` must outlive the service
  // and every RPC in flight.
  EngineServiceImpl(bdev::BdevRegistry& registry, pool::PoolManager& pools,
                    nexus::NexusManager& nexuses, FrontEnds& front_ends,
                    reactor::ReactorGroup& reactors, EngineIdentity identity);

  grpc::Status GetEngineInfo(grpc::ServerContext* ctx, const v1::GetEngineInfoRequest* req,
                             v1::EngineInfo* resp) override;
  grpc::Status CreateBdev(grpc::ServerContext* ctx, const v1::CreateBdevRequest* req,
                          v1::BdevInfo* resp) override;
  grpc::Status DestroyBdev(grpc::ServerContext* ctx, const v1::DestroyBdevRequest* req,
                           v1::DestroyBdevResponse* resp) override;
  grpc::Status ListBdevs(grpc::ServerContext* ctx, const v1::ListBdevsRequest* req,
                         v1::ListBdevsResponse* resp) override;
  grpc::Status GetBdevStats(grpc::ServerContext* ctx, const v1::GetBdevStatsRequest* req,
                            v1::GetBdevStatsResponse* resp) override;
  grpc::Status InjectFault(grpc::ServerContext* ctx, const v1::InjectFaultRequest* req,
                           v1::InjectFaultResponse* resp) override;
  grpc::Status ClearFault(grpc::ServerContext* ctx, const v1::ClearFaultRequest* req,
                          v1::ClearFaultResponse* resp) override;
  grpc::Status ListFaults(grpc::ServerContext* ctx, const v1::ListFaultsRequest* req,
                          v1::ListFaultsResponse* resp) override;
  grpc::Status RunBenchmark(grpc::ServerContext* ctx, const v1::RunBenchmarkRequest* req,
                            v1::BenchmarkResult* resp) override;

  // Pools and replicas (pool_rpcs.cc).
  grpc::Status CreatePool(grpc::ServerContext* ctx, const v1::CreatePoolRequest* req,
                          v1::PoolInfo* resp) override;
  grpc::Status ImportPool(grpc::ServerContext* ctx, const v1::ImportPoolRequest* req,
                          v1::PoolInfo* resp) override;
  grpc::Status ExportPool(grpc::ServerContext* ctx, const v1::ExportPoolRequest* req,
                          v1::ExportPoolResponse* resp) override;
  grpc::Status DestroyPool(grpc::ServerContext* ctx, const v1::DestroyPoolRequest* req,
                           v1::DestroyPoolResponse* resp) override;
  grpc::Status ListPools(grpc::ServerContext* ctx, const v1::ListPoolsRequest* req,
                         v1::ListPoolsResponse* resp) override;
  grpc::Status CreateReplica(grpc::ServerContext* ctx, const v1::CreateReplicaRequest* req,
                             v1::ReplicaInfo* resp) override;
  grpc::Status DestroyReplica(grpc::ServerContext* ctx, const v1::DestroyReplicaRequest* req,
                              v1::DestroyReplicaResponse* resp) override;
  grpc::Status GrowReplica(grpc::ServerContext* ctx, const v1::GrowReplicaRequest* req,
                           v1::ReplicaInfo* resp) override;
  grpc::Status ListReplicas(grpc::ServerContext* ctx, const v1::ListReplicasRequest* req,
                            v1::ListReplicasResponse* resp) override;

  // Block I/O for tests and debugging (pool_rpcs.cc).
  grpc::Status WriteBlocks(grpc::ServerContext* ctx, const v1::WriteBlocksRequest* req,
                           v1::WriteBlocksResponse* resp) override;
  grpc::Status ReadBlocks(grpc::ServerContext* ctx, const v1::ReadBlocksRequest* req,
                          v1::ReadBlocksResponse* resp) override;

  // NVMe-oF, NBD and iSCSI targets (target_rpcs.cc).
  // Front ends by protocol name (target_rpcs.cc).
  grpc::Status ListFrontEnds(grpc::ServerContext* ctx, const v1::ListFrontEndsRequest* req,
                             v1::ListFrontEndsResponse* resp) override;
  grpc::Status FrontEndListen(grpc::ServerContext* ctx, const v1::FrontEndListenRequest* req,
                              v1::FrontEndListenResponse* resp) override;
  grpc::Status ExportBdev(grpc::ServerContext* ctx, const v1::ExportBdevRequest* req,
                          v1::ExportInfo* resp) override;
  grpc::Status UnexportBdev(grpc::ServerContext* ctx, const v1::UnexportBdevRequest* req,
                            v1::UnexportBdevResponse* resp) override;
  grpc::Status ListExports(grpc::ServerContext* ctx, const v1::ListExportsRequest* req,
                           v1::ListExportsResponse* resp) override;
  grpc::Status NvmfListen(grpc::ServerContext* ctx, const v1::NvmfListenRequest* req,
                          v1::NvmfListenResponse* resp) override;
  grpc::Status ShareBdev(grpc::ServerContext* ctx, const v1::ShareBdevRequest* req,
                         v1::ShareInfo* resp) override;
  grpc::Status UnshareBdev(grpc::ServerContext* ctx, const v1::UnshareBdevRequest* req,
                           v1::UnshareBdevResponse* resp) override;
  grpc::Status ListSubsystems(grpc::ServerContext* ctx, const v1::ListSubsystemsRequest* req,
                              v1::ListSubsystemsResponse* resp) override;
  grpc::Status ListControllers(grpc::ServerContext* ctx, const v1::ListControllersRequest* req,
                               v1::ListControllersResponse* resp) override;
  grpc::Status ShareReplica(grpc::ServerContext* ctx, const v1::ShareReplicaRequest* req,
                            v1::ShareInfo* resp) override;
  grpc::Status UnshareReplica(grpc::ServerContext* ctx, const v1::UnshareReplicaRequest* req,
                              v1::UnshareBdevResponse* resp) override;
  grpc::Status NbdListen(grpc::ServerContext* ctx, const v1::NbdListenRequest* req,
                         v1::NbdListenResponse* resp) override;
  grpc::Status NbdExport(grpc::ServerContext* ctx, const v1::NbdExportRequest* req,
                         v1::NbdExportInfo* resp) override;
  grpc::Status NbdUnexport(grpc::ServerContext* ctx, const v1::NbdUnexportRequest* req,
                           v1::NbdUnexportResponse* resp) override;
  grpc::Status ListNbdExports(grpc::ServerContext* ctx, const v1::ListNbdExportsRequest* req,
                              v1::ListNbdExportsResponse* resp) override;
  grpc::Status IscsiListen(grpc::ServerContext* ctx, const v1::IscsiListenRequest* req,
                           v1::IscsiListenResponse* resp) override;
  grpc::Status IscsiExport(grpc::ServerContext* ctx, const v1::IscsiExportRequest* req,
                           v1::IscsiTargetInfo* resp) override;
  grpc::Status IscsiUnexport(grpc::ServerContext* ctx, const v1::IscsiUnexportRequest* req,
                             v1::IscsiUnexportResponse* resp) override;
  grpc::Status ListIscsiTargets(grpc::ServerContext* ctx, const v1::ListIscsiTargetsRequest* req,
                                v1::ListIscsiTargetsResponse* resp) override;
  grpc::Status ListIscsiSessions(grpc::ServerContext* ctx, const v1::ListIscsiSessionsRequest* req,
                                 v1::ListIscsiSessionsResponse* resp) override;

  // Nexuses, their children, publishing and rebuilds (nexus_rpcs.cc).
  grpc::Status CreateNexus(grpc::ServerContext* ctx, const v1::CreateNexusRequest* req,
                           v1::NexusInfo* resp) override;
  grpc::Status DestroyNexus(grpc::ServerContext* ctx, const v1::DestroyNexusRequest* req,
                            v1::DestroyNexusResponse* resp) override;
  grpc::Status ListNexuses(grpc::ServerContext* ctx, const v1::ListNexusesRequest* req,
                           v1::ListNexusesResponse* resp) override;
  grpc::Status GetNexus(grpc::ServerContext* ctx, const v1::GetNexusRequest* req,
                        v1::NexusInfo* resp) override;
  grpc::Status AddChild(grpc::ServerContext* ctx, const v1::AddChildRequest* req,
                        v1::NexusInfo* resp) override;
  grpc::Status RemoveChild(grpc::ServerContext* ctx, const v1::ChildRequest* req,
                           v1::NexusInfo* resp) override;
  grpc::Status FaultChild(grpc::ServerContext* ctx, const v1::ChildRequest* req,
                          v1::NexusInfo* resp) override;
  grpc::Status OfflineChild(grpc::ServerContext* ctx, const v1::ChildRequest* req,
                            v1::NexusInfo* resp) override;
  grpc::Status OnlineChild(grpc::ServerContext* ctx, const v1::ChildRequest* req,
                           v1::NexusInfo* resp) override;
  grpc::Status PublishNexus(grpc::ServerContext* ctx, const v1::PublishNexusRequest* req,
                            v1::PublishNexusResponse* resp) override;
  grpc::Status UnpublishNexus(grpc::ServerContext* ctx, const v1::UnpublishNexusRequest* req,
                              v1::UnpublishNexusResponse* resp) override;
  grpc::Status SetNexusAnaState(grpc::ServerContext* ctx, const v1::SetNexusAnaStateRequest* req,
                                v1::NexusInfo* resp) override;
  grpc::Status ResizeNexus(grpc::ServerContext* ctx, const v1::ResizeNexusRequest* req,
                           v1::NexusInfo* resp) override;
  grpc::Status StartRebuild(grpc::ServerContext* ctx, const v1::RebuildRequest* req,
                            v1::RebuildInfo* resp) override;
  grpc::Status StopRebuild(grpc::ServerContext* ctx, const v1::RebuildRequest* req,
                           v1::RebuildInfo* resp) override;
  grpc::Status PauseRebuild(grpc::ServerContext* ctx, const v1::RebuildRequest* req,
                            v1::RebuildInfo* resp) override;
  grpc::Status ResumeRebuild(grpc::ServerContext* ctx, const v1::RebuildRequest* req,
                             v1::RebuildInfo* resp) override;
  grpc::Status GetRebuild(grpc::ServerContext* ctx, const v1::RebuildRequest* req,
                          v1::RebuildInfo* resp) override;
  grpc::Status ListRebuilds(grpc::ServerContext* ctx, const v1::ListRebuildsRequest* req,
                            v1::ListRebuildsResponse* resp) override;

 private:
  // Where nexus `name` is published (nvmf://, nbd:// and iscsi:// URIs; empty if it is
  // not).
  std::vector<std::string> published_uris(const std::string& name) const;
  // to_proto() of a nexus with its published URIs and its subsystem's ANA state.
  void nexus_to_proto(const nexus::NexusInfo& info, v1::NexusInfo* out) const;
  // Applies `op` to the child `uri` of nexus `name` and answers the nexus' info.
  grpc::Status child_op(const char* what, const v1::ChildRequest& req, v1::NexusInfo* resp,
                        Status (nexus::Nexus::*op)(const std::string&));
  grpc::Status rebuild_op(const char* what, const v1::RebuildRequest& req, v1::RebuildInfo* resp,
                          Status (nexus::Nexus::*op)(const std::string&));
  // A listener of `protocol` on `address`; its bound port in *port.
  grpc::Status listen(const char* protocol, const std::string& address, uint32_t* port);

  bdev::BdevRegistry& registry_;
  pool::PoolManager& pools_;
  nexus::NexusManager& nexuses_;
  FrontEnds& front_ends_;
  reactor::ReactorGroup& reactors_;
  const EngineIdentity identity_;
};

// Proto conversions (also used by the unit tests).
void to_proto(const bdev::BdevInfo& in, v1::BdevInfo* out);
void to_proto(const std::string& name, const bdev::BdevStatsSnapshot& in, v1::BdevStats* out);
// Errors: InvalidArgument (unknown op, mode or status; probability outside [0,1]).
Result<bdev::FaultRuleSpec> from_proto(const v1::FaultRule& in);
void to_proto(const bdev::FaultRuleSpec& in, v1::FaultRule* out);
void to_proto(const pool::PoolInfo& in, v1::PoolInfo* out);
// `cluster_size` of the replica's pool gives allocated_bytes.
void to_proto(const pool::ReplicaInfo& in, uint64_t cluster_size, v1::ReplicaInfo* out);
void to_proto(const frontend::Export& in, v1::ExportInfo* out);
// An NVMe-oF export (a share).
void to_proto(const frontend::Export& in, v1::ShareInfo* out);
void to_proto(const nvmf::SubsystemInfo& in, const std::vector<std::string>& uris,
              v1::NvmfSubsystem* out);
void to_proto(const nvmf::ControllerInfo& in, v1::NvmfController* out);
void to_proto(const frontend::Export& in, v1::NbdExportInfo* out);
// Never carries a secret (an Export has none).
void to_proto(const frontend::Export& in, v1::IscsiTargetInfo* out);
void to_proto(const iscsi::SessionInfo& in, v1::IscsiSession* out);
// The iSCSI access fields of a request into `spec` (IscsiFrontEnd::add_export checks them).
void set_iscsi_access(const std::string& chap_user, const std::string& chap_secret,
                      const std::string& mutual_user, const std::string& mutual_secret,
                      const google::protobuf::RepeatedPtrField<std::string>& allowed_initiators,
                      frontend::ExportSpec* spec);
void to_proto(const std::string& nexus, const nexus::RebuildInfo& in, v1::RebuildInfo* out);
// `uris`: where the nexus is published.
void to_proto(const nexus::NexusInfo& in, const std::vector<std::string>& uris,
              v1::NexusInfo* out);
// Errors: InvalidArgument unless `name` is 1..64 bytes of [A-Za-z0-9._-] not starting
// with '.' (the name is also a file name in the health store).
Status check_nexus_name(const std::string& name);

}  // namespace castor::api
