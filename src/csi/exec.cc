#include "csi/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace castor::csi {

namespace {
constexpr size_t kMaxOutput = 64 << 10;

std::string last_line(const std::string& s) {
  size_t end = s.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return "";
  size_t start = s.rfind('\n', end);
  return s.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
}
}  // namespace

std::string join_argv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

Result<ExecResult> run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  if (argv.empty()) return make_error(Errc::kInvalidArgument, "empty command");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return make_error(Errc::kInternal, "pipe: {}", std::strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child gets default signal handling and an empty mask (castor-csi blocks
  // SIGINT/SIGTERM for its signal thread).
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return make_error(Errc::kUnavailable, "cannot run {}: {}", argv[0], std::strerror(rc));
  }
  spdlog::debug("exec [{}]: {}", pid, join_argv(argv));
  ExecResult res;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      timed_out = true;
      break;
    }
    ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: the child (and any it left holding the pipe) is done
    if (res.output.size() < kMaxOutput) res.output.append(buf, std::min<size_t>(got, kMaxOutput - res.output.size()));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return make_error(Errc::kTimedOut, "{} did not finish within {} ms", join_argv(argv), timeout.count());
  }
  res.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  spdlog::debug("exec [{}]: exit {}", pid, res.exit_code);
  return res;
}

Result<std::string> run_ok(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  auto r = run(argv, timeout);
  if (!r) return r.status();
  if (r->exit_code != 0) {
    return make_error(Errc::kIoError, "{} failed (exit {}): {}", join_argv(argv), r->exit_code,
                      last_line(r->output));
  }
  return std::move(r->output);
}

}  // namespace castor::csi
