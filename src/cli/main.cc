// castorctl: the command line for people. Talks to one castor-engine over gRPC.
//
// Exit codes: 0 success, 1 the engine returned an error or cannot be reached (one line
// "castorctl: error: ..." on stderr), 2 usage error.

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "castor/v1/engine.grpc.pb.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

namespace v1 = castor::v1;
using nlohmann::ordered_json;

constexpr const char* kProg = "castorctl";
constexpr const char* kDefaultEndpoint = "127.0.0.1:10124";
const std::vector<std::string> kOps = {"read", "write", "flush", "unmap", "write_zeroes", "reset"};

void print_error(std::string msg) {
  for (auto& c : msg) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  fmt::print(stderr, "{}: error: {}\n", kProg, msg);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

// Everything a command needs: the connection and the output choices.
struct Context {
  std::string endpoint;
  std::string output = "table";
  double timeout_s = 30;
  std::unique_ptr<v1::EngineService::Stub> stub;

  bool json() const { return output == "json"; }
  void connect() {
    stub = v1::EngineService::NewStub(
        grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  }
  // A fresh call context with the deadline `timeout_s` (+ `extra_s`) from now.
  std::unique_ptr<grpc::ClientContext> call(double extra_s = 0) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    auto ms = static_cast<int64_t>((timeout_s + extra_s) * 1000.0);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
    return ctx;
  }
  // Prints the one-line error for a failed call; returns the exit code (1).
  int fail(const grpc::Status& s) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      print_error(fmt::format("cannot reach engine at {}", endpoint));
    } else if (s.error_message().empty()) {
      print_error(fmt::format("request failed (gRPC code {})", static_cast<int>(s.error_code())));
    } else {
      print_error(s.error_message());
    }
    return 1;
  }
};

void print_json(const ordered_json& j) {
  fmt::print("{}\n", j.dump(2));
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

// ---- engine ----

int engine_info(Context& c) {
  v1::EngineInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->GetEngineInfo(ctx.get(), v1::GetEngineInfoRequest(), &info);
  if (!s.ok()) return c.fail(s);
  std::vector<int> cpus(info.cpus().begin(), info.cpus().end());
  if (c.json()) {
    print_json({{"version", info.version()},
                {"pid", info.pid()},
                {"reactors", info.reactor_count()},
                {"cpus", cpus},
                {"poll_mode", info.poll_mode()},
                {"uptime_seconds", info.uptime_seconds()}});
    return 0;
  }
  std::string cpu_text;
  for (int cpu : cpus) cpu_text += (cpu_text.empty() ? "" : ",") + std::to_string(cpu);
  fmt::print("{}", key_values({{"version", info.version()},
                               {"pid", std::to_string(info.pid())},
                               {"reactors", std::to_string(info.reactor_count())},
                               {"cpus", cpu_text},
                               {"poll_mode", info.poll_mode() ? "true" : "false"},
                               {"uptime", fixed(info.uptime_seconds(), 1) + " s"}}));
  return 0;
}

// ---- bdev ----

ordered_json bdev_json(const v1::BdevInfo& b) {
  return {{"name", b.name()},
          {"uuid", b.uuid()},
          {"module", b.module()},
          {"uri", b.uri()},
          {"block_size", b.block_size()},
          {"num_blocks", b.num_blocks()},
          {"size_bytes", b.size_bytes()},
          {"buf_align", b.buf_align()},
          {"supported_ops",
           std::vector<std::string>(b.supported_ops().begin(), b.supported_ops().end())},
          {"claimed_by", b.claimed_by()},
          {"open_descs", b.open_descs()}};
}

void print_bdev_table(const std::vector<const v1::BdevInfo*>& bdevs) {
  Table t({"NAME", "MODULE", "SIZE", "BLOCK_SIZE", "BLOCKS", "CLAIMED_BY", "OPEN", "UUID", "URI"});
  for (const auto* b : bdevs) {
    t.add_row({b->name(), b->module(), human_bytes(b->size_bytes()),
               std::to_string(b->block_size()), std::to_string(b->num_blocks()),
               or_dash(b->claimed_by()), std::to_string(b->open_descs()), b->uuid(), b->uri()});
  }
  t.print();
}

int bdev_create(Context& c, const std::string& uri) {
  v1::CreateBdevRequest req;
  req.set_uri(uri);
  v1::BdevInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->CreateBdev(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json(bdev_json(info));
  } else {
    print_bdev_table({&info});
  }
  return 0;
}

int bdev_list(Context& c) {
  v1::ListBdevsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListBdevs(ctx.get(), v1::ListBdevsRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& b : resp.bdevs()) arr.push_back(bdev_json(b));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::BdevInfo*> rows;
  for (const auto& b : resp.bdevs()) rows.push_back(&b);
  print_bdev_table(rows);
  return 0;
}

int bdev_destroy(Context& c, const std::string& name) {
  v1::DestroyBdevRequest req;
  req.set_name(name);
  v1::DestroyBdevResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->DestroyBdev(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"destroyed", name}});
  } else {
    fmt::print("bdev '{}' destroyed\n", name);
  }
  return 0;
}

