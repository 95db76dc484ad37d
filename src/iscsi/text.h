#pragma once
// Layer 5: iSCSI text key=value pairs (RFC 7143 §6.1) and the negotiation of the login
// and operational keys (§13), kept free of sockets so it can be tested and fuzzed alone.

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace castor::iscsi {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// Limits from RFC 7143 §6.1: a key name is at most 63 bytes, a value at most 255 bytes
// (8192 for the few long-value keys, which Castor does not accept larger than 1024 hex
// digits: CHAP challenges and responses).
inline constexpr size_t kMaxKeyLength = 63;
inline constexpr size_t kMaxValueLength = 1024;
// A login or text exchange may span PDUs; their accumulated text is capped at this.
inline constexpr size_t kMaxTextBytes = 64 * 1024;

// Parses `key=value\0...` data. Trailing NUL padding is ignored; a missing final NUL is
// accepted. Errors (InvalidArgument): no '=', an empty or over-long key, an over-long
// value, a key repeated within the same data.
Result<KeyValues> parse_text(std::span<const uint8_t> data);
// Appends `key=value\0`.
void append_text(std::string& out, const std::string& key, const std::string& value);
// The text data of these pairs, in order (what an initiator sends in a login or text).
std::string text_pairs(std::initializer_list<std::pair<std::string, std::string>> pairs);

// Operational parameters of a session/connection after negotiation. Defaults are the
// RFC's; Castor's own limits are in TargetLimits.
struct SessionParams {
  bool header_digest = false;
  bool data_digest = false;
  uint32_t initiator_mrdsl = 8192;  // largest data segment the initiator accepts from us
  uint32_t max_burst = 262144;
  uint32_t first_burst = 65536;
  bool initial_r2t = true;
  bool immediate_data = true;
  uint32_t max_outstanding_r2t = 1;
  uint32_t default_time2wait = 2;
  uint32_t default_time2retain = 20;
  uint32_t max_connections = 1;
};

// Operational keys that only the leading login of a session may negotiate (RFC 7143
// §13: "LO"); a connection added to a session inherits them from the session.
// (SessionType is LO too, but declarative: the login handles it.)
bool is_leading_only_key(const std::string& key);

struct TargetLimits {
  uint32_t max_recv_data_segment_length = 262144;  // what Castor declares it receives
  uint32_t max_burst = 1u << 20;
  uint32_t first_burst = 262144;
  bool want_initial_r2t = false;  // Castor accepts unsolicited data
  uint32_t max_connections = 8;    // per session (MC/S); the answer is min(offer, this)
};

enum class SessionType { kNormal, kDiscovery };

// Negotiates the operational (and digest) keys offered in one login PDU. Keys that are
// not operational (InitiatorName, AuthMethod, CHAP_*, ...) are left for the caller and
// reported in `unhandled`. Appends the answers to `reply`. Returns an error
// (InvalidArgument with a message) for a value outside its range, which the login turns
// into an initiator-error status.
Status negotiate_operational(const KeyValues& offered, const TargetLimits& lim, SessionType type,
                             SessionParams& params, std::string& reply, KeyValues& unhandled);

}  // namespace castor::iscsi
