// castorctl: the command line for people. Talks to one castor-engine over gRPC.
//
// Exit codes: 0 success, 1 the engine returned an error or cannot be reached (one line
// "castorctl: error: ..." on stderr), 2 usage error.

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
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

// ---- pool ----

ordered_json pool_json(const v1::PoolInfo& p) {
  return {{"name", p.name()},
          {"uuid", p.uuid()},
          {"cluster_size", p.cluster_size()},
          {"disks", std::vector<std::string>(p.disks().begin(), p.disks().end())},
          {"total_clusters", p.total_clusters()},
          {"used_clusters", p.used_clusters()},
          {"capacity_bytes", p.capacity_bytes()},
          {"used_bytes", p.used_bytes()},
          {"committed_bytes", p.committed_bytes()},
          {"replicas", p.replicas()},
          {"state", p.state()}};
}

void print_pool_table(const std::vector<const v1::PoolInfo*>& pools) {
  Table t({"NAME", "DISKS", "CLUSTER", "CAPACITY", "USED", "COMMITTED", "REPLICAS", "STATE"});
  for (const auto* p : pools) {
    std::string disks;
    for (const auto& d : p->disks()) disks += (disks.empty() ? "" : ",") + d;
    t.add_row({p->name(), or_dash(disks), human_bytes(p->cluster_size()),
               human_bytes(p->capacity_bytes()), human_bytes(p->used_bytes()),
               human_bytes(p->committed_bytes()), std::to_string(p->replicas()), p->state()});
  }
  t.print();
}

int print_pool(Context& c, const v1::PoolInfo& p) {
  if (c.json()) {
    print_json(pool_json(p));
  } else {
    print_pool_table({&p});
  }
  return 0;
}

int pool_create(Context& c, const std::string& name, const std::vector<std::string>& disks,
                uint64_t cluster_size) {
  v1::CreatePoolRequest req;
  req.set_name(name);
  for (const auto& d : disks) req.add_disks(d);
  req.set_cluster_size(cluster_size);
  v1::PoolInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->CreatePool(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_pool(c, info);
}

int pool_import(Context& c, const std::vector<std::string>& disks) {
  v1::ImportPoolRequest req;
  for (const auto& d : disks) req.add_disks(d);
  v1::PoolInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->ImportPool(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_pool(c, info);
}

int pool_export(Context& c, const std::string& name) {
  v1::ExportPoolRequest req;
  req.set_name(name);
  v1::ExportPoolResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ExportPool(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"exported", name}});
  } else {
    fmt::print("pool '{}' exported\n", name);
  }
  return 0;
}

int pool_destroy(Context& c, const std::string& name) {
  v1::DestroyPoolRequest req;
  req.set_name(name);
  v1::DestroyPoolResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->DestroyPool(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"destroyed", name}});
  } else {
    fmt::print("pool '{}' destroyed\n", name);
  }
  return 0;
}

int pool_list(Context& c, const std::string& name) {
  v1::ListPoolsRequest req;
  req.set_name(name);
  v1::ListPoolsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListPools(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& p : resp.pools()) arr.push_back(pool_json(p));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::PoolInfo*> rows;
  for (const auto& p : resp.pools()) rows.push_back(&p);
  print_pool_table(rows);
  return 0;
}

// ---- replica ----

ordered_json replica_json(const v1::ReplicaInfo& r) {
  return {{"name", r.name()},
          {"uuid", r.uuid()},
          {"pool", r.pool()},
          {"size_bytes", r.size_bytes()},
          {"thin", r.thin()},
          {"allocated_clusters", r.allocated_clusters()},
          {"allocated_bytes", r.allocated_bytes()},
          {"uri", r.uri()}};
}

void print_replica_table(const std::vector<const v1::ReplicaInfo*>& replicas) {
  Table t({"NAME", "POOL", "SIZE", "TYPE", "ALLOCATED", "UUID", "URI"});
  for (const auto* r : replicas) {
    t.add_row({r->name(), r->pool(), human_bytes(r->size_bytes()), r->thin() ? "thin" : "thick",
               human_bytes(r->allocated_bytes()), r->uuid(), r->uri()});
  }
  t.print();
}

int print_replica(Context& c, const v1::ReplicaInfo& r) {
  if (c.json()) {
    print_json(replica_json(r));
  } else {
    print_replica_table({&r});
  }
  return 0;
}

struct ReplicaArgs {
  std::string pool;
  std::string name;
  std::string size;  // validated by size_validator()
  bool thin = false;
  std::string uuid;
};

int replica_create(Context& c, const ReplicaArgs& a) {
  v1::CreateReplicaRequest req;
  req.set_pool(a.pool);
  req.set_name(a.name);
  req.set_size_bytes(parse_size(a.size).value_or(0));
  req.set_thin(a.thin);
  req.set_uuid(a.uuid);
  v1::ReplicaInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->CreateReplica(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_replica(c, info);
}

int replica_destroy(Context& c, const std::string& name) {
  v1::DestroyReplicaRequest req;
  req.set_name(name);
  v1::DestroyReplicaResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->DestroyReplica(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"destroyed", name}});
  } else {
    fmt::print("replica '{}' destroyed\n", name);
  }
  return 0;
}

int replica_grow(Context& c, const std::string& name, const std::string& size) {
  v1::GrowReplicaRequest req;
  req.set_name(name);
  req.set_size_bytes(parse_size(size).value_or(0));
  v1::ReplicaInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->GrowReplica(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_replica(c, info);
}

int replica_list(Context& c, const std::string& pool) {
  v1::ListReplicasRequest req;
  req.set_pool(pool);
  v1::ListReplicasResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListReplicas(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& r : resp.replicas()) arr.push_back(replica_json(r));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::ReplicaInfo*> rows;
  for (const auto& r : resp.replicas()) rows.push_back(&r);
  print_replica_table(rows);
  return 0;
}

// ---- nvmf ----

ordered_json share_json(const v1::ShareInfo& r) {
  return {{"nqn", r.nqn()},
          {"bdev", r.bdev()},
          {"uris", std::vector<std::string>(r.uris().begin(), r.uris().end())},
          {"allowed_hosts",
           std::vector<std::string>(r.allowed_hosts().begin(), r.allowed_hosts().end())}};
}

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& v,
                   const char* sep = ",") {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : sep) + e;
  return s;
}

int print_share(Context& c, const v1::ShareInfo& r) {
  if (c.json()) {
    print_json(share_json(r));
    return 0;
  }
  std::vector<std::pair<std::string, std::string>> kv = {
      {"nqn", r.nqn()},
      {"bdev", r.bdev()},
      {"allowed_hosts", r.allowed_hosts().empty() ? "any" : joined(r.allowed_hosts())}};
  if (r.uris().empty()) kv.emplace_back("uri", "- (no listener)");
  for (const auto& u : r.uris()) kv.emplace_back("uri", u);
  fmt::print("{}", key_values(kv));
  return 0;
}

