// The MQTT cloud link against a real mosquitto: desired state in, acks and status out, through
// outages.
#include "outpost/cloudhub/mqtt_link.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "outpost/cloudhub/envelope.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const cloudhub::MqttTopics kTopics{"outpost/v1"};
constexpr const char* kNode = "edge-1";

// One agent's store and link, as the agent would wire them.
struct Agent {
  Agent(TempDir& dir, cloudhub::MqttLinkOptions o, core::Clock& clk,
        std::optional<core::Duration> commitWindow = std::nullopt)
      : clock(clk),
        logPath((dir / "agent.log").string()),
        logging({core::LogLevel::kDebug, false, logPath}),
        options(std::move(o)) {
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    if (commitWindow) so.commitWindow = *commitWindow;
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

  core::Clock& clock;
  std::string logPath;
  core::Bus bus;
  core::Logging logging;
  core::MetricsRegistry metrics;
  cloudhub::MqttLinkOptions options;
  std::unique_ptr<metadb::SqliteStore> store;
  cloudhub::CloudLinkPtr link;
  metadb::StoreReaderPtr reader;
};

cloudhub::MqttLinkOptions linkOptions(const std::string& broker) {
  cloudhub::MqttLinkOptions o;
  o.nodeName = kNode;
  o.groups = {"stores"};
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

// The cloud side: publishes desired objects (retained) and keeps the node's manifest up to date.
struct Cloud {
  explicit Cloud(const std::string& broker, const TlsFiles* tls = nullptr) : client(broker, tls) {
    client.subscribe(kTopics.up(kNode));
    client.subscribe("outpost/v1/nodes/" + std::string(kNode) + "/status/#");
  }
  void put(const std::string& name, int64_t version, const std::string& image = "busybox") {
    std::string key = "default/pod/" + name;
    client.publish(kTopics.desired(kNode, key),
                   podEnvelope(name, version, "msg-" + name + "-" + std::to_string(version), image),
                   true);
    manifest[key] = version;
    publishManifest();
  }
  void remove(const std::string& name) {
    std::string key = "default/pod/" + name;
    client.publish(kTopics.desired(kNode, key), "", true);
    manifest.erase(key);
    publishManifest();
  }
  void publishManifest() {
    json objects = json::object();
    for (const auto& [k, v] : manifest) objects[k] = std::to_string(v);
    client.publish(kTopics.manifest(kNode),
                   json{{"generation", ++generation}, {"objects", objects}}.dump(), true);
  }
  // True once an ack on up names `msgId`: a single ack (parent_msg_id, "OK") or a batch ack.
  bool acked(const std::string& msgId) const {
    for (const auto& m : client.messagesOn(kTopics.up(kNode))) {
      auto d = cloudhub::decode(m.payload, cloudhub::Encoding::kJson);
      if (!d.envelope) continue;
      auto ids = cloudhub::ackedMessageIds(*d.envelope);
      if (std::find(ids.begin(), ids.end(), msgId) == ids.end()) continue;
      if (ids.size() == 1 && d.envelope->content != "\"OK\"") continue;
      return true;
    }
    return false;
  }
  MqttTestClient client;
  std::map<std::string, int64_t> manifest;
  int64_t generation = 0;
};

// A TCP forwarder between the link and the broker that can hold what the link sends (the
// broker's answers still flow): the link's ack is then written but its PUBACK does not come.
// One connection at a time.
class HoldingProxy {
 public:
  explicit HoldingProxy(int brokerPort) : brokerPort_(brokerPort) {
    listenFd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(listenFd_, reinterpret_cast<sockaddr*>(&a), len) == 0);
    REQUIRE(::listen(listenFd_, 4) == 0);
    REQUIRE(::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~HoldingProxy() {
    stop_ = true;
    thread_.join();
    ::close(listenFd_);
  }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  // While held, nothing the link writes reaches the broker.
  void hold(bool on) { held_ = on; }

 private:
  void run() {
    int client = -1, server = -1;
    char buf[65536];
    while (!stop_) {
      std::vector<pollfd> fds = {{listenFd_, POLLIN, 0}};
      if (client >= 0) {
        fds.push_back({client, static_cast<short>(held_ ? 0 : POLLIN), 0});
        fds.push_back({server, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int c = ::accept(listenFd_, nullptr, nullptr);
        if (client >= 0) ::close(c);  // one at a time
        if (client < 0 && c >= 0) {
          server = ::socket(AF_INET, SOCK_STREAM, 0);
          sockaddr_in b{};
          b.sin_family = AF_INET;
          b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          b.sin_port = htons(static_cast<uint16_t>(brokerPort_));
          if (::connect(server, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) {
            ::close(server);
            ::close(c);
            server = -1;
            continue;
          }
          client = c;
        }
        continue;
      }
      bool closed = false;
      for (size_t i = 1; i < fds.size() && !closed; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        int to = fds[i].fd == client ? server : client;
        closed = n <= 0 || ::write(to, buf, static_cast<size_t>(n)) != n;
      }
      if (closed) {
        ::close(client);
        ::close(server);
        client = server = -1;
      }
    }
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
  }

  int brokerPort_;
  int listenFd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, held_{false};
  std::thread thread_;
};

// Every msg_id acked on up, once per ack message naming it, in order.
std::vector<std::vector<std::string>> ackMessages(const Cloud& cloud) {
  std::vector<std::vector<std::string>> out;
  for (const auto& m : cloud.client.messagesOn(kTopics.up(kNode))) {
    auto d = cloudhub::decode(m.payload, cloudhub::Encoding::kJson);
    if (d.envelope && d.envelope->route.operation == "response")
      out.push_back(cloudhub::ackedMessageIds(*d.envelope));
  }
  return out;
}

std::vector<std::string> keysOf(const std::map<std::string, int64_t>& m) {
  std::vector<std::string> keys;
  for (const auto& kv : m) keys.push_back(kv.first);
  return keys;
}

}  // namespace

TEST_CASE("a desired object published to the broker is stored durably, then acknowledged on up") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  auto opts = linkOptions(broker.uri());
  Agent agent(dir, opts, clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));

  cloud.put("web", 7);
  REQUIRE(waitFor([&] { return cloud.acked("msg-web-7"); }));
  // The ack came after the commit: a fresh reader sees the object at once.
  auto stored = agent.get("default/pod/web");
  REQUIRE(stored);
  CHECK(stored->version == 7);
  CHECK(stored->uid == "uid-web");
  CHECK(json::parse(stored->object)["spec"]["containers"][0]["image"] == "busybox");

  // The ack's route copies the source and group of the desired message.
  for (const auto& m : cloud.client.messagesOn(kTopics.up(kNode))) {
    auto j = json::parse(m.payload);
    if (j["header"]["parent_msg_id"] != "msg-web-7") continue;
    CHECK(j["route"]["source"] == "outpostctl");
    CHECK(j["route"]["group"] == "resource");
    CHECK(j["route"]["resource"] == "default/pod/web");
  }
  // An older version published later is stale: acknowledged, stored data unchanged.
  cloud.client.publish(kTopics.desired(kNode, "default/pod/web"),
                       podEnvelope("web", 3, "msg-old", "old"), true);
  REQUIRE(waitFor([&] { return cloud.acked("msg-old"); }));
  CHECK(agent.get("default/pod/web")->version == 7);
  CHECK(agent.link->status().messagesIn >= 2);

  // The node says it is online (retained), and status rows go out.
  MqttTestClient watcher(broker.uri());
  watcher.subscribe(kTopics.online(kNode));
  REQUIRE(waitFor([&] { return !watcher.messagesOn(kTopics.online(kNode)).empty(); }));
  CHECK(watcher.messagesOn(kTopics.online(kNode)).back().payload == "true");
}

TEST_CASE("objects stored in one commit are acknowledged by one batch ack naming each msg_id") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  // Published before the node connects: the broker hands all of them over at once on subscribe,
  // and a long commit window puts them into one commit.
  for (int i = 0; i < 10; ++i) cloud.put("p" + std::to_string(i), 1);
  core::SystemClock clock;
  Agent agent(dir, linkOptions(broker.uri()), clock, std::chrono::milliseconds(500));
  REQUIRE(waitFor([&] {
    for (int i = 0; i < 10; ++i) {
      if (!cloud.acked("msg-p" + std::to_string(i) + "-1")) return false;
    }
    return true;
  }));
  size_t acks = 0, batches = 0;
  for (const auto& m : cloud.client.messagesOn(kTopics.up(kNode))) {
    auto j = json::parse(m.payload);
    if (j["route"]["operation"] != "response") continue;
    ++acks;
    if (j["route"]["resource"] != "acks") continue;
    ++batches;
    CHECK_FALSE(j["header"].contains("parent_msg_id"));
    CHECK(j["content"].is_array());
    CHECK(j["content"].size() > 1);
  }
  CHECK(batches >= 1);
  CHECK(acks < 10);
  // Every object is stored before its ack.
  CHECK(agent.podKeys().size() == 10);
}

TEST_CASE("desired state for the node's groups is stored too") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  auto opts = linkOptions(broker.uri());
  Agent agent(dir, opts, clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  cloud.client.publish(kTopics.groupDesired("stores", "default/pod/till"),
                       podEnvelope("till", 2, "g1"), true);
  cloud.client.publish(kTopics.groupDesired("factories", "default/pod/robot"),
                       podEnvelope("robot", 2, "g2"), true);
  REQUIRE(waitFor([&] { return agent.get("default/pod/till").has_value(); }));
  CHECK(agent.get("default/pod/till")->origin == "mqtt:group:stores");
  CHECK_FALSE(agent.get("default/pod/robot").has_value());
}

TEST_CASE(
    "a per-node override withdrawn after the group's newer object arrived leaves the group's "
    "object stored (a rollout's wave ends)") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  Agent agent(dir, linkOptions(broker.uri()), clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  const std::string key = "default/pod/till";
  // The wave's new version for this node alone, while the group still has the old one.
  cloud.client.publish(kTopics.groupDesired("stores", key), podEnvelope("till", 3, "g3"), true);
  cloud.client.publish(kTopics.desired(kNode, key), podEnvelope("till", 5, "n5"), true);
  REQUIRE(waitFor([&] { return agent.get(key) && agent.get(key)->version == 5; }));
  CHECK(agent.get(key)->origin == "mqtt:node");
  // The group gets the new version (newer than the node's), then the node's copy is withdrawn.
  cloud.client.publish(kTopics.groupDesired("stores", key), podEnvelope("till", 7, "g7"), true);
  REQUIRE(waitFor([&] { return agent.get(key) && agent.get(key)->version == 7; }));
  cloud.client.publish(kTopics.desired(kNode, key), "", true);
  // Something published after the withdrawal is stored after it: by then it was applied.
  cloud.client.publish(kTopics.desired(kNode, "default/pod/marker"), podEnvelope("marker", 1, "m"),
                       true);
  REQUIRE(waitFor([&] { return agent.get("default/pod/marker").has_value(); }));
  auto till = agent.get(key);
  REQUIRE(till.has_value());
  CHECK(till->version == 7);
  CHECK(till->origin == "mqtt:group:stores");
}

TEST_CASE(
    "objects added, changed and deleted while the agent was away converge exactly when it "
    "returns") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  auto opts = linkOptions(broker.uri());
  for (auto name : {"a", "b", "c", "d"}) cloud.put(name, 1);
  {
    Agent agent(dir, opts, clock);
    REQUIRE(waitFor([&] { return agent.podKeys() == keysOf(cloud.manifest); }));
  }
  // While the agent is down: one changed, two deleted, two added.
  cloud.put("b", 2, "changed");
  cloud.remove("c");
  cloud.remove("d");
  cloud.put("e", 1);
  cloud.put("f", 1);
  Agent agent(dir, opts, clock);
  REQUIRE(waitFor([&] { return agent.podKeys() == keysOf(cloud.manifest); }));
  CHECK(agent.podKeys() == std::vector<std::string>{"default/pod/a", "default/pod/b",
                                                    "default/pod/e", "default/pod/f"});
  CHECK(agent.get("default/pod/b")->version == 2);
  REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
  CHECK(agent.log().find("no longer desired removed") != std::string::npos);
}

TEST_CASE("the last sync survives a restart, also one without the broker") {
  TempDir dir;
  core::SystemClock clock;
  std::optional<core::WallTime> synced;
  core::WallTime stoppedAt;
  {
    Mosquitto broker;
    Cloud cloud(broker.uri());
    cloud.put("a", 1);
    Agent agent(dir, linkOptions(broker.uri()), clock);
    REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
    synced = agent.link->status().lastSync;
    stoppedAt = clock.wallNow();
  }
  // Started again with nobody listening: still offline, and the status says when it last was
  // in step with the cloud.
  Agent agent(dir, linkOptions("tcp://127.0.0.1:" + std::to_string(freePort())), clock);
  auto restored = agent.link->status().lastSync;
  REQUIRE(restored.has_value());
  CHECK(core::toUnixMillis(*restored) >= core::toUnixMillis(*synced));
  CHECK(*restored <= stoppedAt);
  CHECK(agent.link->status().state != cloudhub::LinkState::kConnected);
}

TEST_CASE(
    "a store recovered empty stays marked incomplete until every manifest is complete again") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  cloud.put("a", 1);
  writeFile(dir / "outpost.db", std::string(8192, 'x'));  // not a database: quarantined at open
  Agent agent(dir, linkOptions(broker.uri()), clock);
  CHECK(agent.log().find("STORE CORRUPT") != std::string::npos);
  REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
  CHECK(agent.podKeys() == std::vector<std::string>{"default/pod/a"});
  // The mark that makes deploy keep pods the store does not name goes with the complete set.
  auto mark = agent.reader->getKv(metadb::kKvNeedsFullResync);
  REQUIRE(mark.isOk());
  CHECK_FALSE(mark->has_value());
}

