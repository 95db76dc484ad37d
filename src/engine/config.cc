#include "engine/config.h"

#include <sched.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <optional>
#include <thread>

#include "common/version.h"
#include "reactor/reactor.h"

namespace castor::engine {
namespace {

constexpr unsigned kMaxReactors = 1024;

// One source of settings (the command line or the file); unset = not given there.
struct Layer {
  std::optional<std::string> cores;
  std::optional<std::string> reactors;
  std::optional<bool> poll;
  std::optional<bool> sched_batch;
  std::optional<std::string> spin_us;
  std::optional<std::string> grpc_listen;
  std::optional<std::string> metrics_listen;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
  std::optional<std::vector<std::string>> bdevs;
  std::optional<std::vector<std::vector<std::string>>> pool_imports;
  std::optional<std::vector<std::string>> nvmf_listen;
  std::optional<std::string> nbd_listen;
  std::optional<std::vector<std::string>> nvmf_shares;
  std::optional<std::vector<std::string>> nbd_exports;
  std::optional<std::string> iscsi_listen;
  std::optional<std::vector<std::string>> iscsi_exports;
  std::optional<std::string> iscsi_nop_in_ms;
  std::optional<std::string> nbd_keepalive_s;
  std::optional<std::string> target_buffer_mb;
  std::optional<std::string> ready_file;
  std::optional<std::string> state_dir;
  std::optional<std::vector<std::string>> control;
  std::optional<std::string> node_name;
  std::optional<std::string> node_address;
  std::optional<std::vector<std::string>> node_labels;
};

std::string one_line(std::string s) {
  for (auto& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

Result<std::string> yaml_scalar(const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) {
    return make_error(Errc::kInvalidArgument, "config key '{}': expected a single value", key);
  }
  return n.Scalar();
}

// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// A key holding one value or a list of values (null: an empty list).
Result<std::vector<std::string>> yaml_string_list(const YAML::Node& v, const std::string& key) {
  std::vector<std::string> out;
  if (v.IsNull()) return out;
  if (v.IsScalar()) {
    out.push_back(v.Scalar());
    return out;
  }
  if (!v.IsSequence()) {
    return make_error(Errc::kInvalidArgument, "config key '{}': expected a value or a list", key);
  }
  for (const auto& e : v) {
    if (!e.IsScalar()) {
      return make_error(Errc::kInvalidArgument, "config key '{}': expected a list of values", key);
    }
    out.push_back(e.Scalar());
  }
  return out;
}

// `pools:` is a list of maps {disks: [URI, ...]} (disks may also be one URI).
Result<std::vector<std::vector<std::string>>> yaml_pools(const YAML::Node& v) {
  const Status bad(Errc::kInvalidArgument,
                   "config key 'pools': expected a list of {disks: [URI, ...]} entries");
  std::vector<std::vector<std::string>> out;
  if (v.IsNull()) return out;
  if (!v.IsSequence()) return bad;
  for (const auto& entry : v) {
    if (!entry.IsMap()) return bad;
    std::vector<std::string> disks;
    for (const auto& kv : entry) {
      const std::string key = kv.first.as<std::string>();
      if (key != "disks") {
        return make_error(Errc::kInvalidArgument, "config key 'pools': unknown key '{}'", key);
      }
      if (kv.second.IsScalar()) {
        disks.push_back(kv.second.Scalar());
        continue;
      }
      if (!kv.second.IsSequence()) return bad;
      for (const auto& d : kv.second) {
        if (!d.IsScalar()) return bad;
        disks.push_back(d.Scalar());
      }
    }
    out.push_back(std::move(disks));
  }
  return out;
}

// Reads the YAML file at `path` into a Layer. Every key must be known.
Result<Layer> load_yaml(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return make_error(Errc::kInvalidArgument, "cannot read config file '{}'", path);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::kInvalidArgument, "config file '{}': {}", path, one_line(e.what()));
  }
  Layer l;
  if (root.IsNull()) return l;  // empty file
  if (!root.IsMap()) {
    return make_error(Errc::kInvalidArgument, "config file '{}': expected a mapping of keys", path);
  }
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "cores") {
        if (v.IsSequence()) {
          std::string spec;
          for (const auto& e : v) {
            if (!e.IsScalar()) {
              return Status(Errc::kInvalidArgument,
                            "config key 'cores': expected a list of CPU numbers");
            }
            if (!spec.empty()) spec += ',';
            spec += e.Scalar();
          }
          l.cores = spec;
        } else {
          auto s = yaml_scalar(v, key);
          if (!s) return s.status();
          l.cores = *s;
        }
      } else if (key == "reactors") {
        auto s = yaml_scalar(v, key);
        if (!s) return s.status();
        l.reactors = *s;
      } else if (key == "poll" || key == "sched-batch") {
        bool b = false;
        if (!v.IsScalar() || !YAML::convert<bool>::decode(v, b)) {
          return make_error(Errc::kInvalidArgument, "config key '{}': expected true or false",
                            key);
        }
        (key == "poll" ? l.poll : l.sched_batch) = b;
      } else if (key == "spin-us") {
        auto s = yaml_scalar(v, key);
        if (!s) return s.status();
        l.spin_us = *s;
      } else if (key == "iscsi-nop-in-ms" || key == "nbd-keepalive-s" || key == "target-buffer-mb") {
        auto s = yaml_scalar(v, key);
        if (!s) return s.status();
        (key == "nbd-keepalive-s"    ? l.nbd_keepalive_s
         : key == "target-buffer-mb" ? l.target_buffer_mb
                                     : l.iscsi_nop_in_ms) = *s;
      } else if (key == "grpc-listen" || key == "metrics-listen" || key == "log-level" ||
                 key == "log-format" || key == "ready-file" || key == "nbd-listen" ||
                 key == "iscsi-listen" || key == "state-dir" || key == "node-name" ||
                 key == "node-address") {
        auto s = yaml_scalar(v, key);
        if (!s) return s.status();
        if (key == "nbd-listen") l.nbd_listen = *s;
        if (key == "iscsi-listen") l.iscsi_listen = *s;
        if (key == "grpc-listen") l.grpc_listen = *s;
        if (key == "metrics-listen") l.metrics_listen = *s;
        if (key == "log-level") l.log_level = *s;
        if (key == "log-format") l.log_format = *s;
        if (key == "ready-file") l.ready_file = *s;
        if (key == "state-dir") l.state_dir = *s;
        if (key == "node-name") l.node_name = *s;
        if (key == "node-address") l.node_address = *s;
      } else if (key == "bdev" || key == "bdevs") {
        std::vector<std::string> uris;
        if (v.IsSequence()) {
          for (const auto& e : v) {
            if (!e.IsScalar()) {
              return make_error(Errc::kInvalidArgument, "config key '{}': expected a list of URIs",
                                key);
            }
            uris.push_back(e.Scalar());
          }
        } else if (!v.IsNull()) {
          auto s = yaml_scalar(v, key);
          if (!s) return s.status();
          uris.push_back(*s);
        }
        if (!l.bdevs) l.bdevs.emplace();
        l.bdevs->insert(l.bdevs->end(), uris.begin(), uris.end());
      } else if (key == "nvmf-listen" || key == "nvmf-share" || key == "nbd-export" ||
                 key == "iscsi-export" || key == "node-label" || key == "control") {
        auto list = yaml_string_list(v, key);
        if (!list) return list.status();
        if (key == "nvmf-listen") l.nvmf_listen = std::move(list.value());
        if (key == "nvmf-share") l.nvmf_shares = std::move(list.value());
        if (key == "nbd-export") l.nbd_exports = std::move(list.value());
        if (key == "iscsi-export") l.iscsi_exports = std::move(list.value());
        if (key == "node-label") l.node_labels = std::move(list.value());
        if (key == "control") {
          // "A,B" or a list (whose items may also hold commas).
          l.control.emplace();
          for (const auto& item : *list) {
            for (auto& a : split_commas(item)) l.control->push_back(std::move(a));
          }
        }
      } else if (key == "pools") {
        auto pools = yaml_pools(v);
        if (!pools) return pools.status();
        l.pool_imports = std::move(pools.value());
      } else {
        return make_error(Errc::kInvalidArgument, "config file '{}': unknown key '{}'", path, key);
      }
    }
  } catch (const YAML::Exception& e) {
    return make_error(Errc::kInvalidArgument, "config file '{}': {}", path, one_line(e.what()));
  }
  return l;
}

