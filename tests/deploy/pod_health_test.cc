// The "outpost" object of a pod's status (docs/rollouts.md, "On the node"): the desired version it
// describes and its health, on the fake runtime with a manual clock (exact soak times) and against
// a real containerd (a crash loop, a healthy pod after its soak).

#include "pod_health.h"

#include <doctest/doctest.h>

#include "agent_env.h"
#include "cri_fixture.h"
#include "pod_status.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

json versioned(json pod, const std::string& version, const std::string& soak = "") {
  pod["metadata"]["resourceVersion"] = version;
  if (!soak.empty()) pod["metadata"]["annotations"][deploy::kSoakAnnotation] = soak;
  return pod;
}

std::string runningId(FakeRuntime& rt) {
  auto list = rt.listContainers({"", "", deploy::ContainerState::kRunning, {}});
  return list->empty() ? "" : list->front().id;
}

struct FakeHealth {
  FakeHealth() {
    rt.addImage("img:1");
    cfg.stateDir = state.path().string();
  }
  json outpost(const std::string& key) { return sink.pod(key).value("outpost", json()); }
  FakeRuntime rt;
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
};

TEST_CASE("the soak time is decimal seconds; anything else is refused naming the value") {
  deploy::PodSpec pod;
  CHECK(*deploy::soakOf(pod) == core::Duration::zero());
  pod.annotations[deploy::kSoakAnnotation] = "1.5";
  CHECK(*deploy::soakOf(pod) == 1500ms);
  pod.annotations[deploy::kSoakAnnotation] = "300";
  CHECK(*deploy::soakOf(pod) == 300s);
  for (const char* bad : {"", "-1", "1e3", "10s", "1.2.3", ".5", "999999999"}) {
    pod.annotations[deploy::kSoakAnnotation] = bad;
    auto soak = deploy::soakOf(pod);
    CAPTURE(bad);
    REQUIRE(!soak.isOk());
    CHECK(soak.status().message().find(std::string("\"") + bad + "\"") != std::string::npos);
  }
}

