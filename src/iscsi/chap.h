#pragma once
// Layer 5: CHAP for iSCSI login (RFC 1994 with RFC 7143 §12.1.3): MD5 only (CHAP_A=5),
// challenges and responses as "0x" hex or "0b" base64 binary values.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace castor::iscsi {

// Secrets for one direction: the name the other side must present, and its secret.
struct ChapCredentials {
  std::string user;
  std::string secret;
  bool enabled() const { return !user.empty(); }
};

// Decodes an RFC 7143 binary value ("0x..." hex or "0b..." base64). Errors:
// InvalidArgument (bad prefix, bad digit, odd hex length, empty).
Result<std::vector<uint8_t>> decode_binary(const std::string& v);
std::string encode_hex(const std::vector<uint8_t>& b);  // "0x..." lower-case

// MD5(id || secret || challenge).
std::vector<uint8_t> chap_md5(uint8_t id, const std::string& secret, const std::vector<uint8_t>& challenge);
// `n` cryptographically random bytes (getrandom(2)).
std::vector<uint8_t> random_bytes(size_t n);

// Constant-time comparison for responses.
bool equal_secret_bytes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

}  // namespace castor::iscsi
