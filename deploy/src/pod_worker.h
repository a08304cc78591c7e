#pragma once
// The pod worker: one pass over one desired pod. It observes what the runtime runs for the pod,
// compares it with the spec, and makes one step towards it: sandbox, init containers in order,
// containers, restarts with crash-loop back-off, replacement on spec change, liveness probes.
// Its answer is the pod's status.

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "garbage_collector.h"
#include "host_paths.h"
#include "image_puller.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/deploy/ports.h"
#include "outpost/deploy/reconciler.h"
#include "pod_events.h"
#include "pod_health.h"
#include "pod_spec.h"
#include "pod_status.h"
#include "retry_backoff.h"

namespace outpost::deploy {

// The slot of the pod's sandbox among its containers' (PodState::refused, PodEvents::warnOnce).
inline constexpr const char* kSandboxSlot = "#sandbox";

// What the reconciler keeps of one pod between passes.
struct PodState {
  // Crash-loop back-off of a container name.
  struct CrashBackoff {
    core::Duration delay{0};
    std::string exitedId;  // the exited container this entry has seen
    core::MonoTime exitSeenAt{};
  };
  struct Probe {
    std::string containerId;
    core::MonoTime nextAt{};
    int failures = 0;
  };
  std::string key;
  std::optional<PodSpec> spec;  // nullopt: no longer desired, terminate
  std::string version;          // the stored resource version of the desired pod (docs/rollouts.md)
  std::string specJson;         // the desired JSON `spec` was parsed from
  // A change of the running pod that waits (a maintenance window, an on-site hold): its record
  // (nullopt: a deletion), and why it waits.
  struct Pending {
    std::optional<PodRecord> record;
    std::string version;
  };
  std::optional<Pending> pending;
  std::optional<HeldUpdate> held;
  HealthTrack health;   // what the "outpost" object of its status is judged from
  std::string invalid;  // why the desired JSON cannot be run
  std::map<std::string, CrashBackoff> backoff;
  std::map<std::string, Probe> probes;
  RetryBackoffs pulls;    // failed pulls, by container name
  RetryBackoffs refused;  // runtime refusals, by container name or kSandboxSlot
  std::map<std::string, std::pair<std::string, std::string>> waiting;  // name -> reason, message
  std::map<std::string, uint32_t> attempts;  // highest attempt seen per container name
  std::string phase;                         // of the last status published
  Transitions transitions;
  std::string lastStatus;
  std::optional<core::TimerId> wakeTimer;
  core::MonoTime wakeAt{};
  // The uid whose deletion (metadata.deletionTimestamp) was reported done (StatusSink::
  // podTerminated): once per pod.
  std::string terminatedUid;
};

// What the workers share, owned by the reconciler.
struct WorkerContext {
  Runtime& runtime;
  DesiredPods& desired;
  const ReconcilerConfig& config;
  const core::Clock& clock;
  core::Logger log;
  const HostPaths& paths;
  PodEvents& events;
  ImagePuller& images;
  GarbageCollector& gc;
  StatusCache& statuses;
  ReconcilerStats& stats;
  core::Counter* createdCounter = nullptr;  // may be null
  std::string hostIp{};
  // Looks at the pod again at `at` (the end of a back-off, the next probe).
  std::function<void(PodState&, core::MonoTime)> wakeAt{};
  // Asks the cloud for the configmaps and secrets of the pod that the store lacks.
  std::function<void(const PodSpec&)> askForRefs{};
};

// The sandbox's CRI log directory of `uid` ("" for a uid that is not one).
std::string logDirectoryOf(const HostPaths& paths, const std::string& uid);

// One pass over the pod of `state` (which has a spec), given what the runtime runs (`all`, at
// least the pod's). Returns the pod's status JSON, with its health as the "outpost" object.
std::string syncPod(WorkerContext& ctx, PodState& state, const Observed& all);

// The status of the pod of `state` as the runtime has it, acting on nothing: for a pod being
// deleted (its containers stop; none is started or removed).
std::string observedPodStatus(WorkerContext& ctx, PodState& state, const Observed& all);

// The status of a pod whose desired version cannot run (`why`), unhealthy for `reason`.
std::string invalidStatus(const PodState& state, const std::string& why, core::WallTime now,
                          Transitions& transitions, const std::string& reason = "InvalidSpec");

// The containers of `uid` in `all` that still run (or may: created, unknown).
std::vector<std::string> liveContainers(const Observed& all, const std::string& uid);

}  // namespace outpost::deploy
