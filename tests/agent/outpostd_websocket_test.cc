// The real outpostd with `cloud.transport: websocket` against the CloudHub test double: what an
// operator sees when pointing a node at a KubeEdge CloudCore.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/agent/exit_codes.h"
#include "support/cloudhub_double.h"
#include "support/edgecore_node.h"
#include "support/kube_admission.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {
// The host's IPv4 addresses outside loopback.
std::set<std::string> hostAddresses() {
  std::set<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, buf,
              sizeof(buf));
    if (std::string(buf).rfind("127.", 0) != 0) out.insert(buf);
  }
  freeifaddrs(list);
  return out;
}
}  // namespace

TEST_CASE("outpostd with transport websocket connects to CloudHub and registers its node") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-node", "system:nodes");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
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
  Child agent({outpostd(), "--config", config});

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
  // Without node.address: the address towards the cloud, and for a cloud on loopback the host's
  // first non-loopback IPv4 address (the interface of the default route).
  json insert = hub.receivedWhere("insert", "default/node/ws-node").at(0).envelope["content"];
  if (insert.is_string()) insert = json::parse(insert.get<std::string>());
  INFO("insert: ", insert.dump());
  std::string internal = insert["status"]["addresses"][0].value("address", "");
  CHECK(insert["status"]["addresses"][0]["type"] == "InternalIP");
  CHECK(hostAddresses().count(internal) == 1);

  std::string out;
  REQUIRE(waitFor([&] {
    if (run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) != 0) return false;
    auto j = json::parse(out, nullptr, false);
    // No "cloud" while the agent is still starting its link.
    return j.is_object() && j.value("cloud", json::object()).value("state", "") == "connected";
  }));
  auto j = json::parse(out);
  CHECK(j["cloud"]["transport"] == "websocket");
  // "last sync": once the cloud's resend after connecting is quiet (3 heartbeats of 1 s here).
  REQUIRE(waitFor([&] {
    if (run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) != 0) return false;
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
  CloudHubDoubleOptions h = hubOptionsFor(tls);
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
  Child agent({outpostd(), "--config", config});

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
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  CloudHubDouble hub(h);
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config, "node: {name: ws-del, state_dir: " + (dir / "state").string() + "}\n" +
                        "runtime: {endpoint: \"hollow://\"}\ndevice: {enabled: false}\n" +
                        "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                        "  websocket: {server: \"" + hub.url() + "\"}\n" + "  tls: {ca: " + tls.ca +
                        ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                        "api: {socket: " + (dir / "outpost.sock").string() +
                        ", metrics_address: \"\"}\n");
  Child agent({outpostd(), "--config", config});
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
    return run({outpostctl(), "-c", config, "get", "pods"}, &out) == 0 &&
           out.find("web") == std::string::npos;
  }));
  CHECK(hub.unacked().empty());
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
}

namespace {

// A node's configuration against `server`, with the hollow runtime.
std::string hollowConfig(const TempDir& dir, const std::string& node, const std::string& server,
                         const TlsFiles& tls) {
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config, "node: {name: " + node + ", state_dir: " + (dir / "state").string() + "}\n" +
                        "runtime: {endpoint: \"hollow://\"}\ndevice: {enabled: false}\n" +
                        "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                        "  websocket: {server: \"" + server + "\"}\n" + "  tls: {ca: " + tls.ca +
                        ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                        "api: {socket: " + (dir / "outpost.sock").string() +
                        ", metrics_address: \"\"}\n");
  return config;
}

json podFor(const std::string& node, const std::string& name, const std::string& uid) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", name}, {"namespace", "default"}, {"uid", uid}, {"resourceVersion", "10"}}},
          {"spec",
           {{"nodeName", node},
            {"terminationGracePeriodSeconds", 1},
            {"containers", {{{"name", "app"}, {"image", "app:1"}}}}}}};
}

// The host directory of the pod's kube-api-access volume (its name as the API server made it).
std::filesystem::path tokenVolume(const TempDir& dir, const json& pod, const std::string& uid) {
  std::string volume;
  for (const auto& v : pod["spec"]["volumes"])
    if (v["name"].get<std::string>().starts_with("kube-api-access-")) volume = v["name"];
  return dir / "state" / "pods" / "pods" / uid / "volumes" / volume;
}

