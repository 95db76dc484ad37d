// castor-pool-check: verifies a pool offline from its disks (files or block devices).
// Exit status: 0 consistent, 1 problems found, 2 usage or I/O error.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "pool/pool.h"

int main(int argc, char** argv) {
  CLI::App app{"castor-pool-check: verify a Castor pool offline (the pool must not be imported)"};
  std::vector<std::string> disks;
  std::string output = "text";
  bool verbose = false;
  app.add_option("disks", disks, "every member disk: a path or a file:// / uring:// URI")->required();
  app.add_option("-o,--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));
  app.add_flag("-v,--verbose", verbose, "list the replicas");
  CLI11_PARSE(app, argc, argv);

  std::vector<int> fds;
  std::vector<uint64_t> sizes;
  for (auto& d : disks) {
    for (const char* p : {"file://", "uring://"}) {
      if (d.rfind(p, 0) == 0) d = d.substr(strlen(p));
    }
    if (auto q = d.find('?'); q != std::string::npos) d = d.substr(0, q);
    int fd = open(d.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::fprintf(stderr, "castor-pool-check: error: cannot open '%s': %s\n", d.c_str(), strerror(errno));
      return 2;
    }
    struct stat st;
    uint64_t size = 0;
    if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
      ioctl(fd, BLKGETSIZE64, &size);
    } else {
      size = static_cast<uint64_t>(st.st_size);
    }
    fds.push_back(fd);
    sizes.push_back(size);
  }
  auto reader = [&](size_t i, uint64_t off, void* buf, size_t len) -> castor::Status {
    size_t done = 0;
    while (done < len) {
      ssize_t n = pread(fds[i], static_cast<char*>(buf) + done, len - done, static_cast<off_t>(off + done));
      if (n < 0) return castor::make_error(castor::Errc::kIoError, "read of '{}' failed: {}", disks[i], strerror(errno));
      if (n == 0) {
        std::memset(static_cast<char*>(buf) + done, 0, len - done);  // past the end reads as zero
        break;
      }
      done += static_cast<size_t>(n);
    }
    return castor::Status::ok();
  };
  auto rep = castor::pool::check_pool(disks.size(), reader, sizes);
  for (int fd : fds) close(fd);

  if (output == "json") {
    nlohmann::json j;
    j["ok"] = rep.ok;
    j["problems"] = rep.problems;
    j["notes"] = rep.notes;
    j["pool"] = rep.label.pool_name;
    j["uuid"] = rep.label.pool_uuid.to_string();
    j["cluster_size"] = rep.label.cluster_size;
    j["total_clusters"] = rep.total_clusters;
    j["used_clusters"] = rep.used_clusters;
    j["replicas"] = nlohmann::json::array();
    for (const auto& r : rep.state.replicas) {
      uint64_t alloc = 0;
      for (const auto& e : r.extents) alloc += e.count;
      j["replicas"].push_back({{"name", r.name}, {"uuid", r.uuid.to_string()}, {"size_bytes", r.size_bytes},
                               {"thin", r.thin}, {"allocated_clusters", alloc}});
    }
    std::cout << j.dump(2) << "\n";
  } else {
    if (!rep.label.pool_name.empty()) {
      std::printf("pool %s (%s): %zu replica(s), %lu of %lu clusters of %lu bytes used\n", rep.label.pool_name.c_str(),
                  rep.label.pool_uuid.to_string().c_str(), rep.state.replicas.size(),
                  static_cast<unsigned long>(rep.used_clusters), static_cast<unsigned long>(rep.total_clusters),
                  static_cast<unsigned long>(rep.label.cluster_size));
    }
    for (const auto& n : rep.notes) std::printf("note: %s\n", n.c_str());
    if (verbose) {
      for (const auto& r : rep.state.replicas) {
        uint64_t alloc = 0;
        for (const auto& e : r.extents) alloc += e.count;
        std::printf("replica %s %s size=%lu %s allocated_clusters=%lu\n", r.name.c_str(), r.uuid.to_string().c_str(),
                    static_cast<unsigned long>(r.size_bytes), r.thin ? "thin" : "thick",
                    static_cast<unsigned long>(alloc));
      }
    }
    for (const auto& p : rep.problems) std::printf("PROBLEM: %s\n", p.c_str());
    std::printf("%s\n", rep.ok ? "ok: every invariant holds" : "FAILED");
  }
  return rep.ok ? 0 : 1;
}
