#pragma once
// JSON shapes of PROTOCOL.md §2: twin properties as devices and the cloud see them, and the
// KubeEdge Device object (devices.kubeedge.io/v1beta1) the cloud sends.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/status.h"
#include "outpost/metadb/types.h"
#include "outpost/validation/validation.h"

namespace outpost::twin {

using nlohmann::json;

// Which parts of a property to render.
struct PropertyView {
  bool expected = true;
  bool actual = true;
  bool versions = false;  // expected_version / actual_version (cloud link only)
};

// {"expected":{"value","metadata":{"timestamp"}},"actual":{...},"optional","metadata":{"type"}}.
json propertyJson(const metadb::TwinProperty& p, PropertyView view = {});
// A property as a document's "last"/"current": null when absent or deleted.
json documentSide(const std::optional<metadb::TwinProperty>& p);

bool isDeleted(const metadb::TwinProperty& p);

// One desired property of a Device object.
struct DesiredProperty {
  std::string name;
  std::string value;
  std::string type;  // from desired.metadata.type; may be empty
};

// The parts of a KubeEdge Device object the twin uses.
struct DeviceObject {
  std::string ns;
  std::string name;
  std::string nodeName;
  std::string model;
  std::string description;
  std::vector<DesiredProperty> desired;  // properties that have a desired value
};

// JSON text from outside (a device's request, a cloud twin, a stored Device object), parsed only
// after validation::jsonWithin passed it: a text nested deeper than `limits.maxDepth` (or larger
// than `limits.maxBytes`) never reaches the parser, since copying or serializing it would recurse
// once per level and overflow the thread's stack. RESOURCE_EXHAUSTED names the limit that was
// exceeded; INVALID_ARGUMENT says the text is not JSON.
core::Result<json> parseJson(std::string_view text, const validation::JsonLimits& limits = {});
// The same, and a JSON string holding JSON (as KubeEdge sends a message's content) is parsed again,
// within the same limits.
core::Result<json> parseJsonContent(std::string_view text,
                                    const validation::JsonLimits& limits = {});

// A Device object's text; refused (RESOURCE_EXHAUSTED) past the default JSON limits.
core::Result<DeviceObject> parseDeviceObject(const std::string& text);

}  // namespace outpost::twin
