#pragma once
// The fixture of deploy's tests against the real containerd: a CRI runtime on the shared
// containerd, in-memory ports, a reconciler config polling fast.

#include <doctest/doctest.h>

#include <initializer_list>
#include <optional>

#include "agent_env.h"
#include "cri_env.h"
#include "outpost/deploy/cri_runtime.h"

namespace outpost::test {

using namespace std::chrono_literals;

// A container loop that exits promptly on SIGTERM.
constexpr const char* kLoop = "trap 'exit 0' TERM; while true; do sleep 1; done";

struct CriFixture {
  CriFixture() : env(CriEnv::get()) {
    if (!env.available()) return;
    auto rt = deploy::makeCriRuntime({env.harness().endpoint(), 15s, 15s});
    REQUIRE(rt.isOk());
    runtime = std::move(rt).value();
    config.stateDir = state.path().string();
    config.cgroupParent = env.harness().cgroupParent();
    config.sandboxImage = ContainerdHarness::kPause;
    config.pollInterval = 200ms;
  }
  std::unique_ptr<DeployAgent> agent(core::Clock& agentClock) {
    return std::make_unique<DeployAgent>(*runtime, desired, sink, agentClock, config);
  }
  std::vector<deploy::Container> containers(const std::string& uid, bool runningOnly = false) {
    auto list = runtime->listContainers(
        {"",
         "",
         runningOnly ? std::optional(deploy::ContainerState::kRunning) : std::nullopt,
         {{"outpost.io/pod-uid", uid}}});
    return list.isOk() ? *list : std::vector<deploy::Container>{};
  }
  std::vector<deploy::PodSandbox> sandboxes(const std::string& uid) {
    auto list = runtime->listPodSandbox({"", std::nullopt, {{"outpost.io/pod-uid", uid}}});
    return list.isOk() ? *list : std::vector<deploy::PodSandbox>{};
  }
  bool allRunning(const std::string& key, std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (sink.state(key, n) != "running") return false;
    return sink.phase(key) == "Running";
  }

  CriEnv& env;
  deploy::RuntimePtr runtime;
  TempDir state;
  MemoryDesired desired;
  MemorySink sink;
  deploy::ReconcilerConfig config;
  core::SystemClock clock;
};

#define REQUIRE_CONTAINERD(f)                 \
  if (!(f).env.available()) {                 \
    MESSAGE("skipped: " << (f).env.reason()); \
    return;                                   \
  }

}  // namespace outpost::test
