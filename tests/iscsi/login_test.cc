// The iSCSI login phase without sockets: text parsing, key negotiation, CHAP and the
// stage machine, driven PDU by PDU as an initiator would.
#include <gtest/gtest.h>

#include <cstring>

#include "iscsi/chap.h"
#include "iscsi/login.h"
#include "iscsi/text.h"

namespace castor::iscsi {
namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string value_of(const std::string& text, const std::string& key) {
  auto parsed = parse_text(bytes(text));
  if (!parsed) return "<unparsable>";
  for (const auto& [k, v] : parsed.value()) {
    if (k == key) return v;
  }
  return "<absent>";
}

Bhs login_req(uint8_t csg, uint8_t nsg, bool transit, uint32_t cmd_sn = 7, uint16_t tsih = 0) {
  Bhs b;
  b.clear();
  b.set_opcode(op::kLogin | kImmediateBit);
  b.set_flags(static_cast<uint8_t>((transit ? loginflag::kTransit : 0) | csg << 2 | (transit ? nsg : 0)));
  const uint8_t isid[6] = {0x80, 1, 2, 3, 4, 5};
  std::memcpy(b.b + off::kIsid, isid, 6);
  b.set_u16(off::kTsih, tsih);
  b.set_itt(0x1234);
  b.set_u32(off::kLoginCmdSn, cmd_sn);
  return b;
}

struct Fixture : ::testing::Test {
  LoginConfig cfg;
  NodeAccess node;
  Fixture() {
    cfg.find_target = [this](const std::string& n) -> std::optional<NodeAccess> {
      if (n == "iqn.2026-11.io.castor:vol") return node;
      return std::nullopt;
    };
    cfg.new_tsih = [] { return uint16_t{42}; };
  }
  uint16_t status(const Bhs& r) { return static_cast<uint16_t>(r.b[off::kStatusClass] << 8 | r.b[off::kStatusDetail]); }
};

TEST(Text, ParsesPairsAndRejectsGarbage) {
  auto ok = parse_text(bytes(std::string("A=1\0B=two\0\0\0", 12)));
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok.value().size(), 2u);
  EXPECT_EQ(ok.value()[1].second, "two");
  EXPECT_FALSE(parse_text(bytes(std::string("novalue\0", 8))));
  EXPECT_FALSE(parse_text(bytes(std::string("=x\0", 3))));
  EXPECT_FALSE(parse_text(bytes(std::string("A=1\0A=2\0", 8))));
  EXPECT_FALSE(parse_text(bytes(std::string(64, 'k') + "=v")));
  EXPECT_TRUE(parse_text(bytes("Last=noterminator")));
}

TEST(Text, NegotiatesOperationalKeys) {
  SessionParams p;
  std::string reply;
  KeyValues unhandled;
  auto offered = parse_text(bytes(text_pairs({{"HeaderDigest", "CRC32C,None"}, {"DataDigest", "None"},
                                      {"MaxRecvDataSegmentLength", "65536"}, {"MaxBurstLength", "16776192"},
                                      {"FirstBurstLength", "262144"}, {"InitialR2T", "No"},
                                      {"ImmediateData", "Yes"}, {"MaxOutstandingR2T", "8"},
                                      {"ErrorRecoveryLevel", "2"}, {"MaxConnections", "4"},
                                      {"X-com.example.key", "1"}})));
  ASSERT_TRUE(offered);
  ASSERT_TRUE(negotiate_operational(offered.value(), TargetLimits{}, SessionType::kNormal, p, reply, unhandled));
  EXPECT_TRUE(p.header_digest);
  EXPECT_FALSE(p.data_digest);
  EXPECT_EQ(p.initiator_mrdsl, 65536u);
  EXPECT_EQ(p.max_burst, 1u << 20);  // min(offer, Castor's limit)
  EXPECT_EQ(p.first_burst, 262144u);
  EXPECT_FALSE(p.initial_r2t);
  EXPECT_TRUE(p.immediate_data);
  EXPECT_EQ(value_of(reply, "ErrorRecoveryLevel"), "0");
  EXPECT_EQ(value_of(reply, "MaxConnections"), "4");  // min(offer, Castor's 8)
  EXPECT_EQ(p.max_connections, 4u);
  EXPECT_EQ(value_of(reply, "MaxOutstandingR2T"), "1");
  EXPECT_EQ(value_of(reply, "MaxRecvDataSegmentLength"), "<absent>");  // declarative: not echoed
  ASSERT_EQ(unhandled.size(), 1u);
  EXPECT_EQ(unhandled[0].first, "X-com.example.key");

  TargetLimits two;
  two.max_connections = 2;
  std::string reply2;
  ASSERT_TRUE(negotiate_operational(offered.value(), two, SessionType::kNormal, p, reply2, unhandled));
  EXPECT_EQ(value_of(reply2, "MaxConnections"), "2");

  KeyValues bad = {{"MaxBurstLength", "100"}};
  EXPECT_FALSE(negotiate_operational(bad, TargetLimits{}, SessionType::kNormal, p, reply, unhandled));
}

