#pragma once
// The CSI Node service: connects a published volume with the node's kernel initiator for
// its protocol, makes a file system on a blank volume and mounts it at the staging path
// (NodeStageVolume), bind-mounts it into pods (NodePublishVolume), reports usage and
// health, grows the file system, and undoes it all in reverse. What is staged is recorded
// in NodeState so that every call is idempotent and survives a plugin restart.
//
// Calls on one volume are serialised (a second is ABORTED while the first runs).

#include <map>
#include <memory>
#include <string>

#include "csi/initiator.h"
#include "csi/node_state.h"
#include "csi/operation_locks.h"
#include "csi/v1/csi.grpc.pb.h"

namespace castor::csi {

struct NodeOptions {
  std::string node_name;
  std::map<std::string, std::string> topology;  // extra segments (--node-label)
  int64_t max_volumes = 0;
  InitiatorOptions initiator;
};

class NodeService final : public ::csi::v1::Node::Service {
 public:
  NodeService(NodeOptions opts, std::unique_ptr<NodeState> state);

  grpc::Status NodeStageVolume(grpc::ServerContext*, const ::csi::v1::NodeStageVolumeRequest*,
                               ::csi::v1::NodeStageVolumeResponse*) override;
  grpc::Status NodeUnstageVolume(grpc::ServerContext*, const ::csi::v1::NodeUnstageVolumeRequest*,
                                 ::csi::v1::NodeUnstageVolumeResponse*) override;
  grpc::Status NodePublishVolume(grpc::ServerContext*, const ::csi::v1::NodePublishVolumeRequest*,
                                 ::csi::v1::NodePublishVolumeResponse*) override;
  grpc::Status NodeUnpublishVolume(grpc::ServerContext*, const ::csi::v1::NodeUnpublishVolumeRequest*,
                                   ::csi::v1::NodeUnpublishVolumeResponse*) override;
  grpc::Status NodeGetVolumeStats(grpc::ServerContext*, const ::csi::v1::NodeGetVolumeStatsRequest*,
                                  ::csi::v1::NodeGetVolumeStatsResponse*) override;
  grpc::Status NodeExpandVolume(grpc::ServerContext*, const ::csi::v1::NodeExpandVolumeRequest*,
                                ::csi::v1::NodeExpandVolumeResponse*) override;
  grpc::Status NodeGetCapabilities(grpc::ServerContext*, const ::csi::v1::NodeGetCapabilitiesRequest*,
                                   ::csi::v1::NodeGetCapabilitiesResponse*) override;
  grpc::Status NodeGetInfo(grpc::ServerContext*, const ::csi::v1::NodeGetInfoRequest*,
                           ::csi::v1::NodeGetInfoResponse*) override;

  // For the PathWatcher, which works on the same records under the same locks.
  NodeState& state() { return *state_; }
  OperationLocks& locks() { return locks_; }
  const NodeOptions& options() const { return opts_; }

 private:
  Initiator& initiator(const std::string& protocol) { return *initiators_.at(protocol); }
  // The staged record of `volume_id`, or NOT_FOUND / INTERNAL.
  grpc::Status load(const std::string& volume_id, StagedVolume* out);

  NodeOptions opts_;
  std::unique_ptr<NodeState> state_;
  std::map<std::string, std::unique_ptr<Initiator>> initiators_;
  OperationLocks locks_;
};

}  // namespace castor::csi
