// IscsiConnection, framing: reading PDUs (BHS, AHS, header digest, data segment and its
// digest) and writing them, including the control-path replies that own their bytes and
// Reject.
#include <cstddef>
#include <cstring>
#include <functional>

#include <spdlog/spdlog.h>

#include "common/crc32c.h"
#include "iscsi/connection.h"

namespace castor::iscsi {

namespace {
const uint8_t kZeroPad[4] = {0, 0, 0, 0};
}  // namespace

size_t IscsiConnection::next_pdu(std::span<const uint8_t> b) {
  if (b.size() < kBhsSize) return 0;
  Bhs h;
  std::memcpy(h.b, b.data(), kBhsSize);
  const uint32_t ahs = h.total_ahs_bytes();
  const uint32_t dsl = h.data_segment_length();
  const uint32_t hd = params_.header_digest && ffp_ ? kDigestSize : 0;
  const uint32_t dd = params_.data_digest && ffp_ && dsl ? kDigestSize : 0;
  if (dsl > t_.options().limits.max_recv_data_segment_length) {
    return protocol_error(h, reject::kProtocolError, fmt::format("data segment of {} bytes", dsl));
  }
  const size_t total = kBhsSize + ahs + hd + dsl + pad4(dsl) + dd;
  if (b.size() < total) return 0;
  if (hd) {
    uint32_t want;
    std::memcpy(&want, b.data() + kBhsSize + ahs, 4);
    if (crc32c(b.data(), kBhsSize + ahs) != want) {
      t_.count(&TargetStats::digest_errors);
      // A header digest error leaves the framing untrustworthy: at ERL 0, close.
      conn_->close("header digest mismatch");
      return 0;
    }
  }
  std::span<const uint8_t> data = b.subspan(kBhsSize + ahs + hd, dsl);
  if (dd) {
    uint32_t want;
    std::memcpy(&want, b.data() + kBhsSize + ahs + hd + dsl + pad4(dsl), 4);
    if (crc32c(b.data() + kBhsSize + ahs + hd, dsl + pad4(dsl)) != want) {
      t_.count(&TargetStats::digest_errors);
      // RFC 7143 §7.8: Reject and discard. A Data-Out's loss ends its task (data_out);
      // any other PDU (a command's immediate data, a text) leaves a gap in CmdSN that
      // ERL 0 cannot fill: session recovery.
      if (ffp_ && h.opcode() == op::kDataOut) {
        send_reject(h, reject::kDataDigest);
        data_out(h, data, /*intact=*/false);
        return total;
      }
      send_reject(h, reject::kDataDigest, "data digest mismatch");
      return 0;
    }
  }
  if (!ffp_) {
    login_pdu(h, data);
    return total;
  }
  if (owned_pdus_ >= kMaxOwnedPdus || owned_bytes_ >= kMaxOwnedBytes) {
    // The initiator is not reading what it asked for (NOP-In echoes, rejects, status
    // of refused commands): stop reading it until half of that has gone out, rather
    // than queue an answer for everything it sends.
    held_ = true;
    conn_->pause_recv();
    t_.count(&TargetStats::receive_holds);
    return 0;
  }
  const uint32_t exp_before = sess_->window.exp_cmd_sn();
  if (!dispatch(h, data)) {
    park();
    return 0;  // offered again once the commands before it have arrived
  }
  // Only a session of several connections can have one parked.
  if (sess_->window.exp_cmd_sn() != exp_before && sess_->conns.size() > 1) wake_parked();
  return total;
}

size_t IscsiConnection::protocol_error(const Bhs& h, uint8_t reason, const std::string& why) {
  spdlog::warn("iscsi protocol error from {}, closing connection: {}", peer_, why);
  t_.count(&TargetStats::protocol_errors);
  if (ffp_) {
    send_reject(h, reason, why.c_str());
  } else {
    conn_->close(why);
  }
  return 0;
}

// Sends a header (with digest) and an optional data segment (padded, with digest).
// `hdr` and `data` must stay valid until `done` runs.
void IscsiConnection::send_pdu(Hdr& hdr, const uint8_t* data, uint32_t len, std::function<void()> done) {
  hdr.bhs.set_data_segment_length(len);
  iovec iov[4];
  int n = 0;
  size_t hlen = kBhsSize;
  if (params_.header_digest && ffp_) {
    uint32_t crc = crc32c(hdr.bhs.b, kBhsSize);
    std::memcpy(hdr.hdigest, &crc, 4);
    hlen += 4;
  }
  static_assert(offsetof(Hdr, hdigest) == kBhsSize, "digest follows the BHS");
  iov[n++] = {&hdr, hlen};
  if (len) {
    iov[n++] = {const_cast<uint8_t*>(data), len};
    const uint32_t pad = pad4(len);
    size_t tail = pad;
    std::memset(hdr.tail, 0, 4);
    if (params_.data_digest && ffp_) {
      uint32_t crc = crc32c(data, len);
      if (pad) crc = crc32c(kZeroPad, pad, crc);
      std::memcpy(hdr.tail + pad, &crc, 4);
      tail += 4;
    }
    if (tail) iov[n++] = {hdr.tail, tail};
  }
  conn_->send({iov, static_cast<size_t>(n)}, std::move(done));
}

// With `close_reason`, the connection takes no more input and closes once this PDU
// has been sent (closing at once would cancel the send, and the initiator would never
// learn why).
// Until sent, they count in owned_pdus_ and owned_bytes_ (next_pdu holds the input past
// kMaxOwnedPdus or kMaxOwnedBytes).
void IscsiConnection::send_owned(const Bhs& bhs, std::string data, const char* close_reason) {
  auto* p = new OwnedPdu{};
  p->hdr.bhs = bhs;
  p->data = std::move(data);
  const size_t bytes = kBhsSize + p->data.size();
  ++owned_pdus_;
  owned_bytes_ += bytes;
  if (close_reason) doomed_ = true;
  std::function<void()> done = [this, p, bytes, why = std::string(close_reason ? close_reason : "")] {
    delete p;
    --owned_pdus_;
    owned_bytes_ -= bytes;
    if (!why.empty()) {
      conn_->close(why);
    } else if (held_ && owned_pdus_ <= kMaxOwnedPdus / 2 && owned_bytes_ <= kMaxOwnedBytes / 2 &&
               !conn_->closing()) {
      held_ = false;
      conn_->resume_recv();
    }
  };
  send_pdu(p->hdr, reinterpret_cast<const uint8_t*>(p->data.data()), static_cast<uint32_t>(p->data.size()),
           std::move(done));
}

void IscsiConnection::send_reject(const Bhs& bad, uint8_t reason, const char* close_reason) {
  Bhs b;
  b.clear();
  b.set_opcode(op::kReject);
  b.set_flags(kFinal);
  b.b[off::kResponse] = reason;
  b.set_itt(kReservedTag);
  fill_sns(b, true);
  send_owned(b, std::string(reinterpret_cast<const char*>(bad.b), kBhsSize), close_reason);
}

}  // namespace castor::iscsi
