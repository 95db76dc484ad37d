#include "csi/controller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

#include "csi/errors.h"
#include "csi/parameters.h"

namespace castor::csi {

namespace v1 = ::csi::v1;
namespace cv1 = castor::control::v1;
using C = grpc::StatusCode;

namespace {

// castor-control's answer as this call's answer: the code kept (its codes are CSI's where
// they overlap), the message prefixed. DEADLINE_EXCEEDED (castor-control too slow or cut
// off) becomes UNAVAILABLE: the CO retries, and every call here is idempotent.
grpc::Status from_control(const grpc::Status& s, const char* what) {
  if (s.ok()) return s;
  C code = s.error_code() == C::DEADLINE_EXCEEDED ? C::UNAVAILABLE : s.error_code();
  return grpc::Status(code, fmt::format("castor-control {}: {}", what, s.error_message()));
}

void fill_volume(const cv1::Volume& v, v1::Volume* out) {
  out->set_volume_id(v.uuid());
  out->set_capacity_bytes(static_cast<int64_t>(v.size_bytes()));
  auto& ctx = *out->mutable_volume_context();
  ctx["protocol"] = v.protocol();
  ctx["repl"] = std::to_string(v.replica_count());
  ctx["thin"] = v.thin() ? "true" : "false";
  // Reachable over the network from every node that runs castor-csi's node plugin.
  (*out->add_accessible_topology()->mutable_segments())[kCsiNodeKey] = kCsiNodeValue;
}

template <class Status>
void fill_status(const cv1::Volume& v, Status* st) {
  if (v.has_target() && !v.target().frontend_node().empty()) {
    st->add_published_node_ids(v.target().frontend_node());
  }
  auto* cond = st->mutable_volume_condition();
  const bool abnormal = v.status() != "online" && v.status() != "degraded";
  cond->set_abnormal(abnormal);
  cond->set_message(v.status());
}

std::map<std::string, std::string> publish_context(const cv1::Volume& v) {
  return {{"uri", v.target().uri()}, {"protocol", v.target().protocol()}, {"nexus_node", v.target().node()}};
}

}  // namespace

template <class Req, class Resp, class Fn>
grpc::Status ControllerService::call(const Req& req, Resp* resp, Fn fn) {
  return control_->call(timeout_, [&](control::ControlEndpoints::Endpoint& ep, grpc::ClientContext& ctx) {
    return (ep.stub.get()->*fn)(&ctx, req, resp);
  });
}

grpc::Status ControllerService::check_control() {
  cv1::GetClusterInfoRequest req;
  cv1::ClusterInfo info;
  grpc::Status s = call(req, &info, &cv1::ControlService::Stub::GetClusterInfo);
  if (s.ok()) return s;
  return csi_error(C::FAILED_PRECONDITION, "castor-control at {} does not answer: {}", control_->describe(),
                   s.error_message());
}

grpc::Status ControllerService::get_volume(const std::string& id, cv1::Volume* out) {
  cv1::GetVolumeRequest req;
  req.set_uuid(id);
  grpc::Status s = call(req, out, &cv1::ControlService::Stub::GetVolume);
  if (s.error_code() == C::NOT_FOUND || (s.ok() && out->uuid() != id)) {
    return csi_error(C::NOT_FOUND, "volume {} does not exist", id);
  }
  return from_control(s, "GetVolume");
}

// ---------------------------------------------------------------- create / delete

grpc::Status ControllerService::CreateVolume(grpc::ServerContext*, const v1::CreateVolumeRequest* req,
                                             v1::CreateVolumeResponse* resp) {
  if (req->name().empty()) return csi_error(C::INVALID_ARGUMENT, "name is required");
  if (req->volume_capabilities().empty()) {
    return csi_error(C::INVALID_ARGUMENT, "volume_capabilities are required");
  }
  for (const auto& cap : req->volume_capabilities()) {
    if (auto why = unsupported_capability(cap)) return csi_error(C::INVALID_ARGUMENT, "{}", *why);
  }
  if (req->has_volume_content_source()) {
    return csi_error(C::INVALID_ARGUMENT, "volume content sources (snapshots, clones) are not supported");
  }
  if (!req->mutable_parameters().empty()) {
    return csi_error(C::INVALID_ARGUMENT, "mutable_parameters are not supported");
  }
  auto params = parse_params(req->parameters());
  if (!params) return to_grpc(params.status());
  for (const auto& cap : req->volume_capabilities()) {
    if (cap.has_mount() && !params->fs_type.empty() && !cap.mount().fs_type().empty() &&
        cap.mount().fs_type() != params->fs_type) {
      return csi_error(C::INVALID_ARGUMENT, "parameter fsType={} but the capability asks for {}",
                       params->fs_type, cap.mount().fs_type());
    }
  }
  auto size = size_for_range(req->has_capacity_range() ? &req->capacity_range() : nullptr);
  if (!size) return to_grpc(size.status());

  const std::string name = control_volume_name(req->name());
  auto held = locks_.try_acquire(name);
  if (!held) return csi_error(C::ABORTED, "an operation on volume '{}' is in flight", req->name());

  cv1::GetVolumeRequest get;
  get.set_uuid(name);
  cv1::Volume existing;
  grpc::Status s = call(get, &existing, &cv1::ControlService::Stub::GetVolume);
  cv1::CreateVolumeRequest create;
  if (s.ok() && existing.name() == name) {
    const auto* range = req->has_capacity_range() ? &req->capacity_range() : nullptr;
    if (!size_fits_range(existing.size_bytes(), range) || existing.replica_count() != params->repl ||
        existing.thin() != params->thin || existing.protocol() != params->protocol) {
      return csi_error(C::ALREADY_EXISTS,
                       "volume '{}' exists as {} bytes, repl {}, thin {}, protocol {}: not what this "
                       "request asks for",
                       req->name(), existing.size_bytes(), existing.replica_count(), existing.thin(),
                       existing.protocol());
    }
    if (existing.status() != "creating" && existing.operation().empty()) {
      fill_volume(existing, resp->mutable_volume());
      return grpc::Status::OK;
    }
    // Interrupted or still being made: the same request again completes it (castor-control
    // is idempotent on the name) or answers ABORTED while its operation runs.
    create.set_uuid(existing.uuid());
    create.set_size_bytes(existing.size_bytes());
  } else if (s.ok() || s.error_code() == C::NOT_FOUND) {
    create.set_uuid(uuid_from_name(req->name()));
    create.set_size_bytes(*size);
  } else {
    return from_control(s, "GetVolume");
  }
  create.set_name(name);
  create.set_replica_count(params->repl);
  create.set_thin(params->thin);
  create.set_protocol(params->protocol);

  // Topology. A Castor volume is reachable from every node, so any requisite topology is
  // met; the nodes it names are where the replicas go when there are enough storage nodes
  // among them for the replica count, and the preferred ones (the application's node
  // first, in Kubernetes) get the replicas and the nexus first.
  if (req->has_accessibility_requirements()) {
    cv1::ListNodesRequest lreq;
    cv1::ListNodesResponse nodes;
    if (grpc::Status ls = call(lreq, &nodes, &cv1::ControlService::Stub::ListNodes); !ls.ok()) {
      return from_control(ls, "ListNodes");
    }
    std::set<std::string> storage;
    for (const auto& n : nodes.nodes()) storage.insert(n.name());
    auto node_of = [&](const v1::Topology& t) -> std::string {
      auto it = t.segments().find(kNodeKey);
      return it != t.segments().end() && storage.count(it->second) ? it->second : "";
    };
    std::vector<std::string> allowed;
    bool any_node = false;  // a requisite segment without a node: no restriction
    for (const auto& t : req->accessibility_requirements().requisite()) {
      std::string n = node_of(t);
      if (t.segments().find(kNodeKey) == t.segments().end()) any_node = true;
      if (!n.empty() && std::find(allowed.begin(), allowed.end(), n) == allowed.end()) allowed.push_back(n);
    }
    if (!any_node && allowed.size() >= params->repl) {
      for (const auto& n : allowed) create.mutable_topology()->add_allowed_nodes(n);
    }
    for (const auto& t : req->accessibility_requirements().preferred()) {
      std::string n = node_of(t);
      if (!n.empty()) create.mutable_topology()->add_preferred_nodes(n);
    }
  }

  cv1::Volume made;
  s = call(create, &made, &cv1::ControlService::Stub::CreateVolume);
  if (s.error_code() == C::FAILED_PRECONDITION) {
    // Too few usable nodes for the replica count: the topology cannot be met.
    return csi_error(C::RESOURCE_EXHAUSTED, "castor-control CreateVolume: {}", s.error_message());
  }
  if (!s.ok()) return from_control(s, "CreateVolume");
  spdlog::info("CreateVolume {}: volume {} ({} bytes, {} replicas, {})", req->name(), made.uuid(),
               made.size_bytes(), made.replica_count(), made.protocol());
  fill_volume(made, resp->mutable_volume());
  return grpc::Status::OK;
}

grpc::Status ControllerService::DeleteVolume(grpc::ServerContext*, const v1::DeleteVolumeRequest* req,
                                             v1::DeleteVolumeResponse*) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  cv1::Volume v;
  grpc::Status s = get_volume(req->volume_id(), &v);
  if (s.error_code() == C::NOT_FOUND) return grpc::Status::OK;
  if (!s.ok()) return s;
  if (v.has_target()) {
    return csi_error(C::FAILED_PRECONDITION, "volume {} is published for node {}: unpublish it first",
                     v.uuid(), v.target().frontend_node());
  }
  cv1::DestroyVolumeRequest dreq;
  dreq.set_uuid(v.uuid());
  cv1::DestroyVolumeResponse dresp;
  s = call(dreq, &dresp, &cv1::ControlService::Stub::DestroyVolume);
  if (s.error_code() == C::NOT_FOUND) return grpc::Status::OK;
  if (s.ok()) spdlog::info("DeleteVolume {}", v.uuid());
  return from_control(s, "DestroyVolume");
}

