// The admin commands of a connected target controller (qpair.h): Identify (its data
// built by identify.cc), Get Log Page (error, SMART, firmware, changed namespaces,
// command effects, discovery, ANA), Get/Set Features, Keep Alive, Abort, Async Event
// Request; and the asynchronous events those requests carry (namespace attribute and
// ANA change notices). Fabrics commands go to controller.cc.

#include <algorithm>
#include <cstring>

#include "common/clock.h"
#include "frontend/block_commands.h"
#include "nvmf/codec/ana_log.h"
#include "nvmf/target/qpair.h"

namespace castor::nvmf {

// ---------------------------------------------------------------- dispatch, Identify

void Qpair::admin(Cmd* c) {
  const Sqe& s = c->sqe;
  Controller& ctrl = *ctrl_;
  if (s.opcode == admin_op::kFabrics) return fabrics(c);
  // Like Linux's nvmet: a controller that is not enabled and ready runs only Fabrics
  // commands (a discovery controller answers regardless).
  if (!ctrl.discovery && !ctrl.ready.load(std::memory_order_relaxed)) {
    return finish(c, generic(sc::kCommandSequenceError));
  }
  switch (s.opcode) {
    case admin_op::kIdentify: return identify(c);
    case admin_op::kGetLogPage: return get_log_page(c);
    case admin_op::kSetFeatures:
    case admin_op::kGetFeatures: return features(c);
    case admin_op::kKeepAlive:
      ctrl.last_keepalive_ns = mono_ns();
      return finish(c, kSuccess);
    case admin_op::kAsyncEventRequest:
      if (ctrl.aers.size() > 3) return finish(c, specific(sc::kAsyncEventLimitExceeded));
      ctrl.aers.push_back(c->slot);  // completed when an event happens or the queue closes
      if (!retained_events_.empty()) {
        const uint32_t dw0 = retained_events_.front();
        retained_events_.erase(retained_events_.begin());
        post_event(dw0);
      }
      return;
    case admin_op::kAbort:
      return finish(c, kSuccess, 1);  // bit 0: the command was not aborted
    default: return finish(c, generic(sc::kInvalidOpcode));
  }
}

ControllerIdentity Qpair::identity() const {
  ControllerIdentity id;
  id.subnqn = ctrl_->subnqn;
  id.serial = ctrl_->serial;
  id.cntlid = ctrl_->cntlid;
  id.discovery = ctrl_->discovery;
  id.mdts = t_.opts_.mdts;
  id.maxcmd = t_.opts_.queue_entries;
  id.incapsule = t_.opts_.incapsule;
  return id;
}

void Qpair::identify(Cmd* c) {
  const uint8_t cns = c->sqe.cdw10 & 0xff;
  const uint32_t nsid = c->sqe.nsid;
  if (cns == cns::kController) {
    IdentifyController ic;
    build_identify_controller(identity(), &ic);
    return reply_data(c, &ic, sizeof(ic));
  }
  if (ctrl_->discovery) return finish(c, generic(sc::kInvalidField));
  if (cns == cns::kNamespace) {
    IdentifyNamespace in;
    std::memset(&in, 0, sizeof(in));
    if (const NsRef* n = find_ns(*ns_, nsid)) build_identify_namespace(ns_identity(*n), &in);
    else if (nsid == 0 || nsid == 0xffffffff) return finish(c, generic(sc::kInvalidNamespace));
    return reply_data(c, &in, sizeof(in));
  }
  if (cns == cns::kActiveNsList) {
    std::vector<uint32_t> ids;
    for (const auto& n : *ns_) ids.push_back(n.nsid);
    auto l = build_active_ns_list(ids, nsid);
    return reply_data(c, l.data(), static_cast<uint32_t>(l.size()));
  }
  if (cns == cns::kNsDescriptors) {
    const NsRef* n = find_ns(*ns_, nsid);
    if (!n) return finish(c, generic(sc::kInvalidNamespace));
    auto d = build_ns_descriptors(ns_identity(*n));
    return reply_data(c, d.data(), static_cast<uint32_t>(d.size()));
  }
  return finish(c, generic(sc::kInvalidField));
}

NamespaceIdentity Qpair::ns_identity(const NsRef& n) {
  NamespaceIdentity id;
  id.nsid = n.nsid;
  id.num_blocks = n.bdev->num_blocks();
  id.block_size = n.bdev->block_size();
  id.uuid = n.bdev->uuid();
  // Deallocate (DSM) is advisory in NVMe.
  id.deallocated_reads_zeroes =
      frontend::advertise(frontend::caps_of(*n.bdev), false, frontend::Discard::kAdvisory).discard_zeroes;
  return id;
}

// ---------------------------------------------------------------- log pages

void Qpair::get_log_page(Cmd* c) {
  const Sqe& s = c->sqe;
  const uint8_t lid = s.cdw10 & 0xff;
  const uint64_t numd = ((uint64_t{s.cdw11 & 0xffff} << 16) | (s.cdw10 >> 16)) + 1;
  const uint64_t len = numd * 4;
  const uint64_t off = s.cdw12 | (uint64_t{s.cdw13} << 32);
  std::vector<uint8_t> page;
  switch (lid) {
    case log_id::kError: page.assign(64, 0); break;
    case log_id::kSmart: {
      page.assign(512, 0);
      uint16_t kelvin = 273 + 30;
      std::memcpy(page.data() + 1, &kelvin, 2);  // composite temperature
      page[3] = 100;                            // available spare
      page[4] = 10;                             // spare threshold
      break;
    }
    case log_id::kFirmware:
      page.assign(512, 0);
      page[0] = 1;  // active slot 1
      std::memcpy(page.data() + 8, "0.1.0   ", 8);
      break;
    case log_id::kChangedNs: {
      // Up to 1024 NSIDs; reading it clears the list (it is re-armed by the next change).
      page.assign(4096, 0);
      auto& ch = ctrl_->changed_ns;
      if (ch.size() > 1024) {
        const uint32_t overflow = 0xffffffff;
        std::memcpy(page.data(), &overflow, 4);
      } else {
        for (size_t i = 0; i < ch.size(); ++i) std::memcpy(page.data() + 4 * i, &ch[i], 4);
      }
      ch.clear();
      break;
    }
    case log_id::kCommandEffects: {
      page.assign(4096, 0);
      auto mark = [&](size_t base, uint8_t op, uint32_t bits) {
        std::memcpy(page.data() + base + 4 * op, &bits, 4);
      };
      for (uint8_t op : {admin_op::kGetLogPage, admin_op::kIdentify, admin_op::kAbort, admin_op::kSetFeatures,
                         admin_op::kGetFeatures, admin_op::kAsyncEventRequest, admin_op::kKeepAlive}) {
        mark(0, op, 1);
      }
      for (uint8_t op : {io_op::kReservationRegister, io_op::kReservationReport, io_op::kReservationAcquire,
                         io_op::kReservationRelease}) {
        mark(1024, op, 1);  // CSUPP
      }
      for (uint8_t op : {io_op::kFlush, io_op::kWrite, io_op::kRead, io_op::kWriteZeroes, io_op::kDatasetManagement}) {
        mark(1024, op, op == io_op::kRead || op == io_op::kFlush ? 1 : 3);  // CSUPP (+LBCC for writes)
      }
      break;
    }
    case log_id::kDiscovery:
      if (!ctrl_->discovery) return finish(c, specific(sc::kInvalidLogPage));
      page = t_.discovery_log();
      break;
    case log_id::kAna: {
      if (!ctrl_->ana) return finish(c, specific(sc::kInvalidLogPage));
      // One group. LSP bit 0 (RGO): the group descriptors only, without NSIDs.
      AnaLogGroup g;
      g.grpid = AnaGroup::kId;
      g.chgcnt = ctrl_->ana->chgcnt.load(std::memory_order_acquire);
      g.state = static_cast<AnaState>(ctrl_->ana->state.load(std::memory_order_acquire));
      for (const auto& n : *ns_) g.nsids.push_back(n.nsid);
      std::sort(g.nsids.begin(), g.nsids.end());
      page = build_ana_log(g.chgcnt, {&g, 1}, (s.cdw10 >> 8) & 1);
      break;
    }
    default: return finish(c, specific(sc::kInvalidLogPage));
  }
  if (off > page.size()) return finish(c, generic(sc::kInvalidField));
  if (len > (1u << 20)) return finish(c, generic(sc::kInvalidField));
  std::vector<uint8_t> out(len, 0);
  std::memcpy(out.data(), page.data() + off, std::min<uint64_t>(len, page.size() - off));
  return reply_data(c, out.data(), static_cast<uint32_t>(len));
}

// ---------------------------------------------------------------- features

void Qpair::features(Cmd* c) {
  const Sqe& s = c->sqe;
  const bool set = s.opcode == admin_op::kSetFeatures;
  const uint8_t fid = s.cdw10 & 0xff;
  Controller& ctrl = *ctrl_;
  switch (fid) {
    case feature::kNumberOfQueues: {
      if (set) {
        if (ctrl.granted_io_queues) return finish(c, generic(sc::kCommandSequenceError));
        uint32_t nsq = (s.cdw11 & 0xffff) + 1, ncq = (s.cdw11 >> 16) + 1;
        if (nsq == 0x10000 || ncq == 0x10000) return finish(c, generic(sc::kInvalidField));
        ctrl.granted_io_queues = static_cast<uint16_t>(std::min<uint32_t>({nsq, ncq, t_.opts_.max_io_queues}));
      }
      uint32_t g = (ctrl.granted_io_queues ? ctrl.granted_io_queues : t_.opts_.max_io_queues) - 1u;
      return finish(c, kSuccess, g | g << 16);
    }
    case feature::kKeepAliveTimer:
      if (set) {
        ctrl.kato_ms = s.cdw11;
        ctrl.last_keepalive_ns = mono_ns();
        if (ctrl.ka_timer) r_.cancel_timer(*ctrl.ka_timer);
        ctrl.ka_timer.reset();
        arm_keepalive();
      }
      return finish(c, kSuccess, ctrl.kato_ms);
    case feature::kAsyncEventConfig:
      if (set) aec_ = s.cdw11;
      return finish(c, kSuccess, aec_);
    case feature::kVolatileWriteCache:
      if (ctrl.discovery) return finish(c, generic(sc::kInvalidField));
      return finish(c, kSuccess, 1);  // enabled; Flush makes writes durable
    case feature::kErrorRecovery:
      if (set) error_recovery_ = s.cdw11;
      return finish(c, kSuccess, error_recovery_);
    default: return finish(c, generic(sc::kInvalidField));
  }
}

// ---------------------------------------------------------------- asynchronous events

void Qpair::namespaces_changed(std::shared_ptr<const std::vector<NsRef>> snap, uint32_t nsid) {
  ns_ = std::move(snap);
  if (qid_ != 0 || !ctrl_ || closed_) return;
  auto& ch = ctrl_->changed_ns;
  if (std::find(ch.begin(), ch.end(), nsid) == ch.end()) ch.push_back(nsid);
  if (aec_ & kOaesNsAttr) post_event(aen::make(aen::kTypeNotice, aen::kNoticeNsAttrChanged, log_id::kChangedNs));
}

void Qpair::ana_changed() {
  if (qid_ != 0 || !ctrl_ || closed_) return;
  if (aec_ & kOaesAnaChange) post_event(aen::make(aen::kTypeNotice, aen::kNoticeAnaChange, log_id::kAna));
}

void Qpair::post_event(uint32_t dw0) {
  if (ctrl_->aers.empty()) {
    if (std::find(retained_events_.begin(), retained_events_.end(), dw0) == retained_events_.end()) {
      retained_events_.push_back(dw0);
    }
    return;
  }
  const uint16_t slot = ctrl_->aers.front();
  ctrl_->aers.erase(ctrl_->aers.begin());
  finish(&slots_[slot], kSuccess, dw0);
}

}  // namespace castor::nvmf
