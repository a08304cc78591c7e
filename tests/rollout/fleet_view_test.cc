// The real fleet view (MqttFleetView over mosquitto) and the fake the controller's tests use
// (fake_fleet.h) show the same for the same events; the real one shrugs off what others put on
// the broker in a bad shape; the lease keeps two controllers apart.
#include <doctest/doctest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "fake_fleet.h"
#include "outpost/cloudhub/envelope.h"
#include "rollout/controller.h"
#include "rollout/mqtt_fleet.h"
#include "support/mqtt_client.h"

using namespace outpost;
using namespace outpost::agent::rollout;
using namespace outpost::test;
using nlohmann::json;

namespace {

// What a node does on the broker (or to the fake): its node status, online flag, pod status.
struct NodeSide {
  std::function<void(const std::string&, const json& labels)> nodeStatus;
  std::function<void(const std::string&, bool)> online;
  std::function<void(const std::string&, const std::string&, const json& content)> status;
  std::function<void()> settle;
};

std::string envelope(const json& content) {
  cloudhub::Envelope e;
  e.header.msgId = cloudhub::newMessageId();
  e.route.source = "edged";
  e.route.group = "resource";
  e.route.operation = "update";
  e.content = content.dump();
  return cloudhub::encode(e, cloudhub::Encoding::kJson);
}

const char* kPod =
    R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},"spec":{"containers":[{"name":"main","image":"web:2"}]}})";

void scenario(FleetView& view, const NodeSide& node) {
  node.nodeStatus("n1", {{"group.outpost.io/fleet", "true"}});
  node.online("n1", true);
  node.settle();
  auto nodes = view.nodes();
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0].name == "n1");
  CHECK(nodes[0].labels.at("group.outpost.io/fleet") == "true");
  CHECK(view.online("n1") == std::optional<bool>(true));
  CHECK_FALSE(view.online("n2").has_value());
  node.online("n1", false);
  node.settle();
  CHECK(view.online("n1") == std::optional<bool>(false));

  // Objects in a node's scope and a group's.
  auto published = view.publish({false, "n1"}, {{"default/pod/web", kPod}});
  REQUIRE(published.isOk());
  std::string v = published->at("default/pod/web");
  node.settle();
  CHECK(view.nodeObjectVersion("n1", "default/pod/web") == std::optional<std::string>(v));
  CHECK_FALSE(view.nodeObjectVersion("n2", "default/pod/web").has_value());
  REQUIRE(view.publish({true, "fleet"}, {{"default/pod/web", kPod}}).isOk());
  node.settle();
  auto g = view.groupObject("fleet", "default/pod/web");
  REQUIRE(g.has_value());
  CHECK(json::parse(*g)["spec"]["containers"][0]["image"] == "web:2");
  REQUIRE(view.withdraw({false, "n1"}, {"default/pod/web"}).isOk());
  node.settle();
  CHECK_FALSE(view.nodeObjectVersion("n1", "default/pod/web").has_value());

  // What the node reports.
  node.status("n1", "default/pod/web",
              {{"phase", "Running"},
               {"outpost",
                {{"desiredVersion", v},
                 {"health", "held"},
                 {"reason", "MaintenanceWindow"},
                 {"pendingVersion", "99"},
                 {"heldUntil", "2030-01-01T02:00:00Z"}}}});
  node.status("n1", "default/imageprepull/rollout-x",
              {{"observedVersion", "7"},
               {"images",
                {{{"image", "a:1"}, {"state", "present"}},
                 {{"image", "b:pull-fails"}, {"state", "failed"}, {"reason", "ErrImagePull"}}}}});
  node.status("n1", "default/agentupgrade/agent",
              {{"phase", "rolled back"},
               {"version", "0.3.0-1"},
               {"reason", "the agent 0.3.0-1 was not healthy within 5s"}});
  node.settle();
  auto p = view.pod("n1", "default/pod/web");
  REQUIRE(p.has_value());
  CHECK(p->desiredVersion == v);
  CHECK(p->health == "held");
  CHECK(p->reason == "MaintenanceWindow");
  CHECK(p->pendingVersion == "99");
  CHECK(p->heldUntil == "2030-01-01T02:00:00Z");
  auto pp = view.prePull("n1", "default/imageprepull/rollout-x");
  REQUIRE(pp.has_value());
  CHECK(pp->observedVersion == "7");
  CHECK_FALSE(pp->allPresent);
  CHECK(pp->failedImage == "b:pull-fails");
  CHECK(pp->reason == "ErrImagePull");
  CHECK_FALSE(view.pod("n1", "default/pod/other").has_value());
  auto up = view.agentUpgrade("n1", "default/agentupgrade/agent");
  REQUIRE(up.has_value());
  CHECK(up->phase == "rolled back");
  CHECK(up->version == "0.3.0-1");
  CHECK(up->reason == "the agent 0.3.0-1 was not healthy within 5s");
  CHECK_FALSE(view.agentUpgrade("n1", "default/agentupgrade/other").has_value());
}

}  // namespace

