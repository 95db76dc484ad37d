#include "nexus/health_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/json_fields.h"

namespace castor::nexus {

namespace {
uint64_t unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}
}  // namespace

template <class F>
Status ChildHealthStore::update(const std::string& nexus, F&& f) {
  std::lock_guard lk(update_mu_);
  auto h = load(nexus);
  if (!h) return h.status();
  if (auto st = f(*h); !st) return st;
  return replace(nexus, *h);
}

Status ChildHealthStore::mark_unhealthy(const std::string& nexus, const std::string& uri,
                                        const std::string& reason) {
  return update(nexus, [&](NexusHealth& h) {
    auto& r = h.children;
    auto& c = r[uri];
    c.healthy = false;
    c.reason = reason;
    c.updated_unix_ms = unix_ms();
    c.log.reset();
    return Status::ok();
  });
}

Status ChildHealthStore::mark_healthy(const std::string& nexus, const std::string& uri) {
  return update(nexus, [&](NexusHealth& h) {
    auto& r = h.children;
    auto& c = r[uri];
    c.healthy = true;
    c.reason.clear();
    c.updated_unix_ms = unix_ms();
    c.log.reset();
    return Status::ok();
  });
}

Status ChildHealthStore::save_log(const std::string& nexus, const std::string& uri,
                                  const MissedWriteLog& log) {
  return update(nexus, [&](NexusHealth& h) {
    auto& r = h.children;
    auto it = r.find(uri);
    if (it == r.end() || it->second.healthy) {
      return make_error(Errc::kNotFound, "nexus '{}' has no unhealthy record for child '{}'",
                        nexus, uri);
    }
    it->second.log = log;
    it->second.updated_unix_ms = unix_ms();
    return Status::ok();
  });
}

Status ChildHealthStore::forget(const std::string& nexus, const std::string& uri) {
  return update(nexus, [&](NexusHealth& h) {
    auto& r = h.children;
    r.erase(uri);
    return Status::ok();
  });
}

Status ChildHealthStore::set_open(const std::string& nexus, bool open) {
  return update(nexus, [&](NexusHealth& h) {
    h.open = open;
    return Status::ok();
  });
}

Status ChildHealthStore::purge(const std::string& nexus) {
  std::lock_guard lk(update_mu_);
  return replace(nexus, {});
}

// ---- JSON ----

std::string health_to_json(const std::string& nexus, const NexusHealth& health) {
  nlohmann::json doc;
  doc["format"] = "castor-nexus-health";
  doc["version"] = 1;
  doc["nexus"] = nexus;
  doc["open"] = health.open;
  nlohmann::json children = nlohmann::json::object();
  for (const auto& [uri, rec] : health.children) {
    nlohmann::json c;
    c["healthy"] = rec.healthy;
    c["reason"] = rec.reason;
    c["updated_unix_ms"] = rec.updated_unix_ms;
    if (rec.log) {
      nlohmann::json l;
      l["segment_blocks"] = rec.log->segment_blocks;
      l["segments"] = rec.log->num_segments;
      l["clean"] = rec.log->clean;
      l["write_ahead"] = rec.log->write_ahead;
      nlohmann::json runs = nlohmann::json::array();
      for (auto [first, n] : rec.log->dirty) runs.push_back({first, n});
      l["dirty"] = std::move(runs);
      c["log"] = std::move(l);
    }
    children[uri] = std::move(c);
  }
  doc["children"] = std::move(children);
  return doc.dump(2) + "\n";
}

