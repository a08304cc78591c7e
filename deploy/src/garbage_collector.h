#pragma once
// Garbage collection: removing containers and sandboxes (within their grace period), and with a
// pod's last sandbox its cgroup and directory; finding the pods nobody wants any more.

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "host_paths.h"
#include "outpost/core/log.h"
#include "outpost/deploy/reconciler.h"
#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

// What the runtime runs with our labels (all of it, or one pod's).
struct Observed {
  std::vector<PodSandbox> sandboxes;
  std::vector<Container> containers;
};

// The last ContainerStatus of each container, asked again only when its state changed.
class StatusCache {
 public:
  // `c`'s status (nullopt when the runtime cannot say): cached, unless `c` is new or its state
  // differs from the cached one.
  std::optional<ContainerStatus> get(Runtime& runtime, const Container& c);
  void forget(const std::string& id) { statuses_.erase(id); }
  // Keeps only the containers `o` holds.
  void prune(const Observed& o);

 private:
  std::map<std::string, ContainerStatus> statuses_;
};

// Pods with our labels that are not desired: their uids and the pod keys of their labels.
struct Orphans {
  std::set<std::string> uids;
  std::set<std::string> labelKeys;  // labelValue() of their store keys
};

// The sandboxes and containers of `o` whose uid is not in `desiredUids`, except those whose key
// label `kept` holds (a pod whose desired JSON is invalid keeps what runs).
Orphans findOrphans(const Observed& o, const std::set<std::string>& desiredUids,
                    const std::function<bool(const std::string& labelKey)>& kept);

// The grace period a sandbox's annotation names, else 30 s.
std::chrono::seconds graceOf(const PodSandbox& s);

// On deploy's loop; runtime calls block.
class GarbageCollector {
 public:
  // `cgroupParent`: the pods' cgroups are removed under it (none when empty). `stats` counts the
  // removals; `statuses` forgets what is removed.
  GarbageCollector(Runtime& runtime, const HostPaths& paths, std::string cgroupParent,
                   core::Logger log, ReconcilerStats& stats, StatusCache& statuses);

  // Stops a running container within `grace` and keeps it, exited (`c` says so after): what a
  // replaced container leaves for its successor's lastState, as the kubelet keeps it.
  void stopContainer(Container& c, std::chrono::seconds grace);
  // Stops a running container (SIGKILL after `grace`) and removes it; true when it is gone.
  bool removeContainer(const Container& c, std::chrono::seconds grace);
  // The sandbox's containers (of `containers`), then the sandbox; true when it is gone.
  bool removeSandbox(const PodSandbox& s, const std::vector<Container>& containers,
                     std::chrono::seconds grace);
  // A dead sandbox (after a reboot, every one is) replaced during a pass: removed by
  // removeDeferred() at the pass's end, off the path to running.
  void deferSandbox(PodSandbox s, std::vector<Container> containers);
  void removeDeferred();
  // Every sandbox and container of `uids` in `o` (each within the grace period its annotation
  // names, else 30 s), then each pod's cgroup and directory; true when no sandbox is left.
  bool removeUids(const Observed& o, const std::set<std::string>& uids);
  // The orphans of `o`: removed when the desired set is `complete`. Otherwise they are kept (a
  // store recovered empty is most likely resent by the cloud) and `ask` is called with the
  // store key of each, to ask the cloud whether it still wants it.
  void collectOrphans(const Observed& o, const Orphans& orphans, bool complete,
                      const std::function<void(const std::string& key)>& ask);

 private:
  void removePodFiles(const std::string& uid);

  Runtime& runtime_;
  const HostPaths& paths_;
  std::string cgroupParent_;
  core::Logger log_;
  ReconcilerStats& stats_;
  StatusCache& statuses_;
  std::vector<std::pair<PodSandbox, std::vector<Container>>> deferred_;
  bool holdingOrphans_ = false;  // orphans kept while the desired set is incomplete (logged once)
};

}  // namespace outpost::deploy
