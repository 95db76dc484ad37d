#include "nexus/types.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace castor::nexus {

const char* child_state_name(ChildState s) {
  switch (s) {
    case ChildState::kHealthy: return "healthy";
    case ChildState::kOutOfSync: return "out_of_sync";
    case ChildState::kFaulted: return "faulted";
    case ChildState::kOffline: return "offline";
  }
  return "unknown";
}

const char* fault_reason_name(FaultReason r) {
  switch (r) {
    case FaultReason::kNone: return "none";
    case FaultReason::kIoError: return "io_error";
    case FaultReason::kTimedOut: return "timed_out";
    case FaultReason::kCannotOpen: return "cannot_open";
    case FaultReason::kOutOfSync: return "out_of_sync";
    case FaultReason::kRebuildFailed: return "rebuild_failed";
    case FaultReason::kByRequest: return "by_request";
    case FaultReason::kNoSpace: return "no_space";
  }
  return "unknown";
}

Result<FaultReason> parse_fault_reason(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(FaultReason::kNoSpace); ++i) {
    auto r = static_cast<FaultReason>(i);
    if (s == fault_reason_name(r)) return r;
  }
  return make_error(Errc::kInvalidArgument, "unknown fault reason '{}'", s);
}

const char* nexus_state_name(NexusState s) {
  switch (s) {
    case NexusState::kOnline: return "online";
    case NexusState::kDegraded: return "degraded";
    case NexusState::kFaulted: return "faulted";
    case NexusState::kFenced: return "fenced";
  }
  return "unknown";
}

const char* rebuild_state_name(RebuildState s) {
  switch (s) {
    case RebuildState::kRunning: return "running";
    case RebuildState::kPaused: return "paused";
    case RebuildState::kStopped: return "stopped";
    case RebuildState::kCompleted: return "completed";
    case RebuildState::kFailed: return "failed";
  }
  return "unknown";
}

namespace {
Result<uint32_t> parse_u32(const std::string& k, const std::string& v) {
  try {
    size_t n = 0;
    unsigned long x = std::stoul(v, &n);
    if (n != v.size() || x > UINT32_MAX) throw std::out_of_range(k);
    return static_cast<uint32_t>(x);
  } catch (...) {
    return make_error(Errc::kInvalidArgument, "nexus option {}='{}' is not a number", k, v);
  }
}
Result<bool> parse_bool(const std::string& k, const std::string& v) {
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  return make_error(Errc::kInvalidArgument, "nexus option {}='{}' is not a boolean", k, v);
}
}  // namespace

Result<NexusOptions> NexusOptions::from_map(const std::map<std::string, std::string>& kv) {
  NexusOptions o;
  for (const auto& entry : kv) {
    // Plain references, not structured bindings: lambdas may capture these in every
    // compiler (clang before 16 cannot capture a binding).
    const std::string& k = entry.first;
    const std::string& v = entry.second;
    auto u32 = [&](uint32_t& dst) -> Status {
      auto r = parse_u32(k, v);
      if (!r) return r.status();
      dst = *r;
      return Status::ok();
    };
    auto boolean = [&](bool& dst) -> Status {
      auto r = parse_bool(k, v);
      if (!r) return r.status();
      dst = *r;
      return Status::ok();
    };
    Status st;
    if (k == "read_policy") {
      if (v == "local_first") {
        o.read_policy = ReadPolicy::kLocalFirst;
      } else if (v == "round_robin") {
        o.read_policy = ReadPolicy::kRoundRobin;
      } else {
        st = make_error(Errc::kInvalidArgument,
                        "read_policy='{}' is invalid (local_first or round_robin)", v);
      }
    } else if (k == "error_policy") {
      if (v == "immediate") {
        o.error_policy = ErrorPolicy::kImmediate;
      } else if (v == "window") {
        o.error_policy = ErrorPolicy::kWindow;
      } else {
        st = make_error(Errc::kInvalidArgument, "error_policy='{}' is invalid (immediate or window)",
                        v);
      }
    } else if (k == "max_errors") {
      st = u32(o.max_errors);
    } else if (k == "error_window_ms") {
      st = u32(o.error_window_ms);
    } else if (k == "child_io_timeout_ms") {
      st = u32(o.child_io_timeout_ms);
    } else if (k == "segment_kb") {
      st = u32(o.rebuild.segment_kb);
    } else if (k == "parallel_segments") {
      st = u32(o.rebuild.parallel_segments);
    } else if (k == "rate_mb_s") {
      st = u32(o.rebuild.rate_mb_s);
    } else if (k == "busy_rate_mb_s") {
      st = u32(o.rebuild.busy_rate_mb_s);
    } else if (k == "verify") {
      st = boolean(o.rebuild.verify);
    } else if (k == "defer_writes") {
      st = boolean(o.rebuild.defer_writes);
    } else if (k == "rebuild_stale") {
      st = boolean(o.rebuild_stale);
    } else if (k == "force") {
      st = boolean(o.force);
    } else if (k == "serialize_overlaps") {
      st = boolean(o.serialize_overlaps);
    } else if (k == "generation") {
      char* end = nullptr;
      errno = 0;
      const unsigned long long g = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || !std::isdigit(static_cast<unsigned char>(v[0])) || *end || errno || g > kMaxGeneration) {
        st = make_error(Errc::kInvalidArgument, "generation='{}' is invalid (0..{})", v, kMaxGeneration);
      } else {
        o.generation = g;
      }
    } else {
      st = make_error(Errc::kInvalidArgument, "unknown nexus option '{}'", k);
    }
    if (!st) return st;
  }
  if (auto st = o.validate(); !st) return st;
  return o;
}

