// castorctl fault: fault injection rules on fault:// bdevs (errors, delays, hangs, drops)
// for drills and tests.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

const std::vector<std::string> kOps = {"read", "write", "flush", "unmap", "write_zeroes", "reset"};

struct InjectArgs {
  std::string bdev;
  std::string mode;
  std::string ops;
  std::string status;
  uint64_t delay_us = 0;
  std::optional<uint64_t> lba_start;
  std::optional<uint64_t> lba_end;
  uint64_t skip = 0;
  uint64_t count = 0;
  std::optional<double> probability;
};

int fault_inject(Context& c, const InjectArgs& a) {
  v1::InjectFaultRequest req;
  req.set_bdev(a.bdev);
  auto* rule = req.mutable_rule();
  rule->set_mode(a.mode);
  for (const auto& op : split_commas(a.ops)) rule->add_ops(op);
  rule->set_error_status(a.status);
  rule->set_delay_us(a.delay_us);
  if (a.lba_start) rule->set_lba_start(*a.lba_start);
  if (a.lba_end) rule->set_lba_end(*a.lba_end);
  rule->set_skip(a.skip);
  rule->set_count(a.count);
  if (a.probability) rule->set_probability(*a.probability);
  v1::InjectFaultResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->InjectFault(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"bdev", a.bdev}, {"id", resp.id()}});
  } else {
    fmt::print("fault rule {} added to '{}'\n", resp.id(), a.bdev);
  }
  return 0;
}

int fault_clear(Context& c, const std::string& bdev, uint64_t id) {
  v1::ClearFaultRequest req;
  req.set_bdev(bdev);
  req.set_id(id);
  v1::ClearFaultResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ClearFault(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"bdev", bdev}, {"cleared", id == 0 ? ordered_json("all") : ordered_json(id)}});
  } else if (id == 0) {
    fmt::print("all fault rules cleared on '{}'\n", bdev);
  } else {
    fmt::print("fault rule {} cleared on '{}'\n", id, bdev);
  }
  return 0;
}

std::string ops_text(const v1::FaultRule& r) {
  if (static_cast<size_t>(r.ops_size()) == kOps.size()) return "all";
  std::string s;
  for (const auto& op : r.ops()) s += (s.empty() ? "" : ",") + op;
  return s;
}

int fault_list(Context& c, const std::string& bdev) {
  v1::ListFaultsRequest req;
  req.set_bdev(bdev);
  v1::ListFaultsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ListFaults(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& f : resp.rules()) {
      const auto& r = f.rule();
      arr.push_back({{"bdev", f.bdev()},
                     {"id", f.id()},
                     {"mode", r.mode()},
                     {"ops", std::vector<std::string>(r.ops().begin(), r.ops().end())},
                     {"lba_start", r.lba_start()},
                     {"lba_end", r.lba_end()},
                     {"error_status", r.error_status()},
                     {"delay_us", r.delay_us()},
                     {"skip", r.skip()},
                     {"count", r.count()},
                     {"probability", r.probability()},
                     {"matched", f.matched()},
                     {"fired", f.fired()},
                     {"parked", f.parked()}});
    }
    print_json(arr);
    return 0;
  }
  Table t({"BDEV", "ID", "MODE", "OPS", "LBA", "STATUS", "DELAY_US", "SKIP", "COUNT", "PROB",
           "MATCHED", "FIRED", "PARKED"});
  for (const auto& f : resp.rules()) {
    const auto& r = f.rule();
    std::string lba = r.lba_end() == UINT64_MAX ? fmt::format("{}-", r.lba_start())
                                                : fmt::format("{}-{}", r.lba_start(), r.lba_end());
    t.add_row({f.bdev(), std::to_string(f.id()), r.mode(), ops_text(r), lba,
               r.mode() == "error" ? r.error_status() : "-", std::to_string(r.delay_us()),
               std::to_string(r.skip()), r.count() == 0 ? "unlimited" : std::to_string(r.count()),
               fixed(r.probability(), 2), std::to_string(f.matched()), std::to_string(f.fired()),
               std::to_string(f.parked())});
  }
  t.print();
  return 0;
}

// Accepts "read,write", "all", ...: every comma-separated item a known op name.
CLI::Validator ops_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto items = split_commas(s);
        if (items.empty()) return "empty operation list";
        for (const auto& i : items) {
          if (i == "all") continue;
          if (std::find(kOps.begin(), kOps.end(), i) == kOps.end()) {
            return fmt::format(
                "unknown operation '{}' (expected read, write, flush, "
                "unmap, write_zeroes, reset or all)",
                i);
          }
        }
        return "";
      },
      "OPS");
}

struct FaultOptions {
  InjectArgs inj;
  std::string bdev;
  uint64_t clear_id = 0;
};

}  // namespace

void add_fault_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<FaultOptions>();
  auto* fault = app.add_subcommand("fault", "fault injection on fault:// bdevs");
  fault->require_subcommand(1);
  InjectArgs& inj = o->inj;
  auto* inject = fault->add_subcommand("inject", "add a fault rule");
  inject->add_option("BDEV", inj.bdev, "fault bdev name")->required();
  inject->add_option("--mode", inj.mode, "error, delay, hang or drop")
      ->required()
      ->check(CLI::IsMember({"error", "delay", "hang", "drop"}));
  inject
      ->add_option("--op", inj.ops,
                   "operations, comma-separated: read, write, flush, unmap, "
                   "write_zeroes, reset, or all (default read,write)")
      ->check(ops_validator());
  inject->add_option("--status", inj.status, "error status for --mode error (default io_error)")
      ->check(CLI::IsMember({"io_error", "no_space", "aborted", "timed_out", "invalid"}));
  inject->add_option("--delay-us", inj.delay_us, "delay for --mode delay, microseconds");
  inject->add_option("--lba-start", inj.lba_start, "first block of the range (default 0)");
  inject->add_option("--lba-end", inj.lba_end, "end of the range, exclusive (default none)");
  inject->add_option("--skip", inj.skip, "let this many matching I/Os through first");
  inject->add_option("--count", inj.count, "fault this many I/Os, then stop (0: no limit)");
  inject
      ->add_option("--probability", inj.probability,
                   "probability of faulting each eligible I/O (default 1)")
      ->check(CLI::Range(0.0, 1.0));
  on_run(inject, ctx, [&ctx, o] { return fault_inject(ctx, o->inj); });

  auto* clear = fault->add_subcommand("clear", "remove one fault rule or all of them");
  clear->add_option("BDEV", o->bdev, "fault bdev name")->required();
  clear->add_option("--id", o->clear_id, "rule id (default: every rule)");
  on_run(clear, ctx, [&ctx, o] { return fault_clear(ctx, o->bdev, o->clear_id); });

  auto* flist = fault->add_subcommand("list", "list fault rules with their counters");
  flist->add_option("BDEV", o->bdev, "fault bdev name (default: every fault bdev)");
  on_run(flist, ctx, [&ctx, o] { return fault_list(ctx, o->bdev); });
}

}  // namespace castor::cli
