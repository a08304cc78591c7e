// KubeEdge 1.14's cloud twin forms (PROTOCOL.md §2) arriving on the MQTT cloud link: the link
// publishes them on the bus, the route agent/ makes hands them to the twins, the device hears of
// accepted changes, and the cloud gets an ack once the change is durable. Real mosquitto, real
// SQLite, the link and the twins wired as agent/ wires them (one bus, one store, the two routes of
// agent/src/modules.cc), the device and the cloud played by MQTT clients.
#include <doctest/doctest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "outpost/cloudhub/mqtt_link.h"
#include "outpost/metadb/sqlite_store.h"
#include "outpost/twin/twin_service.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kNode = "edge-1";
const std::string kDev = "default/thermo";
const std::string kDevTopic = "$hw/events/device/default/thermo/";
const cloudhub::MqttTopics kTopics{"outpost/v1"};

// The store, the twins and the cloud link of one agent, sharing one bus.
struct Agent {
  Agent(TempDir& dir, const std::string& broker)
      : logPath((dir / "agent.log").string()),
        logging({core::LogLevel::kDebug, false, logPath}),
        loop("test", clock),
        routes("routes", clock) {
    loop.start();
    routes.start();
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    so.commitWindow = 0ms;
    auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    REQUIRE(s.isOk());
    store = std::move(s).value();
    auto r = store->openReader();
    REQUIRE(r.isOk());
    reader = std::move(r).value();

    cloudhub::MqttLinkOptions lo;
    lo.nodeName = kNode;
    lo.broker = broker;
    lo.reconnectBase = 50ms;
    lo.reconnectCap = 300ms;
    lo.keepAlive = 2s;
    // The link has no poll: what the twins queue reaches the cloud only through the store's
    // outbox signal, routed below as the agent routes it.
    link = cloudhub::makeMqttLink(lo, *store, bus, clock, logging, metrics);

    twin::TwinOptions to;
    to.nodeName = kNode;
    to.broker = broker;
    to.reconnectBase = 50ms;
    to.reconnectCap = 300ms;
    to.keepAlive = 2s;
    service = twin::makeTwinService(to, *store, bus, clock, logging, metrics);
    REQUIRE(service->start().isOk());
    // The routes of agent/src/modules.cc: the cloud's twin messages to the twins (TwinModule), the
    // store's outbox signal to the link (CloudModule).
    cloudTwins = bus.subscribe(
        cloudhub::kCloudTwinMessages, routes, [this](const cloudhub::CloudTwinMessage& m) {
          const cloudhub::Route& route = m.envelope.route;
          service->applyCloudTwin({route.resource, route.operation, m.envelope.content}, m.done);
        });
    outboxChanged =
        bus.subscribe(metadb::kOutboxChanged, routes, [this](const metadb::OutboxChanged& e) {
          if (e.queued > 0) link->outboxChanged();
        });
    REQUIRE(link->start().isOk());
  }
  ~Agent() {
    cloudTwins.reset();
    outboxChanged.reset();
    routes.stop();
    link->stop();
    service->stop();
    service.reset();
    link.reset();
    reader.reset();
    store.reset();
    loop.stop();
  }
  // Stores the Device object that binds "thermo" to this node, as the link would.
  void bindThermo() {
    json obj = {{"apiVersion", "devices.kubeedge.io/v1beta1"},
                {"kind", "Device"},
                {"metadata", {{"name", "thermo"}, {"namespace", "default"}, {"uid", "uid-thermo"}}},
                {"spec", {{"nodeName", kNode}, {"properties", json::array()}}}};
    metadb::ResourceChange c;
    c.key = "default/device/thermo";
    c.version = "1";
    c.uid = "uid-thermo";
    c.object = obj.dump();
    c.origin = "cloud";
    std::promise<core::Status> p;
    store->write(metadb::WriteBatch().apply(std::move(c)), loop,
                 [&](core::Result<metadb::WriteResult> r) { p.set_value(r.status()); });
    REQUIRE(p.get_future().get().isOk());
  }
  std::vector<metadb::TwinProperty> storedTwin() {
    auto r = reader->twin(kDev);
    REQUIRE(r.isOk());
    return *r;
  }
  bool up() {
    return link->status().state == cloudhub::LinkState::kConnected && service->status().connected;
  }

