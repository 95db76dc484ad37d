// castor-bdevperf: in-process block benchmark. Creates reactors and a bdev from a URI,
// drives it with a fixed queue depth per reactor and prints IOPS, MiB/s and latency.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "bdev/registry.h"
#include "bdev/perf.h"

int main(int argc, char** argv) {
  CLI::App app{"castor-bdevperf: benchmark a Castor bdev in-process"};
  std::vector<std::string> uris;
  std::string target;
  castor::bdev::PerfOptions o;
  std::string cores;
  unsigned nreactors = 1;
  bool poll = false, json = false;
  app.add_option("--bdev", uris, "bdev URI to create (repeatable; the last one is measured)")
      ->required();
  app.add_option("--target", target, "name of the bdev to measure (default: the last created)");
  app.add_option("-w,--workload", o.workload, "randread|randwrite|read|write|randrw|rw")
      ->capture_default_str();
  app.add_option("-b,--bs", o.block_size, "I/O size in bytes")->capture_default_str();
  app.add_option("-q,--qd", o.queue_depth, "queue depth per reactor")->capture_default_str();
  app.add_option("-t,--time", o.duration_s, "duration in seconds")->capture_default_str();
  app.add_option("--rwmix", o.rw_mix_read, "read percentage for randrw/rw")->capture_default_str();
  app.add_option("--cores", cores, "CPU list for the reactors, e.g. 0,1 (overrides --reactors)");
  app.add_option("--reactors", nreactors, "number of reactors")->capture_default_str();
  app.add_flag("--poll", poll, "busy-poll instead of sleeping when idle");
  uint64_t spin_us = 50;
  app.add_option("--spin-us", spin_us,
                 "poll at most this long after the last work before sleeping (adaptive below)")
      ->capture_default_str();
  app.add_flag("--json", json, "print the result as JSON");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  std::vector<int> cpus;
  if (!cores.empty()) {
    auto c = castor::reactor::parse_cpu_list(cores);
    if (!c) {
      std::fprintf(stderr, "castor-bdevperf: error: %s\n", c.status().message().c_str());
      return 2;
    }
    cpus = *c;
  } else {
    cpus = castor::reactor::cpus_for_reactor_count(std::max(1u, nreactors));
  }
  castor::reactor::ReactorOptions ro;
  ro.poll = poll;
  ro.spin_ns = spin_us * 1000;
  castor::reactor::ReactorGroup group(cpus, ro);
  group.start();
  int rc = 0;
  {
    castor::bdev::BdevRegistry reg(group);
    std::string name;
    for (const auto& u : uris) {
      auto info = reg.create(u);
      if (!info) {
        std::fprintf(stderr, "castor-bdevperf: error: %s\n", info.status().message().c_str());
        rc = 1;
        break;
      }
      name = info->name;
    }
    if (rc == 0) {
      if (!target.empty()) name = target;
      auto r = castor::bdev::run_perf(reg, name, o);
      if (!r) {
        std::fprintf(stderr, "castor-bdevperf: error: %s\n", r.status().message().c_str());
        rc = 1;
      } else if (json) {
        nlohmann::json j = {{"bdev", r->bdev},         {"workload", r->workload},
                            {"block_size", r->block_size}, {"queue_depth", r->queue_depth},
                            {"reactors", r->reactors}, {"ios", r->ios},
                            {"errors", r->errors},     {"seconds", r->seconds},
                            {"iops", r->iops},         {"mib_s", r->mib_s},
                            {"lat_mean_us", r->mean_us}, {"lat_p50_us", r->p50_us},
                            {"lat_p99_us", r->p99_us}, {"lat_p999_us", r->p999_us}};
        std::cout << j.dump() << "\n";
      } else {
        std::printf("%-12s %-9s %6s %4s %8s %12s %10s %9s %9s %9s %8s\n", "BDEV", "WORKLOAD", "BS",
                    "QD", "REACTORS", "IOPS", "MiB/s", "p50(us)", "p99(us)", "p99.9(us)",
                    "ERRORS");
        std::printf("%-12s %-9s %6u %4u %8u %12.0f %10.1f %9.1f %9.1f %9.1f %8lu\n",
                    r->bdev.c_str(), r->workload.c_str(), r->block_size, r->queue_depth,
                    r->reactors, r->iops, r->mib_s, r->p50_us, r->p99_us, r->p999_us,
                    static_cast<unsigned long>(r->errors));
      }
    }
  }
  group.stop();
  return rc;
}
