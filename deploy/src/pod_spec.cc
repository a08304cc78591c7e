// Parsing the Kubernetes Pod JSON into PodSpec; every field we do not act on is recorded.

#include "pod_spec.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/validation/validation.h"
#include "projected.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;

// Fields that decide where a pod runs or what the cloud does with it: they have no effect on the
// node, so they are accepted without a report.
const std::set<std::string> kSpecNoEffect = {"nodeName",
                                             "nodeSelector",
                                             "affinity",
                                             "tolerations",
                                             "schedulerName",
                                             "priority",
                                             "priorityClassName",
                                             "preemptionPolicy",
                                             "serviceAccountName",
                                             "serviceAccount",
                                             "automountServiceAccountToken",
                                             "enableServiceLinks",
                                             "dnsPolicy",
                                             "topologySpreadConstraints"};
const std::set<std::string> kContainerNoEffect = {"ports", "terminationMessagePath",
                                                  "terminationMessagePolicy"};

class Parser {
 public:
  explicit Parser(PodSpec& pod) : pod_(pod) {}

  void unsupported(const std::string& path) { pod_.unsupported.push_back(path); }

  // Records every key of `obj` not in `known` (nor in `noEffect`).
  void checkKeys(const json& obj, const std::string& path, const std::set<std::string>& known,
                 const std::set<std::string>& noEffect = {}) {
    if (!obj.is_object()) return;
    for (const auto& [k, v] : obj.items()) {
      if (!known.count(k) && !noEffect.count(k)) unsupported(path + "." + k);
    }
  }

