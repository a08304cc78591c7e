#include "outpost/deploy/hollow_runtime.h"

#include <time.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>

namespace outpost::deploy {

namespace {

using std::chrono::milliseconds;

constexpr std::string_view kDurationForm = "a whole number with ms, s or m, e.g. 250ms";

// "<n>ms", "<n>s" or "<n>m", n a decimal of at most `maxUnits` units.
std::optional<milliseconds> parseDuration(std::string_view text, int64_t maxUnits) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9) return std::nullopt;
  int64_t n = 0;
  std::from_chars(text.data(), text.data() + digits, n);
  if (n > maxUnits) return std::nullopt;
  std::string_view unit = text.substr(digits);
  if (unit == "ms") return milliseconds(n);
  if (unit == "s") return milliseconds(n * 1000);
  if (unit == "m") return milliseconds(n * 60000);
  return std::nullopt;
}

std::string_view tagOf(std::string_view image) {
  if (auto at = image.find('@'); at != std::string_view::npos) image = image.substr(0, at);
  auto colon = image.rfind(':');
  auto slash = image.rfind('/');
  if (colon == std::string_view::npos || (slash != std::string_view::npos && slash > colon))
    return {};
  return image.substr(colon + 1);
}

bool matches(const Labels& have, const Labels& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

// RFC 3339 with nanoseconds, as containerd stamps CRI log lines.
std::string rfc3339Nano(UnixNanos t) {
  return core::formatRfc3339(core::WallTime(std::chrono::duration_cast<core::WallTime::duration>(
                                 std::chrono::nanoseconds(t))),
                             9);
}

class HollowRuntime final : public Runtime {
 public:
  HollowRuntime(const HollowOptions& options, core::Clock& clock)
      : options_(options), clock_(clock) {}

  core::Result<VersionInfo> version() override { return VersionInfo{"hollow", "1", "v1"}; }

  core::Result<std::string> runPodSandbox(const PodSandboxConfig& config,
                                          const std::string& runtimeHandler) override {
    std::lock_guard lock(mu_);
    for (const auto& [id, s] : sandboxes_) {
      const PodSandbox& sb = s.sandbox;
      if (sb.name == config.name && sb.podNamespace == config.podNamespace &&
          sb.uid == config.uid && sb.attempt == config.attempt)
        return core::alreadyExists("RunPodSandbox: the name of sandbox " + id + " is reserved");
    }
    std::string id = newId("s");
    PodSandboxStatus s;
    s.sandbox = PodSandbox{id,
                           config.name,
                           config.uid,
                           config.podNamespace,
                           config.attempt,
                           SandboxState::kReady,
                           wallNanos(clock_.now()),
                           config.labels,
                           config.annotations,
                           runtimeHandler.empty() ? "hollow" : runtimeHandler};
    s.hostNetwork = config.hostNetwork;
    if (!config.hostNetwork) {
      // 10.88.0.0/16, as containerd's default CNI network; unique for 65,534 sandboxes.
      uint64_t n = nextIp_++ % 65534 + 1;
      s.ip = "10.88." + std::to_string(n / 256) + "." + std::to_string(n % 256);
    }
    logDirs_[id] = config.logDirectory;
    sandboxes_.emplace(id, std::move(s));
    return id;
  }

  core::Status stopPodSandbox(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end())
      return core::notFound("StopPodSandbox: sandbox " + id + " not found");
    it->second.sandbox.state = SandboxState::kNotReady;
    for (auto& [cid, c] : containers_) {
      if (c.status.container.podSandboxId == id) kill(c, 137);
    }
    return core::okStatus();
  }

  core::Status removePodSandbox(const std::string& id) override {
    std::lock_guard lock(mu_);
    for (auto c = containers_.begin(); c != containers_.end();)
      c = c->second.status.container.podSandboxId == id ? containers_.erase(c) : std::next(c);
    sandboxes_.erase(id);
    logDirs_.erase(id);
    return core::okStatus();
  }

  core::Result<PodSandboxStatus> podSandboxStatus(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end())
      return core::notFound("PodSandboxStatus: sandbox " + id + " not found");
    return it->second;
  }

  core::Result<std::vector<PodSandbox>> listPodSandbox(const SandboxFilter& filter) override {
    std::lock_guard lock(mu_);
    std::vector<PodSandbox> out;
    for (const auto& [id, s] : sandboxes_) {
      const PodSandbox& sb = s.sandbox;
      if (!filter.id.empty() && sb.id.rfind(filter.id, 0) != 0) continue;
      if (filter.state && sb.state != *filter.state) continue;
      if (!matches(sb.labels, filter.labels)) continue;
      out.push_back(sb);
    }
    return out;
  }

  core::Result<std::string> createContainer(const std::string& podSandboxId,
                                            const ContainerConfig& config,
                                            const PodSandboxConfig&) override {
    auto staged = parseHollowImage(config.image);
    if (!staged.isOk()) return staged.status().withContext("CreateContainer");
    std::lock_guard lock(mu_);
    auto sb = sandboxes_.find(podSandboxId);
    if (sb == sandboxes_.end())
      return core::notFound("CreateContainer: sandbox " + podSandboxId + " not found");
    if (sb->second.sandbox.state != SandboxState::kReady)
      return core::failedPrecondition("CreateContainer: sandbox " + podSandboxId + " is not ready");
    if (staged->pullFails)
      return core::notFound("CreateContainer: image \"" + config.image + "\" is not present");
    for (const auto& [id, c] : containers_) {
      const Container& ct = c.status.container;
      if (ct.podSandboxId == podSandboxId && ct.name == config.name && ct.attempt == config.attempt)
        return core::alreadyExists("CreateContainer: the name of container " + id + " is reserved");
    }
    std::string id = newId("c");
    Ctr c;
    c.status.container = Container{id,
                                   podSandboxId,
                                   config.name,
                                   config.attempt,
                                   config.image,
                                   "sha256:hollow-" + config.image,
                                   ContainerState::kCreated,
                                   wallNanos(clock_.now()),
                                   config.labels,
                                   config.annotations};
    c.image = *staged;
    const std::string& dir = logDirs_[podSandboxId];
    if (!dir.empty() && !config.logPath.empty()) c.logPath = dir + "/" + config.logPath;
    containers_.emplace(id, std::move(c));
    return id;
  }

  core::Status startContainer(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it == containers_.end())
      return core::notFound("StartContainer: container " + id + " not found");
    Ctr& c = it->second;
    if (c.startAt && c.status.container.state == ContainerState::kCreated) {
      // Started already, and every caller was last told Created (states move only when someone
      // looks): one that saw it Created while it started asks again. Its start is on its way, or
      // done since that look: the answer is the first call's. containerd's StartContainer returns
      // once the container runs, so its callers never see this; refusing here made the reconciler
      // remove a running container and back off 10 s (RunContainerError).
      advance(c);
      return core::okStatus();
    }
    advance(c);
    if (c.status.container.state != ContainerState::kCreated)
      return core::failedPrecondition("StartContainer: container " + id +
                                      " is not in created state");
    c.startAt = clock_.now() + options_.startLatency;
    advance(c);
    return core::okStatus();
  }

  core::Status stopContainer(const std::string& id, std::chrono::seconds) override {
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it == containers_.end())
      return core::notFound("StopContainer: container " + id + " not found");
    // A hollow process ends at SIGTERM, at once: 128 + 15.
    kill(it->second, 143);
    return core::okStatus();
  }

  core::Status removeContainer(const std::string& id) override {
    std::lock_guard lock(mu_);
    containers_.erase(id);
    return core::okStatus();
  }

  core::Result<std::vector<Container>> listContainers(const ContainerFilter& filter) override {
    std::lock_guard lock(mu_);
    std::vector<Container> out;
    for (auto& [id, c] : containers_) {
      advance(c);
      const Container& ct = c.status.container;
      if (!filter.id.empty() && ct.id.rfind(filter.id, 0) != 0) continue;
      if (!filter.podSandboxId.empty() && ct.podSandboxId != filter.podSandboxId) continue;
      if (filter.state && ct.state != *filter.state) continue;
      if (!matches(ct.labels, filter.labels)) continue;
      out.push_back(ct);
    }
    return out;
  }

  core::Result<ContainerStatus> containerStatus(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it == containers_.end())
      return core::notFound("ContainerStatus: container " + id + " not found");
    advance(it->second);
    return it->second.status;
  }

  core::Result<ExecResult> execSync(const std::string& id, const std::vector<std::string>&,
                                    std::chrono::seconds) override {
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it == containers_.end()) return core::notFound("ExecSync: container " + id + " not found");
    advance(it->second);
    if (it->second.status.container.state != ContainerState::kRunning)
      return core::failedPrecondition("ExecSync: container " + id + " is not running");
    return ExecResult{};  // every command succeeds, saying nothing
  }

  // A hollow container has no process to stream from: exec and attach say so.
  core::Result<std::string> exec(const StreamRequest& request) override {
    return core::Status(core::Code::kUnimplemented,
                        "Exec: the hollow runtime runs no processes, so container " +
                            request.containerId + " has none to exec into");
  }
  core::Result<std::string> attach(const StreamRequest& request) override {
    return core::Status(core::Code::kUnimplemented,
                        "Attach: the hollow runtime runs no processes, so container " +
                            request.containerId + " has none to attach to");
  }

  core::Result<std::vector<ContainerStats>> listContainerStats(const StatsFilter& filter) override {
    std::lock_guard lock(mu_);
    std::vector<ContainerStats> out;
    for (auto& [id, c] : containers_) {
      advance(c);
      const Container& ct = c.status.container;
      if (!filter.id.empty() && ct.id.rfind(filter.id, 0) != 0) continue;
      if (!filter.podSandboxId.empty() && ct.podSandboxId != filter.podSandboxId) continue;
      if (!matches(ct.labels, filter.labels)) continue;
      out.push_back(statsOf(c));
    }
    return out;
  }

  // As a runtime that answers per sandbox: the sum of its containers'.
  core::Result<std::vector<PodSandboxStats>> listPodSandboxStats(
      const StatsFilter& filter) override {
    std::lock_guard lock(mu_);
    std::vector<PodSandboxStats> out;
    for (const auto& [id, s] : sandboxes_) {
      if (!filter.id.empty() && id.rfind(filter.id, 0) != 0) continue;
      if (!matches(s.sandbox.labels, filter.labels)) continue;
      PodSandboxStats p{
          id, s.sandbox.name, s.sandbox.uid, s.sandbox.podNamespace, s.sandbox.labels, {}, {}};
      UnixNanos now = wallNanos(clock_.now());
      p.usage = UsageStats{now, uint64_t{0}, now, uint64_t{0}};
      for (auto& [cid, c] : containers_) {
        if (c.status.container.podSandboxId != id) continue;
        advance(c);
        ContainerStats cs = statsOf(c);
        *p.usage.cpuCoreNanos += cs.usage.cpuCoreNanos.value_or(0);
        *p.usage.memoryWorkingSetBytes += cs.usage.memoryWorkingSetBytes.value_or(0);
        p.containers.push_back(std::move(cs));
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  core::Result<std::optional<ImageInfo>> imageStatus(const std::string& image) override {
    OUTPOST_ASSIGN_OR_RETURN(HollowImage staged, parseHollowImage(image));
    if (staged.pullFails) return std::optional<ImageInfo>();
    return std::optional<ImageInfo>(ImageInfo{"sha256:hollow-" + image, {image}, 0});
  }

  core::Result<std::string> pullImage(const std::string& image) override {
    OUTPOST_ASSIGN_OR_RETURN(HollowImage staged, parseHollowImage(image));
    if (staged.pullFails)
      return core::Status(core::Code::kUnknown, "failed to pull image \"" + image +
                                                    "\": staged by its tag pull-fails (hollow "
                                                    "runtime)");
    return "sha256:hollow-" + image;
  }

 private:
  struct Ctr {
    ContainerStatus status;
    HollowImage image;
    std::optional<core::MonoTime> startAt;  // set by StartContainer
    std::string logPath;                    // empty: no log
  };

  std::string newId(const char* kind) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "hollow-%s%llu", kind,
                  static_cast<unsigned long long>(nextId_++));
    return buf;
  }

  // Wall time of a monotonic instant (in the past or now), as the runtime stamps it.
  UnixNanos wallNanos(core::MonoTime t) const {
    auto wall = clock_.wallNow() - (clock_.now() - t);
    return std::chrono::duration_cast<std::chrono::nanoseconds>(wall.time_since_epoch()).count();
  }

  // Moves a container along its life to what the clock says now.
  void advance(Ctr& c) {
    ContainerStatus& s = c.status;
    core::MonoTime now = clock_.now();
    if (s.container.state == ContainerState::kCreated && c.startAt && now >= *c.startAt) {
      s.container.state = ContainerState::kRunning;
      s.startedAt = wallNanos(*c.startAt);
      appendLog(
          c, s.startedAt,
          "hollow container " + s.container.name + " started (image " + s.container.image + ")");
    }
    if (s.container.state == ContainerState::kRunning && c.image.exitCode &&
        now >= *c.startAt + c.image.exitAfter) {
      s.container.state = ContainerState::kExited;
      s.exitCode = *c.image.exitCode;
      s.finishedAt = wallNanos(*c.startAt + c.image.exitAfter);
      s.reason = s.exitCode == 0 ? "Completed" : "Error";
      appendLog(c, s.finishedAt,
                "hollow container " + s.container.name + " exits with code " +
                    std::to_string(s.exitCode) + ", as its image's tag says");
    }
  }

  // Plausible figures for `kubectl top`: a running container uses 10 millicores since it started
  // and 4 MiB; one not running has none, as containerd reports it.
  ContainerStats statsOf(const Ctr& c) const {
    const ContainerStatus& s = c.status;
    ContainerStats out{
        s.container.id, s.container.name, s.container.attempt, s.container.labels, {}};
    if (s.container.state != ContainerState::kRunning) return out;
    UnixNanos now = wallNanos(clock_.now());
    UnixNanos ran = now > s.startedAt ? now - s.startedAt : 0;
    out.usage = UsageStats{now, static_cast<uint64_t>(ran / 100), now, uint64_t{4} << 20};
    return out;
  }

  void kill(Ctr& c, int32_t code) {
    advance(c);
    ContainerStatus& s = c.status;
    if (s.container.state != ContainerState::kRunning &&
        !(s.container.state == ContainerState::kCreated && c.startAt))
      return;
    s.container.state = ContainerState::kExited;
    s.exitCode = code;
    s.finishedAt = wallNanos(clock_.now());
    s.reason = "Error";
  }

  // One CRI log line, so `outpostctl logs` has something to show. A write that fails (the pod's
  // log directory was removed) loses the line and nothing else.
  static void appendLog(const Ctr& c, UnixNanos at, const std::string& text) {
    if (c.logPath.empty()) return;
    std::ofstream f(c.logPath, std::ios::app);
    f << rfc3339Nano(at) << " stdout F " << text << "\n";
  }

  HollowOptions options_;
  core::Clock& clock_;
  std::mutex mu_;
  uint64_t nextId_ = 1;
  uint64_t nextIp_ = 0;
  std::map<std::string, PodSandboxStatus> sandboxes_;
  std::map<std::string, std::string> logDirs_;  // sandbox id -> its log directory
  std::map<std::string, Ctr> containers_;
};

}  // namespace

