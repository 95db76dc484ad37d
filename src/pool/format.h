#pragma once
// On-disk format of a pool (version 1). The byte layout and the commit protocol are
// documented in docs/pool-format.md; this header is the authority for field sizes.
// All integers are little-endian. Every structure read from disk goes through a
// decode_* function that checks magic, version, lengths and checksums before use and
// returns a precise error; nothing here does I/O.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/uuid.h"

namespace castor::pool {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kBlock = 4096;          // metadata block size
inline constexpr uint32_t kMaxMembers = 16;
inline constexpr uint32_t kMaxNameLen = 63;
inline constexpr uint32_t kUnallocated = 0xFFFFFFFFu;  // cluster map: no cluster
inline constexpr uint64_t kMinClusterSize = 64 * 1024;
inline constexpr uint64_t kMaxClusterSize = 1024ull * 1024 * 1024;
inline constexpr uint64_t kDefaultClusterSize = 4ull * 1024 * 1024;
inline constexpr uint64_t kLogBytes = 4ull * 1024 * 1024;  // metadata log ring
inline constexpr uint32_t kMaxReplicas = 4096;
// Largest replica, in clusters (64 TiB with the default 4 MiB clusters); keeps a
// replica's in-memory cluster map under 64 MiB.
inline constexpr uint64_t kMaxReplicaClusters = uint64_t{1} << 24;

// ---- Label: blocks 0 and 1 of every member (two identical copies) ----
struct MemberEntry {
  uint8_t uuid[16];
  uint64_t size_bytes;  // usable bytes of this member (multiple of cluster size)
};
static_assert(sizeof(MemberEntry) == 24);

struct LabelRaw {
  char magic[8];  // "CASTORPL"
  uint32_t version;
  uint32_t state;  // kLabelActive; a destroyed pool's labels are zeroed
  uint8_t pool_uuid[16];
  char pool_name[64];  // NUL-terminated
  uint64_t cluster_size;
  uint32_t member_index;
  uint32_t member_count;
  uint64_t meta_offset;  // byte offset on member 0 of checkpoint slot A
  uint64_t slot_size;    // bytes per checkpoint slot (B follows A)
  uint64_t log_offset;   // byte offset on member 0 of the log ring
  uint64_t log_size;
  uint64_t data_offset;  // byte offset on member 0 where data clusters begin
  MemberEntry members[kMaxMembers];
  uint32_t crc;  // crc32c of the bytes before this field
};
static_assert(offsetof(LabelRaw, version) == 8);
static_assert(offsetof(LabelRaw, pool_uuid) == 16);
static_assert(offsetof(LabelRaw, pool_name) == 32);
static_assert(offsetof(LabelRaw, cluster_size) == 96);
static_assert(offsetof(LabelRaw, members) == 152);
static_assert(offsetof(LabelRaw, crc) == 152 + 24 * kMaxMembers);
static_assert(sizeof(LabelRaw) <= kBlock);
inline constexpr uint32_t kLabelActive = 1;

struct Label {
  Uuid pool_uuid;
  std::string pool_name;
  uint64_t cluster_size = 0;
  uint32_t member_index = 0;
  uint32_t member_count = 0;
  uint64_t meta_offset = 0, slot_size = 0, log_offset = 0, log_size = 0, data_offset = 0;
  std::vector<std::pair<Uuid, uint64_t>> members;  // uuid, size_bytes
};

// Encodes into one kBlock-sized block.
std::vector<uint8_t> encode_label(const Label& l);
// Errors name what is wrong: "not a Castor pool label", "label checksum mismatch",
// "unsupported format version 7", "member count 0", "cluster size ...".
Result<Label> decode_label(std::span<const uint8_t> block);

// ---- Replica records (in checkpoints and log records) ----
struct Extent {
  uint32_t logical;   // first logical cluster
  uint32_t physical;  // first physical cluster
  uint32_t count;
  bool operator==(const Extent&) const = default;
};

struct ReplicaRecord {
  Uuid uuid;
  std::string name;
  uint64_t size_bytes = 0;
  bool thin = false;
  std::vector<Extent> extents;  // allocated clusters, as runs
};

// The state a checkpoint holds.
struct PoolState {
  std::vector<ReplicaRecord> replicas;
};

// ---- Checkpoint slots A and B ----
struct CheckpointHeaderRaw {
  char magic[8];  // "CASTORCK"
  uint32_t version;
  uint32_t reserved;
  uint8_t pool_uuid[16];
  uint64_t generation;
  uint64_t log_seq;   // last log record applied in this state
  uint64_t payload_len;
  uint32_t payload_crc;
  uint32_t header_crc;  // crc32c of the bytes before this field
};
static_assert(sizeof(CheckpointHeaderRaw) == 64);
static_assert(offsetof(CheckpointHeaderRaw, generation) == 32);

struct Checkpoint {
  uint64_t generation = 0;
  uint64_t log_seq = 0;
  PoolState state;
};

// Encodes a checkpoint; fails with NoSpace if it does not fit `slot_size`.
Result<std::vector<uint8_t>> encode_checkpoint(const Uuid& pool, const Checkpoint& c,
                                               uint64_t slot_size);
Result<Checkpoint> decode_checkpoint(const Uuid& pool, std::span<const uint8_t> slot);

// ---- Log records ----
enum class OpType : uint8_t { kCreate = 1, kDestroy = 2, kResize = 3, kAlloc = 4 };

struct LogOp {
  OpType type = OpType::kCreate;
  ReplicaRecord replica;  // kCreate: all fields; others: uuid
  uint64_t new_size = 0;  // kResize
  std::vector<Extent> extents;  // kResize: added clusters; kAlloc: newly mapped clusters
};

struct LogRecordHeaderRaw {
  char magic[8];  // "CASTORLG"
  uint32_t version;
  uint32_t nblocks;  // kBlock-sized blocks the record occupies
  uint8_t pool_uuid[16];
  uint64_t seq;
  uint64_t payload_len;
  uint32_t payload_crc;
  uint32_t header_crc;
};
static_assert(sizeof(LogRecordHeaderRaw) == 56);

struct LogRecord {
  uint64_t seq = 0;
  uint32_t nblocks = 0;
  std::vector<LogOp> ops;
};

// Encodes a record padded to whole blocks.
std::vector<uint8_t> encode_log_record(const Uuid& pool, uint64_t seq,
                                       const std::vector<LogOp>& ops);
// `avail` is the bytes from the record's start to the end of the log ring. Errors:
// InvalidArgument for anything that is not a complete, valid record of this pool.
Result<LogRecord> decode_log_record(const Uuid& pool, std::span<const uint8_t> avail);
// Header only (to learn nblocks before reading the whole record).
Result<LogRecordHeaderRaw> decode_log_header(const Uuid& pool, std::span<const uint8_t> block);

// Applies one op to a state. Errors on ops that contradict it (create of an existing
// uuid or name, op on an unknown replica, remapping an allocated cluster).
Status apply_op(PoolState& s, const LogOp& op);

// Extents <-> flat cluster map (kUnallocated for holes).
std::vector<Extent> map_to_extents(const std::vector<uint32_t>& map);
Result<std::vector<uint32_t>> extents_to_map(const std::vector<Extent>& ex, uint64_t nclusters);

}  // namespace castor::pool
