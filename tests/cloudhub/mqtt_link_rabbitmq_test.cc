// The MQTT cloud link against RabbitMQ's MQTT plugin: the scenarios of mqtt_link_test.cc that make
// the scheme (desired in, acks and retained status out, convergence after an absence, a broker
// restart), on a second broker, so the scheme is shown not to depend on mosquitto. What differs
// between brokers is in docs/mqtt-link.md. One RabbitMQ serves the whole binary (Erlang starts in
// seconds, not milliseconds); each case has a node name of its own, so what earlier cases left
// retained or queued on the broker is not in its way. Deadlines are generous: an object published
// before the node's subscription is bound arrives only through the manifest's fetch (see the docs).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <nlohmann/json.hpp>

#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/mqtt_link.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/mqtt_client.h"
#include "support/rabbitmq.h"

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const cloudhub::MqttTopics kTopics{"outpost/v1"};

RabbitMq* rabbitmq() {
  if (std::string why = RabbitMq::unavailableReason(); !why.empty()) {
    MESSAGE("skipped: " << why);
    return nullptr;
  }
  std::string why;
  RabbitMq* broker = RabbitMq::shared(why);
  REQUIRE_MESSAGE(broker, why);
  return broker;
}

// One agent's store and link, as the agent wires them.
struct Agent {
  Agent(TempDir& dir, cloudhub::MqttLinkOptions o)
      : logPath((dir / "agent.log").string()),
        logging({core::LogLevel::kDebug, false, logPath}),
        options(std::move(o)) {
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    REQUIRE(s.isOk());
    store = std::move(s).value();
    link = cloudhub::makeMqttLink(options, *store, bus, clock, logging, metrics);
    REQUIRE(link->start().isOk());
    auto r = store->openReader();
    REQUIRE(r.isOk());
    reader = std::move(r).value();
  }
  ~Agent() {
    link->stop();
    link.reset();
    reader.reset();
    store.reset();
  }
  std::optional<metadb::Resource> get(const std::string& key) {
    auto r = reader->get(key);
    REQUIRE(r.isOk());
    return *r;
  }
  std::vector<std::string> podKeys() {
    auto r = reader->list("pod");
    REQUIRE(r.isOk());
    std::vector<std::string> keys;
    for (const auto& res : *r) keys.push_back(res.key);
    return keys;
  }
  bool connected() { return link->status().state == cloudhub::LinkState::kConnected; }
  std::string log() {
    logging.flush();
    return readFile(logPath);
  }

  core::SystemClock clock;
  std::string logPath;
  core::Bus bus;
  core::Logging logging;
  core::MetricsRegistry metrics;
  cloudhub::MqttLinkOptions options;
  std::unique_ptr<metadb::SqliteStore> store;
  cloudhub::CloudLinkPtr link;
  metadb::StoreReaderPtr reader;
};

cloudhub::MqttLinkOptions linkOptions(const std::string& broker, const std::string& node) {
  cloudhub::MqttLinkOptions o;
  o.nodeName = node;
  o.groups = {node + "-group"};
  o.broker = broker;
  o.reconnectBase = 50ms;
  o.reconnectCap = 500ms;
  o.keepAlive = 2s;
  return o;
}

std::string podEnvelope(const std::string& name, int64_t version, const std::string& msgId,
                        const std::string& image = "busybox") {
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", name}, {"namespace", "default"}, {"uid", "uid-" + name}}},
              {"spec", {{"containers", json::array({{{"name", "main"}, {"image", image}}})}}}};
  json env = {{"header",
               {{"msg_id", msgId}, {"timestamp", 1}, {"resourceversion", std::to_string(version)}}},
              {"route",
               {{"source", "outpostctl"},
                {"group", "resource"},
                {"operation", "update"},
                {"resource", "default/pod/" + name}}},
              {"content", pod}};
  return env.dump();
}

