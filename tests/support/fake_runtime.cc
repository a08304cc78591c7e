#include "support/fake_runtime.h"

#include <chrono>
#include <cstdio>

namespace outpost::test {

using core::Result;
using core::Status;
using namespace deploy;  // NOLINT: test double of the whole interface

namespace {
bool matches(const Labels& have, const Labels& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}
}  // namespace

FakeRuntime::FakeRuntime() = default;

Status FakeRuntime::enter(const char* call) {
  calls_[call]++;
  if (down_) return core::unavailable(std::string(call) + ": runtime down");
  if (auto f = failing_.find(call); f != failing_.end()) return f->second;
  return core::okStatus();
}

void FakeRuntime::failCall(const std::string& call, core::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (status.isOk()) {
    failing_.erase(call);
  } else {
    failing_[call] = std::move(status);
  }
}

UnixNanos FakeRuntime::now() {
  auto t = std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  lastNow_ = std::max(lastNow_ + 1, static_cast<UnixNanos>(t));  // strictly increasing
  return lastNow_;
}

void FakeRuntime::addImage(const std::string& image) {
  std::lock_guard<std::mutex> lock(mu_);
  images_.insert(image);
}

void FakeRuntime::setPullable(const std::string& image) {
  std::lock_guard<std::mutex> lock(mu_);
  pullable_.insert(image);
}

void FakeRuntime::exitContainer(const std::string& id, int32_t code) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end() || it->second.status.container.state != ContainerState::kRunning)
    return;
  it->second.status.container.state = ContainerState::kExited;
  it->second.status.exitCode = code;
  it->second.status.finishedAt = now();
  it->second.status.reason = code == 0 ? "Completed" : "Error";
}

void FakeRuntime::killAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, s] : sandboxes_) s.status.sandbox.state = SandboxState::kNotReady;
  for (auto& [id, c] : containers_) {
    if (c.status.container.state == ContainerState::kRunning) {
      c.status.container.state = ContainerState::kExited;
      c.status.exitCode = 137;
      c.status.finishedAt = now();
      c.status.reason = "Error";
    }
  }
}

void FakeRuntime::setDown(bool down) {
  std::lock_guard<std::mutex> lock(mu_);
  down_ = down;
}

size_t FakeRuntime::calls(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_[name];
}

std::optional<ContainerConfig> FakeRuntime::config(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return std::nullopt;
  return it->second.config;
}

std::vector<ContainerConfig> FakeRuntime::configs() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ContainerConfig> out;
  for (const auto& [id, c] : containers_) out.push_back(c.config);
  return out;
}

Result<VersionInfo> FakeRuntime::version() {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("Version"));
  return VersionInfo{"fake", "1.0", "v1"};
}

Result<std::string> FakeRuntime::runPodSandbox(const PodSandboxConfig& config,
                                               const std::string& runtimeHandler) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("RunPodSandbox"));
  if (!runtimeHandler.empty() && runtimeHandler != "runc" && runtimeHandler != "runc-alt") {
    return core::Status(core::Code::kUnknown,
                        "RunPodSandbox: no runtime for \"" + runtimeHandler + "\" is configured");
  }
  for (const auto& [id, s] : sandboxes_) {
    const auto& sb = s.status.sandbox;
    if (sb.name == config.name && sb.podNamespace == config.podNamespace && sb.uid == config.uid &&
        sb.attempt == config.attempt) {
      return core::alreadyExists("RunPodSandbox: name is reserved");
    }
  }
  char buf[80];
  std::snprintf(buf, sizeof(buf), "sb%062llu", static_cast<unsigned long long>(nextId_++));
  Sandbox s;
  s.status.sandbox = PodSandbox{buf,
                                config.name,
                                config.uid,
                                config.podNamespace,
                                config.attempt,
                                SandboxState::kReady,
                                now(),
                                config.labels,
                                config.annotations,
                                runtimeHandler.empty() ? "runc" : runtimeHandler};
  s.status.hostNetwork = config.hostNetwork;
  sandboxes_[buf] = s;
  return std::string(buf);
}

Status FakeRuntime::stopPodSandbox(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("StopPodSandbox"));
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return core::notFound("StopPodSandbox: not found");
  it->second.status.sandbox.state = SandboxState::kNotReady;
  for (auto& [cid, c] : containers_) {
    if (c.status.container.podSandboxId == id &&
        c.status.container.state == ContainerState::kRunning) {
      c.status.container.state = ContainerState::kExited;
      c.status.exitCode = 137;
      c.status.finishedAt = now();
    }
  }
  return core::okStatus();
}

Status FakeRuntime::removePodSandbox(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("RemovePodSandbox"));
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return core::okStatus();
  // containerd 1.6 stops a ready sandbox and its containers before removing it.
  for (auto c = containers_.begin(); c != containers_.end();) {
    c = c->second.status.container.podSandboxId == id ? containers_.erase(c) : std::next(c);
  }
  sandboxes_.erase(it);
  return core::okStatus();
}

Result<PodSandboxStatus> FakeRuntime::podSandboxStatus(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("PodSandboxStatus"));
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return core::notFound("PodSandboxStatus: not found");
  return it->second.status;
}

