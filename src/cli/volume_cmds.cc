// castorctl volume: the cluster's replicated volumes through castor-control. Create
// (placement constraints included), list, get (with the progress of replicas being
// rebuilt, optionally followed until the volume settles), publish and unpublish, resize,
// scale to another replica count, destroy.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

// castor-control's limits (control.proto).
constexpr size_t kMaxNodeName = 63;
constexpr size_t kMaxVolumeName = 128;
constexpr uint32_t kMaxReplicas = 8;

size_t replicas_in(const ctlv1::Volume& v, const std::string& state) {
  return static_cast<size_t>(std::count_if(v.replicas().begin(), v.replicas().end(),
                                           [&](const auto& r) { return r.state() == state; }));
}

bool rebuilding(const ctlv1::Volume& v) {
  return replicas_in(v, "rebuilding") > 0;
}

// Nothing left to happen: no operation in flight, as many replicas as wanted, each online,
// faulted or missing. Right after `volume scale` the new replica may not be listed yet,
// and one just added passes through other states (creating) before "rebuilding", so
// "no replica rebuilding" alone would stop before the rebuild has begun.
bool settled(const ctlv1::Volume& v) {
  return v.operation().empty() && static_cast<uint32_t>(v.replicas_size()) >= v.replica_count() &&
         std::all_of(v.replicas().begin(), v.replicas().end(), [](const auto& r) {
           return r.state() == "online" || r.state() == "faulted" || r.state() == "missing";
         });
}

// TODO(lead): ReplicaStatus carries the percentage and the rate only, so a replica's line
// has no DONE/TOTAL and no ETA, which `rebuild watch` shows for a nexus child; byte
// counts (or the nexus' RebuildInfo) in ReplicaStatus would give both.
Progress replica_progress(const ctlv1::ReplicaStatus& r) {
  Progress p;
  p.percent = r.rebuild_percent();
  p.rate_bytes_s = r.rebuild_bytes_s();
  return p;
}

void print_volume_table(const std::vector<const ctlv1::Volume*>& volumes) {
  Table t(
      {"UUID", "NAME", "SIZE", "TYPE", "REPLICAS", "STATUS", "PROTOCOL", "PUBLISHED", "OPERATION"});
  for (const auto* v : volumes) {
    t.add_row({v->uuid(), or_dash(v->name()), human_bytes(v->size_bytes()),
               v->thin() ? "thin" : "thick",
               fmt::format("{}/{}", replicas_in(*v, "online"), v->replica_count()), v->status(),
               or_dash(v->protocol()), v->has_target() ? or_dash(v->target().node()) : "-",
               or_dash(v->operation())});
  }
  t.print();
}

// The volume as key/value lines, a blank line, its replicas, and one progress line per
// replica being rebuilt.
void print_volume_details(const ctlv1::Volume& v) {
  std::vector<std::pair<std::string, std::string>> kv = {
      {"uuid", v.uuid()},
      {"name", or_dash(v.name())},
      {"status", v.status()},
      {"size", human_bytes(v.size_bytes())},
      {"type", v.thin() ? "thin" : "thick"},
      {"replicas", fmt::format("{} of {} online", replicas_in(v, "online"), v.replica_count())},
      {"protocol", or_dash(v.protocol())},
      {"labels", labels_text(v.labels())}};
  // Only the placement constraints that were given.
  const auto& topo = v.topology();
  if (!topo.allowed_nodes().empty()) kv.emplace_back("allowed_nodes", joined(topo.allowed_nodes()));
  if (!topo.preferred_nodes().empty()) {
    kv.emplace_back("preferred_nodes", joined(topo.preferred_nodes()));
  }
  if (!topo.node_labels().empty()) kv.emplace_back("node_labels", labels_text(topo.node_labels()));
  if (!topo.spread_labels().empty()) kv.emplace_back("spread_labels", joined(topo.spread_labels()));
  if (!topo.pool_labels().empty()) kv.emplace_back("pool_labels", labels_text(topo.pool_labels()));
  kv.emplace_back("operation", or_dash(v.operation()));
  kv.emplace_back("generation", std::to_string(v.generation()));
  if (v.has_target()) {
    const auto& t = v.target();
    kv.emplace_back("target", or_dash(t.uri()));
    kv.emplace_back("target_node", or_dash(t.node()));
    kv.emplace_back("target_state", or_dash(t.state()));
    kv.emplace_back("allowed_hosts", t.allowed_hosts().empty() ? "any" : joined(t.allowed_hosts()));
    kv.emplace_back("frontend_node", or_dash(t.frontend_node()));
  } else {
    kv.emplace_back("target", "- (not published)");
  }
  fmt::print("{}\n", key_values(kv));

  Table t({"UUID", "NODE", "POOL", "STATE", "REASON", "LOCAL", "URI"});
  for (const auto& r : v.replicas()) {
    t.add_row({r.uuid(), or_dash(r.node()), or_dash(r.pool()), r.state(), or_dash(r.reason()),
               r.local() ? "yes" : "no", or_dash(r.uri())});
  }
  t.print();
  if (rebuilding(v)) {
    fmt::print("\n");
    for (const auto& r : v.replicas()) {
      if (r.state() == "rebuilding")
        fmt::print("{}\n", progress_line(r.uuid(), replica_progress(r)));
    }
  }
}

