#include "csi/node.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "csi/errors.h"
#include "csi/mounter.h"
#include "csi/parameters.h"

namespace castor::csi {

namespace v1 = ::csi::v1;
using C = grpc::StatusCode;
namespace fs = std::filesystem;

namespace {

// Whether the mount `m` is of block device `device`.
bool mount_is_device(const MountEntry& m, const std::string& device) {
  struct stat st {};
  if (::stat(device.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return false;
  return major(st.st_rdev) == m.major && minor(st.st_rdev) == m.minor;
}

Status make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return make_error(Errc::kIoError, "cannot create {}: {}", path, ec.message());
  return Status::ok();
}

Status make_file(const std::string& path) {
  if (Status s = make_dirs(fs::path(path).parent_path().string()); !s) return s;
  int fd = ::open(path.c_str(), O_CREAT | O_RDONLY | O_CLOEXEC, 0640);
  if (fd < 0) return make_error(Errc::kIoError, "cannot create {}: {}", path, std::strerror(errno));
  ::close(fd);
  return Status::ok();
}

bool path_belongs(const StagedVolume& v, const std::string& path) {
  if (path == v.staging_path) return true;
  return std::any_of(v.publications.begin(), v.publications.end(),
                     [&](const auto& p) { return p.target == path; });
}

}  // namespace

NodeService::NodeService(NodeOptions opts, std::unique_ptr<NodeState> state)
    : opts_(std::move(opts)), state_(std::move(state)) {
  for (const char* p : {"nvmf", "iscsi", "nbd"}) initiators_[p] = make_initiator(p, opts_.initiator);
}

grpc::Status NodeService::load(const std::string& volume_id, StagedVolume* out) {
  auto v = state_->load(volume_id);
  if (!v) return to_grpc(v.status());
  if (!*v) return csi_error(C::NOT_FOUND, "volume {} is not staged on node {}", volume_id, opts_.node_name);
  *out = std::move(**v);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------- stage / unstage

grpc::Status NodeService::NodeStageVolume(grpc::ServerContext*, const v1::NodeStageVolumeRequest* req,
                                          v1::NodeStageVolumeResponse*) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->staging_target_path().empty()) return csi_error(C::INVALID_ARGUMENT, "staging_target_path is required");
  if (!req->has_volume_capability()) return csi_error(C::INVALID_ARGUMENT, "volume_capability is required");
  if (auto why = unsupported_capability(req->volume_capability())) return csi_error(C::INVALID_ARGUMENT, "{}", *why);
  if (!valid_volume_id(req->volume_id())) return csi_error(C::NOT_FOUND, "no Castor volume {}", req->volume_id());
  auto uri = req->publish_context().find("uri");
  if (uri == req->publish_context().end()) {
    return csi_error(C::INVALID_ARGUMENT, "publish_context has no 'uri' (ControllerPublishVolume returns it)");
  }
  auto target = TargetAddress::parse(uri->second);
  if (!target) return to_grpc(target.status());
  const auto& cap = req->volume_capability();
  const std::string access = cap.has_block() ? "block" : "mount";
  const std::string fs_type = cap.has_block() ? "" : fs_type_of(cap);
  const std::string& path = req->staging_target_path();

  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  auto prior = state_->load(req->volume_id());
  if (!prior) return to_grpc(prior.status());
  if (*prior && (*prior)->uri != target->uri && (*prior)->staging_path == path) {
    // Published again at another address (the nexus moved while the node was away, or the
    // node rebooted): the old record is stale if nothing of it is left: its target not
    // connected, nothing mounted at the staging path or at any of its targets.
    auto old = TargetAddress::parse((*prior)->uri);
    auto dev = old ? initiator(old->protocol).find(*old, (*prior)->device)
                   : Result<std::optional<std::string>>(std::optional<std::string>());
    auto staged = mount_at(path);
    bool mounted = !staged || *staged;
    for (const auto& pub : (*prior)->publications) {
      auto m = mount_at(pub.target);
      mounted = mounted || !m || *m;
    }
    if (dev && !*dev && !mounted) {
      spdlog::info("NodeStageVolume {}: the record of {} is stale (not connected, not mounted)", req->volume_id(),
                   (*prior)->uri);
      prior = std::optional<StagedVolume>();
    }
  }
  if (*prior) {
    const auto& p = **prior;
    if (p.staging_path != path || p.access != access || p.fs_type != fs_type || p.uri != target->uri) {
      return csi_error(C::ALREADY_EXISTS, "volume {} is staged at {} ({} {}, {}): not what this request asks for",
                       req->volume_id(), p.staging_path, p.access, p.fs_type, p.uri);
    }
  }

