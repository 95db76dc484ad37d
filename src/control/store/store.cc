#include "control/store/store.h"

#include <charconv>
#include <set>
#include <string_view>

#include "control/store/batch.h"
#include "control/store/etcd_store.h"
#include "control/store/sqlite_store.h"

namespace castor::control {

Status check_batch(const std::vector<StoreOp>& ops, const std::vector<StoreCompare>& compares) {
  if (ops.empty()) return make_error(Errc::kInvalidArgument, "empty batch");
  if (ops.size() > kMaxOpsPerCommit) {
    return make_error(Errc::kInvalidArgument, "batch of {} ops (at most {})", ops.size(),
                      kMaxOpsPerCommit);
  }
  if (compares.size() > kMaxOpsPerCommit) {
    return make_error(Errc::kInvalidArgument, "batch with {} compares (at most {})",
                      compares.size(), kMaxOpsPerCommit);
  }
  std::set<std::string_view> seen;
  for (const auto& op : ops) {
    if (op.key.empty()) return make_error(Errc::kInvalidArgument, "empty key in batch");
    if (op.key.starts_with(kReservedPrefix)) {
      return make_error(Errc::kInvalidArgument, "key '{}' is under the reserved prefix '{}'",
                        op.key, kReservedPrefix);
    }
    if (!seen.insert(op.key).second) {
      return make_error(Errc::kInvalidArgument, "key '{}' twice in one batch", op.key);
    }
  }
  for (const auto& c : compares) {
    if (c.key.empty()) return make_error(Errc::kInvalidArgument, "empty key in compare");
    if (c.mod_revision < 0) {
      return make_error(Errc::kInvalidArgument, "compare on '{}' with negative revision {}", c.key,
                        c.mod_revision);
    }
  }
  return Status::ok();
}

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

namespace {

constexpr const char* kUsage =
    "expected sqlite:///absolute/path.db or etcd://host:port[,host:port...]";

// "host:port" or "[v6addr]:port"; the host is not resolved here.
Status check_endpoint(std::string_view ep) {
  std::string_view host;
  std::string_view port;
  if (ep.starts_with('[')) {
    size_t close = ep.find(']');
    if (close == std::string_view::npos || close + 1 >= ep.size() || ep[close + 1] != ':') {
      return make_error(Errc::kInvalidArgument, "bad etcd endpoint '{}': expected [addr]:port", ep);
    }
    host = ep.substr(1, close - 1);
    port = ep.substr(close + 2);
  } else {
    size_t colon = ep.rfind(':');
    if (colon == std::string_view::npos) {
      return make_error(Errc::kInvalidArgument, "bad etcd endpoint '{}': expected host:port", ep);
    }
    host = ep.substr(0, colon);
    port = ep.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return make_error(Errc::kInvalidArgument,
                        "bad etcd endpoint '{}': write an IPv6 address as [addr]:port", ep);
    }
  }
  if (host.empty())
    return make_error(Errc::kInvalidArgument, "bad etcd endpoint '{}': no host", ep);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return make_error(Errc::kInvalidArgument, "bad etcd endpoint '{}': port must be 1..65535", ep);
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<Store>> make_store(const std::string& uri, const StoreOptions& opts) {
  if (opts.page_limit == 0) return make_error(Errc::kInvalidArgument, "page_limit must be > 0");
  if (opts.request_timeout_ms == 0) {
    return make_error(Errc::kInvalidArgument, "request_timeout_ms must be > 0");
  }
  if (uri.starts_with("sqlite://")) {
    std::string path = uri.substr(std::string_view("sqlite://").size());
    if (!path.starts_with('/')) {
      return make_error(
          Errc::kInvalidArgument,
          "store URI '{}': SQLite needs an absolute path (sqlite:///var/lib/castor/castor.db)",
          uri);
    }
    if (path.size() < 2 || path.ends_with('/')) {
      return make_error(Errc::kInvalidArgument, "store URI '{}': the path names no file", uri);
    }
    if (path.find('?') != std::string::npos || path.find('#') != std::string::npos) {
      return make_error(Errc::kInvalidArgument,
                        "store URI '{}': SQLite takes no options ('?' or '#' in the path)", uri);
    }
    return std::unique_ptr<Store>(std::make_unique<SqliteStore>(path, opts));
  }
  if (uri.starts_with("etcd://")) {
    std::string list = uri.substr(std::string_view("etcd://").size());
    if (list.ends_with('/')) list.pop_back();
    if (list.empty()) {
      return make_error(Errc::kInvalidArgument, "store URI '{}': no etcd endpoint; {}", uri,
                        kUsage);
    }
    std::vector<std::string> endpoints;
    size_t start = 0;
    for (;;) {
      size_t comma = list.find(',', start);
      std::string ep =
          list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (Status s = check_endpoint(ep); !s) {
        return make_error(Errc::kInvalidArgument, "store URI '{}': {}", uri, s.message());
      }
      endpoints.push_back(std::move(ep));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (opts.lease_ttl_s < 2) {
      return make_error(Errc::kInvalidArgument, "lease_ttl_s {} is below etcd's minimum of 2 s",
                        opts.lease_ttl_s);
    }
    return std::unique_ptr<Store>(std::make_unique<EtcdStore>(uri, std::move(endpoints), opts));
  }
  size_t sep = uri.find("://");
  if (sep == std::string::npos) {
    return make_error(Errc::kInvalidArgument, "store URI '{}' has no scheme; {}", uri, kUsage);
  }
  return make_error(Errc::kInvalidArgument, "store URI '{}': unknown scheme '{}'; {}", uri,
                    uri.substr(0, sep), kUsage);
}

}  // namespace castor::control