  static std::string str(const json& obj, const char* key) {
    auto it = obj.find(key);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
  }
  static std::vector<std::string> strings(const json& obj, const char* key) {
    std::vector<std::string> out;
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_array()) return out;
    for (const auto& v : *it) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
    return out;
  }
  static Labels labels(const json& obj, const char* key) {
    Labels out;
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_object()) return out;
    for (const auto& [k, v] : it->items()) {
      if (v.is_string()) out[k] = v.get<std::string>();
    }
    return out;
  }

  // The integer at `key` of `obj` into `out` when present: from `lo` to `hi`, else refused (a float
  // or a huge number is never narrowed into an int).
  static core::Status intIn(const json& obj, const char* key, int64_t lo, int64_t hi,
                            const std::string& path, int& out) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return core::okStatus();
    bool ok = it->is_number_integer() &&
              !(it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi));
    if (ok) ok = it->get<int64_t>() >= lo && it->get<int64_t>() <= hi;
    if (!ok) {
      return core::invalidArgument(path + "." + key + ": must be an integer from " +
                                   std::to_string(lo) + " to " + std::to_string(hi) + ", got " +
                                   validation::printable(it->dump()));
    }
    out = static_cast<int>(it->get<int64_t>());
    return core::okStatus();
  }

  // A user or group id as Kubernetes allows it: an integer from 0 to 2147483647. A value outside
  // (runAsUser: -1) is refused, not passed on for the runtime to refuse at every retry.
  static core::Status linuxId(const json& v, const std::string& path, std::optional<int64_t>& out) {
    constexpr int64_t kMax = 2147483647;
    if (v.is_null()) return core::okStatus();
    bool inRange = v.is_number_unsigned()
                       ? v.get<uint64_t>() <= static_cast<uint64_t>(kMax)
                       : v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= kMax;
    if (!inRange) {
      return core::invalidArgument(path + ": must be an integer from 0 to 2147483647, got " +
                                   validation::printable(v.dump()));
    }
    out = v.get<int64_t>();
    return core::okStatus();
  }

  core::Status security(const json& sc, const std::string& path, SecurityContext& out, bool pod) {
    if (sc.is_null()) return core::okStatus();
    if (!sc.is_object()) return core::invalidArgument(path + ": must be an object");
    static const std::set<std::string> kContainerKeys = {"runAsUser",
                                                         "runAsGroup",
                                                         "privileged",
                                                         "readOnlyRootFilesystem",
                                                         "allowPrivilegeEscalation",
                                                         "capabilities",
                                                         "runAsNonRoot"};
    static const std::set<std::string> kPodKeys = {"runAsUser", "runAsGroup", "supplementalGroups",
                                                   "runAsNonRoot"};
    checkKeys(sc, path, pod ? kPodKeys : kContainerKeys);
    if (sc.contains("runAsUser"))
      OUTPOST_RETURN_IF_ERROR(linuxId(sc["runAsUser"], path + ".runAsUser", out.runAsUser));
    if (sc.contains("runAsGroup"))
      OUTPOST_RETURN_IF_ERROR(linuxId(sc["runAsGroup"], path + ".runAsGroup", out.runAsGroup));
    if (pod && sc.contains("supplementalGroups") && sc["supplementalGroups"].is_array()) {
      int i = 0;
      for (const auto& g : sc["supplementalGroups"]) {
        std::optional<int64_t> gid;
        OUTPOST_RETURN_IF_ERROR(
            linuxId(g, path + ".supplementalGroups[" + std::to_string(i++) + "]", gid));
        if (gid) out.supplementalGroups.push_back(*gid);
      }
    }
    out.privileged = sc.value("privileged", false);
    out.readOnlyRootfs = sc.value("readOnlyRootFilesystem", false);
    if (sc.contains("allowPrivilegeEscalation"))
      out.noNewPrivs = !sc.value("allowPrivilegeEscalation", true);
    if (sc.contains("capabilities") && sc["capabilities"].is_object()) {
      const auto& caps = sc["capabilities"];
      checkKeys(caps, path + ".capabilities", {"add", "drop"});
      for (const auto& c : strings(caps, "add"))
        out.capAdd.push_back(c.rfind("CAP_", 0) ? "CAP_" + c : c);
      for (const auto& c : strings(caps, "drop"))
        out.capDrop.push_back(c == "ALL" || !c.rfind("CAP_", 0) ? c : "CAP_" + c);
    }
    return core::okStatus();
  }

  core::Status container(const json& c, const std::string& path, ContainerSpec& out, bool init) {
    if (!c.is_object()) return core::invalidArgument(path + ": not an object");
    static const std::set<std::string> kKeys = {"name",
                                                "image",
                                                "imagePullPolicy",
                                                "command",
                                                "args",
                                                "workingDir",
                                                "env",
                                                "envFrom",
                                                "volumeMounts",
                                                "resources",
                                                "securityContext",
                                                "livenessProbe",
                                                "stdin",
                                                "stdinOnce",
                                                "tty"};
    checkKeys(c, path, kKeys, kContainerNoEffect);
    out.name = str(c, "name");
    out.image = str(c, "image");
    if (out.name.empty()) return core::invalidArgument(path + ".name: required");
    // It names the container's log directory on the host.
    OUTPOST_RETURN_IF_ERROR(validation::dnsLabel(path + ".name", out.name));
    if (out.image.empty()) return core::invalidArgument(path + ".image: required");
    out.hash = shortHash(c.dump());
    OUTPOST_RETURN_IF_ERROR(pullPolicy(str(c, "imagePullPolicy"), path, out));
    out.command = strings(c, "command");
    out.args = strings(c, "args");
    out.workingDir = str(c, "workingDir");
    for (auto [key, flag] : {std::pair{"stdin", &out.stdin}, std::pair{"stdinOnce", &out.stdinOnce},
                             std::pair{"tty", &out.tty}}) {
      auto it = c.find(key);
      if (it == c.end() || it->is_null()) continue;
      if (!it->is_boolean())
        return core::invalidArgument(path + "." + key + ": must be true or false");
      *flag = it->get<bool>();
    }
    if (c.contains("env") && c["env"].is_array()) OUTPOST_RETURN_IF_ERROR(env(c["env"], path, out));
    if (c.contains("envFrom") && c["envFrom"].is_array()) envFrom(c["envFrom"], path, out);
    if (c.contains("volumeMounts") && c["volumeMounts"].is_array())
      OUTPOST_RETURN_IF_ERROR(mounts(c["volumeMounts"], path, out));
    if (c.contains("resources") && c["resources"].is_object())
      OUTPOST_RETURN_IF_ERROR(resources(c["resources"], path + ".resources", out));
    if (c.contains("securityContext")) {
      OUTPOST_RETURN_IF_ERROR(
          security(c["securityContext"], path + ".securityContext", out.security, false));
    }
    if (c.contains("livenessProbe"))
      OUTPOST_RETURN_IF_ERROR(liveness(c["livenessProbe"], path + ".livenessProbe", out, init));
    return core::okStatus();
  }

  // imagePullPolicy; empty: Kubernetes' default, Always for ":latest" or no tag, else
  // IfNotPresent.
  static core::Status pullPolicy(const std::string& policy, const std::string& path,
                                 ContainerSpec& out) {
    if (policy == "Always") {
      out.pullPolicy = PullPolicy::kAlways;
    } else if (policy == "Never") {
      out.pullPolicy = PullPolicy::kNever;
    } else if (policy == "IfNotPresent") {
      out.pullPolicy = PullPolicy::kIfNotPresent;
    } else if (policy.empty()) {
      auto slash = out.image.rfind('/');
      auto colon = out.image.rfind(':');
      bool tagged = colon != std::string::npos && (slash == std::string::npos || colon > slash);
      bool digest = out.image.find('@') != std::string::npos;
      bool latest = tagged && out.image.substr(colon + 1) == "latest";
      out.pullPolicy =
          digest || (tagged && !latest) ? PullPolicy::kIfNotPresent : PullPolicy::kAlways;
    } else {
      return core::invalidArgument(path + ".imagePullPolicy: unknown value " + policy);
    }
    return core::okStatus();
  }

  core::Status env(const json& list, const std::string& path, ContainerSpec& out) {
    int i = 0;
    for (const auto& e : list) {
      std::string ep = path + ".env[" + std::to_string(i++) + "]";
      EnvVarSpec v;
      v.name = str(e, "name");
      if (v.name.empty()) return core::invalidArgument(ep + ".name: required");
      checkKeys(e, ep, {"name", "value", "valueFrom"});
      if (!e.contains("valueFrom")) {
        v.value = str(e, "value");
      } else if (!valueFrom(e["valueFrom"], ep + ".valueFrom", v)) {
        continue;
      }
      out.env.push_back(std::move(v));
    }
    return core::okStatus();
  }

  // An env var's valueFrom into `v`; false when it names no source we know.
  bool valueFrom(const json& vf, const std::string& path, EnvVarSpec& v) {
    checkKeys(vf, path, {"configMapKeyRef", "secretKeyRef", "fieldRef"});
    if (vf.contains("configMapKeyRef") || vf.contains("secretKeyRef")) {
      bool secret = vf.contains("secretKeyRef");
      const auto& ref = vf[secret ? "secretKeyRef" : "configMapKeyRef"];
      v.source = secret ? EnvVarSpec::Source::kSecret : EnvVarSpec::Source::kConfigMap;
      v.refName = str(ref, "name");
      v.refKey = str(ref, "key");
      v.optional = ref.value("optional", false);
      return true;
    }
    if (!vf.contains("fieldRef")) return false;
    v.source = EnvVarSpec::Source::kField;
    v.value = str(vf["fieldRef"], "fieldPath");
    static const std::set<std::string> kFields = {"metadata.name", "metadata.namespace",
                                                  "metadata.uid",  "spec.nodeName",
                                                  "status.hostIP", "status.podIP"};
    if (!kFields.count(v.value)) unsupported(path + ".fieldRef." + v.value);
    return true;
  }

  void envFrom(const json& list, const std::string& path, ContainerSpec& out) {
    int i = 0;
    for (const auto& e : list) {
      std::string ep = path + ".envFrom[" + std::to_string(i++) + "]";
      checkKeys(e, ep, {"configMapRef", "secretRef", "prefix"});
      EnvFromSpec f;
      f.prefix = str(e, "prefix");
      f.secret = e.contains("secretRef");
      const auto& ref = e.contains("secretRef") ? e["secretRef"] : e.value("configMapRef", json());
      f.name = str(ref, "name");
      f.optional = ref.is_object() && ref.value("optional", false);
      if (!f.name.empty()) out.envFrom.push_back(std::move(f));
    }
  }

  core::Status mounts(const json& list, const std::string& path, ContainerSpec& out) {
    int i = 0;
    for (const auto& m : list) {
      std::string mp = path + ".volumeMounts[" + std::to_string(i++) + "]";
      checkKeys(m, mp, {"name", "mountPath", "subPath", "readOnly"});
      VolumeMountSpec vm{str(m, "name"), str(m, "mountPath"), str(m, "subPath"),
                         m.value("readOnly", false)};
      if (vm.name.empty() || vm.mountPath.empty())
        return core::invalidArgument(mp + ": name and mountPath are required");
      if (!vm.subPath.empty())
        OUTPOST_RETURN_IF_ERROR(validation::relativePath(mp + ".subPath", vm.subPath));
      out.mounts.push_back(std::move(vm));
    }
    return core::okStatus();
  }

  core::Status resources(const json& r, const std::string& path, ContainerSpec& out) {
    checkKeys(r, path, {"limits", "requests"});
    for (const char* kind : {"limits", "requests"}) {
      if (!r.contains(kind) || !r[kind].is_object()) continue;
      std::string rp = path + "." + kind;
      checkKeys(r[kind], rp, {"cpu", "memory"}, {"ephemeral-storage"});
      auto quantity = [&](const char* name) {
        const auto& q = r[kind][name];
        return q.is_string() ? q.get<std::string>() : q.is_number() ? q.dump() : std::string();
      };
      bool limits = std::string(kind) == "limits";
      if (r[kind].contains("cpu")) {
        auto milli = parseCpuMilli(quantity("cpu"));
        if (!milli) return core::invalidArgument(rp + ".cpu: not a quantity");
        (limits ? out.cpuLimitMilli : out.cpuRequestMilli) = *milli;
      }
      if (limits && r[kind].contains("memory")) {
        auto bytes = parseBytes(quantity("memory"));
        if (!bytes) return core::invalidArgument(rp + ".memory: not a quantity");
        out.memoryLimitBytes = *bytes;
      }
    }
    return core::okStatus();
  }

  core::Status liveness(const json& p, const std::string& path, ContainerSpec& out, bool init) {
    if (init) unsupported(path);
    checkKeys(p, path,
              {"exec", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold",
               "successThreshold"});
    if (!p.contains("exec")) return core::okStatus();
    ProbeSpec probe;
    probe.command = strings(p["exec"], "command");
    constexpr int64_t kMax = 2147483647;
    OUTPOST_RETURN_IF_ERROR(
        intIn(p, "initialDelaySeconds", 0, kMax, path, probe.initialDelaySeconds));
    OUTPOST_RETURN_IF_ERROR(intIn(p, "periodSeconds", 0, kMax, path, probe.periodSeconds));
    OUTPOST_RETURN_IF_ERROR(intIn(p, "timeoutSeconds", 0, kMax, path, probe.timeoutSeconds));
    OUTPOST_RETURN_IF_ERROR(intIn(p, "failureThreshold", 0, kMax, path, probe.failureThreshold));
    probe.periodSeconds = std::max(1, probe.periodSeconds);
    probe.timeoutSeconds = std::max(1, probe.timeoutSeconds);
    probe.failureThreshold = std::max(1, probe.failureThreshold);
    if (!probe.command.empty() && !init) out.liveness = std::move(probe);
    return core::okStatus();
  }

  core::Status volume(const json& v, const std::string& path, VolumeSpec& out) {
    out.name = str(v, "name");
    if (out.name.empty()) return core::invalidArgument(path + ".name: required");
    // It names the volume's directory on the host.
    OUTPOST_RETURN_IF_ERROR(validation::dnsLabel(path + ".name", out.name));
    static const std::set<std::string> kKeys = {"name",   "hostPath",  "emptyDir",   "configMap",
                                                "secret", "projected", "downwardAPI"};
    checkKeys(v, path, kKeys);
    if (v.contains("hostPath")) {
      out.kind = VolumeSpec::Kind::kHostPath;
      out.path = str(v["hostPath"], "path");
      out.hostPathType = str(v["hostPath"], "type");
      OUTPOST_RETURN_IF_ERROR(validation::absolutePath(path + ".hostPath.path", out.path));
    } else if (v.contains("emptyDir")) {
      out.kind = VolumeSpec::Kind::kEmptyDir;
      checkKeys(v["emptyDir"], path + ".emptyDir", {}, {"sizeLimit"});
    } else if (v.contains("configMap") || v.contains("secret")) {
      bool secret = v.contains("secret");
      const auto& src = v[secret ? "secret" : "configMap"];
      std::string sp = path + (secret ? ".secret" : ".configMap");
      out.kind = secret ? VolumeSpec::Kind::kSecret : VolumeSpec::Kind::kConfigMap;
      checkKeys(src, sp, {secret ? "secretName" : "name", "items", "defaultMode", "optional"});
      out.refName = str(src, secret ? "secretName" : "name");
      // A file mode: no setuid, setgid or sticky bit on a projected file.
      OUTPOST_RETURN_IF_ERROR(intIn(src, "defaultMode", 0, 0777, sp, out.defaultMode));
      out.optional = src.value("optional", false);
      if (src.contains("items") && src["items"].is_array()) {
        int i = 0;
        for (const auto& item : src["items"]) {
          std::string ip = sp + ".items[" + std::to_string(i++) + "]";
          std::string k = str(item, "key"), p = str(item, "path");
          // The key is looked up, the path is a file made inside the volume.
          OUTPOST_RETURN_IF_ERROR(validation::configKey(ip + ".key", k));
          OUTPOST_RETURN_IF_ERROR(validation::relativePath(ip + ".path", p));
          out.items.emplace_back(k, p);
        }
      }
      if (out.refName.empty()) return core::invalidArgument(sp + ": name required");
    } else if (v.contains("projected")) {
      return parseProjected(v["projected"], path + ".projected", out, pod_.unsupported);
    } else if (v.contains("downwardAPI")) {
      return parseDownwardApiVolume(v["downwardAPI"], path + ".downwardAPI", out, pod_.unsupported);
    } else {
      // Unknown volume type (already reported by checkKeys); mounted as an empty dir.
      out.kind = VolumeSpec::Kind::kEmptyDir;
    }
    return core::okStatus();
  }

  // metadata: name, namespace, uid (made from the key when absent), labels, annotations.
  core::Status metadata(const json& md, const std::string& key,
                        const std::string& defaultNamespace) {
    pod_.name = str(md, "name");
    pod_.podNamespace = str(md, "namespace");
    if (pod_.podNamespace.empty()) pod_.podNamespace = defaultNamespace;
    if (pod_.name.empty()) return core::invalidArgument("metadata.name: required");
    pod_.uid = str(md, "uid");
    pod_.resourceVersion = str(md, "resourceVersion");
    if (pod_.uid.empty()) pod_.uid = "outpost-" + shortHash(key);
    // It names the pod's directory on the host (and its cgroup).
    OUTPOST_RETURN_IF_ERROR(validation::uid("metadata.uid", pod_.uid));
    pod_.labels = labels(md, "labels");
    pod_.annotations = labels(md, "annotations");
    return core::okStatus();
  }

  // metadata.deletionTimestamp and deletionGracePeriodSeconds (after podFields: the grace period
  // the API server set for the deletion wins over the spec's).
  void deletion(const json& md) {
    pod_.deleting = md.contains("deletionTimestamp") && !md["deletionTimestamp"].is_null();
    auto grace = md.find("deletionGracePeriodSeconds");
    if (pod_.deleting && grace != md.end() && grace->is_number_integer())
      pod_.gracePeriodSeconds = std::max<int64_t>(0, grace->get<int64_t>());
  }

  // The pod-wide fields of spec: restart policy, host network and name, runtime class, grace
  // period, security context.
  core::Status podFields(const json& spec) {
    static const std::set<std::string> kSpecKeys = {"containers",
                                                    "initContainers",
                                                    "volumes",
                                                    "restartPolicy",
                                                    "hostNetwork",
                                                    "runtimeClassName",
                                                    "terminationGracePeriodSeconds",
                                                    "securityContext",
                                                    "hostname"};
    checkKeys(spec, "spec", kSpecKeys, kSpecNoEffect);
    std::string rp = str(spec, "restartPolicy");
    if (rp == "Always" || rp.empty()) {
      pod_.restartPolicy = RestartPolicy::kAlways;
    } else if (rp == "OnFailure") {
      pod_.restartPolicy = RestartPolicy::kOnFailure;
    } else if (rp == "Never") {
      pod_.restartPolicy = RestartPolicy::kNever;
    } else {
      return core::invalidArgument("spec.restartPolicy: unknown value " + rp);
    }
    pod_.hostNetwork = spec.value("hostNetwork", false);
    pod_.hostname = str(spec, "hostname");
    // Whose token a serviceAccountToken projection asks for (the API server always sets it).
    std::string sa = str(spec, "serviceAccountName");
    if (sa.empty()) sa = str(spec, "serviceAccount");
    if (!sa.empty()) {
      OUTPOST_RETURN_IF_ERROR(validation::dnsSubdomain("spec.serviceAccountName", sa));
      pod_.serviceAccount = sa;
    }
    pod_.runtimeClassName = str(spec, "runtimeClassName");
    if (spec.contains("terminationGracePeriodSeconds") &&
        spec["terminationGracePeriodSeconds"].is_number_integer()) {
      pod_.gracePeriodSeconds =
          std::max<int64_t>(0, spec["terminationGracePeriodSeconds"].get<int64_t>());
    }
    if (spec.contains("securityContext")) {
      OUTPOST_RETURN_IF_ERROR(
          security(spec["securityContext"], "spec.securityContext", pod_.podSecurity, true));
    }
    return core::okStatus();
  }

  // spec.initContainers and spec.containers: at least one container, names unique across both.
  core::Status containers(const json& spec) {
    std::set<std::string> names;
    for (auto [field, list, init] : {std::tuple<const char*, std::vector<ContainerSpec>*, bool>{
                                         "initContainers", &pod_.initContainers, true},
                                     {"containers", &pod_.containers, false}}) {
      if (!spec.contains(field)) continue;
      if (!spec[field].is_array()) return core::invalidArgument(std::string("spec.") + field);
      int i = 0;
      for (const auto& c : spec[field]) {
        ContainerSpec cs;
        OUTPOST_RETURN_IF_ERROR(
            container(c, std::string("spec.") + field + "[" + std::to_string(i++) + "]", cs, init));
        if (!names.insert(cs.name).second)
          return core::invalidArgument("duplicate container name " + cs.name);
        list->push_back(std::move(cs));
      }
    }
    if (pod_.containers.empty()) return core::invalidArgument("spec.containers: at least one");
    return core::okStatus();
  }

  // spec.volumes, names unique; every container mounts only declared volumes.
  core::Status volumes(const json& spec) {
    std::set<std::string> volumeNames;
    if (spec.contains("volumes") && spec["volumes"].is_array()) {
      int i = 0;
      for (const auto& v : spec["volumes"]) {
        VolumeSpec vs;
        std::string vp = "spec.volumes[" + std::to_string(i++) + "]";
        OUTPOST_RETURN_IF_ERROR(volume(v, vp, vs));
        if (!volumeNames.insert(vs.name).second)
          return core::invalidArgument(vp + ".name: " + vs.name + " is used by another volume");
        pod_.volumes.push_back(std::move(vs));
      }
    }
    for (const auto* list : {&pod_.initContainers, &pod_.containers}) {
      for (const auto& c : *list) {
        for (const auto& m : c.mounts) {
          if (!volumeNames.count(m.name))
            return core::invalidArgument("container " + c.name + " mounts unknown volume " +
                                         m.name);
        }
      }
    }
    return core::okStatus();
  }

 private:
  PodSpec& pod_;
};

}  // namespace

