#pragma once
// The engine's front ends (frontend::FrontEnd: NVMe-oF/TCP, NBD, iSCSI, each registered
// once) and the rules the API applies across them: which listeners each has and the
// URIs they give, how a bdev is identified for default export names, one protocol per
// bdev, and which bdevs may be destroyed or grown while exported. The gRPC handlers,
// the metrics, `nexus publish` and the engine's start-up flags go through this object
// and name a protocol by its string ("nvmf", "nbd", "iscsi"); none branches on it.
//
// Thread-safe control-path calls (gRPC threads, engine start-up); never from a reactor.

#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bdev/registry.h"
#include "common/status.h"
#include "frontend/front_end.h"
#include "pool/pool.h"

namespace castor::api {

// "HOST:PORT" (HOST may be a [v6] literal, brackets are removed; PORT 0..65535).
// Errors: InvalidArgument.
Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& address);
// "host:port", with a v6 host in brackets: the authority part of a URI.
std::string uri_authority(const std::string& host, uint16_t port);

struct ListenerAddress {
  std::string host;
  uint16_t port = 0;
};

class FrontEnds {
 public:
  // `registry` and `pools` must outlive this object.
  FrontEnds(bdev::BdevRegistry& registry, pool::PoolManager& pools);
  // stop(), then destroys the front ends in the reverse order of registration (their
  // exports release the bdevs).
  ~FrontEnds();
  FrontEnds(const FrontEnds&) = delete;
  FrontEnds& operator=(const FrontEnds&) = delete;

  // Registers a protocol; at start-up, before any other call. Its protocol() must be new.
  void add(std::unique_ptr<frontend::FrontEnd> front_end);
  // The registered protocols, in order of registration.
  std::vector<std::string> protocols() const;
  // The front end of `protocol`, or nullptr.
  frontend::FrontEnd* find(const std::string& protocol) const;
  // find() as its implementation type T, or nullptr (for what only one protocol has:
  // NVMe-oF ANA states and controllers, iSCSI sessions).
  template <class T>
  T* get(const std::string& protocol) const {
    return dynamic_cast<T*>(find(protocol));
  }

  // Adds a listener on `address` (HOST:PORT, port 0 = free port); returns the bound
  // port. Errors: InvalidArgument (address, protocol), AlreadyExists (in use), IoError,
  // Busy (stopping).
  Result<uint16_t> listen(const std::string& protocol, const std::string& address);
  std::vector<ListenerAddress> listeners(const std::string& protocol) const;

  // The host the URIs of exports name (--node-address): the listeners' own host when
  // empty. A listener on 0.0.0.0 needs it, or its URIs name an address nobody can
  // connect to.
  void set_advertised_host(std::string host);

  // Exports spec.bdev over `protocol`. Fills in what the spec leaves out: the bdev's kind
  // and identity (a pool replica: "replica" and its UUID; a nexus: "nexus" and the nexus
  // UUID; else "bdev" and the bdev's UUID) and the protocol's default name. Errors:
  // InvalidArgument (no bdev, unknown protocol), NotFound (bdev), Busy (exported over
  // another protocol, naming it), and those of FrontEnd::add_export.
  Result<frontend::Export> add_export(const std::string& protocol, frontend::ExportSpec spec);
  // Removes the export of `protocol` named `name_or_bdev`, or else the one of that bdev.
  // Errors: InvalidArgument (empty), NotFound, Busy (its bdev is being destroyed or
  // unexported already), and those of FrontEnd::remove_export. The front end removes it
  // without this object's lock (a removal may wait for its clients' I/O): other exports,
  // and listing them, go on meanwhile; the bdev cannot be exported again until it is done.
  Status remove_export(const std::string& protocol, const std::string& name_or_bdev,
                       bool force = false);
  // The exports of `protocol` (every protocol's when empty), sorted by name within a
  // protocol, each with one URI per listener.
  std::vector<frontend::Export> exports(const std::string& protocol = {}) const;
  // Every export of bdev `bdev`, over any protocol.
  std::vector<frontend::Export> exports_of(const std::string& bdev) const;

  // Runs `destroy` unless one of `bdevs` is exported (then Busy naming the export). An
  // export holds its bdev, so the destroy would fail anyway; asking here first gives
  // DestroyBdev, DestroyReplica, ExportPool and DestroyPool an error that says which
  // export to remove. No export of `bdevs` can be added while `destroy` runs (add_export
  // answers Busy), but `destroy` runs without this object's lock: a nexus destroy that
  // drains for seconds does not hold up other bdevs' exports. Busy too if one of `bdevs`
  // is being destroyed already.
  Status destroy_unless_exported(const std::vector<std::string>& bdevs,
                                 const std::function<Status()>& destroy);
  // Runs `grow` (which makes bdev `bdev` larger) unless an export of it refuses
  // (FrontEnd::check_resize: Busy naming the export and why), then announce_resize(bdev).
  // `noun` names the bdev in the error ("bdev", "nexus", "replica"). No export can be added while
  // `grow` runs.
  Status grow_if_allowed(const std::string& bdev, const std::function<Status()>& grow,
                         const char* noun = "bdev");
  // Tells the clients of bdev `bdev` that it grew, over every protocol that can.
  void announce_resize(const std::string& bdev);

  // The front ends' metric families, in order of registration.
  std::vector<frontend::Metric> metrics() const;

  // The replica named `name_or_uuid`. Errors: InvalidArgument (empty), NotFound.
  Result<pool::ReplicaInfo> find_replica(const std::string& name_or_uuid) const;

  // Stops the front ends in the reverse order of registration (listeners and
  // connections); exports keep their bdevs until destruction. Idempotent.
  void stop();

 private:
  struct Entry {
    std::unique_ptr<frontend::FrontEnd> front_end;
    std::vector<ListenerAddress> listeners;
  };
  const Entry* entry_locked(const std::string& protocol) const;
  Status check_not_exported_locked(const std::string& bdev) const;
  // Busy if `bdev` is being destroyed or unexported.
  Status check_not_retiring_locked(const std::string& bdev) const;
  std::vector<frontend::Export> with_uris_locked(const Entry& e,
                                                 std::vector<frontend::Export> exports) const;

  bdev::BdevRegistry& registry_;
  pool::PoolManager& pools_;
  // Serialises export, unexport and listen decisions (each is a check followed by an
  // action); the front ends lock their own state. The slow actions (an unexport that
  // drains, a destroy) run without it, their bdevs marked in retiring_.
  mutable std::mutex mu_;
  // In order of registration. The set is fixed once start-up has registered every
  // protocol (add() comes before any other call), so find(), protocols() and metrics()
  // read it without mu_ (a scrape never waits for a long removal); each entry's
  // listeners change under mu_.
  std::vector<Entry> entries_;
  // Bdevs being destroyed (destroy_unless_exported) or unexported (remove_export), with
  // what is happening to them, for the Busy error: not to be exported meanwhile (mu_).
  std::map<std::string, const char*> retiring_;
  std::string advertised_host_;
  bool stopped_ = false;
};

}  // namespace castor::api
