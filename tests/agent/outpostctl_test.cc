// outpostctl apply/delete/get/describe/logs against the real outpostd, a real mosquitto and (for
// pods that run) a real containerd, as an operator uses them.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "ctl_config.h"
#include "outpost/agent/api_server.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/cloudhub/desired_publisher.h"
#include "support/containerd_harness.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

json getJson(const std::string& config, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {outpostctl(), "-c", config, "get"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"-o", "json"});
  std::string out;
  if (run(argv, &out) != 0) return json();
  return json::parse(out, nullptr, false);
}

// One containerd for the tests of this file that run pods, started on first use.
ContainerdHarness* containerd(std::string& why) {
  static std::string reason = ContainerdHarness::unavailableReason();
  static std::unique_ptr<ContainerdHarness> harness = [] {
    std::unique_ptr<ContainerdHarness> h;
    if (!reason.empty()) return h;
    try {
      h = std::make_unique<ContainerdHarness>();
      h->start();
    } catch (const std::exception& e) {
      reason = e.what();
      h.reset();
    }
    return h;
  }();
  why = reason;
  return harness.get();
}

size_t countItems(const std::string& config, const std::string& type) {
  json j = getJson(config, {type, "-n", "*"});
  return j.is_object() && j["items"].is_array() ? j["items"].size() : 0;
}

}  // namespace

