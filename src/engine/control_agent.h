#pragma once
// The engine's side of the control plane (castor-engine --control ADDR):
//  * ControlAgent registers the node with castor-control and heartbeats (its endpoints,
//    pools and instance UUID) from a thread of its own, so the control plane can place
//    volumes here and notice when the node is gone or restarted;
//  * ControlChildHealthStore keeps the nexus child-health records in castor-control's
//    store instead of a node-local file, so a nexus re-created on another node knows
//    which children are current. Each call returns only once the control plane has
//    stored the record (the nexus's rule that a health change is durable before the I/O
//    that caused it completes still holds); if castor-control cannot be reached the
//    call fails and the waiting I/O fails with it.

#include <grpcpp/channel.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "api/front_ends.h"
#include "engine/config.h"
#include "nexus/health_store.h"
#include "pool/pool.h"

namespace castor::control::v1 {
class ControlService;
}

namespace castor::engine {

// One gRPC channel to castor-control, shared by the agent and the health store.
std::shared_ptr<grpc::Channel> make_control_channel(const std::string& address);

class ControlChildHealthStore final : public nexus::ChildHealthStore {
 public:
  explicit ControlChildHealthStore(std::shared_ptr<grpc::Channel> channel,
                                   uint32_t timeout_ms = 5000);
  ~ControlChildHealthStore() override;
  Result<nexus::ChildRecords> load(const std::string& nexus) override;

 protected:
  Status replace(const std::string& nexus, const nexus::ChildRecords& records) override;

 private:
  struct Stub;
  std::unique_ptr<Stub> stub_;
  uint32_t timeout_ms_;
};

class ControlAgent {
 public:
  // `pools` and `front_ends` must outlive the agent.
  ControlAgent(const EngineConfig& cfg, std::shared_ptr<grpc::Channel> channel,
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
  Status beat();

  const EngineConfig& cfg_;
  pool::PoolManager& pools_;
  api::FrontEnds& front_ends_;
  const int grpc_port_;
  const std::string instance_;
  struct Stub;
  std::unique_ptr<Stub> stub_;
  std::atomic<uint32_t> interval_ms_{1000};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool registered_ = false;
  std::thread thread_;
};

}  // namespace castor::engine
