#pragma once
// Private to the target (src/nvmf/target): one queue pair, a TCP connection owned by one
// reactor, and the commands it carries. Its member functions are defined by concern:
//
//   tcp_transport.cc  the connection: PDUs in and out, ICReq/ICResp, command slots,
//                     in-capsule data, R2T and H2CData, C2HData and responses, digests,
//                     TermReq, the queue pair's lifetime
//   controller.cc     Fabrics Connect (a new controller, or an I/O queue joining one),
//                     Property Get/Set, keep-alive, tearing a controller down
//   admin_cmds.cc     the admin commands of a connected controller and the asynchronous
//                     events (Async Event Requests, namespace and ANA change notices)
//   io_cmds.cc        the I/O commands, onto the namespace's bdev
//
// Everything here runs on the queue pair's reactor unless a comment says otherwise.

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bdev/bdev.h"
#include "nvmf/codec/pdu.h"
#include "nvmf/codec/spec.h"
#include "nvmf/target/controller.h"
#include "nvmf/target/identify.h"
#include "nvmf/target/target.h"
#include "reactor/tcp.h"

namespace castor::nvmf {

inline constexpr uint16_t kSuccess = 0;
inline uint16_t generic(uint8_t code, bool dnr = true) { return make_status(Sct::kGeneric, code, dnr); }
inline uint16_t specific(uint8_t code, bool dnr = true) { return make_status(Sct::kCommandSpecific, code, dnr); }

class Qpair final : public reactor::ServedConnection,
                    public reactor::Connection::Handler,
                    reactor::ByteBudget::Waiter {
 public:
  Qpair(NvmfTarget& t, reactor::Reactor& r, int fd);
  void start();
  void close(const std::string& why) { conn_->close(why); }
  void shut_down() override { close("target stopping"); }

  // reactor::Connection::Handler (tcp_transport.cc).
  size_t on_data(std::span<const uint8_t> buf) override;
  void on_closed(const std::string& reason) override;
  void on_received_into() override;

  // Messages from the control path and from other reactors (admin_cmds.cc).
  // On this qpair's reactor: adopt a new namespace snapshot; on the admin queue also
  // record the change and, if the host enabled namespace attribute notices, complete an
  // outstanding Async Event Request with one.
  void namespaces_changed(std::shared_ptr<const std::vector<NsRef>> snap, uint32_t nsid);
  // On the admin queue's reactor: the subsystem's ANA state changed.
  void ana_changed();
  // Completes an outstanding Async Event Request with `dw0`, or keeps the event (once)
  // for the next one the host sends.
  void post_event(uint32_t dw0);
  bool serves(const std::string& nqn) const { return ctrl_ && ctrl_->subnqn == nqn; }
  bool belongs_to(const Controller* c) const { return ctrl_.get() == c; }

 private:
  struct Cmd {
    Qpair* q = nullptr;
    uint16_t slot = 0;
    bool busy = false;
    Sqe sqe{};
    bdev::IoRequest io;
    iovec iov{};
    bdev::DmaBuffer buf;
    uint32_t len = 0;       // data length of the command
    uint32_t received = 0;  // host data received so far (R2T)
    bool waiting_h2c = false;
    NsRef ns{};  // by value: the snapshot it came from may be replaced
    uint8_t c2h[32];
    uint8_t resp[32];
    uint32_t ddgst = 0;
    uint32_t dsm_next = 0;  // DSM: next range to deallocate
    uint32_t charged = 0;   // bytes of the target's buffer budget this command holds
  };
  static constexpr uint32_t kAdminInCapsule = 8192;

  // ------------------------------------------------------- tcp_transport.cc: framing
  void term(const PduError& e, std::span<const uint8_t> hdr);
  void process(const PduFrame& f, std::span<const uint8_t> pdu);
  void icreq(std::span<const uint8_t> pdu);
  // O(1) on the I/O path: a free list of command slots and a bitmap of CIDs in use.
  Cmd* get_slot(uint16_t cid);
  void release(Cmd* c);
  void capsule(const PduFrame& f, std::span<const uint8_t> pdu);

  void ensure_buf(Cmd* c, uint32_t len);
  // ------------------------------------------------------- tcp_transport.cc: responses
  void fill_resp(Cmd* c, uint16_t status, uint32_t dw0, uint32_t dw1, size_t* n);
  void finish(Cmd* c, uint16_t status, uint32_t dw0 = 0, uint32_t dw1 = 0);
  void send_resp_only(uint16_t cid, uint16_t status);
  // Data to the host (C2HData, one PDU) then the response, in one send.
  void finish_with_data(Cmd* c, uint32_t len, uint16_t status = kSuccess);
  // Copies `data` into the command's buffer and sends it.
  void reply_data(Cmd* c, const void* data, uint32_t len);
  // ------------------------------------------------------- tcp_transport.cc: host data
  // Asks the host for the command's data with one R2T for all of it.
  void request_data(Cmd* c);
  // The command an H2CData header is for, after every check of its fields; nullptr when
  // the connection is being terminated.
  Cmd* h2c_target(const PduFrame& f, std::span<const uint8_t> hdr);
  // A large H2CData PDU still arriving (`b` holds its start): once its header is here
  // and checked, the payload goes straight into the command's buffer (what has arrived
  // is copied, the rest is received in place) instead of through the connection's
  // buffer. Not with data digests, whose check needs the whole payload at hand.
  bool receive_h2c_direct(const PduFrame& f, std::span<const uint8_t> b);
  void h2c_data(const PduFrame& f, std::span<const uint8_t> pdu);
  // `len` more bytes of the command's data are in its buffer; once all are, it runs
  // (data_received()).
  void h2c_landed(Cmd* c, uint32_t len);
  // ------------------------------------------------------- tcp_transport.cc: lifetime
  void maybe_destroy();
  uint32_t aer_held() const { return ctrl_ && qid_ == 0 ? static_cast<uint32_t>(ctrl_->aers.size()) : 0; }

  // ------------------------------------------------------- controller.cc
  void connect(Cmd* c);
  // Property Get/Set, and Connect on a queue that is connected already.
  void fabrics(Cmd* c);
  void arm_keepalive();
  void teardown_controller(const std::string& reason);

  // ------------------------------------------------------- admin_cmds.cc
  void admin(Cmd* c);
  ControllerIdentity identity() const;
  void identify(Cmd* c);
  static NamespaceIdentity ns_identity(const NsRef& n);
  void get_log_page(Cmd* c);
  void features(Cmd* c);

  // ------------------------------------------------------- io_cmds.cc
  void io(Cmd* c);
  // The host data of a Write, Dataset Management or reservation command has all arrived.
  void data_received(Cmd* c);
  // Read/Write: charges the data length to the target's buffer budget (one command alone
  // always fits). False: parked until budget_available() starts it. The socket keeps being
  // read meanwhile (a write's data, which frees budget, may be behind it in the stream);
  // the queue size bounds what can park.
  bool charge(Cmd* c);
  void budget_available() override;
  // Read: the bdev read into the command's buffer; Write: its data (R2T) or the bdev write.
  void start_rw(Cmd* c);
  // Register, Acquire or Release with its keys in the command's buffer, as this
  // controller's host. A preempt's notifications run here, on this reactor.
  void reservation(Cmd* c);
  static constexpr uint64_t kPreemptDrainMs = 10'000;
  void drain_then_finish(Cmd* c, uint64_t deadline_ns);
  void dsm_next(Cmd* c, uint32_t i);
  // `fua`: the command's Force Unit Access bit (writes): the bdev layer completes the
  // request only once the data is durable.
  void submit(Cmd* c, bdev::IoType t, uint64_t slba, uint64_t nlb, bool fua = false);
  static uint16_t status_of(const bdev::IoRequest& io);
  static void io_done(bdev::IoRequest& io, void* arg);
  // The bdev behind this subsystem said it cannot serve I/O through this engine any more
  // (its nexus was fenced): the path is lost for good, and the host is told so, so that
  // it stops retrying here. Any reactor.
  void lose_path();

  NvmfTarget& t_;
  reactor::Reactor& r_;
  std::unique_ptr<reactor::Connection> conn_;
  PduLimits lim_;
  std::vector<Cmd> slots_;
  std::vector<uint16_t> free_slots_;
  // Responses to commands that got no slot (send_resp_only), not yet sent; past the limit
  // on_data() holds the input (held_) until half have gone out.
  static constexpr uint32_t kMaxLooseResps = 128;
  uint32_t loose_resps_ = 0;
  bool held_ = false;
  reactor::ByteBudget& budget_;   // the target's share for this reactor
  std::deque<Cmd*> budget_parked_;  // reads and writes waiting for budget_, in order
  bool waiting_budget_ = false;   // registered with budget_
  std::vector<bool> cids_ = std::vector<bool>(65536, false);
  std::shared_ptr<Controller> ctrl_;
  uint16_t qid_ = 0;
  uint16_t sqhd_ = 0;
  uint16_t sq_entries_ = 32;
  bool connected_ = false;
  bool terminating_ = false;
  bool closed_ = false;
  bool dying_ = false;
  uint32_t outstanding_ = 0;
  Cmd* direct_cmd_ = nullptr;  // receiving an H2CData payload in place (receive_into)
  uint32_t direct_len_ = 0;
  uint32_t aec_ = 0;
  uint32_t error_recovery_ = 0;
  bdev::ReservationAccessCache resv_cache_;  // the I/O path's verdict for ctrl_'s host
  std::vector<uint32_t> retained_events_;  // (admin) events that found no outstanding AER
  std::shared_ptr<const std::vector<NsRef>> ns_ = std::make_shared<std::vector<NsRef>>();
};

}  // namespace castor::nvmf
