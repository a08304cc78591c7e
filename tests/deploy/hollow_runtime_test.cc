// The hollow runtime (docs/hollow-nodes.md): its endpoint and image-tag grammar, its containers'
// life on a manual clock, and the real reconciler driving it.

#include "outpost/deploy/hollow_runtime.h"

#include <doctest/doctest.h>

#include <filesystem>

#include "agent_env.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;
using deploy::ContainerState;

std::string errorOf(std::string_view image) {
  auto r = deploy::parseHollowImage(image);
  return r.isOk() ? "" : r.status().message();
}

std::string endpointError(std::string_view endpoint) {
  auto r = deploy::parseHollowEndpoint(endpoint);
  return r.isOk() ? "" : r.status().message();
}

int64_t nanos(core::WallTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

TEST_CASE("hollow:// takes start_latency in its query and names whatever else it is given") {
  CHECK(deploy::isHollowEndpoint("hollow://"));
  CHECK_FALSE(deploy::isHollowEndpoint("unix:///run/containerd/containerd.sock"));
  CHECK(deploy::parseHollowEndpoint("hollow://")->startLatency == 0ms);
  CHECK(deploy::parseHollowEndpoint("hollow://?start_latency=250ms")->startLatency == 250ms);
  CHECK(deploy::parseHollowEndpoint("hollow://?start_latency=3s")->startLatency == 3s);
  CHECK(deploy::parseHollowEndpoint("hollow://?start_latency=2m")->startLatency == 2min);

  CHECK(endpointError("hollow://node-1").find("takes no host or path (found \"node-1\")") !=
        std::string::npos);
  CHECK(endpointError("hollow://?speed=fast") ==
        "hollow:// has no option \"speed\" (known: start_latency)");
  CHECK(endpointError("hollow://?start_latency=5") ==
        "hollow:// start_latency \"5\" is not a whole number with ms, s or m, e.g. 250ms of at "
        "most 10m");
  CHECK(endpointError("hollow://?start_latency=-1s").find("\"-1s\" is not") != std::string::npos);
  CHECK(endpointError("hollow://?start_latency=11m").find("of at most 10m") != std::string::npos);
  CHECK(endpointError("hollow://?start_latency=1s&start_latency=2s") ==
        "hollow:// has start_latency twice");
  CHECK_FALSE(endpointError("unix:///x").empty());
}

TEST_CASE("an image's tag stages a failed pull or an exit; other tags are ordinary images") {
  for (const char* plain : {"busybox", "busybox:1.36", "registry:5000/app", "registry:5000/app:v2",
                            "app:exit-1", "app@sha256:0123", "app:latest@sha256:0123"}) {
    CAPTURE(plain);
    auto h = deploy::parseHollowImage(plain);
    REQUIRE(h.isOk());
    CHECK_FALSE(h->pullFails);
    CHECK_FALSE(h->exitCode);
  }
  CHECK(deploy::parseHollowImage("registry:5000/app:pull-fails")->pullFails);
  auto now = deploy::parseHollowImage("app:exits-0");
  REQUIRE(now.isOk());
  CHECK(*now->exitCode == 0);
  CHECK(now->exitAfter == 0ms);
  auto later = deploy::parseHollowImage("app:exits-1-after-5s");
  REQUIRE(later.isOk());
  CHECK(*later->exitCode == 1);
  CHECK(later->exitAfter == 5s);
  CHECK(deploy::parseHollowImage("app:exits-255-after-1500ms")->exitAfter == 1500ms);
  CHECK(deploy::parseHollowImage("app:exits-3-after-2m")->exitAfter == 2min);

  CHECK(errorOf("app:pull-fail") ==
        "image \"app:pull-fail\": tag \"pull-fail\" is not pull-fails (hollow runtime, "
        "docs/hollow-nodes.md)");
  for (const char* bad : {"app:exits-", "app:exits-x", "app:exits-256", "app:exits-1000",
                          "app:exits-1-after-5", "app:exits-1-after-s", "app:exits-1-after-5h",
                          "app:exits-1-later-5s", "app:exits-1-after-86401s"}) {
    CAPTURE(bad);
    CHECK(errorOf(bad).find("is not exits-<code 0-255>[-after-<n>ms|s|m]") != std::string::npos);
  }
}

struct HollowFixture {
  core::ManualClock clock;
  TempDir logs;
  deploy::RuntimePtr rt =
      deploy::makeHollowRuntime(deploy::HollowOptions{std::chrono::milliseconds(2000)}, clock);

  std::string sandbox(const std::string& uid = "u1") {
    deploy::PodSandboxConfig sc;
    sc.name = "p-" + uid;
    sc.uid = uid;
    sc.podNamespace = "default";
    sc.logDirectory = logs.path().string();
    sc.labels = {{"pod", uid}};
    return *rt->runPodSandbox(sc, "");
  }
  std::string container(const std::string& sb, const std::string& image,
                        const std::string& name = "main") {
    deploy::ContainerConfig cc;
    cc.name = name;
    cc.image = image;
    cc.logPath = name + ".log";
    cc.labels = {{"container", name}};
    auto id = rt->createContainer(sb, cc, {});
    REQUIRE(id.isOk());
    return *id;
  }
  deploy::ContainerStatus status(const std::string& id) { return *rt->containerStatus(id); }
};

TEST_CASE_FIXTURE(HollowFixture,
                  "a hollow container is created, runs after the start latency, and exits as its "
                  "tag says, with times from the clock and a line of log at each step") {
  CHECK(rt->version()->runtimeName == "hollow");
  std::string sb = sandbox();
  auto sbs = rt->podSandboxStatus(sb);
  REQUIRE(sbs.isOk());
  CHECK(sbs->sandbox.state == deploy::SandboxState::kReady);
  CHECK(sbs->ip.rfind("10.88.", 0) == 0);

  auto created = clock.wallNow();
  std::string id = container(sb, "app:exits-1-after-5s");
  CHECK(status(id).container.state == ContainerState::kCreated);
  CHECK(status(id).container.createdAt == nanos(created));
  clock.advance(1s);
  REQUIRE(rt->startContainer(id).isOk());
  auto startedAt = clock.wallNow() + 2s;
  // Starting: still Created, and asking again does not restart the wait.
  clock.advance(1999ms);
  CHECK(status(id).container.state == ContainerState::kCreated);
  CHECK(rt->startContainer(id).isOk());
  clock.advance(1ms);
  auto running = status(id);
  CHECK(running.container.state == ContainerState::kRunning);
  CHECK(running.startedAt == nanos(startedAt));
  CHECK(rt->execSync(id, {"true"}, 1s)->exitCode == 0);
  CHECK(rt->startContainer(id).code() == core::Code::kFailedPrecondition);

  // Observed late: the exit is stamped when it happened, not when it was seen.
  clock.advance(7s);
  auto exited = status(id);
  CHECK(exited.container.state == ContainerState::kExited);
  CHECK(exited.exitCode == 1);
  CHECK(exited.reason == "Error");
  CHECK(exited.finishedAt == nanos(startedAt + 5s));
  auto list = rt->listContainers({"", sb, ContainerState::kExited, {{"container", "main"}}});
  REQUIRE(list->size() == 1);
  CHECK(rt->execSync(id, {"true"}, 1s).status().code() == core::Code::kFailedPrecondition);

  std::string log = readFile(logs.path() / "main.log");
  CHECK(log.find(" stdout F hollow container main started (image app:exits-1-after-5s)\n") !=
        std::string::npos);
  CHECK(log.find(" stdout F hollow container main exits with code 1, as its image's tag says\n") !=
        std::string::npos);
  CHECK(std::count(log.begin(), log.end(), '\n') == 2);
}

TEST_CASE_FIXTURE(HollowFixture,
                  "a container listed Created while it starts, asked to start again once its "
                  "start latency passed, is not refused: it runs (or exited as its tag says)") {
  std::string sb = sandbox();
  for (const char* image : {"busybox:1.36", "app:exits-1"}) {
    CAPTURE(image);
    std::string id = container(sb, image, image[0] == 'b' ? "runs" : "exits");
    REQUIRE(rt->startContainer(id).isOk());
    // The reconciler's look: Created, it starts.
    auto seen = rt->listContainers({id, "", std::nullopt, {}});
    REQUIRE(seen->size() == 1);
    REQUIRE(seen->front().state == ContainerState::kCreated);
    clock.advance(2500ms);  // the start latency passes before it acts on what it saw
    CHECK(rt->startContainer(id).isOk());
    auto st = status(id);
    CHECK(st.container.state ==
          (image[0] == 'b' ? ContainerState::kRunning : ContainerState::kExited));
    CHECK(st.startedAt == nanos(clock.wallNow() - 500ms));  // the first start counts
    // Seen running (or exited) since: asked again, it is refused as containerd refuses it.
    CHECK(rt->startContainer(id).code() == core::Code::kFailedPrecondition);
  }
}

TEST_CASE_FIXTURE(HollowFixture,
                  "stopping ends a hollow container with 143 at once; removing the sandbox "
                  "removes its containers; names stay reserved as in containerd") {
  std::string sb = sandbox();
  std::string id = container(sb, "busybox:1.36");
  REQUIRE(rt->startContainer(id).isOk());
  clock.advance(2s);
  REQUIRE(status(id).container.state == ContainerState::kRunning);
  clock.advance(1h);
  CHECK(status(id).container.state == ContainerState::kRunning);  // no tag: runs until stopped
  REQUIRE(rt->stopContainer(id, 30s).isOk());
  CHECK(status(id).exitCode == 143);
  CHECK(status(id).finishedAt == nanos(clock.wallNow()));

  deploy::ContainerConfig again;
  again.name = "main";
  CHECK(rt->createContainer(sb, again, {}).status().code() == core::Code::kAlreadyExists);
  deploy::PodSandboxConfig same;
  same.name = "p-u1";
  same.uid = "u1";
  same.podNamespace = "default";
  CHECK(rt->runPodSandbox(same, "").status().code() == core::Code::kAlreadyExists);

  std::string other = sandbox("u2");
  std::string second = container(other, "busybox:1.36");
  REQUIRE(rt->stopPodSandbox(sb).isOk());
  CHECK(rt->podSandboxStatus(sb)->sandbox.state == deploy::SandboxState::kNotReady);
  CHECK(rt->createContainer(sb, again, {}).status().code() == core::Code::kFailedPrecondition);
  REQUIRE(rt->removePodSandbox(sb).isOk());
  CHECK(rt->containerStatus(id).status().code() == core::Code::kNotFound);
  CHECK(rt->listPodSandbox({})->size() == 1);
  CHECK(rt->listContainers({})->size() == 1);
  CHECK(rt->listContainers({})->front().id == second);
}

TEST_CASE_FIXTURE(HollowFixture, "pull-fails is never present and its pull fails with the reason") {
  CHECK(rt->imageStatus("busybox:1.36")->has_value());
  CHECK(rt->pullImage("busybox:1.36").isOk());
  CHECK_FALSE(rt->imageStatus("app:pull-fails")->has_value());
  auto pulled = rt->pullImage("app:pull-fails");
  REQUIRE_FALSE(pulled.isOk());
  CHECK(pulled.status().message() ==
        "failed to pull image \"app:pull-fails\": staged by its tag pull-fails (hollow runtime)");
  CHECK(rt->imageStatus("app:exits-x").status().code() == core::Code::kInvalidArgument);
  deploy::ContainerConfig cc;
  cc.name = "bad";
  cc.image = "app:exits-1-after-5";
  auto made = rt->createContainer(sandbox(), cc, {});
  REQUIRE_FALSE(made.isOk());
  CHECK(made.status().message().find("tag \"exits-1-after-5\" is not exits-") != std::string::npos);
}

// The real reconciler over the hollow runtime, on the manual clock.
struct HollowReconciler {
  HollowReconciler() { cfg.stateDir = state.path().string(); }
  core::ManualClock clock;
  deploy::RuntimePtr rt = deploy::makeHollowRuntime(deploy::HollowOptions{1s}, clock);
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
};

TEST_CASE_FIXTURE(HollowReconciler,
                  "the reconciler runs a hollow pod to Running, restarts a staged crash with "
                  "back-off, and reports a staged pull failure; the node reports a hollow "
                  "runtime") {
  desired.put("default/pod/web", busyboxPod("web", "u-web", "nginx:1.25", {{"c", ""}}).dump());
  desired.put("default/pod/crash",
              busyboxPod("crash", "u-crash", "app:exits-2-after-3s", {{"c", ""}}).dump());
  desired.put("default/pod/nopull",
              busyboxPod("nopull", "u-nopull", "app:pull-fails", {{"c", ""}}).dump());
  desired.put("default/pod/typo",
              busyboxPod("typo", "u-typo", "app:exits-1-after-5", {{"c", ""}}).dump());
  DeployAgent agent(*rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  // Started, not yet running: the start latency.
  CHECK(sink.waitingReason("default/pod/web", "c") == "ContainerCreating");
  CHECK(sink.waitingReason("default/pod/nopull", "c") == "ErrImagePull");
  // A tag that is not in the grammar: the container waits, and says why.
  CHECK(sink.waitingReason("default/pod/typo", "c") == "ErrImagePull");
  CHECK(sink.pod("default/pod/typo")["containerStatuses"][0]["state"]["waiting"]["message"] ==
        "image \"app:exits-1-after-5\": tag \"exits-1-after-5\" is not "
        "exits-<code 0-255>[-after-<n>ms|s|m] (hollow runtime, docs/hollow-nodes.md)");
  clock.advance(1s);
  agent.pass();
  CHECK(sink.phase("default/pod/web") == "Running");
  CHECK(sink.state("default/pod/web", "c") == "running");
  CHECK(sink.state("default/pod/crash", "c") == "running");

  // The failed pull, then its back-off, both with the reason.
  CHECK(sink.waitingReason("default/pod/nopull", "c") == "ImagePullBackOff");
  auto nopull = sink.pod("default/pod/nopull")["containerStatuses"][0]["state"]["waiting"];
  CHECK(nopull.value("message", "").find("staged by its tag pull-fails") != std::string::npos);

  clock.advance(3s);
  agent.pass();  // exited 2: restarted at once (the first restart has no back-off) ...
  clock.advance(1s);
  agent.pass();  // ... and running again after the start latency
  auto crash = sink.pod("default/pod/crash")["containerStatuses"][0];
  CHECK(crash["restartCount"] == 1);
  CHECK(crash["lastState"]["terminated"]["exitCode"] == 2);
  CHECK(crash["state"].contains("running"));
  clock.advance(3s);
  agent.pass();
  CHECK(sink.waitingReason("default/pod/crash", "c") == "CrashLoopBackOff");

  auto node = sink.node();
  CHECK(node["nodeInfo"]["containerRuntimeVersion"] == "hollow://1");
  CHECK(node["conditions"][0]["status"] == "True");

  // The pod's CRI log, as outpostctl logs reads it.
  bool found = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(state.path())) {
    if (e.path().filename() == "0.log" && e.path().parent_path().filename() == "c" &&
        e.path().string().find("u-web") != std::string::npos) {
      found = readFile(e.path()).find("hollow container c started (image nginx:1.25)") !=
              std::string::npos;
    }
  }
  CHECK(found);
}

}  // namespace
}  // namespace outpost::test