// ---------------------------------------------------------------- publish / unpublish

grpc::Status ControllerService::ControllerPublishVolume(grpc::ServerContext*,
                                                        const v1::ControllerPublishVolumeRequest* req,
                                                        v1::ControllerPublishVolumeResponse* resp) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->node_id().empty()) return csi_error(C::INVALID_ARGUMENT, "node_id is required");
  if (!req->has_volume_capability()) return csi_error(C::INVALID_ARGUMENT, "volume_capability is required");
  if (auto why = unsupported_capability(req->volume_capability())) {
    return csi_error(C::INVALID_ARGUMENT, "{}", *why);
  }
  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  cv1::Volume v;
  if (grpc::Status s = get_volume(req->volume_id(), &v); !s.ok()) return s;
  cv1::GetNodeRequest nreq;
  nreq.set_name(req->node_id());
  cv1::Node node;
  if (grpc::Status s = call(nreq, &node, &cv1::ControlService::Stub::GetNode); !s.ok()) {
    if (s.error_code() == C::NOT_FOUND) {
      return csi_error(C::NOT_FOUND, "node {} is not a node of the Castor cluster", req->node_id());
    }
    return from_control(s, "GetNode");
  }
  if (v.has_target()) {
    if (v.target().frontend_node() != req->node_id()) {
      return csi_error(C::FAILED_PRECONDITION, "volume {} is published for node {}", v.uuid(),
                       v.target().frontend_node());
    }
  } else {
    cv1::PublishVolumeRequest preq;
    preq.set_uuid(v.uuid());
    preq.set_node(req->node_id());
    preq.set_frontend_node(req->node_id());
    grpc::Status s = call(preq, &v, &cv1::ControlService::Stub::PublishVolume);
    if (!s.ok()) return from_control(s, "PublishVolume");
    spdlog::info("ControllerPublishVolume {} for node {}: {}", v.uuid(), req->node_id(), v.target().uri());
  }
  for (const auto& [k, val] : publish_context(v)) (*resp->mutable_publish_context())[k] = val;
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerUnpublishVolume(grpc::ServerContext*,
                                                          const v1::ControllerUnpublishVolumeRequest* req,
                                                          v1::ControllerUnpublishVolumeResponse*) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  cv1::Volume v;
  grpc::Status s = get_volume(req->volume_id(), &v);
  if (s.error_code() == C::NOT_FOUND) return grpc::Status::OK;  // gone: not attached anywhere
  if (!s.ok()) return s;
  if (!v.has_target()) return grpc::Status::OK;
  if (!req->node_id().empty() && v.target().frontend_node() != req->node_id()) return grpc::Status::OK;
  cv1::UnpublishVolumeRequest ureq;
  ureq.set_uuid(v.uuid());
  s = call(ureq, &v, &cv1::ControlService::Stub::UnpublishVolume);
  if (s.ok()) spdlog::info("ControllerUnpublishVolume {} from node {}", req->volume_id(), req->node_id());
  return from_control(s, "UnpublishVolume");
}

