#pragma once
// The rollout controller's logic (docs/rollouts.md): plans the waves, then moves every node of the
// wave in progress from pre-pull to switch to healthy, within the strategy's rate, timeouts and
// failure thresholds, and rolls back, pauses or finishes. Each step() looks at the fleet once,
// acts, and saves the state when it changed; the driver (outpostctl rollout) calls it in a loop.
// No broker and no clock of its own: time is given to each call (unix milliseconds).

#include <cstdint>
#include <map>
#include <string>

#include "outpost/core/status.h"
#include "rollout/fleet_view.h"
#include "rollout/state.h"

namespace outpost::agent::rollout {

// The key of a rollout's ImagePrePull object.
std::string prePullKey(const RolloutSpec& spec);

// A new rollout's state: the target's nodes (sorted by name) into waves, the group's objects as
// they are (for undo). Refuses a target without nodes, and a node that already has one of the
// objects in its own scope (a rollout changes what nodes get from their group).
core::Result<RolloutState> planRollout(RolloutSpec spec, FleetView& fleet, int64_t nowMs);

class Controller {
 public:
  Controller(FleetView& fleet, RolloutState state);

  // One pass. Errors are the fleet's (a publish that failed): the next step tries again.
  core::Status step(int64_t nowMs);
  const RolloutState& state() const { return state_; }

  // Operator requests (the next step acts on them).
  void pause(const std::string& why);
  // Resumes a paused rollout; failures so far are accepted (they no longer count).
  core::Status resume();
  // Rolls back every node touched so far.
  core::Status abort(const std::string& why);
  // A finished rollout's group (or nodes) back to the objects before it.
  core::Status undo(int64_t nowMs);

  // Saves the state now (whether or not it changed).
  core::Status save(int64_t nowMs);

 private:
  void progress(int64_t now);
  void observe(NodeRecord& n, int64_t now);
  void prePull(NodeRecord& n, int64_t now);
  void switchNode(NodeRecord& n, int64_t now);
  bool checkFailures();
  void rollBack(int64_t now);
  void finish(int64_t now);
  void setNode(NodeRecord& n, NodeState s, int64_t now, std::string reason = {},
               std::string message = {});
  bool terminal(const NodeRecord& n) const;
  std::vector<std::string> keys() const;
  // An AgentUpgrade's spec.version (checked by parseRollout), kept per key.
  const std::string& upgradeVersion(const Object& o);

  FleetView& fleet_;
  RolloutState state_;
  std::string saved_;
  core::Status lastError_;
  bool groupRestored_ = false;  // the group's objects published again for a roll back
  // Nodes whose pods report unhealthy, since when: a node fails once that lasted this long.
  static constexpr int64_t kUnhealthyConfirmMs = 15000;
  std::map<std::string, int64_t> unhealthySince_;
  std::map<std::string, std::string> upgradeVersions_;
};

}  // namespace outpost::agent::rollout
