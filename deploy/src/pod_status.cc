#include "pod_status.h"

#include <ctime>
#include <nlohmann/json.hpp>

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
  return core::formatRfc3339(core::WallTime(
      std::chrono::duration_cast<core::WallTime::duration>(std::chrono::nanoseconds(t))));
}

std::string rfc3339(core::WallTime t) {
  if (t.time_since_epoch().count() <= 0) return "";
  return core::formatRfc3339(t);
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

}  // namespace outpost::deploy
