// The real outpostd and outpostctl programs, as an operator runs them.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "outpost/agent/api_server.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/cert_server.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;

namespace {

std::string writeConfig(const TempDir& dir, const std::string& extra = "") {
  std::string text = "node: {name: test-node, state_dir: " + (dir / "state").string() + "}\n" +
                     "runtime: {enabled: false}\ndevice: {enabled: false}\ncloud: {mqtt: {broker: "
                     "\"tcp://127.0.0.1:1\"}}\n" +
                     "api: {socket: " + (dir / "outpost.sock").string() +
                     ", metrics_address: \"127.0.0.1:0\"}\n" + extra;
  writeFile(dir / "outpost.yaml", text);
  return (dir / "outpost.yaml").string();
}

}  // namespace

TEST_CASE("outpostd starts, reports ready and status, and stops on SIGTERM within 2 s") {
  TempDir dir;
  std::string config = writeConfig(dir);
  Child agent({outpostd(), "--config", config});

  // outpostctl finds the socket from the agent's configuration.
  std::string out;
  REQUIRE(waitFor([&] {
    return run({outpostctl(), "--config", config, "status", "-o", "json"}, &out) == 0;
  }));
  auto status = nlohmann::json::parse(out);
  CHECK(status["node"] == "test-node");
  CHECK(status["version"].get<std::string>().size() > 0);
  CHECK(status["uptime_seconds"].get<double>() >= 0);
  REQUIRE(status["modules"].is_array());
  CHECK(status["modules"][0]["name"] == "metadb");
  CHECK(status["modules"][1]["name"] == "api");

  // /readyz and /metrics on the address the agent bound (port 0 in the config).
  std::string metricsAddress = status["api"]["metrics_address"];
  REQUIRE(waitFor([&] {
    auto r = outpost::agent::callTcp(metricsAddress, "GET", "/readyz");
    return r.isOk() && r->status == 200;
  }));
  auto metrics = outpost::agent::callTcp(metricsAddress, "GET", "/metrics");
  REQUIRE(metrics.isOk());
  CHECK(metrics->body.find("# TYPE process_resident_memory_bytes gauge") != std::string::npos);
  CHECK(metrics->body.find("outpost_build_info{version=") != std::string::npos);

  // The table form names the node and the module states.
  REQUIRE(run({outpostctl(), "--socket", (dir / "outpost.sock").string(), "status"}, &out) == 0);
  CHECK(out.find("Node:     test-node") != std::string::npos);
  CHECK(out.find("api") != std::string::npos);

  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == outpost::agent::kExitOk);
  CHECK(agent.err().find("stopped") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "outpost.sock"));
}

TEST_CASE("a bad configuration exits 78 and names the key path") {
  TempDir dir;
  std::string config = writeConfig(dir, "cloud: {transport: pigeon}\n");
  Child agent({outpostd(), "--config", config});
  CHECK(agent.wait(10s) == outpost::agent::kExitConfig);
  CHECK(agent.err().find("cloud.transport: must be one of mqtt, websocket") != std::string::npos);

  std::string err;
  CHECK(run({outpostd(), "--check-config", "--config", config}, nullptr, &err) ==
        outpost::agent::kExitConfig);
  CHECK(err.find("cloud.transport") != std::string::npos);

  std::string tunnel = writeConfig(dir, "stream: {max_sessions: 0}\n");
  CHECK(run({outpostd(), "--check-config", "--config", tunnel}, nullptr, &err) ==
        outpost::agent::kExitConfig);
  CHECK(err.find("stream.max_sessions: must be from 1 to 1024") != std::string::npos);
}

TEST_CASE("--check-config accepts a valid file and the shipped example") {
  TempDir dir;
  std::string out;
  CHECK(run({outpostd(), "--check-config", "--config", writeConfig(dir)}, &out) == 0);
  CHECK(out.find("configuration is valid") != std::string::npos);
  const char* examples = std::getenv("OUTPOST_EXAMPLES_DIR");
  REQUIRE(examples);
  CHECK(run({outpostd(), "--check-config", "-c", std::string(examples) + "/outpost.yaml"}) == 0);
}

