// Fuzz target for iSCSI sessions of several connections (MC/S): the session-wide CmdSN
// order across connections (a command ahead of ExpCmdSN parks its connection until the
// missing ones arrive on the others), the hand-over of a joining connection to the
// session's reactor, task management reaching tasks of other connections, logout of one
// connection (maybe another one) or of the whole session, and the loss of a connection
// failing the session.
//
// The world: a live target with two unpinned reactors and a 4 MiB RAM bdev (512-byte
// blocks, 8192 of them) as LUN 0 of iqn.2026-11.io.castor:fuzz. Per input the harness
// itself opens connection A (served on reactor 0) and logs it in as the leading
// connection of a new session (TSIH 0, CID 1, CmdSN 1, one login PDU straight to full
// feature phase: InitiatorName, TargetName, MaxConnections=4, InitialR2T and
// ImmediateData from the selector), takes the TSIH from the response, then opens
// connection B (served on reactor 1, so the target hands it over to reactor 0 every
// time) and logs it in joining that session (same ISID and names, CID 2); with a third
// connection C (reactor 1 too, CID 3), C joins just before B. Logins are immediate, so
// the first command of the session has CmdSN 1. A login of the harness that fails
// traps: it is a target bug. The fuzz input is what the initiator sends after that:
//
//   byte 0     selector:
//                bit 0: InitialR2T=Yes (0: No)
//                bit 1: ImmediateData=No (0: Yes)
//                bit 2: open the third connection C
//                bits 3-4: how the input ends: 0 = half-close A, B, C; 1 = close B
//                  abruptly (a lost connection), then half-close A and C; 2 = close A
//                  abruptly, then half-close B and C; 3 = half-close C, B, A
//                bit 5: before B joins, the harness sends an immediate TEST UNIT READY
//                  (ITT 0x7fff0000, no CmdSN taken) on A and reads its answer: it takes
//                  the session's power-on unit attention, so the first fuzzed command runs
//                bit 6: B and C declare MaxRecvDataSegmentLength=512 (Data-In in small
//                  PDUs on them)
//                bit 7: pipelined join: if the first record is for B, its bytes go out
//                  with B's login PDU in one write (the hand-over carries them along)
//   byte 1..   records, each written to one connection:
//                h = header byte; conn = h & 3
//                conn 0/1/2 (A/B/C): payload length = (h >> 2) << 8 | next byte (up to
//                  16383), then that many bytes (fewer at the end of the input). Records
//                  for a connection that is not open (C without bit 2, or one the target
//                  has closed) are dropped.
//                conn 3: pause (one byte): waits until the target has read what was
//                  sent on every connection and has gone quiet (lets I/O in flight
//                  finish before the next record).
//
// After each record the harness waits until the target has read it (a connection whose
// bytes the target leaves unread while it has nothing else to do is taken as parked and
// not waited for again until it moves), so the order of records across connections is
// the order the target sees them in. "Quiet" and "nothing else to do" are conditions,
// not times: both reactor threads asleep in io_uring, neither run in between two looks,
// and nothing to read on any connection (ReactorIdle in socket_session.h); only where
// /proc/self/task cannot tell does the harness fall back to times (10 ms without a byte
// read: parked; 2 ms without a reply: quiet).
// Everything the target sends on any connection is read and discarded all along;
// writes never block (a parked connection whose socket buffer fills drops the rest of
// the record) and ignore EPIPE. At the end every connection is closed as the selector
// says and read until the target closes it; a connection on which the target stays
// silent for 5 s without closing it traps (hang), and so does a connection the target
// still lists (list_sessions) 5 s after the harness has closed them all (leak). Then
// the harness waits for the reactors to go idle, so that the teardown has freed what
// the input allocated before libFuzzer compares mallocs and frees (a difference costs
// a rerun and a whole leak check).
//
// ISCSI_MCS_FUZZ_TRACE=1 in the environment prints each record sent and each PDU the
// target answers, per connection (for writing seeds and reading reproducers).
#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bdev/registry.h"
#include "iscsi/protocol.h"
#include "iscsi/target.h"
#include "iscsi/text.h"
#include "iscsi_pdu.h"
#include "socket_session.h"

using namespace castor::iscsi;

