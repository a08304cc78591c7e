// Reconciler timing rules checked on the fake runtime with a manual clock (exact, fast).

#include <doctest/doctest.h>

#include <atomic>

#include "agent_env.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

// What every case here starts from: the fake runtime holding img:1, a manual clock, a desired set
// and status sink in memory, and a reconciler configuration with its own state directory.
struct FakeReconciler {
  FakeReconciler() {
    rt.addImage("img:1");
    cfg.stateDir = state.path().string();
  }
  FakeRuntime rt;
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
};

std::string runningId(FakeRuntime& rt) {
  auto list = rt.listContainers({"", "", deploy::ContainerState::kRunning, {}});
  return list->empty() ? "" : list->front().id;
}

TEST_CASE_FIXTURE(FakeReconciler,
                  "crash-loop back-off: immediate first restart, then 10 s doubling to the cap") {
  cfg.backoffMax = 40s;
  const std::string key = "default/pod/crash";
  desired.put(key, busyboxPod("crash", "u-crash", "img:1", {{"c", "exit 1"}}).dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  REQUIRE(sink.state(key, "c") == "running");
  // Each crash: the expected wait before the next start.
  for (auto wait : {0s, 10s, 20s, 40s, 40s}) {
    std::string id = runningId(rt);
    REQUIRE(!id.empty());
    int before = sink.restarts(key, "c");
    rt.exitContainer(id, 1);
    agent.pass();
    if (wait > 0s) {
      CHECK(sink.state(key, "c") == "waiting");
      CHECK(sink.pod(key)["containerStatuses"][0]["state"]["waiting"]["reason"] ==
            "CrashLoopBackOff");
      clock.advance(wait - 1s);
      agent.pass();
      CHECK(runningId(rt).empty());
      clock.advance(1s);
      agent.pass();
    }
    CHECK(!runningId(rt).empty());
    CHECK(sink.restarts(key, "c") == before + 1);
  }
}

TEST_CASE_FIXTURE(FakeReconciler, "a container that ran 10 minutes restarts without back-off") {
  cfg.backoffReset = 0s;  // any run counts as long: the fake's runs are short in real time
  const std::string key = "default/pod/long";
  desired.put(key, busyboxPod("long", "u-long", "img:1", {{"c", "run"}}).dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  for (int i = 0; i < 3; ++i) {
    rt.exitContainer(runningId(rt), 1);
    agent.pass();
    CHECK(!runningId(rt).empty());
  }
}

TEST_CASE_FIXTURE(
    FakeReconciler,
    "restartPolicy Never leaves a failed pod Failed, OnFailure leaves a succeeded one") {
  auto never = busyboxPod("never", "u-never", "img:1", {{"c", "exit 2"}});
  never["spec"]["restartPolicy"] = "Never";
  auto onFailure = busyboxPod("onf", "u-onf", "img:1", {{"c", "exit 0"}});
  onFailure["spec"]["restartPolicy"] = "OnFailure";
  desired.put("default/pod/never", never.dump());
  desired.put("default/pod/onf", onFailure.dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  auto list = rt.listContainers({"", "", deploy::ContainerState::kRunning, {}});
  REQUIRE(list->size() == 2);
  for (const auto& c : *list)
    rt.exitContainer(c.id, c.labels.at("outpost.io/pod-uid") == "u-never" ? 2 : 0);
  agent.pass();
  clock.advance(60s);
  agent.pass();
  CHECK(sink.phase("default/pod/never") == "Failed");
  CHECK(sink.phase("default/pod/onf") == "Succeeded");
  CHECK(rt.calls("CreateContainer") == 2);
}

TEST_CASE_FIXTURE(FakeReconciler, "status is reported only when it changes") {
  desired.put("default/pod/quiet", busyboxPod("quiet", "u-q", "img:1", {{"c", "run"}}).dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  int reports = sink.reports("default/pod/quiet");
  for (int i = 0; i < 5; ++i) agent.pass();
  CHECK(sink.reports("default/pod/quiet") == reports);
  CHECK(sink.node()["nodeInfo"]["containerRuntimeVersion"] == "fake://1.0");
}

TEST_CASE_FIXTURE(
    FakeReconciler,
    "a failed pull backs off like Kubernetes: ErrImagePull, then ImagePullBackOff for 10 s "
    "doubling to the cap; an image that appears is used at once") {
  cfg.pullBackoffMax = 40s;
  cfg.pollInterval = 1h;  // only the back-off's own wake-up and the test's passes
  cfg.resyncInterval = 1h;
  const std::string key = "default/pod/pull";
  auto pod = busyboxPod("pull", "u-pull", "img:absent", {{"c", "run"}});
  pod["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent";
  desired.put(key, pod.dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  CHECK(sink.waitingReason(key, "c") == "ErrImagePull");
  CHECK(rt.calls("PullImage") == 1);
  size_t pulls = 1;
  for (auto wait : {10s, 20s, 40s, 40s}) {
    agent.pass();
    CHECK(sink.waitingReason(key, "c") == "ImagePullBackOff");
    clock.advance(wait - 1s);
    agent.pass();
    CHECK(rt.calls("PullImage") == pulls);  // polling does not pull during the back-off
    clock.advance(1s);  // the back-off's end wakes the pod: it pulls again, and fails
    ++pulls;
    REQUIRE(waitFor([&] { return rt.calls("PullImage") == pulls; }, 10s));
    REQUIRE(waitFor([&] { return sink.waitingReason(key, "c") == "ErrImagePull"; }, 10s));
  }
  CHECK(sink.phase(key) == "Pending");
  CHECK(rt.calls("CreateContainer") == 0);
  // Imported while backing off: used on the next pass, no pull.
  rt.addImage("img:absent");
  agent.pass();
  CHECK(sink.state(key, "c") == "running");
  CHECK(rt.calls("PullImage") == pulls);
}

TEST_CASE_FIXTURE(
    FakeReconciler,
    "pull policy Never with an absent image waits with ErrImageNeverPull and never pulls") {
  const std::string key = "default/pod/never-pull";
  auto pod = busyboxPod("never-pull", "u-np", "img:absent", {{"c", "run"}});
  pod["spec"]["containers"][0]["imagePullPolicy"] = "Never";
  desired.put(key, pod.dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  for (int i = 0; i < 3; ++i) {
    clock.advance(30s);
    agent.pass();
    CHECK(sink.waitingReason(key, "c") == "ErrImageNeverPull");
  }
  CHECK(rt.calls("PullImage") == 0);
}

TEST_CASE_FIXTURE(
    FakeReconciler,
    "the heartbeat is scheduled before the cold boot pass is announced: time that moves on as soon "
    "as it is announced counts towards the first heartbeat") {
  cfg.nodeStatusInterval = 60s;
  cfg.pollInterval = 1h;
  cfg.resyncInterval = 1h;
  DeployAgent agent(rt, desired, sink, clock, cfg);
  std::atomic<bool> announced{false};
  // The announcement moves the clock itself: what a waiter on another thread may do before the
  // reconciler's loop runs its next statement.
  agent.reconciler().start([&] {
    clock.advance(59s);
    announced = true;
  });
  REQUIRE(waitFor([&] { return announced.load(); }));
  REQUIRE(sink.nodeReports() == 1);
  clock.advance(1s);
  CHECK(waitFor([&] { return sink.nodeReports() == 2; }, 10s));
}

TEST_CASE_FIXTURE(
    FakeReconciler,
    "node status is sent at the configured interval as a heartbeat, and at once on a change") {
  cfg.nodeStatusInterval = 60s;
  cfg.pollInterval = 1h;
  cfg.resyncInterval = 1h;
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  REQUIRE(sink.nodeReports() == 1);
  std::string first = sink.node()["conditions"][0]["lastHeartbeatTime"];
  clock.advance(59s);
  agent.pass();
  CHECK(sink.nodeReports() == 1);
  clock.advance(1s);
  REQUIRE(waitFor([&] { return sink.nodeReports() == 2; }, 10s));
  CHECK(sink.node()["conditions"][0]["lastHeartbeatTime"] != first);
  CHECK(sink.node()["conditions"][0]["status"] == "True");
  // The runtime goes away: reported on the next pass, not at the next heartbeat.
  rt.setDown(true);
  agent.pass();
  CHECK(sink.nodeReports() == 3);
  CHECK(sink.node()["conditions"][0]["status"] == "False");
  clock.advance(60s);
  REQUIRE(waitFor([&] { return sink.nodeReports() == 4; }, 10s));
}

TEST_CASE_FIXTURE(FakeReconciler,
                  "runtimeReady says whether the runtime answered the last pass, from any thread") {
  cfg.pollInterval = 1h;
  cfg.resyncInterval = 1h;
  rt.setDown(true);
  DeployAgent agent(rt, desired, sink, clock, cfg);
  CHECK_FALSE(agent.reconciler().runtimeReady());  // no pass yet
  REQUIRE(agent.start());
  // The cold boot pass is done, but the runtime did not answer it: not ready (an upgraded agent
  // in this state is not healthy).
  CHECK_FALSE(agent.reconciler().runtimeReady());
  rt.setDown(false);
  agent.pass();
  CHECK(agent.reconciler().runtimeReady());
  rt.setDown(true);
  agent.pass();
  CHECK_FALSE(agent.reconciler().runtimeReady());
}

}  // namespace
}  // namespace outpost::test

namespace outpost::test {
namespace {

TEST_CASE_FIXTURE(FakeReconciler, "a pod's event ring keeps the newest 20 events, oldest first") {
  cfg.backoffMax = 10s;
  const std::string key = "default/pod/crash";
  desired.put(key, busyboxPod("crash", "u-crash", "img:1", {{"c", "exit 1"}}).dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  // Each crash adds Exited, BackOff (after the first), Created and Started.
  for (int i = 0; i < 8; ++i) {
    std::string id = runningId(rt);
    REQUIRE(!id.empty());
    rt.exitContainer(id, 2);
    agent.pass();
    clock.advance(10s);
    agent.pass();
  }
  auto info = agent.reconciler().podInfo(key);
  REQUIRE(info.has_value());
  REQUIRE(info->events.size() == deploy::PodRuntimeInfo::kMaxPodEvents);
  CHECK(info->events.front().reason != "SandboxCreated");  // the oldest went first
  CHECK(info->events.back().reason == "Started");
  CHECK(info->events[info->events.size() - 2].message == "Created container c (attempt 8)");
  for (size_t i = 1; i < info->events.size(); ++i)
    CHECK(info->events[i - 1].first <= info->events[i].first);
}

TEST_CASE_FIXTURE(
    FakeReconciler,
    "an invalid desired pod is one Warning event counted at each re-read, not a new row") {
  const std::string key = "default/pod/bad";
  desired.put(key, R"({"metadata":{"name":"bad","uid":"u-bad"},"spec":{"containers":[]}})");
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  agent.pass();  // each full pass re-reads the desired state
  agent.pass();
  auto info = agent.reconciler().podInfo(key);
  REQUIRE(info.has_value());
  REQUIRE(info->events.size() == 1);
  CHECK(info->events[0].type == "Warning");
  CHECK(info->events[0].reason == "FailedValidation");
  CHECK(info->events[0].message.rfind("The desired pod cannot run: ", 0) == 0);
  CHECK(info->events[0].count == 3);
  CHECK_FALSE(agent.reconciler().podInfo("default/pod/other").has_value());
}

TEST_CASE_FIXTURE(
    FakeReconciler,
    "after a store recovery the pods the empty store does not name keep running until the desired "
    "set is complete, then they are collected") {
  const std::string key = "default/pod/keep";
  {
    desired.put(key, busyboxPod("keep", "u-keep", "img:1", {{"c", "run"}}).dump());
    DeployAgent agent(rt, desired, sink, clock, cfg);
    REQUIRE(agent.start());
    REQUIRE(!runningId(rt).empty());
  }
  // The agent restarts on a store that was quarantined and started empty: nothing is desired yet.
  MemoryDesired recovered;
  recovered.setComplete(false);
  DeployAgent agent(rt, recovered, sink, clock, cfg);
  REQUIRE(agent.start());
  agent.pass();
  CHECK(!runningId(rt).empty());
  CHECK(rt.calls("StopContainer") == 0);
  // It asks the cloud whether it still wants the pod it keeps (once, whatever the passes).
  CHECK(recovered.fetched() == std::vector<std::string>{key});
  // The cloud resent the whole set, and it does not hold the pod any more: now it goes.
  recovered.setComplete(true);
  agent.pass();
  // Its container stops off the loop, then the next look collects what is left.
  CHECK(waitFor([&] { return runningId(rt).empty() && rt.listPodSandbox({})->empty(); }));
}

// Issue 9: a configmap the store lacks is asked of the cloud (DesiredPods::fetchMissing), at most
// once per key per interval; when it arrives, the pod starts.
TEST_CASE_FIXTURE(
    FakeReconciler,
    "a pod whose configmap the store lacks asks the cloud for it, and starts once it lands") {
  cfg.fetchMissingInterval = 60s;
  const std::string key = "default/pod/web";
  const std::string cm = "default/configmap/web-cfg";
  auto pod = busyboxPod("web", "u-web", "img:1", {{"c", "run"}});
  pod["spec"]["volumes"] = {{{"name", "cfg"}, {"configMap", {{"name", "web-cfg"}}}}};
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "cfg"}, {"mountPath", "/etc/web"}}};
  // An optional reference is not asked for: the pod runs without it.
  pod["spec"]["containers"][0]["envFrom"] = {
      {{"secretRef", {{"name", "maybe"}, {"optional", true}}}}};
  desired.put(key, pod.dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  CHECK(runningId(rt).empty());
  CHECK(sink.waitingReason(key, "c") == "CreateContainerConfigError");
  CHECK(desired.fetched() == std::vector<std::string>{cm});
  agent.pass();
  agent.pass();
  CHECK(desired.fetched().size() == 1);  // not again within the interval
  clock.advance(61s);
  agent.pass();
  CHECK(desired.fetched() == std::vector<std::string>{cm, cm});
  // The cloud's answer lands in the store; the change brings the pod up.
  desired.put(cm, nlohmann::json{{"metadata", {{"name", "web-cfg"}, {"namespace", "default"}}},
                                 {"data", {{"mode", "fast"}}}}
                      .dump());
  agent.changed({cm});
  CHECK(!runningId(rt).empty());
  CHECK(desired.fetched().size() == 2);
}

}  // namespace
}  // namespace outpost::test
