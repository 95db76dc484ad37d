// The NVMe/TCP transport of a target queue pair (qpair.h): the connection's PDUs in and
// out (ICReq/ICResp, CapsuleCmd, H2CData, TermReq; C2HData, R2T, CapsuleResp), header
// and data digests, the command slots and CIDs, in-capsule and R2T-fetched host data,
// responses, and the queue pair's lifetime. What a command does is decided by
// controller.cc (Connect, Fabrics), admin_cmds.cc and io_cmds.cc.

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "nvmf/codec/pdu.h"
#include "nvmf/target/qpair.h"

namespace castor::nvmf {

Qpair::Qpair(NvmfTarget& t, reactor::Reactor& r, int fd)
    : t_(t),
      r_(r),
      conn_(std::make_unique<reactor::Connection>(r, fd, this, 256 * 1024)),
      budget_(t.tcp_.budget(r.id())) {
  lim_.max_data = std::max({t.opts_.incapsule, kAdminInCapsule, t.opts_.max_h2c_data});
  // Twice the queue size, so the R2T tag (the slot index) always has room.
  slots_ = std::vector<Cmd>(2 * t.opts_.queue_entries);
  for (size_t i = slots_.size(); i-- > 0;) {
    slots_[i].q = this;
    slots_[i].slot = static_cast<uint16_t>(i);
    free_slots_.push_back(static_cast<uint16_t>(i));
  }
}

void Qpair::start() {
  t_.tcp_.attach(r_, *this);
  conn_->start();
}

size_t Qpair::on_data(std::span<const uint8_t> buf) {
  size_t used = 0;
  while (!conn_->closing()) {
    if (loose_resps_ >= kMaxLooseResps) {
      // The host sends commands past its queue and does not read the refusals: stop
      // reading it until half of them have gone out, rather than queue one for each.
      held_ = true;
      conn_->pause_recv();
      t_.receive_holds_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    std::span<const uint8_t> b = buf.subspan(used);
    if (b.size() < sizeof(CommonHeader)) break;
    CommonHeader ch;
    std::memcpy(&ch, b.data(), sizeof(ch));
    PduFrame f;
    if (auto e = parse_header(ch, Direction::kHostToController, lim_, &f)) {
      term(*e, b.subspan(0, std::min<size_t>(b.size(), 128)));
      break;
    }
    if (b.size() < f.plen) {
      if (receive_h2c_direct(f, b)) used = buf.size();
      break;
    }
    auto pdu = b.subspan(0, f.plen);
    if (auto e = check_header_digest(f, pdu.subspan(0, f.header_bytes))) {
      term(*e, pdu.subspan(0, std::min<uint32_t>(f.hlen, 128)));
      break;
    }
    process(f, pdu);
    used += f.plen;
  }
  return used;
}

void Qpair::on_closed(const std::string& reason) {
  closed_ = true;
  if (waiting_budget_) {
    budget_.cancel_wait(this);
    waiting_budget_ = false;
  }
  // Reads and writes parked for the buffer budget never start.
  auto parked = std::move(budget_parked_);
  budget_parked_.clear();
  for (Cmd* c : parked) release(c);
  t_.tcp_.detach(r_, *this);
  // Writes still waiting for the host's data will never get it, and nothing else would
  // free their slots (the queue pair would never be destroyed).
  for (Cmd& c : slots_) {
    if (c.busy && c.waiting_h2c) release(&c);
  }
  spdlog::debug("nvmf qpair closed qid={} cntlid={}: {}", qid_, ctrl_ ? ctrl_->cntlid : 0, reason);
  if (ctrl_) {
    if (qid_ == 0) {
      teardown_controller(reason);
    } else {
      std::lock_guard lk(ctrl_->mu);
      std::erase_if(ctrl_->io_qpairs, [this](const auto& q) { return q.connection == connection_id(); });
    }
  }
  maybe_destroy();
}

// ---------------------------------------------------------------- framing

void Qpair::term(const PduError& e, std::span<const uint8_t> hdr) {
  spdlog::warn("nvmf: closing connection after a malformed PDU: {}", e.what);
  auto* out = new uint8_t[24 + kTermReqMaxData];
  size_t n = build_term_req(out, Direction::kControllerToHost, e, hdr);
  iovec v{out, n};
  conn_->send({&v, 1}, [this, out] {
    delete[] out;
    conn_->close("malformed PDU");
  });
  lim_.ic_done = false;  // ignore anything else the host sends
  terminating_ = true;
}

void Qpair::process(const PduFrame& f, std::span<const uint8_t> pdu) {
  if (terminating_) return;
  switch (f.type) {
    case PduType::kICReq: return icreq(pdu);
    case PduType::kH2CTermReq:
      conn_->close("host terminated the connection");
      return;
    case PduType::kCapsuleCmd: return capsule(f, pdu);
    case PduType::kH2CData: return h2c_data(f, pdu);
    default: return;
  }
}

void Qpair::icreq(std::span<const uint8_t> pdu) {
  ICReq req;
  std::memcpy(&req, pdu.data(), sizeof(req));
  if (req.pfv != 0) return term({TermFes::kUnsupportedParameter, 8, "unsupported PDU format version"}, pdu.subspan(0, 128));
  if (req.hpda != 0) return term({TermFes::kUnsupportedParameter, 10, "unsupported host PDU data alignment"}, pdu.subspan(0, 128));
  lim_.hdgst = req.dgst & 1;
  lim_.ddgst = req.dgst & 2;
  lim_.ic_done = true;
  auto* out = new uint8_t[128];
  build_icresp(out, lim_.hdgst, lim_.ddgst, t_.opts_.max_h2c_data);
  iovec v{out, 128};
  conn_->send({&v, 1}, [out] { delete[] out; });
}

Qpair::Cmd* Qpair::get_slot(uint16_t cid) {
  if (cids_[cid] || free_slots_.empty()) return nullptr;  // CID conflict or queue overrun
  Cmd* c = &slots_[free_slots_.back()];
  free_slots_.pop_back();
  cids_[cid] = true;
  c->busy = true;
  c->received = 0;
  c->len = 0;
  c->waiting_h2c = false;
  ++outstanding_;
  return c;
}

void Qpair::release(Cmd* c) {
  if (c->charged) {
    const uint32_t n = c->charged;
    c->charged = 0;
    budget_.release(n);  // may wake queue pairs waiting for the budget (this one too)
  }
  if (c->ns.inflight) c->ns.inflight->slots[r_.id()].n.fetch_sub(1, std::memory_order_release);
  c->ns = NsRef{};
  c->busy = false;
  cids_[c->sqe.cid] = false;
  free_slots_.push_back(c->slot);
  --outstanding_;
  maybe_destroy();
}

void Qpair::capsule(const PduFrame& f, std::span<const uint8_t> pdu) {
  Sqe sqe;
  std::memcpy(&sqe, pdu.data() + sizeof(CommonHeader), sizeof(sqe));
  sqhd_ = static_cast<uint16_t>((sqhd_ + 1) % sq_entries_);
  std::span<const uint8_t> data;
  if (f.data_len) {
    data = pdu.subspan(f.data_offset, f.data_len);
    uint32_t dg = 0;
    if (f.has_ddgst) std::memcpy(&dg, pdu.data() + f.data_offset + f.data_len, 4);
    if (check_data_digest(f, data, dg)) {
      conn_->close("data digest mismatch");
      return;
    }
  }
  Cmd* c = get_slot(sqe.cid);
  if (!c) {
    // Either more commands than the queue holds or a CID already in use.
    send_resp_only(sqe.cid, generic(sc::kCidConflict));
    return;
  }
  c->sqe = sqe;  // release() clears this CID
  // In-capsule data goes with the command; anything larger is fetched with R2T later.
  const SglDescriptor& sgl = sqe.sgl1;
  const uint32_t limit = qid_ == 0 ? kAdminInCapsule : t_.opts_.incapsule;
  if (f.data_len) {
    if (sgl.type != kSglDataBlockOffset || sgl.address != 0 || sgl.length != f.data_len) {
      return finish(c, generic(sc::kSglInvalidOffset));
    }
    if (f.data_len > limit) return finish(c, generic(sc::kSglInvalidData));
    ensure_buf(c, f.data_len);
    std::memcpy(c->buf.data(), data.data(), f.data_len);
    c->received = f.data_len;
    c->len = f.data_len;
  }
  if (!connected_) {
    if (sqe.opcode != admin_op::kFabrics || reinterpret_cast<FabricsCmd&>(sqe).fctype != fctype::kConnect) {
      return finish(c, generic(sc::kCommandSequenceError));
    }
    return connect(c);
  }
  if (qid_ == 0) return admin(c);
  return io(c);
}

void Qpair::ensure_buf(Cmd* c, uint32_t len) {
  if (c->buf.size() < len) c->buf = bdev::DmaBuffer(std::max<uint32_t>(len, 4096), 4096);
}

// ---------------------------------------------------------------- responses

void Qpair::fill_resp(Cmd* c, uint16_t status, uint32_t dw0, uint32_t dw1, size_t* n) {
  Cqe cqe{};
  cqe.dw0 = dw0;
  cqe.dw1 = dw1;
  cqe.sqhd = sqhd_;
  cqe.sqid = qid_;
  cqe.cid = c->sqe.cid;
  cqe.status = status;
  *n = build_capsule_resp(c->resp, cqe, lim_.hdgst);
}

void Qpair::finish(Cmd* c, uint16_t status, uint32_t dw0, uint32_t dw1) {
  if (closed_ || conn_->closing()) return release(c);
  size_t n;
  fill_resp(c, status, dw0, dw1, &n);
  iovec v{c->resp, n};
  conn_->send({&v, 1}, [this, c] { release(c); });
}

void Qpair::send_resp_only(uint16_t cid, uint16_t status) {
  auto* out = new uint8_t[32];
  Cqe cqe{};
  cqe.sqhd = sqhd_;
  cqe.sqid = qid_;
  cqe.cid = cid;
  cqe.status = status;
  size_t n = build_capsule_resp(out, cqe, lim_.hdgst);
  iovec v{out, n};
  ++loose_resps_;
  conn_->send({&v, 1}, [this, out] {
    delete[] out;
    --loose_resps_;
    if (held_ && loose_resps_ <= kMaxLooseResps / 2 && !conn_->closing()) {
      held_ = false;
      conn_->resume_recv();
    }
  });
}

void Qpair::finish_with_data(Cmd* c, uint32_t len, uint16_t status) {
  if (closed_ || conn_->closing()) return release(c);
  const uint32_t host_len = c->sqe.sgl1.length;
  len = std::min(len, host_len);
  if (len == 0) return finish(c, status);
  size_t hn = build_data_header(c->c2h, PduType::kC2HData, c->sqe.cid, 0, 0, len, true, false, lim_.hdgst,
                                lim_.ddgst);
  iovec v[4];
  int k = 0;
  v[k++] = {c->c2h, hn};
  v[k++] = {c->buf.data(), len};
  if (lim_.ddgst) {
    c->ddgst = digest({c->buf.data(), len});
    v[k++] = {&c->ddgst, 4};
  }
  size_t rn;
  fill_resp(c, status, 0, 0, &rn);
  v[k++] = {c->resp, rn};
  conn_->send({v, static_cast<size_t>(k)}, [this, c] { release(c); });
}

void Qpair::reply_data(Cmd* c, const void* data, uint32_t len) {
  ensure_buf(c, len);
  std::memcpy(c->buf.data(), data, len);
  finish_with_data(c, len);
}

// ---------------------------------------------------------------- host data (R2T, H2CData)

void Qpair::request_data(Cmd* c) {
  ensure_buf(c, c->len);
  c->waiting_h2c = true;
  c->received = 0;
  // The command's C2H header buffer is idle while it waits for data: no allocation.
  size_t n = build_r2t(c->c2h, c->sqe.cid, c->slot, 0, c->len, lim_.hdgst);
  iovec v{c->c2h, n};
  conn_->send({&v, 1});
}

Qpair::Cmd* Qpair::h2c_target(const PduFrame& f, std::span<const uint8_t> hdr) {
  DataHeader h;
  std::memcpy(&h, hdr.data(), sizeof(h));
  auto bad = [&](TermFes fes, uint32_t field, const char* what) -> Cmd* {
    term({fes, field, what}, hdr.subspan(0, f.hlen));
    return nullptr;
  };
  if (h.ttag >= slots_.size() || !slots_[h.ttag].busy || !slots_[h.ttag].waiting_h2c ||
      slots_[h.ttag].sqe.cid != h.cccid) {
    return bad(TermFes::kInvalidHeaderField, 10, "H2CData for no outstanding R2T");
  }
  Cmd* c = &slots_[h.ttag];
  if (h.datal != f.data_len) return bad(TermFes::kInvalidHeaderField, 16, "H2CData datal does not match plen");
  if (h.datao != c->received) return bad(TermFes::kDataOutOfRange, 12, "H2CData at an unexpected offset");
  if (uint64_t{h.datao} + h.datal > c->len) return bad(TermFes::kDataOutOfRange, 16, "H2CData beyond the command's data");
  return c;
}

bool Qpair::receive_h2c_direct(const PduFrame& f, std::span<const uint8_t> b) {
  static constexpr uint32_t kDirectMin = 16 * 1024;
  if (f.type != PduType::kH2CData || f.has_ddgst || f.data_len < kDirectMin ||
      f.data_offset + f.data_len != f.plen || b.size() < f.data_offset) {
    return false;
  }
  if (auto e = check_header_digest(f, b.subspan(0, f.header_bytes))) {
    term(*e, b.subspan(0, std::min<uint32_t>(f.hlen, 128)));
    return false;
  }
  Cmd* c = h2c_target(f, b);
  if (!c) return false;
  const size_t have = b.size() - f.data_offset;
  uint8_t* dst = c->buf.data() + c->received;
  std::memcpy(dst, b.data() + f.data_offset, have);
  direct_cmd_ = c;
  direct_len_ = f.data_len;
  conn_->receive_into(dst + have, f.data_len - have);
  return true;
}

void Qpair::on_received_into() {
  Cmd* c = direct_cmd_;
  direct_cmd_ = nullptr;
  if (c) h2c_landed(c, direct_len_);
}

void Qpair::h2c_data(const PduFrame& f, std::span<const uint8_t> pdu) {
  Cmd* c = h2c_target(f, pdu);
  if (!c) return;
  auto data = pdu.subspan(f.data_offset, f.data_len);
  uint32_t dg = 0;
  if (f.has_ddgst) std::memcpy(&dg, pdu.data() + f.data_offset + f.data_len, 4);
  if (check_data_digest(f, data, dg)) {
    conn_->close("data digest mismatch");
    return;
  }
  std::memcpy(c->buf.data() + c->received, data.data(), data.size());
  h2c_landed(c, f.data_len);
}

void Qpair::h2c_landed(Cmd* c, uint32_t len) {
  c->received += len;
  if (c->received < c->len) return;
  c->waiting_h2c = false;
  data_received(c);
}
// ---------------------------------------------------------------- lifetime

void Qpair::maybe_destroy() {
  if (!closed_ || outstanding_ > aer_held() || dying_) return;
  dying_ = true;
  r_.defer([this] { delete this; });
}

}  // namespace castor::nvmf
