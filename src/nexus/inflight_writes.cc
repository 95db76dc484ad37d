#include "nexus/inflight_writes.h"

#include <algorithm>
#include <bit>

namespace castor::nexus {

InflightWrites::InflightWrites(uint32_t block_size, uint64_t num_blocks)
    : blocks_per_unit_(static_cast<uint32_t>(std::max<uint64_t>(1, kUnitBytes / block_size))) {
  const uint64_t units = (num_blocks + blocks_per_unit_ - 1) / blocks_per_unit_;
  bits_ = std::clamp<uint64_t>(std::bit_ceil(std::max<uint64_t>(units, 1)), 64, kMaxBits);
  words_ = std::make_unique<std::atomic<uint64_t>[]>(bits_ / 64);
  for (uint64_t i = 0; i < bits_ / 64; ++i) words_[i].store(0, std::memory_order_relaxed);
}

template <class F>
bool InflightWrites::for_each_word(uint64_t first, uint64_t n, F&& fn) const {
  const uint64_t u0 = first / blocks_per_unit_;
  const uint64_t u1 = (first + n - 1) / blocks_per_unit_;  // inclusive
  uint64_t count = u1 - u0 + 1;
  if (count >= bits_) {  // covers the whole table
    for (uint64_t w = 0; w < bits_ / 64; ++w) {
      if (!fn(w, ~uint64_t{0})) return false;
    }
    return true;
  }
  uint64_t bit = u0 & (bits_ - 1);
  while (count > 0) {
    const uint64_t w = bit / 64, b = bit % 64;
    const uint64_t take = std::min<uint64_t>(count, 64 - b);
    const uint64_t mask = (take == 64 ? ~uint64_t{0} : ((uint64_t{1} << take) - 1)) << b;
    if (!fn(w, mask)) return false;
    count -= take;
    bit = (bit + take) & (bits_ - 1);
  }
  return true;
}

bool InflightWrites::try_mark(uint64_t first, uint64_t n) {
  uint64_t done_words = 0;  // words fully marked by this call, in visiting order
  uint64_t conflict_word = 0, conflict_set = 0;
  const bool ok = for_each_word(first, n, [&](uint64_t w, uint64_t mask) {
    const uint64_t old = words_[w].fetch_or(mask, std::memory_order_acq_rel);
    if (old & mask) {
      conflict_word = w;
      conflict_set = mask & ~old;  // the bits this call set in that word
      return false;
    }
    ++done_words;
    return true;
  });
  if (ok) return true;
  if (conflict_set) words_[conflict_word].fetch_and(~conflict_set, std::memory_order_release);
  uint64_t undo = done_words;
  for_each_word(first, n, [&](uint64_t w, uint64_t mask) {
    if (undo == 0) return false;
    --undo;
    words_[w].fetch_and(~mask, std::memory_order_release);
    return true;
  });
  return false;
}

void InflightWrites::unmark(uint64_t first, uint64_t n) {
  for_each_word(first, n, [&](uint64_t w, uint64_t mask) {
    words_[w].fetch_and(~mask, std::memory_order_release);
    return true;
  });
}

}  // namespace castor::nexus
