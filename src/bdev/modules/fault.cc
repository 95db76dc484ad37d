// fault:///<name>?base=<bdev>[&cache=volatile&cache_mb=N] — a pass-through bdev with
// run-time fault injection and a power-loss model (fault.h states both contracts).
//
// Rules live in a control list (guarded by a mutex, control path only). Each channel
// holds its own copy of the list, replaced by a message to its reactor whenever the
// rules change, so the I/O path reads rules without locks. Counters shared by all
// channels (matched/fired) are atomics touched only when an I/O matches a rule.
//
// The volatile cache is one per bdev, shared by every channel, so it sits behind a mutex
// that its I/O takes and it allocates per I/O (cache entries, destage buffers). Both
// break the I/O path's rules on purpose: this is a test module, and with the cache off
// (the default) the path is as before, lock- and allocation-free. Everything the cache
// sends to the base (a flush's destage, a FUA write, an eviction) is a "phase"; phases
// run one at a time in submission order, each on the reactor of the request that made
// it, so two base writes of one block are never in flight together and the base sees
// each block's versions in order. A cached version stays readable until the base write
// that destages it has completed.
#include "bdev/modules/fault.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <random>

#include <spdlog/spdlog.h>

#include "bdev/modules/modules.h"

namespace castor::bdev {

class FaultChannel;

const char* fault_mode_name(FaultMode m) {
  switch (m) {
    case FaultMode::kError: return "error";
    case FaultMode::kDelay: return "delay";
    case FaultMode::kHang: return "hang";
    case FaultMode::kDropWrite: return "drop";
  }
  return "unknown";
}

namespace {

struct Rule {
  uint64_t id;
  FaultRuleSpec spec;
  std::atomic<uint64_t> matched{0};
  std::atomic<uint64_t> fired{0};
  std::atomic<int64_t> parked{0};
};
using RuleList = std::vector<std::shared_ptr<Rule>>;

constexpr uint32_t kWriteLike =
    io_type_bit(IoType::kWrite) | io_type_bit(IoType::kUnmap) | io_type_bit(IoType::kWriteZeroes);

// ---- Volatile cache ----

constexpr uint64_t kCacheEntryOverhead = 64;  // bytes charged per cached block version
constexpr uint64_t kPowerLossUnit = 4096;     // torn at this granularity (or one block)

// One write, write-zeroes or unmap held in the cache.
struct CachedWrite {
  uint64_t seq = 0;
  IoType type = IoType::kWrite;
  uint64_t lba = 0;
  std::vector<uint8_t> data;  // kWrite: the blocks' bytes
  uint64_t live = 0;          // blocks still holding this version
};
// A block's cached versions, oldest first.
using Versions = std::vector<CachedWrite*>;

// The newest of `v` with seq <= s, or nullptr.
CachedWrite* newest_upto(const Versions& v, uint64_t s) {
  for (auto it = v.rbegin(); it != v.rend(); ++it) {
    if ((*it)->seq <= s) return *it;
  }
  return nullptr;
}

struct Phase;

// One I/O the cache sends to the base.
struct BaseOp {
  IoRequest io;
  iovec iov{};
  DmaBuffer buf;
  Phase* phase = nullptr;
};

// A unit of base work (see the file comment). Destage: write the newest version <= seq
// of every cached block, then (flush_base) flush the base; an eviction picks its seq when
// it starts. FUA: the parent write itself, with `fua`.
struct Phase {
  enum class Kind : uint8_t { kFlush, kEvict, kFua } kind = Kind::kFlush;
  uint64_t seq = 0;
  uint64_t epoch = 0;  // power cycle it was made in; fails in a later one
  FaultChannel* origin = nullptr;
  IoRequest* parent = nullptr;
  std::vector<std::unique_ptr<BaseOp>> ops;
  std::vector<uint64_t> destaged;  // blocks whose versions <= seq go once the writes land
  size_t pending = 0;
  IoStatus status = IoStatus::kSuccess;
  bool counted = false;  // in FaultBdev::inflight_phases_
  bool base_flushing = false;
};

// Copies `len` bytes between `flat` and the iovecs of `req` from byte `off` on: into the
// iovecs (zeroes when `flat` is null) or out of them.
void iov_copy(const IoRequest& req, uint64_t off, uint8_t* flat, uint64_t len, bool into) {
  for_each_iov_piece(req, off, len, [&flat, into](uint8_t* p, uint64_t n) {
    if (!into) {
      std::memcpy(flat, p, n);
    } else if (flat) {
      std::memcpy(p, flat, n);
    } else {
      std::memset(p, 0, n);
    }
    if (flat) flat += n;
  });
}

}  // namespace

class FaultBdev final : public Bdev {
 public:
  FaultBdev(const std::string& name, BdevRegistry& reg, BdevDesc base, bool cache, uint64_t cache_bytes)
      : Bdev(name, "fault", base.bdev()->block_size(), base.bdev()->num_blocks()),
        reg_(reg),
        base_name_(base.bdev()->name()),
        base_(std::move(base)),
        cache_on_(cache),
        cache_limit_(cache_bytes) {
    Bdev* b = base_.bdev();
    set_buf_align(b->buf_align());
    uint32_t ops = 0;
    for (int t = 0; t < kNumIoTypes; ++t) {
      if (b->supports(static_cast<IoType>(t))) ops |= io_type_bit(static_cast<IoType>(t));
    }
    set_supported_ops(ops | io_type_bit(IoType::kReset));
    set_fua_ops(kWriteLike);  // passed to the base, whose channel honours it
  }
  ~FaultBdev() override {
    base_.close();
    reg_.release_claim(base_name_, Claim::bdev(name()));
  }

