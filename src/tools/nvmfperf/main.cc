// castor-perf: an NVMe/TCP load generator on Castor's host queue pairs (like
// spdk_nvme_perf): connects an admin queue and N I/O queues to a subsystem, runs a
// workload at a fixed queue depth per queue and prints IOPS, MiB/s and latency
// percentiles (or JSON). --verify writes and reads back every block it touches.
// --rate IOPS offers a fixed load instead (open loop, the queue depth as a cap), and
// --cpu-pid PID reports another process's CPU time per I/O over the measurement (the
// target's, to draw its CPU against the offered load).
// --bdev URI drives the same workloads through a bdev instead of raw queue pairs (an
// nvmf:// URI, with `paths=` for several paths: the multipath host, which follows ANA
// states and fails over, so a run survives a nexus switch-over).
// --write-log FILE (with --verify) records which data each block last received with an
// acknowledged write, merged into FILE across runs; --check-log FILE reads every block
// such a log lists and compares: a later pass that proves every acknowledged write of the
// earlier runs still reads back (after faults, failovers, rebuilds). SIGINT/SIGTERM end
// a run early as its time would: the I/O in flight completes, results and log are
// written.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <iostream>
#include <latch>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <spdlog/spdlog.h>

#include "bdev/bdev.h"
#include "bdev/registry.h"
#include "common/clock.h"
#include "common/histogram.h"
#include "nvmf/host/nvmf_bdev.h"
#include "nvmf/host/qpair.h"

using namespace castor;
using namespace castor::nvmf;

namespace {

// Set by SIGINT/SIGTERM: every job stops issuing, as at its deadline.
std::atomic<bool> g_stop{false};
void on_stop_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

// The data a verify write puts in a block: bs bytes expanded from a 64-bit token (odd, so
// never 0, the "not written" of a log), so that a log of tokens describes whole blocks.
void fill_block(uint8_t* p, uint32_t bs, uint64_t token) {
  uint64_t x = token;
  for (uint32_t i = 0; i + 8 <= bs; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
}

// The write log (--write-log, --check-log): a text file, "castor-perf-write-log 1 BS" and
// then one line per block, "OFFSET TOKEN" in hex: the byte offset of the block and the
// token of the data its last acknowledged write carried. A block whose last write failed
// is not listed (its content is unknown).
using WriteLog = std::map<uint64_t, uint64_t>;

Result<WriteLog> load_write_log(const std::string& path, uint32_t bs, bool must_exist) {
  WriteLog log;
  std::ifstream in(path);
  if (!in) {
    if (must_exist) return make_error(Errc::kNotFound, "cannot read the write log {}", path);
    return log;
  }
  std::string magic;
  int version = 0;
  uint32_t log_bs = 0;
  if (!(in >> magic >> version >> log_bs) || magic != "castor-perf-write-log" || version != 1) {
    return make_error(Errc::kInvalidArgument, "{} is not a castor-perf write log", path);
  }
  if (log_bs != bs) {
    return make_error(Errc::kInvalidArgument, "{} was written with --bs {}, not {}", path, log_bs, bs);
  }
  uint64_t off = 0, token = 0;
  while (in >> std::hex >> off >> token) log[off] = token;
  if (!in.eof()) return make_error(Errc::kInvalidArgument, "{}: a malformed line", path);
  return log;
}

Status save_write_log(const std::string& path, uint32_t bs, const WriteLog& log) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "castor-perf-write-log 1 " << bs << "\n" << std::hex;
    for (const auto& [off, token] : log) out << off << " " << token << "\n";
    out.flush();
    if (!out) return make_error(Errc::kIoError, "cannot write {}", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return make_error(Errc::kIoError, "cannot rename {}", tmp);
  return Status::ok();
}

struct Queue {
  std::unique_ptr<HostQpair> qp;
  reactor::Reactor* r = nullptr;
};

// Creates a queue pair on `r` over a fresh connection and waits until it is ready.
Result<Queue> open_queue(reactor::ReactorGroup& g, size_t ri, const std::string& host, uint16_t port,
                         const HostQpairOptions& o) {
  auto fd = reactor::tcp_connect(host, port, 3000);
  if (!fd) return fd.status();
  Queue q;
  q.r = &g.at(ri);
  std::promise<std::string> ready;
  auto fut = ready.get_future();
  auto* pr = &ready;
  g.run_on(ri, [&](reactor::Reactor& r) {
    q.qp = std::make_unique<HostQpair>(
        r, *fd, o, [pr](bool ok, std::string why) { pr->set_value(ok ? "" : why); }, [](std::string) {});
    q.qp->start();
  });
  std::string err = fut.get();
  if (!err.empty()) return make_error(Errc::kIoError, "queue setup failed: {}", err);
  return q;
}

Cqe run(Queue& q, Sqe sqe, std::span<const uint8_t> out = {}, std::span<uint8_t> in = {}) {
  std::promise<Cqe> p;
  auto f = p.get_future();
  q.r->send([&] {
    if (q.qp->submit(sqe, out, in, [&p](const Cqe& c) { p.set_value(c); }) < 0) {
      Cqe c{};
      c.status = 0xffff;
      p.set_value(c);
    }
  });
  return f.get();
}

Cqe connect(Queue& q, const std::string& subnqn, const std::string& hostnqn, uint16_t qid, uint16_t cntlid) {
  ConnectCmd c{};
  c.opcode = admin_op::kFabrics;
  c.fctype = fctype::kConnect;
  c.qid = qid;
  c.sqsize = 127;
  c.kato = qid == 0 ? 30000 : 0;
  static thread_local ConnectData d;
  d = ConnectData{};
  d.cntlid = cntlid;
  std::strncpy(d.subnqn, subnqn.c_str(), sizeof(d.subnqn) - 1);
  std::strncpy(d.hostnqn, hostnqn.c_str(), sizeof(d.hostnqn) - 1);
  Sqe s;
  std::memcpy(&s, &c, sizeof(s));
  return run(q, s, {reinterpret_cast<const uint8_t*>(&d), sizeof(d)});
}

Cqe property(Queue& q, bool set, uint32_t ofst, uint64_t value, bool eight) {
  PropertyCmd p{};
  p.opcode = admin_op::kFabrics;
  p.fctype = set ? fctype::kPropertySet : fctype::kPropertyGet;
  p.attrib = eight ? 1 : 0;
  p.ofst = ofst;
  p.value = value;
  Sqe s;
  std::memcpy(&s, &p, sizeof(s));
  return run(q, s);
}

// CPU time (user + system) of every thread of process `pid` so far, in nanoseconds, from
// /proc/PID/task/*/schedstat (nanosecond resolution, unlike the clock ticks of
// /proc/PID/stat). -1 when the process is gone. Threads that exited are not counted.
int64_t process_cpu_ns(int pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int64_t total = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name + "/schedstat");
    int64_t run_ns = 0;
    if (in >> run_ns) total += run_ns;
  }
  closedir(d);
  return total;
}

