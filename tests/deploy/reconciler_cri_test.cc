// The reconciler against a real containerd (host network pods, locally built busybox images).

#include <doctest/doctest.h>

#include "cri_fixture.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("desired pod runs with its env and configmap; a spec change replaces; delete removes") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/web";
  f.desired.put("default/configmap/web-cfg",
                json{{"data", {{"app.conf", "listen=8080\n"}, {"MODE", "edge"}}}}.dump());
  auto pod = busyboxPod("web", "uid-web", ContainerdHarness::kBusybox, {{"app", kLoop}});
  pod["spec"]["containers"][0]["env"].push_back(
      {{"name", "MODE"},
       {"valueFrom", {{"configMapKeyRef", {{"name", "web-cfg"}, {"key", "MODE"}}}}}});
  pod["spec"]["containers"][0]["volumeMounts"] = {
      {{"name", "cfg"}, {"mountPath", "/etc/app"}, {"readOnly", true}}};
  pod["spec"]["volumes"] = {{{"name", "cfg"}, {"configMap", {{"name", "web-cfg"}}}}};
  f.desired.put(key, pod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"app"}); }, 30s));
  auto running = f.containers("uid-web", true);
  REQUIRE(running.size() == 1);
  auto env = f.runtime->execSync(running[0].id, {"env"}, 10s);
  REQUIRE(env.isOk());
  CHECK(env->out.find("GREETING=hello") != std::string::npos);
  CHECK(env->out.find("MODE=edge") != std::string::npos);
  auto cat = f.runtime->execSync(running[0].id, {"cat", "/etc/app/app.conf"}, 10s);
  REQUIRE(cat.isOk());
  CHECK(cat->out == "listen=8080\n");
  auto status = f.sink.pod(key);
  CHECK(status["conditions"][3]["type"] == "Ready");
  CHECK(status["conditions"][3]["status"] == "True");

  // Spec change: the container is replaced.
  std::string oldId = running[0].id;
  pod["spec"]["containers"][0]["env"][0]["value"] = "changed";
  f.desired.put(key, pod.dump());
  agent->changed({key});
  REQUIRE(waitFor(
      [&] {
        auto now = f.containers("uid-web", true);
        return now.size() == 1 && now[0].id != oldId;
      },
      30s));
  running = f.containers("uid-web", true);
  env = f.runtime->execSync(running[0].id, {"env"}, 10s);
  CHECK(env->out.find("GREETING=changed") != std::string::npos);
  // The replaced container is the new one's lastState, as the kubelet reports it (issue 17 8g).
  json last;
  REQUIRE(waitFor(
      [&] {
        auto st = f.sink.pod(key);
        if (!st.is_object() || !st.contains("containerStatuses")) return false;
        last = st["containerStatuses"][0]["lastState"];
        return last.contains("terminated");
      },
      30s));
  INFO("lastState: ", last.dump());
  CHECK(last["terminated"]["containerID"] == "containerd://" + oldId);
  CHECK(last["terminated"]["exitCode"].is_number_integer());
  CHECK(!last["terminated"].value("reason", "").empty());
  CHECK(last["terminated"].value("startedAt", "") <= last["terminated"].value("finishedAt", ""));
  CHECK(!last["terminated"].value("finishedAt", "").empty());

  // Delete: gone from the runtime and reported removed.
  f.desired.erase(key);
  agent->changed({key});
  REQUIRE(waitFor([&] { return f.sink.removed(key); }, 30s));
  CHECK(f.containers("uid-web").empty());
  CHECK(f.sandboxes("uid-web").empty());
}

TEST_CASE("agent restart adopts running pods; pods killed while it was down all come back") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/keep";
  f.desired.put(
      key, busyboxPod("keep", "uid-keep", ContainerdHarness::kBusybox, {{"a", kLoop}, {"b", kLoop}})
               .dump());
  {
    auto agent = f.agent(f.clock);
    REQUIRE(agent->start());
    REQUIRE(waitFor([&] { return f.allRunning(key, {"a", "b"}); }, 30s));
  }
  auto before = f.containers("uid-keep", true);
  REQUIRE(before.size() == 2);
  {
    // Restarted agent, no cloud: zero recreated.
    auto agent = f.agent(f.clock);
    REQUIRE(agent->start());
    auto stats = agent->reconciler().stats();
    CHECK(stats.containersCreated == 0);
    CHECK(stats.sandboxesCreated == 0);
    CHECK(f.containers("uid-keep", true).size() == 2);
  }
  // Every container dies while the agent is down (a power cut for the pods).
  f.env.harness().killAllContainers();
  REQUIRE(waitFor([&] { return f.containers("uid-keep", true).empty(); }, 30s));
  {
    auto agent = f.agent(f.clock);
    REQUIRE(agent->start());
    REQUIRE(waitFor([&] { return f.containers("uid-keep", true).size() == 2; }, 30s));
    auto stats = agent->reconciler().stats();
    CHECK(stats.sandboxesCreated == 1);
    CHECK(stats.containersCreated == 2);
    CHECK(stats.imagesPulled == 0);
    REQUIRE(waitFor([&] { return f.allRunning(key, {"a", "b"}); }, 30s));
    // The dead sandbox went at the end of that pass, with its exited containers.
    CHECK(f.sandboxes("uid-keep").size() == 1);
    CHECK(f.containers("uid-keep").size() == 2);
    CHECK(stats.sandboxesRemoved == 1);
    f.desired.erase(key);
    agent->changed({key});
    REQUIRE(waitFor([&] { return f.sink.removed(key); }, 30s));
  }
}

