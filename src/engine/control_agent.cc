#include "engine/control_agent.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "castor/control/v1/control.grpc.pb.h"
#include "common/uuid.h"
#include "common/version.h"

namespace castor::engine {

namespace cv1 = castor::control::v1;

namespace {

Status status_of(const grpc::Status& st, const char* what) {
  if (st.ok()) return Status::ok();
  Errc code = Errc::kInternal;
  switch (st.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: code = Errc::kUnavailable; break;
    case grpc::StatusCode::INVALID_ARGUMENT: code = Errc::kInvalidArgument; break;
    case grpc::StatusCode::NOT_FOUND: code = Errc::kNotFound; break;
    default: break;
  }
  return make_error(code, "castor-control {}: {}", what, st.error_message());
}

void set_deadline(grpc::ClientContext& ctx, uint32_t ms) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
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

std::shared_ptr<grpc::Channel> make_control_channel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// ---------------------------------------------------------------- health store

struct ControlChildHealthStore::Stub {
  std::unique_ptr<cv1::ControlService::Stub> stub;
};

ControlChildHealthStore::ControlChildHealthStore(std::shared_ptr<grpc::Channel> channel,
                                                 uint32_t timeout_ms)
    : stub_(std::make_unique<Stub>(Stub{cv1::ControlService::NewStub(channel)})),
      timeout_ms_(timeout_ms) {}

ControlChildHealthStore::~ControlChildHealthStore() = default;

Result<nexus::ChildRecords> ControlChildHealthStore::load(const std::string& nexus) {
  grpc::ClientContext ctx;
  set_deadline(ctx, timeout_ms_);
  cv1::GetNexusHealthRequest req;
  req.set_nexus(nexus);
  cv1::GetNexusHealthResponse resp;
  if (Status s = status_of(stub_->stub->GetNexusHealth(&ctx, req, &resp), "GetNexusHealth"); !s) {
    return s;
  }
  if (resp.document().empty()) return nexus::ChildRecords{};
  return nexus::records_from_json(resp.document());
}

Status ControlChildHealthStore::replace(const std::string& nexus,
                                        const nexus::ChildRecords& records) {
  grpc::ClientContext ctx;
  set_deadline(ctx, timeout_ms_);
  cv1::PutNexusHealthRequest req;
  req.set_nexus(nexus);
  if (!records.empty()) req.set_document(nexus::records_to_json(nexus, records));
  cv1::PutNexusHealthResponse resp;
  return status_of(stub_->stub->PutNexusHealth(&ctx, req, &resp), "PutNexusHealth");
}

// ---------------------------------------------------------------- agent

struct ControlAgent::Stub {
  std::unique_ptr<cv1::ControlService::Stub> stub;
};

ControlAgent::ControlAgent(const EngineConfig& cfg, std::shared_ptr<grpc::Channel> channel,
                           pool::PoolManager& pools, api::FrontEnds& front_ends, int grpc_port)
    : cfg_(cfg),
      pools_(pools),
      front_ends_(front_ends),
      grpc_port_(grpc_port),
      instance_(Uuid::random().to_string()),
      stub_(std::make_unique<Stub>(Stub{cv1::ControlService::NewStub(channel)})) {}

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
  grpc::ClientContext ctx;
  set_deadline(ctx, 1000);
  cv1::DeregisterNodeRequest req;
  req.set_name(cfg_.node_name);
  req.set_instance_uuid(instance_);
  cv1::DeregisterNodeResponse resp;
  (void)stub_->stub->DeregisterNode(&ctx, req, &resp);
}

Status ControlAgent::beat() {
  cv1::RegisterNodeRequest req;
  req.set_name(cfg_.node_name);
  req.mutable_labels()->insert(cfg_.node_labels.begin(), cfg_.node_labels.end());
  auto host = [&](const std::string& own) { return cfg_.node_address.empty() ? own : cfg_.node_address; };
  req.set_grpc_endpoint(endpoint(host(host_of(cfg_.grpc_listen)), grpc_port_));
  for (const auto& l : front_ends_.nvmf_listeners()) req.add_nvmf_endpoints(endpoint(host(l.host), l.port));
  for (const auto& l : front_ends_.nbd_listeners()) req.set_nbd_endpoint(endpoint(host(l.host), l.port));
  for (const auto& l : front_ends_.iscsi_listeners()) {
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
  grpc::ClientContext ctx;
  set_deadline(ctx, 2000);
  cv1::RegisterNodeResponse resp;
  if (Status s = status_of(stub_->stub->RegisterNode(&ctx, req, &resp), "RegisterNode"); !s) return s;
  if (resp.heartbeat_interval_ms() >= 100) interval_ms_.store(resp.heartbeat_interval_ms());
  return Status::ok();
}

void ControlAgent::run() {
  bool failing = false;
  for (;;) {
    Status s = beat();
    if (!s && !failing) {
      spdlog::warn("cannot register node '{}' with castor-control at {}: {} (retrying)",
                   cfg_.node_name, cfg_.control, s.message());
    } else if (s && (failing || !registered_)) {
      spdlog::info("node '{}' registered with castor-control at {} (instance {})", cfg_.node_name,
                   cfg_.control, instance_);
      registered_ = true;
    }
    failing = !s;
    std::unique_lock lk(mu_);
    if (cv_.wait_for(lk, std::chrono::milliseconds(interval_ms_.load()), [&] { return stopping_; })) {
      return;
    }
  }
}

}  // namespace castor::engine