TEST_CASE("a broker restart loses nothing: the link comes back and converges") {
  TempDir dir;
  Mosquitto broker;
  core::SystemClock clock;
  auto opts = linkOptions(broker.uri());
  Agent agent(dir, opts, clock);
  {
    Cloud cloud(broker.uri());
    cloud.put("keep", 1);
    cloud.put("gone", 1);
    REQUIRE(waitFor([&] { return agent.podKeys().size() == 2; }));
    broker.stop();
    REQUIRE(waitFor([&] { return !agent.connected(); }));
    CHECK_FALSE(agent.link->status().lastError.empty());
    broker.start();
  }
  Cloud cloud(broker.uri());
  cloud.manifest = {{"default/pod/keep", 1}, {"default/pod/gone", 1}};
  cloud.generation = 10;
  cloud.remove("gone");
  cloud.put("new", 1);
  REQUIRE(waitFor([&] { return agent.connected(); }, 20s));
  REQUIRE(waitFor([&] {
    return agent.podKeys() == std::vector<std::string>{"default/pod/keep", "default/pod/new"};
  }));
  CHECK(agent.link->status().reconnects >= 1);
  CHECK(agent.metrics.render().find("outpost_cloud_reconnects_total{transport=\"mqtt\"}") !=
        std::string::npos);
}

