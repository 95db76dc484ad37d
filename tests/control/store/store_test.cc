// The Store contract (src/control/store/store.h), run unchanged against both back ends:
// SQLite on a temporary file and etcd as a real /usr/bin/etcd on free loopback ports.
// Then what only one back end has: etcd's fencing by lease expiry, compaction,
// endpoint fail-over and restarts; SQLite's file layout.

#include "control/store/store.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "control/store/etcd_store.h"
#include "control/store/sqlite_store.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "etcd_process.h"  // tests/control/

namespace castor::control {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::EtcdProcess;

enum class Backend { kSqlite, kEtcd };
void PrintTo(Backend b, std::ostream* os) {
  *os << (b == Backend::kSqlite ? "sqlite" : "etcd");
}

StoreOptions test_options() {
  StoreOptions o;
  o.page_limit = 7;  // so that a few dozen keys already need several pages
  o.lease_ttl_s = 2;
  o.request_timeout_ms = 5000;
  o.prefix = "/castor-test/";
  return o;
}

// Polls `pred` until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// A temporary directory, and (for etcd) a running etcd; makes opened stores on them.
class StoreFixture {
 protected:
  void set_up(Backend b) {
    backend_ = b;
    char tmpl[] = "/tmp/castor-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    if (b == Backend::kEtcd) {
      etcd_ = std::make_unique<EtcdProcess>();
      // Never skipped: a missing etcd is a broken test machine.
      ASSERT_TRUE(etcd_->start()) << etcd_->error();
    }
  }
  void tear_down() {
    etcd_.reset();  // stops etcd by its pid
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  std::string uri() const {
    return backend_ == Backend::kSqlite ? "sqlite://" + (dir_ / "castor.db").string()
                                        : etcd_->uri();
  }

  // A new, opened store on the fixture's back end (null after a test failure).
  std::unique_ptr<Store> open_store(const StoreOptions& o = test_options()) {
    auto r = make_store(uri(), o);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    if (!r) return nullptr;
    std::unique_ptr<Store> s = std::move(r).value();
    Status st = s->open();
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    if (!st) return nullptr;
    return s;
  }

  // An opened store that leads (null after a test failure).
  std::unique_ptr<Store> leader_store(const std::string& identity = "leader",
                                      const StoreOptions& o = test_options()) {
    auto s = open_store(o);
    if (!s) return nullptr;
    Status st = s->acquire_leadership(identity, {}, nullptr);
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    if (!st) return nullptr;
    EXPECT_TRUE(s->leading());
    return s;
  }

  Backend backend_ = Backend::kSqlite;
  fs::path dir_;
  std::unique_ptr<EtcdProcess> etcd_;
};

std::string value_of(Store& s, const std::string& key) {
  auto r = s.get(key);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r || !r->has_value()) return "<absent>";
  return (*r)->value;
}

int64_t revision_of(Store& s, const std::string& key) {
  auto r = s.get(key);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r || !r->has_value()) return 0;
  return (*r)->mod_revision;
}

std::vector<std::string> keys_of(const std::vector<KeyValue>& kvs) {
  std::vector<std::string> out;
  for (const auto& kv : kvs) out.push_back(kv.key);
  return out;
}

// ---- the contract, on both back ends ----

class StoreConformance : public ::testing::TestWithParam<Backend>, public StoreFixture {
 protected:
  void SetUp() override { set_up(GetParam()); }
  void TearDown() override { tear_down(); }
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance,
                         ::testing::Values(Backend::kSqlite, Backend::kEtcd), [](const auto& info) {
                           return info.param == Backend::kSqlite ? "sqlite" : "etcd";
                         });