TEST_CASE(
    "outpostctl apply publishes desired objects the agent stores; get shows them; delete withdraws "
    "them") {
  TempDir dir;
  Mosquitto broker;
  std::string config = writeCtlConfig(dir, broker);
  Child agent({outpostd(), "--config", config});
  writeFile(dir / "objects.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  containers: [{name: main, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: shop}
stringData: {password: hunter2}
data: {token: c2VjcmV0LXRva2Vu}
---
{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-cfg"}, "data": {"greeting": "hello", "port": "19", "debug": "true", "mode": "on"}}
)");
  std::string out, err;
  REQUIRE(run({outpostctl(), "-c", config, "apply", "-f", (dir / "objects.yaml").string()}, &out,
              &err) == 0);
  CHECK(out.find("default/pod/hello published for node edge-7") != std::string::npos);

  REQUIRE(waitFor(
      [&] { return countItems(config, "pods") == 1 && countItems(config, "secrets") == 1; }));
  json pod = getJson(config, {"pod", "hello"});
  CHECK(pod["spec"]["containers"][0]["command"][1] == "3600");
  CHECK(pod["metadata"]["uid"].get<std::string>().size() == 36);
  // Secret values never leave the agent.
  json secret = getJson(config, {"secret", "creds", "-n", "shop"});
  CHECK(secret["stringData"]["password"] == "(hidden, 7 bytes)");
  REQUIRE(run({outpostctl(), "-c", config, "get", "secret", "creds", "-n", "shop", "-o", "yaml"},
              &out) == 0);
  CHECK(out.find("hunter2") == std::string::npos);
  REQUIRE(run({outpostctl(), "-c", config, "get", "configmaps"}, &out) == 0);
  CHECK(out.find("app-cfg") != std::string::npos);
  // -o yaml quotes strings that would read back as numbers or booleans, so what get prints can be
  // applied again unchanged.
  REQUIRE(run({outpostctl(), "-c", config, "get", "configmap", "app-cfg", "-o", "yaml"}, &out) ==
          0);
  CHECK(out.find("port: \"19\"") != std::string::npos);
  CHECK(out.find("debug: \"true\"") != std::string::npos);
  CHECK(out.find("mode: \"on\"") != std::string::npos);
  CHECK(out.find("greeting: hello") != std::string::npos);
  writeFile(dir / "printed.yaml", out);
  std::string cfgVersion = getJson(config, {"configmap", "app-cfg"})["metadata"]["resourceVersion"];
  REQUIRE(run({outpostctl(), "-c", config, "apply", "-f", (dir / "printed.yaml").string()}) == 0);
  REQUIRE(waitFor([&] {
    return getJson(config, {"configmap", "app-cfg"})["metadata"]["resourceVersion"] != cfgVersion;
  }));
  json cfg = getJson(config, {"configmap", "app-cfg"});
  CHECK(cfg["data"]["port"] == "19");
  CHECK(cfg["data"]["debug"] == "true");
  CHECK(cfg["data"]["mode"] == "on");

  // describe: a configmap shows its data, a secret only its keys and sizes.
  int rc = -1;
  out = ctl(config, {"describe", "configmap", "app-cfg"}, &rc);
  CHECK(rc == 0);
  CHECK(out.find("Name:             app-cfg") != std::string::npos);
  CHECK(out.find("  greeting:\n    hello\n") != std::string::npos);
  out = ctl(config, {"describe", "secret", "creds", "-n", "shop"}, &rc);
  CHECK(rc == 0);
  CHECK(out.find("  password: 7 bytes\n") != std::string::npos);
  CHECK(out.find("  token: 12 bytes\n") != std::string::npos);  // decoded size of base64 data
  CHECK(out.find("c2VjcmV0") == std::string::npos);
  CHECK(out.find("hunter2") == std::string::npos);
  out = ctl(config, {"describe", "secret", "creds", "-n", "shop", "-o", "json"}, &rc);
  CHECK(out.find("hunter2") == std::string::npos);
  CHECK(json::parse(out)["stringData"]["password"] == "(hidden, 7 bytes)");
  // A pod on a node without a runtime: its spec, no status, no events; no logs to read.
  out = ctl(config, {"describe", "pod", "hello"}, &rc);
  CHECK(rc == 0);
  CHECK(out.find("Containers:\n  main:\n") != std::string::npos);
  CHECK(out.find("    Command:      sleep 3600") != std::string::npos);
  CHECK(out.find("Events: <none since the agent started>") != std::string::npos);
  out = ctl(config, {"logs", "hello"}, &rc, &err);
  CHECK(rc == outpost::agent::kExitNotFound);
  CHECK(err.find("the runtime is disabled on this node") != std::string::npos);
  ctl(config, {"describe", "pod", "nosuch"}, &rc, &err);
  CHECK(rc == outpost::agent::kExitNotFound);
  CHECK(err.find("pod \"nosuch\" not found in namespace default") != std::string::npos);
  ctl(config, {"describe", "pizza", "x"}, &rc, &err);
  CHECK(rc == outpost::agent::kExitUsage);
  CHECK(err.find("the types are pod, configmap, secret, device, twin") != std::string::npos);

  // Re-applying keeps the uid and raises the version.
  std::string uid = pod["metadata"]["uid"];
  std::string version = pod["metadata"]["resourceVersion"];
  REQUIRE(run({outpostctl(), "-c", config, "apply", "-f", (dir / "objects.yaml").string()}) == 0);
  REQUIRE(waitFor([&] {
    return getJson(config, {"pod", "hello"})["metadata"]["resourceVersion"] != version;
  }));
  CHECK(getJson(config, {"pod", "hello"})["metadata"]["uid"] == uid);

  REQUIRE(run({outpostctl(), "-c", config, "delete", "pod", "hello"}, &out) == 0);
  CHECK(out.find("default/pod/hello deleted for node edge-7") != std::string::npos);
  REQUIRE(waitFor([&] { return countItems(config, "pods") == 0; }));
  CHECK(countItems(config, "secrets") == 1);
  CHECK(run({outpostctl(), "-c", config, "get", "pod", "hello"}, nullptr, &err) ==
        outpost::agent::kExitNotFound);
  CHECK(err.find("not found") != std::string::npos);

  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);
}

TEST_CASE("outpostctl reports bad manifests and an unreachable broker clearly") {
  TempDir dir;
  std::string err;
  writeFile(dir / "bad.yaml", "kind: Pod\nmetadata: {namespace: x}\n");
  CHECK(run({outpostctl(), "apply", "--node", "n", "--broker", "tcp://127.0.0.1:1", "-f",
             (dir / "bad.yaml").string()},
            nullptr, &err) == outpost::agent::kExitFailure);
  CHECK(err.find("document 1: metadata.name is missing") != std::string::npos);
  writeFile(dir / "ok.yaml", "kind: Pod\nmetadata: {name: p}\n");
  CHECK(run({outpostctl(), "apply", "--node", "n", "--broker", "tcp://127.0.0.1:1", "-f",
             (dir / "ok.yaml").string()},
            nullptr, &err) == outpost::agent::kExitUnavailable);
  CHECK(err.find("cannot reach the broker tcp://127.0.0.1:1") != std::string::npos);
  CHECK(run({outpostctl(), "delete", "--node", "n", "pod"}) == outpost::agent::kExitUsage);
}

