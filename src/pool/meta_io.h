#pragma once
// Metadata I/O helpers for the pool: synchronous block I/O from a control thread (used
// by create/import/destroy) and asynchronous I/O on the home reactor (used by commits).
// Offsets and lengths are bytes and must be multiples of the member's block size. Each
// goes through an open descriptor of the disk (its channels).

#include <functional>
#include <memory>
#include <span>

#include "bdev/bdev.h"

namespace castor::pool {

// Blocks the calling (non-reactor) thread until the I/O completes on reactor `r`.
Status sync_io(reactor::Reactor& r, const bdev::BdevDesc& d, bdev::IoType type, uint64_t offset,
               void* buf, size_t len);
Status sync_read(reactor::Reactor& r, const bdev::BdevDesc& d, uint64_t offset, void* buf, size_t len);
Status sync_write(reactor::Reactor& r, const bdev::BdevDesc& d, uint64_t offset, const void* buf,
                  size_t len);
Status sync_flush(reactor::Reactor& r, const bdev::BdevDesc& d);

// Asynchronous I/O on the calling reactor; `done` runs on it. `buf` is copied into an
// aligned buffer for writes and out of it for reads.
using IoDone = std::function<void(bdev::IoStatus)>;
void async_io(reactor::Reactor& r, const bdev::BdevDesc& d, bdev::IoType type, uint64_t offset,
              uint64_t len, std::shared_ptr<bdev::DmaBuffer> buf, IoDone done);

// Runs `n` asynchronous steps started by `start(i, done_i)` in parallel and calls
// `done` once with the first failure (or success) after all finished.
void parallel(size_t n, const std::function<void(size_t, IoDone)>& start, IoDone done);

}  // namespace castor::pool
