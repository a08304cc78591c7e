#pragma once
// Whether an update or deletion of a running pod may happen now: on-site holds (outpostctl hold,
// release) and maintenance windows (docs/rollouts.md, "On the node").

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/deploy/maintenance.h"
#include "outpost/deploy/ports.h"
#include "outpost/deploy/reconciler.h"
#include "pod_spec.h"
#include "pod_worker.h"

namespace outpost::deploy {

// The name under which the holds are kept (LocalState).
inline constexpr const char* kHoldsState = "deploy.holds";

// On deploy's loop.
class UpdateGate {
 public:
  UpdateGate(std::vector<MaintenanceWindow> windows, core::Logger log);

  // Reads the holds and releases kept in `state` (may be null: nothing is kept).
  void load(LocalState* state);
  // Why the change of the running pod at `key` (`running`, at `runningVersion`) to
  // `pendingVersion` (or its deletion) must wait at `now`; nullopt: it may happen now.
  std::optional<HeldUpdate> check(const std::string& key, const PodSpec& running,
                                  const std::string& runningVersion,
                                  const std::string& pendingVersion, bool deletion,
                                  core::WallTime now) const;
  void hold(const std::vector<std::string>& keys, std::optional<core::WallTime> until);
  // Removes the holds of `keys` (none: all) and lets the changes that wait for them through:
  // `waiting` is every held pod's key and pending version ("" for a deletion).
  void release(const std::vector<std::string>& keys,
               const std::map<std::string, std::string>& waiting);
  // The change of `key` happened: a release of it is spent, the running record kept is dropped.
  void applied(const std::string& key);
  // The running pod's desired record while a change of it waits: kept across restarts, so the
  // old version goes on running after one (the store holds only the newest desired object).
  void keep(const PodRecord& running);
  std::optional<PodRecord> kept(const std::string& key) const;
  std::vector<PodHold> holds(core::WallTime now) const;

  // What the reconciler lends the gate to act on a pod.
  struct Hooks {
    const core::Clock& clock;
    // Makes `rec` (nullopt: no longer desired) the pod's desired state now.
    std::function<void(PodState&, const std::optional<PodRecord>&)> apply;
    std::function<void(PodState&, core::MonoTime)> wakeAt;
  };
  // The desired state of `w` became `rec`. True when the gate took it: the change of the running
  // pod waits (`w.pending`, `w.held`), or went through `hooks.apply`; false: apply it as usual.
  bool admit(PodState& w, const std::optional<PodRecord>& rec, const Hooks& hooks);
  // Looks again at the change `w.pending` waits with: applied when it may go now. True while it
  // still waits.
  bool recheck(PodState& w, const Hooks& hooks);

 private:
  void save();

  std::vector<MaintenanceWindow> windows_;
  core::Logger log_;
  LocalState* state_ = nullptr;
  std::map<std::string, std::optional<core::WallTime>> holds_;  // pod key ("" every pod) -> end
  std::map<std::string, std::string> released_;  // pod key -> the pending version let through
  std::map<std::string, PodRecord> kept_;        // pod key -> the running record while held
};

}  // namespace outpost::deploy
