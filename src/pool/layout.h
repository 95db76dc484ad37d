#pragma once
// Where clusters live: member 0 holds the labels, checkpoint slots and log before its
// first data cluster; other members hold two label blocks in their first cluster.
// Physical cluster numbers run over member 0's data clusters, then member 1's, ...

#include <functional>
#include <vector>

#include "pool/format.h"

namespace castor::pool {

struct Layout {
  uint64_t cs = 0;
  std::vector<uint64_t> first;       // global number of each member's first data cluster
  std::vector<uint64_t> data_start;  // byte offset of each member's first data cluster
  std::vector<uint64_t> count;       // data clusters per member
  uint64_t total = 0;

  static Layout from(const Label& l) {
    Layout y;
    y.cs = l.cluster_size;
    for (size_t i = 0; i < l.members.size(); ++i) {
      uint64_t start = i == 0 ? l.data_offset : l.cluster_size;
      uint64_t size = l.members[i].second;
      uint64_t n = size > start ? (size - start) / l.cluster_size : 0;
      y.first.push_back(y.total);
      y.data_start.push_back(start);
      y.count.push_back(n);
      y.total += n;
    }
    return y;
  }
  // (member, byte offset) of physical cluster `physical_cluster`. REQUIRES: physical_cluster < total.
  std::pair<size_t, uint64_t> locate(uint64_t physical_cluster) const {
    size_t m = 0;
    while (m + 1 < first.size() && physical_cluster >= first[m + 1]) ++m;
    return {m, data_start[m] + (physical_cluster - first[m]) * cs};
  }
};

// Metadata as loaded from disk (shared by import and the offline checker).
struct Loaded {
  Label label;                     // member 0's label
  std::vector<size_t> order;       // order[member_index] = index of the disk given
  int slot = 0;                    // checkpoint slot used (0 = A, 1 = B)
  uint64_t generation = 0;
  PoolState state;                 // checkpoint + replayed log
  uint64_t next_seq = 1;
  uint64_t log_head = 0;           // block index of the next log record
  uint64_t records_replayed = 0;
  std::vector<std::string> notes;  // fall-backs taken, what was found
};

using MemberRead = std::function<Status(size_t disk, uint64_t offset, void* buf, size_t len)>;

// Reads labels of `ndisks` disks, the checkpoints and the log; replays. Errors name
// the disk, the region and the problem.
Result<Loaded> load_metadata(size_t ndisks, const MemberRead& read,
                             const std::vector<uint64_t>& disk_sizes);
// Invariants of a loaded state; returns the problems found (empty = consistent) and
// the number of used clusters.
std::vector<std::string> validate_state(const Layout& y, const PoolState& s, uint64_t* used);

}  // namespace castor::pool
