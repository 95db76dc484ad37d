// End-to-end tests of the iSCSI target's management through the real castor-engine:
// portals, exports (IQN names, URIs, CHAP, initiator allow-lists, errors), sessions, the
// start-up flags, and a nexus published over iSCSI. When libiscsi's iscsi-inq is on
// $PATH it logs in to the exported LUNs (also with right and wrong CHAP secrets).

#include <gtest/gtest.h>

#include <cstdlib>

#include "engine_process.h"

namespace castor::api {
namespace {

using namespace castor::api::testing;

constexpr const char* kIqnPrefix = "iqn.2026-11.io.castor:";
constexpr const char* kSecret = "correct-horse-battery";  // 21 bytes

std::vector<v1::IscsiTargetInfo> list_targets(Engine& e) {
  v1::ListIscsiTargetsResponse resp;
  grpc::Status s = e.stub().ListIscsiTargets(ctx().get(), v1::ListIscsiTargetsRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.targets().begin(), resp.targets().end()};
}

grpc::Status iscsi_export(Engine& e, const std::string& bdev, const std::string& iqn,
                          const std::string& chap_user = "", const std::string& chap_secret = "",
                          v1::IscsiTargetInfo* out = nullptr) {
  v1::IscsiExportRequest req;
  req.set_bdev(bdev);
  req.set_iqn(iqn);
  req.set_chap_user(chap_user);
  req.set_chap_secret(chap_secret);
  v1::IscsiTargetInfo resp;
  return e.stub().IscsiExport(ctx().get(), req, out ? out : &resp);
}

grpc::Status iscsi_unexport(Engine& e, const std::string& iqn) {
  v1::IscsiUnexportRequest req;
  req.set_iqn(iqn);
  v1::IscsiUnexportResponse resp;
  return e.stub().IscsiUnexport(ctx().get(), req, &resp);
}

grpc::Status destroy_bdev(Engine& e, const std::string& name) {
  v1::DestroyBdevRequest req;
  req.set_name(name);
  v1::DestroyBdevResponse resp;
  return e.stub().DestroyBdev(ctx().get(), req, &resp);
}

// iscsi://[USER%SECRET@]127.0.0.1:PORT/IQN/0, libiscsi's URL form.
std::string libiscsi_url(int port, const std::string& iqn, const std::string& user = "",
                         const std::string& secret = "") {
  std::string cred = user.empty() ? "" : user + "%" + secret + "@";
  return "iscsi://" + cred + "127.0.0.1:" + std::to_string(port) + "/" + iqn + "/0";
}

// Runs iscsi-inq (standard INQUIRY of the LUN) with optional extra arguments.
CmdResult inquiry(Engine& e, const std::string& bin, const std::string& url,
                  std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {bin};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  return run_program(argv, e.dir());
}

class IscsiApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // libiscsi takes CHAP credentials from the environment too: only the URL may give them.
    ::unsetenv("LIBISCSI_CHAP_USERNAME");
    ::unsetenv("LIBISCSI_CHAP_PASSWORD");
    ::unsetenv("LIBISCSI_CHAP_TARGET_USERNAME");
    ::unsetenv("LIBISCSI_CHAP_TARGET_PASSWORD");
    inq_ = find_program("iscsi-inq");
    // Never a skip: scripts/setup.sh installs it, so a missing one is a broken machine.
    EXPECT_FALSE(inq_.empty()) << "iscsi-inq is missing (scripts/setup.sh installs libiscsi-bin): "
                                  "logins are not checked";
  }
  std::string inq_;
};

