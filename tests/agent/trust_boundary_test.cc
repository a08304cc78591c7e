// The trust boundary as an attacker with a cloud publisher's rights meets it: every path-traversal
// form published to the broker, against the real outpostd with a real containerd, and the file
// system walked before and after to show that nothing outside the state dir was created, changed or
// removed (docs/security.md).
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "outpost/cloudhub/mqtt_link.h"
#include "support/containerd_harness.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"
#include "support/test_util.h"

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Every entry under `root` except `skip` (the state dir), with its type, size and mtime, without
// following symlinks.
std::map<std::string, std::string> walk(const fs::path& root, const fs::path& skip) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::path& p = it->path();
    if (p == skip) {
      it.disable_recursion_pending();
      continue;
    }
    auto st = fs::symlink_status(p, ec);
    std::string what = std::to_string(static_cast<int>(st.type()));
    if (fs::is_regular_file(st)) what += " " + std::to_string(fs::file_size(p, ec));
    if (!fs::is_directory(st)) {
      auto t = fs::last_write_time(p, ec);
      what += " " + std::to_string(t.time_since_epoch().count());
    }
    out[p.lexically_relative(root).string()] = what;
  }
  return out;
}

json envelope(const std::string& key, const json& object, const std::string& msgId) {
  return {
      {"header", {{"msg_id", msgId}, {"timestamp", 1}, {"resourceversion", "1"}}},
      {"route",
       {{"source", "attacker"}, {"group", "resource"}, {"operation", "update"}, {"resource", key}}},
      {"content", object}};
}

json podWith(const std::string& name, json patch) {
  json p = {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", name}, {"namespace", "default"}, {"uid", "uid-" + name}}},
            {"spec",
             {{"terminationGracePeriodSeconds", 1},
              {"hostNetwork", true},
              {"containers",
               {{{"name", "main"},
                 {"image", ContainerdHarness::kBusybox},
                 {"command", {"sleep", "3600"}}}}}}}};
  p.merge_patch(patch);
  return p;
}

}  // namespace

