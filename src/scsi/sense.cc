#include "scsi/sense.h"

#include <cstring>

#include "scsi/wire.h"

namespace castor::scsi {

namespace {
// Fixed-format offsets.
constexpr size_t kKey = 2, kInfo = 3, kAddLen = 7, kAsc = 12, kAscq = 13, kSks = 15;

uint32_t field_pointer(bool cd, uint32_t byte, int bit) {
  uint32_t sks = kSksv;
  if (cd) sks |= kSksCd;
  if (bit >= 0) sks |= kSksBpv | (static_cast<uint32_t>(bit) & 7);
  return sks << 16 | (byte & 0xFFFF);
}
}  // namespace

uint8_t build_fixed_sense(uint8_t* out, uint8_t key, uint16_t asc_ascq, bool has_info,
                          uint32_t info, uint32_t sks) {
  std::memset(out, 0, kSenseFixedLen);
  out[0] = kSenseFixedCurrent | (has_info ? kSenseValid : 0);
  out[kKey] = key & 0x0F;
  if (has_info) store_be32(out + kInfo, info);
  out[kAddLen] = kSenseFixedLen - 8;
  out[kAsc] = static_cast<uint8_t>(asc_ascq >> 8);
  out[kAscq] = static_cast<uint8_t>(asc_ascq);
  if (sks) {
    out[kSks] = static_cast<uint8_t>(sks >> 16);
    out[kSks + 1] = static_cast<uint8_t>(sks >> 8);
    out[kSks + 2] = static_cast<uint8_t>(sks);
  }
  return kSenseFixedLen;
}

void check_condition(Command& c, uint8_t key, uint16_t asc_ascq) {
  c.status = Status::kCheckCondition;
  c.sense_len = build_fixed_sense(c.sense, key, asc_ascq);
}

void invalid_cdb_field(Command& c, uint32_t byte, int bit) {
  c.status = Status::kCheckCondition;
  c.sense_len = build_fixed_sense(c.sense, sense_key::kIllegalRequest, asc::kInvalidFieldInCdb,
                                  false, 0, field_pointer(true, byte, bit));
}

void invalid_param_field(Command& c, uint32_t byte, int bit) {
  c.status = Status::kCheckCondition;
  c.sense_len = build_fixed_sense(c.sense, sense_key::kIllegalRequest,
                                  asc::kInvalidFieldInParamList, false, 0,
                                  field_pointer(false, byte, bit));
}

void miscompare(Command& c, uint32_t offset) {
  c.status = Status::kCheckCondition;
  c.sense_len = build_fixed_sense(c.sense, sense_key::kMiscompare, asc::kMiscompare, true, offset);
}

}  // namespace castor::scsi
