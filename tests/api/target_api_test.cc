// End-to-end tests of the front-end targets through the real castor-engine: NBD exports
// (start-up flag, castorctl, gRPC; checked with libnbd's nbdinfo) and NVMe-oF shares of
// bdevs and pool replicas (NQN names, URIs, listeners, claims, errors, a connected host
// seen through ListControllers).

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <array>
#include <map>

#include "engine_process.h"
#include "nvmf/codec/pdu.h"

namespace castor::api {
namespace {

using namespace castor::api::testing;

constexpr const char* kNqnPrefix = "nqn.2026-11.io.castor:";

// True if a plain TCP connect to 127.0.0.1:port succeeds.
bool tcp_connects(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

// A minimal NVMe/TCP host written against the codec: ICReq, then a Fabrics Connect of
// the admin queue. Enough to make the engine create a controller.
class MiniHost {
 public:
  explicit MiniHost(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~MiniHost() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The Connect completion's status (0: connected), or -1 on a transport failure.
  int connect_admin(const std::string& subnqn, const std::string& hostnqn) {
    uint8_t b[132];
    if (!send_all(b, nvmf::build_icreq(b, false, false, 0))) return -1;
    std::vector<uint8_t> pdu;
    if (!recv_pdu(&pdu) || pdu[0] != static_cast<uint8_t>(nvmf::PduType::kICResp)) return -1;

    nvmf::ConnectCmd c{};
    c.opcode = nvmf::admin_op::kFabrics;
    c.fctype = nvmf::fctype::kConnect;
    c.cid = 1;
    c.qid = 0;
    c.sqsize = 31;
    c.kato = 30000;
    nvmf::ConnectData d{};
    d.cntlid = 0xffff;
    std::strncpy(d.subnqn, subnqn.c_str(), sizeof(d.subnqn) - 1);
    std::strncpy(d.hostnqn, hostnqn.c_str(), sizeof(d.hostnqn) - 1);
    nvmf::Sqe sqe;
    std::memcpy(&sqe, &c, sizeof(sqe));
    sqe.flags = 0x40;  // SGL
    sqe.sgl1.type = nvmf::kSglDataBlockOffset;
    sqe.sgl1.length = sizeof(d);
    uint8_t h[80];
    size_t n = nvmf::build_capsule_cmd(h, sqe, sizeof(d), false, false);
    if (!send_all(h, n) || !send_all(&d, sizeof(d))) return -1;
    if (!recv_pdu(&pdu) || pdu[0] != static_cast<uint8_t>(nvmf::PduType::kCapsuleResp) ||
        pdu.size() < sizeof(nvmf::CapsuleRespHeader)) {
      return -1;
    }
    nvmf::CapsuleRespHeader resp;
    std::memcpy(&resp, pdu.data(), sizeof(resp));
    return resp.cqe.status;
  }
  // True once the target has closed the connection (a read sees end of file).
  bool peer_closed() {
    uint8_t c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  bool send_all(const void* p, size_t n) {
    return ::send(fd_, p, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
  }
  bool read_exact(uint8_t* p, size_t n) {
    for (size_t got = 0; got < n;) {
      ssize_t r = ::recv(fd_, p + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  // One whole PDU (common header's plen bytes).
  bool recv_pdu(std::vector<uint8_t>* out) {
    out->resize(8);
    if (!read_exact(out->data(), 8)) return false;
    uint32_t plen = 0;
    std::memcpy(&plen, out->data() + 4, 4);
    if (plen < 8 || plen > (1u << 20)) return false;
    out->resize(plen);
    return read_exact(out->data() + 8, plen - 8);
  }

  int fd_ = -1;
};

std::vector<v1::NvmfController> list_controllers(Engine& e) {
  v1::ListControllersResponse resp;
  grpc::Status s = e.stub().ListControllers(ctx().get(), v1::ListControllersRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.controllers().begin(), resp.controllers().end()};
}

std::string bdev_uuid(Engine& e, const std::string& name) {
  v1::ListBdevsResponse resp;
  EXPECT_TRUE(e.stub().ListBdevs(ctx().get(), v1::ListBdevsRequest(), &resp).ok());
  for (const auto& b : resp.bdevs()) {
    if (b.name() == name) return b.uuid();
  }
  return "";
}

std::vector<v1::NvmfSubsystem> list_subsystems(Engine& e) {
  v1::ListSubsystemsResponse resp;
  grpc::Status s = e.stub().ListSubsystems(ctx().get(), v1::ListSubsystemsRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.subsystems().begin(), resp.subsystems().end()};
}

std::vector<v1::NbdExportInfo> list_exports(Engine& e) {
  v1::ListNbdExportsResponse resp;
  grpc::Status s = e.stub().ListNbdExports(ctx().get(), v1::ListNbdExportsRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.exports().begin(), resp.exports().end()};
}

grpc::Status nbd_export(Engine& e, const std::string& name, const std::string& bdev,
                        bool read_only = false) {
  v1::NbdExportRequest req;
  req.set_name(name);
  req.set_bdev(bdev);
  req.set_read_only(read_only);
  v1::NbdExportInfo resp;
  return e.stub().NbdExport(ctx().get(), req, &resp);
}

grpc::Status destroy_bdev(Engine& e, const std::string& name) {
  v1::DestroyBdevRequest req;
  req.set_name(name);
  v1::DestroyBdevResponse resp;
  return e.stub().DestroyBdev(ctx().get(), req, &resp);
}

// `nbdinfo --json URI` parsed (the first export), or null when it fails.
json nbdinfo(Engine& e, const std::string& nbdinfo_bin, const std::string& uri) {
  auto r = run_program({nbdinfo_bin, "--json", uri}, e.dir());
  if (r.exit_code != 0) return json();
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.contains("exports") || j["exports"].empty()) return json();
  return j["exports"][0];
}

// `nbdinfo --map --json URI`: the export's extents as (offset, length, type) with type
// the base:allocation flags (1 hole, 2 zero); empty when it fails.
std::vector<std::array<uint64_t, 3>> nbd_map(Engine& e, const std::string& nbdinfo_bin,
                                             const std::string& uri) {
  auto r = run_program({nbdinfo_bin, "--map", "--json", uri}, e.dir());
  std::vector<std::array<uint64_t, 3>> out;
  if (r.exit_code != 0) return out;
  json j = json::parse(r.out, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& x : j) {
    out.push_back({x.at("offset").get<uint64_t>(), x.at("length").get<uint64_t>(),
                   x.at("type").get<uint64_t>()});
  }
  return out;
}

TEST(NbdTargetTest, ExportsServedToNbdinfoAndManaged) {
  Engine e;
  ASSERT_TRUE(e.start({"--nbd-listen", "127.0.0.1:0", "--bdev",
                       "malloc:///m0?size_mb=64&blk_size=512", "--bdev", "malloc:///m1?size_mb=16",
                       "--bdev", "malloc:///pd?size_mb=64", "--nbd-export", "disk=m0"}))
      << e.error();
  const int port = e.ready().at("nbd_port").get<int>();
  ASSERT_GT(port, 0);
  EXPECT_EQ(e.ready().at("nvmf_ports"), json::array());

  // The start-up export, through gRPC and castorctl.
  auto exports = list_exports(e);
  ASSERT_EQ(exports.size(), 1u);
  EXPECT_EQ(exports[0].name(), "disk");
  EXPECT_EQ(exports[0].bdev(), "m0");
  EXPECT_FALSE(exports[0].read_only());
  ASSERT_EQ(exports[0].uris_size(), 1);
  EXPECT_EQ(exports[0].uris(0), "nbd://127.0.0.1:" + std::to_string(port) + "/disk");
  auto r = e.ctl({"nbd", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(table_row(r.out, "disk"),
            (std::vector<std::string>{"disk", "m0", "rw", "0",
                                      "nbd://127.0.0.1:" + std::to_string(port) + "/disk"}));

  const std::string bin = find_program("nbdinfo");
  // Never a skip: scripts/setup.sh installs it, so a missing one is a broken machine.
  EXPECT_FALSE(bin.empty()) << "nbdinfo is missing (scripts/setup.sh installs libnbd-bin): "
                               "the NBD data path is not checked";
  const std::string base = "nbd://127.0.0.1:" + std::to_string(port) + "/";
  if (!bin.empty()) {
    json info = nbdinfo(e, bin, base + "disk");
    ASSERT_FALSE(info.is_null()) << e.log();
    EXPECT_EQ(info.at("export-size").get<uint64_t>(), 67108864u);
    EXPECT_TRUE(info.at("can_flush").get<bool>());
    EXPECT_FALSE(info.at("is_read_only").get<bool>());
    // Prometheus: nbdinfo's connection was accepted, and is gone.
    EXPECT_GE(e.metric("castor_nbd_connections_accepted_total").value_or(0), 1.0);
    EXPECT_EQ(e.metric("castor_nbd_connections{export=\"disk\"}"), 0.0);
    EXPECT_EQ(e.metric("castor_nbd_protocol_errors_total"), 0.0);
  }

  // A read-only export made with castorctl.
  r = e.ctl({"-o", "json", "nbd", "export", "ro", "m1", "--ro", "--description", "small disk"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j.at("name"), "ro");
  EXPECT_EQ(j.at("bdev"), "m1");
  EXPECT_EQ(j.at("read_only"), true);
  EXPECT_EQ(j.at("description"), "small disk");
  if (!bin.empty()) {
    json info = nbdinfo(e, bin, base + "ro");
    ASSERT_FALSE(info.is_null());
    EXPECT_EQ(info.at("export-size").get<uint64_t>(), 16u << 20);
    EXPECT_TRUE(info.at("is_read_only").get<bool>());
  }
  r = e.ctl({"-o", "json", "nbd", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0].at("name"), "disk");
  EXPECT_EQ(j[1].at("name"), "ro");

  // Errors: unknown bdev, duplicate name, unknown export.
  grpc::Status s = nbd_export(e, "x", "nope");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  s = nbd_export(e, "disk", "m1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  expect_ctl_error(e.ctl({"nbd", "export", "x", "nope"}), "bdev 'nope' does not exist");
  expect_ctl_error(e.ctl({"nbd", "export", "disk", "m1"}), "'disk' already exists");
  expect_ctl_error(e.ctl({"nbd", "unexport", "nope"}), "'nope' does not exist");
  // An exported bdev cannot be destroyed (the export holds it open).
  s = destroy_bdev(e, "m1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();

  // Unexport through castorctl and gRPC: the exports go, the bdev is free again.
  r = e.ctl({"nbd", "unexport", "ro"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "NBD export 'ro' removed\n");
  v1::NbdUnexportRequest ureq;
  ureq.set_name("disk");
  v1::NbdUnexportResponse uresp;
  s = e.stub().NbdUnexport(ctx().get(), ureq, &uresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = e.stub().NbdUnexport(ctx().get(), ureq, &uresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(list_exports(e).empty());
  if (!bin.empty()) {
    EXPECT_TRUE(nbdinfo(e, bin, base + "disk").is_null());
  }
  EXPECT_TRUE(destroy_bdev(e, "m1").ok());

  // A replica exported over NBD: its pool can be neither exported nor destroyed, nor the
  // replica itself, until the export goes.
  r = e.ctl({"pool", "create", "p0", "--disk", "bdev:///pd", "--cluster-size", "1MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = e.ctl({"replica", "create", "p0", "r0", "--size", "8MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(nbd_export(e, "vol", "r0").ok());
  if (!bin.empty()) {
    json info = nbdinfo(e, bin, base + "vol");
    ASSERT_FALSE(info.is_null());
    EXPECT_EQ(info.at("export-size").get<uint64_t>(), 8u << 20);
  }
  expect_ctl_error(e.ctl({"replica", "destroy", "r0"}), "exported over NBD as 'vol'");
  expect_ctl_error(e.ctl({"pool", "export", "p0"}), "exported over NBD as 'vol'");
  v1::DestroyPoolRequest dpreq;
  dpreq.set_name("p0");
  v1::DestroyPoolResponse dpresp;
  s = e.stub().DestroyPool(ctx().get(), dpreq, &dpresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  r = e.ctl({"nbd", "unexport", "vol"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A thin replica's allocation, as nbdinfo --map reads it (NBD BLOCK_STATUS with the
  // base:allocation context): clusters (1 MiB) never written are holes that read as
  // zeroes, the two written to are data.
  r = e.ctl({"replica", "create", "p0", "t0", "--size", "8MiB", "--thin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(write_blocks(e.stub(), "t0", (2 << 20) + 4096, std::string(4096, 'x')).ok());
  ASSERT_TRUE(write_blocks(e.stub(), "t0", 7 << 20, std::string(8192, 'y')).ok());
  ASSERT_TRUE(nbd_export(e, "thin", "t0").ok());
  if (!bin.empty()) {
    using Extents = std::vector<std::array<uint64_t, 3>>;
    EXPECT_EQ(nbd_map(e, bin, base + "thin"), (Extents{{0, 2 << 20, 3},
                                                        {2 << 20, 1 << 20, 0},
                                                        {3 << 20, 4 << 20, 3},
                                                        {7 << 20, 1 << 20, 0}}))
        << e.log();
  }
  r = e.ctl({"nbd", "unexport", "thin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  s = e.stub().DestroyPool(ctx().get(), dpreq, &dpresp);
  EXPECT_TRUE(s.ok()) << s.error_message();

  // A second listener added at run time serves the same exports.
  r = e.ctl({"-o", "json", "nbd", "listen", "127.0.0.1:0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int port2 = json::parse(r.out).at("port").get<int>();
  ASSERT_GT(port2, 0);
  ASSERT_NE(port2, port);
  ASSERT_TRUE(nbd_export(e, "disk", "m0").ok());
  exports = list_exports(e);
  ASSERT_EQ(exports.size(), 1u);
  EXPECT_EQ(exports[0].uris_size(), 2);
  if (!bin.empty()) {
    json info = nbdinfo(e, bin, "nbd://127.0.0.1:" + std::to_string(port2) + "/disk");
    ASSERT_FALSE(info.is_null());
    EXPECT_EQ(info.at("export-size").get<uint64_t>(), 67108864u);
  }
  // The address is taken now.
  v1::NbdListenRequest lreq;
  lreq.set_address("127.0.0.1:" + std::to_string(port2));
  v1::NbdListenResponse lresp;
  s = e.stub().NbdListen(ctx().get(), lreq, &lresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  lreq.set_address("bad address");
  s = e.stub().NbdListen(ctx().get(), lreq, &lresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  auto st = e.terminate(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << e.log();
}

TEST(NvmfTargetTest, SharesBdevsAndReplicas) {
  Engine e;
  ASSERT_TRUE(e.start({"--nvmf-listen", "127.0.0.1:0", "--bdev", "malloc:///m0?size_mb=16",
                       "--bdev", "malloc:///pd?size_mb=64"}))
      << e.error();
  ASSERT_EQ(e.ready().at("nvmf_ports").size(), 1u);
  const int port = e.ready().at("nvmf_ports")[0].get<int>();
  ASSERT_GT(port, 0);
  EXPECT_EQ(e.ready().at("nbd_port"), 0);
  const std::string authority = "127.0.0.1:" + std::to_string(port);

  // The listener accepts TCP connections.
  EXPECT_TRUE(tcp_connects(port));

  // Share a malloc bdev with castorctl: its own subsystem, named after the bdev's UUID.
  const std::string m0_nqn = std::string(kNqnPrefix) + "bdev-" + bdev_uuid(e, "m0");
  auto r = e.ctl({"-o", "json", "nvmf", "share", "m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j.at("nqn"), m0_nqn);
  EXPECT_EQ(j.at("bdev"), "m0");
  EXPECT_EQ(j.at("uris"), json::array({"nvmf://" + authority + "/" + m0_nqn}));
  EXPECT_EQ(j.at("allowed_hosts"), json::array());
  // Sharing again with the same hosts returns the same share; other hosts conflict.
  r = e.ctl({"-o", "json", "nvmf", "share", "m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out).at("nqn"), m0_nqn);
  expect_ctl_error(e.ctl({"nvmf", "share", "m0", "--allow-host", "nqn.2014-08.org.test:h1"}),
                   "already shared");

  // A pool replica shares as replica-<replica uuid>, with its local URI last.
  r = e.ctl({"pool", "create", "p0", "--disk", "bdev:///pd", "--cluster-size", "1MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = e.ctl({"-o", "json", "replica", "create", "p0", "r0", "--size", "8MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string r0_uuid = json::parse(r.out).at("uuid").get<std::string>();
  const std::string r0_nqn = std::string(kNqnPrefix) + "replica-" + r0_uuid;
  const std::string host = "nqn.2014-08.org.nvmexpress:uuid:0c2a3f1e-6f4e-4a57-9d7c-3b1e2f0a9b8c";
  r = e.ctl({"-o", "json", "replica", "share", "r0", "--allow-host", host});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j.at("nqn"), r0_nqn);
  EXPECT_EQ(j.at("uris"), json::array({"nvmf://" + authority + "/" + r0_nqn, "bdev:///r0"}));
  EXPECT_EQ(j.at("allowed_hosts"), json::array({host}));

  // ListSubsystems shows both, with their namespaces and URIs.
  auto subs = list_subsystems(e);
  ASSERT_EQ(subs.size(), 2u);
  std::map<std::string, v1::NvmfSubsystem> by_nqn;
  for (const auto& s : subs) by_nqn[s.nqn()] = s;
  ASSERT_TRUE(by_nqn.count(m0_nqn));
  ASSERT_TRUE(by_nqn.count(r0_nqn));
  ASSERT_EQ(by_nqn[m0_nqn].namespaces_size(), 1);
  EXPECT_EQ(by_nqn[m0_nqn].namespaces(0).nsid(), 1u);
  EXPECT_EQ(by_nqn[m0_nqn].namespaces(0).bdev(), "m0");
  EXPECT_EQ(by_nqn[r0_nqn].namespaces(0).bdev(), "r0");
  EXPECT_EQ(by_nqn[r0_nqn].allowed_hosts_size(), 1);
  EXPECT_EQ(by_nqn[m0_nqn].controllers(), 0u);
  EXPECT_FALSE(by_nqn[m0_nqn].serial().empty());
  ASSERT_EQ(by_nqn[r0_nqn].uris_size(), 1);
  EXPECT_NE(by_nqn[r0_nqn].uris(0).find(":" + std::to_string(port) + "/"), std::string::npos);
  r = e.ctl({"nvmf", "subsystems"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto row = table_row(r.out, m0_nqn);
  ASSERT_EQ(row.size(), 5u) << r.out;
  EXPECT_EQ(row[2], "1:m0");
  EXPECT_EQ(row[3], "any");
  r = e.ctl({"-o", "json", "nvmf", "controllers"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::array());

  // Shared bdevs are claimed: neither the bdev nor the replica can be destroyed, and
  // NBD cannot export them.
  grpc::Status s = destroy_bdev(e, "m0");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  expect_ctl_error(e.ctl({"bdev", "destroy", "m0"}), "exported over NVMe-oF as '" + m0_nqn + "'");
  v1::DestroyReplicaRequest dreq;
  dreq.set_name("r0");
  v1::DestroyReplicaResponse dresp;
  s = e.stub().DestroyReplica(ctx().get(), dreq, &dresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  s = nbd_export(e, "x", "m0");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  v1::ExportPoolRequest ereq;
  ereq.set_name("p0");
  v1::ExportPoolResponse eresp;
  s = e.stub().ExportPool(ctx().get(), ereq, &eresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();

  // Unknown bdevs and bad hosts.
  r = e.ctl({"nvmf", "share", "nope"});
  expect_ctl_error(r, "bdev 'nope' does not exist");
  v1::ShareBdevRequest sreq;
  sreq.set_bdev("nope");
  v1::ShareInfo sresp;
  s = e.stub().ShareBdev(ctx().get(), sreq, &sresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message().find('\n'), std::string::npos);
  sreq.set_bdev("pd");  // the pool's disk: claimed by the pool
  s = e.stub().ShareBdev(ctx().get(), sreq, &sresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  sreq.set_bdev("m0");
  sreq.add_allowed_hosts("not-an-nqn");
  s = e.stub().ShareBdev(ctx().get(), sreq, &sresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  expect_ctl_error(e.ctl({"replica", "share", "nope"}), "replica 'nope' does not exist");

  // A host connects to the replica's subsystem: ListControllers and ListSubsystems show
  // it, and the share cannot be removed while it is connected. Another host is refused.
  {
    MiniHost other(port);
    EXPECT_NE(other.connect_admin(r0_nqn, "nqn.2014-08.org.test:intruder"), 0);
    MiniHost h(port);
    ASSERT_EQ(h.connect_admin(r0_nqn, host), 0);
    auto ctrls = list_controllers(e);
    ASSERT_EQ(ctrls.size(), 1u);
    EXPECT_EQ(ctrls[0].subnqn(), r0_nqn);
    EXPECT_EQ(ctrls[0].hostnqn(), host);
    EXPECT_EQ(ctrls[0].kato_ms(), 30000u);
    EXPECT_EQ(ctrls[0].io_queues(), 0u);
    EXPECT_GT(ctrls[0].cntlid(), 0u);
    r = e.ctl({"nvmf", "controllers"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    row = table_row(r.out, std::to_string(ctrls[0].cntlid()));
    ASSERT_EQ(row.size(), 5u) << r.out;
    EXPECT_EQ(row[1], r0_nqn);
    for (const auto& sub : list_subsystems(e)) {
      EXPECT_EQ(sub.controllers(), sub.nqn() == r0_nqn ? 1u : 0u) << sub.nqn();
      EXPECT_EQ(e.metric("castor_nvmf_controllers{subsystem=\"" + sub.nqn() + "\"}"),
                sub.nqn() == r0_nqn ? 1.0 : 0.0)
          << sub.nqn();
    }
    expect_ctl_error(e.ctl({"replica", "unshare", "r0"}), "connected");
    h.close();
    // The controller goes once its admin queue is closed.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!list_controllers(e).empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(list_controllers(e).empty());
    EXPECT_EQ(e.metric("castor_nvmf_controllers{subsystem=\"" + r0_nqn + "\"}"), 0.0);
  }

  // A second listener: new shares list both URIs.
  r = e.ctl({"-o", "json", "nvmf", "listen", "127.0.0.1:0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int port2 = json::parse(r.out).at("port").get<int>();
  EXPECT_TRUE(tcp_connects(port2));
  by_nqn.clear();
  for (const auto& sub : list_subsystems(e)) by_nqn[sub.nqn()] = sub;
  EXPECT_EQ(by_nqn[m0_nqn].uris_size(), 2);

  // Unshare by bdev name (castorctl) and by NQN (gRPC); the subsystems go and the bdevs
  // are free again.
  r = e.ctl({"nvmf", "unshare", "m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v1::UnshareBdevRequest ureq;
  ureq.set_bdev(r0_nqn);
  v1::UnshareBdevResponse uresp;
  s = e.stub().UnshareBdev(ctx().get(), ureq, &uresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(list_subsystems(e).empty());
  expect_ctl_error(e.ctl({"nvmf", "unshare", "m0"}), "bdev 'm0' is not exported over NVMe-oF");
  s = e.stub().UnshareBdev(ctx().get(), ureq, &uresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  // replica share / unshare by UUID; with a host connected, only --force unshares, and
  // it disconnects the host.
  r = e.ctl({"replica", "share", r0_uuid});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  {
    MiniHost h(port);
    ASSERT_EQ(h.connect_admin(r0_nqn, host), 0);
    expect_ctl_error(e.ctl({"replica", "unshare", r0_uuid}), "connected");
    r = e.ctl({"replica", "unshare", "--force", r0_uuid});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(h.peer_closed()) << "the host was disconnected";
    EXPECT_TRUE(list_controllers(e).empty());
  }
  EXPECT_TRUE(list_subsystems(e).empty());
  EXPECT_TRUE(destroy_bdev(e, "m0").ok());
  s = e.stub().DestroyReplica(ctx().get(), dreq, &dresp);
  EXPECT_TRUE(s.ok()) << s.error_message();

  auto st = e.terminate(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << e.log();
}

TEST(TargetStartupTest, SharesAndExportsFromFlags) {
  Engine e;
  ASSERT_TRUE(
      e.start({"--nvmf-listen", "127.0.0.1:0", "--nvmf-listen", "127.0.0.1:0", "--nbd-listen",
               "127.0.0.1:0", "--bdev", "malloc:///m0?size_mb=8", "--bdev",
               "malloc:///m1?size_mb=8", "--nvmf-share", "m0", "--nbd-export", "disk=m1:ro"}))
      << e.error();
  ASSERT_EQ(e.ready().at("nvmf_ports").size(), 2u);
  EXPECT_GT(e.ready().at("nbd_port").get<int>(), 0);
  auto subs = list_subsystems(e);
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].nqn(), std::string(kNqnPrefix) + "bdev-" + bdev_uuid(e, "m0"));
  EXPECT_EQ(subs[0].uris_size(), 2);
  EXPECT_EQ(subs[0].allowed_hosts_size(), 0);
  auto exports = list_exports(e);
  ASSERT_EQ(exports.size(), 1u);
  EXPECT_TRUE(exports[0].read_only());
  auto st = e.terminate(10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << e.log();

  // A share or export of a missing bdev is a start-up failure with one line.
  for (auto args : std::vector<std::vector<std::string>>{
           {"--nvmf-share", "nope"}, {"--nbd-listen", "127.0.0.1:0", "--nbd-export", "d=nope"}}) {
    Engine bad;
    EXPECT_FALSE(bad.start(args));
    std::vector<std::string> errors;
    for (const auto& l : lines_of(bad.log())) {
      if (l.rfind("castor-engine: error: ", 0) == 0) errors.push_back(l);
    }
    ASSERT_EQ(errors.size(), 1u) << bad.log();
    EXPECT_NE(errors[0].find("'nope'"), std::string::npos) << errors[0];
  }
}

// Every front end through the protocol-neutral calls (ListFrontEnds, FrontEndListen,
// ExportBdev, UnexportBdev, ListExports) and `castorctl frontend`: the same operations
// for each protocol, by name, with the rules across protocols (one protocol per bdev,
// settings a protocol lacks refused) and each protocol's default name.
TEST(FrontEndApiTest, EveryProtocolByName) {
  Engine e;
  ASSERT_TRUE(e.start({"--bdev", "malloc:///m0?size_mb=8", "--bdev", "malloc:///m1?size_mb=8",
                       "--bdev", "malloc:///m2?size_mb=8"}))
      << e.error();
  json fes = ctl_json(e, {"frontend", "list"});
  ASSERT_EQ(fes.size(), 3u);
  EXPECT_EQ(fes[0].at("protocol"), "nvmf");
  EXPECT_EQ(fes[1].at("protocol"), "nbd");
  EXPECT_EQ(fes[2].at("protocol"), "iscsi");
  EXPECT_EQ(fes[2].at("display_name"), "iSCSI");
  EXPECT_EQ(fes[0].at("listeners"), json::array());

  std::map<std::string, int> port;
  for (const char* p : {"nvmf", "nbd", "iscsi"}) {
    json l = ctl_json(e, {"frontend", "listen", p, "127.0.0.1:0"});
    port[p] = l.at("port").get<int>();
    ASSERT_GT(port[p], 0) << p;
    EXPECT_TRUE(tcp_connects(port[p])) << p;
  }
  expect_ctl_error(e.ctl({"frontend", "listen", "scsi", "127.0.0.1:0"}), "unknown protocol 'scsi'");
  expect_ctl_error(e.ctl({"frontend", "listen", "nbd", "127.0.0.1:" + std::to_string(port["nbd"])}),
                   "");

  // Default names: the NQN by the bdev's UUID, the NBD name is the bdev's, the IQN its
  // lower-cased name.
  json x = ctl_json(e, {"frontend", "export", "nvmf", "m0"});
  const std::string m0_nqn = std::string(kNqnPrefix) + "bdev-" + bdev_uuid(e, "m0");
  EXPECT_EQ(x.at("name"), m0_nqn);
  EXPECT_EQ(x.at("uris"), json::array({"nvmf://127.0.0.1:" + std::to_string(port["nvmf"]) + "/" + m0_nqn}));
  x = ctl_json(e, {"frontend", "export", "nbd", "m1", "--ro", "--description", "d1"});
  EXPECT_EQ(x.at("name"), "m1");
  EXPECT_EQ(x.at("read_only"), true);
  EXPECT_EQ(x.at("uris"), json::array({"nbd://127.0.0.1:" + std::to_string(port["nbd"]) + "/m1"}));
  x = ctl_json(e, {"frontend", "export", "iscsi", "m2", "--allow-host", "iqn.2026-01.org.test:i1"});
  EXPECT_EQ(x.at("name"), "iqn.2026-11.io.castor:m2");
  EXPECT_EQ(x.at("allowed_hosts"), json::array({"iqn.2026-01.org.test:i1"}));
  // The same export again is the same export; other settings under its name are not.
  x = ctl_json(e, {"frontend", "export", "iscsi", "m2", "--allow-host", "iqn.2026-01.org.test:i1"});
  EXPECT_EQ(x.at("name"), "iqn.2026-11.io.castor:m2");
  expect_ctl_error(e.ctl({"frontend", "export", "iscsi", "m2"}), "with other settings");

  // One protocol per bdev; settings a protocol does not have.
  expect_ctl_error(e.ctl({"frontend", "export", "nbd", "m0"}),
                   "bdev 'm0' is exported over NVMe-oF as '" + m0_nqn + "'");
  expect_ctl_error(e.ctl({"frontend", "export", "iscsi", "m1"}), "exported over NBD as 'm1'");
  {
    v1::ExportBdevRequest req;
    req.set_protocol("nbd");
    req.set_bdev("m1");
    req.set_name("other");
    req.add_allowed_hosts("nqn.2014-08.org.test:h1");
    v1::ExportInfo resp;
    grpc::Status s = e.stub().ExportBdev(ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    req.clear_allowed_hosts();
    req.set_protocol("nvmf");
    req.set_bdev("m0");
    req.clear_name();
    req.set_chap_user("alice");
    req.set_chap_secret("0123456789ab");
    s = e.stub().ExportBdev(ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    req.set_protocol("scsi");
    s = e.stub().ExportBdev(ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }

  // Listed together, by protocol then name; and by protocol.
  json all = ctl_json(e, {"frontend", "exports"});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].at("protocol"), "nvmf");
  EXPECT_EQ(all[1].at("protocol"), "nbd");
  EXPECT_EQ(all[1].at("description"), "d1");
  EXPECT_EQ(all[2].at("protocol"), "iscsi");
  EXPECT_EQ(ctl_json(e, {"frontend", "exports", "nbd"}).size(), 1u);
  // The per-protocol calls see the same exports.
  EXPECT_EQ(list_subsystems(e).size(), 1u);
  EXPECT_EQ(list_exports(e).size(), 1u);
  expect_ctl_error(e.ctl({"frontend", "exports", "scsi"}), "unknown protocol 'scsi'");

  // Removed by name or by bdev; a destroy names the export that holds the bdev.
  expect_ctl_error(e.ctl({"bdev", "destroy", "m2"}), "exported over iSCSI as 'iqn.2026-11.io.castor:m2'");
  auto r = e.ctl({"frontend", "unexport", "nvmf", "m0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = e.ctl({"frontend", "unexport", "nbd", "m1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = e.ctl({"frontend", "unexport", "iscsi", "iqn.2026-11.io.castor:m2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  expect_ctl_error(e.ctl({"frontend", "unexport", "nbd", "m1"}), "bdev 'm1' is not exported over NBD");
  expect_ctl_error(e.ctl({"frontend", "unexport", "nbd", "nope"}), "NBD export 'nope' does not exist");
  EXPECT_EQ(ctl_json(e, {"frontend", "exports"}), json::array());
  EXPECT_TRUE(e.ctl({"bdev", "destroy", "m2"}).exit_code == 0);
}

}  // namespace
}  // namespace castor::api