TEST_CASE(
    "malformed, oversized and misaddressed messages are counted and logged, and the link goes on") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  auto opts = linkOptions(broker.uri());
  opts.maxMessageBytes = 4096;
  Agent agent(dir, opts, clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  cloud.client.publish(kTopics.desired(kNode, "default/pod/x"), "{not json");
  cloud.client.publish(kTopics.desired(kNode, "default/pod/y"), std::string(5000, 'x'));
  cloud.client.publish(kTopics.desired(kNode, "default/pod/z"),
                       podEnvelope("other", 1, "m"));  // wrong resource
  cloud.client.publish(kTopics.desired(kNode, "no-key"), podEnvelope("no-key", 1, "m2"));
  json badVersion = json::parse(podEnvelope("v", 1, "m3"));
  badVersion["header"]["resourceversion"] = "abc";
  cloud.client.publish(kTopics.desired(kNode, "default/pod/v"), badVersion.dump());
  REQUIRE(waitFor([&] { return agent.link->status().messagesInvalid == 5; }));
  cloud.put("fine", 1);
  REQUIRE(waitFor([&] { return agent.get("default/pod/fine").has_value(); }));
  CHECK(agent.podKeys() == std::vector<std::string>{"default/pod/fine"});
  std::string metrics = agent.metrics.render();
  CHECK(metrics.find("outpost_cloud_messages_invalid_total{reason=\"malformed\"} 1") !=
        std::string::npos);
  CHECK(metrics.find("outpost_cloud_messages_invalid_total{reason=\"too_large\"} 1") !=
        std::string::npos);
  CHECK(metrics.find("outpost_cloud_messages_invalid_total{reason=\"misaddressed\"} 2") !=
        std::string::npos);
  CHECK(metrics.find("outpost_cloud_messages_invalid_total{reason=\"invalid\"} 1") !=
        std::string::npos);
  std::string log = agent.log();
  // Refused in the MQTT library's callback, before the payload was copied.
  CHECK(log.find("ignored message on outpost/v1/nodes/edge-1/desired/default/pod/y: message of "
                 "5000 bytes exceeds the limit of 4096; not read") != std::string::npos);
  CHECK(log.find("does not match the topic") != std::string::npos);
}

