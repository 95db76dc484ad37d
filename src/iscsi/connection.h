#pragma once
// One TCP connection of the iSCSI target (private to src/iscsi): its login, its share of
// the session's full feature phase, and the tasks it carries. The member functions are
// defined by concern in connection*.cc; each group of declarations below names its file.

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "iscsi/login.h"
#include "iscsi/protocol.h"
#include "iscsi/session.h"
#include "iscsi/target.h"
#include "reactor/budget.h"
#include "reactor/tcp.h"
#include "reactor/tcp_server.h"
#include "scsi/device.h"

namespace castor::iscsi {

// One TCP connection of a session, owned by one reactor. Tasks have connection
// allegiance: a command's R2Ts, Data-In and response go on the connection it came on.
class IscsiConnection final : public reactor::ServedConnection, public reactor::Connection::Handler {
 public:
  // `initial`: bytes already read from `fd` by the reactor that handed it over.
  IscsiConnection(IscsiTarget& t, reactor::Reactor& r, int fd, std::vector<uint8_t> initial = {});

  void start();
  uint64_t id() const { return id_; }
  void shutdown(const std::string& why);
  void shut_down() override { shutdown("target stopping"); }

  size_t on_data(std::span<const uint8_t> buf) override;
  void on_closed(const std::string& reason) override;

 private:
  // ---- connection.cc: task slots
  enum class TaskState : uint8_t { kFree, kReceiving, kExecuting, kSending };

  // A header slot: BHS, room for a header digest, and a tail for padding + data digest.
  struct Hdr {
    Bhs bhs;
    uint8_t hdigest[4];
    uint8_t tail[8];
  };

  struct Task {
    scsi::Command cmd;
    IscsiConnection* c = nullptr;
    TaskState state = TaskState::kFree;
    uint32_t index = 0;
    uint32_t generation = 0;
    uint32_t itt = 0;
    uint8_t pdu_flags = 0;
    uint32_t edtl = 0;
    uint32_t received = 0;      // Data-Out bytes in buf
    uint32_t unsol_limit = 0;   // bytes the initiator may send without R2T
    bool unsol_open = false;    // unsolicited Data-Out may still arrive
    bool r2t_open = false;
    uint32_t r2t_end = 0;       // offset where the current burst ends
    uint32_t r2t_sn = 0;
    uint32_t data_sn = 0;       // expected DataSN of the next Data-Out in this sequence
    bool data_lost = false;     // a Data-Out was lost: the task ends in 0B/47/05 (data_out)
    uint32_t datain_sn = 0;     // Data-In and R2T PDUs sent
    bool aborted = false;
    bool abort_counted = false;  // the session's TMF in progress waits for this task
    bool holds_credit = false;  // a non-immediate command: its slot of the CmdSN window
    uint32_t charged = 0;       // bytes counted in buffered_bytes_
    std::vector<Hdr> hdrs;      // Data-In / response headers, reused
    Hdr r2t;
    Task* next_free = nullptr;
    uint32_t ttt() const { return (generation << 16) | index; }
  };

  void init_tasks();
  Task* take();
  void release(Task& tk);
  Task* find_itt(uint32_t itt);

  // ---- connection.cc: lifetime and dispatch
  bool dispatch(const Bhs& h, std::span<const uint8_t> data);
  void cancel_timer();
  void maybe_destroy();
  static std::string addr_text(const sockaddr_storage& ss);
  static std::string hex(const uint8_t* p, size_t n);

  // ---- connection_framing.cc: PDUs in and out
  size_t next_pdu(std::span<const uint8_t> b);
  size_t protocol_error(const Bhs& h, uint8_t reason, const std::string& why);
  void send_pdu(Hdr& hdr, const uint8_t* data, uint32_t len, std::function<void()> done = nullptr);
  // Control-path replies (login, text, NOP-In, TMF, logout, reject) own their bytes.
  struct OwnedPdu {
    Hdr hdr;
    std::string data;
  };
  void send_owned(const Bhs& bhs, std::string data, const char* close_reason = nullptr);
  void send_reject(const Bhs& bad, uint8_t reason, const char* close_reason = nullptr);

  // ---- connection_login.cc: the login phase
  void login_pdu(const Bhs& h, std::span<const uint8_t> data);
  void refuse_login(const Bhs& h, std::span<const uint8_t> data, uint16_t status, const std::string& why);
  void refuse(Bhs& resp, uint16_t status, const std::string& why);
  void enter_ffp();

