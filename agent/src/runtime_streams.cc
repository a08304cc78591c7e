#include "runtime_streams.h"

#include <chrono>

#include "outpost/deploy/pod_containers.h"
#include "outpost/stream/resource_metrics.h"

namespace outpost::agent {
namespace {

constexpr size_t kMaxCommandArgs = 256;
constexpr size_t kMaxCommandBytes = size_t{64} * 1024;

int64_t millis(deploy::UnixNanos t) { return t / 1000000; }

stream::UsageSample sample(const deploy::UsageStats& u) {
  return {millis(u.cpuTimestamp), u.cpuCoreNanos, millis(u.memoryTimestamp),
          u.memoryWorkingSetBytes};
}

}  // namespace

DeployRuntimeStreams::DeployRuntimeStreams(DeployAccess deploy, core::Clock& clock,
                                           std::filesystem::path proc)
    : deploy_(std::move(deploy)), clock_(clock), proc_(std::move(proc)) {}

core::Result<stream::ContainerLog> DeployRuntimeStreams::containerLog(
    const stream::ContainerRef& ref, bool previous) {
  stream::ContainerLog out;
  OUTPOST_RETURN_IF_ERROR(deploy_([&](deploy::Runtime& rt, const deploy::Reconciler& rec) {
    OUTPOST_ASSIGN_OR_RETURN(auto c, deploy::containerFor(rt, rec, ref.ns, ref.pod, ref.container));
    if (previous) {
      if (c.previousLogPath.empty()) {
        return core::notFound("previous terminated container \"" + ref.container + "\" in pod \"" +
                              ref.pod + "\" not found");
      }
      out = {c.previousLogPath, c.previousContainerId};
    } else {
      out = {c.logPath, c.containerId};
    }
    return core::okStatus();
  }));
  return out;
}

core::Result<std::string> DeployRuntimeStreams::streamUrl(const stream::ContainerRef& ref,
                                                          deploy::StreamRequest req, bool exec) {
  std::string url;
  OUTPOST_RETURN_IF_ERROR(deploy_([&](deploy::Runtime& rt, const deploy::Reconciler& rec) {
    OUTPOST_ASSIGN_OR_RETURN(auto c, deploy::containerFor(rt, rec, ref.ns, ref.pod, ref.container));
    req.containerId = c.containerId;
    auto answer = exec ? rt.exec(req) : rt.attach(req);
    if (!answer.isOk()) return answer.status();
    url = std::move(answer).value();
    return core::okStatus();
  }));
  return url;
}

core::Result<std::string> DeployRuntimeStreams::execUrl(const stream::ExecParams& params) {
  // The command runs in the container, never on the node: it only has to be of a sane size.
  if (params.command.empty()) return core::invalidArgument("exec needs a command");
  size_t bytes = 0;
  for (const auto& a : params.command) bytes += a.size();
  if (params.command.size() > kMaxCommandArgs || bytes > kMaxCommandBytes)
    return core::invalidArgument("exec command too long (at most 256 arguments, 64 KiB)");
  return streamUrl(params.ref,
                   {"", params.command, params.stdin, params.stdout, params.stderr, params.tty},
                   true);
}

core::Result<std::string> DeployRuntimeStreams::attachUrl(const stream::AttachParams& params) {
  return streamUrl(params.ref, {"", {}, params.stdin, params.stdout, params.stderr, params.tty},
                   false);
}

core::Result<std::string> DeployRuntimeStreams::resourceMetrics() {
  stream::ResourceSnapshot snap;
  int64_t now = core::toUnixMillis(clock_.wallNow());
  auto node = stream::readNodeUsage(proc_, now);
  if (node.isOk()) snap.node = *node;
  core::Status pods = deploy_([&](deploy::Runtime& rt, const deploy::Reconciler& rec) {
    OUTPOST_ASSIGN_OR_RETURN(auto usage, deploy::podUsage(rt, rec));
    for (const auto& p : usage) {
      stream::PodUsage pod{p.ns, p.name, sample(p.usage), {}};
      for (const auto& c : p.containers)
        pod.containers.push_back({c.name, millis(c.createdAt), sample(c.usage)});
      snap.pods.push_back(std::move(pod));
    }
    return core::okStatus();
  });
  // As the kubelet: a failed scrape of the runtime is said by scrape_error, the node's figures
  // stay.
  snap.scrapeError = !pods.isOk() || !node.isOk();
  return stream::resourceMetricsText(snap);
}

}  // namespace outpost::agent
