// outpostctl rollout against 30 hollow agents (real outpostd processes) on one mosquitto: what an
// operator sees of a rollout that succeeds, one whose version crashes, one whose controller is
// killed mid-wave, one whose image cannot be pulled, one with a node on hold and one with a node
// offline.
#include <doctest/doctest.h>

#include <csignal>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/agent/exit_codes.h"
#include "support/hollow_fleet.h"
#include "support/mqtt_client.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr size_t kNodes = 30;
const std::string kPodKey = "default/pod/web";

std::string outpostctl() { return (binDir() / "outpostctl").string(); }

std::string rolloutYaml(const std::string& name, const std::string& image,
                        const std::string& strategy) {
  return "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: " + name +
         "}\nspec:\n  target: {group: fleet}\n  strategy:\n" + strategy + "---\n" +
         podYaml("web", image);
}

// The broker as the cloud sees it: the last message on each topic of interest.
class Watch {
 public:
  explicit Watch(const std::string& uri) : client_(uri) {
    client_.subscribe("outpost/v1/nodes/+/desired/#");
    client_.subscribe("outpost/v1/nodes/+/manifest");
    client_.subscribe("outpost/v1/groups/+/desired/#");
    client_.subscribe("outpost/v1/rollouts/+/state");
  }
  std::string last(const std::string& topic) const {
    auto all = client_.messagesOn(topic);
    return all.empty() ? std::string() : all.back().payload;
  }
  // Distinct objects (not deletions) with `image` published to the node's own scope for `key`.
  size_t nodeScopePublishes(const std::string& node, const std::string& key,
                            const std::string& image) const {
    std::set<std::string> versions;
    for (const auto& m : client_.messagesOn("outpost/v1/nodes/" + node + "/desired/" + key)) {
      if (m.payload.empty()) continue;
      json env = json::parse(m.payload, nullptr, false);
      if (!env.is_object()) continue;
      json c = env["content"].is_string()
                   ? json::parse(env["content"].get<std::string>(), nullptr, false)
                   : env["content"];
      if (c.is_object() && c["spec"]["containers"][0].value("image", "") == image)
        versions.insert(env["header"].value("resourceversion", ""));
    }
    return versions.size();
  }
  json state(const std::string& rollout) const {
    return json::parse(last("outpost/v1/rollouts/" + rollout + "/state"), nullptr, false);
  }
  std::string groupImage(const std::string& key) const {
    json env = json::parse(last("outpost/v1/groups/fleet/desired/" + key), nullptr, false);
    if (!env.is_object()) return "";
    json c = env["content"].is_string()
                 ? json::parse(env["content"].get<std::string>(), nullptr, false)
                 : env["content"];
    return c.is_object() ? c["spec"]["containers"][0].value("image", "") : "";
  }
  std::string groupVersion(const std::string& key) const {
    json env = json::parse(last("outpost/v1/groups/fleet/desired/" + key), nullptr, false);
    return env.is_object() ? env["header"].value("resourceversion", "") : "";
  }
  // No node keeps `key` in its own scope: its retained object cleared, its manifest without it.
  size_t leftovers(const HollowFleet& fleet, const std::string& key) const {
    size_t n = 0;
    for (size_t i = 0; i < fleet.size(); ++i) {
      std::string node = fleet.name(i);
      bool object = !last("outpost/v1/nodes/" + node + "/desired/" + key).empty();
      json m = json::parse(last("outpost/v1/nodes/" + node + "/manifest"), nullptr, false);
      bool listed = m.is_object() && m["objects"].contains(key);
      n += (object || listed) ? 1 : 0;
    }
    return n;
  }

 private:
  MqttTestClient client_;
};

struct Env {
  TempDir dir;
  FleetBroker broker;
  FleetObserver obs{broker.cloudUri()};
  std::unique_ptr<HollowFleet> fleet;
  std::unique_ptr<Watch> watch;

  Env() {
    raiseFileLimit();
    FleetOptions o;
    o.outpostd = (binDir() / "outpostd").string();
    o.broker = broker.nodesUri();
    o.reconnectBase = "200ms";
    o.reconnectCap = "2s";
    fleet = std::make_unique<HollowFleet>(dir.path(), o);
    fleet->start(kNodes, 10, nullptr, 90s);
    watch = std::make_unique<Watch>(broker.cloudUri());
  }

