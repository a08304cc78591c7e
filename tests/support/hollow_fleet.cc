#include "support/hollow_fleet.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <utility>

#include "support/mosquitto.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace outpost::test {

long raiseFileLimit() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
  getrlimit(RLIMIT_NOFILE, &r);
  return static_cast<long>(r.rlim_cur);
}

// ---- the broker

namespace {
// Starts `argv` as a child that dies with this process (PR_SET_PDEATHSIG), its stdout and stderr
// appended to `logPath`, with `env` (NAME=value) added to its environment.
pid_t spawnDying(std::vector<std::string> argv, const std::string& logPath,
                 std::vector<std::string> env) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (auto& kv : env) putenv(kv.data());
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Waits up to `timeout` for `pid` to end; true when it was reaped.
bool reapWithin(pid_t pid, std::chrono::milliseconds timeout) {
  return waitFor([&] { return waitpid(pid, nullptr, WNOHANG) == pid; }, timeout);
}

bool canConnectTcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}
}  // namespace

FleetBroker::FleetBroker(const std::string& extraConfig) : extra_(extraConfig) {
  nodesPort_ = freePort();
  do {
    cloudPort_ = freePort();
  } while (cloudPort_ == nodesPort_);
  start(true);
}

FleetBroker::~FleetBroker() { stop(SIGKILL); }

std::string FleetBroker::nodesUri() const {
  return "tcp://127.0.0.1:" + std::to_string(nodesPort_);
}
std::string FleetBroker::cloudUri() const {
  return "tcp://127.0.0.1:" + std::to_string(cloudPort_);
}

void FleetBroker::start(bool nodesListener) {
  if (pid_ > 0) return;
  // per_listener_settings false (the default): one set of settings for every listener.
  std::string conf = extra_ + "persistence true\npersistence_location " + dir_.path().string() +
                     "/\nuser root\nallow_anonymous true\nset_tcp_nodelay true\n" +
                     "max_connections -1\nmax_queued_messages 1000000\nsys_interval 1\n" +
                     "log_dest file " + logPath().string() + "\n" +
                     "log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n" +
                     "log_timestamp true\nconnection_messages true\n" + "listener " +
                     std::to_string(cloudPort_) + " 127.0.0.1\n";
  if (nodesListener) conf += "listener " + std::to_string(nodesPort_) + " 127.0.0.1\n";
  writeFile(dir_ / "mosquitto.conf", conf);
  pid_t pid = spawnDying({"/usr/sbin/mosquitto", "-c", (dir_ / "mosquitto.conf").string()},
                         (dir_ / "mosquitto.out").string(), {});
  bool exited = false;
  bool up = waitFor(
      [&] {
        exited = waitpid(pid, nullptr, WNOHANG) == pid;
        return exited ||
               (canConnectTcp(cloudPort_) && (!nodesListener || canConnectTcp(nodesPort_)));
      },
      std::chrono::seconds(20));
  if (!up || exited) {
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    throw std::runtime_error("mosquitto did not start: " + readFile(dir_ / "mosquitto.out") +
                             readFile(logPath()));
  }
  pid_ = pid;
}

void FleetBroker::stop(int sig) {
  if (pid_ <= 0) return;
  kill(pid_, sig);
  if (!reapWithin(pid_, std::chrono::seconds(30))) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_ = -1;
}

// ---- the agents

HollowFleet::HollowFleet(fs::path baseDir, FleetOptions options)
    : base_(std::move(baseDir)), opts_(std::move(options)) {}

HollowFleet::~HollowFleet() {
  for (auto& a : agents_) {
    if (!a.reaped && a.pid > 0) kill(a.pid, SIGKILL);
  }
  for (auto& a : agents_) reap(a, true);
}

std::string HollowFleet::name(size_t i) const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04zu", i);
  return opts_.namePrefix + buf;
}

std::string HollowFleet::log(size_t i) const { return readFile(agents_[i].dir / "agent.log"); }

