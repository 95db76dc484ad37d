#include "nvmf/host/qpair.h"

#include <cstring>

#include <spdlog/spdlog.h>

namespace castor::nvmf {

HostQpair::HostQpair(reactor::Reactor& r, int fd, HostQpairOptions opts, std::function<void(bool, std::string)> on_ready,
                     std::function<void(std::string)> on_closed)
    : r_(r),
      opts_(opts),
      conn_(std::make_unique<reactor::Connection>(r, fd, this, 256 * 1024,
                                                   reactor::Connection::SendBatching::kPerLoop)),
      on_ready_(std::move(on_ready)),
      on_closed_(std::move(on_closed)),
      slots_(opts.queue_entries) {
  lim_.max_data = 1u << 24;
}

HostQpair::~HostQpair() = default;

void HostQpair::start() {
  build_icreq(icreq_, opts_.hdgst, opts_.ddgst, 0);
  iovec v{icreq_, 128};
  conn_->send({&v, 1});
  conn_->start();
}

void HostQpair::close(const std::string& why) { conn_->close(why); }

int HostQpair::submit(Sqe sqe, std::span<const uint8_t> out, std::span<uint8_t> in, Done done) {
  if (!ready_ || closed_ || conn_->closing()) return -1;
  uint16_t cid = 0;
  for (; cid < slots_.size(); ++cid) {
    if (!slots_[cid].busy) break;
  }
  if (cid == slots_.size()) return -1;
  Slot& s = slots_[cid];
  s.busy = true;
  s.out = out;
  s.in = in;
  s.done = std::move(done);
  sqe.cid = cid;
  sqe.flags = 0x40;  // SGL
  const bool incapsule = !out.empty() && out.size() <= opts_.incapsule;
  if (incapsule) {
    sqe.sgl1 = {0, static_cast<uint32_t>(out.size()), {0, 0, 0}, kSglDataBlockOffset};
  } else {
    sqe.sgl1 = {0, static_cast<uint32_t>(std::max(out.size(), in.size())), {0, 0, 0}, kSglTransportDataBlock};
  }
  s.sqe = sqe;
  ++inflight_;
  size_t n = build_capsule_cmd(s.hdr, sqe, incapsule ? static_cast<uint32_t>(out.size()) : 0, lim_.hdgst, lim_.ddgst);
  iovec v[3];
  int k = 0;
  v[k++] = {s.hdr, n};
  if (incapsule) {
    v[k++] = {const_cast<uint8_t*>(out.data()), out.size()};
    if (lim_.ddgst) {
      s.ddgst = digest(out);
      v[k++] = {&s.ddgst, 4};
    }
  }
  conn_->send({v, static_cast<size_t>(k)});
  return cid;
}

size_t HostQpair::on_data(std::span<const uint8_t> buf) {
  size_t used = 0;
  while (!conn_->closing()) {
    auto b = buf.subspan(used);
    if (b.size() < sizeof(CommonHeader)) break;
    CommonHeader ch;
    std::memcpy(&ch, b.data(), sizeof(ch));
    PduLimits lim = lim_;
    PduFrame f;
    if (auto e = parse_header(ch, Direction::kControllerToHost, lim, &f)) {
      spdlog::warn("nvmf host: malformed PDU from the controller: {}", e->what);
      conn_->close("malformed PDU from the controller");
      break;
    }
    if (b.size() < f.plen) break;
    auto pdu = b.subspan(0, f.plen);
    if (auto e = check_header_digest(f, pdu.subspan(0, f.header_bytes))) {
      conn_->close(e->what);
      break;
    }
    if (!handle(f, pdu)) break;
    used += f.plen;
  }
  return used;
}

bool HostQpair::handle(const PduFrame& f, std::span<const uint8_t> pdu) {
  switch (f.type) {
    case PduType::kICResp: {
      ICResp r;
      std::memcpy(&r, pdu.data(), sizeof(r));
      const uint8_t want = static_cast<uint8_t>((opts_.hdgst ? 1 : 0) | (opts_.ddgst ? 2 : 0));
      if (r.pfv != 0 || r.cpda != 0 || r.dgst != want || r.maxh2cdata < 4096) {
        conn_->close("controller sent an unacceptable ICResp");
        on_ready_(false, "unacceptable ICResp");
        return false;
      }
      lim_.ic_done = true;
      lim_.hdgst = opts_.hdgst;
      lim_.ddgst = opts_.ddgst;
      ready_ = true;
      on_ready_(true, "");
      return true;
    }
    case PduType::kC2HTermReq:
      conn_->close("controller terminated the connection");
      return false;
    case PduType::kC2HData: {
      DataHeader h;
      std::memcpy(&h, pdu.data(), sizeof(h));
      if (h.cccid >= slots_.size() || !slots_[h.cccid].busy || uint64_t{h.datao} + h.datal > slots_[h.cccid].in.size() ||
          h.datal != f.data_len) {
        conn_->close("C2HData outside a command's buffer");
        return false;
      }
      auto data = pdu.subspan(f.data_offset, f.data_len);
      uint32_t dg = 0;
      if (f.has_ddgst) std::memcpy(&dg, pdu.data() + f.data_offset + f.data_len, 4);
      if (check_data_digest(f, data, dg)) {
        conn_->close("data digest mismatch");
        return false;
      }
      std::memcpy(slots_[h.cccid].in.data() + h.datao, data.data(), data.size());
      return true;
    }
    case PduType::kR2T: {
      R2THeader h;
      std::memcpy(&h, pdu.data(), sizeof(h));
      if (h.cccid >= slots_.size() || !slots_[h.cccid].busy || h.r2tl == 0 ||
          uint64_t{h.r2to} + h.r2tl > slots_[h.cccid].out.size()) {
        conn_->close("R2T outside a command's data");
        return false;
      }
      Slot& s = slots_[h.cccid];
      // One H2CData PDU for the whole R2T (the target's MAXH2CDATA covers MDTS).
      size_t n = build_data_header(s.hdr, PduType::kH2CData, h.cccid, h.ttag, h.r2to, h.r2tl, true, false, lim_.hdgst,
                                   lim_.ddgst);
      iovec v[3];
      int k = 0;
      v[k++] = {s.hdr, n};
      v[k++] = {const_cast<uint8_t*>(s.out.data()) + h.r2to, h.r2tl};
      if (lim_.ddgst) {
        s.ddgst = digest(s.out.subspan(h.r2to, h.r2tl));
        v[k++] = {&s.ddgst, 4};
      }
      conn_->send({v, static_cast<size_t>(k)});
      return true;
    }
    case PduType::kCapsuleResp: {
      CapsuleRespHeader h;
      std::memcpy(&h, pdu.data(), sizeof(h));
      if (h.cqe.cid >= slots_.size() || !slots_[h.cqe.cid].busy) {
        conn_->close("response for no outstanding command");
        return false;
      }
      Slot& s = slots_[h.cqe.cid];
      s.busy = false;
      --inflight_;
      auto done = std::move(s.done);
      done(h.cqe);
      return true;
    }
    default:
      conn_->close("unexpected PDU");
      return false;
  }
}

void HostQpair::fail_all() {
  for (auto& s : slots_) {
    if (!s.busy) continue;
    s.busy = false;
    --inflight_;
    Cqe c{};
    c.cid = s.sqe.cid;
    c.status = 0xffff;
    auto done = std::move(s.done);
    done(c);
  }
}

void HostQpair::on_closed(const std::string& reason) {
  closed_ = true;
  if (!ready_) on_ready_(false, reason);
  ready_ = false;
  fail_all();
  on_closed_(reason);
}

}  // namespace castor::nvmf
