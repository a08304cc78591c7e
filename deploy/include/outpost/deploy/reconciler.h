#pragma once
// Reconciler: makes the pods on the node match the desired pods, and keeps them so.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/core/status.h"
#include "outpost/deploy/maintenance.h"
#include "outpost/deploy/ports.h"
#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

struct ReconcilerConfig {
  // Projected configMap/secret/emptyDir volumes and container logs live under here.
  std::string stateDir = "/var/lib/outpost/deploy";
  // Absolute path prefixes a hostPath volume must be under (e.g. "/srv/data"); empty: any path,
  // as Kubernetes allows. A pod with a hostPath outside every prefix does not start: its containers
  // wait in CreateContainerConfigError with the reason. A hostPath volume gives the pod's
  // containers (root in them, by default) that part of the host's file system.
  std::vector<std::string> hostPathAllow;
  // Parent cgroup of pod sandboxes (cgroupfs path, e.g. "/outpost"); empty: the runtime's default.
  std::string cgroupParent;
  // The runtime's pause image: made sure to be present before the first sandbox.
  std::string sandboxImage;
  // Namespace of a pod whose metadata has none.
  std::string defaultNamespace = "default";
  // Full level-triggered pass over every pod, whatever happened.
  std::chrono::milliseconds resyncInterval{60000};
  // Asking the cloud again for the same missing object (DesiredPods::fetchMissing): not sooner.
  std::chrono::milliseconds fetchMissingInterval{60000};
  // Runtime polling (containerd 1.6 has no event stream).
  std::chrono::milliseconds pollInterval{2000};
  // Node status heartbeat: sent at this interval even when unchanged (and at once on a change).
  std::chrono::milliseconds nodeStatusInterval{300000};
  // Crash-loop back-off: initial, cap, and how long a container must run to reset it.
  std::chrono::seconds backoffInitial{10};
  std::chrono::seconds backoffMax{300};
  std::chrono::seconds backoffReset{600};
  // Image pull back-off after a failed pull (ImagePullBackOff): initial, doubling to the cap.
  std::chrono::seconds pullBackoffInitial{10};
  std::chrono::seconds pullBackoffMax{300};
  // Node name reported to fieldRef spec.nodeName and in node status.
  std::string nodeName = "outpost";
  // Resources held back from allocatable (node.reserved).
  int64_t reservedMilliCpu = 0;
  int64_t reservedMemoryBytes = 0;
  int maxPods = 110;
  // The node's address: its InternalIP, and podIP/hostIP of host network pods. Empty: none known
  // (the node reports its Hostname address only).
  std::string nodeAddress;
  // Reported as daemonEndpoints.kubeletEndpoint.Port: EdgeCore's is its stream server's, 10350.
  int daemonPort = 10350;
  // Reported as nodeInfo.kubeletVersion: semver-shaped, as EdgeCore's v1.26.10-kubeedge-v1.15.4.
  std::string kubeletVersion = "v1.26.10-outpost";
  // node.maintenance_windows: updates and deletions of running pods annotated
  // outpost.io/update-policy: maintenance-window wait for one (docs/rollouts.md). Empty: none wait.
  std::vector<MaintenanceWindow> maintenanceWindows;
};

// An on-site hold (`outpostctl hold`): updates and deletions of the running pod `pod` (its key;
// "" for every pod) wait until `until` (nullopt: until released).
struct PodHold {
  std::string pod;
  std::optional<core::WallTime> until;
};

// An update or deletion of a running pod that waits (a maintenance window, an on-site hold).
struct HeldUpdate {
  std::string pod;
  std::string runningVersion;
  std::string pendingVersion;  // "" for a deletion
  bool deletion = false;
  std::string reason;  // MaintenanceWindow or OnHold
  std::string message;
  std::optional<core::WallTime> heldUntil;  // the window's opening, or the hold's end
  bool window = false;                      // held by a maintenance window
};

