// End-to-end tests of castor-engine's management surface: the real engine binary is
// started on loopback with free ports and driven through the generated gRPC stub,
// castorctl and plain HTTP, asserting what a user sees.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <iostream>

#include "common/status.h"
#include "common/version.h"
#include "engine_process.h"

namespace castor::api {
namespace {

using namespace castor::api::testing;

constexpr uint64_t kMiB = 1024 * 1024;

// CPU time (user + system) of `pid` in clock ticks, from /proc/<pid>/stat.
long cpu_ticks(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream in(stat.substr(close_paren + 2));
  std::vector<std::string> f;
  for (std::string s; in >> s;) f.push_back(s);
  // After "pid (comm) ": field 3 (state) is f[0]; utime is field 14, stime field 15.
  if (f.size() < 13) return -1;
  return std::stol(f[11]) + std::stol(f[12]);
}

grpc::Status create_bdev(Engine& e, const std::string& uri, v1::BdevInfo* info = nullptr) {
  v1::CreateBdevRequest req;
  req.set_uri(uri);
  v1::BdevInfo tmp;
  return e.stub().CreateBdev(ctx().get(), req, info ? info : &tmp);
}

grpc::Status destroy_bdev(Engine& e, const std::string& name) {
  v1::DestroyBdevRequest req;
  req.set_name(name);
  v1::DestroyBdevResponse resp;
  return e.stub().DestroyBdev(ctx().get(), req, &resp);
}

std::vector<v1::BdevInfo> list_bdevs(Engine& e) {
  v1::ListBdevsResponse resp;
  grpc::Status s = e.stub().ListBdevs(ctx().get(), v1::ListBdevsRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.bdevs().begin(), resp.bdevs().end()};
}

Result<v1::BenchmarkResult> benchmark(Engine& e, const std::string& bdev,
                                      const std::string& workload, double seconds) {
  v1::RunBenchmarkRequest req;
  req.set_bdev(bdev);
  req.set_workload(workload);
  req.set_duration_s(seconds);
  req.set_queue_depth(8);
  v1::BenchmarkResult r;
  grpc::Status s = e.stub().RunBenchmark(ctx(30s).get(), req, &r);
  if (!s.ok()) return Status(Errc::kInternal, s.error_message());
  return r;
}

class EngineApiTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(engine_.start({"--reactors", "2"})) << engine_.error(); }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- engine log ----\n" << engine_.log();
  }
  Engine engine_;
};

