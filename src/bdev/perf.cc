#include "bdev/perf.h"

#include <algorithm>
#include <cstring>
#include <latch>

#include "common/clock.h"

namespace castor::bdev {
namespace {


enum class Pattern { kRandom, kSequential };

struct Workload {
  Pattern pattern;
  uint32_t read_pct;  // 100 = reads only, 0 = writes only
};

Result<Workload> parse_workload(const std::string& w, uint32_t mix) {
  if (w == "randread") return Workload{Pattern::kRandom, 100};
  if (w == "randwrite") return Workload{Pattern::kRandom, 0};
  if (w == "read") return Workload{Pattern::kSequential, 100};
  if (w == "write") return Workload{Pattern::kSequential, 0};
  if (w == "randrw") return Workload{Pattern::kRandom, mix};
  if (w == "rw") return Workload{Pattern::kSequential, mix};
  return make_error(Errc::kInvalidArgument,
                    "unknown workload '{}' (randread, randwrite, read, write, randrw, rw)", w);
}

// One reactor's share of the benchmark. Lives on that reactor; touched by the caller
// only before start and after `done` is counted down.
struct Job {
  BdevChannel* ch = nullptr;
  Workload wl{};
  uint64_t slots = 0;             // number of block_size-sized slots on the device
  uint64_t blocks_per_io = 0;
  uint64_t seq_next = 0;
  uint64_t rng = 0;
  uint64_t deadline_ns = 0;
  uint64_t start_ns = 0, end_ns = 0;
  uint64_t ios = 0, errors = 0;
  uint32_t outstanding = 0;
  LatencyHistogram hist;
  std::vector<DmaBuffer> bufs;
  std::vector<iovec> iovs;
  std::vector<IoRequest> reqs;
  std::latch* done = nullptr;

  uint64_t next_rand() {
    // xorshift64*
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
  }

  void issue(IoRequest& r) {
    uint64_t slot;
    if (wl.pattern == Pattern::kRandom) {
      slot = next_rand() % slots;
    } else {
      slot = seq_next;
      seq_next = seq_next + 1 == slots ? 0 : seq_next + 1;
    }
    bool read = wl.read_pct == 100 ||
                (wl.read_pct != 0 && (next_rand() >> 33) % 100 < wl.read_pct);
    r.type = read ? IoType::kRead : IoType::kWrite;
    r.offset_blocks = slot * blocks_per_io;
    ch->submit(r);
  }