std::string statusPhase(CloudHubDouble& hub, const std::string& resource) {
  auto p = hub.object(resource);
  return p && (*p)["status"].is_object() ? (*p)["status"].value("phase", "") : std::string();
}

}  // namespace

// Issue 17 item 3: every pod Kubernetes admits has the kube-api-access projected volume. The node
// asks the cloud for the token as EdgeCore does, the pod runs only once the volume holds it, and
// the token is asked again before it expires and rewritten while the pod runs.
TEST_CASE(
    "a pod as the API server makes it gets its service-account token, ca.crt and namespace, and "
    "the token is refreshed before it expires") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-sa", "system:nodes");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  h.maxTokenExpiration = 5s;  // refreshed from 4 s on
  CloudHubDouble hub(h);
  std::string config = hollowConfig(dir, "ws-sa", hub.url(), tls);
  Child agent({outpostd(), "--config", config});
  REQUIRE(hub.waitFor([](const std::vector<ReceivedFrame>& frames) {
    for (const auto& f : frames)
      if (f.envelope["route"].value("resource", "") == "default/node/ws-sa") return true;
    return false;
  }));

  const std::string resource = "default/pod/api";
  const std::string uid = "6f1d2c3b-0000-4000-8000-00000000b001";
  hub.sendObject("insert", resource, podFor("ws-sa", "api", uid));
  REQUIRE(waitFor([&] { return statusPhase(hub, resource) == "Running"; }, 20s));

  // The query, as EdgeCore's meta manager sends it.
  auto queries = hub.receivedWhere("query", "default/serviceaccounttoken/default");
  REQUIRE(!queries.empty());
  json q = queries[0].envelope;
  json tr = q["content"].is_string() ? json::parse(q["content"].get<std::string>()) : q["content"];
  INFO("the token query: ", q.dump());
  CHECK(q["route"]["source"] == "edged");
  CHECK(q["route"]["group"] == "meta");
  CHECK(tr["kind"] == "TokenRequest");
  CHECK(tr["spec"]["expirationSeconds"] == 3607);
  CHECK(tr["spec"]["boundObjectRef"]["uid"] == uid);
  // No status said Ready before the token was there.
  for (const auto& p : hub.receivedWhere("patch", "default/podpatch/api")) {
    if (p.at >= queries[0].at) continue;
    CHECK(p.envelope["content"].dump().find(R"(\"type\":\"Ready\",\"status\":\"True\")") ==
          std::string::npos);
  }

  auto pod = hub.object(resource);
  REQUIRE(pod);
  auto volume = tokenVolume(dir, *pod, uid);
  auto issued = hub.tokensIssued();
  REQUIRE(!issued.empty());
  std::string first = readFile(volume / "token");
  CHECK(first == issued[0]["status"]["token"].get<std::string>());
  auto claims = tokenClaims(first);
  REQUIRE(claims);
  CHECK((*claims)["kubernetes.io"]["pod"]["uid"] == uid);
  CHECK(readFile(volume / "ca.crt") == readFile(tls.ca));
  CHECK(readFile(volume / "namespace") == "default");

  // Refreshed before it expires: a new token is asked and lands in the same file while the pod
  // runs.
  REQUIRE(waitFor(
      [&] {
        auto all = hub.tokensIssued();
        return all.size() >= 2 &&
               readFile(volume / "token") == all.back()["status"]["token"].get<std::string>();
      },
      20s));
  CHECK(readFile(volume / "token") != first);
  CHECK(statusPhase(hub, resource) == "Running");
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
}

