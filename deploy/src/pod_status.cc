#include "pod_status.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace outpost::deploy {
namespace {

using nlohmann::json;

json containerStateJson(const ContainerStatus& s) {
  switch (s.container.state) {
    case ContainerState::kRunning:
      return {{"running", {{"startedAt", rfc3339(s.startedAt)}}}};
    case ContainerState::kExited: {
      std::string reason = s.reason;
      if (reason.empty() || reason == "Completed" || reason == "Error")
        reason = s.exitCode == 0 ? "Completed" : "Error";
      json t = {{"exitCode", s.exitCode},
                {"reason", reason},
                {"startedAt", rfc3339(s.startedAt)},
                {"finishedAt", rfc3339(s.finishedAt)},
                {"containerID", "containerd://" + s.container.id}};
      if (!s.message.empty()) t["message"] = s.message;
      return {{"terminated", t}};
    }
    default:
      return {{"waiting", {{"reason", "ContainerCreating"}}}};
  }
}

struct Counts {
  int running = 0, waiting = 0, stopped = 0, succeeded = 0, failed = 0;
};

json containerJson(const ContainerView& v, Counts& counts, bool& allReady) {
  json out = {{"name", v.spec->name}, {"image", v.spec->image}, {"ready", false},
              {"restartCount", 0},    {"started", false},       {"imageID", ""}};
  bool haveLast = false;
  if (v.current) {
    const auto& c = *v.current;
    out["restartCount"] = c.container.attempt;
    out["containerID"] = "containerd://" + c.container.id;
    out["imageID"] = c.container.imageRef;
  }
  if (v.previous && v.previous->container.state == ContainerState::kExited) {
    out["lastState"] = containerStateJson(*v.previous);
    haveLast = true;
  } else {
    out["lastState"] = json::object();
  }
  bool restarting = !v.waitingReason.empty() && v.current &&
                    v.current->container.state == ContainerState::kExited;
  if (restarting) {
    // Exited and waiting to be restarted (crash-loop back-off): waiting, last state = that exit.
    out["lastState"] = containerStateJson(*v.current);
    haveLast = true;
  }
  if (v.current && !restarting) {
    out["state"] = containerStateJson(*v.current);
    switch (v.current->container.state) {
      case ContainerState::kRunning:
        counts.running++;
        out["ready"] = true;
        out["started"] = true;
        break;
      case ContainerState::kExited:
        counts.stopped++;
        (v.current->exitCode == 0 ? counts.succeeded : counts.failed)++;
        allReady = false;
        break;
      default:
        counts.waiting++;
        allReady = false;
    }
  } else {
    json w = {{"reason", v.waitingReason.empty() ? "ContainerCreating" : v.waitingReason}};
    if (!v.waitingMessage.empty()) w["message"] = v.waitingMessage;
    out["state"] = {{"waiting", w}};
    (haveLast ? counts.stopped : counts.waiting)++;
    allReady = false;
  }
  return out;
}

json condition(const std::string& type, bool status, const std::string& reason,
               const std::string& message, Transitions& transitions, core::WallTime now) {
  std::string s = status ? "True" : "False";
  auto& t = transitions[type];
  if (t.first != s) t = {s, rfc3339(now)};
  json c = {
      {"type", type}, {"status", s}, {"lastProbeTime", nullptr}, {"lastTransitionTime", t.second}};
  if (!reason.empty()) c["reason"] = reason;
  if (!message.empty()) c["message"] = message;
  return c;
}

// The init containers' statuses, and whether they all succeeded or one failed for good.
struct InitStatus {
  json statuses = json::array();
  bool done = true;
  bool failed = false;
};

InitStatus initStatus(const PodView& view) {
  InitStatus out;
  Counts counts;
  bool ready = true;
  for (const auto& v : view.init) {
    out.statuses.push_back(containerJson(v, counts, ready));
    bool exited = v.current && v.current->container.state == ContainerState::kExited;
    if (!(exited && v.current->exitCode == 0 && v.waitingReason.empty())) out.done = false;
    if (exited && v.current->exitCode != 0 && view.spec->restartPolicy == RestartPolicy::kNever) {
      out.failed = true;
    }
  }
  for (auto& st : out.statuses) {
    // An init container that completed is not "ready" in Kubernetes terms... but reports ready.
    if (st["state"].contains("terminated") && st["state"]["terminated"]["exitCode"] == 0)
      st["ready"] = true;
  }
  return out;
}

// The phase, as the kubelet's getPhase computes it.
std::string podPhase(const InitStatus& init, const Counts& counts, RestartPolicy policy) {
  if (init.failed) return "Failed";
  // Pending twice, as in the kubelet: something to wait for, or no container in any state.
  if (!init.done || counts.waiting > 0) return "Pending";
  if (counts.running > 0) return "Running";
  if (counts.stopped == 0) return "Pending";
  // Always restarts whatever stopped; OnFailure restarts only the failed ones.
  if (policy != RestartPolicy::kAlways && counts.stopped == counts.succeeded) return "Succeeded";
  if (policy == RestartPolicy::kNever) return "Failed";
  return "Running";
}

json podConditions(const PodView& view, bool initDone, bool ready, Transitions& transitions,
                   core::WallTime now) {
  json conds = json::array();
  conds.push_back(condition("PodScheduled", true, "", "", transitions, now));
  conds.push_back(condition("Initialized", initDone, initDone ? "" : "ContainersNotInitialized", "",
                            transitions, now));
  conds.push_back(
      condition("ContainersReady", ready, ready ? "" : "ContainersNotReady", "", transitions, now));
  conds.push_back(
      condition("Ready", ready, ready ? "" : "ContainersNotReady", "", transitions, now));
  if (!view.spec->unsupported.empty()) {
    std::string fields;
    for (const auto& f : view.spec->unsupported) fields += (fields.empty() ? "" : ", ") + f;
    conds.push_back(condition("Unsupported", true, "UnsupportedField",
                              "fields not supported by this node, ignored: " + fields, transitions,
                              now));
  }
  return conds;
}

}  // namespace