TEST_CASE("an agent killed mid-stream and restarted holds exactly the published desired set") {
  TempDir dir;
  Mosquitto broker;
  std::string config = writeCtlConfig(dir, broker);
  outpost::cloudhub::PublisherOptions po;
  po.broker = broker.uri();
  auto pub = outpost::cloudhub::DesiredPublisher::connect(po);
  REQUIRE(pub.isOk());
  outpost::cloudhub::Scope scope{outpost::cloudhub::Scope::Kind::kNode, "edge-7"};
  auto podJson = [](int i) {
    return json{
        {"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p" + std::to_string(i)}}}}
        .dump();
  };
  {
    Child agent({outpostd(), "--config", config});
    for (int i = 0; i < 40; ++i) {
      REQUIRE((*pub)->apply(scope, {{"default/pod/p" + std::to_string(i), podJson(i)}}).isOk());
      if (i == 25) agent.signal(SIGKILL);  // no clean shutdown, mid-stream
    }
    CHECK(agent.wait(5s) == 128 + SIGKILL);
  }
  // While it is down: some withdrawn.
  REQUIRE((*pub)->remove(scope, {"default/pod/p3", "default/pod/p30"}).isOk());
  Child agent({outpostd(), "--config", config});
  bool converged = waitFor([&] { return countItems(config, "pods") == 38; }, 20s);
  std::string held;
  json all = getJson(config, {"pods"});
  for (const auto& p : all["items"]) held += p["metadata"]["name"].get<std::string>() + " ";
  std::string log = agent.err();
  INFO("pods held: ", held, "\nagent log:\n", log);
  REQUIRE(converged);
  json pods = getJson(config, {"pods"});
  std::set<std::string> names;
  for (const auto& p : pods["items"]) names.insert(p["metadata"]["name"].get<std::string>());
  CHECK(names.count("p3") == 0);
  CHECK(names.count("p30") == 0);
  CHECK(names.count("p39") == 1);
  CHECK(names.count("p0") == 1);
  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);
}

TEST_CASE("outpostctl get twins and describe device show a device's expected and actual values") {
  TempDir dir;
  Mosquitto broker;
  std::string config = writeCtlConfig(dir, broker);
  Child agent({outpostd(), "--config", config});
  MqttTestClient device(broker.uri(), nullptr, "thermostat");
  const std::string topic = "$hw/events/device/default/thermostat/twin/";
  device.subscribe(topic + "update/result");
  writeFile(dir / "device.yaml", R"(apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: thermostat, namespace: default}
spec:
  nodeName: edge-7
  deviceModelRef: {name: thermostat-model}
  properties:
    - name: target-temperature
      desired: {value: "22", metadata: {type: int}}
)");
  int rc = -1;
  std::string err;
  ctl(config, {"apply", "-f", (dir / "device.yaml").string()}, &rc);
  REQUIRE(rc == 0);
  auto twinOf = [&] {
    return json::parse(ctl(config, {"get", "twins", "-o", "json"}), nullptr, false);
  };
  REQUIRE(waitFor([&] {
    json t = twinOf();
    return t.is_object() && t["items"].size() == 1 && !t["items"][0]["properties"].empty() &&
           t["items"][0]["properties"][0]["expected"].is_object();
  }));
  // The device reports its actual value.
  device.publish(
      topic + "update",
      R"({"event_id":"e1","timestamp":1,"twin":{"target-temperature":{"actual":{"value":"19"},"metadata":{"type":"int"}}}})");
  REQUIRE(waitFor([&] { return !device.messagesOn(topic + "update/result").empty(); }));
  json t = twinOf();
  REQUIRE(t["items"].size() == 1);
  const json& prop = t["items"][0]["properties"][0];
  CHECK(t["items"][0]["device"] == "default/thermostat");
  CHECK(prop["name"] == "target-temperature");
  CHECK(prop["type"] == "int");
  CHECK(prop["expected"]["value"] == "22");
  CHECK(prop["actual"]["value"] == "19");

  std::string out = ctl(config, {"get", "twins"}, &rc);
  CHECK(rc == 0);
  CHECK(out.find("DEVICE") == 0);
  CHECK(out.find("default/thermostat      target-temperature  int       22              19 ") !=
        std::string::npos);
  out = ctl(config, {"get", "twins", "thermostat", "-o", "yaml"}, &rc);
  CHECK(rc == 0);
  CHECK(out.find("device: default/thermostat") != std::string::npos);

  out = ctl(config, {"describe", "device", "thermostat"}, &rc);
  CHECK(rc == 0);
  CHECK(out.find("Model:            thermostat-model") != std::string::npos);
  CHECK(out.find("Twin:\n  target-temperature (int):\n    Expected:     22") != std::string::npos);
  CHECK(out.find("    Actual:       19") != std::string::npos);
  CHECK(out.find("    Delta:        actual differs from expected") != std::string::npos);
  out = ctl(config, {"describe", "twin", "thermostat", "-o", "json"}, &rc);
  CHECK(rc == 0);
  CHECK(json::parse(out)["properties"][0]["actual"]["value"] == "19");

  ctl(config, {"get", "twins", "boiler"}, &rc, &err);
  CHECK(rc == outpost::agent::kExitNotFound);
  CHECK(err.find("no twin for device \"boiler\"") != std::string::npos);
  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);
}