TEST_CASE(
    "status rows leave the outbox only once the broker accepted them, including after an outage") {
  TempDir dir;
  Mosquitto broker;
  core::SystemClock clock;
  auto opts = linkOptions(broker.uri());
  Agent agent(dir, opts, clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  broker.stop();
  REQUIRE(waitFor([&] { return !agent.connected(); }));

  // Status produced offline is kept.
  core::EventLoop caller("caller", clock);
  caller.start();
  std::atomic<bool> written{false};
  metadb::WriteBatch batch;
  batch.enqueue({"podstatus", "default/pod/web", R"({"status":{"phase":"Running"}})", 0});
  agent.store->write(std::move(batch), caller,
                     [&](core::Result<metadb::WriteResult> r) { written = r.isOk(); });
  REQUIRE(waitFor([&] { return written.load(); }));
  agent.link->outboxChanged();
  CHECK(agent.reader->outboxStats()->rows == 1);

  broker.start();
  MqttTestClient dashboard(broker.uri());
  dashboard.subscribe(kTopics.status(kNode, "#"));
  REQUIRE(waitFor([&] { return agent.reader->outboxStats()->rows == 0; }, 20s));
  REQUIRE(waitFor(
      [&] { return !dashboard.messagesOn(kTopics.status(kNode, "default/pod/web")).empty(); }));
  auto msg = dashboard.messagesOn(kTopics.status(kNode, "default/pod/web")).back();
  auto env = cloudhub::decode(msg.payload, cloudhub::Encoding::kJson).envelope;
  REQUIRE(env);
  CHECK(json::parse(env->content)["status"]["phase"] == "Running");
  // Retained: a dashboard that subscribes later still sees the latest status.
  MqttTestClient late(broker.uri());
  late.subscribe(kTopics.status(kNode, "#"));
  REQUIRE(
      waitFor([&] { return !late.messagesOn(kTopics.status(kNode, "default/pod/web")).empty(); }));
  CHECK(late.messagesOn(kTopics.status(kNode, "default/pod/web")).back().retained);
}

TEST_CASE(
    "an object that could reach the host or hides under another key is refused at the door: not "
    "stored, not acked, one log line each") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  Agent agent(dir, linkOptions(broker.uri()), clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));

  // Each: the key, the object, the field the log names.
  auto pod = [](json patch) {
    json p = json::parse(podEnvelope("p", 1, "m"))["content"];
    p.merge_patch(patch);
    return p;
  };
  std::string deep = std::string(70000, '[') + std::string(70000, ']');
  struct Case {
    std::string key;
    json object;
    const char* why;
  } cases[] = {
      {"default/pod/p", pod({{"metadata", {{"uid", "/srv/victim"}}}}), "metadata.uid"},
      {"default/pod/p", pod({{"metadata", {{"uid", "../../../../srv/victim"}}}}), "metadata.uid"},
      {"default/pod/p",
       pod({{"spec", {{"volumes", {{{"name", "../x"}, {"emptyDir", json::object()}}}}}}}),
       "spec.volumes[0].name"},
      {"default/pod/p",
       pod({{"spec",
             {{"containers",
               {{{"name", "main"},
                 {"volumeMounts",
                  {{{"name", "v"}, {"mountPath", "/x"}, {"subPath", "/etc"}}}}}}}}}}),
       "subPath"},
      {"default/configmap/c", {{"data", {{"/etc/cron.d/x", "y"}}}}, "data key"},
      {"default/configmap/c", {{"data", {{"..", "y"}}}}, "data key"},
      {"default/configmap/c", {{"binaryData", {{"/etc/x", "eQ=="}}}}, "binaryData key"},
      {"default/secret/s",
       {{"stringData", {{"/root/.ssh/authorized_keys", "y"}}}},
       "stringData key"},
      {"default/pod/a..b", pod({{"metadata", {{"name", "a..b"}}}}), "name"},
      {"default/pod/p", pod({{"metadata", "p"}}), "metadata"},
      {"default/configmap/p", pod(json::object()), "kind"},  // a Pod stored under a configmap key
      {"default/pod/" + std::string(300, 'a'), json::object(), "name"},
  };
  int n = 0;
  for (const auto& c : cases) {
    json env = json::parse(podEnvelope("p", 1, "bad-" + std::to_string(n++)));
    env["route"]["resource"] = c.key;
    env["content"] = c.object;
    cloud.client.publish(kTopics.desired(kNode, c.key), env.dump(), true);
  }
  // Nesting deep enough to take the serializer's stack, and a route that would forge a log line.
  std::string deepEnv =
      R"({"header":{"msg_id":"bad-deep","resourceversion":"1"},"route":{"operation":"update","resource":"default/configmap/d"},"content":{"data":{"k":)" +
      deep + "}}}";
  cloud.client.publish(kTopics.desired(kNode, "default/configmap/d"), deepEnv, true);
  json forged = json::parse(podEnvelope("f", 1, "bad-forged"));
  forged["route"]["operation"] = "update\n2026-12-06 00:00:00.000 [cloudhub] [info] forged";
  cloud.client.publish(kTopics.desired(kNode, "default/pod/f"), forged.dump(), true);
  const int refused = n + 2;
  REQUIRE(waitFor([&] { return agent.link->status().messagesInvalid == refused; }));

  cloud.put("fine", 1);
  REQUIRE(waitFor([&] { return cloud.acked("msg-fine-1"); }));
  CHECK(agent.podKeys() == std::vector<std::string>{"default/pod/fine"});
  auto configmaps = agent.reader->list("configmap");
  REQUIRE(configmaps.isOk());
  CHECK(configmaps->empty());
  for (int i = 0; i < n; ++i) CHECK_FALSE(cloud.acked("bad-" + std::to_string(i)));
  CHECK_FALSE(cloud.acked("bad-deep"));

  std::string log = agent.log();
  for (const auto& c : cases) {
    CAPTURE(c.key);
    CHECK(log.find(c.why) != std::string::npos);
  }
  CHECK(log.find("JSON nests deeper than 100 levels") != std::string::npos);
  // The newline was escaped: no line of the log starts with the forged text.
  CHECK(log.find("\n2026-12-06 00:00:00.000 [cloudhub] [info] forged") == std::string::npos);
  CHECK(log.find("\\n2026-12-06") != std::string::npos);
}

