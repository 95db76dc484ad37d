#pragma once
// Running the node's tools (nvme, iscsiadm, nbd-client, mkfs.*, resize2fs, xfs_growfs):
// argv only (no shell), stdout and stderr captured together, a deadline after which the
// child is killed. Every command castor-csi runs goes through here and is logged.

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace castor::csi {

struct ExecResult {
  int exit_code = -1;   // -1: killed (deadline) or could not start
  std::string output;   // stdout and stderr, interleaved, at most 64 KiB kept
};

// Runs argv[0] (looked up in PATH) with argv. Fails only when it cannot start or misses
// the deadline; a non-zero exit is in the result.
Result<ExecResult> run(const std::vector<std::string>& argv,
                       std::chrono::milliseconds timeout = std::chrono::seconds(120));

// run() that also fails on a non-zero exit, with the command's last output line.
Result<std::string> run_ok(const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout = std::chrono::seconds(120));

// "nvme connect -t tcp ..." for messages.
std::string join_argv(const std::vector<std::string>& argv);

}  // namespace castor::csi
