// `castorctl frontend ...`: any front end by its protocol name (nvmf, nbd, iscsi, or one
// added later), through the engine's protocol-neutral calls (ListFrontEnds,
// FrontEndListen, ExportBdev, UnexportBdev, ListExports). The per-protocol groups
// (`nvmf`, `nbd`, `iscsi`, target_cmds.cc) remain for what only one protocol has.

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

ordered_json export_json(const v1::ExportInfo& e) {
  return {{"protocol", e.protocol()},
          {"name", e.name()},
          {"bdev", e.bdev()},
          {"read_only", e.read_only()},
          {"description", e.description()},
          {"allowed_hosts", std::vector<std::string>(e.allowed_hosts().begin(), e.allowed_hosts().end())},
          {"chap", e.chap()},
          {"mutual_chap", e.mutual_chap()},
          {"connections", e.connections()},
          {"uris", std::vector<std::string>(e.uris().begin(), e.uris().end())}};
}

void print_exports(const std::vector<const v1::ExportInfo*>& exports) {
  Table t({"PROTOCOL", "NAME", "BDEV", "MODE", "HOSTS", "CHAP", "CONNECTIONS", "URI"});
  for (const auto* e : exports) {
    const char* chap = e->mutual_chap() ? "mutual" : (e->chap() ? "chap" : "none");
    t.add_row({e->protocol(), e->name().empty() ? "(default)" : e->name(), e->bdev(),
               e->read_only() ? "ro" : "rw",
               e->allowed_hosts().empty() ? "any" : joined(e->allowed_hosts()), chap,
               std::to_string(e->connections()), e->uris().empty() ? "-" : e->uris(0)});
  }
  t.print();
}

int list_front_ends(Context& c) {
  v1::ListFrontEndsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ListFrontEnds(ctx.get(), v1::ListFrontEndsRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& f : resp.front_ends()) {
      arr.push_back({{"protocol", f.protocol()},
                     {"display_name", f.display_name()},
                     {"listeners", std::vector<std::string>(f.listeners().begin(), f.listeners().end())}});
    }
    print_json(arr);
    return 0;
  }
  Table t({"PROTOCOL", "NAME", "LISTENERS"});
  for (const auto& f : resp.front_ends()) {
    t.add_row({f.protocol(), f.display_name(), f.listeners().empty() ? "-" : joined(f.listeners())});
  }
  t.print();
  return 0;
}

int listen(Context& c, const std::string& protocol, const std::string& address) {
  v1::FrontEndListenRequest req;
  req.set_protocol(protocol);
  req.set_address(address);
  v1::FrontEndListenResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->FrontEndListen(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"protocol", protocol}, {"address", address}, {"port", resp.port()}});
  } else {
    fmt::print("{} listening on {} (port {})\n", protocol, address, resp.port());
  }
  return 0;
}

struct ExportArgs {
  std::string protocol;
  std::string bdev;
  std::string name;
  bool read_only = false;
  std::string description;
  std::vector<std::string> allow_hosts;
  std::string chap_user, chap_secret, mutual_user, mutual_secret;
};

int export_bdev(Context& c, const ExportArgs& a, bool named) {
  v1::ExportBdevRequest req;
  req.set_protocol(a.protocol);
  req.set_bdev(a.bdev);
  if (named) req.set_name(a.name);
  req.set_read_only(a.read_only);
  req.set_description(a.description);
  for (const auto& h : a.allow_hosts) req.add_allowed_hosts(h);
  req.set_chap_user(a.chap_user);
  req.set_chap_secret(a.chap_secret);
  req.set_mutual_user(a.mutual_user);
  req.set_mutual_secret(a.mutual_secret);
  v1::ExportInfo resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ExportBdev(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json(export_json(resp));
  } else {
    print_exports({&resp});
  }
  return 0;
}

