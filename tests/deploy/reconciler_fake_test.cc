// Reconciler timing rules checked on the fake runtime with a manual clock (exact, fast).

#include <doctest/doctest.h>

#include "agent_env.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

std::string runningId(FakeRuntime& rt) {
  auto list = rt.listContainers({"", "", deploy::ContainerState::kRunning, {}});
  return list->empty() ? "" : list->front().id;
}

TEST_CASE("crash-loop back-off: immediate first restart, then 10 s doubling to the cap") {
  FakeRuntime rt;
  rt.addImage("img:1");
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
  cfg.stateDir = state.path().string();
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

TEST_CASE("a container that ran 10 minutes restarts without back-off") {
  FakeRuntime rt;
  rt.addImage("img:1");
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
  cfg.stateDir = state.path().string();
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

TEST_CASE("restartPolicy Never leaves a failed pod Failed, OnFailure leaves a succeeded one") {
  FakeRuntime rt;
  rt.addImage("img:1");
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
  cfg.stateDir = state.path().string();
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

TEST_CASE("status is reported only when it changes") {
  FakeRuntime rt;
  rt.addImage("img:1");
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
  cfg.stateDir = state.path().string();
  desired.put("default/pod/quiet", busyboxPod("quiet", "u-q", "img:1", {{"c", "run"}}).dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  int reports = sink.reports("default/pod/quiet");
  for (int i = 0; i < 5; ++i) agent.pass();
  CHECK(sink.reports("default/pod/quiet") == reports);
  CHECK(sink.node()["nodeInfo"]["containerRuntimeVersion"] == "fake://1.0");
}

}  // namespace
}  // namespace outpost::test
