// castor-engine: one node's data plane. Start-up order: parse config, block the
// termination signals (so every thread inherits the mask and only main's sigwait sees
// them), start reactors, create the bdev registry and the pool manager, create the
// start-up bdevs, import the start-up pools, create the nexus manager (its health store
// in <state-dir>/nexus), start the NVMe-oF and NBD listeners, make
// the start-up shares and exports, serve gRPC and metrics, write the ready file, wait
// for SIGINT/SIGTERM. Shutdown runs the same steps backwards: gRPC server, NBD server,
// NVMe-oF target (its subsystems release their bdevs), nexus manager (destroys every
// nexus, releasing the replicas it claims; health records are kept; one stuck on a hung
// child is given up, its rebuild copies aborted or kept, never freed under them, before
// the registry destroys what is left), pool manager (exports every pool), registry,
// reactors.
//
// Exit codes: 0 clean shutdown, 1 start-up failure (state directory, bdev, pool import,
// bind, share, export, ready file), 2 bad configuration.

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "api/front_ends.h"
#include "api/server.h"
#include "bdev/registry.h"
#include "common/version.h"
#include "engine/config.h"
#include "engine/control_agent.h"
#include "engine/logging.h"
#include "nexus/health_store.h"
#include "nexus/manager.h"
#include "iscsi/front_end.h"
#include "nbd/front_end.h"
#include "nvmf/host/nvmf_bdev.h"
#include "nvmf/target/front_end.h"
#include "pool/pool.h"
#include "reactor/reactor.h"

namespace castor::engine {
namespace {

constexpr const char* kProg = "castor-engine";

void print_error(const std::string& reason) {
  std::string line = reason;
  for (auto& c : line) {
    if (c == '\n') c = ' ';
  }
  fmt::print(stderr, "{}: error: {}\n", kProg, line);
  std::fflush(stderr);
}

// Writes `content` to `path` atomically: a temporary file beside it, then rename(), so
// a reader sees either nothing or the whole file.
Status write_file_atomic(const std::string& path, const std::string& content) {
  std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(Errc::kIoError, "cannot write ready file '{}': {}", path,
                      std::strerror(errno));
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return make_error(Errc::kIoError, "cannot write ready file '{}': {}", path,
                        std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::kIoError, "cannot write ready file '{}': {}", path, std::strerror(err));
  }
  return Status::ok();
}

std::string cpu_list_text(const std::vector<int>& cpus) {
  std::string s;
  for (int c : cpus) s += (s.empty() ? "" : ",") + std::to_string(c);
  return s;
}

// The reason of a failed import without the pool layer's own "cannot import" prefix,
// which the engine's error line already says.
std::string import_reason(const std::string& msg) {
  static const std::string kPrefix = "cannot import: ";
  if (msg.rfind(kPrefix, 0) == 0) return msg.substr(kPrefix.size());
  return msg;
}

// Creates <state_dir>/nexus (and its parents) and checks that it is a writable
// directory; returns that path.
Result<std::filesystem::path> prepare_state_dir(const std::string& state_dir) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(state_dir) / "nexus";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return make_error(Errc::kIoError, "cannot create state directory '{}': {}", dir.string(),
                      ec.message());
  }
  if (!fs::is_directory(dir, ec)) {
    return make_error(Errc::kIoError, "state directory '{}' is not a directory", dir.string());
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return make_error(Errc::kIoError, "state directory '{}' is not writable: {}", dir.string(),
                      std::strerror(errno));
  }
  return dir;
}

