#include "pool/replica_bdev.h"

#include <algorithm>
#include <cstring>

namespace castor::pool {

using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;

namespace {

class ReplicaChannel final : public bdev::BdevChannel {
 public:
  ReplicaChannel(ReplicaBdev& b, reactor::Reactor& r) : BdevChannel(b, r), replica_(b), pool_(b.pool()) {
    for (size_t i = 0; i < pool_.label().member_count; ++i) members_.push_back(&pool_.member(i).channel(r));
  }
  ~ReplicaChannel() override {
    while (free_) {
      Child* n = free_->next_free;
      delete free_;
      free_ = n;
    }
    while (free_parents_) {
      Parent* n = free_parents_->next_free;
      delete free_parents_;
      free_parents_ = n;
    }
  }

 protected:
  void do_submit(IoRequest& req) override { dispatch(req, true); }

 private:
  struct Parent {
    IoRequest* req = nullptr;
    uint32_t pending = 0;
    IoStatus status = IoStatus::kSuccess;
    Parent* next_free = nullptr;
  };
  struct Child {
    IoRequest io;
    Parent* parent = nullptr;
    ReplicaChannel* ch = nullptr;
    std::vector<iovec> iov;
    Child* next_free = nullptr;
  };

  Parent* get_parent(IoRequest& req) {
    Parent* p = free_parents_;
    if (p) free_parents_ = p->next_free;
    else p = new Parent;
    p->req = &req;
    p->pending = 1;  // held by dispatch until all children are issued
    p->status = IoStatus::kSuccess;
    return p;
  }
  Child* get_child(Parent* p) {
    Child* c = free_;
    if (c) free_ = c->next_free;
    else {
      c = new Child;
      c->ch = this;
      c->io.cb = &ReplicaChannel::child_done;
      c->io.cb_arg = c;
    }
    c->parent = p;
    c->iov.clear();
    return c;
  }
  void put_child(Child* c) {
    c->next_free = free_;
    free_ = c;
  }
  void parent_step(Parent* p, bool async) {
    if (--p->pending) return;
    IoRequest& req = *p->req;
    IoStatus st = p->status;
    p->next_free = free_parents_;
    free_parents_ = p;
    if (async) complete_now(req, st);
    else complete(req, st);
  }
  static void child_done(IoRequest& io, void* arg) {
    auto* c = static_cast<Child*>(arg);
    ReplicaChannel* self = c->ch;
    Parent* p = c->parent;
    if (io.status != IoStatus::kSuccess && p->status == IoStatus::kSuccess) p->status = io.status;
    self->put_child(c);
    self->parent_step(p, true);
  }

  // Copies the iovec range [off, off+len) of `req` into `out`, or zero-fills it.
  static void slice(const IoRequest& req, uint64_t off, uint64_t len, std::vector<iovec>* out) {
    bdev::for_each_iov_piece(req, off, len, [out](uint8_t* p, uint64_t n) {
      if (out) {
        out->push_back({p, n});
      } else {
        std::memset(p, 0, n);
      }
    });
  }


  void dispatch(IoRequest& req, bool first) {
    const uint64_t bs = bdev().block_size();
    const uint64_t cs = pool_.layout().cs;
    if (req.type == IoType::kFlush) {
      Parent* p = get_parent(req);
      for (auto* m : members_) {
        Child* c = get_child(p);
        c->io.type = IoType::kFlush;
        c->io.fua = false;
        c->io.offset_blocks = 0;
        c->io.num_blocks = 0;
        c->io.iovs = nullptr;
        c->io.iovcnt = 0;
        ++p->pending;
        m->submit(c->io);
      }
      parent_step(p, !first);
      return;
    }
    if (req.type == IoType::kReset) {
      first ? complete(req, IoStatus::kSuccess) : complete_now(req, IoStatus::kSuccess);
      return;
    }
    MapVersion* mv = replica_.state()->map.load(std::memory_order_acquire);
    const uint64_t start = req.offset_blocks * bs;
    const uint64_t end = start + req.num_blocks * bs;
    // Thin writes to unallocated clusters wait for the home reactor to allocate them.
    if (req.type == IoType::kWrite) {
      for (uint64_t c = start / cs; c * cs < end && c < mv->len; ++c) {
        if (mv->e[c].load(std::memory_order_acquire) == kUnallocated) {
          request_alloc(req, start / cs, (end - 1) / cs);
          return;
        }
      }
    }
    Parent* p = get_parent(req);
    for (uint64_t off = start; off < end;) {
      uint64_t c = off / cs;
      uint64_t seg_end = std::min(end, (c + 1) * cs);
      uint64_t len = seg_end - off;
      uint32_t physical_cluster = c < mv->len ? mv->e[c].load(std::memory_order_acquire) : kUnallocated;
      if (physical_cluster == kUnallocated) {
        // Reads of unallocated ranges return zeroes; unmap/write-zeroes have nothing to do.
        if (req.type == IoType::kRead) slice(req, off - start, len, nullptr);
        if (req.type == IoType::kWrite) p->status = IoStatus::kIoError;  // raced a shrink: impossible
        off = seg_end;
        continue;
      }
      auto [m, moff] = pool_.layout().locate(physical_cluster);
      Child* ch = get_child(p);
      ch->io.type = req.type;
      ch->io.fua = req.fua;  // allocation metadata is already durable (ensure_alloc)
      ch->io.offset_blocks = (moff + (off - c * cs)) / bs;
      ch->io.num_blocks = len / bs;
      if (req.type == IoType::kRead || req.type == IoType::kWrite) {
        slice(req, off - start, len, &ch->iov);
        ch->io.iovs = ch->iov.data();
        ch->io.iovcnt = static_cast<int>(ch->iov.size());
      } else {
        ch->io.iovs = nullptr;
        ch->io.iovcnt = 0;
      }
      ++p->pending;
      members_[m]->submit(ch->io);
      off = seg_end;
    }
    parent_step(p, !first);
  }