int bdev_stats(Context& c, const std::string& name) {
  v1::GetBdevStatsRequest req;
  req.set_name(name);
  v1::GetBdevStatsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->GetBdevStats(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& b : resp.bdevs()) {
      ordered_json ops = ordered_json::array();
      for (const auto& o : b.ops()) {
        ops.push_back({{"op", o.op()},
                       {"ops", o.ops()},
                       {"bytes", o.bytes()},
                       {"errors", o.errors()},
                       {"latency_mean_us", o.latency_mean_us()},
                       {"latency_p50_us", o.latency_p50_us()},
                       {"latency_p99_us", o.latency_p99_us()},
                       {"latency_p999_us", o.latency_p999_us()}});
      }
      arr.push_back({{"name", b.name()}, {"ops", ops}});
    }
    print_json(arr);
    return 0;
  }
  // Reads and writes always; other operations once they have been used.
  Table t({"BDEV", "OP", "OPS", "BYTES", "ERRORS", "MEAN_US", "P50_US", "P99_US", "P99.9_US"});
  for (const auto& b : resp.bdevs()) {
    for (const auto& o : b.ops()) {
      bool always = o.op() == "read" || o.op() == "write";
      if (!always && o.ops() == 0 && o.errors() == 0) continue;
      t.add_row({b.name(), o.op(), std::to_string(o.ops()), human_bytes(o.bytes()),
                 std::to_string(o.errors()), fixed(o.latency_mean_us(), 1),
                 fixed(o.latency_p50_us(), 1), fixed(o.latency_p99_us(), 1),
                 fixed(o.latency_p999_us(), 1)});
    }
  }
  t.print();
  return 0;
}

struct PerfArgs {
  std::string bdev;
  std::string workload = "randread";
  uint32_t block_size = 4096;
  uint32_t queue_depth = 32;
  double duration_s = 5;
  uint32_t rw_mix_read = 70;
  std::string reactors;  // comma list, empty = all
  uint64_t seed = 1;
};