namespace {
constexpr char kNode[] = "iqn.2026-11.io.castor:fuzz";
constexpr char kInitiator[] = "iqn.2026-11.io.castor:mcs-fuzzer";
constexpr uint8_t kIsid[6] = {0x80, 0, 0, 0, 0, 0x4d};
constexpr uint32_t kHarnessItt = 0x7fff0000;  // the harness's own PDUs (login, TUR)

// Selector bits (byte 0).
constexpr uint8_t kSelInitialR2t = 0x01, kSelNoImmediateData = 0x02, kSelThird = 0x04;
constexpr uint8_t kSelEndShift = 3, kSelClearUa = 0x20, kSelSmallMrdsl = 0x40, kSelPipelineJoin = 0x80;
enum End : uint8_t { kHalfCloseAll = 0, kCloseBFirst = 1, kCloseAFirst = 2, kHalfCloseReverse = 3 };

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  char name = '?';
  bool eof = false;      // the target closed it (read saw end of file or an error)
  bool wdead = false;    // a write failed (EPIPE...): nothing more is sent
  bool closed = false;   // the harness closed its end
  bool stalled = false;  // the last wait gave up: the target reads nothing (parked)
  int stall_q = 0;       // bytes queued when it gave up
  int full_q = -1;       // bytes queued when a write last found the socket buffer full
  std::string rx;        // ISCSI_MCS_FUZZ_TRACE: bytes of a PDU not complete yet
  bool live() const { return fd >= 0 && !closed && !eof; }
  bool writable() const { return live() && !wdead; }
};

// ISCSI_MCS_FUZZ_TRACE=1 in the environment: prints what the harness sends and what the
// target answers on each connection (for writing seeds; costs nothing otherwise).
bool tracing() {
  static const bool on = std::getenv("ISCSI_MCS_FUZZ_TRACE") != nullptr;
  return on;
}

void trace_pdu(char conn, const Bhs& h, const std::string& data) {
  std::fprintf(stderr, "  %c <- op %#04x itt %#x", conn, h.opcode(), h.itt());
  switch (h.opcode()) {
    case op::kScsiResp:
      std::fprintf(stderr, " SCSI response: status %#x response %#x", h.b[off::kStatus], h.b[off::kResponse]);
      break;
    case op::kDataIn:
      std::fprintf(stderr, " Data-In: offset %u length %zu flags %#x status %#x", h.u32(off::kBufferOffset),
                   data.size(), h.flags(), h.b[off::kStatus]);
      break;
    case op::kR2t:
      std::fprintf(stderr, " R2T: ttt %#x offset %u length %u", h.u32(off::kTtt), h.u32(off::kBufferOffset),
                   h.u32(off::kDesiredLength));
      break;
    case op::kTaskMgmtResp: std::fprintf(stderr, " TMF response %u", h.b[off::kResponse]); break;
    case op::kLogoutResp: std::fprintf(stderr, " Logout response %u", h.b[off::kResponse]); break;
    case op::kReject: std::fprintf(stderr, " Reject: reason %#x", h.b[off::kResponse]); break;
    case op::kNopIn: std::fprintf(stderr, " NOP-In: %zu bytes", data.size()); break;
    case op::kTextResp: {
      std::string t = data;
      for (char& ch : t) ch = ch ? ch : ' ';
      std::fprintf(stderr, " Text response: %s", t.c_str());
      break;
    }
    default: break;
  }
  std::fprintf(stderr, " (StatSN %u ExpCmdSN %u MaxCmdSN %u)\n", h.u32(off::kStatSn), h.u32(off::kExpCmdSn),
               h.u32(off::kMaxCmdSn));
}

// Bytes read from `c` (n == 0: end of file).
void received(Conn& c, ssize_t n) {
  if (!tracing()) return;
  if (n <= 0) {
    std::fprintf(stderr, "  %c closed by the target\n", c.name);
    return;
  }
  c.rx.append(reinterpret_cast<const char*>(socket_session_detail::sink()), static_cast<size_t>(n));
  while (c.rx.size() >= kBhsSize) {
    Bhs h;
    std::memcpy(h.b, c.rx.data(), kBhsSize);
    const size_t dsl = h.data_segment_length();
    const size_t total = kBhsSize + h.total_ahs_bytes() + dsl + pad4(static_cast<uint32_t>(dsl));
    if (c.rx.size() < total) break;
    trace_pdu(c.name, h, c.rx.substr(kBhsSize + h.total_ahs_bytes(), dsl));
    c.rx.erase(0, total);
  }
}

