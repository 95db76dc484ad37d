#pragma once
// CSI's requests in Castor's terms: the driver's names and topology keys, StorageClass
// parameters, capacity ranges, volume capabilities, and CSI volume names. Pure functions
// (no I/O), shared by the controller and node services and tested on their own.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "csi/v1/csi.pb.h"
#include "common/status.h"

namespace castor::csi {

inline constexpr const char* kDriverName = "io.castor.csi";
// Topology segments of every node running castor-csi --mode node: kCsiNodeKey=kCsiNodeValue
// on every node (a Castor volume is reachable over the network from each of them, so it
// is what a volume's accessible_topology says) and kNodeKey=<node name>.
inline constexpr const char* kCsiNodeKey = "csi.castor.io/csi-node";
inline constexpr const char* kCsiNodeValue = "castor";
inline constexpr const char* kNodeKey = "csi.castor.io/node";

inline constexpr uint64_t kBlock = 4096;
inline constexpr uint64_t kDefaultVolumeBytes = 1ull << 30;  // no capacity_range given

// StorageClass parameters (CreateVolume.parameters). Keys starting with
// "csi.storage.k8s.io/" are Kubernetes' own and are ignored; any other unknown key is an
// error, so a typo does not silently give a volume other than the one asked for.
//   repl      1..8, default 1     replicas
//   thin      true|false (false)  thin-provisioned replicas
//   protocol  nvmf|iscsi|nbd      how the volume is exported to the node (nvmf)
//   fsType    ext4|xfs            file system for mount volumes (the capability's fs_type wins)
struct VolumeParams {
  uint32_t repl = 1;
  bool thin = false;
  std::string protocol = "nvmf";
  std::string fs_type;  // empty: not given

  // As volume_context (what castor-csi --mode node reads back): {"protocol", "repl", "thin"}.
  std::map<std::string, std::string> context() const;
};
Result<VolumeParams> parse_params(const google::protobuf::Map<std::string, std::string>& params);

// The volume size for a CSI capacity range: required_bytes rounded up to 4 KiB (the
// default size when nothing is required), at most limit_bytes. Negative values are
// kInvalidArgument; a range no 4 KiB multiple fits is kUnsupported (OUT_OF_RANGE).
Result<uint64_t> size_for_range(const ::csi::v1::CapacityRange* range);
// Whether an existing volume of `size` satisfies the range.
bool size_fits_range(uint64_t size, const ::csi::v1::CapacityRange* range);

// Why Castor cannot serve `cap`, or nullopt when it can. Castor volumes are single-node:
// SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, SINGLE_NODE_SINGLE_WRITER and
// SINGLE_NODE_MULTI_WRITER; block or mount access, file systems ext4 and xfs ("" = ext4).
std::optional<std::string> unsupported_capability(const ::csi::v1::VolumeCapability& cap);
// The file system a mount capability asks for ("ext4" when it names none).
std::string fs_type_of(const ::csi::v1::VolumeCapability& cap);
bool is_read_only_mode(const ::csi::v1::VolumeCapability& cap);

// The castor-control volume name for a CSI volume name: the name itself when castor-control
// accepts it ([A-Za-z0-9._-], 1..128 bytes), else "csi-" and 40 hex digits of its SHA-256.
// Deterministic, so CreateVolume's idempotency on the CSI name holds.
std::string control_volume_name(const std::string& csi_name);
// The volume UUID Kubernetes' name carries ("pvc-<uuid>" -> "<uuid>"), else "".
std::string uuid_from_name(const std::string& csi_name);

}  // namespace castor::csi
