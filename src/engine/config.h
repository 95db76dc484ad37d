#pragma once
// castor-engine configuration: command-line flags and an optional YAML file with the
// same keys. A flag given on the command line overrides the file's key.

#include <spdlog/common.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace castor::engine {

enum class LogFormat { kText, kJson };

inline constexpr const char* kDefaultGrpcListen = "127.0.0.1:10124";
inline constexpr const char* kDefaultMetricsListen = "127.0.0.1:9124";
inline constexpr const char* kDefaultStateDir = "/var/lib/castor";

// One --nbd-export: NAME=BDEV[:ro].
struct NbdExportSpec {
  std::string name;  // "" is the default export
  std::string bdev;
  bool read_only = false;

  bool operator==(const NbdExportSpec&) const = default;
};

// One --iscsi-export: BDEV, BDEV:ro, IQN=BDEV or IQN=BDEV:ro (the bdev as LUN 0 of a
// target node; IQN empty: named after the bdev).
struct IscsiExportFlag {
  std::string iqn;
  std::string bdev;
  bool read_only = false;

  bool operator==(const IscsiExportFlag&) const = default;
};

struct EngineConfig {
  std::vector<int> cpus{0};  // one reactor per entry, pinned to that CPU
  bool poll = false;         // reactors busy-poll instead of sleeping when idle
  // Without poll: the longest a reactor keeps polling after its last work before it
  // sleeps (the window adapts below it: reactor/spin_policy.h). Polling saves the
  // wake-up of a busy reactor; it yields its CPU to any other thread that wants it.
  uint64_t spin_us = 50;
  // Reactors run as SCHED_BATCH (see ReactorOptions::sched_batch).
  bool sched_batch = false;
  std::string grpc_listen = kDefaultGrpcListen;
  std::string metrics_listen = kDefaultMetricsListen;  // "none": no metrics endpoint
  spdlog::level::level_enum log_level = spdlog::level::info;
  LogFormat log_format = LogFormat::kText;
  std::vector<std::string> bdevs;  // URIs created at start-up, in order
  // Pools imported at start-up (after the bdevs), in order: each entry is the disk URIs
  // of one pool (every member).
  std::vector<std::vector<std::string>> pool_imports;
  // NVMe-oF/TCP listeners (HOST:PORT each, port 0 = free port); empty: none.
  std::vector<std::string> nvmf_listen;
  std::string nbd_listen;  // HOST:PORT; empty: no NBD listener
  // Bdevs shared over NVMe-oF at start-up (after the pools), each in its own subsystem
  // open to any host.
  std::vector<std::string> nvmf_shares;
  std::vector<NbdExportSpec> nbd_exports;  // NBD exports made at start-up
  std::string iscsi_listen;                // HOST:PORT; empty: no iSCSI portal
  std::vector<IscsiExportFlag> iscsi_exports;  // iSCSI target nodes made at start-up
  // An iSCSI connection silent this long gets a NOP-In ping; unanswered for twice as
  // long, it is closed. 0: no pings.
  uint32_t iscsi_nop_in_ms = 15'000;
  // An NBD client silent this long gets TCP keepalive probes; answering none, or leaving
  // data unacknowledged, for twice as long, it is cut off. 0: never.
  uint32_t nbd_keepalive_s = 30;
  // The data buffers the NBD target's clients, and the iSCSI target's, may make the engine
  // hold at once, all connections together. 0: only each connection's own limit.
  uint64_t target_buffer_mb = 1024;
  std::string ready_file;                  // empty: none
  // Node-local persistent state; the nexus health store is <state_dir>/nexus. Created
  // at start-up if missing.
  std::string state_dir = kDefaultStateDir;
  // castor-control's gRPC HOST:PORTs, one per castor-control of the cluster (only the
  // leader answers); empty: a stand-alone engine (no registration; nexus health records
  // in <state_dir>/nexus). With them the engine registers as node_name, heartbeats, and
  // keeps nexus health records in the control plane's store.
  std::vector<std::string> control;
  std::string node_name;
  std::string node_address;  // advertised host; empty: each listener's own host
  std::map<std::string, std::string> node_labels;
};

// The host NQN this engine's nvmf:// bdevs (a nexus's remote children) connect with:
// nqn.2026-11.io.castor:node:<node name> in a cluster, so that each engine is a distinct
// host to the replicas' targets (its own reservation holder, the fence between the nexus
// of a volume and the next); empty for a stand-alone engine (the module's default).
std::string host_nqn(const EngineConfig& cfg);

// What main() should do after parsing.
struct ParsedArgs {
  bool exit_now = false;  // help or version was printed: exit with `exit_code`
  int exit_code = 0;
  EngineConfig config;
};

// Parses `argv` and, when --config names one, the YAML file. Errors: InvalidArgument
// with a one-line reason (unknown flag or key, bad value, unreadable file, both
// --cores and --reactors at the same level).
Result<ParsedArgs> parse_args(int argc, const char* const* argv);

// Errors: InvalidArgument unless `s` is one of trace, debug, info, warn, error,
// critical, off.
Result<spdlog::level::level_enum> parse_log_level(const std::string& s);
// Errors: InvalidArgument unless `s` is "text" or "json".
Result<LogFormat> parse_log_format(const std::string& s);
// Parses NAME=BDEV or NAME=BDEV:ro (NAME may be empty: the default export).
// Errors: InvalidArgument.
Result<NbdExportSpec> parse_nbd_export(const std::string& s);
Result<IscsiExportFlag> parse_iscsi_export(const std::string& s);
// Checks "host:port" (host may be a [v6] literal; port 0..65535). Errors:
// InvalidArgument naming `what`.
Status check_listen_address(const std::string& what, const std::string& addr);

}  // namespace castor::engine
