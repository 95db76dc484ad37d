#include "api/engine_service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "api/names.h"
#include "api/status_map.h"
#include "common/version.h"
#include "bdev/perf.h"

namespace castor::api {
namespace {
constexpr double kMaxBenchmarkSeconds = 300;
}  // namespace

double EngineIdentity::uptime_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

void to_proto(const bdev::BdevInfo& in, v1::BdevInfo* out) {
  out->set_name(in.name);
  out->set_uuid(in.uuid.to_string());
  out->set_module(in.module);
  out->set_uri(in.uri);
  out->set_block_size(in.block_size);
  out->set_num_blocks(in.num_blocks);
  out->set_size_bytes(uint64_t{in.block_size} * in.num_blocks);
  out->set_buf_align(in.buf_align);
  for (auto& op : op_names(in.supported_ops)) out->add_supported_ops(op);
  out->set_claimed_by(in.claimed_by);
  out->set_open_descs(in.open_descs);
}

void to_proto(const std::string& name, const bdev::BdevStatsSnapshot& in, v1::BdevStats* out) {
  out->set_name(name);
  for (int i = 0; i < bdev::kNumIoTypes; ++i) {
    const auto& pt = in.per_type[i];
    auto* op = out->add_ops();
    op->set_op(op_name(static_cast<bdev::IoType>(i)));
    op->set_ops(pt.ops);
    op->set_bytes(pt.bytes);
    op->set_errors(pt.errors);
    op->set_latency_mean_us(pt.latency.mean() / 1000.0);
    op->set_latency_p50_us(static_cast<double>(pt.latency.percentile(50)) / 1000.0);
    op->set_latency_p99_us(static_cast<double>(pt.latency.percentile(99)) / 1000.0);
    op->set_latency_p999_us(static_cast<double>(pt.latency.percentile(99.9)) / 1000.0);
  }
}

Result<bdev::FaultRuleSpec> from_proto(const v1::FaultRule& in) {
  bdev::FaultRuleSpec spec;
  std::vector<std::string> ops(in.ops().begin(), in.ops().end());
  auto mask = parse_op_mask(ops, spec.ops_mask);
  if (!mask) return mask.status();
  spec.ops_mask = *mask;
  auto mode = parse_fault_mode(in.mode());
  if (!mode) return mode.status();
  spec.mode = *mode;
  auto st = parse_error_status(in.error_status());
  if (!st) return st.status();
  spec.error_status = *st;
  spec.lba_start = in.lba_start();
  if (in.has_lba_end()) spec.lba_end = in.lba_end();
  spec.delay_us = in.delay_us();
  spec.skip = in.skip();
  spec.count = in.count();
  if (in.has_probability()) {
    double p = in.probability();
    if (!(p >= 0.0 && p <= 1.0)) {
      return make_error(Errc::kInvalidArgument, "probability {} is outside [0, 1]", p);
    }
    spec.probability = p;
  }
  return spec;
}

void to_proto(const bdev::FaultRuleSpec& in, v1::FaultRule* out) {
  for (auto& op : op_names(in.ops_mask)) out->add_ops(op);
  out->set_lba_start(in.lba_start);
  out->set_lba_end(in.lba_end);
  out->set_mode(fault_mode_string(in.mode));
  out->set_error_status(io_status_string(in.error_status));
  out->set_delay_us(in.delay_us);
  out->set_skip(in.skip);
  out->set_count(in.count);
  out->set_probability(in.probability);
}

EngineServiceImpl::EngineServiceImpl(bdev::BdevRegistry& registry, pool::PoolManager& pools,
                                     nexus::NexusManager& nexuses, FrontEnds& front_ends,
                                     reactor::ReactorGroup& reactors, EngineIdentity identity)
    : registry_(registry),
      pools_(pools),
      nexuses_(nexuses),
      front_ends_(front_ends),
      reactors_(reactors),
      identity_(identity) {}

grpc::Status EngineServiceImpl::GetEngineInfo(grpc::ServerContext*, const v1::GetEngineInfoRequest*,
                                              v1::EngineInfo* resp) {
  resp->set_version(kVersion);
  resp->set_reactor_count(static_cast<uint32_t>(reactors_.size()));
  for (int cpu : reactors_.cpus()) resp->add_cpus(cpu);
  resp->set_poll_mode(identity_.poll_mode);
  resp->set_uptime_seconds(identity_.uptime_seconds());
  resp->set_pid(static_cast<int32_t>(::getpid()));
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::CreateBdev(grpc::ServerContext*, const v1::CreateBdevRequest* req,
                                           v1::BdevInfo* resp) {
  if (req->uri().empty()) {
    return to_grpc(Status(Errc::kInvalidArgument, "uri is required"));
  }
  auto info = registry_.create(req->uri());
  if (!info) {
    spdlog::info("create bdev '{}' failed: {}", req->uri(), info.status().to_string());
    return to_grpc(info.status());
  }
  spdlog::info("created bdev '{}' ({}, {} x {} bytes) from {}", info->name, info->module,
               info->num_blocks, info->block_size, req->uri());
  to_proto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::DestroyBdev(grpc::ServerContext*, const v1::DestroyBdevRequest* req,
                                            v1::DestroyBdevResponse*) {
  if (req->name().empty()) {
    return to_grpc(Status(Errc::kInvalidArgument, "bdev name is required"));
  }
  // A replica's bdev belongs to its pool: destroying only the bdev would leave the
  // pool's metadata naming a replica the engine no longer serves.
  if (auto info = registry_.info(req->name()); info && info->module == "replica") {
    return to_grpc(make_error(
        Errc::kBusy, "bdev '{}' is a pool replica (destroy the replica instead)", req->name()));
  }
  // Likewise a nexus belongs to the NexusManager (it holds its children).
  if (auto info = registry_.info(req->name()); info && info->module == "nexus") {
    return to_grpc(make_error(Errc::kBusy, "bdev '{}' is a nexus (destroy the nexus instead)",
                              req->name()));
  }
  Status s = front_ends_.destroy_unless_exported({req->name()},
                                                 [&] { return registry_.destroy(req->name()); });
  if (!s) {
    spdlog::info("destroy bdev '{}' failed: {}", req->name(), s.to_string());
    return to_grpc(s);
  }
  spdlog::info("destroyed bdev '{}'", req->name());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListBdevs(grpc::ServerContext*, const v1::ListBdevsRequest*,
                                          v1::ListBdevsResponse* resp) {
  for (const auto& info : registry_.list()) to_proto(info, resp->add_bdevs());
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::GetBdevStats(grpc::ServerContext*,
                                             const v1::GetBdevStatsRequest* req,
                                             v1::GetBdevStatsResponse* resp) {
  if (!req->name().empty()) {
    auto st = registry_.stats(req->name());
    if (!st) return to_grpc(st.status());
    to_proto(req->name(), *st, resp->add_bdevs());
    return grpc::Status::OK;
  }
  for (const auto& info : registry_.list()) {
    auto st = registry_.stats(info.name);
    if (!st) continue;  // destroyed since list()
    to_proto(info.name, *st, resp->add_bdevs());
  }
  return grpc::Status::OK;
}

namespace {

// The bdev named `name`, which must be a fault bdev. Errors: NotFound, InvalidArgument.
Result<std::shared_ptr<bdev::Bdev>> find_fault_bdev(bdev::BdevRegistry& registry,
                                                    const std::string& name) {
  if (name.empty()) return Status(Errc::kInvalidArgument, "bdev name is required");
  auto b = registry.find(name);
  if (!b) return make_error(Errc::kNotFound, "bdev '{}' does not exist", name);
  auto fb = bdev::FaultControl::cast(*b);
  if (!fb) {
    return make_error(Errc::kInvalidArgument, "bdev '{}' is not a fault bdev (module {})", name,
                      b->module());
  }
  return b;
}

void add_rules(const std::string& name, bdev::Bdev& b, v1::ListFaultsResponse* resp) {
  for (const auto& r : bdev::FaultControl::list(b)) {
    auto* out = resp->add_rules();
    out->set_bdev(name);
    out->set_id(r.id);
    to_proto(r.spec, out->mutable_rule());
    out->set_matched(r.matched);
    out->set_fired(r.fired);
    out->set_parked(r.parked);
  }
}

}  // namespace

grpc::Status EngineServiceImpl::InjectFault(grpc::ServerContext*, const v1::InjectFaultRequest* req,
                                            v1::InjectFaultResponse* resp) {
  auto b = find_fault_bdev(registry_, req->bdev());
  if (!b) return to_grpc(b.status());
  auto spec = from_proto(req->rule());
  if (!spec) return to_grpc(spec.status());
  auto id = bdev::FaultControl::inject(**b, *spec);
  if (!id) return to_grpc(id.status());
  spdlog::info("fault rule {} added to '{}': mode={} ops={}", *id, req->bdev(),
               fault_mode_string(spec->mode), join_names(op_names(spec->ops_mask)));
  resp->set_id(*id);
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ClearFault(grpc::ServerContext*, const v1::ClearFaultRequest* req,
                                           v1::ClearFaultResponse*) {
  auto b = find_fault_bdev(registry_, req->bdev());
  if (!b) return to_grpc(b.status());
  Status s = bdev::FaultControl::clear(**b, req->id());
  if (!s) return to_grpc(s);
  if (req->id() == 0) {
    spdlog::info("all fault rules cleared on '{}'", req->bdev());
  } else {
    spdlog::info("fault rule {} cleared on '{}'", req->id(), req->bdev());
  }
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::ListFaults(grpc::ServerContext*, const v1::ListFaultsRequest* req,
                                           v1::ListFaultsResponse* resp) {
  if (!req->bdev().empty()) {
    auto b = find_fault_bdev(registry_, req->bdev());
    if (!b) return to_grpc(b.status());
    add_rules(req->bdev(), **b, resp);
    return grpc::Status::OK;
  }
  for (const auto& info : registry_.list()) {
    auto b = registry_.find(info.name);
    if (!b || !bdev::FaultControl::cast(*b)) continue;
    add_rules(info.name, *b, resp);
  }
  return grpc::Status::OK;
}

grpc::Status EngineServiceImpl::RunBenchmark(grpc::ServerContext*,
                                             const v1::RunBenchmarkRequest* req,
                                             v1::BenchmarkResult* resp) {
  if (req->bdev().empty()) {
    return to_grpc(Status(Errc::kInvalidArgument, "bdev name is required"));
  }
  bdev::PerfOptions opts;
  if (!req->workload().empty()) opts.workload = req->workload();
  if (req->block_size() != 0) opts.block_size = req->block_size();
  if (req->queue_depth() != 0) opts.queue_depth = req->queue_depth();
  if (req->duration_s() != 0) opts.duration_s = req->duration_s();
  if (req->has_rw_mix_read()) {
    if (req->rw_mix_read() > 100) {
      return to_grpc(
          make_error(Errc::kInvalidArgument, "rw_mix_read {} is above 100", req->rw_mix_read()));
    }
    opts.rw_mix_read = req->rw_mix_read();
  }
  for (uint32_t r : req->reactors()) {
    if (r >= reactors_.size()) {
      return to_grpc(make_error(Errc::kInvalidArgument,
                                "reactor {} does not exist (the engine has {})", r,
                                reactors_.size()));
    }
    opts.reactors.push_back(r);
  }
  if (req->seed() != 0) opts.seed = req->seed();
  // run_perf cannot be interrupted, so a benchmark delays engine shutdown until it ends:
  // keep it bounded. Longer runs belong to castor-bdevperf.
  if (!(opts.duration_s > 0 && opts.duration_s <= kMaxBenchmarkSeconds)) {
    return to_grpc(make_error(Errc::kInvalidArgument, "duration {} s is outside (0, {}]",
                              opts.duration_s, kMaxBenchmarkSeconds));
  }

  spdlog::info("benchmark on '{}': {} bs={} qd={} for {} s", req->bdev(), opts.workload,
               opts.block_size, opts.queue_depth, opts.duration_s);
  auto r = bdev::run_perf(registry_, req->bdev(), opts);
  if (!r) {
    spdlog::info("benchmark on '{}' failed: {}", req->bdev(), r.status().to_string());
    return to_grpc(r.status());
  }
  resp->set_bdev(r->bdev);
  resp->set_workload(r->workload);
  resp->set_block_size(r->block_size);
  resp->set_queue_depth(r->queue_depth);
  resp->set_reactors(r->reactors);
  resp->set_ios(r->ios);
  resp->set_errors(r->errors);
  resp->set_seconds(r->seconds);
  resp->set_iops(r->iops);
  resp->set_mib_s(r->mib_s);
  resp->set_mean_us(r->mean_us);
  resp->set_p50_us(r->p50_us);
  resp->set_p99_us(r->p99_us);
  resp->set_p999_us(r->p999_us);
  spdlog::info("benchmark on '{}' done: {} ios, {} errors, {:.0f} IOPS", req->bdev(), r->ios,
               r->errors, r->iops);
  return grpc::Status::OK;
}

}  // namespace castor::api
