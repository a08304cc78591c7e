#include "volumes.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "host_paths.h"
#include "outpost/validation/validation.h"
#include "projected.h"

namespace outpost::deploy {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string kindName(bool secret) { return secret ? "secret" : "configmap"; }

core::Status prepareHostPath(const VolumeSpec& v, const std::vector<std::string>& allow) {
  OUTPOST_RETURN_IF_ERROR(validation::absolutePath("hostPath " + v.name, v.path));
  OUTPOST_RETURN_IF_ERROR(hostPathAllowed(v.path, allow));
  std::error_code ec;
  if (v.hostPathType == "DirectoryOrCreate") fs::create_directories(v.path, ec);
  if (v.hostPathType == "FileOrCreate" && !fs::exists(v.path, ec)) {
    fs::create_directories(fs::path(v.path).parent_path(), ec);
    // O_NOFOLLOW: not made through a symlink at its own name.
    int fd = ::open(v.path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) ::close(fd);
  }
  if ((v.hostPathType == "Directory" && !fs::is_directory(v.path, ec)) ||
      (v.hostPathType == "File" && !fs::is_regular_file(v.path, ec))) {
    return core::notFound("hostPath " + v.path + " is not a " + v.hostPathType);
  }
  // Again now that it exists: a symlink that appeared on the way is caught before it is mounted.
  return hostPathAllowed(v.path, allow);
}

// A configmap or secret projected into its volume directory.
core::Status project(const PodSpec& pod, const VolumeSpec& v, const HostPaths& host,
                     DesiredPods& desired, std::string& path) {
  bool secret = v.kind == VolumeSpec::Kind::kSecret;
  std::string what = kindName(secret) + " " + pod.podNamespace + "/" + v.refName;
  OUTPOST_ASSIGN_OR_RETURN(auto data, loadData(desired, pod.podNamespace, secret, v.refName));
  if (!data && !v.optional) return core::notFound(what + " not found");
  // What lands where, checked before anything is written: a key that cannot be a file name
  // fails the volume, whatever an older agent let into the store.
  std::vector<std::pair<std::string, const std::string*>> files;  // relative path, content
  if (data) {
    if (v.items.empty()) {
      for (const auto& [k, value] : *data) {
        OUTPOST_RETURN_IF_ERROR(validation::configKey(what + " key", k));
        files.emplace_back(k, &value);
      }
    } else {
      for (const auto& [k, rel] : v.items) {
        OUTPOST_RETURN_IF_ERROR(validation::configKey(what + " key", k));
        OUTPOST_RETURN_IF_ERROR(validation::relativePath("items path of key " + k, rel));
        auto it = data->find(k);
        if (it == data->end()) {
          if (v.optional) continue;
          return core::notFound("key " + validation::printable(k) + " not in " + what);
        }
        files.emplace_back(rel, &it->second);
      }
    }
  }
  OUTPOST_ASSIGN_OR_RETURN(VolumeDir dir, host.openVolume(pod.uid, v.name, secret ? 0700 : 0755));
  int mode = v.defaultMode >= 0 ? v.defaultMode : (secret ? 0600 : 0644);
  for (const auto& [rel, value] : files)
    OUTPOST_RETURN_IF_ERROR(dir.write(rel, *value, static_cast<mode_t>(mode & 07777)));
  // Keys removed from the object disappear from the volume.
  OUTPOST_RETURN_IF_ERROR(dir.pruneUnwritten());
  path = dir.path();
  return core::okStatus();
}

// A projected or downwardAPI volume: every file checked and made before any is written.
core::Status projectAll(const PodSpec& pod, const VolumeSpec& v, const HostPaths& host,
                        DesiredPods& desired, const TokenFor& tokenFor, std::string& path) {
  OUTPOST_ASSIGN_OR_RETURN(auto files, projectedFiles(pod, v, desired, tokenFor));
  OUTPOST_ASSIGN_OR_RETURN(VolumeDir dir, host.openVolume(pod.uid, v.name, 0755));
  for (const auto& f : files)
    OUTPOST_RETURN_IF_ERROR(dir.write(f.path, f.content, static_cast<mode_t>(f.mode & 07777)));
  OUTPOST_RETURN_IF_ERROR(dir.pruneUnwritten());
  path = dir.path();
  return core::okStatus();
}

// The configmaps and secrets of a projected volume's sources: (secret, name, optional).
template <typename F>
void eachProjectedRef(const VolumeSpec& v, F f) {
  for (const auto& s : v.sources) {
    if (s.kind == ProjectionSource::Kind::kConfigMap) f(false, s.refName, s.optional);
    if (s.kind == ProjectionSource::Kind::kSecret) f(true, s.refName, s.optional);
  }
}

}  // namespace