  core::SystemClock clock;
  std::string logPath;
  core::Bus bus;
  core::Logging logging;
  core::MetricsRegistry metrics;
  core::EventLoop loop;
  core::EventLoop routes;
  std::unique_ptr<metadb::SqliteStore> store;
  metadb::StoreReaderPtr reader;
  cloudhub::CloudLinkPtr link;
  twin::TwinServicePtr service;
  core::Subscription cloudTwins, outboxChanged;
};

// A twin-group envelope from the cloud, as KubeEdge's device controller sends it.
std::string twinEnvelope(const std::string& msgId, const std::string& operation,
                         const std::string& resource, const json& content) {
  json env = {{"header", {{"msg_id", msgId}, {"timestamp", 1}}},
              {"route",
               {{"source", "devicecontroller"},
                {"group", "twin"},
                {"operation", operation},
                {"resource", resource}}},
              {"content", content}};
  return env.dump();
}

json versioned(const char* side, const std::string& value, int64_t cloud, int64_t edge) {
  return {{side, {{"value", value}}},
          {std::string(side) + "_version", {{"cloud", cloud}, {"edge", edge}}},
          {"metadata", {{"type", "int"}}}};
}

// The started agent with "thermo" bound, the device and the cloud subscribed.
struct Fixture {
  Fixture() : agent(dir, broker.uri()), device(broker.uri()), cloud(broker.uri()) {
    device.subscribe("$hw/events/#");
    cloud.subscribe(kTopics.up(kNode));
    REQUIRE(waitFor([&] { return agent.up(); }));
    agent.bindThermo();
    REQUIRE(waitFor([&] { return agent.service->status().devices == 1; }));
  }
  // Publishes on the node's down topic and waits for the ack of `msgId` on up.
  json sendAndAwaitAck(const std::string& msgId, const std::string& envelope) {
    cloud.publish(kTopics.down(kNode), envelope);
    json ack;
    REQUIRE(waitFor([&] {
      for (const auto& m : cloud.messagesOn(kTopics.up(kNode))) {
        json j = json::parse(m.payload);
        if (j["header"].value("parent_msg_id", "") == msgId) {
          ack = j;
          return true;
        }
      }
      return false;
    }));
    return ack;
  }
  json deviceMessage(const std::string& tail, size_t index) {
    REQUIRE(waitFor([&] { return device.messagesOn(kDevTopic + tail).size() > index; }));
    return json::parse(device.messagesOn(kDevTopic + tail)[index].payload);
  }

  TempDir dir;
  Mosquitto broker;
  Agent agent;
  MqttTestClient device;
  MqttTestClient cloud;
};

}  // namespace

TEST_CASE(
    "a cloud_updated twin on the node's down topic reaches the device as a delta, then acks") {
  Fixture f;
  f.device.publish(kDevTopic + "twin/update",
                   json{{"event_id", "a"},
                        {"timestamp", 1},
                        {"twin", {{"setpoint", {{"actual", {{"value", "20"}}}}}}}}
                       .dump());
  f.deviceMessage("twin/update/result", 0);

  json ack = f.sendAndAwaitAck(
      "c1", twinEnvelope(
                "c1", "update", "device/" + kDev + "/twin/cloud_updated",
                {{"event_id", "e1"}, {"twin", {{"setpoint", versioned("expected", "23", 1, 0)}}}}));
  CHECK(ack["route"]["operation"] == "response");
  CHECK(ack["route"]["source"] == "meta");
  CHECK(ack["route"]["group"] == "twin");
  CHECK(ack["route"]["resource"] == "device/" + kDev + "/twin/cloud_updated");
  CHECK(ack["content"] == "OK");
  // Acked only after the commit: the value is already stored.
  auto twin = f.agent.storedTwin();
  REQUIRE(twin.size() == 1);
  CHECK(twin[0].expected->value == "23");
  CHECK(twin[0].expectedVersion == metadb::VersionVector{1, 0});

  json delta = f.deviceMessage("twin/update/delta", 0);
  CHECK(delta["delta"] == json{{"setpoint", "23"}});
  CHECK(delta["twin"]["setpoint"]["actual"]["value"] == "20");
  json doc = f.deviceMessage("twin/update/document", 1);
  CHECK(doc["event_id"] == "e1");
  CHECK(doc["twin"]["setpoint"]["current"]["expected"]["value"] == "23");
}