// ---------------------------------------------------------------- queries

grpc::Status ControllerService::ValidateVolumeCapabilities(grpc::ServerContext*,
                                                           const v1::ValidateVolumeCapabilitiesRequest* req,
                                                           v1::ValidateVolumeCapabilitiesResponse* resp) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->volume_capabilities().empty()) {
    return csi_error(C::INVALID_ARGUMENT, "volume_capabilities are required");
  }
  cv1::Volume v;
  if (grpc::Status s = get_volume(req->volume_id(), &v); !s.ok()) return s;
  for (const auto& cap : req->volume_capabilities()) {
    if (auto why = unsupported_capability(cap)) {
      resp->set_message(*why);
      return grpc::Status::OK;
    }
  }
  if (!req->parameters().empty()) {
    auto p = parse_params(req->parameters());
    if (!p) {
      resp->set_message(p.status().message());
      return grpc::Status::OK;
    }
    if (p->repl != v.replica_count() || p->thin != v.thin() || p->protocol != v.protocol()) {
      resp->set_message(fmt::format("the volume has repl {}, thin {}, protocol {}", v.replica_count(),
                                    v.thin(), v.protocol()));
      return grpc::Status::OK;
    }
  }
  auto* c = resp->mutable_confirmed();
  *c->mutable_volume_capabilities() = req->volume_capabilities();
  *c->mutable_volume_context() = req->volume_context();
  *c->mutable_parameters() = req->parameters();
  return grpc::Status::OK;
}

