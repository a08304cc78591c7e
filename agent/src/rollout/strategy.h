#pragma once
// A rollout's file (docs/rollouts.md): a `kind: Rollout` document with the target and the strategy,
// followed by the objects it rolls out. Parsed and checked here; every error names the field.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::agent::rollout {

// A number of nodes, or a percentage of the target's nodes ("20%", rounded up).
struct NodeCount {
  int64_t value = 0;
  bool percent = false;
  // The count out of `total` nodes, at most `total`.
  size_t of(size_t total) const;
  std::string text() const;
};

enum class OnFailure { kRollback, kPause };
enum class OnOffline { kFail, kContinue };
enum class OnHeld { kWait, kContinue };

struct Strategy {
  NodeCount canary{1, false};           // the first wave; 0: none
  std::vector<NodeCount> waves;         // cumulative: nodes updated once the wave is done
  int64_t maxNodesPerMinute = 0;        // 0: no limit
  int64_t soakSeconds = 0;              // outpost.io/soak-seconds on each pod
  int64_t nodeTimeoutSeconds = 600;     // a node's update (or absence) longer than this
  int64_t prePullTimeoutSeconds = 300;  // a wave's pre-pull longer than this
  NodeCount maxFailuresPerWave{0, false};
  NodeCount maxFailures{0, false};  // over the whole rollout
  OnFailure onFailure = OnFailure::kRollback;
  OnOffline onOffline = OnOffline::kFail;
  OnHeld onHeld = OnHeld::kWait;
};

// Which nodes: every node of a group (its desired state becomes the new version at the end), or
// the nodes whose labels match (they keep the objects in their own scope).
struct Target {
  std::string group;
  std::map<std::string, std::string> selector;  // label -> value
};

struct Object {
  std::string key;   // <ns>/<type>/<name>
  std::string json;  // as published (pods carry outpost.io/soak-seconds)
};

struct RolloutSpec {
  std::string name;
  Target target;
  Strategy strategy;
  std::vector<Object> objects;
  std::vector<std::string> images;  // of every container of the pods, sorted, unique
};

// Parses a rollout file's text (YAML or JSON, several documents); `source` names it in errors.
core::Result<RolloutSpec> parseRolloutFile(const std::string& text, const std::string& source);

// The same from the JSON kept in the rollout's state (spec.toJson()).
core::Result<RolloutSpec> specFromJson(const std::string& json);
std::string specToJson(const RolloutSpec& spec);

std::string onFailureText(OnFailure f);
std::string onOfflineText(OnOffline o);
std::string onHeldText(OnHeld h);

}  // namespace outpost::agent::rollout
