// The nvmf bdev module (nvmf_bdev.h): the bdev over one controller per path, its
// channels, creating it from a URI (the first path must connect, the others must lead to
// the same namespace), and its status. Where the rest lives:
//
//   options.cc       the URI: host options, host identifier, path addresses
//   controller.cc    a controller: connect, keep-alive, reset, reconnect, loss
//   async_events.cc  AERs, the ANA log page, namespace growth
//   reservations.cc  the reservation commands
//   io_queue.cc      a controller's I/O queue on one reactor: requests as commands
//   multipath.cc     a channel's routing between paths, failover, parked requests
//   qpair.cc         one NVMe/TCP connection (HostQpair)

#include "nvmf/host/nvmf_bdev.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "nvmf/codec/ana_log.h"
#include "nvmf/host/controller.h"
#include "nvmf/host/multipath.h"
#include "nvmf/host/options.h"

namespace castor::nvmf {

namespace host {
namespace {

// A remote namespace through one controller per path (the first is the URI's address,
// the others its `paths`); all paths lead to one namespace (same NGUID and format).
class NvmfBdev final : public bdev::Bdev {
 public:
  NvmfBdev(const std::string& name, std::vector<std::shared_ptr<Controller>> cs)
      : Bdev(name, "nvmf", cs.at(0)->block_size(), cs.at(0)->num_blocks()), cs_(std::move(cs)) {
    Controller& c = *cs_[0];
    uint32_t ops = bdev::io_type_bit(IoType::kRead) | bdev::io_type_bit(IoType::kWrite) |
                   bdev::io_type_bit(IoType::kReset) | bdev::io_type_bit(IoType::kFlush);
    if (c.oncs() & (1u << 2)) ops |= bdev::io_type_bit(IoType::kUnmap);
    if (c.oncs() & (1u << 3)) ops |= bdev::io_type_bit(IoType::kWriteZeroes);
    set_supported_ops(ops);
    // FUA is the Write / Write Zeroes command's own bit: the target makes the data
    // durable before it answers.
    set_fua_ops(bdev::io_type_bit(IoType::kWrite) | bdev::io_type_bit(IoType::kWriteZeroes));
    Uuid u;
    bool any = false;
    for (int i = 0; i < 16; ++i) any |= c.nguid()[i] != 0;
    if (any) {
      std::memcpy(&u, c.nguid(), std::min(sizeof(u), size_t{16}));
      set_uuid(u);
    }
    for (auto& p : cs_) {
      p->set_on_grow([this](uint64_t blocks) {
        if (blocks > num_blocks()) set_num_blocks(blocks);
      });
      if (p->num_blocks() > num_blocks()) set_num_blocks(p->num_blocks());  // grew before the hook
    }
  }
  // The channels go before the controllers: each one points at its reactor's IoQueues,
  // which the controllers own (and the last references to them may be cs_).
  ~NvmfBdev() override {
    for (auto& c : cs_) c->shutdown();
    destroy_channels();
  }
  // The first path's controller (status, host identifier).
  Controller& controller() { return *cs_[0]; }
  const std::vector<std::shared_ptr<Controller>>& paths() const { return cs_; }
  Result<uint64_t> refresh_size() override {
    if (auto n = live_path().reidentify(); !n) return n.status();
    return num_blocks();
  }
  // The remote namespace's reservations, not this bdev's own table (which only a
  // target exporting this bdev would use). Sent on a live path: every path connects as
  // the same host, so the target holds the reservation for all of them.
  Status reservation(const bdev::HostId& self, const bdev::ReservationCommand& cmd,
                     bdev::ReservationReport* report) override {
    if (!(self == controller().host_id())) {
      return make_error(Errc::kInvalidArgument,
                        "nvmf bdev '{}' connects as host {}, not {}: reservations are taken as the connection's host",
                        name(), controller().host_id().to_string(), self.to_string());
    }
    return live_path().reservation(cmd, report);
  }

 protected:
  std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor& r) override {
    std::vector<NvmfChannel::Path> paths;
    for (auto& c : cs_) paths.push_back({&c->queue(r.id()), c.get()});
    return std::make_unique<NvmfChannel>(*this, r, std::move(paths), cs_[0]->options().ctrl_loss_timeout_ms * kMs);
  }