// `what` names the listener kind in the output ("NVMe-oF", "NBD").
int print_listen(Context& c, const std::string& what, const std::string& address, uint32_t port) {
  if (c.json()) {
    print_json({{"address", address}, {"port", port}});
  } else {
    fmt::print("{} listening on {} (port {})\n", what, address, port);
  }
  return 0;
}

int nvmf_listen(Context& c, const std::string& address) {
  v1::NvmfListenRequest req;
  req.set_address(address);
  v1::NvmfListenResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->NvmfListen(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_listen(c, "NVMe-oF", address, resp.port());
}

int nvmf_share(Context& c, const std::string& bdev, const std::vector<std::string>& hosts) {
  v1::ShareBdevRequest req;
  req.set_bdev(bdev);
  for (const auto& h : hosts) req.add_allowed_hosts(h);
  v1::ShareInfo resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ShareBdev(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_share(c, resp);
}

int nvmf_unshare(Context& c, const std::string& bdev_or_nqn, bool force) {
  v1::UnshareBdevRequest req;
  req.set_bdev(bdev_or_nqn);
  req.set_force(force);
  v1::UnshareBdevResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->UnshareBdev(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"unshared", bdev_or_nqn}});
  } else {
    fmt::print("'{}' unshared\n", bdev_or_nqn);
  }
  return 0;
}

int nvmf_subsystems(Context& c) {
  v1::ListSubsystemsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListSubsystems(ctx.get(), v1::ListSubsystemsRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& sub : resp.subsystems()) {
      ordered_json ns = ordered_json::array();
      for (const auto& n : sub.namespaces()) ns.push_back({{"nsid", n.nsid()}, {"bdev", n.bdev()}});
      arr.push_back({{"nqn", sub.nqn()},
                     {"serial", sub.serial()},
                     {"allowed_hosts", std::vector<std::string>(sub.allowed_hosts().begin(),
                                                                sub.allowed_hosts().end())},
                     {"namespaces", ns},
                     {"controllers", sub.controllers()},
                     {"uris", std::vector<std::string>(sub.uris().begin(), sub.uris().end())}});
    }
    print_json(arr);
    return 0;
  }
  Table t({"NQN", "SERIAL", "NAMESPACES", "HOSTS", "CONTROLLERS"});
  for (const auto& sub : resp.subsystems()) {
    std::string ns;
    for (const auto& n : sub.namespaces()) {
      ns += (ns.empty() ? "" : ",") + fmt::format("{}:{}", n.nsid(), n.bdev());
    }
    t.add_row({sub.nqn(), sub.serial(), or_dash(ns),
               sub.allowed_hosts().empty() ? "any" : joined(sub.allowed_hosts()),
               std::to_string(sub.controllers())});
  }
  t.print();
  return 0;
}

int nvmf_controllers(Context& c) {
  v1::ListControllersResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListControllers(ctx.get(), v1::ListControllersRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& k : resp.controllers()) {
      arr.push_back({{"cntlid", k.cntlid()},
                     {"subnqn", k.subnqn()},
                     {"hostnqn", k.hostnqn()},
                     {"io_queues", k.io_queues()},
                     {"kato_ms", k.kato_ms()}});
    }
    print_json(arr);
    return 0;
  }
  Table t({"CNTLID", "SUBNQN", "HOSTNQN", "IO_QUEUES", "KATO_MS"});
  for (const auto& k : resp.controllers()) {
    t.add_row({std::to_string(k.cntlid()), k.subnqn(), k.hostnqn(), std::to_string(k.io_queues()),
               std::to_string(k.kato_ms())});
  }
  t.print();
  return 0;
}

int replica_share(Context& c, const std::string& name, const std::vector<std::string>& hosts) {
  v1::ShareReplicaRequest req;
  req.set_name(name);
  for (const auto& h : hosts) req.add_allowed_hosts(h);
  v1::ShareInfo resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ShareReplica(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_share(c, resp);
}

int replica_unshare(Context& c, const std::string& name, bool force) {
  v1::UnshareReplicaRequest req;
  req.set_name(name);
  req.set_force(force);
  v1::UnshareBdevResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->UnshareReplica(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"unshared", name}});
  } else {
    fmt::print("replica '{}' unshared\n", name);
  }
  return 0;
}

// ---- nbd ----

ordered_json nbd_export_json(const v1::NbdExportInfo& e) {
  return {{"name", e.name()},
          {"bdev", e.bdev()},
          {"read_only", e.read_only()},
          {"description", e.description()},
          {"connections", e.connections()},
          {"uris", std::vector<std::string>(e.uris().begin(), e.uris().end())}};
}

void print_nbd_table(const std::vector<const v1::NbdExportInfo*>& exports) {
  Table t({"NAME", "BDEV", "MODE", "CONNECTIONS", "URI"});
  for (const auto* e : exports) {
    t.add_row({e->name().empty() ? "(default)" : e->name(), e->bdev(), e->read_only() ? "ro" : "rw",
               std::to_string(e->connections()), e->uris().empty() ? "-" : e->uris(0)});
  }
  t.print();
}

int nbd_listen(Context& c, const std::string& address) {
  v1::NbdListenRequest req;
  req.set_address(address);
  v1::NbdListenResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->NbdListen(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_listen(c, "NBD", address, resp.port());
}

struct NbdExportArgs {
  std::string name;
  std::string bdev;
  bool read_only = false;
  std::string description;
};

int nbd_export(Context& c, const NbdExportArgs& a) {
  v1::NbdExportRequest req;
  req.set_name(a.name);
  req.set_bdev(a.bdev);
  req.set_read_only(a.read_only);
  req.set_description(a.description);
  v1::NbdExportInfo resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->NbdExport(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json(nbd_export_json(resp));
  } else {
    print_nbd_table({&resp});
  }
  return 0;
}

int nbd_unexport(Context& c, const std::string& name) {
  v1::NbdUnexportRequest req;
  req.set_name(name);
  v1::NbdUnexportResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->NbdUnexport(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"unexported", name}});
  } else {
    fmt::print("NBD export '{}' removed\n", name);
  }
  return 0;
}

int nbd_list(Context& c) {
  v1::ListNbdExportsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListNbdExports(ctx.get(), v1::ListNbdExportsRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& e : resp.exports()) arr.push_back(nbd_export_json(e));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::NbdExportInfo*> rows;
  for (const auto& e : resp.exports()) rows.push_back(&e);
  print_nbd_table(rows);
  return 0;
}

// ---- iscsi ----

ordered_json iscsi_target_json(const v1::IscsiTargetInfo& t) {
  return {{"iqn", t.iqn()},
          {"bdev", t.bdev()},
          {"read_only", t.read_only()},
          {"chap", t.chap()},
          {"mutual_chap", t.mutual_chap()},
          {"allowed_initiators",
           std::vector<std::string>(t.allowed_initiators().begin(), t.allowed_initiators().end())},
          {"sessions", t.sessions()},
          {"uris", std::vector<std::string>(t.uris().begin(), t.uris().end())}};
}