TEST_P(StoreConformance, PutGetDelete) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  auto missing = s->get("volumes/none");
  ASSERT_TRUE(missing.is_ok()) << missing.status().to_string();
  EXPECT_FALSE(missing->has_value());

  ASSERT_TRUE(s->put("volumes/a", "{\"size\":1}").is_ok());
  EXPECT_EQ(value_of(*s, "volumes/a"), "{\"size\":1}");
  ASSERT_TRUE(s->put("volumes/a", "{\"size\":2}").is_ok());
  EXPECT_EQ(value_of(*s, "volumes/a"), "{\"size\":2}");

  // Values are bytes: NULs and an empty value survive.
  const std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(s->put("blob", binary).is_ok());
  EXPECT_EQ(value_of(*s, "blob"), binary);
  ASSERT_TRUE(s->put("empty", "").is_ok());
  auto empty = s->get("empty");
  ASSERT_TRUE(empty.is_ok());
  ASSERT_TRUE(empty->has_value());
  EXPECT_EQ((*empty)->value, "");

  ASSERT_TRUE(s->del("volumes/a").is_ok());
  EXPECT_EQ(value_of(*s, "volumes/a"), "<absent>");
  // Deleting what is not there is not an error.
  EXPECT_TRUE(s->del("volumes/a").is_ok());
}

TEST_P(StoreConformance, ListReturnsThePrefixInKeyOrder) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  for (const char* k : {"a/2", "b/1", "a/10", "a", "a/1", "ab", "a/1/x", "a0", "a.", "a%"}) {
    ASSERT_TRUE(s->put(k, std::string("v-") + k).is_ok()) << k;
  }
  auto r = s->list("a/");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(keys_of(*r), (std::vector<std::string>{"a/1", "a/1/x", "a/10", "a/2"}));
  for (const auto& kv : *r) EXPECT_EQ(kv.value, "v-" + kv.key);

  // '%' and '_' are not wildcards; byte order ('%' < '.' < '/' < '0' < 'b').
  r = s->list("a");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(keys_of(*r),
            (std::vector<std::string>{"a", "a%", "a.", "a/1", "a/1/x", "a/10", "a/2", "a0", "ab"}));
  r = s->list("a%");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(keys_of(*r), (std::vector<std::string>{"a%"}));
  r = s->list("zzz");
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->empty());
  r = s->list("");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->size(), 10u);  // every user key, nothing of the back end's own
}

TEST_P(StoreConformance, ListPagesThroughMoreKeysThanThePageLimit) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  std::vector<StoreOp> ops;
  std::vector<std::string> want;
  for (int i = 0; i < 50; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "page/%03d", (i * 37) % 50);  // written out of order
    ops.push_back(StoreOp::put(key, std::string(100, static_cast<char>('a' + i % 26))));
  }
  for (int i = 0; i < 50; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "page/%03d", i);
    want.push_back(key);
  }
  ASSERT_TRUE(s->commit(ops).is_ok());
  // Neighbours just outside the range.
  ASSERT_TRUE(s->put("page", "x").is_ok());
  ASSERT_TRUE(s->put("page0", "x").is_ok());
  ASSERT_TRUE(s->put("pagf/1", "x").is_ok());

  auto r = s->list("page/");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(keys_of(*r), want);  // 50 keys over 8 pages of 7, no duplicate, no gap
  // One batch: one revision for all.
  for (const auto& kv : *r) EXPECT_EQ(kv.mod_revision, (*r)[0].mod_revision) << kv.key;
}

TEST_P(StoreConformance, AFailingCompareWritesNothing) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->put("a", "1").is_ok());
  ASSERT_TRUE(s->put("gone", "1").is_ok());
  const int64_t rev_a = revision_of(*s, "a");

  Status st = s->commit({StoreOp::put("a", "2"), StoreOp::put("b", "2"), StoreOp::del("gone")},
                        {{"a", rev_a + 100}});
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  EXPECT_EQ(value_of(*s, "a"), "1");
  EXPECT_EQ(value_of(*s, "b"), "<absent>");
  EXPECT_EQ(value_of(*s, "gone"), "1");
  EXPECT_EQ(revision_of(*s, "a"), rev_a);

  // Several compares: one false one fails the batch.
  st = s->commit({StoreOp::put("b", "3")}, {{"a", rev_a}, {"gone", 1}});
  EXPECT_EQ(st.code(), Errc::kBusy) << st.to_string();
  EXPECT_EQ(value_of(*s, "b"), "<absent>");

  // With the right revision it applies, all of it.
  st = s->commit({StoreOp::put("a", "2"), StoreOp::put("b", "2"), StoreOp::del("gone")},
                 {{"a", rev_a}});
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(value_of(*s, "a"), "2");
  EXPECT_EQ(value_of(*s, "b"), "2");
  EXPECT_EQ(value_of(*s, "gone"), "<absent>");
  // The old revision is stale now.
  st = s->commit({StoreOp::put("a", "3")}, {{"a", rev_a}});
  EXPECT_EQ(st.code(), Errc::kBusy);
}

