#include "outpost/agent/config.h"

#include <doctest/doctest.h>

#include "support/test_util.h"

using namespace outpost::agent;
using namespace std::chrono_literals;

namespace {
bool hasError(const LoadResult& r, const std::string& path, const std::string& fragment = "") {
  for (const auto& e : r.errors.errors) {
    if (e.path == path && e.message.find(fragment) != std::string::npos) return true;
  }
  return false;
}
}  // namespace

TEST_CASE("a valid file fills every section, and keys left out keep their defaults") {
  auto r = loadConfig(R"(
node:
  name: store-17
  labels: {site: berlin, floor: "2"}
  groups: [stores-eu, tills]
  state_dir: /srv/outpost
log: {level: debug}
cloud:
  transport: websocket
  heartbeat: 20s
  rate_limit: {qps: 10, burst: 5}
  reconnect: {base: 500ms, cap: 2m}
  websocket: {server: "wss://cloud.example:10000", node_namespace: edge}
store: {outbox_max_rows: 500}
runtime: {endpoint: "unix:///run/containerd/containerd.sock", cgroup_parent: sites}
device: {broker: "ssl://127.0.0.1:8883", device_id_form: name}
api: {socket: /run/o.sock, metrics_address: ""}
)",
                      {});
  INFO(r.errors.toString());
  REQUIRE(r.ok());
  const Config& c = r.config;
  CHECK(c.node.name == "store-17");
  CHECK(c.node.labels.at("floor") == "2");
  CHECK(c.node.groups == std::vector<std::string>{"stores-eu", "tills"});
  CHECK(c.node.stateDir == "/srv/outpost");
  CHECK(c.log.level == "debug");
  CHECK(c.cloud.transport == "websocket");
  CHECK(c.cloud.heartbeat == 20s);
  CHECK(c.cloud.rateLimitQps == 10);
  CHECK(c.cloud.rateLimitBurst == 5);
  CHECK(c.cloud.reconnectBase == 500ms);
  CHECK(c.cloud.reconnectCap == 120s);
  CHECK(c.cloud.websocket.nodeNamespace == "edge");
  CHECK(c.cloud.websocket.projectId == "e632aba927ea4ac2b575ec1603d56f10");  // default kept
  CHECK(c.store.outboxMaxRows == 500);
  CHECK(c.runtime.cgroupParent == "sites");
  CHECK(c.runtime.ns == "k8s.io");
  CHECK(c.device.deviceIdForm == "name");
  CHECK(c.api.metricsAddress.empty());
}

TEST_CASE("every problem is reported at once, each with its key path") {
  auto r = loadConfig(R"(
node: {name: Store_17, colour: red}
cloud:
  transport: pigeon
  heartbeat: soon
  rate_limit: {qps: 0, burst: many}
  reconnect: {base: 10s, cap: 1s}
  mqtt: {broker: "http://x", encoding: xml}
  tls: {cert: /does/not/exist}
runtime: {endpoint: "tcp://1.2.3.4:1"}
device: {device_id_form: uuid}
api: {socket: relative.sock, metrics_address: "nowhere"}
log: {level: loud}
)",
                      {});
  CHECK_FALSE(r.ok());
  CHECK(hasError(r, "node.name", "lowercase DNS name"));
  CHECK(hasError(r, "node.colour", "unknown key"));
  CHECK(hasError(r, "cloud.transport", "must be one of mqtt, websocket"));
  CHECK(hasError(r, "cloud.heartbeat", "duration"));
  CHECK(hasError(r, "cloud.rate_limit.qps", "greater than zero"));
  CHECK(hasError(r, "cloud.rate_limit.burst", "number"));
  CHECK(hasError(r, "cloud.reconnect.cap", "not be smaller"));
  CHECK(hasError(r, "cloud.mqtt.encoding", "json, protobuf"));
  CHECK(hasError(r, "cloud.tls.cert", "cannot read file"));
  CHECK(hasError(r, "cloud.tls.key", "together"));
  CHECK(hasError(r, "runtime.endpoint", "unix://"));
  CHECK(hasError(r, "device.device_id_form"));
  CHECK(hasError(r, "api.socket", "absolute"));
  CHECK(hasError(r, "api.metrics_address", "host:port"));
  CHECK(hasError(r, "log.level"));
  CHECK(r.errors.errors.size() == 15);
  CHECK(r.errors.toString().find("cloud.transport: must be one of mqtt, websocket\n") !=
        std::string::npos);
}

