// IscsiConnection: its lifetime (start, input, close, destruction), the dispatch of full
// feature phase PDUs by opcode, and its task slots.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>

#include <spdlog/spdlog.h>

#include "iscsi/connection.h"

namespace castor::iscsi {

namespace {
std::atomic<uint64_t> g_next_conn_id{1};
}  // namespace

IscsiConnection::IscsiConnection(IscsiTarget& t, reactor::Reactor& r, int fd, std::vector<uint8_t> initial)
    : t_(t),
      r_(r),
      budget_(t.budget(r.id())),
      id_(g_next_conn_id.fetch_add(1)),
      login_(t.login_config()),
      conn_(std::make_unique<reactor::Connection>(
          r, fd, this, t.options().limits.max_recv_data_segment_length + 64 * 1024)),
      initial_(std::move(initial)),
      handed_over_(!initial_.empty()) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) peer_ = addr_text(ss);
}

void IscsiConnection::start() {
  t_.tcp_.attach(r_, *this);
  // A connection that does not finish logging in is closed, so idle sockets cannot pile up.
  timer_ = r_.add_timer(t_.options().login_timeout_ms * 1'000'000ull, [this] {
    timer_armed_ = false;
    if (!ffp_) shutdown("login timed out");
  });
  timer_armed_ = true;
  if (initial_.empty()) {
    conn_->start();
  } else {
    std::vector<uint8_t> b = std::move(initial_);
    conn_->start(b);
  }
}

void IscsiConnection::shutdown(const std::string& why) {
  if (!conn_->closing()) conn_->close(why);
}

size_t IscsiConnection::on_data(std::span<const uint8_t> buf) {
  size_t used = 0;
  while (!conn_->closing() && !closed_ && !doomed_ && !detached_ && !parked_ && !held_) {
    rx_ = buf.subspan(used);
    size_t n = next_pdu(rx_);
    if (n == 0) break;
    used += n;
  }
  return used;
}

void IscsiConnection::on_closed(const std::string& reason) {
  closed_ = true;
  spdlog::debug("iscsi connection {} closed: {}", peer_, reason);
  // At error recovery level 0 the only recovery is session recovery: a lost
  // connection fails its session, the others close too, and the initiator logs in
  // afresh. (Before the releases below: the last one may unlink us from the session.)
  if (sess_ && !sess_->ending && !logged_out_ && !reinstated_) {
    sess_->ending = true;
    for (IscsiConnection* c : sess_->conns) {
      if (c != this) c->shutdown("session failed: connection " + std::to_string(cid_) + " lost (" + reason + ")");
    }
  }
  // Tasks still receiving data will never get it; those executing finish first.
  for (Task& tk : tasks_) {
    if (tk.state == TaskState::kReceiving) release(tk);
  }
  maybe_destroy();
}

// Handles one PDU of the full feature phase. False: not now (parked), offer it again.
bool IscsiConnection::dispatch(const Bhs& h, std::span<const uint8_t> data) {
  if (logged_out_) return true;  // nothing after a logout is accepted
  const uint8_t o = h.opcode();
  if ((o == op::kNopOut || o == op::kTaskMgmt || o == op::kText || o == op::kLogout) && !h.immediate()) {
    // These take a CmdSN unless immediate.
    switch (order_cmd_sn(h)) {
      case Order::kAccept: break;
      case Order::kDrop: return true;
      case Order::kPark: return false;
    }
  }
  switch (h.opcode()) {
    case op::kScsiCmd:
      if (discovery_) {
        protocol_error(h, reject::kProtocolError, "SCSI command in a discovery session");
        return true;
      }
      switch (order_cmd_sn(h)) {
        case Order::kAccept: break;
        case Order::kDrop: return true;
        case Order::kPark: return false;
      }
      scsi_command(h, data);
      return true;
    case op::kDataOut: data_out(h, data); return true;
    case op::kNopOut: nop_out(h, data); return true;
    case op::kTaskMgmt: task_mgmt(h); return true;
    case op::kText: text(h, data); return true;
    case op::kLogout: logout(h); return true;
    case op::kLogin: protocol_error(h, reject::kProtocolError, "login in full feature phase"); return true;
    case op::kSnack: send_reject(h, reject::kCommandNotSupported); return true;
    default:
      spdlog::debug("iscsi: unsupported opcode {:#x}", h.opcode());
      send_reject(h, reject::kCommandNotSupported);
      return true;
  }
}

void IscsiConnection::init_tasks() {
  const uint32_t n = t_.options().queue_depth + kImmediateSlots;
  tasks_ = std::vector<Task>(n);
  for (uint32_t i = 0; i < n; ++i) {
    tasks_[i].index = i;
    tasks_[i].c = this;
    tasks_[i].next_free = free_;
    free_ = &tasks_[i];
  }
}

IscsiConnection::Task* IscsiConnection::take() {
  Task* tk = free_;
  if (!tk) return nullptr;
  free_ = tk->next_free;
  tk->generation = (tk->generation + 1) & 0x7FFF;
  tk->aborted = tk->abort_counted = tk->data_lost = false;
  tk->received = 0;
  tk->unsol_open = tk->r2t_open = false;
  tk->r2t_sn = tk->data_sn = tk->datain_sn = 0;
  tk->cmd.reset_result();
  ++active_;
  return tk;
}

void IscsiConnection::release(Task& tk) {
  tk.state = TaskState::kFree;
  if (tk.cmd.buf.size() > t_.options().keep_buffer_bytes) tk.cmd.buf = bdev::DmaBuffer();
  tk.next_free = free_;
  free_ = &tk;
  --active_;
  buffered_bytes_ -= tk.charged;
  budget_.release(tk.charged);
  tk.charged = 0;
  if (tk.holds_credit) sess_->window.return_credit();
  tk.holds_credit = false;
  if (tk.abort_counted) {
    tk.abort_counted = false;
    if (sess_->tmf_conn && --sess_->tmf_pending == 0) sess_->tmf_conn->finish_tmf();
  }
  if (logout_pending_) maybe_logout();
  if (closed_) maybe_destroy();
}

IscsiConnection::Task* IscsiConnection::find_itt(uint32_t itt) {
  for (Task& tk : tasks_) {
    if (tk.state != TaskState::kFree && tk.itt == itt) return &tk;
  }
  return nullptr;
}

void IscsiConnection::cancel_timer() {
  if (timer_armed_) r_.cancel_timer(timer_);
  timer_armed_ = false;
}

void IscsiConnection::maybe_destroy() {
  if (!closed_ || active_ != 0 || destroying_) return;
  destroying_ = true;
  cancel_timer();
  if (sess_) leave_session();
  // The connection's reference to its node's device, the last one once the session is
  // gone: dropped before session_ended() wakes a remove_node() waiting for it.
  dev_.reset();
  if (registered_) t_.session_ended(id_);
  t_.tcp_.detach(r_, *this);
  // Not from inside the Connection's callback stack: defer the delete.
  r_.defer([this] { delete this; });
}

std::string IscsiConnection::addr_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, ntohs(a->sin6_port));
  }
  return "local";
}

std::string IscsiConnection::hex(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += fmt::format("{:02x}", p[i]);
  return s;
}

}  // namespace castor::iscsi