TEST_CASE("a stale cloud twin is rejected and the edge's value goes back to the cloud") {
  Fixture f;
  // The device sets actual twice: edge counter 2.
  for (const char* v : {"20", "21"}) {
    f.device.publish(kDevTopic + "twin/update",
                     json{{"event_id", v},
                          {"timestamp", 1},
                          {"twin", {{"setpoint", {{"actual", {{"value", v}}}}}}}}
                         .dump());
  }
  f.deviceMessage("twin/update/result", 1);
  std::string edgeUpdated = "device/" + kDev + "/twin/edge_updated";
  auto edgeTwinsSent = [&] {
    std::vector<json> out;
    for (const auto& m : f.cloud.messagesOn(kTopics.up(kNode))) {
      json j = json::parse(m.payload);
      if (j["route"]["resource"] == edgeUpdated) out.push_back(j);
    }
    return out;
  };
  // The edge's changes reach the cloud through the outbox.
  REQUIRE(waitFor([&] {
    auto sent = edgeTwinsSent();
    return !sent.empty() && sent.back()["content"]["twin"]["setpoint"]["actual"]["value"] == "21";
  }));
  size_t before = edgeTwinsSent().size();

  // The cloud has seen only the first edge change.
  json ack = f.sendAndAwaitAck(
      "c2", twinEnvelope("c2", "update", "device/" + kDev + "/twin/cloud_updated",
                         {{"twin", {{"setpoint", versioned("actual", "99", 0, 1)}}}}));
  CHECK(ack["content"] == "OK");
  CHECK(f.agent.storedTwin()[0].actual->value == "21");
  CHECK(f.agent.storedTwin()[0].actualVersion == metadb::VersionVector{0, 2});
  // The edge's twin is sent back.
  REQUIRE(waitFor([&] { return edgeTwinsSent().size() > before; }));
  json back = edgeTwinsSent().back();
  CHECK(back["route"]["source"] == "twin");
  CHECK(back["content"]["twin"]["setpoint"]["actual"]["value"] == "21");
  CHECK(back["content"]["twin"]["setpoint"]["actual_version"] == json{{"cloud", 0}, {"edge", 2}});
  // Nothing reached the device: no delta, no document for the rejected value.
  CHECK(f.device.messagesOn(kDevTopic + "twin/update/delta").empty());
}

TEST_CASE("a membership update carrying twins (KubeEdge 1.14) updates bound devices, then acks") {
  Fixture f;
  json content = {{"event_id", "m1"},
                  {"timestamp", 1},
                  {"added_devices",
                   json::array({{{"id", "thermo"},  // a one-segment id, as 1.14 names devices
                                 {"name", "thermo"},
                                 {"twin", {{"mode", versioned("expected", "2", 1, 0)}}}},
                                {{"id", "ghost"}, {"name", "ghost"}, {"twin", json::object()}}})},
                  {"removed_devices", nullptr}};
  // KubeEdge sends this content as a string holding JSON; accepted either way.
  json ack = f.sendAndAwaitAck("m1", twinEnvelope("m1", "update", "membership", content.dump()));
  CHECK(ack["route"]["resource"] == "membership");
  CHECK(ack["route"]["group"] == "twin");
  auto twin = f.agent.storedTwin();
  REQUIRE(twin.size() == 1);
  CHECK(twin[0].name == "mode");
  CHECK(twin[0].expected->value == "2");
  json delta = f.deviceMessage("twin/update/delta", 0);
  CHECK(delta["delta"] == json{{"mode", "2"}});
}

TEST_CASE("a cloud twin for a device not bound here is counted and not acked") {
  Fixture f;
  f.cloud.publish(kTopics.down(kNode),
                  twinEnvelope("g1", "update", "device/default/ghost/twin/cloud_updated",
                               {{"twin", {{"p", versioned("expected", "1", 1, 0)}}}}));
  REQUIRE(waitFor([&] { return f.agent.link->status().messagesInvalid == 1; }));
  // A later message is acked, so the first one was handled (and not acked) before it.
  f.sendAndAwaitAck("c3", twinEnvelope("c3", "update", "device/" + kDev + "/twin/cloud_updated",
                                       {{"twin", {{"p", versioned("expected", "1", 1, 0)}}}}));
  for (const auto& m : f.cloud.messagesOn(kTopics.up(kNode))) {
    CHECK(json::parse(m.payload)["header"].value("parent_msg_id", "") != "g1");
  }
  f.agent.logging.flush();
  CHECK(readFile(f.agent.logPath).find("device/default/ghost/twin/cloud_updated") !=
        std::string::npos);
}

