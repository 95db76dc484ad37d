#pragma once
// An iSCSI PDU as bytes on the wire, without digests: the header with its data segment
// length set, the data, and the padding to 4 bytes. Shared by the MC/S fuzz harness and
// its seeds.
#include <string>

#include "iscsi/protocol.h"

inline std::string pdu_bytes(castor::iscsi::Bhs b, const std::string& data) {
  using namespace castor::iscsi;
  b.set_data_segment_length(static_cast<uint32_t>(data.size()));
  std::string s(reinterpret_cast<const char*>(b.b), kBhsSize);
  s += data;
  s.append(pad4(static_cast<uint32_t>(data.size())), '\0');
  return s;
}
