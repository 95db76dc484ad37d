// The host's controller (controller.h): connecting it (TCP, ICReq, Connect, CC.EN and
// CSTS.RDY, Number of Queues, Identify Controller and Namespace, then Connect on an I/O
// queue per reactor, under a set-up watchdog), keep-alive, failure and reset, reconnects
// with back-off, loss after ctrl_loss_timeout_ms, and shutdown.

#include "nvmf/host/controller.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/clock.h"

namespace castor::nvmf {

const char* controller_state_name(ControllerState s) {
  switch (s) {
    case ControllerState::kConnecting: return "connecting";
    case ControllerState::kLive: return "live";
    case ControllerState::kResetting: return "resetting";
    case ControllerState::kLost: return "lost";
    case ControllerState::kStopped: return "stopped";
  }
  return "?";
}

namespace host {

// ---------------------------------------------------------------- connecting

Status Controller::connect_first() {
  std::promise<Status> p;
  auto f = p.get_future();
  home_.send([this, &p] {
    first_done_ = [&p](Status st) { p.set_value(std::move(st)); };
    attempt();
  });
  return f.get();
}

void Controller::connect_later(const Controller& like) {
  lba_size_ = like.lba_size_;
  nlbas_.store(like.num_blocks(), std::memory_order_release);
  max_xfer_blocks_ = like.max_xfer_blocks_;
  oncs_ = like.oncs_;
  vwc_ = like.vwc_;
  std::memcpy(nguid_, like.nguid_, sizeof(nguid_));
  std::promise<void> p;
  home_.send([this, &p] {
    first_ = false;
    state_ = ControllerState::kResetting;
    lost_at_ns_ = mono_ns();
    delay_ns_ = o_.reconnect_delay_ms * kMs;
    retry_timer_ = home_.add_timer(delay_ns_, [this] {
      retry_timer_.reset();
      if (state_ == ControllerState::kResetting) attempt();
    });
    p.set_value();
  });
  p.get_future().wait();
}

void Controller::attempt() {
  const uint64_t gen = ++gen_;
  queues_ready_ = 0;
  if (!first_) state_ = ControllerState::kResetting;
  // A watchdog over the whole sequence: a target that accepts but never answers must
  // not stall the reconnect loop.
  watchdog_ = home_.add_timer(std::max<uint64_t>(o_.connect_timeout_ms, 1000) * 3 * kMs, [this, gen] {
    watchdog_.reset();
    fail(gen, "controller set-up timed out");
  });
  admin_conn_.start(addr_, o_.connect_timeout_ms * kMs, [this, gen](Result<int> fd) {
    if (gen != gen_) {
      if (fd) ::close(*fd);
      return;
    }
    if (!fd) return fail(gen, fd.status().message());
    HostQpairOptions qo;
    qo.hdgst = o_.hdgst;
    qo.ddgst = o_.ddgst;
    qo.queue_entries = 32;
    admin_ = std::make_unique<HostQpair>(
        home_, *fd, qo,
        [this, gen](bool ok, std::string) {
          if (!ok || gen != gen_) return;
          ConnectCmd cc{};
          cc.opcode = admin_op::kFabrics;
          cc.fctype = fctype::kConnect;
          cc.qid = 0;
          cc.sqsize = 31;
          cc.kato = o_.keep_alive_ms;
          cdata_ = ConnectData{};
          cdata_.cntlid = 0xffff;
          std::strncpy(cdata_.subnqn, subnqn_.c_str(), sizeof(cdata_.subnqn) - 1);
          std::strncpy(cdata_.hostnqn, o_.hostnqn.c_str(), sizeof(cdata_.hostnqn) - 1);
          std::memcpy(cdata_.hostid, host_id_.bytes.data(), sizeof(cdata_.hostid));
          Sqe s;
          std::memcpy(&s, &cc, sizeof(s));
          admin_cmd(s, {reinterpret_cast<const uint8_t*>(&cdata_), sizeof(cdata_)}, {}, [this, gen](const Cqe& c) {
            if (c.status != 0) {
              const uint16_t sc = (c.status >> 1) & 0xff, sct = (c.status >> 9) & 7;
              if (sct == 1 && sc == sc::kConnectInvalidHost) {
                return fail(gen, fmt::format("host {} is not allowed to connect to {}", o_.hostnqn, subnqn_));
              }
              return fail(gen, fmt::format("admin queue connect refused (status 0x{:04x})", c.status));
            }
            cntlid_ = static_cast<uint16_t>(c.dw0);
            after_connect(gen);
          });
        },
        [this, gen](std::string why) {
          ++pending_reaps_;
          home_.defer([this] {
            --pending_reaps_;
            reap_admin();
          });
          fail(gen, "admin queue closed: " + why);
        });
    admin_->start();
  });
}

void Controller::admin_cmd(Sqe sqe, std::span<const uint8_t> out, std::span<uint8_t> in, CqeFn fn) {
  const uint64_t gen = gen_;
  if (!admin_ || admin_->submit(sqe, out, in, [this, gen, fn = std::move(fn)](const Cqe& c) {
        if (gen != gen_) return;
        if (c.status == 0xffff) return;  // the close handler reports
        fn(c);
      }) < 0) {
    fail(gen, "cannot submit an admin command");
  }
}

void Controller::after_connect(uint64_t gen) {
  PropertyCmd p{};
  p.opcode = admin_op::kFabrics;
  p.fctype = fctype::kPropertySet;
  p.ofst = prop::kCc;
  p.value = (6u << 16) | (4u << 20) | 1u;  // IOSQES 64 B, IOCQES 16 B, EN
  Sqe s;
  std::memcpy(&s, &p, sizeof(s));
  admin_cmd(s, {}, {}, [this, gen](const Cqe& c) {
    if (c.status != 0) return fail(gen, "enabling the controller failed");
    wait_ready(gen, 0);
  });
}

void Controller::wait_ready(uint64_t gen, int tries) {
  PropertyCmd p{};
  p.opcode = admin_op::kFabrics;
  p.fctype = fctype::kPropertyGet;
  p.ofst = prop::kCsts;
  Sqe s;
  std::memcpy(&s, &p, sizeof(s));
  admin_cmd(s, {}, {}, [this, gen, tries](const Cqe& c) {
    if (c.status != 0) return fail(gen, "reading CSTS failed");
    if (c.dw0 & 2) return fail(gen, "controller fatal status (CSTS.CFS)");
    if (!(c.dw0 & 1)) {
      if (tries >= 100) return fail(gen, "controller did not become ready");
      ready_timer_ = home_.add_timer(10 * kMs, [this, gen, tries] {
        ready_timer_.reset();
        if (gen == gen_) wait_ready(gen, tries + 1);
      });
      return;
    }
    Sqe nq{};
    nq.opcode = admin_op::kSetFeatures;
    nq.cdw10 = feature::kNumberOfQueues;
    const uint32_t n = static_cast<uint32_t>(queues_.size() - 1);
    nq.cdw11 = n | (n << 16);
    admin_cmd(nq, {}, {}, [this, gen](const Cqe& c) {
      if (c.status != 0) return fail(gen, "Set Features (number of queues) failed");
      const uint32_t got = std::min(c.dw0 & 0xffff, c.dw0 >> 16) + 1;
      if (got < queues_.size()) {
        return fail(gen, fmt::format("the target allows {} I/O queues, {} needed", got, queues_.size()));
      }
      identify(gen);
    });
  });
}

void Controller::identify(uint64_t gen) {
  Sqe id{};
  id.opcode = admin_op::kIdentify;
  id.cdw10 = cns::kController;
  admin_cmd(id, {}, idbuf_, [this, gen](const Cqe& c) {
    if (c.status != 0) return fail(gen, "Identify Controller failed");
    IdentifyController ic;
    std::memcpy(&ic, idbuf_.data(), sizeof(ic));
    Sqe ns{};
    ns.opcode = admin_op::kIdentify;
    ns.nsid = o_.nsid;
    ns.cdw10 = cns::kNamespace;
    const uint8_t mdts = ic.mdts;
    const uint16_t oncs = ic.oncs;
    const bool vwc = ic.vwc & 1;
    oaes_ = ic.oaes;
    ana_reporting_ = ic.cmic & kCmicAna;
    admin_cmd(ns, {}, idbuf_, [this, gen, mdts, oncs, vwc](const Cqe& c) {
      if (c.status != 0) return fail(gen, fmt::format("Identify Namespace {} failed", o_.nsid));
      IdentifyNamespace in;
      std::memcpy(&in, idbuf_.data(), sizeof(in));
      const uint8_t lbads = in.lbaf[in.flbas & 0xf].lbads;
      if (in.nsze == 0 || lbads < 9 || lbads > 16) {
        return fail(gen, fmt::format("namespace {} does not exist or has an unusable format", o_.nsid));
      }
      const uint32_t lba = 1u << lbads;
      if (first_) {
        lba_size_ = lba;
        nlbas_ = in.nsze;
        // MDTS is in units of the minimum page size (4 KiB); 0 means no limit. Cap a
        // command at 1 MiB either way so one request cannot hog the queue.
        uint64_t max_bytes = mdts ? (uint64_t{4096} << mdts) : (1u << 20);
        max_bytes = std::min<uint64_t>(max_bytes, 1u << 20);
        max_xfer_blocks_ = static_cast<uint32_t>(std::max<uint64_t>(max_bytes / lba, 1));
        oncs_ = oncs;
        vwc_ = vwc;
        std::memcpy(nguid_, in.nguid, 16);
      } else if (lba != lba_size_ || in.nsze < nlbas_ || std::memcmp(nguid_, in.nguid, 16) != 0) {
        // A different namespace answers at this address now: never write to it.
        lost_at_ns_ = 1;  // make fail() declare the controller lost
        return fail(gen, "the namespace changed (size, format or NGUID) across the reconnect");
      } else {
        adopt_size(in.nsze);  // it may have grown meanwhile
      }
      for (size_t i = 0; i < queues_.size(); ++i) {
        IoQueue* q = queues_[i].get();
        const uint16_t cntlid = cntlid_;
        g_.at(i).send([q, gen, cntlid] { q->connect(gen, cntlid); });
      }
    });
  });
}

void Controller::queue_ready(uint64_t gen) {
  if (gen != gen_) return;
  if (++queues_ready_ < queues_.size()) return;
  if (watchdog_) {
    home_.cancel_timer(*watchdog_);
    watchdog_.reset();
  }
  if (!first_) {
    reconnects_.fetch_add(1);
    spdlog::info("nvmf host {}: controller {} of {} reconnected", addr_.text, cntlid_, subnqn_);
  }
  state_ = ControllerState::kLive;
  lost_at_ns_ = 0;
  delay_ns_ = o_.reconnect_delay_ms * kMs;
  ka_outstanding_ = false;
  keep_alive();
  if (ana_reporting_) read_ana(gen);
  if (oaes_ & (kOaesNsAttr | kOaesAnaChange)) enable_events(gen);
  if (first_) {
    first_ = false;
    auto d = std::move(first_done_);
    d(Status::ok());
  }
}

// ---------------------------------------------------------------- keep-alive, failure, shutdown

void Controller::keep_alive() {
  const uint64_t gen = gen_;
  ka_timer_ = home_.add_timer(uint64_t{o_.keep_alive_ms} * kMs / 2, [this, gen] {
    ka_timer_.reset();
    if (gen != gen_ || state_ != ControllerState::kLive) return;
    const uint64_t now = mono_ns();
    if (ka_outstanding_) {
      if (now - ka_sent_ns_ >= uint64_t{o_.keep_alive_ms} * kMs) {
        return fail(gen, "keep-alive not answered");
      }
    } else {
      Sqe ka{};
      ka.opcode = admin_op::kKeepAlive;
      ka_outstanding_ = true;
      ka_sent_ns_ = now;
      admin_cmd(ka, {}, {}, [this, gen](const Cqe& c) {
        ka_outstanding_ = false;
        if (c.status != 0) fail(gen, "keep-alive refused");
      });
    }
    keep_alive();
  });
}

void Controller::teardown(const std::string& why) {
  for (auto* t : {&ka_timer_, &retry_timer_, &watchdog_, &ready_timer_}) {
    if (*t) {
      home_.cancel_timer(**t);
      t->reset();
    }
  }
  admin_conn_.cancel();
  if (admin_) {
    admin_->close(why);
    dying_.push_back(std::move(admin_));
  }
  reap_admin();
  const uint64_t gen = gen_;
  for (size_t i = 0; i < queues_.size(); ++i) {
    IoQueue* q = queues_[i].get();
    g_.at(i).send([q, gen, why] { q->disconnect(gen, why); });
  }
}

void Controller::fail(uint64_t gen, const std::string& why) {
  if (gen != gen_ || state_ == ControllerState::kStopped || state_ == ControllerState::kLost) return;
  ++gen_;  // everything of the failed attempt is now stale
  set_error(why);
  teardown(why);
  if (first_) {
    state_ = ControllerState::kLost;
    auto d = std::move(first_done_);
    const bool refused = why.find("not allowed") != std::string::npos;
    d(make_error(refused ? Errc::kInvalidArgument : Errc::kIoError, "cannot attach {} at {}: {}", subnqn_,
                 addr_.text, why));
    return;
  }
  const uint64_t now = mono_ns();
  if (state_ == ControllerState::kLive) {
    resets_.fetch_add(1);
    spdlog::warn("nvmf host {}: controller of {} failed: {}; reconnecting", addr_.text, subnqn_, why);
  }
  if (lost_at_ns_ == 0) lost_at_ns_ = now;
  if (lost_at_ns_ == 1 || now - lost_at_ns_ >= o_.ctrl_loss_timeout_ms * kMs) {
    state_ = ControllerState::kLost;
    spdlog::error("nvmf host {}: controller of {} lost ({}); failing its I/O", addr_.text, subnqn_, why);
    for (size_t i = 0; i < queues_.size(); ++i) {
      IoQueue* q = queues_[i].get();
      g_.at(i).send([q] { q->declare_lost(); });
    }
    return;
  }
  state_ = ControllerState::kResetting;
  const uint64_t delay = delay_ns_ ? delay_ns_ : o_.reconnect_delay_ms * kMs;
  delay_ns_ = std::min(delay * 2, o_.reconnect_delay_max_ms * kMs);
  retry_timer_ = home_.add_timer(delay, [this] {
    retry_timer_.reset();
    if (state_ == ControllerState::kResetting) attempt();
  });
}

void Controller::shutdown() {
  home_.send([this] {
    state_ = ControllerState::kStopped;
    ++gen_;
    teardown("controller stopped");
  });
  for (size_t i = 0; i < queues_.size(); ++i) {
    IoQueue* q = queues_[i].get();
    g_.run_on(i, [q](reactor::Reactor&) { q->stop(); });
  }
  // Wait until every connection (and connect attempt) is gone.
  for (;;) {
    bool idle = true;
    g_.run_on(0, [&](reactor::Reactor&) { idle = !admin_ && dying_.empty() && pending_reaps_ == 0 && !admin_conn_.busy(); });
    for (size_t i = 0; i < queues_.size() && idle; ++i) {
      IoQueue* q = queues_[i].get();
      g_.run_on(i, [&](reactor::Reactor&) { idle = q->idle(); });
    }
    if (idle) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace host
}  // namespace castor::nvmf
