// Seed inputs for nbd_server_fuzz: whole client sessions (fixed newstyle, GO or
// EXPORT_NAME, INFO/LIST/ABORT, then read, write, flush, trim, write-zeroes, disconnect;
// a burst of reads beyond what a connection may have in flight; meta contexts and
// BLOCK_STATUS).
#include <cstdint>
#include <string>
#include <vector>

#include "nbd/protocol.h"

using namespace castor::nbd;

namespace {
void be(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void option(std::string& s, uint32_t opt, const std::string& data) {
  be(s, kIHaveOpt, 8);
  be(s, opt, 4);
  be(s, data.size(), 4);
  s += data;
}
std::string go_data(const std::string& name) {
  std::string d;
  be(d, name.size(), 4);
  d += name;
  be(d, 1, 2);
  be(d, info::kBlockSize, 2);
  return d;
}
void request(std::string& s, uint16_t type, uint64_t off, uint32_t len, uint16_t flags = 0) {
  be(s, kRequestMagic, 4);
  be(s, flags, 2);
  be(s, type, 2);
  be(s, 0x1122334455667788ull, 8);
  be(s, off, 8);
  be(s, len, 4);
  if (type == cmd::kWrite) s += std::string(len, 'w');
}
std::string transmission() {
  std::string s;
  request(s, cmd::kWrite, 0, 4096, cflag::kFua);
  request(s, cmd::kRead, 0, 4096);
  request(s, cmd::kFlush, 0, 0);
  request(s, cmd::kTrim, 4096, 8192);
  request(s, cmd::kWriteZeroes, 16384, 4096);
  request(s, cmd::kRead, 4 << 20, 512);  // beyond the end
  request(s, cmd::kDisc, 0, 0);
  return s;
}
std::string go_session() {
  std::string s;
  be(s, kFlagFixedNewstyle | kFlagNoZeroes, 4);
  option(s, opt::kStructuredReply, "");
  option(s, opt::kInfo, go_data("e0"));
  option(s, opt::kGo, go_data("e0"));
  return s + transmission();
}
std::string export_name_session() {
  std::string s;
  be(s, kFlagFixedNewstyle, 4);
  option(s, opt::kList, "");
  option(s, opt::kExportName, "e0");
  return s + transmission();
}
// More reads than a connection may have in flight (kMaxRequestsInFlight), sent at once:
// the server stops reading part-way and resumes as the replies drain.
std::string pipelined_session() {
  std::string s;
  be(s, kFlagFixedNewstyle | kFlagNoZeroes, 4);
  option(s, opt::kGo, go_data("e0"));
  for (uint32_t i = 0; i < kMaxRequestsInFlight + 40; ++i) request(s, cmd::kRead, (i % 64) * 4096, 4096);
  request(s, cmd::kDisc, 0, 0);
  return s;
}
// The base:allocation context: LIST and SET (one query it knows, one it does not), then
// BLOCK_STATUS (whole, REQ_ONE, unaligned) and a burst of invalid requests.
std::string meta_context_data(const std::string& name, const std::vector<std::string>& queries) {
  std::string d;
  be(d, name.size(), 4);
  d += name;
  be(d, queries.size(), 4);
  for (const auto& q : queries) {
    be(d, q.size(), 4);
    d += q;
  }
  return d;
}
std::string block_status_session() {
  std::string s;
  be(s, kFlagFixedNewstyle | kFlagNoZeroes, 4);
  option(s, opt::kStructuredReply, "");
  option(s, opt::kListMetaContext, meta_context_data("e0", {}));
  option(s, opt::kSetMetaContext, meta_context_data("e0", {"qemu:dirty-bitmap:b", kBaseAllocation}));
  option(s, opt::kGo, go_data("e0"));
  request(s, cmd::kBlockStatus, 0, 1 << 20);
  request(s, cmd::kBlockStatus, 4096, 8192, cflag::kReqOne);
  request(s, cmd::kBlockStatus, 100, 4096);
  for (int i = 0; i < 300; ++i) request(s, 42, 0, 0);
  request(s, cmd::kDisc, 0, 0);
  return s;
}
std::string abort_session() {
  std::string s;
  be(s, kFlagFixedNewstyle | kFlagNoZeroes, 4);
  option(s, 99, "unknown");
  option(s, opt::kGo, go_data("missing"));
  option(s, opt::kAbort, "");
  return s;
}
}  // namespace

extern const std::vector<std::string> kFuzzSeeds = {go_session(), export_name_session(), pipelined_session(),
                                                  abort_session(), block_status_session()};
