#pragma once
// The engine's network front doors: the gRPC EngineService and the Prometheus /metrics
// endpoint. Starting and stopping them is the engine's job; what they serve is defined
// by EngineServiceImpl and MetricsCollector.

#include <chrono>
#include <memory>
#include <string>

#include "api/engine_service.h"
#include "api/metrics.h"
#include "common/status.h"

namespace grpc {
class Server;
}
namespace prometheus {
class Exposer;
}

namespace castor::api {

class ApiServer {
 public:
  // `registry`, `pools`, `nexuses`, `front_ends` and `reactors` must outlive this object
  // (or at least its stop()).
  ApiServer(bdev::BdevRegistry& registry, pool::PoolManager& pools, nexus::NexusManager& nexuses,
            FrontEnds& front_ends, reactor::ReactorGroup& reactors, EngineIdentity identity);
  // Stops both servers.
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Serves gRPC on `listen` ("host:port"; port 0 picks a free port) with plaintext
  // credentials and returns the bound port. The port is not shared (SO_REUSEPORT
  // off), so a second engine on the same address fails instead of splitting traffic.
  // Errors: InvalidArgument (unparsable address or cannot bind). Call at most once.
  Result<int> start_grpc(const std::string& listen);

  // Serves GET /metrics (Prometheus text format) on `listen` ("host:port"; port 0
  // picks a free port) and returns the bound port. Errors: InvalidArgument. Call at
  // most once.
  Result<int> start_metrics(const std::string& listen);

  // Stops accepting RPCs, gives in-flight RPCs up to `grace` to finish (then cancels
  // them and waits for their handlers to return), then stops the metrics endpoint.
  // Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(1));

 private:
  EngineServiceImpl service_;
  std::shared_ptr<MetricsCollector> collector_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace castor::api
