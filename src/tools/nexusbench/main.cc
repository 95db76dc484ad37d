// castor-nexus-bench: what replication costs, in one run on one machine. All children
// are RAM bdevs (malloc) so that the numbers show the nexus, not a disk:
//  1. 4 KiB random write at a fixed queue depth on a child alone (the baseline), then on
//     a nexus of 1, 2 and 3 children: IOPS, p50/p99 latency, ratio to the baseline.
//  2. 4 KiB random read on a 1-child nexus against the child alone.
//  3. Rebuild of a fresh child from a full-size nexus: alone (MiB/s), and under a 4 KiB
//     random-write load, with the application's IOPS during the rebuild relative to its
//     IOPS just before (same nexus, same load).
// With --child-latency-us N every child is a fault bdev that delays each read and write
// by N µs before passing it to its RAM bdev: children that behave like a device or a
// remote replica (latency-bound) instead of memcpy (CPU-bound), the regime a real nexus
// runs in. Both regimes are worth a number: they answer different questions.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <future>
#include <thread>

#include <fmt/format.h>

#include "bdev/modules/fault.h"
#include "common/clock.h"
#include "nexus/manager.h"
#include "bdev/perf.h"

using namespace castor;

namespace {

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "castor-nexus-bench: error: %s\n", m.c_str());
  std::exit(1);
}

template <class T>
T check(Result<T> r, const char* what) {
  if (!r) die(fmt::format("{}: {}", what, r.status().to_string()));
  return std::move(r.value());
}
void check(Status s, const char* what) {
  if (!s) die(fmt::format("{}: {}", what, s.to_string()));
}

