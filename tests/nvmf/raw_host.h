#pragma once
// A minimal NVMe/TCP host written against the codec, for driving Castor's target in
// tests: ICReq, capsules with in-capsule data, R2T answered from a buffer, C2H data
// collected, raw PDUs. Blocking, one command at a time.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "nvmf/codec/pdu.h"
#include "reactor/tcp.h"

namespace castor::nvmf::test {

struct Pdu {
  PduFrame f;
  std::vector<uint8_t> bytes;
  template <class T>
  T as() const {
    T t;
    std::memcpy(&t, bytes.data(), sizeof(T));
    return t;
  }
  std::span<const uint8_t> data() const { return {bytes.data() + f.data_offset, f.data_len}; }
};

class TestHost {
 public:
  TestHost(uint16_t port, bool hd = false, bool dd = false) : hd_(hd), dd_(dd) {
    auto r = reactor::tcp_connect("127.0.0.1", port, 2000);
    fd_ = r ? *r : -1;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t b[128];
    build_icreq(b, hd, dd, 0);
    send_raw(b, 128);
    auto p = recv();
    EXPECT_EQ(p.f.type, PduType::kICResp);
    lim_.ic_done = true;
    lim_.hdgst = hd;
    lim_.ddgst = dd;
    lim_.max_data = 1 << 20;
  }
  ~TestHost() {
    if (fd_ >= 0) close(fd_);
  }
  // An Async Event Request, sent without waiting: it stays outstanding until an event.
  void send_aer(uint16_t cid) {
    Sqe aer{};
    aer.opcode = admin_op::kAsyncEventRequest;
    aer.cid = cid;
    aer.flags = 0x40;
    aer.sgl1.type = kSglTransportDataBlock;
    uint8_t h[80];
    send_raw(h, build_capsule_cmd(h, aer, 0, false, false));
  }
  void send_raw(const void* p, size_t n) { ASSERT_EQ(::send(fd_, p, n, MSG_NOSIGNAL), static_cast<ssize_t>(n)); }
  bool read_exact(void* p, size_t n) {
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::recv(fd_, static_cast<uint8_t*>(p) + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  Pdu recv() {
    Pdu p;
    p.bytes.resize(8);
    if (!read_exact(p.bytes.data(), 8)) {
      p.f.plen = 0;
      return p;
    }
    CommonHeader ch;
    std::memcpy(&ch, p.bytes.data(), 8);
    PduLimits l = lim_;
    if (ch.type == static_cast<uint8_t>(PduType::kICResp)) l = PduLimits{};
    auto e = parse_header(ch, Direction::kControllerToHost, l, &p.f);
    EXPECT_FALSE(e) << (e ? e->what : "");
    if (e) return p;
    p.bytes.resize(p.f.plen);
    EXPECT_TRUE(read_exact(p.bytes.data() + 8, p.f.plen - 8));
    EXPECT_FALSE(check_header_digest(p.f, p.bytes));
    if (p.f.data_len && p.f.has_ddgst) {
      uint32_t dg;
      std::memcpy(&dg, p.bytes.data() + p.f.data_offset + p.f.data_len, 4);
      EXPECT_FALSE(check_data_digest(p.f, p.data(), dg));
    }
    return p;
  }
  bool closed() {
    uint8_t c;
    return ::recv(fd_, &c, 1, 0) <= 0;
  }
  // Sends a command (with optional in-capsule data) and returns the response CQE;
  // C2H data is collected into *in; R2Ts are answered from `out` in `chunk` pieces.
  Cqe cmd(Sqe sqe, std::span<const uint8_t> incapsule = {}, std::vector<uint8_t>* in = nullptr,
          std::span<const uint8_t> out = {}, uint32_t chunk = 1 << 20) {
    sqe.cid = ++cid_;
    sqe.flags = 0x40;
    if (!incapsule.empty()) {
      sqe.sgl1.type = kSglDataBlockOffset;
      sqe.sgl1.length = static_cast<uint32_t>(incapsule.size());
    } else if (sqe.sgl1.type == 0) {
      sqe.sgl1.type = kSglTransportDataBlock;
    }
    uint8_t h[80];
    size_t n = build_capsule_cmd(h, sqe, static_cast<uint32_t>(incapsule.size()), hd_, dd_);
    std::vector<uint8_t> b(h, h + n);
    b.insert(b.end(), incapsule.begin(), incapsule.end());
    if (dd_ && !incapsule.empty()) {
      uint32_t dg = digest(incapsule);
      b.insert(b.end(), reinterpret_cast<uint8_t*>(&dg), reinterpret_cast<uint8_t*>(&dg) + 4);
    }
    send_raw(b.data(), b.size());
    for (;;) {
      Pdu p = recv();
      if (p.f.plen == 0) return Cqe{0, 0, 0, 0, 0, 0xffff};
      if (p.f.type == PduType::kC2HData) {
        auto d = p.as<DataHeader>();
        EXPECT_EQ(d.cccid, sqe.cid);
        if (in) {
          if (in->size() < d.datao + d.datal) in->resize(d.datao + d.datal);
          std::memcpy(in->data() + d.datao, p.data().data(), d.datal);
        }
      } else if (p.f.type == PduType::kR2T) {
        auto r = p.as<R2THeader>();
        EXPECT_EQ(r.cccid, sqe.cid);
        for (uint32_t off = r.r2to; off < r.r2to + r.r2tl; off += chunk) {
          uint32_t len = std::min(chunk, r.r2to + r.r2tl - off);
          uint8_t dh[32];
          size_t hn = build_data_header(dh, PduType::kH2CData, r.cccid, r.ttag, off, len,
                                        off + len == r.r2to + r.r2tl, false, hd_, dd_);
          std::vector<uint8_t> pd(dh, dh + hn);
          pd.insert(pd.end(), out.begin() + off, out.begin() + off + len);
          if (dd_) {
            uint32_t dg = digest(out.subspan(off, len));
            pd.insert(pd.end(), reinterpret_cast<uint8_t*>(&dg), reinterpret_cast<uint8_t*>(&dg) + 4);
          }
          send_raw(pd.data(), pd.size());
        }
      } else if (p.f.type == PduType::kCapsuleResp) {
        return p.as<CapsuleRespHeader>().cqe;
      } else {
        ADD_FAILURE() << "unexpected PDU " << pdu_type_name(static_cast<uint8_t>(p.f.type));
        return Cqe{0, 0, 0, 0, 0, 0xffff};
      }
    }
  }
  // `hostid`: the Connect data's 128-bit host identifier (zero unless given).
  Cqe connect(const std::string& subnqn, const std::string& hostnqn, uint16_t qid, uint16_t cntlid,
              uint32_t kato = 0, const std::array<uint8_t, 16>& hostid = {}) {
    ConnectCmd c{};
    c.opcode = admin_op::kFabrics;
    c.fctype = fctype::kConnect;
    c.qid = qid;
    c.sqsize = 31;
    c.kato = kato;
    ConnectData d{};
    d.cntlid = cntlid;
    std::memcpy(d.hostid, hostid.data(), sizeof(d.hostid));
    std::strncpy(d.subnqn, subnqn.c_str(), sizeof(d.subnqn) - 1);
    std::strncpy(d.hostnqn, hostnqn.c_str(), sizeof(d.hostnqn) - 1);
    Sqe s;
    std::memcpy(&s, &c, sizeof(s));
    return cmd(s, {reinterpret_cast<const uint8_t*>(&d), sizeof(d)});
  }
  Cqe prop_get(uint32_t ofst, bool eight) {
    PropertyCmd p{};
    p.opcode = admin_op::kFabrics;
    p.fctype = fctype::kPropertyGet;
    p.attrib = eight ? 1 : 0;
    p.ofst = ofst;
    Sqe s;
    std::memcpy(&s, &p, sizeof(s));
    return cmd(s);
  }
  Cqe prop_set(uint32_t ofst, uint32_t v) {
    PropertyCmd p{};
    p.opcode = admin_op::kFabrics;
    p.fctype = fctype::kPropertySet;
    p.ofst = ofst;
    p.value = v;
    Sqe s;
    std::memcpy(&s, &p, sizeof(s));
    return cmd(s);
  }
  Cqe admin(uint8_t op, uint32_t nsid, uint32_t cdw10, uint32_t cdw11, std::vector<uint8_t>* in = nullptr,
            uint32_t len = 0) {
    Sqe s{};
    s.opcode = op;
    s.nsid = nsid;
    s.cdw10 = cdw10;
    s.cdw11 = cdw11;
    s.sgl1.type = kSglTransportDataBlock;
    s.sgl1.length = len;
    return cmd(s, {}, in);
  }
  Cqe rw(uint8_t op, uint64_t slba, uint32_t nlb, uint32_t bs, std::vector<uint8_t>* in,
         std::span<const uint8_t> out = {}, bool incapsule = false, uint32_t chunk = 1 << 20) {
    Sqe s{};
    s.opcode = op;
    s.nsid = 1;
    s.cdw10 = static_cast<uint32_t>(slba);
    s.cdw11 = static_cast<uint32_t>(slba >> 32);
    s.cdw12 = nlb - 1;
    s.sgl1.type = kSglTransportDataBlock;
    s.sgl1.length = nlb * bs;
    if (incapsule) return cmd(s, out, in);
    return cmd(s, {}, in, out, chunk);
  }
  int fd_ = -1;

 private:
  bool hd_, dd_;
  PduLimits lim_;
  uint16_t cid_ = 0;
};

inline uint16_t sc_of(const Cqe& c) { return status_code(c.status); }

// Connects an admin queue to `nqn` as `host` (and `hostid`), enables the controller and
// returns its CNTLID.
inline uint16_t bring_up_admin(TestHost& h, const char* nqn, const char* host, const std::array<uint8_t, 16>& hostid = {}) {
  Cqe c = h.connect(nqn, host, 0, 0xffff, 0, hostid);
  EXPECT_EQ(c.status, 0);
  const uint16_t cntlid = static_cast<uint16_t>(c.dw0);
  c = h.prop_get(prop::kCap, true);
  EXPECT_EQ(c.status, 0);
  EXPECT_EQ(c.dw0 & 0xffff, 127u);  // MQES: the target's default 128 entries
  uint32_t cc = (6u << 16) | (4u << 20);
  EXPECT_EQ(h.prop_set(prop::kCc, cc).status, 0);
  EXPECT_EQ(h.prop_set(prop::kCc, cc | 1).status, 0);
  EXPECT_EQ(h.prop_get(prop::kCsts, false).dw0 & 1, 1u);
  return cntlid;
}

}  // namespace castor::nvmf::test