Result<unsigned> parse_reactor_count(const std::string& s) {
  unsigned n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p != s.data() + s.size() || n == 0 || n > kMaxReactors) {
    return make_error(Errc::kInvalidArgument, "reactors: '{}' is not a reactor count (1..{})", s,
                      kMaxReactors);
  }
  return n;
}

constexpr uint64_t kMaxSpinUs = 1'000'000;
constexpr uint64_t kMaxNopInMs = 3'600'000;
constexpr uint64_t kMaxKeepaliveS = 3'600;
constexpr uint64_t kMaxTargetBufferMb = 1u << 20;  // 1 TiB

// A numeric setting `key` (a duration, a size): a whole number of `unit` in 0..max.
Result<uint64_t> parse_number(const char* key, const char* unit, const std::string& s, uint64_t max) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p != s.data() + s.size() || n > max) {
    return make_error(Errc::kInvalidArgument, "{}: '{}' is not a number of {} (0..{})", key, s, unit, max);
  }
  return n;
}

// Merges the two layers (flags win) into a validated EngineConfig.
Result<EngineConfig> resolve(const Layer& flags, const Layer& file) {
  EngineConfig cfg;

  // cores and reactors are one setting: the command line's replaces the file's.
  const Layer& cpu_src = (flags.cores || flags.reactors) ? flags : file;
  if (cpu_src.cores && cpu_src.reactors) {
    return Status(Errc::kInvalidArgument,
                  "cores and reactors are mutually exclusive (give one of them)");
  }
  if (cpu_src.cores) {
    auto cpus = reactor::parse_cpu_list(*cpu_src.cores);
    if (!cpus) {
      return make_error(Errc::kInvalidArgument, "cores: {}", cpus.status().message());
    }
    if (cpus->empty()) return Status(Errc::kInvalidArgument, "cores: empty CPU list");
    cfg.cpus = *cpus;
  } else if (cpu_src.reactors) {
    auto n = parse_reactor_count(*cpu_src.reactors);
    if (!n) return n.status();
    cfg.cpus = reactor::cpus_for_reactor_count(*n);
  } else {
    cfg.cpus = reactor::cpus_for_reactor_count(1);
  }

  auto pick = [&](const auto& f, const auto& y) { return f ? f : y; };
  if (auto p = pick(flags.poll, file.poll)) cfg.poll = *p;
  if (auto b = pick(flags.sched_batch, file.sched_batch)) cfg.sched_batch = *b;
  if (auto s = pick(flags.spin_us, file.spin_us)) {
    auto us = parse_number("spin-us", "microseconds", *s, kMaxSpinUs);
    if (!us) return us.status();
    cfg.spin_us = *us;
  }
  if (auto s = pick(flags.iscsi_nop_in_ms, file.iscsi_nop_in_ms)) {
    auto ms = parse_number("iscsi-nop-in-ms", "milliseconds", *s, kMaxNopInMs);
    if (!ms) return ms.status();
    cfg.iscsi_nop_in_ms = static_cast<uint32_t>(*ms);
  }
  if (auto s = pick(flags.nbd_keepalive_s, file.nbd_keepalive_s)) {
    auto secs = parse_number("nbd-keepalive-s", "seconds", *s, kMaxKeepaliveS);
    if (!secs) return secs.status();
    cfg.nbd_keepalive_s = static_cast<uint32_t>(*secs);
  }
  if (auto s = pick(flags.target_buffer_mb, file.target_buffer_mb)) {
    auto mb = parse_number("target-buffer-mb", "MiB", *s, kMaxTargetBufferMb);
    if (!mb) return mb.status();
    cfg.target_buffer_mb = *mb;
  }
  if (auto g = pick(flags.grpc_listen, file.grpc_listen)) cfg.grpc_listen = *g;
  if (auto m = pick(flags.metrics_listen, file.metrics_listen)) cfg.metrics_listen = *m;
  if (auto r = pick(flags.ready_file, file.ready_file)) cfg.ready_file = *r;
  if (auto d = pick(flags.state_dir, file.state_dir)) {
    if (d->empty()) return Status(Errc::kInvalidArgument, "state-dir: empty path");
    cfg.state_dir = *d;
  }
  if (auto b = pick(flags.bdevs, file.bdevs)) cfg.bdevs = *b;
  if (auto p = pick(flags.pool_imports, file.pool_imports)) cfg.pool_imports = *p;
  if (auto n = pick(flags.nvmf_listen, file.nvmf_listen)) cfg.nvmf_listen = *n;
  if (auto n = pick(flags.nbd_listen, file.nbd_listen)) cfg.nbd_listen = *n;
  if (auto n = pick(flags.nvmf_shares, file.nvmf_shares)) cfg.nvmf_shares = *n;
  if (auto n = pick(flags.nbd_exports, file.nbd_exports)) {
    for (const auto& spec : *n) {
      auto e = parse_nbd_export(spec);
      if (!e) return e.status();
      for (const auto& prev : cfg.nbd_exports) {
        if (prev.name == e->name) {
          return make_error(Errc::kInvalidArgument, "nbd-export: export name '{}' given twice",
                            e->name);
        }
      }
      cfg.nbd_exports.push_back(*e);
    }
  }
  if (auto n = pick(flags.iscsi_listen, file.iscsi_listen)) cfg.iscsi_listen = *n;
  if (auto n = pick(flags.iscsi_exports, file.iscsi_exports)) {
    for (const auto& spec : *n) {
      auto e = parse_iscsi_export(spec);
      if (!e) return e.status();
      cfg.iscsi_exports.push_back(*e);
    }
  }
  if (auto lv = pick(flags.log_level, file.log_level)) {
    auto level = parse_log_level(*lv);
    if (!level) return level.status();
    cfg.log_level = *level;
  }
  if (auto lf = pick(flags.log_format, file.log_format)) {
    auto fmt = parse_log_format(*lf);
    if (!fmt) return fmt.status();
    cfg.log_format = *fmt;
  }

  if (Status s = check_listen_address("grpc-listen", cfg.grpc_listen); !s) return s;
  if (cfg.metrics_listen != "none") {
    if (Status s = check_listen_address("metrics-listen", cfg.metrics_listen); !s) return s;
  }
  if (cfg.nvmf_listen.size() == 1 && cfg.nvmf_listen[0] == "none") cfg.nvmf_listen.clear();
  for (const auto& addr : cfg.nvmf_listen) {
    if (addr == "none") {
      return Status(Errc::kInvalidArgument,
                    "nvmf-listen: 'none' cannot be combined with addresses");
    }
    if (Status s = check_listen_address("nvmf-listen", addr); !s) return s;
  }
  if (cfg.iscsi_listen == "none") cfg.iscsi_listen.clear();
  if (!cfg.iscsi_listen.empty()) {
    if (Status s = check_listen_address("iscsi-listen", cfg.iscsi_listen); !s) return s;
  }
  if (cfg.nbd_listen == "none") cfg.nbd_listen.clear();
  if (!cfg.nbd_listen.empty()) {
    if (Status s = check_listen_address("nbd-listen", cfg.nbd_listen); !s) return s;
  }
  for (size_t i = 0; i < cfg.nvmf_shares.size(); ++i) {
    if (cfg.nvmf_shares[i].empty())
      return Status(Errc::kInvalidArgument, "nvmf-share: empty bdev name");
    for (size_t j = 0; j < i; ++j) {
      if (cfg.nvmf_shares[j] == cfg.nvmf_shares[i]) {
        return make_error(Errc::kInvalidArgument, "nvmf-share: bdev '{}' given twice",
                          cfg.nvmf_shares[i]);
      }
    }
  }
  for (const auto& uri : cfg.bdevs) {
    if (uri.empty()) return Status(Errc::kInvalidArgument, "bdev: empty URI");
  }
  for (const auto& disks : cfg.pool_imports) {
    if (disks.empty()) return Status(Errc::kInvalidArgument, "pool import: no disks given");
    for (const auto& d : disks) {
      if (d.empty()) return Status(Errc::kInvalidArgument, "pool import: empty disk URI");
    }
  }
  if (auto c = pick(flags.control, file.control)) cfg.control = *c;
  if (auto n = pick(flags.node_name, file.node_name)) cfg.node_name = *n;
  if (auto a = pick(flags.node_address, file.node_address)) cfg.node_address = *a;
  if (auto labels = pick(flags.node_labels, file.node_labels)) {
    for (const auto& kv : *labels) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == kv.size()) {
        return make_error(Errc::kInvalidArgument, "node-label: '{}' is not KEY=VALUE", kv);
      }
      if (!cfg.node_labels.emplace(kv.substr(0, eq), kv.substr(eq + 1)).second) {
        return make_error(Errc::kInvalidArgument, "node-label: key '{}' given twice",
                          kv.substr(0, eq));
      }
    }
  }
  if (!cfg.control.empty()) {
    for (size_t i = 0; i < cfg.control.size(); ++i) {
      if (Status s = check_listen_address("control", cfg.control[i]); !s) return s;
      for (size_t j = 0; j < i; ++j) {
        if (cfg.control[j] == cfg.control[i]) {
          return make_error(Errc::kInvalidArgument, "control: '{}' given twice", cfg.control[i]);
        }
      }
    }
    if (cfg.node_name.empty()) {
      return Status(Errc::kInvalidArgument, "control: --node-name is required with --control");
    }
    if (cfg.nvmf_listen.empty()) {
      return Status(Errc::kInvalidArgument,
                    "control: a storage node needs an NVMe-oF listener (--nvmf-listen) to share "
                    "replicas");
    }
  } else if (!cfg.node_name.empty() || !cfg.node_labels.empty()) {
    return Status(Errc::kInvalidArgument, "node-name and node-label need --control");
  }
  if (!cfg.node_name.empty()) {
    bool ok = cfg.node_name.size() <= 63 && cfg.node_name[0] != '.' && cfg.node_name[0] != '-';
    for (char c : cfg.node_name) {
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
    }
    if (!ok) {
      return make_error(Errc::kInvalidArgument,
                        "node-name: '{}' is not 1 to 63 of [A-Za-z0-9._-]", cfg.node_name);
    }
  }
  return cfg;
}

}  // namespace