TEST_F(IscsiApiTest, ExportsManagedAndServed) {
  Engine e;
  ASSERT_TRUE(e.start({"--bdev", "malloc:///m0?size_mb=16", "--bdev", "malloc:///m1?size_mb=8",
                       "--bdev", "malloc:///M_2?size_mb=8"}))
      << e.error();
  EXPECT_EQ(e.ready().at("iscsi_port"), 0);
  EXPECT_EQ(ctl_json(e, {"iscsi", "list"}), json::array());

  // A portal added at run time.
  json j = ctl_json(e, {"iscsi", "listen", "127.0.0.1:0"});
  const int port = j.at("port").get<int>();
  ASSERT_GT(port, 0);
  EXPECT_EQ(j.at("address"), "127.0.0.1:0");
  auto r = e.ctl({"iscsi", "listen", "127.0.0.1:0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("iSCSI listening on 127.0.0.1:0 (port ", 0), 0u) << r.out;
  const int port2 = std::stoi(r.out.substr(r.out.find("(port ") + 6));
  v1::IscsiListenRequest lreq;
  lreq.set_address("127.0.0.1:" + std::to_string(port));
  v1::IscsiListenResponse lresp;
  grpc::Status s = e.stub().IscsiListen(ctx().get(), lreq, &lresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  lreq.set_address("no port");
  s = e.stub().IscsiListen(ctx().get(), lreq, &lresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  // Export with the default IQN: one URI per portal.
  const std::string m0_iqn = std::string(kIqnPrefix) + "m0";
  const std::string m0_uri = "iscsi://127.0.0.1:" + std::to_string(port) + "/" + m0_iqn + "/0";
  j = ctl_json(e, {"iscsi", "export", "m0"});
  EXPECT_EQ(j.at("iqn"), m0_iqn);
  EXPECT_EQ(j.at("bdev"), "m0");
  EXPECT_EQ(j.at("read_only"), false);
  EXPECT_EQ(j.at("chap"), false);
  EXPECT_EQ(j.at("mutual_chap"), false);
  EXPECT_EQ(j.at("allowed_initiators"), json::array());
  EXPECT_EQ(j.at("sessions"), 0);
  EXPECT_EQ(j.at("uris"), json::array({m0_uri, "iscsi://127.0.0.1:" + std::to_string(port2) + "/" +
                                                   m0_iqn + "/0"}));
  // A bdev name with upper-case letters and '_' gives a valid IQN.
  j = ctl_json(e, {"iscsi", "export", "M_2", "--ro"});
  EXPECT_EQ(j.at("iqn"), std::string(kIqnPrefix) + "m-2");
  EXPECT_EQ(j.at("read_only"), true);

  auto targets = list_targets(e);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].iqn(), std::string(kIqnPrefix) + "m-2");  // sorted by IQN
  EXPECT_EQ(targets[1].iqn(), m0_iqn);
  EXPECT_EQ(targets[1].bdev(), "m0");
  ASSERT_EQ(targets[1].uris_size(), 2);
  EXPECT_EQ(targets[1].uris(0), m0_uri);
  r = e.ctl({"iscsi", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("IQN ", 0), 0u) << r.out;
  EXPECT_EQ(table_row(r.out, m0_iqn),
            (std::vector<std::string>{m0_iqn, "m0", "rw", "none", "any", "0", m0_uri}));
  EXPECT_EQ(table_row(r.out, std::string(kIqnPrefix) + "m-2").at(2), "ro");

  if (!inq_.empty()) {
    auto q = inquiry(e, inq_, libiscsi_url(port, m0_iqn));
    EXPECT_EQ(q.exit_code, 0) << q.out << q.err << e.log();
    EXPECT_NE(q.out.find("CASTOR"), std::string::npos) << q.out;
    q = inquiry(e, inq_, libiscsi_url(port2, m0_iqn));
    EXPECT_EQ(q.exit_code, 0) << q.out << q.err;
    q = inquiry(e, inq_, libiscsi_url(port, std::string(kIqnPrefix) + "nope"));
    EXPECT_NE(q.exit_code, 0) << q.out;
  }

  // Errors: the same IQN twice, an unknown bdev, a short CHAP secret, a secret without a
  // user, a bad IQN.
  s = iscsi_export(e, "m1", m0_iqn);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  expect_ctl_error(e.ctl({"iscsi", "export", "m1", "--iqn", m0_iqn}), "already exists");
  s = iscsi_export(e, "nope", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  expect_ctl_error(e.ctl({"iscsi", "export", "nope"}), "bdev 'nope' does not exist");
  s = iscsi_export(e, "m1", "", "alice", "short");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  expect_ctl_error(
      e.ctl({"iscsi", "export", "m1", "--chap-user", "alice", "--chap-secret", "elevenbytes"}),
      "shorter than 12 bytes");
  s = iscsi_export(e, "m1", "", "", kSecret);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = iscsi_export(e, "m1", "Not An IQN");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  // CLI usage: a CHAP user needs a secret, mutual CHAP needs CHAP.
  EXPECT_EQ(e.ctl({"iscsi", "export", "m1", "--chap-user", "alice"}).exit_code, 2);
  EXPECT_EQ(
      e.ctl({"iscsi", "export", "m1", "--mutual-user", "t", "--mutual-secret", kSecret}).exit_code,
      2);
  EXPECT_EQ(list_targets(e).size(), 2u);  // the failures created nothing

  // An exported bdev cannot be destroyed.
  s = destroy_bdev(e, "m0");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();

  // CHAP (with mutual CHAP offered): the answer says so but never carries a secret.
  const std::string sec_iqn = std::string(kIqnPrefix) + "secure";
  r = e.ctl({"-o", "json", "iscsi", "export", "m1", "--iqn", sec_iqn, "--chap-user", "alice",
             "--chap-secret", kSecret, "--mutual-user", "target", "--mutual-secret",
             "another-long-secret"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find(kSecret), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("another-long-secret"), std::string::npos) << r.out;
  j = json::parse(r.out);
  EXPECT_EQ(j.at("chap"), true);
  EXPECT_EQ(j.at("mutual_chap"), true);
  r = e.ctl({"iscsi", "list"});
  EXPECT_EQ(table_row(r.out, sec_iqn).at(3), "mutual") << r.out;
  EXPECT_EQ(r.out.find(kSecret), std::string::npos);
  if (!inq_.empty()) {
    const double ok0 = e.metric("castor_iscsi_logins_total{result=\"ok\"}").value_or(-1);
    const double failed0 = e.metric("castor_iscsi_logins_total{result=\"failed\"}").value_or(-1);
    ASSERT_GE(ok0, 0) << "no castor_iscsi_logins_total in /metrics";
    auto q = inquiry(e, inq_, libiscsi_url(port, sec_iqn, "alice", kSecret));
    EXPECT_EQ(q.exit_code, 0) << q.out << q.err << e.log();
    EXPECT_EQ(e.metric("castor_iscsi_logins_total{result=\"ok\"}"), ok0 + 1);
    q = inquiry(e, inq_, libiscsi_url(port, sec_iqn, "alice", "wrong-secret-value"));
    EXPECT_NE(q.exit_code, 0) << q.out;
    q = inquiry(e, inq_, libiscsi_url(port, sec_iqn, "mallory", kSecret));
    EXPECT_NE(q.exit_code, 0) << q.out;
    q = inquiry(e, inq_, libiscsi_url(port, sec_iqn));
    EXPECT_NE(q.exit_code, 0) << q.out;
    // Each refused login is counted (libiscsi may retry one, so at least three).
    EXPECT_GE(e.metric("castor_iscsi_logins_total{result=\"failed\"}").value_or(0), failed0 + 3);
    EXPECT_EQ(e.metric("castor_iscsi_logins_total{result=\"ok\"}"), ok0 + 1);
    EXPECT_EQ(e.metric("castor_iscsi_sessions{target=\"" + sec_iqn + "\"}"), 0.0);
  }
  ASSERT_TRUE(iscsi_unexport(e, sec_iqn).ok());

  // An initiator allow-list.
  const std::string acl_iqn = std::string(kIqnPrefix) + "acl";
  const std::string good = "iqn.2026-11.org.example:good";
  j = ctl_json(e, {"iscsi", "export", "m1", "--iqn", acl_iqn, "--allow-initiator", good});
  EXPECT_EQ(j.at("allowed_initiators"), json::array({good}));
  r = e.ctl({"iscsi", "list"});
  EXPECT_EQ(table_row(r.out, acl_iqn).at(4), good) << r.out;
  if (!inq_.empty()) {
    auto q = inquiry(e, inq_, libiscsi_url(port, acl_iqn), {"-i", good});
    EXPECT_EQ(q.exit_code, 0) << q.out << q.err << e.log();
    q = inquiry(e, inq_, libiscsi_url(port, acl_iqn), {"-i", "iqn.2026-11.org.example:bad"});
    EXPECT_NE(q.exit_code, 0) << q.out;
  }

  // No session outlives iscsi-inq; the listing is empty but well-formed.
  EXPECT_EQ(ctl_json(e, {"iscsi", "sessions"}), json::array());
  r = e.ctl({"iscsi", "sessions"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("TARGET ", 0), 0u) << r.out;

  // A long-lived session (iscsi-perf reads for 30 s) is listed with its target, initiator
  // and peer, and counted by its node.
  pid_t perf = -1;
  const std::string perf_bin = find_program("iscsi-perf");
  EXPECT_FALSE(perf_bin.empty())
      << "iscsi-perf is missing (scripts/setup.sh installs libiscsi-bin)";
  if (!perf_bin.empty()) {
    const std::string initiator = "iqn.2026-11.org.example:perf";
    perf = spawn({perf_bin, "-i", initiator, "-t", "30", libiscsi_url(port, m0_iqn)},
                 e.dir() / "perf.out", e.dir() / "perf.err");
    ASSERT_GT(perf, 0);
    std::vector<v1::IscsiSession> sessions;
    for (auto deadline = std::chrono::steady_clock::now() + 10s;
         sessions.empty() && std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(50ms);
      v1::ListIscsiSessionsResponse sresp;
      ASSERT_TRUE(
          e.stub().ListIscsiSessions(ctx().get(), v1::ListIscsiSessionsRequest(), &sresp).ok());
      sessions.assign(sresp.sessions().begin(), sresp.sessions().end());
    }
    ASSERT_EQ(sessions.size(), 1u) << read_file(e.dir() / "perf.err") << e.log();
    EXPECT_EQ(sessions[0].target(), m0_iqn);
    EXPECT_EQ(sessions[0].initiator(), initiator);
    EXPECT_EQ(sessions[0].isid().size(), 12u) << sessions[0].isid();
    EXPECT_GT(sessions[0].tsih(), 0u);
    EXPECT_EQ(sessions[0].peer().rfind("127.0.0.1:", 0), 0u) << sessions[0].peer();
    r = e.ctl({"iscsi", "sessions"});
    auto row = table_row(r.out, m0_iqn);
    ASSERT_EQ(row.size(), 7u) << r.out;
    EXPECT_EQ(row[1], initiator);
    EXPECT_EQ(row[3], std::to_string(sessions[0].tsih()));
    EXPECT_EQ(row[4], std::to_string(sessions[0].cid()));
    EXPECT_EQ(row[6], "-");
    EXPECT_EQ(table_row(e.ctl({"iscsi", "list"}).out, m0_iqn).at(5), "1");
  }

  // Unexport (castorctl and gRPC): the nodes go with their sessions, the bdevs can be
  // destroyed again.
  r = e.ctl({"iscsi", "unexport", m0_iqn});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "iSCSI target " + m0_iqn + " removed\n");
  EXPECT_EQ(ctl_json(e, {"iscsi", "sessions"}), json::array());
  if (perf > 0) {
    ::kill(perf, SIGKILL);  // it keeps trying to log in again
    ::waitpid(perf, nullptr, 0);
  }
  s = iscsi_unexport(e, m0_iqn);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  expect_ctl_error(e.ctl({"iscsi", "unexport", m0_iqn}), "does not exist");
  EXPECT_EQ(ctl_json(e, {"iscsi", "unexport", acl_iqn}), json({{"unexported", acl_iqn}}));
  if (!inq_.empty()) {
    EXPECT_NE(inquiry(e, inq_, libiscsi_url(port, m0_iqn)).exit_code, 0);
  }
  targets = list_targets(e);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].bdev(), "M_2");
  EXPECT_TRUE(destroy_bdev(e, "m0").ok());
  EXPECT_TRUE(destroy_bdev(e, "m1").ok());

  auto st = e.terminate(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << e.log();
}

TEST_F(IscsiApiTest, ExportsFromStartupFlags) {
  Engine e;
  ASSERT_TRUE(e.start({"--iscsi-listen", "127.0.0.1:0", "--bdev", "malloc:///m0?size_mb=8",
                       "--bdev", "malloc:///m1?size_mb=8", "--iscsi-export", "m0", "--iscsi-export",
                       "iqn.2026-11.org.example:vol=m1:ro"}))
      << e.error();
  const int port = e.ready().at("iscsi_port").get<int>();
  ASSERT_GT(port, 0);
  auto targets = list_targets(e);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].iqn(), std::string(kIqnPrefix) + "m0");
  EXPECT_FALSE(targets[0].read_only());
  ASSERT_EQ(targets[0].uris_size(), 1);
  EXPECT_EQ(targets[0].uris(0), libiscsi_url(port, targets[0].iqn()));
  EXPECT_EQ(targets[1].iqn(), "iqn.2026-11.org.example:vol");
  EXPECT_EQ(targets[1].bdev(), "m1");
  EXPECT_TRUE(targets[1].read_only());
  if (!inq_.empty()) {
    auto q = inquiry(e, inq_, libiscsi_url(port, "iqn.2026-11.org.example:vol"));
    EXPECT_EQ(q.exit_code, 0) << q.out << q.err << e.log();
  }
  auto st = e.terminate(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << e.log();
}

TEST_F(IscsiApiTest, NexusPublishedOverIscsi) {
  Engine e;
  ASSERT_TRUE(e.start({"--nvmf-listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0", "--bdev",
                       "malloc:///m0?size_mb=16", "--bdev", "malloc:///m1?size_mb=16"}))
      << e.error();
  json n = ctl_json(e, {"nexus", "create", "n0", "--child", "bdev:///m0", "--child", "bdev:///m1"});
  ASSERT_TRUE(n.is_object());
  const std::string uuid = n.at("uuid");

  // Publishing over iSCSI needs a portal.
  expect_ctl_error(e.ctl({"nexus", "publish", "n0", "iscsi"}), "no iSCSI listener");
  v1::PublishNexusRequest req;
  req.set_name("n0");
  req.set_protocol("iscsi");
  v1::PublishNexusResponse resp;
  grpc::Status s = e.stub().PublishNexus(ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  const int port = ctl_json(e, {"iscsi", "listen", "127.0.0.1:0"}).at("port").get<int>();

  // The node is named after the nexus UUID, like its NVMe-oF subsystem.
  const std::string iqn = std::string(kIqnPrefix) + "nexus-" + uuid;
  const std::string uri = libiscsi_url(port, iqn);
  auto r = e.ctl({"nexus", "publish", "n0", "iscsi"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, uri + "\n");
  // Again (also spelled --protocol): the same node.
  r = e.ctl({"nexus", "publish", "n0", "--protocol", "iscsi"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, uri + "\n");
  json pub = ctl_json(e, {"nexus", "publish", "n0", "iscsi"});
  EXPECT_EQ(pub.at("protocol"), "iscsi");
  EXPECT_EQ(pub.at("uris"), json::array({uri}));
  n = ctl_json(e, {"nexus", "show", "n0"});
  EXPECT_EQ(n.at("uris"), json::array({uri}));
  auto targets = list_targets(e);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].iqn(), iqn);
  EXPECT_EQ(targets[0].bdev(), "n0");
  if (!inq_.empty()) {
    auto q = inquiry(e, inq_, uri);
    EXPECT_EQ(q.exit_code, 0) << q.out << q.err << e.log();
  }

  // One protocol at a time; a published nexus is not destroyed; other settings conflict.
  expect_ctl_error(e.ctl({"nexus", "publish", "n0"}), "already published over iSCSI as " + iqn);
  expect_ctl_error(e.ctl({"nexus", "publish", "n0", "nbd"}), "already published over iSCSI");
  expect_ctl_error(e.ctl({"nexus", "destroy", "n0"}), "nexus 'n0' is published at " + uri);
  s = e.stub().PublishNexus(ctx().get(), req, &resp);  // same settings: fine
  EXPECT_TRUE(s.ok()) << s.error_message();
  req.set_chap_user("alice");
  req.set_chap_secret(kSecret);
  s = e.stub().PublishNexus(ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  // Fields of another protocol.
  v1::PublishNexusRequest bad;
  bad.set_name("n0");
  bad.set_protocol("iscsi");
  bad.set_nbd_name("x");
  s = e.stub().PublishNexus(ctx().get(), bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  bad.set_protocol("nbd");
  bad.set_iscsi_iqn(iqn);
  s = e.stub().PublishNexus(ctx().get(), bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  r = e.ctl({"nexus", "unpublish", "n0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "nexus 'n0' unpublished\n");
  EXPECT_TRUE(list_targets(e).empty());
  expect_ctl_error(e.ctl({"nexus", "unpublish", "n0"}), "nexus 'n0' is not published");
  n = ctl_json(e, {"nexus", "show", "n0"});
  EXPECT_EQ(n.at("uris"), json::array());

  // With its own IQN and CHAP (castorctl): the right secret logs in, a wrong one does not.
  const std::string vol = "iqn.2026-11.org.example:vol0";
  r = e.ctl({"nexus", "publish", "n0", "iscsi", "--iqn", vol, "--chap-user", "alice",
             "--chap-secret", kSecret});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, libiscsi_url(port, vol) + "\n");
  targets = list_targets(e);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_TRUE(targets[0].chap());
  if (!inq_.empty()) {
    auto q = inquiry(e, inq_, libiscsi_url(port, vol, "alice", kSecret));
    EXPECT_EQ(q.exit_code, 0) << q.out << q.err << e.log();
    q = inquiry(e, inq_, libiscsi_url(port, vol, "alice", "not-the-secret"));
    EXPECT_NE(q.exit_code, 0) << q.out;
  }
  expect_ctl_error(
      e.ctl({"nexus", "publish", "n0", "iscsi", "--chap-user", "alice", "--chap-secret", "short"}),
      "already published over iSCSI");

  // Unpublished, the nexus is destroyed and its children are free.
  v1::UnpublishNexusRequest ureq;
  ureq.set_name("n0");
  v1::UnpublishNexusResponse uresp;
  s = e.stub().UnpublishNexus(ctx().get(), ureq, &uresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  r = e.ctl({"nexus", "destroy", "n0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(destroy_bdev(e, "m0").ok());

  auto st = e.terminate(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << e.log();
}

}  // namespace
}  // namespace castor::api
