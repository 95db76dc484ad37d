#pragma once
// Test harness: a reactor group + registry, and synchronous I/O helpers that run the
// submission on a chosen reactor and wait for the completion on the test thread.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <future>
#include <random>

#include "bdev/registry.h"

namespace castor::bdev::test {

inline reactor::ReactorOptions test_opts() {
  reactor::ReactorOptions o;
  o.pin = false;
  return o;
}

struct Env {
  reactor::ReactorGroup group{{0, 0}, test_opts()};
  std::unique_ptr<BdevRegistry> reg;
  std::filesystem::path dir;
  Env() {
    group.start();
    reg = std::make_unique<BdevRegistry>(group);
    dir = std::filesystem::temp_directory_path() /
          ("castor-bdev-test-" + std::to_string(getpid()) + "-" + std::to_string(std::rand()));
    std::filesystem::create_directories(dir);
  }
  ~Env() {
    reg.reset();
    group.stop();
    std::filesystem::remove_all(dir);
  }
  std::string path(const std::string& f) const { return (dir / f).string(); }
};

// One synchronous I/O. `buf` may be null for non-data operations.
struct SyncIo {
  IoRequest req;
  iovec iov{};
  std::promise<IoStatus> p;
  uint64_t latency_ns = 0;
  BdevDesc desc;  // open while the I/O runs (closed as it completes)
};

// Submits one I/O described by `s` on reactor `reactor_idx` and returns its status's
// future; `s` must outlive the completion. `buf` may be null for non-data operations.
inline std::future<IoStatus> start_io(Env& env, size_t reactor_idx, Bdev& b, SyncIo& s, IoType type,
                                      uint64_t off, uint64_t nblocks, void* buf, size_t len,
                                      bool fua = false) {
  s.req.type = type;
  s.req.fua = fua;
  s.req.offset_blocks = off;
  s.req.num_blocks = nblocks;
  if (buf) {
    s.iov = {buf, len};
    s.req.iovs = &s.iov;
    s.req.iovcnt = 1;
  }
  s.req.cb = [](IoRequest& r, void* arg) {
    auto* sp = static_cast<SyncIo*>(arg);
    sp->latency_ns = r.done_ns - r.start_ns;
    sp->desc.close();  // its I/O is done: the bdev may be destroyed now
    sp->p.set_value(r.status);
  };
  s.req.cb_arg = &s;
  auto f = s.p.get_future();
  reactor::Reactor& r = env.group.at(reactor_idx);
  s.desc = BdevDesc(&b);
  r.send([&r, &s] { s.desc.channel(r).submit(s.req); });
  return f;
}

inline IoStatus do_io(Env& env, size_t reactor_idx, Bdev& b, IoType type, uint64_t off,
                      uint64_t nblocks, void* buf, size_t len, uint64_t* latency = nullptr,
                      bool fua = false) {
  SyncIo s;
  IoStatus st = start_io(env, reactor_idx, b, s, type, off, nblocks, buf, len, fua).get();
  if (latency) *latency = s.latency_ns;
  return st;
}

}  // namespace castor::bdev::test
