// A pod's health for rollouts, judged from the PodStatus the reconciler publishes.

#include "pod_health.h"

#include <array>
#include <cmath>
#include <cstdlib>

#include "outpost/validation/validation.h"
#include "pod_status.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;

// Waiting reasons that mean the version does not run as it should (as the kubelet names them).
constexpr std::array<const char*, 8> kFailing = {
    "CrashLoopBackOff", "ImagePullBackOff",           "ErrImagePull",         "ErrImageNeverPull",
    "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"};

// A week: a longer soak is no soak a rollout waits for.
constexpr double kMaxSoakSeconds = 7 * 24 * 3600;

bool failing(const std::string& reason) {
  for (const char* r : kFailing) {
    if (reason == r) return true;
  }
  return false;
}

std::string str(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// "containerd://<id>" -> "<id>".
std::string idOf(const json& state) {
  std::string id = str(state, "containerID");
  auto at = id.find("://");
  return at == std::string::npos ? id : id.substr(at + 3);
}

json base(const std::string& version, const char* health) {
  return {{"desiredVersion", version}, {"health", health}};
}

bool readyCondition(const json& status) {
  for (const auto& c : status.value("conditions", json::array())) {
    if (c.is_object() && str(c, "type") == "Ready") return str(c, "status") == "True";
  }
  return false;
}

// The exits of containers seen running under this version: each one a restart, noted once.
void noteRestarts(HealthTrack& t, const json& statuses) {
  static const json kNone = json::object();
  for (const auto& cs : statuses) {
    if (!cs.is_object()) continue;
    auto st = cs.find("state");
    auto last = cs.find("lastState");
    const json& state = st != cs.end() && st->is_object() ? *st : kNone;
    const json& lastState = last != cs.end() && last->is_object() ? *last : kNone;
    if (state.contains("running")) {
      if (std::string id = idOf(cs); !id.empty()) t.seenRunning.insert(id);
    }
    for (const json* s : {&state, &lastState}) {
      auto term = s->find("terminated");
      if (term == s->end() || !term->is_object()) continue;
      std::string id = idOf(*term);
      if (id.empty() || !t.seenRunning.count(id) || t.seenExited.count(id)) continue;
      t.seenExited.insert(id);
      t.restarted = str(cs, "name");
      t.readySince.reset();  // the soak starts again once every container is ready
    }
  }
}

// The first container waiting for a failing reason, as (reason, message).
std::optional<std::pair<std::string, std::string>> failingWait(const HealthTrack& t,
                                                               const json& status) {
  for (const char* list : {"initContainerStatuses", "containerStatuses"}) {
    for (const auto& cs : status.value(list, json::array())) {
      if (!cs.is_object()) continue;
      auto state = cs.value("state", json::object());
      auto w = state.find("waiting");
      if (w == state.end() || !w->is_object()) continue;
      std::string reason = str(*w, "reason");
      if (!failing(reason)) continue;
      std::string name = str(cs, "name");
      std::string message = "container " + name + ": " + reason;
      if (auto m = str(*w, "message"); !m.empty()) message += ": " + m;
      if (reason == "CrashLoopBackOff" && t.probeKilled.count(name)) {
        return std::pair{std::string("ProbeFailed"),
                         "container " + name + " failed its liveness probe and was restarted"};
      }
      return std::pair{reason, message};
    }
  }
  return std::nullopt;
}

}  // namespace

core::Result<core::Duration> soakOf(const PodSpec& pod) {
  auto it = pod.annotations.find(kSoakAnnotation);
  if (it == pod.annotations.end()) return core::Duration::zero();
  const std::string& v = it->second;
  bool digits = !v.empty() && v.size() <= 16 && v.front() != '.' && v.back() != '.';
  int dots = 0;
  for (char c : v) {
    if (c == '.') {
      dots++;
    } else if (c < '0' || c > '9') {
      digits = false;
    }
  }
  double secs = digits && dots <= 1 ? std::strtod(v.c_str(), nullptr) : -1;
  if (secs < 0 || secs > kMaxSoakSeconds) {
    return core::invalidArgument("annotation " + std::string(kSoakAnnotation) + ": \"" +
                                 validation::printable(v) +
                                 "\" is not decimal seconds from 0 to 604800");
  }
  return std::chrono::duration_cast<core::Duration>(std::chrono::duration<double>(secs));
}

Health judgeHealth(HealthTrack& t, const PodSpec& pod, const std::string& version,
                   const json& status, core::MonoTime now, core::WallTime wallNow) {
  if (t.version != version || t.uid != pod.uid) {
    t = HealthTrack{};
    t.version = version;
    t.uid = pod.uid;
  }
  Health h;
  auto soak = soakOf(pod);
  if (!soak) {
    h.outpost = unhealthyOutpost(version, "Unsupported", soak.status().message());
    return h;
  }
  if (!pod.unsupported.empty()) {
    std::string fields;
    for (const auto& f : pod.unsupported) fields += (fields.empty() ? "" : ", ") + f;
    h.outpost =
        unhealthyOutpost(version, "Unsupported", "fields not supported by this node: " + fields);
    return h;
  }
  noteRestarts(t, status.value("initContainerStatuses", json::array()));
  noteRestarts(t, status.value("containerStatuses", json::array()));
  const std::string phase = str(status, "phase");
  if (auto f = failingWait(t, status)) {
    t.readySince.reset();
    h.outpost = unhealthyOutpost(version, f->first, f->second);
    return h;
  }
  if (phase == "Failed") {
    h.outpost = unhealthyOutpost(version, "Failed", "the pod's containers failed");
    return h;
  }
  if (phase == "Succeeded") {
    h.outpost = base(version, "healthy");
    return h;
  }
  if (!readyCondition(status)) {
    t.readySince.reset();
  } else if (!t.readySince) {
    t.readySince = now;
    t.readySinceWall = wallNow;
  }
  if (t.readySince && now - *t.readySince >= *soak) {
    t.restarted.clear();
    h.outpost = base(version, "healthy");
    h.outpost["healthySince"] =
        rfc3339(t.readySinceWall + std::chrono::duration_cast<core::WallTime::duration>(*soak));
    return h;
  }
  if (t.readySince) h.recheckAt = *t.readySince + *soak;
  if (!t.restarted.empty()) {
    // A restart since the pod was last healthy: once it has run a whole soak again it is healthy.
    bool probe = t.probeKilled.count(t.restarted) > 0;
    h.outpost = unhealthyOutpost(
        version, probe ? "ProbeFailed" : "CrashLoopBackOff",
        "container " + t.restarted +
            (probe ? " failed its liveness probe and was restarted" : " restarted") +
            " during the soak time");
    return h;
  }
  h.outpost = base(version, "progressing");
  h.outpost["reason"] = t.readySince ? "Soaking" : "ContainersNotReady";
  return h;
}

json unhealthyOutpost(const std::string& version, const std::string& reason,
                      const std::string& message) {
  json o = base(version, "unhealthy");
  o["reason"] = reason;
  o["message"] = message;
  return o;
}

}  // namespace outpost::deploy
