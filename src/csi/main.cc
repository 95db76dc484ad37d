// castor-csi: Castor's CSI plugin. One binary, three modes:
//   --mode controller  Identity + Controller, a client of castor-control (a Deployment)
//   --mode node        Identity + Node, on every node that mounts volumes (a DaemonSet)
//   --mode all         all three on one socket (single-host set-ups, conformance tests)
// Serves CSI v1 on a UNIX socket (--endpoint unix:///PATH, or $CSI_ENDPOINT); tcp://HOST:PORT
// is accepted for tests that drive a plugin inside a VM. Stops on SIGINT/SIGTERM.
//
// Exit codes: 0 clean shutdown, 1 start-up failure, 2 bad flags.

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/version.h"
#include "control/client/control_endpoints.h"
#include "csi/controller.h"
#include "csi/identity.h"
#include "csi/node.h"
#include "csi/parameters.h"
#include "csi/path_watcher.h"

namespace castor::csi {
namespace {

constexpr const char* kProg = "castor-csi";

struct Flags {
  std::string mode = "all";
  std::string endpoint;
  std::string control;
  uint32_t control_timeout_ms = 30000;
  std::string node_name;
  std::vector<std::string> node_labels;
  int64_t max_volumes = 0;
  std::string state_dir = "/var/lib/castor-csi";
  uint32_t nvme_ctrl_loss_tmo_s = 1800;
  uint32_t path_check_ms = 2000;
  std::string log_level = "info";
  std::string ready_file;
};

int fail(const std::string& msg, int code) {
  fmt::print(stderr, "{}: error: {}\n", kProg, msg);
  return code;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

int run(Flags f) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  auto logger = spdlog::stderr_logger_mt(kProg);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  spdlog::flush_on(spdlog::level::info);

  if (f.endpoint.empty()) {
    const char* env = std::getenv("CSI_ENDPOINT");
    if (!env || !*env) return fail("--endpoint or CSI_ENDPOINT is required", 2);
    f.endpoint = env;
  }
  std::string listen;
  if (f.endpoint.rfind("unix://", 0) == 0) {
    std::string path = f.endpoint.substr(7);
    if (path.empty() || path[0] != '/') return fail("--endpoint unix:///ABSOLUTE/PATH", 2);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    ::unlink(path.c_str());  // a socket left by an earlier run
    listen = "unix:" + path;
  } else if (f.endpoint.rfind("tcp://", 0) == 0) {
    listen = f.endpoint.substr(6);
  } else {
    return fail(fmt::format("--endpoint '{}': want unix:///PATH (or tcp://HOST:PORT for tests)", f.endpoint), 2);
  }
  const bool controller = f.mode == "controller" || f.mode == "all";
  const bool node = f.mode == "node" || f.mode == "all";
  if (controller && f.control.empty()) return fail("--control HOST:PORT is required in this mode", 2);
  if (node && f.node_name.empty()) {
    if (const char* env = std::getenv("NODE_NAME"); env && *env) {
      f.node_name = env;
    } else {
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      f.node_name = host;
    }
  }
  if (node && (f.node_name.empty() || f.node_name.size() > 63)) return fail("--node-name: 1..63 bytes", 2);
  std::map<std::string, std::string> topology;
  for (const auto& l : f.node_labels) {
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0 || l.size() - eq - 1 > 63 || eq > 253) {
      return fail(fmt::format("--node-label '{}': want KEY=VALUE", l), 2);
    }
    topology[l.substr(0, eq)] = l.substr(eq + 1);
  }

