// The rules of block commands (frontend/block_commands.h): what an export advertises and
// what each command does, for each protocol's parameters.
#include "frontend/block_commands.h"

#include <gtest/gtest.h>

namespace castor::frontend {
namespace {

using bdev::IoType;

constexpr BdevCaps kAll{
    .flush = true, .unmap = true, .write_zeroes = true, .unmap_reads_zeroes = false};
constexpr BdevCaps kNone{};
constexpr BdevCaps kZeroingUnmapOnly{
    .flush = false, .unmap = true, .write_zeroes = false, .unmap_reads_zeroes = true};
constexpr BdevCaps kPlainUnmapOnly{
    .flush = true, .unmap = true, .write_zeroes = false, .unmap_reads_zeroes = false};

Command discard(Discard d, bool fua = false) {
  Command c;
  c.op = Op::kDiscard;
  c.discard = d;
  c.fua = fua;
  return c;
}

Command write_zeroes(bool may_deallocate, bool must_be_fast, bool may_write_buffers,
                     bool fua = false) {
  Command c;
  c.op = Op::kWriteZeroes;
  c.may_deallocate = may_deallocate;
  c.must_be_fast = must_be_fast;
  c.may_write_buffers = may_write_buffers;
  c.fua = fua;
  return c;
}

TEST(BlockCommands, AdvertisedFollowsTheBdev) {
  const Advertised a = advertise(kAll, false, Discard::kAdvisory);
  EXPECT_FALSE(a.read_only);
  EXPECT_TRUE(a.volatile_write_cache);
  EXPECT_TRUE(a.fua);
  EXPECT_TRUE(a.discard);
  EXPECT_FALSE(a.discard_zeroes);  // an unmap need not read back zeroes
  EXPECT_TRUE(a.write_zeroes);

  const Advertised n = advertise(kNone, true, Discard::kAdvisory);
  EXPECT_TRUE(n.read_only);
  EXPECT_FALSE(n.volatile_write_cache);  // no flush: no cache to flush
  EXPECT_TRUE(n.fua);                    // FUA is always accepted (costs nothing)
  EXPECT_FALSE(n.discard);
  EXPECT_FALSE(n.discard_zeroes);
  EXPECT_FALSE(n.write_zeroes);
}

TEST(BlockCommands, AdvisoryDiscardIsOfferedWithUnmapAndZeroesOnlyIfUnmapDoes) {
  EXPECT_TRUE(advertise(kPlainUnmapOnly, false, Discard::kAdvisory).discard);
  EXPECT_FALSE(advertise(kPlainUnmapOnly, false, Discard::kAdvisory).discard_zeroes);
  EXPECT_TRUE(advertise(kZeroingUnmapOnly, false, Discard::kAdvisory).discard_zeroes);
  BdevCaps wz_only;
  wz_only.write_zeroes = true;
  EXPECT_FALSE(advertise(wz_only, false, Discard::kAdvisory).discard);
}

TEST(BlockCommands, ZeroingDiscardIsOfferedOnlyWhenItCanZeroWithoutWritingData) {
  // SCSI: LBPU/LBPRZ need write-zeroes or an unmap that reads back zeroes.
  Advertised a = advertise(kAll, false, Discard::kZeroing);
  EXPECT_TRUE(a.discard);
  EXPECT_TRUE(a.discard_zeroes);
  a = advertise(kPlainUnmapOnly, false, Discard::kZeroing);
  EXPECT_FALSE(a.discard);
  EXPECT_FALSE(a.discard_zeroes);
  a = advertise(kZeroingUnmapOnly, false, Discard::kZeroing);
  EXPECT_TRUE(a.discard);
  EXPECT_TRUE(a.discard_zeroes);
  EXPECT_FALSE(a.write_zeroes);  // a zeroing unmap is not a write-zeroes (NBD NO_HOLE)
}

TEST(BlockCommands, ReadOnlyRefusesModifyingCommandsOnly) {
  for (Op op : {Op::kWrite, Op::kDiscard, Op::kWriteZeroes}) {
    EXPECT_EQ(check_access(op, true), Reason::kReadOnly) << op_name(op);
    EXPECT_EQ(check_access(op, false), std::nullopt) << op_name(op);
  }
  for (Op op : {Op::kRead, Op::kFlush})
    EXPECT_EQ(check_access(op, true), std::nullopt) << op_name(op);
}

TEST(BlockCommands, RangeIsOverflowSafe) {
  EXPECT_EQ(check_range(100, 0, 100), std::nullopt);
  EXPECT_EQ(check_range(100, 99, 1), std::nullopt);
  EXPECT_EQ(check_range(100, 100, 0), std::nullopt);  // empty, at the end
  EXPECT_EQ(check_range(100, 100, 1), Reason::kOutOfRange);
  EXPECT_EQ(check_range(100, 101, 0), Reason::kOutOfRange);
  EXPECT_EQ(check_range(100, 1, UINT64_MAX), Reason::kOutOfRange);
  EXPECT_EQ(check_range(100, UINT64_MAX, 2), Reason::kOutOfRange);
}

TEST(BlockCommands, ReadAndWriteAreSubmittedWithFuaOnWritesOnly) {
  Command c;
  c.op = Op::kRead;
  c.fua = true;  // NBD accepts FUA on a read; there is nothing to make durable
  EXPECT_EQ(plan(kAll, c), Action::submit(IoType::kRead, false));
  c.op = Op::kWrite;
  EXPECT_EQ(plan(kAll, c), Action::submit(IoType::kWrite, true));
  c.fua = false;
  EXPECT_EQ(plan(kNone, c), Action::submit(IoType::kWrite, false));
}

TEST(BlockCommands, FlushWithoutACacheCompletesAtOnce) {
  Command c;
  c.op = Op::kFlush;
  c.fua = true;
  EXPECT_EQ(plan(kAll, c), Action::submit(IoType::kFlush, false));
  EXPECT_EQ(plan(kNone, c), Action::complete());
}

TEST(BlockCommands, AdvisoryDiscardUnmapsOrDoesNothing) {
  // NBD TRIM, NVMe DSM deallocate.
  EXPECT_EQ(plan(kAll, discard(Discard::kAdvisory, true)), Action::submit(IoType::kUnmap, true));
  EXPECT_EQ(plan(kPlainUnmapOnly, discard(Discard::kAdvisory)),
            Action::submit(IoType::kUnmap, false));
  BdevCaps wz_only;
  wz_only.write_zeroes = true;
  EXPECT_EQ(plan(wz_only, discard(Discard::kAdvisory)),
            Action::complete());  // never zeroes for nothing
  EXPECT_EQ(plan(kNone, discard(Discard::kAdvisory)), Action::complete());
}

TEST(BlockCommands, ZeroingDiscardNeverUsesAPlainUnmap) {
  // SCSI UNMAP (LBPRZ = 1).
  EXPECT_EQ(plan(kAll, discard(Discard::kZeroing)), Action::submit(IoType::kWriteZeroes, false));
  EXPECT_EQ(plan(kZeroingUnmapOnly, discard(Discard::kZeroing)),
            Action::submit(IoType::kUnmap, false));
  BdevCaps both = kAll;
  both.unmap_reads_zeroes = true;  // a zeroing unmap is preferred: it frees space
  EXPECT_EQ(plan(both, discard(Discard::kZeroing)), Action::submit(IoType::kUnmap, false));
  EXPECT_EQ(plan(kPlainUnmapOnly, discard(Discard::kZeroing)),
            Action::reject(Reason::kUnsupported));
  EXPECT_EQ(plan(kNone, discard(Discard::kZeroing)), Action::reject(Reason::kUnsupported));
}

TEST(BlockCommands, ZeroingDiscardIsPlannableWheneverItIsAdvertised) {
  for (bool f : {false, true}) {
    for (bool u : {false, true}) {
      for (bool w : {false, true}) {
        for (bool z : {false, true}) {
          const BdevCaps caps{.flush = f, .unmap = u, .write_zeroes = w, .unmap_reads_zeroes = z};
          const bool offered = advertise(caps, false, Discard::kZeroing).discard;
          EXPECT_EQ(offered, plan(caps, discard(Discard::kZeroing)).kind != Action::Kind::kReject);
          // Write-zeroes is offered exactly when it needs neither deallocation nor buffers.
          EXPECT_EQ(advertise(caps, false, Discard::kAdvisory).write_zeroes,
                    plan(caps, write_zeroes(false, true, false)) ==
                        Action::submit(IoType::kWriteZeroes, false));
        }
      }
    }
  }
}

TEST(BlockCommands, WriteZeroesUsesTheBdevsWriteZeroes) {
  EXPECT_EQ(plan(kAll, write_zeroes(true, false, false, true)),
            Action::submit(IoType::kWriteZeroes, true));
  EXPECT_EQ(plan(kAll, write_zeroes(false, true, true)),
            Action::submit(IoType::kWriteZeroes, false));
}

TEST(BlockCommands, WriteZeroesFallsBackToUnmapOnlyIfUnmapReadsZeroes) {
  // NVMe Write Zeroes used to fall back to a plain unmap, which need not read back zeroes.
  EXPECT_EQ(plan(kPlainUnmapOnly, write_zeroes(true, false, false)),
            Action::reject(Reason::kUnsupported));
  EXPECT_EQ(plan(kZeroingUnmapOnly, write_zeroes(true, false, false, true)),
            Action::submit(IoType::kUnmap, true));
  // NBD NO_HOLE: the blocks must stay allocated.
  EXPECT_EQ(plan(kZeroingUnmapOnly, write_zeroes(false, false, false)),
            Action::reject(Reason::kUnsupported));
}

TEST(BlockCommands, FastZeroIsRefusedWhenOnlyWritingWouldDo) {
  // NBD FAST_ZERO: ENOTSUP, so that the client writes zeroes itself (or skips them).
  EXPECT_EQ(plan(kNone, write_zeroes(true, true, false)), Action::reject(Reason::kNotFast));
  EXPECT_EQ(plan(kPlainUnmapOnly, write_zeroes(true, true, true)),
            Action::reject(Reason::kNotFast));
  EXPECT_EQ(plan(kZeroingUnmapOnly, write_zeroes(true, true, false)),
            Action::submit(IoType::kUnmap, false));
  EXPECT_EQ(plan(kZeroingUnmapOnly, write_zeroes(false, true, false)),
            Action::reject(Reason::kNotFast));
}

TEST(BlockCommands, WriteZeroesIsEmulatedOnlyByATargetThatCanWriteBuffers) {
  // SCSI WRITE SAME writes zero buffers; NBD and NVMe refuse.
  EXPECT_EQ(plan(kNone, write_zeroes(false, false, true, true)), Action::write_zero_buffers(true));
  EXPECT_EQ(plan(kPlainUnmapOnly, write_zeroes(true, false, true)),
            Action::write_zero_buffers(false));
  EXPECT_EQ(plan(kNone, write_zeroes(true, false, false)), Action::reject(Reason::kUnsupported));
}

TEST(BlockCommands, CapsOfReadsTheSupportedOperations) {
  struct FakeBdev : bdev::Bdev {
    explicit FakeBdev(uint32_t ops) : Bdev("fake", "fake", 512, 8) { set_supported_ops(ops); }
    std::unique_ptr<bdev::BdevChannel> create_channel(reactor::Reactor&) override {
      return nullptr;
    }
  };
  const BdevCaps all = caps_of(FakeBdev(0x3f));
  EXPECT_TRUE(all.flush && all.unmap && all.write_zeroes);
  EXPECT_FALSE(all.unmap_reads_zeroes);  // nothing declares it yet
  const BdevCaps rw =
      caps_of(FakeBdev(bdev::io_type_bit(IoType::kRead) | bdev::io_type_bit(IoType::kWrite)));
  EXPECT_FALSE(rw.flush || rw.unmap || rw.write_zeroes);
}

TEST(BlockCommands, NamesAreStable) {
  EXPECT_STREQ(op_name(Op::kWriteZeroes), "write_zeroes");
  EXPECT_STREQ(reason_name(Reason::kNotFast), "not_fast");
}

}  // namespace
}  // namespace castor::frontend
