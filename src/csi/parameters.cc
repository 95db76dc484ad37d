#include "csi/parameters.h"

#include <nettle/sha2.h>

#include <cctype>

#include "common/uuid.h"

namespace castor::csi {

namespace v1 = ::csi::v1;

std::map<std::string, std::string> VolumeParams::context() const {
  return {{"protocol", protocol}, {"repl", std::to_string(repl)}, {"thin", thin ? "true" : "false"}};
}

Result<VolumeParams> parse_params(const google::protobuf::Map<std::string, std::string>& params) {
  VolumeParams p;
  for (const auto& [k, v] : params) {
    if (k.rfind("csi.storage.k8s.io/", 0) == 0) continue;
    if (k == "repl") {
      if (v.empty() || v.size() > 1 || v[0] < '1' || v[0] > '8') {
        return make_error(Errc::kInvalidArgument, "parameter repl='{}': want 1..8", v);
      }
      p.repl = static_cast<uint32_t>(v[0] - '0');
    } else if (k == "thin") {
      if (v == "true") {
        p.thin = true;
      } else if (v == "false") {
        p.thin = false;
      } else {
        return make_error(Errc::kInvalidArgument, "parameter thin='{}': want true or false", v);
      }
    } else if (k == "protocol") {
      if (v != "nvmf" && v != "iscsi" && v != "nbd") {
        return make_error(Errc::kInvalidArgument, "parameter protocol='{}': want nvmf, iscsi or nbd", v);
      }
      p.protocol = v;
    } else if (k == "fsType") {
      if (v != "ext4" && v != "xfs") {
        return make_error(Errc::kInvalidArgument, "parameter fsType='{}': want ext4 or xfs", v);
      }
      p.fs_type = v;
    } else {
      return make_error(Errc::kInvalidArgument,
                        "unknown parameter '{}' (known: repl, thin, protocol, fsType)", k);
    }
  }
  return p;
}

Result<uint64_t> size_for_range(const v1::CapacityRange* range) {
  const int64_t req = range ? range->required_bytes() : 0;
  const int64_t lim = range ? range->limit_bytes() : 0;
  if (req < 0 || lim < 0) {
    return make_error(Errc::kInvalidArgument, "capacity_range: negative bytes ({}, {})", req, lim);
  }
  if (lim > 0 && req > lim) {
    return make_error(Errc::kInvalidArgument, "capacity_range: required_bytes {} > limit_bytes {}", req, lim);
  }
  uint64_t size = req > 0 ? (static_cast<uint64_t>(req) + kBlock - 1) / kBlock * kBlock : kDefaultVolumeBytes;
  if (lim > 0 && size > static_cast<uint64_t>(lim)) {
    if (req > 0) {
      return make_error(Errc::kUnsupported,
                        "capacity_range: no multiple of 4096 bytes lies in [{}, {}]", req, lim);
    }
    size = static_cast<uint64_t>(lim) / kBlock * kBlock;
    if (size == 0) return make_error(Errc::kUnsupported, "capacity_range: limit_bytes {} < 4096", lim);
  }
  return size;
}

bool size_fits_range(uint64_t size, const v1::CapacityRange* range) {
  if (!range) return true;
  if (range->required_bytes() > 0 && size < static_cast<uint64_t>(range->required_bytes())) return false;
  if (range->limit_bytes() > 0 && size > static_cast<uint64_t>(range->limit_bytes())) return false;
  return true;
}

std::optional<std::string> unsupported_capability(const v1::VolumeCapability& cap) {
  using Mode = v1::VolumeCapability::AccessMode;
  switch (cap.access_mode().mode()) {
    case Mode::SINGLE_NODE_WRITER:
    case Mode::SINGLE_NODE_READER_ONLY:
    case Mode::SINGLE_NODE_SINGLE_WRITER:
    case Mode::SINGLE_NODE_MULTI_WRITER:
      break;
    case Mode::UNKNOWN:
      return "the capability has no access mode";
    default:
      return fmt::format("access mode {} is not supported (Castor volumes are single-node)",
                         Mode::Mode_Name(cap.access_mode().mode()));
  }
  if (cap.has_block()) return std::nullopt;
  if (!cap.has_mount()) return "the capability is neither block nor mount";
  const auto& fs = cap.mount().fs_type();
  if (!fs.empty() && fs != "ext4" && fs != "xfs") {
    return fmt::format("file system '{}' is not supported (ext4, xfs)", fs);
  }
  return std::nullopt;
}

std::string fs_type_of(const v1::VolumeCapability& cap) {
  return cap.mount().fs_type().empty() ? "ext4" : cap.mount().fs_type();
}

bool is_read_only_mode(const v1::VolumeCapability& cap) {
  return cap.access_mode().mode() == v1::VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY;
}

std::string control_volume_name(const std::string& csi_name) {
  bool ok = !csi_name.empty() && csi_name.size() <= 128;
  for (unsigned char c : csi_name) {
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') ok = false;
  }
  if (ok) return csi_name;
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, csi_name.size(), reinterpret_cast<const uint8_t*>(csi_name.data()));
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, sizeof digest, digest);
  std::string out = "csi-";
  for (int i = 0; i < 20; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

std::string uuid_from_name(const std::string& csi_name) {
  if (csi_name.rfind("pvc-", 0) != 0) return "";
  std::string rest = csi_name.substr(4);
  auto u = Uuid::parse(rest);
  return u ? u->to_string() : "";
}

}  // namespace castor::csi