TEST_CASE("the fake fleet and the real one over mosquitto show the same") {
  SUBCASE("fake") {
    FakeFleet f;
    NodeSide side;
    side.nodeStatus = [&](const std::string& n, const json& labels) {
      for (const auto& [k, v] : labels.items()) f.fleet[n].labels[k] = v.get<std::string>();
    };
    side.online = [&](const std::string& n, bool on) { f.fleet[n].online = on; };
    side.status = [&](const std::string& n, const std::string& key, const json& c) {
      if (key.find("/pod/") != std::string::npos) {
        f.pods[n + "|" + key] = *podReportFrom(c.dump());
      } else if (key.find("/agentupgrade/") != std::string::npos) {
        f.upgrades[n + "|" + key] = *upgradeReportFrom(c.dump());
      } else {
        f.prePulls[n + "|" + key] = *prePullReportFrom(c.dump());
      }
    };
    side.settle = [] {};
    // The fake knows a node only once it reported; online() of a stranger is unknown.
    scenario(f, side);
  }
  SUBCASE("mqtt") {
    Mosquitto broker;
    cloudhub::PublisherOptions o;
    o.broker = broker.uri();
    auto view = MqttFleetView::connect(o, "web-v2");
    REQUIRE_MESSAGE(view.isOk(), view.status().message());
    MqttTestClient nodeClient(broker.uri());
    NodeSide side;
    side.nodeStatus = [&](const std::string& n, const json& labels) {
      nodeClient.publish(
          "outpost/v1/nodes/" + n + "/status/default/node/" + n,
          envelope({{"metadata", {{"labels", labels}}}, {"conditions", json::array()}}), true);
    };
    side.online = [&](const std::string& n, bool on) {
      nodeClient.publish("outpost/v1/nodes/" + n + "/online", on ? "true" : "false", true);
    };
    side.status = [&](const std::string& n, const std::string& key, const json& c) {
      nodeClient.publish("outpost/v1/nodes/" + n + "/status/" + key, envelope(c), true);
    };
    side.settle = [&] { REQUIRE((*view)->sync().isOk()); };
    scenario(**view, side);
  }
}

TEST_CASE("the fake's online() of an unknown node is unknown, as the real one's") {
  FakeFleet f;
  // The fake answers for nodes it holds; the controller asks only about planned nodes.
  f.addNodes(1);
  CHECK(f.online("node-00") == std::optional<bool>(true));
}

TEST_CASE("malformed messages from others on the broker are ignored, never a crash") {
  Mosquitto broker;
  MqttTestClient other(broker.uri());
  other.publish("outpost/v1/nodes/n1/status/default/node/n1", "{not json", true);
  other.publish("outpost/v1/nodes/n1/status/default/pod/web",
                envelope({{"outpost", {{"health", 5}}}}), true);
  other.publish("outpost/v1/nodes/n1/status/default/imageprepull/x", envelope({{"images", "nope"}}),
                true);
  other.publish("outpost/v1/nodes/n1/status/default/agentupgrade/x",
                envelope({{"phase", "exploded"}, {"version", "1"}}), true);
  other.publish("outpost/v1/nodes/BAD..NAME/online", "true", true);
  other.publish("outpost/v1/nodes/n1/desired/default/pod/web", std::string("\0\1\2", 3), true);
  other.publish("outpost/v1/rollouts/web-v2/lease", R"({"holder": 5})", true);
  other.publish("outpost/v1/rollouts/web-v2/command", R"(["abort"])", true);
  other.publish("outpost/v1/rollouts/web-v2/state", R"({"phase":"Exploded","spec":{}})", true);
  cloudhub::PublisherOptions o;
  o.broker = broker.uri();
  auto view = MqttFleetView::connect(o, "web-v2");
  REQUIRE_MESSAGE(view.isOk(), view.status().message());
  auto& v = **view;
  CHECK(v.nodes().empty());
  CHECK_FALSE(v.pod("n1", "default/pod/web").has_value());
  CHECK_FALSE(v.prePull("n1", "default/imageprepull/x").has_value());
  CHECK_FALSE(v.agentUpgrade("n1", "default/agentupgrade/x").has_value());
  CHECK_FALSE(v.online("BAD..NAME").has_value());
  CHECK_FALSE(v.nodeObjectVersion("n1", "default/pod/web").has_value());
  CHECK_FALSE(v.lease().has_value());
  CHECK_FALSE(v.takeCommand().has_value());
  auto state = stateFromJson(*v.storedState());
  REQUIRE_FALSE(state.isOk());
  CHECK(state.status().message().find("the rollout's stored state") != std::string::npos);
}

TEST_CASE(
    "the lease: a second controller is refused while the first holds it, and takes over "
    "once it expired") {
  Mosquitto broker;
  cloudhub::PublisherOptions o;
  o.broker = broker.uri();
  auto a = MqttFleetView::connect(o, "web-v2");
  auto b = MqttFleetView::connect(o, "web-v2");
  REQUIRE(a.isOk());
  REQUIRE(b.isOk());
  int64_t now = 1'000'000;
  REQUIRE((*a)->takeLease("ctl-a", now, 15000).isOk());
  REQUIRE((*b)->sync().isOk());
  auto refused = (*b)->takeLease("ctl-b", now + 5000, 15000);
  REQUIRE_FALSE(refused.isOk());
  CHECK(refused.message().find("driven by ctl-a") != std::string::npos);
  CHECK((*a)->takeLease("ctl-a", now + 5000, 15000).isOk());  // renewal
  REQUIRE((*b)->sync().isOk());
  CHECK_FALSE((*b)->takeLease("ctl-b", now + 19000, 15000).isOk());  // renewed: still held
  CHECK((*b)->takeLease("ctl-b", now + 20001, 15000).isOk());        // expired: taken over
  REQUIRE((*a)->sync().isOk());
  auto lost = (*a)->takeLease("ctl-a", now + 21000, 15000);  // the first sees it lost it
  CHECK_FALSE(lost.isOk());
  CHECK(lost.message().find("driven by ctl-b") != std::string::npos);
}