int unexport(Context& c, const std::string& protocol, const std::string& name, bool force) {
  v1::UnexportBdevRequest req;
  req.set_protocol(protocol);
  req.set_name(name);
  req.set_force(force);
  v1::UnexportBdevResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->UnexportBdev(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"protocol", protocol}, {"unexported", name}});
  } else {
    fmt::print("{} export '{}' removed\n", protocol, name);
  }
  return 0;
}

int list_exports(Context& c, const std::string& protocol) {
  v1::ListExportsRequest req;
  req.set_protocol(protocol);
  v1::ListExportsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ListExports(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& e : resp.exports()) arr.push_back(export_json(e));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::ExportInfo*> rows;
  for (const auto& e : resp.exports()) rows.push_back(&e);
  print_exports(rows);
  return 0;
}

struct FrontEndOptions {
  std::string protocol;
  std::string address;
  std::string name;
  bool force = false;
  ExportArgs exp;
};

}  // namespace

void add_frontend_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<FrontEndOptions>();
  auto* fe = app.add_subcommand(
      "frontend", "any front end by protocol name (nvmf, nbd, iscsi): listeners, exports");
  fe->require_subcommand(1);

  on_run(fe->add_subcommand("list", "list the front ends and their listeners"), ctx,
         [&ctx] { return list_front_ends(ctx); });

  auto* flisten = fe->add_subcommand("listen", "add a listener to a front end");
  flisten->add_option("PROTOCOL", o->protocol, "nvmf, nbd, iscsi")->required();
  flisten->add_option("ADDR", o->address, "HOST:PORT; port 0 picks a free port")->required();
  on_run(flisten, ctx, [&ctx, o] { return listen(ctx, o->protocol, o->address); });

  ExportArgs& ea = o->exp;
  auto* fexport = fe->add_subcommand("export", "export a bdev over a front end");
  fexport->add_option("PROTOCOL", ea.protocol, "nvmf, nbd, iscsi")->required();
  fexport->add_option("BDEV", ea.bdev, "bdev name")->required();
  auto* name = fexport->add_option("--name", ea.name,
                                   "export name: NQN, NBD export name or IQN (default: the "
                                   "protocol's name for the bdev)");
  fexport->add_flag("--ro", ea.read_only, "read-only export (NBD, iSCSI)");
  fexport->add_option("--description", ea.description, "description shown to NBD clients");
  fexport->add_option("--allow-host", ea.allow_hosts,
                      "host NQN (nvmf) or initiator IQN (iscsi) allowed; repeatable (default: any)");
  auto* user = fexport->add_option("--chap-user", ea.chap_user, "iSCSI CHAP: the initiators' name");
  auto* secret = fexport->add_option("--chap-secret", ea.chap_secret,
                                     "iSCSI CHAP: their secret (12 bytes or more)");
  auto* muser = fexport->add_option("--mutual-user", ea.mutual_user,
                                    "iSCSI mutual CHAP: the name the target answers with");
  auto* msecret = fexport->add_option("--mutual-secret", ea.mutual_secret,
                                      "iSCSI mutual CHAP: its secret (12 bytes or more)");
  user->needs(secret);
  secret->needs(user);
  muser->needs(msecret);
  msecret->needs(muser);
  muser->needs(user);
  on_run(fexport, ctx, [&ctx, o, name] { return export_bdev(ctx, o->exp, name->count() > 0); });

  auto* funexport = fe->add_subcommand("unexport", "remove an export (by its name or its bdev's)");
  funexport->add_option("PROTOCOL", o->protocol, "nvmf, nbd, iscsi")->required();
  funexport->add_option("NAME", o->name, "export name or bdev name")->required();
  funexport->add_flag("--force", o->force, "disconnect hosts that are still connected (nvmf)");
  on_run(funexport, ctx, [&ctx, o] { return unexport(ctx, o->protocol, o->name, o->force); });

  auto* fexports = fe->add_subcommand("exports", "list exports (of one protocol, or all)");
  fexports->add_option("PROTOCOL", o->protocol, "nvmf, nbd, iscsi (default: every protocol)");
  on_run(fexports, ctx, [&ctx, o] { return list_exports(ctx, o->protocol); });
}

}  // namespace castor::cli
