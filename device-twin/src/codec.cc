#include "codec.h"

#include "outpost/twin/rules.h"

namespace outpost::twin {

namespace {

json valueJson(const metadb::TwinValue& v) {
  return {{"value", v.value}, {"metadata", {{"timestamp", v.timestampMs}}}};
}

json versionJson(const metadb::VersionVector& v) { return {{"cloud", v.cloud}, {"edge", v.edge}}; }

std::string stringAt(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

bool isDeleted(const metadb::TwinProperty& p) { return p.type == kDeletedType; }

json propertyJson(const metadb::TwinProperty& p, PropertyView view) {
  json j = json::object();
  if (view.expected && p.expected) j["expected"] = valueJson(*p.expected);
  if (view.actual && p.actual) j["actual"] = valueJson(*p.actual);
  j["optional"] = p.optional;
  j["metadata"] = {{"type", p.type}};
  if (view.versions) {
    j["expected_version"] = versionJson(p.expectedVersion);
    j["actual_version"] = versionJson(p.actualVersion);
  }
  return j;
}

json documentSide(const std::optional<metadb::TwinProperty>& p) {
  if (!p || isDeleted(*p)) return nullptr;
  return propertyJson(*p);
}

core::Result<json> parseJson(std::string_view text, const validation::JsonLimits& limits) {
  if (core::Status s = validation::jsonWithin(text, limits); !s.isOk())
    return core::resourceExhausted(s.message());
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return core::invalidArgument("not JSON");
  return j;
}

core::Result<json> parseJsonContent(std::string_view text, const validation::JsonLimits& limits) {
  OUTPOST_ASSIGN_OR_RETURN(json j, parseJson(text, limits));
  if (!j.is_string()) return j;
  std::string inner = j.get<std::string>();
  return parseJson(inner, limits);
}

core::Result<DeviceObject> parseDeviceObject(const std::string& text) {
  auto parsed = parseJson(text);
  if (!parsed.isOk() && parsed.status().code() == core::Code::kResourceExhausted)
    return parsed.status().withContext("the Device object");
  if (!parsed.isOk() || !parsed->is_object())
    return core::invalidArgument("the Device object is not a JSON object");
  const json& j = *parsed;
  DeviceObject d;
  auto meta = j.find("metadata");
  if (meta != j.end() && meta->is_object()) {
    d.ns = stringAt(*meta, "namespace");
    d.name = stringAt(*meta, "name");
    // KubeEdge's device twin takes the description from the Device's labels; an annotation
    // (what Outpost read before) still counts when no label gives one.
    auto labels = meta->find("labels");
    if (labels != meta->end() && labels->is_object())
      d.description = stringAt(*labels, "description");
    auto ann = meta->find("annotations");
    if (d.description.empty() && ann != meta->end() && ann->is_object())
      d.description = stringAt(*ann, "description");
  }
  auto spec = j.find("spec");
  if (spec == j.end() || !spec->is_object()) return d;
  d.nodeName = stringAt(*spec, "nodeName");
  if (auto ref = spec->find("deviceModelRef"); ref != spec->end() && ref->is_object())
    d.model = stringAt(*ref, "name");
  auto props = spec->find("properties");
  if (props == spec->end() || !props->is_array()) return d;
  for (const auto& p : *props) {
    if (!p.is_object()) continue;
    auto desired = p.find("desired");
    if (desired == p.end() || !desired->is_object()) continue;
    auto value = desired->find("value");
    if (value == desired->end() || !value->is_string()) continue;
    DesiredProperty dp;
    dp.name = stringAt(p, "name");
    dp.value = value->get<std::string>();
    if (auto m = desired->find("metadata"); m != desired->end() && m->is_object())
      dp.type = stringAt(*m, "type");
    d.desired.push_back(std::move(dp));
  }
  return d;
}

}  // namespace outpost::twin
