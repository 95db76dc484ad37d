// castorctl bdev: block devices (create, list, destroy, statistics), the built-in
// benchmark (`bdev perf`) and block reads and writes for tests (`bdev read|write`).

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/table.h"

namespace castor::cli {
namespace {

ordered_json bdev_json(const v1::BdevInfo& b) {
  return {{"name", b.name()},
          {"uuid", b.uuid()},
          {"module", b.module()},
          {"uri", b.uri()},
          {"block_size", b.block_size()},
          {"num_blocks", b.num_blocks()},
          {"size_bytes", b.size_bytes()},
          {"buf_align", b.buf_align()},
          {"supported_ops",
           std::vector<std::string>(b.supported_ops().begin(), b.supported_ops().end())},
          {"claimed_by", b.claimed_by()},
          {"open_descs", b.open_descs()}};
}

void print_bdev_table(const std::vector<const v1::BdevInfo*>& bdevs) {
  Table t({"NAME", "MODULE", "SIZE", "BLOCK_SIZE", "BLOCKS", "CLAIMED_BY", "OPEN", "UUID", "URI"});
  for (const auto* b : bdevs) {
    t.add_row({b->name(), b->module(), human_bytes(b->size_bytes()),
               std::to_string(b->block_size()), std::to_string(b->num_blocks()),
               or_dash(b->claimed_by()), std::to_string(b->open_descs()), b->uuid(), b->uri()});
  }
  t.print();
}

int bdev_create(Context& c, const std::string& uri) {
  v1::CreateBdevRequest req;
  req.set_uri(uri);
  v1::BdevInfo info;
  auto ctx = c.call();
  grpc::Status s = c.engine->CreateBdev(ctx.get(), req, &info);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json(bdev_json(info));
  } else {
    print_bdev_table({&info});
  }
  return 0;
}

int bdev_list(Context& c) {
  v1::ListBdevsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->ListBdevs(ctx.get(), v1::ListBdevsRequest(), &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& b : resp.bdevs()) arr.push_back(bdev_json(b));
    print_json(arr);
    return 0;
  }
  std::vector<const v1::BdevInfo*> rows;
  for (const auto& b : resp.bdevs()) rows.push_back(&b);
  print_bdev_table(rows);
  return 0;
}

int bdev_destroy(Context& c, const std::string& name) {
  v1::DestroyBdevRequest req;
  req.set_name(name);
  v1::DestroyBdevResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->DestroyBdev(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"destroyed", name}});
  } else {
    fmt::print("bdev '{}' destroyed\n", name);
  }
  return 0;
}

int bdev_stats(Context& c, const std::string& name) {
  v1::GetBdevStatsRequest req;
  req.set_name(name);
  v1::GetBdevStatsResponse resp;
  auto ctx = c.call();
  grpc::Status s = c.engine->GetBdevStats(ctx.get(), req, &resp);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    ordered_json arr = ordered_json::array();
    for (const auto& b : resp.bdevs()) {
      ordered_json ops = ordered_json::array();
      for (const auto& o : b.ops()) {
        ops.push_back({{"op", o.op()},
                       {"ops", o.ops()},
                       {"bytes", o.bytes()},
                       {"errors", o.errors()},
                       {"latency_mean_us", o.latency_mean_us()},
                       {"latency_p50_us", o.latency_p50_us()},
                       {"latency_p99_us", o.latency_p99_us()},
                       {"latency_p999_us", o.latency_p999_us()}});
      }
      arr.push_back({{"name", b.name()}, {"ops", ops}});
    }
    print_json(arr);
    return 0;
  }
  // Reads and writes always; other operations once they have been used.
  Table t({"BDEV", "OP", "OPS", "BYTES", "ERRORS", "MEAN_US", "P50_US", "P99_US", "P99.9_US"});
  for (const auto& b : resp.bdevs()) {
    for (const auto& o : b.ops()) {
      bool always = o.op() == "read" || o.op() == "write";
      if (!always && o.ops() == 0 && o.errors() == 0) continue;
      t.add_row({b.name(), o.op(), std::to_string(o.ops()), human_bytes(o.bytes()),
                 std::to_string(o.errors()), fixed(o.latency_mean_us(), 1),
                 fixed(o.latency_p50_us(), 1), fixed(o.latency_p99_us(), 1),
                 fixed(o.latency_p999_us(), 1)});
    }
  }
  t.print();
  return 0;
}

struct PerfArgs {
  std::string bdev;
  std::string workload = "randread";
  uint32_t block_size = 4096;
  uint32_t queue_depth = 32;
  double duration_s = 5;
  uint32_t rw_mix_read = 70;
  std::string reactors;  // comma list, empty = all
  uint64_t seed = 1;
};

