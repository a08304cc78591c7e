// The wave logic on a fleet in memory (fake_fleet.h): what an operator sees in the rollout's state
// and in what each node is told.
#include "rollout/controller.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "fake_fleet.h"

using namespace outpost::agent::rollout;
using nlohmann::json;
using outpost::test::FakeFleet;

namespace {

std::string rolloutText(const std::string& strategy, const std::string& image = "web:2") {
  return "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: web-v2}\n"
         "spec:\n  target: {group: fleet}\n  strategy:\n" +
         strategy +
         "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web}\n"
         "spec: {containers: [{name: main, image: \"" +
         image + "\"}]}\n";
}

RolloutSpec spec(const std::string& strategy, const std::string& image = "web:2") {
  auto s = parseRolloutFile(rolloutText(strategy, image), "web-v2.yaml");
  REQUIRE_MESSAGE(s.isOk(), s.status().message());
  return std::move(s).value();
}

// The group runs web:1 everywhere before the rollout.
void seedGroup(FakeFleet& f) {
  REQUIRE(
      f.publish(
           {true, "fleet"},
           {{"default/pod/web",
             R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"main","image":"web:1"}]}})"}})
          .isOk());
  f.react();
}

// The rollout of one wave of every node (canary 0, 100 %) with `more` strategy lines, planned at
// `now`.
RolloutState oneWave(FakeFleet& f, int64_t now, const std::string& more = "") {
  return planRollout(spec("    canary: 0\n    waves: [\"100%\"]\n" + more), f, now).value();
}

// Steps (one second apart, the fleet reacting in between) until the rollout ends or pauses.
int64_t run(Controller& c, FakeFleet& f, int64_t& now, int maxSteps = 500) {
  for (int i = 0; i < maxSteps; ++i) {
    (void)c.step(now);
    f.react();
    if (c.state().finished() || c.state().phase == Phase::kPaused) return now;
    now += 1000;
  }
  return now;
}

size_t nodesIn(const RolloutState& s, NodeState st) {
  size_t n = 0;
  for (const auto& r : s.nodes) n += r.state == st ? 1 : 0;
  return n;
}

bool noNodeLeftovers(FakeFleet& f) {
  for (const auto& [scope, objs] : f.desired) {
    if (scope.rfind("node:", 0) == 0 && !objs.empty()) return false;
  }
  return true;
}

const char* kWaves =
    "    canary: 1\n    waves: [\"20%\", \"100%\"]\n    nodeTimeoutSeconds: 60\n"
    "    prePullTimeoutSeconds: 30\n";

}  // namespace

TEST_CASE(
    "30 nodes, canary 1 then 20% then 100%: waves of 1, 5 and 24; all end on the new version "
    "with no object left in a node's own scope") {
  FakeFleet f;
  f.addNodes(30);
  seedGroup(f);
  int64_t now = 1'000'000;
  auto plan = planRollout(spec(kWaves), f, now);
  REQUIRE(plan.isOk());
  REQUIRE(plan->waves.size() == 3);
  CHECK(plan->waves[0].size == 1);
  CHECK(plan->waves[1].size == 5);
  CHECK(plan->waves[2].size == 24);
  CHECK(plan->previous.count("default/pod/web") == 1);
  Controller c(f, std::move(plan).value());
  run(c, f, now);
  REQUIRE(c.state().phase == Phase::kSucceeded);
  CHECK(nodesIn(c.state(), NodeState::kHealthy) == 30);
  CHECK(noNodeLeftovers(f));
  json group = json::parse(*f.groupObject("fleet", "default/pod/web"));
  CHECK(group["spec"]["containers"][0]["image"] == "web:2");
  CHECK(group["metadata"]["annotations"]["outpost.io/soak-seconds"] == "0");
  for (const auto& [name, n] : f.fleet) {
    CHECK(f.publishes["node:" + name] == 1);  // each node switched once
    CHECK(f.pod(name, "default/pod/web")->health == "healthy");
  }
  // The state on the "broker" says the same.
  auto saved = stateFromJson(f.savedState);
  REQUIRE(saved.isOk());
  CHECK(saved->phase == Phase::kSucceeded);
}

