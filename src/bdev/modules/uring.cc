// uring:///<path>[?blk_size=B&direct=auto|1|0&name=N&uuid=U] — an existing file or block
// device driven through the reactor's io_uring ring.
// file:///<path>?size_mb=N[&blk_size=B&direct=...&name=N&uuid=U] — the same, creating the
// file (preallocated) when it does not exist.
//
// The data outlives the engine, so the identity does too: without uuid=, the UUID is
// derived from the host name, the file's real path and the bdev name. An NVMe-oF share
// of the bdev then keeps its NQN and namespace identifiers across engine restarts, which
// a host reconnecting after a restart requires.
//
// O_DIRECT is used when the file system accepts it and blk_size is a multiple of the
// device's direct-I/O alignment (direct=auto, the default); buffers must then be
// aligned to buf_align() (DmaBuffer is).
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "bdev/modules/modules.h"

namespace castor::bdev {
namespace {

constexpr size_t kZeroBufSize = 1 << 20;

// Shared read-only zero buffer for write-zeroes on files without FALLOC_FL_ZERO_RANGE.
const uint8_t* zero_buffer() {
  static DmaBuffer buf(kZeroBufSize);
  return buf.data();
}

IoStatus errno_to_status(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT: return IoStatus::kNoSpace;
    case ECANCELED: return IoStatus::kAborted;
    case ETIME:
    case ETIMEDOUT: return IoStatus::kTimedOut;
    case EINVAL: return IoStatus::kInvalid;
    default: return IoStatus::kIoError;
  }
}

class UringBdev final : public Bdev {
 public:
  UringBdev(const std::string& name, int fd, bool direct, bool is_blockdev, uint32_t bs,
            uint64_t nb, uint32_t align, const Uuid& uuid)
      : Bdev(name, "uring", bs, nb), fd_(fd), direct_(direct), is_blockdev_(is_blockdev) {
    set_uuid(uuid);
    set_buf_align(direct ? align : 1);
    set_supported_ops(io_type_bit(IoType::kRead) | io_type_bit(IoType::kWrite) |
                      io_type_bit(IoType::kFlush) | io_type_bit(IoType::kUnmap) |
                      io_type_bit(IoType::kWriteZeroes) | io_type_bit(IoType::kReset));
    // A FUA write is a pwritev2(RWF_DSYNC): the kernel writes the data through (FUA or a
    // cache flush on the device, plus the file's metadata). A FUA write-zeroes is left
    // to the channel's write + fdatasync.
    set_fua_ops(io_type_bit(IoType::kWrite));
  }
  ~UringBdev() override { close(fd_); }
  int fd() const { return fd_; }
  bool direct() const { return direct_; }
  bool is_blockdev() const { return is_blockdev_; }
  // Set once a ZERO_RANGE fallocate was refused; from then on zeroes are written.
  std::atomic<bool> zero_range_unsupported{false};

 protected:
  std::unique_ptr<BdevChannel> create_channel(reactor::Reactor& r) override;

 private:
  int fd_;
  bool direct_;
  bool is_blockdev_;
};

class UringChannel;

// One in-flight bdev I/O; may span several SQEs (write-zeroes fallback, short I/O).
struct UringIo final : reactor::UringOp {
  UringChannel* ch = nullptr;
  IoRequest* req = nullptr;
  uint64_t done_bytes = 0;  // read/write progress, for resubmitting short transfers
  uint32_t pending = 0;     // SQEs in flight
  int first_error = 0;
  UringIo* next_free = nullptr;
  std::vector<iovec> scratch;  // remaining iovecs after a short transfer
  void complete(int32_t res, uint32_t flags) override;
};

class UringChannel final : public BdevChannel {
 public:
  UringChannel(UringBdev& b, reactor::Reactor& r) : BdevChannel(b, r), ub_(b) {}
  ~UringChannel() override {
    while (free_) {
      UringIo* n = free_->next_free;
      delete free_;
      free_ = n;
    }
  }

  void on_cqe(UringIo& io, int32_t res);

