#include "engine/control_agent.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "castor/control/v1/control.grpc.pb.h"
#include "common/grpc_codes.h"
#include "common/uuid.h"
#include "common/version.h"

namespace castor::engine {

namespace cv1 = castor::control::v1;

namespace {

Status status_of(const grpc::Status& st, const char* what, const std::string& address) {
  if (st.ok()) return Status::ok();
  const Errc code = errc_of(st.error_code());
  return make_error(code, "castor-control {} at {}: {}", what, address, st.error_message());
}

std::string host_of(const std::string& listen) {
  auto colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

std::string endpoint(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return fmt::format("[{}]:{}", host, port);
  }
  return fmt::format("{}:{}", host, port);
}

}  // namespace

// ---------------------------------------------------------------- health store

ControlChildHealthStore::ControlChildHealthStore(std::shared_ptr<ControlEndpoints> control,
                                                 std::chrono::milliseconds timeout)
    : control_(std::move(control)), timeout_(timeout) {}

ControlChildHealthStore::~ControlChildHealthStore() = default;

Result<nexus::NexusHealth> ControlChildHealthStore::load(const std::string& nexus) {
  cv1::GetNexusHealthRequest req;
  req.set_nexus(nexus);
  cv1::GetNexusHealthResponse resp;
  std::string who;
  grpc::Status st = control_->call(
      timeout_,
      [&](ControlEndpoints::Endpoint& ep, grpc::ClientContext& ctx) {
        return ep.stub->GetNexusHealth(&ctx, req, &resp);
      },
      &who);
  if (Status s = status_of(st, "GetNexusHealth", who); !s) return s;
  if (resp.document().empty()) return nexus::NexusHealth{};
  return nexus::health_from_json(resp.document());
}

void ControlChildHealthStore::bind_generation(const std::string& nexus, uint64_t generation) {
  std::lock_guard lk(generations_mu_);
  generations_[nexus] = generation;
}

Status ControlChildHealthStore::replace(const std::string& nexus,
                                        const nexus::NexusHealth& records) {
  // Idempotent (the whole document), so sending it again elsewhere is safe.
  cv1::PutNexusHealthRequest req;
  req.set_nexus(nexus);
  {
    std::lock_guard lk(generations_mu_);
    if (auto g = generations_.find(nexus); g != generations_.end()) req.set_generation(g->second);
  }
  if (!records.empty()) req.set_document(nexus::health_to_json(nexus, records));
  cv1::PutNexusHealthResponse resp;
  std::string who;
  grpc::Status st = control_->call(
      timeout_,
      [&](ControlEndpoints::Endpoint& ep, grpc::ClientContext& ctx) {
        return ep.stub->PutNexusHealth(&ctx, req, &resp);
      },
      &who);
  return status_of(st, "PutNexusHealth", who);
}

// ---------------------------------------------------------------- agent

ControlAgent::ControlAgent(const EngineConfig& cfg, std::shared_ptr<ControlEndpoints> control,
                           pool::PoolManager& pools, api::FrontEnds& front_ends, int grpc_port)
    : cfg_(cfg),
      control_(std::move(control)),
      pools_(pools),
      front_ends_(front_ends),
      grpc_port_(grpc_port),
      instance_(Uuid::random().to_string()) {}

ControlAgent::~ControlAgent() { stop(); }

void ControlAgent::start() {
  thread_ = std::thread([this] { run(); });
}

void ControlAgent::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  cv1::DeregisterNodeRequest req;
  req.set_name(cfg_.node_name);
  req.set_instance_uuid(instance_);
  cv1::DeregisterNodeResponse resp;
  (void)control_->call(std::chrono::seconds(1),
                       [&](ControlEndpoints::Endpoint& ep, grpc::ClientContext& ctx) {
                         return ep.stub->DeregisterNode(&ctx, req, &resp);
                       });
}

Status ControlAgent::beat(std::string* answered) {
  cv1::RegisterNodeRequest req;
  req.set_name(cfg_.node_name);
  req.mutable_labels()->insert(cfg_.node_labels.begin(), cfg_.node_labels.end());
  auto host = [&](const std::string& own) { return cfg_.node_address.empty() ? own : cfg_.node_address; };
  req.set_grpc_endpoint(endpoint(host(host_of(cfg_.grpc_listen)), grpc_port_));
  for (const auto& l : front_ends_.listeners("nvmf")) {
    req.add_nvmf_endpoints(endpoint(host(l.host), l.port));
  }
  for (const auto& l : front_ends_.listeners("nbd")) {
    req.set_nbd_endpoint(endpoint(host(l.host), l.port));
  }
  for (const auto& l : front_ends_.listeners("iscsi")) {
    req.set_iscsi_endpoint(endpoint(host(l.host), l.port));
  }
  req.set_instance_uuid(instance_);
  req.set_version(kVersion);
  for (const auto& p : pools_.list()) {
    auto* r = req.add_pools();
    r->set_name(p.name);
    r->set_uuid(p.uuid.to_string());
    for (const auto& d : p.disks) r->add_disks(d);
    r->set_capacity_bytes(p.capacity_bytes);
    r->set_used_bytes(p.used_bytes);
    r->set_committed_bytes(p.committed_bytes);
    r->set_replicas(p.replicas);
  }
  cv1::RegisterNodeResponse resp;
  grpc::Status st = control_->call(
      std::chrono::seconds(2),
      [&](ControlEndpoints::Endpoint& ep, grpc::ClientContext& ctx) {
        return ep.stub->RegisterNode(&ctx, req, &resp);
      },
      answered);
  if (Status s = status_of(st, "RegisterNode", *answered); !s) return s;
  if (resp.heartbeat_interval_ms() >= 100) interval_ms_.store(resp.heartbeat_interval_ms());
  return Status::ok();
}

void ControlAgent::run() {
  bool failing = false;
  std::string leader;  // the castor-control that took the last heartbeat
  for (;;) {
    std::string answered;
    Status s = beat(&answered);
    if (!s && !failing) {
      spdlog::warn("cannot register node '{}' with castor-control ({}): {} (retrying)",
                   cfg_.node_name, control_->describe(), s.message());
    } else if (s && (failing || answered != leader)) {
      spdlog::info("node '{}' registered with castor-control at {} (instance {})", cfg_.node_name,
                   answered, instance_);
      leader = answered;
    }
    failing = !s;
    std::unique_lock lk(mu_);
    if (cv_.wait_for(lk, std::chrono::milliseconds(interval_ms_.load()), [&] { return stopping_; })) {
      return;
    }
  }
}

}  // namespace castor::engine
