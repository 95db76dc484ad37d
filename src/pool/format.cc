#include "pool/format.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "common/crc32c.h"

namespace castor::pool {
namespace {

constexpr char kLabelMagic[8] = {'C', 'A', 'S', 'T', 'O', 'R', 'P', 'L'};
constexpr char kCkptMagic[8] = {'C', 'A', 'S', 'T', 'O', 'R', 'C', 'K'};
constexpr char kLogMagic[8] = {'C', 'A', 'S', 'T', 'O', 'R', 'L', 'G'};

// Append-only little-endian writer (this code assumes a little-endian host, checked
// below, so integers are copied as they are).
static_assert(std::endian::native == std::endian::little);

class Writer {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void uuid(const Uuid& u) { raw(u.bytes.data(), 16); }
  void str(const std::string& s) {
    u8(static_cast<uint8_t>(s.size()));
    raw(s.data(), s.size());
  }
  void extents(const std::vector<Extent>& ex) {
    u32(static_cast<uint32_t>(ex.size()));
    for (const auto& e : ex) {
      u32(e.logical);
      u32(e.physical);
      u32(e.count);
    }
  }
  void raw(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  std::vector<uint8_t>& buf() { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

// Bounds-checked reader: every accessor fails (sticky) instead of reading past the end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == b_.size(); }
  size_t left() const { return b_.size() - pos_; }
  uint8_t u8() {
    uint8_t v = 0;
    get(&v, 1);
    return v;
  }
  uint32_t u32() {
    uint32_t v = 0;
    get(&v, 4);
    return v;
  }
  uint64_t u64() {
    uint64_t v = 0;
    get(&v, 8);
    return v;
  }
  Uuid uuid() {
    Uuid u;
    get(u.bytes.data(), 16);
    return u;
  }
  std::string str(size_t max) {
    uint8_t n = u8();
    if (n > max || n > left()) {
      ok_ = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::vector<Extent> extents() {
    uint32_t n = u32();
    if (!ok_ || uint64_t{n} * 12 > left()) {
      ok_ = false;
      return {};
    }
    std::vector<Extent> ex(n);
    for (auto& e : ex) {
      e.logical = u32();
      e.physical = u32();
      e.count = u32();
    }
    return ex;
  }

 private:
  void get(void* out, size_t n) {
    if (!ok_ || n > left()) {
      ok_ = false;
      return;
    }
    std::memcpy(out, b_.data() + pos_, n);
    pos_ += n;
  }
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void write_record(Writer& w, const ReplicaRecord& r) {
  w.uuid(r.uuid);
  w.str(r.name);
  w.u64(r.size_bytes);
  w.u8(r.thin ? 1 : 0);
  w.extents(r.extents);
}

bool read_record(Reader& rd, ReplicaRecord& r) {
  r.uuid = rd.uuid();
  r.name = rd.str(kMaxNameLen);
  r.size_bytes = rd.u64();
  uint8_t thin = rd.u8();
  r.thin = thin == 1;
  r.extents = rd.extents();
  return rd.ok() && thin <= 1 && !r.name.empty();
}

void write_op(Writer& w, const LogOp& op) {
  w.u8(static_cast<uint8_t>(op.type));
  switch (op.type) {
    case OpType::kCreate: write_record(w, op.replica); break;
    case OpType::kDestroy: w.uuid(op.replica.uuid); break;
    case OpType::kResize:
      w.uuid(op.replica.uuid);
      w.u64(op.new_size);
      w.extents(op.extents);
      break;
    case OpType::kAlloc:
      w.uuid(op.replica.uuid);
      w.extents(op.extents);
      break;
  }
}

bool read_op(Reader& rd, LogOp& op) {
  uint8_t t = rd.u8();
  switch (t) {
    case static_cast<uint8_t>(OpType::kCreate):
      op.type = OpType::kCreate;
      return read_record(rd, op.replica);
    case static_cast<uint8_t>(OpType::kDestroy):
      op.type = OpType::kDestroy;
      op.replica.uuid = rd.uuid();
      return rd.ok();
    case static_cast<uint8_t>(OpType::kResize):
      op.type = OpType::kResize;
      op.replica.uuid = rd.uuid();
      op.new_size = rd.u64();
      op.extents = rd.extents();
      return rd.ok();
    case static_cast<uint8_t>(OpType::kAlloc):
      op.type = OpType::kAlloc;
      op.replica.uuid = rd.uuid();
      op.extents = rd.extents();
      return rd.ok();
    default: return false;
  }
}

template <class Raw>
uint32_t header_crc(const Raw& h) {
  return crc32c(&h, offsetof(Raw, header_crc));
}

}  // namespace

std::vector<uint8_t> encode_label(const Label& l) {
  std::vector<uint8_t> block(kBlock, 0);
  LabelRaw raw{};
  std::memcpy(raw.magic, kLabelMagic, 8);
  raw.version = kFormatVersion;
  raw.state = kLabelActive;
  std::memcpy(raw.pool_uuid, l.pool_uuid.bytes.data(), 16);
  std::strncpy(raw.pool_name, l.pool_name.c_str(), sizeof(raw.pool_name) - 1);
  raw.cluster_size = l.cluster_size;
  raw.member_index = l.member_index;
  raw.member_count = l.member_count;
  raw.meta_offset = l.meta_offset;
  raw.slot_size = l.slot_size;
  raw.log_offset = l.log_offset;
  raw.log_size = l.log_size;
  raw.data_offset = l.data_offset;
  for (size_t i = 0; i < l.members.size() && i < kMaxMembers; ++i) {
    std::memcpy(raw.members[i].uuid, l.members[i].first.bytes.data(), 16);
    raw.members[i].size_bytes = l.members[i].second;
  }
  raw.crc = crc32c(&raw, offsetof(LabelRaw, crc));
  std::memcpy(block.data(), &raw, sizeof(raw));
  return block;
}

Result<Label> decode_label(std::span<const uint8_t> block) {
  if (block.size() < sizeof(LabelRaw)) {
    return make_error(Errc::kInvalidArgument, "label block too short ({} bytes)", block.size());
  }
  LabelRaw raw;
  std::memcpy(&raw, block.data(), sizeof(raw));
  if (std::memcmp(raw.magic, kLabelMagic, 8) != 0) {
    return make_error(Errc::kNotFound, "not a Castor pool label");
  }
  if (raw.crc != crc32c(&raw, offsetof(LabelRaw, crc))) {
    return make_error(Errc::kInvalidArgument, "label checksum mismatch");
  }
  if (raw.version != kFormatVersion) {
    return make_error(Errc::kUnsupported, "unsupported pool format version {} (this build reads {})",
                      raw.version, kFormatVersion);
  }
  if (raw.state != kLabelActive) {
    return make_error(Errc::kInvalidArgument, "label state {} is not active", raw.state);
  }
  Label l;
  std::memcpy(l.pool_uuid.bytes.data(), raw.pool_uuid, 16);
  raw.pool_name[sizeof(raw.pool_name) - 1] = 0;
  l.pool_name = raw.pool_name;
  l.cluster_size = raw.cluster_size;
  l.member_index = raw.member_index;
  l.member_count = raw.member_count;
  l.meta_offset = raw.meta_offset;
  l.slot_size = raw.slot_size;
  l.log_offset = raw.log_offset;
  l.log_size = raw.log_size;
  l.data_offset = raw.data_offset;
  if (l.cluster_size < kMinClusterSize || l.cluster_size > kMaxClusterSize ||
      (l.cluster_size & (l.cluster_size - 1))) {
    return make_error(Errc::kInvalidArgument, "label has invalid cluster size {}", l.cluster_size);
  }
  if (l.member_count == 0 || l.member_count > kMaxMembers || l.member_index >= l.member_count) {
    return make_error(Errc::kInvalidArgument, "label has invalid member {} of {}", l.member_index,
                      l.member_count);
  }
  if (l.pool_name.empty()) return make_error(Errc::kInvalidArgument, "label has no pool name");
  if (l.meta_offset < 2 * kBlock || l.slot_size < kBlock || l.slot_size % kBlock ||
      l.log_offset != l.meta_offset + 2 * l.slot_size || l.log_size < kBlock ||
      l.log_size % kBlock || l.data_offset < l.log_offset + l.log_size ||
      l.data_offset % l.cluster_size) {
    return make_error(Errc::kInvalidArgument, "label has an inconsistent metadata layout");
  }
  for (uint32_t i = 0; i < l.member_count; ++i) {
    Uuid u;
    std::memcpy(u.bytes.data(), raw.members[i].uuid, 16);
    if (raw.members[i].size_bytes % l.cluster_size) {
      return make_error(Errc::kInvalidArgument, "member {} size is not a multiple of the cluster size",
                        i);
    }
    l.members.emplace_back(u, raw.members[i].size_bytes);
  }
  if (l.members[0].second <= l.data_offset) {
    return make_error(Errc::kInvalidArgument, "member 0 has no room for data");
  }
  return l;
}

Result<std::vector<uint8_t>> encode_checkpoint(const Uuid& pool, const Checkpoint& c,
                                               uint64_t slot_size) {
  Writer w;
  CheckpointHeaderRaw h{};
  w.raw(&h, sizeof(h));  // placeholder, filled in below
  w.u32(static_cast<uint32_t>(c.state.replicas.size()));
  for (const auto& r : c.state.replicas) write_record(w, r);
  auto& buf = w.buf();
  std::memcpy(h.magic, kCkptMagic, 8);
  h.version = kFormatVersion;
  std::memcpy(h.pool_uuid, pool.bytes.data(), 16);
  h.generation = c.generation;
  h.log_seq = c.log_seq;
  h.payload_len = buf.size() - sizeof(h);
  h.payload_crc = crc32c(buf.data() + sizeof(h), h.payload_len);
  h.header_crc = header_crc(h);
  std::memcpy(buf.data(), &h, sizeof(h));
  if (buf.size() > slot_size) {
    return make_error(Errc::kNoSpace, "pool metadata ({} bytes) exceeds its checkpoint slot ({})",
                      buf.size(), slot_size);
  }
  buf.resize((buf.size() + kBlock - 1) / kBlock * kBlock, 0);
  return std::move(buf);
}

Result<Checkpoint> decode_checkpoint(const Uuid& pool, std::span<const uint8_t> slot) {
  CheckpointHeaderRaw h;
  if (slot.size() < sizeof(h)) return make_error(Errc::kInvalidArgument, "checkpoint slot too short");
  std::memcpy(&h, slot.data(), sizeof(h));
  if (std::memcmp(h.magic, kCkptMagic, 8) != 0) {
    return make_error(Errc::kNotFound, "checkpoint slot is empty");
  }
  if (h.header_crc != header_crc(h)) {
    return make_error(Errc::kInvalidArgument, "checkpoint header checksum mismatch");
  }
  if (h.version != kFormatVersion) {
    return make_error(Errc::kUnsupported, "checkpoint format version {} unsupported", h.version);
  }
  if (std::memcmp(h.pool_uuid, pool.bytes.data(), 16) != 0) {
    return make_error(Errc::kInvalidArgument, "checkpoint belongs to another pool");
  }
  if (h.payload_len > slot.size() - sizeof(h)) {
    return make_error(Errc::kInvalidArgument, "checkpoint payload length {} exceeds its slot",
                      h.payload_len);
  }
  auto payload = slot.subspan(sizeof(h), h.payload_len);
  if (crc32c(payload.data(), payload.size()) != h.payload_crc) {
    return make_error(Errc::kInvalidArgument, "checkpoint payload checksum mismatch");
  }
  Reader rd(payload);
  Checkpoint c;
  c.generation = h.generation;
  c.log_seq = h.log_seq;
  uint32_t n = rd.u32();
  if (!rd.ok() || n > kMaxReplicas) {
    return make_error(Errc::kInvalidArgument, "checkpoint replica count {} is invalid", n);
  }
  c.state.replicas.resize(n);
  for (auto& r : c.state.replicas) {
    if (!read_record(rd, r)) {
      return make_error(Errc::kInvalidArgument, "checkpoint holds a malformed replica record");
    }
  }
  if (!rd.at_end()) return make_error(Errc::kInvalidArgument, "checkpoint has trailing bytes");
  return c;
}

std::vector<uint8_t> encode_log_record(const Uuid& pool, uint64_t seq,
                                       const std::vector<LogOp>& ops) {
  Writer w;
  LogRecordHeaderRaw h{};
  w.raw(&h, sizeof(h));
  w.u32(static_cast<uint32_t>(ops.size()));
  for (const auto& op : ops) write_op(w, op);
  auto& buf = w.buf();
  std::memcpy(h.magic, kLogMagic, 8);
  h.version = kFormatVersion;
  std::memcpy(h.pool_uuid, pool.bytes.data(), 16);
  h.seq = seq;
  h.payload_len = buf.size() - sizeof(h);
  h.payload_crc = crc32c(buf.data() + sizeof(h), h.payload_len);
  size_t padded = (buf.size() + kBlock - 1) / kBlock * kBlock;
  h.nblocks = static_cast<uint32_t>(padded / kBlock);
  h.header_crc = header_crc(h);
  std::memcpy(buf.data(), &h, sizeof(h));
  buf.resize(padded, 0);
  return std::move(buf);
}

Result<LogRecordHeaderRaw> decode_log_header(const Uuid& pool, std::span<const uint8_t> block) {
  LogRecordHeaderRaw h;
  if (block.size() < sizeof(h)) return make_error(Errc::kInvalidArgument, "log block too short");
  std::memcpy(&h, block.data(), sizeof(h));
  if (std::memcmp(h.magic, kLogMagic, 8) != 0) {
    return make_error(Errc::kInvalidArgument, "no log record here");
  }
  if (h.header_crc != header_crc(h)) {
    return make_error(Errc::kInvalidArgument, "log record header checksum mismatch");
  }
  if (h.version != kFormatVersion) {
    return make_error(Errc::kUnsupported, "log record version {} unsupported", h.version);
  }
  if (std::memcmp(h.pool_uuid, pool.bytes.data(), 16) != 0) {
    return make_error(Errc::kInvalidArgument, "log record of another pool");
  }
  if (h.nblocks == 0 || h.payload_len + sizeof(h) > uint64_t{h.nblocks} * kBlock) {
    return make_error(Errc::kInvalidArgument, "log record length fields are inconsistent");
  }
  return h;
}

Result<LogRecord> decode_log_record(const Uuid& pool, std::span<const uint8_t> avail) {
  auto h = decode_log_header(pool, avail);
  if (!h) return h.status();
  if (uint64_t{h->nblocks} * kBlock > avail.size()) {
    return make_error(Errc::kInvalidArgument, "log record runs past the end of the log");
  }
  auto payload = avail.subspan(sizeof(LogRecordHeaderRaw), h->payload_len);
  if (crc32c(payload.data(), payload.size()) != h->payload_crc) {
    return make_error(Errc::kInvalidArgument, "log record payload checksum mismatch");
  }
  Reader rd(payload);
  LogRecord rec;
  rec.seq = h->seq;
  rec.nblocks = h->nblocks;
  uint32_t n = rd.u32();
  if (!rd.ok() || n > 1u << 20) {
    return make_error(Errc::kInvalidArgument, "log record op count is invalid");
  }
  for (uint32_t i = 0; i < n; ++i) {
    LogOp op;
    if (!read_op(rd, op)) return make_error(Errc::kInvalidArgument, "log record holds a malformed op");
    rec.ops.push_back(std::move(op));
  }
  if (!rd.at_end()) return make_error(Errc::kInvalidArgument, "log record has trailing bytes");
  return rec;
}

Status apply_op(PoolState& s, const LogOp& op) {
  auto find = [&](const Uuid& u) {
    return std::find_if(s.replicas.begin(), s.replicas.end(),
                        [&](const ReplicaRecord& r) { return r.uuid == u; });
  };
  auto it = find(op.replica.uuid);
  switch (op.type) {
    case OpType::kCreate:
      if (it != s.replicas.end()) {
        return make_error(Errc::kInvalidArgument, "create of existing replica {}",
                          op.replica.uuid.to_string());
      }
      for (const auto& r : s.replicas) {
        if (r.name == op.replica.name) {
          return make_error(Errc::kInvalidArgument, "create of duplicate name {}", r.name);
        }
      }
      if (s.replicas.size() >= kMaxReplicas) {
        return make_error(Errc::kInvalidArgument, "too many replicas");
      }
      s.replicas.push_back(op.replica);
      return Status::ok();
    case OpType::kDestroy:
    case OpType::kResize:
    case OpType::kAlloc:
      if (it == s.replicas.end()) {
        return make_error(Errc::kInvalidArgument, "op on unknown replica {}",
                          op.replica.uuid.to_string());
      }
      if (op.type == OpType::kDestroy) {
        s.replicas.erase(it);
      } else {
        if (op.type == OpType::kResize) {
          if (op.new_size < it->size_bytes) {
            return make_error(Errc::kInvalidArgument, "resize shrinks replica {}", it->name);
          }
          it->size_bytes = op.new_size;
        }
        it->extents.insert(it->extents.end(), op.extents.begin(), op.extents.end());
      }
      return Status::ok();
  }
  return make_error(Errc::kInvalidArgument, "unknown op");
}

std::vector<Extent> map_to_extents(const std::vector<uint32_t>& map) {
  std::vector<Extent> out;
  for (uint32_t i = 0; i < map.size(); ++i) {
    if (map[i] == kUnallocated) continue;
    if (!out.empty() && out.back().logical + out.back().count == i &&
        out.back().physical + out.back().count == map[i]) {
      out.back().count++;
    } else {
      out.push_back({i, map[i], 1});
    }
  }
  return out;
}

Result<std::vector<uint32_t>> extents_to_map(const std::vector<Extent>& ex, uint64_t nclusters) {
  if (nclusters > kMaxReplicaClusters) {
    return make_error(Errc::kInvalidArgument, "replica of {} clusters exceeds the maximum {}", nclusters,
                      kMaxReplicaClusters);
  }
  std::vector<uint32_t> map(nclusters, kUnallocated);
  for (const auto& e : ex) {
    if (e.count == 0 || uint64_t{e.logical} + e.count > nclusters ||
        uint64_t{e.physical} + e.count >= kUnallocated) {
      return make_error(Errc::kInvalidArgument, "extent [{}+{}] is outside the replica", e.logical,
                        e.count);
    }
    for (uint32_t k = 0; k < e.count; ++k) {
      if (map[e.logical + k] != kUnallocated) {
        return make_error(Errc::kInvalidArgument, "logical cluster {} is mapped twice",
                          e.logical + k);
      }
      map[e.logical + k] = e.physical + k;
    }
  }
  return map;
}

}  // namespace castor::pool
