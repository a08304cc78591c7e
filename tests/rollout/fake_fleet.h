#pragma once
// A fleet in memory for the rollout controller's tests: nodes that answer desired objects as the
// node side does (docs/rollouts.md, "What nodes report"), driven one `react()` at a time.
// fleet_view_test.cc holds it to what the real MqttFleetView shows for the same actions.

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "rollout/fleet_view.h"

namespace outpost::test {

class FakeFleet final : public agent::rollout::FleetView {
 public:
  struct Node {
    std::map<std::string, std::string> labels;
    bool online = true;
    bool pullFails = false;  // every pre-pull fails
    bool held = false;       // updates wait for a maintenance window
    bool unhealthy = false;  // whatever runs crashes
    bool silent = false;     // reports nothing new (a node that is slow)
    int unhealthyOnce = 0;   // the next reports of a new version say unhealthy (a retried step)
  };
  std::map<std::string, Node> fleet;
  // scope ("node:<n>" or "group:<g>") -> key -> {version, json}
  std::map<std::string, std::map<std::string, std::pair<std::string, std::string>>> desired;
  std::map<std::string, agent::rollout::PodReport> pods;          // node|key
  std::map<std::string, agent::rollout::PrePullReport> prePulls;  // node|key
  std::map<std::string, agent::rollout::UpgradeReport> upgrades;  // node|key
  // What each node stores per key: its version and the scope it came from ("node" or "group:<g>"),
  // by the store's rules: versions only move forward; clearing a scope's copy removes it only when
  // the stored object came from that scope (an older copy of another scope never comes back).
  std::map<std::string, std::map<std::string, std::pair<int64_t, std::string>>> stored;
  std::map<std::string, int> publishes;  // "node:<n>" -> objects published to it (not pre-pulls)
  std::string savedState;
  int saves = 0;
  bool failPublish = false;
  int64_t version = 1000;

  void addNodes(size_t n, const std::string& group = "fleet") {
    for (size_t i = 0; i < n; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "node-%02zu", i);
      fleet[name].labels[agent::rollout::groupLabel(group)] = "true";
    }
  }