void HollowFleet::reap(Agent& a, bool block) {
  if (a.reaped || a.pid <= 0) return;
  int status = 0;
  if (waitpid(a.pid, &status, block ? 0 : WNOHANG) == a.pid) {
    a.reaped = true;
    a.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

void HollowFleet::start(size_t n, size_t batch, const std::function<void(size_t)>& progress,
                        std::chrono::seconds deadline) {
  while (agents_.size() < n) {
    size_t first = agents_.size();
    size_t last = std::min(n, first + batch);
    for (size_t i = first; i < last; ++i) {
      Agent a;
      a.dir = base_ / name(i);
      fs::create_directories(a.dir);
      writeFile(
          a.dir / "outpost.yaml",
          "node: {name: " + name(i) + ", state_dir: " + (a.dir / "state").string() + ", groups: [" +
              opts_.group + "]" + (opts_.nodeFields ? ", " + opts_.nodeFields(i) : std::string()) +
              "}\n" + "log: {level: " + opts_.logLevel + "}\n" + "runtime: {endpoint: \"" +
              opts_.endpoint + "\"}\n" + "device: {enabled: false}\n" +
              "cloud: {heartbeat: " + opts_.heartbeat + ", mqtt: {broker: \"" + opts_.broker +
              "\"}, reconnect: {base: " + opts_.reconnectBase + ", cap: " + opts_.reconnectCap +
              "}}\n" + "api: {socket: " + (a.dir / "o.sock").string() +
              ", metrics_address: \"\"}\n" + opts_.extraConfig);
      std::string config = (a.dir / "outpost.yaml").string();
      a.pid = spawnDying({opts_.outpostd, "--config", config}, (a.dir / "agent.log").string(),
                         opts_.env);
      agents_.push_back(std::move(a));
    }
    // The batch answers on its sockets before the next starts (start-up is the CPU-heavy part).
    bool ready = waitFor(
        [&] {
          for (size_t i = first; i < last; ++i) {
            reap(agents_[i], false);
            if (agents_[i].reaped) return true;
            if (localApiGet(socket(i), "/healthz", std::chrono::seconds(2)).empty()) return false;
          }
          return true;
        },
        deadline);
    for (size_t i = first; i < last; ++i) {
      if (agents_[i].reaped) {
        throw std::runtime_error(name(i) + " exited with " + std::to_string(agents_[i].code) +
                                 ":\n" + log(i));
      }
    }
    if (!ready) throw std::runtime_error("agents " + name(first) + ".. did not answer in time");
    if (progress) progress(agents_.size());
  }
}

std::map<size_t, int> HollowFleet::exited() {
  std::map<size_t, int> out;
  for (size_t i = 0; i < agents_.size(); ++i) {
    reap(agents_[i], false);
    if (agents_[i].reaped) out[i] = agents_[i].code;
  }
  return out;
}

std::vector<int> HollowFleet::stopAll(std::chrono::milliseconds timeout) {
  for (auto& a : agents_) {
    if (!a.reaped && a.pid > 0) kill(a.pid, SIGTERM);
  }
  waitFor(
      [&] {
        bool all = true;
        for (auto& a : agents_) {
          reap(a, false);
          all = all && a.reaped;
        }
        return all;
      },
      timeout);
  std::vector<int> codes;
  for (auto& a : agents_) {
    if (!a.reaped) {
      kill(a.pid, SIGKILL);
      reap(a, true);
      codes.push_back(-1);
    } else {
      codes.push_back(a.code);
    }
  }
  return codes;
}

std::string localApiGet(const fs::path& socketPath, const std::string& path,
                        std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string p = socketPath.string();
  if (p.size() >= sizeof addr.sun_path) {
    ::close(fd);
    return {};
  }
  std::copy(p.begin(), p.end(), addr.sun_path);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return {};
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return {};
  }
  std::string resp;
  auto end = FleetClock::now() + timeout;
  char buf[16384];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - FleetClock::now());
    if (left.count() <= 0) {
      ::close(fd);
      return {};
    }
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t got = ::recv(fd, buf, sizeof buf, 0);
    if (got <= 0) break;
    resp.append(buf, static_cast<size_t>(got));
  }
  ::close(fd);
  if (resp.rfind("HTTP/1.1 200", 0) != 0) return {};
  size_t body = resp.find("\r\n\r\n");
  if (body == std::string::npos) return {};
  // Connection: close, so the body is everything after the header (no chunking expected; a
  // chunked answer is decoded below).
  std::string head = resp.substr(0, body);
  std::string rest = resp.substr(body + 4);
  if (head.find("chunked") == std::string::npos) return rest;
  std::string out;
  size_t pos = 0;
  while (pos < rest.size()) {
    size_t eol = rest.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t len = std::stoul(rest.substr(pos, eol - pos), nullptr, 16);
    if (len == 0) break;
    out += rest.substr(eol + 2, len);
    pos = eol + 2 + len + 2;
  }
  return out;
}

// ---- the observer

namespace {
// "<prefix>/nodes/<node>/<rest>" -> node and rest.
bool splitNodeTopic(const std::string& topic, const std::string& nodesStem, std::string& node,
                    std::string& rest) {
  if (topic.rfind(nodesStem, 0) != 0) return false;
  size_t slash = topic.find('/', nodesStem.size());
  if (slash == std::string::npos) return false;
  node = topic.substr(nodesStem.size(), slash - nodesStem.size());
  rest = topic.substr(slash + 1);
  return true;
}

json contentOf(const json& env) {
  if (!env.is_object() || !env.contains("content")) return json();
  const json& c = env["content"];
  return c.is_string() ? json::parse(c.get<std::string>(), nullptr, false) : c;
}
}  // namespace

