// MQTT link benchmark, in one run against its own mosquitto on loopback:
//  B3 (MQTT column): 2 KB desired pod objects published QoS 1 retained as DesiredPublisher writes
//    them, stored durably by a real SqliteStore and acked on `up` by the link (in-process, wired as
//    the agent wires it): messages/s and publish-to-ack p50/p99. Next to it, in the same
//    repetition: the broker alone (the same publisher to a plain subscriber), a plain echo client
//    (receives, acks on `up`: the link without storage) and SQLite alone (the same rows, WAL,
//    synchronous=FULL). A throughput run (N messages, a window of W in flight) and a latency run
//    (one at a time).
//  B9: bytes on the wire through a byte-counting proxy: (re)connect, idle window at the default
//    keepalive extrapolated to an hour, one pod status change (outbox row -> status topic) and one
//    desired object in + ack; JSON vs protobuf, plain TCP and TLS.
//  B3 (WebSocket column, link_bench_ws.cc): the CloudHub double sends the same pods as inserts over
//    mutual-TLS WebSocket to the WebSocket link (stored, acked) and to a plain echo client.
//   outpost_bench_link [--out file.json] [--reps 5] [--messages 2000] [--window 64]
//                      [--latency-messages 200] [--idle-seconds 120] [--dir /tmp] [--no-wire]
//                      [--ws-only]

#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_flags.h"
#include "bench_util.h"
#include "link_bench_ws.h"
#include "link_proxy.h"
#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/mqtt_link.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/mosquitto.h"

using namespace outpost;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

using bench::cpuModel;
using bench::median;
using bench::percentile;
using bench::summary;

struct Params {
  std::string out;
  int reps = 5;
  size_t messages = 2000;
  size_t window = 64;
  size_t latencyMessages = 200;
  size_t warmup = 20;
  int idleSeconds = 120;
  bool wire = true;
  bool wsOnly = false;  // the WebSocket column alone
  fs::path dir = fs::temp_directory_path();
};

constexpr size_t kObjectBytes = 2048;
const cloudhub::MqttTopics kTopics{"outpost/v1"};

struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fail(const std::string& what) { throw BenchError(what); }

std::string commandOutput(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, f)) out += buf;
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- the objects
// -------------------------------------------------------------------------------

// A desired pod of exactly kObjectBytes of JSON, as DesiredPublisher stamps it (resourceVersion,
// uid).
std::string podObject(const std::string& name, const std::string& version, size_t index) {
  char uid[40];
  std::snprintf(uid, sizeof uid, "00000000-0000-4000-8000-%012zu", index);
  json env = json::array();
  for (int i = 0; i < 4; ++i) {
    env.push_back(
        {{"name", "SETTING_" + std::to_string(i)}, {"value", "value-" + std::to_string(i)}});
  }
  json pod = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", name},
        {"namespace", "default"},
        {"uid", uid},
        {"resourceVersion", version},
        {"labels", {{"app", "bench"}, {"tier", "edge"}}},
        {"annotations", {{"outpost.io/padding", ""}}}}},
      {"spec",
       {{"restartPolicy", "Always"},
        {"containers",
         json::array({{{"name", "main"},
                       {"image", "registry.example.com/bench/app:1.0"},
                       {"env", env},
                       {"ports", json::array({{{"containerPort", 8080}}})},
                       {"resources", {{"limits", {{"cpu", "500m"}, {"memory", "128Mi"}}}}}}})}}}};
  size_t size = pod.dump().size();
  if (size < kObjectBytes) {
    pod["metadata"]["annotations"]["outpost.io/padding"] = std::string(kObjectBytes - size, 'x');
  }
  return pod.dump();
}

// The envelope DesiredPublisher::apply() writes for a new object.
cloudhub::Envelope desiredEnvelope(const std::string& name, size_t index) {
  std::string version = std::to_string(1700000000000 + static_cast<int64_t>(index));
  cloudhub::Envelope env;
  env.header.msgId = cloudhub::newMessageId();
  env.header.timestamp = nowMs();
  env.header.resourceVersion = version;
  env.route.source = "outpostctl";
  env.route.group = "resource";
  env.route.operation = "insert";
  env.route.resource = "default/pod/" + name;
  env.content = podObject(name, version, index);
  return env;
}

// A pod status as deploy reports it (one running container), the payload of a podstatus row.
std::string podStatus() {
  auto cond = [](const char* type) {
    return json{{"type", type},
                {"status", "True"},
                {"lastProbeTime", nullptr},
                {"lastTransitionTime", "2024-05-01T10:00:02Z"}};
  };
  std::string hex(64, 'a');
  json container = {{"name", "main"},
                    {"image", "registry.example.com/bench/app:1.0"},
                    {"ready", true},
                    {"restartCount", 0},
                    {"started", true},
                    {"imageID", "sha256:" + hex},
                    {"containerID", "containerd://" + hex},
                    {"lastState", json::object()},
                    {"state", {{"running", {{"startedAt", "2024-05-01T10:00:02Z"}}}}}};
  json status = {{"phase", "Running"},
                 {"conditions", json::array({cond("PodScheduled"), cond("Initialized"),
                                             cond("ContainersReady"), cond("Ready")})},
                 {"hostIP", "192.168.1.20"},
                 {"podIP", "10.88.0.12"},
                 {"podIPs", json::array({{{"ip", "10.88.0.12"}}})},
                 {"startTime", "2024-05-01T10:00:00Z"},
                 {"containerStatuses", json::array({container})},
                 {"qosClass", "Burstable"}};
  return status.dump();
}

