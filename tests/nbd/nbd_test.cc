// The NBD target against clients nobody here wrote: libnbd's nbdinfo, nbdcopy and
// nbdfuse, and fio's nbd engine; plus raw-socket protocol violations.
#include "nbd/server.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <tuple>

#include "nbd/protocol.h"
#include "reactor/tcp.h"

namespace castor::nbd {
namespace {

std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), f)) out.append(buf, n);
  int rc = pclose(f);
  return {WEXITSTATUS(rc), out};
}

bool have(const char* tool) { return run(std::string("command -v ") + tool).first == 0; }

// Polls `pred` until it holds or `timeout` passes; returns its last value.
template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

class Nbd : public ::testing::Test {
 protected:
  void SetUp() override {
    reactor::ReactorOptions o;
    o.pin = false;
    group = std::make_unique<reactor::ReactorGroup>(std::vector<int>{0, 0}, o);
    group->start();
    reg = std::make_unique<bdev::BdevRegistry>(*group);
    ASSERT_TRUE(reg->create("malloc:///disk?size_mb=128&blk_size=512"));
    ASSERT_TRUE(reg->create("malloc:///ro?size_mb=4&blk_size=512"));
    srv = std::make_unique<NbdServer>(*group, *reg, options);
    ASSERT_TRUE(srv->listen("127.0.0.1", 0, &port));
    ASSERT_TRUE(srv->add_export({"disk", "disk", false, "a RAM disk", 0}));
    ASSERT_TRUE(srv->add_export({"", "disk", false, "", 0}));
    ASSERT_TRUE(srv->add_export({"ro", "ro", true, "", 0}));
    dir = std::filesystem::temp_directory_path() / ("castor-nbd-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    uri = "nbd://127.0.0.1:" + std::to_string(port) + "/disk";
  }
  void TearDown() override {
    srv.reset();
    reg.reset();
    group->stop();
    std::filesystem::remove_all(dir);
  }
  std::unique_ptr<reactor::ReactorGroup> group;
  std::unique_ptr<bdev::BdevRegistry> reg;
  std::unique_ptr<NbdServer> srv;
  ServerOptions options;  // a derived fixture may change them before SetUp()
  uint16_t port = 0;
  std::filesystem::path dir;
  std::string uri;
};

TEST_F(Nbd, NbdinfoShowsSizeAndFlags) {
  ASSERT_TRUE(have("nbdinfo")) << "nbdinfo is missing (scripts/setup.sh installs libnbd-bin)";
  auto [rc, out] = run("nbdinfo " + uri);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("size: 134217728"), std::string::npos) << out;
  EXPECT_NE(out.find("can_flush: true"), std::string::npos) << out;
  EXPECT_NE(out.find("can_fua: true"), std::string::npos) << out;
  EXPECT_NE(out.find("can_trim: true"), std::string::npos) << out;
  EXPECT_NE(out.find("can_zero: true"), std::string::npos) << out;
  EXPECT_NE(out.find("can_multi_conn: true"), std::string::npos) << out;
  EXPECT_NE(out.find("is_read_only: false"), std::string::npos) << out;
  EXPECT_NE(out.find("a RAM disk"), std::string::npos) << out;
  EXPECT_NE(out.find("block_size_minimum: 512"), std::string::npos) << out;
  auto [rc2, ro] = run("nbdinfo nbd://127.0.0.1:" + std::to_string(port) + "/ro");
  EXPECT_EQ(rc2, 0) << ro;
  EXPECT_NE(ro.find("is_read_only: true"), std::string::npos) << ro;
  auto [rc3, list] = run("nbdinfo --list nbd://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(rc3, 0) << list;
  EXPECT_NE(list.find("export=\"disk\""), std::string::npos) << list;
  auto [rc4, missing] = run("nbdinfo nbd://127.0.0.1:" + std::to_string(port) + "/nope");
  EXPECT_NE(rc4, 0) << missing;
}

TEST_F(Nbd, NbdcopyInAndOutWithEqualChecksums) {
  ASSERT_TRUE(have("nbdcopy")) << "nbdcopy is missing (scripts/setup.sh installs libnbd-bin)";
  auto src = (dir / "src.img").string(), back = (dir / "back.img").string();
  {
    std::ofstream f(src, std::ios::binary);
    std::mt19937_64 rng(5);
    std::vector<uint64_t> chunk(1 << 17);
    for (int i = 0; i < 64; ++i) {  // 64 MiB with a zero hole in the middle
      for (auto& w : chunk) w = (i >= 20 && i < 24) ? 0 : rng();
      f.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(chunk.size() * 8));
    }
  }
  auto [rc, out] = run("nbdcopy " + src + " " + uri);
  ASSERT_EQ(rc, 0) << out;
  auto [rc2, out2] = run("nbdcopy " + uri + " " + back);
  ASSERT_EQ(rc2, 0) << out2;
  auto a = run("sha256sum < " + src).second;
  auto b = run("head -c 67108864 " + back + " | sha256sum").second;
  EXPECT_EQ(a, b);
}