TEST(Chap, Md5MatchesRfc1994Construction) {
  // MD5(0x01 || "secret" || 0x00..0x0f), computed independently with Python hashlib.
  std::vector<uint8_t> ch(16);
  for (int i = 0; i < 16; ++i) ch[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(encode_hex(chap_md5(1, "secret", ch)), "0x740e86463bda3a4d7017d6e0fba0699d");
  auto b = decode_binary("0x0aFF");
  ASSERT_TRUE(b);
  EXPECT_EQ(b.value(), (std::vector<uint8_t>{0x0a, 0xff}));
  auto b64 = decode_binary("0bAAEC");
  ASSERT_TRUE(b64);
  EXPECT_EQ(b64.value(), (std::vector<uint8_t>{0, 1, 2}));
  EXPECT_FALSE(decode_binary("0x123"));
  EXPECT_FALSE(decode_binary("1234"));
  EXPECT_FALSE(decode_binary("0xzz"));
}

TEST_F(Fixture, SinglePduLoginWithoutAuthentication) {
  Login l(cfg);
  Bhs resp;
  std::string out;
  auto o = l.step(login_req(1, 3, true),
                  bytes(text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.2026-11.io.castor:vol"},
                            {"SessionType", "Normal"}, {"HeaderDigest", "None,CRC32C"},
                            {"MaxRecvDataSegmentLength", "262144"}})),
                  resp, out);
  ASSERT_EQ(o, Login::Outcome::kFullFeature) << l.error();
  EXPECT_EQ(status(resp), 0);
  EXPECT_EQ(resp.opcode(), op::kLoginResp);
  EXPECT_EQ(resp.flags(), loginflag::kTransit | 1 << 2 | 3);
  EXPECT_EQ(resp.u16(off::kTsih), 42);
  EXPECT_EQ(resp.itt(), 0x1234u);
  EXPECT_EQ(resp.u32(off::kExpCmdSn), 7u);
  EXPECT_EQ(value_of(out, "TargetPortalGroupTag"), "1");
  EXPECT_EQ(value_of(out, "HeaderDigest"), "None");
  EXPECT_EQ(value_of(out, "MaxRecvDataSegmentLength"), "262144");
  EXPECT_EQ(resp.data_segment_length(), out.size());
  EXPECT_EQ(l.initiator_name(), "iqn.test:init");
  EXPECT_EQ(l.params().initiator_mrdsl, 262144u);
}

