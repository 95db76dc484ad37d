#pragma once
// NBD wire constants and structures (fixed newstyle negotiation; all fields big-endian).
// Facts from the NBD protocol document as libnbd, nbdkit and the Linux client use them.

#include <cstdint>

#include "common/endian.h"

namespace castor::nbd {

inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;  // "NBDMAGIC"
inline constexpr uint64_t kIHaveOpt = 0x49484156454F5054ull;  // "IHAVEOPT"
inline constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9ull;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// Handshake flags (server) and client flags.
inline constexpr uint16_t kFlagFixedNewstyle = 1 << 0;
inline constexpr uint16_t kFlagNoZeroes = 1 << 1;

namespace opt {
inline constexpr uint32_t kExportName = 1;
inline constexpr uint32_t kAbort = 2;
inline constexpr uint32_t kList = 3;
inline constexpr uint32_t kStartTls = 5;
inline constexpr uint32_t kInfo = 6;
inline constexpr uint32_t kGo = 7;
inline constexpr uint32_t kStructuredReply = 8;
inline constexpr uint32_t kListMetaContext = 9;
inline constexpr uint32_t kSetMetaContext = 10;
inline constexpr uint32_t kExtendedHeaders = 11;
}  // namespace opt

namespace rep {
inline constexpr uint32_t kAck = 1;
inline constexpr uint32_t kServer = 2;
inline constexpr uint32_t kInfo = 3;
inline constexpr uint32_t kMetaContext = 4;
inline constexpr uint32_t kErrUnsup = 0x80000001;
inline constexpr uint32_t kErrPolicy = 0x80000002;
inline constexpr uint32_t kErrInvalid = 0x80000003;
inline constexpr uint32_t kErrUnknown = 0x80000006;
inline constexpr uint32_t kErrTooBig = 0x80000009;
}  // namespace rep

namespace info {
inline constexpr uint16_t kExport = 0;
inline constexpr uint16_t kName = 1;
inline constexpr uint16_t kDescription = 2;
inline constexpr uint16_t kBlockSize = 3;
}  // namespace info

// Transmission flags.
namespace tflag {
inline constexpr uint16_t kHasFlags = 1 << 0;
inline constexpr uint16_t kReadOnly = 1 << 1;
inline constexpr uint16_t kSendFlush = 1 << 2;
inline constexpr uint16_t kSendFua = 1 << 3;
inline constexpr uint16_t kSendTrim = 1 << 5;
inline constexpr uint16_t kSendWriteZeroes = 1 << 6;
inline constexpr uint16_t kCanMultiConn = 1 << 8;
}  // namespace tflag

namespace cmd {
inline constexpr uint16_t kRead = 0;
inline constexpr uint16_t kWrite = 1;
inline constexpr uint16_t kDisc = 2;
inline constexpr uint16_t kFlush = 3;
inline constexpr uint16_t kTrim = 4;
inline constexpr uint16_t kCache = 5;
inline constexpr uint16_t kWriteZeroes = 6;
inline constexpr uint16_t kBlockStatus = 7;
}  // namespace cmd

namespace cflag {
inline constexpr uint16_t kFua = 1 << 0;
inline constexpr uint16_t kNoHole = 1 << 1;
inline constexpr uint16_t kDf = 1 << 2;
inline constexpr uint16_t kReqOne = 1 << 3;  // BLOCK_STATUS: one extent only
inline constexpr uint16_t kFastZero = 1 << 4;
}  // namespace cflag

namespace chunk {
inline constexpr uint16_t kDone = 1 << 0;
inline constexpr uint16_t kNone = 0;
inline constexpr uint16_t kOffsetData = 1;
inline constexpr uint16_t kBlockStatus = 5;
inline constexpr uint16_t kError = 0x8001;
}  // namespace chunk

namespace err {
inline constexpr uint32_t kPerm = 1;
inline constexpr uint32_t kIo = 5;
inline constexpr uint32_t kNoMem = 12;
inline constexpr uint32_t kInval = 22;
inline constexpr uint32_t kNoSpc = 28;
inline constexpr uint32_t kOverflow = 75;
inline constexpr uint32_t kNotSup = 95;
inline constexpr uint32_t kShutdown = 108;
}  // namespace err

inline constexpr uint32_t kRequestSize = 28;
inline constexpr uint32_t kOptionHeaderSize = 16;
inline constexpr uint32_t kMaxOptionLength = 64 * 1024;      // larger: close (DoS guard)
inline constexpr uint32_t kMaxPayload = 32 * 1024 * 1024;    // READ/WRITE length limit
inline constexpr uint32_t kMaxOptionsPerConnection = 64;
// Meta contexts: Castor offers one, base:allocation (flags of its extents below).
inline constexpr const char* kBaseAllocation = "base:allocation";
inline constexpr uint32_t kBaseAllocationId = 1;  // its context ID on every connection
inline constexpr uint32_t kMaxMetaContextName = 4096;
inline constexpr uint32_t kMaxExtentsPerReply = 1024;  // the client asks again for the rest
namespace state {
inline constexpr uint32_t kHole = 1 << 0;  // not allocated
inline constexpr uint32_t kZero = 1 << 1;  // reads as zeroes
}  // namespace state
// Backpressure per connection: requests in flight (until their replies are sent) and the
// bytes of READ/WRITE buffers they hold. Beyond either the connection stops reading.
inline constexpr uint32_t kMaxRequestsInFlight = 256;
inline constexpr uint64_t kMaxBytesInFlight = 64ull << 20;
static_assert(kMaxPayload <= kMaxBytesInFlight, "one request of the largest size always fits");
// A request's buffer larger than this is freed when it ends, not kept for reuse.
inline constexpr size_t kKeepBufferBytes = 1u << 20;


}  // namespace castor::nbd
