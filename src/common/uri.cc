#include "common/uri.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace castor {
namespace {

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> pct_decode(std::string_view s, const std::string& whole) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
        return make_error(Errc::kInvalidArgument, "bad percent escape in URI '{}'", whole);
      }
      out.push_back(static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

Result<Uri> Uri::parse(const std::string& s) {
  Uri u;
  u.text = s;
  auto sep = s.find("://");
  if (sep == std::string::npos || sep == 0) {
    return make_error(Errc::kInvalidArgument, "URI '{}' has no scheme (expected scheme://...)", s);
  }
  u.scheme = s.substr(0, sep);
  for (char c : u.scheme) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '-')) {
      return make_error(Errc::kInvalidArgument, "URI '{}' has an invalid scheme", s);
    }
  }
  std::string_view rest(s);
  rest.remove_prefix(sep + 3);
  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  std::string_view authority = rest;
  std::string_view path;
  if (auto p = rest.find('/'); p != std::string_view::npos) {
    authority = rest.substr(0, p);
    path = rest.substr(p);
  }
  if (!authority.empty()) {
    // A port follows the last ':' unless that ':' sits inside an IPv6 "[...]" literal.
    auto colon = authority.rfind(':');
    auto bracket = authority.rfind(']');
    if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
      std::string_view port = authority.substr(colon + 1);
      unsigned v = 0;
      auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
      if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || v > 65535) {
        return make_error(Errc::kInvalidArgument, "URI '{}' has an invalid port", s);
      }
      u.port = static_cast<uint16_t>(v);
      authority = authority.substr(0, colon);
    }
    u.host = std::string(authority);
    if (u.host.size() >= 2 && u.host.front() == '[' && u.host.back() == ']') {
      u.host = u.host.substr(1, u.host.size() - 2);
    }
  }
  auto dp = pct_decode(path, s);
  if (!dp) return dp.status();
  u.path = std::move(dp.value());
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (kv.empty()) continue;
    auto eq = kv.find('=');
    auto k = pct_decode(kv.substr(0, eq), s);
    if (!k) return k.status();
    auto v = pct_decode(eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1), s);
    if (!v) return v.status();
    if (k->empty()) return make_error(Errc::kInvalidArgument, "URI '{}' has an empty query key", s);
    if (!u.query.emplace(k.value(), v.value()).second) {
      return make_error(Errc::kInvalidArgument, "URI '{}' repeats query key '{}'", s, k.value());
    }
  }
  return u;
}

Result<uint64_t> Uri::get_u64(const std::string& key, uint64_t def) const {
  auto it = query.find(key);
  if (it == query.end()) return def;
  const std::string& v = it->second;
  uint64_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size()) {
    return make_error(Errc::kInvalidArgument, "'{}={}' is not a non-negative integer", key, v);
  }
  return out;
}

Result<double> Uri::get_double(const std::string& key, double def) const {
  auto it = query.find(key);
  if (it == query.end()) return def;
  try {
    size_t n = 0;
    double d = std::stod(it->second, &n);
    if (n != it->second.size() || !std::isfinite(d)) throw std::invalid_argument("x");
    return d;
  } catch (...) {
    return make_error(Errc::kInvalidArgument, "'{}={}' is not a number", key, it->second);
  }
}

Result<bool> Uri::get_bool(const std::string& key, bool def) const {
  auto it = query.find(key);
  if (it == query.end()) return def;
  const auto& v = it->second;
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  return make_error(Errc::kInvalidArgument, "'{}={}' is not a boolean", key, v);
}

std::string Uri::get(const std::string& key, const std::string& def) const {
  auto it = query.find(key);
  return it == query.end() ? def : it->second;
}

Status Uri::check_keys(std::initializer_list<const char*> allowed) const {
  for (const auto& kv : query) {
    const std::string& k = kv.first;
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) {
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      return make_error(Errc::kInvalidArgument, "unknown option '{}' for {}:// (known: {})", k,
                        scheme, list.empty() ? "none" : list);
    }
  }
  return Status::ok();
}

std::string Uri::name_from_path() const {
  return path.empty() ? std::string() : path.substr(path[0] == '/' ? 1 : 0);
}

}  // namespace castor
