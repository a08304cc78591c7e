// 50 hollow agents (real outpostd processes, docs/hollow-nodes.md) against one mosquitto: what a
// fleet operator observes when publishing for a group and when the broker goes away and comes back.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "outpost/agent/exit_codes.h"
#include "support/hollow_fleet.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr size_t kNodes = 50;

// outpostctl apply/delete for the group, through the cloud's listener; returns the exit code.
int ctl(const HollowFleet& fleet, const FleetBroker& broker, std::vector<std::string> args,
        std::string* err) {
  std::vector<std::string> argv = {outpostctl(), "-c", fleet.config(0).string()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--group", "fleet", "--broker", broker.cloudUri()});
  return run(argv, nullptr, err);
}

json agentStatus(const HollowFleet& fleet, size_t i) {
  return json::parse(localApiGet(fleet.socket(i), "/v1/status"), nullptr, false);
}

// Nodes (of all) for which `pred(i)` holds.
size_t countNodes(const HollowFleet& fleet, const std::function<bool(size_t)>& pred) {
  size_t n = 0;
  for (size_t i = 0; i < fleet.size(); ++i) n += pred(i) ? 1 : 0;
  return n;
}

// Every node acked the group's newest desired message for `key`, and reports the pod Running.
bool reachedAll(const FleetObserver& obs, const std::string& key, size_t* acked, size_t* running) {
  std::string id = obs.desiredMsgId("fleet", key);
  *acked = id.empty() ? 0 : obs.ackCount(id);
  *running = obs.phaseCount(key, "Running");
  return *acked == kNodes && *running == kNodes;
}

}  // namespace

TEST_CASE(
    "50 hollow agents: a group change reaches all (acked, Running); after a broker restart all "
    "reconnect, a deletion made while they could not reach it reaches every node, and the next "
    "change reaches all again") {
  raiseFileLimit();
  TempDir dir;
  FleetBroker broker;
  FleetObserver obs(broker.cloudUri());
  FleetOptions o;
  o.outpostd = (binDir() / "outpostd").string();
  o.broker = broker.nodesUri();
  o.reconnectBase = "200ms";
  o.reconnectCap = "2s";
  HollowFleet fleet(dir.path(), o);
  fleet.start(kNodes, 10, nullptr, 60s);
  auto exitedText = [&] {
    std::string s;
    for (auto [i, code] : fleet.exited()) {
      s += fleet.name(i) + " exited " + std::to_string(code) + ":\n" + fleet.log(i) + "\n";
    }
    return s;
  };
  REQUIRE(waitFor([&] { return obs.onlineCount() == kNodes; }, 60s));

  // A group change: two pods for every node of the group.
  writeFile(dir / "pods.yaml",
            podYaml("web", "nginx:1.25") + "---\n" + podYaml("extra", "registry.example/extra:v1"));
  std::string err;
  REQUIRE_MESSAGE(ctl(fleet, broker, {"apply", "-f", (dir / "pods.yaml").string()}, &err) == 0,
                  err);
  size_t acked = 0, running = 0, acked2 = 0, running2 = 0;
  bool reached = waitFor(
      [&] {
        bool web = reachedAll(obs, "default/pod/web", &acked, &running);
        bool extra = reachedAll(obs, "default/pod/extra", &acked2, &running2);
        return web && extra;
      },
      90s);
  INFO("web: acked by ", acked, ", Running on ", running, "; extra: acked by ", acked2,
       ", Running on ", running2);
  INFO(exitedText());
  REQUIRE(reached);

  std::vector<int64_t> reconnects(kNodes);
  for (size_t i = 0; i < kNodes; ++i) {
    reconnects[i] = agentStatus(fleet, i)["cloud"].value("reconnects", int64_t{-1});
  }

  // The broker goes away. It comes back first on the cloud's listener only: the nodes still cannot
  // reach it while the control plane withdraws a pod; then it restarts with both listeners.
  broker.stop();
  CHECK(waitFor(
      [&] {
        return countNodes(fleet, [&](size_t i) {
                 return agentStatus(fleet, i)["cloud"].value("state", "") != "connected";
               }) == kNodes;
      },
      30s));
  broker.start(false);
  REQUIRE_MESSAGE(ctl(fleet, broker, {"delete", "pod", "extra"}, &err) == 0, err);
  broker.stop();
  broker.start(true);

  // All come back: each agent's link is connected again, after one more reconnect.
  size_t back = 0;
  bool allBack = waitFor(
      [&] {
        back = countNodes(fleet, [&](size_t i) {
          json st = agentStatus(fleet, i);
          return st.is_object() && st["cloud"].value("state", "") == "connected" &&
                 st["cloud"].value("reconnects", int64_t{0}) > reconnects[i];
        });
        return back == kNodes;
      },
      60s);
  INFO("connected again: ", back);
  INFO(exitedText());
  REQUIRE(allBack);
  // The cloud's side too: acks are not retained, so the observer must be subscribed again before
  // the next change, or it misses them (nodes may come back before it does).
  REQUIRE(waitFor([&] { return obs.subscribed(); }, 30s));

  // The deletion reached every node (from the group's manifest: no retained message to receive),
  // and the pod that stays still runs everywhere.
  size_t gone = 0;
  bool deleted = waitFor(
      [&] {
        gone = countNodes(fleet, [&](size_t i) {
          json held = json::parse(
              localApiGet(fleet.socket(i), "/v1/resources?type=pod&namespace=default&name=extra"),
              nullptr, false);
          return held.is_array() && held.empty();
        });
        return gone == kNodes;
      },
      60s);
  INFO("extra withdrawn on ", gone, " nodes");
  CHECK(deleted);
  CHECK(countNodes(fleet, [&](size_t i) {
          json held = json::parse(
              localApiGet(fleet.socket(i), "/v1/resources?type=pod&namespace=default&name=web"),
              nullptr, false);
          return held.is_array() && held.size() == 1;
        }) == kNodes);

  // The link works again for every node: the next group change reaches all.
  writeFile(dir / "next.yaml", podYaml("next", "nginx:1.27"));
  REQUIRE_MESSAGE(ctl(fleet, broker, {"apply", "-f", (dir / "next.yaml").string()}, &err) == 0,
                  err);
  reached = waitFor([&] { return reachedAll(obs, "default/pod/next", &acked, &running); }, 60s);
  INFO("next: acked by ", acked, ", Running on ", running);
  CHECK(reached);
  CHECK(obs.phaseCount("default/pod/web", "Running") == kNodes);

  // Every agent stops cleanly (under ASan: no error and no leak at exit).
  std::vector<int> codes = fleet.stopAll(60s);
  for (size_t i = 0; i < kNodes; ++i) {
    INFO(fleet.name(i), " log:\n", fleet.log(i));
    CHECK(codes[i] == outpost::agent::kExitOk);
  }
}