TEST_CASE("a restart without the cloud projects the saved token; the pod runs again") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-off", "system:nodes");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  const std::string resource = "default/pod/kept";
  const std::string uid = "6f1d2c3b-0000-4000-8000-00000000b002";
  std::filesystem::path volume;
  std::string token;
  {
    CloudHubDouble hub(h);
    std::string config = hollowConfig(dir, "ws-off", hub.url(), tls);
    Child agent({outpostd(), "--config", config});
    REQUIRE(hub.waitFor([](const std::vector<ReceivedFrame>& frames) {
      for (const auto& f : frames)
        if (f.envelope["route"].value("resource", "") == "default/node/ws-off") return true;
      return false;
    }));
    hub.sendObject("insert", resource, podFor("ws-off", "kept", uid));
    REQUIRE(waitFor([&] { return statusPhase(hub, resource) == "Running"; }, 20s));
    volume = tokenVolume(dir, *hub.object(resource), uid);
    token = readFile(volume / "token");
    REQUIRE(!token.empty());
    agent.signal(SIGTERM);
    REQUIRE(agent.wait(10s) == outpost::agent::kExitOk);
  }
  // The cloud is gone (nothing listens there any more); the volume's files are gone too.
  std::filesystem::remove_all(volume);
  std::string config = hollowConfig(dir, "ws-off", "wss://127.0.0.1:1", tls);
  Child agent({outpostd(), "--config", config});
  std::string out;
  REQUIRE(waitFor(
      [&] {
        return run({outpostctl(), "-c", config, "get", "pods"}, &out) == 0 &&
               out.find("Running") != std::string::npos;
      },
      20s));
  CHECK(readFile(volume / "token") == token);
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
}

namespace {

// The content of the first frame of `operation` on `resource`, parsed.
json firstContent(const CloudHubDouble& hub, const std::string& operation,
                  const std::string& resource) {
  auto frames = hub.receivedWhere(operation, resource);
  if (frames.empty()) return json();
  json c = frames[0].envelope["content"];
  return c.is_string() ? json::parse(c.get<std::string>(), nullptr, false) : c;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += i + "; ";
  return out;
}

std::string condition(const json& node, const std::string& type, const std::string& field) {
  for (const auto& c : node["status"].value("conditions", json::array()))
    if (c.value("type", "") == type) return c.value(field, "");
  return "";
}

int64_t ki(const std::string& quantity) { return std::stoll(quantity); }  // "123Ki"
int64_t milliCpu(const std::string& q) {
  return q.ends_with("m") ? std::stoll(q) : std::stoll(q) * 1000;
}

}  // namespace

