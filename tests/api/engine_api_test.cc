// End-to-end tests of castor-engine's management surface: the real engine binary is
// started on loopback with free ports and driven through the generated gRPC stub,
// castorctl and plain HTTP, asserting what a user sees.

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "castor/v1/engine.grpc.pb.h"
#include "common/status.h"
#include "common/version.h"

extern char** environ;

namespace castor::api {
namespace {

namespace fs = std::filesystem;
namespace v1 = castor::v1;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr uint64_t kMiB = 1024 * 1024;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Starts `argv` with stdout/stderr redirected to files. Returns the pid or -1.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

// Waits up to `timeout` for `pid`; returns its wait status or nullopt if still running.
std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0) return std::nullopt;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

struct CmdResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a program to completion (killed after 60 s).
CmdResult run_program(const std::vector<std::string>& argv, const fs::path& dir) {
  static int seq = 0;
  ++seq;
  fs::path out = dir / ("cmd" + std::to_string(seq) + ".out");
  fs::path err = dir / ("cmd" + std::to_string(seq) + ".err");
  CmdResult r;
  pid_t pid = spawn(argv, out, err);
  if (pid < 0) return r;
  auto st = wait_for(pid, 60s);
  if (!st) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    r.err = "timed out";
    return r;
  }
  r.exit_code = WIFEXITED(*st) ? WEXITSTATUS(*st) : 128 + WTERMSIG(*st);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

// A plain HTTP/1.0 GET on 127.0.0.1:port; returns the whole response (headers + body).
std::string http_get(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string resp;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return resp;
}

// CPU time (user + system) of `pid` in clock ticks, from /proc/<pid>/stat.
long cpu_ticks(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream in(stat.substr(close_paren + 2));
  std::vector<std::string> f;
  for (std::string s; in >> s;) f.push_back(s);
  // After "pid (comm) ": field 3 (state) is f[0]; utime is field 14, stime field 15.
  if (f.size() < 13) return -1;
  return std::stol(f[11]) + std::stol(f[12]);
}

// One castor-engine process with its own temporary directory.
class Engine {
 public:
  Engine() {
    char tmpl[] = "/tmp/castor-api-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~Engine() {
    stop_hard();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  const fs::path& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  std::string log() const { return read_file(dir_ / "engine.err"); }

  // Starts the engine and waits for its ready file. Returns false (with the reason in
  // `error()`) if it exits or does not become ready within 15 s.
  bool start(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {CASTOR_ENGINE_BIN,
                                     "--grpc-listen",
                                     "127.0.0.1:0",
                                     "--metrics-listen",
                                     "127.0.0.1:0",
                                     "--ready-file",
                                     (dir_ / "ready.json").string()};
    if (std::find(extra.begin(), extra.end(), "--log-level") == extra.end()) {
      argv.insert(argv.end(), {"--log-level", "debug"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid_ = spawn(argv, dir_ / "engine.out", dir_ / "engine.err");
    if (pid_ < 0) {
      error_ = "spawn failed";
      return false;
    }
    auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(dir_ / "ready.json")) {
        json j = json::parse(read_file(dir_ / "ready.json"), nullptr, false);
        if (j.is_discarded()) {
          error_ = "ready file is not JSON";
          return false;
        }
        grpc_port_ = j.at("grpc_port").get<int>();
        metrics_port_ = j.at("metrics_port").is_null() ? 0 : j.at("metrics_port").get<int>();
        if (j.at("pid").get<int>() != pid_) {
          error_ = "ready file names another pid";
          return false;
        }
        stub_ = v1::EngineService::NewStub(
            grpc::CreateChannel(endpoint(), grpc::InsecureChannelCredentials()));
        return true;
      }
      if (auto st = wait_for(pid_, 0ms)) {
        pid_ = -1;
        error_ = "engine exited before becoming ready: " + log();
        return false;
      }
      std::this_thread::sleep_for(20ms);
    }
    error_ = "engine did not become ready: " + log();
    return false;
  }
  const std::string& error() const { return error_; }

  // SIGTERM, then the wait status if it exits within `timeout`.
  std::optional<int> terminate(std::chrono::milliseconds timeout) {
    if (pid_ < 0) return std::nullopt;
    kill(pid_, SIGTERM);
    auto st = wait_for(pid_, timeout);
    if (st) pid_ = -1;
    return st;
  }
  void stop_hard() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  v1::EngineService::Stub& stub() { return *stub_; }

  CmdResult ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {CASTORCTL_BIN, "-e", endpoint()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv, dir_);
  }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::string error_;
  std::unique_ptr<v1::EngineService::Stub> stub_;
};

std::unique_ptr<grpc::ClientContext> ctx(std::chrono::seconds timeout = 10s) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + timeout);
  return c;
}

