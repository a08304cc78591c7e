// outpostd with the hollow runtime (docs/hollow-nodes.md) against a real mosquitto, as a fleet test
// runs it: pods "run", their status reaches the broker, and the node says it is hollow.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "outpost/agent/exit_codes.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string writeConfig(const TempDir& dir, const std::string& broker,
                        const std::string& endpoint) {
  writeFile(dir / "outpost.yaml",
            "node: {name: edge-h, state_dir: " + (dir / "state").string() + "}\n" +
                "runtime: {endpoint: \"" + endpoint + "\"}\n" + "device: {enabled: false}\n" +
                "cloud: {mqtt: {broker: \"" + broker + "\"}, reconnect: {base: 100ms, cap: 1s}}\n" +
                "api: {socket: " + (dir / "o.sock").string() + ", metrics_address: \"\"}\n");
  return (dir / "outpost.yaml").string();
}

json podStatus(const std::string& config, const std::string& name) {
  json pod = json::parse(ctl(config, {"get", "pod", name, "-o", "json"}), nullptr, false);
  return pod.is_object() ? pod.value("status", json::object()) : json::object();
}

// The newest retained status the broker holds on `topic`: the envelope's content.
json retainedContent(const MqttTestClient& cloud, const std::string& topic) {
  auto got = cloud.messagesOn(topic);
  if (got.empty()) return json();
  json env = json::parse(got.back().payload, nullptr, false);
  if (!env.is_object() || !env.contains("content")) return json();
  json content = env["content"];
  return content.is_string() ? json::parse(content.get<std::string>(), nullptr, false) : content;
}

}  // namespace

