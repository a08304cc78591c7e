#include "volumes.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace outpost::deploy {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

core::Status writeIfChanged(const fs::path& path, const std::string& data, int mode) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec)
    return core::internalError("creating " + path.parent_path().string() + ": " + ec.message());
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::string old((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (old == data) {
        ::chmod(path.c_str(), static_cast<mode_t>(mode));
        return core::okStatus();
      }
    }
  }
  // Atomic replace, so a container never reads half a file.
  fs::path tmp = path;
  tmp += ".outpost-tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return core::internalError("writing " + tmp.string());
    ::chmod(tmp.c_str(), static_cast<mode_t>(mode));
    out << data;
    if (!out.flush()) return core::internalError("writing " + tmp.string());
  }
  fs::rename(tmp, path, ec);
  if (ec) return core::internalError("renaming " + tmp.string() + ": " + ec.message());
  return core::okStatus();
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

std::string podDir(const std::string& stateDir, const std::string& uid) {
  return (fs::path(stateDir) / "pods" / uid).string();
}

core::Result<std::map<std::string, std::string>> prepareVolumes(const PodSpec& pod,
                                                                const std::string& stateDir,
                                                                DesiredPods& desired) {
  std::map<std::string, std::string> paths;
  fs::path base = fs::path(podDir(stateDir, pod.uid)) / "volumes";
  for (const auto& v : pod.volumes) {
    std::error_code ec;
    switch (v.kind) {
      case VolumeSpec::Kind::kHostPath: {
        if (v.hostPathType == "DirectoryOrCreate") fs::create_directories(v.path, ec);
        if (v.hostPathType == "FileOrCreate" && !fs::exists(v.path)) {
          fs::create_directories(fs::path(v.path).parent_path(), ec);
          std::ofstream touch(v.path, std::ios::app);
        }
        if ((v.hostPathType == "Directory" && !fs::is_directory(v.path)) ||
            (v.hostPathType == "File" && !fs::is_regular_file(v.path))) {
          return core::notFound("hostPath " + v.path + " is not a " + v.hostPathType);
        }
        paths[v.name] = v.path;
        break;
      }
      case VolumeSpec::Kind::kEmptyDir: {
        fs::path dir = base / v.name;
        fs::create_directories(dir, ec);
        if (ec) return core::internalError("emptyDir " + dir.string() + ": " + ec.message());
        paths[v.name] = dir.string();
        break;
      }
      case VolumeSpec::Kind::kConfigMap:
      case VolumeSpec::Kind::kSecret: {
        bool secret = v.kind == VolumeSpec::Kind::kSecret;
        OUTPOST_ASSIGN_OR_RETURN(auto data, loadData(desired, pod.podNamespace, secret, v.refName));
        if (!data && !v.optional) {
          return core::notFound(std::string(secret ? "secret " : "configmap ") + pod.podNamespace +
                                "/" + v.refName + " not found");
        }
        fs::path dir = base / v.name;
        fs::create_directories(dir, ec);
        if (ec) return core::internalError("volume " + dir.string() + ": " + ec.message());
        ::chmod(dir.c_str(), secret ? 0700 : 0755);
        int mode = v.defaultMode >= 0 ? v.defaultMode : (secret ? 0600 : 0644);
        std::set<std::string> wanted;
        if (data) {
          if (v.items.empty()) {
            for (const auto& [k, value] : *data) {
              OUTPOST_RETURN_IF_ERROR(writeIfChanged(dir / k, value, mode));
              wanted.insert(k);
            }
          } else {
            for (const auto& [k, rel] : v.items) {
              auto it = data->find(k);
              if (it == data->end()) {
                if (v.optional) continue;
                return core::notFound("key " + k + " not in " + v.refName);
              }
              OUTPOST_RETURN_IF_ERROR(writeIfChanged(dir / rel, it->second, mode));
              wanted.insert(fs::path(rel).begin()->string());
            }
          }
        }
        // Keys removed from the object disappear from the volume.
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
          if (!wanted.count(entry.path().filename().string())) fs::remove_all(entry.path(), ec);
        }
        paths[v.name] = dir.string();
        break;
      }
    }
  }
  return paths;
}

std::vector<Mount> containerMounts(const ContainerSpec& c,
                                   const std::map<std::string, std::string>& volumePaths) {
  std::vector<Mount> out;
  for (const auto& m : c.mounts) {
    auto it = volumePaths.find(m.name);
    if (it == volumePaths.end()) continue;
    std::string host = it->second;
    if (!m.subPath.empty()) host = (fs::path(host) / m.subPath).string();
    out.push_back(Mount{m.mountPath, host, m.readOnly});
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

void removePodDir(const std::string& stateDir, const std::string& uid) {
  std::error_code ec;
  fs::remove_all(podDir(stateDir, uid), ec);
}

}  // namespace outpost::deploy
