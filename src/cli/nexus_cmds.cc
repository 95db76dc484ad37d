// castorctl nexus and rebuild: nexuses (replicated volumes over child bdevs), their
// children and publishing, and the rebuilds of children (state, control, `watch` with
// its progress bar).

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

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
          {"generation", n.generation()},
          {"ana_state", n.ana_state()},
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
    t.add_row({n->name(), n->state(), human_bytes(n->size_bytes()), std::to_string(n->block_size()),
               std::to_string(n->children_size()), std::to_string(healthy_children(*n)), n->uuid(),
               n->uris().empty() ? "-" : joined(n->uris())});
  }
  t.print();
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
  grpc::Status s = c.engine->CreateNexus(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

int nexus_destroy(Context& c, const std::string& name, bool purge) {
  v1::DestroyNexusRequest req;
  req.set_name(name);
  req.set_purge(purge);
  v1::DestroyNexusResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->DestroyNexus(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->ListNexuses(ctx.get(), v1::ListNexusesRequest(), &resp);
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
  grpc::Status s = c.engine->GetNexus(ctx.get(), req, &info);
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
  grpc::Status s = c.engine->AddChild(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

int nexus_ana_state(Context& c, const std::string& name, const std::string& state) {
  v1::SetNexusAnaStateRequest req;
  req.set_name(name);
  req.set_state(state);
  v1::NexusInfo info;
  auto ctx = c.call();
  grpc::Status s = c.engine->SetNexusAnaState(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

int nexus_resize(Context& c, const std::string& name, const std::string& size) {
  v1::ResizeNexusRequest req;
  req.set_name(name);
  req.set_size_bytes(parse_size(size).value_or(0));
  v1::NexusInfo info;
  auto ctx = c.call();
  grpc::Status s = c.engine->ResizeNexus(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  return print_nexus(c, info);
}

using ChildRpc = grpc::Status (v1::EngineService::Stub::*)(grpc::ClientContext*,
                                                           const v1::ChildRequest&, v1::NexusInfo*);

int nexus_child_op(Context& c, ChildRpc rpc, const std::string& name, const std::string& uri) {
  v1::ChildRequest req;
  req.set_nexus(name);
  req.set_uri(uri);
  v1::NexusInfo info;
  auto ctx = c.call();
  grpc::Status s = ((*c.engine).*rpc)(ctx.get(), req, &info);
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
  grpc::Status s = c.engine->PublishNexus(ctx.get(), req, &resp);
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

int nexus_unpublish(Context& c, const std::string& name, bool force) {
  v1::UnpublishNexusRequest req;
  req.set_name(name);
  req.set_force(force);
  v1::UnpublishNexusResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->UnpublishNexus(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"unpublished", name}});
  } else {
    fmt::print("nexus '{}' unpublished\n", name);
  }
  return 0;
}

uint64_t rebuild_bytes(const v1::RebuildInfo& r, uint64_t blocks) {
  return blocks * r.block_size();
}

void print_rebuild_table(const std::vector<const v1::RebuildInfo*>& rows) {
  Table t(
      {"NEXUS", "CHILD", "STATE", "PROGRESS", "DONE", "TOTAL", "RATE", "TYPE", "SOURCE", "ERROR"});
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
  grpc::Status s = ((*c.engine).*rpc)(ctx.get(), req, &info);
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
  grpc::Status s = c.engine->ListRebuilds(ctx.get(), req, &resp);
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
// "1:02:03", "2:03" or "-" (unknown).
std::string eta_text(const v1::RebuildInfo& r) {
  if (r.state() == "completed") return "0:00";
  if (r.state() != "running" || r.rate_bytes_s() == 0 || r.blocks_total() < r.blocks_done()) {
    return "-";
  }
  uint64_t left = rebuild_bytes(r, r.blocks_total() - r.blocks_done());
  return duration_text((left + r.rate_bytes_s() - 1) / r.rate_bytes_s());
}

Progress rebuild_progress(const v1::RebuildInfo& r) {
  return Progress{.percent = r.percent(),
                  .done_bytes = rebuild_bytes(r, r.blocks_done()),
                  .total_bytes = rebuild_bytes(r, r.blocks_total()),
                  .rate_bytes_s = r.rate_bytes_s(),
                  .eta = eta_text(r)};
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
    grpc::Status s = c.engine->GetRebuild(ctx.get(), req, &r);
    if (!s.ok()) {
      if (tty && last_width) fmt::print("\n");
      return c.fail(s);
    }
    const bool done = r.state() != "running" && r.state() != "paused";
    if (c.json()) {
      fmt::print("{}\n", rebuild_json(r).dump());
    } else if (tty) {
      std::string line = progress_line(child, rebuild_progress(r));
      if (r.state() != "running") line += "  " + r.state();
      fmt::print("\r{}{}", line,
                 std::string(last_width > line.size() ? last_width - line.size() : 0, ' '));
      last_width = line.size();
      if (done) fmt::print("\n");
    } else {
      fmt::print("{} {} {}\n", child, r.state(), progress_text(rebuild_progress(r)));
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

struct NexusOptions {
  NexusCreateArgs create;
  std::string name;
  bool purge = false;
  bool force = false;
  std::string child_uri;
  std::string resize_size;
  std::string ana_state;
  bool no_rebuild = false;
  PublishArgs publish;
  std::string protocol_arg;
  std::string rb_nexus;
  std::string rb_child;
  double interval_s = 1.0;
};

}  // namespace

void add_nexus_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<NexusOptions>();
  auto* nexus = app.add_subcommand("nexus", "nexuses: replicated volumes over child bdevs");
  nexus->require_subcommand(1);
  NexusCreateArgs& na = o->create;
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
                   "child_io_timeout_ms, segment_kb, parallel_segments, rate_mb_s, busy_rate_mb_s, verify, defer_writes, "
                   "rebuild_stale, force, ...)")
      ->allow_extra_args(false)
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            auto eq = s.find('=');
            if (eq == std::string::npos || eq == 0) return fmt::format("'{}' is not KEY=VALUE", s);
            return "";
          },
          "KEY=VALUE"));
  on_run(xcreate, ctx, [&ctx, o] { return nexus_create(ctx, o->create); });

  auto* xdestroy = nexus->add_subcommand("destroy", "destroy a nexus (it must be unpublished)");
  xdestroy->add_option("NAME", o->name, "nexus name")->required();
  xdestroy->add_flag("--purge", o->purge, "also forget the children's health records");
  on_run(xdestroy, ctx, [&ctx, o] { return nexus_destroy(ctx, o->name, o->purge); });

  on_run(nexus->add_subcommand("list", "list nexuses"), ctx, [&ctx] { return nexus_list(ctx); });

  auto* xshow = nexus->add_subcommand("show", "a nexus and its children");
  xshow->add_option("NAME", o->name, "nexus name")->required();
  on_run(xshow, ctx, [&ctx, o] { return nexus_show(ctx, o->name); });

  auto* xadd = nexus->add_subcommand("add-child", "add a child (rebuilt from a healthy one)");
  xadd->add_option("NAME", o->name, "nexus name")->required();
  xadd->add_option("URI", o->child_uri, "child URI")->required();
  xadd->add_flag("--no-rebuild", o->no_rebuild, "do not rebuild: the child starts faulted");
  on_run(xadd, ctx,
         [&ctx, o] { return nexus_add_child(ctx, o->name, o->child_uri, o->no_rebuild); });

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
    sc->add_option("NAME", o->name, "nexus name")->required();
    sc->add_option("URI", o->child_uri, "child URI")->required();
    ChildRpc rpc = cc.rpc;
    on_run(sc, ctx, [&ctx, o, rpc] { return nexus_child_op(ctx, rpc, o->name, o->child_uri); });
  }

  PublishArgs& pa = o->publish;
  auto* xpublish = nexus->add_subcommand(
      "publish", "make a nexus reachable over NVMe-oF, NBD or iSCSI (prints the URI)");
  xpublish->add_option("NAME", pa.name, "nexus name")->required();
  auto* p_positional =
      xpublish->add_option("PROTOCOL", o->protocol_arg, "nvmf, nbd or iscsi (same as --protocol)")
          ->check(CLI::IsMember({"nvmf", "nbd", "iscsi"}));
  xpublish->add_option("--protocol", pa.protocol, "nvmf (default), nbd or iscsi")
      ->check(CLI::IsMember({"nvmf", "nbd", "iscsi"}))
      ->excludes(p_positional);
  xpublish
      ->add_option("--host", pa.hosts,
                   "nvmf: host NQN allowed to connect; repeatable (default any)")
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
  xpublish->callback([&ctx, o] {
    // The protocol may come as a second argument (`nexus publish n0 iscsi`).
    if (!o->protocol_arg.empty()) o->publish.protocol = o->protocol_arg;
    ctx.action = [&ctx, o] { return nexus_publish(ctx, o->publish); };
  });

  auto* xresize = nexus->add_subcommand(
      "resize", "grow a nexus under I/O (its children first); hosts are told the new size");
  xresize->add_option("NAME", o->name, "nexus name")->required();
  xresize->add_option("--size", o->resize_size, "new size, e.g. 2GiB (never smaller)")
      ->required()
      ->check(size_validator());
  on_run(xresize, ctx, [&ctx, o] { return nexus_resize(ctx, o->name, o->resize_size); });

  auto* xana = nexus->add_subcommand(
      "ana-state", "set this engine's ANA state of a nexus published over NVMe-oF (its path)");
  xana->add_option("NAME", o->name, "nexus name")->required();
  xana->add_option("STATE", o->ana_state, "optimized, non_optimized, inaccessible, persistent_loss or change")
      ->required()
      ->check(CLI::IsMember({"optimized", "non_optimized", "inaccessible", "persistent_loss", "change"}));
  on_run(xana, ctx, [&ctx, o] { return nexus_ana_state(ctx, o->name, o->ana_state); });

  auto* xunpublish = nexus->add_subcommand(
      "unpublish", "remove a nexus' NVMe-oF share, NBD export or iSCSI target");
  xunpublish->add_option("NAME", o->name, "nexus name")->required();
  xunpublish->add_flag("--force", o->force, "disconnect connected hosts instead of failing");
  on_run(xunpublish, ctx, [&ctx, o] { return nexus_unpublish(ctx, o->name, o->force); });

  auto* rebuild = app.add_subcommand("rebuild", "rebuilds of nexus children");
  rebuild->require_subcommand(1);
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
    sc->add_option("NEXUS", o->rb_nexus, "nexus name")->required();
    sc->add_option("CHILD", o->rb_child, "child URI")->required();
    RebuildRpc rpc = rc.rpc;
    on_run(sc, ctx, [&ctx, o, rpc] { return rebuild_op(ctx, rpc, o->rb_nexus, o->rb_child); });
  }
  auto* rstats = rebuild->add_subcommand("stats", "progress of one child's rebuild, or of all");
  rstats->add_option("NEXUS", o->rb_nexus, "nexus name")->required();
  rstats->add_option("CHILD", o->rb_child, "child URI (default: every child with a rebuild)");
  on_run(rstats, ctx, [&ctx, o] { return rebuild_stats(ctx, o->rb_nexus, o->rb_child); });

  auto* rwatch = rebuild->add_subcommand(
      "watch", "follow a rebuild until it ends (exit 0 completed, 1 failed or stopped)");
  rwatch->add_option("NEXUS", o->rb_nexus, "nexus name")->required();
  rwatch->add_option("CHILD", o->rb_child, "child URI")->required();
  rwatch->add_option("--interval", o->interval_s, "seconds between updates (default 1)")
      ->check(CLI::Range(0.05, 3600.0));
  on_run(rwatch, ctx,
         [&ctx, o] { return rebuild_watch(ctx, o->rb_nexus, o->rb_child, o->interval_s); });
}

}  // namespace castor::cli
