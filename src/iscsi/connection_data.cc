// IscsiConnection, data transfer: SCSI commands and their buffers, R2T and Data-Out
// collection, execution, Data-In and the SCSI Response.
#include <algorithm>
#include <cstring>
#include <functional>

#include <spdlog/spdlog.h>

#include "iscsi/connection.h"
#include "scsi/sense.h"

namespace castor::iscsi {

void IscsiConnection::scsi_command(const Bhs& h, std::span<const uint8_t> data) {
  // Larger transfers are refused without a buffer (writes below, reads by the device).
  const uint32_t need = std::min(h.u32(off::kEdtl), t_.options().max_transfer_bytes);
  if (need && buffered_bytes_ && buffered_bytes_ + need > t_.options().max_buffered_bytes) {
    t_.count(&TargetStats::buffer_limit_hits);
    quick_status(h, scsi::Status::kTaskSetFull);
    return;
  }
  if (need && !budget_.try_charge(need)) {
    t_.count(&TargetStats::buffer_limit_hits);
    t_.count(&TargetStats::budget_limit_hits);
    quick_status(h, scsi::Status::kTaskSetFull);
    return;
  }
  Task* tk = take();
  if (!tk) {
    budget_.release(need);
    // The initiator exceeded the window only if immediate; answer TASK SET FULL.
    quick_status(h, scsi::Status::kTaskSetFull);
    return;
  }
  tk->holds_credit = !h.immediate();
  if (tk->holds_credit) sess_->window.take_credit();
  tk->charged = need;
  buffered_bytes_ += need;
  tk->itt = h.itt();
  tk->pdu_flags = h.flags();
  tk->edtl = h.u32(off::kEdtl);
  scsi::Command& c = tk->cmd;
  std::memcpy(c.cdb, h.b + off::kCdb, 16);
  c.lun = decode_lun(h.lun_field());
  c.nexus = &sess_->nexus;
  c.edtl = tk->edtl;
  c.data_out_len = 0;
  const bool w = tk->pdu_flags & cmdflag::kWrite;
  if (!w && !data.empty()) {
    release_credit_and_fail(*tk, h, "immediate data on a command without the W bit");
    return;
  }
  if (!data.empty() && !params_.immediate_data) {
    release_credit_and_fail(*tk, h, "immediate data not negotiated");
    return;
  }
  if (w && tk->edtl > t_.options().max_transfer_bytes) {
    // Too big to buffer: fail it now. Unsolicited Data-Out for it is ignored later.
    fail_unexecuted(*tk, scsi::sense_key::kIllegalRequest, scsi::asc::kInvalidFieldInCdb);
    return;
  }
  if (w && tk->edtl > 0) {
    if (data.size() > tk->edtl || data.size() > params_.first_burst) {
      release_credit_and_fail(*tk, h, "immediate data beyond EDTL or FirstBurstLength");
      return;
    }
    ensure_buf(c, tk->edtl);
    if (!data.empty()) std::memcpy(c.buf.data(), data.data(), data.size());
    tk->received = static_cast<uint32_t>(data.size());
    tk->unsol_limit = params_.initial_r2t ? tk->received : std::min(tk->edtl, params_.first_burst);
    tk->unsol_open = !h.final() && !params_.initial_r2t && tk->received < tk->unsol_limit;
    if (!h.final() && params_.initial_r2t) {
      release_credit_and_fail(*tk, h, "unsolicited Data-Out announced with InitialR2T=Yes");
      return;
    }
    tk->state = TaskState::kReceiving;
    if (tk->received == tk->edtl) {
      execute(*tk);
    } else if (!tk->unsol_open) {
      send_r2t(*tk);
    }
    return;
  }
  execute(*tk);
}

void IscsiConnection::release_credit_and_fail(Task& tk, const Bhs& h, const std::string& why) {
  release(tk);
  protocol_error(h, reject::kProtocolError, why);
}

// Answers a task with CHECK CONDITION without handing it to the SCSI layer.
void IscsiConnection::fail_unexecuted(Task& tk, uint8_t key, uint16_t asc_ascq) {
  scsi::check_condition(tk.cmd, key, asc_ascq);
  tk.state = TaskState::kSending;
  send_response(tk);
}

void IscsiConnection::ensure_buf(scsi::Command& c, uint32_t n) {
  if (c.buf.size() < n) c.buf = bdev::DmaBuffer(std::max<size_t>(n, 4096), 4096);
}

// A status-only answer to a command that never got a task (no slot free).
void IscsiConnection::quick_status(const Bhs& h, scsi::Status st) {
  Bhs b;
  b.clear();
  b.set_opcode(op::kScsiResp);
  b.set_flags(kFinal);
  b.b[off::kStatus] = static_cast<uint8_t>(st);
  b.set_itt(h.itt());
  fill_sns(b, true);
  send_owned(b, {});
}

void IscsiConnection::send_r2t(Task& tk) {
  const uint32_t len = std::min(params_.max_burst, tk.edtl - tk.received);
  Bhs& b = tk.r2t.bhs;
  b.clear();
  b.set_opcode(op::kR2t);
  b.set_flags(kFinal);
  store_be64(b.b + off::kLun, encode_lun(tk.cmd.lun));
  b.set_itt(tk.itt);
  b.set_u32(off::kTtt, tk.ttt());
  fill_sns(b, false);
  b.set_u32(off::kDataSn, tk.r2t_sn++);
  b.set_u32(off::kBufferOffset, tk.received);
  b.set_u32(off::kDesiredLength, len);
  tk.r2t_open = true;
  tk.r2t_end = tk.received + len;
  tk.data_sn = 0;
  ++tk.datain_sn;
  send_pdu(tk.r2t, nullptr, 0);
}

// `intact` is false for a Data-Out whose data digest failed: its header is sound (the
// header digest passed), its data is not.
void IscsiConnection::data_out(const Bhs& h, std::span<const uint8_t> data, bool intact) {
  const uint32_t ttt = h.u32(off::kTtt);
  Task* tk = nullptr;
  bool solicited = ttt != kReservedTag;
  if (solicited) {
    const uint32_t idx = ttt & 0xFFFF;
    if (idx < tasks_.size() && tasks_[idx].state == TaskState::kReceiving && tasks_[idx].ttt() == ttt &&
        tasks_[idx].itt == h.itt() && tasks_[idx].r2t_open) {
      tk = &tasks_[idx];
    }
  } else {
    Task* f = find_itt(h.itt());
    if (f && f->state == TaskState::kReceiving && f->unsol_open) tk = f;
  }
  if (!tk) {
    // Data for a task that already ended (failed early, or aborted): drop it.
    spdlog::debug("iscsi: Data-Out for unknown task itt={:#x} ttt={:#x}", h.itt(), ttt);
    return;
  }
  const uint32_t off = h.u32(off::kBufferOffset);
  const uint32_t len = static_cast<uint32_t>(data.size());
  const uint32_t limit = solicited ? tk->r2t_end : tk->unsol_limit;
  // A DataSN out of order means an earlier Data-Out was lost (RFC 7143 §7.9: a sequence
  // error implies a digest error). With no recovery R2T at ERL 0, the task is ended with
  // CHECK CONDITION, "protocol service CRC error", once the initiator has sent the rest
  // of the sequence (§7.8), and none of its data is written. The connection stays.
  if (!tk->data_lost && (!intact || h.u32(off::kDataSn) != tk->data_sn)) {
    spdlog::warn("iscsi {}: Data-Out itt={:#x} lost ({}); the command will fail", peer_, h.itt(),
                 intact ? fmt::format("DataSN {}, expected {}", h.u32(off::kDataSn), tk->data_sn)
                        : std::string("data digest mismatch"));
    t_.count(&TargetStats::lost_data_outs);
    tk->data_lost = true;
  }
  if (uint64_t{off} + len > limit || (!tk->data_lost && off != tk->received)) {
    protocol_error(h, reject::kProtocolError,
                   fmt::format("Data-Out offset {} length {} (expected offset {}, limit {})", off, len,
                               tk->received, limit));
    return;
  }
  if (!tk->data_lost) {
    ++tk->data_sn;
    if (len) std::memcpy(tk->cmd.buf.data() + off, data.data(), len);
    tk->received += len;
  }
  // Once data was lost only the F bit ends the sequence: the offsets no longer add up.
  const bool end_of_sequence = h.final() || (!tk->data_lost && tk->received == limit);
  if (!end_of_sequence) return;
  if (!tk->data_lost && h.final() != (tk->received == limit) && solicited) {
    protocol_error(h, reject::kProtocolError, "Data-Out F bit before the end of the burst");
    return;
  }
  if (solicited) {
    tk->r2t_open = false;
  } else {
    tk->unsol_open = false;
  }
  if (tk->data_lost) {
    fail_unexecuted(*tk, scsi::sense_key::kAbortedCommand, scsi::asc::kCrcErrorDetected);
  } else if (tk->received == tk->edtl) {
    execute(*tk);
  } else if (!tk->r2t_open && !tk->unsol_open) {
    tk->data_sn = 0;
    send_r2t(*tk);
  }
}

void IscsiConnection::execute(Task& tk) {
  tk.state = TaskState::kExecuting;
  tk.cmd.data_out_len = tk.received;
  tk.cmd.done = &IscsiConnection::command_done;
  tk.cmd.done_arg = &tk;
  dev_->execute(tk.cmd, r_);
}

void IscsiConnection::command_done(scsi::Command& c, void* arg) {
  Task& tk = *static_cast<Task*>(arg);
  tk.c->finish(tk);
}

void IscsiConnection::finish(Task& tk) {
  if (tk.aborted || closed_ || conn_->closing()) {
    release(tk);
    return;
  }
  tk.state = TaskState::kSending;
  const scsi::Command& c = tk.cmd;
  const bool read = tk.pdu_flags & cmdflag::kRead;
  const bool good = c.status == scsi::Status::kGood || c.status == scsi::Status::kConditionMet;
  if (read && good && c.dir == scsi::DataDir::kIn && std::min(c.xfer_len, tk.edtl) > 0) {
    send_data_in(tk);
  } else {
    send_response(tk);
  }
}

// Residual flags and count for the response (RFC 7143 §11.4.5).
void IscsiConnection::residual(const Task& tk, uint8_t* flags, uint32_t* count) {
  const scsi::Command& c = tk.cmd;
  *flags = 0;
  *count = 0;
  const bool read = tk.pdu_flags & cmdflag::kRead, write = tk.pdu_flags & cmdflag::kWrite;
  uint32_t full = 0;
  if (read && c.dir == scsi::DataDir::kIn) full = c.xfer_len;
  else if (write && c.dir == scsi::DataDir::kOut) full = c.xfer_len;
  else if (!read && !write) return;
  else if (c.dir != scsi::DataDir::kNone) return;  // direction mismatch: no residual
  if (full > tk.edtl) {
    *flags = respflag::kOverflow;
    *count = full - tk.edtl;
  } else if (full < tk.edtl) {
    *flags = respflag::kUnderflow;
    *count = tk.edtl - full;
  }
}

void IscsiConnection::send_data_in(Task& tk) {
  const scsi::Command& c = tk.cmd;
  const uint32_t total = std::min(c.xfer_len, tk.edtl);
  const uint32_t seg = std::max<uint32_t>(512, params_.initiator_mrdsl);
  const uint32_t burst = std::max<uint32_t>(seg, params_.max_burst);
  uint8_t rflags;
  uint32_t rcount;
  residual(tk, &rflags, &rcount);
  // Size the header slots first: queued sends point into them, so the vector must
  // not reallocate while this loop queues PDUs.
  size_t pdus = 0;
  for (uint32_t o = 0; o < total;) {
    const uint32_t be = std::min(total, (o / burst + 1) * burst);
    o += std::min(seg, be - o);
    ++pdus;
  }
  if (tk.hdrs.size() < pdus) tk.hdrs.resize(pdus);
  uint32_t offset = 0;
  size_t i = 0;
  while (offset < total) {
    const uint32_t burst_end = std::min(total, (offset / burst + 1) * burst);
    const uint32_t len = std::min(seg, burst_end - offset);
    const bool last = offset + len == total;
    Hdr& hd = tk.hdrs[i++];
    Bhs& b = hd.bhs;
    b.clear();
    b.set_opcode(op::kDataIn);
    uint8_t f = 0;
    if (offset + len == burst_end) f |= kFinal;
    if (last) f |= kFinal | respflag::kStatus | rflags;
    b.set_flags(f);
    if (last) b.b[off::kStatus] = static_cast<uint8_t>(c.status);
    store_be64(b.b + off::kLun, encode_lun(c.lun));
    b.set_itt(tk.itt);
    b.set_u32(off::kTtt, kReservedTag);
    fill_sns(b, last);
    if (!last) b.set_u32(off::kStatSn, 0);
    b.set_u32(off::kDataSn, tk.datain_sn++);
    b.set_u32(off::kBufferOffset, offset);
    if (last) b.set_u32(off::kResidual, rcount);
    Task* tp = &tk;
    send_pdu(hd, c.buf.data() + offset, len, last ? std::function<void()>([this, tp] { release(*tp); }) : nullptr);
    offset += len;
  }
}

void IscsiConnection::send_response(Task& tk) {
  const scsi::Command& c = tk.cmd;
  uint8_t rflags;
  uint32_t rcount;
  residual(tk, &rflags, &rcount);
  if (tk.hdrs.size() < 2) tk.hdrs.resize(2);  // slot 0: the header; slot 1: room for the sense
  Hdr& hd = tk.hdrs[0];
  Bhs& b = hd.bhs;
  b.clear();
  b.set_opcode(op::kScsiResp);
  b.set_flags(kFinal | rflags);
  b.b[off::kResponse] = 0;
  b.b[off::kStatus] = static_cast<uint8_t>(c.status);
  b.set_itt(tk.itt);
  fill_sns(b, true);
  b.set_u32(off::kExpDataSn, tk.datain_sn);
  b.set_u32(off::kResidual, rcount);
  uint32_t len = 0;
  if (c.status == scsi::Status::kCheckCondition && c.sense_len) {
    // Data segment: SenseLength (2 bytes) + sense data. Built in the slot's second half.
    uint8_t* p = reinterpret_cast<uint8_t*>(&tk.hdrs[1]);
    static_assert(sizeof(Hdr) >= 2 + sizeof(c.sense), "sense fits a slot");
    store_be16(p, c.sense_len);
    std::memcpy(p + 2, c.sense, c.sense_len);
    len = 2u + c.sense_len;
    Task* tp = &tk;
    send_pdu(hd, p, len, [this, tp] { release(*tp); });
    return;
  }
  Task* tp = &tk;
  send_pdu(hd, nullptr, 0, [this, tp] { release(*tp); });
}

}  // namespace castor::iscsi