// The value of `"field":"..."` in a JSON text, without parsing it all ("" when absent).
std::string_view jsonStringField(std::string_view text, std::string_view quotedField) {
  auto at = text.find(quotedField);
  if (at == std::string_view::npos) return {};
  auto start = at + quotedField.size();
  auto end = text.find('"', start);
  if (end == std::string_view::npos) return {};
  return text.substr(start, end - start);
}

// Paho C leaves Nagle's algorithm on; the agent turns it off for its socket to the broker, and so
// must the publisher and the echo, or they measure the ~40 ms delayed-ACK stall (as the echo did
// one at a time, 96 ms p50) instead of the broker. Sets TCP_NODELAY on every socket of this
// process.
void noDelayEverywhere() {
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    int fd = std::atoi(e.path().filename().c_str());
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on non-TCP
  }
}

// ---- a plain MQTT client (the cloud, the reference subscriber, the echo)
// --------------------------

class Client {
 public:
  using Handler = std::function<void(const std::string& topic, const std::string& payload)>;

  Client(const std::string& uri, const std::string& id, bool cleanSession = true,
         const test::TlsFiles* tls = nullptr)
      : client_(uri, id, createOptions(), static_cast<mqtt::iclient_persistence*>(nullptr)) {
    client_.set_message_callback([this](mqtt::const_message_ptr m) {
      std::lock_guard l(mu_);
      if (handler_) handler_(m->get_topic(), m->get_payload_str());
    });
    auto opts = mqtt::connect_options_builder()
                    .clean_session(cleanSession)
                    .keep_alive_interval(std::chrono::seconds(60));
    if (tls) {
      opts.ssl(mqtt::ssl_options_builder()
                   .trust_store(tls->ca)
                   .key_store(tls->clientCert)
                   .private_key(tls->clientKey)
                   .finalize());
    }
    try {
      client_.connect(opts.finalize())->wait_for(std::chrono::seconds(10));
    } catch (const std::exception& e) {
      fail("connecting " + id + " to " + uri + ": " + e.what());
    }
    if (!client_.is_connected()) fail("connecting " + id + " to " + uri + ": timed out");
    noDelayEverywhere();
  }
  ~Client() {
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(2));
    } catch (const std::exception&) {
    }
    setHandler(nullptr);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void setHandler(Handler h) {
    std::lock_guard l(mu_);
    handler_ = std::move(h);
  }
  void subscribe(const std::string& filter) {
    if (!client_.subscribe(filter, 1)->wait_for(std::chrono::seconds(10)))
      fail("subscribing to " + filter);
  }
  mqtt::delivery_token_ptr publish(const std::string& topic, const std::string& payload,
                                   bool retained) {
    try {
      return client_.publish(mqtt::make_message(topic, payload, 1, retained));
    } catch (const std::exception& e) {
      fail("publishing to " + topic + ": " + e.what());
    }
  }
  void publishWait(const std::string& topic, const std::string& payload, bool retained) {
    if (!publish(topic, payload, retained)->wait_for(std::chrono::seconds(10)))
      fail("publishing to " + topic + ": no PUBACK");
  }

 private:
  // Paho refuses a publish while 100 earlier ones wait in its send queue (by default, connected or
  // not); the window bounds what this client has outstanding instead.
  static mqtt::create_options createOptions() {
    mqtt::create_options o;
    o.set_max_buffered_messages(100000);
    return o;
  }

  mqtt::async_client client_;
  std::mutex mu_;
  Handler handler_;
};

// ---- one agent: a real SqliteStore in a temp dir and the MQTT link, wired as agent/ does
// ----------

struct Agent {
  Agent(const fs::path& dir, cloudhub::MqttLinkOptions o) {
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    so.commitWindow = 0ms;  // the agent's default (store.commit_window)
    auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    if (!s.isOk()) fail("opening the store: " + s.status().toString());
    store = std::move(s).value();
    link = cloudhub::makeMqttLink(std::move(o), *store, bus, clock, logging, metrics);
    if (auto st = link->start(); !st.isOk()) fail("starting the link: " + st.toString());
    if (!test::waitFor([&] { return connected(); }, 15s)) fail("the link did not connect");
    auto r = store->openReader();
    if (!r.isOk()) fail("opening a reader: " + r.status().toString());
    reader = std::move(r).value();
  }
  ~Agent() {
    link->stop();
    link.reset();
    reader.reset();
    store.reset();
  }
  bool connected() const { return link->status().state == cloudhub::LinkState::kConnected; }

  core::SystemClock clock;
  core::Bus bus;
  core::Logging logging{core::Logging::Options{core::LogLevel::kError, false, ""}};
  core::MetricsRegistry metrics;
  std::unique_ptr<metadb::SqliteStore> store;
  cloudhub::CloudLinkPtr link;
  metadb::StoreReaderPtr reader;
};

// ---- publishing with a window of messages in flight, and timing each to its completion
// ------------

struct Tracker {
  explicit Tracker(size_t n) : sent(n), received(n), got(n, 0) {}
  std::vector<SteadyClock::time_point> sent, received;
  std::vector<char> got;
  std::mutex mu;
  std::condition_variable cv;
  size_t inflight = 0;
  size_t done = 0;

  void complete(size_t i) {
    auto t = SteadyClock::now();
    std::lock_guard l(mu);
    if (i >= got.size() || got[i]) return;  // QoS 1 may deliver twice
    got[i] = 1;
    received[i] = t;
    --inflight;
    ++done;
    cv.notify_all();
  }
};

struct Message {
  std::string topic;
  std::string payload;
  std::string msgId;
};

