#include "nbd/server.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

#include "frontend/block_commands.h"
#include "nbd/protocol.h"
#include "reactor/tcp.h"

namespace castor::nbd {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;
using frontend::Action;
using frontend::Op;
using frontend::Reason;

// One client connection, owned by one reactor.
class NbdConnection final : public reactor::ServedConnection,
                            public reactor::Connection::Handler,
                            reactor::ByteBudget::Waiter {
 public:
  NbdConnection(NbdServer& srv, reactor::Reactor& r, int fd)
      : srv_(srv),
        r_(r),
        budget_(srv.tcp_.budget(r.id())),
        conn_(std::make_unique<reactor::Connection>(r, fd, this, 64 * 1024)) {}

  void start() {
    srv_.tcp_.attach(r_, *this);
    uint8_t* h = stash(18);
    store_be64(h, kNbdMagic);
    store_be64(h + 8, kIHaveOpt);
    store_be16(h + 16, kFlagFixedNewstyle | kFlagNoZeroes);
    send_stash(h, 18);
    conn_->start();
  }
  void shut_down() override { conn_->close("server stopping"); }

  size_t on_data(std::span<const uint8_t> buf) override {
    size_t used = 0;
    while (!conn_->closing()) {
      size_t n = step(buf.subspan(used));
      if (n == 0) break;
      used += n;
    }
    return used;
  }

  void on_closed(const std::string& reason) override {
    closed_ = true;
    if (waiting_budget_) {
      budget_.cancel_wait(this);
      waiting_budget_ = false;
    }
    if (!export_.name.empty() || in_transmission_) srv_.connection_opened(export_.name, -1);
    srv_.tcp_.detach(r_, *this);
    if (conn_->error() == ETIMEDOUT) {
      srv_.count_dead_client();
      spdlog::warn("nbd client of export '{}' stopped answering for {} s: connection closed",
                   export_.name, 2 * srv_.options().keepalive_s);
    } else {
      spdlog::debug("nbd connection closed: {}", reason);
    }
    maybe_destroy();
  }

 private:
  enum class State { kClientFlags, kOptions, kTransmission, kDrain };

  struct Request {
    IoRequest io;
    iovec iov{};
    bdev::DmaBuffer buf;
    NbdConnection* c = nullptr;
    uint64_t cookie = 0;
    uint16_t type = 0;
    uint16_t flags = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    uint32_t charged = 0;  // bytes counted in bytes_in_flight_
    uint8_t hdr[32];
    Request* next_free = nullptr;
  };

  // ---- negotiation ----
  size_t step(std::span<const uint8_t> b) {
    switch (state_) {
      case State::kClientFlags: {
        if (b.size() < 4) return 0;
        uint32_t f = load_be32(b.data());
        if (f & ~uint32_t{kFlagFixedNewstyle | kFlagNoZeroes}) return fail("client sent unknown flags");
        no_zeroes_ = f & kFlagNoZeroes;
        state_ = State::kOptions;
        return 4;
      }
      case State::kOptions: return option(b);
      case State::kTransmission: return request(b);
      case State::kDrain: {
        size_t n = std::min<size_t>(b.size(), drain_);
        drain_ -= n;
        if (drain_ == 0) {
          state_ = State::kTransmission;
          reply_simple_or_error(pending_error_cookie_, pending_error_type_, pending_error_);
        }
        return n;
      }
    }
    return 0;
  }

  size_t fail(const std::string& why) {
    spdlog::warn("nbd protocol error, closing connection: {}", why);
    srv_.count_protocol_error();
    conn_->close(why);
    return 0;
  }

  void opt_reply(uint32_t option, uint32_t type, const uint8_t* data = nullptr, uint32_t len = 0) {
    uint8_t* h = stash(20 + len);
    store_be64(h, kOptReplyMagic);
    store_be32(h + 8, option);
    store_be32(h + 12, type);
    store_be32(h + 16, len);
    if (len) std::memcpy(h + 20, data, len);
    send_stash(h, 20 + len);
  }
  void opt_error(uint32_t option, uint32_t type, const std::string& msg) {
    opt_reply(option, type, reinterpret_cast<const uint8_t*>(msg.data()), static_cast<uint32_t>(msg.size()));
  }

  // The transmission flags: what the export advertises (frontend/block_commands.h).
  uint16_t tflags() const {
    uint16_t f = tflag::kHasFlags | tflag::kCanMultiConn;
    if (adv_.read_only) f |= tflag::kReadOnly;
    if (adv_.volatile_write_cache) f |= tflag::kSendFlush;
    if (adv_.fua) f |= tflag::kSendFua;
    if (adv_.discard) f |= tflag::kSendTrim;
    if (adv_.write_zeroes) f |= tflag::kSendWriteZeroes;
    return f;
  }

  // Opens the export's bdev for this connection. False if unknown or gone.
  bool open_export(const std::string& name) {
    ExportInfo e;
    if (!srv_.find_export(name, &e)) return false;
    auto d = srv_.registry().open(e.bdev);
    if (!d) return false;
    desc_ = std::move(d.value());
    bdev_ = desc_.bdev();
    export_ = e;
    caps_ = frontend::caps_of(*bdev_);
    // TRIM is advisory (the NBD protocol: contents afterwards undefined).
    adv_ = frontend::advertise(caps_, export_.read_only, frontend::Discard::kAdvisory);
    return true;
  }

  void enter_transmission() {
    // Contexts selected for another export do not apply to this one.
    if (meta_allocation_ && meta_export_ != export_.name) meta_allocation_ = false;
    state_ = State::kTransmission;
    in_transmission_ = true;
    ch_ = &desc_.channel(r_);
    srv_.connection_opened(export_.name, +1);
  }

  size_t option(std::span<const uint8_t> b) {
    if (b.size() < kOptionHeaderSize) return 0;
    if (load_be64(b.data()) != kIHaveOpt) return fail("bad option magic");
    const uint32_t option = load_be32(b.data() + 8);
    const uint32_t len = load_be32(b.data() + 12);
    if (len > kMaxOptionLength) return fail("option data too long");
    if (++options_ > kMaxOptionsPerConnection) return fail("too many options");
    if (b.size() < kOptionHeaderSize + len) return 0;
    const uint8_t* d = b.data() + kOptionHeaderSize;
    const size_t used = kOptionHeaderSize + len;
    switch (option) {
      case opt::kExportName: {
        std::string name(reinterpret_cast<const char*>(d), len);
        if (!open_export(name)) {
          // EXPORT_NAME cannot report an error: the protocol says close.
          conn_->close("unknown export '" + name + "'");
          return 0;
        }
        uint8_t* h = stash(10 + 124);
        store_be64(h, bdev_->size_bytes());
        store_be16(h + 8, tflags());
        uint32_t n = 10;
        if (!no_zeroes_) {
          std::memset(h + 10, 0, 124);
          n += 124;
        }
        send_stash(h, n);
        enter_transmission();
        return used;
      }
      case opt::kAbort:
        opt_reply(option, rep::kAck);
        conn_->close("client aborted negotiation");
        return 0;
      case opt::kList: {
        if (len) {
          opt_error(option, rep::kErrInvalid, "LIST takes no data");
          return used;
        }
        for (const auto& e : srv_.list_exports()) {
          std::vector<uint8_t> p(4 + e.name.size());
          store_be32(p.data(), static_cast<uint32_t>(e.name.size()));
          std::memcpy(p.data() + 4, e.name.data(), e.name.size());
          opt_reply(option, rep::kServer, p.data(), static_cast<uint32_t>(p.size()));
        }
        opt_reply(option, rep::kAck);
        return used;
      }
      case opt::kStructuredReply:
        if (len) {
          opt_error(option, rep::kErrInvalid, "STRUCTURED_REPLY takes no data");
        } else {
          structured_ = true;
          opt_reply(option, rep::kAck);
        }
        return used;
      case opt::kInfo:
      case opt::kGo: return info_or_go(option, d, len) ? used : 0;
      case opt::kListMetaContext:
      case opt::kSetMetaContext: meta_context(option, d, len); return used;
      default:
        // STARTTLS, extended headers and anything unknown.
        opt_error(option, rep::kErrUnsup, "option not supported");
        return used;
    }
  }

  // LIST_META_CONTEXT and SET_META_CONTEXT: u32 name length, export name, u32 query
  // count, then per query u32 length and the query. The one context offered is
  // base:allocation; queries for others select nothing (not an error). SET replaces the
  // selection, which holds for transmission on that export only.
  void meta_context(uint32_t option, const uint8_t* d, uint32_t len) {
    if (!structured_) {
      opt_error(option, rep::kErrInvalid, "meta contexts need structured replies first");
      return;
    }
    if (len < 8) {
      opt_error(option, rep::kErrInvalid, "meta context request too short");
      return;
    }
    const uint32_t namelen = load_be32(d);
    if (namelen > len - 8) {
      opt_error(option, rep::kErrInvalid, "export name length exceeds the option");
      return;
    }
    std::string name(reinterpret_cast<const char*>(d + 4), namelen);
    uint32_t p = 4 + namelen;
    const uint32_t nq = load_be32(d + p);
    p += 4;
    bool base_allocation = false;  // asked for (SET), or matched by a query (LIST)
    for (uint32_t i = 0; i < nq; ++i) {
      if (len - p < 4) {
        opt_error(option, rep::kErrInvalid, "meta context query count exceeds the option");
        return;
      }
      const uint32_t ql = load_be32(d + p);
      p += 4;
      if (ql > len - p) {
        opt_error(option, rep::kErrInvalid, "meta context query exceeds the option");
        return;
      }
      if (ql > kMaxMetaContextName) {
        opt_error(option, rep::kErrTooBig, "meta context query longer than 4096 bytes");
        return;
      }
      const std::string_view q(reinterpret_cast<const char*>(d + p), ql);
      p += ql;
      if (q == kBaseAllocation || (option == opt::kListMetaContext && q == "base:")) {
        base_allocation = true;
      }
    }
    if (p != len) {
      opt_error(option, rep::kErrInvalid, "meta context request longer than its queries");
      return;
    }
    ExportInfo e;
    if (!srv_.find_export(name, &e)) {
      opt_error(option, rep::kErrUnknown, "unknown export '" + name + "'");
      return;
    }
    if (option == opt::kListMetaContext && nq == 0) base_allocation = true;  // list them all
    if (option == opt::kSetMetaContext) {
      meta_allocation_ = base_allocation;
      meta_export_ = name;
    }
    if (base_allocation) {
      const std::string_view ctx = kBaseAllocation;
      std::vector<uint8_t> r(4 + ctx.size());
      store_be32(r.data(), option == opt::kSetMetaContext ? kBaseAllocationId : 0);
      std::memcpy(r.data() + 4, ctx.data(), ctx.size());
      opt_reply(option, rep::kMetaContext, r.data(), static_cast<uint32_t>(r.size()));
    }
    opt_reply(option, rep::kAck);
  }

  // Returns false when the connection moved to transmission or closed mid-buffer...
  // (GO keeps the rest of the buffer for transmission: handled by returning true.)
  bool info_or_go(uint32_t option, const uint8_t* d, uint32_t len) {
    if (len < 6) {
      opt_error(option, rep::kErrInvalid, "INFO/GO data too short");
      return true;
    }
    uint32_t namelen = load_be32(d);
    if (namelen > len - 6) {
      opt_error(option, rep::kErrInvalid, "export name length exceeds the option");
      return true;
    }
    std::string name(reinterpret_cast<const char*>(d + 4), namelen);
    uint16_t nreq = load_be16(d + 4 + namelen);
    if (len != 4 + namelen + 2 + 2u * nreq) {
      opt_error(option, rep::kErrInvalid, "INFO/GO length does not match its requests");
      return true;
    }
    std::vector<uint16_t> reqs;
    for (uint16_t i = 0; i < nreq; ++i) reqs.push_back(load_be16(d + 4 + namelen + 2 + 2 * i));
    if (!open_export(name)) {
      opt_error(option, rep::kErrUnknown, "unknown export '" + name + "'");
      return true;
    }
    uint8_t ex[12];
    store_be16(ex, info::kExport);
    store_be64(ex + 2, bdev_->size_bytes());
    store_be16(ex + 10, tflags());
    opt_reply(option, rep::kInfo, ex, 12);
    uint8_t bs[14];
    store_be16(bs, info::kBlockSize);
    store_be32(bs + 2, bdev_->block_size());
    store_be32(bs + 6, std::max<uint32_t>(4096, bdev_->block_size()));
    store_be32(bs + 10, kMaxPayload);
    opt_reply(option, rep::kInfo, bs, 14);
    for (uint16_t r : reqs) {
      if (r == info::kName) {
        std::vector<uint8_t> p(2 + name.size());
        store_be16(p.data(), info::kName);
        std::memcpy(p.data() + 2, name.data(), name.size());
        opt_reply(option, rep::kInfo, p.data(), static_cast<uint32_t>(p.size()));
      } else if (r == info::kDescription && !export_.description.empty()) {
        std::vector<uint8_t> p(2 + export_.description.size());
        store_be16(p.data(), info::kDescription);
        std::memcpy(p.data() + 2, export_.description.data(), export_.description.size());
        opt_reply(option, rep::kInfo, p.data(), static_cast<uint32_t>(p.size()));
      }
    }
    opt_reply(option, rep::kAck);
    if (option == opt::kGo) {
      enter_transmission();
    } else {
      desc_.close();
      bdev_ = nullptr;
    }
    return true;
  }

  // ---- transmission ----
  size_t request(std::span<const uint8_t> b) {
    if (b.size() < kRequestSize) return 0;
    const uint8_t* p = b.data();
    if (load_be32(p) != kRequestMagic) return fail("bad request magic");
    const uint16_t flags = load_be16(p + 4);
    const uint16_t type = load_be16(p + 6);
    const uint64_t cookie = load_be64(p + 8);
    const uint64_t offset = load_be64(p + 16);
    const uint32_t length = load_be32(p + 24);
    // A client that sends requests faster than it reads replies (or never reads) must
    // not make the engine buffer without bound: past the limits, stop reading (put()
    // resumes). Requests refused for their length take no buffer and are not counted.
    const bool buffered = (type == cmd::kRead || type == cmd::kWrite) && length <= kMaxPayload;
    // Replies the server makes up itself (errors, empty reads) count as requests in flight
    // until sent: a client streaming invalid requests without reading is held back too.
    if (outstanding_ + stashed_ >= kMaxRequestsInFlight ||
        (buffered && bytes_in_flight_ && bytes_in_flight_ + length > kMaxBytesInFlight)) {
      pause();
      return 0;
    }
    const uint64_t size = bdev_->size_bytes();
    const uint32_t bs = bdev_->block_size();

    if (type == cmd::kWrite) {
      // The payload follows; an invalid write must still consume it.
      uint32_t e = 0;
      std::optional<Reason> r;
      if ((r = frontend::check_access(Op::kWrite, adv_.read_only))) e = errno_of(*r, type);
      else if (length > kMaxPayload) e = err::kInval;
      else if ((r = frontend::check_range(size, offset, length))) e = errno_of(*r, type);
      else if ((offset | length) % bs || length == 0) e = err::kInval;
      else if (flags & ~cflag::kFua) e = err::kInval;
      if (e) {
        pending_error_ = e;
        pending_error_cookie_ = cookie;
        pending_error_type_ = type;
        drain_ = length;
        state_ = State::kDrain;
        if (drain_ == 0) {
          state_ = State::kTransmission;
          reply_simple_or_error(cookie, type, e);
        }
        return kRequestSize;
      }
      if (b.size() < kRequestSize + length) return 0;  // wait for the whole payload
      Request* rq = get(length);
      if (!rq) return 0;  // the server's budget is spent: offered again once it frees
      fill(rq, cookie, type, flags, offset, length);
      std::memcpy(rq->buf.data(), p + kRequestSize, length);
      submit(rq, frontend::plan(caps_, {.op = Op::kWrite, .fua = (flags & cflag::kFua) != 0}));
      return kRequestSize + length;
    }
    switch (type) {
      case cmd::kDisc:
        disconnecting_ = true;
        if (outstanding_ == 0) conn_->close("client disconnected");
        return kRequestSize;
      case cmd::kRead:
      case cmd::kCache: {
        uint32_t e = 0;
        if (length > kMaxPayload) e = err::kInval;
        else if (auto r = frontend::check_range(size, offset, length)) e = errno_of(*r, type);
        else if ((offset | length) % bs) e = err::kInval;
        else if (flags & ~(cflag::kFua | cflag::kDf)) e = err::kInval;
        if (e || length == 0 || type == cmd::kCache) {
          if (type == cmd::kRead && !e) {
            read_reply_empty(cookie);
          } else {
            reply_simple_or_error(cookie, type, e);
          }
          return kRequestSize;
        }
        Request* rq = get(length);
        if (!rq) return 0;
        fill(rq, cookie, type, flags, offset, length);
        submit(rq, frontend::plan(caps_, {.op = Op::kRead}));
        return kRequestSize;
      }
      case cmd::kBlockStatus:
        block_status(cookie, flags, offset, length);
        return kRequestSize;
      case cmd::kFlush: {
        if (offset || length) {
          reply_simple_or_error(cookie, type, err::kInval);
          return kRequestSize;
        }
        Request* rq = get(0);
        fill(rq, cookie, type, flags, 0, 0);
        run(rq, frontend::plan(caps_, {.op = Op::kFlush}));
        return kRequestSize;
      }
      case cmd::kTrim:
      case cmd::kWriteZeroes: {
        uint32_t e = 0;
        const bool wz = type == cmd::kWriteZeroes;
        // TRIM is advisory; WRITE_ZEROES may punch holes unless NO_HOLE, and with
        // FAST_ZERO must fail (ENOTSUP) rather than be slower than a write.
        const frontend::Command bc{.op = wz ? Op::kWriteZeroes : Op::kDiscard,
                                   .fua = (flags & cflag::kFua) != 0,
                                   .discard = frontend::Discard::kAdvisory,
                                   .may_deallocate = !(flags & cflag::kNoHole),
                                   .must_be_fast = (flags & cflag::kFastZero) != 0};
        const Action a = frontend::plan(caps_, bc);
        std::optional<Reason> r;
        if ((r = frontend::check_access(bc.op, adv_.read_only))) e = errno_of(*r, type);
        else if ((r = frontend::check_range(size, offset, length))) e = errno_of(*r, type);
        else if ((offset | length) % bs) e = err::kInval;
        else if (flags & ~(cflag::kFua | cflag::kNoHole | cflag::kFastZero)) e = err::kInval;
        else if (!wz && (flags & (cflag::kNoHole | cflag::kFastZero))) e = err::kInval;
        else if (a.kind == Action::Kind::kReject) e = errno_of(a.reason, type);
        if (e || length == 0) {
          reply_simple_or_error(cookie, type, e);
          return kRequestSize;
        }
        Request* rq = get(0);
        fill(rq, cookie, type, flags, offset, length);
        run(rq, a);
        return kRequestSize;
      }
      default:
        reply_simple_or_error(cookie, type, err::kInval);
        return kRequestSize;
    }
  }

  // Stops reading the socket (a limit is reached) until maybe_resume().
  void pause() {
    if (recv_paused_) return;
    recv_paused_ = true;
    conn_->pause_recv();
    srv_.count_receive_pause();
  }
  // Reads again once the server's budget is not awaited and this connection is at most
  // half its own limits: not at the first reply, for fewer pause and resume round trips.
  // (Offers the buffered requests at once.)
  void maybe_resume() {
    if (recv_paused_ && !waiting_budget_ && !closed_ && !conn_->closing() &&
        outstanding_ + stashed_ < kMaxRequestsInFlight && bytes_in_flight_ <= kMaxBytesInFlight / 2) {
      recv_paused_ = false;
      conn_->resume_recv();
    }
  }
  void budget_available() override {
    waiting_budget_ = false;
    maybe_resume();
  }

  // A request slot with a buffer of `len` bytes, charged to this connection and to the
  // server's budget. nullptr if the budget is spent: the connection then stops reading
  // until budget_available().
  Request* get(uint32_t len) {
    if (len && !budget_.try_charge(len)) {
      pause();
      if (!waiting_budget_) {
        waiting_budget_ = true;
        budget_.wait(this);
        srv_.count_budget_pause();
      }
      return nullptr;
    }
    if (len && budget_.used() == budget_.peak()) srv_.note_budget_bytes(budget_.used());
    Request* rq = free_;
    if (rq) {
      free_ = rq->next_free;
    } else {
      rq = new Request;
      rq->c = this;
    }
    if (rq->buf.size() < len) rq->buf = bdev::DmaBuffer(len, std::max<size_t>(4096, bdev_->buf_align()));
    ++outstanding_;
    rq->charged = len;
    bytes_in_flight_ += len;
    if (bytes_in_flight_ > peak_bytes_in_flight_) {
      peak_bytes_in_flight_ = bytes_in_flight_;
      srv_.note_bytes_in_flight(bytes_in_flight_);
    }
    return rq;
  }
  void put(Request* rq) {
    if (rq->buf.size() > kKeepBufferBytes) rq->buf = bdev::DmaBuffer();
    rq->next_free = free_;
    free_ = rq;
    --outstanding_;
    const uint32_t charged = rq->charged;
    rq->charged = 0;
    bytes_in_flight_ -= charged;
    if (disconnecting_ && outstanding_ == 0) conn_->close("client disconnected");
    maybe_resume();
    // Last: may wake connections waiting for the budget (this one too), which read at once.
    budget_.release(charged);
    maybe_destroy();
  }
  static void fill(Request* rq, uint64_t cookie, uint16_t type, uint16_t flags, uint64_t off, uint32_t len) {
    rq->cookie = cookie;
    rq->type = type;
    rq->flags = flags;
    rq->offset = off;
    rq->length = len;
  }

  // Carries out a planned command that needs no payload of its own: submits it, or
  // completes it at once.
  void run(Request* rq, const Action& a) {
    switch (a.kind) {
      case Action::Kind::kSubmit: return submit(rq, a);
      case Action::Kind::kComplete: return finish(rq, IoStatus::kSuccess);
      case Action::Kind::kReject:             // refused before a request was taken
      case Action::Kind::kWriteZeroBuffers:   // not asked for (may_write_buffers)
        return finish(rq, IoStatus::kInvalid);
    }
  }

  void submit(Request* rq, const Action& a) {
    const uint32_t bs = bdev_->block_size();
    IoRequest& io = rq->io;
    const IoType t = a.type;
    io.type = t;
    io.fua = a.fua;  // the bdev layer completes it once durable
    io.offset_blocks = rq->offset / bs;
    io.num_blocks = rq->length / bs;
    if (t == IoType::kRead || t == IoType::kWrite) {
      rq->iov = {rq->buf.data(), rq->length};
      io.iovs = &rq->iov;
      io.iovcnt = 1;
    } else {
      io.iovs = nullptr;
      io.iovcnt = 0;
    }
    io.cb = &NbdConnection::io_done;
    io.cb_arg = rq;
    ch_->submit(io);
  }

  static void io_done(IoRequest& io, void* arg) {
    auto* rq = static_cast<Request*>(arg);
    NbdConnection* c = rq->c;
    c->finish(rq, io.status);
  }

  // A refusal by the block-command rules as an NBD error (the NBD protocol's "Error
  // values": ENOSPC for writes beyond the end, EINVAL for reads and trims, EINVAL for a
  // command the export did not advertise, ENOTSUP only for FAST_ZERO).
  static uint32_t errno_of(Reason r, uint16_t type) {
    switch (r) {
      case Reason::kReadOnly: return err::kPerm;
      case Reason::kOutOfRange:
        return type == cmd::kWrite || type == cmd::kWriteZeroes ? err::kNoSpc : err::kInval;
      case Reason::kUnsupported: return err::kInval;
      case Reason::kNotFast: return err::kNotSup;
    }
    return err::kInval;
  }

  static uint32_t errno_of(IoStatus s) {
    switch (s) {
      case IoStatus::kSuccess: return 0;
      case IoStatus::kNoSpace: return err::kNoSpc;
      case IoStatus::kInvalid: return err::kInval;
      case IoStatus::kReservationConflict: return err::kPerm;  // the device refuses this host
      default: return err::kIo;
    }
  }

  void finish(Request* rq, IoStatus st) {
    if (closed_ || conn_->closing()) {
      put(rq);
      return;
    }
    const uint32_t e = errno_of(st);
    if (rq->type == cmd::kRead && e == 0) {
      // Header and data go out in one send so replies never interleave.
      uint32_t n;
      if (structured_) {
        store_be32(rq->hdr, kStructuredReplyMagic);
        store_be16(rq->hdr + 4, chunk::kDone);
        store_be16(rq->hdr + 6, chunk::kOffsetData);
        store_be64(rq->hdr + 8, rq->cookie);
        store_be32(rq->hdr + 16, rq->length + 8);
        store_be64(rq->hdr + 20, rq->offset);
        n = 28;
      } else {
        store_be32(rq->hdr, kSimpleReplyMagic);
        store_be32(rq->hdr + 4, 0);
        store_be64(rq->hdr + 8, rq->cookie);
        n = 16;
      }
      iovec v[2] = {{rq->hdr, n}, {rq->buf.data(), rq->length}};
      conn_->send({v, 2}, [this, rq] { put(rq); });
      return;
    }
    if (rq->type != cmd::kRead || !structured_) {
      // The request's own header buffer carries the simple reply: no allocation.
      store_be32(rq->hdr, kSimpleReplyMagic);
      store_be32(rq->hdr + 4, e);
      store_be64(rq->hdr + 8, rq->cookie);
      iovec v{rq->hdr, 16};
      conn_->send({&v, 1}, [this, rq] { put(rq); });
      return;
    }
    uint64_t cookie = rq->cookie;
    put(rq);
    reply_simple_or_error(cookie, cmd::kRead, e);
  }

  // BLOCK_STATUS for base:allocation: one chunk of extents (length, flags) from `offset`
  // on, each run of allocated blocks with flags 0, each unallocated one HOLE | ZERO. At
  // most kMaxExtentsPerReply (one with REQ_ONE); the client asks again for the rest.
  void block_status(uint64_t cookie, uint16_t flags, uint64_t offset, uint32_t length) {
    const uint64_t size = bdev_->size_bytes();
    const uint32_t bs = bdev_->block_size();
    uint32_t e = 0;
    if (!meta_allocation_) e = err::kInval;  // no context selected (needs structured replies)
    else if (length == 0 || offset > size || length > size - offset) e = err::kInval;
    else if ((offset | length) % bs) e = err::kInval;
    else if (flags & ~(cflag::kFua | cflag::kReqOne)) e = err::kInval;
    if (e) {
      reply_simple_or_error(cookie, cmd::kBlockStatus, e);
      return;
    }
    const uint32_t max_extents = (flags & cflag::kReqOne) ? 1 : kMaxExtentsPerReply;
    uint8_t* h = stash(24 + 8 * size_t{max_extents});
    uint8_t* ext = h + 24;
    uint32_t n = 0;
    uint64_t pos = offset / bs;
    const uint64_t end = (offset + length) / bs;
    while (pos < end && n < max_extents) {
      bool allocated = true;
      const uint64_t run = bdev_->allocation_run(pos, end - pos, &allocated);
      const uint32_t st = allocated ? 0 : (state::kHole | state::kZero);
      // Runs fit in the request's 32-bit length.
      if (n > 0 && load_be32(ext + 8 * (n - 1) + 4) == st) {
        store_be32(ext + 8 * (n - 1), load_be32(ext + 8 * (n - 1)) + static_cast<uint32_t>(run * bs));
      } else {
        store_be32(ext + 8 * n, static_cast<uint32_t>(run * bs));
        store_be32(ext + 8 * n + 4, st);
        ++n;
      }
      pos += run;
    }
    store_be32(h, kStructuredReplyMagic);
    store_be16(h + 4, chunk::kDone);
    store_be16(h + 6, chunk::kBlockStatus);
    store_be64(h + 8, cookie);
    store_be32(h + 16, 4 + 8 * n);
    store_be32(h + 20, kBaseAllocationId);
    send_stash(h, 24 + 8 * size_t{n});
  }

  void read_reply_empty(uint64_t cookie) {
    if (structured_) {
      uint8_t* h = stash(20);
      store_be32(h, kStructuredReplyMagic);
      store_be16(h + 4, chunk::kDone);
      store_be16(h + 6, chunk::kNone);
      store_be64(h + 8, cookie);
      store_be32(h + 16, 0);
      send_stash(h, 20);
    } else {
      reply_simple_or_error(cookie, cmd::kFlush, 0);
    }
  }

  // A simple reply, or an ERROR chunk for a failed READ when structured replies are on
  // (a READ must never get a simple reply then).
  void reply_simple_or_error(uint64_t cookie, uint16_t type, uint32_t e) {
    if (structured_ && type == cmd::kRead) {
      uint8_t* h = stash(26);
      store_be32(h, kStructuredReplyMagic);
      store_be16(h + 4, chunk::kDone);
      store_be16(h + 6, e ? chunk::kError : chunk::kNone);
      store_be64(h + 8, cookie);
      store_be32(h + 16, e ? 6 : 0);
      store_be32(h + 20, e);
      store_be16(h + 24, 0);
      send_stash(h, e ? 26 : 20);
      return;
    }
    uint8_t* h = stash(16);
    store_be32(h, kSimpleReplyMagic);
    store_be32(h + 4, e);
    store_be64(h + 8, cookie);
    send_stash(h, 16);
  }

  // Small control messages: heap copies released when sent.
  uint8_t* stash(size_t n) { return new uint8_t[n]; }
  void send_stash(uint8_t* p, size_t n) {
    iovec v{p, n};
    ++stashed_;
    conn_->send({&v, 1}, [this, p] {
      delete[] p;
      --stashed_;
      maybe_resume();
      maybe_destroy();
    });
  }

  void maybe_destroy() {
    if (!closed_ || outstanding_ || dying_) return;
    dying_ = true;
    // Unsent stashes are dropped with the connection's queue; free the requests.
    while (free_) {
      Request* n = free_->next_free;
      delete free_;
      free_ = n;
    }
    r_.defer([this] { delete this; });
  }

  NbdServer& srv_;
  reactor::Reactor& r_;
  reactor::ByteBudget& budget_;  // the server's, for this reactor
  std::unique_ptr<reactor::Connection> conn_;
  State state_ = State::kClientFlags;
  bool no_zeroes_ = false;
  bool structured_ = false;
  bool meta_allocation_ = false;  // base:allocation selected (SET_META_CONTEXT) ...
  std::string meta_export_;       // ... for this export
  bool in_transmission_ = false;
  bool disconnecting_ = false;
  bool closed_ = false;
  bool dying_ = false;
  uint32_t options_ = 0;
  ExportInfo export_;
  bdev::BdevDesc desc_;
  bdev::Bdev* bdev_ = nullptr;
  frontend::BdevCaps caps_;   // bdev_'s, for the block-command rules
  frontend::Advertised adv_;  // what this export advertises
  bdev::BdevChannel* ch_ = nullptr;
  uint64_t drain_ = 0;
  uint32_t pending_error_ = 0;
  uint64_t pending_error_cookie_ = 0;
  uint16_t pending_error_type_ = 0;
  uint32_t outstanding_ = 0;
  uint64_t bytes_in_flight_ = 0;       // buffers held by requests in flight (get/put)
  uint64_t peak_bytes_in_flight_ = 0;  // this connection's most
  bool recv_paused_ = false;           // too much in flight: not reading (pause/maybe_resume)
  bool waiting_budget_ = false;        // registered with budget_ (get/budget_available)
  uint32_t stashed_ = 0;  // send_stash() replies not yet sent
  Request* free_ = nullptr;
};

NbdServer::NbdServer(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
                     ServerOptions options)
    : registry_(registry),
      options_(options),
      tcp_(reactors,
           {.protocol = "nbd", .keepalive_s = options.keepalive_s, .buffer_budget_bytes = options.buffer_budget_bytes},
           [this](int fd, reactor::Reactor& r) { (new NbdConnection(*this, r, fd))->start(); }) {}

NbdServer::~NbdServer() { stop(); }

void NbdServer::adopt(int fd, size_t reactor_index) { tcp_.adopt(fd, reactor_index); }

Status NbdServer::listen(const std::string& host, uint16_t port, uint16_t* bound) {
  return tcp_.listen(host, port, bound);
}

Status NbdServer::add_export(const ExportInfo& e) {
  if (e.name.size() > 4096) return make_error(Errc::kInvalidArgument, "export name too long");
  std::lock_guard lk(mu_);
  if (exports_.count(e.name)) return make_error(Errc::kAlreadyExists, "NBD export '{}' already exists", e.name);
  auto d = registry_.open(e.bdev);
  if (!d) return d.status();
  export_descs_[e.name] = std::move(d.value());
  exports_[e.name] = e;
  exports_[e.name].connections = 0;
  spdlog::info("nbd export added name='{}' bdev={} read_only={}", e.name, e.bdev, e.read_only);
  return Status::ok();
}

Status NbdServer::remove_export(const std::string& name) {
  std::lock_guard lk(mu_);
  if (!exports_.erase(name)) return make_error(Errc::kNotFound, "NBD export '{}' does not exist", name);
  export_descs_.erase(name);
  return Status::ok();
}

std::vector<ExportInfo> NbdServer::list_exports() const {
  std::lock_guard lk(mu_);
  std::vector<ExportInfo> out;
  for (const auto& [n, e] : exports_) out.push_back(e);
  return out;
}

bool NbdServer::find_export(const std::string& name, ExportInfo* out) const {
  std::lock_guard lk(mu_);
  auto it = exports_.find(name);
  if (it == exports_.end()) return false;
  *out = it->second;
  return true;
}

NbdStats NbdServer::stats() const {
  std::lock_guard lk(mu_);
  NbdStats s = stats_;
  s.connections_accepted = tcp_.connections_accepted();
  s.receive_pauses = receive_pauses_.load(std::memory_order_relaxed);
  s.peak_bytes_in_flight = peak_bytes_in_flight_.load(std::memory_order_relaxed);
  s.dead_clients = dead_clients_.load(std::memory_order_relaxed);
  s.budget_pauses = budget_pauses_.load(std::memory_order_relaxed);
  s.peak_budget_bytes = peak_budget_bytes_.load(std::memory_order_relaxed);
  return s;
}

namespace {
void raise_to(std::atomic<uint64_t>& peak, uint64_t n) {
  uint64_t seen = peak.load(std::memory_order_relaxed);
  while (n > seen && !peak.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
}
}  // namespace

void NbdServer::note_bytes_in_flight(uint64_t n) { raise_to(peak_bytes_in_flight_, n); }

void NbdServer::note_budget_bytes(uint64_t n) { raise_to(peak_budget_bytes_, n); }

void NbdServer::count_protocol_error() {
  std::lock_guard lk(mu_);
  stats_.protocol_errors++;
}

void NbdServer::connection_opened(const std::string& name, int delta) {
  std::lock_guard lk(mu_);
  auto it = exports_.find(name);
  if (it != exports_.end()) it->second.connections += static_cast<uint32_t>(delta);
}

void NbdServer::stop() {
  tcp_.stop();
  // The exports' descriptors go with the server: the registry may outlive it only briefly.
  std::lock_guard lk(mu_);
  export_descs_.clear();
}

}  // namespace castor::nbd
