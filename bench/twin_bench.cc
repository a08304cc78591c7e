// Device twin benchmark (B6): twin update -> update/result round trips per second and p50/p99
// through a real mosquitto, next to a plain MQTT echo client through the same broker in the same
// run. The load client keeps `--window` requests in flight over `--devices` devices.
//   outpost_bench_twin [--out file.json] [--reps 5] [--requests 2000] [--window 32]
//                      [--devices 8] [--commit-window-ms 0] [--dir /tmp]

#include <arpa/inet.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_flags.h"
#include "bench_util.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"
#include "outpost/twin/twin_service.h"

using namespace outpost;
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
  int requests = 2000;
  int window = 32;
  int devices = 8;
  int commitWindowMs = 0;  // the agent's default (store.commit_window)
  fs::path dir = fs::temp_directory_path();
};

fs::path gDir;  // the run's scratch directory, removed by main() on failure too

// A failure of the bench itself. die() throws it so that main() unwinds: the broker is stopped,
// the clients disconnect and the twin and store close, then the directory goes.
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void die(const std::string& what) { throw BenchFailure(what); }

void progress(const std::string& what) { std::cerr << "bench: " << what << std::endl; }

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

int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool canConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// mosquitto on a free loopback port, no persistence, for the length of the run.
class Broker {
 public:
  explicit Broker(const fs::path& dir) : port_(freePort()) {
    fs::path conf = dir / "mosquitto.conf";
    std::ofstream(conf) << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\n"
                        << "persistence false\nlog_type error\nmax_inflight_messages 0\n"
                        << "max_queued_messages 100000\nset_tcp_nodelay true\n";
    pid_ = fork();
    if (pid_ < 0) die("fork");
    if (pid_ == 0) {
      execlp("mosquitto", "mosquitto", "-c", conf.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 500 && !canConnect(port_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // start-up poll
    if (!canConnect(port_)) {
      stop();  // the destructor does not run for a constructor that throws
      die("mosquitto did not start");
    }
  }
  ~Broker() { stop(); }
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  void stop() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }

  int port_;
  pid_t pid_;
};

// Paho C leaves Nagle's algorithm on; the twin turns it off for its own socket (see
// device-twin/src/mqtt_client.cc), and so must the limit's clients or the echo would measure the
// 40 ms delayed-ACK stall instead of the broker. Sets TCP_NODELAY on every socket of this process.
void noDelayEverywhere() {
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    int fd = std::atoi(e.path().filename().c_str());
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on non-TCP
  }
}

// Connects a Paho client (clean session) and waits.
std::unique_ptr<mqtt::async_client> connectClient(const std::string& uri, const std::string& id) {
  auto c = std::make_unique<mqtt::async_client>(uri, id,
                                                static_cast<mqtt::iclient_persistence*>(nullptr));
  auto opts = mqtt::connect_options_builder().clean_session(true).max_inflight(65535).finalize();
  c->connect(opts)->wait();
  return c;
}

// The event_id of a twin payload, found without a full parse (the echo must not pay for JSON).
std::string eventIdOf(const std::string& payload) {
  auto k = payload.find("\"event_id\":\"");
  if (k == std::string::npos) return {};
  k += 12;
  return payload.substr(k, payload.find('"', k) - k);
}

// The device side: keeps `window` requests in flight, measures each one's round trip.
class Loader {
 public:
  Loader(const std::string& uri, const std::string& clientId, const std::string& resultFilter)
      : client_(connectClient(uri, clientId)) {
    client_->set_message_callback([this](mqtt::const_message_ptr m) {
      auto now = SteadyClock::now();
      std::string id = eventIdOf(m->get_payload_str());
      std::lock_guard lock(mu_);
      auto it = sent_.find(id);
      if (it == sent_.end()) return;
      latencies_.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
      sent_.erase(it);
      cv_.notify_all();
    });
    client_->subscribe(resultFilter, 1)->wait();
  }
  ~Loader() {
    try {
      client_->disconnect()->wait();
    } catch (const std::exception&) {
    }
  }