  // Asks the home reactor to allocate the unallocated clusters of [first_c, last_c],
  // then dispatches `req` again on this reactor (or fails it, e.g. with no_space).
  void request_alloc(IoRequest& req, uint64_t first_c, uint64_t last_c) {
    auto replica_state = replica_.state();
    MapVersion* mv = replica_state->map.load(std::memory_order_acquire);
    std::vector<uint32_t> todo;
    for (uint64_t c = first_c; c <= last_c && c < mv->len; ++c) {
      if (mv->e[c].load(std::memory_order_acquire) == kUnallocated) todo.push_back(static_cast<uint32_t>(c));
    }
    // Called only when a cluster was seen unallocated, and clusters are never unmapped,
    // so `todo` cannot be empty.
    struct Wait {
      size_t left;
      IoStatus status = IoStatus::kSuccess;
    };
    auto w = std::make_shared<Wait>(Wait{todo.size()});
    reactor::Reactor* origin = &reactor();
    IoRequest* rq = &req;
    Pool* pool = &pool_;
    pool_.home().send([pool, replica_state, todo, w, origin, rq, this] {
      for (uint32_t logical_cluster : todo) {
        pool->ensure_alloc(replica_state, logical_cluster, [w, origin, rq, this](IoStatus st) {
          origin->send([w, st, rq, this] {
            if (st != IoStatus::kSuccess && w->status == IoStatus::kSuccess) w->status = st;
            if (--w->left) return;
            if (w->status != IoStatus::kSuccess) {
              complete_now(*rq, w->status);
            } else {
              dispatch(*rq, false);
            }
          });
        });
      }
    });
  }

  ReplicaBdev& replica_;
  Pool& pool_;
  std::vector<bdev::BdevChannel*> members_;
  Child* free_ = nullptr;
  Parent* free_parents_ = nullptr;
};

}  // namespace

ReplicaBdev::ReplicaBdev(Pool& pool, std::shared_ptr<ReplicaState> replica_state)
    : Bdev(replica_state->name, "replica", pool.block_size(), replica_state->size_bytes / pool.block_size()),
      pool_(pool),
      replica_state_(std::move(replica_state)) {
  set_uuid(replica_state_->uuid);
  uint32_t align = 1;
  uint32_t ops = bdev::io_type_bit(IoType::kRead) | bdev::io_type_bit(IoType::kWrite) |
                 bdev::io_type_bit(IoType::kFlush) | bdev::io_type_bit(IoType::kUnmap) |
                 bdev::io_type_bit(IoType::kWriteZeroes) | bdev::io_type_bit(IoType::kReset);
  for (size_t i = 0; i < pool.label().member_count; ++i) align = std::max(align, pool.member(i).bdev()->buf_align());
  set_buf_align(align);
  set_supported_ops(ops);
  // FUA goes down to the member disks' requests (their channels honour it); cluster
  // allocation is durable before a write is dispatched.
  set_fua_ops(bdev::io_type_bit(IoType::kWrite) | bdev::io_type_bit(IoType::kWriteZeroes) |
              bdev::io_type_bit(IoType::kUnmap));
}

bool ReplicaBdev::range_allocated(uint64_t offset_blocks, uint64_t num_blocks) const {
  if (num_blocks == 0) return false;
  if (!replica_state_->thin) return true;
  const MapVersion* mv = replica_state_->map.load(std::memory_order_acquire);
  const uint64_t cs = pool_.layout().cs;
  const uint64_t first = offset_blocks * block_size() / cs;
  const uint64_t last = ((offset_blocks + num_blocks) * block_size() - 1) / cs;
  for (uint64_t c = first; c <= last; ++c) {
    if (c >= mv->len || mv->e[c].load(std::memory_order_acquire) != kUnallocated) return true;
  }
  return false;
}

uint64_t ReplicaBdev::allocation_run(uint64_t offset_blocks, uint64_t max_blocks, bool* allocated) const {
  if (!replica_state_->thin) {
    *allocated = true;
    return max_blocks;
  }
  const MapVersion* mv = replica_state_->map.load(std::memory_order_acquire);
  const uint64_t per_cluster = pool_.layout().cs / block_size();
  auto mapped = [&](uint64_t c) { return c >= mv->len || mv->e[c].load(std::memory_order_acquire) != kUnallocated; };
  uint64_t c = offset_blocks / per_cluster;
  const bool state = mapped(c);
  const uint64_t end = offset_blocks + max_blocks;
  uint64_t run_end = (c + 1) * per_cluster;  // blocks: the end of the run so far
  while (run_end < end && mapped(run_end / per_cluster) == state) run_end += per_cluster;
  *allocated = state;
  return std::min(run_end, end) - offset_blocks;
}

std::unique_ptr<bdev::BdevChannel> ReplicaBdev::create_channel(reactor::Reactor& r) {
  return std::make_unique<ReplicaChannel>(*this, r);
}

}  // namespace castor::pool
