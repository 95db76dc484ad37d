// End-to-end tests of nexuses through the real castor-engine (castorctl and gRPC):
// create/show/list, fault a child, add one and follow its rebuild with `rebuild watch`,
// compare the children block for block, publish over NVMe-oF and NBD (nbdinfo checks
// the size), metrics, destroy; the health record in --state-dir surviving a restart
// (the faulted child is not trusted by a re-created nexus); and the error cases.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <random>

#include "engine_process.h"

namespace castor::api {
namespace {

using namespace castor::api::testing;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kSize = 16 * kMiB;  // every malloc child
constexpr uint64_t kChunk = 2 * kMiB;  // under gRPC's 4 MiB message limit

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng());
  return s;
}

// The whole bdev (kSize bytes), or empty on error.
std::string read_all(Engine& e, const std::string& bdev) {
  std::string out;
  for (uint64_t off = 0; off < kSize; off += kChunk) {
    v1::ReadBlocksRequest req;
    req.set_bdev(bdev);
    req.set_offset_bytes(off);
    req.set_length(kChunk);
    v1::ReadBlocksResponse resp;
    grpc::Status s = e.stub().ReadBlocks(ctx(30s).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << bdev << ": " << s.error_message();
    if (!s.ok()) return "";
    out += resp.data();
  }
  return out;
}

json child_of(const json& nexus, const std::string& uri) {
  for (const auto& c : nexus.at("children")) {
    if (c.at("uri") == uri) return c;
  }
  ADD_FAILURE() << "no child " << uri << " in " << nexus.dump();
  return json::object({{"state", "missing"}, {"fault_reason", "missing"}});
}

std::vector<std::string> malloc_flags(std::initializer_list<const char*> names) {
  std::vector<std::string> out;
  for (const char* n : names) {
    out.insert(out.end(), {"--bdev", std::string("malloc:///") + n + "?size_mb=16"});
  }
  return out;
}

TEST(NexusApiTest, LifecycleRebuildPublishAndRestart) {
  Engine e;
  auto flags = malloc_flags({"m0", "m1", "m2"});
  flags.insert(flags.end(), {"--nvmf-listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0"});
  ASSERT_TRUE(e.start(flags)) << e.error();
  const int nvmf_port = e.ready().at("nvmf_ports").at(0).get<int>();
  const int nbd_port = e.ready().at("nbd_port").get<int>();

  // Create: two healthy children, the size of the smallest. The rebuild throttle
  // (8 MiB/s) makes the 16 MiB rebuild below last ~2 s, long enough to watch.
  json n = ctl_json(e, {"nexus", "create", "n0", "--child", "bdev:///m0", "--child", "bdev:///m1",
                        "--opt", "rate_mb_s=8"});
  ASSERT_TRUE(n.is_object());
  EXPECT_EQ(n.at("name"), "n0");
  EXPECT_EQ(n.at("state"), "online");
  EXPECT_EQ(n.at("size_bytes"), kSize);
  EXPECT_EQ(n.at("block_size"), 4096);
  ASSERT_EQ(n.at("children").size(), 2u);
  EXPECT_EQ(child_of(n, "bdev:///m0").at("state"), "healthy");
  EXPECT_EQ(child_of(n, "bdev:///m1").at("state"), "healthy");
  const std::string uuid = n.at("uuid");

  auto list = e.ctl({"nexus", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto row = table_row(list.out, "n0");
  ASSERT_GE(row.size(), 3u) << list.out;
  EXPECT_EQ(row[1], "online");
  auto show = e.ctl({"nexus", "show", "n0"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ(table_row(show.out, "n0").at(1), "online") << show.out;
  EXPECT_EQ(table_row(show.out, "bdev:///m1").at(2), "healthy") << show.out;
  EXPECT_NE(show.out.find("CHILD"), std::string::npos) << show.out;

  // Data through the nexus reaches both children.
  const std::string data = random_bytes(kSize, 1);
  for (uint64_t off = 0; off < kSize; off += kChunk) {
    grpc::Status s = write_blocks(e.stub(), "n0", off, data.substr(off, kChunk));
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // Fault m1: degraded; then overwrite the first chunk, which m1 misses.
  n = ctl_json(e, {"nexus", "fault-child", "n0", "bdev:///m1"});
  EXPECT_EQ(n.at("state"), "degraded");
  EXPECT_EQ(child_of(n, "bdev:///m1").at("state"), "faulted");
  EXPECT_EQ(child_of(n, "bdev:///m1").at("fault_reason"), "by_request");
  std::string data2 = data;
  const std::string first = random_bytes(kChunk, 2);
  data2.replace(0, kChunk, first);
  ASSERT_TRUE(write_blocks(e.stub(), "n0", 0, first).ok());

  // Add m2: rebuilt from m0 while we watch (not a TTY: plain lines).
  n = ctl_json(e, {"nexus", "add-child", "n0", "bdev:///m2"});
  EXPECT_EQ(child_of(n, "bdev:///m2").at("state"), "out_of_sync");
  auto watch = e.ctl({"rebuild", "watch", "n0", "bdev:///m2", "--interval", "0.2"});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  auto lines = lines_of(watch.out);
  ASSERT_GE(lines.size(), 3u) << watch.out;  // several progress lines, then the summary
  EXPECT_EQ(lines[0].rfind("bdev:///m2 running ", 0), 0u) << watch.out;
  EXPECT_NE(lines[0].find(" MiB/s  ETA "), std::string::npos) << watch.out;
  EXPECT_EQ(lines[lines.size() - 2].rfind("bdev:///m2 completed 100.0%  16.0/16.0 MiB", 0), 0u)
      << watch.out;
  EXPECT_EQ(lines.back().rfind("rebuild of 'bdev:///m2' completed: 16.0 MiB in ", 0), 0u)
      << watch.out;
  EXPECT_EQ(watch.out.find('\r'), std::string::npos) << "no TTY redraws when piped";

  n = ctl_json(e, {"nexus", "show", "n0"});
  EXPECT_EQ(n.at("state"), "degraded");  // m1 is still faulted
  EXPECT_EQ(child_of(n, "bdev:///m2").at("state"), "healthy");
  EXPECT_EQ(child_of(n, "bdev:///m2").at("rebuild").at("state"), "completed");
  json stats = ctl_json(e, {"rebuild", "stats", "n0"});
  ASSERT_EQ(stats.size(), 1u) << stats.dump();
  EXPECT_EQ(stats[0].at("child"), "bdev:///m2");
  EXPECT_EQ(stats[0].at("source"), "bdev:///m0");
  EXPECT_EQ(stats[0].at("blocks_done"), kSize / 4096);
  EXPECT_DOUBLE_EQ(stats[0].at("percent").get<double>(), 100.0);
  EXPECT_GT(stats[0].at("rate_bytes_s").get<uint64_t>(), 0u);

  std::string metrics = http_get(e.metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("castor_nexus_state{nexus=\"n0\",state=\"degraded\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("castor_nexus_state{nexus=\"n0\",state=\"online\"} 0"), std::string::npos);
  EXPECT_NE(
      metrics.find(
          "castor_nexus_child_state{nexus=\"n0\",child=\"bdev:///m1\",state=\"faulted\"} 1"),
      std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("castor_nexus_rebuild_blocks_done{nexus=\"n0\",child=\"bdev:///m2\"} " +
                         std::to_string(kSize / 4096)),
            std::string::npos)
      << metrics;

  // Publish over NVMe-oF: the nexus' own subsystem.
  const std::string nqn = "nqn.2026-11.io.castor:nexus-" + uuid;
  auto pub = e.ctl({"nexus", "publish", "n0"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_EQ(pub.out, "nvmf://127.0.0.1:" + std::to_string(nvmf_port) + "/" + nqn + "\n");
  v1::ListSubsystemsResponse subs;
  ASSERT_TRUE(e.stub().ListSubsystems(ctx().get(), v1::ListSubsystemsRequest(), &subs).ok());
  ASSERT_EQ(subs.subsystems_size(), 1);
  EXPECT_EQ(subs.subsystems(0).nqn(), nqn);
  EXPECT_EQ(subs.subsystems(0).namespaces(0).bdev(), "n0");
  n = ctl_json(e, {"nexus", "show", "n0"});
  EXPECT_EQ(n.at("uris"), json::array({pub.out.substr(0, pub.out.size() - 1)}));
  expect_ctl_error(e.ctl({"nexus", "destroy", "n0"}), "nexus 'n0' is published at nvmf://");
  expect_ctl_error(e.ctl({"nexus", "publish", "n0", "--protocol", "nbd"}),
                   "already published over NVMe-oF");
  // Publishing again with the same hosts is idempotent.
  EXPECT_EQ(e.ctl({"nexus", "publish", "n0"}).out, pub.out);
  auto unpub = e.ctl({"nexus", "unpublish", "n0"});
  EXPECT_EQ(unpub.exit_code, 0) << unpub.err;
  EXPECT_EQ(unpub.out, "nexus 'n0' unpublished\n");

  // Publish over NBD (named after the nexus); nbdinfo sees the size.
  pub = e.ctl({"nexus", "publish", "n0", "--protocol", "nbd"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  const std::string nbd_uri = "nbd://127.0.0.1:" + std::to_string(nbd_port) + "/n0";
  EXPECT_EQ(pub.out, nbd_uri + "\n");
  if (std::string nbdinfo = find_program("nbdinfo"); !nbdinfo.empty()) {
    auto r = run_program({nbdinfo, "--size", nbd_uri}, e.dir());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, std::to_string(kSize) + "\n");
  } else {
    ADD_FAILURE() << "nbdinfo (libnbd-bin) is not installed";
  }
  expect_ctl_error(e.ctl({"nexus", "destroy", "n0"}), "nexus 'n0' is published at " + nbd_uri);
  EXPECT_EQ(e.ctl({"nexus", "unpublish", "n0"}).exit_code, 0);
  expect_ctl_error(e.ctl({"nexus", "unpublish", "n0"}), "nexus 'n0' is not published");

  // Destroy (records kept): the children are free again and compare equal; the faulted
  // one missed the overwrite.
  auto destroy = e.ctl({"nexus", "destroy", "n0"});
  EXPECT_EQ(destroy.exit_code, 0) << destroy.err;
  EXPECT_EQ(destroy.out, "nexus 'n0' destroyed\n");
  EXPECT_EQ(ctl_json(e, {"nexus", "list"}), json::array());
  const std::string c0 = read_all(e, "m0");
  const std::string c2 = read_all(e, "m2");
  const std::string c1 = read_all(e, "m1");
  EXPECT_TRUE(c0 == data2) << "m0 differs from what was written";
  EXPECT_TRUE(c2 == data2) << "the rebuilt child m2 differs from m0";
  EXPECT_TRUE(c1.substr(kChunk) == data2.substr(kChunk));
  EXPECT_TRUE(c1.substr(0, kChunk) == data.substr(0, kChunk)) << "m1 should have missed the write";
  const fs::path record = e.dir() / "state" / "nexus" / "n0.json";
  ASSERT_TRUE(fs::exists(record));
  json rec = json::parse(read_file(record));
  EXPECT_EQ(rec.at("children").at("bdev:///m1").at("healthy"), false) << rec.dump();

  // Restart the engine (same state dir): a nexus re-created over m0 and the faulted m1
  // does not trust m1: it starts out of sync and is rebuilt from m0.
  ASSERT_TRUE(e.terminate(20s).has_value());
  ASSERT_TRUE(e.start(malloc_flags({"m0", "m1"}))) << e.error();
  n = ctl_json(e, {"nexus", "create", "n0", "--child", "bdev:///m0", "--child", "bdev:///m1",
                   "--opt", "rate_mb_s=4"});
  ASSERT_TRUE(n.is_object());
  EXPECT_EQ(n.at("state"), "degraded");
  EXPECT_EQ(child_of(n, "bdev:///m0").at("state"), "healthy");
  EXPECT_EQ(child_of(n, "bdev:///m1").at("state"), "out_of_sync");
  json rb = ctl_json(e, {"rebuild", "stats", "n0", "bdev:///m1"});
  EXPECT_EQ(rb.at("source"), "bdev:///m0");
  EXPECT_EQ(rb.at("state"), "running");
  // Pause/resume/stop through castorctl; a stopped rebuild makes `watch` exit 1.
  EXPECT_EQ(ctl_json(e, {"rebuild", "pause", "n0", "bdev:///m1"}).at("state"), "paused");
  EXPECT_EQ(ctl_json(e, {"rebuild", "resume", "n0", "bdev:///m1"}).at("state"), "running");
  EXPECT_EQ(ctl_json(e, {"rebuild", "stop", "n0", "bdev:///m1"}).at("state"), "stopped");
  auto stopped = e.ctl({"rebuild", "watch", "n0", "bdev:///m1", "--interval", "0.1"});
  EXPECT_EQ(stopped.exit_code, 1);
  EXPECT_EQ(stopped.out.rfind("bdev:///m1 stopped ", 0), 0u) << stopped.out;
  EXPECT_NE(stopped.out.find("ETA -"), std::string::npos) << stopped.out;
  EXPECT_EQ(stopped.err, "castorctl: error: rebuild of 'bdev:///m1' was stopped\n");
  EXPECT_EQ(child_of(ctl_json(e, {"nexus", "show", "n0"}), "bdev:///m1").at("state"), "faulted");
  EXPECT_EQ(e.ctl({"nexus", "destroy", "n0", "--purge"}).exit_code, 0);
  EXPECT_FALSE(fs::exists(record)) << "purge removes the health record";
  auto st = e.terminate(20s);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << e.log();
}

// ResizeNexus through castorctl and gRPC: refused while a child is smaller (naming it),
// then grown once both replicas are; a shrink is INVALID_ARGUMENT; published over
// NVMe-oF or iSCSI it grows, over NBD it is refused (no way to tell NBD clients).
TEST(NexusApiTest, ResizeGrowsOnceEveryChildHasAndRefusesNbd) {
  Engine e;
  ASSERT_TRUE(e.start({"--bdev", "malloc:///d0?size_mb=128", "--nvmf-listen", "127.0.0.1:0", "--nbd-listen",
                       "127.0.0.1:0", "--iscsi-listen", "127.0.0.1:0"}))
      << e.error();
  ASSERT_EQ(e.ctl({"pool", "create", "p0", "--disk", "bdev:///d0", "--cluster-size", "1MiB"}).exit_code, 0);
  for (const char* r : {"ra", "rb"}) {
    ASSERT_EQ(e.ctl({"replica", "create", "p0", r, "--size", "8MiB"}).exit_code, 0);
  }
  ASSERT_EQ(e.ctl({"nexus", "create", "n0", "--child", "bdev:///ra", "--child", "bdev:///rb"}).exit_code, 0);
  const std::string pattern = random_bytes(kMiB, 7);
  ASSERT_TRUE(write_blocks(e.stub(), "n0", 0, pattern).ok());
  ASSERT_EQ(e.ctl({"nexus", "publish", "n0"}).exit_code, 0);

  expect_ctl_error(e.ctl({"nexus", "resize", "n0", "--size", "16MiB"}), "child 'bdev:///ra' is 8388608 bytes");
  ASSERT_EQ(e.ctl({"replica", "grow", "ra", "--size", "16MiB"}).exit_code, 0);
  {
    v1::ResizeNexusRequest req;
    req.set_name("n0");
    req.set_size_bytes(16 * kMiB);
    v1::NexusInfo resp;
    grpc::Status s = e.stub().ResizeNexus(ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_NE(s.error_message().find("bdev:///rb"), std::string::npos) << s.error_message();
  }
  ASSERT_EQ(e.ctl({"replica", "grow", "rb", "--size", "24MiB"}).exit_code, 0);
  json n = ctl_json(e, {"nexus", "resize", "n0", "--size", "16MiB"});
  ASSERT_TRUE(n.is_object());
  EXPECT_EQ(n.at("size_bytes").get<uint64_t>(), 16 * kMiB);
  EXPECT_EQ(n.at("state"), "online");
  EXPECT_FALSE(n.at("uris").empty()) << "still published";
  expect_ctl_error(e.ctl({"nexus", "resize", "n0", "--size", "8MiB"}), "never shrinks");
  expect_ctl_error(e.ctl({"nexus", "resize", "nope", "--size", "8MiB"}), "nexus 'nope' does not exist");
  EXPECT_EQ(ctl_json(e, {"nexus", "resize", "n0", "--size", "16MiB"}).at("size_bytes").get<uint64_t>(), 16 * kMiB)
      << "the same size again is fine";
  auto table = e.ctl({"nexus", "show", "n0"});
  EXPECT_NE(table.out.find("16.0 MiB"), std::string::npos) << table.out;

  // Over iSCSI: grows too.
  ASSERT_EQ(e.ctl({"nexus", "unpublish", "n0"}).exit_code, 0);
  ASSERT_EQ(e.ctl({"replica", "grow", "ra", "--size", "24MiB"}).exit_code, 0);
  ASSERT_EQ(e.ctl({"nexus", "publish", "n0", "iscsi"}).exit_code, 0);
  EXPECT_EQ(ctl_json(e, {"nexus", "resize", "n0", "--size", "20MiB"}).at("size_bytes").get<uint64_t>(), 20 * kMiB);
  // Over NBD: refused, the size unchanged.
  ASSERT_EQ(e.ctl({"nexus", "unpublish", "n0"}).exit_code, 0);
  ASSERT_EQ(e.ctl({"nexus", "publish", "n0", "nbd"}).exit_code, 0);
  expect_ctl_error(e.ctl({"nexus", "resize", "n0", "--size", "24MiB"}),
                   "nexus 'n0' is published over NBD as 'n0': NBD cannot tell connected clients about a new size");
  {
    v1::ResizeNexusRequest req;
    req.set_name("n0");
    req.set_size_bytes(24 * kMiB);
    v1::NexusInfo resp;
    EXPECT_EQ(e.stub().ResizeNexus(ctx().get(), req, &resp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  EXPECT_EQ(ctl_json(e, {"nexus", "show", "n0"}).at("size_bytes").get<uint64_t>(), 20 * kMiB);
  ASSERT_EQ(e.ctl({"nexus", "unpublish", "n0"}).exit_code, 0);
  EXPECT_EQ(ctl_json(e, {"nexus", "resize", "n0", "--size", "24MiB"}).at("size_bytes").get<uint64_t>(), 24 * kMiB);
  // The data written before reads back through the grown nexus.
  std::string got;
  ASSERT_TRUE(read_blocks(e.stub(), "n0", 0, kMiB, &got).ok());
  EXPECT_EQ(got, pattern);
  ASSERT_EQ(e.ctl({"nexus", "destroy", "n0"}).exit_code, 0);

  // A replica follows the same rule: growing one exported over NBD is refused, over
  // NVMe-oF it grows.
  ASSERT_EQ(e.ctl({"nbd", "export", "ra", "ra"}).exit_code, 0);
  expect_ctl_error(e.ctl({"replica", "grow", "ra", "--size", "32MiB"}),
                   "replica 'ra' is exported over NBD as 'ra': NBD cannot tell connected clients about a new size");
  ASSERT_EQ(e.ctl({"nbd", "unexport", "ra"}).exit_code, 0);
  ASSERT_EQ(e.ctl({"replica", "share", "ra"}).exit_code, 0);
  EXPECT_EQ(ctl_json(e, {"replica", "grow", "ra", "--size", "32MiB"}).at("size_bytes").get<uint64_t>(), 32 * kMiB);
}

TEST(NexusApiTest, ErrorsAreClear) {
  Engine e;
  ASSERT_TRUE(e.start(malloc_flags({"m0", "m1"}))) << e.error();
  auto& stub = e.stub();

  expect_ctl_error(e.ctl({"nexus", "show", "nope"}), "nexus 'nope' does not exist");
  expect_ctl_error(e.ctl({"nexus", "destroy", "nope"}), "nexus 'nope' does not exist");
  expect_ctl_error(e.ctl({"nexus", "add-child", "nope", "bdev:///m1"}),
                   "nexus 'nope' does not exist");
  expect_ctl_error(e.ctl({"rebuild", "stats", "nope"}), "nexus 'nope' does not exist");
  {
    v1::GetNexusRequest req;
    req.set_name("nope");
    v1::NexusInfo resp;
    EXPECT_EQ(stub.GetNexus(ctx().get(), req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // Options.
  expect_ctl_error(e.ctl({"nexus", "create", "n0", "--child", "bdev:///m0", "--opt", "bogus=1"}),
                   "unknown nexus option 'bogus'");
  expect_ctl_error(
      e.ctl({"nexus", "create", "n0", "--child", "bdev:///m0", "--opt", "read_policy=fastest"}),
      "read_policy='fastest' is invalid");
  auto usage = e.ctl({"nexus", "create", "n0", "--child", "bdev:///m0", "--opt", "novalue"});
  EXPECT_EQ(usage.exit_code, 2) << usage.err;
  EXPECT_NE(usage.err.find("is not KEY=VALUE"), std::string::npos) << usage.err;
  {
    v1::CreateNexusRequest req;
    req.set_name("n0");
    req.add_children("bdev:///m0");
    (*req.mutable_options())["segment_kb"] = "3";
    v1::NexusInfo resp;
    grpc::Status s = stub.CreateNexus(ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("segment_kb=3 is invalid"), std::string::npos);
  }
  // Names.
  expect_ctl_error(e.ctl({"nexus", "create", "a/b", "--child", "bdev:///m0"}),
                   "nexus name 'a/b' is invalid");
  expect_ctl_error(e.ctl({"nexus", "create", "m0", "--child", "bdev:///m1"}),
                   "a bdev named 'm0' already exists");
  // Too many children (nothing is left behind).
  std::vector<std::string> nine = {"nexus", "create", "big"};
  for (int i = 0; i < 9; ++i) {
    nine.insert(nine.end(), {"--child", "malloc:///big" + std::to_string(i) + "?size_mb=1"});
  }
  expect_ctl_error(e.ctl(nine), "9 children given, the limit is 8");
  v1::ListBdevsResponse bdevs;
  ASSERT_TRUE(stub.ListBdevs(ctx().get(), v1::ListBdevsRequest(), &bdevs).ok());
  EXPECT_EQ(bdevs.bdevs_size(), 2);

  // Duplicate name.
  ASSERT_EQ(e.ctl({"nexus", "create", "n0", "--child", "bdev:///m0"}).exit_code, 0);
  auto dup = e.ctl({"nexus", "create", "n0", "--child", "bdev:///m1"});
  expect_ctl_error(dup, "nexus 'n0' already exists");
  {
    v1::CreateNexusRequest req;
    req.set_name("n0");
    req.add_children("bdev:///m1");
    v1::NexusInfo resp;
    EXPECT_EQ(stub.CreateNexus(ctx().get(), req, &resp).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
  }
  // A child claimed by the nexus; the nexus' bdev belongs to the manager.
  expect_ctl_error(e.ctl({"nexus", "create", "n1", "--child", "bdev:///m0"}), "m0");
  expect_ctl_error(e.ctl({"bdev", "destroy", "n0"}), "bdev 'n0' is a nexus");

  // Children.
  expect_ctl_error(e.ctl({"nexus", "fault-child", "n0", "bdev:///zz"}),
                   "nexus 'n0' has no child 'bdev:///zz'");
  expect_ctl_error(e.ctl({"nexus", "fault-child", "n0", "bdev:///m0"}), "last healthy child");
  {
    v1::ChildRequest req;
    req.set_nexus("n0");
    req.set_uri("bdev:///m0");
    v1::NexusInfo resp;
    EXPECT_EQ(stub.OfflineChild(ctx().get(), req, &resp).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  expect_ctl_error(e.ctl({"nexus", "add-child", "n0", "bdev:///m0"}), "already has child");
  expect_ctl_error(e.ctl({"rebuild", "stats", "n0", "bdev:///m0"}), "was never rebuilt");
  expect_ctl_error(e.ctl({"rebuild", "stop", "n0", "bdev:///m0"}), "has no running rebuild");

  // Publishing needs a listener of that protocol.
  expect_ctl_error(e.ctl({"nexus", "publish", "n0"}), "no NVMe-oF listener");
  expect_ctl_error(e.ctl({"nexus", "publish", "n0", "--protocol", "nbd"}), "no NBD listener");
  expect_ctl_error(e.ctl({"nexus", "publish", "n0", "--protocol", "iscsi"}), "no iSCSI listener");
  auto bad = e.ctl({"nexus", "publish", "n0", "--protocol", "scsi"});
  EXPECT_EQ(bad.exit_code, 2);
  {
    v1::PublishNexusRequest req;
    req.set_name("n0");
    req.set_protocol("scsi");
    v1::PublishNexusResponse resp;
    grpc::Status s = stub.PublishNexus(ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("protocol 'scsi' is not nvmf, nbd or iscsi"),
              std::string::npos);
  }
  EXPECT_EQ(e.ctl({"nexus", "destroy", "n0"}).exit_code, 0);

  // A state directory that cannot be created: start-up fails with one clear line.
  Engine bad_engine;
  EXPECT_FALSE(bad_engine.start({"--state-dir", "/proc/castor-state"}));
  EXPECT_NE(bad_engine.error().find("castor-engine: error: cannot create state directory "
                                    "'/proc/castor-state/nexus'"),
            std::string::npos)
      << bad_engine.error();
}

}  // namespace
}  // namespace castor::api
