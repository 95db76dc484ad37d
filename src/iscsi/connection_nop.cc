// IscsiConnection, NOP: NOP-Out echoes, and the NOP-In pings that find dead initiators.
#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "iscsi/connection.h"

namespace castor::iscsi {

void IscsiConnection::nop_out(const Bhs& h, std::span<const uint8_t> data) {
  if (h.itt() == kReservedTag) return;  // the answer to a ping (liveness_tick)
  Bhs b;
  b.clear();
  b.set_opcode(op::kNopIn);
  b.set_flags(kFinal);
  std::memcpy(b.b + off::kLun, h.b + off::kLun, 8);
  b.set_itt(h.itt());
  b.set_u32(off::kTtt, kReservedTag);
  fill_sns(b, true);
  const size_t n = std::min<size_t>(data.size(), params_.initiator_mrdsl);
  send_owned(b, std::string(reinterpret_cast<const char*>(data.data()), n));
}

// Liveness in full feature phase (TargetOptions::nop_in_interval_ms). Any byte from the
// initiator proves it alive; a parked connection is not reading, so it is not judged.
void IscsiConnection::arm_liveness(uint64_t delay_ms) {
  timer_ = r_.add_timer(delay_ms * 1'000'000ull, [this] {
    timer_armed_ = false;
    liveness_tick();
  });
  timer_armed_ = true;
}

void IscsiConnection::liveness_tick() {
  if (closed_ || doomed_ || conn_->closing()) return;
  const TargetOptions& o = t_.options();
  const uint64_t rx = conn_->bytes_received();
  if (rx != last_rx_ || parked_) {
    last_rx_ = rx;
    ping_sent_ns_ = 0;
    arm_liveness(o.nop_in_interval_ms);
    return;
  }
  const uint64_t now = mono_ns();
  if (ping_sent_ns_ == 0) {
    send_ping();
    ping_sent_ns_ = now;
    arm_liveness(o.nop_in_timeout_ms ? o.nop_in_timeout_ms : o.nop_in_interval_ms);
    return;
  }
  t_.count(&TargetStats::nop_in_timeouts);
  spdlog::warn("iscsi {}: no answer to a NOP-In ping in {} ms; closing the connection", peer_,
               (now - ping_sent_ns_) / 1'000'000);
  shutdown("initiator did not answer a NOP-In ping");
}

// A NOP-In that asks for a NOP-Out: a Target Transfer Tag of our own, no ITT, and
// StatSN not advanced (RFC 7143 §11.19).
void IscsiConnection::send_ping() {
  Bhs b;
  b.clear();
  b.set_opcode(op::kNopIn);
  b.set_flags(kFinal);
  b.set_itt(kReservedTag);
  b.set_u32(off::kTtt, ++ping_ttt_ == kReservedTag ? ++ping_ttt_ : ping_ttt_);
  fill_sns(b, false);
  t_.count(&TargetStats::nop_in_pings);
  spdlog::debug("iscsi {}: initiator silent; NOP-In ping ttt={:#x}", peer_, ping_ttt_);
  send_owned(b, {});
}

}  // namespace castor::iscsi
