#include "common/uri.h"
#include "common/crc32c.h"

#include <gtest/gtest.h>

namespace castor {

TEST(Uri, ParsesLocalSchemeWithQuery) {
  auto u = Uri::parse("malloc:///m0?size_mb=64&blk_size=4096");
  ASSERT_TRUE(u) << u.status().to_string();
  EXPECT_EQ(u->scheme, "malloc");
  EXPECT_EQ(u->host, "");
  EXPECT_EQ(u->path, "/m0");
  EXPECT_EQ(u->name_from_path(), "m0");
  EXPECT_EQ(*u->get_u64("size_mb", 0), 64u);
  EXPECT_EQ(*u->get_u64("missing", 7), 7u);
}

TEST(Uri, ParsesHostPortAndPercentEscapes) {
  auto u = Uri::parse("nvmf://10.0.0.2:8420/nqn.2026-11.io.castor:replica-1?hostnqn=a%3Ab");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "10.0.0.2");
  EXPECT_EQ(*u->port, 8420);
  EXPECT_EQ(u->path, "/nqn.2026-11.io.castor:replica-1");
  EXPECT_EQ(u->get("hostnqn"), "a:b");
  auto v6 = Uri::parse("nvmf://[::1]:4420/x");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(*v6->port, 4420);
}

TEST(Uri, RejectsMalformedInputWithClearErrors) {
  for (const char* bad : {"m0", "://x", "MAL LOC:///x", "x://h:99999/", "x://h:/p",
                          "x:///p?a=%zz", "x:///p?a=1&a=2", "x:///p?=1", "x:///p?a=%4"}) {
    auto u = Uri::parse(bad);
    EXPECT_FALSE(u) << bad;
    if (!u) {
      EXPECT_EQ(u.status().code(), Errc::kInvalidArgument) << bad;
    }
  }
  auto u = Uri::parse("malloc:///m?size_mb=abc&typo=1");
  ASSERT_TRUE(u);
  auto n = u->get_u64("size_mb", 0);
  ASSERT_FALSE(n);
  EXPECT_NE(n.status().message().find("size_mb=abc"), std::string::npos);
  auto k = u->check_keys({"size_mb"});
  ASSERT_FALSE(k);
  EXPECT_NE(k.message().find("typo"), std::string::npos);
}

TEST(Crc32c, KnownVectorAndChaining) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

}  // namespace castor