Result<NexusHealth> health_from_json(const std::string& text) {
  try {
    auto doc = nlohmann::json::parse(text);
    if (doc.value("format", "") != "castor-nexus-health") {
      return make_error(Errc::kInvalidArgument, "not a castor nexus health document");
    }
    if (uint_field<uint64_t>(doc, "version", 0) != 1) {
      return make_error(Errc::kUnsupported, "nexus health document version {} is not supported",
                        doc["version"].dump());
    }
    NexusHealth out;
    // Absent in documents written before the flag existed: treated as closed (clean).
    out.open = doc.value("open", false);
    for (const auto& [uri, c] : doc.at("children").items()) {
      ChildRecord r;
      r.healthy = c.at("healthy").get<bool>();
      r.reason = c.value("reason", "");
      r.updated_unix_ms = uint_field<uint64_t>(c, "updated_unix_ms", 0);
      if (c.contains("log")) {
        const auto& l = c["log"];
        MissedWriteLog log;
        log.segment_blocks = uint_field<uint64_t>(l, "segment_blocks");
        log.num_segments = uint_field<uint64_t>(l, "segments");
        log.clean = l.at("clean").get<bool>();
        log.write_ahead = l.value("write_ahead", false);
        for (const auto& run : l.at("dirty")) {
          if (!run.is_array() || run.size() != 2 || !run[0].is_number_unsigned() || !run[1].is_number_unsigned()) {
            return make_error(Errc::kInvalidArgument, "malformed nexus health document: a dirty run is not "
                              "[first segment, count]");
          }
          log.dirty.emplace_back(run[0].get<uint64_t>(), run[1].get<uint64_t>());
        }
        r.log = std::move(log);
      }
      out.children[uri] = std::move(r);
    }
    return out;
  } catch (const std::exception& e) {
    return make_error(Errc::kInvalidArgument, "malformed nexus health document: {}", e.what());
  }
}

// ---- in memory ----

Result<NexusHealth> MemChildHealthStore::load(const std::string& nexus) {
  std::lock_guard lk(mu_);
  auto it = docs_.find(nexus);
  if (it == docs_.end()) return NexusHealth{};
  return it->second;
}

Status MemChildHealthStore::replace(const std::string& nexus, const NexusHealth& records) {
  if (uint32_t d = delay_ms_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(d));
  int f = fail_.load();
  while (f > 0 && !fail_.compare_exchange_weak(f, f - 1)) {
  }
  if (f > 0) return make_error(Errc::kIoError, "health store write failed (injected)");
  std::lock_guard lk(mu_);
  writes_.fetch_add(1);
  if (records.empty()) {
    docs_.erase(nexus);
  } else {
    docs_[nexus] = records;
  }
  return Status::ok();
}

// ---- file ----

FileChildHealthStore::FileChildHealthStore(std::filesystem::path dir) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
}

std::filesystem::path FileChildHealthStore::path_for(const std::string& nexus) const {
  return dir_ / (nexus + ".json");
}

Result<NexusHealth> FileChildHealthStore::load(const std::string& nexus) {
  auto p = path_for(nexus);
  std::ifstream in(p);
  if (!in) {
    if (!std::filesystem::exists(p)) return NexusHealth{};
    return make_error(Errc::kIoError, "cannot read '{}'", p.string());
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = health_from_json(ss.str());
  if (!r) return make_error(r.status().code(), "{}: {}", p.string(), r.status().message());
  return r;
}

namespace {
Status fsync_path(const std::filesystem::path& p, int flags) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::kIoError, "open '{}': {}", p.string(), strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return make_error(Errc::kIoError, "fsync '{}': {}", p.string(), strerror(err));
  return Status::ok();
}
}  // namespace

Status FileChildHealthStore::replace(const std::string& nexus, const NexusHealth& records) {
  auto path = path_for(nexus);
  if (records.empty()) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    return fsync_path(dir_, O_RDONLY | O_DIRECTORY);
  }
  auto tmp = path;
  tmp += ".tmp";
  std::string text = health_to_json(nexus, records);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(Errc::kIoError, "create '{}': {}", tmp.string(), strerror(errno));
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return make_error(Errc::kIoError, "write '{}': {}", tmp.string(), strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(Errc::kIoError, "fsync '{}': {}", tmp.string(), strerror(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_error(Errc::kIoError, "rename '{}': {}", tmp.string(), strerror(errno));
  }
  return fsync_path(dir_, O_RDONLY | O_DIRECTORY);
}

}  // namespace castor::nexus