  auto device = initiator(target->protocol).connect(*target);
  if (!device) return to_grpc(device.status());
  StagedVolume rec;
  rec.volume_id = req->volume_id();
  rec.uri = target->uri;
  rec.device = *device;
  rec.staging_path = path;
  rec.access = access;
  rec.fs_type = fs_type;
  if (cap.has_mount()) rec.mount_flags.assign(cap.mount().mount_flags().begin(), cap.mount().mount_flags().end());
  if (*prior) rec.publications = (*prior)->publications;
  // Recorded before anything is mounted: an unstage after a failure below still knows
  // what to disconnect.
  if (Status s = state_->save(rec); !s) return to_grpc(s);

  auto undo = [&](const grpc::Status& why) {
    if (!*prior) {
      (void)initiator(target->protocol).disconnect(*target, rec.device);
      (void)state_->remove(rec.volume_id);
    }
    return why;
  };
  if (access == "mount") {
    if (Status s = make_dirs(path); !s) return undo(to_grpc(s));
    auto m = mount_at(path);
    if (!m) return undo(to_grpc(m.status()));
    if (*m) {
      if (!mount_is_device(**m, rec.device)) {
        return undo(csi_error(C::FAILED_PRECONDITION, "{} has another file system mounted ({} from {})", path,
                              (*m)->fs_type, (*m)->source));
      }
    } else {
      auto probe = probe_device(rec.device);
      if (!probe) return undo(to_grpc(probe.status()));
      if (!probe->other.empty()) {
        return undo(csi_error(C::FAILED_PRECONDITION, "{} holds {}: it will not be formatted", rec.device,
                              probe->other));
      }
      if (probe->fs_type.empty()) {
        if (Status s = make_fs(rec.device, fs_type); !s) return undo(to_grpc(s));
      } else if (probe->fs_type != fs_type) {
        return undo(csi_error(C::FAILED_PRECONDITION, "volume {} holds a {} file system, not {}",
                              req->volume_id(), probe->fs_type, fs_type));
      }
      if (Status s = mount_fs(rec.device, path, fs_type, rec.mount_flags, is_read_only_mode(cap)); !s) {
        return undo(to_grpc(s));
      }
    }
  }
  spdlog::info("NodeStageVolume {}: {} -> {} ({}{}{})", rec.volume_id, rec.uri, rec.device, access,
               fs_type.empty() ? "" : " ", fs_type);
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeUnstageVolume(grpc::ServerContext*, const v1::NodeUnstageVolumeRequest* req,
                                            v1::NodeUnstageVolumeResponse*) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->staging_target_path().empty()) return csi_error(C::INVALID_ARGUMENT, "staging_target_path is required");
  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  auto rec = state_->load(req->volume_id());
  if (!rec) return to_grpc(rec.status());
  if (!*rec) return grpc::Status::OK;  // not staged
  StagedVolume& v = **rec;
  if (v.staging_path != req->staging_target_path()) {
    return csi_error(C::NOT_FOUND, "volume {} is staged at {}, not at {}", v.volume_id, v.staging_path,
                     req->staging_target_path());
  }
  for (const auto& p : v.publications) {
    auto m = mount_at(p.target);
    if (m && *m) {
      return csi_error(C::FAILED_PRECONDITION, "volume {} is still published at {}", v.volume_id, p.target);
    }
  }
  if (v.access == "mount") {
    if (Status s = unmount(v.staging_path); !s) return to_grpc(s);
  }
  auto target = TargetAddress::parse(v.uri);
  if (!target) return to_grpc(target.status());
  if (Status s = initiator(target->protocol).disconnect(*target, v.device); !s) return to_grpc(s);
  if (Status s = state_->remove(v.volume_id); !s) return to_grpc(s);
  spdlog::info("NodeUnstageVolume {}: {} disconnected", v.volume_id, v.device);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------- publish / unpublish

grpc::Status NodeService::NodePublishVolume(grpc::ServerContext*, const v1::NodePublishVolumeRequest* req,
                                            v1::NodePublishVolumeResponse*) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->target_path().empty()) return csi_error(C::INVALID_ARGUMENT, "target_path is required");
  if (!req->has_volume_capability()) return csi_error(C::INVALID_ARGUMENT, "volume_capability is required");
  if (auto why = unsupported_capability(req->volume_capability())) return csi_error(C::INVALID_ARGUMENT, "{}", *why);
  if (req->staging_target_path().empty()) {
    return csi_error(C::FAILED_PRECONDITION, "staging_target_path is required (the volume is staged first)");
  }
  const auto& cap = req->volume_capability();
  const bool readonly = req->readonly() || is_read_only_mode(cap);
  const std::string& target = req->target_path();

  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  StagedVolume v;
  if (grpc::Status s = load(req->volume_id(), &v); !s.ok()) {
    if (s.error_code() != C::NOT_FOUND) return s;
    return csi_error(C::FAILED_PRECONDITION, "volume {} is not staged (NodeStageVolume first)", req->volume_id());
  }
  if (v.staging_path != req->staging_target_path()) {
    return csi_error(C::FAILED_PRECONDITION, "volume {} is staged at {}, not at {}", v.volume_id, v.staging_path,
                     req->staging_target_path());
  }
  const std::string access = cap.has_block() ? "block" : "mount";
  if (access != v.access) {
    return csi_error(C::FAILED_PRECONDITION, "volume {} is staged for {} access, not {}", v.volume_id, v.access,
                     access);
  }
  auto same = std::find_if(v.publications.begin(), v.publications.end(),
                           [&](const auto& p) { return p.target == target; });
  if (same != v.publications.end() && same->readonly != readonly) {
    return csi_error(C::ALREADY_EXISTS, "volume {} is published at {} {}", v.volume_id, target,
                     same->readonly ? "read-only" : "read-write");
  }
  if (same == v.publications.end() && !v.publications.empty() &&
      cap.access_mode().mode() == v1::VolumeCapability::AccessMode::SINGLE_NODE_SINGLE_WRITER) {
    return csi_error(C::FAILED_PRECONDITION, "volume {} is single-writer and published at {}", v.volume_id,
                     v.publications.front().target);
  }

  Status made = access == "mount" ? make_dirs(target) : make_file(target);
  if (!made) return to_grpc(made);
  auto m = mount_at(target);
  if (!m) return to_grpc(m.status());
  if (*m) {
    if (!mount_is_device(**m, v.device)) {
      return csi_error(C::FAILED_PRECONDITION, "{} has something else mounted ({})", target, (*m)->source);
    }
    if ((*m)->read_only() != readonly) {
      return csi_error(C::ALREADY_EXISTS, "{} is mounted {}", target, (*m)->read_only() ? "read-only" : "read-write");
    }
  } else {
    const std::string& source = access == "mount" ? v.staging_path : v.device;
    if (Status s = bind_mount(source, target, readonly); !s) return to_grpc(s);
  }
  if (same == v.publications.end()) {
    v.publications.push_back({target, readonly});
    if (Status s = state_->save(v); !s) return to_grpc(s);
  }
  spdlog::info("NodePublishVolume {} at {}{}", v.volume_id, target, readonly ? " (read-only)" : "");
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeUnpublishVolume(grpc::ServerContext*, const v1::NodeUnpublishVolumeRequest* req,
                                              v1::NodeUnpublishVolumeResponse*) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->target_path().empty()) return csi_error(C::INVALID_ARGUMENT, "target_path is required");
  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  const std::string& target = req->target_path();
  auto rec = state_->load(req->volume_id());
  if (!rec) return to_grpc(rec.status());
  if (*rec && !path_belongs(**rec, target)) {
    // Not ours to unmount; still nothing of this volume is at `target`.
    return grpc::Status::OK;
  }
  if (!*rec) {
    // Not staged here: nothing of this volume can be mounted at `target`; remove only what
    // an earlier publish may have created (an empty directory or file).
    auto m = mount_at(target);
    if (m && *m) return csi_error(C::NOT_FOUND, "volume {} is not staged on this node", req->volume_id());
  } else if (Status s = unmount(target); !s) {
    return to_grpc(s);
  }
  std::error_code ec;
  fs::remove(target, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return csi_error(C::INTERNAL, "cannot remove {}: {}", target, ec.message());
  }
  if (*rec) {
    auto& pubs = (*rec)->publications;
    pubs.erase(std::remove_if(pubs.begin(), pubs.end(), [&](const auto& p) { return p.target == target; }),
               pubs.end());
    if (Status s = state_->save(**rec); !s) return to_grpc(s);
  }
  spdlog::info("NodeUnpublishVolume {} from {}", req->volume_id(), target);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------- stats / expand / info