namespace {

std::string nested(size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }

double metric(Agent& agent, const std::string& line) {
  auto text = agent.metrics.render();
  auto pos = text.find("\n" + line + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(text.substr(pos + line.size() + 2));
}

bool acked(MqttTestClient& cloud, const std::string& msgId) {
  for (const auto& m : cloud.messagesOn(kTopics.up(kNode))) {
    if (json::parse(m.payload)["header"].value("parent_msg_id", "") == msgId) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a cloud twin nested past the JSON limits is refused, also retained after a restart") {
  TempDir dir;
  Mosquitto broker;
  MqttTestClient device(broker.uri());
  MqttTestClient cloud(broker.uri());
  device.subscribe("$hw/events/#");
  cloud.subscribe(kTopics.up(kNode));
  auto agent = std::make_unique<Agent>(dir, broker.uri());
  REQUIRE(waitFor([&] { return agent->up(); }));
  agent->bindThermo();
  REQUIRE(waitFor([&] { return agent->service->status().devices == 1; }));
  const std::string resource = "device/" + kDev + "/twin/cloud_updated";
  const std::string refusedJson = "outpost_twin_refused_total{reason=\"json\"}";

  // KubeEdge's content is a string holding JSON: the envelope is shallow, what the twins parse is
  // not. Retained on the node's down topic, as a broker keeps it for the next connection.
  std::string deepMembership =
      R"({"added_devices":[{"id":"thermo","twin":{"p":)" + nested(200000) + "}}]}";
  cloud.publish(kTopics.down(kNode), twinEnvelope("d1", "update", "membership", deepMembership),
                true);
  REQUIRE(waitFor([&] { return metric(*agent, refusedJson) == 1; }));
  std::string deepTwin = R"({"twin":{"setpoint":)" + nested(200000) + "}}";
  cloud.publish(kTopics.down(kNode), twinEnvelope("d2", "update", resource, deepTwin));
  REQUIRE(waitFor([&] { return metric(*agent, refusedJson) == 2; }));
  REQUIRE(waitFor([&] { return agent->link->status().messagesInvalid == 2; }));
  CHECK(agent->service->alive(1s));

  // The next good message is applied and acked; the refused ones never are.
  cloud.publish(kTopics.down(kNode),
                twinEnvelope("c1", "update", resource,
                             {{"twin", {{"setpoint", versioned("expected", "23", 1, 0)}}}}));
  REQUIRE(waitFor([&] { return acked(cloud, "c1"); }));
  CHECK_FALSE(acked(cloud, "d1"));
  CHECK_FALSE(acked(cloud, "d2"));
  CHECK(agent->storedTwin().size() == 1);
  agent->logging.flush();
  std::string log = readFile(agent->logPath);
  CHECK(log.find("refused cloud membership update: JSON nests deeper than 100 levels") !=
        std::string::npos);
  CHECK(log.find("refused cloud twin of default/thermo: JSON nests deeper than 100 levels") !=
        std::string::npos);

  // A restart: the retained message comes back, and is refused again.
  agent.reset();
  agent = std::make_unique<Agent>(dir, broker.uri());
  REQUIRE(waitFor([&] { return agent->up(); }));
  REQUIRE(waitFor([&] { return metric(*agent, refusedJson) == 1; }));
  CHECK(agent->service->status().devices == 1);
  CHECK(agent->service->alive(1s));
  cloud.publish(kTopics.down(kNode),
                twinEnvelope("c2", "update", resource,
                             {{"twin", {{"setpoint", versioned("expected", "24", 2, 0)}}}}));
  REQUIRE(waitFor([&] { return acked(cloud, "c2"); }));
  CHECK(agent->storedTwin()[0].expected->value == "24");
  cloud.publish(kTopics.down(kNode), "", true);  // clears the retained message
}