std::string rfc3339(UnixNanos t) {
  if (t <= 0) return "";
  std::time_t secs = static_cast<std::time_t>(t / 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string rfc3339(core::WallTime t) {
  return rfc3339(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

std::string podStatusJson(const PodView& view, Transitions& transitions, core::WallTime now) {
  const PodSpec& spec = *view.spec;
  InitStatus init = initStatus(view);
  Counts counts;
  bool allReady = true;
  json statuses = json::array();
  for (const auto& v : view.containers) statuses.push_back(containerJson(v, counts, allReady));
  std::string phase = podPhase(init, counts, spec.restartPolicy);
  bool ready = init.done && allReady && counts.running == static_cast<int>(view.containers.size());
  if (phase == "Succeeded") ready = false;

  json status = json::object();
  status["phase"] = phase;
  status["conditions"] = podConditions(view, init.done, ready, transitions, now);
  if (!view.hostIp.empty()) status["hostIP"] = view.hostIp;
  if (!view.podIp.empty()) {
    status["podIP"] = view.podIp;
    status["podIPs"] = json::array({{{"ip", view.podIp}}});
  }
  if (view.sandboxCreatedAt > 0) status["startTime"] = rfc3339(view.sandboxCreatedAt);
  if (!init.statuses.empty()) status["initContainerStatuses"] = init.statuses;
  status["containerStatuses"] = statuses;
  status["qosClass"] = "BestEffort";
  for (const auto& c : spec.containers) {
    if (c.cpuLimitMilli || c.memoryLimitBytes || c.cpuRequestMilli)
      status["qosClass"] = "Burstable";
  }
  return status.dump();
}

std::string invalidPodStatusJson(const std::string& error, Transitions& transitions,
                                 core::WallTime now, const std::string& reason) {
  json status = {{"phase", "Failed"}, {"reason", reason}, {"message", error}};
  status["conditions"] =
      json::array({condition("Unsupported", true, reason, error, transitions, now),
                   condition("Ready", false, reason, "", transitions, now)});
  return status.dump();
}

void readHostFacts(NodeFacts& facts) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  facts.milliCpu = cpus > 0 ? cpus * 1000 : 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemTotal:", 0) == 0) {
      std::istringstream in(line.substr(9));
      int64_t kb = 0;
      in >> kb;
      facts.memoryBytes = kb * 1024;
    }
  }
  utsname u{};
  if (uname(&u) == 0) {
    facts.kernel = u.release;
    facts.architecture = u.machine;
    if (facts.architecture == "x86_64") facts.architecture = "amd64";
    if (facts.architecture == "aarch64") facts.architecture = "arm64";
  }
  std::ifstream osr("/etc/os-release");
  while (std::getline(osr, line)) {
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      facts.osImage = line.substr(12);
      if (facts.osImage.size() >= 2 && facts.osImage.front() == '"')
        facts.osImage = facts.osImage.substr(1, facts.osImage.size() - 2);
    }
  }
}