grpc::Status NodeService::NodeGetVolumeStats(grpc::ServerContext*, const v1::NodeGetVolumeStatsRequest* req,
                                             v1::NodeGetVolumeStatsResponse* resp) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->volume_path().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_path is required");
  StagedVolume v;
  if (grpc::Status s = load(req->volume_id(), &v); !s.ok()) return s;
  const std::string& path = req->volume_path();
  if (!path_belongs(v, path) || !fs::exists(path)) {
    return csi_error(C::NOT_FOUND, "volume {} is not at {}", v.volume_id, path);
  }
  auto* cond = resp->mutable_volume_condition();
  auto target = TargetAddress::parse(v.uri);
  auto dev = target ? initiator(target->protocol).find(*target, v.device) : Result<std::optional<std::string>>(target.status());
  if (!dev || !*dev || **dev != v.device) {
    cond->set_abnormal(true);
    cond->set_message(fmt::format("the volume's device {} is gone ({} is not connected)", v.device, v.uri));
  } else {
    cond->set_abnormal(false);
    cond->set_message("connected");
  }
  if (v.access == "block") {
    auto size = device_size(v.device);
    auto* u = resp->add_usage();
    u->set_unit(v1::VolumeUsage::BYTES);
    u->set_total(size ? static_cast<int64_t>(*size) : 0);
    return grpc::Status::OK;
  }
  auto usage = fs_usage(path);
  if (!usage) return to_grpc(usage.status());
  auto* b = resp->add_usage();
  b->set_unit(v1::VolumeUsage::BYTES);
  b->set_total(usage->bytes_total);
  b->set_available(usage->bytes_available);
  b->set_used(usage->bytes_used);
  auto* i = resp->add_usage();
  i->set_unit(v1::VolumeUsage::INODES);
  i->set_total(usage->inodes_total);
  i->set_available(usage->inodes_free);
  i->set_used(usage->inodes_used);
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeExpandVolume(grpc::ServerContext*, const v1::NodeExpandVolumeRequest* req,
                                           v1::NodeExpandVolumeResponse* resp) {
  if (req->volume_id().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_id is required");
  if (req->volume_path().empty()) return csi_error(C::INVALID_ARGUMENT, "volume_path is required");
  auto held = locks_.try_acquire(req->volume_id());
  if (!held) return csi_error(C::ABORTED, "an operation on volume {} is in flight", req->volume_id());
  StagedVolume v;
  if (grpc::Status s = load(req->volume_id(), &v); !s.ok()) return s;
  if (!path_belongs(v, req->volume_path()) || !fs::exists(req->volume_path())) {
    return csi_error(C::NOT_FOUND, "volume {} is not at {}", v.volume_id, req->volume_path());
  }
  auto target = TargetAddress::parse(v.uri);
  if (!target) return to_grpc(target.status());
  if (Status s = initiator(target->protocol).rescan(*target, v.device); !s) {
    if (s.code() == Errc::kUnsupported) return csi_error(C::FAILED_PRECONDITION, "{}", s.message());
    return to_grpc(s);
  }
  const int64_t want = req->has_capacity_range() ? req->capacity_range().required_bytes() : 0;
  // The kernel applies a new namespace/LUN size asynchronously after the rescan.
  Result<uint64_t> size = device_size(v.device);
  for (int i = 0; i < 100 && size && static_cast<int64_t>(*size) < want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    size = device_size(v.device);
  }
  if (!size) return to_grpc(size.status());
  if (static_cast<int64_t>(*size) < want) {
    return csi_error(C::FAILED_PRECONDITION, "device {} is {} bytes, less than the {} asked for", v.device, *size,
                     want);
  }
  if (v.access == "mount") {
    if (Status s = grow_fs(v.device, v.staging_path, v.fs_type); !s) return to_grpc(s);
  }
  spdlog::info("NodeExpandVolume {}: {} is {} bytes", v.volume_id, v.device, *size);
  resp->set_capacity_bytes(static_cast<int64_t>(*size));
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetCapabilities(grpc::ServerContext*, const v1::NodeGetCapabilitiesRequest*,
                                              v1::NodeGetCapabilitiesResponse* resp) {
  using T = v1::NodeServiceCapability::RPC;
  for (auto t : {T::STAGE_UNSTAGE_VOLUME, T::GET_VOLUME_STATS, T::EXPAND_VOLUME, T::VOLUME_CONDITION,
                 T::SINGLE_NODE_MULTI_WRITER}) {
    resp->add_capabilities()->mutable_rpc()->set_type(t);
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetInfo(grpc::ServerContext*, const v1::NodeGetInfoRequest*,
                                      v1::NodeGetInfoResponse* resp) {
  resp->set_node_id(opts_.node_name);
  resp->set_max_volumes_per_node(opts_.max_volumes);
  auto& seg = *resp->mutable_accessible_topology()->mutable_segments();
  for (const auto& [k, val] : opts_.topology) seg[k] = val;
  seg[kCsiNodeKey] = kCsiNodeValue;
  seg[kNodeKey] = opts_.node_name;
  return grpc::Status::OK;
}

}  // namespace castor::csi
