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
    : reactors_(reactors),
      registry_(registry),
      opts_(opts),
      tcp_(reactors, {.protocol = "nvmf", .buffer_budget_bytes = opts.buffer_budget_bytes}, [this](int fd, reactor::Reactor& r) { (new Qpair(*this, r, fd))->start(); }) {
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
      registry_.release_claim(ns->bdev, bdev::Claim::nvmf_subsystem(n));
    }
  }
}

Status NvmfTarget::listen(const std::string& host, uint16_t port, uint16_t* bound) {
  if (tcp_.stopping()) return make_error(Errc::kAborted, "the NVMe-oF target is stopped");
  uint16_t got = 0;
  if (auto st = tcp_.listen(host, port, &got); !st) {
    return st.code() == Errc::kBusy ? make_error(Errc::kAborted, "the NVMe-oF target is stopped") : st;
  }
  if (bound) *bound = got;
  std::lock_guard lk(mu_);
  genctr_++;  // the discovery log changed
  return Status::ok();
}

void NvmfTarget::adopt(int fd, size_t reactor_index) { tcp_.adopt(fd, reactor_index); }

void NvmfTarget::with_qpair(uint64_t connection, std::function<void(Qpair&)> fn) {
  const size_t i = reactor::TcpServer::reactor_of(connection);
  reactors_.at(i).send([this, i, connection, fn = std::move(fn)] {
    if (auto* c = tcp_.find(i, connection)) fn(static_cast<Qpair&>(*c));
  });
}

void NvmfTarget::stop() { tcp_.stop(); }

}  // namespace castor::nvmf
