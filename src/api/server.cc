#include "api/server.h"

#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

namespace castor::api {
namespace {

// Why binding `listen` ("host:port") fails, for an error message: gRPC reports only
// that it failed. Empty if a test bind succeeds.
std::string bind_failure_reason(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return "expected HOST:PORT";
  std::string host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return gai_strerror(rc);
  std::string reason;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      reason = std::strerror(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      reason = std::strerror(errno);
    } else {
      reason.clear();
      ::close(fd);
      break;
    }
    ::close(fd);
  }
  freeaddrinfo(res);
  return reason;
}

}  // namespace

ApiServer::ApiServer(bdev::BdevRegistry& registry, pool::PoolManager& pools,
                     nexus::NexusManager& nexuses, FrontEnds& front_ends,
                     reactor::ReactorGroup& reactors, EngineIdentity identity)
    : service_(registry, pools, nexuses, front_ends, reactors, identity),
      collector_(std::make_shared<MetricsCollector>(registry, nexuses, front_ends, reactors,
                                                    identity)) {}

ApiServer::~ApiServer() {
  stop();
}

Result<int> ApiServer::start_grpc(const std::string& listen) {
  if (grpc_server_) return Status(Errc::kInternal, "gRPC server already started");
  if (listen.empty()) return Status(Errc::kInvalidArgument, "empty gRPC listen address");
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&service_);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::string why = bind_failure_reason(listen);
    return make_error(Errc::kInvalidArgument, "cannot listen for gRPC on '{}'{}{}", listen,
                      why.empty() ? "" : ": ", why);
  }
  grpc_server_ = std::move(server);
  spdlog::info("gRPC API listening on {} (port {})", listen, port);
  return port;
}

Result<int> ApiServer::start_metrics(const std::string& listen) {
  if (exposer_) return Status(Errc::kInternal, "metrics server already started");
  if (listen.empty()) return Status(Errc::kInvalidArgument, "empty metrics listen address");
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // One worker thread: scrapes are rare and cheap.
    exposer = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    std::string why = bind_failure_reason(listen);
    return make_error(Errc::kInvalidArgument, "cannot listen for metrics on '{}': {}", listen,
                      why.empty() ? e.what() : why);
  }
  auto ports = exposer->GetListeningPorts();
  if (ports.empty() || ports.front() <= 0) {
    return make_error(Errc::kInvalidArgument, "cannot listen for metrics on '{}'", listen);
  }
  exposer->RegisterCollectable(collector_, "/metrics");
  exposer_ = std::move(exposer);
  spdlog::info("metrics listening on {} (port {}) at /metrics", listen, ports.front());
  return ports.front();
}

void ApiServer::stop(std::chrono::milliseconds grace) {
  if (grpc_server_) {
    grpc_server_->Shutdown(std::chrono::system_clock::now() + grace);
    grpc_server_->Wait();
    grpc_server_.reset();
    spdlog::debug("gRPC server stopped");
  }
  if (exposer_) {
    exposer_->RemoveCollectable(collector_, "/metrics");
    exposer_.reset();
    spdlog::debug("metrics server stopped");
  }
}

}  // namespace castor::api
