// castorctl nvmf, nbd and iscsi: the engine's front-end targets. NVMe-oF/TCP listeners,
// shared bdevs (one subsystem each), subsystems and controllers; NBD listeners and
// exports; iSCSI portals, target nodes (with CHAP) and sessions.

#include <fmt/format.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

ordered_json share_json(const v1::ShareInfo& r) {
  return {{"nqn", r.nqn()},
          {"bdev", r.bdev()},
          {"uris", std::vector<std::string>(r.uris().begin(), r.uris().end())},
          {"allowed_hosts",
           std::vector<std::string>(r.allowed_hosts().begin(), r.allowed_hosts().end())}};
}

}  // namespace

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

namespace {

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
  grpc::Status s = c.engine->NvmfListen(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_listen(c, "NVMe-oF", address, resp.port());
}

int nvmf_share(Context& c, const std::string& bdev, const std::vector<std::string>& hosts) {
  v1::ShareBdevRequest req;
  req.set_bdev(bdev);
  for (const auto& h : hosts) req.add_allowed_hosts(h);
  v1::ShareInfo resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ShareBdev(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  return print_share(c, resp);
}

int nvmf_unshare(Context& c, const std::string& bdev_or_nqn, bool force) {
  v1::UnshareBdevRequest req;
  req.set_bdev(bdev_or_nqn);
  req.set_force(force);
  v1::UnshareBdevResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->UnshareBdev(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->ListSubsystems(ctx.get(), v1::ListSubsystemsRequest(), &resp);
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
  grpc::Status s = c.engine->ListControllers(ctx.get(), v1::ListControllersRequest(), &resp);
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
  grpc::Status s = c.engine->NbdListen(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->NbdExport(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->NbdUnexport(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->ListNbdExports(ctx.get(), v1::ListNbdExportsRequest(), &resp);
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
  grpc::Status s = c.engine->IscsiListen(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->IscsiExport(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->IscsiUnexport(ctx.get(), req, &resp);
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
  grpc::Status s = c.engine->ListIscsiTargets(ctx.get(), v1::ListIscsiTargetsRequest(), &resp);
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
  grpc::Status s = c.engine->ListIscsiSessions(ctx.get(), v1::ListIscsiSessionsRequest(), &resp);
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
    t.add_row({x.target(), x.initiator(), x.isid(), std::to_string(x.tsih()),
               std::to_string(x.cid()), x.peer(), or_dash(digests)});
  }
  t.print();
  return 0;
}

struct TargetOptions {
  std::string address;
  std::string name;
  std::vector<std::string> allow_hosts;
  bool force_unshare = false;
  NbdExportArgs nbd_export;
  IscsiExportArgs iscsi_export;
};

}  // namespace

void add_target_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<TargetOptions>();

  auto* nvmf = app.add_subcommand("nvmf", "NVMe-oF/TCP target: listeners, shared bdevs");
  nvmf->require_subcommand(1);
  auto* nlisten = nvmf->add_subcommand("listen", "add an NVMe-oF/TCP listener");
  nlisten->add_option("ADDR", o->address, "HOST:PORT; port 0 picks a free port")->required();
  on_run(nlisten, ctx, [&ctx, o] { return nvmf_listen(ctx, o->address); });

  auto* nshare = nvmf->add_subcommand("share", "share a bdev in its own subsystem");
  nshare->add_option("BDEV", o->name, "bdev name")->required();
  nshare
      ->add_option("--allow-host", o->allow_hosts,
                   "host NQN allowed to connect; repeatable "
                   "(default: any host)")
      ->allow_extra_args(false);
  on_run(nshare, ctx, [&ctx, o] { return nvmf_share(ctx, o->name, o->allow_hosts); });

  auto* nunshare = nvmf->add_subcommand("unshare", "remove the subsystem of a shared bdev");
  nunshare->add_option("BDEV_OR_NQN", o->name, "bdev name or subsystem NQN")->required();
  nunshare->add_flag("--force", o->force_unshare, "disconnect hosts that are still connected");
  on_run(nunshare, ctx, [&ctx, o] { return nvmf_unshare(ctx, o->name, o->force_unshare); });

  on_run(nvmf->add_subcommand("subsystems", "list subsystems"), ctx,
         [&ctx] { return nvmf_subsystems(ctx); });
  on_run(nvmf->add_subcommand("controllers", "list connected controllers"), ctx,
         [&ctx] { return nvmf_controllers(ctx); });

  auto* nbd = app.add_subcommand("nbd", "NBD target: listeners, exports");
  nbd->require_subcommand(1);
  auto* blisten = nbd->add_subcommand("listen", "add an NBD listener");
  blisten->add_option("ADDR", o->address, "HOST:PORT; port 0 picks a free port")->required();
  on_run(blisten, ctx, [&ctx, o] { return nbd_listen(ctx, o->address); });

  NbdExportArgs& ea = o->nbd_export;
  auto* bexport = nbd->add_subcommand("export", "export a bdev over NBD");
  bexport->add_option("NAME", ea.name, "export name (\"\" is the default export)")->required();
  bexport->add_option("BDEV", ea.bdev, "bdev name")->required();
  bexport->add_flag("--ro", ea.read_only, "read-only export");
  bexport->add_option("--description", ea.description, "description shown to clients");
  on_run(bexport, ctx, [&ctx, o] { return nbd_export(ctx, o->nbd_export); });

  auto* bunexport = nbd->add_subcommand("unexport", "remove an NBD export");
  bunexport->add_option("NAME", o->name, "export name")->required();
  on_run(bunexport, ctx, [&ctx, o] { return nbd_unexport(ctx, o->name); });

  on_run(nbd->add_subcommand("list", "list NBD exports"), ctx, [&ctx] { return nbd_list(ctx); });

  auto* iscsi = app.add_subcommand("iscsi", "iSCSI target: portals, target nodes, sessions");
  iscsi->require_subcommand(1);
  auto* ilisten = iscsi->add_subcommand("listen", "add an iSCSI portal (listener)");
  ilisten->add_option("ADDR", o->address, "HOST:PORT; port 0 picks a free port")->required();
  on_run(ilisten, ctx, [&ctx, o] { return iscsi_listen(ctx, o->address); });

  IscsiExportArgs& ia = o->iscsi_export;
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
  on_run(iexport, ctx, [&ctx, o] { return iscsi_export(ctx, o->iscsi_export); });

  auto* iunexport = iscsi->add_subcommand("unexport", "remove a target node (closes its sessions)");
  iunexport->add_option("IQN", o->name, "target IQN")->required();
  on_run(iunexport, ctx, [&ctx, o] { return iscsi_unexport(ctx, o->name); });

  on_run(iscsi->add_subcommand("list", "list iSCSI target nodes"), ctx,
         [&ctx] { return iscsi_list(ctx); });
  on_run(iscsi->add_subcommand("sessions", "list logged-in iSCSI sessions"), ctx,
         [&ctx] { return iscsi_sessions(ctx); });
}

}  // namespace castor::cli
