// IscsiConnection, task management functions: ABORT TASK, ABORT TASK SET, CLEAR TASK SET,
// LOGICAL UNIT RESET, TARGET WARM RESET and TARGET COLD RESET, over the tasks of every
// connection of the session.
#include <spdlog/spdlog.h>

#include "iscsi/connection.h"

namespace castor::iscsi {

// Task management covers the whole session: ITTs are unique in a session, and a LUN
// or target reset aborts the tasks of every connection.
void IscsiConnection::task_mgmt(const Bhs& h) {
  const uint8_t fn = h.flags() & 0x7F;
  const uint64_t lun = decode_lun(h.lun_field());
  uint8_t response = tmf::kComplete;
  Bhs b;
  b.clear();
  b.set_opcode(op::kTaskMgmtResp);
  b.set_flags(kFinal);
  b.set_itt(h.itt());
  if (sess_->tmf_conn) {  // one at a time
    b.b[off::kResponse] = tmf::kRejected;
    fill_sns(b, true);
    send_owned(b, {});
    return;
  }
  uint32_t pending = 0;
  auto abort_task = [&](IscsiConnection* c, Task& tk) {
    if (tk.state == TaskState::kReceiving) {
      c->release(tk);
      return;
    }
    if (tk.state == TaskState::kExecuting && !tk.aborted) {
      tk.aborted = true;  // no response; the slot frees when its I/O ends
      tk.abort_counted = true;
      ++pending;
    }
  };
  auto each_task = [&](auto&& fn2) {
    for (size_t i = 0; i < sess_->conns.size(); ++i) {
      IscsiConnection* c = sess_->conns[i];
      for (Task& tk : c->tasks_) {
        if (tk.state != TaskState::kFree) fn2(c, tk);
      }
    }
  };
  switch (fn) {
    case tmf::kAbortTask: {
      const uint32_t ref = h.u32(off::kRefTaskTag);
      IscsiConnection* owner = nullptr;
      Task* tk = nullptr;
      each_task([&](IscsiConnection* c, Task& t) {
        if (!tk && t.itt == ref) owner = c, tk = &t;
      });
      if (!tk || tk->state == TaskState::kSending || tk->aborted) {
        response = tmf::kNoTask;
      } else {
        abort_task(owner, *tk);
      }
      break;
    }
    case tmf::kAbortTaskSet:
    case tmf::kClearTaskSet:
    case tmf::kLunReset:
      if (!dev_ || !has_lun(lun)) {
        response = tmf::kNoLun;
        break;
      }
      each_task([&](IscsiConnection* c, Task& tk) {
        if (tk.cmd.lun == lun) abort_task(c, tk);
      });
      if (fn == tmf::kLunReset) lun_reset_pending_ = true, reset_lun_ = lun;
      break;
    case tmf::kTargetWarmReset:
    case tmf::kTargetColdReset:
      // Every LU of this target node is reset (RFC 7143 §11.5.1); a cold reset then
      // ends every session with the node, this one after the response.
      if (!dev_) {
        response = tmf::kNotSupported;  // a discovery session has no target to reset
        break;
      }
      each_task(abort_task);
      target_reset_pending_ = fn;
      break;
    default: response = tmf::kNotSupported; break;
  }
  b.b[off::kResponse] = response;
  tmf_resp_ = b;
  sess_->tmf_conn = this;
  if (pending) {
    sess_->tmf_pending = pending;
    return;
  }
  finish_tmf();
}

bool IscsiConnection::has_lun(uint64_t lun) const {
  if (!dev_) return false;
  for (uint64_t l : dev_->luns()) {
    if (l == lun) return true;
  }
  return false;
}

void IscsiConnection::finish_tmf() {
  sess_->tmf_conn = nullptr;
  sess_->tmf_pending = 0;
  if (lun_reset_pending_) {
    lun_reset_pending_ = false;
    dev_->lun_reset(reset_lun_, sess_->nexus);
  }
  const uint8_t target_reset = target_reset_pending_;
  target_reset_pending_ = 0;
  if (target_reset) {
    for (uint64_t lun : dev_->luns()) dev_->lun_reset(lun, sess_->nexus);
    spdlog::warn("iscsi target {}: TARGET {} RESET by {}", login_.target_name(),
                 target_reset == tmf::kTargetColdReset ? "COLD" : "WARM", login_.initiator_name());
    if (target_reset == tmf::kTargetColdReset) {
      sess_->ending = true;  // this connection closes after the response, not before
      t_.close_sessions(login_.target_name(), id_);
    }
  }
  if (closed_ || conn_->closing()) return;
  fill_sns(tmf_resp_, true);
  send_owned(tmf_resp_, {},
             target_reset == tmf::kTargetColdReset ? "TARGET COLD RESET" : nullptr);
}

}  // namespace castor::iscsi
