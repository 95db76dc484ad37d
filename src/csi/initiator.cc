#include "csi/initiator.h"

#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "common/uri.h"
#include "csi/exec.h"

namespace castor::csi {

namespace {

using namespace std::chrono_literals;

std::string read_attr(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

// Loads a kernel module the initiator needs; best effort (it may be built in, or loaded
// by the host already, and a container may not be allowed to load modules).
void load_module(const char* name) {
  auto r = run({"modprobe", name}, 30s);
  if (!r || r->exit_code != 0) spdlog::debug("modprobe {} failed (may be built in)", name);
}

// Waits until `probe` returns a device or the deadline passes.
template <class Fn>
Result<std::string> wait_for_device(const TargetAddress& t, std::chrono::milliseconds wait, Fn probe) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto d = probe();
    if (!d) return d.status();
    if (*d) return **d;
    if (std::chrono::steady_clock::now() >= deadline) {
      return make_error(Errc::kTimedOut, "{} connected but no block device appeared within {} ms", t.uri,
                        wait.count());
    }
    std::this_thread::sleep_for(100ms);
  }
}

bool is_namespace_disk(const std::string& n) {
  // nvme<ctrl>n<ns>; the hidden per-path disks of native multipath are nvme<s>c<c>n<ns>.
  if (n.rfind("nvme", 0) != 0) return false;
  size_t i = 4;
  while (i < n.size() && std::isdigit(static_cast<unsigned char>(n[i]))) ++i;
  if (i == 4 || i >= n.size() || n[i] != 'n') return false;
  size_t j = ++i;
  while (i < n.size() && std::isdigit(static_cast<unsigned char>(n[i]))) ++i;
  return i == n.size() && i > j;
}

// ---------------------------------------------------------------- NVMe/TCP

class NvmeInitiator final : public Initiator {
 public:
  explicit NvmeInitiator(const InitiatorOptions& o) : opts_(o) {}

  Result<std::optional<std::string>> find(const TargetAddress& t, const std::string&) override {
    // A namespace disk's parent is its controller (no multipath) or its subsystem (native
    // multipath); both carry subsysnqn.
    for (const auto& n : list_dir("/sys/block")) {
      if (!is_namespace_disk(n)) continue;
      if (read_attr("/sys/block/" + n + "/device/subsysnqn") == t.name) {
        return std::optional<std::string>("/dev/" + n);
      }
    }
    for (const auto& s : list_dir("/sys/class/nvme-subsystem")) {
      const std::string dir = "/sys/class/nvme-subsystem/" + s;
      if (read_attr(dir + "/subsysnqn") != t.name) continue;
      for (const auto& n : list_dir(dir)) {
        if (is_namespace_disk(n)) return std::optional<std::string>("/dev/" + n);
      }
    }
    return std::optional<std::string>();
  }

  Result<std::string> connect(const TargetAddress& t) override {
    auto have = find(t, "");
    if (!have) return have.status();
    if (*have) return **have;
    if (Status s = nvme_connect_path(t, opts_); !s) return s;
    return wait_for_device(t, opts_.device_wait, [&] { return find(t, ""); });
  }

  Status disconnect(const TargetAddress& t, const std::string&) override {
    if (nvme_controllers(t.name).empty()) return Status::ok();
    auto r = run_ok({"nvme", "disconnect", "-n", t.name}, 60s);
    return r ? Status::ok() : r.status();
  }

  Status rescan(const TargetAddress& t, const std::string& device) override {
    // The target announces a size change with an asynchronous event and the kernel
    // re-reads the namespace; ns-rescan does it now for every controller of the subsystem.
    for (const auto& c : nvme_controllers(t.name)) {
      if (c.state != "live") continue;
      auto r = run_ok({"nvme", "ns-rescan", "/dev/" + c.name}, 60s);
      if (!r) return r.status();
    }
    return Status::ok();
  }

 private:
  InitiatorOptions opts_;
};

// ---------------------------------------------------------------- iSCSI

class IscsiInitiator final : public Initiator {
 public:
  explicit IscsiInitiator(const InitiatorOptions& o) : opts_(o) {}

  Result<std::optional<std::string>> find(const TargetAddress& t, const std::string&) override {
    const std::string lun_suffix = ":" + std::to_string(t.lun);
    for (const auto& s : list_dir("/sys/class/iscsi_session")) {
      const std::string sdir = "/sys/class/iscsi_session/" + s;
      if (read_attr(sdir + "/targetname") != t.name) continue;
      for (const auto& tgt : list_dir(sdir + "/device")) {
        if (tgt.rfind("target", 0) != 0) continue;
        for (const auto& hctl : list_dir(sdir + "/device/" + tgt)) {
          if (hctl.size() <= lun_suffix.size() ||
              hctl.compare(hctl.size() - lun_suffix.size(), lun_suffix.size(), lun_suffix) != 0) {
            continue;
          }
          for (const auto& b : list_dir(sdir + "/device/" + tgt + "/" + hctl + "/block")) {
            return std::optional<std::string>("/dev/" + b);
          }
        }
      }
    }
    return std::optional<std::string>();
  }