TEST_CASE("a wave's nodes switch only once every one of them has the images") {
  FakeFleet f;
  f.addNodes(10);
  seedGroup(f);
  int64_t now = 1'000'000;
  Controller c(f, planRollout(spec(kWaves), f, now).value());
  (void)c.step(now);  // the canary is asked to pre-pull; nothing switches yet
  CHECK(c.state().nodes[0].state == NodeState::kPrePulling);
  CHECK(f.publishes["node:node-00"] == 0);
  f.react();
  (void)c.step(now += 1000);
  CHECK(c.state().nodes[0].state == NodeState::kUpdating);
  CHECK(f.publishes["node:node-00"] == 1);
}

TEST_CASE("a version that crashes: the rollout stops at the canary, rolls it back and says why") {
  FakeFleet f;
  f.addNodes(30);
  seedGroup(f);
  for (auto& [name, n] : f.fleet) n.unhealthy = true;
  int64_t now = 1'000'000;
  Controller c(f, planRollout(spec(kWaves, "web:exits-1"), f, now).value());
  run(c, f, now);
  const RolloutState& s = c.state();
  REQUIRE(s.phase == Phase::kRolledBack);
  CHECK(s.reason == "FailureThreshold");
  CHECK(s.message.find("wave 0 (canary): 1 of 1 nodes failed") != std::string::npos);
  CHECK(s.message.find("CrashLoopBackOff") != std::string::npos);
  CHECK(s.nodes[0].state == NodeState::kRolledBack);
  CHECK(s.nodes[0].reason == "CrashLoopBackOff");
  CHECK(nodesIn(s, NodeState::kPending) == 29);
  CHECK(noNodeLeftovers(f));
  for (const auto& [name, n] : f.fleet) {
    CHECK(f.publishes["node:" + name] == (name == "node-00" ? 1 : 0));
    // The group's object (the old version) again, everywhere.
    auto pod = f.pod(name, "default/pod/web");
    REQUIRE_MESSAGE(pod.has_value(), name);
    CHECK(pod->health == "healthy");
    CHECK(f.stored[name]["default/pod/web"].second == "group:fleet");
  }
  json group = json::parse(*f.groupObject("fleet", "default/pod/web"));
  CHECK(group["spec"]["containers"][0]["image"] == "web:1");
}

TEST_CASE("onFailure pause: the rollout pauses; resume accepts the failure and goes on") {
  FakeFleet f;
  f.addNodes(10);
  seedGroup(f);
  f.fleet["node-00"].unhealthy = true;
  int64_t now = 1'000'000;
  Controller c(f,
               planRollout(spec(std::string(kWaves) + "    onFailure: pause\n"), f, now).value());
  run(c, f, now);
  REQUIRE(c.state().phase == Phase::kPaused);
  CHECK(c.state().reason == "FailureThreshold");
  CHECK(c.state().nodes[0].state == NodeState::kFailed);
  REQUIRE(c.resume().isOk());
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(nodesIn(c.state(), NodeState::kHealthy) == 9);
}

TEST_CASE(
    "a controller that restarts from the saved state goes on where it was: no healthy node "
    "is switched twice") {
  FakeFleet f;
  f.addNodes(30);
  seedGroup(f);
  int64_t now = 1'000'000;
  auto c = std::make_unique<Controller>(f, planRollout(spec(kWaves), f, now).value());
  // Into the second wave: the canary healthy, some of wave 1 switched.
  for (int i = 0; i < 100 && c->state().wave < 1; ++i) {
    (void)c->step(now += 1000);
    f.react();
  }
  (void)c->step(now += 1000);  // wave 1, pre-pulled, switches
  REQUIRE(c->state().wave == 1);
  CHECK(c->state().nodes[0].state == NodeState::kHealthy);
  CHECK(c->state().nodes[1].state == NodeState::kUpdating);
  // The controller dies; a new one reads the state from the broker.
  std::string saved = f.savedState;
  c.reset();
  f.react();
  auto state = stateFromJson(saved);
  REQUIRE(state.isOk());
  Controller again(f, std::move(state).value());
  run(again, f, now);
  REQUIRE(again.state().phase == Phase::kSucceeded);
  for (const auto& [name, n] : f.fleet) CHECK(f.publishes["node:" + name] == 1);
  CHECK(noNodeLeftovers(f));
}