  Bdev& base() { return *base_.bdev(); }
  const BdevDesc& base_desc() const { return base_; }
  // Follows its base's growth.
  Result<uint64_t> refresh_size() override {
    auto n = base().refresh_size();
    if (!n) return n.status();
    if (*n > num_blocks()) set_num_blocks(*n);
    return num_blocks();
  }
  bool range_allocated(uint64_t offset_blocks, uint64_t num_blocks) const override {
    return base_.bdev()->range_allocated(offset_blocks, num_blocks);
  }
  uint64_t allocation_run(uint64_t offset_blocks, uint64_t max_blocks, bool* allocated) const override {
    return base_.bdev()->allocation_run(offset_blocks, max_blocks, allocated);
  }
  RuleList rules_snapshot() {
    std::lock_guard lk(mu_);
    return rules_;
  }

  Result<uint64_t> inject(const FaultRuleSpec& spec);
  Status clear(uint64_t id);
  Status set_volatile_cache(bool on);
  Result<PowerLossReport> power_loss(uint64_t seed);
  VolatileCacheInfo volatile_cache();
  bool cache_on() const { return cache_on_.load(std::memory_order_relaxed); }
  std::vector<FaultRuleInfo> list() {
    std::lock_guard lk(mu_);
    std::vector<FaultRuleInfo> out;
    for (const auto& r : rules_) {
      out.push_back({r->id, r->spec, r->matched.load(), r->fired.load(),
                     static_cast<uint64_t>(std::max<int64_t>(0, r->parked.load()))});
    }
    return out;
  }

 protected:
  std::unique_ptr<BdevChannel> create_channel(reactor::Reactor& r) override;

 private:
  friend class FaultChannel;
  void publish();

  // ---- Volatile cache; every *_locked member REQUIRES cache_mu_ ----
  // Adds `req` (a write, write-zeroes or unmap) as the newest version of its blocks.
  void cache_insert_locked(const IoRequest& req);
  // Drops the versions <= s of block `lba`.
  void cache_drop_locked(uint64_t lba, uint64_t s);
  void cache_clear_locked();
  // The seq up to which an eviction destages (0: the cache is within its limit).
  uint64_t evict_point_locked() const;
  // Base writes for the chosen version of each block (ascending blocks), one per run of
  // adjacent blocks of one type.
  std::vector<std::unique_ptr<BaseOp>> base_ops_locked(
      const std::vector<std::pair<uint64_t, CachedWrite*>>& picks) const;
  // Runs `ops` and then a flush of the base on reactor 0 and waits. Control thread.
  Status run_on_base(std::vector<std::unique_ptr<BaseOp>> ops);

  BdevRegistry& reg_;
  std::string base_name_;
  BdevDesc base_;
  std::mutex mu_;
  RuleList rules_;
  uint64_t next_id_ = 1;

  std::atomic<bool> cache_on_;
  std::mutex cache_mu_;
  std::condition_variable cache_cv_;  // inflight_phases_ reached 0
  uint64_t cache_limit_;
  bool powered_off_ = false;
  uint64_t epoch_ = 1;  // power cycles
  uint64_t seq_ = 0;    // last version number handed out
  uint64_t cache_bytes_ = 0;
  uint64_t cache_versions_ = 0;
  uint64_t destaged_blocks_ = 0;
  std::map<uint64_t, std::unique_ptr<CachedWrite>> writes_;  // by seq
  std::map<uint64_t, Versions> blocks_;                      // by block
  std::deque<Phase*> phases_;  // waiting to run
  bool phase_running_ = false;
  uint64_t inflight_phases_ = 0;  // phases with base I/O issued
};

class FaultChannel final : public BdevChannel {
 public:
  FaultChannel(FaultBdev& b, reactor::Reactor& r)
      : BdevChannel(b, r), fb_(b), base_(b.base_desc().channel(r)), rules_(b.rules_snapshot()),
        rng_(std::random_device{}()) {}
  ~FaultChannel() override {
    while (free_) {
      Child* n = free_->next_free;
      delete free_;
      free_ = n;
    }
  }

