#include "nvmf/codec/ana_log.h"

#include <cstring>

namespace castor::nvmf {

std::vector<uint8_t> build_ana_log(uint64_t chgcnt, std::span<const AnaLogGroup> groups, bool groups_only) {
  std::vector<uint8_t> page(sizeof(AnaLogHeader));
  AnaLogHeader h{};
  h.chgcnt = chgcnt;
  h.ngrps = static_cast<uint16_t>(groups.size());
  std::memcpy(page.data(), &h, sizeof(h));
  for (const auto& g : groups) {
    AnaGroupDescriptor d{};
    d.grpid = g.grpid;
    d.chgcnt = g.chgcnt;
    d.state = static_cast<uint8_t>(g.state);
    d.nnsids = groups_only ? 0 : static_cast<uint32_t>(g.nsids.size());
    const size_t at = page.size();
    page.resize(at + sizeof(d) + 4 * size_t{d.nnsids});
    std::memcpy(page.data() + at, &d, sizeof(d));
    if (d.nnsids) std::memcpy(page.data() + at + sizeof(d), g.nsids.data(), 4 * size_t{d.nnsids});
  }
  return page;
}

Result<AnaState> ana_state_of(std::span<const uint8_t> page, uint32_t nsid) {
  if (page.size() < sizeof(AnaLogHeader)) {
    return make_error(Errc::kInvalidArgument, "ANA log: {} bytes, shorter than its header", page.size());
  }
  AnaLogHeader h;
  std::memcpy(&h, page.data(), sizeof(h));
  size_t pos = sizeof(h);
  for (uint32_t g = 0; g < h.ngrps; ++g) {
    if (page.size() - pos < sizeof(AnaGroupDescriptor)) {
      return make_error(Errc::kInvalidArgument, "ANA log: group {} of {} lies past the {} bytes read", g, h.ngrps,
                        page.size());
    }
    AnaGroupDescriptor d;
    std::memcpy(&d, page.data() + pos, sizeof(d));
    pos += sizeof(d);
    if (d.nnsids > (page.size() - pos) / 4) {
      return make_error(Errc::kInvalidArgument, "ANA log: group {} lists {} namespaces past the {} bytes read",
                        d.grpid, d.nnsids, page.size());
    }
    bool listed = false;
    for (uint32_t i = 0; i < d.nnsids; ++i) {
      uint32_t id;
      std::memcpy(&id, page.data() + pos + 4 * size_t{i}, 4);
      listed |= id == nsid;
    }
    pos += 4 * size_t{d.nnsids};
    if (!listed) continue;
    const auto s = static_cast<AnaState>(d.state & 0x0f);
    switch (s) {
      case AnaState::kOptimized:
      case AnaState::kNonOptimized:
      case AnaState::kInaccessible:
      case AnaState::kPersistentLoss:
      case AnaState::kChange:
        return s;
    }
    return make_error(Errc::kInvalidArgument, "ANA log: group {} has the reserved state 0x{:x}", d.grpid, d.state);
  }
  return make_error(Errc::kNotFound, "ANA log: no group lists namespace {}", nsid);
}

const char* ana_state_name(AnaState s) {
  switch (s) {
    case AnaState::kOptimized: return "optimized";
    case AnaState::kNonOptimized: return "non_optimized";
    case AnaState::kInaccessible: return "inaccessible";
    case AnaState::kPersistentLoss: return "persistent_loss";
    case AnaState::kChange: return "change";
  }
  return "unknown";
}

Result<AnaState> parse_ana_state(const std::string& s) {
  for (AnaState st : {AnaState::kOptimized, AnaState::kNonOptimized, AnaState::kInaccessible,
                      AnaState::kPersistentLoss, AnaState::kChange}) {
    if (s == ana_state_name(st)) return st;
  }
  return make_error(Errc::kInvalidArgument,
                    "'{}' is not an ANA state (optimized, non_optimized, inaccessible, persistent_loss, change)", s);
}

}  // namespace castor::nvmf