Status NexusOptions::validate() const {
  if (child_io_timeout_ms < 10) {
    return make_error(Errc::kInvalidArgument, "child_io_timeout_ms={} is too small (min 10)",
                      child_io_timeout_ms);
  }
  if (error_policy == ErrorPolicy::kWindow && error_window_ms == 0) {
    return make_error(Errc::kInvalidArgument, "error_window_ms must be > 0 with the window policy");
  }
  if (max_errors > 1000) {
    return make_error(Errc::kInvalidArgument, "max_errors={} is too large (max 1000)", max_errors);
  }
  if (rebuild.segment_kb < 4 || rebuild.segment_kb > 16384 ||
      (rebuild.segment_kb & (rebuild.segment_kb - 1))) {
    return make_error(Errc::kInvalidArgument,
                      "segment_kb={} is invalid (a power of two from 4 to 16384)",
                      rebuild.segment_kb);
  }
  if (rebuild.parallel_segments < 1 || rebuild.parallel_segments > 16) {
    return make_error(Errc::kInvalidArgument, "parallel_segments={} is invalid (1..16)",
                      rebuild.parallel_segments);
  }
  return Status::ok();
}

// ---- SegmentLog ----

SegmentLog::SegmentLog(uint64_t num_blocks, uint64_t segment_blocks)
    : segment_blocks_(segment_blocks),
      base_(std::bit_ceil(std::max<uint64_t>(1, ((num_blocks + segment_blocks - 1) / segment_blocks + 63) / 64))),
      nseg_(0) {
  grow(num_blocks);
}

std::atomic<uint64_t>& SegmentLog::word(uint64_t w) const {
  if (w < base_) return chunks_[0].load(std::memory_order_acquire)[w];
  const auto k = static_cast<size_t>(std::bit_width(w / base_));  // w in [base 2^(k-1), base 2^k)
  return chunks_[k].load(std::memory_order_acquire)[w - (base_ << (k - 1))];
}

void SegmentLog::grow(uint64_t num_blocks) {
  const uint64_t nseg = (num_blocks + segment_blocks_ - 1) / segment_blocks_;
  if (nseg <= nseg_.load(std::memory_order_relaxed)) return;
  const uint64_t words = (nseg + 63) / 64;
  // Chunks 0..k-1 hold base * 2^(k-1) words (k >= 1).
  auto capacity = [this](size_t k) -> uint64_t { return k == 0 ? 0 : base_ << (k - 1); };
  while (capacity(nchunks_) < words) {
    if (nchunks_ == kMaxChunks) std::abort();  // 2^39 x base words: beyond any device
    const uint64_t n = nchunks_ == 0 ? base_ : base_ << (nchunks_ - 1);
    auto chunk = std::make_unique<std::atomic<uint64_t>[]>(n);
    for (uint64_t i = 0; i < n; ++i) chunk[i].store(0, std::memory_order_relaxed);
    chunks_[nchunks_].store(chunk.get(), std::memory_order_release);
    owned_.push_back(std::move(chunk));
    ++nchunks_;
  }
  // Bits past the old count were never set (mark and set_runs stop at it): the new
  // segments start clear.
  nseg_.store(nseg, std::memory_order_release);
}