int print_volume(Context& c, const ctlv1::Volume& v) {
  if (c.json()) {
    print_json(message_json(v));
  } else {
    print_volume_details(v);
  }
  return 0;
}

struct VolumeCreateArgs {
  std::string size;  // validated by volume_size_validator()
  uint32_t replicas = 0;
  std::string uuid;
  std::string name;
  bool thin = false;
  std::string protocol;  // empty: castor-control's default (nvmf)
  std::vector<std::string> allowed_nodes;
  std::vector<std::string> preferred_nodes;
  std::vector<std::string> node_labels;  // KEY=VALUE
  std::vector<std::string> spread_labels;
  std::vector<std::string> pool_labels;  // KEY=VALUE
  std::vector<std::string> labels;       // KEY=VALUE
};

int volume_create(Context& c, const VolumeCreateArgs& a) {
  auto node_labels = parse_labels(a.node_labels, "--node-label");
  auto pool_labels = parse_labels(a.pool_labels, "--pool-label");
  auto labels = parse_labels(a.labels, "--label");
  if (!node_labels || !pool_labels || !labels) return kExitUsage;
  ctlv1::CreateVolumeRequest req;
  req.set_uuid(a.uuid);
  req.set_name(a.name);
  req.set_size_bytes(parse_size(a.size).value_or(0));
  req.set_replica_count(a.replicas);
  req.set_thin(a.thin);
  req.set_protocol(a.protocol);
  auto* topo = req.mutable_topology();
  for (const auto& n : a.allowed_nodes) topo->add_allowed_nodes(n);
  for (const auto& n : a.preferred_nodes) topo->add_preferred_nodes(n);
  topo->mutable_node_labels()->insert(node_labels->begin(), node_labels->end());
  for (const auto& k : a.spread_labels) topo->add_spread_labels(k);
  topo->mutable_pool_labels()->insert(pool_labels->begin(), pool_labels->end());
  req.mutable_labels()->insert(labels->begin(), labels->end());
  ctlv1::Volume v;
  auto ctx = c.call();
  grpc::Status s = c.control->CreateVolume(ctx.get(), req, &v);
  if (!s.ok()) return c.fail_control(s);
  return print_volume(c, v);
}

int volume_list(Context& c, uint32_t max_entries, const std::string& token) {
  ctlv1::ListVolumesRequest req;
  req.set_max_entries(max_entries);
  req.set_starting_token(token);
  ctlv1::ListVolumesResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.control->ListVolumes(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail_control(s);
  // The whole response, as for every castor-control call; next_token gets the next page.
  if (c.json()) {
    print_json(message_json(resp));
    return 0;
  }
  std::vector<const ctlv1::Volume*> rows;
  for (const auto& v : resp.volumes()) rows.push_back(&v);
  print_volume_table(rows);
  if (!resp.next_token().empty()) fmt::print("\nmore: --token {}\n", resp.next_token());
  return 0;
}

int volume_get(Context& c, const std::string& uuid) {
  ctlv1::GetVolumeRequest req;
  req.set_uuid(uuid);
  ctlv1::Volume v;
  auto ctx = c.call();
  grpc::Status s = c.control->GetVolume(ctx.get(), req, &v);
  if (!s.ok()) return c.fail_control(s);
  return print_volume(c, v);
}

// Polls GetVolume until the volume is settled (exit 0; the last state is shown, whether
// its replicas ended online or faulted). It waits as long as that takes, also for a
// replica castor-control cannot place: interrupt it then. A TTY is redrawn each time; anything else
// gets every poll's output one after the other (blank-line separated); -o json one compact Volume
// per poll, one per line.
int volume_watch(Context& c, const std::string& uuid, double interval_s) {
  const bool tty = !c.json() && ::isatty(STDOUT_FILENO);
  ctlv1::GetVolumeRequest req;
  req.set_uuid(uuid);
  for (bool first = true;; first = false) {
    ctlv1::Volume v;
    auto ctx = c.call();
    grpc::Status s = c.control->GetVolume(ctx.get(), req, &v);
    if (!s.ok()) return c.fail_control(s);
    if (c.json()) {
      fmt::print("{}\n", message_json(v).dump());
    } else {
      if (tty) {
        fmt::print("\033[H\033[2J");  // home, clear screen: redraw in place, as watch(1)
      } else if (!first) {
        fmt::print("\n");
      }
      print_volume_details(v);
    }
    std::fflush(stdout);
    if (settled(v)) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(interval_s * 1000)));
  }
}