std::string base64Decode(const std::string& in) {
  static const std::string kChars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (unsigned char c : in) {
    auto pos = kChars.find(static_cast<char>(c));
    if (pos == std::string::npos) continue;  // padding, whitespace
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

core::Result<std::optional<std::map<std::string, std::string>>> loadData(DesiredPods& desired,
                                                                         const std::string& ns,
                                                                         bool secret,
                                                                         const std::string& name) {
  using Data = std::map<std::string, std::string>;
  auto text = desired.getObject(ns + (secret ? "/secret/" : "/configmap/") + name);
  if (!text) return std::optional<Data>();
  Data out;
  if (auto within = validation::jsonWithin(*text); !within.isOk())
    return core::invalidArgument(kindName(secret) + " " + name + ": " + within.message());
  try {
    json doc = json::parse(*text);
    if (doc.contains("data") && doc["data"].is_object()) {
      for (const auto& [k, v] : doc["data"].items()) {
        if (!v.is_string()) continue;
        out[k] = secret ? base64Decode(v.get<std::string>()) : v.get<std::string>();
      }
    }
    const char* extra = secret ? "stringData" : "binaryData";
    if (doc.contains(extra) && doc[extra].is_object()) {
      for (const auto& [k, v] : doc[extra].items()) {
        if (!v.is_string()) continue;
        out[k] = secret ? v.get<std::string>() : base64Decode(v.get<std::string>());
      }
    }
  } catch (const json::exception& e) {
    return core::invalidArgument(std::string(secret ? "secret " : "configmap ") + name + ": " +
                                 e.what());
  }
  return std::optional<Data>(std::move(out));
}

core::Status hostPathAllowed(const std::string& path, const std::vector<std::string>& allow) {
  if (allow.empty()) return core::okStatus();
  std::string list;
  bool named = false;
  for (const auto& prefix : allow) {
    list += (list.empty() ? "" : ", ") + prefix;
    named = named || lexicallyWithin(prefix, path);
  }
  if (!named) {
    return core::failedPrecondition("hostPath " + path +
                                    " is not under a prefix this node allows "
                                    "(node.host_path_allow: " +
                                    list + ")");
  }
  // What it names, once the symlinks of its existing part are resolved, must be allowed too.
  std::error_code ec;
  fs::path real = fs::weakly_canonical(path, ec);
  if (ec) {
    return core::failedPrecondition("hostPath " + path + " cannot be resolved (" + ec.message() +
                                    "), so it cannot be checked against node.host_path_allow");
  }
  for (const auto& prefix : allow) {
    fs::path realPrefix = fs::weakly_canonical(prefix, ec);
    if (!ec && lexicallyWithin(realPrefix.string(), real.string())) return core::okStatus();
  }
  return core::failedPrecondition("hostPath " + path + " resolves through a symbolic link to " +
                                  real.string() + ", not under a prefix this node allows " +
                                  "(node.host_path_allow: " + list + ")");
}

core::Result<std::map<std::string, std::string>> prepareVolumes(
    const PodSpec& pod, const std::string& stateDir, DesiredPods& desired,
    const std::vector<std::string>& hostPathAllow, const TokenFor& tokenFor) {
  HostPaths host(stateDir);
  std::map<std::string, std::string> paths;
  try {
    for (const auto& v : pod.volumes) {
      std::string where = "volume " + validation::printable(v.name) + ": ";
      core::Status s = core::okStatus();
      switch (v.kind) {
        case VolumeSpec::Kind::kHostPath:
          s = prepareHostPath(v, hostPathAllow);
          if (s.isOk()) paths[v.name] = v.path;
          break;
        case VolumeSpec::Kind::kEmptyDir: {
          auto dir = host.openVolume(pod.uid, v.name, 0755, /*enforceMode=*/false);
          if (dir) paths[v.name] = dir->path();
          s = dir.status();
          break;
        }
        case VolumeSpec::Kind::kConfigMap:
        case VolumeSpec::Kind::kSecret:
          s = project(pod, v, host, desired, paths[v.name]);
          break;
        case VolumeSpec::Kind::kProjected:
        case VolumeSpec::Kind::kDownwardApi:
          s = projectAll(pod, v, host, desired, tokenFor, paths[v.name]);
          break;
      }
      if (!s.isOk()) return core::Status(s.code(), where + s.message());
    }
  } catch (const std::exception& e) {
    // Nothing here is meant to throw; if something does, it fails this pod's volumes only.
    return core::internalError(std::string("preparing volumes: ") + e.what());
  }
  return paths;
}

core::Result<std::vector<Mount>> containerMounts(
    const PodSpec& pod, const ContainerSpec& c,
    const std::map<std::string, std::string>& volumePaths) {
  std::vector<Mount> out;
  for (const auto& m : c.mounts) {
    auto it = volumePaths.find(m.name);
    if (it == volumePaths.end()) continue;
    auto kind = VolumeSpec::Kind::kEmptyDir;
    for (const auto& v : pod.volumes) {
      if (v.name == m.name) kind = v.kind;
    }
    bool projected = kind != VolumeSpec::Kind::kEmptyDir && kind != VolumeSpec::Kind::kHostPath;
    std::string host = it->second;
    if (!m.subPath.empty()) {
      OUTPOST_RETURN_IF_ERROR(validation::relativePath("subPath", m.subPath));
      auto inside = pathInside(host, m.subPath, !projected);
      if (!inside) {
        return core::Status(inside.status().code(),
                            "volume " + m.name + ": " + inside.status().message());
      }
      host = std::move(inside).value();
    }
    out.push_back(Mount{m.mountPath, host, m.readOnly || projected});
  }
  return out;
}

core::Result<std::vector<std::pair<std::string, std::string>>> resolveEnv(
    const ContainerSpec& c, const PodSpec& pod, DesiredPods& desired, const std::string& nodeName,
    const std::string& hostIp) {
  std::vector<std::pair<std::string, std::string>> out;
  std::map<std::string, size_t> index;
  auto set = [&](const std::string& k, const std::string& v) {
    auto it = index.find(k);
    if (it != index.end()) {
      out[it->second].second = v;
    } else {
      index[k] = out.size();
      out.emplace_back(k, v);
    }
  };
  for (const auto& f : c.envFrom) {
    OUTPOST_ASSIGN_OR_RETURN(auto data, loadData(desired, pod.podNamespace, f.secret, f.name));
    if (!data) {
      if (f.optional) continue;
      return core::notFound(std::string(f.secret ? "secret " : "configmap ") + f.name +
                            " not found");
    }
    for (const auto& [k, v] : *data) set(f.prefix + k, v);
  }
  for (const auto& e : c.env) {
    switch (e.source) {
      case EnvVarSpec::Source::kValue:
        set(e.name, e.value);
        break;
      case EnvVarSpec::Source::kField:
        if (e.value == "metadata.name") set(e.name, pod.name);
        if (e.value == "metadata.namespace") set(e.name, pod.podNamespace);
        if (e.value == "metadata.uid") set(e.name, pod.uid);
        if (e.value == "spec.nodeName") set(e.name, nodeName);
        if (e.value == "status.hostIP" || e.value == "status.podIP") set(e.name, hostIp);
        break;
      case EnvVarSpec::Source::kConfigMap:
      case EnvVarSpec::Source::kSecret: {
        bool secret = e.source == EnvVarSpec::Source::kSecret;
        OUTPOST_ASSIGN_OR_RETURN(auto data, loadData(desired, pod.podNamespace, secret, e.refName));
        auto it = data ? data->find(e.refKey) : decltype(data->find(e.refKey))();
        if (!data || it == data->end()) {
          if (e.optional) break;
          return core::notFound(std::string(secret ? "secret " : "configmap ") + e.refName +
                                " key " + e.refKey + " not found");
        }
        set(e.name, it->second);
        break;
      }
    }
  }
  return out;
}

std::vector<std::string> missingRefs(const PodSpec& pod, DesiredPods& desired) {
  std::set<std::string> refs;
  auto add = [&](bool secret, const std::string& name) {
    refs.insert(pod.podNamespace + (secret ? "/secret/" : "/configmap/") + name);
  };
  for (const auto& v : pod.volumes) {
    eachProjectedRef(v, [&](bool secret, const std::string& name, bool optional) {
      if (!optional) add(secret, name);
    });
    if (v.optional) continue;
    if (v.kind == VolumeSpec::Kind::kConfigMap) add(false, v.refName);
    if (v.kind == VolumeSpec::Kind::kSecret) add(true, v.refName);
  }
  for (const auto* list : {&pod.initContainers, &pod.containers}) {
    for (const auto& c : *list) {
      for (const auto& f : c.envFrom)
        if (!f.optional) add(f.secret, f.name);
      for (const auto& e : c.env) {
        if (e.optional) continue;
        if (e.source == EnvVarSpec::Source::kConfigMap) add(false, e.refName);
        if (e.source == EnvVarSpec::Source::kSecret) add(true, e.refName);
      }
    }
  }
  std::vector<std::string> out;
  for (const auto& key : refs)
    if (!desired.getObject(key)) out.push_back(key);
  return out;
}

std::set<std::string> refsOf(const PodSpec& pod) {
  std::set<std::string> refs;
  auto ref = [&](bool secret, const std::string& name) {
    refs.insert(pod.podNamespace + (secret ? "/secret/" : "/configmap/") + name);
  };
  for (const auto& v : pod.volumes) {
    eachProjectedRef(v, [&](bool secret, const std::string& name, bool) { ref(secret, name); });
    if (v.kind == VolumeSpec::Kind::kConfigMap) ref(false, v.refName);
    if (v.kind == VolumeSpec::Kind::kSecret) ref(true, v.refName);
  }
  for (const auto* list : {&pod.initContainers, &pod.containers}) {
    for (const auto& c : *list) {
      for (const auto& e : c.env) {
        if (e.source == EnvVarSpec::Source::kConfigMap) ref(false, e.refName);
        if (e.source == EnvVarSpec::Source::kSecret) ref(true, e.refName);
      }
      for (const auto& f : c.envFrom) ref(f.secret, f.name);
    }
  }
  return refs;
}

}  // namespace outpost::deploy
