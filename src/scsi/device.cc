#include "scsi/device.h"

#include <cstring>

#include <spdlog/spdlog.h>

#include "scsi/logical_unit.h"
#include "scsi/sense.h"
#include "scsi/wire.h"

namespace castor::scsi {

namespace {
constexpr uint64_t kMaxLun = 255;
constexpr size_t kReportLunsMinAlloc = 16;
constexpr uint8_t kPqNotConnected = 0x7F;  // peripheral qualifier 3, type 1Fh
constexpr size_t kStdInquiryMin = 36;
}  // namespace

Device::Device(bdev::BdevRegistry& registry, DeviceInfo info)
    : registry_(registry), info_(std::move(info)) {}

Device::~Device() = default;

castor::Status Device::add_lun(const LunOptions& o) {
  if (o.lun > kMaxLun) return make_error(Errc::kInvalidArgument, "LUN {} > {}", o.lun, kMaxLun);
  if (luns_.count(o.lun)) return make_error(Errc::kAlreadyExists, "LUN {} already exists", o.lun);
  auto desc = registry_.open(o.bdev);
  if (!desc.is_ok()) return desc.status();
  const uint32_t bs = desc->bdev()->block_size();
  if (bs < 512 || bs > 4096 || (bs & (bs - 1))) {
    return make_error(Errc::kInvalidArgument, "bdev '{}' block size {} is not 512..4096", o.bdev,
                      bs);
  }
  if (desc->bdev()->num_blocks() == 0) {
    return make_error(Errc::kInvalidArgument, "bdev '{}' is empty", o.bdev);
  }
  auto lu = std::make_unique<LogicalUnit>(info_, o, std::move(desc.value()));
  {
    std::lock_guard lk(nexus_mu_);
    for (const auto& [id, n] : nexuses_) lu->attach(*n);
  }
  luns_.emplace(o.lun, std::move(lu));
  spdlog::info("scsi: LUN {} -> bdev '{}'{}", o.lun, o.bdev, o.read_only ? " (read-only)" : "");
  return castor::Status::ok();
}

std::vector<uint64_t> Device::luns() const {
  std::vector<uint64_t> v;
  for (const auto& [n, lu] : luns_) v.push_back(n);
  return v;
}

LogicalUnit* Device::find(uint64_t lun) const {
  auto it = luns_.find(lun);
  return it == luns_.end() ? nullptr : it->second.get();
}

void Device::attach(const ItNexus& n) {
  {
    std::lock_guard lk(nexus_mu_);
    nexuses_[n.id] = &n;
  }
  for (auto& [num, lu] : luns_) lu->attach(n);
}

void Device::detach(const ItNexus& n) {
  {
    std::lock_guard lk(nexus_mu_);
    nexuses_.erase(n.id);
  }
  for (auto& [num, lu] : luns_) lu->detach(n);
}

size_t Device::capacity_changed(const std::string& bdev) {
  size_t n = 0;
  for (auto& [num, lu] : luns_) {
    if (lu->bdev().name() != bdev) continue;
    lu->capacity_changed();
    spdlog::info("scsi {}: LUN {} ({}) grew to {} blocks; unit attention 2A/09 queued", info_.target_name, num,
                 bdev, lu->bdev().num_blocks());
    ++n;
  }
  return n;
}

bool Device::lun_reset(uint64_t lun, const ItNexus& by) {
  LogicalUnit* lu = find(lun);
  if (!lu) return false;
  lu->reset(by);
  return true;
}

void Device::execute(Command& c, reactor::Reactor& r) {
  c.reset_result();
  c.reactor = &r;
  c.owner = nullptr;
  const uint8_t op = c.cdb[0];
  if (op == op::kReportLuns) {
    // Handled here since it lists every LU; valid on any LUN, never a UA.
    const uint32_t alloc = load_be32(c.cdb + cdb::kRlAlloc);
    const uint8_t select = c.cdb[cdb::kRlSelect];
    if (alloc < kReportLunsMinAlloc) {
      invalid_cdb_field(c, cdb::kRlAlloc);
      return finish_later(c);
    }
    if (select > 2) {
      invalid_cdb_field(c, cdb::kRlSelect);
      return finish_later(c);
    }
    const size_t n = 8 + 8 * luns_.size();
    grow_buffer(c, n, 0, 4096);
    uint8_t* p = c.buf.data();
    std::memset(p, 0, n);
    store_be32(p, static_cast<uint32_t>(8 * luns_.size()));
    size_t off = 8;
    for (const auto& [num, lu] : luns_) {
      p[off + 1] = static_cast<uint8_t>(num);  // peripheral device addressing, bus 0
      off += 8;
    }
    c.dir = DataDir::kIn;
    c.xfer_len = static_cast<uint32_t>(std::min<size_t>(n, alloc));
    return finish_later(c);
  }
  if (LogicalUnit* lu = find(c.lun)) return lu->execute(c);
  // Unknown LUN (SPC-4 / SAM-5 5.9.2).
  if (op == op::kInquiry && !(c.cdb[cdb::kInqFlags] & 0xFE)) {
    const uint32_t alloc = load_be16(c.cdb + cdb::kInqAlloc);
    const bool evpd = c.cdb[cdb::kInqFlags] & cdb::kEvpd;
    const size_t n = evpd ? 4 : kStdInquiryMin;
    grow_buffer(c, n, 0, 4096);
    std::memset(c.buf.data(), 0, n);
    c.buf.data()[0] = kPqNotConnected;
    if (evpd) {
      c.buf.data()[1] = c.cdb[cdb::kInqPage];
    } else {
      c.buf.data()[2] = 0x06;
      c.buf.data()[3] = 0x12;
      c.buf.data()[4] = kStdInquiryMin - 5;
    }
    c.dir = DataDir::kIn;
    c.xfer_len = static_cast<uint32_t>(std::min<size_t>(n, alloc));
    return finish_later(c);
  }
  if (op == op::kRequestSense) {
    constexpr size_t kAllocByte = 4;
    grow_buffer(c, kSenseFixedLen, 0, 4096);
    build_fixed_sense(c.buf.data(), sense_key::kIllegalRequest, asc::kLunNotSupported);
    c.dir = DataDir::kIn;
    c.xfer_len = std::min<uint32_t>(kSenseFixedLen, c.cdb[kAllocByte]);
    return finish_later(c);
  }
  check_condition(c, sense_key::kIllegalRequest, asc::kLunNotSupported);
  finish_later(c);
}

}  // namespace castor::scsi