std::string nodeStatusJson(const NodeFacts& f, const std::string& heartbeat) {
  auto cpu = [](int64_t milli) {
    return milli % 1000 == 0 ? std::to_string(milli / 1000) : std::to_string(milli) + "m";
  };
  auto mem = [](int64_t bytes) { return std::to_string(bytes / 1024) + "Ki"; };
  json capacity = {{"cpu", cpu(f.milliCpu)},
                   {"memory", mem(f.memoryBytes)},
                   {"pods", std::to_string(f.maxPods)}};
  json allocatable = {{"cpu", cpu(std::max<int64_t>(0, f.milliCpu - f.reservedMilliCpu))},
                      {"memory", mem(std::max<int64_t>(0, f.memoryBytes - f.reservedMemoryBytes))},
                      {"pods", std::to_string(f.maxPods)}};
  auto cond = [&](const char* type, bool status, const char* reason, const std::string& message) {
    json c = {{"type", type},
              {"status", status ? "True" : "False"},
              {"reason", reason},
              {"message", message}};
    if (!heartbeat.empty()) c["lastHeartbeatTime"] = heartbeat;
    return c;
  };
  json conditions = json::array(
      {cond("Ready", f.runtimeReady, f.runtimeReady ? "KubeletReady" : "RuntimeNotReady",
            f.runtimeReady ? "outpost is posting ready status" : f.runtimeMessage),
       cond("MemoryPressure", false, "KubeletHasSufficientMemory", ""),
       cond("DiskPressure", false, "KubeletHasNoDiskPressure", ""),
       cond("PIDPressure", false, "KubeletHasSufficientPID", "")});
  json status = {
      {"capacity", capacity},
      {"allocatable", allocatable},
      {"conditions", conditions},
      {"nodeInfo",
       {{"containerRuntimeVersion", f.runtime.runtimeName.empty()
                                        ? ""
                                        : f.runtime.runtimeName + "://" + f.runtime.runtimeVersion},
        {"kernelVersion", f.kernel},
        {"osImage", f.osImage},
        {"architecture", f.architecture},
        {"operatingSystem", "linux"},
        {"kubeletVersion", "outpost"}}}};
  if (!f.hostIp.empty())
    status["addresses"] = json::array({{{"type", "InternalIP"}, {"address", f.hostIp}}});
  status["addresses"] = status.value("addresses", json::array());
  status["addresses"].push_back({{"type", "Hostname"}, {"address", f.nodeName}});
  return status.dump();
}

std::string hostIp() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  std::ifstream hosts("/etc/hosts");
  std::string line;
  while (std::getline(hosts, line)) {
    std::istringstream in(line);
    std::string ip, host;
    in >> ip;
    while (in >> host) {
      if (host == name && ip.find(':') == std::string::npos && ip.rfind("127.", 0) != 0) return ip;
    }
  }
  return "";
}

}  // namespace outpost::deploy
