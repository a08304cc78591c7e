#pragma once
// Volumes and environment: configMap/secret data projected as files under the state dir, emptyDir
// and hostPath directories, and env values resolved from configmaps, secrets and fields.

#include <functional>
#include <map>
#include <optional>
#include <set>
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

// Makes every volume of `pod` exist on the host (projecting configmaps and secrets, secrets as
// 0600 files) and returns each volume's host path by name. Rewrites projected files whose data
// changed. NOT_FOUND when a non-optional configmap or secret is absent; INVALID_ARGUMENT naming
// the key when a projected key cannot be a file name ("..", "/etc/x"); FAILED_PRECONDITION when a
// hostPath is outside every prefix of `hostPathAllow` (empty: any hostPath) or a symlink is in the
// way inside a volume. Files are made through HostPaths only, under <stateDir>/pods/<uid>/.
// Never throws for any pod or stored object.
// Projected and downwardAPI volumes (projected.h) get their files the same way; a
// serviceAccountToken source's token comes from `tokenFor` (none: UNAVAILABLE).
core::Result<std::map<std::string, std::string>> prepareVolumes(
    const PodSpec& pod, const std::string& stateDir, DesiredPods& desired,
    const std::vector<std::string>& hostPathAllow = {},
    const std::function<core::Result<std::string>(const PodSpec&, const std::string&,
                                                  const ProjectionSource&)>& tokenFor = {});

// OK when `path` (absolute) is under one of `allow` (absolute prefixes; empty allows every path),
// also once the symlinks of its existing part are resolved.
core::Status hostPathAllowed(const std::string& path, const std::vector<std::string>& allow);

// The mounts of a container of `pod` from the volumes' host paths. configMap and secret volumes are
// mounted read-only (as Kubernetes does). A subPath is looked up inside its volume without
// following symlinks: one a container planted there is refused (FAILED_PRECONDITION), a missing
// one is made as a directory in an emptyDir or hostPath volume.
core::Result<std::vector<Mount>> containerMounts(
    const PodSpec& pod, const ContainerSpec& c,
    const std::map<std::string, std::string>& volumePaths);

// The environment of a container. NOT_FOUND when a non-optional reference is absent.
core::Result<std::vector<std::pair<std::string, std::string>>> resolveEnv(
    const ContainerSpec& c, const PodSpec& pod, DesiredPods& desired, const std::string& nodeName,
    const std::string& hostIp);

// The configmaps and secrets ("<ns>/configmap/<name>", "<ns>/secret/<name>") that `pod` needs
// (volumes, envFrom, env references that are not optional) and the store does not hold.
std::vector<std::string> missingRefs(const PodSpec& pod, DesiredPods& desired);
// The configmap and secret keys `pod` refers to (volumes, env, envFrom).
std::set<std::string> refsOf(const PodSpec& pod);

std::string base64Decode(const std::string& in);

}  // namespace outpost::deploy
