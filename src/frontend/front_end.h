#pragma once
// The interface every front-end protocol (NVMe-oF/TCP, NBD, iSCSI) implements, so that the
// API layer, the metrics and `nexus publish` reach all of them the same way: listen on an
// address, export a bdev under a name, remove an export, list exports, report metrics,
// tell clients a bdev grew, stop. A protocol's implementation lives in its own folder
// (nvmf/target/front_end.h, nbd/front_end.h, iscsi/front_end.h); the engine registers
// each with api::FrontEnds, which adds the rules that span protocols (one protocol per
// bdev, URIs, the advertised host).
//
// Thread-safety: every call is made from control-path threads (gRPC, engine start-up, a
// metrics scrape), never from a reactor; implementations lock their own state.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/uuid.h"

namespace castor::frontend {

// A user name and secret for CHAP (RFC 7143 section 12.1.3); empty user: not required.
struct Chap {
  std::string user;
  std::string secret;
  bool enabled() const { return !user.empty(); }
};

// What the API asks a front end to export.
struct ExportSpec {
  std::string bdev;
  // The export's name in the protocol: an NQN (NVMe-oF), an export name (NBD, where ""
  // is the default export), an IQN (iSCSI). Unset: FrontEnd::default_name(*this).
  std::optional<std::string> name;
  // What the bdev is and its identity, from which default names are built: "replica"
  // (uuid: the replica's), "nexus" (the nexus'), "bdev" (the bdev's).
  std::string kind = "bdev";
  Uuid uuid;
  bool read_only = false;
  std::string description;
  // Who may connect: host NQNs (NVMe-oF), initiator IQNs (iSCSI). Empty: anyone. A
  // protocol without access control (NBD) refuses a non-empty list.
  std::vector<std::string> allowed_hosts;
  Chap chap;         // the initiator authenticates to the target (iSCSI only)
  Chap mutual_chap;  // and the target to the initiator (iSCSI only; needs chap)
};

// One export as a front end reports it.
struct Export {
  std::string protocol;  // FrontEnd::protocol()
  std::string name;
  std::string bdev;
  bool read_only = false;
  std::string description;
  std::vector<std::string> allowed_hosts;  // sorted
  bool chap = false;
  bool mutual_chap = false;
  uint32_t connections = 0;       // NVMe-oF controllers, NBD clients, iSCSI sessions
  std::vector<std::string> uris;  // filled in by api::FrontEnds (one per listener)
};

// One metric family, in terms the API layer turns into Prometheus text.
struct Metric {
  enum class Type { kCounter, kGauge };
  struct Sample {
    std::vector<std::pair<std::string, std::string>> labels;
    double value = 0;
  };
  std::string name;
  std::string help;
  Type type = Type::kCounter;
  std::vector<Sample> samples;

  // A family of one unlabelled sample.
  static Metric single(std::string name, std::string help, Type type, double value) {
    return Metric{std::move(name), std::move(help), type, {Sample{{}, value}}};
  }
};

class FrontEnd {
 public:
  virtual ~FrontEnd() = default;

  // The protocol's name in the API and its URI scheme: "nvmf", "nbd", "iscsi".
  virtual const char* protocol() const = 0;
  // The protocol's name in messages: "NVMe-oF", "NBD", "iSCSI".
  virtual const char* display_name() const = 0;

  // Listens on `host`:`port` (0: a free port); returns the bound port. Errors:
  // AlreadyExists (address in use), IoError, Busy (stopping).
  virtual Result<uint16_t> listen(const std::string& host, uint16_t port) = 0;

  // The name an export of `spec` gets when spec.name is unset.
  virtual std::string default_name(const ExportSpec& spec) const = 0;

  // Exports spec.bdev as *spec.name (set). Exporting again with the same settings
  // returns the existing export. Errors: InvalidArgument (a bad name or host, a setting
  // the protocol does not have), NotFound (bdev), AlreadyExists (the name is taken, or the
  // bdev is exported with other settings), Busy (the bdev is claimed).
  virtual Result<Export> add_export(const ExportSpec& spec) = 0;

  // Removes export `name`, disconnecting its clients if `force` (otherwise a protocol
  // whose clients hold the bdev may refuse with Busy). Errors: NotFound, Busy, TimedOut.
  virtual Status remove_export(const std::string& name, bool force) = 0;

  // Every export, sorted by name.
  virtual std::vector<Export> exports() const = 0;

  // The URI of export `name` reached through a listener at `authority` (host:port).
  virtual std::string uri(const std::string& authority, const std::string& name) const = 0;

  // Whether export `e`'s bdev may grow while exported: Busy saying why not (NBD clients
  // learn the size only when they connect); the caller names the export.
  virtual Status check_resize(const Export& e) const {
    (void)e;
    return Status::ok();
  }
  // Tells the clients of `bdev`'s exports that it grew (where the protocol has a way).
  virtual void announce_resize(const std::string& bdev) = 0;

  // The protocol's metric families (names start with castor_<protocol>_).
  virtual std::vector<Metric> metrics() const = 0;

  // Stops listening and closes every connection; exports keep their bdevs until the
  // front end is destroyed. Idempotent.
  virtual void stop() = 0;
};

}  // namespace castor::frontend
