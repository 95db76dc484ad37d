// castorctl cluster: castor-control itself (version, store, leadership, object counts).

#include <fmt/format.h>

#include <string>

#include "cli/commands.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

int cluster_info(Context& c) {
  ctlv1::ClusterInfo info;
  auto ctx = c.call();
  grpc::Status s = c.control->GetClusterInfo(ctx.get(), ctlv1::GetClusterInfoRequest(), &info);
  if (!s.ok()) return c.fail_control(s);
  if (c.json()) {
    print_json(message_json(info));
    return 0;
  }
  fmt::print("{}", key_values({{"version", or_dash(info.version())},
                               {"identity", or_dash(info.identity())},
                               {"leader", or_dash(info.leader())},
                               {"leading", info.leading() ? "true" : "false"},
                               {"store", or_dash(info.store())},
                               {"nodes", std::to_string(info.nodes())},
                               {"pools", std::to_string(info.pools())},
                               {"volumes", std::to_string(info.volumes())},
                               {"reconcile_passes", std::to_string(info.reconcile_passes())}}));
  return 0;
}

}  // namespace

void add_cluster_commands(CLI::App& app, Context& ctx) {
  auto* cluster = app.add_subcommand("cluster", "the cluster's control plane (castor-control)");
  cluster->require_subcommand(1);
  on_run(cluster->add_subcommand(
             "info", "castor-control's version, store, leader and node/pool/volume counts"),
         ctx, [&ctx] { return cluster_info(ctx); });
}

}  // namespace castor::cli
