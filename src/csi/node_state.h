#pragma once
// What the node plugin has staged, one JSON file per volume in --state-dir
// (DIR/volumes/<volume_id>.json), written atomically (temporary file, fsync, rename) before
// the call that changed it returns. NodeUnstageVolume and NodeUnpublishVolume find what
// to undo there after a plugin restart (an NBD device, for one, cannot be found from the
// kernel's state alone), and NodeGetVolumeStats knows which paths belong to a volume.
//
// Format "castor-csi-volume", version 1:
//   {"format":"castor-csi-volume","version":1,"volume_id":"...","uri":"nvmf://...",
//    "device":"/dev/nvme0n1","staging_path":"...","access":"mount"|"block",
//    "fs_type":"ext4","mount_flags":["..."],
//    "publications":[{"target":"...","readonly":false}]}

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace castor::csi {

struct StagedVolume {
  struct Publication {
    std::string target;
    bool readonly = false;
    bool operator==(const Publication&) const = default;
  };
  std::string volume_id;
  std::string uri;
  std::string device;
  std::string staging_path;
  std::string access;  // mount or block
  std::string fs_type;
  std::vector<std::string> mount_flags;
  std::vector<Publication> publications;
};

std::string staged_to_json(const StagedVolume& v);
// Validates every field (types, the format, absolute paths) before use.
Result<StagedVolume> staged_from_json(const std::string& text);

// A volume id usable in a file name: [A-Za-z0-9._-], 1..128 bytes, not "." or "..".
bool valid_volume_id(const std::string& id);

class NodeState {
 public:
  explicit NodeState(std::string dir) : dir_(std::move(dir)) {}
  Status open();  // creates DIR/volumes
  Result<std::optional<StagedVolume>> load(const std::string& volume_id) const;
  Status save(const StagedVolume& v) const;
  Status remove(const std::string& volume_id) const;
  // The ids of every recorded volume.
  std::vector<std::string> list() const;

 private:
  std::string path_of(const std::string& volume_id) const;
  std::string dir_;
};

}  // namespace castor::csi
