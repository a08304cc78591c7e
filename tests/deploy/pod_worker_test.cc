// The pod worker alone (syncPod): one pass over one pod on the fake runtime and a manual clock,
// without the reconciler's loop, timers or other pods.

#include "pod_worker.h"

#include <doctest/doctest.h>

#include "deploy_fixture.h"
#include "labels.h"
#include "outpost/core/clock.h"
#include "support/fake_runtime.h"
#include "support/test_util.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

struct Worker {
  Worker() {
    runtime.addImage("img:1");
    config.stateDir = state.path().string();
    ctx.wakeAt = [this](deploy::PodState&, core::MonoTime at) { wakes.push_back(at); };
    ctx.askForRefs = [](const deploy::PodSpec&) {};
  }
  void want(const nlohmann::json& json) {
    auto parsed = deploy::parsePod("default/pod/" + json["metadata"]["name"].get<std::string>(),
                                   json.dump(), "default");
    REQUIRE(parsed.isOk());
    pod.key = parsed->key;
    pod.spec = *parsed;
  }
  // One pass, as the reconciler makes it; the pod's status.
  nlohmann::json pass() {
    deploy::Observed all{*runtime.listPodSandbox({}), *runtime.listContainers({})};
    auto status = nlohmann::json::parse(deploy::syncPod(ctx, pod, all));
    gc.removeDeferred();
    return status;
  }
  std::vector<std::string> created() {
    std::vector<std::string> names;
    for (const auto& c : runtime.configs()) names.push_back(c.name);
    return names;
  }
  std::string running(const std::string& name) {
    for (const auto& c : *runtime.listContainers({"", "", deploy::ContainerState::kRunning, {}}))
      if (c.labels.at(deploy::kContainerName) == name) return c.id;
    return "";
  }

  FakeRuntime runtime;
  core::ManualClock clock;
  MemoryDesired desired;
  TempDir state;
  deploy::ReconcilerConfig config;
  deploy::HostPaths paths{state.path().string()};
  deploy::ReconcilerStats stats;
  deploy::StatusCache statuses;
  deploy::PodEvents events{clock, nullptr};
  deploy::ImagePuller images{runtime, events, core::Logger(), {10s, 300s}, stats.imagesPulled};
  deploy::GarbageCollector gc{runtime, paths, "", core::Logger(), stats, statuses};
  deploy::WorkerContext ctx{.runtime = runtime,
                            .desired = desired,
                            .config = config,
                            .clock = clock,
                            .log = core::Logger(),
                            .paths = paths,
                            .events = events,
                            .images = images,
                            .gc = gc,
                            .statuses = statuses,
                            .stats = stats};
  deploy::PodState pod;
  std::vector<core::MonoTime> wakes;
};

TEST_CASE_FIXTURE(Worker, "one pass makes the sandbox and starts every container") {
  want(busyboxPod("web", "uid-web", "img:1", {{"a", "run"}, {"b", "run"}}));
  auto status = pass();
  CHECK(status["phase"] == "Running");
  CHECK(stats.sandboxesCreated == 1);
  CHECK(created() == std::vector<std::string>{"a", "b"});
  CHECK(!running("a").empty());
  CHECK(!running("b").empty());
  // The next pass finds it all running: nothing new is made.
  CHECK(pass() == status);
  CHECK(runtime.calls("CreateContainer") == 2);
  CHECK(runtime.calls("RunPodSandbox") == 1);
}

TEST_CASE_FIXTURE(Worker, "init containers run one at a time, in order, before the containers") {
  auto json = busyboxPod("web", "uid-web", "img:1", {{"main", "run"}});
  json["spec"]["initContainers"] =
      busyboxPod("x", "y", "img:1", {{"one", "true"}, {"two", "true"}})["spec"]["containers"];
  want(json);
  CHECK(pass()["phase"] == "Pending");
  CHECK(created() == std::vector<std::string>{"one"});
  pass();  // still running: nothing else starts
  CHECK(created() == std::vector<std::string>{"one"});
  runtime.exitContainer(running("one"), 0);
  pass();
  CHECK(created() == std::vector<std::string>{"one", "two"});
  runtime.exitContainer(running("two"), 0);
  CHECK(pass()["phase"] == "Running");
  CHECK(created() == std::vector<std::string>{"one", "two", "main"});
}

TEST_CASE_FIXTURE(Worker, "a crashed container restarts at once, then waits and asks to be woken") {
  want(busyboxPod("web", "uid-web", "img:1", {{"app", "exit 1"}}));
  pass();
  runtime.exitContainer(running("app"), 1);
  pass();
  CHECK(!running("app").empty());  // the first restart is immediate
  CHECK(wakes.empty());
  runtime.exitContainer(running("app"), 1);
  auto status = pass();
  CHECK(running("app").empty());
  CHECK(status["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff");
  REQUIRE(wakes.size() == 1);
  CHECK(wakes[0] == clock.now() + 10s);
  clock.advance(10s);
  pass();
  CHECK(!running("app").empty());
  CHECK(pod.attempts["app"] == 2);
}

TEST_CASE_FIXTURE(Worker,
                  "a spec change replaces the running container with the next attempt; the "
                  "replaced one is kept as lastState.terminated") {
  want(busyboxPod("web", "uid-web", "img:1", {{"app", "run"}}));
  pass();
  std::string before = running("app");
  want(busyboxPod("web", "uid-web", "img:1", {{"app", "run --changed"}}));
  auto status = pass();
  std::string after = running("app");
  CHECK(!after.empty());
  CHECK(after != before);
  CHECK(runtime.config(before).has_value());  // stopped, kept
  CHECK(runtime.config(after)->attempt == 1);
  INFO("status: ", status.dump());
  const auto& last = status["containerStatuses"][0]["lastState"]["terminated"];
  CHECK(last["containerID"] == "containerd://" + before);
  CHECK(last["exitCode"].is_number_integer());
  CHECK(!last.value("reason", "").empty());
  CHECK(!last.value("startedAt", "").empty());
  CHECK(!last.value("finishedAt", "").empty());
  CHECK(status["containerStatuses"][0]["restartCount"] == 1);
  auto info = events.info("default/pod/web");
  REQUIRE(info.has_value());
  bool killing = false;
  for (const auto& e : info->events) killing = killing || e.reason == "Killing";
  CHECK(killing);
}

TEST_CASE_FIXTURE(Worker, "a sandbox the runtime refuses is retried only after the back-off") {
  auto json = busyboxPod("web", "uid-web", "img:1", {{"app", "run"}});
  json["spec"]["runtimeClassName"] = "gvisor";
  want(json);
  auto status = pass();
  CHECK(status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating");
  REQUIRE(wakes.size() == 1);
  CHECK(wakes[0] == clock.now() + config.backoffInitial);
  clock.advance(config.backoffInitial - 1s);
  pass();
  CHECK(runtime.calls("RunPodSandbox") == 1);
  clock.advance(1s);
  pass();
  CHECK(runtime.calls("RunPodSandbox") == 2);
}

}  // namespace
}  // namespace outpost::test