// Issue 17, items 7 and 8f: `kubectl get node -o yaml` of an Outpost node shows what it shows of
// an EdgeCore node, from the registration on.
TEST_CASE(
    "the Node as the cloud holds it is EdgeCore's: addresses, ids, version, daemon port, reserved "
    "allocatable, condition transitions; host network pods get the node's address") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-shape", "system:nodes");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  CloudHubDouble hub(h);
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config,
            "node: {name: ws-shape, state_dir: " + (dir / "state").string() +
                ", address: 192.0.2.77, reserved: {cpu: 250m, memory: 64Mi}}\n" +
                "runtime: {endpoint: \"hollow://\", node_status_interval: 1s}\n" +
                "device: {enabled: false}\n" + "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                "  websocket: {server: \"" + hub.url() + "\"}\n" + "  tls: {ca: " + tls.ca +
                ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                "api: {socket: " + (dir / "outpost.sock").string() + ", metrics_address: \"\"}\n");
  Child agent({outpostd(), "--config", config});
  const std::string resource = "default/node/ws-shape";

  // The registration carries the full Node (item 8f), not only nodeInfo.
  REQUIRE(hub.waitFor([&](const std::vector<ReceivedFrame>&) {
    return !hub.receivedWhere("insert", resource).empty();
  }));
  json insert = firstContent(hub, "insert", resource);
  INFO("insert: ", insert.dump());
  CHECK(joined(edgeCoreNodeDifferences(insert)) == "");
  CHECK(insert["status"]["addresses"][0] ==
        json({{"type", "InternalIP"}, {"address", "192.0.2.77"}}));

  // The Node after the status patches, as kubectl shows it.
  json node;
  REQUIRE(waitFor(
      [&] {
        auto n = hub.object(resource);
        if (!n || condition(*n, "Ready", "status") != "True") return false;
        node = *n;
        return true;
      },
      20s));
  INFO("node: ", node.dump());
  CHECK(joined(edgeCoreNodeDifferences(node)) == "");
  const json& status = node["status"];
  CHECK(status["addresses"] == json::array({{{"type", "InternalIP"}, {"address", "192.0.2.77"}},
                                            {{"type", "Hostname"}, {"address", "ws-shape"}}}));
  CHECK(status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10350);
  CHECK(status["nodeInfo"]["kubeletVersion"].get<std::string>().starts_with("v1.26.10-outpost-v"));
  CHECK(status["nodeInfo"]["machineID"] == readFile("/etc/machine-id").substr(0, 32));
  CHECK(status["nodeInfo"]["bootID"].get<std::string>() + "\n" ==
        readFile("/proc/sys/kernel/random/boot_id"));
  CHECK(milliCpu(status["allocatable"]["cpu"]) == milliCpu(status["capacity"]["cpu"]) - 250);
  CHECK(ki(status["allocatable"]["memory"]) == ki(status["capacity"]["memory"]) - 64 * 1024);

  // Reports go on every second; Ready's lastTransitionTime stays where it was set.
  const std::string transition = condition(node, "Ready", "lastTransitionTime");
  REQUIRE(!transition.empty());
  REQUIRE(waitFor(
      [&] {
        auto n = hub.object(resource);
        return n && condition(*n, "Ready", "lastHeartbeatTime") > transition;
      },
      20s));
  CHECK(condition(*hub.object(resource), "Ready", "lastTransitionTime") == transition);

  // A host network pod has the node's address as podIP and hostIP.
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", "hostnet"},
                {"namespace", "default"},
                {"uid", "6f1d2c3b-0000-4000-8000-00000000b001"},
                {"resourceVersion", "5"}}},
              {"spec",
               {{"nodeName", "ws-shape"},
                {"hostNetwork", true},
                {"containers", {{{"name", "app"}, {"image", "app:1"}}}}}}};
  hub.sendObject("insert", "default/pod/hostnet", pod);
  json podStatus;
  REQUIRE(waitFor(
      [&] {
        auto p = hub.object("default/pod/hostnet");
        if (!p || !(*p)["status"].is_object() || (*p)["status"].value("phase", "") != "Running")
          return false;
        podStatus = (*p)["status"];
        return true;
      },
      20s));
  INFO("pod status: ", podStatus.dump());
  CHECK(podStatus["podIP"] == "192.0.2.77");
  CHECK(podStatus["hostIP"] == "192.0.2.77");
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
}

// Issue 17, item 8e: CloudHub refuses a client certificate outside its validity in the TLS
// handshake, which the client only sees as a failed handshake.
TEST_CASE(
    "a client certificate expired or not yet valid is named with its date: by --check-config "
    "(exit 78) and at connect (the log and outpostctl status)") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-cert", "system:nodes");
  std::string expired =
      reissueClientCert(dir.path(), "expired", "20200101000000Z", "20200102000000Z");
  std::string future =
      reissueClientCert(dir.path(), "future", "20990101000000Z", "20990102000000Z");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  CloudHubDouble hub(h);
  std::string config = (dir / "outpost.yaml").string();
  auto configure = [&](const std::string& cert) {
    writeFile(config, "node: {name: ws-cert, state_dir: " + (dir / "state").string() + "}\n" +
                          "runtime: {enabled: false}\ndevice: {enabled: false}\n" +
                          "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                          "  reconnect: {base: 200ms, cap: 1s}\n" + "  websocket: {server: \"" +
                          hub.url() + "\"}\n" + "  tls: {ca: " + tls.ca + ", cert: " + cert +
                          ", key: " + tls.clientKey + "}\n" + "api: {socket: " +
                          (dir / "outpost.sock").string() + ", metrics_address: \"\"}\n");
  };
  std::string err;
  configure(expired);
  CHECK(run({outpostd(), "--check-config", "--config", config}, nullptr, &err) ==
        outpost::agent::kExitConfig);
  CHECK(err.find("cloud.tls.cert: the client certificate " + expired +
                 " expired on 2020-01-02T00:00:00Z") != std::string::npos);
  configure(future);
  err.clear();
  CHECK(run({outpostd(), "--check-config", "--config", config}, nullptr, &err) ==
        outpost::agent::kExitConfig);
  CHECK(err.find("cloud.tls.cert: the client certificate " + future +
                 " is not valid before 2099-01-01T00:00:00Z") != std::string::npos);
  configure(tls.clientCert);
  CHECK(run({outpostd(), "--check-config", "--config", config}) == 0);

  // Started anyway (the node runs its pods offline), the link says why it cannot connect.
  configure(expired);
  Child agent({outpostd(), "--config", config});
  std::string out;
  CHECK(waitFor([&] {
    if (run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) != 0) return false;
    auto j = json::parse(out, nullptr, false);
    return j.is_object() && j.value("cloud", json::object())
                                    .value("last_error", "")
                                    .find("the client certificate " + expired +
                                          " expired on 2020-01-02T00:00:00Z") != std::string::npos;
  }));
  INFO("status: ", out);
  CHECK(!hub.refusals().empty());  // refused in the handshake, as CloudHub does
  CHECK(hub.openConnections() == 0);
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
  CHECK(agent.err().find("cannot connect to " + hub.url() + ": the client certificate " + expired +
                         " expired on 2020-01-02T00:00:00Z") != std::string::npos);
}

