#pragma once
// The engine's front-end targets (NVMe-oF/TCP, NBD and iSCSI) and the rules the API applies to
// them: how a shared bdev's subsystem is named, which URIs reach it, and which bdevs may
// be shared or exported. Both targets always exist, so listeners can be added at any
// time; the engine's start-up flags and the gRPC handlers go through this one object.
//
// Thread-safe control-path calls (gRPC threads, engine start-up); never from a reactor.

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bdev/registry.h"
#include "common/status.h"
#include "iscsi/target.h"
#include "nbd/server.h"
#include "nvmf/target/target.h"
#include "pool/pool.h"
#include "reactor/reactor.h"

namespace castor::api {

// The NQN prefix of every subsystem the engine creates (DESIGN: Names).
inline constexpr const char* kNqnPrefix = "nqn.2026-11.io.castor:";
// The IQN prefix of the iSCSI target nodes the engine names itself.
inline constexpr const char* kIqnPrefix = "iqn.2026-11.io.castor:";

// One iSCSI export: a bdev as LUN 0 of its own target node.
struct IscsiExportSpec {
  std::string bdev;
  std::string iqn;  // empty: iqn.2026-11.io.castor:<bdev name, lower-cased>
  bool read_only = false;
  iscsi::NodeAccess access;  // CHAP and allowed initiators
};

// "HOST:PORT" (HOST may be a [v6] literal, brackets are removed; PORT 0..65535).
// Errors: InvalidArgument.
Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& address);
// "host:port", with a v6 host in brackets: the authority part of a URI.
std::string uri_authority(const std::string& host, uint16_t port);
// nqn.2026-11.io.castor:<kind>-<uuid>.
std::string castor_nqn(const std::string& kind, const Uuid& uuid);

struct ShareResult {
  std::string nqn;
  std::string bdev;
  std::vector<std::string> uris;  // nvmf://HOST:PORT/NQN per listener
  std::vector<std::string> allowed_hosts;
};

struct ListenerAddress {
  std::string host;
  uint16_t port = 0;
};

// The targets' settings that the engine's configuration chooses.
struct FrontEndOptions {
  nvmf::TargetOptions nvmf;
  iscsi::TargetOptions iscsi;
  nbd::ServerOptions nbd;
};

class FrontEnds {
 public:
  // `reactors`, `registry` and `pools` must outlive this object.
  FrontEnds(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
            pool::PoolManager& pools, FrontEndOptions options = {});
  // stop(), then the target releases the bdevs it shares.
  ~FrontEnds();
  FrontEnds(const FrontEnds&) = delete;
  FrontEnds& operator=(const FrontEnds&) = delete;

  // Adds an NVMe-oF listener on `address` (HOST:PORT, port 0 = free port); returns the
  // bound port. Errors: InvalidArgument (address), AlreadyExists (in use), IoError,
  // Busy (stopping).
  Result<uint16_t> nvmf_listen(const std::string& address);
  std::vector<ListenerAddress> nvmf_listeners() const;

  // The host the URIs of shares, exports and published nexuses name (--node-address):
  // the listeners' own host when empty. A listener on 0.0.0.0 needs it, or its URIs name
  // an address nobody can connect to.
  void set_advertised_host(std::string host);

  // Shares `bdev` as namespace 1 of its own subsystem: replica-<replica uuid> for a pool
  // replica, nexus-<nexus uuid> for a nexus, bdev-<bdev uuid> otherwise. `allowed_hosts` empty: any host. Sharing again
  // with the same hosts returns the existing share. Errors: InvalidArgument (empty name,
  // a host that is not an NQN), NotFound (bdev), AlreadyExists (shared with other
  // hosts), Busy (claimed by someone else, exported over NBD).
  Result<ShareResult> share_bdev(const std::string& bdev,
                                 const std::vector<std::string>& allowed_hosts);
  // Shares a replica (name or UUID). Errors: as share_bdev, NotFound (replica).
  Result<ShareResult> share_replica(const std::string& name,
                                    const std::vector<std::string>& allowed_hosts);
  // Removes the subsystem sharing `bdev_or_nqn` (a bdev name, or an NQN). Errors:
  // InvalidArgument (empty), NotFound (no such bdev, not shared, no such subsystem),
  // Busy (hosts connected, unless `force`, which disconnects them), TimedOut (I/O on the
  // bdev did not finish).
  Status unshare(const std::string& bdev_or_nqn, bool force = false);
  // unshare() of a replica by name or UUID. Errors: NotFound (replica or not shared),
  // Busy, TimedOut.
  Status unshare_replica(const std::string& name, bool force = false);
  // Sets the ANA state of the subsystem sharing `bdev` (NvmfTarget::set_ana_state).
  // Errors: NotFound (not shared), InvalidArgument.
  Status set_ana_state(const std::string& bdev, nvmf::AnaState state);
  // Subsystems (sorted by NQN) with the URIs of each.
  std::vector<std::pair<nvmf::SubsystemInfo, std::vector<std::string>>> subsystems() const;
  std::vector<nvmf::ControllerInfo> controllers() const;

