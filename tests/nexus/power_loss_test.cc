// A nexus through a power loss. Its two children are fault bdevs with a volatile write
// cache (cache=volatile) over RAM; a seeded stream of writes (some FUA), flushes and
// reads runs through the nexus; then the power is cut on both children with different
// seeds, so each keeps a different subset of what was not yet durable, and the nexus dies
// without a clean shutdown. Powered on again, the nexus is re-created over the same
// children: the unclean-shutdown rule must resync one child from the other, after which
// the children are equal block for block and every block holds a value the application
// may see: the last write acknowledged before a completed flush or written with FUA, or
// a later write. The seeds are printed; CASTOR_PL_SEED=<seed> CASTOR_PL_TRIALS=1 replays
// one trial.
#include <cinttypes>
#include <cstdlib>
#include <random>
#include <set>

#include "nexus_harness.h"

namespace castor::nexus::test {
namespace {

using bdev::FaultControl;

uint64_t env_or(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : dflt;
}

void fill_tag(uint8_t* p, uint32_t bs, uint64_t tag) {
  for (uint32_t i = 0; i < bs; i += 8) std::memcpy(p + i, &tag, 8);
}

// The tag a block holds, or UINT64_MAX if it is not one uniform tag (torn inside a block).
uint64_t tag_of(const uint8_t* p, uint32_t bs) {
  uint64_t t;
  std::memcpy(&t, p, 8);
  for (uint32_t i = 8; i < bs; i += 8) {
    if (std::memcmp(p + i, &t, 8) != 0) return UINT64_MAX;
  }
  return t;
}

TEST(NexusPowerLoss, EveryDurableWriteSurvivesAndTheChildrenEndEqual) {
  const uint64_t base = env_or("CASTOR_PL_SEED", std::random_device{}());
  const uint64_t trials = env_or("CASTOR_PL_TRIALS", 20);
  std::printf("nexus power loss: %" PRIu64 " trials from seed %" PRIu64
              " (replay one: CASTOR_PL_SEED=<seed> CASTOR_PL_TRIALS=1)\n",
              trials, base);
  constexpr uint64_t kBlocks = 256;  // the region written (1 MiB of 4 KiB blocks)
  uint64_t lost_total = 0, older_total = 0, resyncs = 0;
  for (uint64_t t = 0; t < trials && !HasFailure(); ++t) {
    const uint64_t seed = base + t;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    NexEnv e;
    ASSERT_TRUE(e.reg->create("malloc:///ma?size_mb=2"));
    ASSERT_TRUE(e.reg->create("malloc:///mb?size_mb=2"));
    ASSERT_TRUE(e.reg->create("fault:///fa?base=ma&cache=volatile"));
    ASSERT_TRUE(e.reg->create("fault:///fb?base=mb&cache=volatile"));
    const std::vector<std::string> kids = {"bdev:///fa", "bdev:///fb"};
    auto n = e.make("n0", kids);
    ASSERT_TRUE(n);
    const uint32_t bs = n->block_size();
    // allowed[b]: the tags block b may hold after a power loss.
    std::vector<std::set<uint64_t>> allowed(kBlocks, std::set<uint64_t>{0});
    DmaBuffer buf(4 * bs);
    const int nops = 50 + static_cast<int>(rng() % 250);
    uint64_t next_tag = 1;
    for (int i = 0; i < nops; ++i) {
      const uint32_t what = rng() % 100;
      if (what < 8) {
        ASSERT_EQ(do_io(e, rng() % 2, *n, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
        for (auto& a : allowed) a = {*a.rbegin()};  // tags grow: the last written is the largest
        continue;
      }
      const uint64_t nb = 1 + rng() % 4;
      const uint64_t lba = rng() % (kBlocks - nb + 1);
      const bool fua = what < 30;
      const uint64_t tag = next_tag++;
      for (uint64_t k = 0; k < nb; ++k) fill_tag(buf.data() + k * bs, bs, tag);
      ASSERT_EQ(do_io(e, rng() % 2, *n, IoType::kWrite, lba, nb, buf.data(), nb * bs, nullptr, fua),
                IoStatus::kSuccess);
      for (uint64_t k = 0; k < nb; ++k) {
        if (fua) {
          allowed[lba + k] = {tag};
        } else {
          allowed[lba + k].insert(tag);
        }
      }
    }
    // The power fails on both children, each keeping its own subset; the nexus dies.
    auto ra = FaultControl::power_loss(e.bdev("fa"), seed * 2 + 1);
    auto rb = FaultControl::power_loss(e.bdev("fb"), seed * 2 + 2);
    ASSERT_TRUE(ra && rb);
    lost_total += ra->lost + rb->lost;
    older_total += ra->older + rb->older;
    n.reset();
    ASSERT_TRUE(e.mgr->destroy("n0"));  // its closing flush fails: it stays recorded open
    ASSERT_TRUE(e.store->load("n0")->open) << "a nexus whose children lost power is not closed cleanly";
    ASSERT_TRUE(FaultControl::set_volatile_cache(e.bdev("fa"), true));
    ASSERT_TRUE(FaultControl::set_volatile_cache(e.bdev("fb"), true));
    n = e.make("n0", kids);
    ASSERT_TRUE(n);
    auto ri = n->wait_rebuild(kids[1], 20000);
    ASSERT_TRUE(ri) << ri.status().to_string();
    EXPECT_EQ(ri->state, RebuildState::kCompleted);
    ++resyncs;
    for (uint64_t lba = 0; lba < kBlocks; ++lba) {
      ASSERT_EQ(do_io(e, lba % 2, *n, IoType::kRead, lba, 1, buf.data(), bs), IoStatus::kSuccess);
      const uint64_t got = tag_of(buf.data(), bs);
      EXPECT_TRUE(allowed[lba].count(got)) << "block " << lba << " holds tag " << got
                                           << ", which a power loss cannot leave there";
    }
    // Through the caches (reads see them): every block equal on both children.
    ASSERT_EQ(do_io(e, 0, *n, IoType::kFlush, 0, 0, nullptr, 0), IoStatus::kSuccess);
    expect_equal(e, {"fa", "fb"}, n->num_blocks());
    n.reset();
    ASSERT_TRUE(e.mgr->destroy("n0"));
    EXPECT_FALSE(e.store->load("n0")->open);
  }
  std::printf("nexus power loss summary: trials=%" PRIu64 " units lost=%" PRIu64 " older versions kept=%" PRIu64
              " resyncs=%" PRIu64 "\n",
              trials, lost_total, older_total, resyncs);
}

}  // namespace
}  // namespace castor::nexus::test