TEST_CASE(
    "more retained objects than the broker queues for one client: the node says which setting to "
    "change, fetches the missing ones by topic and converges") {
  TempDir dir;
  // A small queue stands in for mosquitto's default of 1000 against a node with more objects.
  Mosquitto broker(nullptr, "max_queued_messages 20\nmax_inflight_messages 10\n");
  Cloud cloud(broker.uri());
  constexpr int kObjects = 150;
  for (int i = 0; i < kObjects; ++i) {
    std::string name = "p" + std::to_string(i);
    cloud.client.publish(kTopics.desired(kNode, "default/pod/" + name),
                         podEnvelope(name, 1, "msg-" + name), true);
    cloud.manifest["default/pod/" + name] = 1;
  }
  cloud.publishManifest();
  core::SystemClock clock;
  Agent agent(dir, linkOptions(broker.uri()), clock);
  bool converged =
      waitFor([&] { return agent.podKeys().size() == static_cast<size_t>(kObjects); }, 60s);
  std::string log = agent.log();
  INFO("stored ", agent.podKeys().size(), " of ", kObjects);
  REQUIRE(converged);
  CHECK(log.find("max_queued_messages") != std::string::npos);
  CHECK(log.find("Fetching the ") != std::string::npos);
  REQUIRE(waitFor(
      [&] { return agent.log().find("desired set of mqtt:node complete") != std::string::npos; }));
}