// AUTH is none, chap or mutual (the initiator may also authenticate the target).
void print_iscsi_table(const std::vector<const v1::IscsiTargetInfo*>& targets) {
  Table t({"IQN", "BDEV", "MODE", "AUTH", "INITIATORS", "SESSIONS", "URI"});
  for (const auto* n : targets) {
    t.add_row({n->iqn(), n->bdev(), n->read_only() ? "ro" : "rw",
               n->mutual_chap() ? "mutual" : (n->chap() ? "chap" : "none"),
               n->allowed_initiators().empty() ? "any" : joined(n->allowed_initiators()),
               std::to_string(n->sessions()), n->uris().empty() ? "-" : n->uris(0)});
  }
  t.print();
}

int iscsi_listen(Context& c, const std::string& address) {
  v1::IscsiListenRequest req;
  req.set_address(address);
  v1::IscsiListenResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->IscsiListen(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_listen(c, "iSCSI", address, resp.port());
}

struct IscsiExportArgs {
  std::string bdev;
  std::string iqn;
  bool read_only = false;
  std::string chap_user, chap_secret;
  std::string mutual_user, mutual_secret;
  std::vector<std::string> initiators;
};

int iscsi_export(Context& c, const IscsiExportArgs& a) {
  v1::IscsiExportRequest req;
  req.set_bdev(a.bdev);
  req.set_iqn(a.iqn);
  req.set_read_only(a.read_only);
  req.set_chap_user(a.chap_user);
  req.set_chap_secret(a.chap_secret);
  req.set_mutual_user(a.mutual_user);
  req.set_mutual_secret(a.mutual_secret);
  for (const auto& i : a.initiators) req.add_allowed_initiators(i);
  v1::IscsiTargetInfo resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->IscsiExport(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json(iscsi_target_json(resp));
  } else {
    print_iscsi_table({&resp});
  }
  return 0;
}

int iscsi_unexport(Context& c, const std::string& iqn) {
  v1::IscsiUnexportRequest req;
  req.set_iqn(iqn);
  v1::IscsiUnexportResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->IscsiUnexport(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"unexported", iqn}});
  } else {
    fmt::print("iSCSI target {} removed\n", iqn);
  }
  return 0;
}

int iscsi_list(Context& c) {
  v1::ListIscsiTargetsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListIscsiTargets(ctx.get(), v1::ListIscsiTargetsRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& t : resp.targets()) arr.push_back(iscsi_target_json(t));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::IscsiTargetInfo*> rows;
  for (const auto& t : resp.targets()) rows.push_back(&t);
  print_iscsi_table(rows);
  return 0;
}

int iscsi_sessions(Context& c) {
  v1::ListIscsiSessionsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListIscsiSessions(ctx.get(), v1::ListIscsiSessionsRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& x : resp.sessions()) {
      arr.push_back({{"target", x.target()},
                     {"initiator", x.initiator()},
                     {"isid", x.isid()},
                     {"tsih", x.tsih()},
                     {"cid", x.cid()},
                     {"peer", x.peer()},
                     {"header_digest", x.header_digest()},
                     {"data_digest", x.data_digest()}});
    }
    print_json(arr);
    return 0;
  }
  Table t({"TARGET", "INITIATOR", "ISID", "TSIH", "CID", "PEER", "DIGESTS"});
  for (const auto& x : resp.sessions()) {
    std::string digests;
    if (x.header_digest()) digests = "header";
    if (x.data_digest()) digests += digests.empty() ? "data" : ",data";
    t.add_row({x.target(), x.initiator(), x.isid(), std::to_string(x.tsih()), std::to_string(x.cid()), x.peer(),
               or_dash(digests)});
  }
  t.print();
  return 0;
}

// ---- nexus ----

ordered_json rebuild_json(const v1::RebuildInfo& r) {
  return {{"nexus", r.nexus()},
          {"child", r.child()},
          {"source", r.source()},
          {"state", r.state()},
          {"partial", r.partial()},
          {"blocks_done", r.blocks_done()},
          {"blocks_total", r.blocks_total()},
          {"blocks_skipped", r.blocks_skipped()},
          {"percent", r.percent()},
          {"rate_bytes_s", r.rate_bytes_s()},
          {"segments_done", r.segments_done()},
          {"segments_total", r.segments_total()},
          {"block_size", r.block_size()},
          {"start_unix_ms", r.start_unix_ms()},
          {"elapsed_ms", r.elapsed_ms()},
          {"error", r.error()}};
}

ordered_json nexus_json(const v1::NexusInfo& n) {
  ordered_json children = ordered_json::array();
  for (const auto& c : n.children()) {
    ordered_json j = {{"uri", c.uri()},
                      {"bdev", c.bdev()},
                      {"state", c.state()},
                      {"fault_reason", c.fault_reason()},
                      {"local", c.local()},
                      {"read_errors", c.read_errors()},
                      {"write_errors", c.write_errors()},
                      {"timeouts", c.timeouts()},
                      {"has_log", c.has_log()},
                      {"missed_segments", c.missed_segments()}};
    j["rebuild"] = c.has_rebuild() ? rebuild_json(c.rebuild()) : ordered_json();
    children.push_back(std::move(j));
  }
  return {{"name", n.name()},
          {"uuid", n.uuid()},
          {"size_bytes", n.size_bytes()},
          {"block_size", n.block_size()},
          {"state", n.state()},
          {"uris", std::vector<std::string>(n.uris().begin(), n.uris().end())},
          {"children", children}};
}

int healthy_children(const v1::NexusInfo& n) {
  return static_cast<int>(std::count_if(n.children().begin(), n.children().end(),
                                        [](const auto& c) { return c.state() == "healthy"; }));
}

void print_nexus_table(const std::vector<const v1::NexusInfo*>& nexuses) {
  Table t({"NAME", "STATE", "SIZE", "BLOCK_SIZE", "CHILDREN", "HEALTHY", "UUID", "PUBLISHED"});
  for (const auto* n : nexuses) {
    t.add_row({n->name(), n->state(), human_bytes(n->size_bytes()),
               std::to_string(n->block_size()), std::to_string(n->children_size()),
               std::to_string(healthy_children(*n)), n->uuid(),
               n->uris().empty() ? "-" : joined(n->uris())});
  }
  t.print();
}

std::string percent_text(double p) {
  return fixed(p, 1) + "%";
}

