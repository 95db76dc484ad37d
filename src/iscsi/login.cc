#include "iscsi/login.h"

#include <algorithm>
#include <cstring>

namespace castor::iscsi {

namespace {
const std::string* find_key(const KeyValues& kv, const char* k) {
  for (const auto& [key, v] : kv) {
    if (key == k) return &v;
  }
  return nullptr;
}
bool list_has(const std::string& list, std::string_view item) {
  size_t i = 0;
  while (i <= list.size()) {
    size_t c = list.find(',', i);
    if (c == std::string::npos) c = list.size();
    if (std::string_view(list.data() + i, c - i) == item) return true;
    i = c + 1;
  }
  return false;
}
bool is_security_key(const std::string& k) {
  return k == "AuthMethod" || k.rfind("CHAP_", 0) == 0;
}
}  // namespace

void Login::fill_header(const Bhs& req, Bhs& resp) {
  resp.clear();
  resp.set_opcode(op::kLoginResp);
  resp.b[off::kVersionMax] = 0;
  resp.b[off::kVersionMin] = 0;  // version active
  std::memcpy(resp.b + off::kIsid, req.b + off::kIsid, 6);
  resp.set_u16(off::kTsih, req_tsih_);
  resp.set_itt(req.itt());
  resp.set_u32(off::kStatSn, stat_sn_);
  resp.set_u32(off::kExpCmdSn, exp_cmd_sn_);
  resp.set_u32(off::kMaxCmdSn, exp_cmd_sn_ + cfg_.cmd_window - 1);
}

Login::Outcome Login::fail(Bhs& resp, std::string& resp_data, uint16_t status, std::string why) {
  resp.set_flags(0);
  resp.b[off::kStatusClass] = static_cast<uint8_t>(status >> 8);
  resp.b[off::kStatusDetail] = static_cast<uint8_t>(status);
  resp.set_data_segment_length(0);
  resp_data.clear();
  error_ = std::move(why);
  return Outcome::kFail;
}

Login::Outcome Login::step(const Bhs& req, std::span<const uint8_t> data, Bhs& resp, std::string& resp_data) {
  resp_data.clear();
  const uint8_t flags = req.flags();
  const bool transit = flags & loginflag::kTransit;
  const bool cont = flags & loginflag::kContinue;
  const uint8_t csg = loginflag::csg(flags), nsg = loginflag::nsg(flags);

  if (first_) {
    first_ = false;
    std::memcpy(isid_.data(), req.b + off::kIsid, 6);
    req_tsih_ = req.u16(off::kTsih);
    cid_ = req.u16(off::kCid);
    itt_ = req.itt();
    exp_cmd_sn_ = req.u32(off::kLoginCmdSn);
    stat_sn_ = cfg_.first_stat_sn;
    stage_ = csg;
    fill_header(req, resp);
    if (req.b[off::kVersionMin] > 0) {
      return fail(resp, resp_data, login_status::kUnsupportedVersion, "unsupported iSCSI version");
    }
  } else {
    fill_header(req, resp);
    if (std::memcmp(isid_.data(), req.b + off::kIsid, 6) != 0 || req.u16(off::kTsih) != req_tsih_ ||
        req.u16(off::kCid) != cid_) {
      return fail(resp, resp_data, login_status::kInitiatorError, "ISID, TSIH or CID changed during login");
    }
  }
  if (csg != stage_ || csg == 2 || csg == stage::kFullFeature) {
    return fail(resp, resp_data, login_status::kInitiatorError,
                fmt::format("login stage {} unexpected (at stage {})", csg, stage_));
  }
  if (transit && (nsg <= csg || nsg == 2)) {
    return fail(resp, resp_data, login_status::kInitiatorError, fmt::format("bad next stage {} from {}", nsg, csg));
  }
  if (transit && cont) {
    return fail(resp, resp_data, login_status::kInitiatorError, "T and C both set");
  }
  if (pending_text_.size() + data.size() > kMaxTextBytes) {
    return fail(resp, resp_data, login_status::kOutOfResources, "login text too long");
  }
  pending_text_.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (cont) {
    // More text follows: acknowledge with an empty response in the same stage.
    resp.set_flags(static_cast<uint8_t>(csg << 2));
    return Outcome::kContinue;
  }
  auto kv = parse_text({reinterpret_cast<const uint8_t*>(pending_text_.data()), pending_text_.size()});
  pending_text_.clear();
  if (!kv) return fail(resp, resp_data, login_status::kInitiatorError, kv.status().message());
  return process(req, kv.value(), resp, resp_data);
}

uint16_t Login::security(const KeyValues& kv, std::string& out) {
  const bool need_chap = access_.chap.enabled();
  if (const std::string* m = find_key(kv, "AuthMethod")) {
    if (auth_ != Auth::kUnknown) {
      error_ = "AuthMethod renegotiated";
      return login_status::kInitiatorError;
    }
    if (need_chap ? list_has(*m, "CHAP") : list_has(*m, "None")) {
      auth_ = need_chap ? Auth::kChapChosen : Auth::kNone;
      append_text(out, "AuthMethod", need_chap ? "CHAP" : "None");
    } else {
      append_text(out, "AuthMethod", "Reject");
      error_ = fmt::format("initiator offered AuthMethod={}, target requires {}", *m, need_chap ? "CHAP" : "None");
      return login_status::kAuthFailed;
    }
  }
  if (const std::string* a = find_key(kv, "CHAP_A")) {
    if (auth_ != Auth::kChapChosen) {
      error_ = "CHAP_A outside a CHAP negotiation";
      return login_status::kInitiatorError;
    }
    if (!list_has(*a, "5")) {
      append_text(out, "CHAP_A", "Reject");
      error_ = "initiator offers no CHAP algorithm Castor supports (MD5 = 5)";
      return login_status::kAuthFailed;
    }
    chap_id_ = random_bytes(1)[0];
    chap_challenge_ = random_bytes(16);
    append_text(out, "CHAP_A", "5");
    append_text(out, "CHAP_I", std::to_string(chap_id_));
    append_text(out, "CHAP_C", encode_hex(chap_challenge_));
    auth_ = Auth::kChallengeSent;
  }
  const std::string* n = find_key(kv, "CHAP_N");
  const std::string* r = find_key(kv, "CHAP_R");
  if (n || r) {
    if (auth_ != Auth::kChallengeSent || !n || !r) {
      error_ = "CHAP_N/CHAP_R out of sequence";
      return login_status::kInitiatorError;
    }
    auto resp = decode_binary(*r);
    if (!resp || *n != access_.chap.user ||
        !equal_secret_bytes(resp.value(), chap_md5(chap_id_, access_.chap.secret, chap_challenge_))) {
      error_ = fmt::format("CHAP authentication of '{}' failed", *n);
      return login_status::kAuthFailed;
    }
    const std::string* ci = find_key(kv, "CHAP_I");
    const std::string* cc = find_key(kv, "CHAP_C");
    if (ci || cc) {
      uint64_t id = 0;
      auto ch = cc ? decode_binary(*cc) : Result<std::vector<uint8_t>>(Status(Errc::kInvalidArgument, "none"));
      bool id_ok = ci && !ci->empty() && ci->size() <= 3 &&
                   std::all_of(ci->begin(), ci->end(), [](char c) { return c >= '0' && c <= '9'; });
      if (id_ok) id = std::stoul(*ci);
      if (!id_ok || id > 255 || !ch || ch.value().empty() || !access_.mutual_chap.enabled()) {
        error_ = access_.mutual_chap.enabled() ? "bad mutual CHAP challenge" : "mutual CHAP asked but not configured";
        return login_status::kAuthFailed;
      }
      if (ch.value() == chap_challenge_) {
        error_ = "initiator reflected the target's CHAP challenge";
        return login_status::kAuthFailed;
      }
      append_text(out, "CHAP_N", access_.mutual_chap.user);
      append_text(out, "CHAP_R",
                  encode_hex(chap_md5(static_cast<uint8_t>(id), access_.mutual_chap.secret, ch.value())));
    } else if (access_.require_mutual) {
      error_ = "target requires mutual CHAP";
      return login_status::kAuthFailed;
    }
    auth_ = Auth::kDone;
  }
  return 0;
}

Login::Outcome Login::process(const Bhs& req, const KeyValues& kv, Bhs& resp, std::string& out) {
  const uint8_t flags = req.flags();
  const bool transit = flags & loginflag::kTransit;
  const uint8_t csg = loginflag::csg(flags), nsg = loginflag::nsg(flags);
  const bool first_reply = !first_reply_sent_;
  first_reply_sent_ = true;

  if (first_reply) {
    const std::string* in = find_key(kv, "InitiatorName");
    if (!in || in->empty()) return fail(resp, out, login_status::kMissingParameter, "no InitiatorName");
    initiator_name_ = *in;
    const std::string* st = find_key(kv, "SessionType");
    if (st && *st == "Discovery") {
      type_ = SessionType::kDiscovery;
    } else if (st && *st != "Normal") {
      return fail(resp, out, login_status::kSessionTypeUnsupported, "SessionType=" + *st);
    }
    if (type_ == SessionType::kNormal) {
      const std::string* tn = find_key(kv, "TargetName");
      if (!tn || tn->empty()) return fail(resp, out, login_status::kMissingParameter, "no TargetName");
      target_name_ = *tn;
      auto acc = cfg_.find_target ? cfg_.find_target(target_name_) : std::nullopt;
      if (!acc) return fail(resp, out, login_status::kTargetNotFound, "no target " + target_name_);
      access_ = *acc;
    } else {
      access_ = cfg_.discovery;
    }
    if (!access_.allowed_initiators.empty() &&
        std::find(access_.allowed_initiators.begin(), access_.allowed_initiators.end(), initiator_name_) ==
            access_.allowed_initiators.end()) {
      return fail(resp, out, login_status::kForbidden,
                  fmt::format("initiator {} is not allowed on {}", initiator_name_, target_name_));
    }
  } else {
    for (const char* k : {"InitiatorName", "TargetName", "SessionType"}) {
      if (find_key(kv, k)) return fail(resp, out, login_status::kInitiatorError, std::string(k) + " redeclared");
    }
  }

  KeyValues rest;
  if (csg == stage::kSecurity) {
    KeyValues sec;
    for (const auto& p : kv) (is_security_key(p.first) ? sec : rest).push_back(p);
    if (uint16_t st = security(sec, out)) return fail(resp, out, st, error_);
  } else {
    if (access_.chap.enabled() && auth_ != Auth::kDone) {
      return fail(resp, out, login_status::kAuthFailed, "target requires CHAP, initiator skipped authentication");
    }
    for (const auto& p : kv) {
      if (is_security_key(p.first)) {
        return fail(resp, out, login_status::kInitiatorError, p.first + " outside the security stage");
      }
      rest.push_back(p);
    }
  }

  if (req_tsih_ != 0) {
    for (const auto& p : rest) {
      if (is_leading_only_key(p.first)) {
        return fail(resp, out, login_status::kInitiatorError,
                    p.first + " may only be negotiated by the leading login of a session");
      }
    }
  }
  KeyValues unhandled;
  if (Status s = negotiate_operational(rest, cfg_.limits, type_, params_, out, unhandled); !s) {
    return fail(resp, out, login_status::kInitiatorError, s.message());
  }
  for (const auto& [k, v] : unhandled) {
    if (k == "InitiatorName" || k == "TargetName" || k == "SessionType" || k == "InitiatorAlias") continue;
    append_text(out, k, "NotUnderstood");
  }
  if (first_reply && type_ == SessionType::kNormal) {
    append_text(out, "TargetPortalGroupTag", std::to_string(cfg_.portal_group_tag));
  }

  // May the stage change? Leaving the security stage needs finished authentication.
  bool go = transit;
  if (go && csg == stage::kSecurity) {
    const bool done = access_.chap.enabled() ? auth_ == Auth::kDone : (auth_ == Auth::kNone || auth_ == Auth::kDone ||
                                                                       auth_ == Auth::kUnknown);
    if (!done) {
      if (auth_ == Auth::kChapChosen || auth_ == Auth::kChallengeSent) {
        go = false;  // still negotiating CHAP: answer without T
      } else {
        return fail(resp, out, login_status::kAuthFailed, "authentication not finished");
      }
    }
  }
  if (!mrdsl_declared_ && (csg == stage::kOperational || (go && nsg == stage::kFullFeature))) {
    mrdsl_declared_ = true;
    append_text(out, "MaxRecvDataSegmentLength", std::to_string(cfg_.limits.max_recv_data_segment_length));
  }

  uint8_t rflags = static_cast<uint8_t>(csg << 2);
  Outcome outcome = Outcome::kContinue;
  if (go) {
    rflags |= loginflag::kTransit | nsg;
    stage_ = nsg;
    if (nsg == stage::kFullFeature) {
      tsih_ = req_tsih_ ? req_tsih_ : (cfg_.new_tsih ? cfg_.new_tsih() : 1);
      resp.set_u16(off::kTsih, tsih_);
      outcome = Outcome::kFullFeature;
      ++stat_sn_;  // the final response consumed this StatSN
    }
  }
  resp.set_flags(rflags);
  resp.set_data_segment_length(static_cast<uint32_t>(out.size()));
  return outcome;
}

}  // namespace castor::iscsi
