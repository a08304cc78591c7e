#pragma once
// Runtime: the container runtime as deploy sees it (the CRI v1 calls it uses), in our own types.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::deploy {

using Labels = std::map<std::string, std::string>;
// Runtime timestamps: nanoseconds since the Unix epoch, 0 when unset (as the CRI reports them).
using UnixNanos = int64_t;

// A bind mount from the host into a container.
struct Mount {
  std::string containerPath;
  std::string hostPath;
  bool readOnly = false;
};

// Linux resources of a container; 0 means "no limit / runtime default".
struct LinuxResources {
  int64_t cpuPeriod = 0;
  int64_t cpuQuota = 0;
  int64_t cpuShares = 0;
  int64_t memoryLimitBytes = 0;
};

// The basic Linux security context of a container (or the defaults of a sandbox).
struct SecurityContext {
  std::optional<int64_t> runAsUser;
  std::optional<int64_t> runAsGroup;
  std::vector<int64_t> supplementalGroups;
  bool privileged = false;
  bool readOnlyRootfs = false;
  bool noNewPrivs = false;
  std::vector<std::string> capAdd;
  std::vector<std::string> capDrop;
};

// What a pod sandbox is asked to be.
struct PodSandboxConfig {
  std::string name;
  std::string uid;
  std::string podNamespace;
  uint32_t attempt = 0;
  std::string hostname;  // must stay empty with host network
  std::string logDirectory;
  Labels labels;
  Labels annotations;
  bool hostNetwork = false;
  std::string cgroupParent;
  SecurityContext security;
};

enum class SandboxState { kReady, kNotReady };

// A sandbox as ListPodSandbox reports it.
struct PodSandbox {
  std::string id;
  std::string name;
  std::string uid;
  std::string podNamespace;
  uint32_t attempt = 0;
  SandboxState state = SandboxState::kNotReady;
  UnixNanos createdAt = 0;
  Labels labels;
  Labels annotations;
  std::string runtimeHandler;
};

// A sandbox as PodSandboxStatus reports it.
struct PodSandboxStatus {
  PodSandbox sandbox;
  std::string ip;
  bool hostNetwork = false;
};

// What a container is asked to be.
struct ContainerConfig {
  std::string name;
  uint32_t attempt = 0;
  std::string image;
  std::vector<std::string> command;
  std::vector<std::string> args;
  std::string workingDir;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<Mount> mounts;
  Labels labels;
  Labels annotations;
  std::string logPath;  // relative to the sandbox's log directory
  LinuxResources resources;
  SecurityContext security;
  bool hostNetwork = false;  // namespace options repeated from the sandbox
  bool stdin = false;        // keeps a stdin open for attach
  bool stdinOnce = false;    // closes it when the first attach ends
  bool tty = false;
};

enum class ContainerState { kCreated, kRunning, kExited, kUnknown };

// A container as ListContainers reports it.
struct Container {
  std::string id;
  std::string podSandboxId;
  std::string name;
  uint32_t attempt = 0;
  std::string image;
  std::string imageRef;
  ContainerState state = ContainerState::kUnknown;
  UnixNanos createdAt = 0;
  Labels labels;
  Labels annotations;
};

// A container as ContainerStatus reports it.
struct ContainerStatus {
  Container container;
  UnixNanos startedAt = 0;
  UnixNanos finishedAt = 0;
  int32_t exitCode = 0;
  std::string reason;
  std::string message;
};

struct SandboxFilter {
  std::string id;
  std::optional<SandboxState> state;
  Labels labels;  // every label must match
};

struct ContainerFilter {
  std::string id;
  std::string podSandboxId;
  std::optional<ContainerState> state;
  Labels labels;
};

struct ExecResult {
  std::string out;
  std::string err;
  int32_t exitCode = 0;
};

struct ImageInfo {
  std::string id;
  std::vector<std::string> repoTags;
  uint64_t size = 0;
};

// An exec or attach of a streaming session (CRI Exec/Attach): the runtime answers with a URL of its
// streaming server, where the session's streams are then served (docs/kubeedge.md).
struct StreamRequest {
  std::string containerId;
  std::vector<std::string> cmd;  // exec only; attach takes none
  bool stdin = false;
  bool stdout = true;
  bool stderr = true;
  bool tty = false;
};