TEST_CASE("a missing node name, a wrong shape and broken YAML are reported clearly") {
  CHECK(hasError(loadConfig("log: {level: info}\n", {}), "node.name", "required"));
  CHECK(hasError(loadConfig("node: [a, b]\n", {}), "node", "section"));
  CHECK(hasError(loadConfig("node: {name: a, groups: {x: 1}}\n", {}), "node.groups", "list"));
  auto broken = loadConfig("node: {name: a\n", {});
  REQUIRE(broken.errors.errors.size() == 1);
  CHECK(broken.errors.errors[0].path == "(yaml)");
  CHECK(broken.errors.errors[0].message.find("line") != std::string::npos);
  CHECK(hasError(loadConfigFile("/no/such/outpost.yaml", {}), "(file)", "cannot read"));
}

TEST_CASE("OUTPOST_<SECTION>_<KEY> overrides the file, and a bad override names its variable") {
  Environment env{{"OUTPOST_NODE_NAME", "from-env"},
                  {"OUTPOST_CLOUD_MQTT_BROKER", "ssl://broker:8883"},
                  {"OUTPOST_NODE_GROUPS", "a, b"},
                  {"OUTPOST_NODE_LABELS", "site=x,rack=4"},
                  {"OUTPOST_CLOUD_HEARTBEAT", "30s"}};
  auto r = loadConfig("node: {name: from-file}\n", env);
  INFO(r.errors.toString());
  REQUIRE(r.ok());
  CHECK(r.config.node.name == "from-env");
  CHECK(r.config.cloud.mqtt.broker == "ssl://broker:8883");
  CHECK(r.config.node.groups == std::vector<std::string>{"a", "b"});
  CHECK(r.config.node.labels.at("rack") == "4");
  CHECK(r.config.cloud.heartbeat == 30s);

  auto bad = loadConfig("node: {name: n}\n", {{"OUTPOST_CLOUD_TRANSPORT", "pigeon"},
                                              {"OUTPOST_CLOUD_RATE_LIMIT_BURST", "lots"},
                                              {"OUTPOST_CLOUD_TRANSPROT", "mqtt"}});
  CHECK(hasError(bad, "cloud.transport", "must be one of"));
  CHECK(hasError(bad, "cloud.rate_limit.burst (from OUTPOST_CLOUD_RATE_LIMIT_BURST)", "number"));
  CHECK(hasError(bad, "OUTPOST_CLOUD_TRANSPROT", "not a configuration key"));
}

TEST_CASE("node.host_path_allow takes absolute prefixes, from the file or the environment") {
  auto r = loadConfig("node: {name: n, host_path_allow: [/srv/data, /var/log/app]}\n", {});
  INFO(r.errors.toString());
  REQUIRE(r.ok());
  CHECK(r.config.node.hostPathAllow == std::vector<std::string>{"/srv/data", "/var/log/app"});
  auto env = loadConfig("node: {name: n}\n", {{"OUTPOST_NODE_HOST_PATH_ALLOW", "/a, /b"}});
  CHECK(env.config.node.hostPathAllow == std::vector<std::string>{"/a", "/b"});
  CHECK(loadConfig("node: {name: n}\n", {}).config.node.hostPathAllow.empty());
  for (const char* bad : {"relative", "/srv/../etc", "/srv/.."}) {
    CAPTURE(bad);
    CHECK(hasError(
        loadConfig(std::string("node: {name: n, host_path_allow: [\"") + bad + "\"]}\n", {}),
        "node.host_path_allow", "absolute path"));
  }
}

