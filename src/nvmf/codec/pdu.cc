#include "nvmf/codec/pdu.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/crc32c.h"

namespace castor::nvmf {

uint8_t expected_hlen(PduType t) {
  switch (t) {
    case PduType::kICReq:
    case PduType::kICResp: return 128;
    case PduType::kCapsuleCmd: return 72;
    case PduType::kH2CTermReq:
    case PduType::kC2HTermReq:
    case PduType::kCapsuleResp:
    case PduType::kH2CData:
    case PduType::kC2HData:
    case PduType::kR2T: return 24;
  }
  return 0;
}

const char* pdu_type_name(uint8_t t) {
  switch (t) {
    case 0x00: return "ICReq";
    case 0x01: return "ICResp";
    case 0x02: return "H2CTermReq";
    case 0x03: return "C2HTermReq";
    case 0x04: return "CapsuleCmd";
    case 0x05: return "CapsuleResp";
    case 0x06: return "H2CData";
    case 0x07: return "C2HData";
    case 0x09: return "R2T";
  }
  return "unknown";
}

uint32_t digest(std::span<const uint8_t> bytes) { return crc32c(bytes.data(), bytes.size()); }

namespace {
PduError err(TermFes fes, uint32_t fei, std::string what) { return PduError{fes, fei, std::move(what)}; }

bool allowed(PduType t, Direction from) {
  if (from == Direction::kHostToController) {
    return t == PduType::kICReq || t == PduType::kH2CTermReq || t == PduType::kCapsuleCmd || t == PduType::kH2CData;
  }
  return t == PduType::kICResp || t == PduType::kC2HTermReq || t == PduType::kCapsuleResp || t == PduType::kC2HData ||
         t == PduType::kR2T;
}

bool carries_data(PduType t) {
  return t == PduType::kCapsuleCmd || t == PduType::kH2CData || t == PduType::kC2HData ||
         t == PduType::kH2CTermReq || t == PduType::kC2HTermReq;
}
}  // namespace

std::optional<PduError> parse_header(const CommonHeader& ch, Direction from, const PduLimits& lim, PduFrame* out) {
  const uint8_t raw_type = ch.type;
  if (!(raw_type <= 0x07 || raw_type == 0x09) || !allowed(static_cast<PduType>(raw_type), from)) {
    return err(TermFes::kInvalidHeaderField, 0, fmt::format("unexpected PDU type 0x{:02x}", raw_type));
  }
  const auto t = static_cast<PduType>(raw_type);
  const bool ic = t == PduType::kICReq || t == PduType::kICResp;
  const bool term = t == PduType::kH2CTermReq || t == PduType::kC2HTermReq;
  if (!lim.ic_done && !ic && !term) {
    return err(TermFes::kPduSequenceError, 0, fmt::format("{} before connection initialization", pdu_type_name(raw_type)));
  }
  if (lim.ic_done && ic) {
    return err(TermFes::kPduSequenceError, 0, fmt::format("{} after connection initialization", pdu_type_name(raw_type)));
  }
  if (ch.hlen != expected_hlen(t)) {
    return err(TermFes::kInvalidHeaderField, 2,
               fmt::format("{} with hlen {} (must be {})", pdu_type_name(raw_type), ch.hlen, expected_hlen(t)));
  }
  PduFrame f;
  f.type = t;
  f.flags = ch.flags;
  f.hlen = ch.hlen;
  f.pdo = ch.pdo;
  f.plen = ch.plen;
  // TermReq and IC PDUs never carry digests; others carry exactly what was negotiated.
  const bool may_digest = !ic && !term;
  f.has_hdgst = may_digest && lim.hdgst;
  if (may_digest && ((ch.flags & pdu_flags::kHdgst) != 0) != lim.hdgst) {
    return err(TermFes::kInvalidHeaderField, 1, "header digest flag does not match the negotiated setting");
  }
  if (!may_digest && (ch.flags & (pdu_flags::kHdgst | pdu_flags::kDdgst))) {
    return err(TermFes::kInvalidHeaderField, 1, fmt::format("{} may not carry digests", pdu_type_name(raw_type)));
  }
  f.header_bytes = f.hlen + (f.has_hdgst ? 4 : 0);
  if (f.plen < f.header_bytes) {
    return err(TermFes::kInvalidHeaderField, 4, fmt::format("plen {} is shorter than the header ({})", f.plen, f.header_bytes));
  }
  if (ic) {
    if (f.plen != 128) return err(TermFes::kInvalidHeaderField, 4, fmt::format("{} with plen {} (must be 128)", pdu_type_name(raw_type), f.plen));
    if (f.pdo != 0) return err(TermFes::kInvalidHeaderField, 3, "ICReq/ICResp with a data offset");
    *out = f;
    return std::nullopt;
  }
  if (term) {
    if (f.plen > f.hlen + kTermReqMaxData) {
      return err(TermFes::kInvalidHeaderField, 4, fmt::format("TermReq plen {} exceeds {}", f.plen, f.hlen + kTermReqMaxData));
    }
    f.data_offset = f.hlen;
    f.data_len = f.plen - f.hlen;
    *out = f;
    return std::nullopt;
  }
  const uint32_t after_header = f.plen - f.header_bytes;
  if (after_header == 0) {
    if (t == PduType::kH2CData || t == PduType::kC2HData) {
      return err(TermFes::kInvalidHeaderField, 4, fmt::format("{} without data", pdu_type_name(raw_type)));
    }
    if (f.pdo != 0 && f.pdo != f.header_bytes) {
      return err(TermFes::kInvalidHeaderField, 3, fmt::format("pdo {} on a PDU without data", f.pdo));
    }
    if (ch.flags & pdu_flags::kDdgst) return err(TermFes::kInvalidHeaderField, 1, "data digest flag without data");
    *out = f;
    return std::nullopt;
  }
  if (!carries_data(t)) {
    return err(TermFes::kInvalidHeaderField, 4, fmt::format("{} with plen {} (must be {})", pdu_type_name(raw_type), f.plen, f.header_bytes));
  }
  f.has_ddgst = lim.ddgst;
  if (((ch.flags & pdu_flags::kDdgst) != 0) != lim.ddgst) {
    return err(TermFes::kInvalidHeaderField, 1, "data digest flag does not match the negotiated setting");
  }
  if (f.pdo < f.header_bytes || f.pdo > f.plen) {
    return err(TermFes::kInvalidHeaderField, 3, fmt::format("pdo {} outside [{}, {}]", f.pdo, f.header_bytes, f.plen));
  }
  const uint32_t tail = f.has_ddgst ? 4 : 0;
  if (f.plen - f.pdo <= tail) {
    return err(TermFes::kInvalidHeaderField, 4, fmt::format("plen {} leaves no data after pdo {}", f.plen, f.pdo));
  }
  f.data_offset = f.pdo;
  f.data_len = f.plen - f.pdo - tail;
  if (f.data_len > lim.max_data) {
    return err(TermFes::kR2TLimitExceeded, 4, fmt::format("{} carries {} bytes of data (limit {})", pdu_type_name(raw_type), f.data_len, lim.max_data));
  }
  *out = f;
  return std::nullopt;
}

std::optional<PduError> check_header_digest(const PduFrame& f, std::span<const uint8_t> header) {
  if (!f.has_hdgst) return std::nullopt;
  if (header.size() < f.header_bytes) return err(TermFes::kInvalidHeaderField, 0, "short header");
  uint32_t want;
  std::memcpy(&want, header.data() + f.hlen, 4);
  if (digest(header.subspan(0, f.hlen)) != want) {
    return err(TermFes::kHeaderDigestError, 0, fmt::format("{} header digest mismatch", pdu_type_name(static_cast<uint8_t>(f.type))));
  }
  return std::nullopt;
}

std::optional<PduError> check_data_digest(const PduFrame& f, std::span<const uint8_t> data, uint32_t dg) {
  if (!f.has_ddgst) return std::nullopt;
  if (digest(data) != dg) {
    // There is no TermReq code for a data digest error: callers fail the command (host)
    // or treat it as fatal (target, like Linux).
    return err(TermFes::kInvalidHeaderField, 0, "data digest mismatch");
  }
  return std::nullopt;
}

namespace {
size_t finish(uint8_t* out, size_t hlen, bool hdgst) {
  if (hdgst) {
    uint32_t d = digest({out, hlen});
    std::memcpy(out + hlen, &d, 4);
    return hlen + 4;
  }
  return hlen;
}
CommonHeader ch(PduType t, uint8_t hlen, uint8_t flags, uint8_t pdo, uint32_t plen) {
  return CommonHeader{static_cast<uint8_t>(t), flags, hlen, pdo, plen};
}
}  // namespace

size_t build_icresp(uint8_t* out, bool hdgst, bool ddgst, uint32_t maxh2cdata) {
  ICResp r{};
  r.ch = ch(PduType::kICResp, 128, 0, 0, 128);
  r.pfv = 0;
  r.cpda = 0;
  r.dgst = static_cast<uint8_t>((hdgst ? 1 : 0) | (ddgst ? 2 : 0));
  r.maxh2cdata = maxh2cdata;
  std::memcpy(out, &r, sizeof(r));
  return sizeof(r);
}

size_t build_icreq(uint8_t* out, bool hdgst, bool ddgst, uint32_t maxr2t) {
  ICReq r{};
  r.ch = ch(PduType::kICReq, 128, 0, 0, 128);
  r.dgst = static_cast<uint8_t>((hdgst ? 1 : 0) | (ddgst ? 2 : 0));
  r.maxr2t = maxr2t;
  std::memcpy(out, &r, sizeof(r));
  return sizeof(r);
}

size_t build_capsule_resp(uint8_t* out, const Cqe& cqe, bool hdgst) {
  CapsuleRespHeader h{};
  const uint32_t len = 24 + (hdgst ? 4 : 0);
  h.ch = ch(PduType::kCapsuleResp, 24, hdgst ? pdu_flags::kHdgst : 0, 0, len);
  h.cqe = cqe;
  std::memcpy(out, &h, sizeof(h));
  return finish(out, 24, hdgst);
}

size_t build_data_header(uint8_t* out, PduType type, uint16_t cccid, uint16_t ttag, uint32_t datao, uint32_t datal,
                         bool last, bool success, bool hdgst, bool ddgst) {
  DataHeader h{};
  const uint32_t hb = 24 + (hdgst ? 4 : 0);
  uint8_t flags = static_cast<uint8_t>((hdgst ? pdu_flags::kHdgst : 0) | (ddgst ? pdu_flags::kDdgst : 0) |
                                       (last ? pdu_flags::kLastPdu : 0) | (success ? pdu_flags::kSuccess : 0));
  h.ch = ch(type, 24, flags, static_cast<uint8_t>(hb), hb + datal + (ddgst ? 4 : 0));
  h.cccid = cccid;
  h.ttag = type == PduType::kH2CData ? ttag : 0;
  h.datao = datao;
  h.datal = datal;
  std::memcpy(out, &h, sizeof(h));
  return finish(out, 24, hdgst);
}

size_t build_r2t(uint8_t* out, uint16_t cccid, uint16_t ttag, uint32_t r2to, uint32_t r2tl, bool hdgst) {
  R2THeader h{};
  const uint32_t len = 24 + (hdgst ? 4 : 0);
  h.ch = ch(PduType::kR2T, 24, hdgst ? pdu_flags::kHdgst : 0, 0, len);
  h.cccid = cccid;
  h.ttag = ttag;
  h.r2to = r2to;
  h.r2tl = r2tl;
  std::memcpy(out, &h, sizeof(h));
  return finish(out, 24, hdgst);
}

size_t build_capsule_cmd(uint8_t* out, const Sqe& sqe, uint32_t incapsule, bool hdgst, bool ddgst) {
  CapsuleCmdHeader h{};
  const uint32_t hb = 72 + (hdgst ? 4 : 0);
  const bool dd = ddgst && incapsule > 0;
  uint8_t flags = static_cast<uint8_t>((hdgst ? pdu_flags::kHdgst : 0) | (dd ? pdu_flags::kDdgst : 0));
  h.ch = ch(PduType::kCapsuleCmd, 72, flags, static_cast<uint8_t>(incapsule ? hb : 0), hb + incapsule + (dd ? 4 : 0));
  h.sqe = sqe;
  std::memcpy(out, &h, sizeof(h));
  return finish(out, 72, hdgst);
}

size_t build_term_req(uint8_t* out, Direction from, const PduError& e, std::span<const uint8_t> offending) {
  TermReq t{};
  const uint32_t n = static_cast<uint32_t>(std::min<size_t>(offending.size(), kTermReqMaxData));
  t.ch = ch(from == Direction::kControllerToHost ? PduType::kC2HTermReq : PduType::kH2CTermReq, 24, 0, 0, 24 + n);
  t.fes = static_cast<uint16_t>(e.fes);
  t.fei = e.fei;
  std::memcpy(out, &t, sizeof(t));
  if (n) std::memcpy(out + 24, offending.data(), n);
  return 24 + n;
}

}  // namespace castor::nvmf
