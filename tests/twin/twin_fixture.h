#pragma once
// The twin tests' agent (store and twin service wired as agent/ wires them) and device (an MQTT
// client), shared by twin_test.cc and twin_limits_test.cc.
#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <nlohmann/json.hpp>

#include "outpost/metadb/sqlite_store.h"
#include "outpost/twin/twin_service.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"

namespace twintest {

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

inline constexpr const char* kNode = "edge-1";
inline const std::string kDev = "default/thermo";  // the namespaced id of the device "thermo"
inline const std::string kTopic = "$hw/events/device/default/thermo/";

// One agent's store and twin service, as agent/ wires them.
struct Agent {
  Agent(TempDir& dir, const std::string& broker, twin::DeviceIdForm form = {})
      : logPath((dir / "agent.log").string()),
        logging({core::LogLevel::kDebug, false, logPath}),
        loop("test", clock) {
    loop.start();
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    so.commitWindow = 0ms;
    auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    REQUIRE(s.isOk());
    store = std::move(s).value();
    auto r = store->openReader();
    REQUIRE(r.isOk());
    reader = std::move(r).value();
    options.nodeName = kNode;
    options.broker = broker;
    options.deviceIdForm = form;
    options.reconnectBase = 50ms;
    options.reconnectCap = 300ms;
    options.keepAlive = 2s;
    // What the twins queue for the cloud, the store announces.
    outboxSub = bus.subscribe(metadb::kOutboxChanged, loop, [this](const metadb::OutboxChanged& e) {
      if (e.queued > 0) outboxSignals++;
    });
  }
  ~Agent() {
    outboxSub.reset();
    if (twin) twin->stop();
    twin.reset();
    reader.reset();
    store.reset();
    loop.stop();
  }
  void start() {
    twin = twin::makeTwinService(options, *store, bus, clock, logging, metrics);
    REQUIRE(twin->start().isOk());
  }
  void restart() {
    twin->stop();
    start();
  }
  bool connected() { return twin->status().connected; }
  // Hands the twins a message from the cloud, as agent/ does, and waits for its outcome.
  core::Status applyCloud(const std::string& resource, const std::string& operation,
                          const std::string& content) {
    std::promise<core::Status> p;
    twin->applyCloudTwin({resource, operation, content}, [&](core::Status s) { p.set_value(s); });
    auto f = p.get_future();
    REQUIRE(f.wait_for(20s) == std::future_status::ready);
    return f.get();
  }
  // A cloud_updated twin for device `id`.
  core::Status applyCloudTwin(const std::string& id, const json& content) {
    return applyCloud("device/" + id + "/twin/cloud_updated", "update", content.dump());
  }

  core::Status write(metadb::WriteBatch batch) {
    std::promise<core::Status> p;
    store->write(std::move(batch), loop,
                 [&](core::Result<metadb::WriteResult> r) { p.set_value(r.status()); });
    return p.get_future().get();
  }
  // Stores a Device object as the cloud link would (a desired resource of type "device").
  void putDevice(const std::string& name, const std::string& node,
                 const std::map<std::string, std::string>& desired, const std::string& type = "") {
    json props = json::array();
    for (const auto& [k, v] : desired) {
      json d = {{"value", v}};
      if (!type.empty()) d["metadata"] = {{"type", type}};
      props.push_back({{"name", k}, {"desired", d}});
    }
    json obj = {{"apiVersion", "devices.kubeedge.io/v1beta1"},
                {"kind", "Device"},
                {"metadata", {{"name", name}, {"namespace", "default"}, {"uid", "uid-" + name}}},
                {"spec",
                 {{"deviceModelRef", {{"name", "thermo-model"}}},
                  {"nodeName", node},
                  {"properties", props}}}};
    metadb::ResourceChange c;
    c.key = "default/device/" + name;
    c.version = std::to_string(++version);
    c.uid = "uid-" + name;
    c.object = obj.dump();
    c.origin = "cloud";
    REQUIRE(write(metadb::WriteBatch().apply(std::move(c))).isOk());
  }
  void deleteDevice(const std::string& name) {
    metadb::ResourceChange c;
    c.kind = metadb::ResourceChange::Kind::kDelete;
    c.key = "default/device/" + name;
    c.version = std::to_string(++version);
    REQUIRE(write(metadb::WriteBatch().apply(std::move(c))).isOk());
  }
  std::vector<metadb::OutboxEntry> outbox() {
    auto r = reader->outboxDue(1000);
    REQUIRE(r.isOk());
    return *r;
  }
  std::vector<metadb::TwinProperty> storedTwin(const std::string& id) {
    auto r = reader->twin(id);
    REQUIRE(r.isOk());
    return *r;
  }
  double metric(const std::string& line) {
    auto text = metrics.render();
    auto pos = text.find("\n" + line + " ");
    if (pos == std::string::npos) return -1;
    return std::stod(text.substr(pos + line.size() + 2));
  }