Result<spdlog::level::level_enum> parse_log_level(const std::string& s) {
  using spdlog::level::level_enum;
  static const std::pair<const char*, level_enum> kLevels[] = {
      {"trace", level_enum::trace}, {"debug", level_enum::debug},
      {"info", level_enum::info},   {"warn", level_enum::warn},
      {"error", level_enum::err},   {"critical", level_enum::critical},
      {"off", level_enum::off}};
  for (const auto& [name, level] : kLevels) {
    if (s == name) return level;
  }
  return make_error(Errc::kInvalidArgument,
                    "log-level: '{}' is not one of trace, debug, info, warn, error, "
                    "critical, off",
                    s);
}

Result<LogFormat> parse_log_format(const std::string& s) {
  if (s == "text") return LogFormat::kText;
  if (s == "json") return LogFormat::kJson;
  return make_error(Errc::kInvalidArgument, "log-format: '{}' is not text or json", s);
}

Result<NbdExportSpec> parse_nbd_export(const std::string& s) {
  auto eq = s.find('=');
  if (eq == std::string::npos) {
    return make_error(Errc::kInvalidArgument, "nbd-export: '{}' is not NAME=BDEV[:ro]", s);
  }
  NbdExportSpec e;
  e.name = s.substr(0, eq);
  e.bdev = s.substr(eq + 1);
  static const std::string kReadOnly = ":ro";
  if (e.bdev.size() > kReadOnly.size() &&
      e.bdev.compare(e.bdev.size() - kReadOnly.size(), kReadOnly.size(), kReadOnly) == 0) {
    e.read_only = true;
    e.bdev.resize(e.bdev.size() - kReadOnly.size());
  }
  if (e.bdev.empty() || e.bdev == kReadOnly) {
    return make_error(Errc::kInvalidArgument, "nbd-export: '{}' names no bdev (NAME=BDEV[:ro])", s);
  }
  return e;
}