TEST_P(StoreConformance, CompareOnAnAbsentKey) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  // Revision 0: "must not exist" (create-if-absent).
  ASSERT_TRUE(s->commit({StoreOp::put("c", "1")}, {{"c", 0}}).is_ok());
  EXPECT_EQ(s->commit({StoreOp::put("c", "2")}, {{"c", 0}}).code(), Errc::kBusy);
  EXPECT_EQ(value_of(*s, "c"), "1");
  // An absent key never matches a real revision.
  EXPECT_EQ(s->commit({StoreOp::put("x", "1")}, {{"d", revision_of(*s, "c")}}).code(), Errc::kBusy);
  EXPECT_EQ(value_of(*s, "x"), "<absent>");
  // Deleted again: absent once more.
  ASSERT_TRUE(s->del("c").is_ok());
  EXPECT_TRUE(s->commit({StoreOp::put("c", "3")}, {{"c", 0}}).is_ok());
  EXPECT_EQ(value_of(*s, "c"), "3");
}

TEST_P(StoreConformance, ModRevisionIncreasesWithEveryCommit) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->put("x", "1").is_ok());
  const int64_t r1 = revision_of(*s, "x");
  EXPECT_GT(r1, 0);
  ASSERT_TRUE(s->put("y", "1").is_ok());
  const int64_t r2 = revision_of(*s, "y");
  EXPECT_GT(r2, r1);
  EXPECT_EQ(revision_of(*s, "x"), r1);  // untouched keys keep theirs
  ASSERT_TRUE(s->commit({StoreOp::put("x", "2"), StoreOp::put("z", "1")}).is_ok());
  const int64_t r3 = revision_of(*s, "x");
  EXPECT_GT(r3, r2);
  EXPECT_EQ(revision_of(*s, "z"), r3);
  auto st = s->stats();
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  EXPECT_GE(st->revision, r3);
}

TEST_P(StoreConformance, InvalidBatchesAreRefused) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->commit({}).code(), Errc::kInvalidArgument);
  EXPECT_EQ(s->commit({StoreOp::put("k", "1"), StoreOp::del("k")}).code(), Errc::kInvalidArgument);
  EXPECT_EQ(s->put("", "1").code(), Errc::kInvalidArgument);
  EXPECT_EQ(s->put("election/x", "1").code(), Errc::kInvalidArgument);
  std::vector<StoreOp> big;
  for (int i = 0; i < 121; ++i) big.push_back(StoreOp::put("big/" + std::to_string(i), "v"));
  EXPECT_EQ(s->commit(big).code(), Errc::kInvalidArgument);
  big.pop_back();
  EXPECT_TRUE(s->commit(big).is_ok());  // 120 is allowed
  auto r = s->list("big/");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->size(), 120u);
}

TEST_P(StoreConformance, CommitBeforeLeadershipIsAborted) {
  auto s = open_store();
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(s->leading());
  Status st = s->put("k", "v");
  EXPECT_EQ(st.code(), Errc::kAborted) << st.to_string();
  // Reads need no leadership.
  auto r = s->get("k");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_FALSE(r->has_value());
  auto l = s->leader();
  EXPECT_EQ(l.status().code(), Errc::kNotFound) << l.status().to_string();
}

