// A child that takes long to open (a remote replica whose engine accepts the connection
// and never answers: the nvmf:// host waits its whole connect timeout) holds up only the
// call that opens it. Before, BdevRegistry::create made the bdev under the registry's
// lock, NexusManager::create opened the children under the manager's lock and
// Nexus::add_child under the nexus's state lock, so every lookup, describe(), metrics
// scrape and other nexus's create waited for the connect too (found by these tests:
// describe() and a create of another nexus took the connect's 6 s).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "common/clock.h"
#include "nexus_harness.h"
#include "nvmf/host/nvmf_bdev.h"

namespace castor::nexus::test {
namespace {

// Accepts TCP connections on loopback and never sends a byte.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;  // shut down
        accepted_.fetch_add(1);
        held_.push_back(c);  // only this thread touches it until join
      }
    });
  }
  ~SilentListener() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
    for (int c : held_) ::close(c);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  // A child URI that connects here, giving up after `timeout_ms`.
  std::string uri(uint64_t timeout_ms) const {
    return fmt::format("nvmf://127.0.0.1:{}/nqn.2026-12.io.castor:silent?connect_timeout_ms={}",
                       port_, timeout_ms);
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  std::vector<int> held_;
  std::thread thread_;
};

constexpr uint64_t kConnectTimeoutMs = 2000;
// Far below the connect timeout: an answer this fast did not wait for the connect.
constexpr uint64_t kQuickMs = 500;

template <class F>
uint64_t elapsed_ms(F&& f) {
  const uint64_t t0 = mono_ns();
  f();
  return (mono_ns() - t0) / 1'000'000;
}

struct SlowChild : ::testing::Test {
  NexEnv e;
  SilentListener silent;
  void SetUp() override {
    e.reg->register_module(nvmf::make_nvmf_bdev_module());
    ASSERT_TRUE(e.reg->create("malloc:///a?size_mb=4"));
    ASSERT_TRUE(e.reg->create("malloc:///b?size_mb=4"));
    ASSERT_TRUE(e.reg->create("malloc:///c?size_mb=4"));
  }
};

TEST_F(SlowChild, AddingItDoesNotHoldUpDescribeOrTheManager) {
  auto n = e.make("n0", {"bdev:///a"});
  ASSERT_TRUE(n);
  std::atomic<bool> done{false};
  Status st;
  std::thread t([&] {
    st = n->add_child(silent.uri(kConnectTimeoutMs), true);
    done = true;
  });
  ASSERT_TRUE(wait_until([&] { return silent.accepted() >= 1; }));  // connecting
  EXPECT_LT(elapsed_ms([&] { EXPECT_EQ(n->describe().children.size(), 1u); }), kQuickMs);
  EXPECT_LT(elapsed_ms([&] { EXPECT_EQ(e.mgr->list().size(), 1u); }), kQuickMs);
  EXPECT_LT(elapsed_ms([&] { EXPECT_TRUE(e.mgr->info("n0")); }), kQuickMs);
  // Another control call on the same nexus waits for this one (ctl_mu_), and says so.
  EXPECT_FALSE(done.load()) << "the connect ended before the checks: they prove nothing";
  t.join();
  EXPECT_FALSE(st.is_ok()) << "a child that never answered was added";
  const NexusInfo info = n->describe();
  ASSERT_EQ(info.children.size(), 1u);
  EXPECT_EQ(info.children[0].uri, "bdev:///a");
  // The nexus is as it was: a real child joins and is rebuilt.
  ASSERT_TRUE(n->add_child("bdev:///b", true));
  ASSERT_TRUE(n->wait_rebuild("bdev:///b", 10'000));
}

TEST_F(SlowChild, CreatingANexusOverItDoesNotHoldUpTheManager) {
  auto n0 = e.make("n0", {"bdev:///a"});
  ASSERT_TRUE(n0);
  std::atomic<bool> done{false};
  Result<NexusInfo> r = make_error(Errc::kInternal, "not run");
  std::thread t([&] {
    r = e.mgr->create("n1", 0, {"bdev:///b", silent.uri(kConnectTimeoutMs)});
    done = true;
  });
  ASSERT_TRUE(wait_until([&] { return silent.accepted() >= 1; }));
  EXPECT_LT(elapsed_ms([&] { EXPECT_EQ(e.mgr->list().size(), 1u); }), kQuickMs);
  EXPECT_LT(elapsed_ms([&] { EXPECT_FALSE(e.mgr->find("n1")); }), kQuickMs);
  // The name is taken while it is being created.
  EXPECT_LT(elapsed_ms([&] {
              auto again = e.mgr->create("n1", 0, {"bdev:///c"});
              EXPECT_EQ(again.status().code(), Errc::kAlreadyExists) << again.status().to_string();
            }),
            kQuickMs);
  // Other nexuses are created and destroyed meanwhile.
  EXPECT_LT(elapsed_ms([&] {
              EXPECT_TRUE(e.mgr->create("n2", 0, {"bdev:///c"}));
              EXPECT_TRUE(e.mgr->destroy("n2"));
            }),
            kQuickMs);
  EXPECT_FALSE(done.load()) << "the connect ended before the checks: they prove nothing";
  t.join();
  EXPECT_FALSE(r) << "a nexus over a child that never answered was created";
  EXPECT_FALSE(e.mgr->find("n1"));
  EXPECT_FALSE(e.reg->find("n1"));
  // Its other child was let go: a nexus over it can be created now.
  EXPECT_TRUE(e.mgr->create("n1", 0, {"bdev:///b"})) << "bdev:///b is still claimed";
}

// The registry itself: the module makes the bdev without the registry's lock, so other
// bdevs are created, listed and destroyed meanwhile, and the name stays reserved.
TEST_F(SlowChild, TheRegistryAnswersWhileItConnects) {
  const std::string uri = silent.uri(kConnectTimeoutMs) + "&name=slow";
  std::atomic<bool> done{false};
  Result<bdev::BdevInfo> r = make_error(Errc::kInternal, "not run");
  std::thread t([&] {
    r = e.reg->create(uri);
    done = true;
  });
  ASSERT_TRUE(wait_until([&] { return silent.accepted() >= 1; }));
  EXPECT_LT(elapsed_ms([&] { EXPECT_EQ(e.reg->list().size(), 3u); }), kQuickMs);
  EXPECT_LT(elapsed_ms([&] {
              EXPECT_TRUE(e.reg->create("malloc:///d?size_mb=1"));
              EXPECT_TRUE(e.reg->destroy("d"));
            }),
            kQuickMs);
  EXPECT_FALSE(e.reg->name_free("slow"));
  auto again = e.reg->create("malloc:///slow?size_mb=1");
  EXPECT_EQ(again.status().code(), Errc::kAlreadyExists) << again.status().to_string();
  EXPECT_FALSE(done.load()) << "the connect ended before the checks: they prove nothing";
  t.join();
  EXPECT_FALSE(r);
  EXPECT_TRUE(e.reg->name_free("slow")) << "a failed create keeps its name reserved";
  EXPECT_TRUE(e.reg->create("malloc:///slow?size_mb=1"));
}

}  // namespace
}  // namespace castor::nexus::test
