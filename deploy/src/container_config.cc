#include "container_config.h"

#include <algorithm>

#include "labels.h"

namespace outpost::deploy {
namespace {

// The CFS period the kubelet uses: 100 ms.
constexpr int64_t kCpuPeriodMicros = 100000;
// cpu.shares of one CPU, and the kernel's minimum.
constexpr int64_t kSharesPerCpu = 1024;
constexpr int64_t kMinShares = 2;

}  // namespace

std::string podCgroup(const std::string& cgroupParent, const std::string& uid) {
  return cgroupParent + "/pod" + uid;
}

PodSandboxConfig sandboxConfig(const PodSpec& pod, uint32_t attempt,
                               const std::string& logDirectory, const std::string& cgroupParent) {
  PodSandboxConfig sc;
  sc.name = pod.name;
  sc.uid = pod.uid;
  sc.podNamespace = pod.podNamespace;
  sc.attempt = attempt;
  sc.hostname = pod.hostNetwork ? "" : (pod.hostname.empty() ? pod.name : pod.hostname);
  sc.logDirectory = logDirectory;
  sc.labels = pod.labels;
  sc.labels[kManaged] = "true";
  sc.labels[kPodUid] = pod.uid;
  sc.labels[kPodKey] = labelValue(pod.key);
  sc.labels[kSandboxHash] = pod.sandboxHash;
  sc.annotations = pod.annotations;
  sc.annotations[kGrace] = std::to_string(pod.gracePeriodSeconds);
  sc.hostNetwork = pod.hostNetwork;
  if (!cgroupParent.empty()) sc.cgroupParent = podCgroup(cgroupParent, pod.uid);
  sc.security = pod.podSecurity;
  return sc;
}

LinuxResources linuxResources(const ContainerSpec& spec) {
  LinuxResources r;
  if (spec.cpuLimitMilli > 0) {
    r.cpuPeriod = kCpuPeriodMicros;
    r.cpuQuota = spec.cpuLimitMilli * (kCpuPeriodMicros / 1000);
  }
  int64_t request = spec.cpuRequestMilli > 0 ? spec.cpuRequestMilli : spec.cpuLimitMilli;
  if (request > 0) r.cpuShares = std::max<int64_t>(kMinShares, request * kSharesPerCpu / 1000);
  r.memoryLimitBytes = spec.memoryLimitBytes;
  return r;
}

SecurityContext containerSecurity(const PodSpec& pod, const ContainerSpec& spec) {
  SecurityContext s = spec.security;
  if (!s.runAsUser) s.runAsUser = pod.podSecurity.runAsUser;
  if (!s.runAsGroup) s.runAsGroup = pod.podSecurity.runAsGroup;
  if (s.supplementalGroups.empty()) s.supplementalGroups = pod.podSecurity.supplementalGroups;
  return s;
}

uint32_t nextAttempt(const std::optional<uint32_t>& seen, const std::optional<uint32_t>& newest) {
  uint32_t attempt = seen ? *seen + 1 : 0;
  if (newest) attempt = std::max(attempt, *newest + 1);
  return attempt;
}

ContainerConfig containerConfig(const PodSpec& pod, const ContainerSpec& spec, uint32_t attempt,
                                std::vector<std::pair<std::string, std::string>> env,
                                std::vector<Mount> mounts) {
  ContainerConfig cc;
  cc.name = spec.name;
  cc.attempt = attempt;
  cc.image = spec.image;
  cc.command = spec.command;
  cc.args = spec.args;
  cc.workingDir = spec.workingDir;
  cc.stdin = spec.stdin;
  cc.stdinOnce = spec.stdinOnce;
  cc.tty = spec.tty;
  cc.env = std::move(env);
  cc.mounts = std::move(mounts);
  cc.labels = {{kManaged, "true"},
               {kPodUid, pod.uid},
               {kPodKey, labelValue(pod.key)},
               {kContainerName, spec.name},
               {kContainerHash, spec.hash}};
  cc.annotations = {{kGrace, std::to_string(pod.gracePeriodSeconds)}};
  cc.logPath = spec.name + "/" + std::to_string(attempt) + ".log";
  cc.resources = linuxResources(spec);
  cc.security = containerSecurity(pod, spec);
  cc.hostNetwork = pod.hostNetwork;
  return cc;
}

}  // namespace outpost::deploy