  struct Run {
    double perSecond = 0;
    std::vector<double> latenciesMs;
  };
  // Sends `n` requests, request i to topicOf(i), and waits for every answer.
  Run run(int n, int window, const std::function<std::string(int)>& topicOf,
          const std::string& tag) {
    {
      std::lock_guard lock(mu_);
      latencies_.clear();
      sent_.clear();
    }
    auto start = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      std::string id = tag + "-" + std::to_string(i);
      std::string payload = R"({"event_id":")" + id + R"(","timestamp":1,"twin":{"temperature":)" +
                            R"({"actual":{"value":")" + std::to_string(i % 1000) + R"("}}}})";
      {
        std::unique_lock lock(mu_);
        if (!cv_.wait_for(lock, std::chrono::seconds(30),
                          [&] { return static_cast<int>(sent_.size()) < window; }))
          die("no answer within 30 s (" + tag + ")");
        sent_[id] = SteadyClock::now();
      }
      client_->publish(mqtt::make_message(topicOf(i), payload, 1, false));
    }
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return sent_.empty(); }))
      die("answers missing at the end (" + tag + ")");
    double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
    return {n / secs, latencies_};
  }

 private:
  std::unique_ptr<mqtt::async_client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, SteadyClock::time_point> sent_;
  std::vector<double> latencies_;
};

// The limit: a plain MQTT client that answers each request with its own payload.
class Echo {
 public:
  explicit Echo(const std::string& uri) : client_(connectClient(uri, "bench-echo")) {
    client_->set_message_callback([this](mqtt::const_message_ptr m) {
      std::string topic = m->get_topic();  // bench/echo/<dev>/twin/update
      client_->publish(mqtt::make_message(topic + "/result", m->get_payload(), 1, false));
    });
    client_->subscribe("bench/echo/+/twin/update", 1)->wait();
  }
  ~Echo() {
    try {
      client_->disconnect()->wait();
    } catch (const std::exception&) {
    }
  }

 private:
  std::unique_ptr<mqtt::async_client> client_;
};

Params parse(int argc, char** argv) {
  Params p;
  std::string dir = p.dir.string();
  CLI::App app{
      "B6: device twin update -> result round trips through mosquitto, next to an MQTT echo",
      "outpost_bench_twin"};
  app.option_defaults()->always_capture_default();
  app.add_option("--out", p.out, "write the results as JSON to this file");
  app.add_option("--reps", p.reps, "repetitions (echo and twin interleaved)")
      ->check(bench::atLeast(5));
  app.add_option("--requests", p.requests, "round trips per repetition")->check(bench::atLeast(4));
  app.add_option("--window", p.window, "requests in flight at once")->check(bench::atLeast(1));
  app.add_option("--devices", p.devices, "devices the requests are spread over")
      ->check(bench::atLeast(1));
  app.add_option("--commit-window-ms", p.commitWindowMs,
                 "the store's commit window in milliseconds")
      ->check(bench::atLeast(0));
  app.add_option("--dir", dir, "where the broker's configuration and the store go");
  bench::parseFlags(app, argc, argv);
  p.dir = dir;
  return p;
}

}  // namespace

