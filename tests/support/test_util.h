#pragma once
// Helpers every test suite shares: temporary directories, waiting on a condition with a deadline.

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace outpost::test {

// A fresh directory under $TMPDIR, removed with everything in it when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Polls `cond` until it holds or `timeout` of real time passed; returns its last value.
bool waitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

void writeFile(const std::filesystem::path& path, const std::string& text);
std::string readFile(const std::filesystem::path& path);

// The directory that holds the built programs (outpostd, outpostctl), from OUTPOST_BIN_DIR.
std::filesystem::path binDir();
// The built outpostd and outpostctl in binDir().
std::string outpostd();
std::string outpostctl();

// A child process with its stdout and stderr captured to files.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::vector<std::string>& extraEnv = {});
  ~Child();  // kills the child if it still runs
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  int pid() const { return pid_; }
  void signal(int sig);
  // Waits up to `timeout` for exit; returns the exit code, 128+signal when killed, or -1 on
  // timeout.
  int wait(std::chrono::milliseconds timeout);
  bool running();
  std::string out() const;
  std::string err() const;

 private:
  int pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
  TempDir dir_;
};

// Runs a command to completion; returns the exit code and captures its stdout.
int run(const std::vector<std::string>& argv, std::string* out = nullptr,
        std::string* err = nullptr, std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Runs the built outpostctl with `-c config` and `args`; returns its stdout, its exit code in `rc`
// and its stderr in `err` when they are given.
std::string ctl(const std::string& config, const std::vector<std::string>& args, int* rc = nullptr,
                std::string* err = nullptr);

// How a function run in a forked child ended: the signal that killed it (0 if none), its exit code
// (-1 if killed) and what it wrote to stderr. For checks that abort the process: the test process
// itself stays alive. `fn` returning normally is exit code 0, throwing exit code 125.
struct ChildEnd {
  int signal = 0;
  int exitCode = -1;
  std::string err;
};
ChildEnd runInChild(const std::function<void()>& fn);

}  // namespace outpost::test
