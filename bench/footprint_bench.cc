// Footprint benchmark (B1, B2) of the real outpostd (this build's, or --outpostd PATH), as a user
// runs it: its own process, a configuration file, a real mosquitto on loopback for the cloud and
// the device broker, a real containerd (tests/support/containerd_harness) with busybox pods.
//   B1: memory of outpostd connected and idle with N cached pods (desired pod objects in its
//       SQLite store, written before it starts): RSS, PSS and Private_Dirty from
//       /proc/<pid>/smaps_rollup, Threads from /proc/<pid>/status, and where it goes (smaps per
//       mapping: the binary, each library, heap, malloc arenas, thread stacks; threads by name).
//       "Connected and idle": its link published `online` = true, the status of every pod arrived
//       on the cloud broker as Running (every container runs in containerd), then --settle
//       seconds of nothing to do. Each repetition is a fresh outpostd process on the same store:
//       the first one creates the pods, the next ones adopt the running containers (cold boot;
//       their statuses are already Running on the broker, so those wait for `online` and the
//       settle period).
//       --store-only-pods: N cached pods with no runtime listening (the pods cannot start; the
//       agent retries with back-off): what caching N objects costs without N containers.
//   B2: time from fork() to sd_notify READY=1 (caught on a NOTIFY_SOCKET datagram socket this
//       program binds) with --objects cached objects, next to opening the same SQLite file and
//       reading every row of its resources table (the limit), interleaved, in the same run.
// Needs root for containerd (without it, or with --no-containerd, B1 runs store-only).
//   outpost_bench_footprint [--out file.json] [--reps 5] [--pods 0,100] [--store-only-pods 1000]
//                           [--objects 10000] [--settle 5] [--outpostd PATH] [--no-containerd]
//                           [--inspect CMD]
//   --inspect CMD: runs `CMD <pid>` (through /bin/sh) for each B1 process once it is idle, right
//       after the sample is taken and before it is stopped (e.g. a script that reads its pagemap).

#include <mqtt/async_client.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_flags.h"
#include "bench_util.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/containerd_harness.h"
#include "support/mosquitto.h"
#include "support/test_util.h"

using namespace outpost;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

using bench::cpuModel;
using bench::median;
using bench::summary;

struct Params {
  std::string out;
  int reps = 5;
  std::vector<int> pods = {0, 100};
  std::vector<int> storeOnlyPods = {1000};
  int objects = 10000;
  int settleSeconds = 5;
  std::string outpostd = OUTPOST_BENCH_OUTPOSTD;
  bool containerd = true;
  std::string inspect;
};

std::unique_ptr<test::ContainerdHarness> gHarness;  // torn down by die() too

// A failure of the bench itself. die() throws it so that main() unwinds and tears down what it set
// up (the brokers, containerd, the temporary directories): std::exit left mosquitto running.
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void die(const std::string& what) { throw BenchFailure(what); }

std::vector<int> parseList(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      out.push_back(std::stoi(item));
    } catch (const std::exception&) {
      die("not a number in a list: '" + item + "'");
    }
  }
  return out;
}

Params parse(int argc, char** argv) {
  Params p;
  auto joined = [](const std::vector<int>& v) {
    std::string s;
    for (int n : v) s += (s.empty() ? "" : ",") + std::to_string(n);
    return s;
  };
  std::string pods = joined(p.pods);
  std::string storeOnlyPods = joined(p.storeOnlyPods);
  bool noContainerd = false;
  CLI::App app{
      "B1 and B2: outpostd's memory connected and idle with N cached pods, and start to "
      "READY with many cached objects",
      "outpost_bench_footprint"};
  app.option_defaults()->always_capture_default();
  app.add_option("--out", p.out, "write the results as JSON to this file");
  app.add_option("--reps", p.reps, "outpostd processes per row (B1), repetitions (B2)")
      ->check(bench::atLeast(1));
  app.add_option("--pods", pods, "B1: running pods per row, comma-separated");
  app.add_option("--store-only-pods", storeOnlyPods,
                 "B1: rows with this many pods cached but not run, comma-separated");
  app.add_option("--objects", p.objects, "B2: cached pods read at start")->check(bench::atLeast(1));
  app.add_option("--settle", p.settleSeconds, "B1: seconds idle before sampling memory");
  app.add_option("--outpostd", p.outpostd, "the outpostd binary to measure");
  app.add_flag("--no-containerd", noContainerd, "B1 with cached pods only, no containerd");
  app.add_option("--inspect", p.inspect,
                 "runs `CMD <pid>` (through /bin/sh) for each idle B1 process after its sample");
  bench::parseFlags(app, argc, argv);
  p.pods = parseList(pods);
  p.storeOnlyPods = parseList(storeOnlyPods);
  p.containerd = !noContainerd;
  return p;
}