TEST_F(Fixture, LoginErrorsCarryTheRightStatus) {
  struct Case {
    std::string text;
    uint16_t want;
  } cases[] = {
      {text_pairs({{"TargetName", "iqn.2026-11.io.castor:vol"}}), login_status::kMissingParameter},
      {text_pairs({{"InitiatorName", "iqn.test:init"}}), login_status::kMissingParameter},
      {text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.nope:x"}}), login_status::kTargetNotFound},
      {text_pairs({{"InitiatorName", "iqn.test:init"}, {"SessionType", "Weird"}}), login_status::kSessionTypeUnsupported},
      {text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.2026-11.io.castor:vol"},
           {"MaxBurstLength", "1"}}),
       login_status::kInitiatorError},
  };
  for (const auto& c : cases) {
    Login l(cfg);
    Bhs resp;
    std::string out;
    EXPECT_EQ(l.step(login_req(1, 3, true), bytes(c.text), resp, out), Login::Outcome::kFail);
    EXPECT_EQ(status(resp), c.want) << l.error();
  }
  node.allowed_initiators = {"iqn.test:someone-else"};
  Login l(cfg);
  Bhs resp;
  std::string out;
  EXPECT_EQ(l.step(login_req(1, 3, true),
                   bytes(text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.2026-11.io.castor:vol"}})),
                   resp, out),
            Login::Outcome::kFail);
  EXPECT_EQ(status(resp), login_status::kForbidden);
}

// Runs the CHAP exchange; returns the outcome of the CHAP_N/CHAP_R step.
Login::Outcome chap_login(Login& l, const std::string& secret, bool mutual, std::string* final_text,
                          uint16_t* final_status) {
  Bhs resp;
  std::string out;
  auto o = l.step(login_req(0, 1, true),
                  bytes(text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.2026-11.io.castor:vol"},
                            {"AuthMethod", "CHAP,None"}})),
                  resp, out);
  EXPECT_EQ(o, Login::Outcome::kContinue);
  EXPECT_EQ(value_of(out, "AuthMethod"), "CHAP");
  EXPECT_FALSE(resp.flags() & loginflag::kTransit);  // authentication not done yet
  o = l.step(login_req(0, 1, false), bytes(text_pairs({{"CHAP_A", "7,5"}})), resp, out);
  EXPECT_EQ(o, Login::Outcome::kContinue);
  EXPECT_EQ(value_of(out, "CHAP_A"), "5");
  const uint8_t id = static_cast<uint8_t>(std::stoul(value_of(out, "CHAP_I")));
  auto challenge = decode_binary(value_of(out, "CHAP_C"));
  EXPECT_TRUE(challenge);
  EXPECT_GE(challenge.value().size(), 16u);
  std::string t = text_pairs({{"CHAP_N", "alice"}, {"CHAP_R", encode_hex(chap_md5(id, secret, challenge.value()))}});
  if (mutual) {
    append_text(t, "CHAP_I", "9");
    append_text(t, "CHAP_C", "0x00112233445566778899aabbccddeeff");
  }
  o = l.step(login_req(0, 1, true), bytes(t), resp, out);
  *final_text = out;
  *final_status = static_cast<uint16_t>(resp.b[off::kStatusClass] << 8 | resp.b[off::kStatusDetail]);
  return o;
}

