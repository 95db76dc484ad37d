// Seed inputs for scsi_device_fuzz: one command sequence per family of commands.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace {
void be(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s += static_cast<char>(v >> (8 * i));
}
// flags(1) cdb(16) edtl(4) data_len(2) data
void cmd(std::string& s, uint8_t flags, std::initializer_list<uint8_t> cdb, uint32_t edtl,
         const std::string& data = "") {
  s += static_cast<char>(flags);
  std::string c(16, '\0');
  size_t i = 0;
  for (uint8_t b : cdb) c[i++] = static_cast<char>(b);
  s += c;
  be(s, edtl, 4);
  be(s, data.size(), 2);
  s += data;
}
std::string blocks(size_t n, char ch) { return std::string(n * 512, ch); }
std::string pr_params(uint64_t key, uint64_t sa_key) {
  std::string p;
  be(p, key, 8);
  be(p, sa_key, 8);
  p += std::string(8, '\0');
  return p;
}

std::vector<std::string> make() {
  std::vector<std::string> v;
  std::string s;
  // Discovery as an initiator does it.
  cmd(s, 0, {0x00}, 0);
  cmd(s, 0, {0x12, 0, 0, 0, 255}, 255);
  cmd(s, 0, {0x12, 1, 0x83, 0, 255}, 255);
  cmd(s, 0, {0x12, 1, 0xB0, 0, 255}, 255);
  cmd(s, 0, {0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32}, 32);
  cmd(s, 0, {0x1A, 0, 0x3F, 0, 255}, 255);
  cmd(s, 0, {0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, 256);
  cmd(s, 0, {0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 16, 0}, 4096);
  v.push_back(s);
  s.clear();
  // Data path.
  cmd(s, 0, {0x00}, 0);
  cmd(s, 0, {0x2A, 0, 0, 0, 0, 8, 0, 0, 2, 0}, 1024, blocks(2, 'a'));
  cmd(s, 0, {0x28, 0, 0, 0, 0, 8, 0, 0, 2, 0}, 1024);
  cmd(s, 0, {0x2F, 0x02, 0, 0, 0, 8, 0, 0, 2, 0}, 1024, blocks(2, 'a'));
  cmd(s, 0, {0x89, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1}, 1024, blocks(1, 'a') + blocks(1, 'b'));
  cmd(s, 0, {0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 64}, 512, blocks(1, '\0'));
  cmd(s, 0, {0x8A, 0x08, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 1}, 512, blocks(1, 'z'));
  cmd(s, 0, {0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0);
  v.push_back(s);
  s.clear();
  // UNMAP and WRITE SAME replicate.
  std::string list;
  be(list, 22, 2);
  be(list, 16, 2);
  be(list, 0, 4);
  be(list, 4, 8);
  be(list, 8, 4);
  be(list, 0, 4);
  cmd(s, 0, {0x00}, 0);
  cmd(s, 0, {0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, 24, list);
  cmd(s, 0, {0x41, 0, 0, 0, 0, 0, 0, 0, 200, 0}, 512, blocks(1, 'q'));
  cmd(s, 0, {0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24}, 24);
  v.push_back(s);
  s.clear();
  // Reservations from two nexuses.
  cmd(s, 0, {0x00}, 0);
  cmd(s, 1, {0x00}, 0);
  cmd(s, 0, {0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0}, 24, pr_params(0, 1));
  cmd(s, 1, {0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0}, 24, pr_params(0, 2));
  cmd(s, 0, {0x5F, 1, 3, 0, 0, 0, 0, 0, 24, 0}, 24, pr_params(1, 0));
  cmd(s, 1, {0x5F, 4, 6, 0, 0, 0, 0, 0, 24, 0}, 24, pr_params(2, 1));
  cmd(s, 0, {0x5E, 3, 0, 0, 0, 0, 0, 0x10, 0, 0}, 4096);
  cmd(s, 0x08, {0x16, 0, 0, 0, 0, 0}, 0);
  v.push_back(s);
  s.clear();
  // MODE SELECT, read-only LU, absent LU.
  cmd(s, 0, {0x00}, 0);
  cmd(s, 0, {0x15, 0x10, 0, 0, 16, 0}, 16,
      std::string("\0\0\0\0\x0a\x0a\0\x10\0\0\0\0\0\0\0\0", 16));
  cmd(s, 2, {0x00}, 0);
  cmd(s, 2, {0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, 4096, std::string(4096, 'x'));
  cmd(s, 4, {0x12, 0, 0, 0, 96, 0}, 96);
  cmd(s, 0x10, {0x03, 0, 0, 0, 18, 0}, 18);
  v.push_back(s);
  return v;
}
}  // namespace

extern const std::vector<std::string> kFuzzSeeds = make();