 protected:
  void do_submit(IoRequest& req) override {
    UringIo* io = alloc();
    io->req = &req;
    io->done_bytes = 0;
    io->pending = 0;
    io->first_error = 0;
    const uint64_t bs = bdev().block_size();
    const uint64_t off = req.offset_blocks * bs;
    const uint64_t len = req.num_blocks * bs;
    switch (req.type) {
      case IoType::kRead:
      case IoType::kWrite:
        submit_rw(*io, req.iovs, req.iovcnt, off);
        break;
      case IoType::kFlush: {
        auto* sqe = reactor().get_sqe(io);
        io_uring_prep_fsync(sqe, ub_.fd(), IORING_FSYNC_DATASYNC);
        io->pending = 1;
        break;
      }
      case IoType::kUnmap: {
        auto* sqe = reactor().get_sqe(io);
        io_uring_prep_fallocate(sqe, ub_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                                len);
        io->pending = 1;
        break;
      }
      case IoType::kWriteZeroes:
        if (!ub_.zero_range_unsupported.load(std::memory_order_relaxed)) {
          auto* sqe = reactor().get_sqe(io);
          io_uring_prep_fallocate(sqe, ub_.fd(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                  off, len);
          io->pending = 1;
        } else {
          submit_zero_writes(*io);
        }
        break;
      case IoType::kReset:
        // Nothing is queued below the ring that a reset could abort.
        release(io);
        complete(req, IoStatus::kSuccess);
        return;
    }
  }

 private:
  friend struct UringIo;
  UringIo* alloc() {
    if (free_) {
      UringIo* io = free_;
      free_ = io->next_free;
      return io;
    }
    auto* io = new UringIo;  // grows to the peak queue depth, then reused
    io->ch = this;
    return io;
  }
  void release(UringIo* io) {
    io->next_free = free_;
    free_ = io;
  }

  void submit_rw(UringIo& io, iovec* iov, int iovcnt, uint64_t off) {
    auto* sqe = reactor().get_sqe(&io);
    const bool rd = io.req->type == IoType::kRead;
    if (iovcnt == 1) {
      if (rd) {
        io_uring_prep_read(sqe, ub_.fd(), iov[0].iov_base, iov[0].iov_len, off);
      } else {
        io_uring_prep_write(sqe, ub_.fd(), iov[0].iov_base, iov[0].iov_len, off);
      }
    } else if (rd) {
      io_uring_prep_readv(sqe, ub_.fd(), iov, iovcnt, off);
    } else {
      io_uring_prep_writev(sqe, ub_.fd(), iov, iovcnt, off);
    }
    if (!rd && io.req->fua) sqe->rw_flags = RWF_DSYNC;
    io.pending = 1;
  }

  void submit_zero_writes(UringIo& io) {
    const uint64_t bs = bdev().block_size();
    uint64_t off = io.req->offset_blocks * bs;
    uint64_t left = io.req->num_blocks * bs;
    while (left) {
      uint64_t n = std::min<uint64_t>(left, kZeroBufSize);
      auto* sqe = reactor().get_sqe(&io);
      io_uring_prep_write(sqe, ub_.fd(), zero_buffer(), static_cast<unsigned>(n), off);
      ++io.pending;
      off += n;
      left -= n;
    }
    io.done_bytes = UINT64_MAX;  // marks the fallback path: results are whole writes
  }

  void finish(UringIo& io, IoStatus st) {
    IoRequest& req = *io.req;
    release(&io);
    complete_now(req, st);
  }

  UringBdev& ub_;
  UringIo* free_ = nullptr;
};

void UringIo::complete(int32_t res, uint32_t) { ch->on_cqe(*this, res); }

void UringChannel::on_cqe(UringIo& io, int32_t res) {
  --io.pending;
  IoRequest& req = *io.req;
  const uint64_t bs = bdev().block_size();
  if (res < 0 && !io.first_error) io.first_error = -res;

  if (req.type == IoType::kWriteZeroes && io.done_bytes != UINT64_MAX) {
    // The fallocate attempt: fall back to writing zeroes if the file system refuses.
    if (res == -EOPNOTSUPP || res == -EINVAL) {
      ub_.zero_range_unsupported.store(true, std::memory_order_relaxed);
      io.first_error = 0;
      submit_zero_writes(io);
      return;
    }
  }
  if (io.pending) return;
  if (io.first_error) {
    if (io.first_error != EAGAIN) {
      spdlog::warn("bdev={} op={} offset_blocks={} failed: {}", bdev().name(),
                   io_type_name(req.type), req.offset_blocks, strerror(io.first_error));
    }
    finish(io, errno_to_status(io.first_error));
    return;
  }
  if (req.type == IoType::kRead || req.type == IoType::kWrite) {
    const uint64_t total = req.num_blocks * bs;
    io.done_bytes += static_cast<uint64_t>(res);
    if (res == 0 && io.done_bytes < total) {
      finish(io, IoStatus::kIoError);  // unexpected end of file
      return;
    }
    if (io.done_bytes < total) {
      // Short transfer: resubmit the rest.
      io.scratch.clear();
      uint64_t skip = io.done_bytes;
      for (int i = 0; i < req.iovcnt; ++i) {
        iovec v = req.iovs[i];
        if (skip >= v.iov_len) {
          skip -= v.iov_len;
          continue;
        }
        v.iov_base = static_cast<uint8_t*>(v.iov_base) + skip;
        v.iov_len -= skip;
        skip = 0;
        io.scratch.push_back(v);
      }
      submit_rw(io, io.scratch.data(), static_cast<int>(io.scratch.size()),
                req.offset_blocks * bs + io.done_bytes);
      return;
    }
  }
  finish(io, IoStatus::kSuccess);
}

std::unique_ptr<BdevChannel> UringBdev::create_channel(reactor::Reactor& r) {
  return std::make_unique<UringChannel>(*this, r);
}

struct OpenedFile {
  int fd = -1;
  bool direct = false;
  bool is_blockdev = false;
  uint64_t size = 0;
  uint32_t dio_align = 512;      // memory alignment for O_DIRECT
  uint32_t logical_block = 512;  // offset/length alignment for O_DIRECT
};

Result<OpenedFile> open_backing(const std::string& path, const std::string& direct_opt,
                                uint32_t bs) {
  OpenedFile f;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return make_error(Errc::kNotFound, "cannot open '{}': {}", path, strerror(errno));
  }
  f.is_blockdev = S_ISBLK(st.st_mode);
  if (!f.is_blockdev && !S_ISREG(st.st_mode)) {
    return make_error(Errc::kInvalidArgument, "'{}' is neither a regular file nor a block device",
                      path);
  }
  bool want_direct = direct_opt != "0" && direct_opt != "false" && direct_opt != "no";
  bool require_direct = direct_opt == "1" || direct_opt == "true" || direct_opt == "yes";
  if (want_direct) {
    f.fd = open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    if (f.fd >= 0) f.direct = true;
  }
  if (f.fd < 0) {
    if (require_direct) {
      return make_error(Errc::kInvalidArgument, "'{}' does not support O_DIRECT (direct=1): {}",
                        path, strerror(errno));
    }
    f.fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (f.fd < 0) {
    return make_error(Errc::kIoError, "cannot open '{}': {}", path, strerror(errno));
  }
  if (f.is_blockdev) {
    uint64_t sz = 0;
    int lbs = 512;
    if (ioctl(f.fd, BLKGETSIZE64, &sz) != 0 || ioctl(f.fd, BLKSSZGET, &lbs) != 0) {
      int e = errno;
      close(f.fd);
      return make_error(Errc::kIoError, "cannot size block device '{}': {}", path, strerror(e));
    }
    f.size = sz;
    f.logical_block = static_cast<uint32_t>(lbs);
    f.dio_align = static_cast<uint32_t>(lbs);
  } else {
    f.size = static_cast<uint64_t>(st.st_size);
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (f.direct && statx(f.fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
      f.logical_block = sx.stx_dio_offset_align;
      f.dio_align = std::max<uint32_t>(sx.stx_dio_mem_align, 1);
    }
#endif
  }
  if (f.direct && (bs % f.logical_block) != 0) {
    if (require_direct) {
      close(f.fd);
      return make_error(Errc::kInvalidArgument,
                        "blk_size={} is not a multiple of '{}''s direct I/O alignment {}", bs,
                        path, f.logical_block);
    }
    close(f.fd);
    f.fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    f.direct = false;
    if (f.fd < 0) return make_error(Errc::kIoError, "cannot open '{}': {}", path, strerror(errno));
  }
  return f;
}

Result<uint32_t> parse_bs(const Uri& uri, uint32_t def) {
  auto bs = uri.get_u64("blk_size", def);
  if (!bs) return bs.status();
  if (*bs < 512 || *bs > 65536 || (*bs & (*bs - 1))) {
    return make_error(Errc::kInvalidArgument,
                      "blk_size={} is invalid (a power of two from 512 to 65536)", *bs);
  }
  return static_cast<uint32_t>(*bs);
}

// uuid= if given, else stable for this host, file and name (see the top of the file).
Result<Uuid> backing_uuid(const Uri& uri, const std::string& name) {
  if (auto u = uri.get("uuid"); !u.empty()) {
    auto parsed = Uuid::parse(u);
    if (!parsed || parsed->is_nil()) {
      return make_error(Errc::kInvalidArgument, "uuid={} is not a UUID", u);
    }
    return *parsed;
  }
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, sizeof host - 1);
  std::error_code ec;
  auto real = std::filesystem::canonical(uri.path, ec);
  return Uuid::from_name(fmt::format("castor-bdev\n{}\n{}\n{}", host,
                                     ec ? uri.path : real.string(), name));
}

Result<std::unique_ptr<Bdev>> make_uring_bdev(const Uri& uri, const std::string& name,
                                              uint32_t bs) {
  auto uuid = backing_uuid(uri, name);
  if (!uuid) return uuid.status();
  auto f = open_backing(uri.path, uri.get("direct", "auto"), bs);
  if (!f) return f.status();
  if (f->size < bs || f->size % bs) {
    close(f->fd);
    return make_error(Errc::kInvalidArgument, "size of '{}' ({} bytes) is not a positive multiple of blk_size={}",
                      uri.path, f->size, bs);
  }
  uint32_t align = std::max<uint32_t>(f->dio_align, 1);
  if (!f->direct) align = 1;
  spdlog::debug("uring bdev {} path={} direct={} align={}", name, uri.path, f->direct, align);
  return std::unique_ptr<Bdev>(std::make_unique<UringBdev>(name, f->fd, f->direct, f->is_blockdev,
                                                           bs, f->size / bs, align, *uuid));
}

Result<std::string> file_name_for(const Uri& uri) {
  std::string n = uri.get("name");
  if (n.empty()) n = std::filesystem::path(uri.path).filename().string();
  if (n.empty() || uri.path.empty()) {
    return make_error(Errc::kInvalidArgument, "URI '{}' names no file", uri.text);
  }
  return n;
}

class UringModule final : public BdevModule {
 public:
  const char* scheme() const override { return "uring"; }
  Result<std::string> name_for(const Uri& uri) const override { return file_name_for(uri); }
  Result<std::unique_ptr<Bdev>> create(const Uri& uri, const std::string& name,
                                       BdevRegistry&) override {
    if (auto st = uri.check_keys({"blk_size", "direct", "name", "uuid"}); !st) return st;
    auto bs = parse_bs(uri, 4096);
    if (!bs) return bs.status();
    return make_uring_bdev(uri, name, *bs);
  }
};

class FileModule final : public BdevModule {
 public:
  const char* scheme() const override { return "file"; }
  Result<std::string> name_for(const Uri& uri) const override { return file_name_for(uri); }
  Result<std::unique_ptr<Bdev>> create(const Uri& uri, const std::string& name,
                                       BdevRegistry&) override {
    if (auto st = uri.check_keys({"blk_size", "direct", "name", "size_mb", "uuid"}); !st) return st;
    auto bs = parse_bs(uri, 4096);
    if (!bs) return bs.status();
    auto mb = uri.get_u64("size_mb", 0);
    if (!mb) return mb.status();
    if (*mb > (uint64_t{1} << 30)) {
      return make_error(Errc::kInvalidArgument, "size_mb={} is too large", *mb);
    }
    const uint64_t want = *mb << 20;
    if (want % *bs) {
      return make_error(Errc::kInvalidArgument, "size_mb={} is not a multiple of blk_size={}",
                        *mb, *bs);
    }
    struct stat st;
    bool created = false;
    if (stat(uri.path.c_str(), &st) == 0) {
      if (want && static_cast<uint64_t>(st.st_size) != want && S_ISREG(st.st_mode)) {
        return make_error(Errc::kAlreadyExists,
                          "'{}' exists with {} bytes, not size_mb={} (remove it or drop size_mb)",
                          uri.path, st.st_size, *mb);
      }
    } else {
      if (!want) {
        return make_error(Errc::kNotFound, "'{}' does not exist (give size_mb=N to create it)",
                          uri.path);
      }
      int fd = open(uri.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) {
        return make_error(Errc::kIoError, "cannot create '{}': {}", uri.path, strerror(errno));
      }
      // Allocate the extents up front so first writes do not pay for allocation; fall
      // back to a sparse file where the file system cannot.
      int rc = fallocate(fd, 0, 0, static_cast<off_t>(want));
      if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
        rc = ftruncate(fd, static_cast<off_t>(want));
      }
      int e = errno;
      close(fd);
      if (rc != 0) {
        unlink(uri.path.c_str());
        return make_error(e == ENOSPC ? Errc::kNoSpace : Errc::kIoError,
                          "cannot size '{}' to {} bytes: {}", uri.path, want, strerror(e));
      }
      created = true;
    }
    auto b = make_uring_bdev(uri, name, *bs);
    if (!b && created) unlink(uri.path.c_str());
    return b;
  }
};

}  // namespace

std::unique_ptr<BdevModule> make_uring_module() { return std::make_unique<UringModule>(); }
std::unique_ptr<BdevModule> make_file_module() { return std::make_unique<FileModule>(); }

}  // namespace castor::bdev
