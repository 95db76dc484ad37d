#include "pool/meta_io.h"

#include <cstring>
#include <future>

namespace castor::pool {

using bdev::IoStatus;
using bdev::IoType;

namespace {
struct AsyncIo {
  bdev::IoRequest req;
  iovec iov{};
  std::shared_ptr<bdev::DmaBuffer> buf;
  IoDone done;
};

Status to_status(IoStatus st, const bdev::Bdev& b, IoType t, uint64_t off) {
  if (st == IoStatus::kSuccess) return Status::ok();
  return make_error(st == IoStatus::kNoSpace ? Errc::kNoSpace : Errc::kIoError,
                    "{} of '{}' at byte {} failed: {}", bdev::io_type_name(t), b.name(), off,
                    bdev::io_status_name(st));
}
}  // namespace

void async_io(reactor::Reactor& r, const bdev::BdevDesc& d, IoType type, uint64_t offset,
              uint64_t len, std::shared_ptr<bdev::DmaBuffer> buf, IoDone done) {
  const bdev::Bdev& b = *d.bdev();
  auto* a = new AsyncIo;
  a->buf = std::move(buf);
  a->done = std::move(done);
  a->req.type = type;
  a->req.offset_blocks = offset / b.block_size();
  a->req.num_blocks = len / b.block_size();
  if (type == IoType::kRead || type == IoType::kWrite) {
    a->iov = {a->buf->data(), len};
    a->req.iovs = &a->iov;
    a->req.iovcnt = 1;
  }
  a->req.cb = [](bdev::IoRequest& req, void* arg) {
    std::unique_ptr<AsyncIo> self(static_cast<AsyncIo*>(arg));
    self->done(req.status);
  };
  a->req.cb_arg = a;
  if (offset % b.block_size() || len % b.block_size()) {
    // Metadata offsets are always block aligned; treat a violation as a bug report.
    a->req.num_blocks = 0;
    a->req.type = IoType::kWrite;
  }
  d.channel(r).submit(a->req);
}

void parallel(size_t n, const std::function<void(size_t, IoDone)>& start, IoDone done) {
  if (n == 0) {
    done(IoStatus::kSuccess);
    return;
  }
  struct State {
    size_t left;
    IoStatus first = IoStatus::kSuccess;
    IoDone done;
  };
  auto st = std::make_shared<State>(State{n, IoStatus::kSuccess, std::move(done)});
  for (size_t i = 0; i < n; ++i) {
    start(i, [st](IoStatus s) {
      if (s != IoStatus::kSuccess && st->first == IoStatus::kSuccess) st->first = s;
      if (--st->left == 0) st->done(st->first);
    });
  }
}

Status sync_io(reactor::Reactor& r, const bdev::BdevDesc& d, IoType type, uint64_t offset,
               void* buf, size_t len) {
  const bdev::Bdev& b = *d.bdev();
  std::shared_ptr<bdev::DmaBuffer> dma;
  if (type == IoType::kRead || type == IoType::kWrite) {
    dma = std::make_shared<bdev::DmaBuffer>(len, std::max<size_t>(4096, b.buf_align()));
    if (type == IoType::kWrite) std::memcpy(dma->data(), buf, len);
  }
  std::promise<IoStatus> p;
  auto f = p.get_future();
  r.send([&] { async_io(r, d, type, offset, len, dma, [&p](IoStatus s) { p.set_value(s); }); });
  IoStatus st = f.get();
  if (st == IoStatus::kSuccess && type == IoType::kRead) std::memcpy(buf, dma->data(), len);
  return to_status(st, b, type, offset);
}

Status sync_read(reactor::Reactor& r, const bdev::BdevDesc& d, uint64_t offset, void* buf,
                 size_t len) {
  return sync_io(r, d, IoType::kRead, offset, buf, len);
}
Status sync_write(reactor::Reactor& r, const bdev::BdevDesc& d, uint64_t offset, const void* buf,
                  size_t len) {
  return sync_io(r, d, IoType::kWrite, offset, const_cast<void*>(buf), len);
}
Status sync_flush(reactor::Reactor& r, const bdev::BdevDesc& d) {
  return sync_io(r, d, IoType::kFlush, 0, nullptr, 0);
}

}  // namespace castor::pool