TEST_CASE("--log-level overrides the file, SIGHUP re-reads the level, and --version answers") {
  TempDir dir;
  std::string config = writeConfig(dir, "log: {level: warn}\n");
  Child agent({outpostd(), "--config", config});
  std::string out;
  REQUIRE(waitFor([&] {
    return run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) == 0;
  }));
  CHECK(nlohmann::json::parse(out)["log_level"] == "warn");
  writeConfig(dir, "log: {level: debug}\n");
  agent.signal(SIGHUP);
  CHECK(waitFor([&] {
    return run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) == 0 &&
           nlohmann::json::parse(out)["log_level"] == "debug";
  }));
  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);

  CHECK(run({outpostd(), "--version"}, &out) == 0);
  CHECK(out.find("outpostd ") == 0);
  CHECK(out.find("\nstore schema " + std::to_string(outpost::metadb::storeSchemaVersion()) +
                 "\n") != std::string::npos);
}

TEST_CASE("outpostctl says the agent is unreachable with exit 69, and rejects bad usage with 64") {
  TempDir dir;
  std::string err;
  CHECK(run({outpostctl(), "--socket", (dir / "none.sock").string(), "status"}, nullptr, &err) ==
        outpost::agent::kExitUnavailable);
  CHECK(err.find("Is outpostd running?") != std::string::npos);
  CHECK(run({outpostctl(), "status", "-o", "xml"}) == outpost::agent::kExitUsage);
  CHECK(run({outpostctl(), "frobnicate"}) == outpost::agent::kExitUsage);
}

TEST_CASE("status names the store, its outbox and the cloud link's state") {
  TempDir dir;
  std::string config = writeConfig(dir);
  Child agent({outpostd(), "--config", config});
  std::string out;
  // The API answers as soon as it listens; the cloud link joins the status once it has started.
  REQUIRE(waitFor([&] {
    return run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) == 0 &&
           nlohmann::json::parse(out, nullptr, false).contains("cloud");
  }));
  auto j = nlohmann::json::parse(out);
  CHECK(j["store"]["path"] == (dir / "state" / "outpost.db").string());
  CHECK(j["store"]["size_bytes"].get<int64_t>() > 0);
  CHECK(j["store"]["outbox"]["rows"] == 0);
  CHECK(j["cloud"]["transport"] == "mqtt");
  CHECK(j["cloud"]["state"] != "connected");  // the configured broker is not there
  REQUIRE(run({outpostctl(), "-c", config, "status"}, &out) == 0);
  CHECK(out.find("Outbox:   0 waiting") != std::string::npos);
  CHECK(out.find("Cloud:    ") != std::string::npos);
  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);
}

namespace {
// A datagram socket standing in for systemd's notify socket; collects what outpostd tells it.
class NotifySocket {
 public:
  explicit NotifySocket(const std::filesystem::path& path) : path_(path.string()) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifySocket() { close(fd_); }
  // Everything received so far, one datagram per line.
  std::string received() {
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd_, buf, sizeof buf, 0)) > 0)
      text_ += std::string(buf, static_cast<size_t>(n)) + "\n";
    return text_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string text_;
};
}  // namespace

TEST_CASE(
    "outpostd tells systemd READY=1 with STATUS lines, pets the watchdog, and says STOPPING=1") {
  TempDir dir;
  NotifySocket notify(dir / "notify");
  std::string config = writeConfig(dir);
  Child agent(
      {outpostd(), "--config", config},
      {"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=200000"});  // 200 ms: a ping every 100 ms
  REQUIRE(waitFor([&] { return notify.received().find("READY=1") != std::string::npos; }));
  CHECK(notify.received().find("STATUS=starting metadb") != std::string::npos);
  CHECK(notify.received().find("STATUS=running") != std::string::npos);
  REQUIRE(waitFor([&] {
    std::string t = notify.received();
    size_t first = t.find("WATCHDOG=1");
    return first != std::string::npos && t.find("WATCHDOG=1", first + 1) != std::string::npos;
  }));
  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);
  CHECK(notify.received().find("STOPPING=1") != std::string::npos);
}

