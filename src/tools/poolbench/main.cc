// castor-pool-bench: in one run, a thick replica against its raw base bdev (4 KiB random
// read and write, QD32), and the cost of a thin replica's first write to a cluster
// against a write to an allocated cluster.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <future>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "pool/pool.h"
#include "bdev/perf.h"

using namespace castor;

namespace {

// One synchronous write from the calling thread through reactor 0; returns latency in ns.
uint64_t write_once(reactor::Reactor& r, const bdev::BdevDesc& d, uint64_t lba, bdev::DmaBuffer& buf) {
  const bdev::Bdev& b = *d.bdev();
  bdev::IoRequest req;
  iovec iov{buf.data(), buf.size()};
  req.type = bdev::IoType::kWrite;
  req.offset_blocks = lba;
  req.num_blocks = buf.size() / b.block_size();
  req.iovs = &iov;
  req.iovcnt = 1;
  std::promise<uint64_t> p;
  req.cb = [](bdev::IoRequest& q, void* arg) {
    static_cast<std::promise<uint64_t>*>(arg)->set_value(q.status == bdev::IoStatus::kSuccess ? q.done_ns - q.start_ns : 0);
  };
  req.cb_arg = &p;
  auto f = p.get_future();
  r.send([&] { d.channel(r).submit(req); });
  return f.get();
}

struct Lat {
  double mean_us, p50_us, p99_us;
};
Lat summarize(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (auto x : v) sum += static_cast<double>(x);
  return {sum / static_cast<double>(v.size()) / 1e3, static_cast<double>(v[v.size() / 2]) / 1e3,
          static_cast<double>(v[std::min(v.size() - 1, v.size() * 99 / 100)]) / 1e3};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"castor-pool-bench: thick replica vs raw disk, and thin first-write cost"};
  std::string disk = "malloc:///base?size_mb=2048";
  double secs = 5;
  uint32_t qd = 32;
  uint64_t cluster_mb = 4;
  std::string cores = "1";
  app.add_option("--disk", disk, "base disk URI (a file:// on a real file system for disk numbers)")->capture_default_str();
  app.add_option("-t,--time", secs, "seconds per run")->capture_default_str();
  app.add_option("-q,--qd", qd, "queue depth")->capture_default_str();
  app.add_option("--cluster-mb", cluster_mb, "cluster size in MiB")->capture_default_str();
  app.add_option("--cores", cores, "CPU list for the reactors")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  auto cpus = reactor::parse_cpu_list(cores);
  if (!cpus) {
    std::fprintf(stderr, "castor-pool-bench: error: %s\n", cpus.status().message().c_str());
    return 2;
  }
  reactor::ReactorOptions ro;
  reactor::ReactorGroup group(*cpus, ro);
  group.start();
  int rc = 0;
  {
    bdev::BdevRegistry reg(group);
    auto base = reg.create(disk);
    if (!base) {
      std::fprintf(stderr, "castor-pool-bench: error: %s\n", base.status().message().c_str());
      group.stop();
      return 1;
    }
    bdev::PerfOptions o;
    o.block_size = 4096;
    o.queue_depth = qd;
    o.duration_s = secs;
    std::printf("%-10s %-10s %12s %12s %7s\n", "workload", "target", "raw_iops", "replica_iops", "ratio");
    struct Row {
      std::string wl;
      double raw = 0, rep = 0;
    };
    std::vector<Row> rows = {{"randread"}, {"randwrite"}};
    // Fill the base so reads touch written blocks, then measure it raw.
    o.workload = "write";
    o.block_size = 1 << 20;
    o.queue_depth = 4;
    o.duration_s = std::max(1.0, secs / 2);
    (void)bdev::run_perf(reg, base->name, o);
    o.block_size = 4096;
    o.queue_depth = qd;
    o.duration_s = secs;
    for (auto& r : rows) {
      o.workload = r.wl;
      auto res = bdev::run_perf(reg, base->name, o);
      if (res) r.raw = res->iops;
    }
    pool::PoolManager pools(reg);
    pool::PoolCreateOptions po;
    po.name = "bench";
    po.disks = {"bdev:///" + base->name};
    po.cluster_size = cluster_mb << 20;
    auto p = pools.create(po);
    if (!p) {
      std::fprintf(stderr, "castor-pool-bench: error: %s\n", p.status().message().c_str());
      rc = 1;
    } else {
      uint64_t thick_clusters = p->total_clusters * 3 / 4;
      auto thick = pools.create_replica({"bench", "thick", thick_clusters * po.cluster_size, false, std::nullopt});
      if (!thick) {
        std::fprintf(stderr, "castor-pool-bench: error: %s\n", thick.status().message().c_str());
        rc = 1;
      } else {
        o.workload = "write";
        o.block_size = 1 << 20;
        o.queue_depth = 4;
        o.duration_s = std::max(1.0, secs / 2);
        (void)bdev::run_perf(reg, "thick", o);
        o.block_size = 4096;
        o.queue_depth = qd;
        o.duration_s = secs;
        for (auto& r : rows) {
          o.workload = r.wl;
          auto res = bdev::run_perf(reg, "thick", o);
          if (res) r.rep = res->iops;
          std::printf("%-10s %-10s %12.0f %12.0f %7.3f\n", r.wl.c_str(), "thick", r.raw, r.rep,
                      r.raw > 0 ? r.rep / r.raw : 0.0);
        }
        // Thin first writes: one 4 KiB write into each of N fresh clusters, then the same
        // writes again (clusters now allocated), QD1.
        uint64_t n = std::min<uint64_t>(200, p->total_clusters - thick_clusters - 1);
        auto thin = pools.create_replica({"bench", "thin", n * po.cluster_size, true, std::nullopt});
        auto desc = thin ? reg.open("thin") : Result<bdev::BdevDesc>(thin.status());
        if (desc) {
          const bdev::Bdev* tb = desc->bdev();
          bdev::DmaBuffer buf(4096);
          std::fill(buf.data(), buf.data() + 4096, 0x5a);
          std::vector<uint64_t> first, again;
          const uint64_t per = po.cluster_size / tb->block_size();
          for (uint64_t i = 0; i < n; ++i) first.push_back(write_once(group.at(0), *desc, i * per, buf));
          for (uint64_t i = 0; i < n; ++i) again.push_back(write_once(group.at(0), *desc, i * per, buf));
          auto a = summarize(first), b = summarize(again);
          std::printf("\nthin replica, %lu writes of 4 KiB, QD1, cluster %lu MiB:\n", static_cast<unsigned long>(n),
                      static_cast<unsigned long>(cluster_mb));
          std::printf("  first write to a cluster: mean %8.1f us  p50 %8.1f us  p99 %8.1f us\n", a.mean_us, a.p50_us,
                      a.p99_us);
          std::printf("  allocated cluster:        mean %8.1f us  p50 %8.1f us  p99 %8.1f us\n", b.mean_us, b.p50_us,
                      b.p99_us);
          std::printf("  first-write cost: %.1fx (zero the cluster, flush, commit a log record, flush)\n",
                      b.mean_us > 0 ? a.mean_us / b.mean_us : 0.0);
        }
      }
    }
  }
  group.stop();
  return rc;
}
