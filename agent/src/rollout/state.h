#pragma once
// The state of one rollout as it is kept, retained, on the broker
// (<prefix>/rollouts/<name>/state): the plan (waves and their nodes), where each node is, and why
// the rollout stopped. Whatever is read back is checked before use (it may come from anyone).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/status.h"
#include "rollout/strategy.h"

namespace outpost::agent::rollout {

enum class Phase { kProgressing, kPaused, kRollingBack, kRolledBack, kSucceeded, kUndone };
enum class NodeState {
  kPending,
  kPrePulling,
  kUpdating,
  kHeld,
  kHealthy,
  kFailed,
  kOffline,
  kRolledBack
};

std::string phaseText(Phase p);
std::string nodeStateText(NodeState s);

struct NodeRecord {
  std::string name;
  size_t wave = 0;
  NodeState state = NodeState::kPending;
  std::string reason, message;
  int64_t since = 0;                            // unix ms the state began
  std::map<std::string, std::string> versions;  // key -> resource version published to the node
  std::string prePullVersion;                   // of its ImagePrePull object, once published
  bool pulled = false;                          // its pre-pull reported every image present
  bool counted = false;  // no longer waited for: offline or held past what the strategy allows,
                         // or a failure accepted by resume
};

struct WaveRecord {
  size_t size = 0;        // nodes in this wave
  int64_t startedAt = 0;  // unix ms, 0 before
  int64_t prePullStartedAt = 0;
  bool done = false;
};

struct RolloutState {
  RolloutSpec spec;
  Phase phase = Phase::kProgressing;
  std::string reason, message;  // why it paused, rolled back or failed
  size_t wave = 0;              // the wave in progress (== waves.size() when all are done)
  std::vector<WaveRecord> waves;
  std::vector<NodeRecord> nodes;  // in wave order
  // The group's objects before the rollout (key -> JSON; absent keys were new), for undo.
  std::map<std::string, std::string> previous;
  std::vector<std::string> previousAbsent;
  int64_t createdAt = 0, updatedAt = 0;
  int64_t nextSwitchAt = 0;  // rate limit: the earliest time of the next node's switch
  bool pauseRequested = false;
  bool finished() const {
    return phase == Phase::kRolledBack || phase == Phase::kSucceeded || phase == Phase::kUndone;
  }
};

std::string stateToJson(const RolloutState& s);
// Checks everything: an unknown phase, a node in a wave that does not exist, a count out of range.
core::Result<RolloutState> stateFromJson(const std::string& text);

// The plan: `nodes` (sorted by name) into the canary and the waves. Empty waves are dropped.
std::vector<size_t> waveSizes(const Strategy& s, size_t total);

}  // namespace outpost::agent::rollout
