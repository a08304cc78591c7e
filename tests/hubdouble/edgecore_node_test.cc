// The double's Node check (support/edgecore_node.h): a Node shaped as EdgeCore 1.15.4 sends it
// passes, and each gap issue 17 item 7 found in Outpost's is named.
#include "support/edgecore_node.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

using namespace outpost::test;
using nlohmann::json;

namespace {

// Trimmed from `kubectl get node -o json` of a node EdgeCore v1.15.4 runs.
json edgeCoreNode() {
  return json::parse(R"j({
    "metadata": {"name": "edge-1", "labels": {"kubernetes.io/arch": "amd64",
      "kubernetes.io/hostname": "edge-1", "kubernetes.io/os": "linux",
      "node-role.kubernetes.io/agent": "", "node-role.kubernetes.io/edge": ""}},
    "spec": {},
    "status": {
      "addresses": [{"type": "InternalIP", "address": "192.0.2.10"},
                    {"type": "Hostname", "address": "edge-1"}],
      "capacity": {"cpu": "2", "memory": "3922164Ki", "pods": "110"},
      "allocatable": {"cpu": "2", "memory": "3819764Ki", "pods": "110"},
      "conditions": [{"type": "Ready", "status": "True", "reason": "EdgeReady",
                      "lastHeartbeatTime": "2024-05-01T10:00:00Z",
                      "lastTransitionTime": "2024-05-01T09:00:00Z"}],
      "daemonEndpoints": {"kubeletEndpoint": {"Port": 10350}},
      "nodeInfo": {"machineID": "3d1219c7c4c5404aaa1f6d2a48adfda4", "systemUUID": "",
                   "bootID": "d8bf2e02-42bd-4db8-9a61-a8ac33311d74",
                   "kernelVersion": "6.1.0-18-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                   "containerRuntimeVersion": "containerd://1.6.20",
                   "kubeletVersion": "v1.26.10-kubeedge-v1.15.4", "kubeProxyVersion": "",
                   "operatingSystem": "linux", "architecture": "amd64"}}})j");
}

bool names(const std::vector<std::string>& found, const std::string& what) {
  return std::any_of(found.begin(), found.end(),
                     [&](const std::string& f) { return f.find(what) != std::string::npos; });
}

}  // namespace

TEST_CASE("an EdgeCore Node has no difference from EdgeCore's") {
  auto found = edgeCoreNodeDifferences(edgeCoreNode());
  std::string all;
  for (const auto& f : found) all += f + "; ";
  INFO(all);
  CHECK(found.empty());
}

TEST_CASE("the Node Outpost registered before issue 17 item 7 differs in each way named") {
  json node = edgeCoreNode();
  json& status = node["status"];
  status["addresses"] = json::array({{{"type", "Hostname"}, {"address", "edge-1"}}});
  status["nodeInfo"]["kubeletVersion"] = "outpost";
  status["nodeInfo"]["machineID"] = "";
  status["nodeInfo"]["bootID"] = "";
  status["daemonEndpoints"]["kubeletEndpoint"]["Port"] = 0;
  status["conditions"][0].erase("lastTransitionTime");
  auto found = edgeCoreNodeDifferences(node);
  CHECK(names(found, "no InternalIP address"));
  CHECK(names(found, "kubeletVersion \"outpost\" is not a version"));
  CHECK(names(found, "nodeInfo.machineID is empty"));
  CHECK(names(found, "nodeInfo.bootID is empty"));
  CHECK(names(found, "Port is 0"));
  CHECK(names(found, "condition Ready has no lastTransitionTime"));
  CHECK(found.size() == 6);

  // The insert that carried only nodeInfo (issue 17 item 8f).
  json bare = {
      {"metadata", node["metadata"]},
      {"status", {{"nodeInfo", {{"architecture", "amd64"}, {"operatingSystem", "linux"}}}}}};
  found = edgeCoreNodeDifferences(bare);
  CHECK(names(found, "no cpu in capacity"));
  CHECK(names(found, "no memory in allocatable"));
  CHECK(names(found, "no Ready condition"));
  CHECK(names(found, "no InternalIP address"));
}
