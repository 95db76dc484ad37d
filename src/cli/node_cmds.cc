// castorctl node: the cluster's storage nodes as castor-control sees them (each is an
// engine that registered), and taking them out of service: cordon (no new replicas or
// nexuses), drain (move the nexuses away too), labels (placement constraints).

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

// ready, cordoned, draining or drained: whether new replicas and nexuses may go there.
std::string scheduling_text(const ctlv1::Node& n) {
  if (!n.drain().empty()) return n.drain();
  return n.cordoned() ? "cordoned" : "ready";
}

// "4s ago", "3m ago", "2h ago", "5d ago"; "never" for 0.
std::string last_seen_text(uint64_t unix_ms) {
  if (unix_ms == 0) return "never";
  auto now_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  // A clock behind castor-control's would go negative: say "0s ago".
  uint64_t s = now_ms > unix_ms ? (now_ms - unix_ms) / 1000 : 0;
  if (s < 60) return fmt::format("{}s ago", s);
  if (s < 3600) return fmt::format("{}m ago", s / 60);
  if (s < 86400) return fmt::format("{}h ago", s / 3600);
  return fmt::format("{}d ago", s / 86400);
}

void print_node_table(const std::vector<const ctlv1::Node*>& nodes) {
  Table t({"NAME", "STATUS", "SCHEDULING", "CAPACITY", "USED", "REPLICAS", "NEXUSES", "LAST_SEEN",
           "ENDPOINT", "LABELS"});
  for (const auto* n : nodes) {
    t.add_row({n->name(), n->status(), scheduling_text(*n), human_bytes(n->capacity_bytes()),
               human_bytes(n->used_bytes()), std::to_string(n->replicas()),
               std::to_string(n->nexuses()), last_seen_text(n->last_seen_unix_ms()),
               or_dash(n->grpc_endpoint()), labels_text(n->labels())});
  }
  t.print();
}

// Commands that change a node print its row (JSON: the Node).
int print_node(Context& c, const ctlv1::Node& n) {
  if (c.json()) {
    print_json(message_json(n));
  } else {
    print_node_table({&n});
  }
  return 0;
}

int node_list(Context& c) {
  ctlv1::ListNodesResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.control->ListNodes(ctx.get(), ctlv1::ListNodesRequest(), &resp);
  if (!s.ok()) return c.fail_control(s);
  // The whole response, as for every castor-control call: {"nodes": [...]}.
  if (c.json()) {
    print_json(message_json(resp));
    return 0;
  }
  std::vector<const ctlv1::Node*> rows;
  for (const auto& n : resp.nodes()) rows.push_back(&n);
  print_node_table(rows);
  return 0;
}

int node_get(Context& c, const std::string& name) {
  ctlv1::GetNodeRequest req;
  req.set_name(name);
  ctlv1::Node n;
  auto ctx = c.call();
  grpc::Status s = c.control->GetNode(ctx.get(), req, &n);
  if (!s.ok()) return c.fail_control(s);
  if (c.json()) {
    print_json(message_json(n));
    return 0;
  }
  fmt::print("{}", key_values({{"name", n.name()},
                               {"status", n.status()},
                               {"scheduling", scheduling_text(n)},
                               {"labels", labels_text(n.labels())},
                               {"grpc_endpoint", or_dash(n.grpc_endpoint())},
                               {"nvmf_endpoints", or_dash(joined(n.nvmf_endpoints()))},
                               {"nbd_endpoint", or_dash(n.nbd_endpoint())},
                               {"iscsi_endpoint", or_dash(n.iscsi_endpoint())},
                               {"version", or_dash(n.version())},
                               {"instance_uuid", or_dash(n.instance_uuid())},
                               {"last_seen", last_seen_text(n.last_seen_unix_ms())},
                               {"capacity", human_bytes(n.capacity_bytes())},
                               {"used", human_bytes(n.used_bytes())},
                               {"replicas", std::to_string(n.replicas())},
                               {"nexuses", std::to_string(n.nexuses())}}));
  return 0;
}

// CordonNode, UncordonNode and DrainNode: a request with the node's name, the Node back.
template <typename Request>
using NodeRpc = grpc::Status (ctlv1::ControlService::Stub::*)(grpc::ClientContext*, const Request&,
                                                              ctlv1::Node*);

template <typename Request>
int node_op(Context& c, NodeRpc<Request> rpc, const std::string& name) {
  Request req;
  req.set_name(name);
  ctlv1::Node n;
  auto ctx = c.call();
  grpc::Status s = ((*c.control).*rpc)(ctx.get(), req, &n);
  if (!s.ok()) return c.fail_control(s);
  return print_node(c, n);
}

int node_label(Context& c, const std::string& name, const std::vector<std::string>& items) {
  auto labels = parse_labels(items, "LABELS");
  if (!labels) return kExitUsage;
  ctlv1::LabelNodeRequest req;
  req.set_name(name);
  // An empty value asks castor-control to remove the label.
  req.mutable_labels()->insert(labels->begin(), labels->end());
  ctlv1::Node n;
  auto ctx = c.call();
  grpc::Status s = c.control->LabelNode(ctx.get(), req, &n);
  if (!s.ok()) return c.fail_control(s);
  return print_node(c, n);
}

struct NodeOptions {
  std::string name;
  std::vector<std::string> labels;
};

}  // namespace

void add_node_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<NodeOptions>();
  auto* node =
      app.add_subcommand("node", "cluster nodes (castor-control): list, cordon, drain, label");
  node->require_subcommand(1);

  on_run(node->add_subcommand("list", "list the nodes"), ctx, [&ctx] { return node_list(ctx); });

  auto* get = node->add_subcommand("get", "one node: status, endpoints, capacity, labels");
  get->add_option("NAME", o->name, "node name")->required();
  on_run(get, ctx, [&ctx, o] { return node_get(ctx, o->name); });

  auto* cordon = node->add_subcommand(
      "cordon", "give the node no new replicas or nexuses (what it has stays)");
  cordon->add_option("NAME", o->name, "node name")->required();
  on_run(cordon, ctx, [&ctx, o] {
    return node_op<ctlv1::CordonNodeRequest>(ctx, &ctlv1::ControlService::Stub::CordonNode,
                                             o->name);
  });

  auto* uncordon = node->add_subcommand("uncordon", "let the node take new replicas and nexuses");
  uncordon->add_option("NAME", o->name, "node name")->required();
  on_run(uncordon, ctx, [&ctx, o] {
    return node_op<ctlv1::UncordonNodeRequest>(ctx, &ctlv1::ControlService::Stub::UncordonNode,
                                               o->name);
  });

  auto* drain = node->add_subcommand(
      "drain",
      "cordon the node and move its nexuses elsewhere (same NQN; replicas stay); it shows "
      "draining, then drained");
  drain->add_option("NAME", o->name, "node name")->required();
  on_run(drain, ctx, [&ctx, o] {
    return node_op<ctlv1::DrainNodeRequest>(ctx, &ctlv1::ControlService::Stub::DrainNode, o->name);
  });

  auto* label = node->add_subcommand("label", "set (k=v) or remove (k=) labels of a node");
  label->add_option("NAME", o->name, "node name")->required();
  label->add_option("LABELS", o->labels, "KEY=VALUE sets, KEY= removes; one or more")
      ->required()
      ->check(key_value_validator(true));
  on_run(label, ctx, [&ctx, o] { return node_label(ctx, o->name, o->labels); });
}

}  // namespace castor::cli
