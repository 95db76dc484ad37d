// ControlServiceImpl: proto <-> ControlPlane.

#include "control/service.h"

#include <algorithm>

#include "common/version.h"

namespace castor::control {

grpc::Status to_grpc_status(const Status& s) {
  if (s.is_ok()) return grpc::Status::OK;
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (s.code()) {
    case Errc::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case Errc::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case Errc::kAlreadyExists: code = grpc::StatusCode::ALREADY_EXISTS; break;
    case Errc::kBusy: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    case Errc::kNoSpace: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case Errc::kUnsupported: code = grpc::StatusCode::UNIMPLEMENTED; break;
    case Errc::kTimedOut: code = grpc::StatusCode::DEADLINE_EXCEEDED; break;
    case Errc::kAborted: code = grpc::StatusCode::ABORTED; break;
    case Errc::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    default: break;
  }
  std::string msg = s.message();
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  return grpc::Status(code, msg);
}

int http_status_of(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return 200;
    case grpc::StatusCode::INVALID_ARGUMENT: return 400;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::ALREADY_EXISTS: return 422;
    case grpc::StatusCode::FAILED_PRECONDITION: return 412;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 507;
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::UNAVAILABLE: return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 504;
    case grpc::StatusCode::UNIMPLEMENTED: return 501;
    default: return 500;
  }
}