double ms(SteadyClock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string firstLine(const std::vector<std::string>& argv) {
  std::string out, err;
  test::run(argv, &out, &err);
  if (out.empty()) out = err;
  return out.substr(0, out.find('\n'));
}

// ---- what /proc says about a process
// ---------------------------------------------------------

// "Key: 123 kB" lines of a /proc file, in kB.
std::map<std::string, double> procKb(const fs::path& file) {
  std::map<std::string, double> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream rest(line.substr(colon + 1));
    double v = 0;
    if (rest >> v) out[line.substr(0, colon)] = v;
  }
  return out;
}

// Threads by name (what pthread_setname_np or the library set; unnamed ones inherit their
// creator's name).
std::map<std::string, int> threadNames(int pid) {
  std::map<std::string, int> out;
  for (const auto& t : fs::directory_iterator(fs::path("/proc") / std::to_string(pid) / "task")) {
    std::string name = test::readFile(t.path() / "comm");
    while (!name.empty() && name.back() == '\n') name.pop_back();
    ++out[name];
  }
  return out;
}

// Who starts a thread of this name (the main thread has the executable's name, cut to 15).
std::string threadOrigin(const std::string& name, const std::string& exeName) {
  if (name == exeName.substr(0, 15)) return "outpostd (main: signals, watchdog)";
  static const std::map<std::string, std::string> kOurs = {
      {"api", "ours: event loop"},
      {"cloudhub", "ours: event loop"},
      {"cloudhub-ws-io", "ours: the WebSocket connection's I/O (Boost.Beast)"},
      {"deploy", "ours: event loop"},
      {"metadb", "ours: event loop (SQLite writer)"},
      {"twin", "ours: event loop"}};
  if (auto it = kOurs.find(name); it != kOurs.end()) return it->second;
  if (name.rfind("MQTTAsync", 0) == 0) return "Paho MQTT C (one pair per process)";
  return "other";
}

// Resident memory by mapping: the executable, each library (by file name), [heap], malloc arenas
// (a rw part and a reserved part adding up to 64 MB), thread stacks (8 MB behind a 4 kB guard),
// other anonymous memory. Values in kB: rss, pss, private_dirty.
json mappingBreakdown(int pid, const std::string& exeName) {
  struct Map {
    std::string perms, name;
    uint64_t sizeKb = 0;
    std::map<std::string, double> kb;
  };
  std::vector<Map> maps;
  std::ifstream in(fs::path("/proc") / std::to_string(pid) / "smaps");
  std::string line;
  while (std::getline(in, line)) {
    auto dash = line.find('-');
    auto space = line.find(' ');
    bool header = dash != std::string::npos && space != std::string::npos && dash < space &&
                  line.find(':') > space;
    if (header) {
      std::istringstream ss(line);
      std::string range, perms, offset, dev, inode, name;
      ss >> range >> perms >> offset >> dev >> inode;
      std::getline(ss >> std::ws, name);
      uint64_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
      uint64_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
      maps.push_back({perms, name, (hi - lo) / 1024, {}});
      continue;
    }
    if (maps.empty()) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    if (key != "Rss" && key != "Pss" && key != "Private_Dirty") continue;
    maps.back().kb[key] += std::stod(line.substr(colon + 1));
  }
  std::map<std::string, std::map<std::string, double>> by;
  for (size_t i = 0; i < maps.size(); ++i) {
    const Map& m = maps[i];
    std::string what;
    if (!m.name.empty()) {
      what = fs::path(m.name).filename().string();
      if (what == exeName) what = "outpostd (executable)";
    } else if (m.perms == "rw-p" && m.sizeKb == 8192 && i > 0 && maps[i - 1].name.empty() &&
               maps[i - 1].perms == "---p" && maps[i - 1].sizeKb == 4) {
      what = "[thread stacks]";
    } else if (m.perms == "rw-p" && i + 1 < maps.size() && maps[i + 1].name.empty() &&
               maps[i + 1].perms == "---p" && m.sizeKb + maps[i + 1].sizeKb == 65536) {
      what = "[malloc arenas]";
    } else {
      what = "[other anonymous]";
    }
    for (const auto& [k, v] : m.kb) by[what][k] += v;
  }
  json out = json::array();
  for (const auto& [what, kb] : by) {
    auto get = [&](const char* k) {
      auto it = kb.find(k);
      return it == kb.end() ? 0.0 : it->second;
    };
    out.push_back({{"mapping", what},
                   {"rss_kb", get("Rss")},
                   {"pss_kb", get("Pss")},
                   {"private_dirty_kb", get("Private_Dirty")}});
  }
  std::sort(out.begin(), out.end(),
            [](const json& a, const json& b) { return a["rss_kb"] > b["rss_kb"]; });
  return out;
}

