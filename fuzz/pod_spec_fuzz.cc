// Pod spec parsing (deploy/src/pod_spec.{h,cc}) and what deploy derives from a parsed pod without
// touching the host (deploy/src/volumes.h: resolveEnv, missingRefs, loadData, base64Decode; the
// volumes and mounts themselves are volumes_fuzz's). The input format is fuzz/deploy_input.h's.
// Checked: parsePod never throws or crashes, and a pod it accepts keeps its promises: a name, at
// least one container, unique container names and images; every string that becomes a host path
// or a file name passes outpost::validation (uid, volume and container names as DNS labels,
// subPaths and items paths relative without "..", items keys as ConfigMap keys, hostPaths
// absolute without ".."); mounts of declared volumes only; parsing is deterministic.

#include <set>

#include "deploy_input.h"
#include "fuzz_util.h"
#include "outpost/validation/validation.h"
#include "pod_spec.h"
#include "volumes.h"

namespace {

namespace deploy = outpost::deploy;
using outpost::fuzz::check;

namespace validation = outpost::validation;

void checkPromises(const deploy::PodSpec& pod) {
  check(!pod.name.empty(), "parsePod accepted a pod without a name");
  check(!pod.containers.empty(), "parsePod accepted a pod without containers");
  check(validation::uid("uid", pod.uid).isOk(), "parsePod accepted a bad uid: " + pod.uid);
  std::set<std::string> names, volumes;
  for (const auto& v : pod.volumes) {
    check(validation::dnsLabel("volume", v.name).isOk(),
          "parsePod accepted a bad volume name: " + v.name);
    volumes.insert(v.name);
    if (v.kind == deploy::VolumeSpec::Kind::kHostPath)
      check(validation::absolutePath("hostPath", v.path).isOk(),
            "parsePod accepted a bad hostPath: " + v.path);
    for (const auto& [key, path] : v.items) {
      check(validation::configKey("key", key).isOk(), "parsePod accepted a bad items key: " + key);
      check(validation::relativePath("path", path).isOk(),
            "parsePod accepted an items path that leaves the volume: " + path);
    }
  }
  for (const auto* list : {&pod.initContainers, &pod.containers}) {
    for (const auto& c : *list) {
      check(validation::dnsLabel("container", c.name).isOk(),
            "parsePod accepted a bad container name: " + c.name);
      check(!c.image.empty(), "parsePod accepted a container without an image");
      check(names.insert(c.name).second, "parsePod accepted two containers named " + c.name);
      for (const auto& m : c.mounts) {
        check(volumes.count(m.name) == 1, "parsePod accepted a mount of an undeclared volume");
        check(m.subPath.empty() || validation::relativePath("subPath", m.subPath).isOk(),
              "parsePod accepted a subPath that leaves the volume: " + m.subPath);
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

  for (const auto* list : {&pod.initContainers, &pod.containers}) {
    for (const auto& c : *list) (void)deploy::resolveEnv(c, pod, in.desired, "node", "10.0.0.1");
  }
  (void)deploy::missingRefs(pod, in.desired);
  for (const auto& [key, text] : in.desired.objects) (void)deploy::base64Decode(text);
  return 0;
}
