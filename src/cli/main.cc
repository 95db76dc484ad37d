// castorctl: the command line for people. Talks to one castor-engine over gRPC, and to
// castor-control for the cluster verbs (node, volume, cluster, and pool when --control or
// $CASTOR_CONTROL is given).
//
// Exit codes: 0 success, 1 the engine or castor-control returned an error or cannot be
// reached (one line "castorctl: error: ..." on stderr), 2 usage error.
//
// This file holds the global flags and runs the chosen command; the commands live in one
// file per group (commands.h lists them), their shared connection and helpers in
// context.h.

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <string>

#include "cli/commands.h"
#include "cli/context.h"

namespace castor::cli {
namespace {

// Whether --control is on the command line. It decides the form of the pool verbs (NAME on
// the engine, NODE NAME through castor-control), so it is needed before the commands are
// added: a throwaway parser that knows only the global options takes the rest as extras.
bool control_flag_given(int argc, char** argv) {
  CLI::App pre;
  pre.set_help_flag();
  pre.allow_extras();
  std::string ignored;
  for (const char* name : {"-e,--endpoint", "-o,--output", "--timeout"}) {
    pre.add_option(name, ignored);
  }
  auto* control = pre.add_option("-c,--control", ignored);
  try {
    pre.parse(argc, argv);
  } catch (const CLI::ParseError&) {
    return false;  // the real parse reports it
  }
  return control->count() > 0;
}

int run(int argc, char** argv) {
  CLI::App app{
      "castorctl: manage a castor-engine (bdevs, pools, replicas, nexuses and rebuilds, NVMe-oF, "
      "NBD and iSCSI targets, fault drills, benchmarks) and, through castor-control, the "
      "cluster (nodes, pools, volumes)",
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
  const char* control_env = std::getenv("CASTOR_CONTROL");
  const bool control_from_env = control_env && *control_env;
  c.control_endpoint = control_from_env ? control_env : kDefaultControl;
  c.control_explicit = control_from_env || control_flag_given(argc, argv);
  app.add_option(
      "-c,--control", c.control_endpoint,
      "castor-control gRPC address HOST:PORT (default $CASTOR_CONTROL or 127.0.0.1:10125). "
      "node, volume and cluster always use it; pool create|list|destroy use it instead of "
      "the engine only when it is given, as this flag or $CASTOR_CONTROL");
  app.add_option("--timeout", c.timeout_s,
                 "seconds to wait for the engine or castor-control (default 30)")
      ->check(CLI::PositiveNumber);

  // The order here is the order of --help.
  add_engine_commands(app, c);
  add_bdev_commands(app, c);
  add_pool_commands(app, c);
  add_target_commands(app, c);
  add_frontend_commands(app, c);
  add_nexus_commands(app, c);
  add_fault_commands(app, c);
  add_node_commands(app, c);
  add_volume_commands(app, c);
  add_cluster_commands(app, c);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    print_error(e.what());
    return kExitUsage;
  }
  if (!c.action) {
    print_error("no command given (run with --help)");
    return kExitUsage;
  }
  c.connect();
  return c.action();
}

}  // namespace
}  // namespace castor::cli

int main(int argc, char** argv) {
  return castor::cli::run(argc, argv);
}
