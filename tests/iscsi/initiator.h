#pragma once
// A small blocking iSCSI initiator over a raw TCP socket, for the target tests: builds
// and parses PDUs byte by byte (optional header and data digests), logs in with a single
// login PDU straight to full feature phase, and can take part in a session of several
// connections (MC/S): a chosen TSIH, CID, ISID and InitiatorName, and a CmdSN counter
// shared by every connection of one session.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "../bdev/harness.h"
#include "common/crc32c.h"
#include "iscsi/protocol.h"
#include "iscsi/target.h"
#include "iscsi/text.h"

namespace castor::iscsi::test {

inline constexpr const char* kIqn = "iqn.2026-11.io.castor:t";
inline constexpr const char* kInitiatorName = "iqn.2026-11.test:initiator";

struct Pdu {
  Bhs h;
  std::string data;
};

// A blocking initiator connection with optional digests.
class Initiator {
 public:
  explicit Initiator(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Initiator() { close(); }
  Initiator(const Initiator&) = delete;
  Initiator& operator=(const Initiator&) = delete;

  bool hd = false, dd = false;
  uint32_t cmd_sn = 1, itt = 1;
  uint8_t isid_qualifier = 0;  // the last ISID byte: distinct sessions from one initiator
  std::string initiator_name = kInitiatorName;

  // CmdSN is numbered per session, not per connection: connections of one session share
  // one counter. By default a connection uses its own `cmd_sn`; after share_cmd_sn(x)
  // every CmdSN it sends (commands, login) comes from and advances `x`.
  void share_cmd_sn(uint32_t* counter) { shared_cmd_sn_ = counter; }
  uint32_t& sn() { return shared_cmd_sn_ ? *shared_cmd_sn_ : cmd_sn; }

  void send(Bhs b, const std::string& data, bool corrupt_data_digest = false) {
    b.set_data_segment_length(static_cast<uint32_t>(data.size()));
    std::string out(reinterpret_cast<const char*>(b.b), kBhsSize);
    if (hd) put_crc(out, crc32c(b.b, kBhsSize));
    std::string padded = data + std::string(pad4(static_cast<uint32_t>(data.size())), '\0');
    out += padded;
    if (dd && !data.empty()) put_crc(out, crc32c(padded.data(), padded.size()) ^ (corrupt_data_digest ? 1 : 0));
    ASSERT_EQ(::send(fd_, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  }

  // The next PDU, or nullopt if the connection closed or nothing came within `ms`.
  // eof() tells the two apart.
  std::optional<Pdu> recv(int ms = 5000) {
    Pdu p;
    if (!read_exact(p.h.b, kBhsSize, ms)) return std::nullopt;
    if (hd) {
      uint32_t want;
      if (!read_exact(reinterpret_cast<uint8_t*>(&want), 4, ms)) return std::nullopt;
      EXPECT_EQ(want, crc32c(p.h.b, kBhsSize)) << "header digest";
    }
    const uint32_t n = p.h.data_segment_length();
    std::string padded(n + pad4(n), '\0');
    if (!read_exact(reinterpret_cast<uint8_t*>(padded.data()), padded.size(), ms)) return std::nullopt;
    if (dd && n) {
      uint32_t want;
      if (!read_exact(reinterpret_cast<uint8_t*>(&want), 4, ms)) return std::nullopt;
      EXPECT_EQ(want, crc32c(padded.data(), padded.size())) << "data digest";
    }
    p.data = padded.substr(0, n);
    return p;
  }

  // True once the target closed the connection (a read saw end of file or a reset).
  bool eof() const { return eof_; }

  // Waits up to `ms` for the target to close the connection, discarding any PDU that
  // still arrives (counted in *discarded). True if it closed in time.
  bool wait_closed(int ms = 5000, int* discarded = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!eof_ && fd_ >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      if (recv(static_cast<int>(left.count())) && discarded) ++*discarded;
    }
    return eof_;
  }

  // Closes the socket now, without a logout: to the target, a lost connection.
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Single-PDU login straight to full feature phase, with InitiatorName and TargetName
  // followed by `extra_keys`. `tsih` 0 starts a new session (leading login); otherwise
  // the connection `cid` joins (or reinstates its CID in) session `tsih`. Returns the
  // whole login response, or nullopt if none came.
  std::optional<Pdu> login_pdu(const std::string& extra_keys, uint16_t tsih, uint16_t cid) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kLogin | kImmediateBit);
    b.set_flags(0x87);  // T, CSG operational, NSG full feature
    b.b[off::kIsid] = 0x80;
    b.b[off::kIsid + 5] = isid_qualifier;
    b.set_u16(off::kTsih, tsih);
    b.set_u16(off::kCid, cid);
    b.set_itt(itt++);
    b.set_u32(off::kLoginCmdSn, sn());
    std::string text;
    append_text(text, "InitiatorName", initiator_name);
    append_text(text, "TargetName", kIqn);
    text += extra_keys;
    const bool h = hd, d = dd;
    hd = dd = false;  // digests start after the login
    send(b, text);
    auto r = recv();
    hd = h;
    dd = d;
    return r;
  }