  // ---- connection_session.cc: membership of a session, CmdSN ordering, logout
  // Stamps StatSN (then advanced if `advance_stat`), ExpCmdSN and MaxCmdSN into `b`.
  void fill_sns(Bhs& b, bool advance_stat);
  void hand_over(uint32_t home);
  uint16_t check_join(std::string* why);
  bool lead_session();
  bool join_session();
  void leave_session();
  enum class Order { kAccept, kDrop, kPark };
  Order order_cmd_sn(const Bhs& h);
  bool another_can_deliver() const;
  void park();
  void wake_parked();
  static void unpark(IscsiSession& s, IscsiConnection* except);
  void logout(const Bhs& h);
  void maybe_logout();

  // ---- connection_data.cc: commands, R2T, Data-Out, Data-In and status
  void scsi_command(const Bhs& h, std::span<const uint8_t> data);
  void release_credit_and_fail(Task& tk, const Bhs& h, const std::string& why);
  void fail_unexecuted(Task& tk, uint8_t key, uint16_t asc_ascq);
  void ensure_buf(scsi::Command& c, uint32_t n);
  void quick_status(const Bhs& h, scsi::Status st);
  void send_r2t(Task& tk);
  void data_out(const Bhs& h, std::span<const uint8_t> data, bool intact = true);
  void execute(Task& tk);
  static void command_done(scsi::Command& c, void* arg);
  void finish(Task& tk);
  void residual(const Task& tk, uint8_t* flags, uint32_t* count);
  void send_data_in(Task& tk);
  void send_response(Task& tk);

  // ---- connection_task_management.cc: task management functions
  void task_mgmt(const Bhs& h);
  bool has_lun(uint64_t lun) const;
  void finish_tmf();

  // ---- connection_nop.cc: NOP-Out echoes and NOP-In liveness pings
  void nop_out(const Bhs& h, std::span<const uint8_t> data);
  void arm_liveness(uint64_t delay_ms);
  void liveness_tick();
  void send_ping();

  // ---- connection_text.cc: Text requests (SendTargets)
  void text(const Bhs& h, std::span<const uint8_t> data);
  void send_targets(const std::string& which, std::string& out);

  // Task slots beyond queue_depth: immediate commands hold no CmdSN credit.
  static constexpr uint32_t kImmediateSlots = 8;

  IscsiTarget& t_;
  reactor::Reactor& r_;
  reactor::ByteBudget& budget_;  // the target's, for this reactor
  const uint64_t id_;
  Login login_;
  std::unique_ptr<reactor::Connection> conn_;
  std::string peer_;
  bool login_started_ = false;
  reactor::Reactor::TimerId timer_{};  // the login timeout, then the liveness check
  bool timer_armed_ = false;
  uint64_t buffered_bytes_ = 0;  // EDTLs of this connection's tasks (max_buffered_bytes)
  uint64_t last_rx_ = 0;       // bytes received at the last liveness check
  uint64_t ping_sent_ns_ = 0;  // a NOP-In ping awaits its answer (0: none)
  uint32_t ping_ttt_ = 0;
  bool ffp_ = false;
  bool discovery_ = false;
  bool closed_ = false;
  bool doomed_ = false;  // closing once the last reply is sent; input is ignored
  bool destroying_ = false;
  bool registered_ = false;
  bool detached_ = false;     // handed over to another reactor
  bool parked_ = false;       // waiting for a lower CmdSN on another connection
  // Control-path replies (send_owned) not yet sent, and whether input is held back until
  // they drain (next_pdu).
  static constexpr uint32_t kMaxOwnedPdus = 128;
  static constexpr size_t kMaxOwnedBytes = 4u << 20;
  uint32_t owned_pdus_ = 0;
  size_t owned_bytes_ = 0;
  bool held_ = false;
  bool reinstated_ = false;   // replaced by a new login with the same CID
  std::vector<uint8_t> initial_;  // bytes read ahead by the reactor that handed us over
  const bool handed_over_;
  std::span<const uint8_t> rx_;   // the unconsumed input, from the PDU being handled
  IscsiSession* sess_ = nullptr;  // set in full feature phase
  uint16_t cid_ = 0;
  bool logout_pending_ = false;
  bool logged_out_ = false;
  Bhs logout_req_{};
  SessionParams params_;
  std::shared_ptr<scsi::Device> dev_;  // the session's
  uint32_t stat_sn_ = 0;
  std::vector<Task> tasks_;
  Task* free_ = nullptr;
  uint32_t active_ = 0;
  Bhs tmf_resp_{};
  bool lun_reset_pending_ = false;
  uint64_t reset_lun_ = 0;
  uint8_t target_reset_pending_ = 0;  // tmf::kTargetWarmReset or kTargetColdReset
};

}  // namespace castor::iscsi