TEST_CASE_FIXTURE(FakeHealth,
                  "a pod is progressing until its containers ran the soak time, then healthy; "
                  "a restart during the soak makes it unhealthy until it ran a whole soak again") {
  const std::string key = "default/pod/web";
  desired.put(key,
              versioned(busyboxPod("web", "u-web", "img:1", {{"c", "run"}}), "7", "30").dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  REQUIRE(sink.state(key, "c") == "running");
  CHECK(outpost(key)["desiredVersion"] == "7");
  CHECK(outpost(key)["health"] == "progressing");
  CHECK(outpost(key)["reason"] == "Soaking");
  CHECK(!outpost(key).contains("healthySince"));

  clock.advance(20s);
  agent.pass();
  CHECK(outpost(key)["health"] == "progressing");
  rt.exitContainer(runningId(rt), 1);
  agent.pass();  // restarted at once (the first restart has no back-off)
  REQUIRE(sink.state(key, "c") == "running");
  CHECK(outpost(key)["health"] == "unhealthy");
  CHECK(outpost(key)["reason"] == "CrashLoopBackOff");
  CHECK(outpost(key)["message"].get<std::string>().find("container c restarted") !=
        std::string::npos);

  clock.advance(29s);
  agent.pass();
  CHECK(outpost(key)["health"] == "unhealthy");
  auto before = clock.wallNow();
  clock.advance(1s);  // the reconciler's own wake-up at the end of the soak, no pass forced
  REQUIRE(waitFor([&] { return outpost(key).value("health", "") == "healthy"; }, 5s));
  CHECK(outpost(key)["desiredVersion"] == "7");
  CHECK(outpost(key)["healthySince"] == deploy::rfc3339(before - 29s + 30s));
  CHECK(!outpost(key).contains("reason"));
  int reports = sink.reports(key);
  clock.advance(1s);
  agent.pass();
  CHECK(sink.reports(key) == reports);  // nothing changed: not published again

  // A new version is judged afresh: progressing again for its own soak.
  desired.put(key,
              versioned(busyboxPod("web", "u-web", "img:1", {{"c", "run"}}), "8", "30").dump());
  agent.changed({key});
  CHECK(outpost(key)["desiredVersion"] == "8");
  CHECK(outpost(key)["health"] == "progressing");
}

TEST_CASE_FIXTURE(FakeHealth, "without a soak time a running pod is healthy at once") {
  const std::string key = "default/pod/quick";
  desired.put(key, versioned(busyboxPod("quick", "u-quick", "img:1", {{"c", "run"}}), "3").dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  CHECK(outpost(key)["health"] == "healthy");
  CHECK(outpost(key)["desiredVersion"] == "3");
  CHECK(outpost(key)["healthySince"] == deploy::rfc3339(clock.wallNow()));
}

TEST_CASE_FIXTURE(FakeHealth,
                  "unsupported fields, a bad soak time, an image that cannot be pulled and an "
                  "invalid spec are unhealthy with the reason") {
  auto probe = versioned(busyboxPod("probe", "u-probe", "img:1", {{"c", "run"}}), "4");
  probe["spec"]["containers"][0]["readinessProbe"] = {{"exec", {{"command", {"true"}}}}};
  desired.put("default/pod/probe", probe.dump());
  desired.put("default/pod/soak",
              versioned(busyboxPod("soak", "u-soak", "img:1", {{"c", "run"}}), "5", "1h").dump());
  desired.put("default/pod/pull",
              versioned(busyboxPod("pull", "u-pull", "img:missing", {{"c", "run"}}), "6").dump());
  auto invalid = versioned(busyboxPod("bad", "u-bad", "img:1", {{"c", "run"}}), "9");
  invalid["metadata"]["uid"] = "../escape";
  desired.put("default/pod/bad", invalid.dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());

  CHECK(outpost("default/pod/probe")["health"] == "unhealthy");
  CHECK(outpost("default/pod/probe")["reason"] == "Unsupported");
  CHECK(outpost("default/pod/probe")["message"].get<std::string>().find("readinessProbe") !=
        std::string::npos);
  CHECK(outpost("default/pod/soak")["reason"] == "Unsupported");
  CHECK(outpost("default/pod/soak")["message"].get<std::string>().find("\"1h\"") !=
        std::string::npos);
  CHECK(outpost("default/pod/pull")["health"] == "unhealthy");
  CHECK(outpost("default/pod/pull")["reason"] == "ErrImagePull");
  CHECK(outpost("default/pod/pull")["desiredVersion"] == "6");
  CHECK(outpost("default/pod/bad")["health"] == "unhealthy");
  CHECK(outpost("default/pod/bad")["reason"] == "InvalidSpec");
  CHECK(outpost("default/pod/bad")["desiredVersion"] == "9");
}

TEST_CASE("against containerd: a container that exits 1 is unhealthy in CrashLoopBackOff") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/health-crash";
  f.desired.put(key, versioned(busyboxPod("health-crash", "uid-health-crash",
                                          ContainerdHarness::kBusybox, {{"app", "exit 1"}}),
                               "12")
                         .dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  auto outpost = [&] { return f.sink.pod(key).value("outpost", json::object()); };
  REQUIRE(waitFor([&] { return outpost().value("reason", "") == "CrashLoopBackOff"; }, 30s));
  CHECK(outpost()["health"] == "unhealthy");
  CHECK(outpost()["desiredVersion"] == "12");
  CHECK(outpost()["message"].get<std::string>().find("container app") != std::string::npos);
}

TEST_CASE("against containerd: a healthy container is progressing for its soak, then healthy") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/health-ok";
  f.desired.put(key, versioned(busyboxPod("health-ok", "uid-health-ok", ContainerdHarness::kBusybox,
                                          {{"app", kLoop}}),
                               "13", "1.5")
                         .dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  auto outpost = [&] { return f.sink.pod(key).value("outpost", json::object()); };
  REQUIRE(waitFor([&] { return outpost().value("reason", "") == "Soaking"; }, 30s));
  CHECK(outpost()["health"] == "progressing");
  REQUIRE(waitFor([&] { return outpost().value("health", "") == "healthy"; }, 30s));
  CHECK(outpost()["desiredVersion"] == "13");
  CHECK(outpost().contains("healthySince"));
  CHECK(f.sink.restarts(key, "app") == 0);
}

}  // namespace
}  // namespace outpost::test