int bdev_perf(Context& c, const PerfArgs& a) {
  v1::RunBenchmarkRequest req;
  req.set_bdev(a.bdev);
  req.set_workload(a.workload);
  req.set_block_size(a.block_size);
  req.set_queue_depth(a.queue_depth);
  req.set_duration_s(a.duration_s);
  req.set_rw_mix_read(a.rw_mix_read);
  for (const auto& r : split_commas(a.reactors)) {
    req.add_reactors(static_cast<uint32_t>(std::stoul(r)));  // validated by CLI11
  }
  req.set_seed(a.seed);
  v1::BenchmarkResult r;
  auto ctx = c.call(a.duration_s);
  grpc::Status s = c.stub->RunBenchmark(ctx.get(), req, &r);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"bdev", r.bdev()},
                {"workload", r.workload()},
                {"block_size", r.block_size()},
                {"queue_depth", r.queue_depth()},
                {"reactors", r.reactors()},
                {"ios", r.ios()},
                {"errors", r.errors()},
                {"seconds", r.seconds()},
                {"iops", r.iops()},
                {"mib_s", r.mib_s()},
                {"mean_us", r.mean_us()},
                {"p50_us", r.p50_us()},
                {"p99_us", r.p99_us()},
                {"p999_us", r.p999_us()}});
    return 0;
  }
  fmt::print("{}", key_values({
                       {"bdev", r.bdev()},
                       {"workload", r.workload()},
                       {"block_size", std::to_string(r.block_size())},
                       {"queue_depth", std::to_string(r.queue_depth())},
                       {"reactors", std::to_string(r.reactors())},
                       {"seconds", fixed(r.seconds(), 2)},
                       {"ios", std::to_string(r.ios())},
                       {"errors", std::to_string(r.errors())},
                       {"iops", fixed(r.iops(), 0)},
                       {"bandwidth", fixed(r.mib_s(), 1) + " MiB/s"},
                       {"latency_us", fmt::format("mean {}  p50 {}  p99 {}  p99.9 {}",
                                                  fixed(r.mean_us(), 1), fixed(r.p50_us(), 1),
                                                  fixed(r.p99_us(), 1), fixed(r.p999_us(), 1))},
                   }));
  return 0;
}

// ---- fault ----

struct InjectArgs {
  std::string bdev;
  std::string mode;
  std::string ops;
  std::string status;
  uint64_t delay_us = 0;
  std::optional<uint64_t> lba_start;
  std::optional<uint64_t> lba_end;
  uint64_t skip = 0;
  uint64_t count = 0;
  std::optional<double> probability;
};

int fault_inject(Context& c, const InjectArgs& a) {
  v1::InjectFaultRequest req;
  req.set_bdev(a.bdev);
  auto* rule = req.mutable_rule();
  rule->set_mode(a.mode);
  for (const auto& op : split_commas(a.ops)) rule->add_ops(op);
  rule->set_error_status(a.status);
  rule->set_delay_us(a.delay_us);
  if (a.lba_start) rule->set_lba_start(*a.lba_start);
  if (a.lba_end) rule->set_lba_end(*a.lba_end);
  rule->set_skip(a.skip);
  rule->set_count(a.count);
  if (a.probability) rule->set_probability(*a.probability);
  v1::InjectFaultResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->InjectFault(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"bdev", a.bdev}, {"id", resp.id()}});
  } else {
    fmt::print("fault rule {} added to '{}'\n", resp.id(), a.bdev);
  }
  return 0;
}

int fault_clear(Context& c, const std::string& bdev, uint64_t id) {
  v1::ClearFaultRequest req;
  req.set_bdev(bdev);
  req.set_id(id);
  v1::ClearFaultResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ClearFault(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"bdev", bdev}, {"cleared", id == 0 ? ordered_json("all") : ordered_json(id)}});
  } else if (id == 0) {
    fmt::print("all fault rules cleared on '{}'\n", bdev);
  } else {
    fmt::print("fault rule {} cleared on '{}'\n", id, bdev);
  }
  return 0;
}

std::string ops_text(const v1::FaultRule& r) {
  if (static_cast<size_t>(r.ops_size()) == kOps.size()) return "all";
  std::string s;
  for (const auto& op : r.ops()) s += (s.empty() ? "" : ",") + op;
  return s;
}