Result<std::vector<PodSandbox>> FakeRuntime::listPodSandbox(const SandboxFilter& filter) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("ListPodSandbox"));
  std::vector<PodSandbox> out;
  for (const auto& [id, s] : sandboxes_) {
    const auto& sb = s.status.sandbox;
    if (!filter.id.empty() && sb.id.rfind(filter.id, 0) != 0) continue;
    if (filter.state && sb.state != *filter.state) continue;
    if (!matches(sb.labels, filter.labels)) continue;
    out.push_back(sb);
  }
  return out;
}

Result<std::string> FakeRuntime::createContainer(const std::string& podSandboxId,
                                                 const ContainerConfig& config,
                                                 const PodSandboxConfig& sandboxConfig) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("CreateContainer"));
  auto sb = sandboxes_.find(podSandboxId);
  if (sb == sandboxes_.end()) return core::notFound("CreateContainer: sandbox not found");
  if (sb->second.status.sandbox.state != SandboxState::kReady)
    return core::failedPrecondition("CreateContainer: sandbox is not running");
  if (!images_.count(config.image))
    return core::notFound("CreateContainer: image " + config.image + " not found");
  // containerd 1.6 refuses a privileged container in a sandbox that is not privileged, whatever
  // the attempt: "no privileged container allowed in sandbox".
  if (config.security.privileged && !sandboxConfig.security.privileged)
    return core::Status(core::Code::kUnknown,
                        "CreateContainer: no privileged container allowed in sandbox");
  for (const auto& [id, c] : containers_) {
    if (c.status.container.podSandboxId == podSandboxId && c.config.name == config.name &&
        c.config.attempt == config.attempt) {
      return core::alreadyExists("CreateContainer: name is reserved");
    }
  }
  char buf[80];
  std::snprintf(buf, sizeof(buf), "c%063llu", static_cast<unsigned long long>(nextId_++));
  Ctr c;
  c.config = config;
  c.status.container = Container{buf,
                                 podSandboxId,
                                 config.name,
                                 config.attempt,
                                 config.image,
                                 "sha256:" + config.image,
                                 ContainerState::kCreated,
                                 now(),
                                 config.labels,
                                 config.annotations};
  containers_[buf] = c;
  return std::string(buf);
}

Status FakeRuntime::startContainer(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("StartContainer"));
  auto it = containers_.find(id);
  if (it == containers_.end()) return core::notFound("StartContainer: not found");
  if (it->second.status.container.state != ContainerState::kCreated)
    return core::failedPrecondition("StartContainer: container is not in created state");
  it->second.status.container.state = ContainerState::kRunning;
  it->second.status.startedAt = now();
  return core::okStatus();
}

Status FakeRuntime::stopContainer(const std::string& id, std::chrono::seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("StopContainer"));
  auto it = containers_.find(id);
  if (it == containers_.end()) return core::notFound("StopContainer: not found");
  auto& s = it->second.status;
  if (s.container.state == ContainerState::kRunning) {
    s.container.state = ContainerState::kExited;
    s.exitCode = 137;  // busybox sh as PID 1 ignores SIGTERM: killed at the end of the grace
    s.finishedAt = now();
    s.reason = "Error";
  }
  return core::okStatus();
}

Status FakeRuntime::removeContainer(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("RemoveContainer"));
  auto it = containers_.find(id);
  if (it == containers_.end()) return core::okStatus();
  // containerd 1.6 stops a running container before removing it.
  containers_.erase(it);
  return core::okStatus();
}

Result<std::vector<Container>> FakeRuntime::listContainers(const ContainerFilter& filter) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("ListContainers"));
  std::vector<Container> out;
  for (const auto& [id, c] : containers_) {
    const auto& ct = c.status.container;
    if (!filter.id.empty() && ct.id.rfind(filter.id, 0) != 0) continue;
    if (!filter.podSandboxId.empty() && ct.podSandboxId != filter.podSandboxId) continue;
    if (filter.state && ct.state != *filter.state) continue;
    if (!matches(ct.labels, filter.labels)) continue;
    out.push_back(ct);
  }
  return out;
}

Result<ContainerStatus> FakeRuntime::containerStatus(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("ContainerStatus"));
  auto it = containers_.find(id);
  if (it == containers_.end()) return core::notFound("ContainerStatus: not found");
  return it->second.status;
}

Result<ExecResult> FakeRuntime::execSync(const std::string& id, const std::vector<std::string>& cmd,
                                         std::chrono::seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("ExecSync"));
  auto it = containers_.find(id);
  if (it == containers_.end()) return core::notFound("ExecSync: not found");
  if (it->second.status.container.state != ContainerState::kRunning)
    return core::failedPrecondition("ExecSync: container is not running");
  ExecResult r;
  if (!cmd.empty() && cmd[0] == "env") {
    for (const auto& [k, v] : it->second.config.env) r.out += k + "=" + v + "\n";
  } else if (!cmd.empty() && (cmd[0] == "false")) {
    r.exitCode = 1;
  }
  return r;
}