TEST_CASE(
    "objects the store refused while the disk was full arrive once it has room, without a "
    "restart and without a manifest") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  Agent agent(dir, linkOptions(broker.uri()), clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  cloud.client.publish(kTopics.desired(kNode, "default/pod/first"), podEnvelope("first", 1, "m-0"),
                       true);
  REQUIRE(waitFor([&] { return cloud.acked("m-0"); }));
  // The disk is full: the store may not grow by a page (SQLite's max_page_count, asked below the
  // current size, stays at the current size and says so).
  auto probe = agent.store->setMaxPageCount(1);
  REQUIRE_FALSE(probe.isOk());
  int64_t pages = std::stoll(probe.message().substr(std::string("max_page_count is ").size()));
  REQUIRE(agent.store->setMaxPageCount(pages).isOk());
  const std::string big(64 * 1024, 'x');  // each needs pages the store no longer has
  for (int i = 1; i <= 3; ++i) {
    std::string name = "p" + std::to_string(i);
    cloud.client.publish(kTopics.desired(kNode, "default/pod/" + name),
                         podEnvelope(name, 1, "m-" + std::to_string(i), big), true);
  }
  REQUIRE(waitFor(
      [&] { return agent.log().find("storing default/pod/p3 failed") != std::string::npos; }));
  CHECK_FALSE(cloud.acked("m-1"));
  CHECK(agent.podKeys() == std::vector<std::string>{"default/pod/first"});
  // Room again: the refused objects arrive and are acked, the link never having dropped.
  REQUIRE(agent.store->setMaxPageCount(1 << 30).isOk());
  REQUIRE(
      waitFor([&] { return cloud.acked("m-1") && cloud.acked("m-2") && cloud.acked("m-3"); }, 30s));
  CHECK(agent.podKeys().size() == 4);
  CHECK(agent.link->status().reconnects == 0);
  CHECK(agent.log().find("asking the broker again for") != std::string::npos);
}

TEST_CASE("the outbox drains no faster than the configured rate") {
  TempDir dir;
  Mosquitto broker;
  core::ManualClock clock;
  auto opts = linkOptions(broker.uri());
  opts.rateQps = 2;
  opts.rateBurst = 3;
  Agent agent(dir, opts, clock);
  MqttTestClient cloud(broker.uri());
  cloud.subscribe(kTopics.up(kNode));
  REQUIRE(waitFor([&] { return agent.connected(); }));

  core::EventLoop caller("caller", clock);
  caller.start();
  std::atomic<bool> written{false};
  metadb::WriteBatch batch;
  for (int i = 0; i < 10; ++i)
    batch.enqueue({"event", "default/event/e" + std::to_string(i), "{}", 0});
  agent.store->write(std::move(batch), caller,
                     [&](core::Result<metadb::WriteResult> r) { written = r.isOk(); });
  REQUIRE(waitFor([&] { return written.load(); }));
  agent.link->outboxChanged();
  REQUIRE(waitFor([&] { return cloud.messagesOn(kTopics.up(kNode)).size() == 3; }));  // the burst
  REQUIRE(agent.link->alive(1s));
  CHECK(cloud.messagesOn(kTopics.up(kNode)).size() == 3);
  clock.advance(1s);  // two more tokens
  REQUIRE(waitFor([&] { return cloud.messagesOn(kTopics.up(kNode)).size() == 5; }));
  REQUIRE(agent.link->alive(1s));
  CHECK(cloud.messagesOn(kTopics.up(kNode)).size() == 5);
  clock.advance(10s);  // a long quiet time saves up no more than the burst
  REQUIRE(waitFor([&] { return cloud.messagesOn(kTopics.up(kNode)).size() == 8; }));
  REQUIRE(agent.link->alive(1s));
  CHECK(cloud.messagesOn(kTopics.up(kNode)).size() == 8);
  clock.advance(1s);
  REQUIRE(waitFor([&] { return cloud.messagesOn(kTopics.up(kNode)).size() == 10; }));
}

TEST_CASE("TLS with client certificates works, and a wrong CA is refused with a clear log line") {
  TempDir dir;
  TempDir otherDir;
  TlsFiles tls = makeTlsFiles(dir.path());
  TlsFiles other = makeTlsFiles(otherDir.path());
  Mosquitto broker(&tls);
  core::SystemClock clock;
  {
    Cloud cloud(broker.uri(), &tls);
    auto opts = linkOptions(broker.uri());
    opts.caFile = tls.ca;
    opts.certFile = tls.clientCert;
    opts.keyFile = tls.clientKey;
    Agent agent(dir, opts, clock);
    REQUIRE(waitFor([&] { return agent.connected(); }));
    cloud.put("secure", 1);
    REQUIRE(waitFor([&] { return cloud.acked("msg-secure-1"); }));
  }
  TempDir dir2;
  auto opts = linkOptions(broker.uri());
  opts.caFile = other.ca;  // does not sign the broker's certificate
  opts.certFile = tls.clientCert;
  opts.keyFile = tls.clientKey;
  Agent agent(dir2, opts, clock);
  REQUIRE(waitFor([&] { return agent.link->status().reconnects >= 1; }));
  CHECK_FALSE(agent.connected());
  INFO(agent.log());
  REQUIRE(waitFor([&] {
    return agent.log().find("TLS with " + broker.uri() + " failed") != std::string::npos;
  }));
  CHECK(agent.log().find("certificate verify failed") != std::string::npos);
  // The link's status (what outpostctl status shows) carries the same reason, not only Paho's code.
  REQUIRE(waitFor([&] {
    return agent.link->status().lastError.find("certificate verify failed") != std::string::npos;
  }));
}

