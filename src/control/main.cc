// castor-control: the control plane process. Start-up: parse flags, open the store,
// become the leader (a standby waits here), load the specs and recover interrupted
// operations, start the reconciler, serve gRPC and REST, write the ready file, wait for
// SIGINT/SIGTERM. Losing the leadership (a deposed etcd leader) exits at once with
// status 3: the store refuses its writes anyway (fencing), and a new leader has taken
// over.
//
// Exit codes: 0 clean shutdown, 1 start-up failure, 2 bad flags, 3 leadership lost.

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <stop_token>
#include <thread>

#include "common/version.h"
#include "control/control_plane.h"
#include "control/service.h"
#include "control/store/store.h"

namespace castor::control {
namespace {

constexpr const char* kProg = "castor-control";

struct Flags {
  std::string store = "sqlite:///var/lib/castor/control.db";
  std::string grpc_listen = "127.0.0.1:10125";
  std::string rest_listen = "127.0.0.1:8080";
  std::string ready_file;
  std::string log_level = "info";
  std::string identity;
  ControlOptions opts;
  StoreOptions store_opts;
};

int fail(const std::string& msg, int code) {
  fmt::print(stderr, "{}: error: {}\n", kProg, msg);
  return code;
}

Status write_ready(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return make_error(Errc::kIoError, "cannot write ready file '{}'", path);
  std::fputs(content.c_str(), f);
  std::fflush(f);
  ::fsync(::fileno(f));
  std::fclose(f);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_error(Errc::kIoError, "cannot write ready file '{}'", path);
  }
  return Status::ok();
}

int run(const Flags& f) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto level = spdlog::level::from_str(f.log_level);
  auto logger = spdlog::stderr_logger_mt("castor-control");
  spdlog::set_default_logger(logger);
  spdlog::set_level(level);
  spdlog::flush_on(spdlog::level::info);

  if (f.store.rfind("sqlite:///", 0) == 0) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(f.store.substr(9)).parent_path(), ec);
  }
  auto store = make_store(f.store, f.store_opts);
  if (!store) return fail(store.status().message(), 2);
  if (Status s = (*store)->open(); !s) return fail(fmt::format("store {}: {}", f.store, s.message()), 1);

  std::stop_source stop;
  std::mutex mu;
  std::condition_variable cv;
  int exit_code = 0;
  std::thread signals([&] {
    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::lock_guard lk(mu);
    stop.request_stop();
    cv.notify_all();
  });
  signals.detach();

  const std::string identity =
      f.identity.empty() ? fmt::format("{}@{}", ::getpid(), f.grpc_listen) : f.identity;
  spdlog::info("castor-control {} (pid {}) on {}: waiting to lead as {}", kVersion, ::getpid(),
               (*store)->describe(), identity);
  Status led = (*store)->acquire_leadership(identity, stop.get_token(), [] {
    spdlog::critical("leadership lost (another castor-control leads now): exiting");
    spdlog::default_logger()->flush();
    std::_Exit(3);
  });
  if (!led) {
    if (stop.stop_requested()) return 0;
    return fail(fmt::format("cannot become the leader: {}", led.message()), 1);
  }
  spdlog::info("leading");

  auto engines = make_grpc_connector(5000);
  ControlOptions opts = f.opts;
  opts.identity = identity;
  ControlPlane cp(**store, *engines, opts);
  if (Status s = cp.start(); !s) return fail(fmt::format("cannot load the specs: {}", s.message()), 1);

  ControlServiceImpl service(cp, **store, identity);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(f.grpc_listen, grpc::InsecureServerCredentials(), &grpc_port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // A ListVolumes of every volume in a large cluster passes gRPC's 4 MiB default
  // (clients should page with max_entries; this keeps an unpaged list working).
  builder.SetMaxSendMessageSize(256 << 20);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || grpc_port == 0) return fail(fmt::format("cannot serve gRPC on {}", f.grpc_listen), 1);
  RestServer rest(service);
  int rest_port = 0;
  if (f.rest_listen != "none") {
    auto p = rest.start(f.rest_listen);
    if (!p) return fail(p.status().message(), 1);
    rest_port = *p;
  }
  if (!f.ready_file.empty()) {
    if (Status s = write_ready(f.ready_file, fmt::format(R"({{"pid":{},"grpc_port":{},"rest_port":{}}})"
                                                         "\n",
                                                         ::getpid(), grpc_port, rest_port));
        !s) {
      return fail(s.message(), 1);
    }
  }
  spdlog::info("castor-control ready: gRPC port {}, REST port {}", grpc_port, rest_port);

  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return stop.stop_requested(); });
  }
  rest.stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  cp.stop();
  if (!f.ready_file.empty()) ::unlink(f.ready_file.c_str());
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace
}  // namespace castor::control

