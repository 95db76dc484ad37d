#include "iscsi/chap.h"

#include <nettle/md5.h>
#include <nettle/memops.h>

#include <sys/random.h>

#include <cerrno>

#include <stdexcept>

namespace castor::iscsi {

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
int b64_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

Result<std::vector<uint8_t>> decode_binary(const std::string& v) {
  if (v.size() < 3 || v[0] != '0') return Status(Errc::kInvalidArgument, "not a binary value");
  std::vector<uint8_t> out;
  if (v[1] == 'x' || v[1] == 'X') {
    const size_t n = v.size() - 2;
    if (n % 2) return Status(Errc::kInvalidArgument, "odd number of hex digits");
    out.reserve(n / 2);
    for (size_t i = 2; i < v.size(); i += 2) {
      int h = hex_digit(v[i]), l = hex_digit(v[i + 1]);
      if (h < 0 || l < 0) return Status(Errc::kInvalidArgument, "bad hex digit");
      out.push_back(static_cast<uint8_t>(h << 4 | l));
    }
    return out;
  }
  if (v[1] == 'b' || v[1] == 'B') {
    uint32_t acc = 0;
    int bits = 0;
    size_t i = 2;
    for (; i < v.size() && v[i] != '='; ++i) {
      int d = b64_digit(v[i]);
      if (d < 0) return Status(Errc::kInvalidArgument, "bad base64 digit");
      acc = (acc << 6) | static_cast<uint32_t>(d);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out.push_back(static_cast<uint8_t>(acc >> bits));
      }
    }
    for (; i < v.size(); ++i) {
      if (v[i] != '=') return Status(Errc::kInvalidArgument, "data after base64 padding");
    }
    if (out.empty()) return Status(Errc::kInvalidArgument, "empty base64 value");
    return out;
  }
  return Status(Errc::kInvalidArgument, "binary value must start with 0x or 0b");
}

std::string encode_hex(const std::vector<uint8_t>& b) {
  static const char* d = "0123456789abcdef";
  std::string s = "0x";
  for (uint8_t x : b) {
    s += d[x >> 4];
    s += d[x & 15];
  }
  return s;
}

std::vector<uint8_t> chap_md5(uint8_t id, const std::string& secret, const std::vector<uint8_t>& challenge) {
  // Nettle's MD5: no allocation and no global or per-thread state, so it is safe on any
  // reactor thread.
  md5_ctx ctx;
  md5_init(&ctx);
  md5_update(&ctx, 1, &id);
  md5_update(&ctx, secret.size(), reinterpret_cast<const uint8_t*>(secret.data()));
  md5_update(&ctx, challenge.size(), challenge.data());
  std::vector<uint8_t> out(MD5_DIGEST_SIZE);
  md5_digest(&ctx, out.size(), out.data());
  return out;
}

std::vector<uint8_t> random_bytes(size_t n) {
  // The kernel's CSPRNG: no per-thread generator state (OpenSSL's RAND keeps one per
  // reactor thread, which outlives the thread).
  std::vector<uint8_t> b(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(b.data() + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");
    }
    got += static_cast<size_t>(r);
  }
  return b;
}

bool equal_secret_bytes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  return a.size() == b.size() && nettle_memeql_sec(a.data(), b.data(), a.size());
}

}  // namespace castor::iscsi
