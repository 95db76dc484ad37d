// IscsiConnection, login phase: each Login Request goes to the connection's Login
// (login.cc: stages, authentication, negotiation); one that names an existing session is
// moved to that session's reactor and checked against it (connection_session.cc); the
// final response enters full feature phase.
#include <optional>

#include <spdlog/spdlog.h>

#include "iscsi/connection.h"

namespace castor::iscsi {

void IscsiConnection::login_pdu(const Bhs& h, std::span<const uint8_t> data) {
  if (h.opcode() != op::kLogin) {
    protocol_error(h, reject::kProtocolError, fmt::format("opcode {:#x} before login", h.opcode()));
    return;
  }
  if (login_started_ == false) {
    login_started_ = true;
    const uint16_t tsih = h.u16(off::kTsih);
    if (tsih != 0) {
      // Joining a session (or reinstating one of its connections): the session's
      // reactor must serve this connection.
      std::optional<uint32_t> home = t_.session_reactor(tsih);
      if (!home) {
        refuse_login(h, data, login_status::kSessionNotFound, "login to an unknown session (TSIH)");
        return;
      }
      if (*home != r_.id()) {
        if (handed_over_) {
          refuse_login(h, data, login_status::kSessionNotFound, "session moved during login");
          return;
        }
        hand_over(*home);
        return;
      }
    }
  }
  Bhs resp;
  std::string out;
  Login::Outcome o = login_.step(h, data, resp, out);
  if (o == Login::Outcome::kFail) {
    spdlog::warn("iscsi login from {} failed: {}", peer_, login_.error());
    t_.count(&TargetStats::logins_failed);
    send_owned(resp, std::move(out), "login failed");
    return;
  }
  if (o == Login::Outcome::kFullFeature && login_.requested_tsih() != 0) {
    std::string why;
    const uint16_t st = check_join(&why);
    if (st != login_status::kSuccess) {
      refuse(resp, st, why);
      return;
    }
  }
  send_owned(resp, std::move(out));
  if (o == Login::Outcome::kFullFeature) {
    enter_ffp();
  }
}

// Answers a login request with an error status and closes once that is sent.
void IscsiConnection::refuse_login(const Bhs& h, std::span<const uint8_t> data, uint16_t status,
                                   const std::string& why) {
  Bhs resp;
  std::string out;
  login_.step(h, data, resp, out);  // fills the header
  refuse(resp, status, why);
}

void IscsiConnection::refuse(Bhs& resp, uint16_t status, const std::string& why) {
  spdlog::warn("iscsi login from {} refused: {}", peer_, why);
  resp.set_flags(0);
  resp.b[off::kStatusClass] = static_cast<uint8_t>(status >> 8);
  resp.b[off::kStatusDetail] = static_cast<uint8_t>(status & 0xFF);
  resp.set_data_segment_length(0);
  t_.count(&TargetStats::logins_failed);
  send_owned(resp, {}, why.c_str());
}

void IscsiConnection::enter_ffp() {
  cancel_timer();
  params_ = login_.params();
  stat_sn_ = login_.next_stat_sn();
  cid_ = login_.cid();
  if (login_.requested_tsih() != 0) {
    if (!join_session()) return;
  } else if (!lead_session()) {
    return;
  }
  discovery_ = sess_->discovery;
  dev_ = sess_->dev;
  init_tasks();
  SessionInfo s;
  s.target = discovery_ ? "" : login_.target_name();
  s.initiator = login_.initiator_name();
  s.isid = hex(login_.isid().data(), 6);
  s.tsih = login_.tsih();
  s.cid = cid_;
  s.peer = peer_;
  s.header_digest = params_.header_digest;
  s.data_digest = params_.data_digest;
  s.reactor = static_cast<uint32_t>(r_.id());
  t_.session_started(this, s, id_);
  registered_ = true;
  t_.count(&TargetStats::logins_ok);
  // Digests apply from the first PDU after the final login response.
  ffp_ = true;
  spdlog::info("iscsi {} {} {} from {} ({}) tsih={} cid={} digests h={} d={}",
               sess_->conns.size() > 1 ? "connection joined session" : "session", discovery_ ? "discovery" : "to",
               s.target, s.initiator, peer_, s.tsih, s.cid, params_.header_digest, params_.data_digest);
  if (t_.options().nop_in_interval_ms) {
    last_rx_ = conn_->bytes_received();
    arm_liveness(t_.options().nop_in_interval_ms);
  }
}

}  // namespace castor::iscsi