TEST_F(EngineApiTest, EngineInfoOverGrpcAndCli) {
  v1::EngineInfo info;
  grpc::Status s = engine_.stub().GetEngineInfo(ctx().get(), v1::GetEngineInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.version(), kVersion);
  EXPECT_EQ(info.reactor_count(), 2u);
  EXPECT_EQ(info.cpus_size(), 2);
  EXPECT_FALSE(info.poll_mode());
  EXPECT_EQ(info.pid(), engine_.pid());
  EXPECT_GE(info.uptime_seconds(), 0.0);

  auto r = engine_.ctl({"engine", "info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(table_row(r.out, "version"), (std::vector<std::string>{"version", kVersion}));
  EXPECT_EQ(table_row(r.out, "reactors"), (std::vector<std::string>{"reactors", "2"}));
  EXPECT_EQ(table_row(r.out, "pid"),
            (std::vector<std::string>{"pid", std::to_string(engine_.pid())}));

  r = engine_.ctl({"-o", "json", "engine", "info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["pid"].get<int>(), engine_.pid());
  EXPECT_EQ(j["reactors"].get<int>(), 2);
  EXPECT_EQ(j["version"].get<std::string>(), kVersion);
  EXPECT_EQ(j["cpus"].size(), 2u);
}

TEST_F(EngineApiTest, CreateMallocAndFileBdevsAndListThem) {
  auto r = engine_.ctl({"bdev", "create", "malloc:///m0?size_mb=64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto row = table_row(r.out, "m0");
  ASSERT_FALSE(row.empty()) << r.out;
  EXPECT_EQ(row[1], "malloc");
  EXPECT_EQ(row[2] + " " + row[3], "64.0 MiB");

  fs::path img = engine_.dir() / "disk0.img";
  v1::BdevInfo file_info;
  grpc::Status s = create_bdev(engine_, "file://" + img.string() + "?size_mb=8", &file_info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(file_info.size_bytes(), 8 * kMiB);
  EXPECT_EQ(file_info.size_bytes(), uint64_t{file_info.block_size()} * file_info.num_blocks());
  EXPECT_FALSE(file_info.name().empty());
  EXPECT_TRUE(fs::exists(img));

  auto bdevs = list_bdevs(engine_);
  ASSERT_EQ(bdevs.size(), 2u);
  EXPECT_EQ(bdevs[0].name(), "m0");
  EXPECT_EQ(bdevs[0].module(), "malloc");
  EXPECT_EQ(bdevs[0].size_bytes(), 64 * kMiB);
  EXPECT_EQ(bdevs[0].uri(), "malloc:///m0?size_mb=64");
  EXPECT_FALSE(bdevs[0].uuid().empty());
  EXPECT_EQ(bdevs[1].name(), file_info.name());
  EXPECT_EQ(bdevs[1].size_bytes(), 8 * kMiB);

  r = engine_.ctl({"bdev", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0].rfind("NAME", 0), 0u);
  row = table_row(r.out, "m0");
  ASSERT_GE(row.size(), 4u);
  EXPECT_EQ(row[2] + " " + row[3], "64.0 MiB");
  row = table_row(r.out, file_info.name());
  ASSERT_GE(row.size(), 4u);
  EXPECT_EQ(row[2] + " " + row[3], "8.0 MiB");
  // Columns are aligned: every row starts its SIZE cell at the header's offset.
  auto size_col = lines[0].find("SIZE");
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i][size_col - 1], ' ');
    EXPECT_NE(lines[i][size_col], ' ') << lines[i];
  }

  r = engine_.ctl({"-o", "json", "bdev", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["name"], "m0");
  EXPECT_EQ(j[0]["size_bytes"].get<uint64_t>(), 64 * kMiB);
  EXPECT_EQ(j[1]["size_bytes"].get<uint64_t>(), 8 * kMiB);
  EXPECT_EQ(j[0]["block_size"].get<uint64_t>() * j[0]["num_blocks"].get<uint64_t>(), 64 * kMiB);

  r = engine_.ctl({"bdev", "destroy", "m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(destroy_bdev(engine_, file_info.name()).ok());
  EXPECT_TRUE(list_bdevs(engine_).empty());
}

// `bdev write` and `bdev read` of more than the engine's 4 MiB per call (and gRPC's 4 MiB
// per message): castorctl cuts them into calls, and 9 MiB (four full calls and a partial
// one) round-trip byte for byte through a file, stdin and stdout.
TEST_F(EngineApiTest, BdevWriteAndReadLargerThanOneCall) {
  auto r = engine_.ctl({"bdev", "create", "malloc:///big?size_mb=32&blk_size=512"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string data(9 * kMiB, '\0');
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < data.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(&data[i], &x, 8);
  }
  const fs::path in = engine_.dir() / "in9.bin", out = engine_.dir() / "out9.bin";
  std::ofstream(in, std::ios::binary) << data;
  r = engine_.ctl({"bdev", "write", "big", "--offset", "1MiB", "--file", in.string(), "--flush"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "wrote 9437184 bytes to 'big' at offset 1048576 (flushed)\n");
  r = engine_.ctl(
      {"bdev", "read", "big", "--offset", "1MiB", "--length", "9MiB", "--file", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "read 9437184 bytes from 'big' at offset 1048576 into " + out.string() + "\n");
  EXPECT_TRUE(read_file(out) == data) << "9 MiB read back through a file differs";
  r = engine_.ctl({"bdev", "read", "big", "--offset", "1MiB", "--length", "9MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == data) << "9 MiB read back to stdout differs (" << r.out.size() << " bytes)";
  // Outside the written range the bdev is still zero: each call went to its own offset.
  r = engine_.ctl({"bdev", "read", "big", "--offset", "10MiB", "--length", "4KiB"});
  EXPECT_TRUE(r.out == std::string(4096, '\0')) << "10 MiB was written";

  // From stdin, at another offset, with a length that is no multiple of the call size.
  std::ofstream(in, std::ios::binary | std::ios::trunc) << data.substr(0, 5 * kMiB + 512);
  r = run_program({"/bin/sh", "-c",
                   std::string(CASTORCTL_BIN) + " -e " + engine_.endpoint() +
                       " bdev write big --offset 12MiB --file - < " + in.string()},
                  engine_.dir());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "wrote 5243392 bytes to 'big' at offset 12582912\n");
  r = engine_.ctl({"bdev", "read", "big", "--offset", "12MiB", "--length", "5243392"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == data.substr(0, 5 * kMiB + 512)) << "stdin round trip differs";

  // A transfer that cannot fit is refused before anything is written or created.
  const fs::path never = engine_.dir() / "never.bin";
  expect_ctl_error(engine_.ctl({"bdev", "read", "big", "--offset", "24MiB", "--length", "9MiB",
                                "--file", never.string()}),
                   "past the end of bdev 'big'");
  EXPECT_FALSE(fs::exists(never));
  std::ofstream(in, std::ios::binary | std::ios::trunc) << std::string(9 * kMiB, '\x77');
  expect_ctl_error(
      engine_.ctl({"bdev", "write", "big", "--offset", "24MiB", "--file", in.string()}),
      "past the end of bdev 'big'");
  r = engine_.ctl({"bdev", "read", "big", "--offset", "24MiB", "--length", "4KiB"});
  EXPECT_TRUE(r.out == std::string(4096, '\0')) << "a refused write wrote at 24 MiB";
  expect_ctl_error(engine_.ctl({"bdev", "write", "big", "--pattern", "1", "--length", "5MiB",
                                "--offset", "100"}),
                   "block size");
  // The engine keeps its own limit for a single call.
  v1::ReadBlocksRequest rq;
  rq.set_bdev("big");
  rq.set_length(8 * kMiB);
  v1::ReadBlocksResponse rs;
  grpc::Status s = engine_.stub().ReadBlocks(ctx().get(), rq, &rs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("above the limit of 4194304 bytes"), std::string::npos)
      << s.error_message();
}

TEST_F(EngineApiTest, DuplicateNameIsAlreadyExists) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=8").ok());
  grpc::Status s = create_bdev(engine_, "malloc:///m0?size_mb=16");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_EQ(s.error_message().find('\n'), std::string::npos);
  EXPECT_NE(s.error_message().find("m0"), std::string::npos) << s.error_message();

  auto r = engine_.ctl({"bdev", "create", "malloc:///m0?size_mb=16"});
  expect_ctl_error(r, "m0");

  auto bdevs = list_bdevs(engine_);
  ASSERT_EQ(bdevs.size(), 1u);
  EXPECT_EQ(bdevs[0].size_bytes(), 8 * kMiB);
}

TEST_F(EngineApiTest, DestroyUnknownBdevIsNotFound) {
  grpc::Status s = destroy_bdev(engine_, "nope");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  expect_ctl_error(engine_.ctl({"bdev", "destroy", "nope"}), "nope");
  v1::GetBdevStatsRequest req;
  req.set_name("nope");
  v1::GetBdevStatsResponse resp;
  s = engine_.stub().GetBdevStats(ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(EngineApiTest, BadUrisAreInvalidArgumentAndCreateNothing) {
  for (const std::string uri : {"m0", "bogus:///x", "malloc:///m1?size_mb=abc",
                                "malloc:///m2?size_mb=8&blk_size=1000", ""}) {
    grpc::Status s = create_bdev(engine_, uri);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << uri << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << uri;
    EXPECT_EQ(s.error_message().find('\n'), std::string::npos) << uri;
  }
  expect_ctl_error(engine_.ctl({"bdev", "create", "malloc:///m1?size_mb=abc"}), "size_mb");
  EXPECT_TRUE(list_bdevs(engine_).empty());
}

TEST_F(EngineApiTest, FaultDrillBenchmarkStatsAndMetrics) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=64").ok());
  auto r = engine_.ctl({"bdev", "create", "fault:///f0?base=m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // Inject read errors through castorctl.
  r = engine_.ctl({"-o", "json", "fault", "inject", "f0", "--mode", "error", "--op", "read",
                   "--status", "io_error"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  uint64_t id = json::parse(r.out)["id"].get<uint64_t>();
  EXPECT_GT(id, 0u);

  auto res = benchmark(engine_, "f0", "randread", 0.5);
  ASSERT_TRUE(res.is_ok()) << res.status().message();
  EXPECT_GT(res->errors(), 0u);

  v1::ListFaultsRequest lreq;
  lreq.set_bdev("f0");
  v1::ListFaultsResponse lresp;
  grpc::Status s = engine_.stub().ListFaults(ctx().get(), lreq, &lresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(lresp.rules_size(), 1);
  EXPECT_EQ(lresp.rules(0).id(), id);
  EXPECT_EQ(lresp.rules(0).rule().mode(), "error");
  EXPECT_EQ(lresp.rules(0).rule().ops_size(), 1);
  EXPECT_GT(lresp.rules(0).fired(), 0u);
  EXPECT_GE(lresp.rules(0).matched(), lresp.rules(0).fired());

  r = engine_.ctl({"fault", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto row = table_row(r.out, "f0");
  ASSERT_GE(row.size(), 4u) << r.out;
  EXPECT_EQ(row[1], std::to_string(id));
  EXPECT_EQ(row[2], "error");
  EXPECT_EQ(row[3], "read");

  // Errors show up in the fault bdev's stats.
  r = engine_.ctl({"-o", "json", "bdev", "stats", "f0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json st = json::parse(r.out);
  ASSERT_EQ(st.size(), 1u);
  uint64_t read_errors = 0;
  for (const auto& op : st[0]["ops"]) {
    if (op["op"] == "read") read_errors = op["errors"].get<uint64_t>();
  }
  EXPECT_GT(read_errors, 0u);

  // The base cannot be destroyed while the fault bdev holds it.
  s = destroy_bdev(engine_, "m0");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  expect_ctl_error(engine_.ctl({"bdev", "destroy", "m0"}), "m0");

  // Clear; the next benchmark runs clean.
  r = engine_.ctl({"fault", "clear", "f0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = engine_.ctl({"-o", "json", "fault", "list", "f0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json::parse(r.out).empty()) << r.out;

  r = engine_.ctl(
      {"-o", "json", "bdev", "perf", "f0", "--workload", "randrw", "--time", "0.5", "--qd", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json perf = json::parse(r.out);
  EXPECT_GT(perf["ios"].get<uint64_t>(), 0u);
  EXPECT_EQ(perf["errors"].get<uint64_t>(), 0u);
  EXPECT_GT(perf["iops"].get<double>(), 0.0);

  // The base saw the I/O.
  r = engine_.ctl({"bdev", "stats", "m0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  row = table_row(r.out, "m0");
  ASSERT_GE(row.size(), 3u) << r.out;
  EXPECT_EQ(row[1], "read");
  EXPECT_GT(std::stoull(row[2]), 0u) << r.out;

  v1::GetBdevStatsResponse sresp;
  s = engine_.stub().GetBdevStats(ctx().get(), v1::GetBdevStatsRequest(), &sresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(sresp.bdevs_size(), 2);
  uint64_t m0_ops = 0;
  for (const auto& b : sresp.bdevs()) {
    if (b.name() != "m0") continue;
    for (const auto& op : b.ops()) m0_ops += op.ops();
  }
  EXPECT_GT(m0_ops, 0u);

  // Prometheus sees it too.
  ASSERT_GT(engine_.metrics_port(), 0);
  std::string metrics = http_get(engine_.metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("200 OK"), std::string::npos) << metrics.substr(0, 200);
  EXPECT_NE(metrics.find("castor_bdev_ops_total{bdev=\"m0\",op=\"read\"}"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("castor_bdev_errors_total{bdev=\"f0\",op=\"read\"}"), std::string::npos);
  EXPECT_NE(metrics.find("castor_bdev_latency_seconds_bucket{bdev=\"m0\",op=\"read\",le="),
            std::string::npos);
  EXPECT_NE(metrics.find("castor_engine_reactors 2"), std::string::npos);
  EXPECT_NE(metrics.find("castor_engine_info{version=\"" + std::string(kVersion) + "\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("castor_engine_uptime_seconds"), std::string::npos);

  ASSERT_TRUE(destroy_bdev(engine_, "f0").ok());
  ASSERT_TRUE(destroy_bdev(engine_, "m0").ok());
}

TEST_F(EngineApiTest, FaultCallsOnNonFaultBdevsFail) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=8").ok());
  auto r = engine_.ctl({"fault", "inject", "m0", "--mode", "error"});
  expect_ctl_error(r, "m0");
  r = engine_.ctl({"fault", "inject", "nope", "--mode", "error"});
  expect_ctl_error(r, "nope");
  // Usage errors are caught before contacting the engine.
  r = engine_.ctl({"fault", "inject", "m0", "--mode", "explode"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
}

TEST_F(EngineApiTest, SigtermExitsZeroWithinFiveSeconds) {
  ASSERT_TRUE(create_bdev(engine_, "malloc:///m0?size_mb=8").ok());
  auto st = engine_.terminate(5s);
  ASSERT_TRUE(st.has_value()) << "engine still running 5 s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*st)) << "status " << *st;
  EXPECT_EQ(WEXITSTATUS(*st), 0);
  EXPECT_FALSE(fs::exists(engine_.dir() / "ready.json"));
}

TEST(EngineProcessTest, UnreachableEngineIsOneLineError) {
  char tmpl[] = "/tmp/castor-api-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  // Port 1 on loopback: nothing listens there.
  auto r = run_program({CASTORCTL_BIN, "-e", "127.0.0.1:1", "--timeout", "5", "bdev", "list"}, dir);
  expect_ctl_error(r, "cannot reach engine at 127.0.0.1:1");
  fs::remove_all(dir);
}

TEST(EngineProcessTest, BadConfigExitsTwoWithOneLine) {
  char tmpl[] = "/tmp/castor-api-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  std::ofstream(dir / "bad.yaml") << "reactors: 2\nno_such_key: 1\n";
  const std::vector<std::vector<std::string>> cases = {
      {"--reactors", "0"},
      {"--log-level", "loud"},
      {"--log-format", "xml"},
      {"--grpc-listen", "nowhere"},
      {"--cores", "0", "--reactors", "1"},
      {"--no-such-flag"},
      {"--config", (dir / "missing.yaml").string()},
      {"--config", (dir / "bad.yaml").string()},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {CASTOR_ENGINE_BIN};
    argv.insert(argv.end(), c.begin(), c.end());
    auto r = run_program(argv, dir);
    EXPECT_EQ(r.exit_code, 2) << c[0] << ": " << r.err;
    auto lines = lines_of(r.err);
    ASSERT_EQ(lines.size(), 1u) << c[0] << ": " << r.err;
    EXPECT_EQ(lines[0].rfind("castor-engine: error: ", 0), 0u) << lines[0];
  }
  fs::remove_all(dir);
}

TEST(EngineProcessTest, BadStartupBdevExitsOneWithOneLine) {
  Engine e;
  EXPECT_FALSE(e.start({"--bdev", "malloc:///m0?size_mb=abc"}));
  auto lines = lines_of(e.log());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(
      std::count_if(lines.begin(), lines.end(),
                    [](const std::string& l) { return l.rfind("castor-engine: error: ", 0) == 0; }),
      1);
  EXPECT_NE(e.log().find("size_mb"), std::string::npos) << e.log();
}

TEST(EngineProcessTest, YamlConfigAndJsonLogs) {
  Engine e;
  std::ofstream(e.dir() / "engine.yaml") << "reactors: 2\n"
                                            "log-format: json\n"
                                            "log-level: info\n"
                                            "bdev:\n"
                                            "  - malloc:///y0?size_mb=4\n";
  ASSERT_TRUE(e.start({"--config", (e.dir() / "engine.yaml").string(), "--log-level", "info"}))
      << e.error();
  auto bdevs = list_bdevs(e);
  ASSERT_EQ(bdevs.size(), 1u);
  EXPECT_EQ(bdevs[0].name(), "y0");
  v1::EngineInfo info;
  ASSERT_TRUE(e.stub().GetEngineInfo(ctx().get(), v1::GetEngineInfoRequest(), &info).ok());
  EXPECT_EQ(info.reactor_count(), 2u);
  auto st = e.terminate(5s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(WEXITSTATUS(*st), 0);
  auto lines = lines_of(e.log());
  ASSERT_FALSE(lines.empty());
  for (const auto& l : lines) {
    json j = json::parse(l, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << l;
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("logger") &&
                j.contains("msg"))
        << l;
  }
}

TEST(EngineProcessTest, IdleEngineUsesUnderOnePercentOfACore) {
  Engine e;
  ASSERT_TRUE(e.start({"--reactors", "2", "--log-level", "warn"})) << e.error();
  std::this_thread::sleep_for(1s);  // let start-up settle
  long before = cpu_ticks(e.pid());
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(10s);
  long after = cpu_ticks(e.pid());
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_GE(before, 0);
  ASSERT_GE(after, before);
  double cpu_s = static_cast<double>(after - before) / static_cast<double>(sysconf(_SC_CLK_TCK));
  EXPECT_LT(cpu_s / wall, 0.01) << "idle engine used " << cpu_s << " s CPU in " << wall << " s";
  auto st = e.terminate(5s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(WEXITSTATUS(*st), 0);
}

}  // namespace
}  // namespace castor::api
