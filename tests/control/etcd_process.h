#pragma once
// A real single-member etcd (Debian's /usr/bin/etcd, package etcd-server) for tests: on
// free loopback ports, in a fresh temporary data directory, stopped by its PID. It can
// be stopped (or killed) and started again on the same data directory and ports, for
// "etcd restarted under load" tests. Header-only; needs no gRPC: readiness is etcd's
// HTTP /health on the client port.
//
//   castor::control::testing::EtcdProcess etcd;
//   ASSERT_TRUE(etcd.start()) << etcd.error();
//   auto store = make_store(etcd.uri());  // "etcd://127.0.0.1:PORT"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace castor::control::testing {

class EtcdProcess {
 public:
  static constexpr const char* kBinary = "/usr/bin/etcd";

  // Picks the ports and makes the directory; starts nothing.
  EtcdProcess() {
    char tmpl[] = "/tmp/castor-etcd-test-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    dir_ = d ? d : "";
    // Both sockets stay bound until both ports are known, so the two differ.
    int a = bind_any_port(&client_port_);
    int b = bind_any_port(&peer_port_);
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
  // Stops etcd (SIGTERM, then SIGKILL) and removes the directory.
  ~EtcdProcess() {
    stop();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Starts etcd (again, after stop() or kill9(): same data directory, same ports, so the
  // data survives) and waits up to `timeout` until it reports healthy (it has elected
  // itself leader). False with error() set if the binary is missing, the process exits
  // or never becomes healthy (then it is killed).
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    if (running()) return true;
    if (::access(kBinary, X_OK) != 0) {
      error_ = std::string(kBinary) +
               " is missing: install etcd-server (run scripts/setup.sh, which installs every "
               "package the tests need)";
      return false;
    }
    if (dir_.empty() || client_port_ == 0 || peer_port_ == 0) {
      error_ = "no temporary directory or no free port";
      return false;
    }
    const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::vector<std::string> argv = {kBinary,
                                     "--name=castor-test",
                                     "--data-dir=" + (dir_ / "data").string(),
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=castor-test=" + peer,
                                     "--initial-cluster-state=new",
                                     "--logger=zap",
                                     "--log-outputs=stderr"};
    ++starts_;
    pid_ = spawn(argv, dir_ / ("etcd-" + std::to_string(starts_) + ".log"));
    if (pid_ < 0) {
      error_ = "cannot spawn " + std::string(kBinary);
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "etcd exited during start-up:\n" + log();
        return false;
      }
      if (http_get(client_port_, "/health").find("\"health\":\"true\"") != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill9();
    error_ = "etcd did not become healthy:\n" + log();
    return false;
  }

  // SIGTERM, waits up to 10 s, then SIGKILL. No-op if not running.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!wait_exit(std::chrono::seconds(10))) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }

  // stop() then start(): same data directory, same ports.
  bool restart(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    stop();
    return start(timeout);
  }

  // SIGKILL (a crash: no clean shutdown), waits for the process to go.
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // "127.0.0.1:PORT" (the client port).
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }
  // "etcd://127.0.0.1:PORT", for make_store().
  std::string uri() const { return "etcd://" + endpoint(); }
  int client_port() const { return client_port_; }
  int peer_port() const { return peer_port_; }
  const std::filesystem::path& dir() const { return dir_; }
  // Why the last start() failed.
  const std::string& error() const { return error_; }
  // etcd's log (stderr) of the latest start.
  std::string log() const {
    std::ifstream in(dir_ / ("etcd-" + std::to_string(starts_) + ".log"));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // A loopback port nobody listens on now (etcd cannot bind port 0 and report it, so
  // tests pick ports this way); also handy as a dead endpoint.
  static int free_port() {
    int port = 0;
    int fd = bind_any_port(&port);
    if (fd >= 0) ::close(fd);
    return port;
  }

 private:
  // Binds a TCP socket to 127.0.0.1:0; returns it (still bound) and its port.
  static int bind_any_port(int* port) {
    *port = 0;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(fd);
      return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
  }

  static pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // etcd reads ETCD_* variables as flags: the caller's environment must not configure it.
    std::vector<std::string> env_store;
    for (char** e = environ; *e; ++e) {
      if (std::string_view(*e).starts_with("ETCD")) continue;
      env_store.emplace_back(*e);
    }
    std::vector<char*> env;
    for (auto& e : env_store) env.push_back(e.data());
    env.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
  }

  bool wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (::waitpid(pid_, nullptr, WNOHANG) != 0) return true;  // exited (or not our child)
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // A plain HTTP/1.0 GET on 127.0.0.1:port; the whole response, "" on failure.
  static std::string http_get(int port, const std::string& path) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "";
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
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

  std::filesystem::path dir_;
  int client_port_ = 0;
  int peer_port_ = 0;
  int starts_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

}  // namespace castor::control::testing
