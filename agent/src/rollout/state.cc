#include "rollout/state.h"

#include <array>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/validation/validation.h"

namespace outpost::agent::rollout {

using nlohmann::json;

namespace {

constexpr std::array<const char*, 6> kPhases = {"Progressing", "Paused",    "RollingBack",
                                                "RolledBack",  "Succeeded", "Undone"};
constexpr std::array<const char*, 8> kNodeStates = {
    "pending", "pre-pulling", "updating", "held", "healthy", "failed", "offline", "rolled-back"};
constexpr size_t kMaxNodes = 100000;
constexpr size_t kMaxText = 1024;

template <typename E, size_t N>
std::optional<E> fromText(const std::array<const char*, N>& names, const json& j) {
  if (!j.is_string()) return std::nullopt;
  for (size_t i = 0; i < N; ++i) {
    if (j.get<std::string>() == names[i]) return static_cast<E>(i);
  }
  return std::nullopt;
}

std::string text(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  std::string s = it->get<std::string>();
  return s.size() > kMaxText ? s.substr(0, kMaxText) : s;
}

int64_t number(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

core::Status bad(const std::string& what) {
  return core::invalidArgument("the rollout's stored state: " + what);
}

bool isVersion(const json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  return !s.empty() && s.size() <= 20 && std::all_of(s.begin(), s.end(), ::isdigit);
}

}  // namespace

std::string phaseText(Phase p) { return kPhases[static_cast<size_t>(p)]; }
std::string nodeStateText(NodeState s) { return kNodeStates[static_cast<size_t>(s)]; }

std::vector<size_t> waveSizes(const Strategy& s, size_t total) {
  std::vector<size_t> sizes;
  size_t done = 0;
  auto add = [&](size_t cumulative) {
    if (cumulative > done) {
      sizes.push_back(cumulative - done);
      done = cumulative;
    }
  };
  add(s.canary.of(total));
  for (const auto& w : s.waves) add(std::max(done, w.of(total)));
  return sizes;
}

std::string stateToJson(const RolloutState& s) {
  json waves = json::array();
  for (const auto& w : s.waves) {
    waves.push_back({{"size", w.size},
                     {"startedAt", w.startedAt},
                     {"prePullStartedAt", w.prePullStartedAt},
                     {"done", w.done}});
  }
  json nodes = json::array();
  for (const auto& n : s.nodes) {
    json j = {
        {"name", n.name}, {"wave", n.wave}, {"state", nodeStateText(n.state)}, {"since", n.since}};
    if (!n.reason.empty()) j["reason"] = n.reason;
    if (!n.message.empty()) j["message"] = n.message;
    if (!n.versions.empty()) j["versions"] = n.versions;
    if (!n.prePullVersion.empty()) j["prePullVersion"] = n.prePullVersion;
    if (n.counted) j["counted"] = true;
    if (n.pulled) j["pulled"] = true;
    nodes.push_back(std::move(j));
  }
  json previous = json::object();
  for (const auto& [k, v] : s.previous) previous[k] = json::parse(v, nullptr, false);
  return json{{"spec", json::parse(specToJson(s.spec))},
              {"phase", phaseText(s.phase)},
              {"reason", s.reason},
              {"message", s.message},
              {"wave", s.wave},
              {"waves", waves},
              {"nodes", nodes},
              {"previous", previous},
              {"previousAbsent", s.previousAbsent},
              {"createdAt", s.createdAt},
              {"updatedAt", s.updatedAt},
              {"nextSwitchAt", s.nextSwitchAt},
              {"pauseRequested", s.pauseRequested}}
      .dump();
}

core::Result<RolloutState> stateFromJson(const std::string& text_) {
  if (auto limits = validation::jsonWithin(text_, {.maxDepth = 64, .maxBytes = 64 << 20});
      !limits.isOk())
    return bad(limits.message());
  json j = json::parse(text_, nullptr, false);
  if (!j.is_object()) return bad("not a JSON object");
  RolloutState s;
  if (!j.contains("spec")) return bad("no spec");
  auto spec = specFromJson(j["spec"].dump());
  if (!spec.isOk()) return bad(spec.status().message());
  s.spec = std::move(spec).value();
  auto phase = fromText<Phase>(kPhases, j.value("phase", json()));
  if (!phase) return bad("unknown phase");
  s.phase = *phase;
  s.reason = text(j, "reason");
  s.message = text(j, "message");
  s.createdAt = number(j, "createdAt");
  s.updatedAt = number(j, "updatedAt");
  s.nextSwitchAt = number(j, "nextSwitchAt");
  s.pauseRequested =
      j.value("pauseRequested", json(false)).is_boolean() && j.value("pauseRequested", false);
  const json& waves = j.value("waves", json());
  const json& nodes = j.value("nodes", json());
  if (!waves.is_array() || !nodes.is_array() || waves.size() > 1000 || nodes.size() > kMaxNodes)
    return bad("waves and nodes must be lists (at most 1000 waves, 100000 nodes)");
  size_t total = 0;
  for (const auto& w : waves) {
    if (!w.is_object() || !w.contains("size") || !w["size"].is_number_unsigned())
      return bad("a wave without a size");
    WaveRecord r;
    r.size = w["size"].get<size_t>();
    r.startedAt = number(w, "startedAt");
    r.prePullStartedAt = number(w, "prePullStartedAt");
    r.done = w.value("done", json(false)).is_boolean() && w.value("done", false);
    total += r.size;
    s.waves.push_back(r);
  }
  if (total != nodes.size()) return bad("the waves' sizes do not add up to the nodes listed");
  int64_t wave = number(j, "wave");
  if (wave < 0 || static_cast<size_t>(wave) > s.waves.size()) return bad("wave out of range");
  s.wave = static_cast<size_t>(wave);
  std::set<std::string> names;
  size_t index = 0, waveIndex = 0, inWave = 0;
  for (const auto& n : nodes) {
    while (waveIndex < s.waves.size() && inWave == s.waves[waveIndex].size) {
      ++waveIndex;
      inWave = 0;
    }
    if (!n.is_object()) return bad("a node entry is not an object");
    NodeRecord r;
    r.name = text(n, "name");
    if (!validation::dnsSubdomain("node", r.name).isOk() || !names.insert(r.name).second)
      return bad("node " + std::to_string(index) + ": a missing, invalid or repeated name");
    auto st = fromText<NodeState>(kNodeStates, n.value("state", json()));
    if (!st) return bad("node " + r.name + ": unknown state");
    r.state = *st;
    if (number(n, "wave") != static_cast<int64_t>(waveIndex))
      return bad("node " + r.name + ": listed in wave " + std::to_string(waveIndex) + " but says " +
                 std::to_string(number(n, "wave")));
    r.wave = waveIndex;
    r.reason = text(n, "reason");
    r.message = text(n, "message");
    r.since = number(n, "since");
    r.prePullVersion = text(n, "prePullVersion");
    if (!r.prePullVersion.empty() && !isVersion(n["prePullVersion"]))
      return bad("node " + r.name + ": prePullVersion is not a decimal version");
    r.counted = n.value("counted", json(false)).is_boolean() && n.value("counted", false);
    r.pulled = n.value("pulled", json(false)).is_boolean() && n.value("pulled", false);
    if (n.contains("versions")) {
      if (!n["versions"].is_object()) return bad("node " + r.name + ": versions not an object");
      for (const auto& [k, v] : n["versions"].items()) {
        if (!isVersion(v)) return bad("node " + r.name + ": version of " + k + " not decimal");
        r.versions[k] = v.get<std::string>();
      }
    }
    s.nodes.push_back(std::move(r));
    ++inWave;
    ++index;
  }
  const json& prev = j.value("previous", json::object());
  if (!prev.is_object()) return bad("previous must be an object");
  for (const auto& [k, v] : prev.items()) {
    if (!v.is_object()) return bad("previous object " + k + " is not an object");
    s.previous[k] = v.dump();
  }
  const json& absent = j.value("previousAbsent", json::array());
  if (!absent.is_array()) return bad("previousAbsent must be a list");
  for (const auto& k : absent) {
    if (!k.is_string()) return bad("previousAbsent must list keys");
    s.previousAbsent.push_back(k.get<std::string>());
  }
  return s;
}

}  // namespace outpost::agent::rollout