// Waiting for a target that reads nothing (a parked connection) is bounded per input:
// from 2 s after the input began, the harness no longer waits for that.
Clock::time_point g_patience_ends;
bool patient() { return Clock::now() < g_patience_ends; }

int outq(int fd) {
  int q = 0;
  if (ioctl(fd, SIOCOUTQ, &q) != 0) return 0;
  return q;
}

// Reads what is available on each live connection (waiting up to `timeout_ms` for
// something), discarding it. True if anything (data or end of file) was read.
bool drain(std::vector<Conn*>& cs, int timeout_ms) {
  pollfd p[3];
  Conn* who[3];
  nfds_t n = 0;
  for (Conn* c : cs) {
    if (!c->live()) continue;
    p[n] = {c->fd, POLLIN, 0};
    who[n++] = c;
  }
  if (n == 0) return false;
  if (poll_fds(p, n, timeout_ms) <= 0) return false;
  bool any = false;
  for (nfds_t i = 0; i < n; ++i) {
    if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    any = true;
    ssize_t r = read_fd(p[i].fd, socket_session_detail::sink(), socket_session_detail::kSinkSize);
    if (r < 0 && errno == EAGAIN) continue;
    received(*who[i], r);
    if (r <= 0) who[i]->eof = true;
  }
  return any;
}

// Whether the target has nothing left to do (its reactors idle) and nothing waits to be
// read on any connection: what it has not read by then it will not read until the
// initiator does something (a parked connection). False when that cannot be known.
bool target_quiet(std::vector<Conn*>& all) {
  ReactorIdle* w = socket_session_detail::watched_reactors();
  return w && w->idle() && !drain(all, 0);
}

// Waits until the target has read every byte sent on `c`, reading what comes back on
// every connection meanwhile. Gives up when the target goes quiet with bytes of `c`
// still unread (parked; without a view of its reactors: when it reads nothing for
// 10 ms, and at once for a connection that gave up last time and has read nothing
// since).
void settle(Conn& c, std::vector<Conn*>& all, int q_before_send) {
  if (!c.writable()) return;
  int q = outq(c.fd);
  if (q == 0) {
    c.stalled = false;
    return;
  }
  const bool watched = socket_session_detail::reactors_watched();
  const bool still_stalled = (c.stalled && q_before_send == c.stall_q) || !patient();
  int last = q;
  auto progress = Clock::now();
  const auto patience = std::chrono::milliseconds(still_stalled ? 0 : 10);
  for (int spin = 0;; ++spin) {
    const bool got = drain(all, spin < 256 || watched ? 0 : 1);  // spin briefly, then sleep a millisecond at a time
    if (!c.writable()) return;
    q = outq(c.fd);
    if (q == 0) {
      c.stalled = false;
      return;
    }
    if (q < last) {
      last = q;
      progress = Clock::now();
    } else if (watched) {
      if (!got && spin >= 16) {
        if (target_quiet(all) && outq(c.fd) == q) {
          c.stalled = true;
          c.stall_q = q;
          return;
        }
        if (!patient()) {  // the target is busy for longer than the input may take
          c.stalled = true;
          c.stall_q = q;
          return;
        }
        if (spin >= 64) sched_yield();
      }
    } else if (spin >= (still_stalled ? 32 : 256) && Clock::now() - progress >= patience) {
      c.stalled = true;
      c.stall_q = q;
      return;
    }
  }
}

