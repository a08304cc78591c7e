// Fleet benchmark (F1-F5 of docs/benchmarks.md, "Fleet"): N real outpostd processes (this build's,
// or --outpostd PATH), each with its own state dir, socket and config, the hollow runtime
// (docs/hollow-nodes.md) and the MQTT link, against one mosquitto on loopback ports picked free
// (support/hollow_fleet: a listener for the nodes, one for the cloud side). In one run:
//   F1 memory per agent (sum of PSS from /proc/<pid>/smaps_rollup / N, RSS, threads) with 0 and
//      then --pods hollow pods each;
//   F4 idle traffic: $SYS/broker/bytes/{received,sent} over --idle seconds with every node idle
//      (the cloud side's own $SYS subscription subtracted);
//   F2 propagation: one new pod for the group holding every node, published retained with its
//      manifest -> each node's ack on its `up` topic and its status Running on its status topic;
//      next to it, N plain MQTT clients (persistent sessions, one process) that ack each message
//      without storing it, the same way;
//   F3 broker restart: mosquitto stopped (SIGTERM, retained store persisted), started again on the
//      same ports --down seconds later -> each node connected and subscribed (mosquitto's log,
//      1 s resolution) and online (its live `online` = true, ms), connections per second, and
//      every agent's link connected in its own /v1/status;
//   F5 outage drain: the nodes' listener closed for --outage seconds while a pod whose image tag
//      is exits-1-after-30s restarts on every node -> time until each node's outbox is empty
//      (/v1/status outbox.rows), the broker's peak message rate ($SYS), and each node's retained
//      statuses (a fresh subscriber) equal to what the node itself holds.
// Agents are children of this process and die with it (PR_SET_PDEATHSIG).
//   outpost_bench_fleet [--nodes 1000] [--batch 50] [--pods 10] [--settle 20] [--idle 600]
//                       [--down 30] [--outage 120] [--reconnect-cap 60s] [--out file.json]

#include <mqtt/async_client.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_flags.h"
#include "bench_fleet.h"
#include "bench_util.h"
#include "support/hollow_fleet.h"
#include "support/test_util.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using outpost::test::FleetBroker;
using outpost::test::FleetClock;
using outpost::test::FleetObserver;
using outpost::test::HollowFleet;
using outpost::test::localApiGet;
using outpost::test::waitFor;

namespace {

struct Params {
  size_t nodes = 1000;
  size_t batch = 50;
  size_t pods = 10;
  int settle = 20;
  int idle = 600;  // two periods of runtime.node_status_interval (5 min)
  int down = 30;
  int outage = 120;
  std::string reconnectCap = "60s";
  std::string startLatency = "200ms";
  std::string outpostd = OUTPOST_BENCH_OUTPOSTD;
  std::string out;
};

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "fleet bench: " << what << "\n";
  std::exit(1);
}

double secondsSince(FleetClock::time_point t0) {
  return std::chrono::duration<double>(FleetClock::now() - t0).count();
}

