#include "pool/metadata_log.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include <spdlog/spdlog.h>

#include "pool/meta_io.h"

namespace castor::pool {

using bdev::IoStatus;
using bdev::IoType;

namespace {
Errc errc_of(IoStatus s) { return s == IoStatus::kNoSpace ? Errc::kNoSpace : Errc::kIoError; }
}  // namespace

void MetadataLog::commit(std::vector<LogOp> ops, std::function<void(Status)> done) {
  queue_.push_back({std::move(ops), std::move(done)});
  if (!writing_) write_next();
}

void MetadataLog::write_next() {
  if (queue_.empty()) return;
  writing_ = true;
  auto batch = std::make_shared<std::vector<Pending>>(std::move(queue_));
  queue_.clear();
  std::vector<LogOp> ops;
  for (auto& p : *batch) ops.insert(ops.end(), p.ops.begin(), p.ops.end());
  auto finish = [this, batch](Status st) {
    for (auto& p : *batch) p.done(st);
    writing_ = false;
    write_next();
  };
  if (failed_) {
    finish(make_error(Errc::kIoError, "pool '{}' metadata is read-only after an I/O error", label_.pool_name));
    return;
  }
  auto rec = std::make_shared<std::vector<uint8_t>>(encode_log_record(label_.pool_uuid, next_seq_, ops));
  const uint64_t nb = rec->size() / kBlock;
  const uint64_t log_blocks = label_.log_size / kBlock;
  if (nb > log_blocks) {
    finish(make_error(Errc::kNoSpace, "metadata record of {} blocks exceeds the log", nb));
    return;
  }
  auto write_record = [this, rec, nb, ops, finish]() {
    auto buf = std::make_shared<bdev::DmaBuffer>(rec->size(), std::max<size_t>(4096, disk_.bdev()->buf_align()));
    std::memcpy(buf->data(), rec->data(), rec->size());
    async_io(home_, disk_, IoType::kWrite, label_.log_offset + log_head_ * kBlock, rec->size(), buf,
             [this, nb, ops, finish](IoStatus st) {
               if (st != IoStatus::kSuccess) {
                 finish(metadata_failed(st, "metadata log write failed", "was not made"));
                 return;
               }
               async_io(home_, disk_, IoType::kFlush, 0, 0, nullptr, [this, nb, ops, finish](IoStatus fs) {
                 if (fs != IoStatus::kSuccess) {
                   // The record may be on the disk or not: the outcome is unknown.
                   finish(metadata_failed(fs, "metadata log flush failed", "may or may not be durable"));
                   return;
                 }
                 log_head_ += nb;
                 ++next_seq_;
                 for (const auto& op : ops) {
                   if (auto s = apply_op(committed_, op); !s) {
                     spdlog::critical("pool={} committed op does not apply: {}", label_.pool_name, s.message());
                     failed_ = true;
                   }
                 }
                 finish(Status::ok());
               });
             });
  };
  if (log_head_ + nb <= log_blocks) {
    write_record();
    return;
  }
  checkpoint([this, write_record, finish](Status st) {
    if (!st) {
      finish(st);
      return;
    }
    write_record();
  });
}

// From now on the pool refuses metadata changes (its replicas keep serving I/O to
// clusters already allocated), until it is imported again, which reads back whatever
// reached the disk.
Status MetadataLog::metadata_failed(IoStatus st, const char* what, const char* outcome) {
  failed_ = true;
  auto err = make_error(errc_of(st), "{}: {}; the change {}; pool '{}' metadata is now read-only (re-import "
                        "the pool to recover)", what, bdev::io_status_name(st), outcome, label_.pool_name);
  spdlog::error("pool={} {}", label_.pool_name, err.message());
  return err;
}

void MetadataLog::checkpoint(std::function<void(Status)> done) {
  Checkpoint c;
  c.generation = generation_ + 1;
  c.log_seq = next_seq_ - 1;
  c.state = committed_;
  for (auto& r : c.state.replicas) {
    auto map = extents_to_map(r.extents, (r.size_bytes + layout_.cs - 1) / layout_.cs);
    if (map) r.extents = map_to_extents(map.value());
  }
  auto enc = encode_checkpoint(label_.pool_uuid, c, label_.slot_size);
  if (!enc) {
    done(enc.status());
    return;
  }
  const int slot = 1 - active_slot_;
  auto buf = std::make_shared<bdev::DmaBuffer>(enc->size(), std::max<size_t>(4096, disk_.bdev()->buf_align()));
  std::memcpy(buf->data(), enc->data(), enc->size());
  const uint64_t len = enc->size();
  async_io(home_, disk_, IoType::kWrite, label_.meta_offset + slot * label_.slot_size, len, buf,
           [this, slot, done](IoStatus st) {
             if (st != IoStatus::kSuccess) {
               done(metadata_failed(st, "checkpoint write failed", "was not made"));
               return;
             }
             async_io(home_, disk_, IoType::kFlush, 0, 0, nullptr, [this, slot, done](IoStatus fs) {
               // A checkpoint that landed although its flush failed would restart the log
               // at block 0 on the next import: records appended after it at the old
               // head would be lost. Read-only from here on.
               if (fs != IoStatus::kSuccess) {
                 done(metadata_failed(fs, "checkpoint flush failed", "was not made"));
                 return;
               }
               active_slot_ = slot;
               ++generation_;
               log_head_ = 0;
               spdlog::debug("pool={} checkpoint generation={} slot={}", label_.pool_name, generation_, "AB"[slot]);
               done(Status::ok());
             });
           });
}

}  // namespace castor::pool
