#pragma once
// MetadataLog: the durable metadata of one imported pool. Changes (LogOps) are appended as
// checksummed records to the log ring on member 0 and acknowledged only once flushed
// (group commit: one record in flight, callers arriving meanwhile share the next one).
// When the ring is full, the committed state is folded into the inactive checkpoint slot
// and the log restarts at block 0. The format is docs/pool-format.md.
//
// A failed log or checkpoint write or flush makes the log read-only: every later commit
// fails with IoError (the pool reports "faulted"), since what reached the disk is unknown
// until the pool is imported again. Runs on the pool's home reactor only.

#include <functional>
#include <vector>

#include "bdev/bdev.h"
#include "pool/format.h"
#include "pool/layout.h"

namespace castor::pool {

class MetadataLog {
 public:
  // `disk` is member 0 (labels, checkpoint slots, log). The state is `loaded`'s.
  MetadataLog(reactor::Reactor& home, const bdev::BdevDesc& disk, const Label& label,
              const Layout& layout)
      : home_(home), disk_(disk), label_(label), layout_(layout) {}

  // Takes over the state, sequence, log head and slot that import read (or create wrote).
  void adopt(const Loaded& ld) {
    committed_ = ld.state;
    next_seq_ = ld.next_seq;
    log_head_ = ld.log_head;
    generation_ = ld.generation;
    active_slot_ = ld.slot;
  }

  // Appends `ops`; `done` runs once the record is durable and the ops are applied to the
  // committed state, or with the error that kept it from being written (the change was
  // not made, or, after a failed flush, may or may not be durable: the message says).
  void commit(std::vector<LogOp> ops, std::function<void(Status)> done);

  const PoolState& committed() const { return committed_; }
  bool failed() const { return failed_; }

 private:
  struct Pending {
    std::vector<LogOp> ops;
    std::function<void(Status)> done;
  };
  void write_next();
  // A metadata write or flush failed: read-only from now on. Returns the caller's error.
  Status metadata_failed(bdev::IoStatus st, const char* what, const char* outcome);
  // Folds the committed state into the inactive slot; the log restarts at block 0.
  void checkpoint(std::function<void(Status)> done);

  reactor::Reactor& home_;
  const bdev::BdevDesc& disk_;
  const Label& label_;
  const Layout& layout_;
  PoolState committed_;
  uint64_t next_seq_ = 1;
  uint64_t log_head_ = 0;
  uint64_t generation_ = 0;
  int active_slot_ = 0;
  std::vector<Pending> queue_;
  bool writing_ = false;
  bool failed_ = false;
};

}  // namespace castor::pool
