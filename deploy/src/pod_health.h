#pragma once
// A pod's health for rollouts: the "outpost" object of its published status (docs/rollouts.md,
// "On the node"): the desired version the status describes and whether that version is healthy
// (every container ready, none restarted during the soak time), progressing, or unhealthy with
// the reason (crash loop, image pull, probe, unsupported field, container config error).

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/status.h"
#include "pod_spec.h"

namespace outpost::deploy {

// The pod annotation naming its soak time in decimal seconds (default 0).
inline constexpr const char* kSoakAnnotation = "outpost.io/soak-seconds";

// What health is judged from, kept across passes in the pod's state. Starts again whenever the
// desired version (or the pod's uid) changes.
struct HealthTrack {
  std::string version;
  std::string uid;
  std::set<std::string> seenRunning;         // container ids seen running under this version
  std::set<std::string> seenExited;          // of those, the ones seen exited (each restart once)
  std::set<std::string> probeKilled;         // container names killed by their liveness probe
  std::optional<core::MonoTime> readySince;  // every container ready since (mono and wall)
  core::WallTime readySinceWall{};
  std::string restarted;  // a container that restarted since the pod was last healthy
};

// The pod's health, and when to look again (the end of the soak time) if that may change it.
struct Health {
  nlohmann::json outpost;
  std::optional<core::MonoTime> recheckAt;
};

// The soak time of `pod` (its kSoakAnnotation), or INVALID_ARGUMENT naming the bad value.
core::Result<core::Duration> soakOf(const PodSpec& pod);

// Judges the pod's health from its PodStatus JSON (`status`, as podStatusJson made it) for the
// desired `version` of `pod`, at `now` / `wallNow`.
Health judgeHealth(HealthTrack& track, const PodSpec& pod, const std::string& version,
                   const nlohmann::json& status, core::MonoTime now, core::WallTime wallNow);

// The "outpost" object of a pod whose desired version cannot run at all (`reason`, `message`).
nlohmann::json unhealthyOutpost(const std::string& version, const std::string& reason,
                                const std::string& message);

}  // namespace outpost::deploy
