// Rollout files and the stored state: what is accepted, and errors that name the field.
#include "rollout/strategy.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "rollout/controller.h"
#include "rollout/state.h"

using namespace outpost::agent::rollout;
using nlohmann::json;

namespace {
const char* kPodDoc =
    "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web}\n"
    "spec: {containers: [{name: main, image: \"web:2\"}], initContainers: [{name: i, image: "
    "\"init:1\"}]}\n";

std::string file(const std::string& spec, const std::string& rest = kPodDoc) {
  return "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: web-v2}\nspec:\n" + spec +
         rest;
}

std::string errorOf(const std::string& text) {
  auto r = parseRolloutFile(text, "r.yaml");
  REQUIRE_FALSE(r.isOk());
  return r.status().message();
}
}  // namespace

TEST_CASE("a full rollout file") {
  auto r = parseRolloutFile(
      file("  target: {group: fleet}\n  strategy:\n    canary: 2\n    waves: [\"20%\", 10, "
           "\"100%\"]\n    maxNodesPerMinute: 500\n    soakSeconds: 30\n    nodeTimeoutSeconds: "
           "120\n    prePullTimeoutSeconds: 60\n    maxFailures: {perWave: \"10%\", overall: 3}\n"
           "    onFailure: pause\n    onOffline: continue\n    onHeld: continue\n"),
      "r.yaml");
  REQUIRE_MESSAGE(r.isOk(), r.status().message());
  CHECK(r->name == "web-v2");
  CHECK(r->target.group == "fleet");
  CHECK(r->strategy.canary.value == 2);
  REQUIRE(r->strategy.waves.size() == 3);
  CHECK(r->strategy.waves[0].percent);
  CHECK(r->strategy.maxNodesPerMinute == 500);
  CHECK(r->strategy.soakSeconds == 30);
  CHECK(r->strategy.maxFailuresPerWave.percent);
  CHECK(r->strategy.maxFailures.value == 3);
  CHECK(r->strategy.onFailure == OnFailure::kPause);
  CHECK(r->strategy.onOffline == OnOffline::kContinue);
  CHECK(r->strategy.onHeld == OnHeld::kContinue);
  CHECK(r->images == std::vector<std::string>{"init:1", "web:2"});
  REQUIRE(r->objects.size() == 1);
  json pod = json::parse(r->objects[0].json);
  CHECK(pod["metadata"]["annotations"]["outpost.io/soak-seconds"] == "30");
  CHECK(prePullKey(*r) == "default/imageprepull/rollout-web-v2");
  // The stored form reads back the same.
  auto again = specFromJson(specToJson(*r));
  REQUIRE_MESSAGE(again.isOk(), again.status().message());
  CHECK(specToJson(*again) == specToJson(*r));
}

TEST_CASE("waves are cumulative: the canary, then each wave's total, empty waves dropped") {
  Strategy s;
  s.canary = {1, false};
  s.waves = {{20, true}, {100, true}};
  CHECK(waveSizes(s, 30) == std::vector<size_t>{1, 5, 24});
  CHECK(waveSizes(s, 1) == std::vector<size_t>{1});
  CHECK(waveSizes(s, 3) == std::vector<size_t>{1, 2});
  s.canary = {0, false};
  s.waves = {{10, false}, {100, true}};
  CHECK(waveSizes(s, 1000) == std::vector<size_t>{10, 990});
}

