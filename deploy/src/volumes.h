#pragma once
// Volumes and environment: configMap/secret data projected as files under the state dir, emptyDir
// and hostPath directories, and env values resolved from configmaps, secrets and fields.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/status.h"
#include "outpost/deploy/ports.h"
#include "pod_spec.h"

namespace outpost::deploy {

// The data of a configmap or secret (secret values base64-decoded), nullopt when absent.
core::Result<std::optional<std::map<std::string, std::string>>> loadData(DesiredPods& desired,
                                                                         const std::string& ns,
                                                                         bool secret,
                                                                         const std::string& name);

// The directory of a pod's volumes: <stateDir>/pods/<uid>.
std::string podDir(const std::string& stateDir, const std::string& uid);

// Makes every volume of `pod` exist on the host (projecting configmaps and secrets, secrets as
// 0600 files) and returns each volume's host path by name. Rewrites projected files whose data
// changed. NOT_FOUND when a non-optional configmap or secret is absent.
core::Result<std::map<std::string, std::string>> prepareVolumes(const PodSpec& pod,
                                                                const std::string& stateDir,
                                                                DesiredPods& desired);

// The mounts of a container from the volumes' host paths.
std::vector<Mount> containerMounts(const ContainerSpec& c,
                                   const std::map<std::string, std::string>& volumePaths);

// The environment of a container. NOT_FOUND when a non-optional reference is absent.
core::Result<std::vector<std::pair<std::string, std::string>>> resolveEnv(
    const ContainerSpec& c, const PodSpec& pod, DesiredPods& desired, const std::string& nodeName,
    const std::string& hostIp);

// The configmaps and secrets ("<ns>/configmap/<name>", "<ns>/secret/<name>") that `pod` needs
// (volumes, envFrom, env references that are not optional) and the store does not hold.
std::vector<std::string> missingRefs(const PodSpec& pod, DesiredPods& desired);

// Removes a pod's directory under the state dir.
void removePodDir(const std::string& stateDir, const std::string& uid);

std::string base64Decode(const std::string& in);

}  // namespace outpost::deploy