TEST_CASE("node.maintenance_windows are checked; a bad entry is named with what is wrong") {
  auto r = loadConfig("node: {name: n, maintenance_windows: [\"Mon-Sat 22:00-06:00\", Sun]}\n", {});
  INFO(r.errors.toString());
  REQUIRE(r.ok());
  CHECK(r.config.node.maintenanceWindows == std::vector<std::string>{"Mon-Sat 22:00-06:00", "Sun"});
  CHECK(loadConfig("node: {name: n}\n", {}).config.node.maintenanceWindows.empty());
  auto env = loadConfig("node: {name: n}\n",
                        {{"OUTPOST_NODE_MAINTENANCE_WINDOWS", "Mon,Wed 01:00-03:00; Sun"}});
  CHECK(env.config.node.maintenanceWindows ==
        std::vector<std::string>{"Mon,Wed 01:00-03:00", "Sun"});
  auto bad =
      loadConfig("node: {name: n, maintenance_windows: [Sun, \"Mon-Sta 22:00-06:00\"]}\n", {});
  CHECK(hasError(bad, "node.maintenance_windows[1]", "\"Mon-Sta 22:00-06:00\""));
  CHECK(hasError(bad, "node.maintenance_windows[1]", "\"Mon-Sta\" is not a day"));
  CHECK(hasError(loadConfig("node: {name: n, maintenance_windows: [\"Sun 25:00-01:00\"]}\n", {}),
                 "node.maintenance_windows[0]", "is not a time range HH:MM-HH:MM"));
}

TEST_CASE("node.address is an IP address and node.reserved holds cpu and memory quantities") {
  auto r =
      loadConfig("node: {name: n, address: 192.0.2.7, reserved: {cpu: 100m, memory: 256Mi}}\n", {});
  INFO(r.errors.toString());
  REQUIRE(r.ok());
  CHECK(r.config.node.address == "192.0.2.7");
  CHECK(r.config.node.reserved ==
        std::map<std::string, std::string>{{"cpu", "100m"}, {"memory", "256Mi"}});
  // By default: no address (found at start) and the kubelet's 100Mi of memory held back.
  auto d = loadConfig("node: {name: n}\n", {});
  CHECK(d.config.node.address.empty());
  CHECK(d.config.node.reserved == std::map<std::string, std::string>{{"memory", "100Mi"}});
  CHECK(loadConfig("node: {name: n, address: \"fd00::7\"}\n", {}).ok());
  CHECK(hasError(loadConfig("node: {name: n, address: edge.example.com}\n", {}), "node.address",
                 "must be an IP address, got \"edge.example.com\""));
  CHECK(hasError(loadConfig("node: {name: n, reserved: {cpu: lots}}\n", {}), "node.reserved",
                 "cpu: \"lots\" is not a CPU quantity"));
  CHECK(hasError(loadConfig("node: {name: n, reserved: {memory: -1Gi}}\n", {}), "node.reserved",
                 "memory: \"-1Gi\" is not a memory quantity"));
  CHECK(hasError(loadConfig("node: {name: n, reserved: {gpu: \"1\"}}\n", {}), "node.reserved",
                 "\"gpu\" cannot be reserved (cpu and memory can)"));
  auto env = loadConfig("node: {name: n}\n", {{"OUTPOST_NODE_RESERVED", "cpu=1"}});
  CHECK(env.config.node.reserved == std::map<std::string, std::string>{{"cpu", "1"}});
}

TEST_CASE("environment names are derived from key paths") {
  CHECK(envNameFor("cloud.mqtt.broker") == "OUTPOST_CLOUD_MQTT_BROKER");
  CHECK(envNameFor("node.state_dir") == "OUTPOST_NODE_STATE_DIR");
  auto keys = configKeyPaths();
  CHECK(std::find(keys.begin(), keys.end(), "runtime.sandbox_image") != keys.end());
}

TEST_CASE("the example configurations shipped in examples/ are valid") {
  const char* dir = std::getenv("OUTPOST_EXAMPLES_DIR");
  REQUIRE(dir != nullptr);
  auto r = loadConfigFile(std::string(dir) + "/outpost.yaml", {});
  INFO(r.errors.toString());
  CHECK(r.ok());
}

