#pragma once
// The node's kernel initiators, one per protocol castor-control publishes volumes with:
//   nvmf://HOST:PORT/NQN      nvme-cli (nvme connect / disconnect), the kernel's nvme-tcp
//   iscsi://HOST:PORT/IQN/LUN open-iscsi (iscsiadm; iscsid must run on the node)
//   nbd://HOST:PORT/EXPORT    nbd-client, the kernel's nbd
// A connected volume is found by what identifies it (the subsystem NQN in sysfs, the
// iSCSI session's target name and LUN, the NBD device nbd-client was told to use), never
// by guessing the newest device.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace castor::csi {

struct TargetAddress {
  std::string protocol;  // nvmf, iscsi, nbd
  std::string host;
  uint16_t port = 0;
  std::string name;      // NQN, IQN or export name
  uint32_t lun = 0;      // iSCSI
  std::string uri;

  // Validates everything a command line will carry (no option-like or odd characters).
  static Result<TargetAddress> parse(const std::string& uri);
};

struct InitiatorOptions {
  uint32_t nvme_ctrl_loss_tmo_s = 1800;  // how long the kernel keeps reconnecting a lost controller
  uint32_t nvme_reconnect_delay_s = 2;
  std::chrono::milliseconds device_wait{30000};  // for the block device to appear
};

class Initiator {
 public:
  virtual ~Initiator() = default;
  // Connects unless already connected; returns the block device (/dev/...).
  virtual Result<std::string> connect(const TargetAddress& t) = 0;
  // The block device of a connected target; nullopt when not connected. `hint`: the
  // device recorded at connect (the only way to know an NBD device).
  virtual Result<std::optional<std::string>> find(const TargetAddress& t, const std::string& hint) = 0;
  // Disconnects (OK when not connected).
  virtual Status disconnect(const TargetAddress& t, const std::string& device) = 0;
  // Makes the kernel read the device's size again after the volume grew.
  virtual Status rescan(const TargetAddress& t, const std::string& device) = 0;
};

std::unique_ptr<Initiator> make_initiator(const std::string& protocol, const InitiatorOptions& opts);

// The kernel's NVMe controllers of one subsystem (its paths, with native multipath), as
// sysfs shows them: /sys/class/nvme/nvmeX/{subsysnqn,state,address}.
struct NvmeController {
  std::string name;   // nvme0
  std::string state;  // live, connecting, resetting, deleting, ...
  std::string host;   // traddr
  uint16_t port = 0;  // trsvcid
};
std::vector<NvmeController> nvme_controllers(const std::string& nqn);
// A controller's sysfs `address` ("traddr=10.0.0.2,trsvcid=4420[,src_addr=...]") into
// `c.host` and `c.port`; fields that are missing or malformed stay empty / 0.
void parse_nvme_address(const std::string& address, NvmeController* c);
// Connects one more path to t's subsystem (nvme connect), whatever is connected already.
Status nvme_connect_path(const TargetAddress& t, const InitiatorOptions& opts);
// Disconnects one controller (nvme disconnect -d nvmeX).
Status nvme_disconnect_controller(const std::string& name);

}  // namespace castor::csi