void SegmentLog::mark_segment(uint64_t seg) {
  if (seg >= num_segments()) return;
  auto& w = word(seg / 64);
  uint64_t bit = uint64_t{1} << (seg % 64);
  // Most writes hit an already-set bit: test first to avoid the locked instruction.
  if (!(w.load(std::memory_order_relaxed) & bit)) w.fetch_or(bit, std::memory_order_relaxed);
}

void SegmentLog::mark(uint64_t first_block, uint64_t n) {
  if (n == 0) n = 1;
  const uint64_t nseg = num_segments();
  uint64_t s0 = first_block / segment_blocks_;
  uint64_t s1 = (first_block + n - 1) / segment_blocks_;
  for (uint64_t s = s0; s <= s1 && s < nseg; ++s) mark_segment(s);
}

void SegmentLog::mark_all() {
  const uint64_t nseg = num_segments();
  for (uint64_t w = 0; w < nwords(); ++w) {
    const uint64_t left = nseg - w * 64;
    word(w).store(left >= 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1, std::memory_order_relaxed);
  }
}

void SegmentLog::unmark_segment(uint64_t seg) {
  if (seg >= num_segments()) return;
  word(seg / 64).fetch_and(~(uint64_t{1} << (seg % 64)), std::memory_order_relaxed);
}

bool SegmentLog::all_set(uint64_t first_block, uint64_t n) const {
  if (n == 0) n = 1;
  if ((first_block + n - 1) / segment_blocks_ >= num_segments()) return false;
  return covers(first_block, n);
}

bool SegmentLog::covers(uint64_t first_block, uint64_t n) const {
  if (n == 0) n = 1;
  const uint64_t nseg = num_segments();
  uint64_t s0 = first_block / segment_blocks_;
  uint64_t s1 = (first_block + n - 1) / segment_blocks_;
  for (uint64_t s = s0; s <= s1 && s < nseg; ++s) {
    if (!test(s)) return false;
  }
  return true;
}

void SegmentLog::merge(const std::vector<std::pair<uint64_t, uint64_t>>& runs) {
  const uint64_t nseg = num_segments();
  for (const auto& [first, count] : runs) {
    for (uint64_t s = first; s < first + count && s < nseg; ++s) mark_segment(s);
  }
}

bool SegmentLog::test(uint64_t seg) const {
  return seg < num_segments() && (word(seg / 64).load(std::memory_order_relaxed) >> (seg % 64) & 1);
}

uint64_t SegmentLog::count() const {
  uint64_t n = 0;
  const uint64_t nw = nwords();
  for (uint64_t i = 0; i < nw; ++i) {
    n += static_cast<uint64_t>(std::popcount(word(i).load(std::memory_order_relaxed)));
  }
  return n;
}

std::vector<uint64_t> SegmentLog::take() {
  std::vector<uint64_t> out;
  const uint64_t nw = nwords();
  for (uint64_t i = 0; i < nw; ++i) {
    uint64_t w = word(i).exchange(0, std::memory_order_acq_rel);
    while (w) {
      int b = std::countr_zero(w);
      out.push_back(i * 64 + static_cast<uint64_t>(b));
      w &= w - 1;
    }
  }
  return out;
}

void SegmentLog::clear() {
  const uint64_t nw = nwords();
  for (uint64_t i = 0; i < nw; ++i) word(i).store(0, std::memory_order_relaxed);
}

std::vector<std::pair<uint64_t, uint64_t>> SegmentLog::runs() const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  const uint64_t nseg = num_segments();
  for (uint64_t s = 0; s < nseg; ++s) {
    if (!test(s)) continue;
    if (!out.empty() && out.back().first + out.back().second == s) {
      out.back().second++;
    } else {
      out.emplace_back(s, 1);
    }
  }
  return out;
}

void SegmentLog::set_runs(const std::vector<std::pair<uint64_t, uint64_t>>& runs) {
  merge(runs);
}

}  // namespace castor::nexus