int fault_list(Context& c, const std::string& bdev) {
  v1::ListFaultsRequest req;
  req.set_bdev(bdev);
  v1::ListFaultsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListFaults(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& f : resp.rules()) {
      const auto& r = f.rule();
      arr.push_back({{"bdev", f.bdev()},
                     {"id", f.id()},
                     {"mode", r.mode()},
                     {"ops", std::vector<std::string>(r.ops().begin(), r.ops().end())},
                     {"lba_start", r.lba_start()},
                     {"lba_end", r.lba_end()},
                     {"error_status", r.error_status()},
                     {"delay_us", r.delay_us()},
                     {"skip", r.skip()},
                     {"count", r.count()},
                     {"probability", r.probability()},
                     {"matched", f.matched()},
                     {"fired", f.fired()},
                     {"parked", f.parked()}});
    }
    print_json(arr);
    return 0;
  }
  Table t({"BDEV", "ID", "MODE", "OPS", "LBA", "STATUS", "DELAY_US", "SKIP", "COUNT", "PROB",
           "MATCHED", "FIRED", "PARKED"});
  for (const auto& f : resp.rules()) {
    const auto& r = f.rule();
    std::string lba = r.lba_end() == UINT64_MAX ? fmt::format("{}-", r.lba_start())
                                                : fmt::format("{}-{}", r.lba_start(), r.lba_end());
    t.add_row({f.bdev(), std::to_string(f.id()), r.mode(), ops_text(r), lba,
               r.mode() == "error" ? r.error_status() : "-", std::to_string(r.delay_us()),
               std::to_string(r.skip()), r.count() == 0 ? "unlimited" : std::to_string(r.count()),
               fixed(r.probability(), 2), std::to_string(f.matched()), std::to_string(f.fired()),
               std::to_string(f.parked())});
  }
  t.print();
  return 0;
}

// Accepts "read,write", "all", ...: every comma-separated item a known op name.
CLI::Validator ops_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto items = split_commas(s);
        if (items.empty()) return "empty operation list";
        for (const auto& i : items) {
          if (i == "all") continue;
          if (std::find(kOps.begin(), kOps.end(), i) == kOps.end()) {
            return fmt::format(
                "unknown operation '{}' (expected read, write, flush, "
                "unmap, write_zeroes, reset or all)",
                i);
          }
        }
        return "";
      },
      "OPS");
}

CLI::Validator index_list_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        for (const auto& i : split_commas(s)) {
          if (i.find_first_not_of("0123456789") != std::string::npos || i.size() > 6) {
            return fmt::format("'{}' is not a reactor index", i);
          }
        }
        return "";
      },
      "LIST");
}

