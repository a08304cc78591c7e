// Deleting pods against a real containerd: `kubectl delete` (metadata.deletionTimestamp) stops a
// pod's containers within its grace period and never starts them again; deleted pods stop in
// parallel, off deploy's loop.

#include <doctest/doctest.h>

#include <mutex>

#include "cri_fixture.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A container that ignores SIGTERM: only the SIGKILL at the end of the grace period stops it.
constexpr const char* kStubborn = "trap '' TERM; while true; do sleep 1; done";

// The runtime, with what happened when, in order: "stop <id> begin", "stop <id> end",
// "start <id>". Every call goes to the real runtime.
class RecordingRuntime final : public deploy::Runtime {
 public:
  explicit RecordingRuntime(deploy::Runtime& real) : real_(real) {}
  std::vector<std::string> log() {
    std::lock_guard lock(mu_);
    return log_;
  }
  size_t indexOf(const std::string& line) {
    auto l = log();
    auto it = std::find(l.begin(), l.end(), line);
    return it == l.end() ? std::string::npos : static_cast<size_t>(it - l.begin());
  }

  core::Result<deploy::VersionInfo> version() override { return real_.version(); }
  core::Result<std::string> runPodSandbox(const deploy::PodSandboxConfig& c,
                                          const std::string& h) override {
    return real_.runPodSandbox(c, h);
  }
  core::Status stopPodSandbox(const std::string& id) override { return real_.stopPodSandbox(id); }
  core::Status removePodSandbox(const std::string& id) override {
    return real_.removePodSandbox(id);
  }
  core::Result<deploy::PodSandboxStatus> podSandboxStatus(const std::string& id) override {
    return real_.podSandboxStatus(id);
  }
  core::Result<std::vector<deploy::PodSandbox>> listPodSandbox(
      const deploy::SandboxFilter& f) override {
    return real_.listPodSandbox(f);
  }
  core::Result<std::string> createContainer(const std::string& sandbox,
                                            const deploy::ContainerConfig& c,
                                            const deploy::PodSandboxConfig& s) override {
    return real_.createContainer(sandbox, c, s);
  }
  core::Status startContainer(const std::string& id) override {
    auto s = real_.startContainer(id);
    note("start " + id);
    return s;
  }
  core::Status stopContainer(const std::string& id, std::chrono::seconds grace) override {
    note("stop " + id + " begin");
    auto s = real_.stopContainer(id, grace);
    note("stop " + id + " end");
    return s;
  }
  core::Status removeContainer(const std::string& id) override { return real_.removeContainer(id); }
  core::Result<std::vector<deploy::Container>> listContainers(
      const deploy::ContainerFilter& f) override {
    return real_.listContainers(f);
  }
  core::Result<deploy::ContainerStatus> containerStatus(const std::string& id) override {
    return real_.containerStatus(id);
  }
  core::Result<deploy::ExecResult> execSync(const std::string& id,
                                            const std::vector<std::string>& cmd,
                                            std::chrono::seconds timeout) override {
    return real_.execSync(id, cmd, timeout);
  }
  core::Result<std::optional<deploy::ImageInfo>> imageStatus(const std::string& image) override {
    return real_.imageStatus(image);
  }
  core::Result<std::string> exec(const deploy::StreamRequest& r) override { return real_.exec(r); }
  core::Result<std::string> attach(const deploy::StreamRequest& r) override {
    return real_.attach(r);
  }
  core::Result<std::vector<deploy::ContainerStats>> listContainerStats(
      const deploy::StatsFilter& f) override {
    return real_.listContainerStats(f);
  }
  core::Result<std::vector<deploy::PodSandboxStats>> listPodSandboxStats(
      const deploy::StatsFilter& f) override {
    return real_.listPodSandboxStats(f);
  }
  core::Result<std::string> pullImage(const std::string& image) override {
    return real_.pullImage(image);
  }

 private:
  void note(std::string line) {
    std::lock_guard lock(mu_);
    log_.push_back(std::move(line));
  }
  deploy::Runtime& real_;
  std::mutex mu_;
  std::vector<std::string> log_;
};

json deleting(json pod, int grace) {
  pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  pod["metadata"]["deletionGracePeriodSeconds"] = grace;
  return pod;
}