  // Adds an NBD listener; as nvmf_listen.
  Result<uint16_t> nbd_listen(const std::string& address);
  std::vector<ListenerAddress> nbd_listeners() const;
  // Errors: InvalidArgument, NotFound (bdev), AlreadyExists (name), Busy (bdev claimed,
  // e.g. shared over NVMe-oF: NBD clients could not open it).
  Status nbd_export(const nbd::ExportInfo& e);
  // Errors: NotFound.
  Status nbd_unexport(const std::string& name);
  // Sorted by name.
  std::vector<nbd::ExportInfo> nbd_exports() const;
  // nbd://HOST:PORT/NAME per NBD listener.
  std::vector<std::string> nbd_uris(const std::string& export_name) const;

  // Adds an iSCSI listener (portal); as nvmf_listen.
  Result<uint16_t> iscsi_listen(const std::string& address);
  std::vector<ListenerAddress> iscsi_listeners() const;
  // Exports a bdev as LUN 0 of an iSCSI target node; returns the node's IQN. Errors:
  // InvalidArgument (bad IQN, short CHAP secret), NotFound (bdev), AlreadyExists (IQN),
  // Busy (bdev claimed, e.g. shared over NVMe-oF).
  Result<std::string> iscsi_export(const IscsiExportSpec& e);
  // Removes the node and closes its sessions. Errors: NotFound.
  Status iscsi_unexport(const std::string& iqn);
  // Sorted by IQN.
  std::vector<iscsi::NodeInfo> iscsi_targets() const;
  std::vector<iscsi::SessionInfo> iscsi_sessions() const;
  iscsi::TargetStats iscsi_stats() const;
  nbd::NbdStats nbd_stats() const;
  uint64_t nvmf_receive_holds() const;
  uint64_t nvmf_budget_holds() const;
  // iscsi://HOST:PORT/IQN/0 per iSCSI listener.
  std::vector<std::string> iscsi_uris(const std::string& iqn) const;

  // Runs `destroy` unless one of `bdevs` is exported over NBD or iSCSI (then Busy naming
  // the export). An export holds its bdev open, so the destroy would fail anyway; asking
  // here first gives DestroyBdev, DestroyReplica, ExportPool and DestroyPool an error that
  // says which export to remove. No export can be added while `destroy` runs.
  Status destroy_unless_exported(const std::vector<std::string>& bdevs,
                                 const std::function<Status()>& destroy);
  // Runs `grow` (which makes bdev `bdev` larger) unless the bdev is exported over NBD
  // (Busy naming the export: NBD clients learn a size only when they connect), then
  // announce_resize(bdev). No export can be added while `grow` runs.
  Status grow_unless_nbd(const std::string& bdev, const std::function<Status()>& grow);
  // Tells the hosts that bdev `bdev` grew: a namespace-attribute notice to the NVMe-oF
  // controllers of its namespaces, the unit attention CAPACITY DATA HAS CHANGED to the
  // iSCSI sessions of its LUNs (NBD has no way to).
  void announce_resize(const std::string& bdev);

  // The replica named `name_or_uuid`. Errors: InvalidArgument (empty), NotFound.
  Result<pool::ReplicaInfo> find_replica(const std::string& name_or_uuid) const;

  // Stops the NBD server, then the NVMe-oF target (listeners and connections); shares
  // keep their claims until destruction. Idempotent.
  void stop();

 private:
  Status check_not_exported(const std::string& bdev) const;
  std::vector<std::string> nvmf_uris_locked(const std::string& nqn) const;
  Result<ShareResult> share_locked(const std::string& bdev,
                                   const std::vector<std::string>& allowed_hosts);
  Status unshare_locked(const std::string& bdev_or_nqn, bool force);

  bdev::BdevRegistry& registry_;
  pool::PoolManager& pools_;
  nvmf::NvmfTarget nvmf_;
  nbd::NbdServer nbd_;  // after nvmf_: destroyed first, as stop() stops it first
  iscsi::IscsiTarget iscsi_;
  // Serialises share/unshare/listen decisions (each is a check followed by an action);
  // the targets lock their own state.
  // "HOST:PORT" of `l` as its URIs name it (mu_ held).
  std::string authority_locked(const ListenerAddress& l) const;

  mutable std::mutex mu_;
  std::string advertised_host_;
  std::vector<ListenerAddress> nvmf_listeners_;
  std::vector<ListenerAddress> nbd_listeners_;
  std::vector<ListenerAddress> iscsi_listeners_;
  bool stopped_ = false;
};

}  // namespace castor::api