int bdev_perf(Context& c, const PerfArgs& a) {
  v1::RunBenchmarkRequest req;
  req.set_bdev(a.bdev);
  req.set_workload(a.workload);
  req.set_block_size(a.block_size);
  req.set_queue_depth(a.queue_depth);
  req.set_duration_s(a.duration_s);
  req.set_rw_mix_read(a.rw_mix_read);
  for (const auto& r : split_commas(a.reactors)) {
    req.add_reactors(static_cast<uint32_t>(std::stoul(r)));  // validated by CLI11
  }
  req.set_seed(a.seed);
  v1::BenchmarkResult r;
  auto ctx = c.call(a.duration_s);
  grpc::Status s = c.engine->RunBenchmark(ctx.get(), req, &r);
  if (!s.ok()) return c.fail(s);
  if (c.json()) {
    print_json({{"bdev", r.bdev()},
                {"workload", r.workload()},
                {"block_size", r.block_size()},
                {"queue_depth", r.queue_depth()},
                {"reactors", r.reactors()},
                {"ios", r.ios()},
                {"errors", r.errors()},
                {"seconds", r.seconds()},
                {"iops", r.iops()},
                {"mib_s", r.mib_s()},
                {"mean_us", r.mean_us()},
                {"p50_us", r.p50_us()},
                {"p99_us", r.p99_us()},
                {"p999_us", r.p999_us()}});
    return 0;
  }
  fmt::print("{}", key_values({
                       {"bdev", r.bdev()},
                       {"workload", r.workload()},
                       {"block_size", std::to_string(r.block_size())},
                       {"queue_depth", std::to_string(r.queue_depth())},
                       {"reactors", std::to_string(r.reactors())},
                       {"seconds", fixed(r.seconds(), 2)},
                       {"ios", std::to_string(r.ios())},
                       {"errors", std::to_string(r.errors())},
                       {"iops", fixed(r.iops(), 0)},
                       {"bandwidth", fixed(r.mib_s(), 1) + " MiB/s"},
                       {"latency_us", fmt::format("mean {}  p50 {}  p99 {}  p99.9 {}",
                                                  fixed(r.mean_us(), 1), fixed(r.p50_us(), 1),
                                                  fixed(r.p99_us(), 1), fixed(r.p999_us(), 1))},
                   }));
  return 0;
}

struct BlockArgs {
  std::string bdev;
  std::string offset = "0";  // sizes, validated by size_validator()
  std::string length;
  std::string file;  // "-": stdin (write) or stdout (read)
  std::optional<int> pattern;
  bool flush = false;
};

// The payload of one WriteBlocks/ReadBlocks call. The engine refuses more than 4 MiB in
// one call (api::kMaxBlockIoBytes) and gRPC more than a 4 MiB message, so a transfer is
// cut into calls of this size: under both with room for the other fields, and a multiple
// of every block size a bdev can have (512..64 KiB), so every call stays aligned.
constexpr uint64_t kChunkBytes = 2ull << 20;

// Geometry of bdev `name` from ListBdevs, to refuse a misaligned or too long transfer
// before its first call rather than after part of it. nullopt when the engine does not
// list it (the first call then returns the engine's own error, e.g. NotFound).
std::optional<v1::BdevInfo> find_bdev(Context& c, const std::string& name, grpc::Status* s) {
  v1::ListBdevsResponse resp;
  auto ctx = c.call();
  *s = c.engine->ListBdevs(ctx.get(), v1::ListBdevsRequest(), &resp);
  if (!s->ok()) return std::nullopt;
  for (const auto& b : resp.bdevs()) {
    if (b.name() == name) return b;
  }
  return std::nullopt;
}

// The engine's own checks of a whole transfer (api/block_io.cc words them the same way);
// empty when it fits. `length` unknown (stdin) checks the offset alone.
std::string range_error(const v1::BdevInfo& b, uint64_t offset, std::optional<uint64_t> length) {
  const uint64_t bs = b.block_size();
  if (bs == 0) return "";
  if (offset % bs || (length && *length % bs)) {
    return fmt::format(
        "offset {} and length {} must be multiples of the block size {} of bdev '{}'", offset,
        length ? std::to_string(*length) : "?", bs, b.name());
  }
  if (offset > b.size_bytes() || (length && *length > b.size_bytes() - offset)) {
    return fmt::format("range {}+{} is past the end of bdev '{}' ({} bytes)", offset,
                       length ? std::to_string(*length) : "?", b.name(), b.size_bytes());
  }
  return "";
}