// Runs with reactors, the registry, the pool manager and the nexus manager up; returns
// the exit code.
// Everything it starts is stopped before it returns.
int serve(const EngineConfig& cfg, bdev::BdevRegistry& registry, pool::PoolManager& pools,
          nexus::NexusManager& nexuses, reactor::ReactorGroup& reactors, const api::EngineIdentity& identity,
          const sigset_t& stop_signals, std::shared_ptr<ControlEndpoints> control) {
  for (const auto& uri : cfg.bdevs) {
    auto info = registry.create(uri);
    if (!info) {
      print_error(fmt::format("cannot create bdev '{}': {}", uri, info.status().message()));
      return 1;
    }
    spdlog::info("created bdev '{}' ({}, {} x {} bytes) from {}", info->name, info->module,
                 info->num_blocks, info->block_size, uri);
  }

  for (const auto& disks : cfg.pool_imports) {
    std::string list;
    for (const auto& d : disks) list += (list.empty() ? "" : ",") + d;
    auto info = pools.import(disks);
    if (!info) {
      print_error(fmt::format("cannot import pool from {}: {}", list,
                              import_reason(info.status().message())));
      return 1;
    }
    spdlog::info("imported pool '{}' from {}: {} replica(s), {}/{} clusters used", info->name, list,
                 info->replicas, info->used_clusters, info->total_clusters);
  }

  // The front ends, registered once each: every one exists even without a listener, so
  // the API can add listeners later. A new protocol registers here.
  api::FrontEnds front_ends(registry, pools);
  {
    const uint64_t budget = cfg.target_buffer_mb << 20;
    nvmf::TargetOptions nvmf_options;
    nvmf_options.buffer_budget_bytes = budget;
    front_ends.add(std::make_unique<nvmf::NvmfFrontEnd>(reactors, registry, nvmf_options));
    nbd::ServerOptions nbd_options;
    nbd_options.keepalive_s = cfg.nbd_keepalive_s;
    nbd_options.buffer_budget_bytes = budget;
    front_ends.add(std::make_unique<nbd::NbdFrontEnd>(reactors, registry, nbd_options));
    iscsi::TargetOptions iscsi_options;
    iscsi_options.nop_in_interval_ms = cfg.iscsi_nop_in_ms;
    iscsi_options.nop_in_timeout_ms = 2 * cfg.iscsi_nop_in_ms;
    iscsi_options.buffer_budget_bytes = budget;
    front_ends.add(
        std::make_unique<iscsi::IscsiFrontEnd>(reactors, registry, std::move(iscsi_options)));
  }
  if (!cfg.node_address.empty()) front_ends.set_advertised_host(cfg.node_address);
  // --<protocol>-listen, and the bound ports for the ready line.
  auto listen = [&](const char* protocol, const std::string& address) -> Result<uint16_t> {
    auto port = front_ends.listen(protocol, address);
    if (!port) {
      print_error(fmt::format("{}-listen '{}': {}", protocol, address, port.status().message()));
    }
    return port;
  };
  std::vector<int> nvmf_ports;
  for (const auto& addr : cfg.nvmf_listen) {
    auto port = listen("nvmf", addr);
    if (!port) return 1;
    nvmf_ports.push_back(*port);
  }
  int nbd_port = 0;
  if (!cfg.nbd_listen.empty()) {
    auto port = listen("nbd", cfg.nbd_listen);
    if (!port) return 1;
    nbd_port = *port;
  }
  int iscsi_port = 0;
  if (!cfg.iscsi_listen.empty()) {
    auto port = listen("iscsi", cfg.iscsi_listen);
    if (!port) return 1;
    iscsi_port = *port;
  }
  // --nvmf-share, --nbd-export, --iscsi-export.
  auto add_export = [&](const char* protocol, frontend::ExportSpec spec) {
    const std::string bdev = spec.bdev;
    auto e = front_ends.add_export(protocol, std::move(spec));
    if (!e) {
      print_error(fmt::format("cannot export bdev '{}' over {}: {}", bdev,
                              front_ends.find(protocol)->display_name(), e.status().message()));
    }
    return e.is_ok();
  };
  for (const auto& bdev : cfg.nvmf_shares) {
    frontend::ExportSpec spec;
    spec.bdev = bdev;
    if (!add_export("nvmf", std::move(spec))) return 1;
  }
  for (const auto& e : cfg.nbd_exports) {
    frontend::ExportSpec spec;
    spec.bdev = e.bdev;
    spec.name = e.name;
    spec.read_only = e.read_only;
    if (!add_export("nbd", std::move(spec))) return 1;
  }
  for (const auto& e : cfg.iscsi_exports) {
    frontend::ExportSpec spec;
    spec.bdev = e.bdev;
    if (!e.iqn.empty()) spec.name = e.iqn;
    spec.read_only = e.read_only;
    if (!add_export("iscsi", std::move(spec))) return 1;
  }
  api::ApiServer server(registry, pools, nexuses, front_ends, reactors, identity);
  auto grpc_port = server.start_grpc(cfg.grpc_listen);
  if (!grpc_port) {
    print_error(grpc_port.status().message());
    return 1;
  }
  int metrics_port = 0;
  if (cfg.metrics_listen != "none") {
    auto p = server.start_metrics(cfg.metrics_listen);
    if (!p) {
      print_error(p.status().message());
      return 1;
    }
    metrics_port = *p;
  }

  if (!cfg.ready_file.empty()) {
    nlohmann::ordered_json ready = {{"pid", ::getpid()}, {"grpc_port", *grpc_port}};
    ready["metrics_port"] =
        metrics_port ? nlohmann::ordered_json(metrics_port) : nlohmann::ordered_json();
    ready["nvmf_ports"] = nvmf_ports;
    ready["nbd_port"] = nbd_port;
    ready["iscsi_port"] = iscsi_port;
    if (Status s = write_file_atomic(cfg.ready_file, ready.dump() + "\n"); !s) {
      print_error(s.message());
      return 1;
    }
  }
  spdlog::info("castor-engine ready (pid {}, gRPC port {}, metrics port {})", ::getpid(),
               *grpc_port, metrics_port ? std::to_string(metrics_port) : "none");
  std::unique_ptr<ControlAgent> agent;
  if (control) {
    agent = std::make_unique<ControlAgent>(cfg, control, pools, front_ends, *grpc_port);
    agent->start();
  }

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  if (agent) agent->stop();  // deregister first: the control plane stops using this node

  // Idle client connections also hold a gRPC shutdown until the grace period ends, so
  // keep it short: a SIGTERM must not take seconds.
  server.stop(std::chrono::seconds(1));
  spdlog::info("API stopped");
  front_ends.stop();
  if (!cfg.ready_file.empty()) ::unlink(cfg.ready_file.c_str());
  return 0;
}

