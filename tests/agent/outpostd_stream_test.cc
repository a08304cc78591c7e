// The real outpostd with cloud.websocket.stream_server against the CloudHub double and the stream
// tunnel double: what `kubectl logs` through CloudCore shows of a node's pod.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "outpost/agent/exit_codes.h"
#include "support/cloudhub_double.h"
#include "support/mosquitto.h"
#include "support/stream_tunnel_double.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE(
    "kubectl logs -f through the stream tunnel follows a container across its restart; another "
    "node's pod is refused; a dropped tunnel comes back") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-logs", "system:nodes");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  CloudHubDouble hub(h);
  StreamTunnelDouble tunnel(tls);
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config,
            "node: {name: ws-logs, address: 10.9.8.7, state_dir: " + (dir / "state").string() +
                "}\n" + "runtime: {endpoint: \"hollow://\"}\ndevice: {enabled: false}\n" +
                "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                "  reconnect: {base: 100ms, cap: 500ms}\n" + "  websocket: {server: \"" +
                hub.url() + "\", stream_server: \"" + tunnel.address() + "\"}\n" + "  tls: {ca: " +
                tls.ca + ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                "api: {socket: " + (dir / "outpost.sock").string() + ", metrics_address: \"\"}\n");
  Child agent({outpostd(), "--config", config});
  REQUIRE(tunnel.waitConnected(1, 20s));
  CHECK(tunnel.nodeName() == "ws-logs");
  CHECK(tunnel.internalIp() == "10.9.8.7");
  CHECK(tunnel.clientCn() == "system:node:ws-logs");

  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", "web"},
                {"namespace", "default"},
                {"uid", "6f1d2c3b-0000-4000-8000-00000000b001"},
                {"resourceVersion", "10"}}},
              {"spec",
               {{"nodeName", "ws-logs"},
                {"containers", {{{"name", "app"}, {"image", "app:exits-1-after-1s"}}}}}}};
  REQUIRE(waitFor([&] { return hub.openConnections() == 1; }, 20s));
  hub.sendObject("insert", "default/pod/web", pod);

  // The log has the first attempt's start, then its exit; the follow goes on into the next
  // attempt's file after the restart (the kubelet's 10 s back-off).
  StreamTunnelDouble::SessionPtr logs;
  REQUIRE(waitFor(
      [&] {
        logs = tunnel.logs("default", "web", "app", "follow=true");
        return logs->waitFor(
            [](const std::string& r) { return r.find("hollow container app started") == 0; }, 2s);
      },
      20s));
  REQUIRE(logs->waitFor(
      [](const std::string& r) { return r.find("exits with code 1") != std::string::npos; }));
  REQUIRE(logs->waitFor(
      [](const std::string& r) { return count(r, "hollow container app started") == 2; }, 30s));
  CHECK_FALSE(logs->removed());
  logs->remove();

  auto other = tunnel.logs("default", "runs-on-another-node", "app");
  REQUIRE(other->waitRemoved());
  CHECK(other->received() == "pod default/runs-on-another-node is not running on this node\n");

  std::string out;
  REQUIRE(run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) == 0);
  auto status = json::parse(out);
  CHECK(status["stream"]["connected"] == true);
  CHECK(status["stream"]["server"] == tunnel.address());

  tunnel.dropTunnel();
  REQUIRE(tunnel.waitConnected(2, 20s));
  auto again = tunnel.logs("default", "web", "app", "tailLines=1");
  REQUIRE(again->waitRemoved());
  CHECK(count(again->received(), "\n") == 1);

  agent.signal(SIGTERM);
  CHECK(agent.wait(15s) == outpost::agent::kExitOk);
}