TEST_CASE("with a certificate service the client certificate files default under state_dir") {
  const char* yaml = R"(
node: {name: edge-1, state_dir: /srv/outpost}
cloud:
  transport: websocket
  websocket: {server: "wss://cloud.example:10000", cert_server: "https://cloud.example:10002"}
)";
  auto r = loadConfig(yaml, {});
  INFO(r.errors.toString());
  REQUIRE(r.ok());  // the files do not exist yet: the agent bootstraps them
  CHECK(r.config.cloud.tls.ca == "/srv/outpost/certs/ca.crt");
  CHECK(r.config.cloud.tls.cert == "/srv/outpost/certs/edge.crt");
  CHECK(r.config.cloud.tls.key == "/srv/outpost/certs/edge.key");

  // Without a certificate service the operator's files must be there.
  auto mqtt = loadConfig("node: {name: edge-1}\ncloud: {tls: {ca: /nonexistent/ca.crt}}\n", {});
  CHECK(hasError(mqtt, "cloud.tls.ca", "cannot read file"));
}

TEST_CASE("addresses, ports, the heartbeat and the API's limits are checked, each naming its key") {
  auto r = loadConfig(R"(
node: {name: n}
cloud:
  heartbeat: 20h
  mqtt: {broker: "tcp://broker.example:99999"}
  websocket: {cert_server: "https://999.999.999.999:10002"}
device: {broker: "ssl://999.999.999.999:8883"}
api:
  metrics_address: "localhost:10350"
  max_connections: 0
  idle_timeout: 0s
  header_timeout: 2h
  socket_group: no-such-group-here
)",
                      {});
  CHECK(hasError(r, "cloud.heartbeat", "65535s"));
  CHECK(hasError(r, "cloud.mqtt.broker", "port \"99999\""));
  CHECK(hasError(r, "cloud.websocket.cert_server", "not an IPv4 address"));
  CHECK(hasError(r, "device.broker", "\"999.999.999.999\" is not an IPv4 address"));
  CHECK(hasError(r, "api.metrics_address", "not an IP address"));
  CHECK(hasError(r, "api.max_connections", "from 1"));
  CHECK(hasError(r, "api.idle_timeout", "from 100ms"));
  CHECK(hasError(r, "api.header_timeout", "from 100ms"));
  CHECK(hasError(r, "api.socket_group", "no group \"no-such-group-here\""));
  CHECK(r.errors.errors.size() == 9);

  for (const char* port : {"0", "-1", "65536", "x"}) {
    auto bad = loadConfig(
        std::string("node: {name: n}\ncloud: {mqtt: {broker: \"tcp://10.0.0.1:") + port + "\"}}\n",
        {});
    CHECK_MESSAGE(hasError(bad, "cloud.mqtt.broker", "port"), port);
  }
  CHECK(hasError(loadConfig("node: {name: n}\ncloud: {mqtt: {broker: \"tcp://:1883\"}}\n", {}),
                 "cloud.mqtt.broker", "no host"));
  CHECK(
      hasError(loadConfig("node: {name: n}\ncloud: {heartbeat: 500ms}\n", {}), "cloud.heartbeat"));
  // Numbers past what the setting can hold (found by the config fuzzer: the conversion of 2e27 ms
  // to an integer was undefined behaviour), and NaN or infinity where a rate is expected.
  CHECK(
      hasError(loadConfig("node: {name: n}\ncloud: {heartbeat: 1999999999999999999999999s}\n", {}),
               "cloud.heartbeat", "at most 87600h"));
  CHECK(hasError(loadConfig("node: {name: n}\ncloud: {reconnect: {cap: 99999999h}}\n", {}),
                 "cloud.reconnect.cap", "at most 87600h"));
  for (const char* qps : {"nan", "inf", "-1", "0"}) {
    CHECK_MESSAGE(
        hasError(loadConfig(
                     std::string("node: {name: n}\ncloud: {rate_limit: {qps: ") + qps + "}}\n", {}),
                 "cloud.rate_limit.qps", "finite number"),
        qps);
  }

  // What stays valid: a default port, IPv6, a path on ws://, the longest heartbeat, port 0 to bind.
  auto ok = loadConfig(R"(
node: {name: n}
cloud: {heartbeat: 65535s, mqtt: {broker: "ws://[::1]:9001/mqtt"}}
device: {broker: "tcp://mosquitto.local"}
api: {metrics_address: "[::1]:0", max_connections: 10, idle_timeout: 5s, header_timeout: 2s}
)",
                       {});
  INFO(ok.errors.toString());
  CHECK(ok.ok());
  CHECK(ok.config.api.maxConnections == 10);
  CHECK(ok.config.api.idleTimeout == 5s);
  CHECK(ok.config.api.headerTimeout == 2s);
  CHECK(ok.config.api.socketGroup.empty());  // root only unless set
}

