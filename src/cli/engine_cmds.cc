// castorctl engine: facts about the castor-engine process.

#include <fmt/format.h>

#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

int engine_info(Context& c) {
  v1::EngineInfo info;
  auto ctx = c.call();
  grpc::Status s = c.engine->GetEngineInfo(ctx.get(), v1::GetEngineInfoRequest(), &info);
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

}  // namespace

void add_engine_commands(CLI::App& app, Context& ctx) {
  auto* engine = app.add_subcommand("engine", "engine process information");
  engine->require_subcommand(1);
  on_run(engine->add_subcommand("info", "version, reactors, uptime"), ctx,
         [&ctx] { return engine_info(ctx); });
}

}  // namespace castor::cli
