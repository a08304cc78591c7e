// Garbage collection alone (GarbageCollector, findOrphans) on the fake runtime: what it removes
// and what it keeps.

#include "garbage_collector.h"

#include <doctest/doctest.h>

#include <filesystem>

#include "container_config.h"
#include "labels.h"
#include "support/fake_runtime.h"
#include "support/test_util.h"

namespace outpost::test {
namespace {

namespace fs = std::filesystem;

struct Collector {
  Collector() { runtime.addImage("img:1"); }

  // A sandbox of pod `name` (uid `uid`) with one running container, made as the reconciler does.
  void runPod(const std::string& name, const std::string& uid) {
    deploy::PodSpec pod;
    pod.key = "default/pod/" + name;
    pod.name = name;
    pod.podNamespace = "default";
    pod.uid = uid;
    pod.gracePeriodSeconds = 5;
    auto sc = deploy::sandboxConfig(pod, 0, "", "");
    auto sandbox = runtime.runPodSandbox(sc, "");
    REQUIRE(sandbox.isOk());
    deploy::ContainerSpec c;
    c.name = "app";
    c.image = "img:1";
    auto id = runtime.createContainer(*sandbox, deploy::containerConfig(pod, c, 0, {}, {}), sc);
    REQUIRE(id.isOk());
    REQUIRE(runtime.startContainer(*id).isOk());
    REQUIRE(paths.makeLogDir(uid, "app").isOk());
  }
  deploy::Observed observed() { return {*runtime.listPodSandbox({}), *runtime.listContainers({})}; }
  std::set<std::string> uidsRunning() {
    std::set<std::string> out;
    for (const auto& s : *runtime.listPodSandbox({})) out.insert(s.uid);
    for (const auto& c : *runtime.listContainers({})) out.insert(c.labels.at(deploy::kPodUid));
    return out;
  }
  bool podDir(const std::string& uid) { return fs::exists(state.path() / "pods" / uid); }
  // Collects the orphans of what runs, given the desired uids; the keys asked of the cloud.
  std::vector<std::string> collect(const std::set<std::string>& desiredUids, bool complete) {
    auto o = observed();
    std::vector<std::string> asked;
    gc.collectOrphans(o, findOrphans(o, desiredUids, [](const std::string&) { return false; }),
                      complete, [&](const std::string& key) { asked.push_back(key); });
    return asked;
  }

  FakeRuntime runtime;
  TempDir state;
  deploy::HostPaths paths{state.path().string()};
  deploy::ReconcilerStats stats;
  deploy::StatusCache statuses;
  deploy::GarbageCollector gc{runtime, paths, "", core::Logger(), stats, statuses};
};

bool none(const std::string&) { return false; }

TEST_CASE_FIXTURE(Collector, "orphans are the pods not desired, except those kept by key") {
  runPod("web", "uid-web");
  runPod("old", "uid-old");
  runPod("bad", "uid-bad");
  auto o = findOrphans(observed(), {"uid-web"},
                       [](const std::string& l) { return l == "default.pod.bad"; });
  CHECK(o.uids == std::set<std::string>{"uid-old"});
  CHECK(o.labelKeys == std::set<std::string>{"default.pod.old"});
  CHECK(findOrphans(observed(), {"uid-web", "uid-old", "uid-bad"}, none).uids.empty());
}

TEST_CASE_FIXTURE(Collector,
                  "orphans go with their directories when the desired set is complete; the "
                  "desired pod stays") {
  runPod("web", "uid-web");
  runPod("old", "uid-old");
  CHECK(collect({"uid-web"}, /*complete=*/true).empty());
  CHECK(uidsRunning() == std::set<std::string>{"uid-web"});
  CHECK_FALSE(podDir("uid-old"));
  CHECK(podDir("uid-web"));
  CHECK(stats.sandboxesRemoved == 1);
  CHECK(stats.containersRemoved == 1);
  CHECK(runtime.calls("StopContainer") == 1);
}

TEST_CASE_FIXTURE(Collector,
                  "while the desired set is incomplete orphans are kept, and the cloud is asked "
                  "about each") {
  runPod("web", "uid-web");
  runPod("old", "uid-old");
  CHECK(collect({}, /*complete=*/false) ==
        std::vector<std::string>{"default/pod/old", "default/pod/web"});
  CHECK(uidsRunning() == std::set<std::string>{"uid-old", "uid-web"});
  CHECK(podDir("uid-old"));
  CHECK(runtime.calls("StopContainer") == 0);
}

TEST_CASE_FIXTURE(Collector,
                  "removing a pod's uids leaves nothing of it, and not its files "
                  "when the uid is not one") {
  runPod("web", "uid-web");
  runPod("other", "uid-other");
  CHECK(gc.removeUids(observed(), {"uid-web", "../../etc"}));
  CHECK(uidsRunning() == std::set<std::string>{"uid-other"});
  CHECK_FALSE(podDir("uid-web"));
  CHECK(podDir("uid-other"));
}

TEST_CASE_FIXTURE(Collector, "a sandbox the runtime cannot remove is reported as still there") {
  runPod("web", "uid-web");
  auto o = observed();
  runtime.setDown(true);
  CHECK_FALSE(gc.removeUids(o, {"uid-web"}));
  CHECK(stats.sandboxesRemoved == 0);
  runtime.setDown(false);
  CHECK(uidsRunning() == std::set<std::string>{"uid-web"});
}

TEST_CASE_FIXTURE(Collector, "deferred sandboxes are removed at the end of the pass, not before") {
  runPod("web", "uid-web");
  auto o = observed();
  gc.deferSandbox(o.sandboxes[0], o.containers);
  CHECK(uidsRunning() == std::set<std::string>{"uid-web"});
  gc.removeDeferred();
  CHECK(uidsRunning().empty());
  gc.removeDeferred();  // once only
  CHECK(stats.sandboxesRemoved == 1);
}

TEST_CASE_FIXTURE(Collector, "a removed container's status is asked of the runtime again") {
  runPod("web", "uid-web");
  auto c = observed().containers[0];
  REQUIRE(statuses.get(runtime, c).has_value());
  REQUIRE(statuses.get(runtime, c).has_value());
  CHECK(runtime.calls("ContainerStatus") == 1);  // cached while its state stays
  CHECK(gc.removeContainer(c, std::chrono::seconds(1)));
  CHECK_FALSE(statuses.get(runtime, c).has_value());
  CHECK(runtime.calls("ContainerStatus") == 2);
}

}  // namespace
}  // namespace outpost::test
