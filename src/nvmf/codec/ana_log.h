#pragma once
// The ANA log page (0Ch): built by the target (build_ana_log), read by the host
// (ana_state_of: which ANA state a namespace's group is in). The page comes from the
// network; ana_state_of() checks every length and count against the bytes received
// before it reads a descriptor.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "nvmf/codec/spec.h"

namespace castor::nvmf {

struct AnaLogGroup {
  uint32_t grpid = 0;
  AnaState state = AnaState::kOptimized;
  uint64_t chgcnt = 0;
  std::vector<uint32_t> nsids;
};

// The page for `groups`, with change count `chgcnt`; `groups_only` (Get Log Page's RGO)
// leaves out the NSID lists.
std::vector<uint8_t> build_ana_log(uint64_t chgcnt, std::span<const AnaLogGroup> groups, bool groups_only = false);

// The state of the ANA group that lists `nsid` in `page` (the log page with its NSID
// lists, not RGO). Errors: InvalidArgument (the page is shorter than its header and
// descriptors say, or a state is not one of the five), NotFound (no group lists `nsid`).
Result<AnaState> ana_state_of(std::span<const uint8_t> page, uint32_t nsid);

// Whether a host may send I/O on a path in state `s` (optimized or non-optimized).
inline bool ana_accessible(AnaState s) { return s == AnaState::kOptimized || s == AnaState::kNonOptimized; }

// optimized, non_optimized, inaccessible, persistent_loss, change.
const char* ana_state_name(AnaState s);
// Errors: InvalidArgument naming the accepted words.
Result<AnaState> parse_ana_state(const std::string& s);

}  // namespace castor::nvmf