TEST_CASE(
    "an object newer than the manifest the node holds is kept; a later manifest without it prunes "
    "it") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  core::SystemClock clock;
  Agent agent(dir, linkOptions(broker.uri()), clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  auto manifest = [&](json objects, int64_t version) {
    cloud.client.publish(
        kTopics.manifest(kNode),
        json{{"generation", version}, {"version", std::to_string(version)}, {"objects", objects}}
            .dump(),
        true);
  };
  cloud.client.publish(kTopics.desired(kNode, "default/pod/a"), podEnvelope("a", 1, "ma"), true);
  manifest({{"default/pod/a", "1"}}, 1);
  REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
  // b is published after the manifest the node holds, which does not list it yet.
  cloud.client.publish(kTopics.desired(kNode, "default/pod/b"), podEnvelope("b", 2, "mb"), true);
  REQUIRE(waitFor([&] { return cloud.acked("mb"); }));
  manifest({{"default/pod/a", "1"}},
           1);  // the same manifest again: still complete, b is newer than it
  REQUIRE(agent.link->alive(1s));
  REQUIRE(
      waitFor([&] { return agent.log().find("generation 1), 0 objects") != std::string::npos; }));
  CHECK(agent.podKeys() == std::vector<std::string>{"default/pod/a", "default/pod/b"});
  // A manifest written after b (version 3) that does not list it: b was withdrawn.
  manifest({{"default/pod/a", "1"}}, 3);
  REQUIRE(waitFor([&] { return agent.podKeys() == std::vector<std::string>{"default/pod/a"}; }));
}

TEST_CASE(
    "the length of an outage survives an agent restart, and the reason stays while reconnecting") {
  TempDir dir;
  core::ManualClock clock;
  auto opts = linkOptions("tcp://127.0.0.1:" + std::to_string(freePort()));  // nobody listens there
  {
    Agent agent(dir, opts, clock);
    REQUIRE(waitFor([&] { return agent.link->status().reconnects >= 1; }));
    clock.advance(100s);
    CHECK(agent.link->status().offlineSeconds >= 100);
    std::string why = agent.link->status().lastError;
    CHECK(why.find("failed") != std::string::npos);
    clock.advance(10s);  // the retry fires: connecting again keeps the last reason
    REQUIRE(waitFor([&] { return agent.link->status().reconnects >= 2; }));
    CHECK(agent.link->status().lastError.find("failed") != std::string::npos);
  }
  Agent again(dir, opts, clock);
  CHECK(again.link->status().offlineSeconds >= 110);
}