TEST_CASE("cloud.max_message_bytes defaults above etcd's object limit and is bounded") {
  auto ok = loadConfig("node: {name: edge-1}\n", {});
  REQUIRE(ok.ok());
  CHECK(ok.config.cloud.maxMessageBytes == 2 << 20);
  auto big = loadConfig("node: {name: edge-1}\ncloud: {max_message_bytes: 4194304}\n", {});
  REQUIRE(big.ok());
  CHECK(big.config.cloud.maxMessageBytes == 4 << 20);
  for (const char* bad : {"1024", "1073741824"}) {
    auto r = loadConfig(
        std::string("node: {name: edge-1}\ncloud: {max_message_bytes: ") + bad + "}\n", {});
    CHECK_FALSE(r.ok());
    CHECK(hasError(r, "cloud.max_message_bytes", "64 KiB to 64 MiB"));
  }
}

TEST_CASE("the stream tunnel's server and limits are checked; the metrics port is off 10350") {
  auto defaults = loadConfig("node: {name: edge-1}\n", {});
  REQUIRE(defaults.ok());
  CHECK(defaults.config.cloud.websocket.streamServer.empty());
  CHECK(defaults.config.stream.maxSessions == 16);
  CHECK(defaults.config.stream.maxBytesPerSecond == 1 << 20);
  CHECK(defaults.config.stream.idleTimeout == std::chrono::hours(4));
  CHECK(defaults.config.api.metricsAddress == "127.0.0.1:10351");

  const std::string ws =
      "node: {name: edge-1}\ncloud:\n  transport: websocket\n  websocket:\n"
      "    server: wss://10.0.0.1:10000\n";
  auto ok = loadConfig(ws + "    stream_server: cloudcore.example.com:10004\n"
                            "stream: {max_sessions: 4, max_bytes_per_second: 65536, "
                            "idle_timeout: 30m}\n",
                       {});
  REQUIRE(ok.ok());
  CHECK(ok.config.cloud.websocket.streamServer == "cloudcore.example.com:10004");
  CHECK(ok.config.stream.maxSessions == 4);
  CHECK(ok.config.stream.maxBytesPerSecond == 65536);
  CHECK(ok.config.stream.idleTimeout == std::chrono::minutes(30));

  for (const char* bad : {"wss://10.0.0.1:10004", "10.0.0.1", "10.0.0.1:10004/x", "10.0.0.1:0",
                          "[::1]", "999.1.1.1:10004"}) {
    auto r = loadConfig(ws + "    stream_server: \"" + bad + "\"\n", {});
    CHECK_MESSAGE(hasError(r, "cloud.websocket.stream_server", "host:port"), bad);
  }
  CHECK(hasError(loadConfig("node: {name: n}\ncloud: {websocket: {stream_server: \"a:1\"}}\n", {}),
                 "cloud.websocket.stream_server", "needs cloud.transport websocket"));
  auto limits = loadConfig(
      "node: {name: n}\nstream: {max_sessions: 0, max_bytes_per_second: 10, idle_timeout: 10ms}\n",
      {});
  CHECK(hasError(limits, "stream.max_sessions", "from 1 to 1024"));
  CHECK(hasError(limits, "stream.max_bytes_per_second", "from 1024"));
  CHECK(hasError(limits, "stream.idle_timeout", "from 1s to 24h"));
}

