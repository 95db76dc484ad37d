// The NVMe-oF/TCP target itself (target.h): listeners, accepting connections onto the
// reactors as queue pairs, stopping (closing every live queue pair), and shutting down.
// Where the rest lives:
//
//   tcp_transport.cc    a queue pair's connection (PDUs, R2T/H2C/C2H data, digests)
//   controller.cc       Connect, Property Get/Set, keep-alive, the controller registry
//   admin_cmds.cc       admin commands (Identify, Log Pages incl. ANA, Features, AER)
//   io_cmds.cc          I/O commands onto the bdevs
//   reservation_cmds.cc the reservation commands' rules
//   subsystem.cc        subsystems, namespaces, ANA state, discovery
//   identify.cc, registers.cc   Identify data and controller registers (pure)

#include <unistd.h>

#include <chrono>
#include <random>

#include <spdlog/spdlog.h>

#include "nvmf/target/qpair.h"

namespace castor::nvmf {

// Controller ids start at a random point: one subsystem served by two engines (a volume's
// nexus before and after it moves) is one multipath subsystem to a host, which refuses a
// controller whose id another of its controllers there has. Ids are unique within an
// engine; across engines a clash is unlikely, and fails only that connect (the host's
// next attempt gets the next id).
NvmfTarget::NvmfTarget(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry, TargetOptions opts)
    : reactors_(reactors), registry_(registry), opts_(opts), live_(reactors.size()) {
  next_cntlid_ = static_cast<uint16_t>(1 + std::random_device{}() % 0xffef);
}

NvmfTarget::~NvmfTarget() {
  stop();
  std::lock_guard lk(mu_);
  // The connections are closed, but bdev I/O may still be running for them (a nexus
  // holding writes until a health record is durable): each completes into its queue
  // pair, which counts it off its namespace. Wait for that; a namespace whose I/O does
  // not end is left allocated (and its bdev claimed) rather than freed under it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (auto& [n, s] : subsystems_) {
    for (auto& [id, ns] : s->namespaces) {
      if (uint64_t left = wait_inflight(*ns->inflight, deadline)) {
        spdlog::error("nvmf: {} I/O(s) of namespace {} of {} ({}) still running at target shutdown; left allocated",
                      left, id, n, ns->bdev);
        (void)ns.release();
        continue;
      }
      ns->desc.close();
      registry_.release_claim(ns->bdev, "nvmf:" + n);
    }
  }
}

Status NvmfTarget::listen(const std::string& host, uint16_t port, uint16_t* bound) {
  uint16_t got = 0;
  auto fd = reactor::tcp_listen(host, port, 128, &got);
  if (!fd) return fd.status();
  if (bound) *bound = got;
  std::unique_lock lk(mu_);
  if (stopped_) {
    ::close(*fd);
    return make_error(Errc::kAborted, "the NVMe-oF target is stopped");
  }
  auto l = std::make_unique<reactor::Listener>(reactors_.at(0), *fd, [this](int cfd) {
    size_t k;
    {
      std::lock_guard g(mu_);
      k = next_reactor_++ % reactors_.size();
    }
    reactor::Reactor& r = reactors_.at(k);
    r.send([this, &r, cfd] { (new Qpair(*this, r, cfd))->start(); });
  });
  reactor::Listener* lp = l.get();
  listeners_.push_back({host, got, std::move(l)});
  genctr_++;
  // Not under the lock: reactor 0 may be accepting a connection, which takes it.
  lk.unlock();
  reactors_.run_on(0, [lp](reactor::Reactor&) { lp->start(); });
  spdlog::info("nvmf listening on {}:{}", host, got);
  return Status::ok();
}

void NvmfTarget::adopt(int fd, size_t reactor_index) {
  reactor::Reactor& r = reactors_.at(reactor_index % reactors_.size());
  r.send([this, &r, fd] { (new Qpair(*this, r, fd))->start(); });
}

void NvmfTarget::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  std::vector<reactor::Listener*> ls;
  for (auto& l : listeners_) ls.push_back(l.listener.get());
  reactor::stop_listeners(reactors_, ls);
  reactors_.run_on(0, [this](reactor::Reactor&) {
    for (auto& l : listeners_) l.listener.reset();
  });
  reactor::close_connections(reactors_, live_, [](Qpair* q) { q->close("target stopping"); });
}

}  // namespace castor::nvmf
