#include "control/client/control_endpoints.h"

#include <grpcpp/grpcpp.h>

#include <thread>

namespace castor::control {

namespace cv1 = castor::control::v1;

// ---------------------------------------------------------------- endpoints

ControlEndpoints::ControlEndpoints(const std::vector<std::string>& addresses, AbortedIs aborted)
    : aborted_(aborted) {
  grpc::ChannelArguments args;
  // A standby that takes over is reached within a second of listening. (Not
  // MIN_RECONNECT_BACKOFF: gRPC also uses it as the timeout of one connection attempt.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  for (const auto& a : addresses) {
    auto ep = std::make_unique<Endpoint>();
    ep->address = a;
    ep->channel = grpc::CreateCustomChannel(a, grpc::InsecureChannelCredentials(), args);
    ep->stub = cv1::ControlService::NewStub(ep->channel);
    endpoints_.push_back(std::move(ep));
    describe_ += (describe_.empty() ? "" : ",") + a;
  }
}

ControlEndpoints::~ControlEndpoints() = default;

grpc::Status ControlEndpoints::call(std::chrono::milliseconds timeout, const Rpc& rpc,
                                    std::string* answered) {
  const auto deadline = std::chrono::system_clock::now() + timeout;
  const size_t n = endpoints_.size();
  size_t idx = current_.load() % n;
  for (size_t tried = 1;; ++tried, idx = (idx + 1) % n) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    grpc::Status s = rpc(*endpoints_[idx], ctx);
    if (answered) *answered = endpoints_[idx]->address;
    const auto code = s.error_code();
    const bool not_leader =
        code == grpc::StatusCode::UNAVAILABLE ||
        (code == grpc::StatusCode::ABORTED && aborted_ == AbortedIs::kNotLeader);
    if (!not_leader && code != grpc::StatusCode::DEADLINE_EXCEEDED) {
      current_.store(idx);  // it answered: the leader
      return s;
    }
    current_.store((idx + 1) % n);
    if (code == grpc::StatusCode::DEADLINE_EXCEEDED) return s;
    // Not (or no longer) the leader: on to the next endpoint; after a whole round, a pause.
    const auto pause = tried % n == 0 ? kRoundPause : std::chrono::milliseconds(0);
    if (std::chrono::system_clock::now() + pause >= deadline) return s;
    std::this_thread::sleep_for(pause);
  }
}

}  // namespace castor::control