  // Replaces this channel's rules (runs on the channel's reactor). Parked I/Os whose
  // rule is gone proceed to the base.
  void set_rules(RuleList rules) {
    // Parked I/Os point at their rule: keep the old list alive until they are handled.
    RuleList old = std::exchange(rules_, std::move(rules));
    std::vector<Child*> keep;
    std::vector<Child*> go;
    for (Child* c : parked_) {
      bool alive = std::any_of(rules_.begin(), rules_.end(),
                               [&](const auto& r) { return r.get() == c->rule; });
      (alive ? keep : go).push_back(c);
    }
    parked_ = std::move(keep);
    for (Child* c : go) {
      c->rule->parked.fetch_sub(1, std::memory_order_relaxed);
      reactor().release_stop();
      forward(c);
    }
  }

 protected:
  void do_submit(IoRequest& req) override {
    if (req.type == IoType::kReset) {
      // A reset aborts every parked I/O, then resets the base.
      auto parked = std::move(parked_);
      parked_.clear();
      for (Child* c : parked) {
        c->rule->parked.fetch_sub(1, std::memory_order_relaxed);
        reactor().release_stop();
        IoRequest& p = *c->parent;
        put(c);
        complete(p, IoStatus::kAborted);
      }
    }
    Rule* r = match(req);
    if (!r) {
      forward(get(req, nullptr));
      return;
    }
    switch (r->spec.mode) {
      case FaultMode::kError:
        complete(req, r->spec.error_status);
        return;
      case FaultMode::kDropWrite:
        complete(req, IoStatus::kSuccess);
        return;
      case FaultMode::kHang: {
        Child* c = get(req, r);
        r->parked.fetch_add(1, std::memory_order_relaxed);
        reactor().hold_stop();
        parked_.push_back(c);
        return;
      }
      case FaultMode::kDelay: {
        Child* c = get(req, r);
        reactor().hold_stop();
        reactor().add_timer(r->spec.delay_us * 1000, [this, c] {
          reactor().release_stop();
          forward(c);
        });
        return;
      }
    }
  }

 private:
  struct Child {
    IoRequest io;
    IoRequest* parent = nullptr;
    Rule* rule = nullptr;
    FaultChannel* ch = nullptr;
    Child* next_free = nullptr;
    // A read through the volatile cache: the cached blocks as they were at submission
    // (block index in the read, offset in `snap` or -1 for zeroes), laid over the base's.
    std::vector<std::pair<uint64_t, int64_t>> snap_blocks;
    std::vector<uint8_t> snap;
  };

  Rule* match(const IoRequest& req) {
    for (const auto& rp : rules_) {
      Rule& r = *rp;
      const auto& s = r.spec;
      if (!(s.ops_mask & io_type_bit(req.type))) continue;
      if (s.mode == FaultMode::kDropWrite && !(io_type_bit(req.type) & kWriteLike)) continue;
      uint64_t end = req.offset_blocks + std::max<uint64_t>(req.num_blocks, 1);
      if (req.type != IoType::kFlush && req.type != IoType::kReset &&
          (end <= s.lba_start || req.offset_blocks >= s.lba_end)) {
        continue;
      }
      uint64_t n = r.matched.fetch_add(1, std::memory_order_relaxed);
      if (n < s.skip) continue;
      if (s.count && n >= s.skip + s.count) continue;
      if (s.probability < 1.0 && std::uniform_real_distribution<double>(0, 1)(rng_) >= s.probability) {
        continue;
      }
      r.fired.fetch_add(1, std::memory_order_relaxed);
      return &r;
    }
    return nullptr;
  }

  Child* get(IoRequest& parent, Rule* rule) {
    Child* c = free_;
    if (c) {
      free_ = c->next_free;
    } else {
      c = new Child;  // grows to the peak queue depth, then reused
      c->ch = this;
    }
    c->parent = &parent;
    c->rule = rule;
    c->io.type = parent.type;
    c->io.offset_blocks = parent.offset_blocks;
    c->io.num_blocks = parent.num_blocks;
    c->io.iovs = parent.iovs;
    c->io.iovcnt = parent.iovcnt;
    c->io.fua = parent.fua;
    c->io.cb = &FaultChannel::on_child_done;
    c->io.cb_arg = c;
    return c;
  }
  void put(Child* c) {
    c->snap_blocks.clear();
    c->snap.clear();
    c->next_free = free_;
    free_ = c;
  }
  void forward(Child* c) {
    if (fb_.cache_on()) {
      cached(c);
      return;
    }
    base_.submit(c->io);
  }

