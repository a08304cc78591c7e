// Image pre-pull (docs/rollouts.md, "On the node"): an `imageprepull` desired object's images
// pulled and reported per image, on the fake runtime with a manual clock (the pull back-off) and
// against a real containerd (a present image, a reference that cannot be pulled).

#include "image_prepull.h"

#include <doctest/doctest.h>

#include "agent_env.h"
#include "cri_fixture.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

json prePull(const std::string& name, std::vector<std::string> images, const std::string& version) {
  return {{"apiVersion", "outpost.io/v1"},
          {"kind", "ImagePrePull"},
          {"metadata", {{"name", name}, {"namespace", "default"}, {"resourceVersion", version}}},
          {"spec", {{"images", images}}}};
}

// "<image> <state> <reason>" of each image of a status, in order.
std::vector<std::string> states(const json& status) {
  std::vector<std::string> out;
  if (!status.is_object()) return out;
  for (const auto& i : status.value("images", json::array()))
    out.push_back(i.value("image", "") + " " + i.value("state", "") + " " + i.value("reason", ""));
  return out;
}

TEST_CASE("an ImagePrePull names its images; anything else is refused naming what is wrong") {
  auto ok = deploy::parsePrePull(
      prePull("p", {"nginx:1.27", "reg.local:5000/a/b@sha256:ab"}, "1").dump());
  REQUIRE(ok.isOk());
  CHECK(*ok == std::vector<std::string>{"nginx:1.27", "reg.local:5000/a/b@sha256:ab"});
  CHECK(deploy::parsePrePull("[]").status().message().find("JSON object") != std::string::npos);
  CHECK(deploy::parsePrePull(R"({"spec":{}})").status().message().find("spec.images") !=
        std::string::npos);
  CHECK(deploy::parsePrePull(R"({"spec":{"images":["a", 3]}})")
            .status()
            .message()
            .find("spec.images[1]") != std::string::npos);
  CHECK(deploy::parsePrePull(R"({"spec":{"images":["a b"]}})").status().message().find("\"a b\"") !=
        std::string::npos);
  CHECK(deploy::parsePrePull(R"({"spec":{"images":[""]}})").status().message().find("empty") !=
        std::string::npos);
  std::vector<std::string> many(deploy::kMaxPrePullImages + 1, "img:1");
  CHECK(deploy::parsePrePull(prePull("p", many, "1").dump()).status().message().find("at most") !=
        std::string::npos);
}

TEST_CASE(
    "images are pulled ahead of use: present, or failed with the reason and pulled again "
    "after the pull back-off; a deleted object is forgotten") {
  FakeRuntime rt;
  rt.addImage("img:1");
  rt.setPullable("img:2");
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  deploy::ReconcilerConfig cfg;
  cfg.stateDir = state.path().string();
  cfg.pullBackoffInitial = 10s;
  const std::string key = "default/imageprepull/wave1";
  desired.put(key, prePull("wave1", {"img:1", "img:2", "img:late"}, "21").dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());

  json status = sink.object(key);
  CHECK(status["observedVersion"] == "21");
  CHECK(states(status) == std::vector<std::string>{"img:1 present ", "img:2 present ",
                                                   "img:late failed ErrImagePull"});
  CHECK(status["images"][2]["message"].get<std::string>().find("no network") != std::string::npos);
  // The pull that took place was announced first.
  bool sawPulling = false;
  for (const auto& s : sink.objectReports(key)) {
    for (const auto& i : s["images"])
      sawPulling = sawPulling || (i["image"] == "img:2" && i["state"] == "pulling");
  }
  CHECK(sawPulling);
  CHECK(rt.imageStatus("img:2")->has_value());

  // Within the back-off nothing is pulled again, however often the reconciler passes.
  rt.setPullable("img:late");
  clock.advance(9s);
  agent.pass();
  CHECK(states(sink.object(key))[2] == "img:late failed ErrImagePull");
  clock.advance(1s);
  agent.pass();
  CHECK(states(sink.object(key))[2] == "img:late present ");

  // A new version: what is known of its images stays, a new one is pulled.
  rt.setPullable("img:3");
  desired.put(key, prePull("wave1", {"img:1", "img:3"}, "22").dump());
  agent.changed({key});
  CHECK(sink.object(key)["observedVersion"] == "22");
  CHECK(states(sink.object(key)) == std::vector<std::string>{"img:1 present ", "img:3 present "});

  // An object that cannot be acted on says why.
  const std::string bad = "default/imageprepull/bad";
  desired.put(bad, R"({"metadata":{"name":"bad","resourceVersion":"5"},"spec":{"images":"x"}})");
  agent.changed({bad});
  CHECK(sink.object(bad)["error"].get<std::string>().find("spec.images") != std::string::npos);
  CHECK(sink.object(bad)["observedVersion"] == "5");

  // Deleted: forgotten (no more status), the images stay.
  desired.erase(key);
  agent.changed({key});
  auto reports = sink.objectReports(key).size();
  desired.put(key, prePull("wave1", {"img:1", "img:3"}, "22").dump());
  agent.pass();  // a resync re-reads every object: it is known again, as new
  CHECK(sink.objectReports(key).size() == reports + 1);
  CHECK(rt.imageStatus("img:3")->has_value());
}

TEST_CASE(
    "against containerd: a present image is present, an image that cannot be pulled fails "
    "with the runtime's reason") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/imageprepull/cri";
  // Port 1 on the loopback: nothing listens, the pull is refused at once.
  const std::string missing = "127.0.0.1:1/outpost/none:1";
  f.desired.put(key, prePull("cri", {ContainerdHarness::kBusybox, missing}, "31").dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return states(f.sink.object(key)).size() == 2; }, 30s));
  json status = f.sink.object(key);
  CHECK(status["observedVersion"] == "31");
  CHECK(states(status)[0] == std::string(ContainerdHarness::kBusybox) + " present ");
  CHECK(states(status)[1] == missing + " failed ErrImagePull");
  CHECK(status["images"][1]["message"].get<std::string>().find("127.0.0.1:1") != std::string::npos);
}

}  // namespace
}  // namespace outpost::test