// The nexus row, a blank line, then one row per child.
void print_nexus_details(const v1::NexusInfo& n) {
  print_nexus_table({&n});
  fmt::print("\n");
  Table t({"CHILD", "BDEV", "STATE", "REASON", "LOCAL", "READ_ERR", "WRITE_ERR", "TIMEOUTS",
           "MISSED_SEGS", "REBUILD", "PROGRESS"});
  for (const auto& c : n.children()) {
    t.add_row({c.uri(), c.bdev(), c.state(), c.fault_reason() == "none" ? "-" : c.fault_reason(),
               c.local() ? "yes" : "no", std::to_string(c.read_errors()),
               std::to_string(c.write_errors()), std::to_string(c.timeouts()),
               c.has_log() ? std::to_string(c.missed_segments()) : "-",
               c.has_rebuild() ? c.rebuild().state() : "-",
               c.has_rebuild() ? percent_text(c.rebuild().percent()) : "-"});
  }
  t.print();
}

int print_nexus(Context& c, const v1::NexusInfo& n) {
  if (c.json()) {
    print_json(nexus_json(n));
  } else {
    print_nexus_details(n);
  }
  return 0;
}

struct NexusCreateArgs {
  std::string name;
  std::string size = "0";  // validated by size_validator()
  std::vector<std::string> children;
  std::vector<std::string> opts;  // k=v
};

int nexus_create(Context& c, const NexusCreateArgs& a) {
  v1::CreateNexusRequest req;
  req.set_name(a.name);
  req.set_size_bytes(parse_size(a.size).value_or(0));
  for (const auto& ch : a.children) req.add_children(ch);
  for (const auto& kv : a.opts) {
    auto eq = kv.find('=');  // checked by the option's validator
    (*req.mutable_options())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  v1::NexusInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->CreateNexus(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

int nexus_destroy(Context& c, const std::string& name, bool purge) {
  v1::DestroyNexusRequest req;
  req.set_name(name);
  req.set_purge(purge);
  v1::DestroyNexusResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->DestroyNexus(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"destroyed", name}, {"purged", purge}});
  } else {
    fmt::print("nexus '{}' destroyed{}\n", name, purge ? " (health records purged)" : "");
  }
  return 0;
}

int nexus_list(Context& c) {
  v1::ListNexusesResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListNexuses(ctx.get(), v1::ListNexusesRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& n : resp.nexuses()) arr.push_back(nexus_json(n));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::NexusInfo*> rows;
  for (const auto& n : resp.nexuses()) rows.push_back(&n);
  print_nexus_table(rows);
  return 0;
}

int nexus_show(Context& c, const std::string& name) {
  v1::GetNexusRequest req;
  req.set_name(name);
  v1::NexusInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->GetNexus(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

int nexus_add_child(Context& c, const std::string& name, const std::string& uri, bool no_rebuild) {
  v1::AddChildRequest req;
  req.set_nexus(name);
  req.set_uri(uri);
  req.set_no_rebuild(no_rebuild);
  v1::NexusInfo info;
  auto ctx = c.call();
  grpc::Status s = c.stub->AddChild(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

using ChildRpc = grpc::Status (v1::EngineService::Stub::*)(grpc::ClientContext*,
                                                            const v1::ChildRequest&,
                                                            v1::NexusInfo*);

int nexus_child_op(Context& c, ChildRpc rpc, const std::string& name, const std::string& uri) {
  v1::ChildRequest req;
  req.set_nexus(name);
  req.set_uri(uri);
  v1::NexusInfo info;
  auto ctx = c.call();
  grpc::Status s = ((*c.stub).*rpc)(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

struct PublishArgs {
  std::string name;
  std::string protocol = "nvmf";
  std::vector<std::string> hosts;
  std::string nbd_name;
  // iscsi
  std::string iqn;
  std::string chap_user, chap_secret;
  std::string mutual_user, mutual_secret;
  std::vector<std::string> initiators;
};

int nexus_publish(Context& c, const PublishArgs& a) {
  v1::PublishNexusRequest req;
  req.set_name(a.name);
  req.set_protocol(a.protocol);
  for (const auto& h : a.hosts) req.add_allowed_hosts(h);
  req.set_nbd_name(a.nbd_name);
  req.set_iscsi_iqn(a.iqn);
  req.set_chap_user(a.chap_user);
  req.set_chap_secret(a.chap_secret);
  req.set_mutual_user(a.mutual_user);
  req.set_mutual_secret(a.mutual_secret);
  for (const auto& i : a.initiators) req.add_allowed_initiators(i);
  v1::PublishNexusResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->PublishNexus(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"name", a.name},
                {"protocol", a.protocol},
                {"uri", resp.uri()},
                {"uris", std::vector<std::string>(resp.uris().begin(), resp.uris().end())}});
  } else {
    fmt::print("{}\n", resp.uri());
  }
  return 0;
}

int nexus_unpublish(Context& c, const std::string& name) {
  v1::UnpublishNexusRequest req;
  req.set_name(name);
  v1::UnpublishNexusResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->UnpublishNexus(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"unpublished", name}});
  } else {
    fmt::print("nexus '{}' unpublished\n", name);
  }
  return 0;
}

// ---- rebuild ----

std::string mib_text(uint64_t bytes) {
  return fixed(static_cast<double>(bytes) / (1024.0 * 1024.0), 1);
}

uint64_t rebuild_bytes(const v1::RebuildInfo& r, uint64_t blocks) {
  return blocks * r.block_size();
}

void print_rebuild_table(const std::vector<const v1::RebuildInfo*>& rows) {
  Table t({"NEXUS", "CHILD", "STATE", "PROGRESS", "DONE", "TOTAL", "RATE", "TYPE", "SOURCE",
           "ERROR"});
  for (const auto* r : rows) {
    t.add_row({r->nexus(), r->child(), r->state(), percent_text(r->percent()),
               human_bytes(rebuild_bytes(*r, r->blocks_done())),
               human_bytes(rebuild_bytes(*r, r->blocks_total())),
               human_bytes(r->rate_bytes_s()) + "/s", r->partial() ? "partial" : "full",
               or_dash(r->source()), or_dash(r->error())});
  }
  t.print();
}

using RebuildRpc = grpc::Status (v1::EngineService::Stub::*)(grpc::ClientContext*,
                                                              const v1::RebuildRequest&,
                                                              v1::RebuildInfo*);

int rebuild_op(Context& c, RebuildRpc rpc, const std::string& nexus, const std::string& child) {
  v1::RebuildRequest req;
  req.set_nexus(nexus);
  req.set_child(child);
  v1::RebuildInfo info;
  auto ctx = c.call();
  grpc::Status s = ((*c.stub).*rpc)(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json(rebuild_json(info));
  } else {
    print_rebuild_table({&info});
  }
  return 0;
}

int rebuild_stats(Context& c, const std::string& nexus, const std::string& child) {
  if (!child.empty()) return rebuild_op(c, &v1::EngineService::Stub::GetRebuild, nexus, child);
  v1::ListRebuildsRequest req;
  req.set_nexus(nexus);
  v1::ListRebuildsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ListRebuilds(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& r : resp.rebuilds()) arr.push_back(rebuild_json(r));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::RebuildInfo*> rows;
  for (const auto& r : resp.rebuilds()) rows.push_back(&r);
  print_rebuild_table(rows);
  return 0;
}

