#pragma once
// What the rollout controller sees of the fleet and does to it. `MqttFleetView` (mqtt_fleet.h) is
// the real one, over the broker; tests of the wave logic use a fake that
// tests/rollout/fleet_view_test.cc holds to the same behaviour as the real one.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/status.h"
#include "rollout/strategy.h"

namespace outpost::agent::rollout {

struct NodeInfo {
  std::string name;
  std::map<std::string, std::string> labels;  // of its node status (metadata.labels)
};

// The "outpost" object a node adds to a pod's status (docs/rollouts.md, "What nodes report").
struct PodReport {
  std::string desiredVersion;  // the desired object's version this status describes
  std::string health;          // progressing, healthy, unhealthy, held
  std::string reason, message;
  std::string pendingVersion;  // held: the version that waits
  std::string heldUntil;
};

// A node's report on an ImagePrePull object.
struct PrePullReport {
  std::string observedVersion;
  bool allPresent = false;
  std::string failedImage, reason, message;  // the first image whose pull failed, if any
};

// A node's report on an AgentUpgrade (its `agentupgradestatus`, docs/operations.md).
struct UpgradeReport {
  std::string
      phase;  // downloading, verifying, installing, restarting, healthy, rolled back, failed
  std::string version;  // the agent version the node is upgrading to (the object's spec.version)
  std::string reason;
};

// Where desired objects go: a node's own scope or a group's.
struct Scope {
  bool group = false;
  std::string name;
};

// Label a node's status carries for each of its groups (node.groups).
inline std::string groupLabel(const std::string& group) { return "group.outpost.io/" + group; }

class FleetView {
 public:
  virtual ~FleetView() = default;

  // Nodes that published a node status.
  virtual std::vector<NodeInfo> nodes() = 0;
  // Whether the node's online flag says true; nullopt when it never said.
  virtual std::optional<bool> online(const std::string& node) = 0;
  virtual std::optional<PodReport> pod(const std::string& node, const std::string& key) = 0;
  virtual std::optional<PrePullReport> prePull(const std::string& node, const std::string& key) = 0;
  virtual std::optional<UpgradeReport> agentUpgrade(const std::string& node,
                                                    const std::string& key) = 0;
  // The version of `key` desired in the node's own scope (its retained object), if any.
  virtual std::optional<std::string> nodeObjectVersion(const std::string& node,
                                                       const std::string& key) = 0;
  // The JSON of `key` desired in the group's scope, if any.
  virtual std::optional<std::string> groupObject(const std::string& group,
                                                 const std::string& key) = 0;

  // Publishes objects (retained, with the scope's manifest); returns key -> version.
  virtual core::Result<std::map<std::string, std::string>> publish(
      const Scope& scope, const std::vector<Object>& objects) = 0;
  // Withdraws keys from the scope (and its manifest); absent keys are no error.
  virtual core::Status withdraw(const Scope& scope, const std::vector<std::string>& keys) = 0;
  // Keeps the rollout's state (retained on the broker).
  virtual core::Status saveState(const std::string& rollout, const std::string& json) = 0;
};

// The "outpost" object of a pod status content (PodStatus JSON); nullopt when there is none or it
// is malformed (a report from a node that is not checked is no report).
std::optional<PodReport> podReportFrom(const std::string& podStatusJson);
// An ImagePrePull status content; nullopt when malformed.
std::optional<PrePullReport> prePullReportFrom(const std::string& statusJson);
// An AgentUpgrade status content; nullopt when malformed or of an unknown phase.
std::optional<UpgradeReport> upgradeReportFrom(const std::string& statusJson);

}  // namespace outpost::agent::rollout
