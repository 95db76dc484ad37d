// The engine's way to castor-control with several endpoints (ControlEndpoints, through
// ControlChildHealthStore): in-process fake castor-controls that serve, answer
// UNAVAILABLE ("not leading"), hang, or do not listen at all.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>

#include "castor/control/v1/control.grpc.pb.h"
#include "engine/control_agent.h"

namespace castor::engine {
namespace {

namespace cv1 = castor::control::v1;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A port nothing listens on (bound, then closed).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string addr(int port) { return "127.0.0.1:" + std::to_string(port); }

// A castor-control that serves the health records, or answers UNAVAILABLE, or hangs.
class FakeControl final : public cv1::ControlService::Service {
 public:
  enum class Mode { kServe, kNotLeading, kFenced, kHang, kRefuse };

  explicit FakeControl(Mode mode, int port = 0) : mode_(mode) {
    grpc::ServerBuilder b;
    b.AddListeningPort(addr(port), grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(this);
    server_ = b.BuildAndStart();
  }
  ~FakeControl() override { server_->Shutdown(std::chrono::system_clock::now() + 100ms); }

  grpc::Status PutNexusHealth(grpc::ServerContext* ctx, const cv1::PutNexusHealthRequest* req,
                              cv1::PutNexusHealthResponse*) override {
    if (grpc::Status s = answer(ctx); !s.ok()) return s;
    std::lock_guard lk(mu_);
    docs_[req->nexus()] = req->document();
    return grpc::Status::OK;
  }
  grpc::Status GetNexusHealth(grpc::ServerContext* ctx, const cv1::GetNexusHealthRequest* req,
                              cv1::GetNexusHealthResponse* resp) override {
    if (grpc::Status s = answer(ctx); !s.ok()) return s;
    std::lock_guard lk(mu_);
    resp->set_document(docs_[req->nexus()]);
    return grpc::Status::OK;
  }

  std::string address() const { return addr(port_); }
  std::string doc(const std::string& nexus) {
    std::lock_guard lk(mu_);
    return docs_[nexus];
  }
  std::atomic<int> calls{0};

 private:
  grpc::Status answer(grpc::ServerContext* ctx) {
    ++calls;
    switch (mode_) {
      case Mode::kNotLeading: return {grpc::StatusCode::UNAVAILABLE, "not the leader"};
      case Mode::kFenced: return {grpc::StatusCode::ABORTED, "commit refused by the fence"};
      case Mode::kRefuse: return {grpc::StatusCode::INVALID_ARGUMENT, "bad nexus"};
      case Mode::kHang:
        while (!ctx->IsCancelled()) std::this_thread::sleep_for(10ms);
        return {grpc::StatusCode::CANCELLED, "gone"};
      case Mode::kServe: break;
    }
    return grpc::Status::OK;
  }

  const Mode mode_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;
  std::map<std::string, std::string> docs_;
};

using Mode = FakeControl::Mode;

// A health write through the store, as the nexus makes it; how long it took.
Status mark(ControlChildHealthStore& store, std::chrono::milliseconds* took = nullptr) {
  auto t0 = Clock::now();
  Status s = store.mark_unhealthy("nx", "bdev:///r1", "io_error");
  if (took) *took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  return s;
}

TEST(ControlEndpointsTest, DeadFirstEndpointIsSkipped) {
  FakeControl leader(Mode::kServe);
  auto control = std::make_shared<ControlEndpoints>(
      std::vector<std::string>{addr(free_port()), leader.address()});
  ControlChildHealthStore store(control, 5s);
  std::chrono::milliseconds took{};
  ASSERT_TRUE(mark(store, &took)) << "the write must reach the live castor-control";
  EXPECT_LT(took, 2s);
  EXPECT_NE(leader.doc("nx").find("bdev:///r1"), std::string::npos);
  auto loaded = store.load("nx");
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(loaded->children.at("bdev:///r1").healthy);
  // The next call starts where the last one was answered.
  std::string who;
  auto st = control->call(1s, [](ControlEndpoints::Endpoint&, grpc::ClientContext&) {
    return grpc::Status::OK;
  }, &who);
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(who, leader.address());
}

TEST(ControlEndpointsTest, StandbyAnsweringUnavailableIsSkipped) {
  FakeControl standby(Mode::kNotLeading);
  FakeControl leader(Mode::kServe);
  auto control = std::make_shared<ControlEndpoints>(
      std::vector<std::string>{standby.address(), leader.address()});
  ControlChildHealthStore store(control, 5s);
  ASSERT_TRUE(mark(store));
  EXPECT_EQ(standby.calls.load(), 1);  // tried once (the load), then the leader kept
  ASSERT_TRUE(store.mark_healthy("nx", "bdev:///r1"));
  EXPECT_EQ(standby.calls.load(), 1);
  EXPECT_EQ(leader.calls.load(), 4);  // two loads, two replaces
}

TEST(ControlEndpointsTest, DeposedLeaderRefusedByTheFenceIsSkipped) {
  FakeControl deposed(Mode::kFenced);
  FakeControl leader(Mode::kServe);
  auto control = std::make_shared<ControlEndpoints>(
      std::vector<std::string>{deposed.address(), leader.address()});
  ControlChildHealthStore store(control, 5s);
  ASSERT_TRUE(mark(store));
  EXPECT_EQ(deposed.calls.load(), 1);
  EXPECT_NE(leader.doc("nx").find("bdev:///r1"), std::string::npos);
}

TEST(ControlEndpointsTest, NoEndpointAnsweringFailsAtTheDeadline) {
  auto control = std::make_shared<ControlEndpoints>(
      std::vector<std::string>{addr(free_port()), addr(free_port())});
  ControlChildHealthStore store(control, 700ms);
  std::chrono::milliseconds took{};
  Status s = mark(store, &took);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), Errc::kUnavailable) << s.message();
  EXPECT_GE(took, 500ms) << "retried until about the deadline";
  EXPECT_LT(took, 2s);
}

TEST(ControlEndpointsTest, AnErrorAnswerEndsTheCall) {
  FakeControl refusing(Mode::kRefuse);
  FakeControl other(Mode::kServe);
  auto control = std::make_shared<ControlEndpoints>(
      std::vector<std::string>{refusing.address(), other.address()});
  ControlChildHealthStore store(control, 2s);
  Status s = mark(store);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument) << s.message();
  EXPECT_NE(s.message().find(refusing.address()), std::string::npos) << s.message();
  EXPECT_EQ(other.calls.load(), 0) << "an answer other than UNAVAILABLE is the leader's";
}