  // Every node reports on what it is told (one round of the node side).
  void react() {
    for (auto& [name, n] : fleet) {
      if (!n.online || n.silent) continue;
      auto& mine = desired["node:" + name];
      for (const auto& [key, obj] : mine) {
        if (key.find("/imageprepull/") != std::string::npos) {
          agent::rollout::PrePullReport r;
          r.observedVersion = obj.first;
          r.allPresent = !n.pullFails;
          if (n.pullFails) {
            r.failedImage = "x:pull-fails";
            r.reason = "ErrImagePull";
            r.message = "staged";
          }
          prePulls[name + "|" + key] = r;
        }
      }
      for (const auto& [key, row] : stored[name]) {
        if (key.find("/pod/") != std::string::npos) report(name, n, key);
        if (key.find("/agentupgrade/") != std::string::npos) reportUpgrade(name, n, key);
      }
      for (auto it = pods.begin(); it != pods.end();) {
        // A pod no longer stored is gone: no status (the node clears it).
        bool mineNode = it->first.rfind(name + "|", 0) == 0;
        if (mineNode && stored[name].count(it->first.substr(name.size() + 1)) == 0) {
          it = pods.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  // The version of `key` the node runs or holds.
  std::string effective(const std::string& node, const std::string& key) {
    auto& rows = stored[node];
    auto it = rows.find(key);
    return it == rows.end() ? std::string() : std::to_string(it->second.first);
  }

  std::vector<agent::rollout::NodeInfo> nodes() override {
    std::vector<agent::rollout::NodeInfo> out;
    for (const auto& [name, n] : fleet) out.push_back({name, n.labels});
    return out;
  }
  std::optional<bool> online(const std::string& node) override {
    auto it = fleet.find(node);
    if (it == fleet.end()) return std::nullopt;
    return it->second.online;
  }
  std::optional<agent::rollout::PodReport> pod(const std::string& node,
                                               const std::string& key) override {
    auto it = pods.find(node + "|" + key);
    if (it == pods.end()) return std::nullopt;
    return it->second;
  }
  std::optional<agent::rollout::PrePullReport> prePull(const std::string& node,
                                                       const std::string& key) override {
    auto it = prePulls.find(node + "|" + key);
    if (it == prePulls.end()) return std::nullopt;
    return it->second;
  }
  std::optional<agent::rollout::UpgradeReport> agentUpgrade(const std::string& node,
                                                            const std::string& key) override {
    auto it = upgrades.find(node + "|" + key);
    if (it == upgrades.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> nodeObjectVersion(const std::string& node,
                                               const std::string& key) override {
    auto& m = desired["node:" + node];
    auto it = m.find(key);
    if (it == m.end()) return std::nullopt;
    return it->second.first;
  }
  std::optional<std::string> groupObject(const std::string& group,
                                         const std::string& key) override {
    auto& m = desired["group:" + group];
    auto it = m.find(key);
    if (it == m.end()) return std::nullopt;
    return it->second.second;
  }
  core::Result<std::map<std::string, std::string>> publish(
      const agent::rollout::Scope& scope,
      const std::vector<agent::rollout::Object>& objects) override {
    if (failPublish) return core::unavailable("broker away");
    std::string s = (scope.group ? "group:" : "node:") + scope.name;
    std::map<std::string, std::string> out;
    for (const auto& o : objects) {
      std::string v = std::to_string(++version);
      desired[s][o.key] = {v, o.json};
      out[o.key] = v;
      for (auto& [name, n] : fleet) {
        bool reaches = scope.group ? n.labels.count(agent::rollout::groupLabel(scope.name)) > 0
                                   : name == scope.name;
        if (!reaches) continue;
        auto& row = stored[name][o.key];
        if (version > row.first) row = {version, scope.group ? "group:" + scope.name : "node"};
      }
      if (o.key.find("/imageprepull/") == std::string::npos) ++publishes[s];
    }
    return out;
  }
  core::Status withdraw(const agent::rollout::Scope& scope,
                        const std::vector<std::string>& keys) override {
    if (failPublish) return core::unavailable("broker away");
    std::string s = (scope.group ? "group:" : "node:") + scope.name;
    for (const auto& k : keys) {
      desired[s].erase(k);
      for (auto& [name, rows] : stored) {
        auto it = rows.find(k);
        if (it != rows.end() && it->second.second == (scope.group ? s : "node") &&
            (scope.group || name == scope.name))
          rows.erase(it);
      }
    }
    return core::okStatus();
  }
  core::Status saveState(const std::string&, const std::string& json) override {
    savedState = json;
    ++saves;
    return core::okStatus();
  }

 private:
  // The node upgrades its agent to the stored object's spec.version: installing at the first look,
  // then healthy, or rolled back when the node is unhealthy (the new agent does not prove itself).
  void reportUpgrade(const std::string& name, const Node& n, const std::string& key) {
    std::string json;
    for (const auto& [scope, objs] : desired) {
      auto it = objs.find(key);
      if (it != objs.end() && std::to_string(stored[name][key].first) == it->second.first)
        json = it->second.second;
    }
    auto j = nlohmann::json::parse(json, nullptr, false);
    if (!j.is_object()) return;
    std::string target = j["spec"].value("version", "");
    auto& r = upgrades[name + "|" + key];
    if (r.version != target) {
      r = {"installing", target, ""};
    } else if (r.phase == "installing") {
      r.phase = n.unhealthy ? "rolled back" : "healthy";
      if (n.unhealthy) r.reason = "the agent " + target + " was not healthy within 120s";
    }
  }
  void report(const std::string& name, const Node& n, const std::string& key) {
    agent::rollout::PodReport r;
    std::string nodeVersion;
    auto& mine = desired["node:" + name];
    if (auto it = mine.find(key); it != mine.end()) nodeVersion = it->second.first;
    std::string runs = effective(name, key);
    auto& prev = pods[name + "|" + key];
    if (n.held && !nodeVersion.empty() && runs == nodeVersion && prev.desiredVersion != runs &&
        !prev.desiredVersion.empty()) {
      r = prev;
      r.health = "held";
      r.reason = "MaintenanceWindow";
      r.message = "waits for the window";
      r.pendingVersion = runs;
      prev = r;
      return;
    }
    r.desiredVersion = runs;
    bool crashes = n.unhealthy && !nodeVersion.empty() && runs == nodeVersion;
    if (!crashes && n.unhealthyOnce > 0 && !nodeVersion.empty() && runs == nodeVersion) {
      --fleet[name].unhealthyOnce;
      crashes = true;
    }
    r.health = crashes ? "unhealthy" : "healthy";
    if (crashes) {
      r.reason = "CrashLoopBackOff";
      r.message = "exited with 1";
    }
    prev = r;
  }
};

}  // namespace outpost::test