void FakeRuntime::setStreamServer(const std::string& base) {
  std::lock_guard<std::mutex> lock(mu_);
  streamServer_ = base;
}

std::optional<StreamRequest> FakeRuntime::lastStream() {
  std::lock_guard<std::mutex> lock(mu_);
  return lastStream_;
}

// As containerd: the container must exist (NOT_FOUND) and run (UNKNOWN, "container is in ...
// state"), then the streaming server's own checks (INVALID_ARGUMENT).
Result<std::string> FakeRuntime::stream(const char* call, const char* kind,
                                        const StreamRequest& request) {
  OUTPOST_RETURN_IF_ERROR(enter(call));
  auto it = containers_.find(request.containerId);
  if (it == containers_.end())
    return core::notFound(std::string(call) + ": container " + request.containerId + " not found");
  if (it->second.status.container.state != ContainerState::kRunning)
    return Status(core::Code::kUnknown, std::string(call) + ": container is not running");
  if (request.tty && request.stderr)
    return core::invalidArgument(std::string(call) + ": tty and stderr cannot both be true");
  if (!request.stdin && !request.stdout && !request.stderr)
    return core::invalidArgument(std::string(call) +
                                 ": one of stdin, stdout, or stderr must be set");
  lastStream_ = request;
  return streamServer_ + "/" + kind + "/fake-token-" + std::to_string(nextToken_++);
}

Result<std::string> FakeRuntime::exec(const StreamRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  return stream("Exec", "exec", request);
}

Result<std::string> FakeRuntime::attach(const StreamRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  return stream("Attach", "attach", request);
}

// A running container uses 1 ms of CPU per call and 1 MiB of memory; one that is not running has
// no figures (containerd lists it with its attributes only).
ContainerStats FakeRuntime::statsOf(const std::string& id, const Ctr& c) {
  ContainerStats s;
  s.id = id;
  s.name = c.status.container.name;
  s.attempt = c.status.container.attempt;
  s.labels = c.status.container.labels;
  if (c.status.container.state == ContainerState::kRunning) {
    UnixNanos t = now();
    s.usage.cpuTimestamp = t;
    s.usage.cpuCoreNanos = static_cast<uint64_t>(calls_["ListContainerStats"]) * 1000000;
    s.usage.memoryTimestamp = t;
    s.usage.memoryWorkingSetBytes = 1 << 20;
  }
  return s;
}

Result<std::vector<ContainerStats>> FakeRuntime::listContainerStats(const StatsFilter& filter) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("ListContainerStats"));
  std::vector<ContainerStats> out;
  for (const auto& [id, c] : containers_) {
    if (!filter.id.empty() && id != filter.id) continue;
    if (!filter.podSandboxId.empty() && c.status.container.podSandboxId != filter.podSandboxId)
      continue;
    bool match = true;
    for (const auto& [k, v] : filter.labels) {
      auto l = c.status.container.labels.find(k);
      if (l == c.status.container.labels.end() || l->second != v) match = false;
    }
    if (match) out.push_back(statsOf(id, c));
  }
  return out;
}

// containerd 1.6 answers ListPodSandboxStats: the sandbox's figures are its containers' here.
Result<std::vector<PodSandboxStats>> FakeRuntime::listPodSandboxStats(const StatsFilter& filter) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("ListPodSandboxStats"));
  std::vector<PodSandboxStats> out;
  for (const auto& [id, sb] : sandboxes_) {
    const PodSandbox& p = sb.status.sandbox;
    if (!filter.id.empty() && id != filter.id) continue;
    bool match = true;
    for (const auto& [k, v] : filter.labels) {
      auto l = p.labels.find(k);
      if (l == p.labels.end() || l->second != v) match = false;
    }
    if (!match) continue;
    PodSandboxStats s{id, p.name, p.uid, p.podNamespace, p.labels, {}, {}};
    UnixNanos t = now();
    s.usage = UsageStats{t, uint64_t{0}, t, uint64_t{0}};
    for (const auto& [cid, c] : containers_) {
      if (c.status.container.podSandboxId != id) continue;
      ContainerStats cs = statsOf(cid, c);
      *s.usage.cpuCoreNanos += cs.usage.cpuCoreNanos.value_or(0);
      *s.usage.memoryWorkingSetBytes += cs.usage.memoryWorkingSetBytes.value_or(0);
      s.containers.push_back(std::move(cs));
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::optional<ImageInfo>> FakeRuntime::imageStatus(const std::string& image) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("ImageStatus"));
  if (!images_.count(image)) return std::optional<ImageInfo>();
  return std::optional<ImageInfo>(ImageInfo{"sha256:" + image, {image}, 1});
}

Result<std::string> FakeRuntime::pullImage(const std::string& image) {
  std::lock_guard<std::mutex> lock(mu_);
  OUTPOST_RETURN_IF_ERROR(enter("PullImage"));
  if (pullable_.count(image)) {
    images_.insert(image);
    return "sha256:" + image;
  }
  return core::Status(core::Code::kUnknown,
                      "PullImage: failed to resolve " + image + ": no network");
}

}  // namespace outpost::test
