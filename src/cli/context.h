#pragma once
// What every castorctl command shares: the connections to castor-engine and
// castor-control, the output format, one-line errors, and the checks of what people type
// (sizes, names, KEY=VALUE). Each command group (engine_cmds.cc, bdev_cmds.cc, ...)
// registers its subcommands with one add_*_commands() function (commands.h); main.cc owns
// the global flags and runs the chosen command.

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "castor/control/v1/control.grpc.pb.h"
#include "castor/v1/engine.grpc.pb.h"

namespace castor::cli {

namespace v1 = castor::v1;
namespace ctlv1 = castor::control::v1;
using nlohmann::ordered_json;

inline constexpr const char* kProg = "castorctl";
inline constexpr const char* kDefaultEndpoint = "127.0.0.1:10124";
inline constexpr const char* kDefaultControl = "127.0.0.1:10125";

// Exit codes: 0 success; 1 the server returned an error or cannot be reached; 2 usage.
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Prints "castorctl: error: MSG" on stderr; newlines in `msg` become spaces, so scripts
// can rely on exactly one line.
void print_error(std::string msg);
// A usage error found after parsing, printed like CLI11's own; returns kExitUsage.
int usage_error(const std::string& msg);

// Pretty JSON (2-space indent) on stdout.
void print_json(const ordered_json& j);
// A castor-control message as JSON: MessageToJsonString with the proto's field names and
// every field, defaults too (as the engine commands print every field). Otherwise the
// proto3 JSON mapping, as castor-control's REST API writes it: 64-bit integers are
// strings, maps are objects, an unset message field (an unpublished volume's `target`)
// is left out.
ordered_json message_json(const google::protobuf::Message& m);

std::string or_dash(const std::string& s);
std::string joined(const google::protobuf::RepeatedPtrField<std::string>& v, const char* sep = ",");
// "a,,b" -> {"a", "b"}: empty items are dropped.
std::vector<std::string> split_commas(const std::string& s);
// "k1=v1,k2=v2" with the keys sorted; "-" when there are none.
std::string labels_text(const google::protobuf::Map<std::string, std::string>& labels);

// The connections and output choices of one castorctl run, and the command it runs.
struct Context {
  std::string endpoint;          // castor-engine, HOST:PORT
  std::string control_endpoint;  // castor-control, HOST:PORT
  // True when --control or $CASTOR_CONTROL named castor-control. Then `pool create`,
  // `pool list` and `pool destroy` manage the cluster's pools through castor-control
  // instead of talking to the engine (node, volume and cluster always use it). Known
  // before the commands are added (main.cc), as it decides the form of the pool verbs.
  bool control_explicit = false;
  std::string output = "table";
  double timeout_s = 30;
  std::unique_ptr<v1::EngineService::Stub> engine;
  std::unique_ptr<ctlv1::ControlService::Stub> control;
  // The command chosen on the command line; set by its subcommand's callback while
  // parsing and run once connected.
  std::function<int()> action;

  bool json() const { return output == "json"; }
  // Makes both stubs; a channel connects on its first call, so the unused one costs
  // nothing. REQUIRES: the endpoints are final (after parsing).
  void connect();
  // A fresh call context with the deadline `timeout_s` (+ `extra_s`) from now.
  std::unique_ptr<grpc::ClientContext> call(double extra_s = 0) const;
  // Prints the one-line error for a failed engine call ("castorctl: error: MESSAGE", or
  // "cannot reach engine at ADDR"); returns the exit code (1).
  int fail(const grpc::Status& s) const;
  // The same for a castor-control call: "castorctl: error: CODE_NAME: MESSAGE", or
  // "cannot reach castor-control at ADDR" when the call never got there. An UNAVAILABLE
  // that castor-control itself returns (not the leader, an engine down) keeps its code
  // and message, which may name the leader. Returns 1.
  int fail_control(const grpc::Status& s) const;

 private:
  // Kept to tell "never connected" from an UNAVAILABLE answered by castor-control.
  std::shared_ptr<grpc::Channel> control_channel_;
};

// Makes `cmd` run `fn` when it is the command chosen (after parsing, once connected).
void on_run(CLI::App* cmd, Context& ctx, std::function<int()> fn);

// "OK", "INVALID_ARGUMENT", ...: the names of the gRPC spec.
const char* status_code_name(grpc::StatusCode code);

// Accepts "65536", "4MiB", "1G" (parse_size in table.h).
CLI::Validator size_validator();
// A volume size castor-control accepts: a size, positive, a multiple of 4096.
CLI::Validator volume_size_validator();
// KEY=VALUE with a non-empty key without blanks; `allow_empty_value` lets "KEY=" through
// (`node label` removes the label).
CLI::Validator key_value_validator(bool allow_empty_value);
// A label key alone (--spread-label zone).
CLI::Validator label_key_validator();
// A name castor-control accepts for a node or pool: [A-Za-z0-9._-], 1..max_len bytes.
bool valid_name(const std::string& s, size_t max_len);
CLI::Validator name_validator(size_t max_len);
// A UUID, 8-4-4-4-12 hex digits.
CLI::Validator uuid_validator();

// KEY=VALUE items (each checked by key_value_validator) as a map. nullopt, with the
// usage error printed, when a key is given twice: which one was meant is not clear.
std::optional<std::map<std::string, std::string>> parse_labels(
    const std::vector<std::string>& items, const std::string& flag);

}  // namespace castor::cli