int run(int argc, char** argv) {
  CLI::App app{"castorctl: manage a castor-engine (bdevs, fault drills, benchmarks)", kProg};
  app.require_subcommand(1);
  app.fallthrough();

  Context c;
  const char* env = std::getenv("CASTOR_ENDPOINT");
  c.endpoint = (env && *env) ? env : kDefaultEndpoint;
  app.add_option("-e,--endpoint", c.endpoint,
                 "engine gRPC address HOST:PORT (default $CASTOR_ENDPOINT or 127.0.0.1:10124)");
  app.add_option("-o,--output", c.output, "output format: table or json")
      ->check(CLI::IsMember({"table", "json"}));
  app.add_option("--timeout", c.timeout_s, "seconds to wait for the engine (default 30)")
      ->check(CLI::PositiveNumber);

  std::function<int()> action;

  // engine
  auto* engine = app.add_subcommand("engine", "engine process information");
  engine->require_subcommand(1);
  engine->add_subcommand("info", "version, reactors, uptime")->callback([&] {
    action = [&] { return engine_info(c); };
  });

  // bdev
  auto* bdev = app.add_subcommand("bdev", "block devices");
  bdev->require_subcommand(1);
  std::string uri, name;
  auto* create = bdev->add_subcommand("create", "create a bdev from a URI");
  create
      ->add_option("URI", uri,
                   "e.g. malloc:///m0?size_mb=64, file:///path?size_mb=N, "
                   "fault:///f0?base=m0")
      ->required();
  create->callback([&] { action = [&] { return bdev_create(c, uri); }; });

  bdev->add_subcommand("list", "list bdevs")->callback([&] {
    action = [&] { return bdev_list(c); };
  });

  auto* destroy = bdev->add_subcommand("destroy", "destroy a bdev");
  destroy->add_option("NAME", name, "bdev name")->required();
  destroy->callback([&] { action = [&] { return bdev_destroy(c, name); }; });

  auto* stats = bdev->add_subcommand("stats", "I/O statistics of one bdev or all");
  stats->add_option("NAME", name, "bdev name (default: every bdev)");
  stats->callback([&] { action = [&] { return bdev_stats(c, name); }; });

  PerfArgs perf_args;
  auto* perf = bdev->add_subcommand("perf", "run the built-in benchmark on a bdev");
  perf->add_option("NAME", perf_args.bdev, "bdev name")->required();
  perf->add_option("--workload", perf_args.workload,
                   "randread, randwrite, read, write, randrw or rw (default randread)")
      ->check(CLI::IsMember({"randread", "randwrite", "read", "write", "randrw", "rw"}));
  perf->add_option("--bs", perf_args.block_size, "I/O size in bytes (default 4096)")
      ->check(CLI::Range(1u, 1u << 30));
  perf->add_option("--qd", perf_args.queue_depth, "queue depth per reactor (default 32)")
      ->check(CLI::Range(1u, 4096u));
  perf->add_option("--time", perf_args.duration_s, "seconds to run (default 5)")
      ->check(CLI::Range(0.001, 300.0));
  perf->add_option("--rwmix", perf_args.rw_mix_read, "percent reads for randrw/rw (default 70)")
      ->check(CLI::Range(0u, 100u));
  perf->add_option("--reactors", perf_args.reactors,
                   "reactor indices to run on, e.g. 0,1 (default all)")
      ->check(index_list_validator());
  perf->add_option("--seed", perf_args.seed, "random seed (default 1)");
  perf->callback([&] { action = [&] { return bdev_perf(c, perf_args); }; });

  // fault
  auto* fault = app.add_subcommand("fault", "fault injection on fault:// bdevs");
  fault->require_subcommand(1);
  InjectArgs inj;
  auto* inject = fault->add_subcommand("inject", "add a fault rule");
  inject->add_option("BDEV", inj.bdev, "fault bdev name")->required();
  inject->add_option("--mode", inj.mode, "error, delay, hang or drop")
      ->required()
      ->check(CLI::IsMember({"error", "delay", "hang", "drop"}));
  inject
      ->add_option("--op", inj.ops,
                   "operations, comma-separated: read, write, flush, unmap, "
                   "write_zeroes, reset, or all (default read,write)")
      ->check(ops_validator());
  inject->add_option("--status", inj.status, "error status for --mode error (default io_error)")
      ->check(CLI::IsMember({"io_error", "no_space", "aborted", "timed_out", "invalid"}));
  inject->add_option("--delay-us", inj.delay_us, "delay for --mode delay, microseconds");
  inject->add_option("--lba-start", inj.lba_start, "first block of the range (default 0)");
  inject->add_option("--lba-end", inj.lba_end, "end of the range, exclusive (default none)");
  inject->add_option("--skip", inj.skip, "let this many matching I/Os through first");
  inject->add_option("--count", inj.count, "fault this many I/Os, then stop (0: no limit)");
  inject
      ->add_option("--probability", inj.probability,
                   "probability of faulting each eligible I/O (default 1)")
      ->check(CLI::Range(0.0, 1.0));
  inject->callback([&] { action = [&] { return fault_inject(c, inj); }; });

  uint64_t clear_id = 0;
  auto* clear = fault->add_subcommand("clear", "remove one fault rule or all of them");
  clear->add_option("BDEV", name, "fault bdev name")->required();
  clear->add_option("--id", clear_id, "rule id (default: every rule)");
  clear->callback([&] { action = [&] { return fault_clear(c, name, clear_id); }; });

  auto* flist = fault->add_subcommand("list", "list fault rules with their counters");
  flist->add_option("BDEV", name, "fault bdev name (default: every fault bdev)");
  flist->callback([&] { action = [&] { return fault_list(c, name); }; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    print_error(e.what());
    return 2;
  }
  if (!action) {
    print_error("no command given (run with --help)");
    return 2;
  }
  c.connect();
  return action();
}

}  // namespace
}  // namespace castor::cli

int main(int argc, char** argv) {
  return castor::cli::run(argc, argv);
}