  static void on_child_done(IoRequest& io, void* arg) {
    auto* c = static_cast<Child*>(arg);
    FaultChannel* self = c->ch;
    IoRequest& parent = *c->parent;
    IoStatus st = io.status;
    if (st == IoStatus::kSuccess && !c->snap_blocks.empty()) self->overlay(*c);
    self->put(c);
    self->complete_now(parent, st);
  }

  // ---- The volatile cache (any context on this reactor: completes with complete()) ----

  void cached(Child* c) {
    IoRequest& req = *c->parent;
    switch (req.type) {
      case IoType::kReset:
        base_.submit(c->io);
        return;
      case IoType::kRead:
        cached_read(c);
        return;
      case IoType::kFlush:
        put(c);
        enqueue(req, Phase::Kind::kFlush);
        return;
      case IoType::kWrite:
      case IoType::kWriteZeroes:
      case IoType::kUnmap:
        put(c);
        if (req.fua) {
          enqueue(req, Phase::Kind::kFua);
          return;
        }
        cached_write(req);
        return;
    }
  }

  void cached_write(IoRequest& req) {
    bool evict = false;
    {
      std::lock_guard lk(fb_.cache_mu_);
      if (fb_.powered_off_) {
        complete(req, IoStatus::kIoError);
        return;
      }
      fb_.cache_insert_locked(req);
      evict = fb_.cache_bytes_ > fb_.cache_limit_;
    }
    // Over the limit: the write waits while the oldest entries go to the base.
    if (evict) {
      enqueue(req, Phase::Kind::kEvict);
    } else {
      complete(req, IoStatus::kSuccess);
    }
  }

  void cached_read(Child* c) {
    IoRequest& req = *c->parent;
    const uint64_t bs = bdev().block_size();
    {
      std::lock_guard lk(fb_.cache_mu_);
      if (fb_.powered_off_) {
        put(c);
        complete(req, IoStatus::kIoError);
        return;
      }
      const uint64_t end = req.offset_blocks + req.num_blocks;
      for (auto it = fb_.blocks_.lower_bound(req.offset_blocks); it != fb_.blocks_.end() && it->first < end;
           ++it) {
        const CachedWrite& w = *it->second.back();
        int64_t at = -1;
        if (w.type == IoType::kWrite) {
          at = static_cast<int64_t>(c->snap.size());
          const uint8_t* src = w.data.data() + (it->first - w.lba) * bs;
          c->snap.insert(c->snap.end(), src, src + bs);
        }
        c->snap_blocks.emplace_back(it->first - req.offset_blocks, at);
      }
    }
    if (c->snap_blocks.size() == req.num_blocks) {  // all of it is cached
      overlay(*c);
      put(c);
      complete(req, IoStatus::kSuccess);
      return;
    }
    base_.submit(c->io);  // overlaid in on_child_done
  }

  void overlay(Child& c) {
    const uint64_t bs = bdev().block_size();
    for (const auto& [i, at] : c.snap_blocks) {
      iov_copy(*c.parent, i * bs, at < 0 ? nullptr : c.snap.data() + at, bs, true);
    }
  }

  // Queues a phase for `req`; runs it now if none is running.
  void enqueue(IoRequest& req, Phase::Kind kind) {
    auto* p = new Phase;
    p->kind = kind;
    p->origin = this;
    p->parent = &req;
    Phase* run = nullptr;
    {
      std::lock_guard lk(fb_.cache_mu_);
      if (fb_.powered_off_) {
        delete p;
        complete(req, IoStatus::kIoError);
        return;
      }
      p->epoch = fb_.epoch_;
      // A flush covers what came before it; a FUA write is a version of its own, so
      // that it supersedes only older ones.
      p->seq = kind == Phase::Kind::kFua ? ++fb_.seq_ : fb_.seq_;
      fb_.phases_.push_back(p);
      if (!fb_.phase_running_) {
        fb_.phase_running_ = true;
        run = fb_.phases_.front();
        fb_.phases_.pop_front();
      }
    }
    if (run) start_phase(run);
  }