TEST_CASE(
    "every path-traversal form a cloud publisher can send leaves the host outside the state dir "
    "untouched, and the agent keeps running") {
  std::string why;
  auto cri = ContainerdHarness::startOrExplain(why);
  if (!cri) {
    MESSAGE("skipped: " << why);
    return;
  }
  TempDir dir;
  Mosquitto broker;
  const fs::path state = dir / "state";
  // What an attacker aims at: a directory with a file, outside the state dir.
  const fs::path victim = dir / "victim";
  fs::create_directories(victim / "keep");
  writeFile(victim / "keep" / "data", "precious");
  writeFile(dir / "outpost.yaml",
            "node: {name: edge-9, state_dir: " + state.string() + "}\n" + "runtime: {endpoint: \"" +
                cri->endpoint() + "\", sandbox_image: \"" + ContainerdHarness::kPause +
                "\", cgroup_parent: \"" + cri->cgroupParent().substr(1) + "\"}\n" +
                "device: {enabled: false}\n" + "cloud: {mqtt: {broker: \"" + broker.uri() +
                "\"}, reconnect: {base: 100ms, cap: 1s}}\n" +
                "api: {socket: " + (dir / "o.sock").string() + ", metrics_address: \"\"}\n");
  const std::string config = (dir / "outpost.yaml").string();
  Child agent({outpostd(), "--config", config});
  std::string out;
  REQUIRE(waitFor([&] { return run({outpostctl(), "-c", config, "status"}, &out) == 0; }));
  auto before = walk(dir.path(), state);

  // From the state dir's pods/ directory, "../../victim" is the victim.
  const std::string up = "../../victim";
  const std::string abs = victim.string();
  const std::vector<std::pair<std::string, json>> attacks = {
      {"default/pod/a1", podWith("a1", {{"metadata", {{"uid", abs}}}})},
      {"default/pod/a2", podWith("a2", {{"metadata", {{"uid", up}}}})},
      {"default/pod/a3",
       podWith("a3", {{"metadata", {{"uid", "../../../../../../../../" + abs}}}})},
      {"default/pod/a4",
       podWith("a4",
               {{"spec",
                 {{"volumes", {{{"name", "../../../victim"}, {"emptyDir", json::object()}}}}}}})},
      {"default/pod/a5",
       podWith("a5", {{"spec", {{"volumes", {{{"name", "a/b"}, {"emptyDir", json::object()}}}}}}})},
      {"default/configmap/c1", {{"data", {{abs + "/planted", "x"}}}}},
      {"default/configmap/c2", {{"data", {{"..", "x"}}}}},
      {"default/configmap/c3", {{"data", {{".", "x"}}}}},
      {"default/configmap/c4", {{"binaryData", {{abs + "/planted", "eA=="}}}}},
      {"default/secret/s1", {{"stringData", {{abs + "/planted", "x"}}}}},
      {"default/secret/s2", {{"data", {{up + "/planted", "eA=="}}}}},
      {"default/pod/a6",
       podWith("a6", {{"spec",
                       {{"volumes",
                         {{{"name", "cfg"},
                           {"configMap",
                            {{"name", "good-cfg"},
                             {"items", {{{"key", "k"}, {"path", abs + "/x"}}}}}}}}}}}})},
      {"default/pod/a7",
       podWith("a7",
               {{"spec",
                 {{"volumes", {{{"name", "cfg"}, {"configMap", {{"name", "good-cfg"}}}}}},
                  {"containers",
                   {{{"name", "main"},
                     {"image", ContainerdHarness::kBusybox},
                     {"command", {"sleep", "3600"}},
                     {"volumeMounts",
                      {{{"name", "cfg"}, {"mountPath", "/etc/x"}, {"subPath", "/etc"}}}}}}}}}})},
      {"default/pod/" + up, podWith(up, {})},
  };
  MqttTestClient attacker(broker.uri());
  const cloudhub::MqttTopics topics{"outpost/v1"};
  int n = 0;
  for (const auto& [key, object] : attacks)
    attacker.publish(topics.desired("edge-9", key),
                     envelope(key, object, "attack-" + std::to_string(n++)).dump(), true);
  // And a good configmap and pod that uses it, so the runtime is really at work.
  attacker.publish(
      topics.desired("edge-9", "default/configmap/good-cfg"),
      envelope("default/configmap/good-cfg", {{"data", {{"k", "v"}}}}, "good-1").dump(), true);
  json good = podWith(
      "good",
      {{"spec", {{"volumes", {{{"name", "cfg"}, {"configMap", {{"name", "good-cfg"}}}}}}}}});
  good["spec"]["containers"][0]["volumeMounts"] = {{{"name", "cfg"}, {"mountPath", "/cfg"}}};
  attacker.publish(topics.desired("edge-9", "default/pod/good"),
                   envelope("default/pod/good", good, "good-2").dump(), true);

  // Every attack is refused at the door, and the good pod runs.
  auto statusJson = [&] {
    std::string o;
    if (run({outpostctl(), "-c", config, "status", "-o", "json"}, &o) != 0) return json();
    return json::parse(o, nullptr, false);
  };
  bool refused = waitFor(
      [&] {
        json s = statusJson();
        return s.is_object() && s["cloud"]["messages_invalid"].get<int>() >= n;
      },
      30s);
  INFO("agent log:\n" << agent.err());
  REQUIRE(refused);
  bool running = waitFor(
      [&] {
        std::string o;
        return run({outpostctl(), "-c", config, "get", "pods"}, &o) == 0 &&
               o.find("good") != std::string::npos && o.find("Running") != std::string::npos;
      },
      60s);
  REQUIRE(running);
  CHECK(statusJson()["cloud"]["messages_invalid"].get<int>() == n);
  CHECK(agent.running());

  // Deleting everything (the attacker clears the retained objects) removes only what the agent
  // made.
  for (const auto& [key, object] : attacks)
    attacker.publish(topics.desired("edge-9", key), "", true);
  attacker.publish(topics.desired("edge-9", "default/pod/good"), "", true);
  REQUIRE(waitFor(
      [&] {
        std::string o;
        return run({outpostctl(), "-c", config, "get", "pods"}, &o) == 0 &&
               o.find("good") == std::string::npos;
      },
      60s));
  CHECK(agent.running());
  auto after = walk(dir.path(), state);
  // The agent's own files (socket, its log) are not the attacker's doing.
  for (auto* m : {&before, &after}) {
    m->erase("o.sock");
  }
  CHECK(after == before);
  CHECK(readFile(victim / "keep" / "data") == "precious");
  CHECK_FALSE(fs::exists(victim / "planted"));
  CHECK_FALSE(fs::exists(victim / "volumes"));
  CHECK_FALSE(fs::exists(victim / "logs"));
}
