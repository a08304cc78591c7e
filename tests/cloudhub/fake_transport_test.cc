// The FakeTransport (tests/support/fake_transport.h) behaves as the real MQTT transport does in
// what the session relies on: one scenario, run over each. The session connects and is told it is
// open; a frame from the cloud arrives, is stored and acked, and the cloud gets the ack; the
// connection is lost and the session hears why; it connects again by itself and goes on.
#include "support/fake_transport.h"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>

#include "mqtt/mqtt_transport.h"
#include "outpost/metadb/sqlite_store.h"
#include "session/session.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"
#include "support/test_util.h"
#include "test_protocol.h"

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kUp = "test/edge/up";
constexpr const char* kDown = "test/edge/down";

// The cloud side of one transport: what it sends, what it received, and cutting the connection.
struct World {
  virtual ~World() = default;
  virtual cloudhub::Transport& transport() = 0;
  virtual void opened() {}               // on the session's loop, once open
  virtual bool ready() { return true; }  // the cloud can reach the session
  virtual void cloudSends(const std::string& payload) = 0;
  virtual bool cloudAcked(const std::string& msgId) = 0;
  virtual void cut() = 0;
  virtual void restore() = 0;
};

bool isAckOf(const std::string& payload, const std::string& msgId) {
  auto j = nlohmann::json::parse(payload, nullptr, false);
  return j.is_object() && j["route"].value("operation", "") == "response" &&
         j["header"].value("parent_msg_id", "") == msgId;
}

struct FakeWorld final : World {
  explicit FakeWorld(core::Clock& clock) : fake(clock) {}
  cloudhub::Transport& transport() override { return fake; }
  void cloudSends(const std::string& payload) override { REQUIRE(fake.deliver(payload, kDown)); }
  bool cloudAcked(const std::string& msgId) override {
    for (const auto& o : fake.sent())
      if (o.channel == kUp && isAckOf(o.payload, msgId)) return true;
    return false;
  }
  void cut() override {
    fake.setOnConnect(FakeTransport::OnConnect::kFail);
    REQUIRE(fake.closeWithReason("connection lost (scripted)"));
  }
  void restore() override { fake.setOnConnect(FakeTransport::OnConnect::kOpen); }
  FakeTransport fake;
};

struct MqttWorld final : World {
  MqttWorld() : mqtt(options(broker.uri())) { connectCloud(); }
  // The cloud's own client; made again after a broker restart.
  void connectCloud() {
    cloud = std::make_unique<MqttTestClient>(broker.uri());
    cloud->subscribe(kUp);
  }
  static mqttc::ConnectOptions options(const std::string& uri) {
    mqttc::ConnectOptions c;
    c.uri = uri;
    c.clientId = "edge-alike";
    c.keepAlive = 2s;
    c.connectTimeout = 2s;
    return c;
  }
  cloudhub::Transport& transport() override { return mqtt; }
  void opened() override {
    mqtt.subscribe({kDown}, [this](core::Status s) { subscribed = s.isOk(); });
  }
  bool ready() override { return subscribed; }
  void cloudSends(const std::string& payload) override { cloud->publish(kDown, payload); }
  bool cloudAcked(const std::string& msgId) override {
    for (const auto& m : cloud->messagesOn(kUp))
      if (isAckOf(m.payload, msgId)) return true;
    return false;
  }
  void cut() override {
    subscribed = false;
    cloud.reset();
    broker.stop();
  }
  void restore() override {
    broker.start();
    connectCloud();
  }
  std::atomic<bool> subscribed{false};
  Mosquitto broker;
  std::unique_ptr<MqttTestClient> cloud;
  cloudhub::MqttTransport mqtt;
};

void runScenario(World& world) {
  TempDir dir;
  core::SystemClock clock;
  core::Bus bus;
  std::string logPath = (dir / "agent.log").string();
  core::Logging logging({core::LogLevel::kDebug, false, logPath});
  core::MetricsRegistry metrics;
  metadb::StoreOptions so;
  so.path = (dir / "outpost.db").string();
  auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
  REQUIRE(s.isOk());
  auto store = std::move(s).value();
  auto r = store->openReader();
  REQUIRE(r.isOk());
  auto reader = std::move(r).value();
  cloudhub::SessionOptions o;
  o.transport = "test";
  o.loopName = "alike-test";
  o.reconnectBase = 50ms;
  o.reconnectCap = 300ms;
  o.connectTimeout = 2s;
  cloudhub::Session session(o, world.transport(), *store, bus, clock, logging, metrics);
  TestProtocol protocol(session, kUp, [&] { world.opened(); });
  session.setProtocol(protocol);
  struct StopFirst {  // the session stops before the protocol goes, also when a check fails
    cloudhub::Session& s;
    ~StopFirst() { s.stop(); }
  } stopFirst{session};
  INFO(readFile(logPath));

  REQUIRE(session.start().isOk());
  REQUIRE(waitFor([&] { return session.connected() && world.ready(); }));
  world.cloudSends(podInsert("one", "m-1"));
  REQUIRE(waitFor([&] { return world.cloudAcked("m-1"); }));
  CHECK(reader->get("default/pod/one")->has_value());
  CHECK(session.status().messagesIn >= 1);

  world.cut();
  REQUIRE(waitFor([&] { return !session.connected(); }));
  CHECK_FALSE(session.status().lastError.empty());
  world.restore();
  REQUIRE(waitFor([&] { return session.connected() && world.ready(); }, 20s));
  CHECK(session.status().reconnects >= 1);
  world.cloudSends(podInsert("two", "m-2"));
  REQUIRE(waitFor([&] { return world.cloudAcked("m-2"); }));
  CHECK(reader->get("default/pod/two")->has_value());
}

}  // namespace

TEST_CASE("the session's scenario over the FakeTransport") {
  core::SystemClock clock;
  FakeWorld world(clock);
  runScenario(world);
}

TEST_CASE("the same scenario over the real MQTT transport and a real mosquitto") {
  MqttWorld world;
  runScenario(world);
}