bool isHollowEndpoint(std::string_view endpoint) { return endpoint.rfind(kHollowScheme, 0) == 0; }

core::Result<HollowOptions> parseHollowEndpoint(std::string_view endpoint) {
  if (!isHollowEndpoint(endpoint))
    return core::invalidArgument("a hollow runtime endpoint starts with hollow://");
  std::string_view rest = endpoint.substr(kHollowScheme.size());
  auto q = rest.find('?');
  std::string_view where = rest.substr(0, q);
  if (!where.empty())
    return core::invalidArgument("hollow:// takes no host or path (found \"" + std::string(where) +
                                 "\"); options go in the query, e.g. "
                                 "hollow://?start_latency=250ms");
  HollowOptions o;
  if (q == std::string_view::npos) return o;
  std::string_view query = rest.substr(q + 1);
  bool latencySeen = false;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    auto eq = param.find('=');
    std::string_view name = param.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    if (name != "start_latency")
      return core::invalidArgument("hollow:// has no option \"" + std::string(name) +
                                   "\" (known: start_latency)");
    if (latencySeen) return core::invalidArgument("hollow:// has start_latency twice");
    latencySeen = true;
    auto d = parseDuration(value, 600000);
    if (!d || *d > std::chrono::minutes(10))
      return core::invalidArgument("hollow:// start_latency \"" + std::string(value) +
                                   "\" is not " + std::string(kDurationForm) + " of at most 10m");
    o.startLatency = *d;
  }
  return o;
}