TEST_CASE(
    "kubectl delete: the pod's containers stop within the deletion's grace period, its "
    "status says terminated, it is never started again (not after a restart either)") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/going";
  auto pod = busyboxPod("going", "uid-going", ContainerdHarness::kBusybox, {{"app", kStubborn}});
  pod["spec"]["terminationGracePeriodSeconds"] = 60;  // the deletion's 2 s wins
  f.desired.put(key, pod.dump());
  {
    auto agent = f.agent(f.clock);
    REQUIRE(agent->start());
    REQUIRE(waitFor([&] { return f.allRunning(key, {"app"}); }, 30s));
    CHECK(f.sink.terminated().empty());

    f.desired.put(key, deleting(pod, 2).dump());
    agent->changed({key});
    // Far less than the spec's 60 s: only the deletion's grace period, then SIGKILL.
    REQUIRE(waitFor([&] { return !f.sink.terminated().empty(); }, 30s));
    CHECK(f.sink.terminated() == std::vector<std::string>{key + " uid-going"});
    CHECK(f.containers("uid-going", true).empty());
    CHECK(f.sink.state(key, "app") == "terminated");
    auto status = f.sink.pod(key)["containerStatuses"][0]["state"]["terminated"];
    CHECK(status["exitCode"] == 137);  // it ignored SIGTERM: killed when the grace period ended

    // Later passes leave it stopped and ask for the deletion no second time.
    agent->pass();
    agent->pass();
    CHECK(f.containers("uid-going", true).empty());
    CHECK(f.containers("uid-going").size() == 1);
    CHECK(f.sink.terminated().size() == 1);
  }
  {
    // An agent restart (the cloud's delete not yet arrived): the stored pod is not started.
    auto agent = f.agent(f.clock);
    REQUIRE(agent->start());
    agent->pass();
    CHECK(f.containers("uid-going", true).empty());
    CHECK(f.containers("uid-going").size() == 1);

    // The cloud's delete: everything of it goes.
    f.desired.erase(key);
    agent->changed({key});
    REQUIRE(waitFor([&] { return f.sink.removed(key); }, 30s));
    CHECK(f.containers("uid-going").empty());
    CHECK(f.sandboxes("uid-going").empty());
  }
}

TEST_CASE("deleted pods stop in parallel, off the loop: another pod starts meanwhile") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  RecordingRuntime recording(*f.runtime);
  const std::string a = "default/pod/stop-a", b = "default/pod/stop-b", c = "default/pod/new-c";
  auto podA = busyboxPod("stop-a", "uid-stop-a", ContainerdHarness::kBusybox, {{"x", kStubborn}});
  auto podB = busyboxPod("stop-b", "uid-stop-b", ContainerdHarness::kBusybox, {{"x", kStubborn}});
  podA["spec"]["terminationGracePeriodSeconds"] = 3;
  podB["spec"]["terminationGracePeriodSeconds"] = 3;
  f.desired.put(a, podA.dump());
  f.desired.put(b, podB.dump());
  DeployAgent agent(recording, f.desired, f.sink, f.clock, f.config);
  REQUIRE(agent.start());
  REQUIRE(waitFor([&] { return f.allRunning(a, {"x"}) && f.allRunning(b, {"x"}); }, 30s));
  std::string idA = f.containers("uid-stop-a", true).at(0).id;
  std::string idB = f.containers("uid-stop-b", true).at(0).id;

  // The cloud deletes both (and wants a third pod) at once.
  f.desired.erase(a);
  f.desired.erase(b);
  f.desired.put(
      c, busyboxPod("new-c", "uid-new-c", ContainerdHarness::kBusybox, {{"y", kLoop}}).dump());
  agent.changed({a, b, c});
  CHECK(agent.loopAnswers(1s));
  REQUIRE(waitFor([&] { return f.sink.removed(a) && f.sink.removed(b); }, 30s));
  REQUIRE(waitFor([&] { return f.allRunning(c, {"y"}); }, 30s));

  auto log = recording.log();
  INFO("runtime calls: ", json(log).dump());
  auto beginA = recording.indexOf("stop " + idA + " begin");
  auto endA = recording.indexOf("stop " + idA + " end");
  auto beginB = recording.indexOf("stop " + idB + " begin");
  auto endB = recording.indexOf("stop " + idB + " end");
  REQUIRE(beginA != std::string::npos);
  REQUIRE(beginB != std::string::npos);
  // Each waited its whole grace period (SIGTERM is ignored), yet both at the same time.
  CHECK(beginB < endA);
  CHECK(beginA < endB);
  // And the third pod's container started while they were still stopping.
  std::string idC = f.containers("uid-new-c", true).at(0).id;
  CHECK(recording.indexOf("start " + idC) < std::min(endA, endB));
}

}  // namespace
}  // namespace outpost::test