  std::shared_ptr<control::ControlEndpoints> endpoints;
  if (!f.control.empty()) {
    endpoints = std::make_shared<control::ControlEndpoints>(split(f.control, ','),
                                                            control::ControlEndpoints::AbortedIs::kAnswer);
  }
  std::unique_ptr<ControllerService> ctl;
  std::unique_ptr<NoController> no_ctl;
  if (controller) {
    ctl = std::make_unique<ControllerService>(endpoints, std::chrono::milliseconds(f.control_timeout_ms));
  } else {
    no_ctl = std::make_unique<NoController>();
  }
  std::unique_ptr<NodeService> nodesvc;
  if (node) {
    auto state = std::make_unique<NodeState>(f.state_dir);
    if (Status s = state->open(); !s) return fail(s.message(), 1);
    NodeOptions o;
    o.node_name = f.node_name;
    o.topology = topology;
    o.max_volumes = f.max_volumes;
    o.initiator.nvme_ctrl_loss_tmo_s = f.nvme_ctrl_loss_tmo_s;
    nodesvc = std::make_unique<NodeService>(o, std::move(state));
  }
  // With castor-control known, the node plugin follows nexuses that move (path_watcher.h).
  std::unique_ptr<PathWatcher> watcher;
  if (nodesvc && endpoints) {
    watcher = std::make_unique<PathWatcher>(nodesvc->state(), nodesvc->locks(), endpoints,
                                            nodesvc->options().initiator,
                                            std::chrono::milliseconds(f.path_check_ms));
  }
  IdentityService identity(controller, [&ctl]() { return ctl ? ctl->check_control() : grpc::Status::OK; });

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&identity);
  if (ctl) builder.RegisterService(ctl.get());
  if (no_ctl) builder.RegisterService(no_ctl.get());
  if (nodesvc) builder.RegisterService(nodesvc.get());
  auto server = builder.BuildAndStart();
  if (!server) return fail(fmt::format("cannot serve on {}", f.endpoint), 1);
  if (!f.ready_file.empty()) {
    const std::string tmp = f.ready_file + ".tmp";
    FILE* out = std::fopen(tmp.c_str(), "w");
    if (!out) return fail(fmt::format("cannot write {}", f.ready_file), 1);
    fmt::print(out, "{{\"pid\":{},\"port\":{}}}\n", ::getpid(), port);
    std::fclose(out);
    std::rename(tmp.c_str(), f.ready_file.c_str());
  }
  spdlog::info("castor-csi {} ({}) serving {} as {}{}", kVersion, f.mode, f.endpoint, kDriverName,
               node ? fmt::format(" on node {}", f.node_name) : std::string());
  if (watcher) watcher->start();

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  if (watcher) watcher->stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (f.endpoint.rfind("unix://", 0) == 0) ::unlink(f.endpoint.substr(7).c_str());
  if (!f.ready_file.empty()) ::unlink(f.ready_file.c_str());
  return 0;
}

}  // namespace
}  // namespace castor::csi

int main(int argc, char** argv) {
  castor::csi::Flags f;
  CLI::App app{"castor-csi: Castor's CSI plugin (driver io.castor.csi)"};
  app.set_version_flag("--version", castor::kVersion);
  app.add_option("--mode", f.mode, "controller, node or all (default all)")
      ->check(CLI::IsMember({"controller", "node", "all"}));
  app.add_option("--endpoint", f.endpoint, "unix:///PATH/csi.sock (default $CSI_ENDPOINT)");
  app.add_option("--control", f.control,
                 "castor-control HOST:PORT[,HOST:PORT...] (required in controller and all modes; in node mode, "
                 "lets the plugin follow a nexus that moves)");
  app.add_option("--control-timeout-ms", f.control_timeout_ms, "deadline of each castor-control call (30000)")
      ->check(CLI::Range(100u, 600000u));
  app.add_option("--node-name", f.node_name, "this node's name, as its castor-engine's --node-name (default $NODE_NAME, else the host name)");
  app.add_option("--node-label", f.node_labels, "KEY=VALUE topology segment reported by NodeGetInfo (repeatable)");
  app.add_option("--max-volumes", f.max_volumes, "volumes this node may attach (0: no limit)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  app.add_option("--state-dir", f.state_dir, "where the node plugin records staged volumes (default /var/lib/castor-csi)");
  app.add_option("--nvme-ctrl-loss-tmo", f.nvme_ctrl_loss_tmo_s,
                 "seconds the kernel keeps reconnecting a lost NVMe/TCP controller (1800)")
      ->check(CLI::Range(0u, 86400u));
  app.add_option("--path-check-ms", f.path_check_ms,
                 "node mode with --control: how often staged NVMe/TCP volumes without a live path are checked (2000)")
      ->check(CLI::Range(100u, 600000u));
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error (default info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--ready-file", f.ready_file, "write {pid, port} here once serving");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    fmt::print(stderr, "castor-csi: error: {}\n", e.what());
    return 2;
  }
  return castor::csi::run(f);
}