// Writes `n` bytes to `c` without blocking, reading every connection meanwhile. A target
// that takes nothing for 50 ms while the socket buffer is full: the rest is dropped (at
// once while it still has taken nothing since).
void send_record(Conn& c, std::vector<Conn*>& all, const uint8_t* p, size_t n) {
  if (tracing()) {
    std::fprintf(stderr, "%c -> %zu bytes%s", c.name, n, c.writable() ? "" : " (dropped: connection closed)");
    if (n >= kBhsSize && c.writable()) {
      std::fprintf(stderr, ": op %#04x itt %#x CmdSN %u", p[0], castor::load_be32(p + off::kItt),
                   castor::load_be32(p + off::kCmdSn));
    }
    std::fprintf(stderr, "\n");
  }
  if (!c.writable()) return;
  const int q0 = outq(c.fd);
  size_t off = 0;
  auto progress = Clock::now();
  while (off < n && c.writable()) {
    ssize_t r = send_fd(c.fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r > 0) {
      off += static_cast<size_t>(r);
      progress = Clock::now();
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const int q = outq(c.fd);
      if (q == c.full_q || !patient() ||
          (socket_session_detail::reactors_watched() ? target_quiet(all) && outq(c.fd) == q
                                                     : Clock::now() - progress > std::chrono::milliseconds(50))) {
        c.full_q = q;
        break;
      }
      pollfd pw{c.fd, POLLOUT, 0};
      if (poll_fds(&pw, 1, 0) <= 0 && !drain(all, 0)) {
        if (socket_session_detail::reactors_watched()) {
          socket_session_detail::poll_briefly(&pw, 1);
        } else {
          drain(all, 1);
        }
      }
      continue;
    }
    c.wdead = true;  // EPIPE, ECONNRESET: the target closed it
  }
  settle(c, all, q0);
  if (tracing() && c.stalled) std::fprintf(stderr, "  %c reads nothing (parked?)\n", c.name);
}

// A pause record: every connection read by the target, then the target quiet (its
// reactors idle, every reply read; without a view of its reactors: 2 ms without a
// reply), for at most 50 ms.
void pause_all(std::vector<Conn*>& all) {
  for (Conn* c : all) {
    if (c->writable()) settle(*c, all, outq(c->fd));
  }
  const auto until = Clock::now() + std::chrono::milliseconds(50);
  if (socket_session_detail::reactors_watched()) {
    for (int i = 0; Clock::now() < until; ++i) {
      if (drain(all, 0)) continue;
      if (target_quiet(all)) return;
      if (i >= 64) sched_yield();
    }
    return;
  }
  while (drain(all, 2) && Clock::now() < until) {
  }
}

// ------------------------------------------------------------------ the harness's logins
// One PDU from the target (no digests): false on end of file.
bool read_pdu(int fd, Bhs& h, std::string& data) {
  if (!read_exact(fd, h.b, kBhsSize)) return false;
  const uint32_t n = h.data_segment_length() + pad4(h.data_segment_length()) + h.total_ahs_bytes();
  data.assign(n, '\0');
  return read_exact(fd, reinterpret_cast<uint8_t*>(data.data()), n);
}

std::string login_request(uint16_t tsih, uint16_t cid, const std::string& text) {
  Bhs b;
  b.clear();
  b.set_opcode(op::kLogin | kImmediateBit);
  b.set_flags(0x87);  // T, CSG operational, NSG full feature
  std::memcpy(b.b + off::kIsid, kIsid, 6);
  b.set_u16(off::kTsih, tsih);
  b.set_itt(kHarnessItt + cid);
  b.set_u16(off::kCid, cid);
  b.set_u32(off::kLoginCmdSn, 1);
  return pdu_bytes(b, text);
}

[[noreturn]] void login_failed(const char* what, const Bhs& r, bool got) {
  if (!got) {
    std::fprintf(stderr, "iscsi_mcs_fuzz: the target closed the connection instead of answering the %s\n", what);
  } else {
    std::fprintf(stderr, "iscsi_mcs_fuzz: %s failed: opcode %#x flags %#x status %02x%02x tsih %u\n", what,
                 r.opcode(), r.flags(), r.b[off::kStatusClass], r.b[off::kStatusDetail], r.u16(off::kTsih));
  }
  __builtin_trap();
}

// Sends a login (plus `extra` bytes in the same write) and checks its response: success,
// straight to full feature phase. Returns the TSIH.
uint16_t login(int fd, uint16_t tsih, uint16_t cid, const std::string& text, const std::string& extra,
               const char* what) {
  if (!write_all(fd, login_request(tsih, cid, text) + extra)) login_failed(what, Bhs{}, false);
  Bhs r;
  std::string data;
  const bool got = read_pdu(fd, r, data);
  if (!got || r.opcode() != op::kLoginResp || r.b[off::kStatusClass] != 0 || r.b[off::kStatusDetail] != 0 ||
      r.flags() != 0x87 || r.u16(off::kTsih) == 0 || (tsih != 0 && r.u16(off::kTsih) != tsih)) {
    login_failed(what, r, got);
  }
  return r.u16(off::kTsih);
}