// The error of a call that failed part-way: the engine's message and how far it got.
int fail_after(Context& c, const grpc::Status& s, uint64_t done, const char* what) {
  if (done == 0 || s.error_code() == grpc::StatusCode::UNAVAILABLE) return c.fail(s);
  return c.fail(grpc::Status(s.error_code(),
                             fmt::format("{} (after {} bytes {})", s.error_message(), done, what)));
}

// A redrawn progress line on stderr for transfers of more than one call, when stderr is
// a terminal (never in scripts, never with -o json).
class TransferProgress {
 public:
  TransferProgress(const Context& c, std::string name, std::optional<uint64_t> total)
      : name_(std::move(name)),
        total_(total),
        on_(!c.json() && total && *total > kChunkBytes && ::isatty(STDERR_FILENO)),
        start_(std::chrono::steady_clock::now()) {}
  ~TransferProgress() {
    if (width_) std::fprintf(stderr, "\n");
  }
  void update(uint64_t done) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < *total_ && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    Progress p;
    p.percent = *total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(*total_) : 100;
    p.done_bytes = done;
    p.total_bytes = *total_;
    p.rate_bytes_s = secs > 0 ? static_cast<uint64_t>(static_cast<double>(done) / secs) : 0;
    p.eta = p.rate_bytes_s ? duration_text((*total_ - done) / p.rate_bytes_s) : "-";
    std::string line = progress_line(name_, p);
    std::fprintf(stderr, "\r%s%s", line.c_str(),
                 std::string(width_ > line.size() ? width_ - line.size() : 0, ' ').c_str());
    std::fflush(stderr);
    width_ = line.size();
  }

 private:
  std::string name_;
  std::optional<uint64_t> total_;
  bool on_;
  std::chrono::steady_clock::time_point start_, last_;
  size_t width_ = 0;
};

// Fills `buf` (up to kChunkBytes) from `in`; false with the reason printed on a read error.
bool read_chunk(std::FILE* in, const std::string& path, std::string* buf) {
  buf->resize(kChunkBytes);
  size_t got = 0;
  while (got < buf->size()) {
    size_t n = std::fread(buf->data() + got, 1, buf->size() - got, in);
    if (n == 0) break;
    got += n;
  }
  buf->resize(got);
  if (std::ferror(in)) {
    print_error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
    return false;
  }
  return true;
}

// Writes the file (or stdin, or the pattern) in calls of kChunkBytes, as a stream: the
// input is never held whole. With --flush only the last call flushes (a flush covers
// every write completed before it).
int bdev_write(Context& c, const BlockArgs& a) {
  const uint64_t offset = parse_size(a.offset).value_or(0);
  const bool from_stdin = a.file == "-";
  std::optional<uint64_t> total;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(nullptr, std::fclose);
  if (a.file.empty()) {
    total = parse_size(a.length).value_or(0);
  } else if (!from_stdin) {
    in.reset(std::fopen(a.file.c_str(), "rb"));
    struct stat st {};
    if (!in || ::fstat(::fileno(in.get()), &st) != 0) {
      print_error(fmt::format("cannot read '{}': {}", a.file, std::strerror(errno)));
      return 1;
    }
    if (S_ISREG(st.st_mode)) total = static_cast<uint64_t>(st.st_size);
  }
  std::FILE* src = from_stdin ? stdin : in.get();
  grpc::Status s;
  if (auto b = find_bdev(c, a.bdev, &s)) {
    if (auto e = range_error(*b, offset, total); !e.empty())
      return c.fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, e));
  } else if (!s.ok()) {
    return c.fail(s);
  }
  // The next chunk is read before the current one is sent, to know which one is last.
  auto next_chunk = [&](uint64_t done, std::string* buf) -> bool {
    if (a.file.empty()) {
      buf->assign(std::min(kChunkBytes, *total - done), static_cast<char>(*a.pattern));
      return true;
    }
    return read_chunk(src, from_stdin ? "stdin" : a.file, buf);
  };
  TransferProgress progress(c, a.bdev, total);
  v1::WriteBlocksRequest req;
  req.set_bdev(a.bdev);
  std::string next;
  if (!next_chunk(0, req.mutable_data())) return 1;
  uint64_t done = 0;
  for (;;) {
    const uint64_t n = req.data().size();
    if (!next_chunk(done + n, &next)) return 1;
    const bool last = next.empty();
    req.set_offset_bytes(offset + done);
    req.set_flush(a.flush && last);
    v1::WriteBlocksResponse resp;
    auto ctx = c.call();
    s = c.engine->WriteBlocks(ctx.get(), req, &resp);
    if (!s.ok()) return fail_after(c, s, done, "were written");
    done += n;
    progress.update(done);
    if (last) break;
    req.mutable_data()->swap(next);
  }
  if (c.json()) {
    print_json(
        {{"bdev", a.bdev}, {"offset_bytes", offset}, {"length", done}, {"flushed", a.flush}});
  } else {
    fmt::print("wrote {} bytes to '{}' at offset {}{}\n", done, a.bdev, offset,
               a.flush ? " (flushed)" : "");
  }
  return 0;
}