TEST_CASE("errors name the field") {
  std::string target = "  target: {group: fleet}\n";
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"50%\"]\n"))
            .find("spec.strategy.waves: the last wave must be \"100%\"") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"50%\", \"20%\", \"100%\"]\n"))
            .find("spec.strategy.waves[1]") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"100%\"]\n    canary: \"five\"\n"))
            .find("spec.strategy.canary: \"five\" is neither") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"100%\"]\n    canary: \"150%\"\n"))
            .find("spec.strategy.canary: is more than 100%") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"100%\"]\n    onFailure: explode\n"))
            .find("spec.strategy.onFailure: must be one of: rollback, pause") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"100%\"]\n    soakSeconds: -1\n"))
            .find("spec.strategy.soakSeconds") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"100%\"]\n    maxNodesPerMinute: fast\n"))
            .find("spec.strategy.maxNodesPerMinute") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"100%\"]\n    wavez: 1\n"))
            .find("spec.strategy.wavez: unknown field") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy:\n    waves: [\"100%\"]\n    maxFailures: {each: 1}\n"))
            .find("spec.strategy.maxFailures.each: unknown field") != std::string::npos);
  CHECK(errorOf(file("  target: {group: Fleet_1}\n  strategy: {waves: [\"100%\"]}\n"))
            .find("spec.target.group") != std::string::npos);
  CHECK(errorOf(file("  target: {group: a, selector: {x: y}}\n  strategy: {waves: [\"100%\"]}\n"))
            .find("spec.target: give either group or selector") != std::string::npos);
  CHECK(errorOf(file(target)).find("spec.strategy: missing") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy: {waves: [\"100%\"]}\n", ""))
            .find("objects: a rollout needs at least one Pod") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy: {waves: [\"100%\"]}\n",
                     "---\napiVersion: outpost.io/v1\nkind: AgentUpgrade\nmetadata: {name: a}\n"
                     "spec: {version: \"1 0\", packages: []}\n"))
            .find("default/agentupgrade/a: spec.version") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy: {waves: [\"100%\"]}\n",
                     "---\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n"))
            .find("every container needs an image") != std::string::npos);
  CHECK(errorOf(file(target + "  strategy: {waves: [\"100%\"]}\n", std::string(kPodDoc) + kPodDoc))
            .find("default/pod/web: given twice") != std::string::npos);
  CHECK(errorOf("kind: Pod\nmetadata: {name: p}\n").find("no kind: Rollout document") !=
        std::string::npos);
  CHECK(errorOf("apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: " +
                std::string(51, 'a') + "}\nspec: {}\n")
            .find("metadata.name: at most 50") != std::string::npos);
}

TEST_CASE("the stored state reads back, and a malformed one is refused with the reason") {
  auto spec = parseRolloutFile(file("  target: {group: fleet}\n  strategy: {waves: [\"100%\"]}\n"),
                               "r.yaml");
  REQUIRE(spec.isOk());
  RolloutState s;
  s.spec = *spec;
  s.waves.resize(2);
  s.waves[0].size = 1;
  s.waves[1].size = 2;
  for (auto [name, wave] : {std::pair{"a", 0}, {"b", 1}, {"c", 1}}) {
    NodeRecord n;
    n.name = name;
    n.wave = static_cast<size_t>(wave);
    s.nodes.push_back(n);
  }
  s.nodes[1].state = NodeState::kHeld;
  s.nodes[1].versions["default/pod/web"] = "12";
  s.nodes[1].reason = "MaintenanceWindow";
  s.previous["default/pod/web"] = R"({"kind":"Pod"})";
  s.phase = Phase::kPaused;
  std::string text = stateToJson(s);
  auto back = stateFromJson(text);
  REQUIRE_MESSAGE(back.isOk(), back.status().message());
  CHECK(stateToJson(*back) == text);

  auto broken = [&](const std::function<void(json&)>& change) {
    json j = json::parse(text);
    change(j);
    auto r = stateFromJson(j.dump());
    REQUIRE_FALSE(r.isOk());
    return r.status().message();
  };
  CHECK(broken([](json& j) { j["phase"] = "Exploded"; }).find("unknown phase") !=
        std::string::npos);
  CHECK(broken([](json& j) { j["nodes"][1]["state"] = 7; }).find("node b: unknown state") !=
        std::string::npos);
  CHECK(broken([](json& j) { j["nodes"][1]["wave"] = 0; }).find("node b: listed in wave 1") !=
        std::string::npos);
  CHECK(broken([](json& j) { j["nodes"][2]["name"] = "a"; }).find("repeated name") !=
        std::string::npos);
  CHECK(broken([](json& j) { j["waves"][0]["size"] = 5; }).find("do not add up") !=
        std::string::npos);
  CHECK(broken([](json& j) {
          j["nodes"][1]["versions"]["default/pod/web"] = "x";
        }).find("not decimal") != std::string::npos);
  CHECK(broken([](json& j) { j["wave"] = 9; }).find("wave out of range") != std::string::npos);
  CHECK(broken([](json& j) {
          j["spec"]["rollout"]["spec"]["strategy"]["waves"] = json::array();
        }).find("spec.strategy.waves") != std::string::npos);
  CHECK_FALSE(stateFromJson("[").isOk());
  CHECK_FALSE(stateFromJson(std::string(100, '[')).isOk());
}