struct MemorySample {
  double rss = 0, pss = 0, privateDirty = 0, anonymous = 0;
  int threads = 0;
  json mappings;
  std::map<std::string, int> threadsByName;
};

MemorySample sampleMemory(int pid, const std::string& exeName) {
  fs::path proc = fs::path("/proc") / std::to_string(pid);
  auto rollup = procKb(proc / "smaps_rollup");
  auto status = procKb(proc / "status");
  MemorySample s;
  s.rss = rollup["Rss"];
  s.pss = rollup["Pss"];
  s.privateDirty = rollup["Private_Dirty"];
  s.anonymous = rollup["Anonymous"];
  s.threads = static_cast<int>(status["Threads"]);
  s.mappings = mappingBreakdown(pid, exeName);
  s.threadsByName = threadNames(pid);
  return s;
}

// ---- the cached objects
// ----------------------------------------------------------------------

// `sleep` as PID 1 has no SIGTERM handler: sandboxes are stopped with SIGKILL at cleanup anyway.
std::string podJson(const std::string& name) {
  return json{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", name}, {"namespace", "bench"}, {"uid", "uid-" + name}}},
              {"spec",
               {{"hostNetwork", true},
                {"terminationGracePeriodSeconds", 0},
                {"containers",
                 {{{"name", "c"},
                   {"image", test::ContainerdHarness::kBusybox},
                   {"imagePullPolicy", "IfNotPresent"},
                   {"command", {"/bin/sleep", "3600"}}}}}}}}
      .dump();
}

// Writes `n` desired pods into a fresh store at `dbPath` through metadb (as the link stores what
// the cloud sends), then closes it.
void writeCachedPods(const fs::path& dbPath, int n) {
  core::SystemClock clock;
  core::Bus bus;
  core::Logging logging{core::Logging::Options{core::LogLevel::kError, false, ""}};
  core::MetricsRegistry metrics;
  metadb::StoreOptions so;
  so.path = dbPath.string();
  auto opened = metadb::openSqliteStore(so, clock, bus, logging, metrics);
  if (!opened.isOk()) die("opening the store: " + opened.status().toString());
  auto store = std::move(opened).value();
  core::EventLoop loop("bench-store", clock);
  loop.start();
  std::mutex mu;
  std::optional<std::string> failed;
  constexpr int kBatch = 500;
  for (int first = 0; first < n; first += kBatch) {
    metadb::WriteBatch batch;
    for (int i = first; i < std::min(n, first + kBatch); ++i) {
      std::string name = "p" + std::to_string(i);
      batch.apply({metadb::ResourceChange::Kind::kUpsert, "bench/pod/" + name, "1", "uid-" + name,
                   podJson(name), "mqtt"});
    }
    store->write(std::move(batch), loop, [&](core::Result<metadb::WriteResult> r) {
      std::lock_guard lock(mu);
      if (!r.isOk()) failed = r.status().toString();
    });
  }
  store->flush();
  loop.runSync([] {});
  loop.stop();
  store.reset();
  if (failed) die("writing cached pods: " + *failed);
}

// ---- the cloud side: what the node publishes
// -------------------------------------------------