// The routes agent/ makes between the cloud link and the twins (agent/src/modules.cc): the cloud's
// twin messages reach the twin service (and are acked once stored), and what the twins queue for
// the cloud is sent.
TEST_CASE(
    "outpostd hands the cloud's twin changes to the twins, acks them once stored, and sends the "
    "device's changes to the cloud") {
  TempDir dir;
  Mosquitto broker;
  std::string config = writeCtlConfig(dir, broker);
  const std::string up = "outpost/v1/nodes/edge-7/up";
  const std::string down = "outpost/v1/nodes/edge-7/down";
  MqttTestClient cloud(broker.uri(), nullptr, "cloud");
  cloud.subscribe(up);
  MqttTestClient device(broker.uri(), nullptr, "thermostat");
  const std::string topic = "$hw/events/device/default/thermostat/twin/";
  device.subscribe(topic + "#");
  Child agent({outpostd(), "--config", config});
  writeFile(dir / "device.yaml", R"(apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: thermostat, namespace: default}
spec:
  nodeName: edge-7
  deviceModelRef: {name: thermostat-model}
  properties:
    - name: target-temperature
      desired: {value: "22", metadata: {type: int}}
)");
  int rc = -1;
  ctl(config, {"apply", "-f", (dir / "device.yaml").string()}, &rc);
  REQUIRE(rc == 0);
  auto property = [&]() -> json {
    json t = json::parse(ctl(config, {"get", "twins", "-o", "json"}), nullptr, false);
    if (!t.is_object() || t["items"].size() != 1 || t["items"][0]["properties"].empty())
      return json();
    return t["items"][0]["properties"][0];
  };
  REQUIRE(waitFor([&] { return property().is_object(); }));
  auto sentUp = [&](const std::function<bool(const json&)>& match) {
    for (const auto& m : cloud.messagesOn(up)) {
      json j = json::parse(m.payload, nullptr, false);
      if (j.is_object() && match(j)) return true;
    }
    return false;
  };

  // The device's change goes to the cloud as the edge's twin.
  device.publish(
      topic + "update",
      R"({"event_id":"e1","timestamp":1,"twin":{"target-temperature":{"actual":{"value":"19"},"metadata":{"type":"int"}}}})");
  REQUIRE(waitFor([&] {
    return sentUp([](const json& j) {
      return j["route"]["resource"] == "device/default/thermostat/twin/edge_updated" &&
             j["content"]["twin"]["target-temperature"]["actual"]["value"] == "19";
    });
  }));

  // The cloud's change reaches the twin, then the device, and is acked as the twin module acks.
  json env = {{"header", {{"msg_id", "c1"}, {"timestamp", 1}}},
              {"route",
               {{"source", "devicecontroller"},
                {"group", "twin"},
                {"operation", "update"},
                {"resource", "device/default/thermostat/twin/cloud_updated"}}},
              {"content",
               {{"event_id", "c1"},
                {"twin",
                 {{"target-temperature",
                   {{"expected", {{"value", "24"}}},
                    {"expected_version", {{"cloud", 2}, {"edge", 0}}},
                    {"metadata", {{"type", "int"}}}}}}}}}};
  cloud.publish(down, env.dump());
  REQUIRE(waitFor([&] {
    return sentUp([](const json& j) {
      return j["header"].value("parent_msg_id", "") == "c1" &&
             j["route"]["operation"] == "response" && j["route"]["group"] == "twin" &&
             j["content"] == "OK";
    });
  }));
  CHECK(property()["expected"]["value"] == "24");  // acked only once stored
  REQUIRE(waitFor([&] { return !device.messagesOn(topic + "update/delta").empty(); }));
  json delta = json::parse(device.messagesOn(topic + "update/delta").back().payload);
  CHECK(delta["delta"]["target-temperature"] == "24");

  // A cloud twin the twins cannot apply (no such device here) is not acked.
  env["header"]["msg_id"] = "g1";
  env["route"]["resource"] = "device/default/ghost/twin/cloud_updated";
  cloud.publish(down, env.dump());
  REQUIRE(waitFor([&] {
    json s = json::parse(ctl(config, {"status", "-o", "json"}), nullptr, false);
    return s.is_object() && s["cloud"]["messages_invalid"] == 1;
  }));
  CHECK_FALSE(sentUp([](const json& j) { return j["header"].value("parent_msg_id", "") == "g1"; }));
  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);
}