// Immediate TEST UNIT READY on A: takes the power-on unit attention.
void clear_unit_attention(int fd) {
  Bhs b;
  b.clear();
  b.set_opcode(op::kScsiCmd | kImmediateBit);
  b.set_flags(kFinal);
  b.set_itt(kHarnessItt);
  b.set_u32(off::kCmdSn, 1);
  if (!write_all(fd, pdu_bytes(b, ""))) login_failed("TEST UNIT READY", b, false);
  Bhs r;
  std::string data;
  if (!read_pdu(fd, r, data) || r.opcode() != op::kScsiResp || r.itt() != kHarnessItt) {
    login_failed("TEST UNIT READY", r, true);
  }
}

// Reads every live connection until the target closes it; traps when one stays silent
// (and open) for 5 s.
void drain_until_closed(std::vector<Conn*>& cs) {
  for (Conn* c : cs) c->stalled = false;
  std::vector<Clock::time_point> heard(cs.size(), Clock::now());
  for (;;) {
    pollfd p[3];
    size_t idx[3];
    nfds_t n = 0;
    auto oldest = Clock::time_point::max();
    for (size_t i = 0; i < cs.size(); ++i) {
      if (!cs[i]->live()) continue;
      p[n] = {cs[i]->fd, POLLIN, 0};
      idx[n++] = i;
      oldest = std::min(oldest, heard[i]);
    }
    if (n == 0) return;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(oldest + std::chrono::seconds(5) - Clock::now());
    if (left.count() <= 0 || poll_fds(p, n, static_cast<int>(left.count())) <= 0) {
      for (nfds_t i = 0; i < n; ++i) {
        if (Clock::now() - heard[idx[i]] >= std::chrono::seconds(5)) {
          std::fprintf(stderr, "iscsi_mcs_fuzz: connection %c: the target neither answers nor closes it (5 s)\n",
                       cs[idx[i]]->name);
        }
      }
      __builtin_trap();
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Conn& c = *cs[idx[i]];
      heard[idx[i]] = Clock::now();
      ssize_t r = read_fd(c.fd, socket_session_detail::sink(), socket_session_detail::kSinkSize);
      if (r < 0 && errno == EAGAIN) continue;
      received(c, r);
      if (r <= 0) c.eof = true;
    }
  }
}

struct Record {
  int conn;  // 0..2; 3: pause
  const uint8_t* p;
  size_t n;
};

