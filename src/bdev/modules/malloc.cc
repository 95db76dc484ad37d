// malloc:///<name>?size_mb=N&blk_size=B[&uuid=U][&prefault=0] — a RAM disk. Memory is
// anonymous and zero-filled, faulted in at create unless prefault=0; I/O is a memcpy on
// the submitting reactor.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bdev/modules/modules.h"

namespace castor::bdev {
namespace {

// Shared parsing for RAM-like modules: size_mb (or num_blocks) and blk_size.
Result<std::pair<uint32_t, uint64_t>> parse_geometry(const Uri& uri) {
  auto bs = uri.get_u64("blk_size", 4096);
  if (!bs) return bs.status();
  if (*bs < 512 || *bs > 65536 || (*bs & (*bs - 1))) {
    return make_error(Errc::kInvalidArgument,
                      "blk_size={} is invalid (a power of two from 512 to 65536)", *bs);
  }
  auto mb = uri.get_u64("size_mb", 0);
  if (!mb) return mb.status();
  auto nb = uri.get_u64("num_blocks", 0);
  if (!nb) return nb.status();
  if ((*mb == 0) == (*nb == 0)) {
    return make_error(Errc::kInvalidArgument, "give exactly one of size_mb or num_blocks (> 0)");
  }
  if (*mb > (uint64_t{1} << 24)) {
    return make_error(Errc::kInvalidArgument, "size_mb={} is too large", *mb);
  }
  if (*nb > (uint64_t{1} << 40) / *bs) {
    return make_error(Errc::kInvalidArgument, "num_blocks={} is too large", *nb);
  }
  uint64_t bytes = *mb ? *mb << 20 : *nb * *bs;
  if (bytes % *bs) {
    return make_error(Errc::kInvalidArgument, "size is not a multiple of blk_size={}", *bs);
  }
  return std::pair<uint32_t, uint64_t>{static_cast<uint32_t>(*bs), bytes / *bs};
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack it
#endif

// Backs every page of [mem, mem + bytes) now, so that no I/O pays a page fault later. On a
// virtual machine the first write to a guest page also costs the hypervisor's fault, which
// made a fresh bdev many times slower than a warm one (docs/benchmarks.md, "First-touch
// costs"). Huge pages (MADV_HUGEPAGE) are not asked for: after 4 KiB pages were freed
// their populate waits for compaction, several times slower. False when the memory is
// not there (the create then fails rather than
// the process being killed on a later write).
bool prefault(void* mem, size_t bytes) {
  if (madvise(mem, bytes, MADV_POPULATE_WRITE) == 0) return true;
  if (errno != EINVAL) return false;
  // Kernels before 5.14: a write to each page (zero, which it already reads as).
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  auto* p = static_cast<volatile uint8_t*>(mem);
  for (size_t off = 0; off < bytes; off += page) p[off] = 0;
  return true;
}

constexpr uint32_t kAllWrites =
    io_type_bit(IoType::kWrite) | io_type_bit(IoType::kWriteZeroes) | io_type_bit(IoType::kUnmap);

class MallocBdev final : public Bdev {
 public:
  MallocBdev(const std::string& name, uint32_t bs, uint64_t nb, uint8_t* mem)
      : Bdev(name, "malloc", bs, nb), mem_(mem) {
    set_supported_ops(io_type_bit(IoType::kRead) | io_type_bit(IoType::kWrite) |
                      io_type_bit(IoType::kFlush) | io_type_bit(IoType::kUnmap) |
                      io_type_bit(IoType::kWriteZeroes) | io_type_bit(IoType::kReset));
    set_fua_ops(kAllWrites);  // no volatile cache: a completed write is as durable as RAM gets
  }
  ~MallocBdev() override { munmap(mem_, size_bytes()); }
  uint8_t* mem() { return mem_; }
  void set_uuid_public(const Uuid& u) { set_uuid(u); }

 protected:
  std::unique_ptr<BdevChannel> create_channel(reactor::Reactor& r) override;

 private:
  uint8_t* mem_;
};

class MallocChannel final : public BdevChannel {
 public:
  MallocChannel(MallocBdev& b, reactor::Reactor& r) : BdevChannel(b, r), mem_(b.mem()) {}

 protected:
  bool late_read_writes() const override { return false; }  // copied in do_submit
  void do_submit(IoRequest& req) override {
    const uint64_t bs = bdev().block_size();
    uint8_t* p = mem_ + req.offset_blocks * bs;
    switch (req.type) {
      case IoType::kRead:
        for (int i = 0; i < req.iovcnt; ++i) {
          std::memcpy(req.iovs[i].iov_base, p, req.iovs[i].iov_len);
          p += req.iovs[i].iov_len;
        }
        break;
      case IoType::kWrite:
        for (int i = 0; i < req.iovcnt; ++i) {
          std::memcpy(p, req.iovs[i].iov_base, req.iovs[i].iov_len);
          p += req.iovs[i].iov_len;
        }
        break;
      case IoType::kUnmap:
      case IoType::kWriteZeroes:
        std::memset(p, 0, req.num_blocks * bs);
        break;
      case IoType::kFlush:
      case IoType::kReset:
        break;
    }
    complete(req, IoStatus::kSuccess);
  }

 private:
  uint8_t* mem_;
};

std::unique_ptr<BdevChannel> MallocBdev::create_channel(reactor::Reactor& r) {
  return std::make_unique<MallocChannel>(*this, r);
}

class MallocModule final : public BdevModule {
 public:
  const char* scheme() const override { return "malloc"; }
  Result<std::unique_ptr<Bdev>> create(const Uri& uri, const std::string& name,
                                       BdevRegistry&) override {
    if (auto st = uri.check_keys({"size_mb", "num_blocks", "blk_size", "uuid", "name", "prefault"});
        !st) {
      return st;
    }
    auto geo = parse_geometry(uri);
    if (!geo) return geo.status();
    auto pre = uri.get_bool("prefault", true);
    if (!pre) return pre.status();
    std::optional<Uuid> uuid;
    if (auto u = uri.get("uuid"); !u.empty()) {
      uuid = Uuid::parse(u);
      if (!uuid) return make_error(Errc::kInvalidArgument, "uuid={} is not a UUID", u);
    }
    size_t bytes = size_t{geo->first} * geo->second;
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      return make_error(Errc::kNoSpace, "cannot allocate {} bytes for malloc bdev '{}'", bytes,
                        name);
    }
    if (*pre && !prefault(mem, bytes)) {
      const int err = errno;
      munmap(mem, bytes);
      return make_error(Errc::kNoSpace, "cannot back {} bytes for malloc bdev '{}': {}", bytes,
                        name, std::strerror(err));
    }
    auto b =
        std::make_unique<MallocBdev>(name, geo->first, geo->second, static_cast<uint8_t*>(mem));
    if (uuid) b->set_uuid_public(*uuid);
    return std::unique_ptr<Bdev>(std::move(b));
  }
};

// null:///<name>?size_mb=N — discards writes; reads complete without touching the
// buffer. Measures the bdev layer's own overhead.
class NullBdev final : public Bdev {
 public:
  NullBdev(const std::string& name, uint32_t bs, uint64_t nb) : Bdev(name, "null", bs, nb) {
    set_supported_ops(0x3f);
    set_fua_ops(kAllWrites);  // keeps nothing, caches nothing
  }

 protected:
  std::unique_ptr<BdevChannel> create_channel(reactor::Reactor& r) override {
    struct Ch final : BdevChannel {
      using BdevChannel::BdevChannel;
      bool late_read_writes() const override { return false; }
      void do_submit(IoRequest& req) override { complete(req, IoStatus::kSuccess); }
    };
    return std::make_unique<Ch>(*this, r);
  }
};

class NullModule final : public BdevModule {
 public:
  const char* scheme() const override { return "null"; }
  Result<std::unique_ptr<Bdev>> create(const Uri& uri, const std::string& name,
                                       BdevRegistry&) override {
    if (auto st = uri.check_keys({"size_mb", "num_blocks", "blk_size", "name"}); !st) return st;
    auto geo = parse_geometry(uri);
    if (!geo) return geo.status();
    return std::unique_ptr<Bdev>(std::make_unique<NullBdev>(name, geo->first, geo->second));
  }
};

}  // namespace

std::unique_ptr<BdevModule> make_malloc_module() { return std::make_unique<MallocModule>(); }
std::unique_ptr<BdevModule> make_null_module() { return std::make_unique<NullModule>(); }

}  // namespace castor::bdev