class FleetObserver::Impl {
 public:
  Impl(const std::string& uri, const std::string& prefix)
      : client(uri, "fleet-observer-" + std::to_string(getpid()) + "-" + std::to_string(counter++),
               static_cast<mqtt::iclient_persistence*>(nullptr)),
        nodesStem(prefix + "/nodes/"),
        groupsStem(prefix + "/groups/") {}

  void onMessage(const std::string& topic, const std::string& payload, bool retained) {
    auto now = FleetClock::now();
    std::string node, rest;
    std::lock_guard l(mu);
    ++count;
    // PUBLISH as sent by the broker at QoS 1: fixed header (~4), topic length (2), packet id (2).
    bytes += topic.size() + payload.size() + 8;
    if (topic.rfind(groupsStem, 0) == 0) {
      // groups/<group>/desired/<key>
      std::string tail = topic.substr(groupsStem.size());
      size_t d = tail.find("/desired/");
      if (d == std::string::npos || payload.empty()) return;
      json env = json::parse(payload, nullptr, false);
      if (env.is_object() && env.contains("header")) {
        desired[tail.substr(0, d) + "|" + tail.substr(d + 9)] = env["header"].value("msg_id", "");
      }
      return;
    }
    if (!splitNodeTopic(topic, nodesStem, node, rest)) return;
    if (!retained) {
      // Messages a node published, per second of arrival.
      auto& r = rates[node];
      long second =
          std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
      if (r.second != second) r = {second, 0};
      maxRate = std::max(maxRate, ++r.count);
      if (all.second != second) all = {second, 0};
      maxAllRate = std::max(maxAllRate, ++all.count);
    }
    if (rest == "online") {
      bool on = payload == "true";
      onlineFlag[node] = on;
      if (on && !retained) onlineSince[node] = now;
    } else if (rest == "up") {
      json env = json::parse(payload, nullptr, false);
      if (!env.is_object()) return;
      std::vector<std::string> ids;
      if (env.contains("header") && env["header"].contains("parent_msg_id")) {
        ids.push_back(env["header"]["parent_msg_id"].get<std::string>());
      } else if (env.contains("route") && env["route"].value("resource", "") == "acks") {
        json c = contentOf(env);
        if (c.is_array()) {
          for (const auto& id : c) {
            if (id.is_string()) ids.push_back(id.get<std::string>());
          }
        }
      }
      for (auto& id : ids) acks[id].emplace(node, now);
    } else if (rest.rfind("status/", 0) == 0) {
      std::string key = rest.substr(7);
      auto& byNode = statuses[key];
      if (payload.empty()) {
        byNode.erase(node);
        return;
      }
      json c = contentOf(json::parse(payload, nullptr, false));
      if (c.is_object() && c.value("phase", "") == "Running") running[key].emplace(node, now);
      byNode[node] = std::move(c);
    }
  }

  static inline std::atomic<int> counter{0};
  std::atomic<bool> connectedOnce{false};
  mqtt::token_ptr subscription;  // the newest SUBSCRIBE's token (under mu)
  mqtt::async_client client;
  std::string nodesStem, groupsStem;
  mutable std::mutex mu;
  size_t count = 0;
  size_t bytes = 0;
  struct Rate {
    long second = 0;
    size_t count = 0;
  };
  std::unordered_map<std::string, Rate> rates;
  Rate all;
  size_t maxRate = 0, maxAllRate = 0;
  std::unordered_map<std::string, std::string> desired;  // "<group>|<key>" -> msg_id
  std::unordered_map<std::string, std::unordered_map<std::string, FleetClock::time_point>> acks;
  std::unordered_map<std::string, std::unordered_map<std::string, json>> statuses;  // key, node
  std::unordered_map<std::string, std::unordered_map<std::string, FleetClock::time_point>> running;
  std::unordered_map<std::string, bool> onlineFlag;
  std::unordered_map<std::string, FleetClock::time_point> onlineSince;
};

