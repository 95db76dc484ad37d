#pragma once
// castor-control's front doors: the gRPC ControlService, and the same calls as REST/JSON
// (RestServer) for curl and dashboards. Both translate requests into ControlPlane calls;
// the REST handlers call the gRPC methods themselves, so the two cannot drift.

#include <memory>
#include <string>
#include <thread>

#include "castor/control/v1/control.grpc.pb.h"
#include "control/control_plane.h"

namespace grpc {
class Server;
}
namespace httplib {
class Server;
}

namespace castor::control {

namespace cv1 = castor::control::v1;

// gRPC status code for a control-plane error.
grpc::Status to_grpc_status(const Status& s);
// HTTP status for a gRPC code, as Mayastor's REST API maps them (docs/control.md).
int http_status_of(grpc::StatusCode code);

class ControlServiceImpl final : public cv1::ControlService::Service {
 public:
  ControlServiceImpl(ControlPlane& cp, Store& store, std::string identity)
      : cp_(cp), store_(store), identity_(std::move(identity)) {}

  // Every method ignores `ctx` (the REST server passes nullptr).
  grpc::Status RegisterNode(grpc::ServerContext*, const cv1::RegisterNodeRequest*,
                            cv1::RegisterNodeResponse*) override;
  grpc::Status DeregisterNode(grpc::ServerContext*, const cv1::DeregisterNodeRequest*,
                              cv1::DeregisterNodeResponse*) override;
  grpc::Status PutNexusHealth(grpc::ServerContext*, const cv1::PutNexusHealthRequest*,
                              cv1::PutNexusHealthResponse*) override;
  grpc::Status GetNexusHealth(grpc::ServerContext*, const cv1::GetNexusHealthRequest*,
                              cv1::GetNexusHealthResponse*) override;
  grpc::Status GetClusterInfo(grpc::ServerContext*, const cv1::GetClusterInfoRequest*,
                              cv1::ClusterInfo*) override;
  grpc::Status ListNodes(grpc::ServerContext*, const cv1::ListNodesRequest*,
                         cv1::ListNodesResponse*) override;
  grpc::Status GetNode(grpc::ServerContext*, const cv1::GetNodeRequest*, cv1::Node*) override;
  grpc::Status CordonNode(grpc::ServerContext*, const cv1::CordonNodeRequest*, cv1::Node*) override;
  grpc::Status UncordonNode(grpc::ServerContext*, const cv1::UncordonNodeRequest*,
                            cv1::Node*) override;
  grpc::Status DrainNode(grpc::ServerContext*, const cv1::DrainNodeRequest*, cv1::Node*) override;
  grpc::Status LabelNode(grpc::ServerContext*, const cv1::LabelNodeRequest*, cv1::Node*) override;
  grpc::Status CreatePool(grpc::ServerContext*, const cv1::CreatePoolRequest*, cv1::Pool*) override;
  grpc::Status DestroyPool(grpc::ServerContext*, const cv1::DestroyPoolRequest*,
                           cv1::DestroyPoolResponse*) override;
  grpc::Status ListPools(grpc::ServerContext*, const cv1::ListPoolsRequest*,
                         cv1::ListPoolsResponse*) override;
  grpc::Status GetPool(grpc::ServerContext*, const cv1::GetPoolRequest*, cv1::Pool*) override;
  grpc::Status CreateVolume(grpc::ServerContext*, const cv1::CreateVolumeRequest*,
                            cv1::Volume*) override;
  grpc::Status DestroyVolume(grpc::ServerContext*, const cv1::DestroyVolumeRequest*,
                             cv1::DestroyVolumeResponse*) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const cv1::ListVolumesRequest*,
                           cv1::ListVolumesResponse*) override;
  grpc::Status GetVolume(grpc::ServerContext*, const cv1::GetVolumeRequest*, cv1::Volume*) override;
  grpc::Status PublishVolume(grpc::ServerContext*, const cv1::PublishVolumeRequest*,
                             cv1::Volume*) override;
  grpc::Status UnpublishVolume(grpc::ServerContext*, const cv1::UnpublishVolumeRequest*,
                               cv1::Volume*) override;
  grpc::Status ResizeVolume(grpc::ServerContext*, const cv1::ResizeVolumeRequest*,
                            cv1::Volume*) override;
  grpc::Status ScaleVolume(grpc::ServerContext*, const cv1::ScaleVolumeRequest*,
                           cv1::Volume*) override;

 private:
  ControlPlane& cp_;
  Store& store_;
  std::string identity_;
};

// REST/JSON over HTTP/1.1 (cpp-httplib), base path /v1. Routes in docs/control.md.
class RestServer {
 public:
  explicit RestServer(ControlServiceImpl& service);
  ~RestServer();
  // Binds `listen` (HOST:PORT; port 0 picks one) and serves on a thread; returns the
  // port. Errors: InvalidArgument (bad address, cannot bind).
  Result<int> start(const std::string& listen);
  void stop();

 private:
  ControlServiceImpl& service_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
};

}  // namespace castor::control