TEST_F(Nbd, FioRandomWriteWithVerify) {
  ASSERT_TRUE(have("fio")) << "fio is missing (scripts/setup.sh installs fio)";
  auto [rc, out] = run("fio --name=v --ioengine=nbd --uri=" + uri +
                       " --rw=randwrite --bs=4k --iodepth=16 --size=32m --verify=crc32c --do_verify=1"
                       " --verify_fatal=1 --verify_state_save=0 --output-format=terse --terse-version=3");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("verify:"), std::string::npos) << out;  // fio prints "verify: bad ..." on mismatch
}

TEST_F(Nbd, NbdfuseLoopExt4RoundTrip) {
  // The tools are installed by scripts/setup.sh: a missing one fails the test. What a
  // machine may lack (docs/testing.md): root, /dev/fuse, loop devices; those skip.
  ASSERT_TRUE(have("nbdfuse")) << "nbdfuse is missing (scripts/setup.sh installs libnbd-bin)";
  ASSERT_TRUE(have("fusermount3")) << "fusermount3 is missing (scripts/setup.sh installs fuse3)";
  ASSERT_TRUE(have("losetup")) << "losetup is missing (scripts/setup.sh installs mount)";
  ASSERT_TRUE(have("mkfs.ext4")) << "mkfs.ext4 is missing (scripts/setup.sh installs e2fsprogs)";
  if (getuid() != 0 || !std::filesystem::exists("/dev/fuse") ||
      !std::filesystem::exists("/dev/loop-control")) {
    GTEST_SKIP() << "needs root, /dev/fuse and loop devices (/dev/loop-control)";
  }
  auto fuse = dir / "fuse", mnt = dir / "mnt";
  std::filesystem::create_directories(fuse);
  std::filesystem::create_directories(mnt);
  std::string pidfile = (dir / "nbdfuse.pid").string();
  ASSERT_EQ(run("nbdfuse -P " + pidfile + " " + (fuse / "disk").string() + " " + uri + " >/dev/null 2>&1 &").first, 0);
  for (int i = 0; i < 100 && !std::filesystem::exists(fuse / "disk"); ++i) usleep(50000);
  ASSERT_TRUE(std::filesystem::exists(fuse / "disk"));
  // Not a structured binding: the cleanup lambda captures it (clang 14 cannot).
  auto [lrc, attached] = run("losetup -f --show " + (fuse / "disk").string());
  std::string loop = attached;
  if (lrc != 0) {
    run("fusermount3 -u " + fuse.string());
    GTEST_SKIP() << "no loop device can be attached here (losetup -f): " << loop;
  }
  loop.erase(loop.find_last_not_of("\n") + 1);
  std::string m = mnt.string();
  auto cleanup = [&] {
    run("umount " + m);
    run("losetup -d " + loop);
    run("fusermount3 -u " + fuse.string());
  };
  auto [mrc, mk] = run("mkfs.ext4 -q -F " + loop + " && mount " + loop + " " + m);
  if (mrc != 0) {
    cleanup();
    FAIL() << mk;
  }
  EXPECT_EQ(run("dd if=/dev/urandom of=" + m + "/f bs=1M count=8 conv=fsync status=none").first, 0);
  auto sum1 = run("sha256sum < " + m + "/f").second;
  EXPECT_EQ(run("umount " + m + " && mount " + loop + " " + m).first, 0);
  auto sum2 = run("sha256sum < " + m + "/f").second;
  EXPECT_EQ(sum1, sum2);
  cleanup();
}

