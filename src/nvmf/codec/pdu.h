#pragma once
// NVMe/TCP PDU framing: validation of received headers and construction of the PDUs a
// controller (target) or a host sends. Used by both Castor's target and its host, so the
// two sides cannot disagree about framing.
//
// Receiving a PDU is three steps, each validating before anything is used:
//  1. parse_header(): the 8-byte common header, against the direction, the PDU type's
//     exact header length, the negotiated digests and the size limits. Yields how many
//     more header bytes (PSH + header digest) and data bytes (with padding and data
//     digest) follow.
//  2. check_header_digest() once the whole header is in.
//  3. check_data_digest() once the data is in.
// Any failure is a PduError carrying the TermReq fatal error status and offset (FEI)
// to report before closing the connection.

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "nvmf/codec/spec.h"

namespace castor::nvmf {

enum class Direction { kHostToController, kControllerToHost };

struct PduError {
  TermFes fes = TermFes::kInvalidHeaderField;
  uint32_t fei = 0;  // byte offset of the offending field
  std::string what;
};

// What a connection has negotiated (before ICReq/ICResp: no digests, ICReq/ICResp only).
struct PduLimits {
  bool ic_done = false;
  bool hdgst = false;
  bool ddgst = false;
  uint32_t max_data = 1u << 20;  // largest data section accepted in one PDU
};

struct PduFrame {
  PduType type{};
  uint8_t flags = 0;
  uint8_t hlen = 0;
  uint8_t pdo = 0;
  uint32_t plen = 0;
  uint32_t header_bytes = 0;  // hlen + header digest
  uint32_t data_offset = 0;   // from the PDU start
  uint32_t data_len = 0;      // data bytes (without padding or digest)
  bool has_hdgst = false;
  bool has_ddgst = false;
};

// The exact header length each PDU type must carry.
uint8_t expected_hlen(PduType t);
const char* pdu_type_name(uint8_t t);

// Step 1. `ch` is the first 8 bytes of a PDU.
std::optional<PduError> parse_header(const CommonHeader& ch, Direction from, const PduLimits& lim, PduFrame* out);
// Step 2: `header` is the first frame.header_bytes bytes.
std::optional<PduError> check_header_digest(const PduFrame& f, std::span<const uint8_t> header);
// Step 3: `data` is frame.data_len bytes; `digest` the 4 bytes after it.
std::optional<PduError> check_data_digest(const PduFrame& f, std::span<const uint8_t> data, uint32_t digest);

uint32_t digest(std::span<const uint8_t> bytes);

// ---- builders: write a complete header (with header digest if enabled) into `out`
// and return its length. `out` must hold 24 + 4 bytes (128 + 4 for ICResp).
size_t build_icresp(uint8_t* out, bool hdgst, bool ddgst, uint32_t maxh2cdata);
size_t build_icreq(uint8_t* out, bool hdgst, bool ddgst, uint32_t maxr2t);
size_t build_capsule_resp(uint8_t* out, const Cqe& cqe, bool hdgst);
// A data PDU header (C2HData or H2CData) for `datal` bytes at `datao`; `ddgst` adds the
// data digest flag (the caller appends the digest after the data).
size_t build_data_header(uint8_t* out, PduType type, uint16_t cccid, uint16_t ttag, uint32_t datao,
                         uint32_t datal, bool last, bool success, bool hdgst, bool ddgst);
size_t build_r2t(uint8_t* out, uint16_t cccid, uint16_t ttag, uint32_t r2to, uint32_t r2tl, bool hdgst);
// A CapsuleCmd header with `incapsule` bytes of data following (sgl1 already set by
// the caller in `sqe`).
size_t build_capsule_cmd(uint8_t* out, const Sqe& sqe, uint32_t incapsule, bool hdgst, bool ddgst);
// TermReq carrying up to 128 bytes of the offending header. `out` holds 24 + 128.
size_t build_term_req(uint8_t* out, Direction from, const PduError& e, std::span<const uint8_t> offending);

}  // namespace castor::nvmf