grpc::Status create_bdev(Engine& e, const std::string& uri, v1::BdevInfo* info = nullptr) {
  v1::CreateBdevRequest req;
  req.set_uri(uri);
  v1::BdevInfo tmp;
  return e.stub().CreateBdev(ctx().get(), req, info ? info : &tmp);
}

grpc::Status destroy_bdev(Engine& e, const std::string& name) {
  v1::DestroyBdevRequest req;
  req.set_name(name);
  v1::DestroyBdevResponse resp;
  return e.stub().DestroyBdev(ctx().get(), req, &resp);
}

std::vector<v1::BdevInfo> list_bdevs(Engine& e) {
  v1::ListBdevsResponse resp;
  grpc::Status s = e.stub().ListBdevs(ctx().get(), v1::ListBdevsRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.bdevs().begin(), resp.bdevs().end()};
}

Result<v1::BenchmarkResult> benchmark(Engine& e, const std::string& bdev,
                                      const std::string& workload, double seconds) {
  v1::RunBenchmarkRequest req;
  req.set_bdev(bdev);
  req.set_workload(workload);
  req.set_duration_s(seconds);
  req.set_queue_depth(8);
  v1::BenchmarkResult r;
  grpc::Status s = e.stub().RunBenchmark(ctx(30s).get(), req, &r);
  if (!s.ok()) return Status(Errc::kInternal, s.error_message());
  return r;
}

// The table row (split on whitespace) whose first cell is `first`, or empty.
std::vector<std::string> table_row(const std::string& table, const std::string& first) {
  for (const auto& l : lines_of(table)) {
    std::istringstream in(l);
    std::vector<std::string> cells;
    for (std::string c; in >> c;) cells.push_back(c);
    if (!cells.empty() && cells[0] == first) return cells;
  }
  return {};
}

// Expects a failed castorctl run: exit 1, nothing on stdout, one error line.
void expect_ctl_error(const CmdResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_EQ(lines[0].rfind("castorctl: error: ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(needle), std::string::npos) << lines[0];
}

class EngineApiTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(engine_.start({"--reactors", "2"})) << engine_.error(); }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- engine log ----\n" << engine_.log();
  }
  Engine engine_;
};

