#pragma once
// Synchronous block I/O from a control thread (the WriteBlocks / ReadBlocks RPCs, for
// tests and debugging). The I/O runs on reactor 0 through a descriptor opened from the
// registry, so the bdev cannot be destroyed while it is in flight.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "bdev/registry.h"
#include "common/status.h"

namespace castor::api {

// Largest transfer of one call.
inline constexpr uint64_t kMaxBlockIoBytes = 4ull << 20;

// The Errc an I/O completion status maps to: NoSpace -> kNoSpace, Invalid ->
// kInvalidArgument, TimedOut -> kTimedOut, Aborted -> kAborted, others -> kIoError.
Errc errc_of(bdev::IoStatus s);

// Writes `data` at `offset` bytes of bdev `name`; with `flush`, then flushes it and
// returns only once both succeeded (a bdev that does not support flush has no volatile
// cache: the write alone is durable). Gives up waiting after `timeout` (the I/O itself
// then finishes in the background and keeps the bdev open until it does).
// Errors: InvalidArgument (unaligned or empty range, longer than kMaxBlockIoBytes, past
// the end), NotFound, Busy (claimed by a pool or another bdev), TimedOut, and the
// completion status through errc_of().
Status write_blocks(bdev::BdevRegistry& registry, const std::string& name, uint64_t offset,
                    std::string_view data, bool flush, std::chrono::milliseconds timeout);

// Reads `length` bytes at `offset` of bdev `name`. Errors as write_blocks().
Result<std::string> read_blocks(bdev::BdevRegistry& registry, const std::string& name,
                                uint64_t offset, uint64_t length,
                                std::chrono::milliseconds timeout);

}  // namespace castor::api
