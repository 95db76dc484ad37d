#pragma once
// The nvmf bdev module: a remote NVMe-oF/TCP namespace as a local bdev, through Castor's
// host. URI:
//
//   nvmf://HOST[:PORT]/SUBNQN?hostnqn=..&hostid=..&hdgst=..&ddgst=..&qd=..&io_timeout_ms=..
//        &keep_alive_ms=..&connect_timeout_ms=..&reconnect_delay_ms=..
//        &reconnect_delay_max_ms=..&ctrl_loss_timeout_ms=..&nsid=..&name=..
//        &paths=HOST2:PORT2[,HOST3:PORT3...]
//
// hostid: the 128-bit host identifier sent in every Connect (UUID text, not all zeroes);
// the target knows this host's reservations by it. Default: derived from hostnqn, stably
// (the UUID of an "nqn.2014-08.org.nvmexpress:uuid:<UUID>" host NQN, as Linux does; else
// a name-based UUID of the NQN). Two bdevs meant to be different reservation holders
// need different hostnqn or hostid values.
//
// Reservations: Bdev::reservation() sends Reservation Register / Acquire / Release /
// Report on reactor 0's I/O queue and waits (up to io_timeout_ms, at least 1 s); `self`
// must be this bdev's host identifier (host_id()). Reservation Conflict (SC 83h) is
// Busy "reservation conflict: ..."; on I/O it is IoStatus::kReservationConflict, never
// retried.
//
// One controller per path: an admin queue on reactor 0 and one I/O queue per reactor,
// so each reactor's channel submits on its own connection without locks.
//
// Multipath: `paths` adds up to 7 more addresses of the same subsystem (other engines
// serving the volume's namespace, as after a nexus switch-over). The first path must
// connect when the bdev is created; another that does not yet keeps trying in the
// background (lost after ctrl_loss_timeout_ms). A path must lead to the first one's
// namespace (block size and NGUID): refused at creation, lost later. Each
// path reads the ANA log page at every connection and on each ANA change notice. I/O goes
// to the first connected path in ANA state optimized, else the first non-optimized one.
// With several paths a path that cannot carry a request (connection lost, not yet back,
// a path error of SCT 3 such as ANA inaccessible, a timeout) hands it back at once and
// it is sent on another path; with none usable it waits, tried every 10 ms, and fails
// with kIoError ctrl_loss_timeout_ms after it was submitted. Each path reconnects (and
// is lost) on its own, as below.
//
// Failure handling (defaults in NvmfHostOptions):
//  * A command that outlives io_timeout_ms completes with IoStatus::kTimedOut and its
//    connection is dropped (so its CID can never complete late into a reused buffer);
//    the controller then resets.
//  * The admin queue sends Keep Alive every keep_alive_ms/2; one unanswered for
//    keep_alive_ms resets the controller. The target is told the same KATO at Connect.
//  * A reset tears down every queue and reconnects with back-off (reconnect_delay_ms,
//    doubling up to reconnect_delay_max_ms). I/O in flight on a dropped connection,
//    and I/O submitted meanwhile, waits and is re-issued once the controller is back.
//  * If the controller is not back within ctrl_loss_timeout_ms of the first failure,
//    it is declared lost: waiting and new I/O fail with IoStatus::kIoError, and no more
//    reconnects are tried (destroy and re-create the bdev). ctrl_loss_timeout_ms=0
//    declares it lost at the first failure.
//
// Growth: the namespace may grow under the bdev. The host keeps an Asynchronous Event
// Request outstanding (when the controller offers namespace-attribute notices); a notice
// makes it read the Changed Namespace List and identify the namespace again, and a larger
// size becomes the bdev's. Bdev::refresh_size() identifies it again on demand (a nexus
// asks before it grows); a reconnect does too. A namespace that shrank is refused.
//
// Requests larger than the controller's MDTS are split into several commands; requests
// with several iovecs are bounced through one contiguous buffer.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "common/uri.h"

namespace castor::nvmf {

struct NvmfHostOptions {
  std::string hostnqn = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000ca57";
  uint32_t nsid = 1;
  bool hdgst = false;
  bool ddgst = false;
  uint16_t queue_depth = 128;  // per I/O queue; the target must allow it (MQES)
  uint64_t io_timeout_ms = 30'000;
  uint32_t keep_alive_ms = 10'000;
  uint64_t connect_timeout_ms = 3'000;
  uint64_t reconnect_delay_ms = 500;
  uint64_t reconnect_delay_max_ms = 5'000;
  uint64_t ctrl_loss_timeout_ms = 30'000;
  std::optional<Uuid> hostid;  // unset: derived from hostnqn (host_id())

  // The host identifier this host connects with.
  bdev::HostId host_id() const;
  // Errors: InvalidArgument naming the bad or unknown key.
  // Unset keys keep their values in `defaults` (the first form: these defaults).
  static Result<NvmfHostOptions> from_uri(const Uri& uri) { return from_uri(uri, NvmfHostOptions{}); }
  static Result<NvmfHostOptions> from_uri(const Uri& uri, const NvmfHostOptions& defaults);
};

enum class ControllerState : uint8_t { kConnecting, kLive, kResetting, kLost, kStopped };
const char* controller_state_name(ControllerState s);

struct NvmfBdevStatus {
  ControllerState state = ControllerState::kConnecting;
  uint64_t resets = 0;      // times the controller was torn down after a failure
  uint64_t reconnects = 0;  // successful reconnects
  uint64_t timeouts = 0;    // commands that timed out
  uint64_t events = 0;      // asynchronous events received (namespace notices, ...)
  std::string last_error;
  struct Path {
    std::string address;  // HOST:PORT
    ControllerState state = ControllerState::kConnecting;
    std::string ana_state;  // optimized, non_optimized, inaccessible, persistent_loss, change
  };
  std::vector<Path> paths;  // every path, the URI's address first (the fields above are its)
};

// The module (scheme "nvmf"). Register it in the engine's registry. `defaults`: the
// options of a URI that does not set them (the engine sets its node's host NQN, so that
// each engine is its own reservation holder on the replicas it reaches).
std::unique_ptr<bdev::BdevModule> make_nvmf_bdev_module(NvmfHostOptions defaults = {});

// Status of an nvmf bdev. Errors: InvalidArgument if `b` is not one.
Result<NvmfBdevStatus> nvmf_bdev_status(bdev::Bdev& b);
// The host identifier an nvmf bdev connects with: the `self` its reservation() takes.
// Errors: InvalidArgument if `b` is not one.
Result<bdev::HostId> nvmf_bdev_host_id(bdev::Bdev& b);

}  // namespace castor::nvmf
