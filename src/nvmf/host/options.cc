// What an nvmf:// URI says (nvmf_bdev.h, options.h): the host options and their ranges,
// the host identifier derived from the host NQN, and the paths' addresses.

#include "nvmf/host/options.h"

#include <algorithm>
#include <string>

#include "nvmf/host/nvmf_bdev.h"

namespace castor::nvmf {

Result<NvmfHostOptions> NvmfHostOptions::from_uri(const Uri& uri, const NvmfHostOptions& defaults) {
  if (auto st = uri.check_keys({"hostnqn", "hostid", "hdgst", "ddgst", "qd", "io_timeout_ms", "keep_alive_ms",
                                "connect_timeout_ms", "reconnect_delay_ms", "reconnect_delay_max_ms",
                                "ctrl_loss_timeout_ms", "nsid", "name", "paths"});
      !st) {
    return st;
  }
  NvmfHostOptions o = defaults;
  o.hostnqn = uri.get("hostnqn", o.hostnqn);
  if (o.hostnqn.empty() || o.hostnqn.size() > 223) {
    return make_error(Errc::kInvalidArgument, "hostnqn must be 1..223 characters");
  }
  if (auto h = uri.get("hostid"); !h.empty()) {
    auto u = Uuid::parse(h);
    if (!u || u->is_nil()) return make_error(Errc::kInvalidArgument, "hostid '{}' is not a non-zero UUID", h);
    o.hostid = *u;
  }
  auto b = [&](const char* k, bool& out) -> Status {
    auto v = uri.get_bool(k, out);
    if (!v) return v.status();
    out = *v;
    return Status::ok();
  };
  auto u = [&](const char* k, uint64_t& out, uint64_t lo, uint64_t hi) -> Status {
    auto v = uri.get_u64(k, out);
    if (!v) return v.status();
    if (*v < lo || *v > hi) return make_error(Errc::kInvalidArgument, "{} must be in [{}, {}]", k, lo, hi);
    out = *v;
    return Status::ok();
  };
  uint64_t qd = o.queue_depth, kato = o.keep_alive_ms, nsid = o.nsid;
  for (auto st : {b("hdgst", o.hdgst), b("ddgst", o.ddgst), u("qd", qd, 2, 1024),
                  u("io_timeout_ms", o.io_timeout_ms, 1, 3'600'000), u("keep_alive_ms", kato, 100, 3'600'000),
                  u("connect_timeout_ms", o.connect_timeout_ms, 1, 600'000),
                  u("reconnect_delay_ms", o.reconnect_delay_ms, 1, 600'000),
                  u("reconnect_delay_max_ms", o.reconnect_delay_max_ms, 1, 3'600'000),
                  u("ctrl_loss_timeout_ms", o.ctrl_loss_timeout_ms, 0, UINT64_MAX / 1'000'000),
                  u("nsid", nsid, 1, 0xfffffffe)}) {
    if (!st) return st;
  }
  o.queue_depth = static_cast<uint16_t>(qd);
  o.keep_alive_ms = static_cast<uint32_t>(kato);
  o.nsid = static_cast<uint32_t>(nsid);
  o.reconnect_delay_max_ms = std::max(o.reconnect_delay_max_ms, o.reconnect_delay_ms);
  return o;
}

bdev::HostId NvmfHostOptions::host_id() const {
  if (hostid) return bdev::HostId::from_uuid(*hostid);
  static constexpr std::string_view kUuidNqn = "nqn.2014-08.org.nvmexpress:uuid:";
  if (hostnqn.rfind(kUuidNqn, 0) == 0) {
    if (auto u = Uuid::parse(hostnqn.substr(kUuidNqn.size())); u && !u->is_nil()) return bdev::HostId::from_uuid(*u);
  }
  return bdev::HostId::from_uuid(Uuid::from_name(hostnqn));
}

namespace host {

Result<std::vector<reactor::SockAddr>> path_addresses(const Uri& uri) {
  auto strip = [](std::string h) {
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    return h;
  };
  std::vector<reactor::SockAddr> out;
  auto add = [&](const std::string& host, uint16_t port) -> Status {
    auto a = reactor::tcp_resolve(strip(host), port);
    if (!a) return a.status();
    for (const auto& o : out) {
      if (o.text == a->text) return make_error(Errc::kInvalidArgument, "nvmf URI '{}': path {} given twice", uri.text, a->text);
    }
    out.push_back(*a);
    return Status::ok();
  };
  if (auto st = add(uri.host, uri.port.value_or(8420)); !st) return st;
  const std::string list = uri.get("paths");
  for (size_t pos = 0; pos < list.size();) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    const std::string item = list.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t colon = item.rfind(':');
    const bool bracketed_v6 = !item.empty() && item.front() == '[' && (colon == std::string::npos || colon < item.rfind(']'));
    std::string host = item;
    uint64_t port = 8420;
    if (colon != std::string::npos && !bracketed_v6) {
      host = item.substr(0, colon);
      const std::string p = item.substr(colon + 1);
      if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos ||
          (port = std::stoull(p)) == 0 || port > 65535) {
        return make_error(Errc::kInvalidArgument, "nvmf URI '{}': path '{}' has a bad port", uri.text, item);
      }
    }
    if (host.empty()) return make_error(Errc::kInvalidArgument, "nvmf URI '{}': an empty path in paths=", uri.text);
    if (auto st = add(host, static_cast<uint16_t>(port)); !st) return st;
  }
  if (out.size() > 8) return make_error(Errc::kInvalidArgument, "nvmf URI '{}': at most 8 paths", uri.text);
  return out;
}

}  // namespace host
}  // namespace castor::nvmf