  // Runs on p->origin's reactor.
  void start_phase(Phase* p) {
    bool flush_base = false;
    {
      std::lock_guard lk(fb_.cache_mu_);
      if (p->epoch != fb_.epoch_ || fb_.powered_off_) {
        p->status = IoStatus::kIoError;  // the power was cut while it waited
      } else if (p->kind == Phase::Kind::kFua) {
        auto op = std::make_unique<BaseOp>();
        IoRequest& req = *p->parent;
        op->io.type = req.type;
        op->io.offset_blocks = req.offset_blocks;
        op->io.num_blocks = req.num_blocks;
        op->io.iovs = req.iovs;
        op->io.iovcnt = req.iovcnt;
        op->io.fua = true;
        p->ops.push_back(std::move(op));
      } else {
        if (p->kind == Phase::Kind::kEvict) p->seq = fb_.evict_point_locked();
        std::vector<std::pair<uint64_t, CachedWrite*>> picks;
        if (p->seq) {
          for (const auto& [lba, v] : fb_.blocks_) {
            if (CachedWrite* w = newest_upto(v, p->seq)) {
              picks.emplace_back(lba, w);
              p->destaged.push_back(lba);
            }
          }
        }
        p->ops = fb_.base_ops_locked(picks);
        flush_base = p->kind == Phase::Kind::kFlush && fb_.base().supports(IoType::kFlush);
      }
      if (!p->ops.empty() || flush_base) {
        p->counted = true;
        ++fb_.inflight_phases_;
      }
    }
    if (p->ops.empty() && !flush_base) {
      // Nothing for the base: finish on a later turn (never inside do_submit).
      reactor().defer([this, p] { finish_phase(p); });
      return;
    }
    if (p->ops.empty()) {
      base_flush(p);
      return;
    }
    p->pending = p->ops.size();
    for (auto& op : p->ops) {
      op->phase = p;
      op->io.cb = &FaultChannel::on_phase_io_done;
      op->io.cb_arg = op.get();
      base_.submit(op->io);
    }
  }

  void base_flush(Phase* p) {
    p->base_flushing = true;
    auto op = std::make_unique<BaseOp>();
    op->io.type = IoType::kFlush;
    op->phase = p;
    op->io.cb = &FaultChannel::on_phase_io_done;
    op->io.cb_arg = op.get();
    p->pending = 1;
    p->ops.push_back(std::move(op));
    base_.submit(p->ops.back()->io);
  }

  static void on_phase_io_done(IoRequest& io, void* arg) {
    Phase* p = static_cast<BaseOp*>(arg)->phase;
    FaultChannel* self = p->origin;
    if (io.status != IoStatus::kSuccess && p->status == IoStatus::kSuccess) p->status = io.status;
    if (--p->pending) return;
    if (p->kind == Phase::Kind::kFlush && !p->base_flushing && p->status == IoStatus::kSuccess &&
        self->fb_.base().supports(IoType::kFlush)) {
      self->base_flush(p);
      return;
    }
    self->finish_phase(p);
  }

  // An asynchronous context on p->origin's reactor.
  void finish_phase(Phase* p) {
    Phase* next = nullptr;
    {
      std::lock_guard lk(fb_.cache_mu_);
      if (p->epoch != fb_.epoch_) {
        // The power was cut meanwhile: whatever reached the base stays, the request fails.
        p->status = IoStatus::kIoError;
      } else if (p->status == IoStatus::kSuccess) {
        if (p->kind == Phase::Kind::kFua) {
          const IoRequest& w = *p->parent;
          for (uint64_t b = 0; b < w.num_blocks; ++b) fb_.cache_drop_locked(w.offset_blocks + b, p->seq - 1);
        } else {
          fb_.destaged_blocks_ += p->destaged.size();
          for (uint64_t lba : p->destaged) fb_.cache_drop_locked(lba, p->seq);
        }
      }
      if (p->counted) {
        --fb_.inflight_phases_;
        fb_.cache_cv_.notify_all();
      }
      if (!fb_.phases_.empty()) {
        next = fb_.phases_.front();
        fb_.phases_.pop_front();
      } else {
        fb_.phase_running_ = false;
      }
    }
    IoRequest* parent = p->parent;
    IoStatus st = p->status;
    delete p;
    complete_now(*parent, st);
    if (next) {
      FaultChannel* o = next->origin;
      if (&o->reactor() == &reactor()) {
        o->start_phase(next);
      } else {
        o->reactor().send([o, next] { o->start_phase(next); });
      }
    }
  }

