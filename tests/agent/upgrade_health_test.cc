// The new agent's proof of health after an in-band upgrade (docs/operations.md, "In-band upgrade"),
// on a hollow node (its installer simulates the install: docs/hollow-nodes.md) with a real
// mosquitto: a cloud the network does not reach is no fault of the new agent, a cloud that takes
// the connection but no working link is.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "support/file_server.h"
#include "support/mosquitto.h"
#include "support/test_util.h"
#include "upgrade/upgrade_test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct UpgradeNode {
  TempDir dir;
  ReleaseKey release{dir.path(), "release"};
  FileServer packages;
  Mosquitto broker;
  std::string installed;  // the hollow node's version before the upgrade: "<outpostd version>-1"

  UpgradeNode() {
    std::string out;
    REQUIRE(run({outpostd(), "--version"}, &out) == 0);
    installed = out.substr(out.find(' ') + 1);
    installed = installed.substr(0, installed.find('\n')) + "-1";
  }
  std::string config(const std::string& brokerUri) {
    json key = release.publicPem();
    writeFile(dir / "outpost.yaml", "node: {name: edge-u, state_dir: " + (dir / "state").string() +
                                        "}\n" + "runtime: {endpoint: \"hollow://\"}\n" +
                                        "device: {enabled: false}\n" + "cloud: {mqtt: {broker: \"" +
                                        brokerUri + "\"}, reconnect: {base: 100ms, cap: 1s}}\n" +
                                        "api: {socket: " + (dir / "o.sock").string() +
                                        ", metrics_address: \"\"}\n" + "upgrade: {trusted_keys: [" +
                                        key.dump() + "], health_timeout: 5s}\n");
    return (dir / "outpost.yaml").string();
  }
  json package(const std::string& version, bool serve) {
    std::string body = "outpost " + version;
    if (serve) packages.put("/outpost_" + version + "_amd64.deb", body);
    writeFile(dir / ("pkg-" + version), body);
    return {{"format", "deb"},
            {"arch", "amd64"},
            {"url", packages.url("/outpost_" + version + "_amd64.deb")},
            {"sha256", sha256Hex(dir / ("pkg-" + version))},
            {"signature", release.sign(dir / ("pkg-" + version))}};
  }
  std::string status(const std::string& config) {
    std::string out;
    run({outpostctl(), "-c", config, "status"}, &out);
    return out;
  }

  // The AgentUpgrade reaches the node while its cloud works, but the package is not served yet
  // (404: the attempt fails, docs/operations.md); the agent is stopped, `between` changes the
  // world, the package is served and the agent starts again, which tries the stored object again.
  std::string upgradeAcross(const std::function<std::string()>& between) {
    std::string cfg = config(broker.uri());
    auto agent = std::make_unique<Child>(std::vector<std::string>{outpostd(), "--config", cfg});
    json up = {
        {"apiVersion", "outpost.io/v1"},
        {"kind", "AgentUpgrade"},
        {"metadata", {{"name", "agent"}}},
        {"spec",
         {{"version", "0.2.0-1"},
          {"packages", {package("0.2.0-1", false)}},
          {"rollback", {{"version", installed}, {"packages", {package(installed, true)}}}}}}};
    writeFile(dir / "up.json", up.dump());
    REQUIRE(waitFor([&] {
      return run({outpostctl(), "-c", cfg, "apply", "-f", (dir / "up.json").string()}) == 0;
    }));
    std::string seen;
    bool failed = waitFor(
        [&] {
          seen = status(cfg);
          return seen.find("agent failed (0.2.0-1)") != std::string::npos &&
                 seen.find("404 Not Found") != std::string::npos;
        },
        20s);
    REQUIRE_MESSAGE(failed, seen);
    agent->signal(SIGTERM);
    REQUIRE(agent->wait(20s) == 0);
    cfg = between();
    package("0.2.0-1", true);
    agent = std::make_unique<Child>(std::vector<std::string>{outpostd(), "--config", cfg});
    std::string last;
    waitFor(
        [&] {
          last = status(cfg);
          return last.find("agent healthy (0.2.0-1)") != std::string::npos ||
                 last.find("agent rolled back (0.2.0-1)") != std::string::npos;
        },
        30s);
    agent->signal(SIGTERM);
    agent->wait(20s);
    return last;
  }
};

}  // namespace

TEST_CASE("upgrade health: a node whose cloud the network does not reach is healthy without it") {
  UpgradeNode n;
  std::string status = n.upgradeAcross([&] {
    n.broker.stop();  // nothing listens on the broker's port: connections are refused
    return n.config(n.broker.uri());
  });
  INFO(status);
  CHECK(status.find("default/agentupgrade/agent healthy (0.2.0-1)") != std::string::npos);
}

TEST_CASE("upgrade health: a node whose cloud takes the connection but gives no link rolls back") {
  UpgradeNode n;
  std::string status = n.upgradeAcross([&] {
    // The address answers TCP (an HTTP server, not a broker): the network is fine, the link is not.
    std::string url = n.packages.url("/");
    return n.config("tcp://" + url.substr(7, url.find('/', 7) - 7));
  });
  INFO(status);
  CHECK(status.find("default/agentupgrade/agent rolled back (0.2.0-1): the agent 0.2.0-1 was not "
                    "healthy within 5s") != std::string::npos);
}