// CPU and memory use of a container or a pod sandbox at a moment, as the CRI stats calls report
// it; a figure the runtime did not give is nullopt.
struct UsageStats {
  UnixNanos cpuTimestamp = 0;
  std::optional<uint64_t> cpuCoreNanos;  // CPU time used since it started, in core-nanoseconds
  UnixNanos memoryTimestamp = 0;
  std::optional<uint64_t> memoryWorkingSetBytes;  // usage minus inactive file pages
};

// A container's usage (CRI ListContainerStats).
struct ContainerStats {
  std::string id;
  std::string name;  // the CRI metadata's container name
  uint32_t attempt = 0;
  Labels labels;
  UsageStats usage;
};

// A sandbox's usage with its containers' (CRI ListPodSandboxStats).
struct PodSandboxStats {
  std::string id;
  std::string name;
  std::string uid;
  std::string podNamespace;
  Labels labels;
  UsageStats usage;
  std::vector<ContainerStats> containers;
};

// Which stats to list; empty fields match everything, every label must match.
struct StatsFilter {
  std::string id;
  std::string podSandboxId;  // containers only
  Labels labels;
};

struct VersionInfo {
  std::string runtimeName;
  std::string runtimeVersion;
  std::string runtimeApiVersion;
};

// The container runtime. Every call is blocking and bounded by a deadline; errors keep the
// runtime's canonical code (NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED, ...).
class Runtime {
 public:
  virtual ~Runtime() = default;

  virtual core::Result<VersionInfo> version() = 0;

  // Starts a sandbox under `runtimeHandler` (empty: the runtime's default); returns its id.
  virtual core::Result<std::string> runPodSandbox(const PodSandboxConfig& config,
                                                  const std::string& runtimeHandler) = 0;
  virtual core::Status stopPodSandbox(const std::string& id) = 0;
  virtual core::Status removePodSandbox(const std::string& id) = 0;
  virtual core::Result<PodSandboxStatus> podSandboxStatus(const std::string& id) = 0;
  virtual core::Result<std::vector<PodSandbox>> listPodSandbox(const SandboxFilter& filter) = 0;

  // Creates a container in a sandbox; returns its id.
  virtual core::Result<std::string> createContainer(const std::string& podSandboxId,
                                                    const ContainerConfig& config,
                                                    const PodSandboxConfig& sandboxConfig) = 0;
  virtual core::Status startContainer(const std::string& id) = 0;
  // Sends SIGTERM, then SIGKILL after `grace`.
  virtual core::Status stopContainer(const std::string& id, std::chrono::seconds grace) = 0;
  virtual core::Status removeContainer(const std::string& id) = 0;
  virtual core::Result<std::vector<Container>> listContainers(const ContainerFilter& filter) = 0;
  virtual core::Result<ContainerStatus> containerStatus(const std::string& id) = 0;
  // Runs `cmd` in a running container and waits up to `timeout` for it.
  virtual core::Result<ExecResult> execSync(const std::string& id,
                                            const std::vector<std::string>& cmd,
                                            std::chrono::seconds timeout) = 0;

  // The URL of the runtime's streaming server for an exec or attach (CRI Exec/Attach); the
  // session is served there, not over this call. UNIMPLEMENTED from a runtime that cannot stream.
  virtual core::Result<std::string> exec(const StreamRequest& request) = 0;
  virtual core::Result<std::string> attach(const StreamRequest& request) = 0;
  virtual core::Result<std::vector<ContainerStats>> listContainerStats(
      const StatsFilter& filter) = 0;
  virtual core::Result<std::vector<PodSandboxStats>> listPodSandboxStats(
      const StatsFilter& filter) = 0;

  // The image if present locally, nullopt if not.
  virtual core::Result<std::optional<ImageInfo>> imageStatus(const std::string& image) = 0;
  // Pulls an image; returns its reference (id).
  virtual core::Result<std::string> pullImage(const std::string& image) = 0;
};
using RuntimePtr = std::unique_ptr<Runtime>;

}  // namespace outpost::deploy