struct RunResult {
  double perSecond = 0;
  std::vector<double> latencyMs;
};

// Publishes every message (QoS 1, retained), keeping at most `window` not yet completed; returns
// messages/s from the first publish to the last completion, and each message's latency.
RunResult drive(Client& pub, const std::vector<Message>& msgs, Tracker& t, size_t window,
                const std::string& what, const std::function<std::string()>& diagnose) {
  // Bounded: 120 s in all, and no more than 10 s without a completion.
  auto deadline = SteadyClock::now() + 120s;
  auto waitUntil = [&](std::unique_lock<std::mutex>& l, const std::function<bool()>& cond) {
    while (!cond()) {
      size_t before = t.done;
      auto stall = std::min(deadline, SteadyClock::now() + 10s);
      if (!t.cv.wait_until(l, stall, [&] { return cond() || t.done != before; })) {
        fail(what + ": timed out with " + std::to_string(t.done) + " of " +
             std::to_string(msgs.size()) + " completed" + (diagnose ? diagnose() : ""));
      }
    }
  };
  for (size_t i = 0; i < msgs.size(); ++i) {
    {
      std::unique_lock l(t.mu);
      waitUntil(l, [&] { return t.inflight < window; });
      ++t.inflight;
      t.sent[i] = SteadyClock::now();
    }
    pub.publish(msgs[i].topic, msgs[i].payload, true);
  }
  {
    std::unique_lock l(t.mu);
    waitUntil(l, [&] { return t.done == msgs.size(); });
  }
  RunResult r;
  auto last = *std::max_element(t.received.begin(), t.received.end());
  r.perSecond = static_cast<double>(msgs.size()) /
                std::chrono::duration<double>(last - t.sent.front()).count();
  for (size_t i = 0; i < msgs.size(); ++i) {
    double ms = std::chrono::duration<double, std::milli>(t.received[i] - t.sent[i]).count();
    r.latencyMs.push_back(std::round(ms * 1000) / 1000);
  }
  return r;
}

std::vector<Message> makeMessages(const std::string& node, const std::string& prefix, size_t n,
                                  cloudhub::Encoding enc = cloudhub::Encoding::kJson) {
  std::vector<Message> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string name = prefix + std::to_string(i);
    auto env = desiredEnvelope(name, i);
    out.push_back({kTopics.desired(node, "default/pod/" + name), cloudhub::encode(env, enc),
                   env.header.msgId});
  }
  return out;
}

// Clears the retained copies a run left on the broker.
void clearRetained(Client& pub, const std::vector<Message>& msgs) {
  std::vector<mqtt::delivery_token_ptr> tokens;
  for (const auto& m : msgs) tokens.push_back(pub.publish(m.topic, "", true));
  for (auto& t : tokens) t->wait_for(std::chrono::seconds(10));
}

// The scenarios, each over a fresh node name so no retained message or session of an earlier run
// is involved. Each returns the warm-up-free timed run.
// kOursSingleAcks: ours with one ack per object (MqttLinkOptions::batchAcks off), to show what
// batch acks bring.
enum class Target { kOurs, kOursSingleAcks, kBroker, kEcho };