TEST_CASE("a configuration path that is not a regular file, or is over 1 MiB, is refused at once") {
  outpost::test::TempDir dir;
  auto began = std::chrono::steady_clock::now();
  // /dev/zero never ends: it used to hang the loader (and grow its memory) forever.
  CHECK(
      hasError(loadConfigFile("/dev/zero", {}), "(file)", "character device, not a regular file"));
  CHECK(hasError(loadConfigFile(dir.path().string(), {}), "(file)", "a directory"));
  outpost::test::writeFile(dir / "big.yaml", "# " + std::string(kMaxConfigBytes, 'x') + "\n");
  CHECK(hasError(loadConfigFile((dir / "big.yaml").string(), {}), "(file)", "1 MiB"));
  CHECK(std::chrono::steady_clock::now() - began < 5s);
  outpost::test::writeFile(dir / "ok.yaml", "node: {name: n}\n");
  CHECK(loadConfigFile((dir / "ok.yaml").string(), {}).ok());
}

TEST_CASE("upgrade.trusted_keys takes Ed25519 public keys and refuses anything else by index") {
  outpost::test::TempDir dir;
  const std::string openssl = "/usr/bin/openssl";
  auto pem = [&](const std::vector<std::string>& algo, const std::string& name) {
    std::vector<std::string> gen = {openssl, "genpkey"};
    gen.insert(gen.end(), algo.begin(), algo.end());
    gen.insert(gen.end(), {"-out", (dir / (name + ".key")).string()});
    REQUIRE(outpost::test::run(gen) == 0);
    REQUIRE(outpost::test::run({openssl, "pkey", "-in", (dir / (name + ".key")).string(), "-pubout",
                                "-out", (dir / (name + ".pub")).string()}) == 0);
    return outpost::test::readFile(dir / (name + ".pub"));
  };
  std::string ed = pem({"-algorithm", "ed25519"}, "ed");
  std::string ec = pem({"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}, "ec");
  auto indent = [](std::string s) {
    std::string out;
    for (char c : s) out += c == '\n' ? std::string("\n      ") : std::string(1, c);
    return out;
  };
  auto defaults = loadConfig("node: {name: edge-1}\n", {});
  REQUIRE(defaults.ok());
  CHECK(defaults.config.upgrade.trustedKeys.empty());
  CHECK(defaults.config.upgrade.healthTimeout == 120s);
  CHECK(defaults.config.upgrade.maxPackageBytes == 256 << 20);

  auto good = loadConfig("node: {name: edge-1}\nupgrade:\n  trusted_keys:\n    - |\n      " +
                             indent(ed) + "\n    - " + std::string(43, 'A') + "=\n",
                         {});
  REQUIRE_MESSAGE(good.ok(), good.errors.toString());
  CHECK(good.config.upgrade.trustedKeys.size() == 2);

  auto bad = loadConfig("node: {name: edge-1}\nupgrade:\n  trusted_keys:\n    - |\n      " +
                            indent(ed) + "\n    - |\n      " + indent(ec) +
                            "\n  health_timeout: 1s\n  max_package_bytes: 10\n",
                        {});
  CHECK_FALSE(bad.ok());
  CHECK(hasError(bad, "upgrade.trusted_keys[1]", "not an Ed25519 public key"));
  CHECK(hasError(bad, "upgrade.health_timeout", "from 5s to 1h"));
  CHECK(hasError(bad, "upgrade.max_package_bytes", "1 MiB to 4 GiB"));

  auto junk = loadConfig("node: {name: edge-1}\n", {{"OUTPOST_UPGRADE_TRUSTED_KEYS", "nokey"}});
  CHECK(hasError(junk, "upgrade.trusted_keys[0]", "neither a PEM public key nor the base64"));
}
