#pragma once
// castor-control's client side, shared by its clients that run apart from it (the
// engine's control agent, castor-csi): the way to whichever castor-control leads.

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "castor/control/v1/control.grpc.pb.h"

namespace castor::control {

// castor-control's gRPC endpoints (--control A,B,...), shared by the agent and the health
// store. Only the leading castor-control listens (a standby waits for the leadership
// before it serves), so a call goes to whichever endpoint answers:
//  * one channel per endpoint; a call starts at the endpoint that last answered;
//  * UNAVAILABLE (nothing listens there: a dead old leader or a standby; or a
//    castor-control that says it does not lead), and with AbortedIs::kNotLeader also
//    ABORTED (a deposed leader whose write the store's fence refused: nothing was
//    written; the engine's calls get ABORTED for nothing else), moves the call on to the
//    next endpoint, round after round (kRoundPause apart), until the call's deadline.
//    Clients whose calls can be ABORTED for a volume operation in flight (castor-csi)
//    use AbortedIs::kAnswer and pass it on;
//  * DEADLINE_EXCEEDED (a frozen or cut-off castor-control that took the connection) ends
//    the call: its time is up, and the request may still be applied. The next call
//    starts at the next endpoint, so a frozen leader does not hold every call;
//  * any other answer, OK or an error, is the leader's and ends the call.
// Thread-safe.
class ControlEndpoints {
 public:
  static constexpr std::chrono::milliseconds kRoundPause{100};

  enum class AbortedIs { kNotLeader, kAnswer };

  // `addresses`: HOST:PORT each, already validated; at least one.
  explicit ControlEndpoints(const std::vector<std::string>& addresses,
                            AbortedIs aborted = AbortedIs::kNotLeader);
  ~ControlEndpoints();
  ControlEndpoints(const ControlEndpoints&) = delete;
  ControlEndpoints& operator=(const ControlEndpoints&) = delete;

  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<castor::control::v1::ControlService::Stub> stub;
  };
  using Rpc = std::function<grpc::Status(Endpoint&, grpc::ClientContext&)>;
  // Runs `rpc` as above; every attempt's context carries the call's deadline (now +
  // `timeout`). `answered` (optional): the address whose answer is returned.
  grpc::Status call(std::chrono::milliseconds timeout, const Rpc& rpc,
                    std::string* answered = nullptr);
  // "A,B,...": as given.
  const std::string& describe() const { return describe_; }

 private:
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::string describe_;
  AbortedIs aborted_;
  std::atomic<size_t> current_{0};  // where the next call starts
};

}  // namespace castor::control