TEST_CASE("a controller killed between publishing and saving adopts what it had published") {
  FakeFleet f;
  f.addNodes(3);
  seedGroup(f);
  int64_t now = 1'000'000;
  auto plan = oneWave(f, now);
  Controller first(f, plan);
  (void)first.step(now);
  f.react();
  (void)first.step(now += 1000);  // switched all three
  for (const auto& [name, n] : f.fleet) REQUIRE(f.publishes["node:" + name] == 1);
  Controller second(f, plan);  // the state saved before the switch
  run(second, f, now);
  CHECK(second.state().phase == Phase::kSucceeded);
  for (const auto& [name, n] : f.fleet) CHECK(f.publishes["node:" + name] == 1);
}

TEST_CASE("an offline node: waited for up to the node timeout, then failed or skipped as set") {
  for (std::string onOffline : {"fail", "continue"}) {
    CAPTURE(onOffline);
    FakeFleet f;
    f.addNodes(5);
    seedGroup(f);
    f.fleet["node-02"].online = false;
    int64_t now = 1'000'000;
    std::string strategy =
        "    canary: 0\n    waves: [\"100%\"]\n    nodeTimeoutSeconds: 30\n    onOffline: " +
        onOffline + "\n    maxFailures: {perWave: 1, overall: 1}\n";
    Controller c(f, planRollout(spec(strategy), f, now).value());
    int64_t start = now;
    run(c, f, now);
    REQUIRE(c.state().phase == Phase::kSucceeded);
    CHECK(now - start >= 30000);  // it waited for the node
    const NodeRecord& n = c.state().nodes[2];
    CHECK(n.reason == "Offline");
    CHECK(n.state == (onOffline == "fail" ? NodeState::kFailed : NodeState::kOffline));
    CHECK(nodesIn(c.state(), NodeState::kHealthy) == 4);
    CHECK(noNodeLeftovers(f));
  }
}

TEST_CASE("an offline node that comes back within the timeout is updated") {
  FakeFleet f;
  f.addNodes(3);
  seedGroup(f);
  f.fleet["node-01"].online = false;
  int64_t now = 1'000'000;
  Controller c(f, oneWave(f, now));
  for (int i = 0; i < 5; ++i) {
    (void)c.step(now += 1000);
    f.react();
  }
  CHECK(c.state().nodes[1].state == NodeState::kOffline);
  f.fleet["node-01"].online = true;
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(nodesIn(c.state(), NodeState::kHealthy) == 3);
}

TEST_CASE(
    "a node held by its maintenance window: the rollout waits (onHeld wait) until it is "
    "updated") {
  FakeFleet f;
  f.addNodes(3);
  seedGroup(f);
  f.fleet["node-01"].held = true;
  int64_t now = 1'000'000;
  Controller c(f, oneWave(f, now, "    nodeTimeoutSeconds: 10\n"));
  for (int i = 0; i < 60; ++i) {
    (void)c.step(now += 1000);
    f.react();
  }
  CHECK(c.state().phase == Phase::kProgressing);  // no timeout for a held node
  CHECK(c.state().nodes[1].state == NodeState::kHeld);
  CHECK(c.state().nodes[1].reason == "MaintenanceWindow");
  f.fleet["node-01"].held = false;  // the window opens
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(nodesIn(c.state(), NodeState::kHealthy) == 3);
}

TEST_CASE("onHeld continue: the rollout goes on without the held node") {
  FakeFleet f;
  f.addNodes(3);
  seedGroup(f);
  f.fleet["node-01"].held = true;
  int64_t now = 1'000'000;
  Controller c(f, oneWave(f, now, "    onHeld: continue\n"));
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(c.state().nodes[1].state == NodeState::kHeld);
  CHECK(nodesIn(c.state(), NodeState::kHealthy) == 2);
}

TEST_CASE("pre-pull: a node whose image cannot be pulled is not switched and counts as failed") {
  FakeFleet f;
  f.addNodes(5);
  seedGroup(f);
  f.fleet["node-03"].pullFails = true;
  int64_t now = 1'000'000;
  Controller c(f, oneWave(f, now, "    maxFailures: {perWave: 1, overall: 1}\n"));
  run(c, f, now);
  REQUIRE(c.state().phase == Phase::kSucceeded);
  const NodeRecord& n = c.state().nodes[3];
  CHECK(n.state == NodeState::kFailed);
  CHECK(n.reason == "ErrImagePull");
  CHECK(n.message.find("not switched") != std::string::npos);
  CHECK(f.publishes["node:node-03"] == 0);
  CHECK(nodesIn(c.state(), NodeState::kHealthy) == 4);
}