// Writes every block of `name` once (RAM bdevs otherwise pay first-touch page faults in
// whichever measurement comes first).
void fill(bdev::BdevRegistry& reg, const std::string& name) {
  auto desc = check(reg.open(name), "open");
  bdev::Bdev& b = *desc.bdev();
  const uint64_t chunk = (1u << 20) / b.block_size();
  bdev::DmaBuffer buf(1u << 20);
  std::memset(buf.data(), 0xA5, buf.size());
  reactor::Reactor& r = reg.reactors().at(0);
  for (uint64_t off = 0; off < b.num_blocks(); off += chunk) {
    struct Op {
      bdev::IoRequest req;
      iovec iov{};
      std::promise<bdev::IoStatus> p;
    } op;
    const uint64_t n = std::min(chunk, b.num_blocks() - off);
    op.iov = {buf.data(), n * b.block_size()};
    op.req.type = bdev::IoType::kWrite;
    op.req.offset_blocks = off;
    op.req.num_blocks = n;
    op.req.iovs = &op.iov;
    op.req.iovcnt = 1;
    op.req.cb = [](bdev::IoRequest& q, void* a) { static_cast<Op*>(a)->p.set_value(q.status); };
    op.req.cb_arg = &op;
    auto f = op.p.get_future();
    r.send([&] { desc.channel(r).submit(op.req); });
    if (f.get() != bdev::IoStatus::kSuccess) die("filling " + name + " failed");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"castor-nexus-bench: nexus write cost and rebuild speed against the bare child"};
  uint64_t size_mb = 4096;
  double duration = 5;
  uint32_t qd = 32;
  std::string cores = "0";
  std::vector<std::string> opts;
  app.add_option("--size-mb", size_mb, "size of every child and of the rebuilt volume")->capture_default_str();
  app.add_option("--duration", duration, "seconds per measurement")->capture_default_str();
  app.add_option("--qd", qd, "queue depth")->capture_default_str();
  app.add_option("--cores", cores, "reactor CPUs, e.g. 0 or 0,1")->capture_default_str();
  app.add_option("--opt", opts, "nexus option key=value (e.g. rate_mb_s=500), repeatable");
  uint64_t latency_us = 0;
  app.add_option("--child-latency-us", latency_us,
                 "delay every child read and write by this long (fault bdev), 0 = RAM speed")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto cpus = check(reactor::parse_cpu_list(cores), "--cores");
  reactor::ReactorGroup group(cpus, reactor::ReactorOptions{});
  group.start();
  int rc = 0;
  {
    bdev::BdevRegistry reg(group);
    nexus::MemChildHealthStore store;
    nexus::NexusManager mgr(reg, store);
    std::map<std::string, std::string> om;
    for (const auto& o : opts) {
      auto eq = o.find('=');
      if (eq == std::string::npos) die("--opt wants key=value");
      om[o.substr(0, eq)] = o.substr(eq + 1);
    }
    auto nopts = check(nexus::NexusOptions::from_map(om), "--opt");
    for (int i = 0; i < 4; ++i) {
      // c<i> is the child as the nexus sees it: the RAM bdev itself, or a fault bdev over
      // it that delays every read and write.
      const std::string ram = latency_us ? fmt::format("m{}", i) : fmt::format("c{}", i);
      check(reg.create(fmt::format("malloc:///{}?size_mb={}", ram, size_mb)), "create child");
      fill(reg, ram);
      if (latency_us) {
        check(reg.create(fmt::format("fault:///c{}?base={}", i, ram)), "create delayed child");
        bdev::FaultRuleSpec d;
        d.mode = bdev::FaultMode::kDelay;
        d.delay_us = latency_us;
        check(bdev::FaultControl::inject(*reg.find(fmt::format("c{}", i)), d), "delay rule");
      }
    }
    auto perf = [&](const std::string& bdev, const std::string& wl, double secs) {
      bdev::PerfOptions po;
      po.workload = wl;
      po.queue_depth = qd;
      po.duration_s = secs;
      return check(bdev::run_perf(reg, bdev, po), "perf");
    };
    auto line = [](const std::string& what, const bdev::PerfResult& r, double base) {
      std::printf("%-34s %10.0f IOPS  p50 %7.1f us  p99 %7.1f us  ratio %.3f%s\n", what.c_str(), r.iops, r.p50_us,
                  r.p99_us, base > 0 ? r.iops / base : 1.0, r.errors ? "  ERRORS" : "");
    };
    std::printf("castor-nexus-bench: malloc children of %lu MiB%s, 4 KiB, QD%u, %.0f s each, %zu reactor(s)\n",
                static_cast<unsigned long>(size_mb),
                latency_us ? fmt::format(" delayed {} us per I/O", latency_us).c_str() : "", qd, duration,
                cpus.size());

    double r1 = 0;
    auto base_w = perf("c0", "randwrite", duration);
    line("child alone, randwrite", base_w, 0);
    auto base_r = perf("c0", "randread", duration);
    line("child alone, randread", base_r, 0);
    for (int n = 1; n <= 3; ++n) {
      std::vector<std::string> child_uris;
      for (int i = 0; i < n; ++i) child_uris.push_back(fmt::format("bdev:///c{}", i));
      check(mgr.create("nx", 0, child_uris, nopts), "create nexus");
      auto r = perf("nx", "randwrite", duration);
      line(fmt::format("nexus, {} child{}, randwrite", n, n > 1 ? "ren" : ""), r, base_w.iops);
      if (n == 1) {
        r1 = r.iops / base_w.iops;
        auto rr = perf("nx", "randread", duration);
        line("nexus, 1 child, randread", rr, base_r.iops);
      }
      check(mgr.destroy("nx", true), "destroy nexus");
    }

    // Rebuild alone: a 1-child nexus gains c3.
    const double mib = static_cast<double>(size_mb);
    check(mgr.create("nx", 0, {"bdev:///c0"}, nopts), "create nexus");
    auto nx = mgr.find("nx");
    uint64_t t0 = mono_ns();
    check(nx->add_child("bdev:///c3", true), "add child");
    auto info = check(nx->wait_rebuild("bdev:///c3", 600'000), "rebuild");
    double alone_s = static_cast<double>(mono_ns() - t0) / 1e9;
    if (info.state != nexus::RebuildState::kCompleted) die("rebuild did not complete: " + info.error);
    std::printf("%-34s %10.1f MiB/s  (%.0f MiB in %.2f s)\n", "rebuild alone", mib / alone_s, mib, alone_s);
    check(nx->remove_child("bdev:///c3"), "remove child");

    // Rebuild under load: the same load before and during.
    const double win = std::max(1.0, std::min(duration, alone_s * 0.8));
    auto before = perf("nx", "randwrite", win);
    line("app before the rebuild", before, 0);
    t0 = mono_ns();
    auto load = std::async(std::launch::async, [&] { return perf("nx", "randwrite", win); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    check(nx->add_child("bdev:///c3", true), "add child");
    auto during = load.get();
    auto mid = check(nx->rebuild_info("bdev:///c3"), "rebuild info");
    const bool still = mid.state == nexus::RebuildState::kRunning;
    info = check(nx->wait_rebuild("bdev:///c3", 600'000), "rebuild");
    double loaded_s = static_cast<double>(mono_ns() - t0) / 1e9;
    // The same load once the new child is in sync: the same write fan-out as during the
    // rebuild, so during/after is what the copy itself costs the application (against
    // `before`, the cost of writing to one more child is counted too).
    auto after = perf("nx", "randwrite", win);
    line(fmt::format("app during the rebuild{}", still ? "" : " (ended early)"), during, before.iops);
    line("app after the rebuild (2 children)", after, before.iops);
    std::printf("%-34s %10.1f MiB/s  (%.0f MiB in %.2f s)\n", "rebuild under load", mib / loaded_s, mib, loaded_s);
    std::printf(
        "ratios: nexus(1)/child write %.3f (goal >= 0.95); app IOPS during rebuild / after %.3f (goal >= 0.7), "
        "/ before %.3f\n",
        r1, during.iops / after.iops, during.iops / before.iops);
    if (during.errors || before.errors || after.errors) rc = 1;
    check(mgr.destroy("nx", true), "destroy nexus");
  }
  group.stop();
  return rc;
}
