#include "csi/mounter.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "csi/exec.h"

namespace castor::csi {

namespace {

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' &&
        s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

bool parse_u32(std::string_view s, uint32_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

}  // namespace

bool MountEntry::read_only() const {
  std::string_view o = options;
  return o == "ro" || o.rfind("ro,", 0) == 0;
}

std::vector<MountEntry> parse_mountinfo(std::string_view text) {
  std::vector<MountEntry> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    auto f = split_ws(line);
    // id parent major:minor root mount_point options [optional...] - fs_type source super
    size_t dash = 0;
    for (size_t i = 6; i < f.size(); ++i) {
      if (f[i] == "-") {
        dash = i;
        break;
      }
    }
    if (f.size() < 7 || dash == 0 || dash + 2 >= f.size()) continue;
    MountEntry e;
    auto mm = f[2];
    size_t colon = mm.find(':');
    if (colon == std::string_view::npos || !parse_u32(mm.substr(0, colon), &e.major) ||
        !parse_u32(mm.substr(colon + 1), &e.minor)) {
      continue;
    }
    e.root = unescape(f[3]);
    e.mount_point = unescape(f[4]);
    e.options = std::string(f[5]);
    e.fs_type = std::string(f[dash + 1]);
    e.source = unescape(f[dash + 2]);
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::optional<MountEntry>> mount_at(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return make_error(Errc::kIoError, "cannot read /proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  std::optional<MountEntry> found;
  for (auto& e : parse_mountinfo(ss.str())) {
    if (e.mount_point == path) found = std::move(e);  // the last one is on top
  }
  return found;
}

Result<Probe> probe_device(const std::string& device) {
  blkid_probe pr = blkid_new_probe_from_filename(device.c_str());
  if (!pr) return make_error(Errc::kIoError, "cannot open {} to probe it: {}", device, std::strerror(errno));
  blkid_probe_enable_superblocks(pr, 1);
  blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
  blkid_probe_enable_partitions(pr, 1);
  blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
  int rc = blkid_do_safeprobe(pr);
  Probe out;
  if (rc == 0) {
    const char* v = nullptr;
    if (blkid_probe_lookup_value(pr, "TYPE", &v, nullptr) == 0 && v) {
      out.fs_type = v;
    } else if (blkid_probe_lookup_value(pr, "PTTYPE", &v, nullptr) == 0 && v) {
      out.other = fmt::format("a {} partition table", v);
    } else {
      out.other = "an unknown signature";
    }
  } else if (rc == -2) {
    out.other = "several conflicting signatures";
  } else if (rc < 0) {
    blkid_free_probe(pr);
    return make_error(Errc::kIoError, "probing {} failed", device);
  }
  blkid_free_probe(pr);
  return out;
}

Status make_fs(const std::string& device, const std::string& fs_type) {
  std::vector<std::string> argv;
  if (fs_type == "ext4") {
    // No discard: the volume is new (or blank), and a whole-device discard is slow.
    argv = {"mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=1", device};
  } else if (fs_type == "xfs") {
    argv = {"mkfs.xfs", "-q", "-K", device};
  } else {
    return make_error(Errc::kInvalidArgument, "cannot make file system '{}'", fs_type);
  }
  auto r = run_ok(argv, std::chrono::minutes(5));
  if (!r) return r.status();
  spdlog::info("made {} on {}", fs_type, device);
  return Status::ok();
}

Status mount_fs(const std::string& device, const std::string& target, const std::string& fs_type,
                const std::vector<std::string>& flags, bool read_only) {
  std::string opts = read_only ? "ro" : "rw";
  for (const auto& f : flags) opts += "," + f;
  auto r = run_ok({"mount", "-t", fs_type, "-o", opts, device, target}, std::chrono::minutes(2));
  return r ? Status::ok() : r.status();
}

Status bind_mount(const std::string& source, const std::string& target, bool read_only) {
  if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return make_error(Errc::kIoError, "bind mount {} on {}: {}", source, target, std::strerror(errno));
  }
  if (read_only &&
      ::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
    Status s = make_error(Errc::kIoError, "remount {} read-only: {}", target, std::strerror(errno));
    ::umount2(target.c_str(), 0);
    return s;
  }
  return Status::ok();
}

Status unmount(const std::string& path) {
  for (;;) {
    auto m = mount_at(path);
    if (!m) return m.status();
    if (!*m) return Status::ok();
    if (::umount2(path.c_str(), 0) != 0) {
      if (errno == EBUSY) return make_error(Errc::kBusy, "{} is in use: cannot unmount it", path);
      if (errno == EINVAL) return Status::ok();
      return make_error(Errc::kIoError, "unmount {}: {}", path, std::strerror(errno));
    }
  }
}

Status grow_fs(const std::string& device, const std::string& mount_point, const std::string& fs_type) {
  // xfs_growfs without -d only reports the geometry.
  Result<std::string> r = fs_type == "xfs" ? run_ok({"xfs_growfs", "-d", mount_point}, std::chrono::minutes(5))
                                           : run_ok({"resize2fs", device}, std::chrono::minutes(5));
  return r ? Status::ok() : r.status();
}

Result<Usage> fs_usage(const std::string& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) {
    return make_error(errno == ENOENT ? Errc::kNotFound : Errc::kIoError, "statvfs {}: {}", path,
                      std::strerror(errno));
  }
  Usage u;
  u.bytes_total = static_cast<int64_t>(st.f_blocks * st.f_frsize);
  u.bytes_available = static_cast<int64_t>(st.f_bavail * st.f_frsize);
  u.bytes_used = static_cast<int64_t>((st.f_blocks - st.f_bfree) * st.f_frsize);
  u.inodes_total = static_cast<int64_t>(st.f_files);
  u.inodes_free = static_cast<int64_t>(st.f_ffree);
  u.inodes_used = static_cast<int64_t>(st.f_files - st.f_ffree);
  return u;
}

Result<uint64_t> device_size(const std::string& device) {
  int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::kNotFound, "open {}: {}", device, std::strerror(errno));
  uint64_t size = 0;
  int rc = ::ioctl(fd, BLKGETSIZE64, &size);
  int err = errno;
  ::close(fd);
  if (rc != 0) return make_error(Errc::kIoError, "BLKGETSIZE64 {}: {}", device, std::strerror(err));
  return size;
}

}  // namespace castor::csi
