#include "manifests.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <regex>

#include "outpost/validation/validation.h"

namespace outpost::agent {

using nlohmann::json;

namespace {

// What an unquoted YAML scalar means: its natural JSON type (YAML 1.2's core schema).
json plainScalar(const std::string& s) {
  static const std::regex kInt("^[-+]?[0-9]+$");
  static const std::regex kFloat("^[-+]?([0-9]*\\.[0-9]+|[0-9]+\\.)([eE][-+]?[0-9]+)?$");
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s == "null" || s == "~" || s == "Null" || s == "NULL" || s.empty()) return nullptr;
  if (std::regex_match(s, kInt) && s.size() < 19) return std::stoll(s);
  if (std::regex_match(s, kFloat)) return std::stod(s);
  return s;
}

// Quoted scalars stay strings.
json scalarToJson(const YAML::Node& n) {
  if (n.Tag() == "!") return n.Scalar();
  return plainScalar(n.Scalar());
}

// A string written unquoted would be read back as something else: by us (a number, bool or null)
// or by YAML 1.1 tools such as kubectl (yes/no/on/off, any case).
bool needsQuotes(const std::string& s) {
  if (!plainScalar(s).is_string()) return true;
  std::string lower = s;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return lower == "yes" || lower == "no" || lower == "on" || lower == "off" || lower == "y" ||
         lower == "n";
}

json toJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      return scalarToJson(n);
    case YAML::NodeType::Sequence: {
      json arr = json::array();
      for (const auto& item : n) arr.push_back(toJson(item));
      return arr;
    }
    case YAML::NodeType::Map: {
      json obj = json::object();
      for (const auto& kv : n) obj[kv.first.as<std::string>()] = toJson(kv.second);
      return obj;
    }
    case YAML::NodeType::Undefined:
      break;
  }
  return nullptr;
}

void emit(YAML::Emitter& out, const json& j) {
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      out << YAML::Key << k << YAML::Value;
      emit(out, v);
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    out << YAML::BeginSeq;
    for (const auto& v : j) emit(out, v);
    out << YAML::EndSeq;
  } else if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (needsQuotes(s)) out << YAML::DoubleQuoted;
    out << s;
  } else if (j.is_null()) {
    out << YAML::Null;
  } else {
    out << j.dump();
  }
}

const std::regex kName("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$");

}  // namespace

std::string typeOfKind(const std::string& kind) {
  std::string t = kind;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  return t;
}

core::Result<std::vector<ManifestObject>> parseManifests(const std::string& text,
                                                         const std::string& source) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return core::invalidArgument(source + ": line " + std::to_string(e.mark.line + 1) + ": " +
                                 e.msg);
  }
  std::vector<ManifestObject> out;
  int index = 0;
  for (const auto& doc : docs) {
    ++index;
    if (doc.IsNull()) continue;  // an empty document between separators
    std::string where = source + ", document " + std::to_string(index);
    json j = toJson(doc);
    if (!j.is_object()) return core::invalidArgument(where + ": not a map");
    if (j.value("kind", "") == "List" && j.contains("items") && j["items"].is_array()) {
      for (const auto& item : j["items"]) {
        auto sub = parseManifests(item.dump(), where + " (List)");
        if (!sub.isOk()) return sub.status();
        for (auto& o : *sub) out.push_back(std::move(o));
      }
      continue;
    }
    if (!j.contains("kind") || !j["kind"].is_string() || j["kind"].get<std::string>().empty()) {
      return core::invalidArgument(where + ": kind is missing");
    }
    auto& meta = j["metadata"];
    if (!meta.is_object() || !meta.contains("name") || !meta["name"].is_string()) {
      return core::invalidArgument(where + ": metadata.name is missing");
    }
    std::string name = meta["name"];
    if (!std::regex_match(name, kName)) {
      return core::invalidArgument(where + ": metadata.name \"" + name +
                                   "\" is not a lowercase DNS name");
    }
    std::string ns = meta.value("namespace", "default");
    if (!std::regex_match(ns, kName)) {
      return core::invalidArgument(where + ": metadata.namespace \"" + ns +
                                   "\" is not a lowercase DNS name");
    }
    meta["namespace"] = ns;
    std::string type = typeOfKind(j["kind"]);
    std::string dumped = j.dump();
    if (core::Status within = validation::jsonWithin(dumped); !within.isOk())
      return core::invalidArgument(where + ": " + within.message());
    out.push_back({ns + "/" + type + "/" + name, type, std::move(dumped)});
  }
  if (out.empty()) return core::invalidArgument(source + ": no objects found");
  return out;
}

std::string jsonToYaml(const std::string& text) {
  // The emitter recurses once per level: only documents of a printable depth reach it.
  if (core::Status within = validation::jsonWithin(text, {128, 256u << 20}); !within.isOk())
    return "# not shown: " + within.message() + "\n";
  YAML::Emitter out;
  emit(out, json::parse(text));
  return std::string(out.c_str()) + "\n";
}

}  // namespace outpost::agent