  std::vector<std::string> ctlArgs(std::vector<std::string> args) const {
    std::vector<std::string> argv = {outpostctl(), "-c", fleet->config(0).string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--broker", broker.cloudUri()});
    return argv;
  }
  int ctl(std::vector<std::string> args, std::string* out, std::string* err,
          std::chrono::milliseconds timeout = 120s) {
    return run(ctlArgs(std::move(args)), out, err, timeout);
  }
  std::string file(const std::string& name, const std::string& text) {
    writeFile(dir / name, text);
    return (dir / name).string();
  }
  // Nodes whose pod reports `version` healthy, running `image`.
  size_t healthyOn(const std::string& version, const std::string& image) const {
    size_t n = 0;
    for (size_t i = 0; i < fleet->size(); ++i) {
      json st = obs.status(fleet->name(i), kPodKey);
      if (!st.is_object() || !st.contains("outpost")) continue;
      bool ok = st["outpost"].value("desiredVersion", "") == version &&
                st["outpost"].value("health", "") == "healthy";
      bool img = st.contains("containerStatuses") && st["containerStatuses"].is_array() &&
                 !st["containerStatuses"].empty() &&
                 st["containerStatuses"][0].value("image", "") == image;
      n += ok && img ? 1 : 0;
    }
    return n;
  }
  std::string describe() const {
    std::string s;
    for (size_t i = 0; i < fleet->size(); ++i) {
      s += fleet->name(i) + ": " + obs.status(fleet->name(i), kPodKey).dump() + "\n";
    }
    return s;
  }
};

size_t nodesInState(const json& state, const std::string& s) {
  size_t n = 0;
  if (!state.is_object()) return 0;
  for (const auto& node : state["nodes"]) n += node.value("state", "") == s ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE(
    "30 hollow nodes: rollouts that succeed, crash, lose their controller, cannot pull, or "
    "meet an offline node") {
  Env env;
  REQUIRE(waitFor([&] { return env.obs.onlineCount() == kNodes; }, 60s));
  std::string out, err;
  // Version 1 runs everywhere from the group.
  REQUIRE_MESSAGE(
      env.ctl({"apply", "-f", env.file("v1.yaml", podYaml("web", "web:1")), "--group", "fleet"},
              &out, &err) == 0,
      err);
  std::string v1 = env.watch->groupVersion(kPodKey);
  REQUIRE(waitFor([&] { return !v1.empty() && env.healthyOn(v1, "web:1") == kNodes; }, 90s));

  const std::string waves =
      "    canary: 1\n    waves: [\"20%\", \"100%\"]\n    nodeTimeoutSeconds: 60\n"
      "    prePullTimeoutSeconds: 60\n";

  // 1. Canary 1, then 20 %, then 100 %: all on the new version, healthy, no per-node leftovers.
  int rc =
      env.ctl({"rollout", "start", "-f", env.file("v2.yaml", rolloutYaml("v2", "web:2", waves))},
              &out, &err);
  INFO("start v2: ", out, err);
  REQUIRE(rc == 0);
  json st = env.watch->state("v2");
  CHECK(st["phase"] == "Succeeded");
  CHECK(st["waves"].size() == 3);
  CHECK(nodesInState(st, "healthy") == kNodes);
  std::string v2 = env.watch->groupVersion(kPodKey);
  CHECK(v2 != v1);
  bool allOnV2 = waitFor([&] { return env.healthyOn(v2, "web:2") == kNodes; }, 60s);
  INFO(env.describe());
  CHECK(allOnV2);
  CHECK(env.watch->leftovers(*env.fleet, kPodKey) == 0);
  CHECK(env.watch->leftovers(*env.fleet, "default/imageprepull/rollout-v2") == 0);

  // 2. A version whose container exits 1: stops at the canary, rolls it back, says why.
  rc = env.ctl(
      {"rollout", "start", "-f", env.file("bad.yaml", rolloutYaml("bad", "web:exits-1", waves))},
      &out, &err);
  INFO("start bad: ", out, err);
  CHECK(rc == outpost::agent::kExitFailure);
  st = env.watch->state("bad");
  CHECK(st["phase"] == "RolledBack");
  CHECK(nodesInState(st, "rolled-back") == 1);
  CHECK(nodesInState(st, "pending") == kNodes - 1);
  REQUIRE(env.ctl({"rollout", "status", "bad"}, &out, &err) == 0);
  CHECK(out.find("FailureThreshold: wave 0 (canary): 1 of 1 nodes failed") != std::string::npos);
  CHECK(out.find("CrashLoopBackOff") != std::string::npos);
  // The group's web:2 again, published anew so that the canary goes back to it.
  std::string back = env.watch->groupVersion(kPodKey);
  CHECK(env.watch->groupImage(kPodKey) == "web:2");
  bool backOnV2 = waitFor([&] { return env.healthyOn(back, "web:2") == kNodes; }, 60s);
  INFO(env.describe());
  CHECK(backOnV2);
  CHECK(env.watch->leftovers(*env.fleet, kPodKey) == 0);

  // 3. The controller is killed mid-wave; resume completes it; no node is switched twice.
  std::string slow = waves + "    maxNodesPerMinute: 120\n";
  Child controller(
      env.ctlArgs({"rollout", "start", "-f", env.file("v3.yaml", rolloutYaml("v3", "web:3", slow)),
                   "--lease-seconds", "3"}));
  bool midWave = waitFor(
      [&] {
        json s = env.watch->state("v3");
        return s.is_object() && s.value("wave", 0) == 2 && nodesInState(s, "healthy") >= 9;
      },
      90s);
  REQUIRE_MESSAGE(midWave, controller.out(), controller.err());
  controller.signal(SIGKILL);
  CHECK(controller.wait(10s) == 128 + SIGKILL);
  json atKill = env.watch->state("v3");
  CHECK(atKill["phase"] == "Progressing");
  // A second controller is refused until the first one's lease expired, then drives it home.
  rc = -1;
  bool resumed = waitFor(
      [&] {
        rc = env.ctl({"rollout", "resume", "v3"}, &out, &err);
        return rc != outpost::agent::kExitBusy;
      },
      30s);
  INFO("resume v3: ", out, err);
  REQUIRE(resumed);
  CHECK(rc == 0);
  st = env.watch->state("v3");
  CHECK(st["phase"] == "Succeeded");
  std::string v3 = env.watch->groupVersion(kPodKey);
  for (size_t i = 0; i < kNodes; ++i) {
    CHECK_MESSAGE(env.watch->nodeScopePublishes(env.fleet->name(i), kPodKey, "web:3") == 1,
                  env.fleet->name(i));
  }
  CHECK(waitFor([&] { return env.healthyOn(v3, "web:3") == kNodes; }, 60s));
  CHECK(env.watch->leftovers(*env.fleet, kPodKey) == 0);

  // 4. Pre-pull: an image that cannot be pulled; the node is not switched and counts as failed.
  rc = env.ctl({"rollout", "start", "-f",
                env.file("nopull.yaml", rolloutYaml("nopull", "web:pull-fails", waves))},
               &out, &err);
  INFO("start nopull: ", out, err);
  CHECK(rc == outpost::agent::kExitFailure);
  st = env.watch->state("nopull");
  CHECK(st["phase"] == "RolledBack");
  REQUIRE(st["nodes"].size() == kNodes);
  CHECK(st["nodes"][0]["state"] == "failed");
  CHECK(st["nodes"][0]["message"].get<std::string>().find("not switched") != std::string::npos);
  CHECK(env.watch->nodeScopePublishes(env.fleet->name(0), kPodKey, "web:pull-fails") == 0);
  CHECK(env.healthyOn(v3, "web:3") == kNodes);

  // 5. A node whose updates are on hold (outpostctl hold on the node; a maintenance window
  // holds the same way): held, the rollout waits for it (onHeld: wait), and it is updated once
  // released.
  std::vector<std::string> onNode = {outpostctl(), "--socket", env.fleet->socket(5).string()};
  auto local = [&](const std::string& verb) {
    auto argv = onNode;
    argv.push_back(verb);
    return run(argv, &out, &err);
  };
  REQUIRE_MESSAGE(local("hold") == 0, err);
  Child held(env.ctlArgs({"rollout", "start", "-f",
                          env.file("v5.yaml", rolloutYaml("v5", "web:5",
                                                          "    canary: 0\n    waves: [\"100%\"]\n"
                                                          "    nodeTimeoutSeconds: 20\n"))}));
  bool waits = waitFor(
      [&] {
        json s = env.watch->state("v5");
        return nodesInState(s, "held") == 1 && nodesInState(s, "healthy") == kNodes - 1;
      },
      90s);
  REQUIRE_MESSAGE(waits, held.out(), held.err());
  json s5 = env.watch->state("v5");
  CHECK(s5["nodes"][5]["state"] == "held");
  CHECK(s5["nodes"][5]["reason"] == "OnHold");
  CHECK(s5["phase"] == "Progressing");
  REQUIRE_MESSAGE(local("release") == 0, err);
  CHECK(held.wait(90s) == 0);
  INFO(held.out(), held.err());
  CHECK(env.watch->state("v5")["phase"] == "Succeeded");
  std::string v5 = env.watch->groupVersion(kPodKey);
  CHECK(waitFor([&] { return env.healthyOn(v5, "web:5") == kNodes; }, 60s));

  // 6. A node offline during its wave: waited for, then left behind (onOffline: continue).
  kill(env.fleet->pid(kNodes - 1), SIGTERM);
  REQUIRE(waitFor([&] { return !env.obs.online(env.fleet->name(kNodes - 1)); }, 30s));
  rc = env.ctl(
      {"rollout", "start", "-f",
       env.file("v4.yaml", rolloutYaml("v4", "web:4",
                                       "    canary: 0\n    waves: [\"100%\"]\n"
                                       "    nodeTimeoutSeconds: 5\n    onOffline: continue\n"))},
      &out, &err);
  INFO("start v4: ", out, err);
  CHECK(rc == 0);
  st = env.watch->state("v4");
  CHECK(st["phase"] == "Succeeded");
  CHECK(nodesInState(st, "healthy") == kNodes - 1);
  CHECK(nodesInState(st, "offline") == 1);
  std::string v4 = env.watch->groupVersion(kPodKey);
  CHECK(waitFor([&] { return env.healthyOn(v4, "web:4") == kNodes - 1; }, 60s));
  CHECK(env.watch->leftovers(*env.fleet, kPodKey) == 0);
}