// Reads in calls of kChunkBytes, each written out before the next is asked for. The
// output file is created once the first call succeeded.
int bdev_read(Context& c, const BlockArgs& a) {
  const uint64_t offset = parse_size(a.offset).value_or(0);
  const uint64_t length = parse_size(a.length).value_or(0);
  const bool to_stdout = a.file.empty() || a.file == "-";
  grpc::Status s;
  if (auto b = find_bdev(c, a.bdev, &s)) {
    if (auto e = range_error(*b, offset, length); !e.empty())
      return c.fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, e));
  } else if (!s.ok()) {
    return c.fail(s);
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(nullptr, std::fclose);
  TransferProgress progress(c, a.bdev, to_stdout ? std::nullopt : std::optional(length));
  v1::ReadBlocksRequest req;
  req.set_bdev(a.bdev);
  uint64_t done = 0;
  do {  // a zero length goes to the engine once, for its error
    req.set_offset_bytes(offset + done);
    req.set_length(std::min(kChunkBytes, length - done));
    v1::ReadBlocksResponse resp;
    auto ctx = c.call();
    s = c.engine->ReadBlocks(ctx.get(), req, &resp);
    if (!s.ok()) return fail_after(c, s, done, "were read");
    const std::string& data = resp.data();
    if (data.size() != req.length()) {
      print_error(
          fmt::format("the engine returned {} bytes for a read of {}", data.size(), req.length()));
      return 1;
    }
    std::FILE* dst = stdout;
    if (!to_stdout) {
      if (!out) out.reset(std::fopen(a.file.c_str(), "wb"));
      if (!out) {
        print_error(fmt::format("cannot write '{}': {}", a.file, std::strerror(errno)));
        return 1;
      }
      dst = out.get();
    }
    // Raw bytes to stdout, whatever -o says: this is for piping into od or cmp.
    if (std::fwrite(data.data(), 1, data.size(), dst) != data.size()) {
      print_error(fmt::format("cannot write to {}: {}", to_stdout ? "stdout" : "'" + a.file + "'",
                              std::strerror(errno)));
      return 1;
    }
    done += data.size();
    progress.update(done);
  } while (done < length);
  if (to_stdout) {
    if (std::fflush(stdout) != 0) {
      print_error(fmt::format("cannot write to stdout: {}", std::strerror(errno)));
      return 1;
    }
    return 0;
  }
  if (std::fclose(out.release()) != 0) {
    print_error(fmt::format("cannot write '{}': {}", a.file, std::strerror(errno)));
    return 1;
  }
  if (c.json()) {
    print_json({{"bdev", a.bdev}, {"offset_bytes", offset}, {"length", done}, {"file", a.file}});
  } else {
    fmt::print("read {} bytes from '{}' at offset {} into {}\n", done, a.bdev, offset, a.file);
  }
  return 0;
}

// Accepts a byte value: 0..255 in decimal or 0x hex.
CLI::Validator byte_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
        const std::string digits = hex ? s.substr(2) : s;
        const char* allowed = hex ? "0123456789abcdefABCDEF" : "0123456789";
        if (digits.empty() || digits.size() > 3 ||
            digits.find_first_not_of(allowed) != std::string::npos ||
            std::stoul(digits, nullptr, hex ? 16 : 10) > 255) {
          return fmt::format("'{}' is not a byte value (0..255 or 0x00..0xff)", s);
        }
        s = std::to_string(std::stoul(digits, nullptr, hex ? 16 : 10));
        return "";
      },
      "BYTE");
}

CLI::Validator index_list_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        for (const auto& i : split_commas(s)) {
          if (i.find_first_not_of("0123456789") != std::string::npos || i.size() > 6) {
            return fmt::format("'{}' is not a reactor index", i);
          }
        }
        return "";
      },
      "LIST");
}

// What the bdev subcommands parse into; shared by their callbacks, so it lives as long
// as the app.
struct BdevOptions {
  std::string uri;
  std::string name;
  PerfArgs perf;
  BlockArgs wr;
  BlockArgs rd;
};

}  // namespace

