#pragma once
// What the node plugin does to the node's block devices and mounts: reading the mount
// table, probing a device for a file system (libblkid), making one (mkfs.ext4, mkfs.xfs),
// mounting, bind-mounting and unmounting, growing a file system (resize2fs, xfs_growfs),
// and usage (statvfs).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace castor::csi {

// One line of /proc/self/mountinfo.
struct MountEntry {
  std::string root;        // the mounted subtree of the source file system
  std::string mount_point;
  std::string options;     // per-mount options (rw/ro, ...)
  std::string fs_type;
  std::string source;      // the device, or what the file system calls its source
  uint32_t major = 0;
  uint32_t minor = 0;
  bool read_only() const;
};

// Parses mountinfo text (proc(5)); lines that do not parse are skipped, never trusted in
// part. Octal escapes (\040 for a space) in paths are decoded.
std::vector<MountEntry> parse_mountinfo(std::string_view text);
// The topmost mount at `path`, if any.
Result<std::optional<MountEntry>> mount_at(const std::string& path);

struct Probe {
  std::string fs_type;   // "" when the device carries no file system
  std::string other;     // a partition table or another signature found instead
};
// Looks for a file system or any other signature on `device`.
Result<Probe> probe_device(const std::string& device);

// mkfs.<fs_type> on a device found blank.
Status make_fs(const std::string& device, const std::string& fs_type);
Status mount_fs(const std::string& device, const std::string& target, const std::string& fs_type,
                const std::vector<std::string>& flags, bool read_only);
// Bind-mounts `source` (a directory or a device node) onto `target`, read-only if asked.
Status bind_mount(const std::string& source, const std::string& target, bool read_only);
// Unmounts `path` if something is mounted there (OK if nothing is); FAILED_PRECONDITION
// (kBusy) if it is in use.
Status unmount(const std::string& path);
// Grows the file system mounted at `mount_point` on `device` to the device's size.
Status grow_fs(const std::string& device, const std::string& mount_point, const std::string& fs_type);

struct Usage {
  int64_t bytes_total = 0, bytes_available = 0, bytes_used = 0;
  int64_t inodes_total = 0, inodes_free = 0, inodes_used = 0;
};
Result<Usage> fs_usage(const std::string& path);
Result<uint64_t> device_size(const std::string& device);

}  // namespace castor::csi