// What node.reserved holds back from the node's capacity.
struct NodeReserved {
  int64_t milliCpu = 0;
  int64_t memoryBytes = 0;
};
// node.reserved as configured ({cpu: 100m, memory: 256Mi}): a name other than cpu and memory, or
// a value that is not a non-negative Kubernetes quantity, is refused with an error naming it.
core::Result<NodeReserved> parseNodeReserved(const std::map<std::string, std::string>& reserved);

// The NodeStatus JSON of this host for `config` before the runtime was asked anything (Ready
// False until it answers): what the node registers with, as the kubelet's initial Node.
std::string initialNodeStatus(const ReconcilerConfig& config, core::WallTime now);

// Counters of what the reconciler did, for tests, benchmarks and metrics.
struct ReconcilerStats {
  uint64_t sandboxesCreated = 0;
  uint64_t containersCreated = 0;
  uint64_t containersRemoved = 0;
  uint64_t sandboxesRemoved = 0;
  uint64_t imagesPulled = 0;
  uint64_t syncs = 0;
};

// Something that happened to a pod (pulled, created, started, exited, back-off, an error), as
// `outpostctl describe` shows it. Repeats of the same event are counted, not stored again.
struct PodEvent {
  core::WallTime first;
  core::WallTime last;
  std::string type;    // "Normal" or "Warning"
  std::string reason;  // Pulled, Created, Started, Exited, Completed, BackOff, Failed, Killing, ...
  std::string container;  // empty for the pod as a whole
  std::string message;
  int count = 1;
};

// What the reconciler knows of one pod beyond its status: where its containers' CRI logs are and
// its most recent events (the last kMaxPodEvents, since the agent started).
struct PodRuntimeInfo {
  static constexpr size_t kMaxPodEvents = 20;
  std::string uid;
  // The sandbox's CRI log directory; container `c`'s attempt `n` logs to `<dir>/<c>/<n>.log`.
  std::string logDirectory;
  std::vector<PodEvent> events;  // oldest first
};

// Runs on `loop` (deploy's own EventLoop); every public method is callable from any thread and
// posts to the loop. Runtime calls are blocking with deadlines, on the loop.
class Reconciler {
 public:
  // `local` keeps the on-site holds across restarts (nullptr: they last while the reconciler does).
  // `tokens`: where service-account tokens come from (null: a pod with a serviceAccountToken
  // projection waits, saying so).
  Reconciler(core::EventLoop& loop, Runtime& runtime, DesiredPods& desired, StatusSink& sink,
             ReconcilerConfig config, core::Logger log, core::MetricsRegistry* metrics = nullptr,
             LocalState* local = nullptr, TokenSource* tokens = nullptr);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Offline cold boot: reconciles every desired pod against what the runtime runs (adopting what
  // carries our labels), then starts the resync, polling and node status timers. `onColdBoot`
  // runs on the loop once that first pass is done.
  void start(std::function<void()> onColdBoot = {});
  // Cancels the timers; containers keep running. Call before the loop stops.
  void stop();

  // Desired objects changed (pods, configmaps, secrets, by store key): re-read and reconcile the
  // pods concerned.
  void onDesiredChanged(std::vector<std::string> keys);
  // A full pass now (as the resync timer does).
  void syncAll();

  // On-site holds (`outpostctl hold` / `release`), from any thread, waiting for the loop. `pods`
  // are pod keys "<ns>/pod/<name>"; none: every pod. A release also lets the updates that wait
  // for a maintenance window through now.
  core::Status hold(std::vector<std::string> pods, std::optional<core::WallTime> until);
  core::Status release(std::vector<std::string> pods);
  // The holds in force and the updates that wait.
  std::pair<std::vector<PodHold>, std::vector<HeldUpdate>> holds();

  // A copy of the counters (from any thread; waits for the loop).
  ReconcilerStats stats();
  // Whether the runtime answered the last pass's listing (false before the first pass, and while
  // it fails). From any thread, without waiting for the loop.
  bool runtimeReady() const;
  // The log directory and recent events of the pod at `key`; nullopt when the reconciler has no
  // such pod. From any thread, without waiting for the loop.
  std::optional<PodRuntimeInfo> podInfo(const std::string& key) const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace outpost::deploy
