// castor-pool-check against a pool on a real file, before and after damage.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "pool_harness.h"

namespace castor::pool::test {
namespace {

std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), f)) out.append(buf, n);
  int rc = pclose(f);
  return {WEXITSTATUS(rc), out};
}

TEST(PoolCheckTool, PassesOnAHealthyPoolAndNamesDamage) {
  PoolEnv e;
  std::string img = e.path("pool.img");
  ASSERT_TRUE(e.reg->create("file://" + img + "?size_mb=32"));
  PoolCreateOptions po;
  po.name = "chk";
  po.disks = {"pool.img"};
  po.cluster_size = 1 << 20;
  ASSERT_TRUE(e.pools->create(po));
  ASSERT_TRUE(e.pools->create_replica({"chk", "a", 4 << 20, false, std::nullopt}));
  ASSERT_TRUE(e.pools->create_replica({"chk", "b", 64 << 20, true, std::nullopt}));
  ASSERT_EQ(e.fill("b", 1000, 1, 7), bdev::IoStatus::kSuccess);
  ASSERT_TRUE(e.pools->export_pool("chk"));

  auto [rc, out] = run(std::string(CASTOR_POOL_CHECK) + " -v " + img);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("pool chk"), std::string::npos) << out;
  EXPECT_NE(out.find("5 of"), std::string::npos) << out;  // 4 thick + 1 thin cluster
  EXPECT_NE(out.find("ok: every invariant holds"), std::string::npos) << out;
  auto [jrc, json] = run(std::string(CASTOR_POOL_CHECK) + " -o json file://" + img);
  EXPECT_EQ(jrc, 0);
  EXPECT_NE(json.find("\"used_clusters\": 5"), std::string::npos) << json;

  // Zero both label copies: the tool says so and exits 1.
  {
    std::fstream f(img, std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> z(8192, 0);
    f.write(z.data(), static_cast<std::streamsize>(z.size()));
  }
  auto [brc, bad] = run(std::string(CASTOR_POOL_CHECK) + " " + img);
  EXPECT_EQ(brc, 1) << bad;
  EXPECT_NE(bad.find("not a Castor pool label"), std::string::npos) << bad;
  auto [mrc, missing] = run(std::string(CASTOR_POOL_CHECK) + " " + e.path("nope.img"));
  EXPECT_EQ(mrc, 2) << missing;
}

}  // namespace
}  // namespace castor::pool::test
