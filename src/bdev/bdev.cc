#include "bdev/bdev.h"

#include <cstdlib>
#include <cstring>

#include "common/clock.h"

namespace castor::bdev {

const char* io_type_name(IoType t) {
  switch (t) {
    case IoType::kRead: return "read";
    case IoType::kWrite: return "write";
    case IoType::kFlush: return "flush";
    case IoType::kUnmap: return "unmap";
    case IoType::kWriteZeroes: return "write_zeroes";
    case IoType::kReset: return "reset";
  }
  return "unknown";
}

const char* io_status_name(IoStatus s) {
  switch (s) {
    case IoStatus::kSuccess: return "success";
    case IoStatus::kIoError: return "io_error";
    case IoStatus::kNoSpace: return "no_space";
    case IoStatus::kAborted: return "aborted";
    case IoStatus::kTimedOut: return "timed_out";
    case IoStatus::kInvalid: return "invalid";
    case IoStatus::kPathUnavailable: return "path_unavailable";
    case IoStatus::kReservationConflict: return "reservation_conflict";
  }
  return "unknown";
}

namespace {
inline void bump(std::atomic<uint64_t>& a, uint64_t v) {
  // Single writer: a plain load+store avoids a locked read-modify-write.
  a.store(a.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

bool valid(const Bdev& b, const IoRequest& r) {
  if (!b.supports(r.type)) return false;
  if (r.offset_blocks > b.num_blocks() || r.num_blocks > b.num_blocks() - r.offset_blocks) {
    return false;
  }
  if (r.type == IoType::kRead || r.type == IoType::kWrite) {
    if (r.num_blocks == 0 || r.iovcnt <= 0 || r.iovs == nullptr) return false;
    const uint64_t align = b.buf_align();
    uint64_t len = 0;
    for (int i = 0; i < r.iovcnt; ++i) {
      const auto& v = r.iovs[i];
      if (align > 1 && ((reinterpret_cast<uintptr_t>(v.iov_base) | v.iov_len) & (align - 1))) {
        return false;
      }
      len += v.iov_len;
    }
    if (len != r.num_blocks * b.block_size()) return false;
  } else if ((r.type == IoType::kUnmap || r.type == IoType::kWriteZeroes) && r.num_blocks == 0) {
    return false;
  }
  return true;
}
}  // namespace

BdevChannel::BdevChannel(Bdev& bdev, reactor::Reactor& reactor)
    : bdev_(bdev), reactor_(reactor), stats_(bdev.stats_slot(reactor.id())) {
  if (!stats_) {
    own_stats_ = std::make_unique<ChannelStats>();
    stats_ = own_stats_.get();
  }
}

BdevChannel::~BdevChannel() = default;

void BdevChannel::submit(IoRequest& req) { submit_at(req, mono_ns()); }

void BdevChannel::submit_at(IoRequest& req, uint64_t now_ns) {
  req.channel = this;
  req.start_ns = now_ns;
  ++outstanding_;
  req.fua_stage = 0;
  if (!valid(bdev_, req)) {
    complete(req, IoStatus::kInvalid);
    return;
  }
  if (req.fua && (req.type == IoType::kWrite || req.type == IoType::kWriteZeroes || req.type == IoType::kUnmap) &&
      !bdev_.fua_native(req.type) && bdev_.supports(IoType::kFlush)) {
    req.fua_stage = 1;
  }
  do_submit(req);
}

bool BdevChannel::fua_flush(IoRequest& req, IoStatus status) {
  if (req.fua_stage == 2) {
    auto& flush = stats_->per_type[static_cast<int>(IoType::kFlush)];
    bump(status == IoStatus::kSuccess ? flush.ops : flush.errors, 1);
    req.type = req.fua_type;  // the flush finished: the caller sees its write again
    req.fua_stage = 0;
    return false;
  }
  if (status != IoStatus::kSuccess) {
    req.fua_stage = 0;
    return false;
  }
  // The write is done; the flush runs on a later loop turn (never re-entering the
  // module's do_submit from inside it). Range and buffers stay as they were: a flush
  // ignores them.
  req.fua_stage = 2;
  req.fua_type = req.type;
  req.type = IoType::kFlush;
  req.Task::fn = [](reactor::Task* t) {
    auto* r = static_cast<IoRequest*>(t);
    r->channel->do_submit(*r);
  };
  reactor_.defer(&req);
  return true;
}

void BdevChannel::account(IoRequest& req, IoStatus status) {
  --outstanding_;
  req.status = status;
  auto& pt = stats_->per_type[static_cast<int>(req.type)];
  if (status == IoStatus::kSuccess) {
    bump(pt.ops, 1);
    bump(pt.bytes, req.num_blocks * bdev_.block_size());
  } else {
    bump(pt.errors, 1);
  }
}

// Latency is measured up to the moment the caller's callback runs.
void BdevChannel::deliver(IoRequest& req, uint64_t now_ns) {
  req.done_ns = now_ns;
  if (req.status == IoStatus::kSuccess) {
    stats_->latency[static_cast<int>(req.type)].record(req.done_ns - req.start_ns);
  }
  req.cb(req, req.cb_arg);
}

void BdevChannel::complete(IoRequest& req, IoStatus status) {
  if (__builtin_expect(req.fua_stage != 0, 0) && fua_flush(req, status)) return;
  account(req, status);
  req.Task::fn = [](reactor::Task* t) {
    auto* r = static_cast<IoRequest*>(t);
    r->channel->deliver(*r, mono_ns());
  };
  reactor_.defer(&req);
}

void BdevChannel::complete_now(IoRequest& req, IoStatus status) { complete_now(req, status, mono_ns()); }

void BdevChannel::complete_now(IoRequest& req, IoStatus status, uint64_t now_ns) {
  if (__builtin_expect(req.fua_stage != 0, 0) && fua_flush(req, status)) return;
  account(req, status);
  deliver(req, now_ns);
}

Bdev::Bdev(std::string name, std::string module, uint32_t block_size, uint64_t num_blocks)
    : name_(std::move(name)),
      module_(std::move(module)),
      uuid_(Uuid::random()),
      block_size_(block_size),
      num_blocks_(num_blocks) {}

Bdev::~Bdev() {
  // Channels first: a channel's destructor may still complete (and count) requests.
  destroy_channels();
  for (size_t i = 0; i < nchannels_; ++i) delete stats_[i].load(std::memory_order_acquire);
}

void Bdev::destroy_channels() {
  for (size_t i = 0; i < nchannels_; ++i) delete channels_[i].exchange(nullptr, std::memory_order_acq_rel);
}

void Bdev::set_reactor_count(size_t n) {
  channels_ = std::make_unique<std::atomic<BdevChannel*>[]>(n);
  stats_ = std::make_unique<std::atomic<ChannelStats*>[]>(n);
  for (size_t i = 0; i < n; ++i) {
    channels_[i].store(nullptr);
    stats_[i].store(nullptr);
  }
  nchannels_ = n;
}

ChannelStats* Bdev::stats_slot(size_t i) {
  if (i >= nchannels_) return nullptr;
  ChannelStats* s = stats_[i].load(std::memory_order_relaxed);
  if (!s) {
    // Only reactor i creates slot i; a reader sees either nullptr or the whole object.
    s = new ChannelStats();
    stats_[i].store(s, std::memory_order_release);
  }
  return s;
}

BdevChannel& Bdev::channel(reactor::Reactor& r) {
  auto& slot = channels_[r.id()];
  BdevChannel* ch = slot.load(std::memory_order_relaxed);
  if (__builtin_expect(ch == nullptr, 0)) {
    ch = create_channel(r).release();
    slot.store(ch, std::memory_order_release);
  }
  return *ch;
}

void Bdev::drop_channel(size_t i) {
  if (i >= nchannels_) return;
  delete channels_[i].exchange(nullptr, std::memory_order_acq_rel);
}

BdevStatsSnapshot Bdev::stats() const {
  BdevStatsSnapshot s;
  for (size_t i = 0; i < nchannels_; ++i) {
    const ChannelStats* slot = stats_[i].load(std::memory_order_acquire);
    if (!slot) continue;
    const auto& cs = *slot;
    for (int t = 0; t < kNumIoTypes; ++t) {
      s.per_type[t].ops += cs.per_type[t].ops.load(std::memory_order_relaxed);
      s.per_type[t].bytes += cs.per_type[t].bytes.load(std::memory_order_relaxed);
      s.per_type[t].errors += cs.per_type[t].errors.load(std::memory_order_relaxed);
      cs.latency[t].snapshot_into(s.per_type[t].latency);
    }
  }
  return s;
}

BdevInfo Bdev::info() const {
  BdevInfo i;
  i.name = name_;
  i.uuid = uuid_;
  i.module = module_;
  i.uri = uri_;
  i.block_size = block_size_;
  i.num_blocks = num_blocks();
  i.buf_align = buf_align_;
  i.supported_ops = supported_ops_;
  i.claim = claim;
  if (claim) i.claimed_by = claim->to_string();
  i.open_descs = open_descs.load();
  return i;
}

DmaBuffer::DmaBuffer(size_t size, size_t align) : size_(size) {
  size_t rounded = (size + align - 1) / align * align;
  p_ = static_cast<uint8_t*>(std::aligned_alloc(align, rounded ? rounded : align));
  if (!p_) throw std::bad_alloc();
  std::memset(p_, 0, rounded);
}

DmaBuffer::~DmaBuffer() { std::free(p_); }

DmaBuffer& DmaBuffer::operator=(DmaBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_;
    size_ = o.size_;
    o.p_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

std::string Claim::to_string() const {
  switch (kind) {
    case Kind::kBdev: return holder;
    case Kind::kPool: return "pool:" + holder;
    case Kind::kNexus: return "nexus:" + holder;
    case Kind::kNvmfSubsystem: return "nvmf:" + holder;
  }
  return holder;
}

}  // namespace castor::bdev