double secondsBetween(FleetClock::time_point a, FleetClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string utcNow() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

// "{p50, p99, max}" in ms of the samples (seconds).
json spread(std::vector<double> s) {
  if (s.empty()) return {{"n", 0}};
  return {{"n", s.size()},
          {"p50_ms", outpost::bench::percentile(s, 50) * 1000},
          {"p99_ms", outpost::bench::percentile(s, 99) * 1000},
          {"max_ms", *std::max_element(s.begin(), s.end()) * 1000}};
}

// ---- the cloud side: a publisher of desired objects and manifests for the group

class Publisher {
 public:
  Publisher(const std::string& uri, const std::string& prefix, const std::string& id)
      : client_(uri, id, static_cast<mqtt::iclient_persistence*>(nullptr)), prefix_(prefix) {
    auto opts = mqtt::connect_options_builder()
                    .clean_session(true)
                    .automatic_reconnect(200ms, 1s)
                    .finalize();
    client_.connect(opts)->wait();
  }
  ~Publisher() {
    try {
      client_.disconnect()->wait_for(2s);
    } catch (const std::exception&) {
    }
  }
  // Publishes pod `name` (retained, QoS 1) for `group`, then the group's manifest (when
  // `withManifest`). Returns the desired message's msg_id.
  std::string pod(const std::string& group, const std::string& name, const std::string& image,
                  bool withManifest) {
    std::string rv = std::to_string(nextVersion());
    std::string key = "default/pod/" + name;
    std::string msgId = "fleet-" + name + "-" + rv;
    json env = {{"header", {{"msg_id", msgId}, {"timestamp", nowMs()}, {"resourceversion", rv}}},
                {"route",
                 {{"source", "fleet-bench"},
                  {"group", "resource"},
                  {"operation", "update"},
                  {"resource", key}}},
                {"content",
                 {{"apiVersion", "v1"},
                  {"kind", "Pod"},
                  {"metadata", {{"name", name}, {"namespace", "default"}, {"uid", msgId}}},
                  {"spec", {{"containers", {{{"name", "main"}, {"image", image}}}}}}}}};
    publish(prefix_ + "/groups/" + group + "/desired/" + key, env.dump());
    if (withManifest) {
      objects_[key] = rv;
      json m = {{"generation", ++generation_}, {"version", rv}, {"objects", objects_}};
      publish(prefix_ + "/groups/" + group + "/manifest", m.dump());
    }
    return msgId;
  }

 private:
  static long long nowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  long long nextVersion() {
    long long v = nowMs();
    last_ = std::max(last_ + 1, v);
    return last_;
  }
  void publish(const std::string& topic, const std::string& payload) {
    if (!client_.publish(mqtt::make_message(topic, payload, 1, true))->wait_for(30s))
      fail("no PUBACK for " + topic);
  }
  mqtt::async_client client_;
  std::string prefix_;
  long long last_ = 0;
  long long generation_ = 0;
  json objects_ = json::object();
};

// ---- $SYS of the broker, sampled every second

class SysSampler {
 public:
  struct Sample {
    double t;  // seconds since the sampler started, when the values arrived
    double bytesIn, bytesOut, msgsIn, msgsOut, clients;
    int gen;  // the broker's run: counters restart with it
  };
  explicit SysSampler(const std::string& uri)
      : client_(uri, "fleet-sys-" + std::to_string(getpid()),
                static_cast<mqtt::iclient_persistence*>(nullptr)),
        t0_(FleetClock::now()) {
    client_.set_message_callback([this](mqtt::const_message_ptr m) {
      std::lock_guard l(mu_);
      cur_.t = secondsSince(t0_);
      updated_ = true;
      ownBytes_ += static_cast<double>(m->get_topic().size() + m->get_payload().size() + 4);
      double v = std::atof(m->get_payload_str().c_str());
      const std::string& t = m->get_topic();
      if (t == "$SYS/broker/bytes/received") cur_.bytesIn = v;
      if (t == "$SYS/broker/bytes/sent") cur_.bytesOut = v;
      if (t == "$SYS/broker/messages/received") cur_.msgsIn = v;
      if (t == "$SYS/broker/messages/sent") cur_.msgsOut = v;
      if (t == "$SYS/broker/clients/connected") cur_.clients = v;
    });
    client_.set_connected_handler([this](const std::string&) {
      if (connected_.exchange(true)) {
        // A restarted broker counts from 0: samples of the new run are a new generation.
        std::lock_guard l(mu_);
        cur_ = Sample{};
        cur_.gen = ++gen_;
        updated_ = false;
        subscribe();
      }
    });
    client_
        .connect(mqtt::connect_options_builder()
                     .clean_session(true)
                     .automatic_reconnect(200ms, 1s)
                     .finalize())
        ->wait();
    subscribe()->wait();
    connected_ = true;
    thread_ = std::thread([this] {
      while (!stop_) {
        std::this_thread::sleep_for(200ms);  // the sampling period, not a synchronisation
        std::lock_guard l(mu_);
        // One sample per $SYS update (the broker publishes them every sys_interval, later under
        // load), stamped with the time the update arrived.
        if (updated_) samples_.push_back(cur_);
        updated_ = false;
      }
    });
  }
  ~SysSampler() {
    stop_ = true;
    thread_.join();
    try {
      client_.disconnect()->wait_for(2s);
    } catch (const std::exception&) {
    }
  }
  Sample now() {
    std::lock_guard l(mu_);
    Sample s = cur_;
    s.t = secondsSince(t0_);
    return s;
  }
  double ownBytes() {
    std::lock_guard l(mu_);
    return ownBytes_;
  }
  std::vector<Sample> since(double t) {
    std::lock_guard l(mu_);
    std::vector<Sample> out;
    for (const auto& s : samples_) {
      if (s.t >= t) out.push_back(s);
    }
    return out;
  }

 private:
  mqtt::token_ptr subscribe() {
    std::vector<std::string> f = {"$SYS/broker/bytes/+", "$SYS/broker/messages/+",
                                  "$SYS/broker/clients/connected"};
    return client_.subscribe(mqtt::string_collection::create(f), std::vector<int>(f.size(), 0));
  }
  mqtt::async_client client_;
  FleetClock::time_point t0_;
  std::mutex mu_;
  Sample cur_{};
  int gen_ = 0;
  bool updated_ = false;
  double ownBytes_ = 0;
  std::vector<Sample> samples_;
  std::atomic<bool> connected_{false}, stop_{false};
  std::thread thread_;
};

// ---- the reference: N plain clients with persistent sessions that ack without storing

class EchoFleet {
 public:
  EchoFleet(const std::string& uri, size_t n, const std::string& prefix) {
    std::vector<mqtt::token_ptr> tokens;
    for (size_t i = 0; i < n; ++i) {
      char id[32];
      std::snprintf(id, sizeof id, "echo-%04zu", i);
      auto c =
          std::make_unique<mqtt::async_client>(uri, id, mqtt::create_options(MQTTVERSION_3_1_1),
                                               static_cast<mqtt::iclient_persistence*>(nullptr));
      mqtt::async_client* self = c.get();
      std::string up = prefix + "/nodes/" + id + "/up";
      c->set_message_callback([self, up](mqtt::const_message_ptr m) {
        json in = json::parse(m->get_payload_str(), nullptr, false);
        if (!in.is_object()) return;
        json ack = {{"header",
                     {{"msg_id", "ack-" + in["header"].value("msg_id", "")},
                      {"parent_msg_id", in["header"].value("msg_id", "")}}},
                    {"route",
                     {{"source", "fleet-bench"},
                      {"group", "resource"},
                      {"operation", "response"},
                      {"resource", in["route"].value("resource", "")}}},
                    {"content", "OK"}};
        try {
          self->publish(mqtt::make_message(up, ack.dump(), 1, false));
        } catch (const std::exception& e) {
          std::cerr << "echo: " << e.what() << "\n";
        }
      });
      tokens.push_back(c->connect(mqtt::connect_options_builder()
                                      .clean_session(false)
                                      .keep_alive_interval(15s)
                                      .finalize()));
      clients_.push_back(std::move(c));
      if (tokens.size() == 100) {  // a hundred connects in flight at a time
        for (auto& t : tokens) t->wait_for(60s);
        tokens.clear();
      }
    }
    for (auto& t : tokens) t->wait_for(60s);
    tokens.clear();
    for (auto& c : clients_) {
      if (!c->is_connected()) fail("an echo client did not connect");
      tokens.push_back(c->subscribe(prefix + "/groups/fleet/desired/#", 1));
    }
    for (auto& t : tokens) t->wait_for(60s);
  }
  ~EchoFleet() {
    for (auto& c : clients_) {
      try {
        c->disconnect()->wait_for(2s);
      } catch (const std::exception&) {
      }
    }
  }
  size_t size() const { return clients_.size(); }
  static std::string name(size_t i) {
    char id[32];
    std::snprintf(id, sizeof id, "echo-%04zu", i);
    return id;
  }

 private:
  std::vector<std::unique_ptr<mqtt::async_client>> clients_;
};

// ---- per-process figures

struct Mem {
  double pssKb = 0, rssKb = 0, anonKb = 0, threads = 0;
};

Mem memOf(pid_t pid) {
  Mem m;
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    auto val = [&](const char* key) {
      return line.rfind(key, 0) == 0 ? std::atof(line.c_str() + std::strlen(key)) : -1.0;
    };
    if (double v = val("Pss:"); v >= 0) m.pssKb = v;
    if (double v = val("Rss:"); v >= 0) m.rssKb = v;
    if (double v = val("Anonymous:"); v >= 0) m.anonKb = v;
  }
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(st, line)) {
    if (line.rfind("Threads:", 0) == 0) m.threads = std::atof(line.c_str() + 8);
  }
  return m;
}

