#pragma once
// Part of the CloudHub double: what `kubectl get node -o yaml` shows of a node that EdgeCore 1.15
// runs (issue 17, item 7), as a check a test applies to the Node the edge registered or to the
// Node the double holds after the edge's status patches.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace outpost::test {

// Each way `node` falls short of EdgeCore's Node, in words ("no InternalIP address", ...); empty
// when it has all of: the labels kubernetes.io/hostname and node-role.kubernetes.io/edge; an
// InternalIP (an IP address) and a Hostname address; cpu, memory and pods in capacity and in
// allocatable; daemonEndpoints.kubeletEndpoint.Port above 0 (EdgeCore: 10350); nodeInfo with
// machineID, bootID, kernelVersion, osImage, architecture, operatingSystem and a kubeletVersion
// tools parse as a version (vMAJOR.MINOR.PATCH[-pre], as v1.26.10-kubeedge-v1.15.4); a Ready
// condition, and a lastTransitionTime on every condition.
std::vector<std::string> edgeCoreNodeDifferences(const nlohmann::json& node);

}  // namespace outpost::test
