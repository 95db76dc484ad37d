#pragma once
// One power cut across several disks. A pool over several disks needs them to stop at the
// same instant: the fault bdev's error rule counts the I/Os of one disk only. A CutGate is
// a pass-through bdev over one disk; the gates of a pool share one CutClock, which
// numbers the I/Os of all of them in submission order. Once the clock passes its cut,
// every later I/O through a gate that `freezes` fails with io_error without reaching its
// disk (the disk is off), while I/O already passed on completes normally (it reached the
// device before the cut). The test then decides per disk what the cut did to its
// volatile cache (FaultControl::power_loss) and imports the pool from the disks beneath.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "bdev/bdev.h"
#include "bdev/registry.h"

namespace castor::pool::test {

struct CutClock {
  std::atomic<uint64_t> ticks{0};           // I/Os counted so far
  std::atomic<uint64_t> cut{UINT64_MAX};    // I/Os counted after this one fail
  // Which I/Os advance the clock (io_type_bit mask), plus any I/O that starts below a
  // gate's `counted_below` block: tests that cut inside one operation (a grow) count only
  // its kinds of I/O, so that a concurrent workload does not blur the point.
  uint32_t counted_ops = UINT32_MAX;
  std::atomic<bool> off{false};  // cut now, whatever the count
  bool frozen() const { return off.load() || ticks.load() > cut.load(); }
};

class CutGate final : public bdev::Bdev {
 public:
  // `freezes`: whether this disk goes off at the cut (all disks for a power loss; one for
  // a single disk's crash while the others run on). `unmap`: whether the gate offers the
  // base's unmap (without it, what a pool frees keeps its old data, as on a disk without
  // discard).
  CutGate(const std::string& name, std::shared_ptr<bdev::Bdev> base, std::shared_ptr<CutClock> clock,
          bool freezes, uint64_t counted_below = 0, bool unmap = true)
      : Bdev(name, "gate", base->block_size(), base->num_blocks()),
        base_(std::move(base)),
        clock_(std::move(clock)),
        freezes_(freezes),
        counted_below_(counted_below) {
    uint32_t ops = 0;
    for (int t = 0; t < bdev::kNumIoTypes; ++t) {
      if (base_->supports(static_cast<bdev::IoType>(t))) ops |= bdev::io_type_bit(static_cast<bdev::IoType>(t));
    }
    if (!unmap) ops &= ~bdev::io_type_bit(bdev::IoType::kUnmap);
    set_supported_ops(ops);
    set_buf_align(base_->buf_align());
    // `fua` goes down with the request: the base's channel honours or emulates it.
    set_fua_ops(bdev::io_type_bit(bdev::IoType::kWrite) | bdev::io_type_bit(bdev::IoType::kWriteZeroes) |
                bdev::io_type_bit(bdev::IoType::kUnmap));
  }
  void set_freezes(bool f) { freezes_ = f; }

 protected:
  std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor& r) override;

 private:
  friend class CutGateChannel;
  std::shared_ptr<bdev::Bdev> base_;
  bdev::BdevDesc base_desc_{base_.get()};  // the gate's I/O goes to its base through it
  std::shared_ptr<CutClock> clock_;
  std::atomic<bool> freezes_;
  uint64_t counted_below_;
};

class CutGateChannel final : public bdev::BdevChannel {
 public:
  CutGateChannel(CutGate& g, reactor::Reactor& r) : BdevChannel(g, r), gate_(g), base_(g.base_desc_.channel(r)) {}

 protected:
  void do_submit(bdev::IoRequest& req) override {
    CutClock& c = *gate_.clock_;
    const bool counted = (c.counted_ops & bdev::io_type_bit(req.type)) || req.offset_blocks < gate_.counted_below_;
    const uint64_t t = counted ? c.ticks.fetch_add(1) + 1 : c.ticks.load();
    if (gate_.freezes_ && (t > c.cut.load() || c.off.load())) {
      complete(req, bdev::IoStatus::kIoError);
      return;
    }
    auto* child = new Child{{}, &req, this};
    child->io.type = req.type;
    child->io.fua = req.fua;
    child->io.offset_blocks = req.offset_blocks;
    child->io.num_blocks = req.num_blocks;
    child->io.iovs = req.iovs;
    child->io.iovcnt = req.iovcnt;
    child->io.cb = [](bdev::IoRequest& io, void* arg) {
      std::unique_ptr<Child> ch(static_cast<Child*>(arg));
      ch->self->complete_now(*ch->parent, io.status);
    };
    child->io.cb_arg = child;
    base_.submit(child->io);
  }

 private:
  struct Child {
    bdev::IoRequest io;
    bdev::IoRequest* parent;
    CutGateChannel* self;
  };
  CutGate& gate_;
  bdev::BdevChannel& base_;
};

inline std::unique_ptr<bdev::BdevChannel> CutGate::create_channel(reactor::Reactor& r) {
  return std::make_unique<CutGateChannel>(*this, r);
}

// Registers a gate named `name` over bdev `base`.
inline Status add_gate(bdev::BdevRegistry& reg, const std::string& name, const std::string& base,
                       std::shared_ptr<CutClock> clock, bool freezes, uint64_t counted_below = 0,
                       bool unmap = true) {
  auto b = reg.find(base);
  if (!b) return make_error(Errc::kNotFound, "no bdev '{}'", base);
  return reg.add(std::make_shared<CutGate>(name, std::move(b), std::move(clock), freezes, counted_below, unmap),
                 "gate:///" + name + "?base=" + base);
}

}  // namespace castor::pool::test
