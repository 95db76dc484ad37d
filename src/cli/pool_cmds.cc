// castorctl pool and replica: the pools of one engine (create, import, export, destroy,
// list) and their replicas (create, destroy, grow, list, NVMe-oF share).
//
// With castor-control named explicitly (--control or $CASTOR_CONTROL), `pool create NODE
// NAME`, `pool list [--node N]` and `pool destroy NODE NAME` manage the cluster's pools
// through it instead, and `pool import|export` refuse; without, every pool verb talks to
// the engine as it always did.

#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

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
  grpc::Status s = c.engine->CreatePool(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_pool(c, info);
}

int pool_import(Context& c, const std::vector<std::string>& disks) {
  v1::ImportPoolRequest req;
  for (const auto& d : disks) req.add_disks(d);
  v1::PoolInfo info;
  auto ctx = c.call();
  grpc::Status s = c.engine->ImportPool(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_pool(c, info);
}

int pool_export(Context& c, const std::string& name) {
  v1::ExportPoolRequest req;
  req.set_name(name);
  v1::ExportPoolResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ExportPool(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->DestroyPool(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->ListPools(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->CreateReplica(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_replica(c, info);
}

int replica_destroy(Context& c, const std::string& name) {
  v1::DestroyReplicaRequest req;
  req.set_name(name);
  v1::DestroyReplicaResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->DestroyReplica(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->GrowReplica(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_replica(c, info);
}

int replica_list(Context& c, const std::string& pool) {
  v1::ListReplicasRequest req;
  req.set_pool(pool);
  v1::ListReplicasResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ListReplicas(ctx.get(), req, &resp);
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

int replica_share(Context& c, const std::string& name, const std::vector<std::string>& hosts) {
  v1::ShareReplicaRequest req;
  req.set_name(name);
  for (const auto& h : hosts) req.add_allowed_hosts(h);
  v1::ShareInfo resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ShareReplica(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_share(c, resp);
}

int replica_unshare(Context& c, const std::string& name, bool force) {
  v1::UnshareReplicaRequest req;
  req.set_name(name);
  req.set_force(force);
  v1::UnshareBdevResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->UnshareReplica(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"unshared", name}});
  } else {
    fmt::print("replica '{}' unshared\n", name);
  }
  return 0;
}

// The cluster's pools, through castor-control (used when --control or CASTOR_CONTROL is
// given).

void print_cluster_pool_table(const std::vector<const ctlv1::Pool*>& pools) {
  Table t({"NODE", "NAME", "STATUS", "CLUSTER", "CAPACITY", "USED", "COMMITTED", "REPLICAS",
           "LABELS", "DISKS", "ERROR"});
  for (const auto* p : pools) {
    t.add_row({p->node(), p->name(), p->status(),
               p->cluster_size() ? human_bytes(p->cluster_size()) : "-",
               human_bytes(p->capacity_bytes()), human_bytes(p->used_bytes()),
               human_bytes(p->committed_bytes()), std::to_string(p->replicas()),
               labels_text(p->labels()), or_dash(joined(p->disks())), or_dash(p->error())});
  }
  t.print();
}

int cluster_pool_create(Context& c, const std::string& node, const std::string& name,
                        const std::vector<std::string>& disks,
                        const std::map<std::string, std::string>& labels, uint64_t cluster_size) {
  ctlv1::CreatePoolRequest req;
  req.set_node(node);
  req.set_name(name);
  for (const auto& d : disks) req.add_disks(d);
  req.mutable_labels()->insert(labels.begin(), labels.end());
  req.set_cluster_size(cluster_size);
  ctlv1::Pool pool;
  auto ctx = c.call();
  grpc::Status s = c.control->CreatePool(ctx.get(), req, &pool);
  if (!s.ok()) return c.fail_control(s);
  if (c.json()) {
    print_json(message_json(pool));
  } else {
    print_cluster_pool_table({&pool});
  }
  return 0;
}

int cluster_pool_destroy(Context& c, const std::string& node, const std::string& name) {
  ctlv1::DestroyPoolRequest req;
  req.set_node(node);
  req.set_name(name);
  ctlv1::DestroyPoolResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.control->DestroyPool(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail_control(s);
  if (c.json()) {
    print_json({{"destroyed", name}, {"node", node}});
  } else {
    fmt::print("pool '{}' on node '{}' destroyed\n", name, node);
  }
  return 0;
}

int cluster_pool_list(Context& c, const std::string& node) {
  ctlv1::ListPoolsRequest req;
  req.set_node(node);
  ctlv1::ListPoolsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.control->ListPools(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail_control(s);
  // The whole response, as for every castor-control call: {"pools": [...]}.
  if (c.json()) {
    print_json(message_json(resp));
    return 0;
  }
  std::vector<const ctlv1::Pool*> rows;
  for (const auto& p : resp.pools()) rows.push_back(&p);
  print_cluster_pool_table(rows);
  return 0;
}

struct PoolOptions {
  std::string name;
  std::vector<std::string> disks;
  std::string cluster_size = "4MiB";
  CLI::Option* cluster_size_opt = nullptr;
  // castor-control only: `pool create|destroy NODE NAME`, `pool list --node NODE`.
  std::string node;
  std::vector<std::string> labels;
  ReplicaArgs replica;
  std::string grow_size;
  std::string pool_filter;
  std::vector<std::string> allow_hosts;
  bool force_unshare = false;
};

constexpr size_t kMaxName = 63;  // castor-control's limit for node and pool names

int cluster_pool_create_checked(Context& c, const PoolOptions& o) {
  for (const auto* n : {&o.node, &o.name}) {
    if (!valid_name(*n, kMaxName)) {
      return usage_error(
          fmt::format("'{}' is not a name ([A-Za-z0-9._-], at most {} bytes)", *n, kMaxName));
    }
  }
  auto labels = parse_labels(o.labels, "--label");
  if (!labels) return kExitUsage;
  // Not given: 0, the engine's default (4 MiB today, as for the engine's pool create).
  uint64_t cluster_size =
      o.cluster_size_opt->count() > 0 ? parse_size(o.cluster_size).value_or(0) : 0;
  return cluster_pool_create(c, o.node, o.name, o.disks, *labels, cluster_size);
}

// import and export act on one engine's disks. castor-control imports the pools it manages
// by itself, and one exported behind its back would be imported again.
int engine_only(const char* verb) {
  return usage_error(fmt::format(
      "pool {} acts on one engine and has no castor-control form; run it without --control "
      "and CASTOR_CONTROL",
      verb));
}

// The pool verbs of one engine, as they were before castor-control existed.
void add_engine_pool_verbs(CLI::App* pool, Context& ctx, const std::shared_ptr<PoolOptions>& o) {
  auto* pcreate = pool->add_subcommand(
      "create",
      "format disks as a new pool (with --control or CASTOR_CONTROL: create NODE NAME, a "
      "pool of the cluster)");
  pcreate->add_option("NAME", o->name, "pool name")->required();
  pcreate
      ->add_option("--disk", o->disks,
                   "disk URI, repeatable: bdev:///NAME (an existing bdev) or a bdev URI the "
                   "pool creates, e.g. file:///var/lib/castor/d0.img?size_mb=1024")
      ->required()
      ->allow_extra_args(false);
  pcreate->add_option("--cluster-size", o->cluster_size, "allocation unit (default 4MiB)")
      ->check(size_validator());
  on_run(pcreate, ctx, [&ctx, o] {
    return pool_create(ctx, o->name, o->disks, parse_size(o->cluster_size).value_or(0));
  });

  auto* pimport = pool->add_subcommand("import", "import the pool on disks (every member)");
  pimport->add_option("--disk", o->disks, "disk URI, repeatable")
      ->required()
      ->allow_extra_args(false);
  on_run(pimport, ctx, [&ctx, o] { return pool_import(ctx, o->disks); });

  auto* pexport = pool->add_subcommand("export", "close a pool; its disks import again later");
  pexport->add_option("NAME", o->name, "pool name")->required();
  on_run(pexport, ctx, [&ctx, o] { return pool_export(ctx, o->name); });

  auto* pdestroy = pool->add_subcommand(
      "destroy",
      "destroy a pool and its replicas (wipes the labels; with --control or CASTOR_CONTROL: "
      "destroy NODE NAME)");
  pdestroy->add_option("NAME", o->name, "pool name")->required();
  on_run(pdestroy, ctx, [&ctx, o] { return pool_destroy(ctx, o->name); });

  auto* plist = pool->add_subcommand(
      "list", "list pools (with --control or CASTOR_CONTROL: the cluster's, list [--node N])");
  plist->add_option("NAME", o->name, "pool name (default: every pool)");
  on_run(plist, ctx, [&ctx, o] { return pool_list(ctx, o->name); });
}

// The cluster's pools through castor-control; import and export only say why not.
void add_cluster_pool_verbs(CLI::App* pool, Context& ctx, const std::shared_ptr<PoolOptions>& o) {
  auto* pcreate = pool->add_subcommand(
      "create",
      "declare pool NAME on node NODE; castor-control creates it there (or imports it) and "
      "keeps it imported");
  pcreate->add_option("NODE", o->node, "node name")->required();
  pcreate->add_option("NAME", o->name, "pool name ([A-Za-z0-9._-], at most 63 bytes)")->required();
  pcreate
      ->add_option("--disk", o->disks,
                   "disk URI on that node, repeatable, e.g. "
                   "file:///var/lib/castor/d0.img?size_mb=1024 or uring:///dev/nvme0n1")
      ->required()
      ->allow_extra_args(false);
  pcreate
      ->add_option("--label", o->labels,
                   "pool label KEY=VALUE, repeatable (volumes choose pools with --pool-label)")
      ->allow_extra_args(false)
      ->check(key_value_validator(false));
  o->cluster_size_opt =
      pcreate->add_option("--cluster-size", o->cluster_size, "allocation unit (default 4MiB)")
          ->check(size_validator());
  on_run(pcreate, ctx, [&ctx, o] { return cluster_pool_create_checked(ctx, *o); });

  auto* pimport =
      pool->add_subcommand("import", "the engine only: run without --control and CASTOR_CONTROL");
  pimport->add_option("--disk", o->disks, "disk URI, repeatable")->allow_extra_args(false);
  on_run(pimport, ctx, [] { return engine_only("import"); });

  auto* pexport =
      pool->add_subcommand("export", "the engine only: run without --control and CASTOR_CONTROL");
  pexport->add_option("NAME", o->name, "pool name");
  on_run(pexport, ctx, [] { return engine_only("export"); });

  auto* pdestroy = pool->add_subcommand(
      "destroy", "destroy pool NAME of node NODE; refused while a volume has a replica in it");
  pdestroy->add_option("NODE", o->node, "node name")->required();
  pdestroy->add_option("NAME", o->name, "pool name")->required();
  on_run(pdestroy, ctx, [&ctx, o] { return cluster_pool_destroy(ctx, o->node, o->name); });

  auto* plist = pool->add_subcommand("list", "list the cluster's pools");
  plist->add_option("--node", o->node, "only this node's pools");
  on_run(plist, ctx, [&ctx, o] { return cluster_pool_list(ctx, o->node); });
}

}  // namespace

void add_pool_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<PoolOptions>();
  // Which form the pool verbs take is known before parsing (main.cc), so each form has
  // CLI11's own checks and help.
  auto* pool = app.add_subcommand(
      "pool", ctx.control_explicit
                  ? "the cluster's storage pools, through castor-control (because --control or "
                    "CASTOR_CONTROL is given)"
                  : "storage pools (the engine's; with --control or CASTOR_CONTROL the cluster's, "
                    "through castor-control)");
  pool->require_subcommand(1);
  if (ctx.control_explicit) {
    add_cluster_pool_verbs(pool, ctx, o);
  } else {
    add_engine_pool_verbs(pool, ctx, o);
  }

  auto* replica = app.add_subcommand("replica", "replicas (volumes) of pools");
  replica->require_subcommand(1);
  ReplicaArgs& ra = o->replica;
  auto* rcreate = replica->add_subcommand("create", "create a replica in a pool");
  rcreate->add_option("POOL", ra.pool, "pool name")->required();
  rcreate->add_option("NAME", ra.name, "replica (and bdev) name")->required();
  rcreate->add_option("--size", ra.size, "size, e.g. 1GiB")->required()->check(size_validator());
  rcreate->add_flag("--thin", ra.thin, "allocate clusters on first write");
  rcreate->add_option("--uuid", ra.uuid, "replica UUID (default random)");
  on_run(rcreate, ctx, [&ctx, o] { return replica_create(ctx, o->replica); });

  auto* rdestroy = replica->add_subcommand("destroy", "destroy a replica");
  rdestroy->add_option("NAME", o->name, "replica name or UUID")->required();
  on_run(rdestroy, ctx, [&ctx, o] { return replica_destroy(ctx, o->name); });

  auto* rgrow = replica->add_subcommand("grow", "grow a replica (never shrinks)");
  rgrow->add_option("NAME", o->name, "replica name or UUID")->required();
  rgrow->add_option("--size", o->grow_size, "new size, e.g. 2GiB")
      ->required()
      ->check(size_validator());
  on_run(rgrow, ctx, [&ctx, o] { return replica_grow(ctx, o->name, o->grow_size); });

  auto* rlist = replica->add_subcommand("list", "list replicas");
  rlist->add_option("--pool", o->pool_filter, "only this pool's replicas");
  on_run(rlist, ctx, [&ctx, o] { return replica_list(ctx, o->pool_filter); });

  auto* rshare = replica->add_subcommand(
      "share", "share a replica over NVMe-oF (prints its nvmf:// and bdev:/// URIs)");
  rshare->add_option("NAME", o->name, "replica name or UUID")->required();
  rshare
      ->add_option("--allow-host", o->allow_hosts,
                   "host NQN allowed to connect; repeatable "
                   "(default: any host)")
      ->allow_extra_args(false);
  on_run(rshare, ctx, [&ctx, o] { return replica_share(ctx, o->name, o->allow_hosts); });

  auto* runshare = replica->add_subcommand("unshare", "stop sharing a replica over NVMe-oF");
  runshare->add_option("NAME", o->name, "replica name or UUID")->required();
  runshare->add_flag("--force", o->force_unshare, "disconnect hosts that are still connected");
  on_run(runshare, ctx, [&ctx, o] { return replica_unshare(ctx, o->name, o->force_unshare); });
}

}  // namespace castor::cli