// "1:02:03", "2:03" or "-" (unknown).
std::string eta_text(const v1::RebuildInfo& r) {
  if (r.state() == "completed") return "0:00";
  if (r.state() != "running" || r.rate_bytes_s() == 0 || r.blocks_total() < r.blocks_done()) {
    return "-";
  }
  uint64_t left = rebuild_bytes(r, r.blocks_total() - r.blocks_done());
  uint64_t s = (left + r.rate_bytes_s() - 1) / r.rate_bytes_s();
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

// "45.0%  7.2/16.0 MiB  120.5 MiB/s  ETA 0:03"
std::string progress_text(const v1::RebuildInfo& r) {
  return fmt::format("{:>6}  {}/{} MiB  {} MiB/s  ETA {}", percent_text(r.percent()),
                     mib_text(rebuild_bytes(r, r.blocks_done())),
                     mib_text(rebuild_bytes(r, r.blocks_total())), mib_text(r.rate_bytes_s()),
                     eta_text(r));
}

std::string progress_bar(double percent, int width) {
  int full = static_cast<int>(std::clamp(percent, 0.0, 100.0) / 100.0 * width + 0.5);
  return "[" + std::string(static_cast<size_t>(full), '#') +
         std::string(static_cast<size_t>(width - full), '.') + "]";
}

// Polls GetRebuild until the rebuild is completed (exit 0), failed or stopped (exit 1).
// A TTY gets one redrawn progress line; anything else a line per poll; -o json one JSON
// object per poll (one per line).
int rebuild_watch(Context& c, const std::string& nexus, const std::string& child,
                  double interval_s) {
  const bool tty = !c.json() && ::isatty(STDOUT_FILENO);
  v1::RebuildRequest req;
  req.set_nexus(nexus);
  req.set_child(child);
  size_t last_width = 0;
  for (;;) {
    v1::RebuildInfo r;
    auto ctx = c.call();
    grpc::Status s = c.stub->GetRebuild(ctx.get(), req, &r);
    if (!s.ok()) {
      if (tty && last_width) fmt::print("\n");
      return c.fail(s);
    }
    const bool done = r.state() != "running" && r.state() != "paused";
    if (c.json()) {
      fmt::print("{}\n", rebuild_json(r).dump());
    } else if (tty) {
      std::string line =
          fmt::format("{} {} {}", child, progress_bar(r.percent(), 30), progress_text(r));
      if (r.state() != "running") line += "  " + r.state();
      fmt::print("\r{}{}", line,
                 std::string(last_width > line.size() ? last_width - line.size() : 0, ' '));
      last_width = line.size();
      if (done) fmt::print("\n");
    } else {
      fmt::print("{} {} {}\n", child, r.state(), progress_text(r));
    }
    std::fflush(stdout);
    if (done) {
      if (r.state() == "completed") {
        if (!c.json()) {
          std::string skipped;
          if (r.blocks_skipped() > 0) {
            skipped = fmt::format(" ({} unallocated on the source, not copied)",
                                  human_bytes(rebuild_bytes(r, r.blocks_skipped())));
          }
          fmt::print("rebuild of '{}' completed: {}{} in {} s\n", child,
                     human_bytes(rebuild_bytes(r, r.blocks_done())), skipped,
                     fixed(static_cast<double>(r.elapsed_ms()) / 1000.0, 1));
        }
        return 0;
      }
      if (r.state() == "failed") {
        print_error(fmt::format("rebuild of '{}' failed: {}", child, or_dash(r.error())));
      } else {
        print_error(fmt::format("rebuild of '{}' was {}", child, r.state()));
      }
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(interval_s * 1000)));
  }
}

// ---- bdev write / read ----

struct BlockArgs {
  std::string bdev;
  std::string offset = "0";  // sizes, validated by size_validator()
  std::string length;
  std::string file;
  std::optional<int> pattern;
  bool flush = false;
};

// Reads the whole of `path` into `data`; false (with the reason printed) on failure.
bool slurp(const std::string& path, std::string* data) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    print_error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
    return false;
  }
  data->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) {
    print_error(fmt::format("cannot read '{}'", path));
    return false;
  }
  return true;
}

int bdev_write(Context& c, const BlockArgs& a) {
  v1::WriteBlocksRequest req;
  req.set_bdev(a.bdev);
  req.set_offset_bytes(parse_size(a.offset).value_or(0));
  req.set_flush(a.flush);
  if (!a.file.empty()) {
    if (!slurp(a.file, req.mutable_data())) return 1;
  } else {
    req.set_data(std::string(parse_size(a.length).value_or(0), static_cast<char>(*a.pattern)));
  }
  v1::WriteBlocksResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->WriteBlocks(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"bdev", a.bdev},
                {"offset_bytes", req.offset_bytes()},
                {"length", req.data().size()},
                {"flushed", a.flush}});
  } else {
    fmt::print("wrote {} bytes to '{}' at offset {}{}\n", req.data().size(), a.bdev,
               req.offset_bytes(), a.flush ? " (flushed)" : "");
  }
  return 0;
}

int bdev_read(Context& c, const BlockArgs& a) {
  v1::ReadBlocksRequest req;
  req.set_bdev(a.bdev);
  req.set_offset_bytes(parse_size(a.offset).value_or(0));
  req.set_length(parse_size(a.length).value_or(0));
  v1::ReadBlocksResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.stub->ReadBlocks(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  const std::string& data = resp.data();
  if (a.file.empty()) {
    // Raw bytes to stdout, whatever -o says: this is for piping into od or cmp.
    if (std::fwrite(data.data(), 1, data.size(), stdout) != data.size() ||
        std::fflush(stdout) != 0) {
      print_error(fmt::format("cannot write to stdout: {}", std::strerror(errno)));
      return 1;
    }
    return 0;
  }
  std::ofstream out(a.file, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) {
    print_error(fmt::format("cannot write '{}': {}", a.file, std::strerror(errno)));
    return 1;
  }
  if (c.json()) {
    print_json({{"bdev", a.bdev},
                {"offset_bytes", req.offset_bytes()},
                {"length", data.size()},
                {"file", a.file}});
  } else {
    fmt::print("read {} bytes from '{}' at offset {} into {}\n", data.size(), a.bdev,
               req.offset_bytes(), a.file);
  }
  return 0;
}

// Accepts "65536", "4MiB", "1G" (parse_size).
CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (parse_size(s)) return "";
        return fmt::format("'{}' is not a size (e.g. 65536, 4KiB, 4MiB, 1GiB)", s);
      },
      "SIZE");
}

