#include "projected.h"

#include <algorithm>
#include <map>
#include <set>

#include "outpost/validation/validation.h"
#include "volumes.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;
using Kind = ProjectionSource::Kind;

std::string str(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void checkKeys(const json& obj, const std::string& path, const std::set<std::string>& known,
               std::vector<std::string>& unsupported) {
  if (!obj.is_object()) return;
  for (const auto& [k, v] : obj.items())
    if (!known.count(k)) unsupported.push_back(path + "." + k);
}

// An optional file mode at `key`: 0..0777 (no setuid, setgid or sticky bit).
core::Status mode(const json& obj, const char* key, const std::string& path, int& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return core::okStatus();
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 0777) {
    return core::invalidArgument(path + "." + key + ": must be a file mode from 0 to 0777 (511), " +
                                 "got " + validation::printable(it->dump()));
  }
  out = static_cast<int>(it->get<int64_t>());
  return core::okStatus();
}

// configMap / secret source: name, items (key, path, mode), optional.
core::Status keySource(const json& src, const std::string& path, bool secret, ProjectionSource& out,
                       std::vector<std::string>& unsupported) {
  if (!src.is_object()) return core::invalidArgument(path + ": must be an object");
  const char* nameKey = secret ? "secretName" : "name";
  // A projected secret is named by "name" (the secret volume by "secretName").
  if (secret && !src.contains("secretName")) nameKey = "name";
  checkKeys(src, path, {nameKey, "items", "optional"}, unsupported);
  out.kind = secret ? Kind::kSecret : Kind::kConfigMap;
  out.refName = str(src, nameKey);
  OUTPOST_RETURN_IF_ERROR(validation::dnsSubdomain(path + "." + nameKey, out.refName));
  out.optional = src.value("optional", false);
  auto items = src.find("items");
  if (items == src.end() || items->is_null()) return core::okStatus();
  if (!items->is_array()) return core::invalidArgument(path + ".items: must be an array");
  int i = 0;
  for (const auto& item : *items) {
    std::string ip = path + ".items[" + std::to_string(i++) + "]";
    if (!item.is_object()) return core::invalidArgument(ip + ": must be an object");
    checkKeys(item, ip, {"key", "path", "mode"}, unsupported);
    ProjectionSource::Item it;
    it.key = str(item, "key");
    it.path = str(item, "path");
    OUTPOST_RETURN_IF_ERROR(validation::configKey(ip + ".key", it.key));
    OUTPOST_RETURN_IF_ERROR(validation::relativePath(ip + ".path", it.path));
    OUTPOST_RETURN_IF_ERROR(mode(item, "mode", ip, it.mode));
    out.items.push_back(std::move(it));
  }
  return core::okStatus();
}

// downwardAPI source: items of fieldRef or resourceFieldRef, each with a path and a mode.
core::Status downwardSource(const json& src, const std::string& path, ProjectionSource& out,
                            std::vector<std::string>& unsupported,
                            std::set<std::string> known = {"items"}) {
  if (!src.is_object()) return core::invalidArgument(path + ": must be an object");
  checkKeys(src, path, known, unsupported);
  out.kind = Kind::kDownwardApi;
  auto items = src.find("items");
  if (items == src.end() || items->is_null()) return core::okStatus();
  if (!items->is_array()) return core::invalidArgument(path + ".items: must be an array");
  int i = 0;
  for (const auto& item : *items) {
    std::string ip = path + ".items[" + std::to_string(i++) + "]";
    if (!item.is_object()) return core::invalidArgument(ip + ": must be an object");
    checkKeys(item, ip, {"path", "fieldRef", "resourceFieldRef", "mode"}, unsupported);
    ProjectionSource::Item it;
    it.path = str(item, "path");
    OUTPOST_RETURN_IF_ERROR(validation::relativePath(ip + ".path", it.path));
    OUTPOST_RETURN_IF_ERROR(mode(item, "mode", ip, it.mode));
    if (item.contains("fieldRef") && item["fieldRef"].is_object()) {
      it.key = str(item["fieldRef"], "fieldPath");
      if (it.key.empty()) return core::invalidArgument(ip + ".fieldRef.fieldPath: required");
    } else if (item.contains("resourceFieldRef") && item["resourceFieldRef"].is_object()) {
      const json& r = item["resourceFieldRef"];
      it.container = str(r, "containerName");
      it.resource = str(r, "resource");
      it.divisor = r.contains("divisor") && r["divisor"].is_string() ? str(r, "divisor") : "1";
      static const std::set<std::string> kResources = {"limits.cpu", "requests.cpu",
                                                       "limits.memory"};
      if (!kResources.count(it.resource)) {
        return core::invalidArgument(
            ip + ".resourceFieldRef.resource: " + validation::printable(it.resource) +
            " is not supported (limits.cpu, requests.cpu, limits.memory)");
      }
    } else {
      return core::invalidArgument(ip + ": needs a fieldRef or a resourceFieldRef");
    }
    out.items.push_back(std::move(it));
  }
  return core::okStatus();
}