FleetObserver::FleetObserver(const std::string& uri, const std::string& prefix)
    : impl_(std::make_unique<Impl>(uri, prefix)) {
  impl_->client.set_message_callback([this](mqtt::const_message_ptr m) {
    impl_->onMessage(m->get_topic(), m->get_payload_str(), m->is_retained());
  });
  auto opts = mqtt::connect_options_builder()
                  .clean_session(true)
                  .keep_alive_interval(std::chrono::seconds(30))
                  .automatic_reconnect(std::chrono::milliseconds(200), std::chrono::seconds(1))
                  .finalize();
  std::vector<std::string> filters = {prefix + "/nodes/+/up", prefix + "/nodes/+/status/#",
                                      prefix + "/nodes/+/online", prefix + "/groups/+/desired/#"};
  auto subscribe = [this, filters] {
    return impl_->client.subscribe(mqtt::string_collection::create(filters),
                                   std::vector<int>(filters.size(), 1));
  };
  impl_->client.connect(opts)->wait();
  auto first = subscribe();
  first->wait();
  {
    std::lock_guard l(impl_->mu);
    impl_->subscription = first;
  }
  // A clean session loses its subscriptions with the connection: subscribe again after an
  // automatic reconnect (a broker restart), without waiting inside Paho's callback. What nodes
  // publish live (acks) meanwhile is not seen: subscribed() says when the observer sees again.
  impl_->client.set_connected_handler([this, subscribe](const std::string&) {
    if (!impl_->connectedOnce.exchange(true)) return;
    auto tok = subscribe();
    std::lock_guard l(impl_->mu);
    impl_->subscription = tok;
  });
  impl_->connectedOnce = true;
}

bool FleetObserver::subscribed() const {
  mqtt::token_ptr tok;
  {
    std::lock_guard l(impl_->mu);
    tok = impl_->subscription;
  }
  return impl_->client.is_connected() && tok && tok->is_complete() && tok->get_return_code() == 0;
}

FleetObserver::~FleetObserver() {
  try {
    impl_->client.disconnect()->wait_for(std::chrono::seconds(2));
  } catch (const std::exception&) {
  }
}

std::string FleetObserver::desiredMsgId(const std::string& group, const std::string& key) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->desired.find(group + "|" + key);
  return it == impl_->desired.end() ? std::string() : it->second;
}

std::optional<FleetClock::time_point> FleetObserver::ackedAt(const std::string& node,
                                                             const std::string& msgId) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->acks.find(msgId);
  if (it == impl_->acks.end()) return std::nullopt;
  auto n = it->second.find(node);
  if (n == it->second.end()) return std::nullopt;
  return n->second;
}

size_t FleetObserver::ackCount(const std::string& msgId) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->acks.find(msgId);
  return it == impl_->acks.end() ? 0 : it->second.size();
}

json FleetObserver::status(const std::string& node, const std::string& key) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->statuses.find(key);
  if (it == impl_->statuses.end()) return json();
  auto n = it->second.find(node);
  return n == it->second.end() ? json() : n->second;
}

std::optional<FleetClock::time_point> FleetObserver::runningAt(const std::string& node,
                                                               const std::string& key) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->running.find(key);
  if (it == impl_->running.end()) return std::nullopt;
  auto n = it->second.find(node);
  if (n == it->second.end()) return std::nullopt;
  return n->second;
}

size_t FleetObserver::runningCount(const std::string& key) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->running.find(key);
  return it == impl_->running.end() ? 0 : it->second.size();
}

size_t FleetObserver::phaseCount(const std::string& key, const std::string& phase) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->statuses.find(key);
  if (it == impl_->statuses.end()) return 0;
  size_t n = 0;
  for (const auto& [node, st] : it->second) {
    if (st.is_object() && st.value("phase", "") == phase) ++n;
  }
  return n;
}

size_t FleetObserver::statusCount(const std::string& key) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->statuses.find(key);
  return it == impl_->statuses.end() ? 0 : it->second.size();
}

bool FleetObserver::online(const std::string& node) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->onlineFlag.find(node);
  return it != impl_->onlineFlag.end() && it->second;
}

size_t FleetObserver::onlineCount() const {
  std::lock_guard l(impl_->mu);
  size_t n = 0;
  for (const auto& [node, on] : impl_->onlineFlag) n += on ? 1 : 0;
  return n;
}

std::optional<FleetClock::time_point> FleetObserver::onlineAt(const std::string& node) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->onlineSince.find(node);
  if (it == impl_->onlineSince.end()) return std::nullopt;
  return it->second;
}

size_t FleetObserver::messages() const {
  std::lock_guard l(impl_->mu);
  return impl_->count;
}

size_t FleetObserver::takeMaxNodeRate() {
  std::lock_guard l(impl_->mu);
  return std::exchange(impl_->maxRate, 0);
}

size_t FleetObserver::takeMaxFleetRate() {
  std::lock_guard l(impl_->mu);
  return std::exchange(impl_->maxAllRate, 0);
}

size_t FleetObserver::bytes() const {
  std::lock_guard l(impl_->mu);
  return impl_->bytes;
}

std::string podYaml(const std::string& name, const std::string& image,
                    const std::map<std::string, std::string>& annotations) {
  std::string notes;
  for (const auto& [k, v] : annotations) notes += (notes.empty() ? "" : ", ") + k + ": " + v;
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name +
         (notes.empty() ? "" : ", annotations: {" + notes + "}") +
         "}\nspec:\n  containers: [{name: main, image: \"" + image + "\"}]\n";
}

}  // namespace outpost::test