void add_bdev_commands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<BdevOptions>();
  auto* bdev = app.add_subcommand("bdev", "block devices");
  bdev->require_subcommand(1);
  auto* create = bdev->add_subcommand("create", "create a bdev from a URI");
  create
      ->add_option("URI", o->uri,
                   "e.g. malloc:///m0?size_mb=64, file:///path?size_mb=N, "
                   "fault:///f0?base=m0")
      ->required();
  on_run(create, ctx, [&ctx, o] { return bdev_create(ctx, o->uri); });

  on_run(bdev->add_subcommand("list", "list bdevs"), ctx, [&ctx] { return bdev_list(ctx); });

  auto* destroy = bdev->add_subcommand("destroy", "destroy a bdev");
  destroy->add_option("NAME", o->name, "bdev name")->required();
  on_run(destroy, ctx, [&ctx, o] { return bdev_destroy(ctx, o->name); });

  auto* stats = bdev->add_subcommand("stats", "I/O statistics of one bdev or all");
  stats->add_option("NAME", o->name, "bdev name (default: every bdev)");
  on_run(stats, ctx, [&ctx, o] { return bdev_stats(ctx, o->name); });

  PerfArgs& pa = o->perf;
  auto* perf = bdev->add_subcommand("perf", "run the built-in benchmark on a bdev");
  perf->add_option("NAME", pa.bdev, "bdev name")->required();
  perf->add_option("--workload", pa.workload,
                   "randread, randwrite, read, write, randrw or rw (default randread)")
      ->check(CLI::IsMember({"randread", "randwrite", "read", "write", "randrw", "rw"}));
  perf->add_option("--bs", pa.block_size, "I/O size in bytes (default 4096)")
      ->check(CLI::Range(1u, 1u << 30));
  perf->add_option("--qd", pa.queue_depth, "queue depth per reactor (default 32)")
      ->check(CLI::Range(1u, 4096u));
  perf->add_option("--time", pa.duration_s, "seconds to run (default 5)")
      ->check(CLI::Range(0.001, 300.0));
  perf->add_option("--rwmix", pa.rw_mix_read, "percent reads for randrw/rw (default 70)")
      ->check(CLI::Range(0u, 100u));
  perf->add_option("--reactors", pa.reactors, "reactor indices to run on, e.g. 0,1 (default all)")
      ->check(index_list_validator());
  perf->add_option("--seed", pa.seed, "random seed (default 1)");
  on_run(perf, ctx, [&ctx, o] { return bdev_perf(ctx, o->perf); });

  BlockArgs& wr = o->wr;
  auto* write = bdev->add_subcommand("write", "write blocks to a bdev (tests, debugging)");
  write->add_option("NAME", wr.bdev, "bdev name")->required();
  write->add_option("--offset", wr.offset, "byte offset, a block multiple (default 0)")
      ->check(size_validator());
  auto* w_file = write->add_option(
      "--file", wr.file, "write this file's content (- for stdin); any size, sent in 2 MiB calls");
  auto* w_pattern =
      write->add_option("--pattern", wr.pattern, "fill with this byte (0..255 or 0x..)")
          ->check(byte_validator());
  auto* w_length = write->add_option("--length", wr.length, "bytes to write with --pattern")
                       ->check(size_validator());
  w_file->excludes(w_pattern)->excludes(w_length);
  w_pattern->needs(w_length);
  w_length->needs(w_pattern);
  write->add_flag("--flush", wr.flush, "flush after writing; succeed only once durable");
  write->callback([&ctx, o] {
    // CLI11 cannot say "one of two options" by itself; a usage error (exit 2) like its own.
    if (o->wr.file.empty() && !o->wr.pattern) throw CLI::RequiredError("--file or --pattern");
    ctx.action = [&ctx, o] { return bdev_write(ctx, o->wr); };
  });

  BlockArgs& rd = o->rd;
  auto* read = bdev->add_subcommand("read", "read blocks from a bdev (raw to stdout or a file)");
  read->add_option("NAME", rd.bdev, "bdev name")->required();
  read->add_option("--offset", rd.offset, "byte offset, a block multiple (default 0)")
      ->check(size_validator());
  read->add_option("--length", rd.length, "bytes to read, a block multiple")
      ->required()
      ->check(size_validator());
  read->add_option(
      "--file", rd.file,
      "write the data to this file instead of stdout (any length, read in 2 MiB calls)");
  on_run(read, ctx, [&ctx, o] { return bdev_read(ctx, o->rd); });
}

}  // namespace castor::cli