TEST_CASE(
    "outpostctl describe and logs show a real pod's containers, events and CRI log output, and "
    "logs -f follows the container into its next attempt; outpost_pods counts it by phase") {
  std::string why;
  ContainerdHarness* cri = containerd(why);
  if (!cri) {
    MESSAGE("skipped: " << why);
    return;
  }
  TempDir dir;
  Mosquitto broker;
  writeFile(dir / "outpost.yaml",
            "node: {name: edge-7, state_dir: " + (dir / "state").string() + "}\n" +
                "runtime: {endpoint: \"" + cri->endpoint() + "\", sandbox_image: \"" +
                ContainerdHarness::kPause + "\", cgroup_parent: \"" +
                cri->cgroupParent().substr(1) + "\"}\n" + "device: {enabled: false}\n" +
                "cloud: {mqtt: {broker: \"" + broker.uri() +
                "\"}, reconnect: {base: 100ms, cap: 1s}}\n" +
                "api: {socket: " + (dir / "o.sock").string() + ", metrics_address: \"\"}\n");
  std::string config = (dir / "outpost.yaml").string();
  Child agent({outpostd(), "--config", config});
  // "talker" runs until deleted; "once" prints on both streams, one line longer than containerd's
  // 16 KiB line buffer (written as partial entries), counts its runs in an emptyDir, and exits 3.
  const std::string once =
      "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; "
      "echo run-$n; echo to-stderr >&2; head -c 20000 /dev/zero | tr '\\0' x; echo; exit 3";
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", "chatty"}}},
              {"spec",
               {{"hostNetwork", true},
                {"terminationGracePeriodSeconds", 1},
                {"volumes", {{{"name", "data"}, {"emptyDir", json::object()}}}},
                {"containers",
                 {{{"name", "talker"},
                   {"image", ContainerdHarness::kBusybox},
                   {"command",
                    {"/bin/sh", "-c",
                     "trap 'exit 0' TERM; echo hello-from-talker; "
                     "while true; do sleep 1; done"}}},
                  {{"name", "once"},
                   {"image", ContainerdHarness::kBusybox},
                   {"command", {"/bin/sh", "-c", once}},
                   {"volumeMounts", {{{"name", "data"}, {"mountPath", "/data"}}}}}}}}}};
  writeFile(dir / "pod.json", pod.dump());
  int rc = -1;
  std::string err;
  ctl(config, {"apply", "-f", (dir / "pod.json").string()}, &rc);
  REQUIRE(rc == 0);

  // describe: the crash and its back-off, as events.
  std::string out;
  bool backedOff = waitFor(
      [&] {
        out = ctl(config, {"describe", "pod", "chatty"});
        return out.find("Back-off 10s restarting failed container once") != std::string::npos;
      },
      60s);
  INFO("describe:\n", out, "\nagent log:\n", agent.err());
  REQUIRE(backedOff);
  CHECK(out.find("Name:             chatty") != std::string::npos);
  CHECK(out.find("Containers:\n  talker:\n") != std::string::npos);
  CHECK(out.find(std::string("    Image:        ") + ContainerdHarness::kBusybox) !=
        std::string::npos);
  CHECK(out.find("Conditions:\n  TYPE") != std::string::npos);
  CHECK(out.find("Warning  Exited") != std::string::npos);
  CHECK(out.find("Container once exited with code 3 (Error)") != std::string::npos);
  CHECK(out.find("Normal   Started") != std::string::npos);
  json described = json::parse(ctl(config, {"describe", "pod", "chatty", "-o", "json"}));
  CHECK(described["metadata"]["name"] == "chatty");
  CHECK(described["status"]["containerStatuses"].size() == 2);
  std::set<std::string> reasons;
  for (const auto& e : described["events"]) reasons.insert(e["reason"].get<std::string>());
  CHECK(reasons.count("Created") == 1);
  CHECK(reasons.count("BackOff") == 1);

  // logs: a pod with two containers needs -c; unknown pods and containers are named.
  ctl(config, {"logs", "chatty"}, &rc, &err);
  CHECK(rc == outpost::agent::kExitUsage);
  CHECK(err.find("pod chatty has 2 containers (talker, once): choose one with -c CONTAINER") !=
        std::string::npos);
  ctl(config, {"logs", "chatty", "-c", "nope"}, &rc, &err);
  CHECK(rc == outpost::agent::kExitNotFound);
  CHECK(err.find("pod chatty has no container \"nope\"; its containers: talker, once") !=
        std::string::npos);
  ctl(config, {"logs", "ghost"}, &rc, &err);
  CHECK(rc == outpost::agent::kExitNotFound);

  out = ctl(config, {"logs", "chatty", "-c", "talker"}, &rc);
  CHECK(rc == 0);
  CHECK(out == "hello-from-talker\n");
  // The newest attempt of "once" (a run after the first restart): both streams, the long line
  // joined from containerd's partial entries.
  out = ctl(config, {"logs", "chatty", "-c", "once"}, &rc);
  CHECK(rc == 0);
  std::string xs(20000, 'x');
  // stdout and stderr are copied into the file separately: their order is not fixed.
  auto runAt = out.find("run-");
  int attempt = runAt == std::string::npos ? 0 : std::atoi(out.c_str() + runAt + 4);
  CHECK(attempt >= 2);
  CHECK(out.find("to-stderr\n") != std::string::npos);
  CHECK(out.find("\n" + xs + "\n") != std::string::npos);
  CHECK(out.size() == ("run-" + std::to_string(attempt) + "\nto-stderr\n" + xs + "\n").size());
  out = ctl(config, {"logs", "chatty", "-c", "once", "--tail", "1"}, &rc);
  CHECK(rc == 0);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);  // one whole line, of the three
  CHECK((out == xs + "\n" || out == "to-stderr\n"));

  // The file itself is in CRI format, the long line in partial entries.
  std::string raw = readFile(std::filesystem::path(described["logDirectory"].get<std::string>()) /
                             "once" / (std::to_string(attempt - 1) + ".log"));
  CHECK(raw.find(" stdout P xxx") != std::string::npos);
  CHECK(raw.find(" stderr F to-stderr\n") != std::string::npos);

  // -f follows into the next attempt once the back-off has passed.
  Child follow({outpostctl(), "-c", config, "logs", "chatty", "-c", "once", "-f"});
  std::string next = "run-" + std::to_string(attempt + 1) + "\n";
  bool followed = waitFor([&] { return follow.out().find(next) != std::string::npos; }, 45s);
  INFO("logs -f printed:\n", follow.out().substr(0, 200), "\nerr: ", follow.err());
  CHECK(followed);
  CHECK(follow.out().find("run-" + std::to_string(attempt) + "\n") != std::string::npos);

  // outpost_pods counts the pod as Running (one container runs).
  auto m = outpost::agent::callUnixSocket((dir / "o.sock").string(), "GET", "/metrics");
  REQUIRE(m.isOk());
  CHECK(m->body.find("outpost_pods{phase=\"Running\"} 1\n") != std::string::npos);
  CHECK(m->body.find("outpost_pods{phase=\"Failed\"} 0\n") != std::string::npos);
  CHECK(m->body.find("outpost_deploy_errors_total{reason=\"Exited\"}") != std::string::npos);

  // Deleting the pod ends logs -f.
  ctl(config, {"delete", "pod", "chatty"}, &rc);
  REQUIRE(rc == 0);
  CHECK(follow.wait(30s) == 0);
  CHECK(follow.err().find("pod chatty was removed") != std::string::npos);
  agent.signal(SIGTERM);
  CHECK(agent.wait(5s) == 0);
}
