// FakeRuntime behaves like containerd's CRI for the calls deploy makes: the same scenario runs
// against both and their observable answers must agree.

#include "support/fake_runtime.h"

#include <doctest/doctest.h>

#include "cri_env.h"
#include "outpost/deploy/cri_runtime.h"
#include "support/containerd_harness.h"

namespace outpost::test {
namespace {

using namespace deploy;  // NOLINT

// What a scenario observed, comparable across runtimes.
struct Trace {
  std::vector<std::string> steps;
  void add(const std::string& s) { steps.push_back(s); }
};

std::string code(const core::Status& s) { return std::string(core::codeName(s.code())); }

Trace scenario(Runtime& rt, const std::string& image, const std::string& cgroupParent) {
  Trace t;
  PodSandboxConfig sb;
  sb.name = "parity";
  sb.uid = "parity-uid";
  sb.podNamespace = "default";
  sb.hostNetwork = true;
  sb.labels = {{"outpost.io/managed", "true"}, {"test", "parity"}};
  sb.cgroupParent = cgroupParent + "/podparity";
  auto missing = rt.imageStatus("localhost/outpost/absent:1");
  t.add("imageStatus(absent) ok=" + std::to_string(missing.isOk()) +
        " present=" + std::to_string(missing.isOk() && missing->has_value()));
  auto present = rt.imageStatus(image);
  t.add("imageStatus(present) present=" + std::to_string(present.isOk() && present->has_value()));
  auto pulled = rt.pullImage("localhost/outpost/absent:1");
  t.add("pull(absent) ok=" + std::to_string(pulled.isOk()));
  auto bad = rt.runPodSandbox(sb, "no-such-handler");
  t.add("runPodSandbox(bad handler) ok=" + std::to_string(bad.isOk()));
  auto id = rt.runPodSandbox(sb, "");
  REQUIRE(id.isOk());
  auto list = rt.listPodSandbox({"", SandboxState::kReady, {{"test", "parity"}}});
  t.add("ready sandboxes=" + std::to_string(list.isOk() ? list->size() : 99));
  ContainerConfig cc;
  cc.name = "main";
  cc.image = image;
  cc.command = {"/bin/sh", "-c", "sleep 60"};
  cc.env = {{"A", "1"}};
  cc.labels = {{"outpost.io/managed", "true"}, {"test", "parity"}};
  cc.hostNetwork = true;
  auto noSandbox = rt.createContainer("nosuchsandbox", cc, sb);
  t.add("create(no sandbox) ok=" + std::to_string(noSandbox.isOk()));
  ContainerConfig privileged = cc;
  privileged.name = "privileged";
  privileged.security.privileged = true;
  auto refused = rt.createContainer(*id, privileged, sb);
  t.add("create(privileged, sandbox not privileged) " + code(refused.status()));
  auto cid = rt.createContainer(*id, cc, sb);
  REQUIRE(cid.isOk());
  auto st = rt.containerStatus(*cid);
  t.add("state after create=" + std::to_string(static_cast<int>(st->container.state)));
  auto dup = rt.createContainer(*id, cc, sb);
  t.add("create(same name+attempt) ok=" + std::to_string(dup.isOk()));
  REQUIRE(rt.startContainer(*cid).isOk());
  st = rt.containerStatus(*cid);
  t.add("state after start=" + std::to_string(static_cast<int>(st->container.state)) + " attempt=" +
        std::to_string(st->container.attempt) + " label=" + st->container.labels["test"]);
  auto env = rt.execSync(*cid, {"env"}, std::chrono::seconds(5));
  t.add("exec env has A=1: " +
        std::to_string(env.isOk() && env->out.find("A=1\n") != std::string::npos));
  auto running = rt.listContainers({"", "", ContainerState::kRunning, {{"test", "parity"}}});
  t.add("running containers=" + std::to_string(running->size()));
  REQUIRE(rt.stopContainer(*cid, std::chrono::seconds(1)).isOk());
  st = rt.containerStatus(*cid);
  t.add("state after stop=" + std::to_string(static_cast<int>(st->container.state)) + " exit=" +
        std::to_string(st->exitCode) + " finished=" + std::to_string(st->finishedAt > 0));
  t.add("remove(exited) " + code(rt.removeContainer(*cid)));
  cc.attempt = 1;
  auto cid2 = rt.createContainer(*id, cc, sb);
  REQUIRE(cid2.isOk());
  REQUIRE(rt.startContainer(*cid2).isOk());
  t.add("remove(running) " + code(rt.removeContainer(*cid2)));
  t.add("status(removed running) " + code(rt.containerStatus(*cid2).status()));
  t.add("status(removed) " + code(rt.containerStatus(*cid).status()));
  t.add("remove(removed again) " + code(rt.removeContainer(*cid)));
  t.add("removeSandbox(ready) ok=" + std::to_string(rt.removePodSandbox(*id).isOk()));
  t.add("stopSandbox " + code(rt.stopPodSandbox(*id)));
  auto notReady = rt.listPodSandbox({"", SandboxState::kNotReady, {{"test", "parity"}}});
  t.add("not-ready sandboxes=" + std::to_string(notReady->size()));
  t.add("removeSandbox " + code(rt.removePodSandbox(*id)));
  t.add("removeSandbox again " + code(rt.removePodSandbox(*id)));
  auto after = rt.listPodSandbox({"", std::nullopt, {{"test", "parity"}}});
  t.add("sandboxes at the end=" + std::to_string(after->size()));
  return t;
}

// The streaming and stats calls (issue 18): what an exec, an attach and the stats answer.
Trace streamScenario(Runtime& rt, const std::string& image, const std::string& cgroupParent) {
  Trace t;
  PodSandboxConfig sb;
  sb.name = "streams";
  sb.uid = "streams-uid";
  sb.podNamespace = "default";
  sb.hostNetwork = true;
  sb.labels = {{"outpost.io/managed", "true"}, {"test", "streams"}};
  sb.cgroupParent = cgroupParent + "/podstreams";
  auto id = rt.runPodSandbox(sb, "");
  REQUIRE(id.isOk());
  ContainerConfig cc;
  cc.name = "main";
  cc.image = image;
  cc.command = {"/bin/sh", "-c", "sleep 60"};
  cc.labels = {{"outpost.io/managed", "true"}, {"test", "streams"}};
  cc.hostNetwork = true;
  auto cid = rt.createContainer(*id, cc, sb);
  REQUIRE(cid.isOk());
  auto created = rt.exec({*cid, {"sh"}, false, true, true, false});
  t.add("exec(created) " + code(created.status()));
  REQUIRE(rt.startContainer(*cid).isOk());
  auto url = [](const core::Result<std::string>& r, const std::string& kind) {
    if (!r.isOk()) return code(r.status());
    bool form =
        r->rfind("http://127.0.0.1:", 0) == 0 && r->find("/" + kind + "/") != std::string::npos;
    return std::string("url of the form http://127.0.0.1:PORT/") + kind +
           "/TOKEN: " + std::to_string(form);
  };
  t.add("exec(running) " + url(rt.exec({*cid, {"sh"}, true, true, false, true}), "exec"));
  t.add("exec(tty and stderr) " + code(rt.exec({*cid, {"sh"}, true, true, true, true}).status()));
  t.add("exec(no stream) " + code(rt.exec({*cid, {"sh"}, false, false, false, false}).status()));
  t.add("exec(unknown) " +
        code(rt.exec({"nosuchcontainer", {"sh"}, false, true, true, false}).status()));
  t.add("attach(running) " + url(rt.attach({*cid, {}, true, true, true, false}), "attach"));
  t.add("attach(unknown) " +
        code(rt.attach({"nosuchcontainer", {}, false, true, true, false}).status()));
  auto stats = rt.listContainerStats({"", "", {{"test", "streams"}}});
  REQUIRE(stats.isOk());
  t.add("container stats=" + std::to_string(stats->size()));
  if (stats->size() == 1) {
    const auto& s = stats->front();
    t.add("stats id matches=" + std::to_string(s.id == *cid) + " name=" + s.name +
          " cpu=" + std::to_string(s.usage.cpuCoreNanos.has_value()) +
          " memory>0=" + std::to_string(s.usage.memoryWorkingSetBytes.value_or(0) > 0) +
          " stamped=" + std::to_string(s.usage.memoryTimestamp > 0 && s.usage.cpuTimestamp > 0));
  }
  auto bySandbox = rt.listContainerStats({"", *id, {}});
  t.add("container stats by sandbox=" + std::to_string(bySandbox.isOk() ? bySandbox->size() : 99));
  auto pods = rt.listPodSandboxStats({*id, "", {}});
  t.add("sandbox stats " + code(pods.status()));
  if (pods.isOk()) {
    t.add("sandbox stats=" + std::to_string(pods->size()));
    if (pods->size() == 1) {
      const auto& p = pods->front();
      t.add("sandbox uid=" + p.uid +
            " memory>0=" + std::to_string(p.usage.memoryWorkingSetBytes.value_or(0) > 0) +
            " containers=" + std::to_string(p.containers.size()));
    }
  }
  REQUIRE(rt.stopContainer(*cid, std::chrono::seconds(1)).isOk());
  t.add("exec(exited) " + code(rt.exec({*cid, {"sh"}, false, true, true, false}).status()));
  t.add("attach(exited) " + code(rt.attach({*cid, {}, false, true, true, false}).status()));
  stats = rt.listContainerStats({"", "", {{"test", "streams"}}});
  if (stats.isOk() && stats->size() == 1) {
    t.add("exited stats cpu=" + std::to_string(stats->front().usage.cpuCoreNanos.has_value()) +
          " memory=" + std::to_string(stats->front().usage.memoryWorkingSetBytes.has_value()));
  } else {
    t.add("exited stats=" + (stats.isOk() ? std::to_string(stats->size()) : code(stats.status())));
  }
  REQUIRE(rt.removeContainer(*cid).isOk());
  REQUIRE(rt.stopPodSandbox(*id).isOk());
  REQUIRE(rt.removePodSandbox(*id).isOk());
  return t;
}

TEST_CASE("the fake runtime answers exec, attach and the stats calls as containerd's CRI does") {
  auto& env = CriEnv::get();
  if (!env.available()) {
    MESSAGE("skipped: " << env.reason());
    return;
  }
  auto real = makeCriRuntime(
      {env.harness().endpoint(), std::chrono::seconds(10), std::chrono::seconds(10)});
  REQUIRE(real.isOk());
  Trace fromReal =
      streamScenario(**real, ContainerdHarness::kBusybox, env.harness().cgroupParent());
  for (const auto& step : fromReal.steps) MESSAGE("containerd: " << step);
  FakeRuntime fake;
  fake.addImage(ContainerdHarness::kBusybox);
  Trace fromFake = streamScenario(fake, ContainerdHarness::kBusybox, "/fake");
  REQUIRE(fromReal.steps.size() == fromFake.steps.size());
  for (size_t i = 0; i < fromReal.steps.size(); ++i) {
    CHECK(fromReal.steps[i] == fromFake.steps[i]);
  }
}

TEST_CASE("the fake runtime answers the deploy scenario as containerd's CRI does") {
  auto& env = CriEnv::get();
  if (!env.available()) {
    MESSAGE("skipped: " << env.reason());
    return;
  }
  auto real = makeCriRuntime(
      {env.harness().endpoint(), std::chrono::seconds(10), std::chrono::seconds(10)});
  REQUIRE(real.isOk());
  Trace fromReal = scenario(**real, ContainerdHarness::kBusybox, env.harness().cgroupParent());
  FakeRuntime fake;
  fake.addImage(ContainerdHarness::kBusybox);
  Trace fromFake = scenario(fake, ContainerdHarness::kBusybox, "/fake");
  REQUIRE(fromReal.steps.size() == fromFake.steps.size());
  for (const auto& step : fromReal.steps) MESSAGE("containerd: " << step);
  for (size_t i = 0; i < fromReal.steps.size(); ++i) {
    CHECK(fromReal.steps[i] == fromFake.steps[i]);
  }
}

}  // namespace
}  // namespace outpost::test
