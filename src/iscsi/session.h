#pragma once
// An iSCSI session of the target (private to src/iscsi).

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "iscsi/text.h"
#include "scsi/device.h"

namespace castor::iscsi {

class IscsiConnection;

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
  uint32_t exp_cmd_sn = 0, max_cmd_sn = 0;
  uint32_t window_credit = 0;  // CmdSN slots free: queue_depth minus commands in flight
  std::vector<IscsiConnection*> conns;
  bool ending = false;  // being closed as a whole: a connection closing is no failure
  // The task management function in progress (one per session at a time): the
  // connection that asked, and how many aborted tasks it still waits for.
  IscsiConnection* tmf_conn = nullptr;
  uint32_t tmf_pending = 0;
};

}  // namespace castor::iscsi
