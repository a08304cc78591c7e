// Device twin payloads (device-twin/src/codec.{h,cc} and rules.cc): the input is read as a KubeEdge
// Device object (parseDeviceObject, what the cloud sends) and, through parseJsonContent (the JSON
// limits; JSON held in a string is its content), as a twin message in the shape devices and the
// cloud send ({"twin": {name: {"expected": {"value"}, "actual": {...}, "metadata":
// {"type"}, "expected_version": {"cloud", "edge"}, ...}}}): every property's name, value and type
// go through the rules of PROTOCOL.md §2 (validPropertyName/Value, validType, valueMatchesType,
// decideCloudUpdate) and the property is rendered back (propertyJson, documentSide) and serialised.
// Checked: nothing throws or crashes; a value that matches "int"/"float"/"boolean" is one
// (integers within 64 bits, finite floats, Go's ParseBool words).

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "codec.h"
#include "fuzz_util.h"
#include "outpost/twin/rules.h"

namespace {

using nlohmann::json;
using outpost::fuzz::check;
namespace twin = outpost::twin;
namespace metadb = outpost::metadb;

std::optional<metadb::VersionVector> versions(const json& prop, const char* key) {
  auto it = prop.find(key);
  if (it == prop.end() || !it->is_object()) return std::nullopt;
  metadb::VersionVector v;
  auto num = [&](const char* k, int64_t& out) {
    auto n = it->find(k);
    if (n != it->end() && n->is_number_integer()) out = n->get<int64_t>();
  };
  num("cloud", v.cloud);
  num("edge", v.edge);
  return v;
}

std::optional<std::string> sideValue(const json& prop, const char* side) {
  auto it = prop.find(side);
  if (it == prop.end() || !it->is_object()) return std::nullopt;
  auto v = it->find("value");
  if (v == it->end() || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

void checkTyped(const std::string& value, const std::string& type) {
  bool matches = twin::valueMatchesType(value, type);
  if (!twin::validType(type)) {
    check(!matches, "a value matches an unknown type");
    return;
  }
  if (!matches || type == "string") return;
  if (type == "int" || type == "integer") {
    check(!value.empty() && value.find_first_not_of("+-0123456789") == std::string::npos,
          "an int value holds more than a sign and digits");
  } else if (type == "float") {
    char* end = nullptr;
    double d = std::strtod(value.c_str(), &end);
    check(std::isfinite(d), "a float value is not finite");
  } else if (type == "boolean") {
    check(value.size() <= 5, "a boolean value is longer than FALSE");
  }
}

void property(const std::string& name, const json& prop, const metadb::VersionVector& stored) {
  (void)twin::validPropertyName(name);
  if (!prop.is_object()) return;
  metadb::TwinProperty p;
  p.name = name;
  p.type = "string";
  if (auto m = prop.find("metadata"); m != prop.end() && m->is_object()) {
    auto t = m->find("type");
    if (t != m->end() && t->is_string()) p.type = t->get<std::string>();
  }
  if (auto o = prop.find("optional"); o != prop.end() && o->is_boolean())
    p.optional = o->get<bool>();
  for (const char* side : {"expected", "actual"}) {
    auto value = sideValue(prop, side);
    if (!value) continue;
    (void)twin::validPropertyValue(*value);
    for (const char* type : {"string", "int", "integer", "float", "boolean"})
      checkTyped(*value, type);
    checkTyped(*value, p.type);
    metadb::TwinValue tv{*value, 0};
    (std::string(side) == "expected" ? p.expected : p.actual) = tv;
  }
  auto ev = versions(prop, "expected_version");
  auto av = versions(prop, "actual_version");
  (void)twin::decideCloudUpdate(stored, ev);
  (void)twin::decideCloudUpdate(stored, av);
  if (ev) p.expectedVersion = *ev;
  if (av) p.actualVersion = *av;
  // Rendering must not throw: values here are valid UTF-8 (they came from parsed JSON).
  (void)twin::propertyJson(p, {true, true, true}).dump();
  (void)twin::documentSide(p).dump();
  (void)twin::isDeleted(p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(outpost::fuzz::asText(data, size));
  auto device = twin::parseDeviceObject(text);
  if (device.isOk()) {
    for (const auto& dp : device.value().desired) {
      (void)twin::validPropertyName(dp.name);
      (void)twin::validPropertyValue(dp.value);
      if (twin::validType(dp.type)) checkTyped(dp.value, dp.type);
    }
  }
  // As the twin reads a payload: within the JSON limits, JSON in a string taken as its content.
  auto parsed = twin::parseJsonContent(text);
  if (!parsed.isOk()) return 0;
  const json& j = parsed.value();
  if (!j.is_object()) return 0;
  auto twinIt = j.find("twin");
  if (twinIt == j.end() || !twinIt->is_object()) return 0;
  metadb::VersionVector stored{static_cast<int64_t>(size % 7), static_cast<int64_t>(size % 5)};
  for (const auto& [name, prop] : twinIt->items()) property(name, prop, stored);
  return 0;
}
