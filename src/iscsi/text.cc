#include "iscsi/text.h"

#include <algorithm>
#include <charconv>

namespace castor::iscsi {

Result<KeyValues> parse_text(std::span<const uint8_t> data) {
  KeyValues kv;
  size_t i = 0;
  while (i < data.size()) {
    if (data[i] == 0) {  // padding or an empty pair: skip
      ++i;
      continue;
    }
    size_t end = i;
    while (end < data.size() && data[end] != 0) ++end;
    std::string_view pair(reinterpret_cast<const char*>(data.data() + i), end - i);
    i = end + 1;
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      return Status(Errc::kInvalidArgument, fmt::format("text pair without '=': '{:.64}'", pair));
    }
    std::string_view key = pair.substr(0, eq), value = pair.substr(eq + 1);
    if (key.empty() || key.size() > kMaxKeyLength) {
      return Status(Errc::kInvalidArgument, fmt::format("bad key length {}", key.size()));
    }
    if (value.size() > kMaxValueLength) {
      return Status(Errc::kInvalidArgument, fmt::format("value of {} too long ({} bytes)", key, value.size()));
    }
    for (const auto& [k, v] : kv) {
      if (k == key) return Status(Errc::kInvalidArgument, fmt::format("key {} repeated", key));
    }
    kv.emplace_back(std::string(key), std::string(value));
  }
  return kv;
}

void append_text(std::string& out, const std::string& key, const std::string& value) {
  out += key;
  out += '=';
  out += value;
  out += '\0';
}

std::string text_pairs(std::initializer_list<std::pair<std::string, std::string>> pairs) {
  std::string out;
  for (const auto& [k, v] : pairs) append_text(out, k, v);
  return out;
}

namespace {

bool parse_number(const std::string& s, uint64_t* v) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    b += 2;
    base = 16;
  }
  auto [p, ec] = std::from_chars(b, e, *v, base);
  return ec == std::errc() && p == e;
}

bool parse_bool(const std::string& s, bool* v) {
  if (s == "Yes") *v = true;
  else if (s == "No") *v = false;
  else return false;
  return true;
}

// The first value of a comma-separated list that is "CRC32C" or "None".
const char* pick_digest(const std::string& list) {
  size_t i = 0;
  while (i <= list.size()) {
    size_t c = list.find(',', i);
    if (c == std::string::npos) c = list.size();
    std::string_view v(list.data() + i, c - i);
    if (v == "None") return "None";
    if (v == "CRC32C") return "CRC32C";
    i = c + 1;
  }
  return nullptr;
}

}  // namespace

bool is_leading_only_key(const std::string& k) {
  static const char* const kLo[] = {"MaxConnections",    "InitialR2T",        "ImmediateData",
                                    "MaxBurstLength",    "FirstBurstLength",  "MaxOutstandingR2T",
                                    "DataPDUInOrder",    "DataSequenceInOrder", "ErrorRecoveryLevel",
                                    "DefaultTime2Wait",  "DefaultTime2Retain"};
  for (const char* lo : kLo) {
    if (k == lo) return true;
  }
  return false;
}

Status negotiate_operational(const KeyValues& offered, const TargetLimits& lim, SessionType type,
                             SessionParams& p, std::string& reply, KeyValues& unhandled) {
  auto range = [](const std::string& k, const std::string& v, uint64_t lo, uint64_t hi, uint64_t* out) -> Status {
    if (!parse_number(v, out) || *out < lo || *out > hi) {
      return Status(Errc::kInvalidArgument, fmt::format("{}={} out of range {}..{}", k, v, lo, hi));
    }
    return Status::ok();
  };
  for (const auto& [k, v] : offered) {
    uint64_t n = 0;
    bool b = false;
    if (k == "HeaderDigest" || k == "DataDigest") {
      const char* pick = pick_digest(v);
      if (!pick) {
        append_text(reply, k, "Reject");
        continue;
      }
      (k == "HeaderDigest" ? p.header_digest : p.data_digest) = std::string_view(pick) == "CRC32C";
      append_text(reply, k, pick);
    } else if (k == "MaxRecvDataSegmentLength") {  // declarative
      if (Status s = range(k, v, 512, (1u << 24) - 1, &n); !s) return s;
      p.initiator_mrdsl = static_cast<uint32_t>(n);
    } else if (k == "MaxBurstLength") {
      if (Status s = range(k, v, 512, (1u << 24) - 1, &n); !s) return s;
      p.max_burst = static_cast<uint32_t>(std::min<uint64_t>(n, lim.max_burst));
      append_text(reply, k, std::to_string(p.max_burst));
    } else if (k == "FirstBurstLength") {
      if (Status s = range(k, v, 512, (1u << 24) - 1, &n); !s) return s;
      p.first_burst = static_cast<uint32_t>(std::min<uint64_t>(n, lim.first_burst));
      append_text(reply, k, std::to_string(p.first_burst));
    } else if (k == "InitialR2T") {
      if (!parse_bool(v, &b)) return Status(Errc::kInvalidArgument, "InitialR2T=" + v);
      p.initial_r2t = b || lim.want_initial_r2t;  // OR
      append_text(reply, k, p.initial_r2t ? "Yes" : "No");
    } else if (k == "ImmediateData") {
      if (!parse_bool(v, &b)) return Status(Errc::kInvalidArgument, "ImmediateData=" + v);
      p.immediate_data = b;  // AND with Castor's Yes
      append_text(reply, k, b ? "Yes" : "No");
    } else if (k == "MaxOutstandingR2T") {
      if (Status s = range(k, v, 1, 65535, &n); !s) return s;
      p.max_outstanding_r2t = 1;  // one R2T per task at a time
      append_text(reply, k, "1");
    } else if (k == "DataPDUInOrder" || k == "DataSequenceInOrder") {
      if (!parse_bool(v, &b)) return Status(Errc::kInvalidArgument, k + "=" + v);
      append_text(reply, k, "Yes");  // OR with Castor's Yes
    } else if (k == "DefaultTime2Wait") {
      if (Status s = range(k, v, 0, 3600, &n); !s) return s;
      p.default_time2wait = static_cast<uint32_t>(std::max<uint64_t>(n, 2));
      append_text(reply, k, std::to_string(p.default_time2wait));
    } else if (k == "DefaultTime2Retain") {
      if (Status s = range(k, v, 0, 3600, &n); !s) return s;
      p.default_time2retain = 0;  // ERL 0: nothing is retained after a connection ends
      append_text(reply, k, "0");
    } else if (k == "ErrorRecoveryLevel") {
      if (Status s = range(k, v, 0, 2, &n); !s) return s;
      append_text(reply, k, "0");
    } else if (k == "MaxConnections") {
      if (Status s = range(k, v, 1, 65535, &n); !s) return s;
      p.max_connections = static_cast<uint32_t>(std::clamp<uint64_t>(n, 1, std::max(1u, lim.max_connections)));
      append_text(reply, k, std::to_string(p.max_connections));
    } else if (k == "IFMarker" || k == "OFMarker") {
      append_text(reply, k, "No");
    } else if (k == "IFMarkInt" || k == "OFMarkInt") {
      append_text(reply, k, "Irrelevant");
    } else {
      unhandled.emplace_back(k, v);
    }
  }
  // The result of the burst keys must keep FirstBurst <= MaxBurst.
  if (p.first_burst > p.max_burst) p.first_burst = p.max_burst;
  (void)type;
  return Status::ok();
}

}  // namespace castor::iscsi
