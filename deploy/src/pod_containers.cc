#include "outpost/deploy/pod_containers.h"

#include <algorithm>
#include <map>

#include "labels.h"
#include "outpost/validation/validation.h"

namespace outpost::deploy {

core::Result<PodContainer> containerFor(Runtime& runtime, const Reconciler& reconciler,
                                        const std::string& ns, const std::string& pod,
                                        const std::string& container) {
  OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("namespace", ns));
  OUTPOST_RETURN_IF_ERROR(validation::dnsSubdomain("pod name", pod));
  OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("container name", container));
  std::string key = ns + "/pod/" + pod;
  auto info = reconciler.podInfo(key);
  if (!info) return core::notFound("pod " + ns + "/" + pod + " is not running on this node");
  // The uid and log directory come from our own reconciler, but the path is built from them:
  // check them as the reconciler did when it made the directory.
  OUTPOST_RETURN_IF_ERROR(validation::uid("pod uid", info->uid));
  OUTPOST_RETURN_IF_ERROR(validation::absolutePath("pod log directory", info->logDirectory));
  auto list = runtime.listContainers(
      {"", "", std::nullopt, {{kPodUid, info->uid}, {kContainerName, container}}});
  if (!list.isOk()) return list.status();
  std::vector<Container> attempts = std::move(list).value();
  if (attempts.empty()) {
    return core::notFound("pod " + ns + "/" + pod + " has no container " + container +
                          " on this node");
  }
  // Newest first: the higher attempt, then the later creation (a replaced container starts again
  // at the same attempt after a spec change).
  std::sort(attempts.begin(), attempts.end(), [](const Container& a, const Container& b) {
    return a.attempt != b.attempt ? a.attempt > b.attempt : a.createdAt > b.createdAt;
  });
  auto logOf = [&](const Container& c) {
    return info->logDirectory + "/" + container + "/" + std::to_string(c.attempt) + ".log";
  };
  PodContainer out;
  out.podUid = info->uid;
  out.sandboxId = attempts[0].podSandboxId;
  out.containerId = attempts[0].id;
  out.attempt = attempts[0].attempt;
  out.logPath = logOf(attempts[0]);
  if (attempts.size() > 1) {
    out.previousContainerId = attempts[1].id;
    out.previousLogPath = logOf(attempts[1]);
  }
  return out;
}

core::Result<std::vector<PodUsage>> podUsage(Runtime& runtime, const Reconciler& reconciler) {
  Labels ours{{kManaged, "true"}};
  OUTPOST_ASSIGN_OR_RETURN(auto running,
                           runtime.listContainers({"", "", ContainerState::kRunning, ours}));
  OUTPOST_ASSIGN_OR_RETURN(auto stats, runtime.listContainerStats({"", "", ours}));
  std::map<std::string, const ContainerStats*> statsById;
  for (const auto& s : stats) statsById[s.id] = &s;
  std::map<std::string, PodSandboxStats> sandboxes;  // by id; empty when not implemented
  auto sandboxStats = runtime.listPodSandboxStats({"", "", ours});
  if (sandboxStats.isOk()) {
    for (auto& s : *sandboxStats) sandboxes[s.id] = std::move(s);
  } else if (sandboxStats.status().code() != core::Code::kUnimplemented) {
    return sandboxStats.status();
  }
  std::map<std::string, PodUsage> pods;  // by store key
  std::map<std::string, std::string> sandboxOf;
  for (const auto& c : running) {
    auto key = keyFromLabel(label(c.labels, kPodKey));
    if (!key || !reconciler.podInfo(*key)) continue;  // not a pod this reconciler runs
    PodUsage& pod = pods[*key];
    if (pod.name.empty()) {
      size_t slash = key->find('/');
      pod.ns = key->substr(0, slash);
      pod.name = key->substr(key->rfind('/') + 1);
    }
    sandboxOf[*key] = c.podSandboxId;
    PodUsage::Member m;
    m.name = label(c.labels, kContainerName);
    m.createdAt = c.createdAt;
    if (auto s = statsById.find(c.id); s != statsById.end()) m.usage = s->second->usage;
    pod.containers.push_back(std::move(m));
  }
  std::vector<PodUsage> out;
  for (auto& [key, pod] : pods) {
    if (auto sb = sandboxes.find(sandboxOf[key]); sb != sandboxes.end()) {
      pod.usage = sb->second.usage;
    } else {
      for (const auto& m : pod.containers) {
        const UsageStats& u = m.usage;
        if (u.cpuCoreNanos) {
          pod.usage.cpuCoreNanos = pod.usage.cpuCoreNanos.value_or(0) + *u.cpuCoreNanos;
          pod.usage.cpuTimestamp = std::max(pod.usage.cpuTimestamp, u.cpuTimestamp);
        }
        if (u.memoryWorkingSetBytes) {
          pod.usage.memoryWorkingSetBytes =
              pod.usage.memoryWorkingSetBytes.value_or(0) + *u.memoryWorkingSetBytes;
          pod.usage.memoryTimestamp = std::max(pod.usage.memoryTimestamp, u.memoryTimestamp);
        }
      }
    }
    out.push_back(std::move(pod));
  }
  return out;
}

}  // namespace outpost::deploy
