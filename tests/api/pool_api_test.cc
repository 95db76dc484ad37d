// End-to-end tests of pools and replicas through the real castor-engine: their
// lifecycle and errors through castorctl and gRPC, a restart after SIGTERM (pool import
// by flag and by YAML) and a kill -9 loop that checks every acknowledged operation and
// write survives.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "common/uuid.h"
#include "engine_process.h"

namespace castor::api {
namespace {

using namespace castor::api::testing;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kBlock = 4096;

// ---- gRPC helpers ----

grpc::Status create_pool(Engine& e, const std::string& name, const std::vector<std::string>& disks,
                         uint64_t cluster_size, v1::PoolInfo* out = nullptr) {
  v1::CreatePoolRequest req;
  req.set_name(name);
  for (const auto& d : disks) req.add_disks(d);
  req.set_cluster_size(cluster_size);
  v1::PoolInfo tmp;
  return e.stub().CreatePool(ctx().get(), req, out ? out : &tmp);
}

grpc::Status import_pool(Engine& e, const std::vector<std::string>& disks,
                         v1::PoolInfo* out = nullptr) {
  v1::ImportPoolRequest req;
  for (const auto& d : disks) req.add_disks(d);
  v1::PoolInfo tmp;
  return e.stub().ImportPool(ctx().get(), req, out ? out : &tmp);
}

std::vector<v1::PoolInfo> list_pools(Engine& e) {
  v1::ListPoolsResponse resp;
  grpc::Status s = e.stub().ListPools(ctx().get(), v1::ListPoolsRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.pools().begin(), resp.pools().end()};
}

grpc::Status create_replica(Engine& e, const std::string& pool, const std::string& name,
                            uint64_t size, bool thin, const std::string& uuid = "",
                            v1::ReplicaInfo* out = nullptr) {
  v1::CreateReplicaRequest req;
  req.set_pool(pool);
  req.set_name(name);
  req.set_size_bytes(size);
  req.set_thin(thin);
  req.set_uuid(uuid);
  v1::ReplicaInfo tmp;
  return e.stub().CreateReplica(ctx().get(), req, out ? out : &tmp);
}

grpc::Status grow_replica(Engine& e, const std::string& name, uint64_t size,
                          v1::ReplicaInfo* out = nullptr) {
  v1::GrowReplicaRequest req;
  req.set_name(name);
  req.set_size_bytes(size);
  v1::ReplicaInfo tmp;
  return e.stub().GrowReplica(ctx().get(), req, out ? out : &tmp);
}

grpc::Status destroy_replica(Engine& e, const std::string& name) {
  v1::DestroyReplicaRequest req;
  req.set_name(name);
  v1::DestroyReplicaResponse resp;
  return e.stub().DestroyReplica(ctx().get(), req, &resp);
}

// Replicas by name (all pools).
std::map<std::string, v1::ReplicaInfo> list_replicas(Engine& e) {
  v1::ListReplicasResponse resp;
  grpc::Status s = e.stub().ListReplicas(ctx().get(), v1::ListReplicasRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::map<std::string, v1::ReplicaInfo> out;
  for (const auto& r : resp.replicas()) out[r.name()] = r;
  return out;
}

// `len` bytes of a pattern unique to `seed`.
std::string pattern(uint64_t seed, size_t len) {
  std::string out(len, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, len - i));
  }
  return out;
}

std::string file_uri(const fs::path& p, int size_mb) {
  return "file://" + p.string() + "?size_mb=" + std::to_string(size_mb);
}

// The concatenation of a table row's cells from `from` on (a human size is two cells).
std::string cells(const std::vector<std::string>& row, size_t from, size_t n) {
  std::string out;
  for (size_t i = from; i < from + n && i < row.size(); ++i)
    out += (out.empty() ? "" : " ") + row[i];
  return out;
}

class PoolApiTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(engine_.start({"--reactors", "2"})) << engine_.error(); }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- engine log ----\n" << engine_.all_logs();
  }
  std::string disk(int i = 0) const {
    return file_uri(engine_.dir() / ("disk" + std::to_string(i) + ".img"), 64);
  }
  Engine engine_;
};

