#pragma once
// Checks shared by every Store back end, so that both refuse exactly the same batches
// (internal to castor_control_store).

#include <string>
#include <vector>

#include "common/status.h"
#include "control/store/store.h"

namespace castor::control {

// The most writes (and, separately, compares) one commit() may carry. etcd refuses a
// Txn with more than --max-txn-ops (default 128) operations in any one of its lists;
// the etcd back end adds one compare (the fence) and one failure-branch read, and 120
// leaves room for both on every etcd. SQLite has no such limit but refuses the same
// batches, so code tested on one back end does not fail on the other.
inline constexpr size_t kMaxOpsPerCommit = 120;

// Keys under this prefix hold the etcd back end's election (one per candidate); user
// writes there could break the fence, so neither back end accepts them.
inline constexpr const char* kReservedPrefix = "election/";

// InvalidArgument for: an empty batch, an empty key, a key written twice, a write
// under kReservedPrefix, more than kMaxOpsPerCommit ops or compares.
Status check_batch(const std::vector<StoreOp>& ops, const std::vector<StoreCompare>& compares);

// The smallest string greater than every string starting with `prefix` (the exclusive
// end of a prefix range): `prefix` with trailing 0xff bytes dropped and its last byte
// incremented. Empty when there is none (prefix empty or all 0xff): the range is
// unbounded above.
std::string prefix_end(const std::string& prefix);

}  // namespace castor::control