int run(int argc, char** argv) {
  Params p = parse(argc, argv);
  fs::path dir = p.dir / ("outpost-bench-twin-" + std::to_string(getpid()));
  gDir = dir;
  fs::create_directories(dir);

  std::string mosquittoVersion = commandOutput("mosquitto -h 2>&1 | head -1");
  std::cout << "machine: " << sysconf(_SC_NPROCESSORS_ONLN) << " cores, " << cpuModel() << "\n"
            << mosquittoVersion << "\n";

  json out;
  std::map<std::string, std::vector<double>> rates, p50s, p99s;
  std::vector<double> ratios;
  {
    Broker broker(dir);
    core::SystemClock clock;
    core::Bus bus;
    core::Logging logging({core::LogLevel::kWarn, false, ""});
    core::MetricsRegistry metrics;
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    so.commitWindow = std::chrono::milliseconds(p.commitWindowMs);
    auto store = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    if (!store.isOk()) die(store.status().toString());
    core::EventLoop loop("bench", clock);
    loop.start();

    twin::TwinOptions o;
    o.nodeName = "bench-node";
    o.broker = broker.uri();
    auto service = twin::makeTwinService(o, **store, bus, clock, logging, metrics);
    if (!service->start().isOk()) die("twin start failed");
    // The devices, as the cloud link stores them.
    metadb::WriteBatch batch;
    for (int d = 0; d < p.devices; ++d) {
      std::string name = "dev" + std::to_string(d);
      json obj = {{"apiVersion", "devices.kubeedge.io/v1beta1"},
                  {"kind", "Device"},
                  {"metadata", {{"name", name}, {"namespace", "default"}}},
                  {"spec", {{"nodeName", "bench-node"}}}};
      batch.apply({metadb::ResourceChange::Kind::kUpsert, "default/device/" + name, "1", "",
                   obj.dump(), "cloud"});
    }
    std::promise<core::Status> written;
    (*store)->write(std::move(batch), loop,
                    [&](core::Result<metadb::WriteResult> r) { written.set_value(r.status()); });
    if (!written.get_future().get().isOk()) die("writing devices failed");
    progress("devices stored");
    auto deadline = SteadyClock::now() + std::chrono::seconds(30);
    while (!(service->status().connected && service->status().devices == p.devices)) {
      if (SteadyClock::now() > deadline) die("the twin did not come up");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // start-up poll
    }

    progress("twin up with " + std::to_string(p.devices) + " devices");
    Echo echo(broker.uri());
    Loader twinLoad(broker.uri(), "bench-load-twin", "$hw/events/device/+/+/twin/update/result");
    // A second loader for the echo so both measure the same kind of client.
    Loader echoLoad(broker.uri(), "bench-load-echo", "bench/echo/+/twin/update/result");
    auto twinTopic = [&](int i) {
      return "$hw/events/device/default/dev" + std::to_string(i % p.devices) + "/twin/update";
    };
    auto echoTopic = [&](int i) {
      return "bench/echo/dev" + std::to_string(i % p.devices) + "/twin/update";
    };
    noDelayEverywhere();
    progress("clients up");
    // Warm-up (not counted).
    echoLoad.run(p.requests / 4, p.window, echoTopic, "warm-echo");
    twinLoad.run(p.requests / 4, p.window, twinTopic, "warm-twin");

    for (int rep = 0; rep < p.reps; ++rep) {
      // Interleaved, so a slow moment of this shared machine hits both alike.
      auto e = echoLoad.run(p.requests, p.window, echoTopic, "echo" + std::to_string(rep));
      auto t = twinLoad.run(p.requests, p.window, twinTopic, "twin" + std::to_string(rep));
      rates["echo"].push_back(e.perSecond);
      rates["twin"].push_back(t.perSecond);
      p50s["echo"].push_back(percentile(e.latenciesMs, 50));
      p50s["twin"].push_back(percentile(t.latenciesMs, 50));
      p99s["echo"].push_back(percentile(e.latenciesMs, 99));
      p99s["twin"].push_back(percentile(t.latenciesMs, 99));
      ratios.push_back(t.perSecond / e.perSecond);
      std::printf(
          "rep %d: echo %8.0f/s (p50 %.2f ms, p99 %.2f ms)   twin %8.0f/s (p50 %.2f ms, "
          "p99 %.2f ms)   ratio %.2f\n",
          rep, e.perSecond, p50s["echo"].back(), p99s["echo"].back(), t.perSecond,
          p50s["twin"].back(), p99s["twin"].back(), ratios.back());
    }
    auto st = service->status();
    out["twin_updates"] = {{"ok", st.updatesOk}, {"failed", st.updatesFailed}};
    service->stop();
    loop.stop();
  }
  fs::remove_all(dir);

  out["benchmark"] = "twin";
  out["machine"] = {{"nproc", sysconf(_SC_NPROCESSORS_ONLN)}, {"cpu", cpuModel()}};
  out["versions"] = {{"mosquitto", mosquittoVersion}, {"paho_mqtt_cpp", mqtt::VERSION_STR}};
  out["params"] = {{"reps", p.reps},
                   {"requests_per_rep", p.requests},
                   {"window", p.window},
                   {"devices", p.devices},
                   {"qos", 1},
                   {"store", "SQLite WAL synchronous=FULL"},
                   {"commit_window_ms", p.commitWindowMs}};
  for (const char* s : {"echo", "twin"}) {
    out["scenarios"][s] = {{"round_trips_per_second", summary(rates[s])},
                           {"p50_ms", summary(p50s[s])},
                           {"p99_ms", summary(p99s[s])}};
  }
  double ratio = median(rates["twin"]) / median(rates["echo"]);
  out["ratio"] = {{"ours", "twin"},
                  {"limit", "echo"},
                  {"ratio_of_medians", ratio},
                  {"per_rep", summary(ratios)},
                  {"target", 0.5},
                  {"met", ratio >= 0.5}};
  std::printf("twin / echo: %.2f (per rep min %.2f, max %.2f); target >= 0.5: %s\n", ratio,
              *std::min_element(ratios.begin(), ratios.end()),
              *std::max_element(ratios.begin(), ratios.end()), ratio >= 0.5 ? "met" : "NOT met");
  if (!p.out.empty()) std::ofstream(p.out) << out.dump(2) << "\n";
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // BenchFailure, or a helper that threw
    std::cerr << "bench: " << e.what() << "\n";
    std::error_code ec;
    if (!gDir.empty()) fs::remove_all(gDir, ec);
    _exit(1);  // not exit(): Paho's threads may hold locks its static destructors need
  }
}
