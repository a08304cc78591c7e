#pragma once
// RuntimeStreams over deploy: what the cloud's stream tunnel serves (logs, exec, attach, top),
// reaching only the pods this node's reconciler runs.

#include <filesystem>
#include <functional>

#include "outpost/core/clock.h"
#include "outpost/deploy/reconciler.h"
#include "outpost/deploy/runtime.h"
#include "outpost/stream/ports.h"

namespace outpost::agent {

// Runs its argument with deploy's runtime and reconciler while deploy runs
// (DeployModule::withRuntime).
using DeployAccess = std::function<core::Status(
    const std::function<core::Status(deploy::Runtime&, const deploy::Reconciler&)>&)>;

class DeployRuntimeStreams final : public stream::RuntimeStreams {
 public:
  // `proc`: where the node's CPU and memory figures are read (/proc/stat, /proc/meminfo).
  DeployRuntimeStreams(DeployAccess deploy, core::Clock& clock,
                       std::filesystem::path proc = "/proc");

  // stream::RuntimeStreams
  core::Result<stream::ContainerLog> containerLog(const stream::ContainerRef& ref,
                                                  bool previous) override;
  core::Result<std::string> execUrl(const stream::ExecParams& params) override;
  core::Result<std::string> attachUrl(const stream::AttachParams& params) override;
  core::Result<std::string> resourceMetrics() override;

 private:
  core::Result<std::string> streamUrl(const stream::ContainerRef& ref, deploy::StreamRequest req,
                                      bool exec);

  DeployAccess deploy_;
  core::Clock& clock_;
  std::filesystem::path proc_;
};

}  // namespace outpost::agent