TEST_P(StoreConformance, AStandbyWaitsUntilTheLeaderGoes) {
  auto a = leader_store("node-a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->put("k", "a").is_ok());
  auto b = open_store();
  ASSERT_NE(b, nullptr);

  std::atomic<bool> done{false};
  Status b_status;
  std::thread t([&] {
    b_status = b->acquire_leadership("node-b", {}, nullptr);
    done = true;
  });
  std::this_thread::sleep_for(1500ms);  // < etcd's TTL would not prove much; this is > TTL/2
  EXPECT_FALSE(done.load());
  EXPECT_FALSE(b->leading());
  EXPECT_EQ(b->put("k", "b").code(), Errc::kAborted);
  auto l = b->leader();
  ASSERT_TRUE(l.is_ok()) << l.status().to_string();
  EXPECT_EQ(*l, "node-a");

  a.reset();  // SQLite: the flock goes; etcd: the lease is revoked
  EXPECT_TRUE(eventually([&] { return done.load(); }, 10s));
  t.join();
  ASSERT_TRUE(b_status.is_ok()) << b_status.to_string();
  EXPECT_TRUE(b->leading());
  l = b->leader();
  ASSERT_TRUE(l.is_ok()) << l.status().to_string();
  EXPECT_EQ(*l, "node-b");
  EXPECT_TRUE(b->put("k", "b").is_ok());
  EXPECT_EQ(value_of(*b, "k"), "b");
}

TEST_P(StoreConformance, AcquireLeadershipStopsWhenAsked) {
  auto a = leader_store("node-a");
  ASSERT_NE(a, nullptr);
  auto b = open_store();
  ASSERT_NE(b, nullptr);
  std::stop_source stop;
  Status b_status;
  std::atomic<bool> done{false};
  std::thread t([&] {
    b_status = b->acquire_leadership("node-b", stop.get_token(), nullptr);
    done = true;
  });
  std::this_thread::sleep_for(300ms);
  const auto asked = std::chrono::steady_clock::now();
  stop.request_stop();
  EXPECT_TRUE(eventually([&] { return done.load(); }, 5s));
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 2s);
  EXPECT_EQ(b_status.code(), Errc::kAborted) << b_status.to_string();
  EXPECT_FALSE(b->leading());
  EXPECT_TRUE(a->leading());
  auto l = a->leader();
  ASSERT_TRUE(l.is_ok());
  EXPECT_EQ(*l, "node-a");
}

TEST_P(StoreConformance, ConcurrentCompareAndSwapLosesNoUpdate) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->put("counter", "0").is_ok());
  constexpr int kThreads = 4;
  constexpr int kEach = 15;
  std::vector<std::thread> threads;
  std::atomic<int> conflicts{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach;) {
        auto r = s->get("counter");
        ASSERT_TRUE(r.is_ok() && r->has_value());
        int v = std::stoi((*r)->value);
        Status st = s->commit({StoreOp::put("counter", std::to_string(v + 1))},
                              {{"counter", (*r)->mod_revision}});
        if (st.code() == Errc::kBusy) {
          ++conflicts;
          continue;
        }
        ASSERT_TRUE(st.is_ok()) << st.to_string();
        ++i;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(value_of(*s, "counter"), std::to_string(kThreads * kEach));
}

TEST_P(StoreConformance, StatsCountKeysAndBytes) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->commit({StoreOp::put("k1", "12345"), StoreOp::put("k22", "1")}).is_ok());
  auto st = s->stats();
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  EXPECT_EQ(st->keys, 2u);
  EXPECT_EQ(st->bytes, 2u + 5 + 3 + 1);
  EXPECT_GT(st->file_bytes, 0u);
  EXPECT_EQ(st->revision, revision_of(*s, "k1"));
  ASSERT_TRUE(s->del("k1").is_ok());
  st = s->stats();
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->keys, 1u);
  EXPECT_EQ(st->bytes, 4u);
  EXPECT_TRUE(s->compact().is_ok());
  EXPECT_EQ(value_of(*s, "k22"), "1");  // compaction keeps current data
}