namespace outpost::test {
namespace {

TEST_CASE_FIXTURE(HollowFixture,
                  "hollow containers show plausible usage for top and refuse exec and attach "
                  "saying why") {
  std::string sb = sandbox();
  std::string id = container(sb, "busybox");
  REQUIRE(rt->startContainer(id).isOk());
  clock.advance(2000ms);  // the start latency
  REQUIRE(status(id).container.state == ContainerState::kRunning);
  clock.advance(10s);
  auto stats = rt->listContainerStats({});
  REQUIRE(stats.isOk());
  REQUIRE(stats->size() == 1);
  CHECK(stats->front().id == id);
  CHECK(stats->front().name == "main");
  CHECK(*stats->front().usage.memoryWorkingSetBytes == 4u << 20);
  CHECK(*stats->front().usage.cpuCoreNanos == 100'000'000);  // 10 millicores for 10 s
  auto pods = rt->listPodSandboxStats({});
  REQUIRE(pods.isOk());
  REQUIRE(pods->size() == 1);
  CHECK(pods->front().uid == "u1");
  CHECK(*pods->front().usage.memoryWorkingSetBytes == 4u << 20);
  CHECK(pods->front().containers.size() == 1);
  auto exec = rt->exec({id, {"sh"}, true, true, false, true});
  REQUIRE_FALSE(exec.isOk());
  CHECK(exec.status().code() == core::Code::kUnimplemented);
  CHECK(exec.status().message().find("the hollow runtime runs no processes") != std::string::npos);
  CHECK(rt->attach({id, {}, true, true, false, true}).status().code() ==
        core::Code::kUnimplemented);
  REQUIRE(rt->stopContainer(id, 1s).isOk());
  stats = rt->listContainerStats({});
  REQUIRE(stats->size() == 1);
  CHECK_FALSE(stats->front().usage.memoryWorkingSetBytes.has_value());
}

}  // namespace
}  // namespace outpost::test