TEST_CASE("containerd restarted: the agent recovers and keeps reconciling") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/survivor";
  f.desired.put(
      key, busyboxPod("survivor", "uid-surv", ContainerdHarness::kBusybox, {{"c", kLoop}}).dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"c"}); }, 30s));
  auto id = f.containers("uid-surv", true).at(0).id;
  f.env.harness().stop();
  REQUIRE(waitFor([&] { return f.sink.node()["conditions"][0]["status"] == "False"; }, 30s));
  f.env.harness().start();
  REQUIRE(waitFor([&] { return f.sink.node()["conditions"][0]["status"] == "True"; }, 30s));
  // The container survived containerd's restart and was not recreated.
  CHECK(f.containers("uid-surv", true).at(0).id == id);
  // And new work is done.
  const std::string key2 = "default/pod/after";
  f.desired.put(
      key2, busyboxPod("after", "uid-after", ContainerdHarness::kBusybox, {{"c", kLoop}}).dump());
  agent->changed({key2});
  REQUIRE(waitFor([&] { return f.allRunning(key2, {"c"}); }, 30s));
  for (const auto& k : {key, key2}) f.desired.erase(k);
  agent->changed({key, key2});
  REQUIRE(waitFor([&] { return f.sink.removed(key) && f.sink.removed(key2); }, 30s));
}

TEST_CASE("a crash-looping container backs off on the injected clock") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  core::ManualClock clock;
  const std::string key = "default/pod/crash";
  f.desired.put(
      key, busyboxPod("crash", "uid-crash", ContainerdHarness::kBusybox, {{"c", "exit 3"}}).dump());
  auto agent = f.agent(clock);
  REQUIRE(agent->start());
  // First exit: restarted at once (restartCount 1); second exit: CrashLoopBackOff for 10 s.
  REQUIRE(waitFor(
      [&] {
        agent->pass();
        return f.sink.restarts(key, "c") == 1 && f.sink.state(key, "c") == "waiting";
      },
      30s));
  auto status = f.sink.pod(key)["containerStatuses"][0];
  CHECK(status["state"]["waiting"]["reason"] == "CrashLoopBackOff");
  CHECK(status["lastState"]["terminated"]["exitCode"] == 3);
  clock.advance(9s);
  agent->pass();
  CHECK(f.sink.restarts(key, "c") == 1);
  clock.advance(1s);
  REQUIRE(waitFor(
      [&] {
        agent->pass();
        return f.sink.restarts(key, "c") == 2;
      },
      30s));
  f.desired.erase(key);
  agent->changed({key});
  REQUIRE(waitFor([&] { return f.sink.removed(key); }, 30s));
}

TEST_CASE("an unsupported field is reported as a condition; runtimeClassName picks the handler") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/alt";
  auto pod = busyboxPod("alt", "uid-alt", ContainerdHarness::kBusybox, {{"c", kLoop}});
  pod["spec"]["runtimeClassName"] = ContainerdHarness::kAltHandler;
  pod["spec"]["containers"][0]["readinessProbe"] = {{"exec", {{"command", {"true"}}}}};
  f.desired.put(key, pod.dump());
  const std::string bad = "default/pod/nohandler";
  auto badPod = busyboxPod("nohandler", "uid-noh", ContainerdHarness::kBusybox, {{"c", kLoop}});
  badPod["spec"]["runtimeClassName"] = "wasm-not-installed";
  f.desired.put(bad, badPod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"c"}); }, 30s));
  auto sbs = f.sandboxes("uid-alt");
  REQUIRE(sbs.size() == 1);
  CHECK(sbs[0].runtimeHandler == ContainerdHarness::kAltHandler);
  bool reported = false;
  const json status = f.sink.pod(key);
  for (const auto& c : status["conditions"]) {
    if (c["type"] == "Unsupported") {
      reported = c["status"] == "True" && c["reason"] == "UnsupportedField" &&
                 c["message"].get<std::string>().find("spec.containers[0].readinessProbe") !=
                     std::string::npos;
    }
  }
  CHECK(reported);
  // An unknown handler: the pod stays Pending with the runtime's reason.
  CHECK(f.sink.phase(bad) == "Pending");
  CHECK(f.sink.state(bad, "c") == "waiting");
  CHECK(f.sandboxes("uid-noh").empty());
  f.desired.erase(key);
  f.desired.erase(bad);
  agent->changed({key, bad});
  REQUIRE(waitFor([&] { return f.sink.removed(key) && f.sink.removed(bad); }, 30s));
}

}  // namespace
}  // namespace outpost::test