TEST_P(StoreConformance, DataSurvivesReopening) {
  int64_t rev = 0;
  {
    auto s = leader_store();
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->commit({StoreOp::put("a", "1"), StoreOp::put("b", "2")}).is_ok());
    rev = revision_of(*s, "a");
  }
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(value_of(*s, "a"), "1");
  EXPECT_EQ(revision_of(*s, "b"), rev);
  ASSERT_TRUE(s->put("c", "3").is_ok());
  EXPECT_GT(revision_of(*s, "c"), rev);  // revisions continue, never restart
}

// ---- make_store ----

TEST(MakeStore, RefusesBadUris) {
  for (const char* bad : {"",
                          "castor.db",
                          "sqlite://relative/castor.db",
                          "sqlite://",
                          "sqlite:///",
                          "sqlite:///a/b/",
                          "sqlite:///a.db?mode=x",
                          "mysql://h:1",
                          "etcd://",
                          "etcd:///",
                          "etcd://host",
                          "etcd://host:",
                          "etcd://:2379",
                          "etcd://h:0",
                          "etcd://h:65536",
                          "etcd://h:23x",
                          "etcd://h:1,,h:2",
                          "etcd://h:1,",
                          "etcd://::1:2379",
                          "etcd://[::1]2379"}) {
    auto r = make_store(bad);
    EXPECT_EQ(r.status().code(), Errc::kInvalidArgument) << "'" << bad << "'";
    EXPECT_NE(r.status().message().find("'"), std::string::npos) << r.status().message();
  }
  StoreOptions low_ttl;
  low_ttl.lease_ttl_s = 1;
  EXPECT_EQ(make_store("etcd://127.0.0.1:2379", low_ttl).status().code(), Errc::kInvalidArgument);
  StoreOptions no_pages;
  no_pages.page_limit = 0;
  EXPECT_EQ(make_store("sqlite:///tmp/x.db", no_pages).status().code(), Errc::kInvalidArgument);

  auto ok = make_store("etcd://10.0.0.1:2379,[::1]:2379,etcd.example:2379/");
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ((*ok)->describe(), "etcd://10.0.0.1:2379,[::1]:2379,etcd.example:2379/");
  auto sq = make_store("sqlite:///var/lib/castor/castor.db");
  ASSERT_TRUE(sq.is_ok());
  EXPECT_EQ((*sq)->describe(), "sqlite:///var/lib/castor/castor.db");
  EXPECT_NE(dynamic_cast<SqliteStore*>(sq->get()), nullptr);
}

// ---- SQLite only ----

class SqliteStoreTest : public ::testing::Test, public StoreFixture {
 protected:
  void SetUp() override { set_up(Backend::kSqlite); }
  void TearDown() override { tear_down(); }
};

TEST_F(SqliteStoreTest, FileLayoutAndLockFile) {
  {
    auto s = leader_store("node-1");
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->commit({StoreOp::put("a", "1"), StoreOp::put("b", "2")}).is_ok());
    ASSERT_TRUE(s->put("c", "3").is_ok());
    // The lock file names the leader.
    std::ifstream in(dir_ / "castor.db.lock");
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(content, "node-1");
    EXPECT_TRUE(fs::exists(dir_ / "castor.db-wal"));
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2((dir_ / "castor.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
            SQLITE_OK);
  auto one = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
    }
    sqlite3_finalize(st);
    return out;
  };
  EXPECT_EQ(one("PRAGMA journal_mode"), "wal");  // persistent in the file
  EXPECT_EQ(one("SELECT revision FROM meta"), "2");
  EXPECT_EQ(one("SELECT group_concat(key || '=' || mod_revision, ',') FROM kv"), "a=1,b=1,c=2");
  sqlite3_close_v2(db);
}

