// IscsiConnection, Text requests: SendTargets (discovery); other keys are NotUnderstood.
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "iscsi/connection.h"
#include "iscsi/text.h"

namespace castor::iscsi {

void IscsiConnection::text(const Bhs& h, std::span<const uint8_t> data) {
  if (h.flags() & kTextContinue) {
    protocol_error(h, reject::kProtocolError, "multi-PDU text requests are not supported");
    return;
  }
  auto kv = parse_text(data);
  if (!kv) {
    send_reject(h, reject::kProtocolError);
    return;
  }
  std::string out;
  {
    for (const auto& [k, v] : kv.value()) {
      if (k == "SendTargets") {
        send_targets(v, out);
      } else {
        append_text(out, k, "NotUnderstood");
      }
    }
  }
  Bhs b;
  b.clear();
  b.set_opcode(op::kTextResp);
  b.set_flags(kFinal);
  b.set_itt(h.itt());
  b.set_u32(off::kTtt, kReservedTag);
  fill_sns(b, true);
  if (out.size() > params_.initiator_mrdsl) out.resize(params_.initiator_mrdsl);
  send_owned(b, std::move(out));
}

void IscsiConnection::send_targets(const std::string& which, std::string& out) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  std::string addr = "127.0.0.1:3260";
  if (getsockname(conn_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) addr = addr_text(ss);
  const std::string portal = fmt::format("{},{}", addr, t_.options().portal_group_tag);
  for (const std::string& n : t_.node_names()) {
    const bool match = which == "All" ? discovery_ : which.empty() ? n == login_.target_name() : n == which;
    if (!match) continue;
    append_text(out, "TargetName", n);
    append_text(out, "TargetAddress", portal);
  }
}

}  // namespace castor::iscsi
