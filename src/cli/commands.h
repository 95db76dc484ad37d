#pragma once
// castorctl's command groups. Each add_*_commands() adds its top-level subcommands to
// `app` (in the order they appear in --help) and binds them to `ctx`, which must outlive
// the parse and the run of the chosen command.

#include <CLI/CLI.hpp>

#include "cli/context.h"

namespace castor::cli {

// engine_cmds.cc: `engine info`.
void add_engine_commands(CLI::App& app, Context& ctx);
// bdev_cmds.cc: `bdev create|list|destroy|stats|perf|write|read`.
void add_bdev_commands(CLI::App& app, Context& ctx);
// pool_cmds.cc: `pool ...` and `replica ...` (a pool's replicas, their NVMe-oF shares);
// `pool create|list|destroy` go to castor-control when ctx.control_explicit.
void add_pool_commands(CLI::App& app, Context& ctx);
// target_cmds.cc: the front-end targets, `nvmf ...`, `nbd ...`, `iscsi ...`.
void add_target_commands(CLI::App& app, Context& ctx);
// frontend_cmds.cc: `frontend list|listen|export|unexport|exports`, any front end by
// protocol name.
void add_frontend_commands(CLI::App& app, Context& ctx);
// nexus_cmds.cc: `nexus ...` (children, publishing) and `rebuild ...` (progress, watch).
void add_nexus_commands(CLI::App& app, Context& ctx);
// fault_cmds.cc: `fault inject|clear|list` on fault:// bdevs.
void add_fault_commands(CLI::App& app, Context& ctx);

// The cluster verbs, always through castor-control (ctx.control); the castor-control form
// of `pool` is in pool_cmds.cc.
// node_cmds.cc: `node list|get|cordon|uncordon|drain|label`.
void add_node_commands(CLI::App& app, Context& ctx);
// volume_cmds.cc: `volume create|list|get|publish|unpublish|resize|scale|destroy`.
void add_volume_commands(CLI::App& app, Context& ctx);
// cluster_cmds.cc: `cluster info`.
void add_cluster_commands(CLI::App& app, Context& ctx);

// Helpers one group owns and another reuses.

// target_cmds.cc: an NVMe-oF share as key/value lines (nqn, bdev, allowed_hosts, one
// uri line per URI), or its JSON. Used by `nvmf share` and `replica share`. Returns 0.
int print_share(Context& c, const v1::ShareInfo& r);

}  // namespace castor::cli
