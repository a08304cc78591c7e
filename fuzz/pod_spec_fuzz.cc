// Pod spec parsing (deploy/src/pod_spec.{h,cc}) and what deploy derives from a parsed pod without
// touching the host (deploy/src/volumes.h: containerMounts, resolveEnv, missingRefs, loadData). The
// input format is fuzz/deploy_input.h's. Checked: parsePod never throws or crashes, and a pod it
// accepts keeps its promises: a name, at least one container, unique non-empty container names and
// images, mounts of declared volumes only, subPaths and items paths relative without "..",
// absolute hostPaths; every container mount's host path lies inside its volume's path; parsing is
// deterministic (same hashes twice).

#include <filesystem>
#include <set>

#include "deploy_input.h"
#include "fuzz_util.h"
#include "pod_spec.h"
#include "volumes.h"

namespace {

namespace deploy = outpost::deploy;
namespace fs = std::filesystem;
using outpost::fuzz::check;

bool hasDotDotElement(const std::string& p) {
  for (const auto& part : fs::path(p))
    if (part == "..") return true;
  return false;
}

// `inner` is `dir` or below it, by its lexically normal form.
bool inside(const std::string& inner, const std::string& dir) {
  std::string n = fs::path(inner).lexically_normal().string();
  std::string d = fs::path(dir).lexically_normal().string();
  while (n.size() > 1 && n.back() == '/') n.pop_back();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return n == d || n.rfind(d + "/", 0) == 0;
}

void checkPromises(const deploy::PodSpec& pod) {
  check(!pod.name.empty(), "parsePod accepted a pod without a name");
  check(!pod.containers.empty(), "parsePod accepted a pod without containers");
  std::set<std::string> names, volumes;
  for (const auto& v : pod.volumes) {
    check(!v.name.empty(), "parsePod accepted a volume without a name");
    volumes.insert(v.name);
    if (v.kind == deploy::VolumeSpec::Kind::kHostPath)
      check(!v.path.empty() && v.path[0] == '/', "parsePod accepted a relative hostPath");
    for (const auto& [key, path] : v.items) {
      check(!key.empty() && !path.empty(), "parsePod accepted an empty items key or path");
      check(path[0] != '/' && !hasDotDotElement(path),
            "parsePod accepted an items path that leaves the volume: " + path);
    }
  }
  for (const auto* list : {&pod.initContainers, &pod.containers}) {
    for (const auto& c : *list) {
      check(!c.name.empty() && !c.image.empty(),
            "parsePod accepted a container without name/image");
      check(names.insert(c.name).second, "parsePod accepted two containers named " + c.name);
      for (const auto& m : c.mounts) {
        check(volumes.count(m.name) == 1, "parsePod accepted a mount of an undeclared volume");
        check(!hasDotDotElement(m.subPath), "parsePod accepted a subPath with '..'");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = outpost::fuzz::readDeployInput(outpost::fuzz::asText(data, size));
  auto parsed = deploy::parsePod("default/pod/fuzz", in.pod, "default");
  if (!parsed.isOk()) return 0;
  const deploy::PodSpec& pod = parsed.value();
  checkPromises(pod);

  auto again = deploy::parsePod("default/pod/fuzz", in.pod, "default");
  check(again.isOk() && again.value().sandboxHash == pod.sandboxHash,
        "parsing the same pod twice gave different results");

  // Host paths as prepareVolumes would return them, without creating anything.
  std::map<std::string, std::string> paths;
  for (const auto& v : pod.volumes) {
    paths[v.name] = v.kind == deploy::VolumeSpec::Kind::kHostPath
                        ? v.path
                        : deploy::podDir("/var/lib/outpost", pod.uid) + "/volumes/" + v.name;
  }
  for (const auto* list : {&pod.initContainers, &pod.containers}) {
    for (const auto& c : *list) {
      for (const auto& m : deploy::containerMounts(c, paths)) {
        // Which volume: the mount with this container path.
        for (const auto& spec : c.mounts) {
          if (spec.mountPath != m.containerPath) continue;
          check(inside(m.hostPath, paths[spec.name]),
                "a mount's subPath leads out of its volume: " + m.hostPath + " is not inside " +
                    paths[spec.name]);
        }
      }
      (void)deploy::resolveEnv(c, pod, in.desired, "node", "10.0.0.1");
    }
  }
  (void)deploy::missingRefs(pod, in.desired);
  for (const auto& [key, text] : in.desired.objects) (void)deploy::base64Decode(text);
  return 0;
}