TEST_F(SqliteStoreTest, OpenErrors) {
  auto r = make_store("sqlite://" + (dir_ / "missing-dir" / "castor.db").string());
  ASSERT_TRUE(r.is_ok());
  Status st = (*r)->open();
  EXPECT_EQ(st.code(), Errc::kIoError) << st.to_string();

  // Not a database.
  {
    std::ofstream f(dir_ / "junk.db");
    f << std::string(4096, 'x');
  }
  r = make_store("sqlite://" + (dir_ / "junk.db").string());
  ASSERT_TRUE(r.is_ok());
  st = (*r)->open();
  EXPECT_EQ(st.code(), Errc::kIoError) << st.to_string();

  // Not opened: reads fail cleanly.
  r = make_store(uri());
  ASSERT_TRUE(r.is_ok());
  EXPECT_FALSE((*r)->get("k").is_ok());
}

TEST_F(SqliteStoreTest, LeaderIsNobodyAfterTheLeaderExits) {
  {
    auto s = leader_store("node-1");
    ASSERT_NE(s, nullptr);
    auto other = open_store();
    ASSERT_NE(other, nullptr);
    auto l = other->leader();
    ASSERT_TRUE(l.is_ok()) << l.status().to_string();
    EXPECT_EQ(*l, "node-1");
  }
  auto s = open_store();
  ASSERT_NE(s, nullptr);
  // The stale lock file still holds "node-1", but nobody holds its lock.
  EXPECT_EQ(s->leader().status().code(), Errc::kNotFound);
}

// ---- etcd only ----

class EtcdStoreTest : public ::testing::Test, public StoreFixture {
 protected:
  void SetUp() override { set_up(Backend::kEtcd); }
  void TearDown() override { tear_down(); }

  std::unique_ptr<etcdserverpb::KV::Stub> raw_kv() {
    return etcdserverpb::KV::NewStub(
        grpc::CreateChannel(etcd_->endpoint(), grpc::InsecureChannelCredentials()));
  }
};

TEST_F(EtcdStoreTest, AFencedCommitAfterLeaseExpiryIsAbortedAndWritesNothing) {
  StoreOptions o = test_options();
  o.lease_ttl_s = 2;
  auto a_store = open_store(o);
  ASSERT_NE(a_store, nullptr);
  auto* a = dynamic_cast<EtcdStore*>(a_store.get());
  ASSERT_NE(a, nullptr);
  std::atomic<int> a_lost{0};
  ASSERT_TRUE(a->acquire_leadership("node-a", {}, [&] { ++a_lost; }).is_ok());
  ASSERT_TRUE(a->put("k", "a").is_ok());

  auto b = open_store(o);
  ASSERT_NE(b, nullptr);
  std::atomic<bool> b_done{false};
  Status b_status;
  std::thread t([&] {
    b_status = b->acquire_leadership("node-b", {}, nullptr);
    b_done = true;
  });
  // A freezes: its lease runs out, etcd deletes its election key, B takes over. A has
  // not noticed (its keep-alive thread is the one that would).
  a->test_pause_keepalive();
  ASSERT_TRUE(eventually([&] { return b_done.load(); }, 15s));
  t.join();
  ASSERT_TRUE(b_status.is_ok()) << b_status.to_string();
  EXPECT_TRUE(b->leading());
  EXPECT_TRUE(a->leading());
  EXPECT_EQ(a_lost.load(), 0);

  // The fence refuses A's write, all of it.
  Status st = a->commit({StoreOp::put("k", "a2"), StoreOp::put("a-only", "x")});
  EXPECT_EQ(st.code(), Errc::kAborted) << st.to_string();
  EXPECT_FALSE(a->leading());
  EXPECT_EQ(value_of(*b, "k"), "a");
  EXPECT_EQ(value_of(*b, "a-only"), "<absent>");
  EXPECT_TRUE(eventually([&] { return a_lost.load() == 1; }, 5s));

  // B writes; A stays fenced and on_lost ran only once.
  EXPECT_TRUE(b->put("k", "b").is_ok());
  EXPECT_EQ(a->put("k", "a3").code(), Errc::kAborted);
  EXPECT_EQ(value_of(*a, "k"), "b");
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(a_lost.load(), 1);
  auto l = a->leader();
  ASSERT_TRUE(l.is_ok());
  EXPECT_EQ(*l, "node-b");
}