grpc::Status ControllerService::ListVolumes(grpc::ServerContext*, const v1::ListVolumesRequest* req,
                                            v1::ListVolumesResponse* resp) {
  if (req->max_entries() < 0) return csi_error(C::INVALID_ARGUMENT, "max_entries is negative");
  cv1::ListVolumesRequest lreq;
  lreq.set_max_entries(static_cast<uint32_t>(req->max_entries()));
  lreq.set_starting_token(req->starting_token());
  cv1::ListVolumesResponse list;
  grpc::Status s = call(lreq, &list, &cv1::ControlService::Stub::ListVolumes);
  if (s.error_code() == C::ABORTED || s.error_code() == C::INVALID_ARGUMENT) {
    return csi_error(C::ABORTED, "starting_token '{}' is not valid: {}", req->starting_token(), s.error_message());
  }
  if (!s.ok()) return from_control(s, "ListVolumes");
  for (const auto& v : list.volumes()) {
    auto* e = resp->add_entries();
    fill_volume(v, e->mutable_volume());
    fill_status(v, e->mutable_status());
  }
  resp->set_next_token(list.next_token());
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerGetVolume(grpc::ServerContext*, const v1::ControllerGetVolumeRequest* req,
                                                    v1::ControllerGetVolumeResponse* resp) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  cv1::Volume v;
  if (grpc::Status s = get_volume(req->volume_id(), &v); !s.ok()) return s;
  fill_volume(v, resp->mutable_volume());
  fill_status(v, resp->mutable_status());
  return grpc::Status::OK;
}