// utime + stime of a process, in seconds.
double cpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  double ut = 0, st = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) ut = std::atof(field.c_str());
    if (i == 15) st = std::atof(field.c_str());
  }
  return (ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of this process (the echo clients, the observers).
double selfCpu() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double fleetCpu(HollowFleet& fleet) {
  double s = 0;
  for (size_t i = 0; i < fleet.size(); ++i) s += cpuSeconds(fleet.pid(i));
  return s;
}

json memoryRow(HollowFleet& fleet, pid_t broker) {
  std::vector<double> rss, threads;
  double pss = 0, anon = 0;
  for (size_t i = 0; i < fleet.size(); ++i) {
    Mem m = memOf(fleet.pid(i));
    pss += m.pssKb;
    anon += m.anonKb;
    rss.push_back(m.rssKb);
    threads.push_back(m.threads);
  }
  double n = static_cast<double>(fleet.size());
  Mem b = memOf(broker);
  return {{"pss_per_agent_mb", pss / n / 1024},
          {"anonymous_per_agent_mb", anon / n / 1024},
          {"rss_median_mb", outpost::bench::median(rss) / 1024},
          {"rss_max_mb", *std::max_element(rss.begin(), rss.end()) / 1024},
          {"threads_median", outpost::bench::median(threads)},
          {"threads_max", *std::max_element(threads.begin(), threads.end())},
          {"fleet_pss_mb", pss / 1024},
          {"broker_rss_mb", b.rssKb / 1024}};
}

json agentStatus(const HollowFleet& fleet, size_t i) {
  return json::parse(localApiGet(fleet.socket(i), "/v1/status"), nullptr, false);
}

// status.<section>.<key> of an agent's /v1/status, or `otherwise`.
template <typename T>
T statusField(const json& st, const char* section, const char* key, T otherwise) {
  if (!st.is_object() || !st.contains(section) || !st[section].is_object()) return otherwise;
  return st[section].value(key, otherwise);
}

// Rows in the agent's outbox (store.outbox.rows of /v1/status); -1 when it did not answer.
int64_t outboxRows(const json& st) {
  if (!st.is_object() || !st.contains("store") || !st["store"].is_object()) return -1;
  return statusField(st["store"], "outbox", "rows", int64_t{-1});
}

// Waits until `done()` or `deadline`, printing `what` with `count()` every 5 s.
bool waitProgress(const std::string& what, const std::function<size_t()>& count, size_t target,
                  std::chrono::seconds deadline) {
  auto t0 = FleetClock::now();
  auto lastPrint = t0;
  size_t n = 0;
  bool ok = waitFor(
      [&] {
        n = count();
        if (FleetClock::now() - lastPrint > 5s) {
          lastPrint = FleetClock::now();
          std::cout << "  " << what << ": " << n << "/" << target << " after "
                    << static_cast<int>(secondsSince(t0)) << " s" << std::endl;
        }
        return n >= target;
      },
      deadline);
  if (!ok) std::cout << "  " << what << ": only " << n << "/" << target << std::endl;
  return ok;
}

// Lines of mosquitto's log from byte `offset`: "<epoch seconds>: <text>".
std::vector<std::pair<long, std::string>> logLines(const fs::path& path, size_t offset) {
  std::ifstream in(path);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<std::pair<long, std::string>> out;
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(": ");
    if (colon == std::string::npos) continue;
    out.emplace_back(std::atol(line.substr(0, colon).c_str()), line.substr(colon + 2));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Params p;
  CLI::App app{"Fleet benchmark (F1-F5): N hollow outpostd processes against one mosquitto",
               "outpost_bench_fleet"};
  app.option_defaults()->always_capture_default();
  app.add_option("--nodes", p.nodes, "agents (real outpostd processes)")
      ->check(outpost::bench::atLeast(1));
  app.add_option("--batch", p.batch, "agents started at a time")->check(outpost::bench::atLeast(1));
  app.add_option("--pods", p.pods, "F1: hollow pods per agent in the second row")
      ->check(outpost::bench::atLeast(1));
  app.add_option("--settle", p.settle, "F1: seconds idle before sampling memory")
      ->check(outpost::bench::atLeast(0));
  app.add_option("--idle", p.idle, "F4: seconds of idle traffic measured")
      ->check(outpost::bench::atLeast(10));
  app.add_option("--down", p.down, "F3: seconds the broker stays down")
      ->check(outpost::bench::atLeast(0));
  app.add_option("--outage", p.outage, "F5: seconds the nodes stay offline (the issue asks 600)")
      ->check(outpost::bench::atLeast(1));
  app.add_option("--reconnect-cap", p.reconnectCap, "the agents' cloud.reconnect.cap (s)");
  app.add_option("--start-latency", p.startLatency, "the hollow runtime's start_latency");
  app.add_option("--outpostd", p.outpostd, "the outpostd binary");
  app.add_option("--out", p.out, "write the results as JSON to this file");
  outpost::bench::parseFlags(app, argc, argv);
  double capSeconds = std::atof(p.reconnectCap.c_str());
  if (p.reconnectCap.empty() || p.reconnectCap.back() != 's' || capSeconds <= 0)
    fail("--reconnect-cap takes whole seconds, like 60s");

  long files = outpost::test::raiseFileLimit();
  if (files < static_cast<long>(3 * p.nodes + 200)) {
    fail("the open-file limit is " + std::to_string(files) + "; " + std::to_string(p.nodes) +
         " nodes need about " + std::to_string(3 * p.nodes + 200) + " (ulimit -n)");
  }
  json out = {
      {"machine",
       {{"cores", std::thread::hardware_concurrency()}, {"cpu", outpost::bench::cpuModel()}}},
      {"nodes", p.nodes},
      {"started", utcNow()},
      {"load_average_at_start", loadAverage()},
      {"params",
       {{"pods", p.pods},
        {"settle_s", p.settle},
        {"idle_s", p.idle},
        {"down_s", p.down},
        {"outage_s", p.outage},
        {"reconnect_cap", p.reconnectCap},
        {"start_latency", p.startLatency}}}};
  std::cout << "fleet: " << p.nodes << " agents, " << out["started"].get<std::string>()
            << ", load average " << loadAverage() << std::endl;

  outpost::test::TempDir dir;
  FleetBroker broker;
  FleetObserver obs(broker.cloudUri());
  SysSampler sys(broker.cloudUri());
  Publisher cloud(broker.cloudUri(), "outpost/v1", "fleet-cloud");
  std::unique_ptr<HollowFleet> started;
  auto t0 = FleetClock::now();
  try {
    started = outpost::bench::startBenchFleet(
        dir.path(), broker,
        {p.outpostd, p.startLatency, p.reconnectCap, p.nodes, p.batch, std::chrono::seconds(120)});
  } catch (const std::exception& e) {
    fail(e.what());
  }
  HollowFleet& fleet = *started;
  out["start_seconds"] = secondsSince(t0);
  if (!waitProgress(
          "online", [&] { return obs.onlineCount(); }, p.nodes, 300s))
    fail("not every agent came online");
  std::vector<std::string> names;
  for (size_t i = 0; i < p.nodes; ++i) names.push_back(fleet.name(i));

  // ---- F1 at 0 pods
  std::cout << "F1: memory with 0 pods (after " << p.settle << " s idle)" << std::endl;
  std::this_thread::sleep_for(std::chrono::seconds(p.settle));  // the idle period measured
  out["f1"]["pods_0"] = memoryRow(fleet, broker.pid());
  std::cout << "  " << out["f1"]["pods_0"].dump() << std::endl;

  // ---- F4: idle traffic
  std::cout << "F4: idle traffic for " << p.idle << " s" << std::endl;
  {
    auto a = sys.now();
    double ownA = sys.ownBytes();
    double cpuA = fleetCpu(fleet);
    size_t obsA = obs.messages();
    double obsBytesA = static_cast<double>(obs.bytes());
    std::this_thread::sleep_for(std::chrono::seconds(p.idle));  // the window measured
    auto b = sys.now();
    double own = sys.ownBytes() - ownA;
    double secs = b.t - a.t;
    double n = static_cast<double>(p.nodes);
    double in = b.bytesIn - a.bytesIn;
    double toCloud = static_cast<double>(obs.bytes()) - obsBytesA;
    double outB = b.bytesOut - a.bytesOut - own - toCloud;  // to the nodes
    double perNodeKbit = (in + outB) * 8 / 1000 / secs / n;
    out["f4"] = {{"seconds", secs},
                 {"bytes_in", in},
                 {"bytes_out_to_nodes", outB},
                 {"bytes_out_to_the_cloud_observer", toCloud},
                 {"messages_in", b.msgsIn - a.msgsIn},
                 {"observer_messages", obs.messages() - obsA},
                 {"bytes_per_observed_message",
                  obs.messages() > obsA ? toCloud / static_cast<double>(obs.messages() - obsA) : 0},
                 {"bytes_in_per_node_per_hour", in / n / secs * 3600},
                 {"bytes_out_per_node_per_hour", outB / n / secs * 3600},
                 {"kbit_per_s_per_node", perNodeKbit},
                 {"fleet_cpu_percent_of_one_core", (fleetCpu(fleet) - cpuA) / secs * 100}};
    std::cout << "  " << out["f4"].dump() << std::endl;
  }

  // ---- F2: a new pod for the group -> acks and Running, next to N plain echo clients
  std::cout << "F2: one new pod for the group of " << p.nodes << " nodes" << std::endl;
  {
    double cpuA = fleetCpu(fleet), brokerA = cpuSeconds(broker.pid());
    auto t = FleetClock::now();
    std::string id = cloud.pod("fleet", "f2", "nginx:1.25", true);
    bool acked = waitProgress(
        "acked", [&] { return obs.ackCount(id); }, p.nodes, 300s);
    // Where the time goes until the last ack: CPU of the agents and of the broker.
    double window = secondsSince(t);
    out["f2"]["ours_cpu"] = {{"window_s", window},
                             {"agents_cpu_s", fleetCpu(fleet) - cpuA},
                             {"broker_cpu_s", cpuSeconds(broker.pid()) - brokerA}};
    bool running = waitProgress(
        "Running", [&] { return obs.runningCount("default/pod/f2"); }, p.nodes, 300s);
    std::vector<double> ackS, runS;
    for (const auto& n : names) {
      if (auto a = obs.ackedAt(n, id)) ackS.push_back(secondsBetween(t, *a));
      if (auto r = obs.runningAt(n, "default/pod/f2")) runS.push_back(secondsBetween(t, *r));
    }
    out["f2"]["ours"] = {{"ack", spread(ackS)},
                         {"running", spread(runS)},
                         {"all_acked", acked},
                         {"all_running", running}};
    std::cout << "  ours: " << out["f2"]["ours"].dump() << " " << out["f2"]["ours_cpu"].dump()
              << std::endl;
  }
  {
    std::cout << "  connecting " << p.nodes << " plain echo clients" << std::endl;
    FleetObserver refObs(broker.cloudUri(), "ref/v1");
    EchoFleet echo(broker.nodesUri(), p.nodes, "ref/v1");
    Publisher refCloud(broker.cloudUri(), "ref/v1", "fleet-ref-cloud");
    double cpuA = selfCpu(), brokerA = cpuSeconds(broker.pid());
    auto t = FleetClock::now();
    std::string id = refCloud.pod("fleet", "f2", "nginx:1.25", false);
    bool acked = waitProgress(
        "echo acked", [&] { return refObs.ackCount(id); }, p.nodes, 300s);
    double window = secondsSince(t);
    out["f2"]["echo_cpu"] = {{"window_s", window},
                             {"bench_process_cpu_s", selfCpu() - cpuA},
                             {"broker_cpu_s", cpuSeconds(broker.pid()) - brokerA}};
    std::vector<double> ackS;
    for (size_t i = 0; i < p.nodes; ++i) {
      if (auto a = refObs.ackedAt(EchoFleet::name(i), id)) ackS.push_back(secondsBetween(t, *a));
    }
    out["f2"]["echo"] = {{"ack", spread(ackS)}, {"all_acked", acked}};
    std::cout << "  echo: " << out["f2"]["echo"].dump() << " " << out["f2"]["echo_cpu"].dump()
              << std::endl;
    double ours = out["f2"]["ours"]["ack"].value("p99_ms", 0.0);
    double theirs = out["f2"]["echo"]["ack"].value("p99_ms", 0.0);
    out["f2"]["ack_p99_ours_over_echo"] = theirs > 0 ? ours / theirs : 0;
  }

  // ---- F1 at --pods pods (f2 is the first)
  std::cout << "F1: memory with " << p.pods << " pods" << std::endl;
  for (size_t k = 1; k < p.pods; ++k) cloud.pod("fleet", "pod" + std::to_string(k), "app:v1", true);
  if (!waitProgress(
          "nodes with all pods Running",
          [&] {
            size_t all = p.nodes;
            for (size_t k = 1; k < p.pods; ++k)
              all = std::min(all, obs.phaseCount("default/pod/pod" + std::to_string(k), "Running"));
            return all;
          },
          p.nodes, 600s))
    fail("the pods did not all run");
  std::this_thread::sleep_for(std::chrono::seconds(p.settle));  // the idle period measured
  out["f1"]["pods_" + std::to_string(p.pods)] = memoryRow(fleet, broker.pid());
  std::cout << "  " << out["f1"]["pods_" + std::to_string(p.pods)].dump() << std::endl;

  // ---- F3: the broker stopped, back after --down seconds on the same ports
  std::cout << "F3: broker down for " << p.down << " s" << std::endl;
  {
    std::vector<int64_t> reconnects(p.nodes);
    for (size_t i = 0; i < p.nodes; ++i)
      reconnects[i] = statusField(agentStatus(fleet, i), "cloud", "reconnects", int64_t{0});
    broker.stop();
    std::this_thread::sleep_for(std::chrono::seconds(p.down));  // the outage itself
    size_t logOffset = fs::file_size(broker.logPath());
    auto back = FleetClock::now();
    long backEpoch = static_cast<long>(std::time(nullptr));
    broker.start(true);
    bool all = waitProgress(
        "connected again (their /v1/status)",
        [&] {
          size_t n = 0;
          for (size_t i = 0; i < p.nodes; ++i) {
            json st = agentStatus(fleet, i);
            n += statusField(st, "cloud", "state", std::string()) == "connected" &&
                         statusField(st, "cloud", "reconnects", int64_t{0}) > reconnects[i]
                     ? 1
                     : 0;
          }
          return n;
        },
        p.nodes, std::chrono::seconds(static_cast<long>(capSeconds) + 120));
    double allConnectedS = secondsSince(back);
    // What the broker saw: connections per second on the nodes' port, and each node's first
    // subscribe after the restart.
    std::map<long, int> perSecond;
    std::map<std::string, long> subscribed;
    std::string onPort = "on port " + std::to_string(broker.nodesPort()) + ".";
    for (const auto& [ts, text] : logLines(broker.logPath(), logOffset)) {
      if (text.rfind("New connection from ", 0) == 0 && text.find(onPort) != std::string::npos)
        ++perSecond[ts];
      // "<client id> 1 outpost/v1/..." (log_type subscribe)
      size_t sp = text.find(" 1 outpost/v1/");
      if (sp != std::string::npos && !subscribed.count(text.substr(0, sp)))
        subscribed[text.substr(0, sp)] = ts;
    }
    int peak = 0;
    long peakAt = 0;
    for (auto [ts, n] : perSecond) {
      if (n > peak) peak = n, peakAt = ts;
    }
    long lastSub = 0;
    size_t nodesSubscribed = 0;
    for (const auto& n : names) {
      auto it = subscribed.find(n);
      if (it == subscribed.end()) continue;
      ++nodesSubscribed;
      lastSub = std::max(lastSub, it->second);
    }
    std::vector<double> onlineS;
    for (const auto& n : names) {
      if (auto a = obs.onlineAt(n); a && *a > back) onlineS.push_back(secondsBetween(back, *a));
    }
    std::vector<int> series;
    for (long s = backEpoch; s <= backEpoch + static_cast<long>(capSeconds) + 10; ++s)
      series.push_back(perSecond.count(s) ? perSecond[s] : 0);
    out["f3"] = {{"all_connected", all},
                 {"all_connected_seconds_by_status_polls", allConnectedS},
                 {"nodes_subscribed_per_log", nodesSubscribed},
                 {"last_subscribe_seconds_after_restart", lastSub - backEpoch},
                 {"online_after_restart", spread(onlineS)},
                 {"peak_connections_per_second", peak},
                 {"peak_at_seconds_after_restart", peakAt - backEpoch},
                 {"connections_total", std::accumulate(series.begin(), series.end(), 0)},
                 {"connections_per_second", series},
                 {"target_seconds", capSeconds + 10},
                 {"target_peak_per_second", 3 * static_cast<double>(p.nodes) / capSeconds}};
    std::cout << "  " << out["f3"].dump() << std::endl;
  }

  // ---- F5: the nodes offline for --outage seconds while a pod restarts on each
  std::cout << "F5: nodes offline for " << p.outage << " s while a pod restarts" << std::endl;
  {
    cloud.pod("fleet", "crashy", "app:exits-1-after-30s", true);
    if (!waitProgress(
            "crashy Running", [&] { return obs.runningCount("default/pod/crashy"); }, p.nodes,
            600s))
      fail("crashy did not run everywhere");
    broker.stop();
    broker.start(false);  // the cloud's listener only: the nodes cannot reach it
    std::this_thread::sleep_for(std::chrono::seconds(p.outage));  // the outage itself
    std::vector<int64_t> rowsBefore(p.nodes);
    int64_t rowsTotal = 0;
    for (size_t i = 0; i < p.nodes; ++i) {
      rowsBefore[i] = std::max<int64_t>(0, outboxRows(agentStatus(fleet, i)));
      rowsTotal += rowsBefore[i];
    }
    broker.stop();
    auto back = FleetClock::now();
    double sysT = sys.now().t;
    obs.takeMaxNodeRate();
    obs.takeMaxFleetRate();
    broker.start(true);
    std::vector<double> drained(p.nodes, -1), connected(p.nodes, -1);
    waitProgress(
        "outboxes empty",
        [&] {
          size_t n = 0;
          for (size_t i = 0; i < p.nodes; ++i) {
            if (drained[i] < 0) {
              json st = agentStatus(fleet, i);
              bool up = statusField(st, "cloud", "state", std::string()) == "connected";
              if (up && connected[i] < 0) connected[i] = secondsSince(back);
              if (up && outboxRows(st) == 0) drained[i] = secondsSince(back);
            }
            n += drained[i] >= 0 ? 1 : 0;
          }
          return n;
        },
        p.nodes, 600s);
    size_t nodeRate = obs.takeMaxNodeRate();
    size_t fleetRate = obs.takeMaxFleetRate();
    // The broker's rate between consecutive $SYS updates of the same broker run.
    double peakIn = 0, peakOut = 0;
    std::vector<double> inSeries;
    auto samples = sys.since(sysT);
    // Over at least one second: on a resubscribe the retained $SYS values and the next update
    // can arrive a moment apart.
    size_t j = 0;
    for (size_t k = 1; k < samples.size(); ++k) {
      if (samples[k].gen != samples[j].gen) j = k;
      double dt = samples[k].t - samples[j].t;
      if (dt < 1.0) continue;
      double in = (samples[k].msgsIn - samples[j].msgsIn) / dt;
      peakIn = std::max(peakIn, in);
      peakOut = std::max(peakOut, (samples[k].msgsOut - samples[j].msgsOut) / dt);
      j = k;
      if (inSeries.size() < 120) inSeries.push_back(std::round(in));
    }
    std::vector<double> drainS, afterConnectS, connectS;
    for (size_t i = 0; i < p.nodes; ++i) {
      if (drained[i] >= 0) drainS.push_back(drained[i]);
      if (connected[i] >= 0) connectS.push_back(connected[i]);
      if (drained[i] >= 0 && connected[i] >= 0) afterConnectS.push_back(drained[i] - connected[i]);
    }
    // Nothing lost, nothing stale: a fresh subscriber's retained statuses equal what each node
    // holds (compared again for a node whose pod changed in between).
    FleetObserver fresh(broker.cloudUri());
    std::vector<std::string> keys = {"default/pod/crashy", "default/pod/f2"};
    for (size_t k = 1; k < p.pods; ++k) keys.push_back("default/pod/pod" + std::to_string(k));
    waitProgress(
        "retained statuses received",
        [&] {
          size_t m = p.nodes;
          for (const auto& k : keys) m = std::min(m, fresh.statusCount(k));
          return m;
        },
        p.nodes, 120s);
    std::vector<bool> same(p.nodes, false);
    auto compare = [&] {
      size_t n = 0;
      for (size_t i = 0; i < p.nodes; ++i) {
        if (!same[i]) {
          json held =
              json::parse(localApiGet(fleet.socket(i), "/v1/resources?type=pod"), nullptr, false);
          bool eq = held.is_array() && held.size() == keys.size();
          for (const auto& r : held.is_array() ? held : json::array()) {
            json st = r.contains("object") && r["object"].is_object()
                          ? r["object"].value("status", json())
                          : json();
            eq = eq && st == fresh.status(names[i], r.value("key", ""));
          }
          same[i] = eq;
        }
        n += same[i] ? 1 : 0;
      }
      return n;
    };
    bool allSame = waitProgress("retained status = the node's own", compare, p.nodes, 120s);
    out["f5"] = {
        {"outage_seconds", p.outage},
        {"outbox_rows_at_end_of_outage", rowsTotal},
        {"outbox_rows_per_node_max", *std::max_element(rowsBefore.begin(), rowsBefore.end())},
        {"drained", spread(drainS)},
        {"connected_seen", spread(connectS)},
        {"drained_after_connected_seen", spread(afterConnectS)},
        {"peak_messages_in_per_second", peakIn},
        {"peak_messages_out_per_second", peakOut},
        {"max_messages_from_one_node_in_one_second", nodeRate},
        {"max_messages_from_all_nodes_in_one_second", fleetRate},
        {"broker_messages_in_per_second_between_sys_updates", inSeries},
        {"nodes_retained_equal_own", std::count(same.begin(), same.end(), true)},
        {"all_equal", allSame}};
    std::cout << "  " << out["f5"].dump() << std::endl;
  }

  auto exited = fleet.exited();
  out["agents_exited"] = exited.size();
  out["load_average_at_end"] = loadAverage();
  out["finished"] = utcNow();
  for (auto [i, code] : exited) {
    std::cout << fleet.name(i) << " exited with " << code << ":\n" << fleet.log(i) << std::endl;
  }
  if (!p.out.empty()) std::ofstream(p.out) << out.dump(2) << "\n";
  std::cout << out.dump(2) << std::endl;
  fleet.stopAll(60s);
  return exited.empty() ? 0 : 1;
}
