#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "pool/layout.h"
#include "pool/pool.h"

namespace castor::pool {

Result<Loaded> load_metadata(size_t ndisks, const MemberRead& read,
                             const std::vector<uint64_t>& disk_sizes) {
  Loaded out;
  if (ndisks == 0) return make_error(Errc::kInvalidArgument, "no disks given");
  std::vector<Label> labels(ndisks);
  std::vector<uint8_t> blk(2 * kBlock);
  for (size_t d = 0; d < ndisks; ++d) {
    if (auto st = read(d, 0, blk.data(), blk.size()); !st) {
      return make_error(st.code(), "disk {}: cannot read label: {}", d, st.message());
    }
    auto a = decode_label(std::span(blk).subspan(0, kBlock));
    auto b = decode_label(std::span(blk).subspan(kBlock, kBlock));
    if (!a && !b) {
      return make_error(a.status().code() == Errc::kNotFound ? Errc::kNotFound : Errc::kInvalidArgument,
                        "disk {}: {}", d, a.status().message());
    }
    if (a && b && std::memcmp(blk.data(), blk.data() + kBlock, kBlock) != 0) {
      out.notes.push_back("disk " + std::to_string(d) + ": label copies differ; using copy 0");
    } else if (!a || !b) {
      out.notes.push_back("disk " + std::to_string(d) + ": label copy " + (a ? "1" : "0") +
                          " is damaged (" + (a ? b.status() : a.status()).message() +
                          "); using the other");
    }
    labels[d] = a ? a.value() : b.value();
  }
  const Label& l0 = labels[0];
  out.order.assign(l0.member_count, SIZE_MAX);
  for (size_t d = 0; d < ndisks; ++d) {
    const Label& l = labels[d];
    if (!(l.pool_uuid == l0.pool_uuid)) {
      return make_error(Errc::kInvalidArgument,
                        "disk {} belongs to pool '{}' ({}), disk 0 to pool '{}' ({})", d,
                        l.pool_name, l.pool_uuid.to_string(), l0.pool_name,
                        l0.pool_uuid.to_string());
    }
    if (l.member_count != l0.member_count || l.cluster_size != l0.cluster_size) {
      return make_error(Errc::kInvalidArgument, "disk {}: label disagrees with disk 0's", d);
    }
    if (out.order[l.member_index] != SIZE_MAX) {
      return make_error(Errc::kInvalidArgument, "disks {} and {} are both member {} of pool '{}'",
                        out.order[l.member_index], d, l.member_index, l.pool_name);
    }
    out.order[l.member_index] = d;
    if (d < disk_sizes.size() && disk_sizes[d] < l.members[l.member_index].second) {
      return make_error(Errc::kInvalidArgument, "disk {} is smaller ({} bytes) than its label says ({})",
                        d, disk_sizes[d], l.members[l.member_index].second);
    }
  }
  for (uint32_t m = 0; m < l0.member_count; ++m) {
    if (out.order[m] == SIZE_MAX) {
      return make_error(Errc::kNotFound, "pool '{}' member {} (disk uuid {}) is missing", l0.pool_name,
                        m, l0.members[m].first.to_string());
    }
  }
  const size_t d0 = out.order[0];
  out.label = labels[d0];
  const Label& L = out.label;
  const Uuid& pu = L.pool_uuid;

  // Checkpoints: the valid slot with the highest generation.
  std::vector<uint8_t> slot(L.slot_size);
  std::optional<Checkpoint> best;
  std::string slot_err[2];
  for (int s = 0; s < 2; ++s) {
    if (auto st = read(d0, L.meta_offset + s * L.slot_size, slot.data(), slot.size()); !st) {
      return make_error(st.code(), "cannot read checkpoint slot {}: {}", "AB"[s], st.message());
    }
    auto c = decode_checkpoint(pu, slot);
    if (!c) {
      slot_err[s] = c.status().message();
      continue;
    }
    if (!best || c->generation > best->generation) {
      best = std::move(c.value());
      out.slot = s;
    }
  }
  if (!best) {
    return make_error(Errc::kInvalidArgument,
                      "pool '{}': both checkpoint slots are unusable (A: {}; B: {})", L.pool_name,
                      slot_err[0], slot_err[1]);
  }
  const int other = 1 - out.slot;
  if (!slot_err[other].empty() && slot_err[other] != "checkpoint slot is empty") {
    out.notes.push_back(std::string("checkpoint slot ") + "AB"[other] + " is damaged (" +
                        slot_err[other] + "); using slot " + "AB"[out.slot]);
  }
  out.generation = best->generation;
  out.state = std::move(best->state);

  // Log: replay the records that continue the checkpoint, in sequence.
  std::vector<uint8_t> log(L.log_size);
  if (auto st = read(d0, L.log_offset, log.data(), log.size()); !st) {
    return make_error(st.code(), "cannot read the metadata log: {}", st.message());
  }
  const uint64_t nblocks = L.log_size / kBlock;
  uint64_t pos = 0;
  uint64_t expected = best->log_seq + 1;
  while (pos < nblocks) {
    auto rec = decode_log_record(pu, std::span(log).subspan(pos * kBlock));
    if (!rec || rec->seq != expected) break;
    for (const auto& op : rec->ops) {
      if (auto st = apply_op(out.state, op); !st) {
        return make_error(Errc::kInvalidArgument,
                          "pool '{}': log record {} contradicts checkpoint {}: {}", L.pool_name,
                          rec->seq, best->generation, st.message());
      }
    }
    pos += rec->nblocks;
    ++expected;
    ++out.records_replayed;
  }
  // A readable record further on in the sequence means an acknowledged record in the
  // middle is damaged (a torn write can only be the last one): refuse.
  for (uint64_t b = pos; b < nblocks; ++b) {
    auto h = decode_log_header(pu, std::span(log).subspan(b * kBlock));
    if (h && h->seq > expected) {
      return make_error(Errc::kInvalidArgument,
                        "pool '{}': metadata log record {} is damaged but record {} follows it; "
                        "importing would lose acknowledged operations",
                        L.pool_name, expected, h->seq);
    }
  }
  out.next_seq = expected;
  out.log_head = pos;
  out.notes.push_back("checkpoint slot " + std::string(1, "AB"[out.slot]) + " generation " +
                      std::to_string(out.generation) + ", " +
                      std::to_string(out.records_replayed) + " log record(s) replayed");
  return out;
}

std::vector<std::string> validate_state(const Layout& y, const PoolState& s, uint64_t* used) {
  std::vector<std::string> problems;
  std::vector<int32_t> owner(y.total, -1);
  std::set<std::string> names;
  std::set<std::string> uuids;
  uint64_t n_used = 0;
  for (size_t i = 0; i < s.replicas.size(); ++i) {
    const auto& r = s.replicas[i];
    if (!names.insert(r.name).second) problems.push_back("replica name '" + r.name + "' appears twice");
    if (!uuids.insert(r.uuid.to_string()).second) {
      problems.push_back("replica uuid " + r.uuid.to_string() + " appears twice");
    }
    if (r.size_bytes == 0) problems.push_back("replica '" + r.name + "' has size 0");
    uint64_t nclusters = (r.size_bytes + y.cs - 1) / y.cs;
    if (nclusters > kMaxReplicaClusters) {
      problems.push_back("replica '" + r.name + "' is too large");
      continue;
    }
    auto map = extents_to_map(r.extents, nclusters);
    if (!map) {
      problems.push_back("replica '" + r.name + "': " + map.status().message());
      continue;
    }
    uint64_t holes = 0;
    for (uint64_t logical_cluster = 0; logical_cluster < nclusters; ++logical_cluster) {
      uint32_t physical_cluster = map.value()[logical_cluster];
      if (physical_cluster == kUnallocated) {
        ++holes;
        continue;
      }
      if (physical_cluster >= y.total) {
        problems.push_back(fmt::format("replica '{}' maps cluster {} outside the pool ({} clusters)",
                                       r.name, physical_cluster, y.total));
        continue;
      }
      if (owner[physical_cluster] >= 0) {
        problems.push_back(fmt::format("cluster {} is owned by both '{}' and '{}'", physical_cluster,
                                       s.replicas[owner[physical_cluster]].name, r.name));
        continue;
      }
      owner[physical_cluster] = static_cast<int32_t>(i);
      ++n_used;
    }
    if (!r.thin && holes) {
      problems.push_back(fmt::format("thick replica '{}' has {} unallocated cluster(s)", r.name, holes));
    }
  }
  if (used) *used = n_used;
  return problems;
}

CheckReport check_pool(size_t nmembers, const MemberReader& read,
                       const std::vector<uint64_t>& member_sizes) {
  CheckReport rep;
  auto loaded = load_metadata(nmembers, read, member_sizes);
  if (!loaded) {
    rep.problems.push_back(loaded.status().message());
    return rep;
  }
  rep.label = loaded->label;
  rep.notes = loaded->notes;
  Layout y = Layout::from(loaded->label);
  rep.total_clusters = y.total;
  rep.problems = validate_state(y, loaded->state, &rep.used_clusters);
  rep.state = std::move(loaded->state);
  rep.ok = rep.problems.empty();
  return rep;
}

}  // namespace castor::pool