// Follows outpost/v1/nodes/<node>/#: whether the node is online and how many pods it reported
// Running (the latest status per pod).
class CloudWatcher {
 public:
  CloudWatcher(const std::string& uri, const std::string& node)
      : prefix_("outpost/v1/nodes/" + node + "/"), client_(uri, "bench-watch-" + node) {
    client_.set_message_callback([this](mqtt::const_message_ptr m) {
      std::lock_guard lock(mu_);
      std::string rest = m->get_topic().substr(prefix_.size());
      if (rest == "online") online_ = m->get_payload_str() == "true";
      if (rest.rfind("status/", 0) == 0 && rest.find("/pod/") != std::string::npos) {
        if (m->get_payload_str().find("Running") != std::string::npos) {
          running_.insert(rest);
        } else {
          running_.erase(rest);
        }
      }
    });
    auto opts = mqtt::connect_options_builder().clean_session(true).finalize();
    try {
      client_.connect(opts)->wait();
      client_.subscribe(prefix_ + "#", 1)->wait();
    } catch (const mqtt::exception& e) {
      die(std::string("watching the cloud broker: ") + e.what());
    }
  }
  ~CloudWatcher() {
    try {
      client_.disconnect()->wait();
    } catch (const mqtt::exception&) {
    }
  }
  // Forgets what was seen (the retained copies come back only on a new subscription).
  void reset() {
    std::lock_guard lock(mu_);
    online_ = false;
  }
  bool online() {
    std::lock_guard lock(mu_);
    return online_;
  }
  size_t running() {
    std::lock_guard lock(mu_);
    return running_.size();
  }

 private:
  std::string prefix_;
  mqtt::async_client client_;
  std::mutex mu_;
  bool online_ = false;
  std::set<std::string> running_;
};

// ---- outpostd
// ------------------------------------------------------------------------------------

