#pragma once
// FakeRuntime: an in-memory Runtime that behaves like containerd's CRI for the calls deploy makes
// (checked against the real one in tests/deploy/fake_runtime_test.cc). Containers "run" until a
// test makes them exit.

#include <mutex>
#include <set>

#include "outpost/deploy/runtime.h"

namespace outpost::test {

class FakeRuntime final : public deploy::Runtime {
 public:
  FakeRuntime();

  // Test controls.
  void addImage(const std::string& image);
  // PullImage of `image` succeeds (and adds it); any other pull fails as with no network.
  void setPullable(const std::string& image);
  // A running container exits with `code` (as if its process ended).
  void exitContainer(const std::string& id, int32_t code);
  // Every sandbox and container process dies (a power cut).
  void killAll();
  // While down, every call fails with UNAVAILABLE.
  void setDown(bool down);
  // Every later call named `call` ("ListPodSandboxStats", ...) answers `status` (ok: normally).
  void failCall(const std::string& call, core::Status status);
  size_t calls(const std::string& name);
  // The configuration a container was created with (its mounts, security context, ...).
  std::optional<deploy::ContainerConfig> config(const std::string& id);
  // Every container's configuration, in creation order of their ids.
  std::vector<deploy::ContainerConfig> configs();

  // Where exec and attach URLs point ("http://127.0.0.1:PORT"; default port 9, nothing serves
  // there): a test may put a stand-in streaming server behind them.
  void setStreamServer(const std::string& base);
  // What the last exec or attach asked for.
  std::optional<deploy::StreamRequest> lastStream();

  // Runtime
  core::Result<deploy::VersionInfo> version() override;
  core::Result<std::string> runPodSandbox(const deploy::PodSandboxConfig& config,
                                          const std::string& runtimeHandler) override;
  core::Status stopPodSandbox(const std::string& id) override;
  core::Status removePodSandbox(const std::string& id) override;
  core::Result<deploy::PodSandboxStatus> podSandboxStatus(const std::string& id) override;
  core::Result<std::vector<deploy::PodSandbox>> listPodSandbox(
      const deploy::SandboxFilter& filter) override;
  core::Result<std::string> createContainer(const std::string& podSandboxId,
                                            const deploy::ContainerConfig& config,
                                            const deploy::PodSandboxConfig& sandboxConfig) override;
  core::Status startContainer(const std::string& id) override;
  core::Status stopContainer(const std::string& id, std::chrono::seconds grace) override;
  core::Status removeContainer(const std::string& id) override;
  core::Result<std::vector<deploy::Container>> listContainers(
      const deploy::ContainerFilter& filter) override;
  core::Result<deploy::ContainerStatus> containerStatus(const std::string& id) override;
  core::Result<deploy::ExecResult> execSync(const std::string& id,
                                            const std::vector<std::string>& cmd,
                                            std::chrono::seconds timeout) override;
  core::Result<std::string> exec(const deploy::StreamRequest& request) override;
  core::Result<std::string> attach(const deploy::StreamRequest& request) override;
  core::Result<std::vector<deploy::ContainerStats>> listContainerStats(
      const deploy::StatsFilter& filter) override;
  core::Result<std::vector<deploy::PodSandboxStats>> listPodSandboxStats(
      const deploy::StatsFilter& filter) override;
  core::Result<std::optional<deploy::ImageInfo>> imageStatus(const std::string& image) override;
  core::Result<std::string> pullImage(const std::string& image) override;

 private:
  struct Sandbox {
    deploy::PodSandboxStatus status;
  };
  struct Ctr {
    deploy::ContainerStatus status;
    deploy::ContainerConfig config;
  };
  core::Status enter(const char* call);
  core::Result<std::string> stream(const char* call, const char* kind,
                                   const deploy::StreamRequest& request);
  deploy::ContainerStats statsOf(const std::string& id, const Ctr& c);
  deploy::UnixNanos now();

  std::mutex mu_;
  bool down_ = false;
  uint64_t nextId_ = 1;
  deploy::UnixNanos lastNow_ = 0;
  std::set<std::string> images_;
  std::set<std::string> pullable_;
  std::map<std::string, Sandbox> sandboxes_;
  std::map<std::string, Ctr> containers_;
  std::map<std::string, size_t> calls_;
  std::map<std::string, core::Status> failing_;
  std::string streamServer_ = "http://127.0.0.1:9";
  std::optional<deploy::StreamRequest> lastStream_;
  uint64_t nextToken_ = 1;
};

}  // namespace outpost::test