  FaultBdev& fb_;
  BdevChannel& base_;
  RuleList rules_;
  std::vector<Child*> parked_;
  Child* free_ = nullptr;
  std::minstd_rand rng_;
};

std::unique_ptr<BdevChannel> FaultBdev::create_channel(reactor::Reactor& r) {
  return std::make_unique<FaultChannel>(*this, r);
}

void FaultBdev::publish() {
  reg_.reactors().run_on_all([this](reactor::Reactor& r) {
    if (auto* ch = existing_channel(r.id())) {
      static_cast<FaultChannel*>(ch)->set_rules(rules_snapshot());
    }
  });
}

Result<uint64_t> FaultBdev::inject(const FaultRuleSpec& spec) {
  if (spec.ops_mask == 0) return make_error(Errc::kInvalidArgument, "fault rule selects no operation");
  if (spec.lba_start >= spec.lba_end) {
    return make_error(Errc::kInvalidArgument, "fault rule block range [{}, {}) is empty",
                      spec.lba_start, spec.lba_end);
  }
  if (!(spec.probability > 0.0 && spec.probability <= 1.0)) {
    return make_error(Errc::kInvalidArgument, "fault probability {} is not in (0, 1]",
                      spec.probability);
  }
  if (spec.mode == FaultMode::kDelay && spec.delay_us == 0) {
    return make_error(Errc::kInvalidArgument, "delay fault needs delay_us > 0");
  }
  if (spec.mode == FaultMode::kDelay && spec.delay_us > 3600ull * 1000 * 1000) {
    return make_error(Errc::kInvalidArgument, "delay_us {} exceeds one hour", spec.delay_us);
  }
  if (spec.mode == FaultMode::kDropWrite && !(spec.ops_mask & kWriteLike)) {
    return make_error(Errc::kInvalidArgument,
                      "drop fault needs a write, unmap or write_zeroes operation");
  }
  if (spec.mode == FaultMode::kError && spec.error_status == IoStatus::kSuccess) {
    return make_error(Errc::kInvalidArgument, "error fault needs a failure status");
  }
  uint64_t id;
  {
    std::lock_guard lk(mu_);
    id = next_id_++;
    auto r = std::make_shared<Rule>();
    r->id = id;
    r->spec = spec;
    rules_.push_back(std::move(r));
  }
  publish();
  spdlog::info("fault injected bdev={} id={} mode={} ops=0x{:x} range=[{},{}) skip={} count={} p={}",
               name(), id, fault_mode_name(spec.mode), spec.ops_mask, spec.lba_start,
               spec.lba_end, spec.skip, spec.count, spec.probability);
  return id;
}

Status FaultBdev::clear(uint64_t id) {
  {
    std::lock_guard lk(mu_);
    if (id == 0) {
      rules_.clear();
    } else {
      auto n = std::erase_if(rules_, [id](const auto& r) { return r->id == id; });
      if (n == 0) {
        return make_error(Errc::kNotFound, "fault bdev '{}' has no rule {}", name(), id);
      }
    }
  }
  publish();
  spdlog::info("fault cleared bdev={} id={}", name(), id == 0 ? "all" : std::to_string(id));
  return Status::ok();
}

// ---- Volatile cache ----

void FaultBdev::cache_insert_locked(const IoRequest& req) {
  auto w = std::make_unique<CachedWrite>();
  w->seq = ++seq_;
  w->type = req.type;
  w->lba = req.offset_blocks;
  w->live = req.num_blocks;
  if (req.type == IoType::kWrite) {
    w->data.resize(req.num_blocks * block_size());
    iov_copy(req, 0, w->data.data(), w->data.size(), false);
  }
  for (uint64_t b = 0; b < req.num_blocks; ++b) blocks_[req.offset_blocks + b].push_back(w.get());
  cache_bytes_ += w->data.size() + req.num_blocks * kCacheEntryOverhead;
  cache_versions_ += req.num_blocks;
  writes_[w->seq] = std::move(w);
}

void FaultBdev::cache_drop_locked(uint64_t lba, uint64_t s) {
  auto it = blocks_.find(lba);
  if (it == blocks_.end()) return;
  Versions& v = it->second;
  size_t n = 0;
  while (n < v.size() && v[n]->seq <= s) {
    CachedWrite* w = v[n++];
    cache_bytes_ -= kCacheEntryOverhead;
    --cache_versions_;
    if (--w->live == 0) {
      cache_bytes_ -= w->data.size();
      writes_.erase(w->seq);
    }
  }
  v.erase(v.begin(), v.begin() + static_cast<long>(n));
  if (v.empty()) blocks_.erase(it);
}

void FaultBdev::cache_clear_locked() {
  blocks_.clear();
  writes_.clear();
  cache_bytes_ = 0;
  cache_versions_ = 0;
}

uint64_t FaultBdev::evict_point_locked() const {
  if (cache_bytes_ <= cache_limit_) return 0;
  const uint64_t target = cache_limit_ / 4 * 3;
  uint64_t left = cache_bytes_;
  uint64_t s = 0;
  for (const auto& [seq, w] : writes_) {
    s = seq;
    left -= std::min(left, w->data.size() + w->live * kCacheEntryOverhead);
    if (left <= target) break;
  }
  return s;
}

std::vector<std::unique_ptr<BaseOp>> FaultBdev::base_ops_locked(
    const std::vector<std::pair<uint64_t, CachedWrite*>>& picks) const {
  std::vector<std::unique_ptr<BaseOp>> ops;
  const uint64_t bs = block_size();
  const size_t align = std::max<size_t>(4096, buf_align());
  for (size_t i = 0; i < picks.size();) {
    // A run: adjacent blocks whose chosen versions have one type.
    const IoType t = picks[i].second->type;
    size_t j = i + 1;
    while (j < picks.size() && picks[j].first == picks[j - 1].first + 1 && picks[j].second->type == t) ++j;
    auto op = std::make_unique<BaseOp>();
    op->io.type = t;
    op->io.offset_blocks = picks[i].first;
    op->io.num_blocks = j - i;
    if (t == IoType::kWrite) {
      op->buf = DmaBuffer((j - i) * bs, align);
      for (size_t k = i; k < j; ++k) {
        const CachedWrite& w = *picks[k].second;
        std::memcpy(op->buf.data() + (k - i) * bs, w.data.data() + (picks[k].first - w.lba) * bs, bs);
      }
      op->iov = {op->buf.data(), (j - i) * bs};
      op->io.iovs = &op->iov;
      op->io.iovcnt = 1;
    }
    ops.push_back(std::move(op));
    i = j;
  }
  return ops;
}

Status FaultBdev::run_on_base(std::vector<std::unique_ptr<BaseOp>> ops) {
  auto flush = std::make_unique<BaseOp>();
  flush->io.type = IoType::kFlush;
  struct Wait {
    size_t left = 0;
    IoStatus status = IoStatus::kSuccess;
    std::promise<void> done;
  };
  auto step = [this](reactor::Reactor& r, std::vector<std::unique_ptr<BaseOp>>& batch) {
    Wait w;
    w.left = batch.size();
    auto f = w.done.get_future();
    if (batch.empty()) return IoStatus::kSuccess;
    r.send([&] {
      BdevChannel& ch = base_.channel(r);
      for (auto& op : batch) {
        op->io.cb = [](IoRequest& io, void* arg) {
          auto* wp = static_cast<Wait*>(arg);
          if (io.status != IoStatus::kSuccess && wp->status == IoStatus::kSuccess) wp->status = io.status;
          if (--wp->left == 0) wp->done.set_value();
        };
        op->io.cb_arg = &w;
        ch.submit(op->io);
      }
    });
    f.wait();
    return w.status;
  };
  reactor::Reactor& r0 = reg_.reactors().at(0);
  IoStatus st = step(r0, ops);
  if (st == IoStatus::kSuccess && base().supports(IoType::kFlush)) {
    std::vector<std::unique_ptr<BaseOp>> f;
    f.push_back(std::move(flush));
    st = step(r0, f);
  }
  if (st != IoStatus::kSuccess) {
    return make_error(Errc::kIoError, "fault bdev '{}': writing the cache to '{}' failed: {}", name(),
                      base_name_, io_status_name(st));
  }
  return Status::ok();
}

Status FaultBdev::set_volatile_cache(bool on) {
  std::vector<std::unique_ptr<BaseOp>> ops;
  {
    std::lock_guard lk(cache_mu_);
    ++epoch_;
    powered_off_ = false;
    if (on) {
      cache_on_.store(true, std::memory_order_relaxed);
    } else {
      std::vector<std::pair<uint64_t, CachedWrite*>> picks;
      for (const auto& [lba, v] : blocks_) picks.emplace_back(lba, v.back());
      ops = base_ops_locked(picks);
    }
  }
  if (on) {
    spdlog::info("fault bdev={} volatile cache on limit={}", name(), cache_limit_);
    return Status::ok();
  }
  if (!cache_on()) return Status::ok();
  if (auto st = run_on_base(std::move(ops)); !st) return st;
  {
    std::lock_guard lk(cache_mu_);
    cache_clear_locked();
    cache_on_.store(false, std::memory_order_relaxed);
  }
  spdlog::info("fault bdev={} volatile cache off", name());
  return Status::ok();
}

Result<PowerLossReport> FaultBdev::power_loss(uint64_t seed) {
  if (!cache_on()) {
    return make_error(Errc::kInvalidArgument, "fault bdev '{}' has no volatile cache (cache=volatile)",
                      name());
  }
  PowerLossReport rep;
  std::vector<std::unique_ptr<BaseOp>> ops;
  {
    std::unique_lock lk(cache_mu_);
    powered_off_ = true;
    ++epoch_;
    // Base I/O already issued reached the disk before the cut; let it land first.
    cache_cv_.wait(lk, [this] { return inflight_phases_ == 0; });
    std::mt19937_64 rng(seed);
    const uint64_t per_unit = block_size() < kPowerLossUnit ? kPowerLossUnit / block_size() : 1;
    std::vector<std::pair<uint64_t, CachedWrite*>> picks;
    std::vector<uint64_t> seqs;
    for (auto it = blocks_.begin(); it != blocks_.end();) {
      const uint64_t unit = it->first / per_unit;
      auto end = it;
      seqs.clear();
      for (; end != blocks_.end() && end->first / per_unit == unit; ++end) {
        for (const CachedWrite* w : end->second) seqs.push_back(w->seq);
      }
      std::sort(seqs.begin(), seqs.end());
      seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
      // 0: nothing of the unit survives; k: the unit as the k-th oldest version left it.
      const uint64_t k = rng() % (seqs.size() + 1);
      ++rep.units;
      if (k == 0) {
        ++rep.lost;
      } else {
        ++(k == seqs.size() ? rep.newest : rep.older);
        for (; it != end; ++it) {
          if (CachedWrite* w = newest_upto(it->second, seqs[k - 1])) picks.emplace_back(it->first, w);
        }
      }
      it = end;
    }
    ops = base_ops_locked(picks);
    cache_clear_locked();
  }
  if (auto st = run_on_base(std::move(ops)); !st) return st;
  return rep;
}

VolatileCacheInfo FaultBdev::volatile_cache() {
  std::lock_guard lk(cache_mu_);
  VolatileCacheInfo i;
  i.on = cache_on();
  i.powered = !powered_off_;
  i.blocks = blocks_.size();
  i.versions = cache_versions_;
  i.bytes = cache_bytes_;
  i.limit_bytes = cache_limit_;
  i.destaged_blocks = destaged_blocks_;
  return i;
}

Result<FaultBdev*> FaultControl::cast(Bdev& bdev) {
  auto* fb = dynamic_cast<FaultBdev*>(&bdev);
  if (!fb) {
    return make_error(Errc::kInvalidArgument,
                      "bdev '{}' is not a fault bdev (create one with fault:///<name>?base={})",
                      bdev.name(), bdev.name());
  }
  return fb;
}

Result<uint64_t> FaultControl::inject(Bdev& bdev, const FaultRuleSpec& spec) {
  auto fb = cast(bdev);
  if (!fb) return fb.status();
  return (*fb)->inject(spec);
}

Status FaultControl::clear(Bdev& bdev, uint64_t id) {
  auto fb = cast(bdev);
  if (!fb) return fb.status();
  return (*fb)->clear(id);
}

std::vector<FaultRuleInfo> FaultControl::list(Bdev& bdev) {
  auto fb = cast(bdev);
  if (!fb) return {};
  return (*fb)->list();
}

Status FaultControl::set_volatile_cache(Bdev& bdev, bool on) {
  auto fb = cast(bdev);
  if (!fb) return fb.status();
  return (*fb)->set_volatile_cache(on);
}

Result<PowerLossReport> FaultControl::power_loss(Bdev& bdev, uint64_t seed) {
  auto fb = cast(bdev);
  if (!fb) return fb.status();
  return (*fb)->power_loss(seed);
}

Result<VolatileCacheInfo> FaultControl::volatile_cache(Bdev& bdev) {
  auto fb = cast(bdev);
  if (!fb) return fb.status();
  return (*fb)->volatile_cache();
}

namespace {
class FaultModule final : public BdevModule {
 public:
  const char* scheme() const override { return "fault"; }
  Result<std::unique_ptr<Bdev>> create(const Uri& uri, const std::string& name,
                                       BdevRegistry& reg) override {
    if (auto st = uri.check_keys({"base", "name", "cache", "cache_mb"}); !st) return st;
    const std::string cache = uri.get("cache", "none");
    if (cache != "none" && cache != "volatile") {
      return make_error(Errc::kInvalidArgument, "cache={} is invalid (none or volatile)", cache);
    }
    auto mb = uri.get_u64("cache_mb", 64);
    if (!mb) return mb.status();
    if (*mb == 0 || *mb > 65536) {
      return make_error(Errc::kInvalidArgument, "cache_mb={} is invalid (1 to 65536)", *mb);
    }
    std::string base = uri.get("base");
    if (base.empty()) {
      return make_error(Errc::kInvalidArgument, "fault bdev needs base=<bdev name>");
    }
    if (base == name) return make_error(Errc::kInvalidArgument, "fault bdev cannot wrap itself");
    auto desc = reg.open(base, Claim::bdev(name));
    if (!desc) return desc.status();
    return std::unique_ptr<Bdev>(
        std::make_unique<FaultBdev>(name, reg, std::move(desc.value()), cache == "volatile", *mb << 20));
  }
};
}  // namespace

std::unique_ptr<BdevModule> make_fault_module() { return std::make_unique<FaultModule>(); }

}  // namespace castor::bdev
