#pragma once
// Configuration of outpostd: typed sections read from YAML, overridden from the environment,
// validated.

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::agent {

using Seconds =
    std::chrono::milliseconds;  // durations are kept in ms; YAML takes "15s", "500ms", "2m"

struct NodeConfig {
  std::string name;                           // required; the node's name in the cloud
  std::map<std::string, std::string> labels;  // reported with the node
  std::vector<std::string> groups;  // desired state addressed to a group reaches its nodes
  std::string stateDir = "/var/lib/outpost";  // the store and projected volumes live here
  // Absolute prefixes a pod's hostPath volume must be under; empty: any path (as Kubernetes).
  std::vector<std::string> hostPathAllow;
  // When updates and deletions of running pods annotated outpost.io/update-policy:
  // maintenance-window may happen, in node local time, e.g. "Mon-Sat 22:00-06:00", "Sun"
  // (docs/rollouts.md). Empty: no pod waits.
  std::vector<std::string> maintenanceWindows;
  // The node's InternalIP (an IP address); empty: the address towards the cloud, found at start.
  std::string address;
  // Held back from capacity in the node's allocatable: cpu, memory (Kubernetes quantities). The
  // default is what the kubelet's default hard eviction threshold (memory.available<100Mi) holds.
  std::map<std::string, std::string> reserved = {{"memory", "100Mi"}};
};

struct LogConfig {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
};

struct TlsConfig {
  std::string ca;    // CA bundle that signs the server's certificate
  std::string cert;  // client certificate (PEM)
  std::string key;   // client key (PEM)
};

struct MqttCloudConfig {
  std::string broker = "tcp://127.0.0.1:1883";  // tcp://, ssl://, ws:// or wss://
  std::string prefix = "outpost/v1";
  std::string encoding = "json";  // json or protobuf
  std::string username;
  std::string passwordFile;
};

struct WebsocketCloudConfig {
  std::string server;  // wss://host:10000
  std::string projectId = "e632aba927ea4ac2b575ec1603d56f10";
  std::string nodeNamespace = "default";
  std::string certServer;  // https://host:10002 for certificate bootstrap and rotation
  std::string tokenFile;   // bootstrap token, read once
  // host:port of CloudCore's stream tunnel (cloudstream, port 10004 by default): kubectl logs,
  // exec, attach and top reach the node through it. Empty: no tunnel.
  std::string streamServer;
};

struct CloudConfig {
  std::string transport = "mqtt";  // mqtt or websocket
  Seconds heartbeat = std::chrono::seconds(15);
  double rateLimitQps = 30;
  int rateLimitBurst = 60;
  Seconds reconnectBase = std::chrono::seconds(1);
  Seconds reconnectCap = std::chrono::seconds(60);
  // The largest message taken from the cloud: above etcd's 1.5 MiB object limit plus the envelope.
  int64_t maxMessageBytes = int64_t{2} << 20;
  TlsConfig tls;
  MqttCloudConfig mqtt;
  WebsocketCloudConfig websocket;
};

struct StoreConfig {
  int64_t outboxMaxRows = 100000;
  int64_t outboxMaxBytes = 64LL << 20;
  // 0: commit as soon as the writer is free; writes that arrive meanwhile share the next commit.
  Seconds commitWindow = std::chrono::milliseconds(0);
};

struct RuntimeConfig {
  bool enabled = true;  // false: no workloads on this node (device twins and the link only)
  std::string endpoint = "unix:///run/containerd/containerd.sock";
  std::string ns = "k8s.io";
  std::string sandboxImage = "registry.k8s.io/pause:3.8";
  std::string cgroupParent = "outpost";
  Seconds requestTimeout = std::chrono::seconds(10);
  Seconds resyncInterval = std::chrono::seconds(30);
  Seconds nodeStatusInterval = std::chrono::minutes(5);  // as the kubelet reports it
};

struct DeviceConfig {
  bool enabled = true;
  std::string broker = "tcp://127.0.0.1:1883";
  std::string username;
  std::string passwordFile;
  TlsConfig tls;
  // namespaced (<ns>/<name>, KubeEdge >= 1.17) or name (up to 1.16); empty: by cloud.transport,
  // name for websocket (CloudCore 1.15 reads one segment), namespaced for mqtt.
  std::string deviceIdForm;
  // Twin limits (docs/device-twin.md): past them a change is refused with a 400 naming the key.
  int64_t maxDevices = 1000;
  int64_t maxPropertiesPerDevice = 256;
  int64_t maxValueBytes = 512;
};

struct ApiConfig {
  std::string socket = "/run/outpost/outpost.sock";  // control endpoint for outpostctl
  // Health and metrics; empty turns it off. Not 10350: that is the kubelet port the node reports
  // (daemonEndpoints), which CloudCore's iptables rules send to the stream tunnel.
  std::string metricsAddress = "127.0.0.1:10351";
  std::string socketGroup;                           // group of the socket; empty: root only
  int64_t maxConnections = 64;                       // per listener (socket, metrics port)
  Seconds idleTimeout = std::chrono::seconds(60);    // a kept-alive connection with no request
  Seconds headerTimeout = std::chrono::seconds(10);  // to read one request
};

// The in-band agent upgrade (docs/operations.md, "In-band upgrade").
struct UpgradeConfig {
  // Ed25519 public keys whose signatures an upgrade package must carry (PEM, or base64 of the raw
  // 32 bytes). Empty: every AgentUpgrade is refused.
  std::vector<std::string> trustedKeys;
  // How long the new agent has to prove itself before the previous package is reinstalled.
  Seconds healthTimeout = std::chrono::seconds(120);
  int64_t maxPackageBytes = int64_t{256} << 20;
  std::string ca;  // CA bundle for https:// package URLs; empty: the system's
};

// The stream tunnel's limits (docs/kubeedge.md, "The stream tunnel").
struct StreamConfig {
  int64_t maxSessions = 16;                      // sessions at once; more are refused
  int64_t maxBytesPerSecond = int64_t{1} << 20;  // toward the cloud, per session
  Seconds idleTimeout = std::chrono::hours(4);   // a session with no byte either way is ended
};

struct Config {
  NodeConfig node;
  LogConfig log;
  CloudConfig cloud;
  StoreConfig store;
  RuntimeConfig runtime;
  DeviceConfig device;
  ApiConfig api;
  UpgradeConfig upgrade;
  StreamConfig stream;
};

// One problem in a configuration, with the key path it concerns ("cloud.transport").
struct ConfigError {
  std::string path;
  std::string message;
  std::string toString() const { return path + ": " + message; }
};

// Every problem found, not only the first.
struct ConfigErrors {
  std::vector<ConfigError> errors;
  std::string toString() const;
};

// The environment seen by the loader: OUTPOST_<SECTION>_<KEY>=value overrides a key.
using Environment = std::map<std::string, std::string>;
Environment processEnvironment();

// Reads YAML text; `source` names it in messages. Environment overrides apply after the file.
// On failure, every problem found is returned.
struct LoadResult {
  Config config;
  ConfigErrors errors;
  bool ok() const { return errors.errors.empty(); }
};
LoadResult loadConfig(const std::string& yamlText, const Environment& env);
// Reads `path` (a regular file of at most kMaxConfigBytes; anything else is refused at once, so
// /dev/zero or a FIFO cannot hang the loader), then as loadConfig().
LoadResult loadConfigFile(const std::string& path, const Environment& env);
inline constexpr size_t kMaxConfigBytes = 1 << 20;

// The environment variable that overrides a key path: "cloud.mqtt.broker" ->
// OUTPOST_CLOUD_MQTT_BROKER.
std::string envNameFor(const std::string& keyPath);
// What `outpostd --check-config` checks beyond the file: each client certificate (cloud.tls.cert,
// device.tls.cert) is within its validity at `now`, the error naming the file and its notAfter or
// notBefore. A certificate the agent renews itself (cloud.websocket.cert_server with a token) is
// not checked. At a normal start these are not errors: the node runs its pods offline, and the link
// says why it cannot connect.
ConfigErrors checkCertificateDates(const Config& c, std::chrono::system_clock::time_point now);

// Every key path the configuration knows, in file order (for docs and --help).
std::vector<std::string> configKeyPaths();

}  // namespace outpost::agent