Result<IscsiExportFlag> parse_iscsi_export(const std::string& s) {
  IscsiExportFlag e;
  auto eq = s.find('=');
  e.bdev = eq == std::string::npos ? s : s.substr(eq + 1);
  if (eq != std::string::npos) e.iqn = s.substr(0, eq);
  static const std::string kReadOnly = ":ro";
  if (e.bdev.size() > kReadOnly.size() &&
      e.bdev.compare(e.bdev.size() - kReadOnly.size(), kReadOnly.size(), kReadOnly) == 0) {
    e.read_only = true;
    e.bdev.resize(e.bdev.size() - kReadOnly.size());
  }
  if (e.bdev.empty() || e.bdev == kReadOnly || (eq != std::string::npos && e.iqn.empty())) {
    return make_error(Errc::kInvalidArgument, "iscsi-export: '{}' is not [IQN=]BDEV[:ro]", s);
  }
  return e;
}

Status check_listen_address(const std::string& what, const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size()) {
    return make_error(Errc::kInvalidArgument, "{}: '{}' is not HOST:PORT", what, addr);
  }
  std::string host = addr.substr(0, colon);
  if (host.front() == '[' && host.back() != ']') {
    return make_error(Errc::kInvalidArgument, "{}: '{}' is not HOST:PORT", what, addr);
  }
  std::string port = addr.substr(colon + 1);
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || p > 65535) {
    return make_error(Errc::kInvalidArgument, "{}: '{}' has an invalid port", what, addr);
  }
  return Status::ok();
}