// A datagram socket for sd_notify: the bench is outpostd's service manager.
class NotifySocket {
 public:
  explicit NotifySocket(const fs::path& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path.string().size() >= sizeof(addr.sun_path)) die("notify socket " + path_);
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      die("binding " + path_ + ": " + std::strerror(errno));
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
  }
  const std::string& path() const { return path_; }
  // Drains old datagrams.
  void clear() {
    char buf[4096];
    while (recv(fd_, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
  }
  // Waits for a datagram holding READY=1; returns when it came, or nothing after `timeout`.
  std::optional<SteadyClock::time_point> waitReady(std::chrono::milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    char buf[4096];
    while (SteadyClock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now())
              .count());
      if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
      ssize_t n = recv(fd_, buf, sizeof(buf) - 1, 0);
      auto at = SteadyClock::now();
      if (n <= 0) continue;
      std::string msg(buf, static_cast<size_t>(n));
      if (("\n" + msg + "\n").find("\nREADY=1\n") != std::string::npos) return at;
    }
    return std::nullopt;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

struct Setup {
  std::string cloudUri;
  std::string runtimeEndpoint;  // a socket nobody listens on for store-only runs
  std::string cgroupParent;
  std::string outpostd;
  fs::path work;  // scratch directory of this run
};

// One outpostd process with its own configuration; stopped with SIGTERM at the end.
class Outpostd {
 public:
  Outpostd(const Setup& s, const std::string& node, const fs::path& stateDir,
           const std::string& runtimeEndpoint, const NotifySocket& notify) {
    fs::path config = s.work / (node + ".yaml");
    std::ostringstream y;
    y << "node: {name: " << node << ", state_dir: " << stateDir.string() << "}\n"
      << "log: {level: warn}\n"
      << "cloud: {transport: mqtt, mqtt: {broker: '" << s.cloudUri << "'}}\n"
      << "device: {broker: '" << s.cloudUri << "'}\n"
      << "runtime: {endpoint: '" << runtimeEndpoint << "', sandbox_image: '"
      << test::ContainerdHarness::kPause << "'"
      << (s.cgroupParent.empty() ? "" : ", cgroup_parent: " + s.cgroupParent.substr(1)) << "}\n"
      << "api: {socket: " << (s.work / (node + ".sock")).string()
      << ", metrics_address: '127.0.0.1:0'}\n";
    test::writeFile(config, y.str());
    started_ = SteadyClock::now();
    child_ = std::make_unique<test::Child>(
        std::vector<std::string>{s.outpostd, "--config", config.string()},
        std::vector<std::string>{"NOTIFY_SOCKET=" + notify.path()});
  }
  ~Outpostd() { stop(); }
  int pid() const { return child_->pid(); }
  SteadyClock::time_point started() const { return started_; }
  bool running() { return child_->running(); }
  std::string log() const { return child_->err(); }
  void stop() {
    if (!child_ || stopped_) return;
    stopped_ = true;
    child_->signal(SIGTERM);
    if (child_->wait(20s) < 0) std::cerr << "bench: outpostd did not stop within 20 s\n";
  }

 private:
  std::unique_ptr<test::Child> child_;
  SteadyClock::time_point started_;
  bool stopped_ = false;
};

// ---- B1
// ------------------------------------------------------------------------------------------

struct B1Result {
  std::string label;
  int pods = 0;
  bool runtime = true;
  std::vector<double> rss, pss, privateDirty, anonymous, threads, upToIdleMs;
  MemorySample last;
};

B1Result runB1(const Setup& s, const Params& p, int pods, bool runtime, NotifySocket& notify) {
  B1Result r;
  r.pods = pods;
  r.runtime = runtime;
  r.label = std::to_string(pods) + (runtime ? " pods" : " cached pods, no runtime");
  std::string node = "fp-" + std::to_string(pods) + (runtime ? "-cri" : "-none");
  fs::path stateDir = s.work / node;
  writeCachedPods(stateDir / "outpost.db", pods);
  std::string exeName = fs::path(s.outpostd).filename().string();
  CloudWatcher cloud(s.cloudUri, node);
  for (int rep = 0; rep < p.reps; ++rep) {
    notify.clear();
    cloud.reset();
    Outpostd agent(s, node, stateDir,
                   runtime ? s.runtimeEndpoint : "unix://" + (s.work / "no-runtime.sock").string(),
                   notify);
    if (!notify.waitReady(60s)) die("outpostd did not report READY=1:\n" + agent.log());
    // Running pods: every status Running on the broker. Store-only: the link is up.
    bool idle = test::waitFor(
        [&] {
          return cloud.online() && (!runtime || cloud.running() >= static_cast<size_t>(pods));
        },
        std::chrono::milliseconds(60'000 + 1000 * pods));
    if (!idle) {
      die("outpostd did not get connected with " + std::to_string(pods) + " pods running (" +
          std::to_string(cloud.running()) + " running):\n" + agent.log());
    }
    double upMs = ms(SteadyClock::now() - agent.started());
    // Idle: nothing left to do; wait for the settle period without touching the agent.
    std::this_thread::sleep_for(std::chrono::seconds(p.settleSeconds));
    if (!agent.running()) die("outpostd exited:\n" + agent.log());
    MemorySample m = sampleMemory(agent.pid(), exeName);
    r.rss.push_back(m.rss / 1024);
    r.pss.push_back(m.pss / 1024);
    r.privateDirty.push_back(m.privateDirty / 1024);
    r.anonymous.push_back(m.anonymous / 1024);
    r.threads.push_back(m.threads);
    r.upToIdleMs.push_back(upMs);
    std::printf(
        "B1 %-32s rep %d: RSS %6.2f MB  PSS %6.2f MB  private dirty %5.2f MB  "
        "threads %2d  (connected%s after %.0f ms)\n",
        r.label.c_str(), rep + 1, m.rss / 1024, m.pss / 1024, m.privateDirty / 1024, m.threads,
        runtime ? ", all Running" : "", upMs);
    std::fflush(stdout);
    r.last = std::move(m);
    if (!p.inspect.empty()) {
      std::string cmd = p.inspect + " " + std::to_string(agent.pid());
      if (std::system(cmd.c_str()) != 0)
        std::cerr << "bench: --inspect command failed: " << cmd << "\n";
    }
  }
  return r;
}

// ---- B2
// ------------------------------------------------------------------------------------------

// The limit: open the store's file and read every row of the resources table (every column).
double readAllRows(const fs::path& db, int expected) {
  auto t0 = SteadyClock::now();
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    die("sqlite3_open_v2 " + db.string());
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(h,
                         "SELECT id, key, namespace, type, name, uid, version, object, origin, "
                         "updated_ms FROM resources",
                         -1, &st, nullptr) != SQLITE_OK)
    die(std::string("prepare: ") + sqlite3_errmsg(h));
  int rows = 0;
  size_t bytes = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    ++rows;
    for (int c = 0; c < sqlite3_column_count(st); ++c) {
      sqlite3_column_text(st, c);
      bytes += static_cast<size_t>(sqlite3_column_bytes(st, c));
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  double took = ms(SteadyClock::now() - t0);
  if (rows != expected || bytes == 0)
    die("read " + std::to_string(rows) + " rows, expected " + std::to_string(expected));
  return took;
}

}  // namespace

int run(int argc, char** argv) {
  Params p = parse(argc, argv);
  if (!fs::exists(p.outpostd)) die("no outpostd at " + p.outpostd);
  // A binary written moments ago has dirty page-cache pages, which smaps counts as Private_Dirty
  // of every mapping of them: write it back first.
  sync();
  test::TempDir work;
  test::Mosquitto broker;
  Setup s;
  s.cloudUri = broker.uri();
  s.outpostd = fs::canonical(p.outpostd).string();
  s.work = work.path();
  std::string runtimeVersion = "none";
  std::string why = p.containerd ? test::ContainerdHarness::unavailableReason() : "--no-containerd";
  if (why.empty()) {
    gHarness = std::make_unique<test::ContainerdHarness>();
    try {
      gHarness->start();
    } catch (const std::exception& e) {
      die(e.what());
    }
    s.runtimeEndpoint = gHarness->endpoint();
    s.cgroupParent = gHarness->cgroupParent();
    runtimeVersion = firstLine({"/usr/bin/containerd", "--version"});
  } else {
    std::cout << "containerd not used (" << why << "): B1 runs with cached pods only\n";
  }
  NotifySocket notify(work.path() / "notify.sock");

  utsname u{};
  uname(&u);
  std::string version = firstLine({s.outpostd, "--version"});
  std::string mosquittoVersion = firstLine({"/usr/sbin/mosquitto", "-h"});
  std::cout << "machine: " << sysconf(_SC_NPROCESSORS_ONLN) << " cores, " << cpuModel()
            << ", kernel " << u.release << "\n"
            << "versions: " << version << " (" << s.outpostd << "), " << mosquittoVersion
            << ", containerd: " << runtimeVersion << ", sqlite " << sqlite3_libversion()
            << ", compiler " << __VERSION__ << "\n"
            << "B1: " << p.reps << " outpostd processes per row, sampled after " << p.settleSeconds
            << " s idle; B2: " << p.objects << " cached pods, " << p.reps << " repetitions\n";
  std::cout.flush();

  json out;
  out["machine"] = {
      {"nproc", sysconf(_SC_NPROCESSORS_ONLN)}, {"cpu", cpuModel()}, {"kernel", u.release}};
  out["versions"] = {{"outpostd", version},
                     {"outpostd_path", s.outpostd},
                     {"mosquitto", mosquittoVersion},
                     {"containerd", runtimeVersion},
                     {"sqlite", sqlite3_libversion()},
                     {"compiler", __VERSION__}};
  out["params"] = {{"reps", p.reps},
                   {"settle_seconds", p.settleSeconds},
                   {"objects", p.objects},
                   {"pod_object_bytes", podJson("p0").size()}};

  // B1.
  std::string exeName = fs::path(s.outpostd).filename().string();
  std::vector<B1Result> b1;
  for (int n : p.pods) b1.push_back(runB1(s, p, n, gHarness != nullptr, notify));
  gHarness.reset();  // the pods' containers go with it
  for (int n : p.storeOnlyPods) b1.push_back(runB1(s, p, n, false, notify));

  // B2: fork() -> READY=1 with `objects` cached pods (no runtime listening), next to reading them.
  fs::path b2Dir = work.path() / "b2";
  writeCachedPods(b2Dir / "outpost.db", p.objects);
  std::vector<double> ready, readRows, readyEmpty;
  fs::path emptyDir = work.path() / "b2-empty";
  writeCachedPods(emptyDir / "outpost.db", 0);
  for (int rep = 0; rep < p.reps; ++rep) {
    for (bool empty : {false, true}) {
      notify.clear();
      Outpostd agent(s, empty ? "b2-empty" : "b2", empty ? emptyDir : b2Dir,
                     "unix://" + (work.path() / "no-runtime.sock").string(), notify);
      auto at = notify.waitReady(60s);
      if (!at) die("outpostd did not report READY=1:\n" + agent.log());
      (empty ? readyEmpty : ready).push_back(ms(*at - agent.started()));
    }
    readRows.push_back(readAllRows(b2Dir / "outpost.db", p.objects));
    std::printf(
        "B2 rep %d: READY after %.1f ms with %d cached pods (%.1f ms with none); "
        "opening the file and reading every row %.1f ms\n",
        rep + 1, ready.back(), p.objects, readyEmpty.back(), readRows.back());
    std::fflush(stdout);
  }

  // Tables.
  auto mm = [](const std::vector<double>& v, const char* fmt) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), fmt, median(v), *std::min_element(v.begin(), v.end()),
                  *std::max_element(v.begin(), v.end()));
    return std::string(buf);
  };
  std::cout << "\n| B1: outpostd connected, idle | RSS MB | PSS MB | private dirty MB | threads |\n"
            << "|---|---|---|---|---|\n";
  json b1Json = json::array();
  for (const auto& r : b1) {
    std::cout << "| " << r.label << " | " << mm(r.rss, "%.2f (%.2f-%.2f)") << " | "
              << mm(r.pss, "%.2f (%.2f-%.2f)") << " | " << mm(r.privateDirty, "%.2f (%.2f-%.2f)")
              << " | " << mm(r.threads, "%.0f (%.0f-%.0f)") << " |\n";
    json threads = json::object();
    json origins = json::object();
    for (const auto& [name, count] : r.last.threadsByName) {
      threads[name] = count;
      origins[threadOrigin(name, exeName)] = origins.value(threadOrigin(name, exeName), 0) + count;
    }
    b1Json.push_back({{"label", r.label},
                      {"pods", r.pods},
                      {"runtime", r.runtime},
                      {"rss_mb", summary(r.rss)},
                      {"pss_mb", summary(r.pss)},
                      {"private_dirty_mb", summary(r.privateDirty)},
                      {"anonymous_mb", summary(r.anonymous)},
                      {"threads", summary(r.threads)},
                      {"start_to_connected_idle_ms", summary(r.upToIdleMs)},
                      {"last_rep_mappings", r.last.mappings},
                      {"last_rep_threads_by_name", threads},
                      {"last_rep_threads_by_origin", origins}});
  }
  out["b1"] = b1Json;

  // Where the memory of the last row with running pods (else the last row) goes.
  const B1Result* shown = &b1.back();
  for (const auto& r : b1)
    if (r.runtime && r.pods > 0) shown = &r;
  std::cout << "\nWhere it goes (" << shown->label << ", last repetition), kB:\n"
            << "| mapping | RSS | PSS | private dirty |\n|---|---|---|---|\n";
  int row = 0;
  for (const auto& m : shown->last.mappings) {
    if (++row > 20) break;
    std::printf("| %s | %.0f | %.0f | %.0f |\n", m["mapping"].get<std::string>().c_str(),
                m["rss_kb"].get<double>(), m["pss_kb"].get<double>(),
                m["private_dirty_kb"].get<double>());
  }
  std::map<std::string, int> origins;
  for (const auto& [name, count] : shown->last.threadsByName)
    origins[threadOrigin(name, exeName)] += count;
  std::cout << "\nThreads by name:";
  for (const auto& [name, count] : shown->last.threadsByName)
    std::cout << " " << name << " x" << count;
  std::cout << "\nThreads by origin:";
  for (const auto& [origin, count] : origins) std::cout << " " << origin << ": " << count << ";";
  std::cout << "\n";

  double ratio = median(ready) / median(readRows);
  std::cout << "\n| B2: start to READY | ms median (min-max) |\n|---|---|\n"
            << "| outpostd, " << p.objects << " cached pods | " << mm(ready, "%.1f (%.1f-%.1f)")
            << " |\n"
            << "| outpostd, empty store | " << mm(readyEmpty, "%.1f (%.1f-%.1f)") << " |\n"
            << "| limit: open the file, read every row | " << mm(readRows, "%.1f (%.1f-%.1f)")
            << " |\n"
            << "ours / limit = " << ratio
            << "; target READY <= 100 ms: " << (median(ready) <= 100 ? "met" : "not met") << "\n";
  out["b2"] = {{"objects", p.objects},
               {"ready_ms", summary(ready)},
               {"ready_empty_store_ms", summary(readyEmpty)},
               {"limit_open_and_read_all_rows_ms", summary(readRows)},
               {"ratio_of_medians", ratio}};

  if (!p.out.empty()) {
    std::ofstream f(p.out);
    f << out.dump(2) << "\n";
    std::cout << "wrote " << p.out << "\n";
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const BenchFailure& e) {
    gHarness.reset();
    std::cerr << "bench: " << e.what() << "\n";
    return 1;
  }
}