TEST_CASE("KubeEdge without a certificate or a token: outpostd says exactly what to do") {
  TempDir dir;
  std::string config = writeConfig(dir);
  std::string text = readFile(config);
  const std::string mqtt = "cloud: {mqtt: {broker: \"tcp://127.0.0.1:1\"}}\n";
  text.replace(text.find(mqtt), mqtt.size(),
               "cloud:\n  transport: websocket\n  websocket: {server: \"wss://127.0.0.1:1\", "
               "cert_server: \"https://127.0.0.1:1\"}\n");
  writeFile(config, text);
  Child agent({outpostd(), "--config", config});
  CHECK(agent.wait(20s) == outpost::agent::kExitUnavailable);
  std::string cert = (dir / "state" / "certs" / "edge.crt").string();
  CHECK(agent.err().find("client certificate " + cert + " does not exist") != std::string::npos);
  CHECK(agent.err().find("cloud.websocket.token_file") != std::string::npos);
  CHECK(agent.err().find("keadm gettoken") != std::string::npos);
}

TEST_CASE("KubeEdge with a token: outpostd bootstraps its certificate and shows it in status") {
  TempDir dir;
  CertServer certs(dir / "cert-server");
  writeFile(dir / "token", certs.token());
  std::string config = writeConfig(dir);
  std::string text = readFile(config);
  const std::string mqtt = "cloud: {mqtt: {broker: \"tcp://127.0.0.1:1\"}}\n";
  text.replace(text.find(mqtt), mqtt.size(),
               "cloud:\n  transport: websocket\n  websocket: {server: \"wss://127.0.0.1:1\", "
               "cert_server: \"" +
                   certs.url() + "\", token_file: \"" + (dir / "token").string() + "\"}\n");
  writeFile(config, text);
  Child agent({outpostd(), "--config", config});

  std::string out;
  nlohmann::json status;
  REQUIRE(waitFor([&] {
    if (run({outpostctl(), "--config", config, "status", "-o", "json"}, &out) != 0) return false;
    status = nlohmann::json::parse(out);
    return status.contains("cloud") && status["cloud"].contains("certificate");
  }));
  auto c = status["cloud"]["certificate"];
  CHECK(c["subject"] == "CN=system:node:test-node,O=system:nodes");
  REQUIRE(certs.issued().size() == 1);
  CHECK(c["serial"] == certs.issued()[0]);
  CHECK(c["not_after"].get<int64_t>() > c["next_rotation"].get<int64_t>());
  CHECK(std::filesystem::exists(dir / "state" / "certs" / "edge.key"));

  REQUIRE(run({outpostctl(), "--config", config, "status"}, &out) == 0);
  CHECK(out.find("Cert:     CN=system:node:test-node,O=system:nodes, expires in ") !=
        std::string::npos);
  agent.signal(SIGTERM);
  CHECK(agent.wait(5s) == outpost::agent::kExitOk);
}

TEST_CASE("a state_dir that cannot hold the store exits 69 naming node.state_dir and why") {
  TempDir dir;
  writeFile(dir / "not-a-dir", "");
  std::string config = writeConfig(
      dir, "node: {name: test-node, state_dir: " + (dir / "not-a-dir").string() + "}\n");
  Child agent({outpostd(), "--config", config});
  CHECK(agent.wait(10s) == outpost::agent::kExitUnavailable);
  CHECK(agent.err().find("node.state_dir \"" + (dir / "not-a-dir").string() +
                         "\": is not a directory") != std::string::npos);
}

TEST_CASE("a configuration path that is a device or a directory exits 78 at once") {
  TempDir dir;
  for (std::string path : {std::string("/dev/zero"), dir.path().string()}) {
    Child agent({outpostd(), "--config", path});
    CHECK(agent.wait(5s) == outpost::agent::kExitConfig);
    CHECK(agent.err().find("not a regular file") != std::string::npos);
  }
}
