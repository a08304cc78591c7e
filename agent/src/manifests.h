#pragma once
// Reading Kubernetes-style manifests (YAML or JSON, several documents per file) for outpostctl.

#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::agent {

// One object from a manifest file, with the store key it maps to.
struct ManifestObject {
  std::string key;   // "<namespace>/<type>/<name>"
  std::string type;  // pod, configmap, secret, device, ...
  std::string json;  // the object as JSON
};

// Parses every document of `text` (YAML, of which JSON is a subset). A document without kind or
// metadata.name is an error naming the document's number; `source` names the file in messages.
core::Result<std::vector<ManifestObject>> parseManifests(const std::string& text,
                                                         const std::string& source);

// The store type of a Kubernetes kind: Pod -> pod, ConfigMap -> configmap.
std::string typeOfKind(const std::string& kind);

// YAML text for a JSON document (outpostctl -o yaml).
std::string jsonToYaml(const std::string& json);

}  // namespace outpost::agent