 private:
  // The first live path whose ANA state allows I/O, else the first live one, else the first.
  Controller& live_path() {
    Controller* live = nullptr;
    for (auto& c : cs_) {
      if (!c->live()) continue;
      if (ana_accessible(c->ana_state())) return *c;
      if (!live) live = c.get();
    }
    return live ? *live : *cs_[0];
  }

  std::vector<std::shared_ptr<Controller>> cs_;
};

class NvmfModule final : public bdev::BdevModule {
 public:
  explicit NvmfModule(NvmfHostOptions defaults) : defaults_(std::move(defaults)) {}
  const char* scheme() const override { return "nvmf"; }
  Result<std::string> name_for(const Uri& uri) const override {
    if (auto n = uri.get("name"); !n.empty()) return n;
    std::string nqn = uri.name_from_path();
    if (nqn.empty()) return make_error(Errc::kInvalidArgument, "URI '{}' names no subsystem NQN", uri.text);
    auto c = nqn.rfind(':');
    return c == std::string::npos ? nqn : nqn.substr(c + 1);
  }
  Result<std::unique_ptr<bdev::Bdev>> create(const Uri& uri, const std::string& name,
                                             bdev::BdevRegistry& registry) override {
    auto o = NvmfHostOptions::from_uri(uri, defaults_);
    if (!o) return o.status();
    if (uri.host.empty()) return make_error(Errc::kInvalidArgument, "nvmf URI '{}' has no host", uri.text);
    std::string nqn = uri.name_from_path();
    if (nqn.empty() || nqn.size() > 223) {
      return make_error(Errc::kInvalidArgument, "nvmf URI '{}': the path must be a subsystem NQN", uri.text);
    }
    if (registry.reactors().size() > 0xfffe) return make_error(Errc::kInvalidArgument, "too many reactors");
    auto addrs = path_addresses(uri);
    if (!addrs) return addrs.status();
    // The first path must connect now; another that does not (its engine does not serve
    // the subsystem yet) keeps trying in the background. A path that connects must lead
    // to the first one's namespace.
    std::vector<std::shared_ptr<Controller>> cs;
    auto undo = [&cs](Status st) {
      for (auto& c : cs) c->shutdown();
      return st;
    };
    for (const auto& addr : *addrs) {
      cs.push_back(std::make_shared<Controller>(registry.reactors(), addr, nqn, *o));
      if (auto st = cs.back()->connect_first(); !st) {
        if (cs.size() == 1) return undo(st);
        spdlog::warn("nvmf host: path {} of {} does not connect yet ({}); it keeps trying", addr.text, nqn,
                     st.message());
        cs.back()->connect_later(*cs.front());
        continue;
      }
      const Controller& first = *cs.front();
      const Controller& c = *cs.back();
      if (c.block_size() != first.block_size() || std::memcmp(c.nguid(), first.nguid(), 16) != 0) {
        return undo(make_error(Errc::kInvalidArgument,
                               "nvmf URI '{}': the path at {} leads to another namespace than the one at {} "
                               "(block size or NGUID differ)",
                               uri.text, c.addr().text, first.addr().text));
      }
    }
    return std::unique_ptr<bdev::Bdev>(std::make_unique<NvmfBdev>(name, std::move(cs)));
  }

 private:
  NvmfHostOptions defaults_;
};

}  // namespace
}  // namespace host

using host::NvmfBdev;
using host::NvmfModule;

std::unique_ptr<bdev::BdevModule> make_nvmf_bdev_module(NvmfHostOptions defaults) {
  return std::make_unique<NvmfModule>(std::move(defaults));
}

Result<NvmfBdevStatus> nvmf_bdev_status(bdev::Bdev& b) {
  auto* nb = dynamic_cast<NvmfBdev*>(&b);
  if (!nb) return make_error(Errc::kInvalidArgument, "bdev '{}' is not an nvmf bdev", b.name());
  NvmfBdevStatus st = nb->controller().status();
  for (const auto& c : nb->paths()) {
    st.paths.push_back({c->addr().text, c->status().state, ana_state_name(c->ana_state())});
  }
  return st;
}

Result<bdev::HostId> nvmf_bdev_host_id(bdev::Bdev& b) {
  auto* nb = dynamic_cast<NvmfBdev*>(&b);
  if (!nb) return make_error(Errc::kInvalidArgument, "bdev '{}' is not an nvmf bdev", b.name());
  return nb->controller().host_id();
}

}  // namespace castor::nvmf