TEST_CASE(
    "outpostd with hollow:// runs a desired pod to Running and reports it, stages a failed pull, "
    "has the pod's log, and says it is hollow in status and in its node status") {
  TempDir dir;
  Mosquitto broker;
  MqttTestClient cloud(broker.uri());
  cloud.subscribe("outpost/v1/nodes/edge-h/status/#");
  cloud.subscribe("outpost/v1/nodes/edge-h/desired/#");
  std::string config = writeConfig(dir, broker.uri(), "hollow://?start_latency=300ms");
  Child agent({outpostd(), "--config", config});

  std::string out;
  REQUIRE(waitFor([&] {
    return run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) == 0 &&
           json::parse(out, nullptr, false).contains("cloud");
  }));
  CHECK(json::parse(out)["hollow"] == true);
  out = ctl(config, {"status"});
  CHECK(out.find("Hollow:   yes, containers are simulated (runtime hollow://): not a real node") !=
        std::string::npos);
  CHECK(out.find("reconciling via hollow://?start_latency=300ms") != std::string::npos);

  writeFile(dir / "pods.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers: [{name: main, image: "nginx:1.25"}]
---
apiVersion: v1
kind: Pod
metadata: {name: nopull}
spec:
  containers: [{name: main, image: "registry.example/app:pull-fails"}]
)");
  int rc = -1;
  ctl(config, {"apply", "-f", (dir / "pods.yaml").string()}, &rc);
  REQUIRE(rc == 0);

  bool running =
      waitFor([&] { return podStatus(config, "web").value("phase", "") == "Running"; }, 30s);
  INFO("agent log:\n", agent.err());
  REQUIRE(running);
  json web = podStatus(config, "web");
  CHECK(web["containerStatuses"][0]["state"].contains("running"));
  CHECK(web["containerStatuses"][0]["restartCount"] == 0);

  // The status reached the broker, retained, as the cloud reads it.
  const std::string statusTopic = "outpost/v1/nodes/edge-h/status/";
  CHECK(waitFor([&] {
    return retainedContent(cloud, statusTopic + "default/pod/web").value("phase", "") == "Running";
  }));

  // The staged pull failure, with its reason, on the node and at the broker.
  auto pullReason = [](const json& status) {
    if (!status.is_object() || !status.contains("containerStatuses")) return std::string();
    const json& state = status["containerStatuses"][0]["state"];
    if (!state.contains("waiting")) return std::string();
    return state["waiting"].value("reason", "") + ": " + state["waiting"].value("message", "");
  };
  CHECK(waitFor([&] {
    std::string r = pullReason(podStatus(config, "nopull"));
    return (r.rfind("ErrImagePull: ", 0) == 0 || r.rfind("ImagePullBackOff: ", 0) == 0) &&
           r.find(
               "failed to pull image \"registry.example/app:pull-fails\": staged by its tag "
               "pull-fails") != std::string::npos;
  }));
  CHECK(waitFor([&] {
    return pullReason(retainedContent(cloud, statusTopic + "default/pod/nopull"))
               .find("staged by its tag pull-fails") != std::string::npos;
  }));

  // Each pod status carries the outpost object (docs/rollouts.md): the stored version it describes
  // (the one the desired topic carries) and its health.
  auto desiredVersion = [&](const std::string& key) {
    auto got = cloud.messagesOn("outpost/v1/nodes/edge-h/desired/" + key);
    if (got.empty()) return std::string();
    json env = json::parse(got.back().payload, nullptr, false);
    return env.is_object() ? env["header"].value("resourceversion", "") : std::string();
  };
  json outpost;
  CHECK(waitFor([&] {
    outpost = retainedContent(cloud, statusTopic + "default/pod/web").value("outpost", json());
    return outpost.is_object() && outpost.value("health", "") == "healthy";
  }));
  CHECK(!desiredVersion("default/pod/web").empty());
  CHECK(outpost["desiredVersion"] == desiredVersion("default/pod/web"));
  CHECK(outpost.contains("healthySince"));
  CHECK(waitFor([&] {
    outpost = retainedContent(cloud, statusTopic + "default/pod/nopull").value("outpost", json());
    return outpost.is_object() && outpost.value("health", "") == "unhealthy";
  }));
  CHECK((outpost["reason"] == "ErrImagePull" || outpost["reason"] == "ImagePullBackOff"));
  CHECK(outpost["desiredVersion"] == desiredVersion("default/pod/nopull"));

  // An image pre-pull: each image reported on the object's own status topic.
  writeFile(dir / "prepull.yaml", R"(apiVersion: outpost.io/v1
kind: ImagePrePull
metadata: {name: wave1}
spec:
  images: ["nginx:1.27", "registry.example/app:pull-fails"]
)");
  ctl(config, {"apply", "-f", (dir / "prepull.yaml").string()}, &rc);
  REQUIRE(rc == 0);
  json prepull;
  CHECK(waitFor([&] {
    prepull = retainedContent(cloud, statusTopic + "default/imageprepull/wave1");
    return prepull.is_object() && prepull["images"].size() == 2 &&
           prepull["images"][1].value("state", "") == "failed";
  }));
  CHECK(prepull["observedVersion"] == desiredVersion("default/imageprepull/wave1"));
  CHECK(prepull["images"][0]["image"] == "nginx:1.27");
  CHECK(prepull["images"][0]["state"] == "present");
  CHECK(prepull["images"][1]["reason"] == "ErrImagePull");
  CHECK(prepull["images"][1]["message"].get<std::string>().find("staged by its tag pull-fails") !=
        std::string::npos);

  // The node status carries the hollow label and names the runtime.
  json node;
  CHECK(waitFor([&] {
    node = retainedContent(cloud, statusTopic + "default/node/edge-h");
    return node.is_object() && node.contains("metadata");
  }));
  CHECK(node["metadata"]["labels"]["outpost.io/hollow"] == "true");
  CHECK(node["nodeInfo"]["containerRuntimeVersion"] == "hollow://1");

  // A hollow container has a line of log.
  out = ctl(config, {"logs", "web"}, &rc);
  CHECK(rc == 0);
  CHECK(out == "hollow container main started (image nginx:1.25)\n");

  agent.signal(SIGTERM);
  CHECK(agent.wait(5s) == outpost::agent::kExitOk);
}

