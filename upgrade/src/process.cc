#include "process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outpost::upgrade {

core::Result<ProgramResult> runProgram(const std::vector<std::string>& argv,
                                       const std::filesystem::path& log) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/')
    return core::invalidArgument("a program is run by absolute path");
  int out[2] = {-1, -1};
  if (log.empty() && ::pipe2(out, O_CLOEXEC) != 0)
    return core::unavailable(std::string("pipe: ") + std::strerror(errno));
  int logFd = -1;
  if (!log.empty()) {
    logFd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logFd < 0) return core::unavailable("cannot open " + log.string());
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return core::unavailable(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 0);
    if (logFd >= 0) {
      ::dup2(logFd, 1);
      ::dup2(logFd, 2);
    } else {
      ::dup2(out[1], 1);
      ::dup2(devnull, 2);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ProgramResult r;
  if (logFd >= 0) ::close(logFd);
  if (out[1] >= 0) {
    ::close(out[1]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) r.output.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace outpost::upgrade