  Result<std::string> connect(const TargetAddress& t) override {
    auto have = find(t, "");
    if (!have) return have.status();
    if (*have) return **have;
    load_module("iscsi_tcp");
    const std::string portal = t.host + ":" + std::to_string(t.port);
    // The node record is made from the URI (not from a SendTargets answer, whose portal
    // may be an address only the target's host can use).
    auto made = run({"iscsiadm", "-m", "node", "-T", t.name, "-p", portal, "-o", "new"}, 60s);
    if (!made) return made.status();
    auto r = run({"iscsiadm", "-m", "node", "-T", t.name, "-p", portal, "--login"}, 120s);
    if (!r) return r.status();
    if (r->exit_code != 0 && r->exit_code != 15) {  // 15: a session exists already
      return make_error(Errc::kUnavailable, "iscsiadm login to {} failed (exit {}): {}", t.uri, r->exit_code,
                        r->output.substr(0, 300));
    }
    return wait_for_device(t, opts_.device_wait, [&] { return find(t, ""); });
  }

  Status disconnect(const TargetAddress& t, const std::string&) override {
    const std::string portal = t.host + ":" + std::to_string(t.port);
    auto r = run({"iscsiadm", "-m", "node", "-T", t.name, "-p", portal, "--logout"}, 120s);
    if (!r) return r.status();
    // 21: no session to log out of.
    if (r->exit_code != 0 && r->exit_code != 21) {
      return make_error(Errc::kIoError, "iscsiadm logout of {} failed (exit {}): {}", t.uri, r->exit_code,
                        r->output.substr(0, 300));
    }
    (void)run({"iscsiadm", "-m", "node", "-T", t.name, "-p", portal, "-o", "delete"}, 60s);
    return Status::ok();
  }

  Status rescan(const TargetAddress& t, const std::string&) override {
    const std::string portal = t.host + ":" + std::to_string(t.port);
    auto r = run_ok({"iscsiadm", "-m", "node", "-T", t.name, "-p", portal, "--rescan"}, 60s);
    return r ? Status::ok() : r.status();
  }

 private:
  InitiatorOptions opts_;
};

// ---------------------------------------------------------------- NBD

class NbdInitiator final : public Initiator {
 public:
  explicit NbdInitiator(const InitiatorOptions& o) : opts_(o) {}

  Result<std::optional<std::string>> find(const TargetAddress&, const std::string& hint) override {
    if (hint.rfind("/dev/nbd", 0) != 0) return std::optional<std::string>();
    const std::string n = hint.substr(5);
    const std::string size = read_attr("/sys/block/" + n + "/size");
    if (size.empty() || size == "0") return std::optional<std::string>();
    return std::optional<std::string>(hint);
  }

  Result<std::string> connect(const TargetAddress& t) override {
    load_module("nbd");
    // One connect at a time: two volumes must not pick the same free device.
    std::lock_guard lk(mu_);
    for (int i = 0; i < 1024; ++i) {
      const std::string n = "nbd" + std::to_string(i);
      if (!exists("/sys/block/" + n)) break;
      if (read_attr("/sys/block/" + n + "/size") != "0") continue;
      const std::string dev = "/dev/" + n;
      // 4 KiB blocks: a Castor volume (pool replicas, the nexus over them) takes no I/O
      // smaller or less aligned than that, and the kernel's NBD client would send 512-byte
      // I/O (which the target refuses with EINVAL) unless told.
      auto r = run_ok({"nbd-client", t.host, std::to_string(t.port), dev, "-N", t.name, "-b", "4096"}, 60s);
      if (!r) return make_error(Errc::kUnavailable, "{}", r.status().message());
      return dev;
    }
    return make_error(Errc::kNoSpace, "no free /dev/nbd* device (load nbd with more nbds_max)");
  }

  Status disconnect(const TargetAddress& t, const std::string& device) override {
    auto have = find(t, device);
    if (!have) return have.status();
    if (!*have) return Status::ok();
    auto r = run_ok({"nbd-client", "-d", device}, 60s);
    return r ? Status::ok() : r.status();
  }