TEST_CASE(
    "outpostctl hold defers a running pod's update (status held, the old version runs on), the "
    "hold survives a restart, release lets the update through; a bad maintenance window exits "
    "78") {
  TempDir dir;
  Mosquitto broker;
  MqttTestClient cloud(broker.uri());
  cloud.subscribe("outpost/v1/nodes/edge-h/status/#");
  std::string config = writeConfig(dir, broker.uri(), "hollow://");
  auto image = [&] {
    json web = podStatus(config, "web");
    return web.contains("containerStatuses") ? web["containerStatuses"][0].value("image", "")
                                             : std::string();
  };
  auto outpost = [&] {
    return retainedContent(cloud, "outpost/v1/nodes/edge-h/status/default/pod/web")
        .value("outpost", json::object());
  };
  auto applyWeb = [&](const std::string& img) {
    writeFile(dir / "web.yaml",
              "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n"
              "  containers: [{name: main, image: \"" +
                  img + "\"}]\n");
    int rc = -1;
    ctl(config, {"apply", "-f", (dir / "web.yaml").string()}, &rc);
    REQUIRE(rc == 0);
  };
  auto agent = std::make_unique<Child>(std::vector<std::string>{outpostd(), "--config", config});
  applyWeb("nginx:1.25");
  REQUIRE(waitFor([&] { return outpost().value("health", "") == "healthy"; }, 30s));
  std::string v1 = outpost().value("desiredVersion", "");

  int rc = -1;
  std::string out = ctl(config, {"hold", "web", "--for", "2h"}, &rc);
  REQUIRE(rc == 0);
  CHECK(out.find("Hold:     default/pod/web, until ") != std::string::npos);
  applyWeb("nginx:1.27");
  REQUIRE(waitFor([&] { return outpost().value("health", "") == "held"; }, 30s));
  CHECK(outpost()["reason"] == "OnHold");
  CHECK(outpost()["desiredVersion"] == v1);
  std::string v2 = outpost().value("pendingVersion", "");
  CHECK(!v2.empty());
  CHECK(v2 != v1);
  CHECK(image() == "nginx:1.25");
  out = ctl(config, {"status"});
  CHECK(out.find("Waiting:  default/pod/web version " + v1 + " -> " + v2 + " (OnHold") !=
        std::string::npos);

  // A restart: the hold and the running version are kept in the store.
  agent->signal(SIGTERM);
  REQUIRE(agent->wait(10s) == outpost::agent::kExitOk);
  agent = std::make_unique<Child>(std::vector<std::string>{outpostd(), "--config", config});
  REQUIRE(waitFor(
      [&] {
        return ctl(config, {"status"}).find("Waiting:  default/pod/web") != std::string::npos;
      },
      30s));
  CHECK(image() == "nginx:1.25");

  out = ctl(config, {"release", "web"}, &rc);
  CHECK(rc == 0);
  CHECK(waitFor([&] { return image() == "nginx:1.27"; }, 30s));
  CHECK(waitFor([&] { return outpost().value("desiredVersion", "") == v2; }, 30s));
  CHECK(ctl(config, {"status"}).find("Hold:") == std::string::npos);
  CHECK(ctl(config, {"hold", "Bad_Name"}, &rc).empty());
  CHECK(rc == outpost::agent::kExitUsage);
  agent->signal(SIGTERM);
  CHECK(agent->wait(10s) == outpost::agent::kExitOk);

  // A maintenance window the node cannot read: exit 78, the entry named.
  writeFile(dir / "bad.yaml",
            "node: {name: edge-h, maintenance_windows: [\"Mon-Fri 22:00\"]}\n"
            "runtime: {endpoint: \"hollow://\"}\n");
  std::string err;
  CHECK(run({outpostd(), "--check-config", "--config", (dir / "bad.yaml").string()}, nullptr,
            &err) == outpost::agent::kExitConfig);
  CHECK(err.find("node.maintenance_windows[0]: \"Mon-Fri 22:00\": \"22:00\" is not a time range") !=
        std::string::npos);
}