Result<ParsedArgs> parse_args(int argc, const char* const* argv) {
  CLI::App app{
      "castor-engine: the Castor storage data plane (reactors, block devices, "
      "gRPC management API, Prometheus metrics)",
      "castor-engine"};
  app.set_version_flag("--version", kVersion);

  std::string config_file, cores, reactors, grpc_listen, metrics_listen, log_level, log_format,
      ready_file, nbd_listen, iscsi_listen, state_dir, spin_us, iscsi_nop_in_ms, nbd_keepalive_s,
      target_buffer_mb;
  bool poll = false, sched_batch = false;
  std::vector<std::string> bdevs, pool_imports, nvmf_listen, nvmf_shares, nbd_exports,
      iscsi_exports;
  auto* o_config = app.add_option("--config", config_file,
                                  "YAML file with the same keys as the flags (flags win)");
  auto* o_cores =
      app.add_option("--cores", cores, "CPUs to run one reactor each on, e.g. 0,1 or 0-3");
  auto* o_reactors =
      app.add_option("--reactors", reactors, "number of reactors, on CPUs 0..N-1 (default 1)");
  auto* o_poll = app.add_flag("--poll", poll, "busy-poll reactors instead of sleeping");
  auto* o_batch = app.add_flag("--sched-batch", sched_batch,
                               "run reactors as SCHED_BATCH: they wait for the running thread "
                               "instead of preempting it when work arrives (cores shared "
                               "with applications)");
  auto* o_spin = app.add_option("--spin-us", spin_us,
                                "poll at most this many microseconds after the last work "
                                "before sleeping; the window adapts below it (default 50; "
                                "0 sleeps at once)");
  auto* o_grpc = app.add_option("--grpc-listen", grpc_listen,
                                "gRPC API address, HOST:PORT; port 0 picks a free port "
                                "(default 127.0.0.1:10124)");
  auto* o_metrics = app.add_option("--metrics-listen", metrics_listen,
                                   "Prometheus /metrics address, HOST:PORT or none "
                                   "(default 127.0.0.1:9124)");
  auto* o_level = app.add_option("--log-level", log_level,
                                 "trace, debug, info, warn, error, critical or off "
                                 "(default info)");
  auto* o_format = app.add_option("--log-format", log_format, "text or json (default text)");
  auto* o_bdev = app.add_option("--bdev", bdevs, "bdev URI to create at start-up (repeatable)")
                     ->allow_extra_args(false);
  auto* o_pool = app.add_option("--pool-import", pool_imports,
                                "import the pool on these disks (URIs, comma-separated, every "
                                "member) at start-up, after the --bdevs; repeatable")
                     ->allow_extra_args(false);
  auto* o_nvmf_listen =
      app.add_option("--nvmf-listen", nvmf_listen,
                     "NVMe-oF/TCP listener HOST:PORT (port 0 picks a free port) or none; "
                     "repeatable (default none)")
          ->allow_extra_args(false);
  auto* o_nbd_listen = app.add_option("--nbd-listen", nbd_listen,
                                      "NBD listener HOST:PORT (port 0 picks a free port) or "
                                      "none (default none)");
  auto* o_nvmf_share = app.add_option("--nvmf-share", nvmf_shares,
                                      "share this bdev over NVMe-oF at start-up, in its own "
                                      "subsystem open to any host; repeatable")
                           ->allow_extra_args(false);
  auto* o_nbd_export = app.add_option("--nbd-export", nbd_exports,
                                      "export a bdev over NBD at start-up: NAME=BDEV or "
                                      "NAME=BDEV:ro (read-only); repeatable")
                           ->allow_extra_args(false);
  auto* o_nbd_keepalive = app.add_option("--nbd-keepalive-s", nbd_keepalive_s,
                                         "probe an NBD client silent this long with TCP "
                                         "keepalives; cut it off if it answers none, or leaves "
                                         "data unacknowledged, for twice as long (default 30; "
                                         "0: never)");
  auto* o_target_buffer = app.add_option("--target-buffer-mb", target_buffer_mb,
                                         "data buffers the clients of the NBD target, and of "
                                         "the iSCSI target, may make the engine hold at once, "
                                         "all connections together (default 1024; 0: only each "
                                         "connection's own limit)");
  auto* o_iscsi_listen = app.add_option("--iscsi-listen", iscsi_listen,
                                        "iSCSI portal HOST:PORT (port 0 picks a free port) or "
                                        "none (default none)");
  auto* o_iscsi_export = app.add_option("--iscsi-export", iscsi_exports,
                                        "export a bdev over iSCSI at start-up as LUN 0 of a target "
                                        "node: [IQN=]BDEV[:ro] (IQN default "
                                        "iqn.2026-11.io.castor:<bdev>); repeatable")
                             ->allow_extra_args(false);
  auto* o_iscsi_nop = app.add_option("--iscsi-nop-in-ms", iscsi_nop_in_ms,
                                     "ping an iSCSI initiator silent this long with a NOP-In; "
                                     "close its connection if the ping goes unanswered for "
                                     "twice as long (default 15000; 0: no pings)");
  auto* o_ready = app.add_option("--ready-file", ready_file,
                                 "once serving, write {pid, grpc_port, metrics_port, "
                                 "nvmf_ports, nbd_port, iscsi_port} as JSON to this file");

  std::string control, node_name, node_address;
  std::vector<std::string> node_labels;
  auto* o_control = app.add_option("--control", control,
                                   "register with castor-control at HOST:PORT[,HOST:PORT...] "
                                   "(every castor-control of the cluster; the leading one "
                                   "answers) and heartbeat; nexus health records then live in "
                                   "its store");
  auto* o_node_name = app.add_option("--node-name", node_name,
                                     "this node's name in the cluster (with --control)");
  auto* o_node_address = app.add_option(
      "--node-address", node_address,
      "host other nodes reach this engine at (default: the host of each listen address)");
  auto* o_node_label = app.add_option("--node-label", node_labels,
                                      "KEY=VALUE label of this node (repeatable; applied at "
                                      "first registration)")
                           ->allow_extra_args(false);
  auto* o_state = app.add_option("--state-dir", state_dir,
                                 "directory for node-local state (nexus health records in "
                                 "DIR/nexus); created if missing (default /var/lib/castor)");

  // A repeated single-valued flag takes the last value, as in most tools.
  for (auto* o : {o_config, o_cores, o_reactors, o_grpc, o_metrics, o_level, o_format, o_ready,
                  o_nbd_listen, o_nbd_keepalive, o_target_buffer, o_iscsi_listen, o_iscsi_nop,
                  o_state, o_control, o_node_name, o_node_address}) {
    o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }

  ParsedArgs out;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      out.exit_now = true;
      out.exit_code = app.exit(e);
      return out;
    }
    return Status(Errc::kInvalidArgument, one_line(e.what()));
  }

  Layer flags;
  if (o_cores->count()) flags.cores = cores;
  if (o_reactors->count()) flags.reactors = reactors;
  if (o_poll->count()) flags.poll = poll;
  if (o_batch->count()) flags.sched_batch = sched_batch;
  if (o_spin->count()) flags.spin_us = spin_us;
  if (o_grpc->count()) flags.grpc_listen = grpc_listen;
  if (o_metrics->count()) flags.metrics_listen = metrics_listen;
  if (o_level->count()) flags.log_level = log_level;
  if (o_format->count()) flags.log_format = log_format;
  if (o_bdev->count()) flags.bdevs = bdevs;
  if (o_pool->count()) {
    flags.pool_imports.emplace();
    for (const auto& p : pool_imports) flags.pool_imports->push_back(split_commas(p));
  }
  if (o_ready->count()) flags.ready_file = ready_file;
  if (o_state->count()) flags.state_dir = state_dir;
  if (o_nvmf_listen->count()) flags.nvmf_listen = nvmf_listen;
  if (o_nbd_listen->count()) flags.nbd_listen = nbd_listen;
  if (o_nvmf_share->count()) flags.nvmf_shares = nvmf_shares;
  if (o_nbd_export->count()) flags.nbd_exports = nbd_exports;
  if (o_iscsi_listen->count()) flags.iscsi_listen = iscsi_listen;
  if (o_iscsi_export->count()) flags.iscsi_exports = iscsi_exports;
  if (o_iscsi_nop->count()) flags.iscsi_nop_in_ms = iscsi_nop_in_ms;
  if (o_nbd_keepalive->count()) flags.nbd_keepalive_s = nbd_keepalive_s;
  if (o_target_buffer->count()) flags.target_buffer_mb = target_buffer_mb;
  if (o_control->count()) flags.control = split_commas(control);
  if (o_node_name->count()) flags.node_name = node_name;
  if (o_node_address->count()) flags.node_address = node_address;
  if (o_node_label->count()) flags.node_labels = node_labels;

  Layer file;
  if (o_config->count()) {
    auto l = load_yaml(config_file);
    if (!l) return l.status();
    file = std::move(*l);
  }
  auto cfg = resolve(flags, file);
  if (!cfg) return cfg.status();
  out.config = std::move(*cfg);
  return out;
}

std::string host_nqn(const EngineConfig& cfg) {
  return cfg.node_name.empty() ? std::string() : "nqn.2026-11.io.castor:node:" + cfg.node_name;
}

}  // namespace castor::engine