TEST_F(EtcdStoreTest, KeepAlivesHoldTheLeadershipPastTheTtl) {
  std::atomic<int> lost{0};
  auto s = open_store();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->acquire_leadership("node-a", {}, [&] { ++lost; }).is_ok());
  std::this_thread::sleep_for(5s);  // 2.5 x the TTL of 2 s
  EXPECT_TRUE(s->leading());
  EXPECT_TRUE(s->put("k", "v").is_ok());
  EXPECT_EQ(lost.load(), 0);
}

TEST_F(EtcdStoreTest, DeletingTheElectionKeyEndsTheLeadership) {
  std::atomic<int> lost{0};
  auto s = open_store();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->acquire_leadership("node-a", {}, [&] { ++lost; }).is_ok());
  // An operator removes the election key (etcdctl del --prefix ...).
  auto kv = raw_kv();
  grpc::ClientContext ctx;
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("/castor-test/election/");
  del.set_range_end("/castor-test/election0");
  etcdserverpb::DeleteRangeResponse resp;
  ASSERT_TRUE(kv->DeleteRange(&ctx, del, &resp).ok());
  ASSERT_EQ(resp.deleted(), 1);
  // The keep-alive thread notices within a keep-alive interval; a commit at once.
  EXPECT_EQ(s->put("k", "v").code(), Errc::kAborted);
  EXPECT_TRUE(eventually([&] { return lost.load() == 1; }, 5s));
  EXPECT_FALSE(s->leading());
}

TEST_F(EtcdStoreTest, KeysCarryThePrefix) {
  auto s = leader_store("node-a");
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->put("volumes/v1", "x").is_ok());
  auto kv = raw_kv();
  grpc::ClientContext ctx;
  etcdserverpb::RangeRequest req;
  req.set_key(std::string(1, '\0'));
  req.set_range_end(std::string(1, '\0'));
  req.set_keys_only(true);
  etcdserverpb::RangeResponse resp;
  ASSERT_TRUE(kv->Range(&ctx, req, &resp).ok());
  std::vector<std::string> raw;
  for (const auto& k : resp.kvs()) raw.push_back(k.key());
  ASSERT_EQ(raw.size(), 2u);
  EXPECT_TRUE(raw[0].starts_with("/castor-test/election/")) << raw[0];
  EXPECT_EQ(raw[1], "/castor-test/volumes/v1");
  auto all = s->list("");
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ(keys_of(*all), (std::vector<std::string>{"volumes/v1"}));

  // Another prefix is another, independent store on the same etcd.
  StoreOptions other = test_options();
  other.prefix = "/other/";
  auto s2 = open_store(other);
  ASSERT_NE(s2, nullptr);
  auto r = s2->get("volumes/v1");
  ASSERT_TRUE(r.is_ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(s2->acquire_leadership("other", {}, nullptr).is_ok());  // its own election
}

TEST_F(EtcdStoreTest, CompactDropsOldRevisions) {
  auto s = leader_store();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->put("k", "old").is_ok());
  const int64_t old_rev = revision_of(*s, "k");
  ASSERT_TRUE(s->put("k", "new").is_ok());
  auto kv = raw_kv();
  auto read_at = [&](int64_t rev, etcdserverpb::RangeResponse* resp) {
    grpc::ClientContext ctx;
    etcdserverpb::RangeRequest req;
    req.set_key("/castor-test/k");
    req.set_revision(rev);
    return kv->Range(&ctx, req, resp);
  };
  etcdserverpb::RangeResponse resp;
  ASSERT_TRUE(read_at(old_rev, &resp).ok());
  ASSERT_EQ(resp.kvs_size(), 1);
  EXPECT_EQ(resp.kvs(0).value(), "old");

  ASSERT_TRUE(s->compact().is_ok());
  grpc::Status gs = read_at(old_rev, &resp);
  EXPECT_EQ(gs.error_code(), grpc::StatusCode::OUT_OF_RANGE) << gs.error_message();
  EXPECT_EQ(value_of(*s, "k"), "new");
  auto st = s->stats();
  ASSERT_TRUE(st.is_ok());
  EXPECT_GT(st->compacted_revision, old_rev);
  EXPECT_TRUE(s->compact().is_ok());  // again, nothing new: still fine
}

