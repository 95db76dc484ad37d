#pragma once
#include <cstring>

#include "../bdev/harness.h"
#include "pool/layout.h"
#include "pool/meta_io.h"
#include "pool/pool.h"

namespace castor::pool::test {

using bdev::test::do_io;
using bdev::test::Env;

struct PoolEnv : Env {
  std::unique_ptr<PoolManager> pools = std::make_unique<PoolManager>(*reg);
  ~PoolEnv() { pools.reset(); }

  // Writes `nblocks` blocks of `v` at `lba` of bdev `name` on reactor `r` (with `fua`:
  // Force Unit Access, durable at completion).
  bdev::IoStatus fill(const std::string& name, uint64_t lba, uint64_t nblocks, uint8_t v, size_t r = 0,
                      bool fua = false) {
    auto b = reg->find(name);
    if (!b) return bdev::IoStatus::kInvalid;
    bdev::DmaBuffer buf(nblocks * b->block_size());
    std::memset(buf.data(), v, buf.size());
    return do_io(*this, r, *b, bdev::IoType::kWrite, lba, nblocks, buf.data(), buf.size(), nullptr, fua);
  }
  // Reads and returns the blocks (empty on error).
  std::vector<uint8_t> read(const std::string& name, uint64_t lba, uint64_t nblocks, size_t r = 1) {
    auto b = reg->find(name);
    if (!b) return {};
    bdev::DmaBuffer buf(nblocks * b->block_size());
    if (do_io(*this, r, *b, bdev::IoType::kRead, lba, nblocks, buf.data(), buf.size()) !=
        bdev::IoStatus::kSuccess) {
      return {};
    }
    return std::vector<uint8_t>(buf.data(), buf.data() + buf.size());
  }
  bool all(const std::vector<uint8_t>& v, uint8_t x) {
    return !v.empty() && std::all_of(v.begin(), v.end(), [x](uint8_t b) { return b == x; });
  }
  // Offline check of a pool on bdevs `disks` (which must not be claimed by a pool).
  CheckReport check(const std::vector<std::string>& disks) {
    std::vector<std::shared_ptr<bdev::Bdev>> bs;
    std::vector<uint64_t> sizes;
    for (const auto& d : disks) {
      bs.push_back(reg->find(d));
      sizes.push_back(bs.back()->size_bytes());
    }
    auto& R = group.at(0);
    return check_pool(
        disks.size(),
        [&](size_t i, uint64_t off, void* buf, size_t len) { return sync_read(R, bdev::BdevDesc(bs[i].get()), off, buf, len); },
        sizes);
  }
};

}  // namespace castor::pool::test
