// The real outpostd with `cloud.transport: websocket` against the CloudHub test double: what an
// operator sees when pointing a node at a KubeEdge CloudCore.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "outpost/agent/exit_codes.h"
#include "support/cloudhub_double.h"
#include "support/mosquitto.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("outpostd with transport websocket connects to CloudHub and registers its node") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-node", "system:nodes");
  CloudHubDoubleOptions h;
  h.caFile = tls.ca;
  h.certFile = tls.serverCert;
  h.keyFile = tls.serverKey;
  h.requireCn = "system:node:ws-node";
  CloudHubDouble hub(h);
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config, "node: {name: ws-node, state_dir: " + (dir / "state").string() + "}\n" +
                        "runtime: {enabled: false}\ndevice: {enabled: false}\n" +
                        "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                        "  websocket: {server: \"" + hub.url() + "\"}\n" + "  tls: {ca: " + tls.ca +
                        ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                        "api: {socket: " + (dir / "outpost.sock").string() +
                        ", metrics_address: \"127.0.0.1:0\"}\n");
  Child agent({(binDir() / "outpostd").string(), "--config", config});

  REQUIRE(hub.waitFor([](const std::vector<ReceivedFrame>& frames) {
    for (const auto& f : frames) {
      if (f.envelope["route"].value("operation", "") == "insert" &&
          f.envelope["route"].value("resource", "") == "default/node/ws-node")
        return true;
    }
    return false;
  }));
  REQUIRE(hub.openConnections() == 1);
  CHECK(hub.connections().at(0).path == "/e632aba927ea4ac2b575ec1603d56f10/ws-node/events");

  std::string out;
  REQUIRE(waitFor([&] {
    if (run({(binDir() / "outpostctl").string(), "-c", config, "status", "-o", "json"}, &out) != 0)
      return false;
    auto j = json::parse(out, nullptr, false);
    return j.is_object() && j["cloud"].value("state", "") == "connected";
  }));
  auto j = json::parse(out);
  CHECK(j["cloud"]["transport"] == "websocket");
  // "last sync": once the cloud's resend after connecting is quiet (3 heartbeats of 1 s here).
  REQUIRE(waitFor([&] {
    if (run({(binDir() / "outpostctl").string(), "-c", config, "status", "-o", "json"}, &out) != 0)
      return false;
    auto s = json::parse(out, nullptr, false);
    return s.is_object() && s["cloud"]["last_sync"].is_number();
  }));
  auto synced = json::parse(out)["cloud"]["last_sync"].get<int64_t>();
  auto nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  CHECK(synced <= nowMs);
  CHECK(synced > nowMs - 60000);

  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
  CHECK(agent.err().find("connected to " + hub.url()) != std::string::npos);
}

TEST_CASE("a hollow node registers its Node with outpost.io/hollow=true beside node.labels") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-hollow", "system:nodes");
  CloudHubDoubleOptions h;
  h.caFile = tls.ca;
  h.certFile = tls.serverCert;
  h.keyFile = tls.serverKey;
  h.requireCn = "system:node:ws-hollow";
  CloudHubDouble hub(h);
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config, "node: {name: ws-hollow, state_dir: " + (dir / "state").string() +
                        ", labels: {site: berlin}}\n" +
                        "runtime: {endpoint: \"hollow://\"}\ndevice: {enabled: false}\n" +
                        "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                        "  websocket: {server: \"" + hub.url() + "\"}\n" + "  tls: {ca: " + tls.ca +
                        ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                        "api: {socket: " + (dir / "outpost.sock").string() +
                        ", metrics_address: \"\"}\n");
  Child agent({(binDir() / "outpostd").string(), "--config", config});

  json node;
  REQUIRE(hub.waitFor([&](const std::vector<ReceivedFrame>& frames) {
    for (const auto& f : frames) {
      if (f.envelope["route"].value("operation", "") == "insert" &&
          f.envelope["route"].value("resource", "") == "default/node/ws-hollow") {
        node = f.envelope["content"];
        if (node.is_string()) node = json::parse(node.get<std::string>(), nullptr, false);
        return true;
      }
    }
    return false;
  }));
  INFO("node: ", node.dump());
  CHECK(node["metadata"]["labels"]["outpost.io/hollow"] == "true");
  CHECK(node["metadata"]["labels"]["site"] == "berlin");
  CHECK(node["metadata"]["labels"]["node-role.kubernetes.io/edge"] == "");
  agent.signal(SIGTERM);
  CHECK(agent.wait(5s) == outpost::agent::kExitOk);
}

