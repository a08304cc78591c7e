// outpostctl rollout against 30 hollow agents (real outpostd processes) on one mosquitto: what an
// operator sees of a rollout that succeeds, one whose version crashes, one whose controller is
// killed mid-wave, one whose image cannot be pulled, one with a node on hold and one whose
// maintenance window is closed (its simulated clock moved), agent upgrades (one whose new agent
// is not healthy, one that succeeds), one with a node offline, and one that targets nodes by
// their labels.
#include <doctest/doctest.h>

#include <csignal>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/agent/exit_codes.h"
#include "support/file_server.h"
#include "support/hollow_fleet.h"
#include "support/mqtt_client.h"
#include "support/test_util.h"
#include "upgrade/upgrade_test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr size_t kNodes = 30;
const std::string kPodKey = "default/pod/web";
const std::string kUpgradeKey = "default/agentupgrade/agent";
// Node 6 may be updated on Mondays only (its time zone UTC); its clock is simulated.
constexpr size_t kWindowNode = 6;
// Nodes 3, 13 and 23 are labelled zone: north, the others zone: south.
bool north(size_t i) { return i % 10 == 3; }

// Every version of web asks to wait for the node's maintenance window (only node 6 has one).
std::string webYaml(const std::string& image) {
  return podYaml("web", image, {{"outpost.io/update-policy", "maintenance-window"}});
}