struct PublishArgs {
  std::string uuid;
  std::string node;
  std::vector<std::string> allowed_hosts;
  std::string frontend_node;
};

int volume_publish(Context& c, const PublishArgs& a) {
  ctlv1::PublishVolumeRequest req;
  req.set_uuid(a.uuid);
  req.set_node(a.node);
  for (const auto& h : a.allowed_hosts) req.add_allowed_hosts(h);
  req.set_frontend_node(a.frontend_node);
  ctlv1::Volume v;
  auto ctx = c.call();
  grpc::Status s = c.control->PublishVolume(ctx.get(), req, &v);
  if (!s.ok()) return c.fail_control(s);
  if (c.json()) {
    print_json(message_json(v));
  } else {
    // The URI alone, as `nexus publish` prints it: uri=$(castorctl volume publish U).
    fmt::print("{}\n", v.target().uri());
  }
  return 0;
}

int volume_unpublish(Context& c, const std::string& uuid) {
  ctlv1::UnpublishVolumeRequest req;
  req.set_uuid(uuid);
  ctlv1::Volume v;
  auto ctx = c.call();
  grpc::Status s = c.control->UnpublishVolume(ctx.get(), req, &v);
  if (!s.ok()) return c.fail_control(s);
  if (c.json()) {
    print_json(message_json(v));
  } else {
    fmt::print("volume '{}' unpublished\n", uuid);
  }
  return 0;
}

int volume_resize(Context& c, const std::string& uuid, const std::string& size) {
  ctlv1::ResizeVolumeRequest req;
  req.set_uuid(uuid);
  req.set_size_bytes(parse_size(size).value_or(0));
  ctlv1::Volume v;
  auto ctx = c.call();
  grpc::Status s = c.control->ResizeVolume(ctx.get(), req, &v);
  if (!s.ok()) return c.fail_control(s);
  return print_volume(c, v);
}

int volume_scale(Context& c, const std::string& uuid, uint32_t replicas) {
  ctlv1::ScaleVolumeRequest req;
  req.set_uuid(uuid);
  req.set_replica_count(replicas);
  ctlv1::Volume v;
  auto ctx = c.call();
  grpc::Status s = c.control->ScaleVolume(ctx.get(), req, &v);
  if (!s.ok()) return c.fail_control(s);
  return print_volume(c, v);
}

int volume_destroy(Context& c, const std::string& uuid) {
  ctlv1::DestroyVolumeRequest req;
  req.set_uuid(uuid);
  ctlv1::DestroyVolumeResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.control->DestroyVolume(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail_control(s);
  if (c.json()) {
    print_json({{"destroyed", uuid}});
  } else {
    fmt::print("volume '{}' destroyed\n", uuid);
  }
  return 0;
}

struct VolumeOptions {
  VolumeCreateArgs create;
  std::string uuid;
  uint32_t max_entries = 0;
  std::string token;
  bool watch = false;
  double interval_s = 1.0;
  PublishArgs publish;
  std::string size;
  uint32_t replicas = 0;
};

}  // namespace

