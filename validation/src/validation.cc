#include "outpost/validation/validation.h"

#include <nlohmann/json.hpp>
#include <set>

#include "outpost/core/log.h"

namespace outpost::validation {
namespace {

using nlohmann::json;

bool lowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool alnum(char c) { return lowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

core::Status refuse(std::string_view what, std::string_view s, std::string_view rule) {
  std::string m;
  m.append(what).append(" \"").append(printable(s)).append("\": ").append(rule);
  return core::invalidArgument(std::move(m));
}

constexpr std::string_view kLabelRule =
    "must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a "
    "letter or digit, at most 63 characters)";
constexpr std::string_view kSubdomainRule =
    "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', starting and ending "
    "with a letter or digit, at most 253 characters)";

bool isLabel(std::string_view s) {
  if (s.empty() || s.size() > kMaxLabel) return false;
  if (!lowerAlnum(s.front()) || !lowerAlnum(s.back())) return false;
  for (char c : s)
    if (!lowerAlnum(c) && c != '-') return false;
  return true;
}

// A path's elements, split on '/', for the ".." rule.
bool hasDotDot(std::string_view s) {
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find('/', i);
    if (j == std::string_view::npos) j = s.size();
    if (s.substr(i, j - i) == "..") return true;
    i = j + 1;
  }
  return false;
}

// Field access that never throws: the object is data from outside.
const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::string at(std::string_view base, size_t i) {
  return std::string(base) + "[" + std::to_string(i) + "]";
}

core::Status stringField(const json& obj, const char* key, const std::string& where,
                         core::Status (*rule)(std::string_view, std::string_view),
                         bool required = false) {
  const json* v = member(obj, key);
  if (!v)
    return required ? core::invalidArgument(where + "." + key + ": missing") : core::okStatus();
  if (!v->is_string()) return core::invalidArgument(where + "." + key + ": must be a string");
  return rule(where + "." + key, v->get_ref<const std::string&>());
}

core::Status dataKeys(const json& obj, const char* field, std::set<std::string>& seen) {
  const json* data = member(obj, field);
  if (!data || data->is_null()) return core::okStatus();
  if (!data->is_object()) return core::invalidArgument(std::string(field) + ": must be an object");
  for (const auto& [k, v] : data->items()) {
    OUTPOST_RETURN_IF_ERROR(configKey(std::string(field) + " key", k));
    if (!v.is_string())
      return core::invalidArgument(std::string(field) + "." + printable(k) + ": must be a string");
    if (!seen.insert(k).second)
      return refuse(std::string(field) + " key", k, "appears in more than one of the data maps");
  }
  return core::okStatus();
}

core::Status items(const json& source, const std::string& where) {
  const json* list = member(source, "items");
  if (!list || list->is_null()) return core::okStatus();
  if (!list->is_array()) return core::invalidArgument(where + ".items: must be an array");
  size_t i = 0;
  for (const auto& item : *list) {
    std::string w = at(where + ".items", i++);
    if (!item.is_object()) return core::invalidArgument(w + ": must be an object");
    OUTPOST_RETURN_IF_ERROR(stringField(item, "key", w, configKey, true));
    OUTPOST_RETURN_IF_ERROR(stringField(item, "path", w, relativePath, true));
  }
  return core::okStatus();
}

core::Status volumes(const json& spec, std::set<std::string>& names) {
  const json* list = member(spec, "volumes");
  if (!list || list->is_null()) return core::okStatus();
  if (!list->is_array()) return core::invalidArgument("spec.volumes: must be an array");
  size_t i = 0;
  for (const auto& v : *list) {
    std::string w = at("spec.volumes", i++);
    if (!v.is_object()) return core::invalidArgument(w + ": must be an object");
    OUTPOST_RETURN_IF_ERROR(stringField(v, "name", w, dnsLabel, true));
    if (!names.insert(v["name"].get<std::string>()).second)
      return refuse(w + ".name", v["name"].get<std::string>(), "is used by another volume");
    if (const json* hp = member(v, "hostPath"))
      OUTPOST_RETURN_IF_ERROR(stringField(*hp, "path", w + ".hostPath", absolutePath, true));
    for (const char* source : {"configMap", "secret"}) {
      if (const json* s = member(v, source)) OUTPOST_RETURN_IF_ERROR(items(*s, w + "." + source));
    }
    if (const json* p = member(v, "projected")) {
      const json* sources = member(*p, "sources");
      if (sources && sources->is_array()) {
        size_t j = 0;
        for (const auto& s : *sources) {
          std::string ws = at(w + ".projected.sources", j++);
          for (const char* source : {"configMap", "secret", "downwardAPI"}) {
            if (const json* x = member(s, source))
              OUTPOST_RETURN_IF_ERROR(items(*x, ws + "." + source));
          }
          if (const json* t = member(s, "serviceAccountToken"))
            OUTPOST_RETURN_IF_ERROR(
                stringField(*t, "path", ws + ".serviceAccountToken", relativePath, true));
        }
      }
    }
    if (const json* d = member(v, "downwardAPI"))
      OUTPOST_RETURN_IF_ERROR(items(*d, w + ".downwardAPI"));
  }
  return core::okStatus();
}

core::Status containers(const json& spec, const char* field, std::set<std::string>& names) {
  const json* list = member(spec, field);
  if (!list || list->is_null()) return core::okStatus();
  std::string base = std::string("spec.") + field;
  if (!list->is_array()) return core::invalidArgument(base + ": must be an array");
  size_t i = 0;
  for (const auto& c : *list) {
    std::string w = at(base, i++);
    if (!c.is_object()) return core::invalidArgument(w + ": must be an object");
    OUTPOST_RETURN_IF_ERROR(stringField(c, "name", w, dnsLabel, true));
    if (!names.insert(c["name"].get<std::string>()).second)
      return refuse(w + ".name", c["name"].get<std::string>(), "is used by another container");
    const json* mounts = member(c, "volumeMounts");
    if (!mounts || mounts->is_null()) continue;
    if (!mounts->is_array()) return core::invalidArgument(w + ".volumeMounts: must be an array");
    size_t j = 0;
    for (const auto& m : *mounts) {
      std::string wm = at(w + ".volumeMounts", j++);
      if (!m.is_object()) return core::invalidArgument(wm + ": must be an object");
      OUTPOST_RETURN_IF_ERROR(stringField(m, "name", wm, dnsLabel, true));
      const json* sub = member(m, "subPath");
      if (sub && sub->is_string() && sub->get_ref<const std::string&>().empty()) continue;
      OUTPOST_RETURN_IF_ERROR(stringField(m, "subPath", wm, relativePath));
    }
  }
  return core::okStatus();
}

core::Status pod(const json& obj) {
  const json* spec = member(obj, "spec");
  if (!spec || spec->is_null()) return core::okStatus();
  if (!spec->is_object()) return core::invalidArgument("spec: must be an object");
  std::set<std::string> volumeNames, containerNames;
  OUTPOST_RETURN_IF_ERROR(volumes(*spec, volumeNames));
  OUTPOST_RETURN_IF_ERROR(containers(*spec, "initContainers", containerNames));
  OUTPOST_RETURN_IF_ERROR(containers(*spec, "containers", containerNames));
  return core::okStatus();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace

core::Status dnsLabel(std::string_view what, std::string_view s) {
  return isLabel(s) ? core::okStatus() : refuse(what, s, kLabelRule);
}

core::Status dnsSubdomain(std::string_view what, std::string_view s) {
  if (s.empty() || s.size() > kMaxSubdomain) return refuse(what, s, kSubdomainRule);
  size_t i = 0;
  while (true) {
    size_t j = s.find('.', i);
    if (j == std::string_view::npos) j = s.size();
    // Each part is a label; Kubernetes' 253 bound is on the whole name.
    std::string_view part = s.substr(i, j - i);
    if (part.empty() || !lowerAlnum(part.front()) || !lowerAlnum(part.back()))
      return refuse(what, s, kSubdomainRule);
    for (char c : part)
      if (!lowerAlnum(c) && c != '-') return refuse(what, s, kSubdomainRule);
    if (j == s.size()) return core::okStatus();
    i = j + 1;
  }
}

core::Status uid(std::string_view what, std::string_view s) {
  constexpr std::string_view rule =
      "must be a uid (a letter or digit, then letters, digits, '-', '_' or '.', at most 128 "
      "characters)";
  if (s.empty() || s.size() > kMaxUid || !alnum(s.front())) return refuse(what, s, rule);
  for (char c : s)
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return refuse(what, s, rule);
  return core::okStatus();
}

core::Status configKey(std::string_view what, std::string_view s) {
  constexpr std::string_view rule =
      "must be a key of letters, digits, '-', '_' and '.' (at most 253 characters, not '.' or "
      "'..')";
  if (s.empty() || s.size() > kMaxSubdomain || s == "." || s == "..") return refuse(what, s, rule);
  for (char c : s)
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return refuse(what, s, rule);
  return core::okStatus();
}

core::Status relativePath(std::string_view what, std::string_view s) {
  if (s.empty()) return refuse(what, s, "must not be empty");
  if (s.size() > 4096) return refuse(what, s, "is longer than 4096 bytes");
  if (s.find('\0') != std::string_view::npos) return refuse(what, s, "must not hold a NUL byte");
  if (s.front() == '/') return refuse(what, s, "must be a relative path");
  if (hasDotDot(s)) return refuse(what, s, "must not contain '..'");
  return core::okStatus();
}

core::Status absolutePath(std::string_view what, std::string_view s) {
  if (s.empty() || s.front() != '/') return refuse(what, s, "must be an absolute path");
  if (s.size() > 4096) return refuse(what, s, "is longer than 4096 bytes");
  if (s.find('\0') != std::string_view::npos) return refuse(what, s, "must not hold a NUL byte");
  if (hasDotDot(s)) return refuse(what, s, "must not contain '..'");
  return core::okStatus();
}

core::Status jsonWithin(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.maxBytes) {
    return core::invalidArgument("JSON of " + std::to_string(text.size()) +
                                 " bytes is over the limit of " + std::to_string(limits.maxBytes));
  }
  size_t depth = 0;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    char c = *p++;
    if (c == '"') {
      // Skip the string: to the next quote not escaped.
      while (p < end) {
        char d = *p++;
        if (d == '\\') {
          if (p < end) ++p;
        } else if (d == '"') {
          break;
        }
      }
    } else if (c == '[' || c == '{') {
      if (++depth > limits.maxDepth) {
        return core::invalidArgument("JSON nests deeper than " + std::to_string(limits.maxDepth) +
                                     " levels");
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return core::okStatus();
}

core::Status desiredKey(std::string_view ns, std::string_view type, std::string_view name) {
  if (!ns.empty()) OUTPOST_RETURN_IF_ERROR(dnsLabel("namespace", ns));
  if (type.empty() || type.size() > kMaxLabel)
    return refuse("type", type, "must be 1 to 63 lower-case letters and digits");
  for (char c : type)
    if (!lowerAlnum(c))
      return refuse("type", type, "must be 1 to 63 lower-case letters and digits");
  return dnsSubdomain("name", name);
}

core::Status desiredObject(std::string_view ns, std::string_view type, std::string_view name,
                           std::string_view object) {
  OUTPOST_RETURN_IF_ERROR(desiredKey(ns, type, name));
  OUTPOST_RETURN_IF_ERROR(jsonWithin(object));
  json obj = json::parse(object, nullptr, false);
  if (!obj.is_object()) return core::invalidArgument("the object is not a JSON object");
  if (const json* kind = member(obj, "kind")) {
    if (!kind->is_string()) return core::invalidArgument("kind: must be a string");
    if (lower(kind->get_ref<const std::string&>()) != type) {
      return refuse("kind", kind->get_ref<const std::string&>(),
                    "does not match the type \"" + std::string(type) + "\" of its key");
    }
  }
  if (const json* meta = member(obj, "metadata")) {
    if (!meta->is_object()) return core::invalidArgument("metadata: must be an object");
    if (const json* n = member(*meta, "name")) {
      if (!n->is_string() || n->get_ref<const std::string&>() != name)
        return core::invalidArgument("metadata.name: must be the name of its key, \"" +
                                     printable(name) + "\"");
    }
    if (const json* n = member(*meta, "namespace");
        n && !(n->is_string() && n->get_ref<const std::string&>().empty())) {
      if (!n->is_string() || n->get_ref<const std::string&>() != ns)
        return core::invalidArgument("metadata.namespace: must be the namespace of its key, \"" +
                                     printable(ns) + "\"");
    }
    OUTPOST_RETURN_IF_ERROR(stringField(*meta, "uid", "metadata", uid));
  }
  if (type == "configmap" || type == "secret") {
    std::set<std::string> seen;
    OUTPOST_RETURN_IF_ERROR(dataKeys(obj, "data", seen));
    OUTPOST_RETURN_IF_ERROR(dataKeys(obj, type == "secret" ? "stringData" : "binaryData", seen));
  }
  if (type == "pod") OUTPOST_RETURN_IF_ERROR(pod(obj));
  return core::okStatus();
}

std::string printable(std::string_view s, size_t max) {
  if (s.size() <= max) return core::escapeControl(s);
  return core::escapeControl(s.substr(0, max)) + "...";
}

}  // namespace outpost::validation
