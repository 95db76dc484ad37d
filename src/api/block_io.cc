#include "api/block_io.h"

#include <algorithm>
#include <cstring>
#include <future>
#include <memory>

#include "api/names.h"

namespace castor::api {
namespace {

using bdev::IoStatus;
using bdev::IoType;

// One I/O sequence (read, write, or write then flush). Shared between the waiting
// control thread and reactor 0; `self` keeps it alive until the last completion, so a
// caller that stops waiting leaves the buffer and descriptor valid for the device.
struct BlockIo {
  bdev::BdevDesc desc;
  bdev::DmaBuffer buf;
  iovec iov{};
  bdev::IoRequest req;
  bool flush_after = false;
  std::promise<std::pair<IoType, IoStatus>> done;
  std::shared_ptr<BlockIo> self;
};

void on_complete(bdev::IoRequest& req, void* arg) {
  auto* io = static_cast<BlockIo*>(arg);
  if (req.status == IoStatus::kSuccess && req.type == IoType::kWrite && io->flush_after) {
    req.type = IoType::kFlush;
    req.offset_blocks = 0;
    req.num_blocks = 0;
    req.iovs = nullptr;
    req.iovcnt = 0;
    // Callbacks run on the submitting reactor and may resubmit.
    io->desc.channel(*reactor::Reactor::current()).submit(req);
    return;
  }
  std::shared_ptr<BlockIo> keep = std::move(io->self);
  io->done.set_value({req.type, req.status});
}

// Opens `name` and checks [offset, offset + length) against it.
Result<bdev::BdevDesc> open_range(bdev::BdevRegistry& registry, const std::string& name,
                                  uint64_t offset, uint64_t length) {
  if (name.empty()) return Status(Errc::kInvalidArgument, "bdev name is required");
  auto desc = registry.open(name);
  if (!desc) return desc.status();
  const bdev::Bdev& b = *desc->bdev();
  const uint64_t bs = b.block_size();
  if (length == 0) return Status(Errc::kInvalidArgument, "length must be positive");
  if (length > kMaxBlockIoBytes) {
    return make_error(Errc::kInvalidArgument, "length {} is above the limit of {} bytes", length,
                      kMaxBlockIoBytes);
  }
  if (offset % bs || length % bs) {
    return make_error(Errc::kInvalidArgument,
                      "offset {} and length {} must be multiples of the block size {} of bdev '{}'",
                      offset, length, bs, name);
  }
  if (offset > b.size_bytes() || length > b.size_bytes() - offset) {
    return make_error(Errc::kInvalidArgument, "range {}+{} is past the end of bdev '{}' ({} bytes)",
                      offset, length, name, b.size_bytes());
  }
  return std::move(desc.value());
}

// Submits `io->req` on reactor 0 and waits up to `timeout` for the sequence to end.
Status run(bdev::BdevRegistry& registry, std::shared_ptr<BlockIo> io, const std::string& name,
           uint64_t offset, std::chrono::milliseconds timeout) {
  io->req.cb = on_complete;
  io->req.cb_arg = io.get();
  io->self = io;
  auto fut = io->done.get_future();
  reactor::Reactor& r = registry.reactors().at(0);
  BlockIo* raw = io.get();
  r.send([raw, &r] { raw->desc.channel(r).submit(raw->req); });
  if (fut.wait_for(timeout) != std::future_status::ready) {
    return make_error(Errc::kTimedOut, "I/O on bdev '{}' at offset {} did not finish in {} ms",
                      name, offset, timeout.count());
  }
  auto [type, st] = fut.get();
  if (st == IoStatus::kSuccess) return Status::ok();
  return make_error(errc_of(st), "{} on bdev '{}' at offset {} failed: {}", op_name(type), name,
                    offset, io_status_string(st));
}

std::shared_ptr<BlockIo> make_io(bdev::BdevDesc desc, uint64_t offset, uint64_t length) {
  auto io = std::make_shared<BlockIo>();
  const bdev::Bdev& b = *desc.bdev();
  io->buf = bdev::DmaBuffer(length, std::max<size_t>(4096, b.buf_align()));
  io->iov = {io->buf.data(), length};
  io->req.offset_blocks = offset / b.block_size();
  io->req.num_blocks = length / b.block_size();
  io->req.iovs = &io->iov;
  io->req.iovcnt = 1;
  io->desc = std::move(desc);
  return io;
}

}  // namespace

Errc errc_of(IoStatus s) {
  switch (s) {
    case IoStatus::kSuccess:
      return Errc::kOk;
    case IoStatus::kNoSpace:
      return Errc::kNoSpace;
    case IoStatus::kInvalid:
      return Errc::kInvalidArgument;
    case IoStatus::kTimedOut:
      return Errc::kTimedOut;
    case IoStatus::kAborted:
      return Errc::kAborted;
    case IoStatus::kPathUnavailable:
      return Errc::kUnavailable;
    case IoStatus::kReservationConflict:
      return Errc::kBusy;
    case IoStatus::kIoError:
      break;
  }
  return Errc::kIoError;
}

Status write_blocks(bdev::BdevRegistry& registry, const std::string& name, uint64_t offset,
                    std::string_view data, bool flush, std::chrono::milliseconds timeout) {
  auto desc = open_range(registry, name, offset, data.size());
  if (!desc) return desc.status();
  const bool can_flush = desc->bdev()->supports(IoType::kFlush);
  auto io = make_io(std::move(desc.value()), offset, data.size());
  std::memcpy(io->buf.data(), data.data(), data.size());
  io->req.type = IoType::kWrite;
  io->flush_after = flush && can_flush;
  return run(registry, std::move(io), name, offset, timeout);
}

Result<std::string> read_blocks(bdev::BdevRegistry& registry, const std::string& name,
                                uint64_t offset, uint64_t length,
                                std::chrono::milliseconds timeout) {
  auto desc = open_range(registry, name, offset, length);
  if (!desc) return desc.status();
  auto io = make_io(std::move(desc.value()), offset, length);
  io->req.type = IoType::kRead;
  if (Status st = run(registry, io, name, offset, timeout); !st) return st;
  return std::string(reinterpret_cast<const char*>(io->buf.data()), length);
}

}  // namespace castor::api