TEST_CASE(
    "while an ack awaits the broker's PUBACK, acks of later commits wait and leave together in one "
    "message; every msg_id is acked exactly once, and only once it is stored") {
  TempDir dir;
  Mosquitto broker;
  Cloud cloud(broker.uri());
  HoldingProxy proxy(broker.port());
  core::SystemClock clock;
  auto opts = linkOptions(proxy.uri());
  opts.keepAlive = 30s;  // holding the link's writes must not look like a dead connection
  Agent agent(dir, opts, clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  auto publish = [&](const std::string& name) {
    cloud.client.publish(kTopics.desired(kNode, "default/pod/" + name),
                         podEnvelope(name, 1, "msg-" + name), true);
  };
  auto stored = [&](const std::string& name) {
    return agent.get("default/pod/" + name).has_value();
  };
  // Whenever the cloud has seen an ack, the object it names is stored already.
  std::set<std::string> seen;
  auto checkAckedAreStored = [&] {
    for (const auto& ids : ackMessages(cloud)) {
      for (const auto& id : ids) {
        if (!seen.insert(id).second) continue;
        INFO(id);
        CHECK(stored(id.substr(4)));
      }
    }
  };

  publish("a");  // nothing outstanding: acked at once
  REQUIRE(waitFor([&] {
    checkAckedAreStored();
    return cloud.acked("msg-a");
  }));
  proxy.hold(true);
  publish("b");  // stored and acked, but the ack's PUBACK cannot come while held
  REQUIRE(waitFor([&] { return stored("b"); }));
  for (const char* name : {"c", "d", "e"}) {  // one commit each, while b's ack is outstanding
    publish(name);
    REQUIRE(waitFor([&] { return stored(name); }));
  }
  REQUIRE(agent.link->alive(1s));
  CHECK(ackMessages(cloud).size() == 1);  // only a's
  proxy.hold(false);
  REQUIRE(waitFor([&] {
    checkAckedAreStored();
    return cloud.acked("msg-b") && cloud.acked("msg-c") && cloud.acked("msg-d") &&
           cloud.acked("msg-e");
  }));
  REQUIRE(agent.link->alive(1s));
  auto acks = ackMessages(cloud);
  // a, then b (sent before the hold ended), then c, d and e together.
  REQUIRE(acks.size() == 3);
  CHECK(acks[1] == std::vector<std::string>{"msg-b"});
  auto batch = acks[2];
  std::sort(batch.begin(), batch.end());
  CHECK(batch == std::vector<std::string>{"msg-c", "msg-d", "msg-e"});
  std::map<std::string, int> times;
  for (const auto& ids : acks)
    for (const auto& id : ids) times[id]++;
  for (const auto& [id, n] : times) {
    INFO(id);
    CHECK(n == 1);
  }
  CHECK(times.size() == 5);
  CHECK(agent.link->status().messagesOut == 3);
}

TEST_CASE(
    "the uid and version stored are the object's own metadata's: nested metadata, other key "
    "orders, "
    "spacing and escaped strings do not mislead the link") {
  TempDir dir;
  Mosquitto broker;
  MqttTestClient cloud(broker.uri());
  cloud.subscribe(kTopics.up(kNode));
  core::SystemClock clock;
  auto opts = linkOptions(broker.uri());
  opts.encoding = cloudhub::Encoding::kProtobuf;  // keeps the content's text as published
  Agent agent(dir, opts, clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  auto publish = [&](const std::string& name, const std::string& content) {
    cloudhub::Envelope env;
    env.header.msgId = "m-" + name;
    env.route = {"outpostctl", "", "resource", "update", "default/pod/" + name};
    env.content = content;  // no header.resourceversion: the version comes from metadata
    cloud.publish(kTopics.desired(kNode, "default/pod/" + name),
                  cloudhub::encode(env, cloudhub::Encoding::kProtobuf), true);
  };
  const std::string plain =
      R"({ "spec" : {"template": {"metadata": {"uid": "nested", "resourceVersion": "99"}},)"
      R"( "note": "a \"metadata\" {\"uid\": \"in a string\"}"},)"
      "\n \"metadata\":{\"annotations\":{\"x\":\"}]{[\\\\\"},\"uid\" : \"plain-uid\" ,"
      R"( "resourceVersion":"7", "labels": {"uid": "label"}}, "kind": "Pod"})";
  const std::string escaped =
      R"({"metadata": {"resourceVersion": "8", "uid": "u-\u0041"}, "kind": "Pod"})";
  // A uid that is not a uid token is refused at the door (docs/security.md).
  const std::string notString =
      R"({"metadata": {"resourceVersion": "9", "uid": 12}, "kind": "Pod"})";
  publish("plain", plain);
  publish("escaped", escaped);
  publish("number", notString);
  REQUIRE(waitFor([&] {
    return agent.get("default/pod/plain") && agent.get("default/pod/escaped") &&
           agent.link->status().messagesInvalid == 1;
  }));
  auto p = agent.get("default/pod/plain");
  CHECK(p->uid == "plain-uid");
  CHECK(p->version == 7);
  CHECK(p->object == plain);  // stored as published
  CHECK(json::parse(p->object)["metadata"]["annotations"]["x"] == "}]{[\\");
  auto e = agent.get("default/pod/escaped");
  CHECK(e->uid == "u-A");
  CHECK(e->version == 8);
  CHECK_FALSE(agent.get("default/pod/number").has_value());
  CHECK(agent.log().find("metadata.uid: must be a string") != std::string::npos);
  // The acks (protobuf, like the link's other messages) are out before the link stops.
  REQUIRE(waitFor([&] { return agent.link->status().messagesOut >= 1; }));
  REQUIRE(waitFor([&] {
    size_t acked = 0;
    for (const auto& m : cloud.messagesOn(kTopics.up(kNode))) {
      auto d = cloudhub::decode(m.payload, cloudhub::Encoding::kProtobuf);
      if (d.envelope) acked += cloudhub::ackedMessageIds(*d.envelope).size();
    }
    return acked == 2;
  }));
}

// Issue 17: KubeEdge's request to delete a pod stopped for its deletion has no receiver in the MQTT
// scheme (docs/mqtt-link.md, "Status upstream"): the row leaves the outbox unpublished, while the
// pod's status (containers terminated) goes out as any status does.
TEST_CASE("a pod delete row is dropped over MQTT, its pod's status still published") {
  TempDir dir;
  Mosquitto broker;
  core::SystemClock clock;
  Agent agent(dir, linkOptions(broker.uri()), clock);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  MqttTestClient cloud(broker.uri());
  cloud.subscribe(kTopics.up(kNode));
  cloud.subscribe(kTopics.status(kNode, "#"));

  core::EventLoop caller("caller", clock);
  caller.start();
  std::atomic<bool> written{false};
  metadb::WriteBatch batch;
  batch.enqueue({"poddelete", "default/pod/web", R"({"uid":"u-web"})", 0});
  batch.enqueue({"podstatus", "default/pod/web", R"({"phase":"Running"})", 0});
  agent.store->write(std::move(batch), caller,
                     [&](core::Result<metadb::WriteResult> r) { written = r.isOk(); });
  REQUIRE(waitFor([&] { return written.load(); }));
  agent.link->outboxChanged();
  REQUIRE(waitFor([&] { return agent.reader->outboxStats()->rows == 0; }, 20s));
  REQUIRE(
      waitFor([&] { return !cloud.messagesOn(kTopics.status(kNode, "default/pod/web")).empty(); }));
  CHECK(cloud.messagesOn(kTopics.up(kNode)).empty());
}
