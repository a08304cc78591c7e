#include "support/test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace outpost::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "outpost-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

bool waitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    // Polling interval while waiting on the condition, not a synchronisation sleep.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

std::string readFile(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

fs::path binDir() {
  const char* dir = std::getenv("OUTPOST_BIN_DIR");
  return dir ? fs::path(dir) : fs::current_path();
}

std::string outpostd() { return (binDir() / "outpostd").string(); }
std::string outpostctl() { return (binDir() / "outpostctl").string(); }

Child::Child(const std::vector<std::string>& argv, const std::vector<std::string>& extraEnv) {
  std::string outPath = (dir_.path() / "stdout").string();
  std::string errPath = (dir_.path() / "stderr").string();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int o = open(outPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (const auto& kv : extraEnv) putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Child::~Child() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Child::signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

int Child::wait(std::chrono::milliseconds timeout) {
  if (!reaped_) {
    int status = 0;
    bool done = waitFor(
        [&] {
          int r = waitpid(pid_, &status, WNOHANG);
          return r == pid_;
        },
        timeout);
    if (!done) return -1;
    reaped_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return status_;
}

bool Child::running() { return wait(std::chrono::milliseconds(0)) == -1; }

std::string Child::out() const { return readFile(dir_.path() / "stdout"); }
std::string Child::err() const { return readFile(dir_.path() / "stderr"); }

int run(const std::vector<std::string>& argv, std::string* out, std::string* err,
        std::chrono::milliseconds timeout) {
  Child child(argv);
  int code = child.wait(timeout);
  if (out) *out = child.out();
  if (err) *err = child.err();
  return code;
}

std::string ctl(const std::string& config, const std::vector<std::string>& args, int* rc,
                std::string* err) {
  std::vector<std::string> argv = {outpostctl(), "-c", config};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  int code = run(argv, &out, err);
  if (rc) *rc = code;
  return out;
}

ChildEnd runInChild(const std::function<void()>& fn) {
  TempDir dir;
  auto errPath = dir / "stderr";
  int fd = ::open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("runInChild: cannot create " + errPath.string());
  pid_t pid = fork();
  if (pid < 0) {
    ::close(fd);
    throw std::runtime_error("runInChild: fork failed");
  }
  if (pid == 0) {
    dup2(fd, STDERR_FILENO);
    // The test framework's crash handler would report the abort as a crashed test from this
    // child too; the parent is the one that judges it.
    std::signal(SIGABRT, SIG_DFL);
    // Whatever happens, the child never returns into the test runner.
    try {
      fn();
    } catch (...) {
      _exit(125);
    }
    _exit(0);
  }
  ::close(fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ChildEnd end;
  if (WIFSIGNALED(status)) end.signal = WTERMSIG(status);
  if (WIFEXITED(status)) end.exitCode = WEXITSTATUS(status);
  end.err = readFile(errPath);
  return end;
}

}  // namespace outpost::test