int run(const EngineConfig& cfg) {
  // Before any thread exists, so all of them inherit the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  setup_logging(cfg.log_format, cfg.log_level);
  api::EngineIdentity identity;
  identity.poll_mode = cfg.poll;
  spdlog::info("castor-engine {} starting: pid {}, {} reactor(s) on CPUs {}, {}", kVersion,
               ::getpid(), cfg.cpus.size(), cpu_list_text(cfg.cpus),
               cfg.poll ? std::string("polling")
                        : fmt::format("adaptive (spin {} us){}", cfg.spin_us,
                                      cfg.sched_batch ? ", SCHED_BATCH" : ""));

  auto nexus_dir = prepare_state_dir(cfg.state_dir);
  if (!nexus_dir) {
    print_error(nexus_dir.status().message());
    spdlog::shutdown();
    return 1;
  }
  spdlog::info("state directory {} (nexus health records in {})", cfg.state_dir,
               nexus_dir->string());

  reactor::ReactorGroup reactors(
      cfg.cpus, reactor::ReactorOptions{.poll = cfg.poll,
                                        .spin_ns = cfg.spin_us * 1000,
                                        .sched_batch = cfg.sched_batch});
  reactors.start();
  int rc = 0;
  {
    bdev::BdevRegistry registry(reactors);
    // In a cluster each engine connects to the replicas it reaches as its own host (its
    // nexuses' reservations are held under that host's identifier).
    nvmf::NvmfHostOptions host;
    if (auto nqn = host_nqn(cfg); !nqn.empty()) host.hostnqn = nqn;
    registry.register_module(nvmf::make_nvmf_bdev_module(host));
    {
      pool::PoolManager pools(registry);
      {
        // With a control plane the health records live in its store (a nexus re-created
        // on another node must see them); without one, in files under the state dir.
        std::shared_ptr<ControlEndpoints> control;
        std::unique_ptr<nexus::ChildHealthStore> store;
        if (!cfg.control.empty()) {
          control = std::make_shared<ControlEndpoints>(cfg.control);
          store = std::make_unique<ControlChildHealthStore>(control);
          spdlog::info("node '{}': castor-control at {} (nexus health records in its store)",
                       cfg.node_name, control->describe());
        } else {
          store = std::make_unique<nexus::FileChildHealthStore>(*nexus_dir);
        }
        nexus::NexusManager nexuses(registry, *store, host.host_id());
        spdlog::info("nvmf host {} (host identifier {})", host.hostnqn, host.host_id().to_string());
        rc = serve(cfg, registry, pools, nexuses, reactors, identity, stop_signals, control);
      }  // destroys every nexus (after the front ends released them): replicas are free
      spdlog::info("nexuses destroyed");
    }  // exports every pool: its replicas' bdevs go, its disks are released
    spdlog::info("pools exported");
    registry.destroy_all();
    spdlog::info("bdevs destroyed");
  }
  reactors.stop();
  spdlog::info("reactors stopped; exiting with status {}", rc);
  spdlog::shutdown();
  return rc;
}

}  // namespace
}  // namespace castor::engine

int main(int argc, char** argv) {
  auto parsed = castor::engine::parse_args(argc, argv);
  if (!parsed) {
    castor::engine::print_error(parsed.status().message());
    return 2;
  }
  if (parsed->exit_now) return parsed->exit_code;
  return castor::engine::run(parsed->config);
}
