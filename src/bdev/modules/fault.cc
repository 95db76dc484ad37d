// fault:///<name>?base=<bdev> — a pass-through bdev with run-time fault injection.
//
// Rules live in a control list (guarded by a mutex, control path only). Each channel
// holds its own copy of the list, replaced by a message to its reactor whenever the
// rules change, so the I/O path reads rules without locks. Counters shared by all
// channels (matched/fired) are atomics touched only when an I/O matches a rule.
#include "bdev/modules/fault.h"

#include <algorithm>
#include <random>

#include <spdlog/spdlog.h>

#include "bdev/modules/modules.h"

namespace castor::bdev {

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

}  // namespace

class FaultChannel;

class FaultBdev final : public Bdev {
 public:
  FaultBdev(const std::string& name, BdevRegistry& reg, BdevDesc base)
      : Bdev(name, "fault", base.bdev()->block_size(), base.bdev()->num_blocks()),
        reg_(reg),
        base_name_(base.bdev()->name()),
        base_(std::move(base)) {
    Bdev* b = base_.bdev();
    set_buf_align(b->buf_align());
    uint32_t ops = 0;
    for (int t = 0; t < kNumIoTypes; ++t) {
      if (b->supports(static_cast<IoType>(t))) ops |= io_type_bit(static_cast<IoType>(t));
    }
    set_supported_ops(ops | io_type_bit(IoType::kReset));
  }
  ~FaultBdev() override {
    base_.close();
    reg_.release_claim(base_name_, name());
  }

  Bdev& base() { return *base_.bdev(); }
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
  void publish();

  BdevRegistry& reg_;
  std::string base_name_;
  BdevDesc base_;
  std::mutex mu_;
  RuleList rules_;
  uint64_t next_id_ = 1;
};

class FaultChannel final : public BdevChannel {
 public:
  FaultChannel(FaultBdev& b, reactor::Reactor& r)
      : BdevChannel(b, r), fb_(b), base_(b.base().channel(r)), rules_(b.rules_snapshot()),
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
      reactor().release();
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
        reactor().release();
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
        reactor().hold();
        parked_.push_back(c);
        return;
      }
      case FaultMode::kDelay: {
        Child* c = get(req, r);
        reactor().hold();
        reactor().add_timer(r->spec.delay_us * 1000, [this, c] {
          reactor().release();
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
    c->io.cb = &FaultChannel::on_child_done;
    c->io.cb_arg = c;
    return c;
  }
  void put(Child* c) {
    c->next_free = free_;
    free_ = c;
  }
  void forward(Child* c) { base_.submit(c->io); }

  static void on_child_done(IoRequest& io, void* arg) {
    auto* c = static_cast<Child*>(arg);
    FaultChannel* self = c->ch;
    IoRequest& parent = *c->parent;
    IoStatus st = io.status;
    self->put(c);
    self->complete_now(parent, st);
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

namespace {
class FaultModule final : public BdevModule {
 public:
  const char* scheme() const override { return "fault"; }
  Result<std::unique_ptr<Bdev>> create(const Uri& uri, const std::string& name,
                                       BdevRegistry& reg) override {
    if (auto st = uri.check_keys({"base", "name"}); !st) return st;
    std::string base = uri.get("base");
    if (base.empty()) {
      return make_error(Errc::kInvalidArgument, "fault bdev needs base=<bdev name>");
    }
    if (base == name) return make_error(Errc::kInvalidArgument, "fault bdev cannot wrap itself");
    auto desc = reg.open(base, name);
    if (!desc) return desc.status();
    return std::unique_ptr<Bdev>(std::make_unique<FaultBdev>(name, reg, std::move(desc.value())));
  }
};
}  // namespace

std::unique_ptr<BdevModule> make_fault_module() { return std::make_unique<FaultModule>(); }

}  // namespace castor::bdev
