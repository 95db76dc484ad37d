#pragma once
// The ANA log page (0Ch) as a host reads it: which ANA state a namespace's group is in.
// The page comes from the network; ana_state_of() checks every length and count against
// the bytes received before it reads a descriptor.

#include <cstdint>
#include <span>
#include <string>

#include "common/status.h"
#include "nvmf/codec/spec.h"

namespace castor::nvmf {

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