core::Status tokenSource(const json& src, const std::string& path, ProjectionSource& out,
                         std::vector<std::string>& unsupported) {
  if (!src.is_object()) return core::invalidArgument(path + ": must be an object");
  checkKeys(src, path, {"audience", "expirationSeconds", "path"}, unsupported);
  out.kind = Kind::kServiceAccountToken;
  out.path = str(src, "path");
  OUTPOST_RETURN_IF_ERROR(validation::relativePath(path + ".path", out.path));
  out.audience = str(src, "audience");
  bool printable = std::all_of(out.audience.begin(), out.audience.end(),
                               [](char c) { return c > 0x20 && c < 0x7f; });
  if (out.audience.size() > 1024 || !printable) {
    return core::invalidArgument(path + ".audience " + validation::printable(out.audience) +
                                 ": must be printable ASCII without spaces, at most 1024 bytes");
  }
  auto exp = src.find("expirationSeconds");
  if (exp != src.end() && !exp->is_null()) {
    constexpr int64_t kMin = 600, kMax = int64_t{1} << 32;  // the API server's bounds
    if (!exp->is_number_integer() || exp->get<int64_t>() < kMin || exp->get<int64_t>() > kMax) {
      return core::invalidArgument(path + ".expirationSeconds: must be an integer from 600 to " +
                                   std::to_string(kMax) + ", got " +
                                   validation::printable(exp->dump()));
    }
    out.expirationSeconds = exp->get<int64_t>();
  }
  return core::okStatus();
}

// Kubernetes' format of a label or annotation map in a downwardAPI file: sorted key="value" lines.
std::string formatMap(const Labels& m) {
  std::string out;
  for (const auto& [k, v] : m) out += (out.empty() ? "" : "\n") + k + "=" + json(v).dump();
  return out;
}

// metadata.labels['key'] -> key; nullopt when `field` is not of that form for `prefix`.
std::optional<std::string> subscript(const std::string& field, const std::string& prefix) {
  if (!field.starts_with(prefix + "['") || !field.ends_with("']")) return std::nullopt;
  return field.substr(prefix.size() + 2, field.size() - prefix.size() - 4);
}

// A resourceFieldRef's value: the container's limit or request in units of the divisor, rounded
// up (as the kubelet does).
core::Result<std::string> resourceValue(const PodSpec& pod, const ProjectionSource::Item& item,
                                        const std::string& where) {
  const ContainerSpec* c = nullptr;
  for (const auto* list : {&pod.containers, &pod.initContainers})
    for (const auto& spec : *list)
      if (spec.name == item.container) c = &spec;
  if (!c) {
    return core::invalidArgument(where + ": resourceFieldRef names no container of the pod: " +
                                 validation::printable(item.container));
  }
  bool cpu = item.resource != "limits.memory";
  int64_t value = item.resource == "limits.cpu"     ? c->cpuLimitMilli
                  : item.resource == "requests.cpu" ? c->cpuRequestMilli
                                                    : c->memoryLimitBytes;
  if (value <= 0) {
    return core::invalidArgument(where + ": container " + c->name + " sets no " + item.resource +
                                 " (the node's allocatable is not projected)");
  }
  auto divisor = cpu ? parseCpuMilli(item.divisor) : parseBytes(item.divisor);
  if (!divisor || *divisor <= 0) {
    return core::invalidArgument(where + ": divisor " + validation::printable(item.divisor) +
                                 " is not a positive quantity");
  }
  return std::to_string((value + *divisor - 1) / *divisor);
}

}  // namespace

core::Status parseProjected(const json& src, const std::string& path, VolumeSpec& out,
                            std::vector<std::string>& unsupported) {
  out.kind = VolumeSpec::Kind::kProjected;
  if (!src.is_object()) return core::invalidArgument(path + ": must be an object");
  checkKeys(src, path, {"sources", "defaultMode"}, unsupported);
  OUTPOST_RETURN_IF_ERROR(mode(src, "defaultMode", path, out.defaultMode));
  auto sources = src.find("sources");
  if (sources == src.end() || sources->is_null()) return core::okStatus();
  if (!sources->is_array()) return core::invalidArgument(path + ".sources: must be an array");
  int i = 0;
  for (const auto& s : *sources) {
    std::string sp = path + ".sources[" + std::to_string(i++) + "]";
    if (!s.is_object() || s.size() != 1) {
      return core::invalidArgument(sp + ": must name exactly one of configMap, secret, " +
                                   "downwardAPI, serviceAccountToken");
    }
    ProjectionSource ps;
    const std::string type = s.begin().key();
    const json& body = s.begin().value();
    if (type == "configMap" || type == "secret") {
      OUTPOST_RETURN_IF_ERROR(keySource(body, sp + "." + type, type == "secret", ps, unsupported));
    } else if (type == "downwardAPI") {
      OUTPOST_RETURN_IF_ERROR(downwardSource(body, sp + ".downwardAPI", ps, unsupported));
    } else if (type == "serviceAccountToken") {
      OUTPOST_RETURN_IF_ERROR(tokenSource(body, sp + ".serviceAccountToken", ps, unsupported));
    } else {
      return core::invalidArgument(sp + "." + validation::printable(type) +
                                   ": not a projection this node supports (configMap, secret, " +
                                   "downwardAPI, serviceAccountToken)");
    }
    out.sources.push_back(std::move(ps));
  }
  return core::okStatus();
}

