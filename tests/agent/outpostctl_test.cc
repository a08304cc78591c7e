// outpostctl apply/delete/get against the real outpostd and a real mosquitto, as an operator uses
// them.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <set>

#include "outpost/agent/exit_codes.h"
#include "outpost/cloudhub/desired_publisher.h"
#include "support/mosquitto.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string outpostd() { return (binDir() / "outpostd").string(); }
std::string outpostctl() { return (binDir() / "outpostctl").string(); }

std::string writeConfig(const TempDir& dir, const Mosquitto& broker) {
  writeFile(dir / "outpost.yaml",
            "node: {name: edge-7, state_dir: " + (dir / "state").string() + "}\n" +
                "runtime: {enabled: false}\n" + "device: {broker: \"" + broker.uri() + "\"}\n" +
                "cloud: {mqtt: {broker: \"" + broker.uri() +
                "\"}, reconnect: {base: 100ms, cap: 1s}}\n" +
                "api: {socket: " + (dir / "o.sock").string() + ", metrics_address: \"\"}\n");
  return (dir / "outpost.yaml").string();
}

json getJson(const std::string& config, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {outpostctl(), "-c", config, "get"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"-o", "json"});
  std::string out;
  if (run(argv, &out) != 0) return json();
  return json::parse(out, nullptr, false);
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
  std::string config = writeConfig(dir, broker);
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
---
{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-cfg"}, "data": {"greeting": "hello"}}
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
        outpost::agent::kExitFailure);
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
  std::string config = writeConfig(dir, broker);
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