void add_volume_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<VolumeOptions>();
  auto* volume = app.add_subcommand(
      "volume", "replicated volumes of the cluster (castor-control): placement, publishing");
  volume->require_subcommand(1);

  VolumeCreateArgs& a = o->create;
  auto* create = volume->add_subcommand(
      "create", "create a volume: its replicas on distinct nodes (idempotent on --uuid/--name)");
  create->add_option("--size", a.size, "size, a multiple of 4KiB, e.g. 64GiB")
      ->required()
      ->check(volume_size_validator());
  create->add_option("--replicas", a.replicas, "number of replicas, 1..8")
      ->required()
      ->check(CLI::Range(1u, kMaxReplicas));
  create->add_option("--uuid", a.uuid, "volume UUID (default random)")->check(uuid_validator());
  create->add_option("--name", a.name, "unique name ([A-Za-z0-9._-], at most 128 bytes)")
      ->check(name_validator(kMaxVolumeName));
  create->add_flag("--thin", a.thin, "thin replicas: clusters allocated on first write");
  create->add_option("--protocol", a.protocol, "nvmf (default), iscsi or nbd")
      ->check(CLI::IsMember({"nvmf", "iscsi", "nbd"}));
  create->add_option("--allowed-node", a.allowed_nodes, "replicas only on this node; repeatable")
      ->allow_extra_args(false)
      ->check(name_validator(kMaxNodeName));
  create
      ->add_option("--preferred-node", a.preferred_nodes,
                   "replicas and the nexus here first, in order; repeatable")
      ->allow_extra_args(false)
      ->check(name_validator(kMaxNodeName));
  create
      ->add_option("--node-label", a.node_labels,
                   "replicas only on nodes with this label KEY=VALUE; repeatable")
      ->allow_extra_args(false)
      ->check(key_value_validator(false));
  create
      ->add_option("--spread-label", a.spread_labels,
                   "replicas on nodes whose values of this label key differ (e.g. zone); "
                   "repeatable")
      ->allow_extra_args(false)
      ->check(label_key_validator());
  create
      ->add_option("--pool-label", a.pool_labels,
                   "replicas only in pools with this label KEY=VALUE; repeatable")
      ->allow_extra_args(false)
      ->check(key_value_validator(false));
  create->add_option("--label", a.labels, "volume label KEY=VALUE; repeatable")
      ->allow_extra_args(false)
      ->check(key_value_validator(false));
  on_run(create, ctx, [&ctx, o] { return volume_create(ctx, o->create); });

  auto* list = volume->add_subcommand("list", "list volumes, sorted by UUID");
  list->add_option("--max-entries", o->max_entries, "at most this many (default 0: all)");
  list->add_option("--token", o->token, "continue where a previous list stopped (its next_token)");
  on_run(list, ctx, [&ctx, o] { return volume_list(ctx, o->max_entries, o->token); });

  auto* get = volume->add_subcommand(
      "get", "a volume, its target and its replicas (progress of those being rebuilt)");
  get->add_option("UUID", o->uuid, "volume UUID or name")->required();
  auto* watch = get->add_flag("--watch", o->watch,
                              "redraw every --interval until the volume has its replicas, none "
                              "being created or rebuilt, and no operation is in flight");
  get->add_option("--interval", o->interval_s, "seconds between updates of --watch (default 1)")
      ->check(CLI::Range(0.05, 3600.0))
      ->needs(watch);
  on_run(get, ctx, [&ctx, o] {
    return o->watch ? volume_watch(ctx, o->uuid, o->interval_s) : volume_get(ctx, o->uuid);
  });

  PublishArgs& p = o->publish;
  auto* publish = volume->add_subcommand(
      "publish", "make a volume reachable: a nexus and its target (prints the URI)");
  publish->add_option("UUID", p.uuid, "volume UUID")->required();
  publish->add_option("--node", p.node, "the nexus' node, if usable (default the least loaded)")
      ->check(name_validator(kMaxNodeName));
  publish
      ->add_option("--allow-host", p.allowed_hosts,
                   "host NQN (nvmf) or initiator IQN (iscsi) allowed to connect; repeatable "
                   "(default: any)")
      ->allow_extra_args(false);
  publish->add_option("--frontend-node", p.frontend_node, "the application's node, recorded")
      ->check(name_validator(kMaxNodeName));
  on_run(publish, ctx, [&ctx, o] { return volume_publish(ctx, o->publish); });

  auto* unpublish = volume->add_subcommand("unpublish", "remove a volume's nexus and target");
  unpublish->add_option("UUID", o->uuid, "volume UUID")->required();
  on_run(unpublish, ctx, [&ctx, o] { return volume_unpublish(ctx, o->uuid); });

  auto* resize = volume->add_subcommand(
      "resize",
      "grow a volume, published or not (every replica, then the nexus; not over NBD)");
  resize->add_option("UUID", o->uuid, "volume UUID")->required();
  resize->add_option("--size", o->size, "new size, a multiple of 4KiB")
      ->required()
      ->check(volume_size_validator());
  on_run(resize, ctx, [&ctx, o] { return volume_resize(ctx, o->uuid, o->size); });

  auto* scale = volume->add_subcommand(
      "scale", "set the replica count; castor-control adds or removes replicas");
  scale->add_option("UUID", o->uuid, "volume UUID")->required();
  scale->add_option("--replicas", o->replicas, "number of replicas, 1..8")
      ->required()
      ->check(CLI::Range(1u, kMaxReplicas));
  on_run(scale, ctx, [&ctx, o] { return volume_scale(ctx, o->uuid, o->replicas); });

  auto* destroy =
      volume->add_subcommand("destroy", "unpublish a volume, destroy its replicas and forget it");
  destroy->add_option("UUID", o->uuid, "volume UUID")->required();
  on_run(destroy, ctx, [&ctx, o] { return volume_destroy(ctx, o->uuid); });
}

}  // namespace castor::cli