// Accepts a byte value: 0..255 in decimal or 0x hex.
CLI::Validator byte_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
        const std::string digits = hex ? s.substr(2) : s;
        const char* allowed = hex ? "0123456789abcdefABCDEF" : "0123456789";
        if (digits.empty() || digits.size() > 3 ||
            digits.find_first_not_of(allowed) != std::string::npos ||
            std::stoul(digits, nullptr, hex ? 16 : 10) > 255) {
          return fmt::format("'{}' is not a byte value (0..255 or 0x00..0xff)", s);
        }
        s = std::to_string(std::stoul(digits, nullptr, hex ? 16 : 10));
        return "";
      },
      "BYTE");
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
  CLI::App app{
      "castorctl: manage a castor-engine (bdevs, pools, replicas, nexuses and rebuilds, NVMe-oF, "
      "NBD and iSCSI targets, fault drills, benchmarks)",
      kProg};
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

  BlockArgs wr;
  auto* write = bdev->add_subcommand("write", "write blocks to a bdev (tests, debugging)");
  write->add_option("NAME", wr.bdev, "bdev name")->required();
  write->add_option("--offset", wr.offset, "byte offset, a block multiple (default 0)")
      ->check(size_validator());
  auto* w_file = write->add_option("--file", wr.file, "write this file's content");
  auto* w_pattern =
      write->add_option("--pattern", wr.pattern, "fill with this byte (0..255 or 0x..)")
          ->check(byte_validator());
  auto* w_length = write->add_option("--length", wr.length, "bytes to write with --pattern")
                       ->check(size_validator());
  w_file->excludes(w_pattern)->excludes(w_length);
  w_pattern->needs(w_length);
  w_length->needs(w_pattern);
  write->add_flag("--flush", wr.flush, "flush after writing; succeed only once durable");
  write->callback([&] {
    if (wr.file.empty() && !wr.pattern) throw CLI::RequiredError("--file or --pattern");
    action = [&] { return bdev_write(c, wr); };
  });

  BlockArgs rd;
  auto* read = bdev->add_subcommand("read", "read blocks from a bdev (raw to stdout or a file)");
  read->add_option("NAME", rd.bdev, "bdev name")->required();
  read->add_option("--offset", rd.offset, "byte offset, a block multiple (default 0)")
      ->check(size_validator());
  read->add_option("--length", rd.length, "bytes to read, a block multiple")
      ->required()
      ->check(size_validator());
  read->add_option("--file", rd.file, "write the data to this file instead of stdout");
  read->callback([&] { action = [&] { return bdev_read(c, rd); }; });

  // pool
  auto* pool = app.add_subcommand("pool", "storage pools");
  pool->require_subcommand(1);
  std::vector<std::string> disks;
  std::string cluster_size = "4MiB";
  auto* pcreate = pool->add_subcommand("create", "format disks as a new pool");
  pcreate->add_option("NAME", name, "pool name")->required();
  pcreate
      ->add_option("--disk", disks,
                   "disk URI, repeatable: bdev:///NAME (an existing bdev) or a bdev URI the "
                   "pool creates, e.g. file:///var/lib/castor/d0.img?size_mb=1024")
      ->required()
      ->allow_extra_args(false);
  pcreate->add_option("--cluster-size", cluster_size, "allocation unit (default 4MiB)")
      ->check(size_validator());
  pcreate->callback([&] {
    action = [&] { return pool_create(c, name, disks, parse_size(cluster_size).value_or(0)); };
  });

  auto* pimport = pool->add_subcommand("import", "import the pool on disks (every member)");
  pimport->add_option("--disk", disks, "disk URI, repeatable")->required()->allow_extra_args(false);
  pimport->callback([&] { action = [&] { return pool_import(c, disks); }; });

  auto* pexport = pool->add_subcommand("export", "close a pool; its disks import again later");
  pexport->add_option("NAME", name, "pool name")->required();
  pexport->callback([&] { action = [&] { return pool_export(c, name); }; });

  auto* pdestroy =
      pool->add_subcommand("destroy", "destroy a pool and its replicas (wipes the labels)");
  pdestroy->add_option("NAME", name, "pool name")->required();
  pdestroy->callback([&] { action = [&] { return pool_destroy(c, name); }; });

  auto* plist = pool->add_subcommand("list", "list pools");
  plist->add_option("NAME", name, "pool name (default: every pool)");
  plist->callback([&] { action = [&] { return pool_list(c, name); }; });

  // replica
  auto* replica = app.add_subcommand("replica", "replicas (volumes) of pools");
  replica->require_subcommand(1);
  ReplicaArgs ra;
  auto* rcreate = replica->add_subcommand("create", "create a replica in a pool");
  rcreate->add_option("POOL", ra.pool, "pool name")->required();
  rcreate->add_option("NAME", ra.name, "replica (and bdev) name")->required();
  rcreate->add_option("--size", ra.size, "size, e.g. 1GiB")->required()->check(size_validator());
  rcreate->add_flag("--thin", ra.thin, "allocate clusters on first write");
  rcreate->add_option("--uuid", ra.uuid, "replica UUID (default random)");
  rcreate->callback([&] { action = [&] { return replica_create(c, ra); }; });

  auto* rdestroy = replica->add_subcommand("destroy", "destroy a replica");
  rdestroy->add_option("NAME", name, "replica name or UUID")->required();
  rdestroy->callback([&] { action = [&] { return replica_destroy(c, name); }; });

  std::string grow_size;
  auto* rgrow = replica->add_subcommand("grow", "grow a replica (never shrinks)");
  rgrow->add_option("NAME", name, "replica name or UUID")->required();
  rgrow->add_option("--size", grow_size, "new size, e.g. 2GiB")
      ->required()
      ->check(size_validator());
  rgrow->callback([&] { action = [&] { return replica_grow(c, name, grow_size); }; });

  std::string pool_filter;
  auto* rlist = replica->add_subcommand("list", "list replicas");
  rlist->add_option("--pool", pool_filter, "only this pool's replicas");
  rlist->callback([&] { action = [&] { return replica_list(c, pool_filter); }; });

  std::vector<std::string> allow_hosts;
  auto* rshare = replica->add_subcommand(
      "share", "share a replica over NVMe-oF (prints its nvmf:// and bdev:/// URIs)");
  rshare->add_option("NAME", name, "replica name or UUID")->required();
  rshare
      ->add_option("--allow-host", allow_hosts,
                   "host NQN allowed to connect; repeatable "
                   "(default: any host)")
      ->allow_extra_args(false);
  rshare->callback([&] { action = [&] { return replica_share(c, name, allow_hosts); }; });

  auto* runshare = replica->add_subcommand("unshare", "stop sharing a replica over NVMe-oF");
  runshare->add_option("NAME", name, "replica name or UUID")->required();
  bool force_unshare = false;
  runshare->add_flag("--force", force_unshare, "disconnect hosts that are still connected");
  runshare->callback([&] { action = [&] { return replica_unshare(c, name, force_unshare); }; });

  // nvmf
  auto* nvmf = app.add_subcommand("nvmf", "NVMe-oF/TCP target: listeners, shared bdevs");
  nvmf->require_subcommand(1);
  std::string address;
  auto* nlisten = nvmf->add_subcommand("listen", "add an NVMe-oF/TCP listener");
  nlisten->add_option("ADDR", address, "HOST:PORT; port 0 picks a free port")->required();
  nlisten->callback([&] { action = [&] { return nvmf_listen(c, address); }; });

  auto* nshare = nvmf->add_subcommand("share", "share a bdev in its own subsystem");
  nshare->add_option("BDEV", name, "bdev name")->required();
  nshare
      ->add_option("--allow-host", allow_hosts,
                   "host NQN allowed to connect; repeatable "
                   "(default: any host)")
      ->allow_extra_args(false);
  nshare->callback([&] { action = [&] { return nvmf_share(c, name, allow_hosts); }; });

  auto* nunshare = nvmf->add_subcommand("unshare", "remove the subsystem of a shared bdev");
  nunshare->add_option("BDEV_OR_NQN", name, "bdev name or subsystem NQN")->required();
  nunshare->add_flag("--force", force_unshare, "disconnect hosts that are still connected");
  nunshare->callback([&] { action = [&] { return nvmf_unshare(c, name, force_unshare); }; });

  nvmf->add_subcommand("subsystems", "list subsystems")->callback([&] {
    action = [&] { return nvmf_subsystems(c); };
  });
  nvmf->add_subcommand("controllers", "list connected controllers")->callback([&] {
    action = [&] { return nvmf_controllers(c); };
  });

  // nbd
  auto* nbd = app.add_subcommand("nbd", "NBD target: listeners, exports");
  nbd->require_subcommand(1);
  auto* blisten = nbd->add_subcommand("listen", "add an NBD listener");
  blisten->add_option("ADDR", address, "HOST:PORT; port 0 picks a free port")->required();
  blisten->callback([&] { action = [&] { return nbd_listen(c, address); }; });

  NbdExportArgs ea;
  auto* bexport = nbd->add_subcommand("export", "export a bdev over NBD");
  bexport->add_option("NAME", ea.name, "export name (\"\" is the default export)")->required();
  bexport->add_option("BDEV", ea.bdev, "bdev name")->required();
  bexport->add_flag("--ro", ea.read_only, "read-only export");
  bexport->add_option("--description", ea.description, "description shown to clients");
  bexport->callback([&] { action = [&] { return nbd_export(c, ea); }; });

  auto* bunexport = nbd->add_subcommand("unexport", "remove an NBD export");
  bunexport->add_option("NAME", name, "export name")->required();
  bunexport->callback([&] { action = [&] { return nbd_unexport(c, name); }; });

  nbd->add_subcommand("list", "list NBD exports")->callback([&] {
    action = [&] { return nbd_list(c); };
  });

  // iscsi
  auto* iscsi = app.add_subcommand("iscsi", "iSCSI target: portals, target nodes, sessions");
  iscsi->require_subcommand(1);
  auto* ilisten = iscsi->add_subcommand("listen", "add an iSCSI portal (listener)");
  ilisten->add_option("ADDR", address, "HOST:PORT; port 0 picks a free port")->required();
  ilisten->callback([&] { action = [&] { return iscsi_listen(c, address); }; });

  IscsiExportArgs ia;
  auto* iexport = iscsi->add_subcommand("export", "export a bdev as LUN 0 of its own target node");
  iexport->add_option("BDEV", ia.bdev, "bdev name")->required();
  iexport->add_option("--iqn", ia.iqn,
                      "target IQN (default iqn.2026-11.io.castor:<bdev, lower-cased>)");
  iexport->add_flag("--ro", ia.read_only, "read-only LUN");
  auto* i_user = iexport->add_option("--chap-user", ia.chap_user,
                                     "CHAP: the name initiators must log in with");
  auto* i_secret =
      iexport->add_option("--chap-secret", ia.chap_secret, "CHAP: their secret (12 bytes or more)");
  auto* i_muser = iexport->add_option("--mutual-user", ia.mutual_user,
                                      "mutual CHAP: the name the target answers with");
  auto* i_msecret = iexport->add_option("--mutual-secret", ia.mutual_secret,
                                        "mutual CHAP: its secret (12 bytes or more)");
  i_user->needs(i_secret);
  i_secret->needs(i_user);
  i_muser->needs(i_msecret)->needs(i_user);
  i_msecret->needs(i_muser);
  iexport
      ->add_option("--allow-initiator", ia.initiators,
                   "initiator IQN allowed to log in; repeatable (default: any initiator)")
      ->allow_extra_args(false);
  iexport->callback([&] { action = [&] { return iscsi_export(c, ia); }; });

  auto* iunexport = iscsi->add_subcommand("unexport", "remove a target node (closes its sessions)");
  iunexport->add_option("IQN", name, "target IQN")->required();
  iunexport->callback([&] { action = [&] { return iscsi_unexport(c, name); }; });

  iscsi->add_subcommand("list", "list iSCSI target nodes")->callback([&] {
    action = [&] { return iscsi_list(c); };
  });
  iscsi->add_subcommand("sessions", "list logged-in iSCSI sessions")->callback([&] {
    action = [&] { return iscsi_sessions(c); };
  });

  // nexus
  auto* nexus = app.add_subcommand("nexus", "nexuses: replicated volumes over child bdevs");
  nexus->require_subcommand(1);
  NexusCreateArgs na;
  auto* xcreate = nexus->add_subcommand("create", "create a nexus over children");
  xcreate->add_option("NAME", na.name, "nexus (and bdev) name")->required();
  xcreate->add_option("--size", na.size, "size, e.g. 1GiB (default 0: the smallest child)")
      ->check(size_validator());
  xcreate
      ->add_option("--child", na.children,
                   "child URI, repeatable: bdev:///NAME (an existing bdev or replica) or a bdev "
                   "URI the nexus creates (malloc://, nvmf://...)")
      ->required()
      ->allow_extra_args(false);
  xcreate
      ->add_option("--opt", na.opts,
                   "nexus option KEY=VALUE, repeatable (read_policy, error_policy, "
                   "child_io_timeout_ms, segment_kb, parallel_segments, rate_mb_s, verify, "
                   "rebuild_stale, force, ...)")
      ->allow_extra_args(false)
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            auto eq = s.find('=');
            if (eq == std::string::npos || eq == 0) return fmt::format("'{}' is not KEY=VALUE", s);
            return "";
          },
          "KEY=VALUE"));
  xcreate->callback([&] { action = [&] { return nexus_create(c, na); }; });

  bool purge = false;
  auto* xdestroy = nexus->add_subcommand("destroy", "destroy a nexus (it must be unpublished)");
  xdestroy->add_option("NAME", name, "nexus name")->required();
  xdestroy->add_flag("--purge", purge, "also forget the children's health records");
  xdestroy->callback([&] { action = [&] { return nexus_destroy(c, name, purge); }; });

  nexus->add_subcommand("list", "list nexuses")->callback([&] {
    action = [&] { return nexus_list(c); };
  });

  auto* xshow = nexus->add_subcommand("show", "a nexus and its children");
  xshow->add_option("NAME", name, "nexus name")->required();
  xshow->callback([&] { action = [&] { return nexus_show(c, name); }; });

  std::string child_uri;
  bool no_rebuild = false;
  auto* xadd = nexus->add_subcommand("add-child", "add a child (rebuilt from a healthy one)");
  xadd->add_option("NAME", name, "nexus name")->required();
  xadd->add_option("URI", child_uri, "child URI")->required();
  xadd->add_flag("--no-rebuild", no_rebuild, "do not rebuild: the child starts faulted");
  xadd->callback([&] { action = [&] { return nexus_add_child(c, name, child_uri, no_rebuild); }; });

  struct ChildCmd {
    const char* name;
    const char* help;
    ChildRpc rpc;
  };
  for (const ChildCmd& cc :
       {ChildCmd{"remove-child", "remove a child (owned bdevs are destroyed)",
                 &v1::EngineService::Stub::RemoveChild},
        ChildCmd{"fault-child", "fault a child (full rebuild when onlined)",
                 &v1::EngineService::Stub::FaultChild},
        ChildCmd{"offline-child", "take a child offline (its missed writes are logged)",
                 &v1::EngineService::Stub::OfflineChild},
        ChildCmd{"online-child", "bring an offline or faulted child back (rebuilds it)",
                 &v1::EngineService::Stub::OnlineChild}}) {
    auto* sc = nexus->add_subcommand(cc.name, cc.help);
    sc->add_option("NAME", name, "nexus name")->required();
    sc->add_option("URI", child_uri, "child URI")->required();
    ChildRpc rpc = cc.rpc;
    sc->callback([&, rpc] { action = [&, rpc] { return nexus_child_op(c, rpc, name, child_uri); }; });
  }

  PublishArgs pa;
  std::string protocol_arg;
  auto* xpublish = nexus->add_subcommand(
      "publish", "make a nexus reachable over NVMe-oF, NBD or iSCSI (prints the URI)");
  xpublish->add_option("NAME", pa.name, "nexus name")->required();
  auto* p_positional =
      xpublish->add_option("PROTOCOL", protocol_arg, "nvmf, nbd or iscsi (same as --protocol)")
          ->check(CLI::IsMember({"nvmf", "nbd", "iscsi"}));
  xpublish->add_option("--protocol", pa.protocol, "nvmf (default), nbd or iscsi")
      ->check(CLI::IsMember({"nvmf", "nbd", "iscsi"}))
      ->excludes(p_positional);
  xpublish
      ->add_option("--host", pa.hosts, "nvmf: host NQN allowed to connect; repeatable (default any)")
      ->allow_extra_args(false);
  xpublish->add_option("--nbd-name", pa.nbd_name, "nbd: export name (default the nexus name)");
  xpublish->add_option("--iqn", pa.iqn,
                       "iscsi: target IQN (default iqn.2026-11.io.castor:nexus-<nexus uuid>)");
  auto* x_user =
      xpublish->add_option("--chap-user", pa.chap_user, "iscsi: CHAP name initiators log in with");
  auto* x_secret = xpublish->add_option("--chap-secret", pa.chap_secret,
                                        "iscsi: CHAP secret (12 bytes or more)");
  auto* x_muser = xpublish->add_option("--mutual-user", pa.mutual_user,
                                       "iscsi: mutual CHAP name the target answers with");
  auto* x_msecret = xpublish->add_option("--mutual-secret", pa.mutual_secret,
                                         "iscsi: mutual CHAP secret (12 bytes or more)");
  x_user->needs(x_secret);
  x_secret->needs(x_user);
  x_muser->needs(x_msecret)->needs(x_user);
  x_msecret->needs(x_muser);
  xpublish
      ->add_option("--allow-initiator", pa.initiators,
                   "iscsi: initiator IQN allowed to log in; repeatable (default any)")
      ->allow_extra_args(false);
  xpublish->callback([&] {
    if (!protocol_arg.empty()) pa.protocol = protocol_arg;
    action = [&] { return nexus_publish(c, pa); };
  });

  auto* xunpublish = nexus->add_subcommand(
      "unpublish", "remove a nexus' NVMe-oF share, NBD export or iSCSI target");
  xunpublish->add_option("NAME", name, "nexus name")->required();
  xunpublish->callback([&] { action = [&] { return nexus_unpublish(c, name); }; });

  // rebuild
  auto* rebuild = app.add_subcommand("rebuild", "rebuilds of nexus children");
  rebuild->require_subcommand(1);
  std::string rb_nexus, rb_child;
  struct RebuildCmd {
    const char* name;
    const char* help;
    RebuildRpc rpc;
  };
  for (const RebuildCmd& rc :
       {RebuildCmd{"start", "start rebuilding an out-of-sync child",
                   &v1::EngineService::Stub::StartRebuild},
        RebuildCmd{"stop", "stop a rebuild (the child becomes faulted)",
                   &v1::EngineService::Stub::StopRebuild},
        RebuildCmd{"pause", "pause a rebuild", &v1::EngineService::Stub::PauseRebuild},
        RebuildCmd{"resume", "resume a paused rebuild", &v1::EngineService::Stub::ResumeRebuild}}) {
    auto* sc = rebuild->add_subcommand(rc.name, rc.help);
    sc->add_option("NEXUS", rb_nexus, "nexus name")->required();
    sc->add_option("CHILD", rb_child, "child URI")->required();
    RebuildRpc rpc = rc.rpc;
    sc->callback([&, rpc] { action = [&, rpc] { return rebuild_op(c, rpc, rb_nexus, rb_child); }; });
  }
  auto* rstats = rebuild->add_subcommand("stats", "progress of one child's rebuild, or of all");
  rstats->add_option("NEXUS", rb_nexus, "nexus name")->required();
  rstats->add_option("CHILD", rb_child, "child URI (default: every child with a rebuild)");
  rstats->callback([&] { action = [&] { return rebuild_stats(c, rb_nexus, rb_child); }; });

  double interval_s = 1.0;
  auto* rwatch = rebuild->add_subcommand(
      "watch", "follow a rebuild until it ends (exit 0 completed, 1 failed or stopped)");
  rwatch->add_option("NEXUS", rb_nexus, "nexus name")->required();
  rwatch->add_option("CHILD", rb_child, "child URI")->required();
  rwatch->add_option("--interval", interval_s, "seconds between updates (default 1)")
      ->check(CLI::Range(0.05, 3600.0));
  rwatch->callback([&] {
    action = [&] { return rebuild_watch(c, rb_nexus, rb_child, interval_s); };
  });

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