TEST_CASE("pre-pull that never answers: failed at the pre-pull timeout, the others switch") {
  FakeFleet f;
  f.addNodes(4);
  seedGroup(f);
  f.fleet["node-00"].silent = true;
  int64_t now = 1'000'000;
  Controller c(
      f, oneWave(f, now,
                 "    prePullTimeoutSeconds: 20\n    maxFailures: {overall: 1, perWave: 1}\n"));
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(c.state().nodes[0].reason == "PrePullTimeout");
  CHECK(f.publishes["node:node-00"] == 0);
}

TEST_CASE("maxNodesPerMinute spaces the switches") {
  FakeFleet f;
  f.addNodes(10);
  seedGroup(f);
  int64_t now = 1'000'000;
  Controller c(f, oneWave(f, now, "    maxNodesPerMinute: 60\n"));
  (void)c.step(now);
  f.react();
  (void)c.step(now += 1000);  // the first switch
  size_t switched = 0;
  for (const auto& [name, n] : f.fleet) switched += f.publishes["node:" + name];
  CHECK(switched <= 2);
  int64_t start = now;
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(now - start >= 7000);  // 60 per minute: one a second
}

TEST_CASE("pause, resume and abort by the operator") {
  FakeFleet f;
  f.addNodes(10);
  seedGroup(f);
  int64_t now = 1'000'000;
  Controller c(f, planRollout(spec(kWaves), f, now).value());
  (void)c.step(now);
  c.pause("");
  (void)c.step(now += 1000);
  CHECK(c.state().phase == Phase::kPaused);
  CHECK(c.state().reason == "Paused");
  REQUIRE(c.resume().isOk());
  for (int i = 0; i < 4; ++i) {
    f.react();
    (void)c.step(now += 1000);
  }
  REQUIRE(c.abort("").isOk());
  (void)c.step(now += 1000);
  f.react();
  CHECK(c.state().phase == Phase::kRolledBack);
  CHECK(c.state().reason == "Aborted");
  CHECK(noNodeLeftovers(f));
  json group = json::parse(*f.groupObject("fleet", "default/pod/web"));
  CHECK(group["spec"]["containers"][0]["image"] == "web:1");
}

TEST_CASE("undo: the group's objects from before the rollout, new ones withdrawn") {
  FakeFleet f;
  f.addNodes(4);
  seedGroup(f);
  int64_t now = 1'000'000;
  std::string text =
      rolloutText("    canary: 1\n    waves: [\"100%\"]\n") +
      "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {a: b}\n";
  Controller c(f, planRollout(parseRolloutFile(text, "f").value(), f, now).value());
  run(c, f, now);
  REQUIRE(c.state().phase == Phase::kSucceeded);
  CHECK(f.groupObject("fleet", "default/configmap/extra"));
  REQUIRE(c.undo(now).isOk());
  CHECK(c.state().phase == Phase::kUndone);
  json group = json::parse(*f.groupObject("fleet", "default/pod/web"));
  CHECK(group["spec"]["containers"][0]["image"] == "web:1");
  CHECK_FALSE(f.groupObject("fleet", "default/configmap/extra"));
}

TEST_CASE("a plan is refused without nodes, or when a node has the object in its own scope") {
  FakeFleet f;
  auto none = planRollout(spec(kWaves), f, 0);
  REQUIRE_FALSE(none.isOk());
  CHECK(none.status().message().find("no node of group fleet") != std::string::npos);
  f.addNodes(2);
  REQUIRE(f.publish({false, "node-01"}, {{"default/pod/web", "{}"}}).isOk());
  auto own = planRollout(spec(kWaves), f, 0);
  REQUIRE_FALSE(own.isOk());
  CHECK(own.status().message().find("node-01 has default/pod/web in its own scope") !=
        std::string::npos);
}

