#pragma once
// An iSCSI session of the target (private to src/iscsi).

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "iscsi/protocol.h"
#include "iscsi/text.h"
#include "scsi/device.h"

namespace castor::iscsi {

class IscsiConnection;

// The CmdSN window of a session (RFC 7143 §4.2.2.1). The next non-immediate command is
// the one numbered ExpCmdSN; each non-immediate SCSI command holds a credit while its
// task lives, and the target advertises MaxCmdSN = ExpCmdSN + free credits - 1, never
// decreasing, so that at most the queue depth of them are in flight.
class CmdSnWindow {
 public:
  // Opens the window at `exp_cmd_sn` with `credits` (the queue depth) free.
  void open(uint32_t exp_cmd_sn, uint32_t credits) {
    exp_ = exp_cmd_sn;
    credits_ = credits;
    max_ = exp_ + credits_ - 1;
  }
  uint32_t exp_cmd_sn() const { return exp_; }
  // The MaxCmdSN advertised last.
  uint32_t advertised_max() const { return max_; }
  // Whether `sn` is past ExpCmdSN yet within the MaxCmdSN advertised.
  bool ahead(uint32_t sn) const { return sn_lt(exp_, sn) && !sn_lt(max_, sn); }
  // Accepts the command numbered ExpCmdSN: ExpCmdSN advances. False, and nothing
  // changes, when no credit is free: the command is outside the window advertised.
  bool accept_next() {
    if (credits_ == 0) return false;
    ++exp_;
    return true;
  }
  void take_credit() { --credits_; }    // a non-immediate SCSI command got a task
  void return_credit() { ++credits_; }  // its task ended
  // The MaxCmdSN to advertise now: it grows as tasks end, and never decreases.
  uint32_t max_cmd_sn() {
    const uint32_t m = exp_ + credits_ - 1;
    if (sn_lt(max_, m)) max_ = m;
    return max_;
  }

 private:
  uint32_t exp_ = 0;
  uint32_t max_ = 0;
  uint32_t credits_ = 0;  // free: the queue depth minus the commands in flight
};

// A session (an I_T nexus) and its connections (RFC 7143 MC/S). Every connection of a
// session runs on the reactor of its leading connection (a connection that logs in to
// join a session on another reactor is handed over there first), so the CmdSN window,
// the task set and task management are shared without locks. Created by the leading
// login; destroyed with its last connection. Error recovery level 0: a connection that
// fails (rather than logging out) fails the whole session.
struct IscsiSession {
  uint16_t tsih = 0;
  std::array<uint8_t, 6> isid{};
  std::string initiator, target;
  bool discovery = false;
  SessionParams params;  // the session-wide ("LO") values of the leading login
  std::shared_ptr<scsi::Device> dev;
  scsi::ItNexus nexus;
  bool attached = false;
  CmdSnWindow window;
  std::vector<IscsiConnection*> conns;
  bool ending = false;  // being closed as a whole: a connection closing is no failure
  // The task management function in progress (one per session at a time): the
  // connection that asked, and how many aborted tasks it still waits for.
  IscsiConnection* tmf_conn = nullptr;
  uint32_t tmf_pending = 0;
};

}  // namespace castor::iscsi
