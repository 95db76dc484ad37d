#include "nvmf/codec/pdu.h"

#include "nvmf/codec/ana_log.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <vector>

namespace castor::nvmf {
namespace {

PduLimits negotiated(bool hd, bool dd) {
  PduLimits l;
  l.ic_done = true;
  l.hdgst = hd;
  l.ddgst = dd;
  l.max_data = 8192;
  return l;
}

CommonHeader header_of(const uint8_t* p) {
  CommonHeader ch;
  std::memcpy(&ch, p, sizeof(ch));
  return ch;
}

TEST(Pdu, CapsuleRespRoundTripWithHeaderDigest) {
  uint8_t buf[64];
  Cqe cqe{};
  cqe.cid = 7;
  cqe.status = make_status(Sct::kCommandSpecific, sc::kConnectInvalidHost);
  size_t n = build_capsule_resp(buf, cqe, true);
  ASSERT_EQ(n, 28u);
  PduFrame f;
  auto e = parse_header(header_of(buf), Direction::kControllerToHost, negotiated(true, false), &f);
  ASSERT_FALSE(e) << e->what;
  EXPECT_EQ(f.type, PduType::kCapsuleResp);
  EXPECT_EQ(f.header_bytes, 28u);
  EXPECT_EQ(f.data_len, 0u);
  EXPECT_FALSE(check_header_digest(f, {buf, n}));
  buf[12] ^= 1;  // corrupt the CID
  auto d = check_header_digest(f, {buf, n});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->fes, TermFes::kHeaderDigestError);
  EXPECT_EQ(status_code(cqe.status), sc::kConnectInvalidHost);
  EXPECT_EQ(status_type(cqe.status), Sct::kCommandSpecific);
}

TEST(Pdu, CapsuleCmdWithInCapsuleDataAndDataDigest) {
  std::vector<uint8_t> data(4096, 0x3c);
  uint8_t hdr[80];
  Sqe sqe{};
  sqe.opcode = io_op::kWrite;
  sqe.sgl1.type = kSglDataBlockOffset;
  sqe.sgl1.length = 4096;
  size_t n = build_capsule_cmd(hdr, sqe, 4096, true, true);
  ASSERT_EQ(n, 76u);
  PduFrame f;
  auto e = parse_header(header_of(hdr), Direction::kHostToController, negotiated(true, true), &f);
  ASSERT_FALSE(e) << e->what;
  EXPECT_EQ(f.data_offset, 76u);
  EXPECT_EQ(f.data_len, 4096u);
  EXPECT_EQ(f.plen, 76u + 4096 + 4);
  EXPECT_FALSE(check_header_digest(f, {hdr, n}));
  EXPECT_FALSE(check_data_digest(f, data, digest(data)));
  EXPECT_TRUE(check_data_digest(f, data, digest(data) ^ 1));
}

TEST(Pdu, RejectsMalformedHeadersWithTheRightError) {
  auto parse = [](CommonHeader ch, Direction d, PduLimits l) {
    PduFrame f;
    return parse_header(ch, d, l, &f);
  };
  const auto H2C = Direction::kHostToController;
  const auto C2H = Direction::kControllerToHost;
  PduLimits plain = negotiated(false, false);
  // Unknown type, and types from the wrong direction.
  auto e = parse(CommonHeader{0x08, 0, 24, 0, 24}, H2C, plain);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->fes, TermFes::kInvalidHeaderField);
  EXPECT_EQ(e->fei, 0u);
  EXPECT_TRUE(parse(CommonHeader{0x09, 0, 24, 0, 24}, H2C, plain));   // R2T from a host
  EXPECT_TRUE(parse(CommonHeader{0x04, 0, 72, 0, 72}, C2H, plain));   // CapsuleCmd from a controller
  // Wrong hlen names byte 2.
  e = parse(CommonHeader{0x04, 0, 64, 0, 64}, H2C, plain);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->fei, 2u);
  // plen shorter than the header; data PDU without data; pdo outside the PDU.
  EXPECT_TRUE(parse(CommonHeader{0x04, 0, 72, 0, 40}, H2C, plain));
  EXPECT_TRUE(parse(CommonHeader{0x06, 0, 24, 24, 24}, H2C, plain));
  e = parse(CommonHeader{0x04, 0, 72, 200, 100}, H2C, plain);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->fei, 3u);
  // A PDU type that carries no data with extra bytes.
  EXPECT_TRUE(parse(CommonHeader{0x05, 0, 24, 0, 30}, C2H, plain));
  // Digest flags must match what was negotiated.
  EXPECT_TRUE(parse(CommonHeader{0x05, pdu_flags::kHdgst, 24, 0, 28}, C2H, plain));
  EXPECT_TRUE(parse(CommonHeader{0x05, 0, 24, 0, 24}, C2H, negotiated(true, false)));
  // Too much data in one PDU.
  e = parse(CommonHeader{0x06, 0, 24, 24, 24 + 8193}, H2C, plain);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->fes, TermFes::kR2TLimitExceeded);
  // Sequence: only IC PDUs before initialization, none after.
  PduLimits fresh;
  e = parse(CommonHeader{0x04, 0, 72, 0, 72}, H2C, fresh);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->fes, TermFes::kPduSequenceError);
  EXPECT_FALSE(parse(CommonHeader{0x00, 0, 128, 0, 128}, H2C, fresh));
  EXPECT_TRUE(parse(CommonHeader{0x00, 0, 128, 0, 128}, H2C, plain));
  EXPECT_TRUE(parse(CommonHeader{0x00, 0, 128, 0, 129}, H2C, fresh));
  EXPECT_TRUE(parse(CommonHeader{0x00, pdu_flags::kHdgst, 128, 0, 128}, H2C, fresh));
  // TermReq: at most 128 bytes of error data, never digests.
  EXPECT_FALSE(parse(CommonHeader{0x02, 0, 24, 0, 24 + 128}, H2C, plain));
  EXPECT_TRUE(parse(CommonHeader{0x02, 0, 24, 0, 24 + 129}, H2C, plain));
}