TEST_F(EtcdStoreTest, FailsOverToALiveEndpoint) {
  const int dead = EtcdProcess::free_port();
  auto r = make_store("etcd://127.0.0.1:" + std::to_string(dead) + "," + etcd_->endpoint(),
                      test_options());
  ASSERT_TRUE(r.is_ok());
  auto& s = *r;
  ASSERT_TRUE(s->open().is_ok());
  ASSERT_TRUE(s->acquire_leadership("node-a", {}, nullptr).is_ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->put("k" + std::to_string(i), "v").is_ok());
  auto l = s->list("k");
  ASSERT_TRUE(l.is_ok());
  EXPECT_EQ(l->size(), 5u);

  auto nobody = make_store("etcd://127.0.0.1:" + std::to_string(dead), test_options());
  ASSERT_TRUE(nobody.is_ok());
  Status st = (*nobody)->open();
  EXPECT_EQ(st.code(), Errc::kUnavailable) << st.to_string();
}

TEST_F(EtcdStoreTest, UnavailableWhileEtcdIsDownThenBackAfterARestart) {
  StoreOptions o = test_options();
  o.lease_ttl_s = 10;  // longer than the outage: the leadership survives it
  o.request_timeout_ms = 1000;
  std::atomic<int> lost{0};
  auto s = open_store(o);
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->acquire_leadership("node-a", {}, [&] { ++lost; }).is_ok());
  ASSERT_TRUE(s->put("k", "1").is_ok());

  etcd_->stop();
  const auto t0 = std::chrono::steady_clock::now();
  auto g = s->get("k");
  EXPECT_EQ(g.status().code(), Errc::kUnavailable) << g.status().to_string();
  EXPECT_EQ(s->put("k", "2").code(), Errc::kUnavailable);
  EXPECT_EQ(s->list("").status().code(), Errc::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);  // deadlines, no hang

  ASSERT_TRUE(etcd_->start()) << etcd_->error();
  EXPECT_TRUE(eventually([&] { return s->put("k", "3").is_ok(); }, 10s));
  EXPECT_EQ(value_of(*s, "k"), "3");
  EXPECT_TRUE(s->leading());
  EXPECT_EQ(lost.load(), 0);

  // A crash (SIGKILL) loses nothing that was committed.
  etcd_->kill9();
  ASSERT_TRUE(etcd_->start()) << etcd_->error();
  EXPECT_TRUE(eventually([&] { return s->get("k").is_ok(); }, 10s));
  EXPECT_EQ(value_of(*s, "k"), "3");
}

TEST_F(EtcdStoreTest, ALeaderCutOffForLongerThanItsTtlStepsDown) {
  StoreOptions o = test_options();
  o.lease_ttl_s = 2;
  o.request_timeout_ms = 500;
  std::atomic<int> lost{0};
  auto s = open_store(o);
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->acquire_leadership("node-a", {}, [&] { ++lost; }).is_ok());
  etcd_->stop();
  // No keep-alive confirmed for a TTL: the store gives up on its own.
  EXPECT_TRUE(eventually([&] { return lost.load() == 1; }, 6s));
  EXPECT_FALSE(s->leading());
  ASSERT_TRUE(etcd_->start()) << etcd_->error();
  EXPECT_EQ(s->put("k", "v").code(), Errc::kAborted);
}

}  // namespace
}  // namespace castor::control
