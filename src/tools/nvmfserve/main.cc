// castor-nvmf-serve: a standalone NVMe-oF/TCP target for interoperability tests:
// creates the bdevs, one subsystem with them as namespaces, listens, and serves until
// SIGINT/SIGTERM. Writes the bound port to --port-file when ready.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <spdlog/spdlog.h>

#include "nvmf/target/target.h"

int main(int argc, char** argv) {
  CLI::App app{"castor-nvmf-serve: serve bdevs over NVMe/TCP (interoperability testing)"};
  std::vector<std::string> bdevs;
  std::string nqn = "nqn.2026-11.io.castor:test";
  std::string host = "127.0.0.1";
  uint16_t port = 4420;
  unsigned reactors = 1;
  std::vector<std::string> allowed;
  std::string port_file, log_level = "info";
  app.add_option("--bdev", bdevs, "bdev URI to create and export (repeatable)")->required();
  app.add_option("--nqn", nqn, "subsystem NQN")->capture_default_str();
  app.add_option("--listen", host, "address")->capture_default_str();
  app.add_option("--port", port, "port (0: pick one)")->capture_default_str();
  app.add_option("--reactors", reactors, "reactor count, on the CPUs this process may use")->capture_default_str();
  std::string cores;
  app.add_option("--cores", cores, "CPU list for the reactors, e.g. 1 or 0,1 (overrides --reactors)");
  app.add_option("--allow-host", allowed, "allowed host NQN (repeatable; default any)");
  app.add_option("--port-file", port_file, "write the bound port here when ready");
  std::string late;
  app.add_option("--late-bdev", late,
                 "bdev URI added as the next namespace on SIGUSR1 (connected hosts get an async event); "
                 "SIGUSR2 removes it again");
  app.add_option("--log-level", log_level)->capture_default_str();
  bool poll = false;
  app.add_flag("--poll", poll, "busy-poll the reactors (lowest latency, 100 % CPU)");
  std::string taskrun = "defer";
  app.add_option("--taskrun", taskrun, "io_uring task-run mode: defer, coop or interrupt")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::vector<int> cpus;
  if (!cores.empty()) {
    auto c = castor::reactor::parse_cpu_list(cores);
    if (!c) {
      std::fprintf(stderr, "castor-nvmf-serve: error: %s\n", c.status().message().c_str());
      return 2;
    }
    cpus = *c;
  } else {
    cpus = castor::reactor::cpus_for_reactor_count(std::max(1u, reactors));
  }
  auto tr = castor::reactor::parse_task_run(taskrun);
  if (!tr) {
    std::fprintf(stderr, "castor-nvmf-serve: error: %s\n", tr.status().message().c_str());
    return 2;
  }
  castor::reactor::ReactorOptions ro;
  ro.poll = poll;
  ro.task_run = *tr;
  castor::reactor::ReactorGroup group(cpus, ro);
  group.start();
  int rc = 0;
  {
    castor::bdev::BdevRegistry reg(group);
    castor::nvmf::NvmfTarget tgt(group, reg);
    auto fail = [&](const castor::Status& st) {
      std::fprintf(stderr, "castor-nvmf-serve: error: %s\n", st.message().c_str());
      rc = 1;
    };
    uint16_t bound = 0;
    if (auto st = tgt.add_subsystem(nqn, allowed); !st) fail(st);
    for (const auto& u : bdevs) {
      if (rc) break;
      auto info = reg.create(u);
      if (!info) {
        fail(info.status());
        break;
      }
      if (auto ns = tgt.add_namespace(nqn, info->name); !ns) fail(ns.status());
    }
    if (!rc) {
      if (auto st = tgt.listen(host, port, &bound); !st) fail(st);
    }
    if (!rc) {
      if (!port_file.empty()) std::ofstream(port_file) << bound << "\n";
      spdlog::info("serving {} on {}:{}", nqn, host, bound);
      uint32_t late_nsid = 0;
      for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        if (sig == SIGUSR2) {
          if (late_nsid == 0) continue;
          if (auto st = tgt.remove_namespace(nqn, late_nsid); st) {
            spdlog::info("namespace {} removed", late_nsid);
          } else {
            spdlog::error("remove namespace {}: {}", late_nsid, st.message());
          }
          late_nsid = 0;
          continue;
        }
        if (sig != SIGUSR1) break;
        if (late.empty()) continue;
        auto info = reg.create(late);
        if (!info) {
          spdlog::error("late bdev: {}", info.status().message());
          continue;
        }
        auto ns = tgt.add_namespace(nqn, info->name);
        if (ns) {
          spdlog::info("namespace {} added ({})", *ns, info->name);
          late_nsid = *ns;
        } else {
          spdlog::error("late namespace: {}", ns.status().message());
        }
        late.clear();
      }
      tgt.stop();
    }
  }
  group.stop();
  return rc;
}