TEST(ControlEndpointsTest, FrozenEndpointFailsOneCallAndTheNextMovesOn) {
  FakeControl frozen(Mode::kHang);
  FakeControl leader(Mode::kServe);
  auto control = std::make_shared<ControlEndpoints>(
      std::vector<std::string>{frozen.address(), leader.address()});
  ControlChildHealthStore store(control, 500ms);
  // It takes the request and never answers: the call ends at its deadline (it may yet
  // be applied there, so it is not sent elsewhere)...
  std::chrono::milliseconds took{};
  Status s = mark(store, &took);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), Errc::kUnavailable) << s.message();
  EXPECT_GE(took, 450ms);
  EXPECT_EQ(leader.calls.load(), 0);
  // ...and the next call starts at the next endpoint.
  ASSERT_TRUE(mark(store));
  EXPECT_EQ(frozen.calls.load(), 1);
}

TEST(ControlEndpointsTest, StandbyTakingOverWithinTheDeadlineIsReached) {
  // The leader dies; the standby starts listening 600 ms into the write.
  const int standby_port = free_port();
  auto leader = std::make_unique<FakeControl>(Mode::kServe);
  auto control = std::make_shared<ControlEndpoints>(
      std::vector<std::string>{leader->address(), addr(standby_port)});
  ControlChildHealthStore store(control, 5s);
  ASSERT_TRUE(mark(store));
  leader.reset();
  std::unique_ptr<FakeControl> standby;
  std::thread later([&] {
    std::this_thread::sleep_for(600ms);
    standby = std::make_unique<FakeControl>(Mode::kServe, standby_port);
  });
  std::chrono::milliseconds took{};
  Status s = mark(store, &took);
  later.join();
  ASSERT_TRUE(s) << s.message();
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 3s) << "reconnects within about a second of the standby listening";
  EXPECT_NE(standby->doc("nx").find("bdev:///r1"), std::string::npos);
}

}  // namespace
}  // namespace castor::engine