TEST_CASE(
    "outpostctl hollow clock moves a hollow node's time, which its pod status follows; a node "
    "with a real runtime refuses it") {
  TempDir dir;
  Mosquitto broker;
  MqttTestClient cloud(broker.uri());
  cloud.subscribe("outpost/v1/nodes/edge-h/status/#");
  std::string config = writeConfig(dir, broker.uri(), "hollow://");
  Child agent({outpostd(), "--config", config});
  REQUIRE(waitFor([&] { return !ctl(config, {"status"}).empty(); }, 30s));
  int rc = -1;
  std::string out = ctl(config, {"hollow", "clock", "set", "2030-01-07T03:04:05Z"}, &rc);
  CHECK(rc == 0);
  CHECK(out.rfind("Time:     2030-01-07T03:04:0", 0) == 0);
  CHECK(ctl(config, {"hollow", "clock"}).rfind("Time:     2030-01-07T03:0", 0) == 0);
  // What the node reports is stamped by its clock: a pod started now started in 2030.
  writeFile(dir / "web.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n"
            "  containers: [{name: main, image: \"nginx:1.25\"}]\n");
  ctl(config, {"apply", "-f", (dir / "web.yaml").string()}, &rc);
  REQUIRE(rc == 0);
  auto startedAt = [&] {
    json st = retainedContent(cloud, "outpost/v1/nodes/edge-h/status/default/pod/web");
    return st.is_object() ? st.value("startTime", "") : std::string();
  };
  REQUIRE(waitFor([&] { return !startedAt().empty(); }, 30s));
  CHECK(startedAt().rfind("2030-01-07T03:0", 0) == 0);
  out = ctl(config, {"hollow", "clock", "reset"}, &rc);
  CHECK(rc == 0);
  CHECK(out.find("(0 s from the host's clock)") != std::string::npos);
  ctl(config, {"hollow", "clock", "set", "yesterday"}, &rc);
  CHECK(rc == outpost::agent::kExitUsage);
  agent.signal(SIGTERM);
  CHECK(agent.wait(10s) == outpost::agent::kExitOk);

  // containerd (here one that is not there): the clock is the host's, the call is refused.
  TempDir real;
  config = writeConfig(real, broker.uri(), "unix://" + (real / "containerd.sock").string());
  Child node({outpostd(), "--config", config});
  REQUIRE(waitFor([&] { return !ctl(config, {"status"}).empty(); }, 30s));
  std::string err;
  CHECK(run({outpostctl(), "-c", config, "hollow", "clock", "set", "2030-01-07T03:04:05Z"}, &out,
            &err) == outpost::agent::kExitFailure);
  CHECK(err.find("the agent answered 409: only a hollow node has a simulated clock "
                 "(runtime.endpoint hollow://, docs/hollow-nodes.md)") != std::string::npos);
  node.signal(SIGTERM);
  CHECK(node.wait(10s) == outpost::agent::kExitOk);
}

TEST_CASE("a malformed hollow:// endpoint exits 78 naming the key and what is wrong") {
  TempDir dir;
  std::string config = writeConfig(dir, "tcp://127.0.0.1:1", "hollow://?start_latency=fast");
  Child agent({outpostd(), "--config", config});
  CHECK(agent.wait(10s) == outpost::agent::kExitConfig);
  CHECK(agent.err().find("runtime.endpoint: hollow:// start_latency \"fast\" is not a whole number "
                         "with ms, s or m") != std::string::npos);

  std::string err;
  config = writeConfig(dir, "tcp://127.0.0.1:1", "hollow://node-3");
  CHECK(run({outpostd(), "--check-config", "--config", config}, nullptr, &err) ==
        outpost::agent::kExitConfig);
  CHECK(err.find("runtime.endpoint: hollow:// takes no host or path (found \"node-3\")") !=
        std::string::npos);
}
