#pragma once
// The fleet as the broker shows it (docs/rollouts.md, "Topics"): node statuses, online flags, pod
// and pre-pull reports, the node-scope and group-scope desired objects, and the rollout's own
// retained state, lease and command. Publishing goes through cloudhub's DesiredPublisher, so every
// scope's manifest stays correct.

#include <memory>
#include <optional>
#include <string>

#include "outpost/cloudhub/desired_publisher.h"
#include "rollout/fleet_view.h"

namespace outpost::agent::rollout {

// Who drives a rollout, kept retained on <prefix>/rollouts/<name>/lease.
struct Lease {
  std::string holder;
  int64_t expiresAt = 0;  // unix ms
};

class MqttFleetView final : public FleetView {
 public:
  // Connects twice (a watcher and the publisher) and waits until the broker sent what it keeps
  // for `rollout` (its state, lease, command) and the fleet's statuses.
  static core::Result<std::unique_ptr<MqttFleetView>> connect(
      const cloudhub::PublisherOptions& options, const std::string& rollout);
  ~MqttFleetView() override;

  std::vector<NodeInfo> nodes() override;
  std::optional<bool> online(const std::string& node) override;
  std::optional<PodReport> pod(const std::string& node, const std::string& key) override;
  std::optional<PrePullReport> prePull(const std::string& node, const std::string& key) override;
  std::optional<UpgradeReport> agentUpgrade(const std::string& node,
                                            const std::string& key) override;
  std::optional<std::string> nodeObjectVersion(const std::string& node,
                                               const std::string& key) override;
  std::optional<std::string> groupObject(const std::string& group, const std::string& key) override;
  core::Result<std::map<std::string, std::string>> publish(
      const Scope& scope, const std::vector<Object>& objects) override;
  core::Status withdraw(const Scope& scope, const std::vector<std::string>& keys) override;
  core::Status saveState(const std::string& rollout, const std::string& json) override;

  // Reads the manifests of these nodes at once, so publishing to each needs no wait.
  core::Status prefetchNodes(const std::vector<std::string>& nodes);
  // Waits until what was published before this call has come back to the watcher.
  core::Status sync();

  // The rollout's retained state (nullopt: none).
  std::optional<std::string> storedState();
  // The lease as it stands (nullopt: none, or malformed).
  std::optional<Lease> lease();
  // Takes or renews the lease for `holder` until now + ttl. Refused while someone else holds an
  // unexpired one, or when another controller took it at the same moment.
  core::Status takeLease(const std::string& holder, int64_t nowMs, int64_t ttlMs);
  core::Status releaseLease(const std::string& holder);
  // The retained command ("pause", "abort"), taken and cleared.
  std::optional<std::string> takeCommand();
  core::Status sendCommand(const std::string& action);
  core::Status clearState();

 private:
  class Impl;
  explicit MqttFleetView(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::agent::rollout
