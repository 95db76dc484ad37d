// castor-control-sim: the control plane at scale, against in-process fake engines
// (control/sim/fake_engine.h) and a real store (SQLite file or etcd). It measures what
// the control plane itself costs: registering N nodes with a pool each, creating and
// publishing V volumes, and converging after a share of the nodes fails (every volume
// back to its replica count on live nodes, every nexus on a live node), plus the store's
// size, the process's CPU time and peak memory. The engines do no I/O: this is the
// control plane's cost alone.
//
//   castor-control-sim --nodes 1000 --volumes 10000 --replicas 3 --fail-percent 10
//                      --store sqlite:///var/tmp/sim.db   (or etcd://127.0.0.1:2379)
//
// Prints one line per phase and a last summary line:
//   nodes=N volumes=V create_s=.. publish_s=.. converge_s=.. store_bytes=.. cpu_s=.. rss_mib=..

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/uuid.h"
#include "control/control_plane.h"
#include "control/sim/fake_engine.h"
#include "control/store/store.h"

using namespace castor;
using namespace castor::control;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Runs `n` calls of `f(i)` on `threads` threads; returns the failures.
template <class F>
size_t parallel(size_t n, unsigned threads, F f) {
  std::atomic<size_t> next{0}, failed{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) {
        if (!f(i)) failed.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  return failed.load();
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t nodes = 1000, volumes = 10000, replicas = 3, fail_percent = 10, threads = 4;
  uint64_t seed = 1;
  double timeout_s = 600;
  std::string store_uri;
  bool publish = true;
  CLI::App app{"castor-control-sim: the control plane against in-process fake engines"};
  app.add_option("--nodes", nodes, "simulated engines (1000)")->check(CLI::Range(1u, 100000u));
  app.add_option("--volumes", volumes, "volumes to create (10000)")->check(CLI::Range(0u, 10000000u));
  app.add_option("--replicas", replicas, "replicas per volume (3)")->check(CLI::Range(1u, 8u));
  app.add_option("--fail-percent", fail_percent, "nodes that fail (10)")->check(CLI::Range(0u, 90u));
  app.add_option("--threads", threads, "client threads issuing API calls (4)")->check(CLI::Range(1u, 64u));
  app.add_option("--seed", seed, "which nodes fail (1)");
  app.add_option("--timeout-s", timeout_s, "give up converging after this long (600)");
  app.add_option("--store", store_uri, "sqlite:///PATH or etcd://HOST:PORT")->required();
  app.add_flag("!--no-publish", publish, "do not publish the volumes");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  std::printf("seed %llu (--seed replays which nodes fail)\n", static_cast<unsigned long long>(seed));

  auto store = make_store(store_uri);
  if (!store || !(*store)->open()) {
    std::fprintf(stderr, "castor-control-sim: cannot open store %s\n", store_uri.c_str());
    return 1;
  }
  std::stop_source stop;
  if (!(*store)->acquire_leadership("sim", stop.get_token(), [] {})) return 1;

  sim::FakeCluster cluster;
  ControlOptions opts;
  opts.node_deadline_ms = 2000;
  opts.faulted_child_wait_ms = 0;
  opts.gc_grace_ms = 1000;
  opts.reconcile_period_ms = 1000;
  ControlPlane cp(**store, cluster, opts);
  if (!cp.start(/*run_reconciler=*/false)) return 1;

  const double cpu0 = cpu_s();
  // ---- nodes and pools
  double t0 = now_s();
  std::vector<std::string> names, instances;
  for (uint32_t i = 0; i < nodes; ++i) {
    names.push_back(fmt::format("node-{:05}", i));
    instances.push_back(Uuid::random().to_string());
    cluster.add(names.back()).add_disk("file:///disk", 1ull << 40);
  }
  std::atomic<bool> beating{true};
  auto beat_all = [&] {
    for (uint32_t i = 0; i < nodes; ++i) {
      if (cluster.find(names[i])->down()) continue;
      RegisterRequest r;
      r.name = names[i];
      r.grpc_endpoint = "fake://" + names[i];
      r.nvmf_endpoints = {names[i] + ":8420"};
      r.instance_uuid = instances[i];
      (void)cp.register_node(r);
    }
  };
  beat_all();
  size_t failed = parallel(nodes, threads, [&](size_t i) {
    PoolSpec p;
    p.node = names[i];
    p.name = "pool";
    p.disks = {"file:///disk"};
    return cp.create_pool(p).is_ok();
  });
  std::printf("register %u nodes + pools: %.2f s (%zu failed)\n", nodes, now_s() - t0, failed);
  // Heartbeats and reconciler passes run in the background from here on, as in the
  // real process.
  std::thread heart([&] {
    while (beating) {
      beat_all();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  std::atomic<bool> reconciling{true};
  std::atomic<uint64_t> passes{0};
  std::atomic<double> pass_s_max{0};
  std::thread recon([&] {
    while (reconciling) {
      double s = now_s();
      cp.reconcile_once();
      double took = now_s() - s;
      if (took > pass_s_max) pass_s_max = took;
      ++passes;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });

  // ---- volumes
  std::vector<std::string> ids(volumes);
  for (auto& id : ids) id = Uuid::random().to_string();
  t0 = now_s();
  failed = parallel(volumes, threads, [&](size_t i) {
    CreateVolumeArgs a;
    a.uuid = ids[i];
    a.size_bytes = 1ull << 30;
    a.replica_count = replicas;
    a.thin = true;
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto v = cp.create_volume(a);
      if (v) return true;
      if (v.status().code() != Errc::kAborted) {
        std::fprintf(stderr, "create: %s\n", v.status().to_string().c_str());
        return false;
      }
    }
    return false;
  });
  const double create_s = now_s() - t0;
  std::printf("create %u volumes x %u replicas: %.2f s (%.0f/s, %zu failed)\n", volumes, replicas,
              create_s, volumes / create_s, failed);
  double publish_s = 0;
  if (publish) {
    t0 = now_s();
    failed = parallel(volumes, threads, [&](size_t i) {
      for (int attempt = 0; attempt < 20; ++attempt) {
        auto v = cp.publish_volume(PublishArgs{.uuid = ids[i], .node = {}, .allowed_hosts = {},
                                               .frontend_node = {}});
        if (v) return true;
        if (v.status().code() != Errc::kAborted) {
          std::fprintf(stderr, "publish: %s\n", v.status().to_string().c_str());
          return false;
        }
      }
      return false;
    });
    publish_s = now_s() - t0;
    std::printf("publish %u volumes: %.2f s (%.0f/s, %zu failed)\n", volumes, publish_s,
                volumes / publish_s, failed);
  }

  // ---- failures
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> order(nodes);
  for (uint32_t i = 0; i < nodes; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const uint32_t nfail = nodes * fail_percent / 100;
  std::set<std::string> down;
  for (uint32_t i = 0; i < nfail; ++i) {
    cluster.find(names[order[i]])->set_down(true);
    down.insert(names[order[i]]);
  }
  // Volumes whose every replica was on a failed node lost their data: they must end
  // faulted, not healed (nothing is left to rebuild from).
  std::set<std::string> lost;
  {
    auto all = cp.list_volumes(0, "");
    for (const auto& v : all->first) {
      bool any_left = false;
      for (const auto& r : v.spec.replicas) any_left = any_left || !down.count(r.node);
      if (!any_left) lost.insert(v.spec.uuid);
    }
  }
  t0 = now_s();
  auto converged = [&]() -> std::pair<size_t, size_t> {  // (not converged, total)
    size_t bad = 0, total = 0;
    std::string token;
    for (;;) {
      auto page = cp.list_volumes(1000, token);
      if (!page) return {SIZE_MAX, 0};
      for (const auto& v : page->first) {
        ++total;
        if (lost.count(v.spec.uuid)) {
          bad += v.status != "faulted";
          continue;
        }
        bool ok = v.spec.online_replicas() == v.spec.replica_count &&
                  v.spec.replicas.size() == v.spec.replica_count;
        for (const auto& r : v.spec.replicas) ok = ok && !down.count(r.node);
        if (publish) ok = ok && v.spec.target && !down.count(v.spec.target->node) && !v.spec.target->uri.empty();
        bad += !ok;
      }
      if (page->second.empty()) break;
      token = page->second;
    }
    return {bad, total};
  };
  double converge_s = -1;
  size_t left = 0;
  while (now_s() - t0 < timeout_s) {
    auto [bad, total] = converged();
    left = bad;
    if (bad == 0 && total == volumes) {
      converge_s = now_s() - t0;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (converge_s < 0) {
    int shown = 0;
    auto page = cp.list_volumes(0, "");
    for (const auto& v : page->first) {
      bool ok = v.spec.online_replicas() == v.spec.replica_count && v.spec.replicas.size() == v.spec.replica_count;
      for (const auto& r : v.spec.replicas) ok = ok && !down.count(r.node);
      if (publish) ok = ok && v.spec.target && !down.count(v.spec.target->node) && !v.spec.target->uri.empty();
      if (ok || lost.count(v.spec.uuid) || shown++ >= 5) continue;
      std::string reps;
      for (const auto& r : v.spec.replicas) {
        reps += fmt::format(" {}@{}:{}{}", r.uuid.substr(0, 8), r.node, replica_state_name(r.state),
                            down.count(r.node) ? "(down)" : "");
      }
      std::printf("  not converged: %s status=%s target=%s%s replicas:%s\n", v.spec.uuid.c_str(),
                  v.status.c_str(), v.spec.target ? v.spec.target->node.c_str() : "-",
                  v.spec.target && down.count(v.spec.target->node) ? "(down)" : "", reps.c_str());
    }
  }
  std::printf("%zu volume(s) had every replica on a failed node (lost; they must end faulted)\n",
              lost.size());
  std::printf("%u node(s) failed (%u%%): %s\n", nfail, fail_percent,
              converge_s >= 0 ? fmt::format("converged in {:.2f} s", converge_s).c_str()
                              : fmt::format("NOT converged after {:.0f} s ({} volumes left)",
                                            timeout_s, left)
                                    .c_str());
  beating = false;
  reconciling = false;
  heart.join();
  recon.join();
  auto st = (*store)->stats();
  const double cpu = cpu_s() - cpu0;
  std::printf("reconcile passes %llu, longest %.2f s\n", static_cast<unsigned long long>(passes.load()),
              pass_s_max.load());
  std::printf("nodes=%u volumes=%u replicas=%u lost=%zu create_s=%.2f publish_s=%.2f converge_s=%.2f "
              "store_keys=%llu store_bytes=%llu store_file_bytes=%llu cpu_s=%.1f rss_mib=%.0f\n",
              nodes, volumes, replicas, lost.size(), create_s, publish_s, converge_s,
              st ? static_cast<unsigned long long>(st->keys) : 0ull,
              st ? static_cast<unsigned long long>(st->bytes) : 0ull,
              st ? static_cast<unsigned long long>(st->file_bytes) : 0ull, cpu, rss_mib());
  cp.stop();
  return converge_s >= 0 && failed == 0 ? 0 : 1;
}