// The cloud side of one node: publishes desired objects (retained) and keeps its manifest, as
// docs/mqtt-link.md asks of a publisher: resource versions that only grow within the scope, and the
// newest one in the manifest's `version` (RabbitMQ may hand an object over before an older
// manifest; that field keeps the older manifest from pruning it).
struct Cloud {
  Cloud(const std::string& broker, std::string n) : node(std::move(n)), client(broker) {
    client.subscribe(kTopics.up(node));
  }
  // Publishes at the next version; returns it.
  int64_t put(const std::string& name, const std::string& image = "busybox") {
    int64_t version = lastVersion + 1;
    putAt(name, version, image);
    return version;
  }
  void putAt(const std::string& name, int64_t version, const std::string& image = "busybox") {
    lastVersion = std::max(lastVersion, version);
    std::string key = "default/pod/" + name;
    client.publish(kTopics.desired(node, key),
                   podEnvelope(name, version, msgId(name, version), image), true);
    manifest[key] = version;
    publishManifest();
  }
  void remove(const std::string& name) {
    std::string key = "default/pod/" + name;
    client.publish(kTopics.desired(node, key), "", true);
    manifest.erase(key);
    publishManifest();
  }
  void publishManifest() {
    json objects = json::object();
    for (const auto& [k, v] : manifest) objects[k] = std::to_string(v);
    client.publish(kTopics.manifest(node),
                   json{{"generation", ++generation},
                        {"version", std::to_string(lastVersion)},
                        {"objects", objects}}
                       .dump(),
                   true);
  }
  static std::string msgId(const std::string& name, int64_t version) {
    return "msg-" + name + "-" + std::to_string(version);
  }
  bool acked(const std::string& id) const {
    for (const auto& m : client.messagesOn(kTopics.up(node))) {
      auto d = cloudhub::decode(m.payload, cloudhub::Encoding::kJson);
      if (!d.envelope) continue;
      auto ids = cloudhub::ackedMessageIds(*d.envelope);
      if (std::find(ids.begin(), ids.end(), id) != ids.end()) return true;
    }
    return false;
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& kv : manifest) out.push_back(kv.first);
    return out;
  }
  std::string node;
  MqttTestClient client;
  std::map<std::string, int64_t> manifest;
  int64_t generation = 0;
  int64_t lastVersion = 0;
};

}  // namespace

TEST_CASE(
    "RabbitMQ: a desired object is stored, then acknowledged; a stale one changes nothing; the "
    "node says it is online, retained") {
  RabbitMq* broker = rabbitmq();
  if (!broker) return;
  const std::string node = "rmq-ack";
  TempDir dir;
  Cloud cloud(broker->uri(), node);
  Agent agent(dir, linkOptions(broker->uri(), node));
  REQUIRE(waitFor([&] { return agent.connected(); }, 20s));

  cloud.putAt("web", 7);
  REQUIRE(waitFor([&] { return cloud.acked(Cloud::msgId("web", 7)); }, 60s));
  auto stored = agent.get("default/pod/web");
  REQUIRE(stored);
  CHECK(stored->version == 7);
  cloud.client.publish(kTopics.desired(node, "default/pod/web"),
                       podEnvelope("web", 3, "msg-old", "old"), true);
  REQUIRE(waitFor([&] { return cloud.acked("msg-old"); }));
  CHECK(agent.get("default/pod/web")->version == 7);

  // Group scope too.
  cloud.client.publish(kTopics.groupDesired(node + "-group", "default/pod/till"),
                       podEnvelope("till", 2, "g1"), true);
  REQUIRE(waitFor([&] { return agent.get("default/pod/till").has_value(); }));
  CHECK(agent.get("default/pod/till")->origin == "mqtt:group:" + node + "-group");

  MqttTestClient watcher(broker->uri());
  watcher.subscribe(kTopics.online(node));  // an exact topic: RabbitMQ sends its retained copy
  REQUIRE(waitFor([&] { return !watcher.messagesOn(kTopics.online(node)).empty(); }));
  CHECK(watcher.messagesOn(kTopics.online(node)).back().payload == "true");
  CHECK(watcher.messagesOn(kTopics.online(node)).back().retained);
}

TEST_CASE(
    "RabbitMQ: objects retained before the node's first connect reach it through the manifest, "
    "as RabbitMQ sends no retained message to its desired/# subscription") {
  RabbitMq* broker = rabbitmq();
  if (!broker) return;
  const std::string node = "rmq-fresh";
  TempDir dir;
  Cloud cloud(broker->uri(), node);
  std::map<std::string, int64_t> versions;
  for (auto name : {"a", "b", "c"}) versions[name] = cloud.put(name);
  Agent agent(dir, linkOptions(broker->uri(), node));
  INFO("agent log:\n", agent.log());
  // The manifest (an exact topic) arrives; the objects come by the exact-topic fetch after 2 s.
  REQUIRE(waitFor([&] { return agent.podKeys() == cloud.keys(); }, 60s));
  REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
  for (const auto& [name, version] : versions)
    CHECK(waitFor([&, n = name, v = version] { return cloud.acked(Cloud::msgId(n, v)); }));
}