namespace {

Labels labels_of(const google::protobuf::Map<std::string, std::string>& m) {
  return Labels(m.begin(), m.end());
}

void fill(const NodeView& v, cv1::Node* out) {
  out->set_name(v.spec.name);
  out->mutable_labels()->insert(v.spec.labels.begin(), v.spec.labels.end());
  out->set_status(node_status_name(v.state.status));
  out->set_cordoned(v.spec.cordoned);
  out->set_drain(v.drain);
  out->set_grpc_endpoint(v.spec.grpc_endpoint);
  for (const auto& e : v.spec.nvmf_endpoints) out->add_nvmf_endpoints(e);
  out->set_nbd_endpoint(v.spec.nbd_endpoint);
  out->set_iscsi_endpoint(v.spec.iscsi_endpoint);
  out->set_instance_uuid(v.state.instance_uuid);
  out->set_version(v.state.version);
  out->set_last_seen_unix_ms(v.state.last_seen_unix_ms);
  uint64_t cap = 0, used = 0;
  for (const auto& p : v.state.pools) {
    cap += p.capacity_bytes;
    used += p.used_bytes;
  }
  out->set_capacity_bytes(cap);
  out->set_used_bytes(used);
  out->set_replicas(v.replicas);
  out->set_nexuses(v.nexuses);
}

void fill(const PoolView& v, cv1::Pool* out) {
  out->set_node(v.spec.node);
  out->set_name(v.spec.name);
  for (const auto& d : v.spec.disks) out->add_disks(d);
  out->mutable_labels()->insert(v.spec.labels.begin(), v.spec.labels.end());
  out->set_status(v.status);
  out->set_error(v.spec.error);
  out->set_cluster_size(v.spec.cluster_size);
  if (v.report) {
    out->set_capacity_bytes(v.report->capacity_bytes);
    out->set_used_bytes(v.report->used_bytes);
    out->set_committed_bytes(v.report->committed_bytes);
    out->set_replicas(v.report->replicas);
  }
}

void fill(const Topology& t, cv1::Topology* out) {
  for (const auto& n : t.allowed_nodes) out->add_allowed_nodes(n);
  for (const auto& n : t.preferred_nodes) out->add_preferred_nodes(n);
  out->mutable_node_labels()->insert(t.node_labels.begin(), t.node_labels.end());
  for (const auto& k : t.spread_labels) out->add_spread_labels(k);
  out->mutable_pool_labels()->insert(t.pool_labels.begin(), t.pool_labels.end());
}

void fill(const VolumeView& v, cv1::Volume* out) {
  const auto& s = v.spec;
  out->set_uuid(s.uuid);
  out->set_name(s.name);
  out->set_size_bytes(s.size_bytes);
  out->set_replica_count(s.replica_count);
  out->set_thin(s.thin);
  out->set_protocol(protocol_name(s.protocol));
  fill(s.topology, out->mutable_topology());
  out->mutable_labels()->insert(s.labels.begin(), s.labels.end());
  out->set_status(v.status);
  out->set_nexus_generation(s.nexus_generation);
  if (s.target) {
    auto* t = out->mutable_target();
    t->set_node(s.target->node);
    t->set_protocol(protocol_name(s.protocol));
    t->set_uri(s.target->uri);
    for (const auto& h : s.target->allowed_hosts) t->add_allowed_hosts(h);
    t->set_state(v.target_state);
    t->set_frontend_node(s.target->frontend_node);
  }
  for (const auto& r : s.replicas) {
    auto* o = out->add_replicas();
    o->set_uuid(r.uuid);
    o->set_node(r.node);
    o->set_pool(r.pool);
    auto rv = v.replicas.find(r.uuid);
    const bool rebuilding = rv != v.replicas.end() && rv->second.rebuilding;
    o->set_state(rebuilding && r.state == ReplicaState::kNew ? "rebuilding"
                                                              : replica_state_name(r.state));
    o->set_reason(r.reason);
    if (rv != v.replicas.end()) {
      o->set_local(rv->second.local);
      o->set_uri(rv->second.uri);
      o->set_rebuild_percent(rv->second.rebuild_percent);
      o->set_rebuild_bytes_s(rv->second.rebuild_bytes_s);
    }
  }
  out->set_operation(op_name(s.op.kind));
  out->set_generation(s.generation);
}

Topology topology_of(const cv1::Topology& t) {
  Topology out;
  out.allowed_nodes.assign(t.allowed_nodes().begin(), t.allowed_nodes().end());
  out.preferred_nodes.assign(t.preferred_nodes().begin(), t.preferred_nodes().end());
  out.node_labels = labels_of(t.node_labels());
  out.spread_labels.assign(t.spread_labels().begin(), t.spread_labels().end());
  out.pool_labels = labels_of(t.pool_labels());
  return out;
}

template <class T, class Out>
grpc::Status reply(Result<T> r, Out* out) {
  if (!r) return to_grpc_status(r.status());
  fill(*r, out);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ControlServiceImpl::RegisterNode(grpc::ServerContext*,
                                              const cv1::RegisterNodeRequest* req,
                                              cv1::RegisterNodeResponse* resp) {
  RegisterRequest r;
  r.name = req->name();
  r.labels = labels_of(req->labels());
  r.grpc_endpoint = req->grpc_endpoint();
  r.nvmf_endpoints.assign(req->nvmf_endpoints().begin(), req->nvmf_endpoints().end());
  r.nbd_endpoint = req->nbd_endpoint();
  r.iscsi_endpoint = req->iscsi_endpoint();
  r.instance_uuid = req->instance_uuid();
  r.version = req->version();
  r.host_nqn = req->host_nqn();
  for (const auto& p : req->pools()) {
    r.pools.push_back(PoolReport{.name = p.name(),
                                 .uuid = p.uuid(),
                                 .disks = {p.disks().begin(), p.disks().end()},
                                 .capacity_bytes = p.capacity_bytes(),
                                 .used_bytes = p.used_bytes(),
                                 .committed_bytes = p.committed_bytes(),
                                 .replicas = p.replicas()});
  }
  auto interval = cp_.register_node(r);
  if (!interval) return to_grpc_status(interval.status());
  resp->set_heartbeat_interval_ms(*interval);
  return grpc::Status::OK;
}

grpc::Status ControlServiceImpl::DeregisterNode(grpc::ServerContext*,
                                                const cv1::DeregisterNodeRequest* req,
                                                cv1::DeregisterNodeResponse*) {
  return to_grpc_status(cp_.deregister_node(req->name(), req->instance_uuid()));
}

grpc::Status ControlServiceImpl::PutNexusHealth(grpc::ServerContext*,
                                                const cv1::PutNexusHealthRequest* req,
                                                cv1::PutNexusHealthResponse*) {
  return to_grpc_status(cp_.put_nexus_health(req->nexus(), req->document(), req->generation()));
}

grpc::Status ControlServiceImpl::GetNexusHealth(grpc::ServerContext*,
                                                const cv1::GetNexusHealthRequest* req,
                                                cv1::GetNexusHealthResponse* resp) {
  auto doc = cp_.get_nexus_health(req->nexus());
  if (!doc) return to_grpc_status(doc.status());
  resp->set_document(*doc);
  return grpc::Status::OK;
}

grpc::Status ControlServiceImpl::GetClusterInfo(grpc::ServerContext*,
                                                const cv1::GetClusterInfoRequest*,
                                                cv1::ClusterInfo* out) {
  auto c = cp_.counts();
  out->set_version(kVersion);
  out->set_store(store_.describe());
  auto leader = store_.leader();
  out->set_leader(leader ? *leader : std::string());
  out->set_leading(store_.leading());
  out->set_identity(identity_);
  out->set_nodes(c.nodes);
  out->set_pools(c.pools);
  out->set_volumes(c.volumes);
  out->set_reconcile_passes(c.passes);
  return grpc::Status::OK;
}

grpc::Status ControlServiceImpl::ListNodes(grpc::ServerContext*, const cv1::ListNodesRequest*,
                                           cv1::ListNodesResponse* resp) {
  for (const auto& n : cp_.list_nodes()) fill(n, resp->add_nodes());
  return grpc::Status::OK;
}

grpc::Status ControlServiceImpl::GetNode(grpc::ServerContext*, const cv1::GetNodeRequest* req,
                                         cv1::Node* out) {
  return reply(cp_.get_node(req->name()), out);
}

grpc::Status ControlServiceImpl::CordonNode(grpc::ServerContext*, const cv1::CordonNodeRequest* req,
                                            cv1::Node* out) {
  return reply(cp_.cordon_node(req->name(), true), out);
}

grpc::Status ControlServiceImpl::UncordonNode(grpc::ServerContext*,
                                              const cv1::UncordonNodeRequest* req, cv1::Node* out) {
  return reply(cp_.cordon_node(req->name(), false), out);
}

grpc::Status ControlServiceImpl::DrainNode(grpc::ServerContext*, const cv1::DrainNodeRequest* req,
                                           cv1::Node* out) {
  return reply(cp_.drain_node(req->name()), out);
}

grpc::Status ControlServiceImpl::LabelNode(grpc::ServerContext*, const cv1::LabelNodeRequest* req,
                                           cv1::Node* out) {
  return reply(cp_.label_node(req->name(), labels_of(req->labels())), out);
}

grpc::Status ControlServiceImpl::CreatePool(grpc::ServerContext*, const cv1::CreatePoolRequest* req,
                                            cv1::Pool* out) {
  PoolSpec spec;
  spec.node = req->node();
  spec.name = req->name();
  spec.disks.assign(req->disks().begin(), req->disks().end());
  spec.labels = labels_of(req->labels());
  spec.cluster_size = req->cluster_size();
  return reply(cp_.create_pool(spec), out);
}

grpc::Status ControlServiceImpl::DestroyPool(grpc::ServerContext*,
                                             const cv1::DestroyPoolRequest* req,
                                             cv1::DestroyPoolResponse*) {
  return to_grpc_status(cp_.destroy_pool(req->node(), req->name()));
}

grpc::Status ControlServiceImpl::ListPools(grpc::ServerContext*, const cv1::ListPoolsRequest* req,
                                           cv1::ListPoolsResponse* resp) {
  for (const auto& p : cp_.list_pools(req->node())) fill(p, resp->add_pools());
  return grpc::Status::OK;
}

grpc::Status ControlServiceImpl::GetPool(grpc::ServerContext*, const cv1::GetPoolRequest* req,
                                         cv1::Pool* out) {
  return reply(cp_.get_pool(req->node(), req->name()), out);
}

grpc::Status ControlServiceImpl::CreateVolume(grpc::ServerContext*,
                                              const cv1::CreateVolumeRequest* req,
                                              cv1::Volume* out) {
  CreateVolumeArgs a;
  a.uuid = req->uuid();
  a.name = req->name();
  a.size_bytes = req->size_bytes();
  a.replica_count = req->replica_count();
  a.thin = req->thin();
  a.protocol = req->protocol();
  if (req->has_topology()) a.topology = topology_of(req->topology());
  a.labels = labels_of(req->labels());
  return reply(cp_.create_volume(a), out);
}

grpc::Status ControlServiceImpl::DestroyVolume(grpc::ServerContext*,
                                               const cv1::DestroyVolumeRequest* req,
                                               cv1::DestroyVolumeResponse*) {
  return to_grpc_status(cp_.destroy_volume(req->uuid()));
}

grpc::Status ControlServiceImpl::ListVolumes(grpc::ServerContext*,
                                             const cv1::ListVolumesRequest* req,
                                             cv1::ListVolumesResponse* resp) {
  auto r = cp_.list_volumes(req->max_entries(), req->starting_token());
  if (!r) return to_grpc_status(r.status());
  for (const auto& v : r->first) fill(v, resp->add_volumes());
  resp->set_next_token(r->second);
  return grpc::Status::OK;
}

grpc::Status ControlServiceImpl::GetVolume(grpc::ServerContext*, const cv1::GetVolumeRequest* req,
                                           cv1::Volume* out) {
  return reply(cp_.get_volume(req->uuid()), out);
}

grpc::Status ControlServiceImpl::PublishVolume(grpc::ServerContext*,
                                               const cv1::PublishVolumeRequest* req,
                                               cv1::Volume* out) {
  PublishArgs a;
  a.uuid = req->uuid();
  a.node = req->node();
  a.allowed_hosts.assign(req->allowed_hosts().begin(), req->allowed_hosts().end());
  a.frontend_node = req->frontend_node();
  return reply(cp_.publish_volume(a), out);
}

grpc::Status ControlServiceImpl::UnpublishVolume(grpc::ServerContext*,
                                                 const cv1::UnpublishVolumeRequest* req,
                                                 cv1::Volume* out) {
  return reply(cp_.unpublish_volume(req->uuid()), out);
}

grpc::Status ControlServiceImpl::ResizeVolume(grpc::ServerContext*,
                                              const cv1::ResizeVolumeRequest* req,
                                              cv1::Volume* out) {
  return reply(cp_.resize_volume(req->uuid(), req->size_bytes()), out);
}

grpc::Status ControlServiceImpl::ScaleVolume(grpc::ServerContext*,
                                             const cv1::ScaleVolumeRequest* req, cv1::Volume* out) {
  return reply(cp_.scale_volume(req->uuid(), req->replica_count()), out);
}

}  // namespace castor::control