TEST(Pdu, BuildersProduceHeadersTheParserAccepts) {
  uint8_t b[200];
  PduFrame f;
  size_t n = build_icresp(b, true, true, 131072);
  ASSERT_EQ(n, 128u);
  PduLimits fresh;
  ASSERT_FALSE(parse_header(header_of(b), Direction::kControllerToHost, fresh, &f));
  ICResp r;
  std::memcpy(&r, b, sizeof(r));
  EXPECT_EQ(r.dgst, 3);
  EXPECT_EQ(r.maxh2cdata, 131072u);
  n = build_data_header(b, PduType::kC2HData, 5, 0, 4096, 4096, true, false, false, true);
  ASSERT_FALSE(parse_header(header_of(b), Direction::kControllerToHost, negotiated(false, true), &f));
  EXPECT_EQ(f.data_offset, 24u);
  EXPECT_EQ(f.data_len, 4096u);
  EXPECT_TRUE(f.flags & pdu_flags::kLastPdu);
  n = build_r2t(b, 5, 9, 0, 65536, true);
  ASSERT_FALSE(parse_header(header_of(b), Direction::kControllerToHost, negotiated(true, false), &f));
  EXPECT_FALSE(check_header_digest(f, {b, n}));
  PduError e{TermFes::kHeaderDigestError, 0, "x"};
  uint8_t bad[72] = {4, 0, 72};
  n = build_term_req(b, Direction::kControllerToHost, e, {bad, sizeof(bad)});
  EXPECT_EQ(n, 24u + 72);
  ASSERT_FALSE(parse_header(header_of(b), Direction::kControllerToHost, negotiated(false, false), &f));
  TermReq t;
  std::memcpy(&t, b, sizeof(t));
  EXPECT_EQ(t.fes, 3);
  EXPECT_EQ(digest({reinterpret_cast<const uint8_t*>("123456789"), 9}), 0xE3069283u);
}

// The ANA log page as the host reads it: the state of the group listing the namespace,
// and every length checked against the bytes received; the page as the target builds it.
TEST(AnaLog, FindsTheNamespacesGroupAndRefusesShortOrBadPages) {
  const AnaLogGroup groups[] = {{1, AnaState::kNonOptimized, 5, {1, 2}}, {2, AnaState::kInaccessible, 5, {3}}};
  const auto page = build_ana_log(5, groups);
  const size_t h = sizeof(AnaLogHeader), g1 = sizeof(AnaGroupDescriptor);
  ASSERT_EQ(page.size(), h + 2 * g1 + 3 * 4);
  // Return groups only: the descriptors without their NSIDs, so no namespace is found.
  const auto rgo = build_ana_log(5, groups, true);
  EXPECT_EQ(rgo.size(), h + 2 * g1);
  EXPECT_EQ(ana_state_of(rgo, 1).status().code(), Errc::kNotFound);

  EXPECT_EQ(*ana_state_of(page, 2), AnaState::kNonOptimized);
  EXPECT_EQ(*ana_state_of(page, 3), AnaState::kInaccessible);
  EXPECT_EQ(ana_state_of(page, 4).status().code(), Errc::kNotFound);
  // Cut inside the second group's NSID list, inside its descriptor, inside the header.
  for (size_t n : {page.size() - 2, h + g1 + 8 + 10, size_t{8}}) {
    auto r = ana_state_of(std::span<const uint8_t>(page.data(), n), 3);
    EXPECT_EQ(r.status().code(), Errc::kInvalidArgument) << n;
  }
  // A count of namespaces that would run past the page (and overflow a 32-bit product).
  auto bad = page;
  const uint32_t huge = 0x40000001;
  std::memcpy(bad.data() + h + offsetof(AnaGroupDescriptor, nnsids), &huge, 4);
  EXPECT_EQ(ana_state_of(bad, 1).status().code(), Errc::kInvalidArgument);
  // A reserved state.
  bad = page;
  bad[h + offsetof(AnaGroupDescriptor, state)] = 0x05;
  EXPECT_EQ(ana_state_of(bad, 1).status().code(), Errc::kInvalidArgument);
  for (AnaState s : {AnaState::kOptimized, AnaState::kNonOptimized, AnaState::kInaccessible,
                     AnaState::kPersistentLoss, AnaState::kChange}) {
    EXPECT_EQ(*parse_ana_state(ana_state_name(s)), s);
  }
  EXPECT_EQ(parse_ana_state("fast").status().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace castor::nvmf