// Issue 17, item 1: CloudCore carries `kubectl delete pod` as an update with
// metadata.deletionTimestamp and deletes the pod only when the edge asks for it (grace period 0,
// the pod's uid as precondition), as EdgeCore does once the pod's containers are down.
TEST_CASE(
    "kubectl delete pod completes: the node stops the pod, asks the cloud to delete it with "
    "grace 0 and its uid, and the cloud's delete removes it") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-del", "system:nodes");
  CloudHubDoubleOptions h;
  h.caFile = tls.ca;
  h.certFile = tls.serverCert;
  h.keyFile = tls.serverKey;
  CloudHubDouble hub(h);
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config, "node: {name: ws-del, state_dir: " + (dir / "state").string() + "}\n" +
                        "runtime: {endpoint: \"hollow://\"}\ndevice: {enabled: false}\n" +
                        "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                        "  websocket: {server: \"" + hub.url() + "\"}\n" + "  tls: {ca: " + tls.ca +
                        ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                        "api: {socket: " + (dir / "outpost.sock").string() +
                        ", metrics_address: \"\"}\n");
  Child agent({(binDir() / "outpostd").string(), "--config", config});
  REQUIRE(hub.waitFor([](const std::vector<ReceivedFrame>& frames) {
    for (const auto& f : frames) {
      if (f.envelope["route"].value("resource", "") == "default/node/ws-del") return true;
    }
    return false;
  }));

  const std::string resource = "default/pod/web";
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", "web"},
                {"namespace", "default"},
                {"uid", "6f1d2c3b-0000-4000-8000-00000000a001"},
                {"resourceVersion", "10"}}},
              {"spec",
               {{"nodeName", "ws-del"},
                {"terminationGracePeriodSeconds", 1},
                {"containers", {{{"name", "app"}, {"image", "app:1"}}}}}}};
  hub.sendObject("insert", resource, pod);
  auto phase = [&] {
    auto p = hub.object(resource);
    return p && (*p)["status"].is_object() ? (*p)["status"].value("phase", "") : std::string();
  };
  REQUIRE(waitFor([&] { return phase() == "Running"; }, 20s));

  hub.deletePod(resource);
  REQUIRE(waitFor([&] { return !hub.podsDeleted().empty(); }, 20s));
  auto asks = hub.receivedWhere("delete", resource);
  REQUIRE(asks.size() >= 1);
  json ask = asks[0].envelope;
  INFO("the edge's delete: ", ask.dump());
  CHECK(ask["route"]["source"] == "edged");
  CHECK(ask["route"]["group"] == "meta");
  // The pod's uid as a JSON string, the form every CloudCore reads (grace 0, uid precondition).
  CHECK(ask["content"] == "6f1d2c3b-0000-4000-8000-00000000a001");
  CHECK(hub.podDeletesIgnored().empty());
  // Before asking, the node reported the container terminated.
  bool reported = false;
  std::string patchesSeen;
  for (const auto& p : hub.receivedWhere("patch", "default/podpatch/web")) {
    patchesSeen += p.envelope["content"].dump() + (p.at < asks[0].at ? " (before)\n" : "\n");
    if (p.at < asks[0].at && p.envelope.dump().find("terminated") != std::string::npos)
      reported = true;
  }
  INFO("status patches: ", patchesSeen);
  CHECK(reported);

  // The cloud's delete arrives: the pod is gone from the node.
  std::string out;
  CHECK(waitFor([&] {
    return run({(binDir() / "outpostctl").string(), "-c", config, "get", "pods"}, &out) == 0 &&
           out.find("web") == std::string::npos;
  }));
  CHECK(hub.unacked().empty());
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
}