struct Job;

// --bdev: slot k's request (one I/O in flight per slot).
struct BdevSlot {
  Job* job = nullptr;
  uint32_t k = 0;
  uint64_t t0 = 0;
  bool read = false;
  bdev::IoRequest req;
  iovec iov{};
};

struct Job {
  Queue* q = nullptr;             // raw queue pair, or
  const bdev::BdevDesc* bdev = nullptr;  // a bdev (--bdev), through its channel on `r`
  reactor::Reactor* r = nullptr;  // where the job runs
  std::vector<BdevSlot> bdev_slots;
  uint32_t bs = 0, lba_size = 0, qd = 0, read_pct = 100;
  bool random = true, verify = false;
  uint64_t nlbas = 0, slots = 0, seq = 0, deadline = 0, start = 0, end = 0;
  uint64_t base = 0, stride = 1;  // verify: this job's share of the blocks
  uint64_t first_slot = 0;        // --offset-mb, in units of bs
  uint64_t ios = 0, errors = 0, mismatches = 0;
  uint64_t rng = 88172645463325252ull;
  uint32_t outstanding = 0;
  LatencyHistogram hist;
  std::vector<bdev::DmaBuffer> bufs, expect;
  std::vector<uint64_t> verify_lba;
  std::vector<uint8_t> phase;  // verify: 0 = write next, 1 = read back
  std::vector<uint64_t> token;  // verify: the token of slot k's data
  // --write-log: per block of the region (index slot), the token of its last acknowledged
  // write, kFailedWrite after a failed one, 0 if not written. Blocks are split between
  // the jobs' slots, so each element has one writer.
  static constexpr uint64_t kFailedWrite = 2;  // even: never a token
  std::vector<uint64_t>* written = nullptr;
  // --check-log: this job's share of the log's blocks (offset, token), read in turn.
  bool check_mode = false;
  std::vector<std::pair<uint64_t, uint64_t>> check;
  size_t check_next = 0;
  uint64_t checked = 0;
  std::latch* done = nullptr;
  // --rate: one arrival every interval_ns from start, issued on a free slot (of qd) at
  // once, or when a slot frees if none is (counted in `waited`). Latency is measured from
  // the submission, so it is the target's service time, not the backlog's.
  uint64_t interval_ns = 0;  // 0: closed loop, qd always in flight
  uint64_t next_arrival = 0, waited = 0;
  std::vector<uint32_t> free_slots;
  std::optional<reactor::Reactor::TimerId> timer;
  bool finished = false;
  void finish(uint64_t now) {
    if (finished) return;
    finished = true;
    end = now;
    if (timer) r->cancel_timer(*timer);
    timer.reset();
    done->count_down();
  }
  // Rate mode: slot k is free (its I/O completed, or its submission failed).
  void slot_free(uint32_t k, uint64_t now, bool dead) {
    --outstanding;
    if (!dead && now < deadline && !g_stop.load(std::memory_order_relaxed) &&
        next_arrival <= now) {  // an arrival waits for a slot
      ++waited;
      next_arrival += interval_ns;
      ++outstanding;
      return issue(k);
    }
    free_slots.push_back(k);
    if ((now >= deadline || g_stop.load(std::memory_order_relaxed)) && outstanding == 0) finish(now);
  }
  // Rate mode: issues the arrivals that are due on free slots and sleeps until the next.
  void tick() {
    timer.reset();
    if (finished) return;
    const uint64_t now = mono_ns();
    if (now >= deadline || g_stop.load(std::memory_order_relaxed)) {
      if (outstanding == 0) finish(now);
      return;
    }
    while (next_arrival <= now && !free_slots.empty()) {
      uint32_t k = free_slots.back();
      free_slots.pop_back();
      next_arrival += interval_ns;
      ++outstanding;
      issue(k);
    }
    // With no free slot the due arrivals are issued by completions; wake at the next
    // arrival (or the deadline) anyway.
    uint64_t wake = std::min(std::max(next_arrival, now + 1000), deadline);
    timer = r->add_timer(wake - now, [this] { tick(); });
  }
  uint64_t next() {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }
  void issue(uint32_t k) {
    bool read;
    uint64_t slot;
    if (check_mode) {
      // --check-log: the next block of the log, read and compared with its token's data.
      if (check_next == check.size()) {
        if (--outstanding == 0) {
          end = mono_ns();
          done->count_down();
        }
        return;
      }
      const auto [off, tok] = check[check_next++];
      fill_block(expect[k].data(), bs, tok);
      std::memset(bufs[k].data(), 0, bs);
      read = true;
      const uint64_t slba = off / lba_size;
      if (bdev) return issue_bdev(k, slba, read);
      return submit_raw(k, slba, read);
    }
    if (verify) {
      // Slot k of job j owns blocks base+k, base+k+stride, ...: no two commands, on
      // any connection, ever touch one block.
      if (phase[k] == 0) {
        uint64_t per = slots / stride;
        slot = base + k + stride * (next() % std::max<uint64_t>(per, 1));
        verify_lba[k] = slot;
        token[k] = next() | 1;
        fill_block(expect[k].data(), bs, token[k]);
        std::memcpy(bufs[k].data(), expect[k].data(), bs);
        read = false;
      } else {
        slot = verify_lba[k];
        std::memset(bufs[k].data(), 0, bs);
        read = true;
      }
    } else {
      slot = random ? next() % slots : (seq++ % slots);
      read = read_pct == 100 || (read_pct && next() % 100 < read_pct);
    }
    uint64_t slba = (first_slot + slot) * (bs / lba_size);
    if (bdev) return issue_bdev(k, slba, read);
    submit_raw(k, slba, read);
  }
  void submit_raw(uint32_t k, uint64_t slba, bool read) {
    Sqe s{};
    s.nsid = 1;
    s.opcode = read ? io_op::kRead : io_op::kWrite;
    s.cdw10 = static_cast<uint32_t>(slba);
    s.cdw11 = static_cast<uint32_t>(slba >> 32);
    s.cdw12 = bs / lba_size - 1;
    uint64_t t0 = mono_ns();
    std::span<uint8_t> b(bufs[k].data(), bs);
    auto cb = [this, k, t0, read](const Cqe& c) { completed(k, t0, read, c.status != 0, c.status == 0xffff); };
    bool ok = (read ? q->qp->submit(s, {}, b, cb) : q->qp->submit(s, b, {}, cb)) >= 0;
    if (!ok) {
      ++errors;
      if (interval_ns) return slot_free(k, mono_ns(), true);
      if (--outstanding == 0) {
        end = mono_ns();
        done->count_down();
      }
    }
  }
  // Slot k's I/O is done. `dead`: its connection is gone (nothing more is issued on it).
  void completed(uint32_t k, uint64_t t0, bool read, bool failed, bool dead) {
    uint64_t now = mono_ns();
    const bool checking = check_mode;
    if (failed) {
      ++errors;
    } else {
      ++ios;
      hist.record(now - t0);
      if ((verify || checking) && read && std::memcmp(bufs[k].data(), expect[k].data(), bs) != 0) ++mismatches;
    }
    if (checking && !failed) ++checked;
    if (verify && !read && written) (*written)[verify_lba[k]] = failed ? kFailedWrite : token[k];
    if (verify) phase[k] ^= 1;
    if (interval_ns) return slot_free(k, now, dead);
    if (now < deadline && !dead && !g_stop.load(std::memory_order_relaxed)) return issue(k);
    if (--outstanding == 0) {
      end = now;
      done->count_down();
    }
  }
  void issue_bdev(uint32_t k, uint64_t slba, bool read) {
    BdevSlot& sl = bdev_slots[k];
    sl.t0 = mono_ns();
    sl.read = read;
    sl.iov = {bufs[k].data(), bs};
    sl.req = bdev::IoRequest{};
    sl.req.type = read ? bdev::IoType::kRead : bdev::IoType::kWrite;
    sl.req.offset_blocks = slba;
    sl.req.num_blocks = bs / lba_size;
    sl.req.iovs = &sl.iov;
    sl.req.iovcnt = 1;
    sl.req.cb_arg = &sl;
    sl.req.cb = [](bdev::IoRequest& q, void* arg) {
      auto* slot = static_cast<BdevSlot*>(arg);
      slot->job->completed(slot->k, slot->t0, slot->read, q.status != bdev::IoStatus::kSuccess, false);
    };
    bdev->channel(*r).submit(sl.req);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"castor-perf: NVMe/TCP load generator"};
  std::string target, nqn, hostnqn = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000ca57";
  std::string workload = "randread", cores = "0";
  uint32_t bs = 4096, qd = 32, mix = 70, connections = 1;
  double secs = 5;
  bool verify = false, hdgst = false, ddgst = false, json = false;
  std::string bdev_uri;
  auto* connect_opt = app.add_option("-r,--connect", target, "HOST:PORT of the target");
  auto* nqn_opt = app.add_option("-n,--nqn", nqn, "subsystem NQN");
  auto* bdev_opt = app.add_option("--bdev", bdev_uri,
                                  "drive a bdev instead of raw queue pairs: an nvmf:// URI (paths=H:P,... for "
                                  "multipath); --connections I/O streams over the host's reactors");
  bdev_opt->excludes(connect_opt)->excludes(nqn_opt);
  connect_opt->needs(nqn_opt);
  nqn_opt->needs(connect_opt);
  app.add_option("--hostnqn", hostnqn)->capture_default_str();
  app.add_option("-w,--workload", workload, "randread|randwrite|read|write|randrw|rw")->capture_default_str();
  app.add_option("-b,--bs", bs)->capture_default_str();
  app.add_option("-q,--qd", qd, "queue depth per connection")->capture_default_str();
  app.add_option("-t,--time", secs)->capture_default_str();
  app.add_option("--rwmix", mix, "read percentage of mixed workloads")->capture_default_str();
  app.add_option("-c,--connections", connections, "I/O queues (connections)")->capture_default_str();
  app.add_option("--cores", cores, "CPU list for the host's reactors")->capture_default_str();
  app.add_flag("--verify", verify, "write, read back and compare (each block one writer)");
  app.add_flag("--hdgst", hdgst, "header digests");
  app.add_flag("--ddgst", ddgst, "data digests");
  app.add_flag("--json", json);
  uint64_t offset_mb = 0, size_mb = 0;
  app.add_option("--offset-mb", offset_mb, "start of the region to use (MiB)")->capture_default_str();
  app.add_option("--size-mb", size_mb, "size of the region to use (MiB; 0 = to the end)")->capture_default_str();
  bool poll = false;
  app.add_flag("--poll", poll, "busy-poll the host's reactors");
  double rate = 0;
  app.add_option("--rate", rate,
                 "offered load in IOPS over all connections: open loop, at most --qd in flight "
                 "per connection (default 0: closed loop, --qd always in flight)")
      ->check(CLI::Range(0.0, 1e8));
  std::vector<int> cpu_pids;
  app.add_option("--cpu-pid", cpu_pids,
                 "report this process's CPU time per I/O over the run (the target's; repeatable)");
  std::string taskrun = "defer";
  app.add_option("--taskrun", taskrun, "io_uring task-run mode: defer, coop or interrupt")
      ->capture_default_str();
  uint64_t seed = 0;
  app.add_option("--seed", seed,
                 "seed of the blocks chosen and the data written (default 0: the same every run; give "
                 "each run of a --write-log series its own, so a lost write is not hidden by the same "
                 "data written there by an earlier run)");
  std::string write_log, check_log;
  auto* write_log_opt = app.add_option(
      "--write-log", write_log,
      "with --verify: record the data of every acknowledged write in FILE (merged into what FILE "
      "holds from earlier runs: the last write of a block wins, a block whose write failed is dropped)");
  auto* check_log_opt = app.add_option(
      "--check-log", check_log,
      "read every block a --write-log FILE lists and compare it with the data last written there "
      "(the workload, -t and --offset-mb/--size-mb are ignored; exit 1 on any error or mismatch)");
  auto* verify_opt = app.get_option("--verify");
  write_log_opt->needs(verify_opt)->excludes(check_log_opt);
  check_log_opt->excludes(verify_opt);
  CLI11_PARSE(app, argc, argv);
  if (!check_log.empty() && rate > 0) {
    std::fprintf(stderr, "castor-perf: error: --check-log reads as fast as it can (no --rate)\n");
    return 2;
  }
  {
    struct sigaction sa{};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
  }
  spdlog::set_level(spdlog::level::warn);
  if (bdev_uri.empty() && target.empty()) {
    std::fprintf(stderr, "castor-perf: error: give --connect HOST:PORT with --nqn, or --bdev URI\n");
    return 2;
  }
  std::string host;
  uint16_t port = 0;
  if (!target.empty()) {
    auto colon = target.rfind(':');
    const std::string p = colon == std::string::npos ? "" : target.substr(colon + 1);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos || std::stoi(p) == 0 ||
        std::stoi(p) > 65535) {
      std::fprintf(stderr, "castor-perf: error: --connect wants HOST:PORT\n");
      return 2;
    }
    host = target.substr(0, colon);
    port = static_cast<uint16_t>(std::stoi(p));
  }
  uint32_t read_pct = workload == "randread" || workload == "read" ? 100
                      : workload == "randwrite" || workload == "write" ? 0 : mix;
  bool random = workload.rfind("rand", 0) == 0;
  auto cpus = reactor::parse_cpu_list(cores);
  if (!cpus) {
    std::fprintf(stderr, "castor-perf: error: %s\n", cpus.status().message().c_str());
    return 2;
  }
  auto tr = reactor::parse_task_run(taskrun);
  if (!tr) {
    std::fprintf(stderr, "castor-perf: error: %s\n", tr.status().message().c_str());
    return 2;
  }
  reactor::ReactorOptions ro;
  ro.poll = poll;
  ro.task_run = *tr;
  reactor::ReactorGroup g(*cpus, ro);
  g.start();
  int rc = 0;
  auto die = [&](const std::string& m) {
    std::fprintf(stderr, "castor-perf: error: %s\n", m.c_str());
    rc = 1;
  };
  HostQpairOptions o;
  o.hdgst = hdgst;
  o.ddgst = ddgst;
  std::vector<Queue> queues;
  std::optional<Queue> admin;
  std::unique_ptr<bdev::BdevRegistry> registry;  // --bdev
  bdev::BdevDesc dev;  // --bdev, opened
  uint64_t nlbas = 0;
  uint32_t lba_size = 512;
  size_t streams = 0;  // jobs: one per I/O queue, or --connections over the bdev
  if (!bdev_uri.empty()) {
    registry = std::make_unique<bdev::BdevRegistry>(g);
    NvmfHostOptions ho;
    ho.hostnqn = hostnqn;
    registry->register_module(make_nvmf_bdev_module(ho));
    if (auto made = registry->create(bdev_uri); !made) {
      die(made.status().to_string());
    } else {
      auto opened = registry->open(made->name);
      if (!opened) die(opened.status().to_string());
      dev = std::move(*opened);
      nlbas = dev.bdev()->num_blocks();
      lba_size = dev.bdev()->block_size();
      if (bs % lba_size || uint64_t{bs} > nlbas * lba_size) die("bdev too small or bs not a multiple of its block size");
      streams = connections;
    }
  } else {
    auto opened = open_queue(g, 0, host, port, o);
    if (!opened) {
      die(opened.status().message());
      g.stop();
      return 1;
    }
    admin = std::move(*opened);
    Cqe c = connect(*admin, nqn, hostnqn, 0, 0xffff);
    uint16_t cntlid = static_cast<uint16_t>(c.dw0);
    if (c.status) die(fmt::format("admin connect refused (status 0x{:04x})", c.status));
    if (!rc) {
      uint32_t cc = (6u << 16) | (4u << 20);
      property(*admin, true, prop::kCc, cc | 1, false);
      if (!(property(*admin, false, prop::kCsts, 0, false).dw0 & 1)) die("controller did not become ready");
      Sqe nq{};
      nq.opcode = admin_op::kSetFeatures;
      nq.cdw10 = feature::kNumberOfQueues;
      nq.cdw11 = (connections - 1) | ((connections - 1) << 16);
      run(*admin, nq);
      std::vector<uint8_t> idns(4096);
      Sqe id{};
      id.opcode = admin_op::kIdentify;
      id.nsid = 1;
      id.cdw10 = cns::kNamespace;
      if (run(*admin, id, {}, idns).status) die("identify namespace 1 failed");
      IdentifyNamespace in;
      std::memcpy(&in, idns.data(), sizeof(in));
      nlbas = in.nsze;
      lba_size = 1u << in.lbaf[in.flbas & 0xf].lbads;
      if (!rc && (nlbas == 0 || bs % lba_size || uint64_t{bs} > nlbas * lba_size)) die("namespace too small or bs not a multiple of its block size");
    }
    for (uint32_t i = 0; i < connections && !rc; ++i) {
      auto q = open_queue(g, i % g.size(), host, port, o);
      if (!q) {
        die(q.status().message());
        break;
      }
      if (connect(*q, nqn, hostnqn, static_cast<uint16_t>(i + 1), cntlid).status) {
        die("I/O queue connect refused");
        break;
      }
      queues.push_back(std::move(q.value()));
    }
    streams = queues.size();
  }
  {
    if (!rc && ((offset_mb << 20) + (size_mb << 20) > nlbas * lba_size ||
                (offset_mb << 20) + bs > nlbas * lba_size)) {
      die("--offset-mb/--size-mb reach beyond the namespace");
    }
    WriteLog log;  // --write-log (what the file held before) or --check-log
    if (!rc && (!write_log.empty() || !check_log.empty())) {
      auto loaded = write_log.empty() ? load_write_log(check_log, bs, true) : load_write_log(write_log, bs, false);
      if (!loaded) {
        die(loaded.status().message());
      } else {
        log = std::move(*loaded);
      }
      for (const auto& [off, token] : log) {
        if (!rc && (off % bs || off + bs > nlbas * lba_size)) {
          die(fmt::format("the write log lists a block at {} that is not one of this device's", off));
        }
      }
    }
    if (!rc) {
      std::latch done(static_cast<std::ptrdiff_t>(streams));
      std::vector<std::unique_ptr<Job>> jobs;
      uint64_t dur = static_cast<uint64_t>(secs * 1e9);
      if (!check_log.empty()) dur = UINT64_MAX / 2;  // until every block is read
      std::vector<uint64_t> written;  // --write-log: per block of the region
      uint64_t region_first = 0;      // its first block (units of bs)
      for (size_t i = 0; i < streams; ++i) {
        auto j = std::make_unique<Job>();
        if (dev) {
          j->bdev = &dev;
          j->r = &g.at(i % g.size());
          j->bdev_slots.resize(qd);
          for (uint32_t k = 0; k < qd; ++k) {
            j->bdev_slots[k].job = j.get();
            j->bdev_slots[k].k = k;
          }
        } else {
          j->q = &queues[i];
          j->r = queues[i].r;
        }
        j->bs = bs;
        j->lba_size = lba_size;
        j->qd = qd;
        j->read_pct = read_pct;
        j->random = random;
        j->verify = verify;
        j->nlbas = nlbas;
        const uint64_t total = nlbas * lba_size;
        const uint64_t start = std::min<uint64_t>(offset_mb << 20, total);
        const uint64_t len = size_mb ? std::min<uint64_t>(size_mb << 20, total - start) : total - start;
        j->first_slot = start / bs;
        j->slots = len / bs;
        if (seed) j->rng = (seed * 0x9E3779B97F4A7C15ull) | 1;
        j->rng += i * 7919;
        if (!write_log.empty()) {
          region_first = j->first_slot;
          written.assign(j->slots, 0);
          j->written = &written;
        }
        if (!check_log.empty()) {
          j->check_mode = true;
          size_t n = 0;
          for (const auto& e : log) {
            if (n++ % streams == i) j->check.push_back(e);
          }
        }
        j->token.assign(qd, 0);
        j->base = i * qd;
        j->stride = uint64_t{qd} * streams;
        j->done = &done;
        j->phase.assign(qd, 0);
        if (rate > 0) {
          j->interval_ns = std::max<uint64_t>(
              1, static_cast<uint64_t>(1e9 * static_cast<double>(streams) / rate));
        }
        j->verify_lba.assign(qd, 0);
        for (uint32_t k = 0; k < qd; ++k) {
          j->bufs.emplace_back(bs);
          j->expect.emplace_back(bs);
          std::memset(j->bufs.back().data(), 0x5a, bs);
        }
        jobs.push_back(std::move(j));
      }
      std::vector<int64_t> cpu0;
      for (int pid : cpu_pids) cpu0.push_back(process_cpu_ns(pid));
      for (auto& j : jobs) {
        Job* jp = j.get();
        jp->r->send([jp, dur] {
          jp->start = mono_ns();
          jp->deadline = jp->start + dur;
          if (jp->interval_ns) {
            jp->next_arrival = jp->start;
            for (uint32_t k = jp->qd; k-- > 0;) jp->free_slots.push_back(k);
            jp->tick();
            return;
          }
          jp->outstanding = jp->qd;
          for (uint32_t k = 0; k < jp->qd; ++k) jp->issue(k);
        });
      }
      // The target drops a controller that sends nothing on its admin queue for KATO (30 s,
      // set at Connect): a Keep Alive every 10 s lets a run last as long as it is asked to.
      struct KeepAlive {
        Queue* q;
        std::optional<reactor::Reactor::TimerId> timer;
        void arm() {
          timer = q->r->add_timer(10'000'000'000ull, [this] {
            Sqe k{};
            k.opcode = admin_op::kKeepAlive;
            q->qp->submit(k, {}, {}, [](const Cqe&) {});
            arm();
          });
        }
      } keep_alive{admin ? &*admin : nullptr, std::nullopt};
      if (admin) g.run_on(0, [&](reactor::Reactor&) { keep_alive.arm(); });
      done.wait();
      g.run_on(0, [&](reactor::Reactor& r) {
        if (keep_alive.timer) r.cancel_timer(*keep_alive.timer);
      });
      std::vector<int64_t> cpu1;
      for (int pid : cpu_pids) cpu1.push_back(process_cpu_ns(pid));
      LatencyHistogram::Snapshot s;
      uint64_t ios = 0, errors = 0, mism = 0, waited = 0;
      double maxs = 0;
      for (auto& j : jobs) {
        j->hist.snapshot_into(s);
        ios += j->ios;
        errors += j->errors;
        mism += j->mismatches;
        waited += j->waited;
        maxs = std::max(maxs, static_cast<double>(j->end - j->start) / 1e9);
      }
      double iops = ios / maxs;
      uint64_t checked = 0;
      for (auto& j : jobs) checked += j->checked;
      if (!write_log.empty()) {
        for (uint64_t slot = 0; slot < written.size(); ++slot) {
          const uint64_t off = (region_first + slot) * bs;
          if (written[slot] == Job::kFailedWrite) {
            log.erase(off);
          } else if (written[slot]) {
            log[off] = written[slot];
          }
        }
        if (Status st = save_write_log(write_log, bs, log); !st) die(st.message());
      }
      // CPU of each --cpu-pid process over the run: seconds, share of one core, per I/O.
      nlohmann::json cpu = nlohmann::json::array();
      for (size_t i = 0; i < cpu_pids.size(); ++i) {
        if (cpu0[i] < 0 || cpu1[i] < 0) {
          cpu.push_back({{"pid", cpu_pids[i]}, {"error", "no such process"}});
          continue;
        }
        double sec = static_cast<double>(cpu1[i] - cpu0[i]) / 1e9;
        cpu.push_back({{"pid", cpu_pids[i]},
                       {"cpu_s", sec},
                       {"cpu_pct", 100.0 * sec / maxs},
                       {"cpu_us_per_io", ios ? sec * 1e6 / static_cast<double>(ios) : 0.0}});
      }
      if (json) {
        std::cout << nlohmann::json{{"workload", workload}, {"block_size", bs}, {"queue_depth", qd},
                                    {"connections", connections}, {"ios", ios}, {"errors", errors},
                                    {"verify_mismatches", mism}, {"iops", iops},
                                    {"mib_s", iops * bs / 1048576.0}, {"lat_mean_us", s.mean() / 1e3},
                                    {"lat_p50_us", s.percentile(50) / 1e3}, {"lat_p99_us", s.percentile(99) / 1e3},
                                    {"lat_p999_us", s.percentile(99.9) / 1e3},
                                    {"offered_iops", rate}, {"waited_for_slot", waited},
                                    {"seconds", maxs}, {"target_cpu", cpu},
                                    {"write_log_blocks", write_log.empty() ? 0 : log.size()},
                                    {"checked", checked}, {"check_log_blocks", check_log.empty() ? 0 : log.size()}}
                         .dump()
                  << "\n";
      } else {
        std::printf("%-9s %6s %4s %5s %12s %10s %9s %9s %9s %7s %8s\n", "WORKLOAD", "BS", "QD", "CONNS", "IOPS", "MiB/s",
                    "p50(us)", "p99(us)", "p99.9(us)", "ERRORS", "MISMATCH");
        std::printf("%-9s %6u %4u %5u %12.0f %10.1f %9.1f %9.1f %9.1f %7lu %8lu\n", workload.c_str(), bs, qd,
                    connections, iops, iops * bs / 1048576.0, s.percentile(50) / 1e3, s.percentile(99) / 1e3,
                    s.percentile(99.9) / 1e3, static_cast<unsigned long>(errors), static_cast<unsigned long>(mism));
        if (!write_log.empty()) std::printf("write log %s: %zu blocks\n", write_log.c_str(), log.size());
        if (!check_log.empty()) {
          std::printf("check log %s: %lu of %zu blocks read back as written\n", check_log.c_str(),
                      static_cast<unsigned long>(checked - mism), log.size());
        }
        if (rate > 0) {
          std::printf("offered %.0f IOPS, achieved %.0f; %lu arrivals waited for a free slot (--qd %u)\n", rate,
                      iops, static_cast<unsigned long>(waited), qd);
        }
        for (const auto& c : cpu) {
          if (c.contains("error")) {
            std::printf("pid %d: no such process\n", c["pid"].get<int>());
          } else {
            std::printf("pid %d: %.3f s CPU (%.1f %% of a core), %.2f us per I/O\n", c["pid"].get<int>(),
                        c["cpu_s"].get<double>(), c["cpu_pct"].get<double>(), c["cpu_us_per_io"].get<double>());
          }
        }
      }
      if (errors || mism) rc = 1;
      if (!check_log.empty() && checked != log.size()) rc = 1;  // stopped early, or reads failed
    }
    for (auto& q : queues) g.run_on(q.r->id(), [&](reactor::Reactor&) { q.qp->close("done"); });
    if (admin) g.run_on(0, [&](reactor::Reactor&) { admin->qp->close("done"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (auto& q : queues) g.run_on(q.r->id(), [&](reactor::Reactor&) { q.qp.reset(); });
    if (admin) g.run_on(0, [&](reactor::Reactor&) { admin->qp.reset(); });
  }
  dev.close();
  registry.reset();  // disconnects the bdev's paths
  g.stop();
  return rc;
}