std::string rolloutYaml(const std::string& name, const std::string& image,
                        const std::string& strategy) {
  return "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: " + name +
         "}\nspec:\n  target: {group: fleet}\n  strategy:\n" + strategy + "---\n" + webYaml(image);
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
  ReleaseKey release{dir.path(), "release"};  // signs the AgentUpgrades' packages
  FileServer packages;
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
    json key = release.publicPem();
    o.extraConfig = "upgrade: {trusted_keys: [" + key.dump() + "], health_timeout: 5s}\n";
    o.env = {"TZ=UTC"};
    o.nodeFields = [](size_t i) {
      return std::string("labels: {zone: ") + (north(i) ? "north" : "south") + "}" +
             (i == kWindowNode ? ", maintenance_windows: [Mon]" : "");
    };
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
  // A signed package on the loopback server (a hollow node downloads and verifies it for real).
  json package(const std::string& version) {
    std::string body = "outpost " + version + " for hollow nodes";
    packages.put("/outpost_" + version + "_amd64.deb", body);
    auto f = dir / ("pkg-" + version);
    writeFile(f, body);
    return {{"format", "deb"},
            {"arch", "amd64"},
            {"url", packages.url("/outpost_" + version + "_amd64.deb")},
            {"sha256", sha256Hex(f)},
            {"signature", release.sign(f)}};
  }
  // A rollout of an AgentUpgrade to `version` from `installed` (each node's rollback package).
  std::string upgradeRollout(const std::string& name, const std::string& version,
                             const std::string& installed, const std::string& strategy) {
    json up = {{"apiVersion", "outpost.io/v1"},
               {"kind", "AgentUpgrade"},
               {"metadata", {{"name", "agent"}}},
               {"spec",
                {{"version", version},
                 {"packages", {package(version)}},
                 {"rollback", {{"version", installed}, {"packages", {package(installed)}}}}}}};
    return file(name + ".yaml", "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: " +
                                    name + "}\nspec:\n  target: {group: fleet}\n  strategy:\n" +
                                    strategy + "---\n" + up.dump() + "\n");
  }
  // Nodes whose agentupgradestatus says `phase` for `version`.
  size_t upgradeIs(const std::string& phase, const std::string& version) const {
    size_t n = 0;
    for (size_t i = 0; i < fleet->size(); ++i) {
      json st = obs.status(fleet->name(i), kUpgradeKey);
      n += st.is_object() && st.value("phase", "") == phase && st.value("version", "") == version;
    }
    return n;
  }
  // Sets node i's simulated clock (outpostctl hollow clock set).
  void setClock(size_t i, const std::string& time) {
    std::string out, err;
    int rc =
        run({outpostctl(), "--socket", fleet->socket(i).string(), "hollow", "clock", "set", time},
            &out, &err);
    REQUIRE_MESSAGE(rc == 0, out, err);
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
  // Node 6's window is open (a Monday) until case 5.
  env.setClock(kWindowNode, "2026-12-07T12:00:00Z");
  // Version 1 runs everywhere from the group.
  REQUIRE_MESSAGE(
      env.ctl({"apply", "-f", env.file("v1.yaml", webYaml("web:1")), "--group", "fleet"}, &out,
              &err) == 0,
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

  // 5. A node whose updates are on hold (outpostctl hold on node 5) and one whose maintenance
  // window is closed (node 6's clock moved to a Tuesday): both held, the rollout waits for them
  // (onHeld: wait); node 5 is updated once released, node 6 once its clock reaches Monday.
  std::vector<std::string> onNode = {outpostctl(), "--socket", env.fleet->socket(5).string()};
  auto local = [&](const std::string& verb) {
    auto argv = onNode;
    argv.push_back(verb);
    return run(argv, &out, &err);
  };
  REQUIRE_MESSAGE(local("hold") == 0, err);
  env.setClock(kWindowNode, "2026-12-08T12:00:00Z");
  Child held(env.ctlArgs({"rollout", "start", "-f",
                          env.file("v5.yaml", rolloutYaml("v5", "web:5",
                                                          "    canary: 0\n    waves: [\"100%\"]\n"
                                                          "    nodeTimeoutSeconds: 20\n"))}));
  bool waits = waitFor(
      [&] {
        json s = env.watch->state("v5");
        return nodesInState(s, "held") == 2 && nodesInState(s, "healthy") == kNodes - 2;
      },
      90s);
  REQUIRE_MESSAGE(waits, held.out(), held.err());
  json s5 = env.watch->state("v5");
  CHECK(s5["nodes"][5]["state"] == "held");
  CHECK(s5["nodes"][5]["reason"] == "OnHold");
  CHECK(s5["nodes"][kWindowNode]["state"] == "held");
  CHECK(s5["nodes"][kWindowNode]["reason"] == "MaintenanceWindow");
  CHECK(s5["nodes"][kWindowNode]["message"].get<std::string>().find(
            "(until 2026-12-14T00:00:00Z)") != std::string::npos);
  CHECK(s5["phase"] == "Progressing");
  REQUIRE_MESSAGE(local("release") == 0, err);
  // Node 5 goes; the rollout still waits for node 6, whose window stays closed.
  bool fiveDone =
      waitFor([&] { return nodesInState(env.watch->state("v5"), "healthy") == kNodes - 1; }, 60s);
  REQUIRE_MESSAGE(fiveDone, held.out(), held.err());
  s5 = env.watch->state("v5");
  CHECK(s5["nodes"][kWindowNode]["state"] == "held");
  CHECK(s5["phase"] == "Progressing");
  env.setClock(kWindowNode, "2026-12-14T00:00:30Z");
  CHECK(held.wait(90s) == 0);
  INFO(held.out(), held.err());
  CHECK(env.watch->state("v5")["phase"] == "Succeeded");
  std::string v5 = env.watch->groupVersion(kPodKey);
  CHECK(waitFor([&] { return env.healthyOn(v5, "web:5") == kNodes; }, 60s));

  // 6. Agent upgrades in waves (the hollow nodes simulate the install: docs/hollow-nodes.md). A
  // version whose new agent never proves itself: the canary rolls back after upgrade.health_timeout
  // and the rollout stops there; then a good version reaches every node, wave by wave.
  std::string installed;
  REQUIRE(run({(binDir() / "outpostd").string(), "--version"}, &installed, &err) == 0);
  installed = installed.substr(installed.find(' ') + 1);
  installed = installed.substr(0, installed.find('\n')) + "-1";
  const std::string upWaves =
      "    canary: 1\n    waves: [\"50%\", \"100%\"]\n    nodeTimeoutSeconds: 60\n";
  rc = env.ctl({"rollout", "start", "-f",
                env.upgradeRollout("agent-bad", "9.0.0-unhealthy1", installed, upWaves)},
               &out, &err);
  INFO("start agent-bad: ", out, err);
  CHECK(rc == outpost::agent::kExitFailure);
  st = env.watch->state("agent-bad");
  CHECK(st["phase"] == "RolledBack");
  CHECK(st["nodes"][0]["reason"] == "RolledBack");
  CHECK(st["nodes"][0]["message"].get<std::string>().find("was not healthy within 5s") !=
        std::string::npos);
  CHECK(nodesInState(st, "pending") == kNodes - 1);
  CHECK(env.upgradeIs("rolled back", "9.0.0-unhealthy1") == 1);
  rc = env.ctl(
      {"rollout", "start", "-f", env.upgradeRollout("agent-good", "9.0.0-1", installed, upWaves)},
      &out, &err);
  INFO("start agent-good: ", out, err);
  CHECK(rc == 0);
  st = env.watch->state("agent-good");
  CHECK(st["phase"] == "Succeeded");
  CHECK(st["waves"].size() == 3);
  CHECK(nodesInState(st, "healthy") == kNodes);
  CHECK(env.upgradeIs("healthy", "9.0.0-1") == kNodes);
  // Containers were never touched: every pod still runs web:5, healthy.
  CHECK(env.healthyOn(v5, "web:5") == kNodes);

  // 7. A node offline during its wave: waited for, then left behind (onOffline: continue).
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

  // 8. A target by node labels: only the nodes labelled zone: north get the pod, in their own
  // scope; no other node hears of it.
  const std::string kioskKey = "default/pod/kiosk";
  rc = env.ctl({"rollout", "start", "-f",
                env.file("north.yaml",
                         "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: north}\n"
                         "spec:\n  target: {selector: {zone: north}}\n  strategy:\n"
                         "    canary: 0\n    waves: [\"100%\"]\n    nodeTimeoutSeconds: 60\n"
                         "---\n" +
                             podYaml("kiosk", "kiosk:1"))},
               &out, &err);
  INFO("start north: ", out, err);
  CHECK(rc == 0);
  st = env.watch->state("north");
  CHECK(st["phase"] == "Succeeded");
  std::set<std::string> targeted;
  for (const auto& n : st["nodes"]) targeted.insert(n.value("name", ""));
  std::set<std::string> expected;
  for (size_t i = 0; i < kNodes; ++i) {
    if (north(i)) expected.insert(env.fleet->name(i));
  }
  CHECK(targeted == expected);
  CHECK(nodesInState(st, "healthy") == expected.size());
  auto kioskHealthy = [&] {
    size_t n = 0;
    for (size_t i = 0; i < kNodes; ++i) {
      json k = env.obs.status(env.fleet->name(i), kioskKey);
      n += k.is_object() && k["outpost"].value("health", "") == "healthy" ? 1 : 0;
    }
    return n;
  };
  CHECK(waitFor([&] { return kioskHealthy() == expected.size(); }, 30s));
  for (size_t i = 0; i < kNodes; ++i) {
    CAPTURE(env.fleet->name(i));
    std::string node = env.fleet->name(i);
    CHECK(!env.watch->last("outpost/v1/nodes/" + node + "/desired/" + kioskKey).empty() ==
          north(i));
    CHECK(env.obs.status(node, kioskKey).is_object() == north(i));
  }
}