// Free bytes per pool: capacity less what thick replicas reserve (thick volumes), or less
// what is written (thin). Only online pools on online, uncordoned nodes count; with
// accessible_topology naming a node, only that node's. maximum_volume_size: the largest
// volume whose `repl` replicas fit, one per node; available_capacity: all free bytes over
// the replica count.
grpc::Status ControllerService::GetCapacity(grpc::ServerContext*, const v1::GetCapacityRequest* req,
                                            v1::GetCapacityResponse* resp) {
  for (const auto& cap : req->volume_capabilities()) {
    if (unsupported_capability(cap)) return grpc::Status::OK;  // 0: no room for what Castor cannot make
  }
  auto params = parse_params(req->parameters());
  if (!params) return to_grpc(params.status());
  std::string only_node;
  if (req->has_accessible_topology()) {
    auto it = req->accessible_topology().segments().find(kNodeKey);
    if (it != req->accessible_topology().segments().end()) only_node = it->second;
  }
  cv1::ListNodesRequest nreq;
  cv1::ListNodesResponse nodes;
  if (grpc::Status s = call(nreq, &nodes, &cv1::ControlService::Stub::ListNodes); !s.ok()) {
    return from_control(s, "ListNodes");
  }
  cv1::ListPoolsRequest preq;
  cv1::ListPoolsResponse pools;
  if (grpc::Status s = call(preq, &pools, &cv1::ControlService::Stub::ListPools); !s.ok()) {
    return from_control(s, "ListPools");
  }
  std::set<std::string> usable;
  for (const auto& n : nodes.nodes()) {
    if (n.status() == "online" && !n.cordoned() && (only_node.empty() || n.name() == only_node)) {
      usable.insert(n.name());
    }
  }
  std::map<std::string, uint64_t> best_per_node;
  uint64_t total = 0;
  for (const auto& p : pools.pools()) {
    if (p.status() != "online" || !usable.count(p.node())) continue;
    const uint64_t taken = params->thin ? p.used_bytes() : p.committed_bytes();
    const uint64_t free = p.capacity_bytes() > taken ? p.capacity_bytes() - taken : 0;
    total += free;
    best_per_node[p.node()] = std::max(best_per_node[p.node()], free);
  }
  std::vector<uint64_t> best;
  for (const auto& [n, b] : best_per_node) best.push_back(b);
  std::sort(best.rbegin(), best.rend());
  const uint64_t max_volume = best.size() >= params->repl ? best[params->repl - 1] / kBlock * kBlock : 0;
  resp->set_available_capacity(static_cast<int64_t>(total / params->repl / kBlock * kBlock));
  resp->mutable_maximum_volume_size()->set_value(static_cast<int64_t>(max_volume));
  resp->mutable_minimum_volume_size()->set_value(static_cast<int64_t>(kBlock));
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerGetCapabilities(grpc::ServerContext*,
                                                          const v1::ControllerGetCapabilitiesRequest*,
                                                          v1::ControllerGetCapabilitiesResponse* resp) {
  using T = v1::ControllerServiceCapability::RPC;
  for (auto t : {T::CREATE_DELETE_VOLUME, T::PUBLISH_UNPUBLISH_VOLUME, T::LIST_VOLUMES, T::GET_CAPACITY,
                 T::EXPAND_VOLUME, T::LIST_VOLUMES_PUBLISHED_NODES, T::GET_VOLUME, T::VOLUME_CONDITION,
                 T::SINGLE_NODE_MULTI_WRITER}) {
    resp->add_capabilities()->mutable_rpc()->set_type(t);
  }
  return grpc::Status::OK;
}

// ---------------------------------------------------------------- expand

grpc::Status ControllerService::ControllerExpandVolume(grpc::ServerContext*,
                                                       const v1::ControllerExpandVolumeRequest* req,
                                                       v1::ControllerExpandVolumeResponse* resp) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (!req->has_capacity_range()) return csi_error(C::INVALID_ARGUMENT, "capacity_range is required");
  auto size = size_for_range(&req->capacity_range());
  if (!size) return to_grpc(size.status());
  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  cv1::Volume v;
  if (grpc::Status s = get_volume(req->volume_id(), &v); !s.ok()) return s;
  const bool block = req->has_volume_capability() && req->volume_capability().has_block();
  if (v.size_bytes() < *size) {
    cv1::ResizeVolumeRequest rreq;
    rreq.set_uuid(v.uuid());
    rreq.set_size_bytes(*size);
    grpc::Status s = call(rreq, &v, &cv1::ControlService::Stub::ResizeVolume);
    if (!s.ok()) return from_control(s, "ResizeVolume");
    spdlog::info("ControllerExpandVolume {} to {} bytes", v.uuid(), v.size_bytes());
  }
  resp->set_capacity_bytes(static_cast<int64_t>(v.size_bytes()));
  resp->set_node_expansion_required(!block);
  return grpc::Status::OK;
}

}  // namespace castor::csi
