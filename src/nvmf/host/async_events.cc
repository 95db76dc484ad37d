// What the host's controller (controller.h) learns after connecting: Async Event
// Requests kept outstanding, the ANA log page read at each connection and on every ANA
// change notice (this path's ANA state), and Identify Namespace again on a
// namespace-attribute notice or on demand (reidentify), adopting a namespace that grew.

#include <chrono>
#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

#include "nvmf/codec/ana_log.h"
#include "nvmf/host/controller.h"

namespace castor::nvmf::host {

// ---------------------------------------------------------------- namespace size

void Controller::adopt_size(uint64_t nsze) {
  const uint64_t old = nlbas_.load(std::memory_order_relaxed);
  if (nsze <= old) return;
  nlbas_.store(nsze, std::memory_order_release);
  spdlog::info("nvmf host {}: namespace {} of {} grew from {} to {} blocks", addr_.text, o_.nsid, subnqn_, old,
               nsze);
  if (on_grow_) on_grow_(nsze);
}

void Controller::identify_ns(std::function<void(Result<uint64_t>)> done) {
  if (state_ != ControllerState::kLive || !admin_) {
    return done(make_error(Errc::kUnavailable, "the controller of {} at {} is {}", subnqn_, addr_.text,
                           controller_state_name(state_.load())));
  }
  auto buf = std::make_shared<std::vector<uint8_t>>(4096);
  Sqe ns{};
  ns.opcode = admin_op::kIdentify;
  ns.nsid = o_.nsid;
  ns.cdw10 = cns::kNamespace;
  const uint64_t gen = gen_;
  // Straight on the queue pair, not admin_cmd(): `done` must run even if the
  // connection closes first (its commands then complete with status 0xFFFF).
  int cid = admin_->submit(ns, {}, *buf, [this, gen, buf, done](const Cqe& c) {
    if (c.status == 0xffff || gen != gen_) {
      return done(make_error(Errc::kUnavailable, "the controller of {} reset during Identify", subnqn_));
    }
    if (c.status != 0) {
      return done(make_error(Errc::kIoError, "Identify Namespace {} of {} failed (status 0x{:04x})", o_.nsid,
                             subnqn_, c.status));
    }
    IdentifyNamespace in;
    std::memcpy(&in, buf->data(), sizeof(in));
    const uint8_t lbads = in.lbaf[in.flbas & 0xf].lbads;
    if (lbads < 9 || lbads > 16 || (1u << lbads) != lba_size_ || std::memcmp(nguid_, in.nguid, 16) != 0) {
      return done(make_error(Errc::kIoError, "namespace {} of {} changed its format or NGUID", o_.nsid, subnqn_));
    }
    if (in.nsze < nlbas_.load(std::memory_order_relaxed)) {
      return done(make_error(Errc::kIoError, "namespace {} of {} shrank from {} to {} blocks", o_.nsid, subnqn_,
                             nlbas_.load(), in.nsze));
    }
    adopt_size(in.nsze);
    done(nlbas_.load(std::memory_order_relaxed));
  });
  if (cid < 0) done(make_error(Errc::kUnavailable, "cannot submit Identify to {} (admin queue full or closed)", subnqn_));
}

Result<uint64_t> Controller::reidentify() {
  auto p = std::make_shared<std::promise<Result<uint64_t>>>();
  auto f = p->get_future();
  home_.send([this, p] { identify_ns([p](Result<uint64_t> r) { p->set_value(std::move(r)); }); });
  const uint64_t wait_ms = std::max<uint64_t>(o_.io_timeout_ms, 1000);
  if (f.wait_for(std::chrono::milliseconds(wait_ms)) != std::future_status::ready) {
    return make_error(Errc::kTimedOut, "Identify Namespace of {} not answered in {} ms", subnqn_, wait_ms);
  }
  return f.get();
}

// ---------------------------------------------------------------- asynchronous events, ANA

void Controller::enable_events(uint64_t gen) {
  Sqe sf{};
  sf.opcode = admin_op::kSetFeatures;
  sf.cdw10 = feature::kAsyncEventConfig;
  sf.cdw11 = oaes_ & (kOaesNsAttr | kOaesAnaChange);  // namespace attribute and ANA change notices
  admin_cmd(sf, {}, {}, [this, gen](const Cqe& c) {
    if (c.status != 0) {
      spdlog::warn("nvmf host {}: {} refused asynchronous event configuration (status 0x{:04x})", addr_.text,
                   subnqn_, c.status);
      return;
    }
    submit_aer(gen);
  });
}

void Controller::submit_aer(uint64_t gen) {
  if (gen != gen_ || state_ != ControllerState::kLive) return;
  Sqe aer{};
  aer.opcode = admin_op::kAsyncEventRequest;
  admin_cmd(aer, {}, {}, [this, gen](const Cqe& c) {
    if (c.status != 0) return;  // aborted or refused: no more events on this connection
    events_.fetch_add(1, std::memory_order_relaxed);
    const uint32_t type = c.dw0 & 7, info = (c.dw0 >> 8) & 0xff, lid = (c.dw0 >> 16) & 0xff;
    submit_aer(gen);
    if (type == aen::kTypeNotice && info == aen::kNoticeAnaChange) return read_ana(gen);
    if (type != aen::kTypeNotice || info != aen::kNoticeNsAttrChanged) return;
    // Read (and so clear) the Changed Namespace List, then identify the namespace again.
    auto page = std::make_shared<std::vector<uint8_t>>(4096);
    Sqe gl{};
    gl.opcode = admin_op::kGetLogPage;
    gl.nsid = 0xffffffff;
    gl.cdw10 = lid | (1023u << 16);  // 1024 dwords
    admin_cmd(gl, {}, *page, [this, page](const Cqe&) {
      identify_ns([this](Result<uint64_t> r) {
        if (!r) spdlog::warn("nvmf host {}: after a namespace notice: {}", addr_.text, r.status().to_string());
      });
    });
  });
}

void Controller::read_ana(uint64_t gen) {
  if (gen != gen_) return;
  auto page = std::make_shared<std::vector<uint8_t>>(4096);
  Sqe gl{};
  gl.opcode = admin_op::kGetLogPage;
  gl.nsid = 0xffffffff;
  gl.cdw10 = log_id::kAna | (1023u << 16);  // 1024 dwords
  admin_cmd(gl, {}, *page, [this, gen, page](const Cqe& c) {
    if (gen != gen_) return;
    if (c.status != 0) {
      spdlog::warn("nvmf host {}: {} refused the ANA log page (status 0x{:04x})", addr_.text, subnqn_, c.status);
      return;
    }
    auto st = ana_state_of(*page, o_.nsid);
    if (!st) {
      spdlog::warn("nvmf host {}: {}: {}", addr_.text, subnqn_, st.status().to_string());
      return;
    }
    const auto prev = static_cast<AnaState>(ana_.exchange(static_cast<uint8_t>(*st), std::memory_order_acq_rel));
    if (prev != *st) {
      spdlog::info("nvmf host {}: path to {} is {} (was {})", addr_.text, subnqn_, ana_state_name(*st),
                   ana_state_name(prev));
    }
  });
}

}  // namespace castor::nvmf::host
