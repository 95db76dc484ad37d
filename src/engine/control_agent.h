#pragma once
// The engine's side of the control plane (castor-engine --control ADDR[,ADDR...]):
//  * ControlEndpoints (control/client) reaches whichever castor-control leads (several may
//    run on one etcd; only the leader listens);
//  * ControlAgent registers the node with castor-control and heartbeats (its endpoints,
//    pools and instance UUID) from a thread of its own, so the control plane can place
//    volumes here and notice when the node is gone or restarted;
//  * ControlChildHealthStore keeps the nexus child-health records in castor-control's
//    store instead of a node-local file, so a nexus re-created on another node knows
//    which children are current. Each call returns only once the control plane has
//    stored the record (the nexus's rule that a health change is durable before the I/O
//    that caused it completes still holds); if no castor-control answers within the
//    call's deadline the call fails and the waiting I/O fails with it.

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/front_ends.h"
#include "control/client/control_endpoints.h"
#include "engine/config.h"
#include "nexus/health_store.h"
#include "pool/pool.h"

namespace castor::engine {

using control::ControlEndpoints;

class ControlChildHealthStore final : public nexus::ChildHealthStore {
 public:
  explicit ControlChildHealthStore(std::shared_ptr<ControlEndpoints> control,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(5));
  ~ControlChildHealthStore() override;
  Result<nexus::NexusHealth> load(const std::string& nexus) override;
  // Sent with every write of that nexus's record (PutNexusHealthRequest.generation).
  void bind_generation(const std::string& nexus, uint64_t generation) override;

 protected:
  Status replace(const std::string& nexus, const nexus::NexusHealth& records) override;

 private:
  std::shared_ptr<ControlEndpoints> control_;
  std::chrono::milliseconds timeout_;
  std::mutex generations_mu_;
  std::map<std::string, uint64_t> generations_;
};

class ControlAgent {
 public:
  // `pools` and `front_ends` must outlive the agent.
  ControlAgent(const EngineConfig& cfg, std::shared_ptr<ControlEndpoints> control,
               pool::PoolManager& pools, api::FrontEnds& front_ends, int grpc_port);
  ~ControlAgent();
  ControlAgent(const ControlAgent&) = delete;
  ControlAgent& operator=(const ControlAgent&) = delete;

  // Starts heartbeating (the first registration is attempted at once; failures are
  // retried every interval and logged once per outage).
  void start();
  // Stops heartbeating and deregisters (best effort).
  void stop();
  const std::string& instance_uuid() const { return instance_; }

 private:
  void run();
  // One registration; `answered`: the castor-control that took it.
  Status beat(std::string* answered);

  const EngineConfig& cfg_;
  std::shared_ptr<ControlEndpoints> control_;
  pool::PoolManager& pools_;
  api::FrontEnds& front_ends_;
  const int grpc_port_;
  const std::string instance_;
  std::atomic<uint32_t> interval_ms_{1000};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace castor::engine