core::Status parseDownwardApiVolume(const json& src, const std::string& path, VolumeSpec& out,
                                    std::vector<std::string>& unsupported) {
  out.kind = VolumeSpec::Kind::kDownwardApi;
  ProjectionSource ps;
  OUTPOST_RETURN_IF_ERROR(downwardSource(src, path, ps, unsupported, {"items", "defaultMode"}));
  OUTPOST_RETURN_IF_ERROR(mode(src, "defaultMode", path, out.defaultMode));
  out.sources.push_back(std::move(ps));
  return core::okStatus();
}

core::Result<std::string> downwardField(const PodSpec& pod, const std::string& fieldPath) {
  if (fieldPath == "metadata.name") return pod.name;
  if (fieldPath == "metadata.namespace") return pod.podNamespace;
  if (fieldPath == "metadata.uid") return pod.uid;
  if (fieldPath == "metadata.labels") return formatMap(pod.labels);
  if (fieldPath == "metadata.annotations") return formatMap(pod.annotations);
  for (const auto& [prefix, map] : {std::pair{"metadata.labels", &pod.labels},
                                    std::pair{"metadata.annotations", &pod.annotations}}) {
    if (auto key = subscript(fieldPath, prefix)) {
      auto it = map->find(*key);
      return it == map->end() ? std::string() : it->second;
    }
  }
  return core::invalidArgument("downwardAPI fieldPath " + validation::printable(fieldPath) +
                               " is not supported (metadata.name, metadata.namespace, " +
                               "metadata.uid, metadata.labels, metadata.annotations)");
}

core::Result<std::vector<ProjectedFile>> projectedFiles(const PodSpec& pod, const VolumeSpec& v,
                                                        DesiredPods& desired,
                                                        const TokenFor& tokenFor) {
  int defaultMode = v.defaultMode >= 0 ? v.defaultMode : 0644;
  std::vector<ProjectedFile> files;
  std::set<std::string> paths;
  auto add = [&](const std::string& path, std::string content, int mode) -> core::Status {
    // Paths were checked when the pod was parsed; again here, as they become file names.
    OUTPOST_RETURN_IF_ERROR(validation::relativePath("path", path));
    if (!paths.insert(path).second) {
      return core::invalidArgument("path " + validation::printable(path) +
                                   " is projected by two sources");
    }
    files.push_back({path, std::move(content), mode >= 0 ? mode : defaultMode});
    return core::okStatus();
  };
  for (const auto& s : v.sources) {
    switch (s.kind) {
      case Kind::kConfigMap:
      case Kind::kSecret: {
        bool secret = s.kind == Kind::kSecret;
        std::string what =
            std::string(secret ? "secret " : "configmap ") + pod.podNamespace + "/" + s.refName;
        OUTPOST_ASSIGN_OR_RETURN(auto data, loadData(desired, pod.podNamespace, secret, s.refName));
        if (!data) {
          if (s.optional) break;
          return core::notFound(what + " not found");
        }
        if (s.items.empty()) {
          for (auto& [k, value] : *data) {
            OUTPOST_RETURN_IF_ERROR(validation::configKey(what + " key", k));
            OUTPOST_RETURN_IF_ERROR(add(k, value, -1));
          }
        }
        for (const auto& item : s.items) {
          auto it = data->find(item.key);
          if (it == data->end()) {
            if (s.optional) continue;
            return core::notFound("key " + validation::printable(item.key) + " not in " + what);
          }
          OUTPOST_RETURN_IF_ERROR(add(item.path, it->second, item.mode));
        }
        break;
      }
      case Kind::kDownwardApi:
        for (const auto& item : s.items) {
          std::string where = "downwardAPI " + validation::printable(item.path);
          core::Result<std::string> value = item.resource.empty() ? downwardField(pod, item.key)
                                                                  : resourceValue(pod, item, where);
          if (!value) return value.status();
          OUTPOST_RETURN_IF_ERROR(add(item.path, *value, item.mode));
        }
        break;
      case Kind::kServiceAccountToken: {
        if (!tokenFor)
          return core::unavailable("this node has no source of service-account tokens");
        OUTPOST_ASSIGN_OR_RETURN(std::string token, tokenFor(pod, v.name, s));
        OUTPOST_RETURN_IF_ERROR(add(s.path, std::move(token), -1));
        break;
      }
    }
  }
  return files;
}

}  // namespace outpost::deploy
