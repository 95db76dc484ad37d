#pragma once
// Layer 5: the iSCSI login phase of one connection (RFC 7143 §6): stages, the security
// negotiation (None or CHAP, with optional mutual CHAP) and the operational keys. Pure
// logic: it turns each Login Request into a Login Response and knows nothing of sockets,
// so it is unit-tested and fuzzed directly.

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "iscsi/chap.h"
#include "iscsi/protocol.h"
#include "iscsi/text.h"

namespace castor::iscsi {

// What a target node requires from an initiator at login.
struct NodeAccess {
  ChapCredentials chap;         // set: the initiator must authenticate with CHAP
  ChapCredentials mutual_chap;  // set: the target authenticates back when asked
  bool require_mutual = false;  // the initiator must ask for mutual CHAP
  std::vector<std::string> allowed_initiators;  // empty: any initiator
};

struct LoginConfig {
  TargetLimits limits;
  uint16_t portal_group_tag = 1;
  uint32_t cmd_window = 128;  // MaxCmdSN - ExpCmdSN + 1 at the start of the session
  uint32_t first_stat_sn = 1;
  // Finds a target node by name; nullopt if there is none.
  std::function<std::optional<NodeAccess>(const std::string& target_name)> find_target;
  // Access rules of discovery sessions (CHAP there is optional).
  NodeAccess discovery;
  // Returns a new non-zero TSIH for a session entering full feature phase.
  std::function<uint16_t()> new_tsih;
};

class Login {
 public:
  enum class Outcome {
    kContinue,     // send the response, wait for the next Login Request
    kFail,         // send the response (an error status), then close the connection
    kFullFeature,  // send the response; the connection is now in full feature phase
  };

  explicit Login(const LoginConfig& cfg) : cfg_(cfg) {}

  // Handles one Login Request (header and its data segment). Fills `resp` and
  // `resp_data` (the response's text). REQUIRES: req.opcode() == op::kLogin.
  Outcome step(const Bhs& req, std::span<const uint8_t> data, Bhs& resp, std::string& resp_data);

  // Results, valid once step() returned kFullFeature.
  SessionType session_type() const { return type_; }
  const std::string& initiator_name() const { return initiator_name_; }
  const std::string& target_name() const { return target_name_; }
  const std::array<uint8_t, 6>& isid() const { return isid_; }
  uint16_t requested_tsih() const { return req_tsih_; }  // non-zero: reinstating a connection
  uint16_t tsih() const { return tsih_; }
  uint16_t cid() const { return cid_; }
  const SessionParams& params() const { return params_; }
  uint32_t exp_cmd_sn() const { return exp_cmd_sn_; }
  uint32_t next_stat_sn() const { return stat_sn_; }
  // Why the login failed (for the log), valid after kFail.
  const std::string& error() const { return error_; }

 private:
  Outcome fail(Bhs& resp, std::string& resp_data, uint16_t status, std::string why);
  Outcome process(const Bhs& req, const KeyValues& kv, Bhs& resp, std::string& out);
  // Security-stage keys. Returns 0 or a login status on failure.
  uint16_t security(const KeyValues& kv, std::string& out);
  void fill_header(const Bhs& req, Bhs& resp);

  enum class Auth { kUnknown, kNone, kChapChosen, kChallengeSent, kDone };

  const LoginConfig& cfg_;
  bool first_ = true;
  bool first_reply_sent_ = false;
  bool mrdsl_declared_ = false;
  uint8_t stage_ = 0;  // current stage (CSG expected)
  SessionType type_ = SessionType::kNormal;
  std::string initiator_name_, target_name_;
  std::array<uint8_t, 6> isid_{};
  uint16_t req_tsih_ = 0, tsih_ = 0, cid_ = 0;
  uint32_t itt_ = 0;
  uint32_t exp_cmd_sn_ = 0;
  uint32_t stat_sn_ = 0;
  NodeAccess access_;
  Auth auth_ = Auth::kUnknown;
  uint8_t chap_id_ = 0;
  std::vector<uint8_t> chap_challenge_;
  SessionParams params_;
  std::string pending_text_;  // accumulated across C=1 PDUs
  std::string error_;
};

}  // namespace castor::iscsi
