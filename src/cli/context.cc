#include "cli/context.h"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <utility>

#include "cli/table.h"
#include "common/grpc_codes.h"
#include "common/uuid.h"

namespace castor::cli {

void print_error(std::string msg) {
  for (auto& c : msg) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  fmt::print(stderr, "{}: error: {}\n", kProg, msg);
}

int usage_error(const std::string& msg) {
  print_error(msg);
  return kExitUsage;
}

void print_json(const ordered_json& j) {
  fmt::print("{}\n", j.dump(2));
}

ordered_json message_json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  auto status = google::protobuf::util::MessageToJsonString(m, &text, options);
  // Only a message with unknown Any types fails, and the control API has none.
  if (!status.ok()) return ordered_json{{"error", std::string(status.message())}};
  // Re-parsed (keeping the field order) so it prints like the engine commands' JSON.
  return ordered_json::parse(text);
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : sep) + e;
  return s;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

std::string labels_text(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  std::string s;
  for (const auto& [k, v] : sorted) s += (s.empty() ? "" : ",") + k + "=" + v;
  return or_dash(s);
}

void Context::connect() {
  engine =
      v1::EngineService::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  control_channel_ = grpc::CreateChannel(control_endpoint, grpc::InsecureChannelCredentials());
  control = ctlv1::ControlService::NewStub(control_channel_);
}

std::unique_ptr<grpc::ClientContext> Context::call(double extra_s) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  auto ms = static_cast<int64_t>((timeout_s + extra_s) * 1000.0);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
  return ctx;
}

int Context::fail(const grpc::Status& s) const {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    print_error(fmt::format("cannot reach engine at {}", endpoint));
  } else if (s.error_message().empty()) {
    print_error(fmt::format("request failed (gRPC code {})", static_cast<int>(s.error_code())));
  } else {
    print_error(s.error_message());
  }
  return 1;
}

int Context::fail_control(const grpc::Status& s) const {
  const grpc::StatusCode code = s.error_code();
  // A call that never reached castor-control leaves the channel short of READY; an
  // UNAVAILABLE castor-control answered itself (not the leader, ...) leaves it READY.
  if ((code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED) &&
      control_channel_ && control_channel_->GetState(false) != GRPC_CHANNEL_READY) {
    print_error(fmt::format("cannot reach castor-control at {}", control_endpoint));
    return kExitError;
  }
  print_error(fmt::format("{}: {}", status_code_name(code),
                          s.error_message().empty() ? "request failed" : s.error_message()));
  return kExitError;
}

const char* status_code_name(grpc::StatusCode code) { return grpc_code_name(code); }

void on_run(CLI::App* cmd, Context& ctx, std::function<int()> fn) {
  cmd->callback([&ctx, fn = std::move(fn)] { ctx.action = fn; });
}

CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (parse_size(s)) return "";
        return fmt::format("'{}' is not a size (e.g. 65536, 4KiB, 4MiB, 1GiB)", s);
      },
      "SIZE");
}

CLI::Validator volume_size_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto bytes = parse_size(s);
        if (!bytes) return fmt::format("'{}' is not a size (e.g. 65536, 4KiB, 4MiB, 1GiB)", s);
        if (*bytes == 0) return "a volume's size must be positive";
        if (*bytes % 4096 != 0) return fmt::format("'{}' is not a multiple of 4096 bytes", s);
        return "";
      },
      "SIZE");
}

namespace {

bool has_blank(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

}  // namespace

CLI::Validator key_value_validator(bool allow_empty_value) {
  return CLI::Validator(
      [allow_empty_value](std::string& s) -> std::string {
        auto eq = s.find('=');
        if (eq == std::string::npos || eq == 0 || has_blank(s.substr(0, eq))) {
          return fmt::format("'{}' is not KEY=VALUE", s);
        }
        if (!allow_empty_value && eq + 1 == s.size()) {
          return fmt::format("'{}' has no value (KEY=VALUE)", s);
        }
        return "";
      },
      allow_empty_value ? "KEY=[VALUE]" : "KEY=VALUE");
}

CLI::Validator label_key_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s.empty() || s.find('=') != std::string::npos || has_blank(s)) {
          return fmt::format("'{}' is not a label key", s);
        }
        return "";
      },
      "KEY");
}

bool valid_name(const std::string& s, size_t max_len) {
  return !s.empty() && s.size() <= max_len && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

CLI::Validator name_validator(size_t max_len) {
  return CLI::Validator(
      [max_len](std::string& s) -> std::string {
        if (valid_name(s, max_len)) return "";
        return fmt::format("'{}' is not a name ([A-Za-z0-9._-], at most {} bytes)", s, max_len);
      },
      "NAME");
}

CLI::Validator uuid_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (Uuid::parse(s)) return "";
        return fmt::format("'{}' is not a UUID (8-4-4-4-12 hex digits)", s);
      },
      "UUID");
}

std::optional<std::map<std::string, std::string>> parse_labels(
    const std::vector<std::string>& items, const std::string& flag) {
  std::map<std::string, std::string> labels;
  for (const auto& kv : items) {
    auto eq = kv.find('=');  // present: checked by key_value_validator()
    auto [it, added] = labels.emplace(kv.substr(0, eq), kv.substr(eq + 1));
    if (!added) {
      usage_error(fmt::format("{}: label '{}' is given twice", flag, it->first));
      return std::nullopt;
    }
  }
  return labels;
}

}  // namespace castor::cli