RunResult runMqtt(Target target, const std::string& broker, const std::string& node, size_t n,
                  size_t window, size_t warmup) {
  auto warm = makeMessages(node, "w", warmup);
  auto timed = makeMessages(node, "p", n);
  Client pub(broker, "bench-cloud-" + node);
  std::unique_ptr<test::TempDir> agentDir;
  std::unique_ptr<Agent> agent;
  std::unique_ptr<Client> sub;
  Tracker* current = nullptr;
  std::mutex currentMu;
  std::unordered_map<std::string, size_t> byMsgId;  // ack parent -> index, per phase
  auto setPhase = [&](Tracker* t, const std::vector<Message>& msgs) {
    std::lock_guard l(currentMu);
    current = t;
    byMsgId.clear();
    for (size_t i = 0; i < msgs.size(); ++i) byMsgId[msgs[i].msgId] = i;
  };
  // Acks on `up` (ours and the echo) complete a message by parent_msg_id, or every msg_id of a
  // batch ack (several messages stored in one commit, docs/mqtt-link.md).
  auto onAck = [&](const std::string&, const std::string& payload) {
    std::vector<std::string> ids;
    if (auto parent = jsonStringField(payload, "\"parent_msg_id\":\""); !parent.empty()) {
      ids.emplace_back(parent);
    } else if (auto d = cloudhub::decode(payload, cloudhub::Encoding::kJson); d.envelope) {
      ids = cloudhub::ackedMessageIds(*d.envelope);
    }
    std::lock_guard l(currentMu);
    for (const auto& id : ids) {
      auto it = byMsgId.find(id);
      if (current && it != byMsgId.end()) current->complete(it->second);
    }
  };
  if (target == Target::kOurs || target == Target::kOursSingleAcks) {
    pub.setHandler(onAck);
    pub.subscribe(kTopics.up(node));
    agentDir = std::make_unique<test::TempDir>();
    cloudhub::MqttLinkOptions o;
    o.nodeName = node;
    o.broker = broker;
    o.batchAcks = target == Target::kOurs;
    agent = std::make_unique<Agent>(agentDir->path(), o);
  } else if (target == Target::kEcho) {
    pub.setHandler(onAck);
    pub.subscribe(kTopics.up(node));
    sub = std::make_unique<Client>(broker, "bench-echo-" + node);
    Client* echo = sub.get();
    std::string up = kTopics.up(node);
    sub->setHandler([echo, up](const std::string& topic, const std::string& payload) {
      // What the link sends once stored, without storing: the same ack envelope.
      cloudhub::Envelope a;
      a.header.msgId = cloudhub::newMessageId();
      a.header.parentMsgId = std::string(jsonStringField(payload, "\"msg_id\":\""));
      a.header.timestamp = nowMs();
      a.route.source = "outpostctl";
      a.route.group = "resource";
      a.route.operation = "response";
      a.route.resource = topic.substr(topic.find("/desired/") + 9);
      cloudhub::setContentString(a, "OK");
      try {
        echo->publish(up, cloudhub::encode(a, cloudhub::Encoding::kJson), false);
      } catch (const std::exception& e) {
        std::cerr << "echo: " << e.what() << "\n";  // the run then times out and says so
      }
    });
    sub->subscribe(kTopics.desired(node, "#"));
  } else {
    // The broker alone: a plain subscriber; a message completes when it arrives (the handler is
    // set per phase below).
    sub = std::make_unique<Client>(broker, "bench-sub-" + node);
    sub->subscribe(kTopics.desired(node, "#"));
  }
  // The broker alone tells the phases apart by the name's prefix ('w' warm-up, 'p' timed).
  auto brokerFilter = [&](char prefix, Tracker* t) {
    if (target != Target::kBroker) return;
    sub->setHandler([&, prefix, t](const std::string& topic, const std::string&) {
      auto at = topic.rfind('/');
      if (at == std::string::npos || at + 2 > topic.size() || topic[at + 1] != prefix) return;
      size_t i = 0;
      if (std::from_chars(topic.data() + at + 2, topic.data() + topic.size(), i).ec != std::errc())
        return;
      t->complete(i);
    });
  };

  Tracker warmT(warm.size());
  setPhase(&warmT, warm);
  brokerFilter('w', &warmT);
  // Ours: what the link counted (acks are its only messages out here).
  auto linkCounts = [&]() -> std::string {
    if (!agent) return "";
    auto st = agent->link->status();
    return "; link: " + std::to_string(st.messagesIn) + " in, " + std::to_string(st.messagesOut) +
           " acks accepted by the broker, " + std::to_string(st.messagesInvalid) + " invalid";
  };
  drive(pub, warm, warmT, window, "warm-up", linkCounts);
  Tracker timedT(timed.size());
  setPhase(&timedT, timed);
  brokerFilter('p', &timedT);
  RunResult r = drive(pub, timed, timedT, window, node + ": timed run", linkCounts);
  setPhase(nullptr, {});

  if (agent) {
    agent.reset();
    Client wipe(broker, node, true);  // ends the link's persistent session
  }
  sub.reset();
  clearRetained(pub, warm);
  clearRetained(pub, timed);
  return r;
}

// ---- the limit: SQLite alone, the same rows with the same durability
// ---------------------------

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    fail(std::string(what) + ": " + sqlite3_errmsg(db));
}