TEST_CASE(
    "RabbitMQ: objects added, changed and deleted while the agent was away converge exactly when "
    "it returns") {
  RabbitMq* broker = rabbitmq();
  if (!broker) return;
  const std::string node = "rmq-away";
  TempDir dir;
  Cloud cloud(broker->uri(), node);
  auto opts = linkOptions(broker->uri(), node);
  {
    Agent agent(dir, opts);
    INFO("agent log:\n", agent.log());
    REQUIRE(waitFor([&] { return agent.connected(); }, 20s));
    for (auto name : {"a", "b", "c", "d"}) cloud.put(name);
    REQUIRE(waitFor([&] { return agent.podKeys() == cloud.keys(); }, 60s));
  }
  // While the agent is away (its persistent session queues what comes): one changed, two deleted,
  // two added.
  int64_t changed = cloud.put("b", "changed");
  cloud.remove("c");
  cloud.remove("d");
  cloud.put("e");
  cloud.put("f");
  Agent agent(dir, opts);
  INFO("agent log:\n", agent.log());
  REQUIRE(waitFor([&] { return agent.podKeys() == cloud.keys(); }, 60s));
  CHECK(agent.podKeys() == std::vector<std::string>{"default/pod/a", "default/pod/b",
                                                    "default/pod/e", "default/pod/f"});
  CHECK(agent.get("default/pod/b")->version == changed);
  REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
}

TEST_CASE(
    "RabbitMQ: status rows leave the outbox once the broker accepted them, retained for a "
    "dashboard that subscribes later") {
  RabbitMq* broker = rabbitmq();
  if (!broker) return;
  const std::string node = "rmq-status";
  TempDir dir;
  Agent agent(dir, linkOptions(broker->uri(), node));
  REQUIRE(waitFor([&] { return agent.connected(); }, 20s));
  core::EventLoop caller("caller", agent.clock);
  caller.start();
  std::atomic<bool> written{false};
  metadb::WriteBatch batch;
  batch.enqueue({"podstatus", "default/pod/web", R"({"status":{"phase":"Running"}})", 0});
  agent.store->write(std::move(batch), caller,
                     [&](core::Result<metadb::WriteResult> r) { written = r.isOk(); });
  REQUIRE(waitFor([&] { return written.load(); }));
  agent.link->outboxChanged();
  REQUIRE(waitFor([&] { return agent.reader->outboxStats()->rows == 0; }, 20s));
  const std::string topic = kTopics.status(node, "default/pod/web");
  MqttTestClient late(broker->uri());
  late.subscribe(topic);
  REQUIRE(waitFor([&] { return !late.messagesOn(topic).empty(); }));
  auto msg = late.messagesOn(topic).back();
  CHECK(msg.retained);
  auto env = cloudhub::decode(msg.payload, cloudhub::Encoding::kJson).envelope;
  REQUIRE(env);
  CHECK(json::parse(env->content)["status"]["phase"] == "Running");
  caller.stop();
}

TEST_CASE("RabbitMQ: a broker restart loses nothing: the link comes back and converges") {
  RabbitMq* broker = rabbitmq();
  if (!broker) return;
  const std::string node = "rmq-restart";
  TempDir dir;
  Agent agent(dir, linkOptions(broker->uri(), node));
  REQUIRE(waitFor([&] { return agent.connected(); }, 20s));
  std::map<std::string, int64_t> manifest;
  int64_t generation = 0, lastVersion = 0;
  {
    Cloud cloud(broker->uri(), node);
    cloud.put("keep");
    cloud.put("gone");
    REQUIRE(waitFor([&] { return agent.podKeys().size() == 2; }, 60s));
    manifest = cloud.manifest;
    generation = cloud.generation;
    lastVersion = cloud.lastVersion;
  }
  broker->stop();
  REQUIRE(waitFor([&] { return !agent.connected(); }));
  broker->start();
  REQUIRE_MESSAGE(broker->running(), broker->log());
  // The retained store outlived the restart.
  const std::string keepTopic = kTopics.desired(node, "default/pod/keep");
  MqttTestClient reader(broker->uri());
  reader.subscribe(keepTopic);
  REQUIRE(waitFor([&] { return !reader.messagesOn(keepTopic).empty(); }));
  CHECK(reader.messagesOn(keepTopic).back().retained);
  Cloud cloud(broker->uri(), node);
  cloud.manifest = manifest;
  cloud.generation = generation;
  cloud.lastVersion = lastVersion;
  cloud.remove("gone");
  cloud.put("new");
  REQUIRE(waitFor([&] { return agent.connected(); }, 60s));
  REQUIRE(waitFor(
      [&] {
        return agent.podKeys() == std::vector<std::string>{"default/pod/keep", "default/pod/new"};
      },
      60s));
  CHECK(agent.link->status().reconnects >= 1);
}
