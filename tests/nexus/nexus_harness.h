#pragma once
// Nexus test harness: reactors + registry (from the bdev harness), a health store and a
// NexusManager, a verifying workload that runs on the reactors, and block-for-block
// comparison of children.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "../bdev/harness.h"
#include "../bdev/verify_workload.h"
#include "bdev/modules/fault.h"
#include "nexus/manager.h"

namespace castor::nexus::test {

using bdev::Bdev;
using bdev::DmaBuffer;
using bdev::IoRequest;
using bdev::IoStatus;
using bdev::IoType;
using bdev::test::do_io;

struct NexEnv : bdev::test::Env {
  std::unique_ptr<ChildHealthStore> store;
  std::unique_ptr<NexusManager> mgr;
  explicit NexEnv(bool file_store = false) {
    if (file_store) {
      store = std::make_unique<FileChildHealthStore>(dir / "health");
    } else {
      store = std::make_unique<MemChildHealthStore>();
    }
    mgr = std::make_unique<NexusManager>(*reg, *store);
  }
  ~NexEnv() {
    mgr.reset();
    store.reset();
  }
  MemChildHealthStore& mem() { return static_cast<MemChildHealthStore&>(*store); }
  // malloc:///<name> of `mb` MiB plus fault:///f<name>?base=<name>; returns the fault name.
  std::string fault_child(const std::string& name, uint64_t mb = 8) {
    EXPECT_TRUE(reg->create(fmt::format("malloc:///{}?size_mb={}", name, mb)));
    EXPECT_TRUE(reg->create(fmt::format("fault:///f{}?base={}", name, name)));
    return "f" + name;
  }
  std::shared_ptr<Nexus> make(const std::string& name, const std::vector<std::string>& uris,
                              const NexusOptions& o = {}, uint64_t size = 0) {
    auto r = mgr->create(name, size, uris, o);
    EXPECT_TRUE(r) << r.status().to_string();
    return mgr->find(name);
  }
  Bdev& bdev(const std::string& name) {
    auto b = reg->find(name);
    EXPECT_TRUE(b) << name;
    return *b;
  }
};

inline bdev::FaultRuleSpec fault_spec(bdev::FaultMode mode, uint32_t ops) {
  bdev::FaultRuleSpec s;
  s.mode = mode;
  s.ops_mask = ops;
  return s;
}
inline constexpr uint32_t kRW = bdev::io_type_bit(IoType::kRead) | bdev::io_type_bit(IoType::kWrite);
inline constexpr uint32_t kW = bdev::io_type_bit(IoType::kWrite);
inline constexpr uint32_t kR = bdev::io_type_bit(IoType::kRead);

template <class F>
bool wait_until(F&& f, int timeout_ms = 5000) {
  for (int i = 0; i < timeout_ms; i += 2) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return f();
}

using bdev::test::fill_block;
using bdev::test::Workload;

inline std::vector<uint8_t> read_all(NexEnv& env, Bdev& b, uint64_t nblocks) {
  const uint32_t bs = b.block_size();
  const uint64_t step = 256;
  std::vector<uint8_t> out(nblocks * bs);
  DmaBuffer buf(step * bs);
  for (uint64_t lba = 0; lba < nblocks; lba += step) {
    uint64_t n = std::min(step, nblocks - lba);
    EXPECT_EQ(do_io(env, 0, b, IoType::kRead, lba, n, buf.data(), n * bs), IoStatus::kSuccess);
    std::memcpy(out.data() + lba * bs, buf.data(), n * bs);
  }
  return out;
}

// Index of the first differing block, or -1.
inline int64_t first_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b,
                          uint32_t bs) {
  for (size_t i = 0; i < a.size(); i += bs) {
    if (std::memcmp(a.data() + i, b.data() + i, bs) != 0) return static_cast<int64_t>(i / bs);
  }
  return -1;
}

// Compares every named bdev block for block over the nexus' size.
inline void expect_equal(NexEnv& env, const std::vector<std::string>& names, uint64_t nblocks) {
  ASSERT_FALSE(names.empty());
  auto ref = read_all(env, env.bdev(names[0]), nblocks);
  uint32_t bs = env.bdev(names[0]).block_size();
  for (size_t i = 1; i < names.size(); ++i) {
    auto other = read_all(env, env.bdev(names[i]), nblocks);
    EXPECT_EQ(first_diff(ref, other, bs), -1) << names[0] << " vs " << names[i];
  }
}

inline std::optional<ChildInfo> child(const NexusInfo& i, const std::string& uri) {
  for (const auto& c : i.children) {
    if (c.uri == uri) return c;
  }
  ADD_FAILURE() << "no child " << uri;
  return ChildInfo{};
}

}  // namespace castor::nexus::test