TEST_F(PoolApiTest, LifecycleThroughCtlAndGrpc) {
  // Create through castorctl: the table has the pool's row.
  auto r = engine_.ctl({"pool", "create", "p0", "--disk", disk(), "--cluster-size", "1MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0], "NAME  DISKS      CLUSTER  CAPACITY  USED  COMMITTED  REPLICAS  STATE");
  auto row = table_row(r.out, "p0");
  ASSERT_EQ(row.size(), 12u) << r.out;  // sizes are two cells each
  EXPECT_EQ(row[1], "disk0.img");
  EXPECT_EQ(cells(row, 2, 2), "1.0 MiB");
  EXPECT_EQ(cells(row, 6, 2), "0 B");
  EXPECT_EQ(row[10], "0");
  EXPECT_EQ(row[11], "online");

  auto pools = list_pools(engine_);
  ASSERT_EQ(pools.size(), 1u);
  const v1::PoolInfo p0 = pools[0];
  EXPECT_EQ(p0.name(), "p0");
  EXPECT_EQ(p0.cluster_size(), kMiB);
  ASSERT_EQ(p0.disks_size(), 1);
  EXPECT_EQ(p0.disks(0), "disk0.img");
  EXPECT_GT(p0.total_clusters(), 32u);
  EXPECT_LE(p0.total_clusters(), 64u);
  EXPECT_EQ(p0.capacity_bytes(), p0.total_clusters() * kMiB);
  EXPECT_EQ(p0.used_clusters(), 0u);
  EXPECT_EQ(p0.state(), "online");
  EXPECT_TRUE(Uuid::parse(p0.uuid()).has_value()) << p0.uuid();

  // A thick replica through castorctl (JSON), a thin one with a chosen UUID through gRPC.
  r = engine_.ctl({"-o", "json", "replica", "create", "p0", "r0", "--size", "4MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["name"], "r0");
  EXPECT_EQ(j["pool"], "p0");
  EXPECT_EQ(j["size_bytes"].get<uint64_t>(), 4 * kMiB);
  EXPECT_FALSE(j["thin"].get<bool>());
  EXPECT_EQ(j["allocated_clusters"].get<uint64_t>(), 4u);
  EXPECT_EQ(j["allocated_bytes"].get<uint64_t>(), 4 * kMiB);
  EXPECT_EQ(j["uri"], "bdev:///r0");

  const std::string t0_uuid = Uuid::random().to_string();
  v1::ReplicaInfo t0;
  grpc::Status s = create_replica(engine_, "p0", "t0", 1024 * kMiB, true, t0_uuid, &t0);
  ASSERT_TRUE(s.ok()) << s.error_message();  // thin: may exceed the pool
  EXPECT_EQ(t0.uuid(), t0_uuid);
  EXPECT_TRUE(t0.thin());
  EXPECT_EQ(t0.allocated_clusters(), 0u);

  r = engine_.ctl({"replica", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out)[0].rfind("NAME  POOL  SIZE", 0), 0u) << r.out;
  row = table_row(r.out, "r0");
  ASSERT_GE(row.size(), 7u) << r.out;
  EXPECT_EQ(cells(row, 1, 3), "p0 4.0 MiB");
  EXPECT_EQ(row[4], "thick");
  row = table_row(r.out, "t0");
  ASSERT_GE(row.size(), 8u) << r.out;
  EXPECT_EQ(cells(row, 2, 3), "1.0 GiB thin");
  EXPECT_EQ(row[7], t0_uuid);

  // Replicas are bdevs; their bdev cannot be destroyed behind the pool's back.
  auto replicas = list_replicas(engine_);
  ASSERT_EQ(replicas.size(), 2u);
  r = engine_.ctl({"-o", "json", "bdev", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, json> bdevs;
  for (const auto& b : json::parse(r.out)) bdevs[b["name"]] = b;
  ASSERT_TRUE(bdevs.count("r0")) << r.out;
  EXPECT_EQ(bdevs["r0"]["module"], "replica");
  EXPECT_EQ(bdevs["t0"]["uuid"], t0_uuid);
  EXPECT_EQ(bdevs["disk0.img"]["claimed_by"], "pool:p0");
  expect_ctl_error(engine_.ctl({"bdev", "destroy", "r0"}), "r0");

  // Block I/O through gRPC: data round-trips and the thin replica allocates a cluster.
  const std::string data = pattern(1, 8192);
  s = write_blocks(engine_.stub(), "t0", 3 * kMiB, data);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::string back;
  ASSERT_TRUE(read_blocks(engine_.stub(), "t0", 3 * kMiB, 8192, &back).ok());
  EXPECT_EQ(back, data);
  ASSERT_TRUE(read_blocks(engine_.stub(), "t0", 5 * kMiB, 4096, &back).ok());
  EXPECT_EQ(back, std::string(4096, '\0'));  // never written
  EXPECT_EQ(list_replicas(engine_)["t0"].allocated_clusters(), 1u);

  // ... and through castorctl, with a file and a pattern.
  const fs::path in = engine_.dir() / "in.bin", out = engine_.dir() / "out.bin";
  std::ofstream(in, std::ios::binary) << pattern(2, 3 * kBlock);
  r = engine_.ctl({"bdev", "write", "r0", "--offset", "1MiB", "--file", in.string(), "--flush"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "wrote 12288 bytes to 'r0' at offset 1048576 (flushed)\n");
  r = engine_.ctl(
      {"bdev", "read", "r0", "--offset", "1048576", "--length", "12KiB", "--file", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(out), pattern(2, 3 * kBlock));
  r = engine_.ctl({"bdev", "write", "r0", "--pattern", "0xa5", "--length", "4096"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = engine_.ctl({"bdev", "read", "r0", "--length", "4096"});  // raw to stdout
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string(4096, '\xa5'));

  // Block I/O errors.
  s = read_blocks(engine_.stub(), "t0", 100, 4096, &back);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = read_blocks(engine_.stub(), "t0", 0, 8 * kMiB, &back);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = read_blocks(engine_.stub(), "r0", 4 * kMiB, 4096, &back);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = read_blocks(engine_.stub(), "nope", 0, 4096, &back);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  s = read_blocks(engine_.stub(), "disk0.img", 0, 4096, &back);  // claimed by the pool
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  expect_ctl_error(
      engine_.ctl({"bdev", "write", "r0", "--offset", "512", "--pattern", "1", "--length", "4096"}),
      "block size");

  // Grow: larger works, smaller is INVALID_ARGUMENT.
  r = engine_.ctl({"-o", "json", "replica", "grow", "r0", "--size", "6MiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["size_bytes"].get<uint64_t>(), 6 * kMiB);
  EXPECT_EQ(json::parse(r.out)["allocated_clusters"].get<uint64_t>(), 6u);
  s = grow_replica(engine_, "r0", 2 * kMiB);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  expect_ctl_error(engine_.ctl({"replica", "grow", "r0", "--size", "2MiB"}), "r0");
  ASSERT_TRUE(read_blocks(engine_.stub(), "r0", 1 * kMiB, 3 * kBlock, &back).ok());
  EXPECT_EQ(back, pattern(2, 3 * kBlock));  // growing kept the data

  // A thick replica larger than the free space: RESOURCE_EXHAUSTED, nothing created.
  s = create_replica(engine_, "p0", "big", 1024 * kMiB, false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  expect_ctl_error(engine_.ctl({"replica", "create", "p0", "big", "--size", "1GiB"}), "p0");
  EXPECT_FALSE(list_replicas(engine_).count("big"));

  // Duplicate pool name, unknown pool, disk already in a pool, duplicate replica.
  s = create_pool(engine_, "p0", {disk(1)}, kMiB);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  expect_ctl_error(engine_.ctl({"pool", "create", "p0", "--disk", disk(1)}), "p0");
  s = create_pool(engine_, "p1", {"bdev:///disk0.img"}, kMiB);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  expect_ctl_error(engine_.ctl({"pool", "create", "p1", "--disk", "bdev:///disk0.img"}),
                   "disk0.img");
  s = create_replica(engine_, "nope", "x", kMiB, false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  expect_ctl_error(engine_.ctl({"replica", "create", "nope", "x", "--size", "1MiB"}), "nope");
  expect_ctl_error(engine_.ctl({"pool", "export", "nope"}), "nope");
  expect_ctl_error(engine_.ctl({"replica", "list", "--pool", "nope"}), "nope");
  s = create_replica(engine_, "p0", "r0", kMiB, false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_EQ(list_pools(engine_).size(), 1u);

  // Usage errors never reach the engine.
  r = engine_.ctl({"replica", "create", "p0", "x", "--size", "lots"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;

  // Destroy one replica; export; the disk is free and imports again with the same
  // replicas and data.
  r = engine_.ctl({"replica", "destroy", "r0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "replica 'r0' destroyed\n");
  expect_ctl_error(engine_.ctl({"replica", "destroy", "r0"}), "r0");
  EXPECT_EQ(destroy_replica(engine_, "r0").error_code(), grpc::StatusCode::NOT_FOUND);
  r = engine_.ctl({"pool", "export", "p0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(list_pools(engine_).empty());
  EXPECT_TRUE(list_replicas(engine_).empty());
  r = engine_.ctl({"-o", "json", "bdev", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json::parse(r.out).empty()) << r.out;  // the pool's own disk bdev is gone

  // A disk holding an exported pool cannot go into a new one.
  v1::CreateBdevRequest breq;
  breq.set_uri(disk());
  v1::BdevInfo binfo;
  ASSERT_TRUE(engine_.stub().CreateBdev(ctx().get(), breq, &binfo).ok());
  s = create_pool(engine_, "p1", {"bdev:///disk0.img"}, kMiB);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("p0"), std::string::npos) << s.error_message();

  r = engine_.ctl({"-o", "json", "pool", "import", "--disk", "bdev:///disk0.img"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["name"], "p0");
  EXPECT_EQ(j["uuid"], p0.uuid());
  EXPECT_EQ(j["replicas"].get<int>(), 1);
  replicas = list_replicas(engine_);
  ASSERT_EQ(replicas.size(), 1u);
  EXPECT_EQ(replicas["t0"].uuid(), t0_uuid);
  EXPECT_EQ(replicas["t0"].size_bytes(), 1024 * kMiB);
  ASSERT_TRUE(read_blocks(engine_.stub(), "t0", 3 * kMiB, 8192, &back).ok());
  EXPECT_EQ(back, data);

  r = engine_.ctl({"pool", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  row = table_row(r.out, "p0");
  ASSERT_EQ(row.size(), 12u) << r.out;
  EXPECT_EQ(cells(row, 6, 2), "1.0 MiB");  // USED: the one thin cluster
  EXPECT_EQ(cells(row, 8, 2), "1.0 GiB");  // COMMITTED
  EXPECT_EQ(row[10], "1");

  // Destroy: the disk no longer imports; the bdev we created stays.
  r = engine_.ctl({"pool", "destroy", "p0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(list_pools(engine_).empty());
  s = import_pool(engine_, {"bdev:///disk0.img"});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.error_message().find('\n'), std::string::npos);
  expect_ctl_error(engine_.ctl({"pool", "import", "--disk", "bdev:///disk0.img"}), "import");
}

// Writes patterns to a thick and a thin replica, restarts the engine (pool imported by
// --pool-import, then by a YAML `pools:` entry) and reads them back.
TEST(PoolRestartTest, CleanRestartServesSameReplicasAndData) {
  Engine e;
  const std::string uri = file_uri(e.dir() / "disk0.img", 64);
  ASSERT_TRUE(e.start({"--log-level", "info"})) << e.error();
  ASSERT_TRUE(create_pool(e, "p0", {uri}, kMiB).ok());
  ASSERT_TRUE(create_replica(e, "p0", "thick0", 8 * kMiB, false).ok());
  ASSERT_TRUE(create_replica(e, "p0", "thin0", 32 * kMiB, true).ok());
  ASSERT_TRUE(grow_replica(e, "thin0", 40 * kMiB).ok());
  std::map<std::pair<std::string, uint64_t>, std::string> written;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 24; ++i) {
    const std::string bdev = i % 2 ? "thin0" : "thick0";
    const uint64_t size = i % 2 ? 40 * kMiB : 8 * kMiB;
    const uint64_t len = kBlock * (1 + rng() % 4);
    const uint64_t off = (rng() % ((size - len) / kBlock)) * kBlock;
    written[{bdev, off}] = pattern(100 + static_cast<uint64_t>(i), len);
  }
  for (const auto& [where, data] : written) {
    grpc::Status s = write_blocks(e.stub(), where.first, where.second, data);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const auto before = list_replicas(e);
  ASSERT_EQ(before.size(), 2u);

  const std::string yaml = (e.dir() / "engine.yaml").string();
  std::ofstream(yaml) << "reactors: 2\npools:\n  - disks:\n      - " << uri << "\n";
  const std::vector<std::vector<std::string>> restarts = {
      {"--pool-import", uri}, {"--config", yaml}, {"--pool-import", uri, "--reactors", "2"}};
  for (const auto& args : restarts) {
    SCOPED_TRACE(args[0]);
    auto st = e.terminate(5s);
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(WEXITSTATUS(*st), 0);
    std::vector<std::string> argv = args;
    argv.insert(argv.end(), {"--log-level", "info"});
    ASSERT_TRUE(e.start(argv)) << e.error();
    EXPECT_NE(e.log().find("imported pool 'p0'"), std::string::npos) << e.log();
    const auto after = list_replicas(e);
    ASSERT_EQ(after.size(), before.size());
    for (const auto& [name, r] : before) {
      ASSERT_TRUE(after.count(name)) << name;
      EXPECT_EQ(after.at(name).uuid(), r.uuid());
      EXPECT_EQ(after.at(name).size_bytes(), r.size_bytes());
      EXPECT_EQ(after.at(name).thin(), r.thin());
      EXPECT_EQ(after.at(name).allocated_clusters(), r.allocated_clusters());
    }
    for (const auto& [where, data] : written) {
      std::string back;
      grpc::Status s = read_blocks(e.stub(), where.first, where.second, data.size(), &back);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_TRUE(back == data) << where.first << " at " << where.second;
    }
  }
  auto st = e.terminate(5s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(WEXITSTATUS(*st), 0);
}

TEST(PoolRestartTest, FailedImportExitsOneWithOneLine) {
  Engine e;
  std::ofstream(e.dir() / "zero.img", std::ios::binary) << std::string(8 * kMiB, '\0');
  const std::vector<std::string> disks = {"file://" + (e.dir() / "missing.img").string(),
                                          "uring://" + (e.dir() / "zero.img").string()};
  for (const auto& d : disks) {
    SCOPED_TRACE(d);
    EXPECT_FALSE(e.start({"--pool-import", d}));
    auto lines = lines_of(e.log());
    std::vector<std::string> errors;
    for (const auto& l : lines) {
      if (l.rfind("castor-engine: error: ", 0) == 0) errors.push_back(l);
    }
    ASSERT_EQ(errors.size(), 1u) << e.log();
    EXPECT_EQ(errors[0].rfind("castor-engine: error: cannot import pool from " + d + ": ", 0), 0u)
        << errors[0];
  }
}

// ---- kill -9 ----

// What the client knows about one replica of the kill test.
struct ReplicaModel {
  std::string uuid;
  bool thin = false;
  bool create_acked = false;     // else the create may not have happened
  bool destroy_started = false;  // a destroy was sent (acknowledged or not)
  bool destroy_acked = false;
  uint64_t acked_size = 0;   // the size last acknowledged (create or grow)
  std::set<uint64_t> sizes;  // every size it may have now
};

// The test's view of the engine: shared by the writer and the control thread.
struct KillModel {
  std::mutex mu;
  std::map<std::string, ReplicaModel> replicas;
  // Per 4 KiB block of the thin replica: every sequence number it may hold (0 = zeros).
  std::map<uint64_t, std::set<uint64_t>> blocks;
  uint64_t acked_writes = 0;
  uint64_t acked_ops = 0;
};

// A block stamped with `seq` and its index, so a misplaced block is caught too.
std::string stamped_block(uint64_t block, uint64_t seq) {
  std::string out(kBlock, '\0');
  for (size_t i = 0; i < kBlock; i += 16) {
    std::memcpy(out.data() + i, &seq, 8);
    std::memcpy(out.data() + i + 8, &block, 8);
  }
  return out;
}

constexpr const char* kThin = "thin0";
constexpr uint64_t kThinSize = 96 * kMiB;
constexpr uint64_t kThinBlocks = kThinSize / kBlock;
constexpr size_t kMaxOpReplicas = 4;
constexpr uint64_t kMaxOpReplicaSize = 4 * kMiB;

// Single writer: random blocks of the thin replica, flushed, until `stop`.
void writer_loop(Engine& e, KillModel& m, std::atomic<bool>& stop, std::atomic<uint64_t>& seq,
                 uint64_t seed) {
  auto stub = v1::EngineService::NewStub(
      grpc::CreateChannel(e.endpoint(), grpc::InsecureChannelCredentials()));
  std::mt19937_64 rng(seed);
  while (!stop.load()) {
    const uint64_t block = rng() % kThinBlocks;
    const uint64_t s = ++seq;
    {
      std::lock_guard lk(m.mu);
      auto& b = m.blocks[block];
      if (b.empty()) b.insert(0);
      b.insert(s);  // from now on it may hold s
    }
    v1::WriteBlocksRequest req;
    req.set_bdev(kThin);
    req.set_offset_bytes(block * kBlock);
    req.set_data(stamped_block(block, s));
    req.set_flush(true);
    v1::WriteBlocksResponse resp;
    grpc::Status st = stub->WriteBlocks(ctx(5s).get(), req, &resp);
    if (!st.ok()) {
      // `stop` is set just before the kill: an error without it is the engine's.
      if (!stop.load()) ADD_FAILURE() << "write before the kill failed: " << st.error_message();
      return;
    }
    std::lock_guard lk(m.mu);
    m.blocks[block] = {s};
    ++m.acked_writes;
  }
}

// Random creates, grows and destroys of small replicas, until `stop`.
void control_loop(Engine& e, KillModel& m, std::atomic<bool>& stop, int& next_name, uint64_t seed) {
  auto stub = v1::EngineService::NewStub(
      grpc::CreateChannel(e.endpoint(), grpc::InsecureChannelCredentials()));
  std::mt19937_64 rng(seed);
  while (!stop.load()) {
    std::vector<std::string> live;  // acknowledged, not being destroyed
    {
      std::lock_guard lk(m.mu);
      for (const auto& [n, r] : m.replicas) {
        if (n != kThin && r.create_acked && !r.destroy_started) live.push_back(n);
      }
    }
    const unsigned dice = static_cast<unsigned>(rng() % 3);
    grpc::Status st;
    if (live.empty() || (dice == 0 && live.size() < kMaxOpReplicas)) {
      const std::string name = "k" + std::to_string(next_name++);
      const uint64_t size = (1 + rng() % 2) * kMiB;
      const bool thin = rng() % 2;
      const std::string uuid = Uuid::random().to_string();
      {
        std::lock_guard lk(m.mu);
        auto& r = m.replicas[name];
        r.uuid = uuid;
        r.thin = thin;
        r.sizes = {size};
      }
      v1::CreateReplicaRequest req;
      req.set_pool("p0");
      req.set_name(name);
      req.set_size_bytes(size);
      req.set_thin(thin);
      req.set_uuid(uuid);
      v1::ReplicaInfo resp;
      st = stub->CreateReplica(ctx(5s).get(), req, &resp);
      if (st.ok()) {
        std::lock_guard lk(m.mu);
        auto& r = m.replicas[name];
        r.create_acked = true;
        r.acked_size = size;
        ++m.acked_ops;
      }
    } else if (dice == 1 || live.size() >= kMaxOpReplicas) {
      const std::string& name = live[rng() % live.size()];
      {
        std::lock_guard lk(m.mu);
        m.replicas[name].destroy_started = true;
      }
      v1::DestroyReplicaRequest req;
      req.set_name(name);
      v1::DestroyReplicaResponse resp;
      st = stub->DestroyReplica(ctx(5s).get(), req, &resp);
      if (st.ok()) {
        std::lock_guard lk(m.mu);
        m.replicas[name].destroy_acked = true;
        ++m.acked_ops;
      }
    } else {
      const std::string& name = live[rng() % live.size()];
      uint64_t size = 0;
      {
        std::lock_guard lk(m.mu);
        auto& r = m.replicas[name];
        size = r.acked_size + kMiB;
        if (size > kMaxOpReplicaSize) continue;
        r.sizes.insert(size);
      }
      v1::GrowReplicaRequest req;
      req.set_name(name);
      req.set_size_bytes(size);
      v1::ReplicaInfo resp;
      st = stub->GrowReplica(ctx(5s).get(), req, &resp);
      if (st.ok()) {
        std::lock_guard lk(m.mu);
        auto& r = m.replicas[name];
        r.acked_size = size;
        r.sizes = {size};
        ++m.acked_ops;
      }
    }
    if (!st.ok()) {
      if (!stop.load()) {
        ADD_FAILURE() << "control operation before the kill failed: " << st.error_message();
      }
      return;
    }
  }
}

// Checks the restarted engine against the model, then makes the model exact again.
void verify_and_settle(Engine& e, KillModel& m, int iteration) {
  SCOPED_TRACE("iteration " + std::to_string(iteration));
  auto actual = list_replicas(e);
  for (const auto& [name, info] : actual) {
    auto it = m.replicas.find(name);
    ASSERT_NE(it, m.replicas.end()) << "unexpected replica " << name;
    const ReplicaModel& r = it->second;
    EXPECT_FALSE(r.destroy_acked) << name << " was destroyed";
    EXPECT_EQ(info.uuid(), r.uuid) << name;
    EXPECT_EQ(info.thin(), r.thin) << name;
    EXPECT_GE(info.size_bytes(), r.acked_size) << name;
    EXPECT_TRUE(r.sizes.count(info.size_bytes())) << name << " has size " << info.size_bytes();
  }
  for (auto it = m.replicas.begin(); it != m.replicas.end();) {
    ReplicaModel& r = it->second;
    const bool must_exist = r.create_acked && !r.destroy_started;
    auto a = actual.find(it->first);
    if (must_exist) {
      EXPECT_NE(a, actual.end()) << "acknowledged replica " << it->first << " lost";
    }
    if (a == actual.end()) {
      it = m.replicas.erase(it);
      continue;
    }
    r.create_acked = true;
    r.destroy_started = false;
    r.acked_size = a->second.size_bytes();
    r.sizes = {r.acked_size};
    ++it;
  }

  // Every block written: the last acknowledged value, or an unacknowledged later one.
  size_t bad = 0;
  for (auto& [block, seqs] : m.blocks) {
    std::string back;
    grpc::Status s = read_blocks(e.stub(), kThin, block * kBlock, kBlock, &back);
    ASSERT_TRUE(s.ok()) << s.error_message();
    uint64_t seq = 0, idx = 0;
    std::memcpy(&seq, back.data(), 8);
    std::memcpy(&idx, back.data() + 8, 8);
    const bool ok = seqs.count(seq) &&
                    back == (seq == 0 ? std::string(kBlock, '\0') : stamped_block(block, seq));
    if (!ok && bad++ < 5) {
      ADD_FAILURE() << "block " << block << " holds seq " << seq << " (block stamp " << idx
                    << "), expected one of " << ::testing::PrintToString(seqs);
    }
    if (ok) seqs = {seq};
  }
  EXPECT_EQ(bad, 0u);
}

TEST(PoolKillTest, KillNineKeepsEveryAcknowledgedOperationAndWrite) {
  constexpr int kIterations = 15;
  Engine e;
  const std::string uri = file_uri(e.dir() / "disk0.img", 128);
  const std::vector<std::string> args = {"--pool-import", uri,   "--reactors", "2",
                                         "--log-level",   "info"};
  ASSERT_TRUE(e.start({"--reactors", "2", "--log-level", "info"})) << e.error();
  ASSERT_TRUE(create_pool(e, "p0", {uri}, kMiB).ok());
  KillModel m;
  {
    v1::ReplicaInfo info;
    ASSERT_TRUE(create_replica(e, "p0", kThin, kThinSize, true, "", &info).ok());
    auto& r = m.replicas[kThin];
    r.uuid = info.uuid();
    r.thin = true;
    r.create_acked = true;
    r.acked_size = kThinSize;
    r.sizes = {kThinSize};
  }
  // The pool must come back after a kill at any moment, even right after creation.
  e.stop_hard();
  ASSERT_TRUE(e.start(args)) << e.error();

  // CASTOR_KILL_TEST_SEED replays a run (the timing still differs).
  const char* env_seed = std::getenv("CASTOR_KILL_TEST_SEED");
  const uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 10) : std::random_device{}();
  std::cerr << "kill test seed " << seed << "\n";
  std::mt19937_64 rng(seed);
  std::atomic<uint64_t> seq{0};
  int next_name = 0;
  for (int it = 0; it < kIterations && !::testing::Test::HasFailure(); ++it) {
    std::atomic<bool> stop{false};
    std::thread writer(writer_loop, std::ref(e), std::ref(m), std::ref(stop), std::ref(seq), rng());
    std::thread control(control_loop, std::ref(e), std::ref(m), std::ref(stop), std::ref(next_name),
                        rng());
    std::this_thread::sleep_for(std::chrono::milliseconds(10 + rng() % 291));
    stop = true;
    e.stop_hard();  // SIGKILL by pid
    writer.join();
    control.join();
    ASSERT_TRUE(e.start(args)) << "iteration " << it << ": " << e.error();
    verify_and_settle(e, m, it);
  }
  std::cerr << "kill test: " << m.acked_writes << " acknowledged writes, " << m.acked_ops
            << " acknowledged replica operations, " << m.blocks.size() << " blocks checked\n";
  EXPECT_GT(m.acked_writes, 0u);
  EXPECT_GT(m.acked_ops, 0u);
  if (::testing::Test::HasFailure()) std::cerr << e.all_logs();
  e.stop_hard();
}

}  // namespace
}  // namespace castor::api
