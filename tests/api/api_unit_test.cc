// Unit tests (no processes, no reactors) of the API's name tables and conversions, the
// error mapping, castor-engine's configuration parsing and castorctl's formatting.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "api/block_io.h"
#include "api/engine_service.h"
#include "api/front_ends.h"
#include "api/names.h"
#include "api/status_map.h"
#include "cli/table.h"
#include "engine/config.h"
#include "nbd/front_end.h"
#include "reactor/reactor.h"
#include "nvmf/target/front_end.h"

namespace castor {
namespace {

namespace fs = std::filesystem;

TEST(StatusMapTest, MapsEveryErrc) {
  using api::to_grpc_code;
  EXPECT_EQ(to_grpc_code(Errc::kOk), grpc::StatusCode::OK);
  EXPECT_EQ(to_grpc_code(Errc::kInvalidArgument), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(to_grpc_code(Errc::kNotFound), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(to_grpc_code(Errc::kAlreadyExists), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(to_grpc_code(Errc::kBusy), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(to_grpc_code(Errc::kNoSpace), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(to_grpc_code(Errc::kUnsupported), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(to_grpc_code(Errc::kTimedOut), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(to_grpc_code(Errc::kIoError), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(to_grpc_code(Errc::kAborted), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(to_grpc_code(Errc::kInternal), grpc::StatusCode::INTERNAL);
}

TEST(StatusMapTest, MessageIsOneLine) {
  auto g = api::to_grpc(Status(Errc::kNotFound, "bdev 'x'\ndoes not exist"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "bdev 'x' does not exist");
  EXPECT_TRUE(api::to_grpc(Status::ok()).ok());
}

TEST(NamesTest, OpMaskRoundTrip) {
  auto m = api::parse_op_mask({"read", "unmap"}, 0);
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(*m, bdev::io_type_bit(bdev::IoType::kRead) | bdev::io_type_bit(bdev::IoType::kUnmap));
  EXPECT_EQ(api::op_names(*m), (std::vector<std::string>{"read", "unmap"}));
  auto all = api::parse_op_mask({"all"}, 0);
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ(*all, api::kAllOpsMask);
  EXPECT_EQ(api::op_names(*all).size(), 6u);
  auto def = api::parse_op_mask({}, 3);
  ASSERT_TRUE(def.is_ok());
  EXPECT_EQ(*def, 3u);
  auto bad = api::parse_op_mask({"read", "erase"}, 0);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("erase"), std::string::npos);
}

TEST(NamesTest, ModesAndStatuses) {
  EXPECT_EQ(*api::parse_fault_mode(""), bdev::FaultMode::kError);
  EXPECT_EQ(*api::parse_fault_mode("drop"), bdev::FaultMode::kDropWrite);
  EXPECT_STREQ(api::fault_mode_string(bdev::FaultMode::kHang), "hang");
  EXPECT_FALSE(api::parse_fault_mode("boom").is_ok());
  EXPECT_EQ(*api::parse_error_status(""), bdev::IoStatus::kIoError);
  EXPECT_EQ(*api::parse_error_status("timed_out"), bdev::IoStatus::kTimedOut);
  EXPECT_FALSE(api::parse_error_status("ok").is_ok());
  EXPECT_STREQ(api::io_status_string(bdev::IoStatus::kNoSpace), "no_space");
}

TEST(ConvertTest, FaultRuleDefaultsAndRoundTrip) {
  v1::FaultRule in;
  auto spec = api::from_proto(in);
  ASSERT_TRUE(spec.is_ok());
  bdev::FaultRuleSpec def;
  EXPECT_EQ(spec->ops_mask, def.ops_mask);
  EXPECT_EQ(spec->lba_end, UINT64_MAX);
  EXPECT_EQ(spec->probability, 1.0);
  EXPECT_EQ(spec->mode, bdev::FaultMode::kError);

  in.add_ops("write");
  in.set_mode("delay");
  in.set_delay_us(250);
  in.set_lba_start(8);
  in.set_lba_end(16);
  in.set_probability(0.5);
  in.set_skip(2);
  in.set_count(3);
  spec = api::from_proto(in);
  ASSERT_TRUE(spec.is_ok());
  v1::FaultRule out;
  api::to_proto(*spec, &out);
  EXPECT_EQ(out.ops_size(), 1);
  EXPECT_EQ(out.ops(0), "write");
  EXPECT_EQ(out.mode(), "delay");
  EXPECT_EQ(out.delay_us(), 250u);
  EXPECT_EQ(out.lba_start(), 8u);
  EXPECT_EQ(out.lba_end(), 16u);
  EXPECT_EQ(out.probability(), 0.5);
  EXPECT_EQ(out.skip(), 2u);
  EXPECT_EQ(out.count(), 3u);

  in.set_probability(1.5);
  auto bad = api::from_proto(in);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), Errc::kInvalidArgument);
}

Result<engine::ParsedArgs> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "castor-engine");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return engine::parse_args(static_cast<int>(argv.size()), argv.data());
}

TEST(EngineConfigTest, Defaults) {
  auto p = parse({});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.cpus.size(), 1u);
  EXPECT_FALSE(p->config.poll);
  EXPECT_FALSE(p->config.sched_batch);
  EXPECT_EQ(p->config.spin_us, 50u);
  EXPECT_EQ(p->config.iscsi_nop_in_ms, 15000u);
  EXPECT_EQ(p->config.nbd_keepalive_s, 30u);
  EXPECT_EQ(p->config.target_buffer_mb, 1024u);
  EXPECT_EQ(p->config.grpc_listen, "127.0.0.1:10124");
  EXPECT_EQ(p->config.metrics_listen, "127.0.0.1:9124");
  EXPECT_EQ(p->config.log_level, spdlog::level::info);
  EXPECT_EQ(p->config.log_format, engine::LogFormat::kText);
}

TEST(EngineConfigTest, FlagsParse) {
  auto p = parse({"--reactors", "3", "--poll", "--sched-batch", "--grpc-listen", "127.0.0.1:0", "--metrics-listen",
                  "none", "--log-level", "debug", "--log-format", "json", "--bdev",
                  "malloc:///a?size_mb=1", "--bdev", "malloc:///b?size_mb=1", "--ready-file",
                  "/tmp/r.json"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.cpus.size(), 3u);
  EXPECT_TRUE(p->config.poll);
  EXPECT_TRUE(p->config.sched_batch);
  EXPECT_EQ(p->config.grpc_listen, "127.0.0.1:0");
  EXPECT_EQ(p->config.metrics_listen, "none");
  EXPECT_EQ(p->config.log_level, spdlog::level::debug);
  EXPECT_EQ(p->config.log_format, engine::LogFormat::kJson);
  EXPECT_EQ(p->config.bdevs.size(), 2u);
  EXPECT_EQ(p->config.ready_file, "/tmp/r.json");
}

TEST(EngineConfigTest, ControlEndpoints) {
  auto p = parse({"--control", "127.0.0.1:1,[::1]:2", "--node-name", "n1", "--nvmf-listen",
                  "127.0.0.1:0"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.control, (std::vector<std::string>{"127.0.0.1:1", "[::1]:2"}));
  for (const auto& bad : {"127.0.0.1:1,nope", "127.0.0.1:1,127.0.0.1:1", "127.0.0.1:99999"}) {
    auto q = parse({"--control", bad, "--node-name", "n1", "--nvmf-listen", "127.0.0.1:0"});
    EXPECT_FALSE(q.is_ok()) << bad;
  }
  char tmpl[] = "/tmp/castor-config-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  fs::path f = dir / "e.yaml";
  std::ofstream(f) << "control:\n  - 10.0.0.1:10125\n  - 10.0.0.2:10125,10.0.0.3:10125\n"
                      "node-name: n1\nnvmf-listen: 127.0.0.1:0\n";
  p = parse({"--config", f.string()});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.control,
            (std::vector<std::string>{"10.0.0.1:10125", "10.0.0.2:10125", "10.0.0.3:10125"}));
  std::ofstream(f) << "control: 10.0.0.1:10125,10.0.0.2:10125\nnode-name: n1\n"
                      "nvmf-listen: 127.0.0.1:0\n";
  p = parse({"--config", f.string()});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.control.size(), 2u);
  p = parse({"--config", f.string(), "--control", "10.0.0.9:1"});  // the flag wins
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.control, std::vector<std::string>{"10.0.0.9:1"});
  fs::remove_all(dir);
}

TEST(EngineConfigTest, ReactorCountWrapsOverCpus) {
  auto cpus = reactor::cpus_for_reactor_count(5);
  ASSERT_EQ(cpus.size(), 5u);
  auto one = reactor::cpus_for_reactor_count(1);
  EXPECT_EQ(cpus[0], one[0]);
}

TEST(EngineConfigTest, RejectsBadValues) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--reactors", "0"},
                                             {"--reactors", "x"},
                                             {"--cores", "0", "--reactors", "1"},
                                             {"--log-level", "loud"},
                                             {"--log-format", "xml"},
                                             {"--grpc-listen", "localhost"},
                                             {"--metrics-listen", "127.0.0.1:99999"},
                                             {"--what"},
                                             {"positional"}}) {
    auto p = parse(args);
    EXPECT_FALSE(p.is_ok()) << args[0];
    if (!p.is_ok()) {
      EXPECT_EQ(p.status().message().find('\n'), std::string::npos);
    }
  }
}

TEST(EngineConfigTest, YamlWithFlagOverrides) {
  char tmpl[] = "/tmp/castor-config-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  fs::path f = dir / "e.yaml";
  std::ofstream(f) << "cores: [0]\n"
                      "poll: true\n"
                      "sched-batch: true\n"
                      "spin-us: 5\n"
                      "iscsi-nop-in-ms: 2500\n"
                      "nbd-keepalive-s: 7\n"
                      "target-buffer-mb: 512\n"
                      "grpc-listen: 127.0.0.1:5000\n"
                      "metrics-listen: none\n"
                      "log-level: warn\n"
                      "bdev:\n  - malloc:///a?size_mb=1\n";
  auto p = parse({"--config", f.string(), "--grpc-listen", "127.0.0.1:6000"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.cpus, std::vector<int>{0});
  EXPECT_TRUE(p->config.poll);
  EXPECT_TRUE(p->config.sched_batch);
  EXPECT_EQ(p->config.spin_us, 5u);
  EXPECT_EQ(p->config.iscsi_nop_in_ms, 2500u);
  EXPECT_EQ(p->config.nbd_keepalive_s, 7u);
  EXPECT_EQ(p->config.target_buffer_mb, 512u);
  EXPECT_EQ(p->config.grpc_listen, "127.0.0.1:6000");
  EXPECT_EQ(p->config.metrics_listen, "none");
  EXPECT_EQ(p->config.log_level, spdlog::level::warn);
  EXPECT_EQ(p->config.bdevs, std::vector<std::string>{"malloc:///a?size_mb=1"});

  // A flag can also switch a file's boolean off.
  p = parse({"--config", f.string(), "--poll=false", "--sched-batch=false"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_FALSE(p->config.poll);
  EXPECT_FALSE(p->config.sched_batch);

  // Each numeric flag overrides the file's (0 turns spinning, pings, keepalives, the
  // target-wide buffer limit off); a value that is not a bounded whole number is refused,
  // naming the setting.
  const std::vector<std::pair<const char*, std::vector<const char*>>> durations = {
      {"spin-us", {"-1", "2x", "", "1000001"}},
      {"iscsi-nop-in-ms", {"-5", "1s", "", "3600001"}},
      {"nbd-keepalive-s", {"-1", "30s", "", "3601"}},
      {"target-buffer-mb", {"-1", "1G", "", "1048577"}}};
  for (const auto& [key, bads] : durations) {
    p = parse({"--config", f.string(), std::string("--") + key, "0"});
    ASSERT_TRUE(p.is_ok()) << key << ": " << p.status().message();
    for (const char* bad : bads) {
      p = parse({"--config", f.string(), std::string("--") + key, bad});
      ASSERT_FALSE(p.is_ok()) << key << " " << bad;
      EXPECT_NE(p.status().message().find(key), std::string::npos) << p.status().message();
    }
  }
  EXPECT_EQ(parse({"--spin-us", "0"})->config.spin_us, 0u);
  EXPECT_EQ(parse({"--iscsi-nop-in-ms", "0"})->config.iscsi_nop_in_ms, 0u);
  EXPECT_EQ(parse({"--nbd-keepalive-s", "0"})->config.nbd_keepalive_s, 0u);
  EXPECT_EQ(parse({"--target-buffer-mb", "0"})->config.target_buffer_mb, 0u);

  // --reactors on the command line replaces the file's cores.
  p = parse({"--config", f.string(), "--reactors", "2"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.cpus.size(), 2u);

  std::ofstream(f) << "reactors: 1\ntypo-key: 3\n";
  p = parse({"--config", f.string()});
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("typo-key"), std::string::npos);

  std::ofstream(f) << "reactors: [1, 2\n";
  p = parse({"--config", f.string()});
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().message().find('\n'), std::string::npos);

  p = parse({"--config", (dir / "missing.yaml").string()});
  ASSERT_FALSE(p.is_ok());
  fs::remove_all(dir);
}

TEST(EngineConfigTest, PoolImportsFromFlagsAndYaml) {
  auto p =
      parse({"--pool-import", "file:///d/a.img,file:///d/b.img", "--pool-import", "bdev:///c"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.pool_imports, (std::vector<std::vector<std::string>>{
                                        {"file:///d/a.img", "file:///d/b.img"}, {"bdev:///c"}}));
  EXPECT_FALSE(parse({"--pool-import", ","}).is_ok());

  char tmpl[] = "/tmp/castor-config-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  fs::path f = dir / "e.yaml";
  std::ofstream(f) << "pools:\n"
                      "  - disks: [\"file:///d/a.img?size_mb=64\", file:///d/b.img]\n"
                      "  - disks: bdev:///c\n";
  p = parse({"--config", f.string()});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.pool_imports,
            (std::vector<std::vector<std::string>>{
                {"file:///d/a.img?size_mb=64", "file:///d/b.img"}, {"bdev:///c"}}));
  // Flags replace the file's list.
  p = parse({"--config", f.string(), "--pool-import", "bdev:///x"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.pool_imports, (std::vector<std::vector<std::string>>{{"bdev:///x"}}));

  for (const std::string bad :
       {"pools: file:///d/a.img\n", "pools:\n  - file:///d/a.img\n", "pools:\n  - disk: [a]\n",
        "pools:\n  - disks: []\n", "pools:\n  - disks: [[a]]\n"}) {
    std::ofstream(f) << bad;
    p = parse({"--config", f.string()});
    EXPECT_FALSE(p.is_ok()) << bad;
    if (!p.is_ok()) {
      EXPECT_NE(p.status().message().find("pool"), std::string::npos) << p.status().message();
    }
  }
  fs::remove_all(dir);
}

TEST(EngineConfigTest, TargetsFromFlagsAndYaml) {
  auto p = parse({});
  ASSERT_TRUE(p.is_ok());
  EXPECT_TRUE(p->config.nvmf_listen.empty());
  EXPECT_EQ(p->config.nbd_listen, "");

  p = parse({"--nvmf-listen", "127.0.0.1:0", "--nvmf-listen", "[::1]:8420", "--nbd-listen",
             "0.0.0.0:10809", "--nvmf-share", "m0", "--nvmf-share", "r0", "--nbd-export", "disk=m0",
             "--nbd-export", "=m1:ro"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.nvmf_listen, (std::vector<std::string>{"127.0.0.1:0", "[::1]:8420"}));
  EXPECT_EQ(p->config.nbd_listen, "0.0.0.0:10809");
  EXPECT_EQ(p->config.nvmf_shares, (std::vector<std::string>{"m0", "r0"}));
  EXPECT_EQ(p->config.nbd_exports,
            (std::vector<engine::NbdExportSpec>{{"disk", "m0", false}, {"", "m1", true}}));

  for (auto bad : std::vector<std::vector<std::string>>{
           {"--nvmf-listen", "nohost"},
           {"--nbd-listen", "127.0.0.1:99999"},
           {"--nbd-export", "m0"},
           {"--nbd-export", "x=:ro"},
           {"--nbd-export", "x=m0", "--nbd-export", "x=m1"},
           {"--nvmf-share", "m0", "--nvmf-share", "m0"},
           {"--nvmf-listen", "none", "--nvmf-listen", "127.0.0.1:0"}}) {
    auto r = parse(bad);
    EXPECT_FALSE(r.is_ok()) << bad[0] << " " << bad[1];
  }

  char tmpl[] = "/tmp/castor-config-test-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  fs::path f = dir / "e.yaml";
  std::ofstream(f) << "nvmf-listen: 127.0.0.1:8420\n"
                      "nbd-listen: 127.0.0.1:10809\n"
                      "nvmf-share: [m0]\n"
                      "nbd-export:\n  - disk=m0:ro\n  - other=m1\n";
  p = parse({"--config", f.string()});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(p->config.nvmf_listen, (std::vector<std::string>{"127.0.0.1:8420"}));
  EXPECT_EQ(p->config.nbd_listen, "127.0.0.1:10809");
  EXPECT_EQ(p->config.nvmf_shares, (std::vector<std::string>{"m0"}));
  EXPECT_EQ(p->config.nbd_exports,
            (std::vector<engine::NbdExportSpec>{{"disk", "m0", true}, {"other", "m1", false}}));
  // Flags replace the file's lists; "none" drops its listeners.
  p = parse({"--config", f.string(), "--nvmf-listen", "none", "--nbd-listen", "none",
             "--nbd-export", "x=m2"});
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_TRUE(p->config.nvmf_listen.empty());
  EXPECT_EQ(p->config.nbd_listen, "");
  EXPECT_EQ(p->config.nbd_exports, (std::vector<engine::NbdExportSpec>{{"x", "m2", false}}));
  fs::remove_all(dir);
}

TEST(FrontEndsTest, AddressesAndNames) {
  auto hp = api::parse_host_port("127.0.0.1:8420");
  ASSERT_TRUE(hp.is_ok());
  EXPECT_EQ(hp->first, "127.0.0.1");
  EXPECT_EQ(hp->second, 8420);
  hp = api::parse_host_port("[::1]:0");
  ASSERT_TRUE(hp.is_ok());
  EXPECT_EQ(hp->first, "::1");
  EXPECT_EQ(hp->second, 0);
  for (const char* bad : {"", "host", ":80", "h:", "h:65536", "::1:80", "[::1:80", "h:8x"}) {
    EXPECT_FALSE(api::parse_host_port(bad).is_ok()) << bad;
  }
  EXPECT_EQ(api::uri_authority("10.0.0.2", 8420), "10.0.0.2:8420");
  EXPECT_EQ(api::uri_authority("::1", 8420), "[::1]:8420");
  auto u = Uuid::parse("301e149e-1ef7-4bd6-b830-b84783c05914");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(nvmf::castor_nqn("replica", *u),
            "nqn.2026-11.io.castor:replica-301e149e-1ef7-4bd6-b830-b84783c05914");
}

// A destroy runs without the front ends' lock: another bdev is exported meanwhile, the
// one being destroyed is not (Busy), and neither is a second destroy of it. Before, the
// lock was held for the whole destroy (a nexus drains for up to 10 s), so every export,
// unexport and publish on the engine waited for it.
frontend::ExportSpec spec_of(const std::string& bdev) {
  frontend::ExportSpec s;
  s.bdev = bdev;
  return s;
}

// One reactor, a registry, pools and the front ends, for the locking tests below.
class FrontEndsLocking : public ::testing::Test {
 protected:
  static reactor::ReactorOptions unpinned() {
    reactor::ReactorOptions o;
    o.pin = false;
    return o;
  }
  FrontEndsLocking() { group.start(); }
  ~FrontEndsLocking() override {
    fe->stop();
    fe.reset();  // its exports release their bdevs
    pools.reset();
    reg.reset();
    group.stop();
  }
  reactor::ReactorGroup group{std::vector<int>{0}, unpinned()};
  std::unique_ptr<bdev::BdevRegistry> reg = std::make_unique<bdev::BdevRegistry>(group);
  std::unique_ptr<pool::PoolManager> pools = std::make_unique<pool::PoolManager>(*reg);
  std::unique_ptr<api::FrontEnds> fe = std::make_unique<api::FrontEnds>(*reg, *pools);
};

TEST_F(FrontEndsLocking, ADestroyHoldsUpOnlyExportsOfWhatItDestroys) {
  {
    bdev::BdevRegistry& reg = *this->reg;
    api::FrontEnds& fe = *this->fe;
    fe.add(std::make_unique<nbd::NbdFrontEnd>(group, reg));
    ASSERT_TRUE(reg.create("malloc:///gone?size_mb=1"));
    ASSERT_TRUE(reg.create("malloc:///other?size_mb=1"));
    std::promise<void> entered, release;
    auto destroying = std::async(std::launch::async, [&] {
      return fe.destroy_unless_exported({"gone"}, [&]() -> Status {
        entered.set_value();
        release.get_future().wait();  // a destroy that takes its time
        return reg.destroy("gone");
      });
    });
    entered.get_future().wait();
    auto other = fe.add_export("nbd", spec_of("other"));
    EXPECT_TRUE(other) << other.status().to_string();
    auto gone = fe.add_export("nbd", spec_of("gone"));
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.status().code(), Errc::kBusy);
    EXPECT_NE(gone.status().message().find("being destroyed"), std::string::npos)
        << gone.status().to_string();
    Status twice = fe.destroy_unless_exported({"gone"}, [] { return Status::ok(); });
    EXPECT_EQ(twice.code(), Errc::kBusy) << twice.to_string();
    release.set_value();
    EXPECT_TRUE(destroying.get());
    EXPECT_FALSE(reg.find("gone"));
    // Exported bdevs still refuse a destroy, naming the export; a failed destroy leaves
    // the bdev exportable again.
    Status exported = fe.destroy_unless_exported({"other"}, [&] { return reg.destroy("other"); });
    EXPECT_EQ(exported.code(), Errc::kBusy) << exported.to_string();
    EXPECT_TRUE(fe.remove_export("nbd", "other"));
    EXPECT_TRUE(fe.add_export("nbd", spec_of("other")));
    EXPECT_TRUE(fe.remove_export("nbd", "other"));
  }
}

// The NBD front end, with a gate in front of remove_export: a removal that waits (as an
// iSCSI node's does for its sessions) for as long as the test says.
class GatedRemoval final : public frontend::FrontEnd {
 public:
  GatedRemoval(reactor::ReactorGroup& g, bdev::BdevRegistry& reg) : inner_(g, reg) {}
  std::promise<void> entered, release;
  const char* protocol() const override { return inner_.protocol(); }
  const char* display_name() const override { return inner_.display_name(); }
  Result<uint16_t> listen(const std::string& host, uint16_t port) override { return inner_.listen(host, port); }
  std::string default_name(const frontend::ExportSpec& spec) const override { return inner_.default_name(spec); }
  Result<frontend::Export> add_export(const frontend::ExportSpec& spec) override { return inner_.add_export(spec); }
  Status remove_export(const std::string& name, bool force) override {
    entered.set_value();
    release.get_future().wait();
    return inner_.remove_export(name, force);
  }
  std::vector<frontend::Export> exports() const override { return inner_.exports(); }
  std::string uri(const std::string& authority, const std::string& name) const override {
    return inner_.uri(authority, name);
  }
  Status check_resize(const frontend::Export& e) const override { return inner_.check_resize(e); }
  void announce_resize(const std::string& bdev) override { inner_.announce_resize(bdev); }
  std::vector<frontend::Metric> metrics() const override { return inner_.metrics(); }
  void stop() override { inner_.stop(); }

 private:
  nbd::NbdFrontEnd inner_;
};

// An unexport runs without the front ends' lock too: exports are listed and other bdevs
// exported meanwhile; the bdev being unexported is not exported again (Busy) until the
// removal is done.
TEST_F(FrontEndsLocking, AnUnexportHoldsUpOnlyItsOwnBdev) {
  {
    bdev::BdevRegistry& reg = *this->reg;
    api::FrontEnds& fe = *this->fe;
    auto gated = std::make_unique<GatedRemoval>(group, reg);
    GatedRemoval& gate = *gated;
    fe.add(std::move(gated));
    ASSERT_TRUE(reg.create("malloc:///a?size_mb=1"));
    ASSERT_TRUE(reg.create("malloc:///b?size_mb=1"));
    ASSERT_TRUE(fe.add_export("nbd", spec_of("a")));
    auto removing = std::async(std::launch::async, [&] { return fe.remove_export("nbd", "a"); });
    gate.entered.get_future().wait();
    EXPECT_EQ(fe.exports("nbd").size(), 1u);  // listed (still there) while it is removed
    EXPECT_TRUE(fe.add_export("nbd", spec_of("b")));
    auto again = fe.add_export("nbd", spec_of("a"));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.status().code(), Errc::kBusy);
    EXPECT_NE(again.status().message().find("being unexported"), std::string::npos)
        << again.status().to_string();
    Status destroy = fe.destroy_unless_exported({"a"}, [] { return Status::ok(); });
    EXPECT_EQ(destroy.code(), Errc::kBusy) << destroy.to_string();
    gate.release.set_value();
    EXPECT_TRUE(removing.get());
    EXPECT_EQ(fe.exports_of("a").size(), 0u);
    EXPECT_TRUE(fe.add_export("nbd", spec_of("a"))) << "exportable again once removed";
  }
}

TEST(ConvertTest, TargetInfo) {
  nvmf::SubsystemInfo s;
  s.nqn = "nqn.2026-11.io.castor:bdev-x";
  s.serial = "abc";
  s.allowed_hosts = {"nqn.h1"};
  s.namespaces = {{1, "m0"}};
  s.controllers = 2;
  v1::NvmfSubsystem sp;
  api::to_proto(s, {"nvmf://127.0.0.1:1/" + s.nqn}, &sp);
  EXPECT_EQ(sp.nqn(), s.nqn);
  EXPECT_EQ(sp.serial(), "abc");
  ASSERT_EQ(sp.namespaces_size(), 1);
  EXPECT_EQ(sp.namespaces(0).nsid(), 1u);
  EXPECT_EQ(sp.namespaces(0).bdev(), "m0");
  EXPECT_EQ(sp.controllers(), 2u);
  ASSERT_EQ(sp.allowed_hosts_size(), 1);
  ASSERT_EQ(sp.uris_size(), 1);

  nvmf::ControllerInfo c{7, "nqn.s", "nqn.h", 3, 15000};
  v1::NvmfController cp;
  api::to_proto(c, &cp);
  EXPECT_EQ(cp.cntlid(), 7u);
  EXPECT_EQ(cp.hostnqn(), "nqn.h");
  EXPECT_EQ(cp.io_queues(), 3u);
  EXPECT_EQ(cp.kato_ms(), 15000u);

  frontend::Export e;
  e.protocol = "nbd";
  e.name = "disk";
  e.bdev = "m0";
  e.read_only = true;
  e.description = "d";
  e.connections = 4;
  e.uris = {"nbd://127.0.0.1:1/disk"};
  v1::NbdExportInfo ep;
  api::to_proto(e, &ep);
  EXPECT_EQ(ep.name(), "disk");
  EXPECT_EQ(ep.bdev(), "m0");
  EXPECT_TRUE(ep.read_only());
  EXPECT_EQ(ep.description(), "d");
  EXPECT_EQ(ep.connections(), 4u);
}

TEST(ConvertTest, IscsiInfo) {
  frontend::Export n;
  n.protocol = "iscsi";
  n.name = "iqn.2026-11.io.castor:m0";
  n.bdev = "m0";
  n.read_only = true;
  n.allowed_hosts = {"iqn.i1"};
  n.chap = true;
  n.connections = 2;
  n.uris = {"iscsi://127.0.0.1:1/" + n.name + "/0"};
  v1::IscsiTargetInfo tp;
  api::to_proto(n, &tp);
  EXPECT_EQ(tp.iqn(), n.name);
  EXPECT_EQ(tp.bdev(), "m0");
  EXPECT_TRUE(tp.read_only());
  EXPECT_TRUE(tp.chap());
  EXPECT_FALSE(tp.mutual_chap());
  ASSERT_EQ(tp.allowed_initiators_size(), 1);
  EXPECT_EQ(tp.sessions(), 2u);
  ASSERT_EQ(tp.uris_size(), 1);

  iscsi::SessionInfo si;
  si.target = n.name;
  si.initiator = "iqn.i1";
  si.isid = "80123456789a";
  si.tsih = 5;
  si.cid = 2;
  si.peer = "127.0.0.1:4000";
  si.data_digest = true;
  v1::IscsiSession sp;
  api::to_proto(si, &sp);
  EXPECT_EQ(sp.target(), n.name);
  EXPECT_EQ(sp.isid(), "80123456789a");
  EXPECT_EQ(sp.tsih(), 5u);
  EXPECT_EQ(sp.cid(), 2u);
  EXPECT_FALSE(sp.header_digest());
  EXPECT_TRUE(sp.data_digest());
}

TEST(ConvertTest, IscsiAccess) {
  google::protobuf::RepeatedPtrField<std::string> inits;
  inits.Add("iqn.i1");
  frontend::ExportSpec spec;
  api::set_iscsi_access("alice", "0123456789ab", "tgt", "ba9876543210", inits, &spec);
  EXPECT_EQ(spec.chap.user, "alice");
  EXPECT_EQ(spec.chap.secret, "0123456789ab");
  EXPECT_TRUE(spec.mutual_chap.enabled());
  EXPECT_EQ(spec.allowed_hosts, std::vector<std::string>{"iqn.i1"});
  api::set_iscsi_access("", "", "", "", {}, &spec);
  EXPECT_FALSE(spec.chap.enabled());
  EXPECT_FALSE(spec.mutual_chap.enabled());
  EXPECT_TRUE(spec.allowed_hosts.empty());
}

TEST(TableTest, HumanBytes) {
  EXPECT_EQ(cli::human_bytes(0), "0 B");
  EXPECT_EQ(cli::human_bytes(1023), "1023 B");
  EXPECT_EQ(cli::human_bytes(1024), "1.0 KiB");
  EXPECT_EQ(cli::human_bytes(64ull << 20), "64.0 MiB");
  EXPECT_EQ(cli::human_bytes(3ull << 29), "1.5 GiB");
}

TEST(TableTest, AlignsColumns) {
  cli::Table t({"NAME", "SIZE"});
  t.add_row({"m0", "64.0 MiB"});
  t.add_row({"longer-name", "1 B"});
  EXPECT_EQ(t.to_string(),
            "NAME         SIZE\n"
            "m0           64.0 MiB\n"
            "longer-name  1 B\n");
}

TEST(TableTest, ParseSize) {
  EXPECT_EQ(cli::parse_size("65536"), 65536u);
  EXPECT_EQ(cli::parse_size("0"), 0u);
  EXPECT_EQ(cli::parse_size("512B"), 512u);
  EXPECT_EQ(cli::parse_size("4KiB"), 4096u);
  EXPECT_EQ(cli::parse_size("4k"), 4096u);
  EXPECT_EQ(cli::parse_size("4MiB"), 4ull << 20);
  EXPECT_EQ(cli::parse_size("4M"), 4ull << 20);
  EXPECT_EQ(cli::parse_size("1GiB"), 1ull << 30);
  EXPECT_EQ(cli::parse_size("1 gb"), 1ull << 30);
  EXPECT_EQ(cli::parse_size("2TiB"), 2ull << 40);
  for (const char* bad :
       {"", "MiB", "4X", "4MiBs", "-1", "1.5GiB", "99999999999999999999", "16777216TiB"}) {
    EXPECT_FALSE(cli::parse_size(bad).has_value()) << bad;
  }
}

TEST(ConvertTest, PoolAndReplicaInfo) {
  pool::PoolInfo p;
  p.name = "p0";
  p.uuid = Uuid::random();
  p.cluster_size = 1 << 20;
  p.disks = {"d0", "d1"};
  p.total_clusters = 10;
  p.used_clusters = 3;
  p.capacity_bytes = 10 << 20;
  p.used_bytes = 3 << 20;
  p.committed_bytes = 50 << 20;
  p.replicas = 2;
  v1::PoolInfo pp;
  api::to_proto(p, &pp);
  EXPECT_EQ(pp.name(), "p0");
  EXPECT_EQ(pp.uuid(), p.uuid.to_string());
  EXPECT_EQ(pp.disks_size(), 2);
  EXPECT_EQ(pp.total_clusters(), 10u);
  EXPECT_EQ(pp.used_bytes(), 3u << 20);
  EXPECT_EQ(pp.committed_bytes(), 50u << 20);
  EXPECT_EQ(pp.replicas(), 2u);
  EXPECT_EQ(pp.state(), "online");

  pool::ReplicaInfo r;
  r.name = "r0";
  r.uuid = Uuid::random();
  r.pool = "p0";
  r.size_bytes = 8 << 20;
  r.thin = true;
  r.allocated_clusters = 3;
  r.uri = "bdev:///r0";
  v1::ReplicaInfo rp;
  api::to_proto(r, 1 << 20, &rp);
  EXPECT_EQ(rp.uuid(), r.uuid.to_string());
  EXPECT_TRUE(rp.thin());
  EXPECT_EQ(rp.allocated_clusters(), 3u);
  EXPECT_EQ(rp.allocated_bytes(), 3u << 20);
  EXPECT_EQ(rp.uri(), "bdev:///r0");
}

TEST(BlockIoTest, IoStatusMapping) {
  using bdev::IoStatus;
  EXPECT_EQ(api::to_grpc_code(api::errc_of(IoStatus::kNoSpace)),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(api::to_grpc_code(api::errc_of(IoStatus::kInvalid)),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(api::to_grpc_code(api::errc_of(IoStatus::kTimedOut)),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(api::to_grpc_code(api::errc_of(IoStatus::kIoError)), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(api::to_grpc_code(api::errc_of(IoStatus::kAborted)), grpc::StatusCode::INTERNAL);
}

}  // namespace
}  // namespace castor