int main(int argc, char** argv) {
  using castor::control::Flags;
  Flags f;
  CLI::App app{"castor-control: Castor's control plane (node registry, specs, reconcilers)"};
  app.set_version_flag("--version", castor::kVersion);
  app.add_option("--store", f.store,
                 "sqlite:///PATH (default sqlite:///var/lib/castor/control.db) or "
                 "etcd://HOST:PORT[,HOST:PORT...]");
  app.add_option("--grpc-listen", f.grpc_listen, "gRPC HOST:PORT (default 127.0.0.1:10125)");
  app.add_option("--rest-listen", f.rest_listen, "REST HOST:PORT or none (default 127.0.0.1:8080)");
  app.add_option("--ready-file", f.ready_file, "write {pid, grpc_port, rest_port} here when ready");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error (default info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--identity", f.identity, "name of this instance (default PID@grpc-listen)");
  app.add_option("--heartbeat-ms", f.opts.heartbeat_interval_ms, "engine heartbeat period (1000)")
      ->check(CLI::Range(100u, 60000u));
  app.add_option("--node-deadline-ms", f.opts.node_deadline_ms,
                 "silence before a node is probed and, not answering, offline (5000)")
      ->check(CLI::Range(200u, 600000u));
  app.add_option("--nexus-child-io-timeout-ms", f.opts.nexus_child_io_timeout_ms,
                 "a nexus child I/O older than this retires the child (0: the engine's default, 10000)")
      ->check(CLI::Range(0u, 600000u));
  app.add_option("--rebuild-busy-rate-mb-s", f.opts.rebuild_busy_rate_mb_s,
                 "a rebuild's throttle while its volume serves I/O, MiB/s (0: none)")
      ->check(CLI::Range(0u, 1000000u));
  app.add_option("--reconcile-period-ms", f.opts.reconcile_period_ms, "reconciler period (2000)")
      ->check(CLI::Range(50u, 600000u));
  app.add_option("--faulted-child-wait-ms", f.opts.faulted_child_wait_ms,
                 "wait before a faulted replica is replaced (10000)")
      ->check(CLI::Range(0u, 86400000u));
  app.add_option("--gc-grace-ms", f.opts.gc_grace_ms,
                 "age of an unreferenced replica/nexus before it is destroyed (30000)")
      ->check(CLI::Range(0u, 86400000u));
  app.add_option("--thin-overcommit-percent", f.opts.placement.thin_overcommit_percent,
                 "thin replicas may commit this % of a pool's capacity (250)")
      ->check(CLI::Range(100u, 10000u));
  app.add_option("--lease-ttl-s", f.store_opts.lease_ttl_s, "etcd leader lease TTL (10)")
      ->check(CLI::Range(2u, 600u));
  app.add_option("--etcd-page-limit", f.store_opts.page_limit, "etcd keys per Range (500)")
      ->check(CLI::Range(1u, 100000u));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    fmt::print(stderr, "castor-control: error: {}\n", e.what());
    return 2;
  }
  return castor::control::run(f);
}