// Inserts the n objects into the store's resources table (migration 0001's layout), `perTx` rows
// per transaction; each transaction's time is the latency of its rows.
RunResult rawSqlite(size_t n, size_t perTx) {
  test::TempDir scratch;  // under --dir (TMPDIR)
  std::string path = (scratch.path() / "raw.db").string();
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  check(
      sqlite3_exec(db,
                   "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                   "CREATE TABLE resources (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
                   " namespace TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,"
                   " uid TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL, object TEXT NOT NULL,"
                   " origin TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL);"
                   "CREATE INDEX resources_by_type ON resources (type, namespace, name);",
                   nullptr, nullptr, nullptr),
      db, "schema");
  sqlite3_stmt* ins = nullptr;
  check(sqlite3_prepare_v2(db,
                           "INSERT INTO resources (key, namespace, type, name, uid, version,"
                           " object, origin, updated_ms) VALUES (?1, 'default', 'pod', ?2, ?3, ?4,"
                           " ?5, 'mqtt:node', ?6)",
                           -1, &ins, nullptr),
        db, "prepare");
  // The names and objects of the MQTT runs, made before the clock starts.
  std::vector<std::string> names, keys, objects;
  for (size_t i = 0; i < n; ++i) {
    names.push_back(std::string(1, 'p').append(std::to_string(i)));
    keys.push_back("default/pod/" + names.back());
    objects.push_back(podObject(names.back(), std::to_string(1700000000000 + i), i));
  }
  RunResult r;
  auto start = SteadyClock::now();
  for (size_t i = 0; i < n;) {
    auto t0 = SteadyClock::now();
    check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    size_t inTx = 0;
    for (; inTx < perTx && i < n; ++inTx, ++i) {
      sqlite3_bind_text(ins, 1, keys[i].c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 2, names[i].c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 3, "uid", -1, SQLITE_STATIC);
      sqlite3_bind_int64(ins, 4, static_cast<sqlite3_int64>(1700000000000 + i));
      sqlite3_bind_text(ins, 5, objects[i].data(), static_cast<int>(objects[i].size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(ins, 6, nowMs());
      check(sqlite3_step(ins), db, "insert");
      sqlite3_reset(ins);
    }
    check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
    double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
    for (size_t j = 0; j < inTx; ++j) r.latencyMs.push_back(std::round(ms * 1000) / 1000);
  }
  r.perSecond =
      static_cast<double>(n) / std::chrono::duration<double>(SteadyClock::now() - start).count();
  sqlite3_finalize(ins);
  sqlite3_close(db);
  return r;
}

// ---- statistics
// --------------------------------------------------------------------------------

// ---- B9: bytes on the wire
// ---------------------------------------------------------------------

struct WireConfig {
  std::string name;
  std::string brokerUri;  // the real broker, for the cloud side
  int brokerPort = 0;
  const test::TlsFiles* tls = nullptr;
  cloudhub::Encoding encoding = cloudhub::Encoding::kJson;
};

json countersJson(const bench::LinkProxy::Counters& c) {
  return {{"up_bytes", c.upBytes},
          {"down_bytes", c.downBytes},
          {"total_bytes", c.upBytes + c.downBytes},
          {"up_segments", c.upSegments},
          {"down_segments", c.downSegments},
          {"up_ip_bytes", c.upIpBytes()},
          {"down_ip_bytes", c.downIpBytes()},
          {"total_ip_bytes", c.upIpBytes() + c.downIpBytes()},
          {"up_writes", c.upReads}};
}

// One link through the proxy: its connect, one pod status change, one desired object in (with its
// ack), then an idle window. The status change and the desired object come within the first
// keepalive period after connect, so no PINGREQ falls inside them (checked: up_writes).
json measureWire(const WireConfig& wc, const std::string& node, int idleSeconds) {
  bench::LinkProxy proxy(wc.brokerPort);
  test::TempDir dir;
  cloudhub::MqttLinkOptions o;
  o.nodeName = node;
  o.broker =
      std::string(wc.tls ? "ssl://" : "tcp://") + "127.0.0.1:" + std::to_string(proxy.port());
  o.encoding = wc.encoding;
  if (wc.tls) {
    o.caFile = wc.tls->ca;
    o.certFile = wc.tls->clientCert;
    o.keyFile = wc.tls->clientKey;
  }
  const auto keepAlive = o.keepAlive;  // the default, 15 s
  auto c0 = proxy.snapshot();
  auto started = SteadyClock::now();
  Agent agent(dir.path(), o);
  test::waitFor([] { return false; }, 700ms);  // SUBACK, the online message, delayed ACKs
  auto c1 = proxy.snapshot();

  // One pod status change: an outbox row as deploy writes it, drained to the status topic.
  core::EventLoop caller("bench-wire", agent.clock);
  caller.start();
  std::string status = podStatus();
  std::promise<void> queued;
  agent.store->write(metadb::WriteBatch().enqueue({"podstatus", "default/pod/web-1", status, 0}),
                     caller, [&](core::Result<metadb::WriteResult> r) {
                       if (!r.isOk()) std::cerr << "enqueue: " << r.status().toString() << "\n";
                       queued.set_value();
                     });
  queued.get_future().wait();
  agent.link->outboxChanged();
  bool drained = test::waitFor(
      [&] {
        auto due = agent.reader->outboxDue(1);
        return due.isOk() && due->empty();
      },
      10s);
  if (!drained) fail(wc.name + ": the status row was not sent");
  test::waitFor([] { return false; }, 300ms);  // its PUBACK and the delayed ACKs
  auto c2 = proxy.snapshot();

  // One desired object in (2 KB), stored and acked.
  json desired;
  {
    Client cloud(wc.brokerUri, "bench-wire-cloud-" + node, true, wc.tls);
    auto env = desiredEnvelope("d0", 0);
    std::string payload = cloudhub::encode(env, wc.encoding);
    std::string key = "default/pod/d0";
    cloud.publishWait(kTopics.desired(node, key), payload, true);
    bool stored = test::waitFor(
        [&] {
          auto r = agent.reader->get(key);
          return r.isOk() && r->has_value();
        },
        10s);
    if (!stored) fail(wc.name + ": the desired object was not stored");
    test::waitFor([] { return false; }, 300ms);  // the ack, its PUBACK, delayed ACKs
    auto c3 = proxy.snapshot();
    desired = countersJson(bench::LinkProxy::diff(c3, c2));
    desired["envelope_bytes"] = payload.size();
    desired["topic_bytes"] = kTopics.desired(node, key).size();
    cloud.publishWait(kTopics.desired(node, key), "", true);  // the delete comes in too
  }
  test::waitFor([] { return false; }, 300ms);
  auto c4 = proxy.snapshot();
  auto inFirstPeriod = SteadyClock::now() - started < keepAlive;

  // Idle.
  auto idleStart = SteadyClock::now();
  test::waitFor([] { return false; }, std::chrono::seconds(idleSeconds));
  double idleSecondsMeasured =
      std::chrono::duration<double>(SteadyClock::now() - idleStart).count();
  auto c5 = proxy.snapshot();
  auto idleEnd = SteadyClock::now();
  caller.stop();
  // The keepalive as it happens: when the link wrote during the idle window (its PINGREQs).
  std::vector<double> pingTimes, pingIntervals;
  for (auto t : proxy.upReadTimes()) {
    if (t < idleStart || t > idleEnd) continue;
    double at = std::chrono::duration<double>(t - idleStart).count();
    if (!pingTimes.empty()) pingIntervals.push_back(at - pingTimes.back());
    pingTimes.push_back(at);
  }

  auto idle = bench::LinkProxy::diff(c5, c4);
  double perHour = 3600.0 / idleSecondsMeasured;
  cloudhub::Envelope statusEnv;  // the envelope size the link builds for the status row
  statusEnv.header.msgId = cloudhub::newMessageId();
  statusEnv.header.timestamp = nowMs();
  statusEnv.route = {"edged", "", "resource", "patch", "default/pod/web-1"};
  statusEnv.content = status;
  auto statusChange = bench::LinkProxy::diff(c2, c1);
  json out = {
      {"transport", wc.tls ? "ssl (TLS 1.2, mosquitto's default cipher)" : "tcp"},
      {"encoding", wc.encoding == cloudhub::Encoding::kJson ? "json" : "protobuf"},
      {"keepalive_s", std::chrono::duration<double>(keepAlive).count()},
      {"connect", countersJson(bench::LinkProxy::diff(c1, c0))},
      {"status_change", countersJson(statusChange)},
      {"desired_object_in_and_ack", desired},
      {"measures_before_first_ping", inFirstPeriod},
      {"idle",
       {{"window_s", idleSecondsMeasured},
        {"window", countersJson(idle)},
        {"pings", idle.upReads},
        {"ping_times_s", pingTimes},
        {"ping_intervals_s", pingIntervals},
        {"bytes_per_hour", static_cast<double>(idle.upBytes + idle.downBytes) * perHour},
        {"ip_bytes_per_hour", static_cast<double>(idle.upIpBytes() + idle.downIpBytes()) * perHour},
        {"ip_kbit_per_s", static_cast<double>(idle.upIpBytes() + idle.downIpBytes()) * 8 / 1000 /
                              idleSecondsMeasured}}}};
  out["status_change"]["status_json_bytes"] = status.size();
  out["status_change"]["envelope_bytes"] = cloudhub::encode(statusEnv, wc.encoding).size();
  out["status_change"]["topic_bytes"] = kTopics.status(node, "default/pod/web-1").size();
  return out;
}

Params parse(int argc, char** argv) {
  Params p;
  std::string dir = p.dir.string();
  bool noWire = false;
  CLI::App app{
      "B3 (MQTT and WebSocket columns) and B9: desired objects in, stored and acked, and "
      "bytes on the wire",
      "outpost_bench_link"};
  app.option_defaults()->always_capture_default();
  app.add_option("--out", p.out, "write the results as JSON to this file");
  app.add_option("--reps", p.reps, "repetitions of each scenario")->check(bench::atLeast(5));
  app.add_option("--messages", p.messages, "messages in a throughput run")
      ->check(bench::atLeast(10));
  app.add_option("--window", p.window, "messages in flight in a throughput run")
      ->check(bench::atLeast(1));
  app.add_option("--latency-messages", p.latencyMessages, "messages sent one at a time")
      ->check(bench::atLeast(10));
  app.add_option("--idle-seconds", p.idleSeconds, "the idle window of B9")
      ->check(CLI::Range(15, 3600));
  app.add_option("--dir", dir, "TMPDIR for the stores and the broker");
  app.add_flag("--no-wire", noWire, "skip B9 (bytes on the wire)");
  app.add_flag("--ws-only", p.wsOnly, "run the WebSocket column alone");
  bench::parseFlags(app, argc, argv);
  p.dir = dir;
  p.wire = !noWire;
  return p;
}

int benchMain(int argc, char** argv) {
  Params p = parse(argc, argv);
  if (!p.dir.empty()) setenv("TMPDIR", p.dir.c_str(), 1);  // the stores' and broker's temp dirs

  std::string mosquittoVersion = commandOutput("/usr/sbin/mosquitto -h 2>&1 | head -1");
  std::cout << "machine: " << sysconf(_SC_NPROCESSORS_ONLN) << " cores, " << cpuModel() << "\n"
            << "versions: " << mosquittoVersion << ", sqlite " << sqlite3_libversion() << ", "
            << mqtt::VERSION_STR << ", compiler " << __VERSION__ << "\n";
  auto sample = desiredEnvelope("p0", 0);
  std::cout << "objects: " << sample.content.size() << " bytes of pod JSON, envelope "
            << cloudhub::encode(sample, cloudhub::Encoding::kJson).size()
            << " bytes (JSON); throughput: " << p.messages << " messages, window " << p.window
            << "; latency: " << p.latencyMessages << " messages one at a time; " << p.reps
            << " repetitions\n";
  std::cout.flush();
  bench::WsColumnOptions wsOptions{p.messages, p.window, p.latencyMessages, p.warmup, podObject};
  if (p.wsOnly) return bench::websocketOnly(wsOptions, p.reps, p.out);

  test::Mosquitto broker;
  const std::string uri = broker.uri();

  // Each repetition runs every scenario once, interleaved, so a slow moment on this shared
  // machine hits ours and the limits alike.
  struct Scenario {
    std::string name;
    std::function<RunResult(int rep)> run;
  };
  auto mqttScenario = [&](Target target, const char* tag, size_t n, size_t window) {
    return [&, target, tag, n, window](int rep) {
      std::string node = std::string("bench-") + tag + "-" + std::to_string(rep) + "-" +
                         std::to_string(::getpid());
      return runMqtt(target, uri, node, n, window, p.warmup);
    };
  };
  std::vector<Scenario> scenarios = {
      {"throughput.sqlite", [&](int) { return rawSqlite(p.messages, p.window); }},
      {"throughput.broker", mqttScenario(Target::kBroker, "tb", p.messages, p.window)},
      {"throughput.echo", mqttScenario(Target::kEcho, "te", p.messages, p.window)},
      {"throughput.ours", mqttScenario(Target::kOurs, "to", p.messages, p.window)},
      {"throughput.ours_single_acks",
       mqttScenario(Target::kOursSingleAcks, "ts", p.messages, p.window)},
      {"latency.sqlite", [&](int) { return rawSqlite(p.latencyMessages, 1); }},
      {"latency.broker", mqttScenario(Target::kBroker, "lb", p.latencyMessages, 1)},
      {"latency.echo", mqttScenario(Target::kEcho, "le", p.latencyMessages, 1)},
      {"latency.ours", mqttScenario(Target::kOurs, "lo", p.latencyMessages, 1)},
  };
  bench::WebsocketColumn ws(wsOptions);  // B3 over WebSocket, interleaved with the rest
  for (auto& s : ws.scenarios()) {
    scenarios.push_back({s.name, [run = s.run](int rep) {
                           auto r = run(rep);
                           return RunResult{r.perSecond, std::move(r.latencyMs)};
                         }});
  }
  std::map<std::string, std::vector<double>> rate, p50, p99;
  std::map<std::string, std::vector<std::vector<double>>> latencies;
  for (int rep = 0; rep < p.reps; ++rep) {
    for (auto& s : scenarios) {
      RunResult r = s.run(rep);
      rate[s.name].push_back(r.perSecond);
      p50[s.name].push_back(percentile(r.latencyMs, 50));
      p99[s.name].push_back(percentile(r.latencyMs, 99));
      latencies[s.name].push_back(std::move(r.latencyMs));
      std::printf("rep %d %-18s %9.1f msg/s  p50 %7.3f ms  p99 %7.3f ms\n", rep + 1, s.name.c_str(),
                  rate[s.name].back(), p50[s.name].back(), p99[s.name].back());
      std::fflush(stdout);
    }
  }

  json out;
  out["benchmark"] = "link";
  out["machine"] = {{"nproc", sysconf(_SC_NPROCESSORS_ONLN)}, {"cpu", cpuModel()}};
  out["versions"] = {{"mosquitto", mosquittoVersion},
                     {"sqlite", sqlite3_libversion()},
                     {"paho_mqttpp", mqtt::VERSION_STR},
                     {"compiler", __VERSION__}};
  out["params"] = {
      {"reps", p.reps},
      {"object_bytes", sample.content.size()},
      {"envelope_bytes_json", cloudhub::encode(sample, cloudhub::Encoding::kJson).size()},
      {"throughput_messages", p.messages},
      {"window", p.window},
      {"latency_messages", p.latencyMessages},
      {"warmup_messages", p.warmup},
      {"qos", 1},
      {"retained", true},
      {"link",
       "in-process: SqliteStore (commit window 0, WAL, synchronous=FULL) + makeMqttLink "
       "(batch acks; ours_single_acks: one ack per object)"},
      {"broker", "mosquitto on 127.0.0.1, persistence on, default limits"},
      {"dir", p.dir.string()}};
  for (auto& s : scenarios) {
    out["scenarios"][s.name] = {{"messages_per_s", summary(rate[s.name])},
                                {"p50_ms", summary(p50[s.name])},
                                {"p99_ms", summary(p99[s.name])},
                                {"latency_samples_ms", latencies[s.name]}};
  }

  // ours / limit for throughput (higher is better) and limit / ours for latency, from the medians;
  // per repetition (same rep, side by side) for min and max.
  auto ratio = [&](const std::string& ours, const std::vector<std::string>& limits,
                   std::map<std::string, std::vector<double>>& metric, bool higherBetter) {
    std::vector<double> per;
    for (int i = 0; i < p.reps; ++i) {
      double limit = metric[limits[0]][static_cast<size_t>(i)];
      for (auto& l : limits) {
        double v = metric[l][static_cast<size_t>(i)];
        limit = higherBetter ? std::min(limit, v) : std::max(limit, v);
      }
      double o = metric[ours][static_cast<size_t>(i)];
      per.push_back(higherBetter ? o / limit : limit / o);
    }
    double limitMedian = median(metric[limits[0]]);
    for (auto& l : limits) {
      limitMedian = higherBetter ? std::min(limitMedian, median(metric[l]))
                                 : std::max(limitMedian, median(metric[l]));
    }
    double oursMedian = median(metric[ours]);
    double r = higherBetter ? oursMedian / limitMedian : limitMedian / oursMedian;
    return json{{"ours", ours},
                {"limit", limits.size() == 1 ? json(limits[0]) : json(limits)},
                {"ratio_of_medians", r},
                {"per_rep", summary(per)}};
  };
  json ratios;
  ratios["throughput_vs_slower_limit"] =
      ratio("throughput.ours", {"throughput.broker", "throughput.sqlite"}, rate, true);
  ratios["throughput_vs_broker"] = ratio("throughput.ours", {"throughput.broker"}, rate, true);
  ratios["throughput_vs_sqlite"] = ratio("throughput.ours", {"throughput.sqlite"}, rate, true);
  ratios["throughput_vs_echo"] = ratio("throughput.ours", {"throughput.echo"}, rate, true);
  ratios["throughput_single_acks_vs_slower_limit"] =
      ratio("throughput.ours_single_acks", {"throughput.broker", "throughput.sqlite"}, rate, true);
  ratios["latency_p50_vs_slower_limit"] =
      ratio("latency.ours", {"latency.broker", "latency.sqlite"}, p50, false);
  ratios["latency_p50_vs_echo"] = ratio("latency.ours", {"latency.echo"}, p50, false);
  ratios["latency_p99_vs_slower_limit"] =
      ratio("latency.ours", {"latency.broker", "latency.sqlite"}, p99, false);
  out["ratios"] = ratios;
  out["websocket"] = ws.summary(rate, p50, p99);
  double target = ratios["throughput_vs_slower_limit"]["ratio_of_medians"];
  out["target"] = {{"what", "throughput.ours / min(throughput.broker, throughput.sqlite) >= 0.5"},
                   {"value", target},
                   {"met", target >= 0.5}};

  // B9: bytes on the wire, every configuration at once (their idle windows overlap).
  json wire;
  if (p.wire) {
    test::TempDir tlsDir;
    test::TlsFiles tls = test::makeTlsFiles(tlsDir.path(), "bench-wire");
    test::Mosquitto tlsBroker(&tls);
    std::vector<WireConfig> configs = {
        {"tcp.json", uri, broker.port(), nullptr, cloudhub::Encoding::kJson},
        {"tcp.protobuf", uri, broker.port(), nullptr, cloudhub::Encoding::kProtobuf},
        {"tls.json", tlsBroker.uri(), tlsBroker.port(), &tls, cloudhub::Encoding::kJson},
        {"tls.protobuf", tlsBroker.uri(), tlsBroker.port(), &tls, cloudhub::Encoding::kProtobuf},
    };
    std::cout << "\nwire: " << configs.size() << " links idle for " << p.idleSeconds
              << " s each (in parallel), keepalive 15 s ...\n";
    std::cout.flush();
    std::vector<std::future<json>> running;
    for (auto& wc : configs) {
      std::string node = "bench-wire-" + wc.name + "-" + std::to_string(::getpid());
      for (auto& ch : node)
        if (ch == '.') ch = '-';
      running.push_back(std::async(
          std::launch::async, [&wc, node, &p] { return measureWire(wc, node, p.idleSeconds); }));
    }
    for (size_t i = 0; i < configs.size(); ++i) wire[configs[i].name] = running[i].get();
    out["wire"] = wire;
    out["wire_notes"] =
        "bytes = TCP payload (MQTT, or TLS records) counted by a forwarding proxy between the link "
        "and the broker; ip_bytes adds one IPv4+TCP header per segment (from TCP_INFO segment "
        "counts, pure ACKs included; no Ethernet framing). Idle: the default keepalive (15 s) over "
        "the measured window, scaled to an hour.";
  }

  // ---- the Markdown table
  auto row = [&](const std::string& what, const std::string& name) {
    auto& r = rate[name];
    std::printf("| %-34s | %9.0f (%.0f-%.0f) | %7.2f | %7.2f |\n", what.c_str(), median(r),
                *std::min_element(r.begin(), r.end()), *std::max_element(r.begin(), r.end()),
                median(p50[name]), median(p99[name]));
  };
  std::printf(
      "\n| ingest, %zu-byte pods, QoS 1 retained | msg/s median (min-max) | p50 ms | p99 "
      "ms |\n|---|---|---|---|\n",
      sample.content.size());
  std::string w = " (window " + std::to_string(p.window) + ")";
  row("ours: stored + acked" + w, "throughput.ours");
  row("ours, one ack per object" + w, "throughput.ours_single_acks");
  row("broker alone: publish -> subscriber" + w, "throughput.broker");
  row("echo client: publish -> ack" + w, "throughput.echo");
  row("SQLite alone: " + std::to_string(p.window) + " rows/commit", "throughput.sqlite");
  row("ours, one at a time", "latency.ours");
  row("broker alone, one at a time", "latency.broker");
  row("echo client, one at a time", "latency.echo");
  row("SQLite alone, 1 row/commit", "latency.sqlite");
  auto pr = [&](const char* what, const char* key) {
    const json& r = ratios[key];
    std::printf("| %s | %.2f | %.2f-%.2f |\n", what, r["ratio_of_medians"].get<double>(),
                r["per_rep"]["min"].get<double>(), r["per_rep"]["max"].get<double>());
  };
  std::printf("\n| ratio | median | per-rep min-max |\n|---|---|---|\n");
  pr("throughput ours / slower limit (target >= 0.5)", "throughput_vs_slower_limit");
  pr("throughput ours / broker alone", "throughput_vs_broker");
  pr("throughput ours / SQLite alone", "throughput_vs_sqlite");
  pr("throughput ours / echo client", "throughput_vs_echo");
  pr("throughput ours with one ack per object / slower limit",
     "throughput_single_acks_vs_slower_limit");
  pr("latency p50 slower limit / ours", "latency_p50_vs_slower_limit");
  pr("latency p50 echo client / ours", "latency_p50_vs_echo");
  std::printf("target: %.2f %s\n", target, target >= 0.5 ? "MET" : "NOT MET");
  ws.print(rate, p50, p99);
  if (p.wire) {
    std::printf(
        "\n| wire (B9) | idle bytes/h (IP bytes/h, kbit/s) | connect | status change "
        "(envelope) | desired 2 KB in + ack |\n|---|---|---|---|---|\n");
    for (auto& [name, wj] : wire.items()) {
      std::printf("| %s | %.0f (%.0f, %.4f) | %llu | %llu (%llu) | %llu |\n", name.c_str(),
                  wj["idle"]["bytes_per_hour"].get<double>(),
                  wj["idle"]["ip_bytes_per_hour"].get<double>(),
                  wj["idle"]["ip_kbit_per_s"].get<double>(),
                  wj["connect"]["total_bytes"].get<unsigned long long>(),
                  wj["status_change"]["total_bytes"].get<unsigned long long>(),
                  wj["status_change"]["envelope_bytes"].get<unsigned long long>(),
                  wj["desired_object_in_and_ack"]["total_bytes"].get<unsigned long long>());
    }
  }

  if (!p.out.empty()) {
    std::ofstream f(p.out);
    f << out.dump(2) << "\n";
    if (!f) fail("cannot write " + p.out);
    std::cout << "wrote " << p.out << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return benchMain(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench link: " << e.what() << "\n";
    return 1;
  }
}
