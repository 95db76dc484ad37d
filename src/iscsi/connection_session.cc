// IscsiConnection in its session: leading, joining (MC/S, with the hand-over to the
// session's reactor) and leaving a session; the CmdSN window and command ordering across
// the session's connections; logout.
#include <atomic>
#include <memory>

#include <spdlog/spdlog.h>

#include "iscsi/connection.h"

namespace castor::iscsi {

namespace {
std::atomic<uint64_t> g_next_nexus_id{1};
}  // namespace

// This connection's first login request names a session that lives on reactor
// `home`: hand the socket, with the bytes read so far, to a new connection there.
void IscsiConnection::hand_over(uint32_t home) {
  spdlog::debug("iscsi login from {} joins a session of reactor {}: handing it over", peer_, home);
  std::vector<uint8_t> bytes(rx_.begin(), rx_.end());
  const int fd = conn_->detach();
  detached_ = true;
  if (fd >= 0) t_.hand_over(fd, home, std::move(bytes));
  t_.tcp_.detach(r_, *this);
  cancel_timer();
  destroying_ = true;
  r_.defer([this] { delete this; });
}

// A login that joins session login_.requested_tsih() as connection login_.cid(), about
// to enter full feature phase. Returns kSuccess or the login status that refuses it.
uint16_t IscsiConnection::check_join(std::string* why) {
  IscsiSession* s = t_.local_session(r_.id(), login_.requested_tsih());
  if (!s || s->ending || s->isid != login_.isid()) {
    *why = "no such session (TSIH and ISID)";
    return login_status::kSessionNotFound;
  }
  if (s->discovery || s->initiator != login_.initiator_name() || s->target != login_.target_name()) {
    *why = "a connection may join only a normal session of the same initiator and target";
    return login_status::kInitiatorError;
  }
  size_t others = 0;
  for (IscsiConnection* c : s->conns) others += c->cid_ != login_.cid() && !c->reinstated_;
  if (others >= s->params.max_connections) {
    *why = fmt::format("session already has {} connection(s), MaxConnections={}", others, s->params.max_connections);
    return login_status::kTooManyConnections;
  }
  return login_status::kSuccess;
}

// The leading login: a new session on this reactor.
bool IscsiConnection::lead_session() {
  auto s = std::make_unique<IscsiSession>();
  s->tsih = login_.tsih();
  s->isid = login_.isid();
  s->initiator = login_.initiator_name();
  s->discovery = login_.session_type() == SessionType::kDiscovery;
  s->target = s->discovery ? "" : login_.target_name();
  s->params = params_;
  s->window.open(login_.exp_cmd_sn(), t_.options().queue_depth);
  if (!s->discovery) {
    s->dev = t_.device(login_.target_name());
    if (!s->dev) {
      conn_->close("target removed during login");
      return false;
    }
    s->nexus.id = g_next_nexus_id.fetch_add(1);
    s->nexus.initiator_name = login_.initiator_name();
    s->nexus.initiator_port = fmt::format("{},i,0x{}", login_.initiator_name(), hex(login_.isid().data(), 6));
    s->nexus.target_port = fmt::format("{},t,0x{:04x}", login_.target_name(), t_.options().portal_group_tag);
    s->nexus.relative_port = 1;
    s->dev->attach(s->nexus);
    s->attached = true;
  }
  sess_ = s.release();
  sess_->conns.push_back(this);
  t_.local_sessions_[r_.id()][sess_->tsih] = sess_;
  return true;
}

// A connection added to an existing session of this reactor (checked by check_join).
bool IscsiConnection::join_session() {
  IscsiSession* s = t_.local_session(r_.id(), login_.requested_tsih());
  if (!s || s->ending) {
    conn_->close("session ended during login");
    return false;
  }
  // Same CID as a live connection: connection reinstatement, the old one goes.
  for (IscsiConnection* c : s->conns) {
    if (c->cid_ == cid_ && !c->reinstated_) {
      c->reinstated_ = true;
      c->shutdown("connection reinstated by a new login with its CID");
    }
  }
  // Session-wide values come from the leading login; this connection negotiated only
  // its own (digests, data segment length).
  const SessionParams mine = params_;
  params_ = s->params;
  params_.header_digest = mine.header_digest;
  params_.data_digest = mine.data_digest;
  params_.initiator_mrdsl = mine.initiator_mrdsl;
  sess_ = s;
  sess_->conns.push_back(this);
  return true;
}

// Unlinks this connection from its session; the last one out ends the session.
void IscsiConnection::leave_session() {
  IscsiSession* s = sess_;
  sess_ = nullptr;
  std::erase(s->conns, this);
  if (s->tmf_conn == this) {
    // Its response can no longer be sent; aborted tasks elsewhere stop counting.
    s->tmf_conn = nullptr;
    s->tmf_pending = 0;
    for (IscsiConnection* c : s->conns) {
      for (Task& tk : c->tasks_) tk.abort_counted = false;
    }
  }
  // A parked connection's missing CmdSN may have died with this one: let it try again
  // (on a session left with one connection, a command ahead of ExpCmdSN is dropped
  // rather than waited for).
  if (!s->conns.empty()) {
    unpark(*s, nullptr);
    return;
  }
  if (s->attached) s->dev->detach(s->nexus);
  auto& m = t_.local_sessions_[r_.id()];
  if (auto it = m.find(s->tsih); it != m.end() && it->second == s) m.erase(it);
  delete s;
}

void IscsiConnection::fill_sns(Bhs& b, bool advance_stat) {
  b.set_u32(off::kStatSn, stat_sn_);
  if (advance_stat) ++stat_sn_;
  b.set_u32(off::kExpCmdSn, sess_->window.exp_cmd_sn());
  b.set_u32(off::kMaxCmdSn, sess_->window.max_cmd_sn());
}

// Orders a non-immediate command by CmdSN (RFC 7143 §4.2.2.1), session-wide. kDrop: a
// duplicate or outside the window, dropped silently. kPark: within the window but
// ahead of ExpCmdSN, which on a session of several connections means a command with
// a lower CmdSN is still on its way over another connection: this connection stops
// until it has arrived. (With no other connection that still reads, it is a drop, as
// on a session of one connection, where TCP keeps the order.)
IscsiConnection::Order IscsiConnection::order_cmd_sn(const Bhs& h) {
  CmdSnWindow& w = sess_->window;
  const uint32_t sn = h.u32(off::kCmdSn);
  if (h.immediate()) return Order::kAccept;
  if (sn != w.exp_cmd_sn()) {
    if (w.ahead(sn) && another_can_deliver()) return Order::kPark;
    spdlog::debug("iscsi: dropping command with CmdSN {} (expected {}, max {})", sn, w.exp_cmd_sn(),
                  w.advertised_max());
    return Order::kDrop;
  }
  return w.accept_next() ? Order::kAccept : Order::kDrop;
}

// Whether another connection of the session still reads commands, so the one missing
// before a parked command can arrive. Parked connections do not: if every connection
// parked, none would read again (nor notice its peer closing), and the session would
// wedge for good.
bool IscsiConnection::another_can_deliver() const {
  for (const IscsiConnection* c : sess_->conns) {
    if (c != this && !c->parked_ && !c->closed_ && !c->doomed_ && !c->logged_out_ && !c->reinstated_ &&
        !c->conn_->closing()) {
      return true;
    }
  }
  return false;
}

void IscsiConnection::park() {
  parked_ = true;
  conn_->pause_recv();
}

// ExpCmdSN moved: connections waiting for it try their next command again.
void IscsiConnection::wake_parked() { unpark(*sess_, this); }

// Resumes the parked connections of `s` other than `except`. Each runs its input at
// once, which may end tasks and connections (the session's list changes under us), so
// this works on a snapshot; connections are deleted only later, from the reactor loop.
void IscsiConnection::unpark(IscsiSession& s, IscsiConnection* except) {
  std::vector<IscsiConnection*> parked;
  for (IscsiConnection* c : s.conns) {
    if (c != except && c->parked_) parked.push_back(c);
  }
  for (IscsiConnection* c : parked) {
    if (!c->parked_) continue;
    c->parked_ = false;
    c->conn_->resume_recv();
  }
}

void IscsiConnection::logout(const Bhs& h) {
  const uint8_t reason = h.flags() & 0x7F;
  logout_req_ = h;
  auto answer = [&](uint8_t response) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kLogoutResp);
    b.set_flags(kFinal);
    b.b[off::kResponse] = response;
    b.set_itt(h.itt());
    fill_sns(b, true);
    send_owned(b, {});
  };
  if (reason == logout::kRemoveForRecovery) {
    answer(logout::kRecoveryUnsupported);
    return;
  }
  const uint16_t cid = h.u16(off::kCid);
  if (reason == logout::kCloseConnection && cid != cid_) {
    // Closing another connection of the session; its tasks end with it (ERL 0).
    for (IscsiConnection* c : sess_->conns) {
      if (c->cid_ == cid && !c->reinstated_ && !c->logged_out_) {
        c->logged_out_ = true;
        c->shutdown(fmt::format("logged out by connection {}", cid_));
        answer(logout::kOk);
        return;
      }
    }
    answer(logout::kCidNotFound);
    return;
  }
  if (reason == logout::kCloseSession) sess_->ending = true;
  logout_pending_ = true;
  maybe_logout();
}

void IscsiConnection::maybe_logout() {
  if (!logout_pending_ || closed_ || conn_->closing()) return;
  for (const Task& tk : tasks_) {
    if (tk.state == TaskState::kExecuting || tk.state == TaskState::kSending) return;
  }
  logout_pending_ = false;
  logged_out_ = true;
  for (Task& tk : tasks_) {
    if (tk.state == TaskState::kReceiving) release(tk);
  }
  const bool whole_session = (logout_req_.flags() & 0x7F) == logout::kCloseSession;
  auto* p = new OwnedPdu{};
  Bhs& b = p->hdr.bhs;
  b.clear();
  b.set_opcode(op::kLogoutResp);
  b.set_flags(kFinal);
  b.b[off::kResponse] = logout::kOk;
  b.set_itt(logout_req_.itt());
  fill_sns(b, true);
  b.set_u16(off::kTime2Wait, 0);
  b.set_u16(off::kTime2Retain, 0);
  send_pdu(p->hdr, nullptr, 0, [this, p, whole_session] {
    delete p;
    conn_->close("logout");
    if (whole_session) {
      for (IscsiConnection* c : sess_->conns) {
        if (c != this) c->shutdown("session logged out");
      }
    }
  });
}

}  // namespace castor::iscsi