core::Result<HollowImage> parseHollowImage(std::string_view image) {
  std::string_view tag = tagOf(image);
  HollowImage h;
  auto refuse = [&](std::string_view expected) {
    return core::invalidArgument("image \"" + std::string(image) + "\": tag \"" + std::string(tag) +
                                 "\" is not " + std::string(expected) +
                                 " (hollow runtime, docs/hollow-nodes.md)");
  };
  if (tag.rfind("pull-", 0) == 0) {
    if (tag != "pull-fails") return refuse("pull-fails");
    h.pullFails = true;
    return h;
  }
  constexpr std::string_view kExits = "exits-";
  constexpr std::string_view kExitsForm = "exits-<code 0-255>[-after-<n>ms|s|m]";
  if (tag.rfind(kExits, 0) != 0) return h;
  std::string_view rest = tag.substr(kExits.size());
  size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits == 0 || digits > 3) return refuse(kExitsForm);
  int32_t code = 0;
  std::from_chars(rest.data(), rest.data() + digits, code);
  if (code > 255) return refuse(kExitsForm);
  h.exitCode = code;
  rest = rest.substr(digits);
  if (rest.empty()) return h;
  constexpr std::string_view kAfter = "-after-";
  if (rest.rfind(kAfter, 0) != 0) return refuse(kExitsForm);
  auto d = parseDuration(rest.substr(kAfter.size()), 86400);
  if (!d) return refuse(kExitsForm);
  h.exitAfter = *d;
  return h;
}

RuntimePtr makeHollowRuntime(const HollowOptions& options, core::Clock& clock) {
  return std::make_unique<HollowRuntime>(options, clock);
}

}  // namespace outpost::deploy