TEST_F(Fixture, ChapAcceptsTheRightSecretAndRefusesAWrongOne) {
  node.chap = {"alice", "alice-secret-1234"};
  {
    Login l(cfg);
    std::string text;
    uint16_t st;
    ASSERT_EQ(chap_login(l, "alice-secret-1234", false, &text, &st), Login::Outcome::kContinue) << l.error();
    // Operational stage, then full feature.
    Bhs resp;
    std::string out;
    EXPECT_EQ(l.step(login_req(1, 3, true), bytes(text_pairs({{"MaxBurstLength", "262144"}})), resp, out),
              Login::Outcome::kFullFeature)
        << l.error();
  }
  {
    Login l(cfg);
    std::string text;
    uint16_t st;
    EXPECT_EQ(chap_login(l, "wrong-secret-123", false, &text, &st), Login::Outcome::kFail);
    EXPECT_EQ(st, login_status::kAuthFailed);
  }
  {
    // Skipping the security stage when CHAP is required fails.
    Login l(cfg);
    Bhs resp;
    std::string out;
    EXPECT_EQ(l.step(login_req(1, 3, true),
                     bytes(text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.2026-11.io.castor:vol"}})),
                     resp, out),
              Login::Outcome::kFail);
    EXPECT_EQ(status(resp), login_status::kAuthFailed);
  }
}

TEST_F(Fixture, MutualChapAnswersTheInitiatorsChallenge) {
  node.chap = {"alice", "alice-secret-1234"};
  node.mutual_chap = {"target", "target-secret-5678"};
  Login l(cfg);
  std::string text;
  uint16_t st;
  ASSERT_EQ(chap_login(l, "alice-secret-1234", true, &text, &st), Login::Outcome::kContinue) << l.error();
  EXPECT_EQ(value_of(text, "CHAP_N"), "target");
  auto c = decode_binary("0x00112233445566778899aabbccddeeff");
  EXPECT_EQ(value_of(text, "CHAP_R"), encode_hex(chap_md5(9, "target-secret-5678", c.value())));

  // Without mutual credentials configured, asking for mutual CHAP fails.
  node.mutual_chap = {};
  Login l2(cfg);
  EXPECT_EQ(chap_login(l2, "alice-secret-1234", true, &text, &st), Login::Outcome::kFail);
  EXPECT_EQ(st, login_status::kAuthFailed);
}

TEST_F(Fixture, DiscoverySessionNeedsNoTargetName) {
  Login l(cfg);
  Bhs resp;
  std::string out;
  EXPECT_EQ(l.step(login_req(1, 3, true),
                   bytes(text_pairs({{"InitiatorName", "iqn.test:init"}, {"SessionType", "Discovery"}})), resp, out),
            Login::Outcome::kFullFeature);
  EXPECT_EQ(l.session_type(), SessionType::kDiscovery);
  EXPECT_EQ(value_of(out, "TargetPortalGroupTag"), "<absent>");
}

TEST_F(Fixture, TextSplitAcrossContinuedPdus) {
  Login l(cfg);
  Bhs resp;
  std::string out;
  const std::string all = text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.2026-11.io.castor:vol"}});
  Bhs first = login_req(1, 3, false);
  first.set_flags(loginflag::kContinue | 1 << 2);
  EXPECT_EQ(l.step(first, bytes(all.substr(0, 10)), resp, out), Login::Outcome::kContinue);
  EXPECT_EQ(out, "");
  EXPECT_EQ(l.step(login_req(1, 3, true), bytes(all.substr(10)), resp, out), Login::Outcome::kFullFeature)
      << l.error();
}

}  // namespace
}  // namespace castor::iscsi

namespace castor::iscsi {
namespace {
// A login that joins a session (TSIH set) inherits the session-wide keys and may not
// negotiate them; its own keys (digests) it may.
TEST_F(Fixture, JoiningLoginMayNotNegotiateSessionWideKeys) {
  const std::string names = text_pairs({{"InitiatorName", "iqn.test:init"}, {"TargetName", "iqn.2026-11.io.castor:vol"}});
  for (const char* key : {"MaxConnections", "InitialR2T", "MaxBurstLength", "ErrorRecoveryLevel"}) {
    Login l(cfg);
    Bhs resp;
    std::string out;
    const std::string text = names + text_pairs({{key, std::string(key) == "InitialR2T" ? "Yes" : "2"}});
    EXPECT_EQ(l.step(login_req(1, 3, true, 7, 42), bytes(text), resp, out), Login::Outcome::kFail) << key;
    EXPECT_EQ(status(resp), login_status::kInitiatorError) << key;
  }
  Login l(cfg);
  Bhs resp;
  std::string out;
  EXPECT_EQ(l.step(login_req(1, 3, true, 7, 42), bytes(names + text_pairs({{"HeaderDigest", "CRC32C"}})), resp, out),
            Login::Outcome::kFullFeature);
  EXPECT_EQ(resp.u16(off::kTsih), 42);
  EXPECT_TRUE(l.params().header_digest);
}
}  // namespace
}  // namespace castor::iscsi
