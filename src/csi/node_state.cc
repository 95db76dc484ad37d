#include "csi/node_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/json_fields.h"

namespace castor::csi {

namespace {
constexpr const char* kFormat = "castor-csi-volume";

std::string str_field(const nlohmann::json& j, const char* key, bool required = true) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (!required) return "";
    throw std::invalid_argument(fmt::format("field '{}' is missing", key));
  }
  if (!it->is_string()) throw std::invalid_argument(fmt::format("field '{}' is not a string", key));
  return it->get<std::string>();
}

void require_absolute(const std::string& p, const char* what) {
  if (p.empty() || p[0] != '/' || p.find('\0') != std::string::npos) {
    throw std::invalid_argument(fmt::format("{} '{}' is not an absolute path", what, p));
  }
}
}  // namespace

bool valid_volume_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  for (unsigned char c : id) {
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

std::string staged_to_json(const StagedVolume& v) {
  nlohmann::json j = {{"format", kFormat},       {"version", 1},
                      {"volume_id", v.volume_id}, {"uri", v.uri},
                      {"device", v.device},       {"staging_path", v.staging_path},
                      {"access", v.access},       {"fs_type", v.fs_type},
                      {"mount_flags", v.mount_flags}};
  nlohmann::json pubs = nlohmann::json::array();
  for (const auto& p : v.publications) pubs.push_back({{"target", p.target}, {"readonly", p.readonly}});
  j["publications"] = pubs;
  return j.dump(2) + "\n";
}

Result<StagedVolume> staged_from_json(const std::string& text) {
  try {
    auto j = nlohmann::json::parse(text);
    if (!j.is_object()) throw std::invalid_argument("not a JSON object");
    if (str_field(j, "format") != kFormat) throw std::invalid_argument("format is not castor-csi-volume");
    if (uint_field<uint32_t>(j, "version") != 1) throw std::invalid_argument("unknown version");
    StagedVolume v;
    v.volume_id = str_field(j, "volume_id");
    if (!valid_volume_id(v.volume_id)) throw std::invalid_argument("bad volume_id");
    v.uri = str_field(j, "uri");
    v.device = str_field(j, "device");
    v.staging_path = str_field(j, "staging_path");
    require_absolute(v.staging_path, "staging_path");
    v.access = str_field(j, "access");
    if (v.access != "mount" && v.access != "block") throw std::invalid_argument("access is not mount or block");
    v.fs_type = str_field(j, "fs_type", false);
    if (auto it = j.find("mount_flags"); it != j.end()) {
      if (!it->is_array()) throw std::invalid_argument("mount_flags is not an array");
      for (const auto& f : *it) {
        if (!f.is_string()) throw std::invalid_argument("mount_flags holds a non-string");
        v.mount_flags.push_back(f.get<std::string>());
      }
    }
    auto pubs = j.find("publications");
    if (pubs == j.end() || !pubs->is_array()) throw std::invalid_argument("publications is not an array");
    for (const auto& p : *pubs) {
      if (!p.is_object()) throw std::invalid_argument("a publication is not an object");
      StagedVolume::Publication pub;
      pub.target = str_field(p, "target");
      require_absolute(pub.target, "target");
      auto ro = p.find("readonly");
      if (ro == p.end() || !ro->is_boolean()) throw std::invalid_argument("readonly is not a boolean");
      pub.readonly = ro->get<bool>();
      v.publications.push_back(std::move(pub));
    }
    return v;
  } catch (const std::exception& e) {
    return make_error(Errc::kInvalidArgument, "volume state: {}", e.what());
  }
}

Status NodeState::open() {
  std::error_code ec;
  std::filesystem::create_directories(dir_ + "/volumes", ec);
  if (ec) return make_error(Errc::kIoError, "cannot create {}/volumes: {}", dir_, ec.message());
  return Status::ok();
}

std::string NodeState::path_of(const std::string& volume_id) const {
  return dir_ + "/volumes/" + volume_id + ".json";
}

Result<std::optional<StagedVolume>> NodeState::load(const std::string& volume_id) const {
  if (!valid_volume_id(volume_id)) return std::optional<StagedVolume>();
  std::ifstream in(path_of(volume_id));
  if (!in) {
    if (errno == ENOENT) return std::optional<StagedVolume>();
    return make_error(Errc::kIoError, "cannot read {}: {}", path_of(volume_id), std::strerror(errno));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto v = staged_from_json(ss.str());
  if (!v) return make_error(Errc::kInternal, "{}: {}", path_of(volume_id), v.status().message());
  if (v->volume_id != volume_id) return make_error(Errc::kInternal, "{}: holds another volume", path_of(volume_id));
  return std::optional<StagedVolume>(std::move(*v));
}

Status NodeState::save(const StagedVolume& v) const {
  if (!valid_volume_id(v.volume_id)) return make_error(Errc::kInvalidArgument, "bad volume id");
  const std::string path = path_of(v.volume_id), tmp = path + ".tmp";
  const std::string text = staged_to_json(v);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(Errc::kIoError, "cannot write {}: {}", tmp, std::strerror(errno));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return make_error(Errc::kIoError, "cannot write {}", path);
  }
  int dfd = ::open((dir_ + "/volumes").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::ok();
}

std::vector<std::string> NodeState::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/volumes", ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) {
      const std::string id = n.substr(0, n.size() - 5);
      if (valid_volume_id(id)) out.push_back(id);
    }
  }
  return out;
}

Status NodeState::remove(const std::string& volume_id) const {
  if (::unlink(path_of(volume_id).c_str()) != 0 && errno != ENOENT) {
    return make_error(Errc::kIoError, "cannot remove {}: {}", path_of(volume_id), std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace castor::csi
