#pragma once
// Many hollow agents (docs/hollow-nodes.md) against one mosquitto, for the fleet test and the fleet
// bench: a broker with a listener for the nodes and one for the cloud, real `outpostd` processes
// each with its own state dir, socket and config, and an observer that follows what the fleet
// reports on the broker (acks, status, online flags).

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "support/test_util.h"

namespace outpost::test {

using FleetClock = std::chrono::steady_clock;

// Raises this process's open-file limit to its hard limit (children inherit it); returns the new
// soft limit.
long raiseFileLimit();

// A mosquitto with two listeners on loopback ports chosen free: `nodesUri()` for the agents and
// `cloudUri()` for the control plane and observers. `start(false)` opens only the cloud's, so the
// nodes see the broker down while the cloud can still publish to it (an outage of the nodes'
// uplink, or the broker seen from them). Logs connections and subscriptions, with timestamps in
// seconds, to `logPath()`; publishes $SYS every second. Dies with this process, however it ends.
class FleetBroker {
 public:
  explicit FleetBroker(const std::string& extraConfig = "");
  ~FleetBroker();
  FleetBroker(const FleetBroker&) = delete;
  FleetBroker& operator=(const FleetBroker&) = delete;

  std::string nodesUri() const;
  std::string cloudUri() const;
  int nodesPort() const { return nodesPort_; }
  std::filesystem::path logPath() const { return dir_ / "mosquitto.log"; }
  void start(bool nodesListener = true);
  void stop(int sig = SIGTERM);  // waits for it to end; retained messages persist (on SIGTERM)
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  TempDir dir_;
  std::string extra_;
  int nodesPort_ = 0, cloudPort_ = 0;
  pid_t pid_ = -1;  // a child that dies with this process (PR_SET_PDEATHSIG)
};

struct FleetOptions {
  std::string outpostd;                // the binary
  std::string broker;                  // cloud.mqtt.broker
  std::string group = "fleet";         // node.groups
  std::string namePrefix = "hollow-";  // node names: <prefix>0000, <prefix>0001, ...
  std::string endpoint = "hollow://?start_latency=200ms";
  std::string reconnectBase = "500ms";
  std::string reconnectCap = "5s";
  std::string heartbeat = "15s";
  std::string logLevel = "warn";
  std::vector<std::string> env;  // NAME=value for every agent (e.g. ASAN_OPTIONS)
  std::string extraConfig;       // YAML appended to every agent's configuration
  // More keys of agent i's `node:` map, as YAML flow entries (e.g. "labels: {zone: a}").
  std::function<std::string(size_t)> nodeFields;
};

// N `outpostd` processes, children of this process: each dies with it (PR_SET_PDEATHSIG), and the
// destructor kills and reaps those still running.
class HollowFleet {
 public:
  HollowFleet(std::filesystem::path baseDir, FleetOptions options);
  ~HollowFleet();
  HollowFleet(const HollowFleet&) = delete;
  HollowFleet& operator=(const HollowFleet&) = delete;

  // Starts agents until there are `n`, `batch` at a time, waiting after each batch until the
  // started ones answer on their socket (or `deadline` passes: then throws). `progress` is called
  // after each batch with the number running.
  void start(size_t n, size_t batch = 50, const std::function<void(size_t)>& progress = nullptr,
             std::chrono::seconds deadline = std::chrono::seconds(120));

  size_t size() const { return agents_.size(); }
  std::string name(size_t i) const;
  pid_t pid(size_t i) const { return agents_[i].pid; }
  std::filesystem::path config(size_t i) const { return agents_[i].dir / "outpost.yaml"; }
  std::filesystem::path socket(size_t i) const { return agents_[i].dir / "o.sock"; }
  std::string log(size_t i) const;  // stdout and stderr of the agent
  // Agents that have exited, with their exit code (128+signal when killed).
  std::map<size_t, int> exited();
  // SIGTERM to all, then waits up to `timeout` for all; returns each agent's exit code (-1: still
  // running, then killed).
  std::vector<int> stopAll(std::chrono::milliseconds timeout);

 private:
  struct Agent {
    std::filesystem::path dir;
    pid_t pid = -1;
    bool reaped = false;
    int code = -1;
  };
  void reap(Agent& a, bool block);
  std::filesystem::path base_;
  FleetOptions opts_;
  std::vector<Agent> agents_;
};

// One GET of the agent's local API over its unix socket; returns the body, empty on any failure.
std::string localApiGet(const std::filesystem::path& socket, const std::string& path,
                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Follows the fleet on the broker (clean session, cloud side): acks on nodes/+/up, status on
// nodes/+/status/#, online flags, and the desired objects of groups (to learn their msg_ids).
class FleetObserver {
 public:
  FleetObserver(const std::string& uri, const std::string& prefix = "outpost/v1");
  ~FleetObserver();
  FleetObserver(const FleetObserver&) = delete;
  FleetObserver& operator=(const FleetObserver&) = delete;

  // msg_id of the newest desired message seen on groups/<group>/desired/<key> (empty if none).
  std::string desiredMsgId(const std::string& group, const std::string& key) const;
  // When `node` acked `msgId` (first time), if it did.
  std::optional<FleetClock::time_point> ackedAt(const std::string& node,
                                                const std::string& msgId) const;
  size_t ackCount(const std::string& msgId) const;
  // The content of the newest status of `key` (<ns>/<type>/<name>) from `node`; null if none or
  // the retained status was cleared.
  nlohmann::json status(const std::string& node, const std::string& key) const;
  // When `node` first reported `key` with phase Running.
  std::optional<FleetClock::time_point> runningAt(const std::string& node,
                                                  const std::string& key) const;
  size_t runningCount(const std::string& key) const;
  // Nodes whose newest status of `key` has phase `phase`.
  size_t phaseCount(const std::string& key, const std::string& phase) const;
  // Nodes that reported a status of `key` (and did not clear it).
  size_t statusCount(const std::string& key) const;
  bool online(const std::string& node) const;
  size_t onlineCount() const;
  // When `node` last published `true` while this observer was subscribed (not a retained copy).
  std::optional<FleetClock::time_point> onlineAt(const std::string& node) const;
  // Connected, with its subscriptions in place since the last (re)connect: from here on it sees
  // what the nodes publish live (acks are not retained: those sent while it was away are lost).
  bool subscribed() const;
  size_t messages() const;
  // The most messages one node published (live, not retained copies) within one second of
  // arrival, since the last call.
  size_t takeMaxNodeRate();
  // The most messages all nodes together published within one second, since the last call.
  size_t takeMaxFleetRate();
  size_t bytes() const;  // of the PUBLISH packets received (topic, payload, ~8 bytes of header)

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A pod manifest with one container (YAML), with these annotations.
std::string podYaml(const std::string& name, const std::string& image,
                    const std::map<std::string, std::string>& annotations = {});

}  // namespace outpost::test