// Issue 17, item 4: under KubeEdge the default device id form is the one CloudCore 1.15 reads
// (the device's name alone); with the namespaced form its twin updates went unanswered.
TEST_CASE("under KubeEdge a device's twin reaches the cloud's Device with the default id form") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-twin", "system:nodes");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  CloudHubDouble hub(h);
  Mosquitto broker;
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config, "node: {name: ws-twin, state_dir: " + (dir / "state").string() + "}\n" +
                        "runtime: {enabled: false}\ndevice: {broker: \"" + broker.uri() + "\"}\n" +
                        "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                        "  websocket: {server: \"" + hub.url() + "\"}\n" + "  tls: {ca: " + tls.ca +
                        ", cert: " + tls.clientCert + ", key: " + tls.clientKey + "}\n" +
                        "api: {socket: " + (dir / "outpost.sock").string() +
                        ", metrics_address: \"\"}\n");
  Child agent({outpostd(), "--config", config});
  MqttTestClient device(broker.uri());
  device.subscribe("$hw/events/#");
  hub.sendObject("insert", "default/device/thermo",
                 {{"apiVersion", "devices.kubeedge.io/v1beta1"},
                  {"kind", "Device"},
                  {"metadata",
                   {{"name", "thermo"},
                    {"namespace", "default"},
                    {"uid", "6f1d2c3b-0000-4000-8000-00000000c001"},
                    {"resourceVersion", "3"}}},
                  {"spec", {{"nodeName", "ws-twin"}}}});
  // Bound under the name alone: the membership says so, and the device's topics are by name.
  REQUIRE(waitFor(
      [&] { return !device.messagesOn("$hw/events/node/ws-twin/membership/updated").empty(); },
      20s));
  json added = json::parse(
      device.messagesOn("$hw/events/node/ws-twin/membership/updated")[0].payload)["added_devices"];
  CHECK(added[0]["id"] == "thermo");
  device.publish(
      "$hw/events/device/thermo/twin/update",
      R"({"event_id":"e1","timestamp":1,"twin":{"temperature":{"actual":{"value":"21"}}}})");
  json reported;
  REQUIRE(waitFor(
      [&] {
        auto d = hub.object("default/device/thermo");
        if (!d || !(*d)["status"]["twins"].is_array()) return false;
        reported = (*d)["status"]["twins"];
        return true;
      },
      20s));
  CHECK(reported[0]["reported"]["value"] == "21");
  CHECK(!hub.receivedWhere("update", "device/thermo/twin/edge_updated").empty());
  CHECK(hub.receivedWhere("update", "device/default/").empty());
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);
}
