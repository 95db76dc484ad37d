#pragma once
// InflightWrites: which 4 KiB units of a nexus have a write in flight, on any reactor.
//
// Two overlapping writes in flight at once could reach two children in different orders
// (a child's transport or a slow device reorders them) and leave the mirrors different,
// though both were acknowledged. The nexus therefore lets a write go to its children only
// once it has marked every unit it touches here, and holds it while any unit is marked:
// overlapping writes reach every child one after the other, in the same order.
//
// One bit per unit, in a table of a fixed power-of-two number of bits; unit u uses bit
// u mod bits, so units `bits` apart share a bit (a false conflict holds a write until
// the other completes, never lets two overlapping ones through). The table covers the
// whole nexus up to 4 GiB (1 Mi bits, 128 KiB) and is never resized: a nexus that grows
// maps its new units onto the same bits.
//
// Lock-free: a write marks its bits word by word with fetch_or; finding a bit already set,
// it unmarks what it set and fails, so no write ever waits holding a bit (no deadlock
// between reactors). Thread-safe; the per-write cost is one atomic RMW per 64 units.

#include <atomic>
#include <cstdint>
#include <memory>

namespace castor::nexus {

class InflightWrites {
 public:
  // `num_blocks` at creation sizes the table (at least 64 bits, at most kMaxBits).
  InflightWrites(uint32_t block_size, uint64_t num_blocks);

  // Marks every unit of blocks [first, first + n). False, with nothing marked, if any of
  // them (or a unit sharing its bit) is already marked. REQUIRES: n > 0.
  bool try_mark(uint64_t first, uint64_t n);
  // Unmarks what a successful try_mark(first, n) marked.
  void unmark(uint64_t first, uint64_t n);

  uint64_t bits() const { return bits_; }
  static constexpr uint64_t kUnitBytes = 4096;
  static constexpr uint64_t kMaxBits = uint64_t{1} << 20;

 private:
  // Calls fn(word_index, mask) for the words covering the units of [first, first + n), in
  // ascending unit order (a range wrapping around the table yields its tail words first);
  // stops early and returns false when fn does.
  template <class F>
  bool for_each_word(uint64_t first, uint64_t n, F&& fn) const;

  uint32_t blocks_per_unit_;
  uint64_t bits_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace castor::nexus