  // The status of a login response: class << 8 | detail.
  static uint16_t login_status(const Pdu& r) {
    return static_cast<uint16_t>(r.h.b[off::kStatusClass] << 8 | r.h.b[off::kStatusDetail]);
  }

  // Leading login (TSIH 0, CID 0). Returns the login status, 0xFFFF if no response came.
  uint16_t login(const std::string& extra_keys) {
    auto r = login_pdu(extra_keys, 0, 0);
    if (!r) return 0xFFFF;
    return login_status(*r);
  }

  Bhs command(const uint8_t* cdb, size_t n, uint8_t flags, uint32_t edtl) {
    Bhs b;
    b.clear();
    b.set_opcode(op::kScsiCmd);
    b.set_flags(flags);
    b.set_itt(itt++);
    b.set_u32(off::kEdtl, edtl);
    b.set_u32(off::kCmdSn, sn()++);
    std::memcpy(b.b + off::kCdb, cdb, n);
    return b;
  }

 private:
  static void put_crc(std::string& s, uint32_t c) { s.append(reinterpret_cast<const char*>(&c), 4); }
  bool read_exact(uint8_t* p, size_t n, int ms) {
    while (n) {
      if (fd_ < 0 || eof_) return false;
      pollfd pf{fd_, POLLIN, 0};
      if (poll(&pf, 1, ms) <= 0) return false;
      ssize_t r = ::read(fd_, p, n);
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) eof_ = true;
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  int fd_ = -1;
  bool eof_ = false;
  uint32_t* shared_cmd_sn_ = nullptr;
};

inline void cdb16(uint8_t* c, uint8_t op, uint64_t lba, uint32_t blocks) {
  std::memset(c, 0, 16);
  c[0] = op;
  store_be64(c + 2, lba);
  store_be32(c + 10, blocks);
}

template <class F>
bool wait_for(F&& f, int timeout_ms = 5000) {
  for (int i = 0; i < timeout_ms && !f(); i += 5) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return f();
}

// A live target on loopback (two reactors): node kIqn with a 16 MiB RAM disk (512-byte
// blocks) as LUN 0, listening on `port`.
class TargetFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(env.reg->create("malloc:///d0?size_mb=16&blk_size=512"));
    target = std::make_unique<IscsiTarget>(env.group, *env.reg, options());
    ASSERT_TRUE(target->listen("127.0.0.1", 0, &port));
    NodeConfig n;
    n.name = kIqn;
    n.luns.push_back(scsi::LunOptions{.lun = 0, .bdev = "d0", .read_only = false, .product = "t"});
    ASSERT_TRUE(target->add_node(n));
  }
  void TearDown() override { target->stop(); }
  virtual TargetOptions options() const { return {}; }

  bdev::test::Env env;
  std::unique_ptr<IscsiTarget> target;
  uint16_t port = 0;
};

}  // namespace castor::iscsi::test