std::string shortHash(const std::string& text) {
  // FNV-1a 64: stable across builds and processes (std::hash is not guaranteed to be).
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// A quantity as an integer, or nullopt when it is negative, not a number or past what an int64_t
// holds (a cast of such a double is undefined behaviour: "1e300" was the fuzzer's input).
std::optional<int64_t> wholeQuantity(double v) {
  if (!(v >= 0) || v >= 9.0e18) return std::nullopt;
  return static_cast<int64_t>(v);
}

std::string metadataVersion(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return "";
  auto md = j.find("metadata");
  if (md == j.end() || !md->is_object()) return "";
  auto v = md->find("resourceVersion");
  return v != md->end() && v->is_string() ? v->get<std::string>() : "";
}

std::optional<int64_t> parseCpuMilli(const std::string& q) {
  if (q.empty()) return std::nullopt;
  try {
    size_t used = 0;
    double v = std::stod(q, &used);
    std::string suffix = q.substr(used);
    if (suffix == "m") return wholeQuantity(std::ceil(v));
    if (suffix.empty()) return wholeQuantity(std::ceil(v * 1000));
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::optional<int64_t> parseBytes(const std::string& q) {
  if (q.empty()) return std::nullopt;
  try {
    size_t used = 0;
    double v = std::stod(q, &used);
    std::string s = q.substr(used);
    static const std::pair<const char*, double> kUnits[] = {
        {"", 1},           {"k", 1e3},           {"M", 1e6},
        {"G", 1e9},        {"T", 1e12},          {"Ki", 1024.0},
        {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}};
    for (const auto& [unit, mult] : kUnits) {
      if (s == unit) return wholeQuantity(v * mult);
    }
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

core::Result<PodSpec> parsePod(const std::string& key, const std::string& text,
                               const std::string& defaultNamespace) {
  OUTPOST_RETURN_IF_ERROR(validation::jsonWithin(text).withContext("pod JSON"));
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return core::invalidArgument(std::string("pod JSON: ") + e.what());
  }
  if (!doc.is_object()) return core::invalidArgument("pod JSON: not an object");
  PodSpec pod;
  pod.key = key;
  Parser p(pod);
  try {
    const json& md = doc.value("metadata", json::object());
    const json& spec = doc.value("spec", json::object());
    OUTPOST_RETURN_IF_ERROR(p.metadata(md, key, defaultNamespace));
    OUTPOST_RETURN_IF_ERROR(p.podFields(spec));
    p.deletion(md);
    OUTPOST_RETURN_IF_ERROR(p.containers(spec));
    OUTPOST_RETURN_IF_ERROR(p.volumes(spec));
    json sandboxKey = {pod.hostNetwork, pod.runtimeClassName, pod.hostname,
                       spec.value("securityContext", json::object())};
    pod.sandboxHash = shortHash(sandboxKey.dump());
  } catch (const std::exception& e) {
    // A field of the wrong type (json::type_error) or anything else: the pod is refused.
    return core::invalidArgument(std::string("pod JSON: ") + e.what());
  }
  return pod;
}

}  // namespace outpost::deploy