  static void on_done(IoRequest& r, void* arg) {
    auto* j = static_cast<Job*>(arg);
    if (r.status == IoStatus::kSuccess) {
      j->ios++;
      j->hist.record(r.done_ns - r.start_ns);
    } else {
      j->errors++;
    }
    if (r.done_ns < j->deadline_ns) {
      j->issue(r);
      return;
    }
    if (--j->outstanding == 0) {
      j->end_ns = mono_ns();
      j->done->count_down();
    }
  }
};

}  // namespace

Result<PerfResult> run_perf(BdevRegistry& registry, const std::string& bdev_name,
                            const PerfOptions& opts) {
  auto wl = parse_workload(opts.workload, opts.rw_mix_read);
  if (!wl) return wl.status();
  if (opts.rw_mix_read > 100) {
    return make_error(Errc::kInvalidArgument, "rwmix {} is not a percentage", opts.rw_mix_read);
  }
  if (opts.queue_depth < 1 || opts.queue_depth > 4096) {
    return make_error(Errc::kInvalidArgument, "queue depth {} is not in 1..4096",
                      opts.queue_depth);
  }
  if (!(opts.duration_s > 0) || opts.duration_s > 86400) {
    return make_error(Errc::kInvalidArgument, "duration {} s is not in (0, 86400]",
                      opts.duration_s);
  }
  auto desc = registry.open(bdev_name);
  if (!desc) return desc.status();
  Bdev& b = *desc->bdev();
  if (opts.block_size == 0 || opts.block_size % b.block_size() || opts.block_size > (16u << 20) ||
      opts.block_size > b.size_bytes()) {
    return make_error(Errc::kInvalidArgument,
                      "block size {} must be a multiple of bdev '{}''s block size {} and at most "
                      "min(16 MiB, its size)",
                      opts.block_size, bdev_name, b.block_size());
  }
  if (wl->read_pct > 0 && !b.supports(IoType::kRead)) {
    return make_error(Errc::kUnsupported, "bdev '{}' does not support reads", bdev_name);
  }
  if (wl->read_pct < 100 && !b.supports(IoType::kWrite)) {
    return make_error(Errc::kUnsupported, "bdev '{}' does not support writes", bdev_name);
  }
  auto& group = registry.reactors();
  std::vector<size_t> which = opts.reactors;
  if (which.empty()) {
    for (size_t i = 0; i < group.size(); ++i) which.push_back(i);
  }
  for (size_t i : which) {
    if (i >= group.size()) {
      return make_error(Errc::kInvalidArgument, "reactor {} does not exist (engine has {})", i,
                        group.size());
    }
  }

  const uint64_t slots = b.size_bytes() / opts.block_size;
  const size_t align = std::max<size_t>(4096, b.buf_align());
  std::vector<std::unique_ptr<Job>> jobs;
  std::latch done(static_cast<std::ptrdiff_t>(which.size()));
  for (size_t k = 0; k < which.size(); ++k) {
    auto j = std::make_unique<Job>();
    j->wl = *wl;
    j->slots = slots;
    j->blocks_per_io = opts.block_size / b.block_size();
    j->seq_next = slots * k / which.size();
    j->rng = (opts.seed + 1) * 0x9E3779B97F4A7C15ull + k * 7919;
    j->done = &done;
    j->bufs.reserve(opts.queue_depth);
    j->iovs.resize(opts.queue_depth);
    j->reqs.resize(opts.queue_depth);
    for (uint32_t q = 0; q < opts.queue_depth; ++q) {
      j->bufs.emplace_back(opts.block_size, align);
      std::memset(j->bufs.back().data(), static_cast<int>(0xA5 ^ q), opts.block_size);
      j->iovs[q] = {j->bufs[q].data(), opts.block_size};
      IoRequest& r = j->reqs[q];
      r.iovs = &j->iovs[q];
      r.iovcnt = 1;
      r.num_blocks = j->blocks_per_io;
      r.cb = &Job::on_done;
      r.cb_arg = j.get();
    }
    jobs.push_back(std::move(j));
  }

  const uint64_t duration_ns = static_cast<uint64_t>(opts.duration_s * 1e9);
  for (size_t k = 0; k < which.size(); ++k) {
    Job* j = jobs[k].get();
    reactor::Reactor& r = group.at(which[k]);
    const BdevDesc& d = *desc;
    r.send([j, &r, &d, duration_ns] {
      j->ch = &d.channel(r);
      j->start_ns = mono_ns();
      j->deadline_ns = j->start_ns + duration_ns;
      j->outstanding = static_cast<uint32_t>(j->reqs.size());
      for (auto& req : j->reqs) j->issue(req);
    });
  }
  done.wait();

  PerfResult res;
  res.bdev = bdev_name;
  res.workload = opts.workload;
  res.block_size = opts.block_size;
  res.queue_depth = opts.queue_depth;
  res.reactors = static_cast<uint32_t>(which.size());
  LatencyHistogram::Snapshot snap;
  double max_s = 0;
  for (auto& j : jobs) {
    res.ios += j->ios;
    res.errors += j->errors;
    j->hist.snapshot_into(snap);
    max_s = std::max(max_s, static_cast<double>(j->end_ns - j->start_ns) / 1e9);
  }
  res.seconds = max_s;
  if (max_s > 0) {
    res.iops = static_cast<double>(res.ios) / max_s;
    res.mib_s = res.iops * opts.block_size / (1024.0 * 1024.0);
  }
  res.mean_us = snap.mean() / 1e3;
  res.p50_us = static_cast<double>(snap.percentile(50)) / 1e3;
  res.p99_us = static_cast<double>(snap.percentile(99)) / 1e3;
  res.p999_us = static_cast<double>(snap.percentile(99.9)) / 1e3;
  return res;
}

}  // namespace castor::bdev
