#pragma once
// In-memory ports (data holders, not mocks) and pod JSON for deploy's tests.

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "outpost/deploy/ports.h"

namespace outpost::test {

// Desired objects by key, as metadb would hold them.
class MemoryDesired final : public deploy::DesiredPods {
 public:
  void put(const std::string& key, const std::string& json) {
    std::lock_guard<std::mutex> lock(mu_);
    objects_[key] = json;
  }
  void erase(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    objects_.erase(key);
  }
  std::vector<deploy::PodRecord> listPods() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<deploy::PodRecord> out;
    for (const auto& [k, v] : objects_) {
      if (k.find("/pod/") != std::string::npos) out.push_back({k, v});
    }
    return out;
  }
  std::vector<deploy::PodRecord> listObjects(const std::string& type) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<deploy::PodRecord> out;
    for (const auto& [k, v] : objects_) {
      if (k.find("/" + type + "/") != std::string::npos) out.push_back({k, v});
    }
    return out;
  }
  std::optional<std::string> getObject(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return std::nullopt;
    return it->second;
  }
  bool complete() override { return complete_; }
  void setComplete(bool c) { complete_ = c; }
  void fetchMissing(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    fetched_.push_back(key);
  }
  // Every key deploy asked the cloud for (fetchMissing), in order.
  std::vector<std::string> fetched() {
    std::lock_guard<std::mutex> lock(mu_);
    return fetched_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> objects_;
  std::vector<std::string> fetched_;
  std::atomic<bool> complete_{true};
};

// Named values kept as the agent keeps them in the store's key-values.
class MemoryLocalState final : public deploy::LocalState {
 public:
  std::optional<std::string> get(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  void put(const std::string& name, const std::string& value) override {
    std::lock_guard<std::mutex> lock(mu_);
    values_[name] = value;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> values_;
};

// The last status of each pod and of the node, and how many reports came.
class MemorySink final : public deploy::StatusSink {
 public:
  void podStatus(const std::string& key, const std::string& json) override {
    std::lock_guard<std::mutex> lock(mu_);
    pods_[key] = nlohmann::json::parse(json);
    reports_[key]++;
  }
  void podRemoved(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    pods_.erase(key);
    removed_.push_back(key);
  }
  void podTerminated(const std::string& key, const std::string& uid) override {
    std::lock_guard<std::mutex> lock(mu_);
    terminated_.push_back(key + " " + uid);
  }
  // "<key> <uid>" of each podTerminated call, in order.
  std::vector<std::string> terminated() {
    std::lock_guard<std::mutex> lock(mu_);
    return terminated_;
  }
  void objectStatus(const std::string& key, const std::string& json) override {
    std::lock_guard<std::mutex> lock(mu_);
    objects_[key] = nlohmann::json::parse(json);
    objectReports_[key].push_back(objects_[key]);
  }
  // The last status of another object (an image pre-pull), or null.
  nlohmann::json object(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(key);
    return it == objects_.end() ? nlohmann::json() : it->second;
  }
  // Every status of another object, in order.
  std::vector<nlohmann::json> objectReports(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return objectReports_[key];
  }
  void nodeStatus(const std::string& json) override {
    std::lock_guard<std::mutex> lock(mu_);
    node_ = nlohmann::json::parse(json);
    nodeReports_++;
  }
  nlohmann::json pod(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pods_.find(key);
    return it == pods_.end() ? nlohmann::json() : it->second;
  }
  bool removed(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& k : removed_)
      if (k == key) return true;
    return false;
  }
  int reports(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_[key];
  }
  int nodeReports() {
    std::lock_guard<std::mutex> lock(mu_);
    return nodeReports_;
  }
  nlohmann::json node() {
    std::lock_guard<std::mutex> lock(mu_);
    return node_;
  }
  std::string phase(const std::string& key) {
    auto p = pod(key);
    return p.is_object() ? p.value("phase", "") : "";
  }
  // The state ("running", "waiting", "terminated") of a container, or "".
  std::string state(const std::string& key, const std::string& container) {
    auto p = pod(key);
    if (!p.is_object()) return "";
    for (const auto& c : p.value("containerStatuses", nlohmann::json::array())) {
      if (c["name"] == container) return c["state"].begin().key();
    }
    return "";
  }
  // The waiting reason of a container, or "".
  std::string waitingReason(const std::string& key, const std::string& container) {
    auto p = pod(key);
    if (!p.is_object()) return "";
    for (const auto& c : p.value("containerStatuses", nlohmann::json::array())) {
      if (c["name"] == container && c["state"].contains("waiting"))
        return c["state"]["waiting"].value("reason", "");
    }
    return "";
  }
  int restarts(const std::string& key, const std::string& container) {
    auto p = pod(key);
    if (!p.is_object()) return -1;
    for (const auto& c : p.value("containerStatuses", nlohmann::json::array())) {
      if (c["name"] == container) return c["restartCount"].get<int>();
    }
    return -1;
  }

 private:
  std::mutex mu_;
  std::map<std::string, nlohmann::json> pods_;
  std::map<std::string, int> reports_;
  std::map<std::string, nlohmann::json> objects_;
  std::map<std::string, std::vector<nlohmann::json>> objectReports_;
  std::vector<std::string> removed_;
  std::vector<std::string> terminated_;
  nlohmann::json node_;
  int nodeReports_ = 0;
};

// A host-network pod of busybox containers running `sh -c <script>`.
inline nlohmann::json busyboxPod(const std::string& name, const std::string& uid,
                                 const std::string& image,
                                 std::vector<std::pair<std::string, std::string>> containers) {
  using nlohmann::json;
  json cs = json::array();
  for (const auto& [cname, script] : containers) {
    cs.push_back({{"name", cname},
                  {"image", image},
                  {"command", {"/bin/sh", "-c", script}},
                  {"env", json::array({{{"name", "GREETING"}, {"value", "hello"}}})}});
  }
  return {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", name}, {"namespace", "default"}, {"uid", uid}}},
      {"spec", {{"hostNetwork", true}, {"terminationGracePeriodSeconds", 1}, {"containers", cs}}}};
}

}  // namespace outpost::test
