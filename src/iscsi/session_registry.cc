// IscsiTarget's session registry: the sessions of every reactor by connection (with
// their TSIHs, for logins that join a session or reinstate one), each reactor's sessions
// by TSIH, and the closing of sessions by node.
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "iscsi/connection.h"
#include "iscsi/target.h"

namespace castor::iscsi {

uint16_t IscsiTarget::new_tsih() {
  std::lock_guard g(mu_);
  for (;;) {
    uint16_t t = next_tsih_++;
    if (t == 0) continue;
    bool used = false;
    for (const auto& [id, s] : sessions_) used |= s.info.tsih == t;
    if (!used) return t;
  }
}

void IscsiTarget::session_started(IscsiConnection* c, const SessionInfo& s, uint64_t conn_id) {
  std::vector<std::pair<uint32_t, uint64_t>> old;
  {
    std::lock_guard g(mu_);
    if (!s.target.empty()) {
      // A login that found the node just before remove_node() marked it: removal closes
      // this session too.
      auto n = nodes_.find(s.target);
      if (n == nodes_.end() || n->second.removing) old.emplace_back(s.reactor, conn_id);
    }
    for (const auto& [id, other] : sessions_) {
      if (!s.target.empty() && other.info.target == s.target && other.info.initiator == s.initiator &&
          other.info.isid == s.isid && other.info.tsih != s.tsih) {
        old.emplace_back(other.info.reactor, id);  // reinstatement: the old one goes
      }
    }
    sessions_[conn_id] = Session{s, conn_id};
  }
  for (auto [r, id] : old) {
    spdlog::info("iscsi session reinstated by {} isid={}: closing the old session's connection", s.initiator,
                 s.isid);
    close_connection(r, id);
  }
}

void IscsiTarget::session_ended(uint64_t conn_id) {
  std::lock_guard g(mu_);
  sessions_.erase(conn_id);
  released_cv_.notify_all();
}

std::optional<uint32_t> IscsiTarget::session_reactor(uint16_t tsih) const {
  std::lock_guard g(mu_);
  for (const auto& [id, s] : sessions_) {
    if (s.info.tsih == tsih) return s.info.reactor;
  }
  return std::nullopt;
}

IscsiSession* IscsiTarget::local_session(size_t r, uint16_t tsih) const {
  const auto& m = local_sessions_[r];
  auto it = m.find(tsih);
  return it == m.end() ? nullptr : it->second;
}

std::vector<SessionInfo> IscsiTarget::list_sessions() const {
  std::lock_guard g(mu_);
  std::vector<SessionInfo> out;
  for (const auto& [id, s] : sessions_) out.push_back(s.info);
  return out;
}

void IscsiTarget::close_sessions(const std::string& node, uint64_t except_conn) {
  std::vector<std::pair<uint32_t, uint64_t>> to_close;
  {
    std::lock_guard g(mu_);
    for (const auto& [id, s] : sessions_) {
      if (s.info.target == node && id != except_conn) to_close.emplace_back(s.info.reactor, id);
    }
  }
  for (auto [r, id] : to_close) close_connection(r, id);
}

void IscsiTarget::close_connection(uint32_t r, uint64_t conn_id) {
  reactors_.at(r).send([this, r, conn_id] {
    tcp_.for_each_connection(r, [conn_id](reactor::ServedConnection& sc) {
      auto& c = static_cast<IscsiConnection&>(sc);
      if (c.id() == conn_id) c.shutdown("session closed by the target");
    });
  });
}

}  // namespace castor::iscsi