// ---- protocol violations on a raw socket ----

struct Raw {
  int fd = -1;
  explicit Raw(uint16_t port) {
    auto r = reactor::tcp_connect("127.0.0.1", port, 2000);
    fd = r ? *r : -1;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Raw() {
    if (fd >= 0) close(fd);
  }
  void put(const std::vector<uint8_t>& b) { ASSERT_EQ(::send(fd, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size())); }
  std::vector<uint8_t> get(size_t n) {
    std::vector<uint8_t> b(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::recv(fd, b.data() + got, n - got, 0);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    b.resize(got);
    return b;
  }
  bool closed_by_peer() {
    uint8_t c;
    return ::recv(fd, &c, 1, 0) == 0;
  }
};

std::vector<uint8_t> u32(uint32_t v) {
  std::vector<uint8_t> b(4);
  store_be32(b.data(), v);
  return b;
}
std::vector<uint8_t> option(uint32_t o, const std::string& data) {
  std::vector<uint8_t> b(16 + data.size());
  store_be64(b.data(), kIHaveOpt);
  store_be32(b.data() + 8, o);
  store_be32(b.data() + 12, static_cast<uint32_t>(data.size()));
  if (!data.empty()) std::memcpy(b.data() + 16, data.data(), data.size());
  return b;
}
std::vector<uint8_t> request(uint16_t type, uint64_t cookie, uint64_t off, uint32_t len, uint16_t flags = 0) {
  std::vector<uint8_t> b(28);
  store_be32(b.data(), kRequestMagic);
  store_be16(b.data() + 4, flags);
  store_be16(b.data() + 6, type);
  store_be64(b.data() + 8, cookie);
  store_be64(b.data() + 16, off);
  store_be32(b.data() + 24, len);
  return b;
}

TEST_F(Nbd, ProtocolViolationsGetErrorsOrCloseOnlyThatConnection) {
  {  // unknown client flag bits: closed
    Raw r(port);
    ASSERT_EQ(r.get(18).size(), 18u);
    r.put(u32(0x80));
    EXPECT_TRUE(r.closed_by_peer());
  }
  {  // unknown option: ERR_UNSUP, negotiation continues; bad option magic: closed
    Raw r(port);
    auto hello = r.get(18);
    ASSERT_EQ(load_be64(hello.data()), kNbdMagic);
    EXPECT_EQ(load_be16(hello.data() + 16), kFlagFixedNewstyle | kFlagNoZeroes);
    r.put(u32(kFlagFixedNewstyle | kFlagNoZeroes));
    r.put(option(99, "xyz"));
    auto rep = r.get(20);
    ASSERT_EQ(rep.size(), 20u);
    EXPECT_EQ(load_be32(rep.data() + 12), rep::kErrUnsup);
    r.get(load_be32(rep.data() + 16));
    auto bad = option(opt::kList, "");
    bad[0] ^= 0xff;
    r.put(bad);
    EXPECT_TRUE(r.closed_by_peer());
  }
  // Transmission: out-of-range read, read-only write (payload drained, connection
  // still usable), unknown command, then bad magic closes.
  Raw r(port);
  r.get(18);
  r.put(u32(kFlagFixedNewstyle | kFlagNoZeroes));
  r.put(option(opt::kExportName, "ro"));
  auto ex = r.get(10);
  ASSERT_EQ(ex.size(), 10u);
  EXPECT_EQ(load_be64(ex.data()), 4u << 20);
  EXPECT_TRUE(load_be16(ex.data() + 8) & tflag::kReadOnly);
  r.put(request(cmd::kRead, 1, 4u << 20, 512));
  auto rep = r.get(16);
  EXPECT_EQ(load_be32(rep.data() + 4), err::kInval);
  EXPECT_EQ(load_be64(rep.data() + 8), 1u);
  auto w = request(cmd::kWrite, 2, 0, 4096);
  w.resize(w.size() + 4096, 0xab);
  r.put(w);
  rep = r.get(16);
  EXPECT_EQ(load_be32(rep.data() + 4), err::kPerm);
  r.put(request(42, 3, 0, 0));
  rep = r.get(16);
  EXPECT_EQ(load_be32(rep.data() + 4), err::kInval);
  r.put(request(cmd::kRead, 4, 512, 1024));
  rep = r.get(16 + 1024);
  ASSERT_EQ(rep.size(), 16u + 1024);
  EXPECT_EQ(load_be32(rep.data()), kSimpleReplyMagic);
  EXPECT_EQ(load_be32(rep.data() + 4), 0u);
  EXPECT_EQ(load_be64(rep.data() + 8), 4u);
  auto badreq = request(cmd::kRead, 5, 0, 512);
  badreq[0] = 0;
  r.put(badreq);
  EXPECT_TRUE(r.closed_by_peer());
  EXPECT_GE(srv->stats().protocol_errors, 2u);
  // Other connections are unaffected.
  if (have("nbdinfo")) {
    EXPECT_EQ(run("nbdinfo --size " + uri).first, 0);
  }
}

// A client that sends requests without reading the replies is held back by TCP (the
// connection stops reading past kMaxBytesInFlight) instead of making the engine buffer
// every reply: here 12 reads of 32 MiB (384 MiB) while at most 64 MiB may be in flight.
// Every reply still arrives, intact and in order.
// One option reply: its type and data.
std::pair<uint32_t, std::vector<uint8_t>> opt_reply(Raw& r) {
  auto h = r.get(20);
  if (h.size() != 20) return {0, {}};
  EXPECT_EQ(load_be64(h.data()), kOptReplyMagic);
  return {load_be32(h.data() + 12), r.get(load_be32(h.data() + 16))};
}

// LIST_META_CONTEXT / SET_META_CONTEXT data: export name, then the queries.
std::string meta_request(const std::string& name, const std::vector<std::string>& queries) {
  std::vector<uint8_t> b(4);
  store_be32(b.data(), static_cast<uint32_t>(name.size()));
  b.insert(b.end(), name.begin(), name.end());
  b.resize(b.size() + 4);
  store_be32(b.data() + b.size() - 4, static_cast<uint32_t>(queries.size()));
  for (const auto& q : queries) {
    b.resize(b.size() + 4);
    store_be32(b.data() + b.size() - 4, static_cast<uint32_t>(q.size()));
    b.insert(b.end(), q.begin(), q.end());
  }
  return std::string(b.begin(), b.end());
}

// GO for export `name` with no info requests; reads the replies up to the ACK.
void go(Raw& r, const std::string& name) {
  std::string d(4, '\0');
  store_be32(reinterpret_cast<uint8_t*>(d.data()), static_cast<uint32_t>(name.size()));
  d += name + std::string(2, '\0');
  r.put(option(opt::kGo, d));
  for (;;) {
    auto [type, data] = opt_reply(r);
    ASSERT_NE(type, 0u) << "connection closed during GO";
    if (type == rep::kAck) return;
    ASSERT_EQ(type, rep::kInfo);
  }
}

// Connects to export "disk" (EXPORT_NAME, simple replies).
void open_disk(Raw& r) {
  ASSERT_EQ(r.get(18).size(), 18u);
  r.put(u32(kFlagFixedNewstyle | kFlagNoZeroes));
  r.put(option(opt::kExportName, "disk"));
  ASSERT_EQ(r.get(10).size(), 10u);
}

// Writes kMaxPayload bytes of a pattern at offset 0 and returns them.
std::vector<uint8_t> write_pattern(Raw& r) {
  std::vector<uint8_t> pattern(kMaxPayload);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 7 + (i >> 12));
  auto w = request(cmd::kWrite, 1, 0, kMaxPayload);
  w.insert(w.end(), pattern.begin(), pattern.end());
  r.put(w);
  auto rep = r.get(16);
  EXPECT_EQ(rep.size(), 16u);
  EXPECT_EQ(rep.size() == 16 ? load_be32(rep.data() + 4) : 1u, 0u);
  return pattern;
}

// Reads the replies of `n` pipelined kMaxPayload reads with cookies first, first+1, ...
// and checks each against `pattern`.
void expect_read_replies(Raw& r, int n, uint64_t first, const std::vector<uint8_t>& pattern) {
  for (int i = 0; i < n; ++i) {
    auto hdr = r.get(16);
    ASSERT_EQ(hdr.size(), 16u) << "reply " << i;
    EXPECT_EQ(load_be32(hdr.data()), kSimpleReplyMagic);
    EXPECT_EQ(load_be32(hdr.data() + 4), 0u);
    EXPECT_EQ(load_be64(hdr.data() + 8), first + i);
    auto data = r.get(kMaxPayload);
    ASSERT_EQ(data.size(), kMaxPayload);
    EXPECT_TRUE(data == pattern) << "reply " << i;
  }
}

TEST_F(Nbd, ClientThatDoesNotReadIsHeldBackNotBuffered) {
  Raw r(port);
  open_disk(r);
  const auto pattern = write_pattern(r);

  constexpr int kReads = 12;
  for (int i = 0; i < kReads; ++i) r.put(request(cmd::kRead, 100 + i, 0, kMaxPayload));
  // The server takes what it may, then stops reading.
  EXPECT_TRUE(wait_until([&] { return srv->stats().receive_pauses >= 1; }))
      << "the server never paused receiving";
  EXPECT_LE(srv->stats().peak_bytes_in_flight, kMaxBytesInFlight);

  expect_read_replies(r, kReads, 100, pattern);
  EXPECT_LE(srv->stats().peak_bytes_in_flight, kMaxBytesInFlight);
  // The connection goes on normally.
  r.put(request(cmd::kFlush, 7, 0, 0));
  auto rep = r.get(16);
  ASSERT_EQ(rep.size(), 16u);
  EXPECT_EQ(load_be64(rep.data() + 8), 7u);
  EXPECT_EQ(load_be32(rep.data() + 4), 0u);
}

// The base:allocation meta context and BLOCK_STATUS, on the wire: negotiation answers
// (LIST, SET, their errors), extents of a bdev that tracks no allocation (all data),
// REQ_ONE, and the errors of a bad request or of a connection without the context.
// (Extents of a thin replica, with holes, through nbdinfo: tests/api/target_api_test.cc.)
TEST_F(Nbd, BaseAllocationContextAndBlockStatus) {
  auto start = [&](Raw& r, bool structured) {
    ASSERT_EQ(r.get(18).size(), 18u);
    r.put(u32(kFlagFixedNewstyle | kFlagNoZeroes));
    if (!structured) return;
    r.put(option(opt::kStructuredReply, ""));
    ASSERT_EQ(opt_reply(r).first, rep::kAck);
  };
  {  // Without structured replies there are no contexts.
    Raw r(port);
    start(r, false);
    r.put(option(opt::kSetMetaContext, meta_request("disk", {"base:allocation"})));
    EXPECT_EQ(opt_reply(r).first, rep::kErrInvalid);
  }
  Raw r(port);
  start(r, true);
  // LIST with no query lists base:allocation (ID 0: LIST selects nothing).
  r.put(option(opt::kListMetaContext, meta_request("disk", {})));
  auto [type, data] = opt_reply(r);
  ASSERT_EQ(type, rep::kMetaContext);
  ASSERT_EQ(data.size(), 4u + 15);
  EXPECT_EQ(load_be32(data.data()), 0u);
  EXPECT_EQ(std::string(data.begin() + 4, data.end()), "base:allocation");
  EXPECT_EQ(opt_reply(r).first, rep::kAck);
  // Unknown contexts select nothing; LIST of one gets just the ACK.
  r.put(option(opt::kListMetaContext, meta_request("disk", {"qemu:dirty-bitmap:b0"})));
  EXPECT_EQ(opt_reply(r).first, rep::kAck);
  // Errors: unknown export, a query count beyond the data, trailing bytes.
  r.put(option(opt::kSetMetaContext, meta_request("nope", {"base:allocation"})));
  EXPECT_EQ(opt_reply(r).first, rep::kErrUnknown);
  std::string bad = meta_request("disk", {"base:allocation"});
  store_be32(reinterpret_cast<uint8_t*>(bad.data()) + 8, 5);
  r.put(option(opt::kSetMetaContext, bad));
  EXPECT_EQ(opt_reply(r).first, rep::kErrInvalid);
  r.put(option(opt::kSetMetaContext, meta_request("disk", {"base:allocation"}) + "x"));
  EXPECT_EQ(opt_reply(r).first, rep::kErrInvalid);
  // SET selects it, with its ID.
  r.put(option(opt::kSetMetaContext, meta_request("disk", {"qemu:dirty-bitmap:b0", "base:allocation"})));
  std::tie(type, data) = opt_reply(r);
  ASSERT_EQ(type, rep::kMetaContext);
  EXPECT_EQ(load_be32(data.data()), kBaseAllocationId);
  EXPECT_EQ(opt_reply(r).first, rep::kAck);
  go(r, "disk");

  auto block_status = [&](uint64_t cookie, uint64_t off, uint32_t len, uint16_t flags) {
    r.put(request(cmd::kBlockStatus, cookie, off, len, flags));
  };
  // A RAM bdev tracks no allocation: one data extent for the whole range.
  block_status(1, 0, 1 << 20, 0);
  auto h = r.get(20);
  ASSERT_EQ(h.size(), 20u);
  EXPECT_EQ(load_be32(h.data()), kStructuredReplyMagic);
  EXPECT_EQ(load_be16(h.data() + 4), chunk::kDone);
  EXPECT_EQ(load_be16(h.data() + 6), chunk::kBlockStatus);
  EXPECT_EQ(load_be64(h.data() + 8), 1u);
  ASSERT_EQ(load_be32(h.data() + 16), 12u);
  auto p = r.get(12);
  EXPECT_EQ(load_be32(p.data()), kBaseAllocationId);
  EXPECT_EQ(load_be32(p.data() + 4), 1u << 20);
  EXPECT_EQ(load_be32(p.data() + 8), 0u);
  // REQ_ONE: still one extent, never longer than asked.
  block_status(2, 4096, 8192, cflag::kReqOne);
  h = r.get(20);
  ASSERT_EQ(load_be32(h.data() + 16), 12u);
  p = r.get(12);
  EXPECT_EQ(load_be32(p.data() + 4), 8192u);
  // Unaligned, beyond the end, zero length, an unknown flag: EINVAL.
  int cookie = 10;
  for (auto [off, len, flags] : std::vector<std::tuple<uint64_t, uint32_t, uint16_t>>{
           {100, 4096, 0}, {128u << 20, 4096, 0}, {0, 0, 0}, {0, 4096, cflag::kNoHole}}) {
    block_status(cookie, off, len, flags);
    auto rep = r.get(16);
    ASSERT_EQ(rep.size(), 16u);
    EXPECT_EQ(load_be32(rep.data()), kSimpleReplyMagic);
    EXPECT_EQ(load_be32(rep.data() + 4), err::kInval) << off << " " << len;
    EXPECT_EQ(load_be64(rep.data() + 8), static_cast<uint64_t>(cookie));
    ++cookie;
  }

  // A connection that selected nothing gets EINVAL; so does one that selected the
  // context for another export.
  for (const char* selected_for : {"", "ro"}) {
    Raw c(port);
    start(c, true);
    if (*selected_for) {
      c.put(option(opt::kSetMetaContext, meta_request(selected_for, {"base:allocation"})));
      EXPECT_EQ(opt_reply(c).first, rep::kMetaContext);
      EXPECT_EQ(opt_reply(c).first, rep::kAck);
    }
    go(c, "disk");
    c.put(request(cmd::kBlockStatus, 5, 0, 4096));
    auto rep = c.get(16);
    ASSERT_EQ(rep.size(), 16u);
    EXPECT_EQ(load_be32(rep.data() + 4), err::kInval) << selected_for;
  }
}

// Replies the server makes up itself count against the requests a connection may have in
// flight: a client that streams 20000 invalid requests without reading the replies is held
// back by TCP instead of making the server queue a reply for each. Every reply arrives, in
// order, once the client reads.
TEST_F(Nbd, ClientStreamingInvalidRequestsIsHeldBack) {
  Raw r(port);
  open_disk(r);
  constexpr int kRequests = 20000;
  std::vector<uint8_t> all;
  for (int i = 0; i < kRequests; ++i) {
    auto q = request(42, 1000 + i, 0, 0);  // an unknown command: EINVAL
    all.insert(all.end(), q.begin(), q.end());
  }
  std::thread writer([&] { r.put(all); });
  // The server stops reading well before the client has sent everything.
  for (int i = 0; i < 100 && srv->stats().receive_pauses == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(srv->stats().receive_pauses, 1u);
  for (int i = 0; i < kRequests; ++i) {
    auto rep = r.get(16);
    ASSERT_EQ(rep.size(), 16u) << "reply " << i;
    ASSERT_EQ(load_be32(rep.data() + 4), err::kInval);
    ASSERT_EQ(load_be64(rep.data() + 8), 1000u + i);
  }
  writer.join();
}

// The server-wide budget bounds what many connections hold together, beyond each one's own
// limit: four clients (two per reactor) each pipeline six 32 MiB reads, 768 MiB in all,
// with a budget of 64 MiB (32 MiB per reactor). Without it each reactor would hold up to
// 2 x 64 MiB. Every reply still arrives, intact and in order, to clients that read
// concurrently.
class NbdSmallBudget : public Nbd {
 protected:
  NbdSmallBudget() { options.buffer_budget_bytes = 2 * uint64_t{kMaxPayload}; }
};

TEST_F(NbdSmallBudget, ConnectionsTogetherStayWithinTheServerBudget) {
  std::vector<std::unique_ptr<Raw>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<Raw>(port));
    open_disk(*clients.back());
  }
  const auto pattern = write_pattern(*clients[0]);
  EXPECT_EQ(srv->stats().budget_pauses, 0u);
  constexpr int kReads = 6;
  for (auto& c : clients) {
    for (int i = 0; i < kReads; ++i) c->put(request(cmd::kRead, 100 + i, 0, kMaxPayload));
  }
  EXPECT_TRUE(wait_until([&] { return srv->stats().budget_pauses >= 1; }))
      << "no connection was paused for the server's budget";
  std::vector<std::thread> readers;
  for (auto& c : clients) {
    readers.emplace_back([&c, &pattern] { expect_read_replies(*c, kReads, 100, pattern); });
  }
  for (auto& t : readers) t.join();
  const NbdStats st = srv->stats();
  EXPECT_LE(st.peak_budget_bytes, uint64_t{kMaxPayload});
  EXPECT_GE(st.peak_budget_bytes, uint64_t{kMaxPayload});
  // Everything was released: a new read fits at once.
  clients[3]->put(request(cmd::kRead, 200, 0, kMaxPayload));
  expect_read_replies(*clients[3], 1, 200, pattern);
}

}  // namespace
}  // namespace castor::nbd
