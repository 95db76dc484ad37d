#include <string>
#include <vector>

#include "pool/format.h"

using namespace castor::pool;

extern const std::vector<std::string> kFuzzSeeds = [] {
  const castor::Uuid pool = castor::Uuid::from_name("fuzz-pool");
  std::vector<std::string> out;
  auto add = [&](char tag, const std::vector<uint8_t>& b) {
    out.push_back(std::string(1, tag) + std::string(1, '\1') + std::string(b.begin(), b.end()));
  };
  Label l;
  l.pool_uuid = pool;
  l.pool_name = "p0";
  l.cluster_size = 1 << 20;
  l.member_count = 1;
  l.meta_offset = 8192;
  l.slot_size = 8192;
  l.log_offset = 8192 + 2 * 8192;
  l.log_size = 16384;
  l.data_offset = 1 << 20;
  l.members = {{castor::Uuid::from_name("d0"), 64ull << 20}};
  add(0, encode_label(l));
  ReplicaRecord r;
  r.uuid = castor::Uuid::from_name("r");
  r.name = "r0";
  r.size_bytes = 4 << 20;
  r.thin = true;
  r.extents = {{0, 3, 2}};
  Checkpoint c;
  c.generation = 2;
  c.log_seq = 5;
  c.state.replicas = {r};
  add(1, encode_checkpoint(pool, c, 1 << 20).value());
  LogOp create;
  create.type = OpType::kCreate;
  create.replica = r;
  LogOp alloc;
  alloc.type = OpType::kAlloc;
  alloc.replica.uuid = r.uuid;
  alloc.extents = {{2, 9, 1}};
  LogOp resize;
  resize.type = OpType::kResize;
  resize.replica.uuid = r.uuid;
  resize.new_size = 8 << 20;
  LogOp destroy;
  destroy.type = OpType::kDestroy;
  destroy.replica.uuid = r.uuid;
  add(2, encode_log_record(pool, 6, {create, alloc, resize, destroy}));
  return out;
}();