std::vector<Record> parse_records(const uint8_t* data, size_t size) {
  std::vector<Record> out;
  size_t i = 0;
  while (i < size) {
    const uint8_t h = data[i++];
    const int conn = h & 3;
    if (conn == 3) {
      out.push_back({3, nullptr, 0});
      continue;
    }
    if (i >= size) break;
    size_t len = size_t{static_cast<uint8_t>(h >> 2)} << 8 | data[i++];
    len = std::min(len, size - i);
    out.push_back({conn, data + i, len});
    i += len;
  }
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using castor::bdev::BdevRegistry;
  using castor::reactor::ReactorGroup;
  auto& w = ServerWorld<IscsiTarget, 2>::get([](ReactorGroup& group, BdevRegistry& reg) {
    (void)reg.create("malloc:///m0?size_mb=4&blk_size=512");
    auto t = std::make_unique<IscsiTarget>(group, reg);
    NodeConfig n;
    n.name = kNode;
    n.luns.push_back(castor::scsi::LunOptions{0, "m0", false, "Castor volume"});
    (void)t->add_node(n);
    return t;
  });
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const End end = static_cast<End>((sel >> kSelEndShift) & 3);
  std::vector<Record> records = parse_records(data + 1, size - 1);
  if (tracing()) std::fprintf(stderr, "== input of %zu bytes, selector %#04x\n", size, sel);

  g_patience_ends = Clock::now() + std::chrono::seconds(2);
  Conn a, b, c;
  a.name = 'A';
  b.name = 'B';
  c.name = 'C';
  std::vector<Conn*> all = {&a, &b};

  // Leading connection A on reactor 0.
  a.fd = w.connect_on(0);
  if (a.fd < 0) return 0;
  std::string lead;
  append_text(lead, "InitiatorName", kInitiator);
  append_text(lead, "TargetName", kNode);
  append_text(lead, "MaxConnections", "4");
  append_text(lead, "InitialR2T", sel & kSelInitialR2t ? "Yes" : "No");
  append_text(lead, "ImmediateData", sel & kSelNoImmediateData ? "No" : "Yes");
  const uint16_t tsih = login(a.fd, 0, 1, lead, "", "leading login (CID 1)");
  if (sel & kSelClearUa) clear_unit_attention(a.fd);

  // C and B on reactor 1: handed over to reactor 0, where the session lives. C (if any)
  // joins first, so that bytes pipelined with B's login cannot end the session before
  // the harness's logins are done.
  std::string join;
  append_text(join, "InitiatorName", kInitiator);
  append_text(join, "TargetName", kNode);
  if (sel & kSelSmallMrdsl) append_text(join, "MaxRecvDataSegmentLength", "512");
  if (sel & kSelThird) {
    c.fd = w.connect_on(1);
    if (c.fd >= 0) {
      all.push_back(&c);
      login(c.fd, tsih, 3, join, "", "join of CID 3");
    }
  }
  size_t first = 0;
  std::string pipelined;
  if ((sel & kSelPipelineJoin) && !records.empty() && records[0].conn == 1) {
    pipelined.assign(reinterpret_cast<const char*>(records[0].p), records[0].n);
    first = 1;
  }
  b.fd = w.connect_on(1);
  if (b.fd < 0) {
    close(a.fd);
    if (c.fd >= 0) close(c.fd);
    return 0;
  }
  login(b.fd, tsih, 2, join, pipelined, "join of CID 2");
  if (!pipelined.empty()) settle(b, all, 0);

  Conn* by_index[3] = {&a, &b, &c};
  for (size_t i = first; i < records.size(); ++i) {
    const Record& r = records[i];
    if (r.conn == 3) {
      if (tracing()) std::fprintf(stderr, "-- pause\n");
      pause_all(all);
    } else {
      send_record(*by_index[r.conn], all, r.p, r.n);
    }
  }

  // The end: the lost connection first (closed without reading it), or half-closes.
  auto half_close = [](Conn& x) {
    if (x.fd >= 0) shutdown(x.fd, SHUT_WR);
  };
  auto lose = [](Conn& x) {
    if (x.fd >= 0 && !x.closed) {
      close(x.fd);
      x.closed = true;
    }
  };
  if (tracing()) std::fprintf(stderr, "-- end %d\n", static_cast<int>(end));
  switch (end) {
    case kHalfCloseAll:
      for (Conn* x : all) half_close(*x);
      break;
    case kCloseBFirst:
      lose(b);
      half_close(a);
      half_close(c);
      break;
    case kCloseAFirst:
      lose(a);
      half_close(b);
      half_close(c);
      break;
    case kHalfCloseReverse:
      for (size_t i = all.size(); i-- > 0;) half_close(*all[i]);
      break;
  }
  drain_until_closed(all);
  for (Conn* x : all) {
    if (x->fd >= 0 && !x->closed) close(x->fd);
  }

  // Nothing of the session may outlive its connections.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!w.srv->list_sessions().empty()) {
    if (Clock::now() > deadline) {
      for (const SessionInfo& s : w.srv->list_sessions()) {
        std::fprintf(stderr, "iscsi_mcs_fuzz: connection tsih=%u cid=%u still listed 5 s after the initiator closed it\n",
                     s.tsih, s.cid);
      }
      __builtin_trap();
    }
    // The teardown runs on the reactors: wait for them; once they are idle with the
    // session still listed, only time can tell (1 ms at a time, up to the deadline).
    if (w.wait_idle(1)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Whatever the session freed last (after it left the list) is freed before libFuzzer
  // compares mallocs and frees.
  w.wait_idle();
  return 0;
}
