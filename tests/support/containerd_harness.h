#pragma once
// A real containerd for tests and benchmarks: started under a temporary directory with its own
// config, root, state and socket, with locally built busybox and pause images imported; stopped by
// its PID. Needs root, containerd, runc and busybox-static (scripts/packages/deploy.txt).

#include <filesystem>
#include <memory>
#include <string>

#include "support/test_util.h"

namespace outpost::test {

class ContainerdHarness {
 public:
  // Image names the harness imports.
  static constexpr const char* kBusybox = "localhost/outpost/busybox:1";
  static constexpr const char* kPause = "localhost/outpost/pause:1";
  // The second runtime handler configured (runc as well), for runtimeClassName.
  static constexpr const char* kAltHandler = "runc-alt";

  // Why the harness cannot run here (not root, containerd missing), or empty.
  static std::string unavailableReason();
  // A started harness, or nullptr with why it cannot run here (`why`): for a test that skips then.
  static std::unique_ptr<ContainerdHarness> startOrExplain(std::string& why);

  ContainerdHarness();
  ~ContainerdHarness();  // stops containerd, removes what it left behind
  ContainerdHarness(const ContainerdHarness&) = delete;
  ContainerdHarness& operator=(const ContainerdHarness&) = delete;

  // Starts containerd and imports the images (once); throws std::runtime_error on failure.
  void start();
  // Stops containerd (SIGTERM, then SIGKILL); containers and their shims keep running.
  void stop();
  // stop() then start().
  void restart();
  bool running() const;

  // Kills every container process (and shim) this containerd started: a power cut for the pods.
  void killAllContainers();

  std::string socket() const { return (dir_.path() / "containerd.sock").string(); }
  std::string endpoint() const { return "unix://" + socket(); }
  // Runs `ctr -n k8s.io <args>` against this containerd.
  int ctr(const std::vector<std::string>& args, std::string* out = nullptr);
  const std::filesystem::path& dir() const { return dir_.path(); }
  // A cgroup parent unique to this harness (removed at the end).
  std::string cgroupParent() const { return cgroupParent_; }

 private:
  void writeConfig();
  void buildImages();

  TempDir dir_;
  std::unique_ptr<Child> containerd_;
  bool imported_ = false;
  std::string cgroupParent_;
};

}  // namespace outpost::test