  Status rescan(const TargetAddress& t, const std::string&) override {
    return make_error(Errc::kUnsupported, "an NBD volume cannot grow while connected ({})", t.uri);
  }

 private:
  InitiatorOptions opts_;
  std::mutex mu_;
};

bool safe_token(const std::string& s) {
  if (s.empty() || s.size() > 223 || s[0] == '-') return false;
  for (unsigned char c : s) {
    if (!std::isalnum(c) && c != '.' && c != ':' && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace

std::vector<NvmeController> nvme_controllers(const std::string& nqn) {
  std::vector<NvmeController> out;
  for (const auto& c : list_dir("/sys/class/nvme")) {
    const std::string dir = "/sys/class/nvme/" + c;
    if (read_attr(dir + "/subsysnqn") != nqn) continue;
    NvmeController ctrl;
    ctrl.name = c;
    ctrl.state = read_attr(dir + "/state");
    parse_nvme_address(read_attr(dir + "/address"), &ctrl);
    out.push_back(std::move(ctrl));
  }
  return out;
}

void parse_nvme_address(const std::string& addr, NvmeController* c) {
  size_t pos = 0;
  while (pos < addr.size()) {
    size_t comma = addr.find(',', pos);
    const std::string kv = addr.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (kv.rfind("traddr=", 0) == 0) c->host = kv.substr(7);
    if (kv.rfind("trsvcid=", 0) == 0) {
      const std::string p = kv.substr(8);
      if (!p.empty() && p.size() <= 5 && p.find_first_not_of("0123456789") == std::string::npos) {
        c->port = static_cast<uint16_t>(std::min(std::stoul(p), 65535ul));
      }
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
}

Status nvme_connect_path(const TargetAddress& t, const InitiatorOptions& opts) {
  load_module("nvme-tcp");
  auto r = run_ok({"nvme", "connect", "-t", "tcp", "-a", t.host, "-s", std::to_string(t.port), "-n", t.name,
                   "--ctrl-loss-tmo=" + std::to_string(opts.nvme_ctrl_loss_tmo_s),
                   "--reconnect-delay=" + std::to_string(opts.nvme_reconnect_delay_s)},
                  60s);
  if (!r) return make_error(Errc::kUnavailable, "{}", r.status().message());
  return Status::ok();
}

Status nvme_disconnect_controller(const std::string& name) {
  if (name.rfind("nvme", 0) != 0 || name.find('/') != std::string::npos) {
    return make_error(Errc::kInvalidArgument, "not a controller name: {}", name);
  }
  auto r = run_ok({"nvme", "disconnect", "-d", name}, 60s);
  return r ? Status::ok() : r.status();
}

Result<TargetAddress> TargetAddress::parse(const std::string& uri) {
  auto u = Uri::parse(uri);
  if (!u) return make_error(Errc::kInvalidArgument, "target URI '{}': {}", uri, u.status().message());
  TargetAddress t;
  t.uri = uri;
  t.protocol = u->scheme;
  t.host = u->host;
  if (t.protocol != "nvmf" && t.protocol != "iscsi" && t.protocol != "nbd") {
    return make_error(Errc::kInvalidArgument, "target URI '{}': unknown protocol", uri);
  }
  if (!u->port || *u->port == 0 || !safe_token(t.host)) {
    return make_error(Errc::kInvalidArgument, "target URI '{}': want PROTOCOL://HOST:PORT/NAME", uri);
  }
  t.port = *u->port;
  std::string path = u->name_from_path();
  if (t.protocol == "iscsi") {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) {
      return make_error(Errc::kInvalidArgument, "target URI '{}': want iscsi://HOST:PORT/IQN/LUN", uri);
    }
    const std::string lun = path.substr(slash + 1);
    if (lun.empty() || lun.size() > 5 || lun.find_first_not_of("0123456789") != std::string::npos) {
      return make_error(Errc::kInvalidArgument, "target URI '{}': bad LUN '{}'", uri, lun);
    }
    t.lun = static_cast<uint32_t>(std::stoul(lun));
    path = path.substr(0, slash);
  }
  if (!safe_token(path)) {
    return make_error(Errc::kInvalidArgument, "target URI '{}': bad target name '{}'", uri, path);
  }
  t.name = path;
  return t;
}

std::unique_ptr<Initiator> make_initiator(const std::string& protocol, const InitiatorOptions& opts) {
  if (protocol == "nvmf") return std::make_unique<NvmeInitiator>(opts);
  if (protocol == "iscsi") return std::make_unique<IscsiInitiator>(opts);
  if (protocol == "nbd") return std::make_unique<NbdInitiator>(opts);
  return nullptr;
}

}  // namespace castor::csi