TEST_CASE("a publish that fails is tried again at the next step") {
  FakeFleet f;
  f.addNodes(2);
  seedGroup(f);
  int64_t now = 1'000'000;
  Controller c(f, oneWave(f, now));
  f.failPublish = true;
  CHECK_FALSE(c.step(now).isOk());
  f.failPublish = false;
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
}

TEST_CASE(
    "the switch waits until every node of the wave has its images, at most the pre-pull "
    "timeout") {
  FakeFleet f;
  f.addNodes(3);
  seedGroup(f);
  f.fleet["node-01"].silent = true;  // never answers its pre-pull
  int64_t now = 1'000'000;
  Controller c(
      f, oneWave(f, now,
                 "    prePullTimeoutSeconds: 20\n    maxFailures: {perWave: 1, overall: 1}\n"));
  for (int i = 0; i < 15; ++i) {
    (void)c.step(now += 1000);
    f.react();
  }
  CHECK(c.state().nodes[0].pulled);
  CHECK(c.state().nodes[0].state == NodeState::kPrePulling);
  CHECK(f.publishes["node:node-00"] == 0);
  CHECK(f.publishes["node:node-02"] == 0);
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(c.state().nodes[1].reason == "PrePullTimeout");
  CHECK(f.publishes["node:node-00"] == 1);
  CHECK(f.publishes["node:node-02"] == 1);
}

TEST_CASE("an unhealthy report that does not last (a step the node retries) fails no node") {
  FakeFleet f;
  f.addNodes(3);
  seedGroup(f);
  f.fleet["node-01"].unhealthyOnce = 3;  // three passes, about 3 s
  int64_t now = 1'000'000;
  Controller c(f, oneWave(f, now));
  run(c, f, now);
  CHECK(c.state().phase == Phase::kSucceeded);
  CHECK(nodesIn(c.state(), NodeState::kHealthy) == 3);
}

namespace {

// A rollout of an AgentUpgrade alone: no images, so no pre-pull; the nodes' upgrade status decides.
RolloutSpec upgradeSpec(const std::string& version) {
  std::string text =
      "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: agent}\n"
      "spec:\n  target: {group: fleet}\n  strategy:\n" +
      std::string(kWaves) +
      "---\napiVersion: outpost.io/v1\nkind: AgentUpgrade\nmetadata: {name: agent}\n"
      "spec:\n  version: " +
      version +
      "\n  packages: [{format: deb, arch: amd64, url: \"http://127.0.0.1:1/a.deb\", sha256: " +
      std::string(64, 'a') + ", signature: \"" + std::string(86, 'A') + "==\"}]\n";
  auto s = parseRolloutFile(text, "agent.yaml");
  REQUIRE_MESSAGE(s.isOk(), s.status().message());
  return std::move(s).value();
}

}  // namespace

TEST_CASE("an AgentUpgrade rolls out in waves; a node is healthy once it reports healthy") {
  FakeFleet f;
  f.addNodes(10);
  int64_t now = 1'000'000;
  Controller c(f, planRollout(upgradeSpec("0.3.0-1"), f, now).value());
  run(c, f, now);
  const RolloutState& s = c.state();
  REQUIRE(s.phase == Phase::kSucceeded);
  CHECK(nodesIn(s, NodeState::kHealthy) == 10);
  for (const auto& [name, n] : f.fleet) {
    auto r = f.agentUpgrade(name, "default/agentupgrade/agent");
    REQUIRE_MESSAGE(r.has_value(), name);
    CHECK(r->phase == "healthy");
    CHECK(r->version == "0.3.0-1");
  }
}

TEST_CASE("an AgentUpgrade the canary rolls back stops the rollout there, with the node's reason") {
  FakeFleet f;
  f.addNodes(10);
  for (auto& [name, n] : f.fleet) n.unhealthy = true;
  int64_t now = 1'000'000;
  Controller c(f, planRollout(upgradeSpec("0.3.0-1"), f, now).value());
  run(c, f, now);
  const RolloutState& s = c.state();
  REQUIRE(s.phase == Phase::kRolledBack);
  CHECK(s.nodes[0].reason == "RolledBack");
  CHECK(s.message.find("was not healthy within 120s") != std::string::npos);
  CHECK(nodesIn(s, NodeState::kPending) == 9);
  CHECK(f.publishes["node:node-01"] == 0);
}