TEST_F(EngineApiTest, EngineInfoOverGrpcAndCli) {
  v1::EngineInfo info;
  grpc::Status s = engine_.stub().GetEngineInfo(ctx().get(), v1::GetEngineInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.version(), kVersion);
  EXPECT_EQ(info.reactor_count(), 2u);
  EXPECT_EQ(info.cpus_size(), 2);
  EXPECT_FALSE(info.poll_mode());
  EXPECT_EQ(info.pid(), engine_.pid());
  EXPECT_GE(info.uptime_seconds(), 0.0);

  auto r = engine_.ctl({"engine", "info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(table_row(r.out, "version"), (std::vector<std::string>{"version", kVersion}));
  EXPECT_EQ(table_row(r.out, "reactors"), (std::vector<std::string>{"reactors", "2"}));
  EXPECT_EQ(table_row(r.out, "pid"),
            (std::vector<std::string>{"pid", std::to_string(engine_.pid())}));

  r = engine_.ctl({"-o", "json", "engine", "info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["pid"].get<int>(), engine_.pid());
  EXPECT_EQ(j["reactors"].get<int>(), 2);
  EXPECT_EQ(j["version"].get<std::string>(), kVersion);
  EXPECT_EQ(j["cpus"].size(), 2u);
}

TEST_F(EngineApiTest, CreateMallocAndFileBdevsAndListThem) {
  auto r = engine_.ctl({"bdev", "create", "malloc:///m0?size_mb=64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto row = table_row(r.out, "m0");
  ASSERT_FALSE(row.empty()) << r.out;
  EXPECT_EQ(row[1], "malloc");
  EXPECT_EQ(row[2] + " " + row[3], "64.0 MiB");

  fs::path img = engine_.dir() / "disk0.img";
  v1::BdevInfo file_info;
  grpc::Status s = create_bdev(engine_, "file://" + img.string() + "?size_mb=8", &file_info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(file_info.size_bytes(), 8 * kMiB);
  EXPECT_EQ(file_info.size_bytes(), uint64_t{file_info.block_size()} * file_info.num_blocks());
  EXPECT_FALSE(file_info.name().empty());
  EXPECT_TRUE(fs::exists(img));

  auto bdevs = list_bdevs(engine_);
  ASSERT_EQ(bdevs.size(), 2u);
  EXPECT_EQ(bdevs[0].name(), "m0");
  EXPECT_EQ(bdevs[0].module(), "malloc");
  EXPECT_EQ(bdevs[0].size_bytes(), 64 * kMiB);
  EXPECT_EQ(bdevs[0].uri(), "malloc:///m0?size_mb=64");
  EXPECT_FALSE(bdevs[0].uuid().empty());
  EXPECT_EQ(bdevs[1].name(), file_info.name());
  EXPECT_EQ(bdevs[1].size_bytes(), 8 * kMiB);

  r = engine_.ctl({"bdev", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0].rfind("NAME", 0), 0u);
  row = table_row(r.out, "m0");
  ASSERT_GE(row.size(), 4u);
  EXPECT_EQ(row[2] + " " + row[3], "64.0 MiB");
  row = table_row(r.out, file_info.name());
  ASSERT_GE(row.size(), 4u);
  EXPECT_EQ(row[2] + " " + row[3], "8.0 MiB");
  // Columns are aligned: every row starts its SIZE cell at the header's offset.
  auto size_col = lines[0].find("SIZE");
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i][size_col - 1], ' ');
    EXPECT_NE(lines[i][size_col], ' ') << lines[i];
  }

  r = engine_.ctl({"-o", "json", "bdev", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["name"], "m0");
  EXPECT_EQ(j[0]["size_bytes"].get<uint64_t>(), 64 * kMiB);
  EXPECT_EQ(j[1]["size_bytes"].get<uint64_t>(), 8 * kMiB);
  EXPECT_EQ(j[0]["block_size"].get<uint64_t>() * j[0]["num_blocks"].get<uint64_t>(), 64 * kMiB);

  r = engine_.ctl({"bdev", "destroy", "m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(destroy_bdev(engine_, file_info.name()).ok());
  EXPECT_TRUE(list_bdevs(engine_).empty());
}

TEST_F(EngineApiTest, DuplicateNameIsAlreadyExists) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=8").ok());
  grpc::Status s = create_bdev(engine_, "malloc:///m0?size_mb=16");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_EQ(s.error_message().find('\n'), std::string::npos);
  EXPECT_NE(s.error_message().find("m0"), std::string::npos) << s.error_message();

  auto r = engine_.ctl({"bdev", "create", "malloc:///m0?size_mb=16"});
  expect_ctl_error(r, "m0");

  auto bdevs = list_bdevs(engine_);
  ASSERT_EQ(bdevs.size(), 1u);
  EXPECT_EQ(bdevs[0].size_bytes(), 8 * kMiB);
}

TEST_F(EngineApiTest, DestroyUnknownBdevIsNotFound) {
  grpc::Status s = destroy_bdev(engine_, "nope");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  expect_ctl_error(engine_.ctl({"bdev", "destroy", "nope"}), "nope");
  v1::GetBdevStatsRequest req;
  req.set_name("nope");
  v1::GetBdevStatsResponse resp;
  s = engine_.stub().GetBdevStats(ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(EngineApiTest, BadUrisAreInvalidArgumentAndCreateNothing) {
  for (const std::string uri : {"m0", "bogus:///x", "malloc:///m1?size_mb=abc",
                                "malloc:///m2?size_mb=8&blk_size=1000", ""}) {
    grpc::Status s = create_bdev(engine_, uri);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << uri << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << uri;
    EXPECT_EQ(s.error_message().find('\n'), std::string::npos) << uri;
  }
  expect_ctl_error(engine_.ctl({"bdev", "create", "malloc:///m1?size_mb=abc"}), "size_mb");
  EXPECT_TRUE(list_bdevs(engine_).empty());
}

TEST_F(EngineApiTest, FaultDrillBenchmarkStatsAndMetrics) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=64").ok());
  auto r = engine_.ctl({"bdev", "create", "fault:///f0?base=m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // Inject read errors through castorctl.
  r = engine_.ctl({"-o", "json", "fault", "inject", "f0", "--mode", "error", "--op", "read",
                   "--status", "io_error"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  uint64_t id = json::parse(r.out)["id"].get<uint64_t>();
  EXPECT_GT(id, 0u);

  auto res = benchmark(engine_, "f0", "randread", 0.5);
  ASSERT_TRUE(res.is_ok()) << res.status().message();
  EXPECT_GT(res->errors(), 0u);

  v1::ListFaultsRequest lreq;
  lreq.set_bdev("f0");
  v1::ListFaultsResponse lresp;
  grpc::Status s = engine_.stub().ListFaults(ctx().get(), lreq, &lresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(lresp.rules_size(), 1);
  EXPECT_EQ(lresp.rules(0).id(), id);
  EXPECT_EQ(lresp.rules(0).rule().mode(), "error");
  EXPECT_EQ(lresp.rules(0).rule().ops_size(), 1);
  EXPECT_GT(lresp.rules(0).fired(), 0u);
  EXPECT_GE(lresp.rules(0).matched(), lresp.rules(0).fired());

  r = engine_.ctl({"fault", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto row = table_row(r.out, "f0");
  ASSERT_GE(row.size(), 4u) << r.out;
  EXPECT_EQ(row[1], std::to_string(id));
  EXPECT_EQ(row[2], "error");
  EXPECT_EQ(row[3], "read");

  // Errors show up in the fault bdev's stats.
  r = engine_.ctl({"-o", "json", "bdev", "stats", "f0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json st = json::parse(r.out);
  ASSERT_EQ(st.size(), 1u);
  uint64_t read_errors = 0;
  for (const auto& op : st[0]["ops"]) {
    if (op["op"] == "read") read_errors = op["errors"].get<uint64_t>();
  }
  EXPECT_GT(read_errors, 0u);

  // The base cannot be destroyed while the fault bdev holds it.
  s = destroy_bdev(engine_, "m0");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  expect_ctl_error(engine_.ctl({"bdev", "destroy", "m0"}), "m0");

  // Clear; the next benchmark runs clean.
  r = engine_.ctl({"fault", "clear", "f0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = engine_.ctl({"-o", "json", "fault", "list", "f0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json::parse(r.out).empty()) << r.out;

  r = engine_.ctl(
      {"-o", "json", "bdev", "perf", "f0", "--workload", "randrw", "--time", "0.5", "--qd", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json perf = json::parse(r.out);
  EXPECT_GT(perf["ios"].get<uint64_t>(), 0u);
  EXPECT_EQ(perf["errors"].get<uint64_t>(), 0u);
  EXPECT_GT(perf["iops"].get<double>(), 0.0);

  // The base saw the I/O.
  r = engine_.ctl({"bdev", "stats", "m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  row = table_row(r.out, "m0");
  ASSERT_GE(row.size(), 3u) << r.out;
  EXPECT_EQ(row[1], "read");
  EXPECT_GT(std::stoull(row[2]), 0u) << r.out;

  v1::GetBdevStatsResponse sresp;
  s = engine_.stub().GetBdevStats(ctx().get(), v1::GetBdevStatsRequest(), &sresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(sresp.bdevs_size(), 2);
  uint64_t m0_ops = 0;
  for (const auto& b : sresp.bdevs()) {
    if (b.name() != "m0") continue;
    for (const auto& op : b.ops()) m0_ops += op.ops();
  }
  EXPECT_GT(m0_ops, 0u);

  // Prometheus sees it too.
  ASSERT_GT(engine_.metrics_port(), 0);
  std::string metrics = http_get(engine_.metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("200 OK"), std::string::npos) << metrics.substr(0, 200);
  EXPECT_NE(metrics.find("castor_bdev_ops_total{bdev=\"m0\",op=\"read\"}"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("castor_bdev_errors_total{bdev=\"f0\",op=\"read\"}"), std::string::npos);
  EXPECT_NE(metrics.find("castor_bdev_latency_seconds_bucket{bdev=\"m0\",op=\"read\",le="),
            std::string::npos);
  EXPECT_NE(metrics.find("castor_engine_reactors 2"), std::string::npos);
  EXPECT_NE(metrics.find("castor_engine_info{version=\"" + std::string(kVersion) + "\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("castor_engine_uptime_seconds"), std::string::npos);

  ASSERT_TRUE(destroy_bdev(engine_, "f0").ok());
  ASSERT_TRUE(destroy_bdev(engine_, "m0").ok());
}

TEST_F(EngineApiTest, FaultCallsOnNonFaultBdevsFail) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=8").ok());
  auto r = engine_.ctl({"fault", "inject", "m0", "--mode", "error"});
  expect_ctl_error(r, "m0");
  r = engine_.ctl({"fault", "inject", "nope", "--mode", "error"});
  expect_ctl_error(r, "nope");
  // Usage errors are caught before contacting the engine.
  r = engine_.ctl({"fault", "inject", "m0", "--mode", "explode"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
}

TEST_F(EngineApiTest, SigtermExitsZeroWithinFiveSeconds) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=8").ok());
  auto st = engine_.terminate(5s);
  ASSERT_TRUE(st.has_value()) << "engine still running 5 s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*st)) << "status " << *st;
  EXPECT_EQ(WEXITSTATUS(*st), 0);
  EXPECT_FALSE(fs::exists(engine_.dir() / "ready.json"));
}

TEST(EngineProcessTest, UnreachableEngineIsOneLineError) {
  char tmpl[] = "/tmp/castor-api-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  // Port 1 on loopback: nothing listens there.
  auto r = run_program({CASTORCTL_BIN, "-e", "127.0.0.1:1", "--timeout", "5", "bdev", "list"}, dir);
  expect_ctl_error(r, "cannot reach engine at 127.0.0.1:1");
  fs::remove_all(dir);
}

TEST(EngineProcessTest, BadConfigExitsTwoWithOneLine) {
  char tmpl[] = "/tmp/castor-api-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  std::ofstream(dir / "bad.yaml") << "reactors: 2\nno_such_key: 1\n";
  const std::vector<std::vector<std::string>> cases = {
      {"--reactors", "0"},
      {"--log-level", "loud"},
      {"--log-format", "xml"},
      {"--grpc-listen", "nowhere"},
      {"--cores", "0", "--reactors", "1"},
      {"--no-such-flag"},
      {"--config", (dir / "missing.yaml").string()},
      {"--config", (dir / "bad.yaml").string()},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {CASTOR_ENGINE_BIN};
    argv.insert(argv.end(), c.begin(), c.end());
    auto r = run_program(argv, dir);
    EXPECT_EQ(r.exit_code, 2) << c[0] << ": " << r.err;
    auto lines = lines_of(r.err);
    ASSERT_EQ(lines.size(), 1u) << c[0] << ": " << r.err;
    EXPECT_EQ(lines[0].rfind("castor-engine: error: ", 0), 0u) << lines[0];
  }
  fs::remove_all(dir);
}

TEST(EngineProcessTest, BadStartupBdevExitsOneWithOneLine) {
  Engine e;
  EXPECT_FALSE(e.start({"--bdev", "malloc:///m0?size_mb=abc"}));
  auto lines = lines_of(e.log());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(
      std::count_if(lines.begin(), lines.end(),
                    [](const std::string& l) { return l.rfind("castor-engine: error: ", 0) == 0; }),
      1);
  EXPECT_NE(e.log().find("size_mb"), std::string::npos) << e.log();
}

TEST(EngineProcessTest, YamlConfigAndJsonLogs) {
  Engine e;
  std::ofstream(e.dir() / "engine.yaml") << "reactors: 2\n"
                                            "log-format: json\n"
                                            "log-level: info\n"
                                            "bdev:\n"
                                            "  - malloc:///y0?size_mb=4\n";
  ASSERT_TRUE(e.start({"--config", (e.dir() / "engine.yaml").string(), "--log-level", "info"}))
      << e.error();
  auto bdevs = list_bdevs(e);
  ASSERT_EQ(bdevs.size(), 1u);
  EXPECT_EQ(bdevs[0].name(), "y0");
  v1::EngineInfo info;
  ASSERT_TRUE(e.stub().GetEngineInfo(ctx().get(), v1::GetEngineInfoRequest(), &info).ok());
  EXPECT_EQ(info.reactor_count(), 2u);
  auto st = e.terminate(5s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(WEXITSTATUS(*st), 0);
  auto lines = lines_of(e.log());
  ASSERT_FALSE(lines.empty());
  for (const auto& l : lines) {
    json j = json::parse(l, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << l;
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("logger") &&
                j.contains("msg"))
        << l;
  }
}

TEST(EngineProcessTest, IdleEngineUsesUnderOnePercentOfACore) {
  Engine e;
  ASSERT_TRUE(e.start({"--reactors", "2", "--log-level", "warn"})) << e.error();
  std::this_thread::sleep_for(1s);  // let start-up settle
  long before = cpu_ticks(e.pid());
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(10s);
  long after = cpu_ticks(e.pid());
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_GE(before, 0);
  ASSERT_GE(after, before);
  double cpu_s = static_cast<double>(after - before) / static_cast<double>(sysconf(_SC_CLK_TCK));
  EXPECT_LT(cpu_s / wall, 0.01) << "idle engine used " << cpu_s << " s CPU in " << wall << " s";
  auto st = e.terminate(5s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(WEXITSTATUS(*st), 0);
}

}  // namespace
}  // namespace castor::api