  core::SystemClock clock;
  std::string logPath;
  core::Bus bus;
  core::Logging logging;
  core::MetricsRegistry metrics;
  core::EventLoop loop;
  std::unique_ptr<metadb::SqliteStore> store;
  metadb::StoreReaderPtr reader;
  twin::TwinOptions options;
  twin::TwinServicePtr twin;
  std::atomic<int> outboxSignals{0};  // commits that queued outbox rows
  core::Subscription outboxSub;
  int64_t version = 0;
};

// The device (or its mapper): publishes requests and collects what the agent publishes.
struct Device {
  explicit Device(const std::string& broker) : client(broker) { client.subscribe("$hw/events/#"); }

  // Publishes `request` on `kTopic + tail` and waits for the n-th message on `answerTail`.
  json call(const std::string& tail, const json& request, const std::string& answerTail) {
    return callRaw(tail, request.dump(), answerTail);
  }
  json callRaw(const std::string& tail, const std::string& payload, const std::string& answerTail,
               const std::string& prefix = kTopic) {
    size_t before = client.messagesOn(prefix + answerTail).size();
    client.publish(prefix + tail, payload);
    REQUIRE(waitFor([&] { return client.messagesOn(prefix + answerTail).size() > before; }));
    return json::parse(client.messagesOn(prefix + answerTail)[before].payload);
  }
  std::vector<json> on(const std::string& topic) {
    std::vector<json> out;
    for (const auto& m : client.messagesOn(topic)) out.push_back(json::parse(m.payload));
    return out;
  }
  json waitNext(const std::string& topic, size_t index) {
    REQUIRE(waitFor([&] { return client.messagesOn(topic).size() > index; }));
    return json::parse(client.messagesOn(topic)[index].payload);
  }
  MqttTestClient client;
};

inline json update(const std::string& eventId, const json& twin) {
  return {{"event_id", eventId}, {"timestamp", 1}, {"twin", twin}};
}
inline json actual(const std::string& value, const std::string& type = "") {
  json p = {{"actual", {{"value", value}}}};
  if (!type.empty()) p["metadata"] = {{"type", type}};
  return p;
}

// A started agent with the device "thermo" bound to it and the device's client subscribed.
struct Fixture {
  // `configure` may change the twin's options before it starts.
  explicit Fixture(const std::function<void(twin::TwinOptions&)>& configure = {})
      : agent(dir, broker.uri()), device(broker.uri()) {
    if (configure) configure(agent.options);
    agent.start();
    REQUIRE(waitFor([&] { return agent.connected(); }));
    agent.putDevice("thermo", kNode, {});
    REQUIRE(waitFor([&] { return agent.twin->status().devices == 1; }));
    device.waitNext("$hw/events/node/edge-1/membership/updated", 0);
  }
  TempDir dir;
  Mosquitto broker;
  Agent agent;
  Device device;
};

}  // namespace twintest
