#pragma once
// The pod as deploy understands it, parsed from the Kubernetes Pod JSON.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/status.h"
#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

enum class RestartPolicy { kAlways, kOnFailure, kNever };
enum class PullPolicy { kAlways, kIfNotPresent, kNever };

struct EnvVarSpec {
  enum class Source { kValue, kConfigMap, kSecret, kField };
  std::string name;
  Source source = Source::kValue;
  std::string value;    // kValue; the field path for kField
  std::string refName;  // configmap/secret name
  std::string refKey;
  bool optional = false;
};

struct EnvFromSpec {
  bool secret = false;
  std::string name;
  std::string prefix;
  bool optional = false;
};

struct VolumeMountSpec {
  std::string name;
  std::string mountPath;
  std::string subPath;
  bool readOnly = false;
};

struct ProbeSpec {
  std::vector<std::string> command;
  int initialDelaySeconds = 0;
  int periodSeconds = 10;
  int timeoutSeconds = 1;
  int failureThreshold = 3;
};

struct ContainerSpec {
  std::string name;
  std::string image;
  PullPolicy pullPolicy = PullPolicy::kIfNotPresent;
  std::vector<std::string> command;
  std::vector<std::string> args;
  std::string workingDir;
  std::vector<EnvVarSpec> env;
  std::vector<EnvFromSpec> envFrom;
  std::vector<VolumeMountSpec> mounts;
  int64_t cpuLimitMilli = 0;
  int64_t cpuRequestMilli = 0;
  int64_t memoryLimitBytes = 0;
  SecurityContext security;
  std::optional<ProbeSpec> liveness;
  bool stdin = false;  // a stdin kept open for `kubectl attach -i`
  bool stdinOnce = false;
  bool tty = false;
  std::string hash;  // of the container's JSON: a change replaces the container
};

// One source of a projected volume (or the one source of a downwardAPI volume).
struct ProjectionSource {
  enum class Kind { kConfigMap, kSecret, kDownwardApi, kServiceAccountToken };
  // A file of the volume: a configMap/secret key, or a downwardAPI field, at `path`.
  struct Item {
    std::string key;  // configMap/secret key; downwardAPI: the fieldPath
    std::string path;
    int mode = -1;  // -1: the volume's defaultMode
    // downwardAPI resourceFieldRef: the container and the resource ("limits.cpu", ...).
    std::string container;
    std::string resource;
    std::string divisor;
  };
  Kind kind = Kind::kConfigMap;
  std::string refName;  // configMap / secret name
  bool optional = false;
  std::vector<Item> items;
  // serviceAccountToken
  std::string audience;  // empty: the API server's own
  int64_t expirationSeconds = 3600;
  std::string path;
};

struct VolumeSpec {
  enum class Kind { kHostPath, kEmptyDir, kConfigMap, kSecret, kProjected, kDownwardApi };
  std::string name;
  Kind kind = Kind::kEmptyDir;
  std::string path;          // hostPath
  std::string hostPathType;  // "", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", ...
  std::string refName;       // configMap / secret name
  std::vector<std::pair<std::string, std::string>> items;  // key -> relative path
  int defaultMode = -1;  // -1: 0644 for configmaps, 0600 for secrets
  bool optional = false;
  std::vector<ProjectionSource> sources;  // projected; downwardAPI: one source
};

struct PodSpec {
  std::string key;
  std::string name;
  std::string podNamespace;
  std::string uid;
  std::string resourceVersion;             // metadata.resourceVersion, "" when absent
  std::string serviceAccount = "default";  // spec.serviceAccountName
  Labels labels;
  Labels annotations;
  RestartPolicy restartPolicy = RestartPolicy::kAlways;
  bool hostNetwork = false;
  std::string hostname;
  std::string runtimeClassName;
  int64_t gracePeriodSeconds = 30;  // metadata.deletionGracePeriodSeconds once it is being deleted
  // metadata.deletionTimestamp is set: the pod is being deleted (kubectl delete). Its containers
  // stop within the grace period and never start again, also after an agent restart.
  bool deleting = false;
  SecurityContext podSecurity;
  std::vector<ContainerSpec> initContainers;
  std::vector<ContainerSpec> containers;
  std::vector<VolumeSpec> volumes;
  std::vector<std::string> unsupported;  // JSON paths of fields we do not act on
  std::string sandboxHash;               // of what needs a new sandbox when it changes
};

// Parses a Pod JSON. Fails (INVALID_ARGUMENT, the message naming the field) when the pod cannot be
// run at all, which includes every string that would become a host path and is not safe as one
// (metadata.uid, volume and container names, subPath, items[].key/path, hostPath.path, checked
// with outpost::validation) and ids the runtime would refuse (runAsUser -1). Fields that are
// well-formed but unsupported land in `unsupported`. Never throws.
core::Result<PodSpec> parsePod(const std::string& key, const std::string& json,
                               const std::string& defaultNamespace);

// metadata.resourceVersion of an object's JSON; "" when absent or the JSON is not an object.
std::string metadataVersion(const std::string& json);

// Kubernetes quantities: "500m" / "2" CPUs as millicores, "128Mi" / "1G" / "1e6" as bytes.
std::optional<int64_t> parseCpuMilli(const std::string& q);
std::optional<int64_t> parseBytes(const std::string& q);

// A short stable hash (hex) of a string.
std::string shortHash(const std::string& text);

}  // namespace outpost::deploy
