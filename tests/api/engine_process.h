#pragma once
// Process-level test support for tests/api: spawning programs, one castor-engine
// process with its own temporary directory (started on loopback with free ports, found
// through its ready file), castorctl runs and their output.

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
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "castor/v1/engine.grpc.pb.h"

extern char** environ;

namespace castor::api::testing {

namespace fs = std::filesystem;
namespace v1 = castor::v1;
using json = nlohmann::json;
using namespace std::chrono_literals;

// A plain HTTP/1.0 GET on 127.0.0.1:port; returns the whole response (headers + body),
// or "" if the connection fails.
inline std::string http_get(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return "";
  }
  std::string resp;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return resp;
}

// The value of one series in a Prometheus text exposition: `series` is the metric name
// with its labels exactly as exposed (`castor_x{a="b"}`, or a bare name). Nullopt if the
// series is absent.
inline std::optional<double> metric_value(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

// The full path of `prog` on $PATH, or empty.
inline std::string find_program(const std::string& prog) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    fs::path p = fs::path(dirs.substr(start, end - start)) / prog;
    if (end > start && ::access(p.c_str(), X_OK) == 0) return p.string();
    start = end + 1;
  }
  return "";
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Starts `argv` with stdout/stderr redirected to files. Returns the pid or -1.
inline pid_t spawn(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
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
inline std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds timeout) {
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
inline CmdResult run_program(const std::vector<std::string>& argv, const fs::path& dir) {
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
  // One series' value from the engine's /metrics now (see metric_value()).
  std::optional<double> metric(const std::string& series) const {
    return metric_value(http_get(metrics_port_, "/metrics"), series);
  }
  // The ready file of the latest start, as written by the engine.
  const json& ready() const { return ready_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  // The log (stderr) of the latest start, and of every start in order.
  std::string log() const { return read_file(log_path()); }
  std::string all_logs() const {
    std::string out;
    for (int i = 1; i <= starts_; ++i) {
      out += "---- start " + std::to_string(i) + " ----\n" + read_file(log_path(i));
    }
    return out;
  }

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
    // Node-local state (nexus health records) stays in the test's directory, and
    // survives restarts of this Engine.
    if (std::find(extra.begin(), extra.end(), "--state-dir") == extra.end()) {
      argv.insert(argv.end(), {"--state-dir", (dir_ / "state").string()});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    // A killed engine leaves its ready file behind; each start gets its own log.
    std::error_code ec;
    fs::remove(dir_ / "ready.json", ec);
    ++starts_;
    pid_ = spawn(argv, dir_ / "engine.out", log_path());
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
        ready_ = j;
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
  // Drops this client's channel first: an idle connection would hold the engine's gRPC
  // shutdown for its whole grace period.
  std::optional<int> terminate(std::chrono::milliseconds timeout) {
    if (pid_ < 0) return std::nullopt;
    stub_.reset();
    kill(pid_, SIGTERM);
    auto st = wait_for(pid_, timeout);
    if (st) pid_ = -1;
    return st;
  }
  // SIGKILL, waits for the process to go.
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
  fs::path log_path(int start = 0) const {
    return dir_ / ("engine-" + std::to_string(start ? start : starts_) + ".err");
  }

  fs::path dir_;
  int starts_ = 0;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::string error_;
  json ready_;
  std::unique_ptr<v1::EngineService::Stub> stub_;
};

inline std::unique_ptr<grpc::ClientContext> ctx(std::chrono::seconds timeout = 10s) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + timeout);
  return c;
}

// WriteBlocks / ReadBlocks of `bdev` through gRPC.
inline grpc::Status write_blocks(v1::EngineService::Stub& stub, const std::string& bdev, uint64_t offset,
                                 const std::string& data, bool flush = true) {
  v1::WriteBlocksRequest req;
  req.set_bdev(bdev);
  req.set_offset_bytes(offset);
  req.set_data(data);
  req.set_flush(flush);
  v1::WriteBlocksResponse resp;
  return stub.WriteBlocks(ctx(30s).get(), req, &resp);
}
inline grpc::Status read_blocks(v1::EngineService::Stub& stub, const std::string& bdev, uint64_t offset,
                                uint64_t length, std::string* data) {
  v1::ReadBlocksRequest req;
  req.set_bdev(bdev);
  req.set_offset_bytes(offset);
  req.set_length(length);
  v1::ReadBlocksResponse resp;
  grpc::Status s = stub.ReadBlocks(ctx(30s).get(), req, &resp);
  if (s.ok()) *data = resp.data();
  return s;
}

// The table row (split on whitespace) whose first cell is `first`, or empty.
inline std::vector<std::string> table_row(const std::string& table, const std::string& first) {
  for (const auto& l : lines_of(table)) {
    std::istringstream in(l);
    std::vector<std::string> cells;
    for (std::string c; in >> c;) cells.push_back(c);
    if (!cells.empty() && cells[0] == first) return cells;
  }
  return {};
}

// Expects a failed castorctl run: exit 1, nothing on stdout, one error line.
inline void expect_ctl_error(const CmdResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_EQ(lines[0].rfind("castorctl: error: ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(needle), std::string::npos) << lines[0];
}

// castorctl ... -o json, parsed (null when it fails).
inline json ctl_json(Engine& e, std::vector<std::string> args) {
  args.insert(args.end(), {"-o", "json"});
  auto r = e.ctl(args);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  if (r.exit_code != 0) return json();
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}


}  // namespace castor::api::testing
