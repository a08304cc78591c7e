#include "rollout/strategy.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "manifests.h"
#include "outpost/upgrade/agent_upgrade.h"
#include "outpost/validation/validation.h"

namespace outpost::agent::rollout {

using nlohmann::json;

namespace {

constexpr std::string_view kSoakAnnotation = "outpost.io/soak-seconds";
constexpr int64_t kMaxSeconds = int64_t{7} * 24 * 3600;

core::Status fieldError(const std::string& source, const std::string& field,
                        const std::string& what) {
  return core::invalidArgument(source + ": " + field + ": " + what);
}

core::Result<NodeCount> parseCount(const json& j, const std::string& source,
                                   const std::string& field) {
  NodeCount c;
  if (j.is_number_integer()) {
    c.value = j.get<int64_t>();
  } else if (j.is_string()) {
    std::string s = j.get<std::string>();
    if (!s.empty() && s.back() == '%') {
      c.percent = true;
      s.pop_back();
    }
    if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), ::isdigit))
      return fieldError(source, field,
                        "\"" + validation::printable(j.get<std::string>()) +
                            "\" is neither a number of nodes nor a percentage like \"20%\"");
    c.value = std::stoll(s);
  } else {
    return fieldError(source, field, "must be a number of nodes or a percentage like \"20%\"");
  }
  if (c.value < 0) return fieldError(source, field, "must not be negative");
  if (c.percent && c.value > 100) return fieldError(source, field, "is more than 100%");
  if (!c.percent && c.value > 1000000) return fieldError(source, field, "is over 1000000 nodes");
  return c;
}

core::Result<int64_t> parseSeconds(const json& s, const std::string& source,
                                   const std::string& field, int64_t def, int64_t min) {
  if (s.is_null()) return def;
  if (!s.is_number_integer() || s.get<int64_t>() < min || s.get<int64_t>() > kMaxSeconds)
    return fieldError(source, field,
                      "must be a whole number from " + std::to_string(min) + " to " +
                          std::to_string(kMaxSeconds));
  return s.get<int64_t>();
}

core::Result<std::string> parseWord(const json& s, const std::string& source,
                                    const std::string& field, const std::string& def,
                                    const std::vector<std::string>& allowed) {
  if (s.is_null()) return def;
  std::string all;
  for (const auto& a : allowed) all += (all.empty() ? "" : ", ") + a;
  if (!s.is_string() ||
      std::find(allowed.begin(), allowed.end(), s.get<std::string>()) == allowed.end())
    return fieldError(source, field, "must be one of: " + all);
  return s.get<std::string>();
}

core::Status unknownFields(const json& obj, const std::set<std::string>& known,
                           const std::string& source, const std::string& where) {
  for (const auto& [k, v] : obj.items()) {
    if (known.count(k) == 0) {
      std::string names;
      for (const auto& n : known) names += (names.empty() ? "" : ", ") + n;
      return fieldError(source, where + "." + validation::printable(k),
                        "unknown field (known: " + names + ")");
    }
  }
  return core::okStatus();
}

core::Status parseStrategy(const json& st, const std::string& src, Strategy& out) {
  if (st.is_null()) return fieldError(src, "spec.strategy", "missing");
  if (!st.is_object()) return fieldError(src, "spec.strategy", "must be a mapping");
  OUTPOST_RETURN_IF_ERROR(
      unknownFields(st,
                    {"canary", "waves", "maxNodesPerMinute", "soakSeconds", "nodeTimeoutSeconds",
                     "prePullTimeoutSeconds", "maxFailures", "onFailure", "onOffline", "onHeld"},
                    src, "spec.strategy"));
  auto get = [&](const char* k) { return st.contains(k) ? st[k] : json(); };
  if (!get("canary").is_null()) {
    auto c = parseCount(get("canary"), src, "spec.strategy.canary");
    if (!c.isOk()) return c.status();
    out.canary = *c;
  }
  const json& waves = get("waves");
  if (!waves.is_array() || waves.empty())
    return fieldError(src, "spec.strategy.waves",
                      "must list the waves, each the number or percentage of nodes updated once "
                      "it is done, ending with \"100%\"");
  if (waves.size() > 100) return fieldError(src, "spec.strategy.waves", "more than 100 waves");
  for (size_t i = 0; i < waves.size(); ++i) {
    auto c = parseCount(waves[i], src, "spec.strategy.waves[" + std::to_string(i) + "]");
    if (!c.isOk()) return c.status();
    const NodeCount* before = i > 0 ? &out.waves.back() : nullptr;
    if (before && before->percent == c->percent && before->value >= c->value)
      return fieldError(src, "spec.strategy.waves[" + std::to_string(i) + "]",
                        c->text() + " is not more than the wave before (" + before->text() +
                            "); waves count the nodes updated so far");
    out.waves.push_back(*c);
  }
  if (!(out.waves.back().percent && out.waves.back().value == 100))
    return fieldError(src, "spec.strategy.waves",
                      "the last wave must be \"100%\" (it is " + out.waves.back().text() + ")");
  const json& rate = get("maxNodesPerMinute");
  if (!rate.is_null()) {
    if (!rate.is_number_integer() || rate.get<int64_t>() < 0 || rate.get<int64_t>() > 600000)
      return fieldError(src, "spec.strategy.maxNodesPerMinute",
                        "must be a whole number from 0 (no limit) to 600000");
    out.maxNodesPerMinute = rate.get<int64_t>();
  }
  auto soak = parseSeconds(get("soakSeconds"), src, "spec.strategy.soakSeconds", 0, 0);
  auto nodeTo =
      parseSeconds(get("nodeTimeoutSeconds"), src, "spec.strategy.nodeTimeoutSeconds", 600, 1);
  auto pullTo = parseSeconds(get("prePullTimeoutSeconds"), src,
                             "spec.strategy.prePullTimeoutSeconds", 300, 1);
  for (auto* r : {&soak, &nodeTo, &pullTo})
    if (!r->isOk()) return r->status();
  out.soakSeconds = *soak;
  out.nodeTimeoutSeconds = *nodeTo;
  out.prePullTimeoutSeconds = *pullTo;
  const json& mf = get("maxFailures");
  if (!mf.is_null()) {
    if (!mf.is_object()) return fieldError(src, "spec.strategy.maxFailures", "must be a mapping");
    OUTPOST_RETURN_IF_ERROR(
        unknownFields(mf, {"perWave", "overall"}, src, "spec.strategy.maxFailures"));
    if (mf.contains("perWave")) {
      auto c = parseCount(mf["perWave"], src, "spec.strategy.maxFailures.perWave");
      if (!c.isOk()) return c.status();
      out.maxFailuresPerWave = *c;
    }
    if (mf.contains("overall")) {
      auto c = parseCount(mf["overall"], src, "spec.strategy.maxFailures.overall");
      if (!c.isOk()) return c.status();
      out.maxFailures = *c;
    }
  }
  auto onFailure = parseWord(get("onFailure"), src, "spec.strategy.onFailure", "rollback",
                             {"rollback", "pause"});
  auto onOffline =
      parseWord(get("onOffline"), src, "spec.strategy.onOffline", "fail", {"fail", "continue"});
  auto onHeld = parseWord(get("onHeld"), src, "spec.strategy.onHeld", "wait", {"wait", "continue"});
  for (auto* r : {&onFailure, &onOffline, &onHeld})
    if (!r->isOk()) return r->status();
  out.onFailure = *onFailure == "pause" ? OnFailure::kPause : OnFailure::kRollback;
  out.onOffline = *onOffline == "continue" ? OnOffline::kContinue : OnOffline::kFail;
  out.onHeld = *onHeld == "continue" ? OnHeld::kContinue : OnHeld::kWait;
  return core::okStatus();
}

core::Status parseTarget(const json& t, const std::string& src, Target& out) {
  if (!t.is_object()) return fieldError(src, "spec.target", "must name a group or a selector");
  OUTPOST_RETURN_IF_ERROR(unknownFields(t, {"group", "selector"}, src, "spec.target"));
  bool hasGroup = t.contains("group"), hasSelector = t.contains("selector");
  if (hasGroup == hasSelector)
    return fieldError(src, "spec.target", "give either group or selector (one of them)");
  if (hasGroup) {
    if (!t["group"].is_string() ||
        !validation::dnsLabel("spec.target.group", t["group"].get<std::string>()).isOk())
      return fieldError(src, "spec.target.group", "must be a group name (a lowercase DNS label)");
    out.group = t["group"].get<std::string>();
    return core::okStatus();
  }
  const json& sel = t["selector"];
  if (!sel.is_object() || sel.empty())
    return fieldError(src, "spec.target.selector", "must map node labels to values");
  for (const auto& [k, v] : sel.items()) {
    if (!v.is_string() || k.empty() || k.size() > 317 || v.get<std::string>().size() > 63)
      return fieldError(src, "spec.target.selector." + validation::printable(k),
                        "must be a label name with a string value");
    out.selector[k] = v.get<std::string>();
  }
  return core::okStatus();
}

// The images of a pod's containers and init containers; a pod gets the soak annotation.
core::Status preparePod(json& pod, const std::string& src, const std::string& key,
                        int64_t soakSeconds, std::set<std::string>& images) {
  const json* spec = pod.contains("spec") ? &pod["spec"] : nullptr;
  if (!spec || !spec->is_object()) return fieldError(src, key, "a pod without spec");
  bool any = false;
  for (const char* list : {"initContainers", "containers"}) {
    if (!spec->contains(list)) continue;
    const json& cs = (*spec)[list];
    if (!cs.is_array()) return fieldError(src, key + ": spec." + list, "must be a list");
    for (const auto& c : cs) {
      if (!c.is_object() || !c.contains("image") || !c["image"].is_string() ||
          c["image"].get<std::string>().empty() || c["image"].get<std::string>().size() > 512)
        return fieldError(src, key + ": spec." + list, "every container needs an image");
      images.insert(c["image"].get<std::string>());
      any = true;
    }
  }
  if (!any) return fieldError(src, key + ": spec.containers", "a pod needs a container");
  json& meta = pod["metadata"];
  if (!meta.contains("annotations") || !meta["annotations"].is_object())
    meta["annotations"] = json::object();
  if (!meta["annotations"].contains(kSoakAnnotation))
    meta["annotations"][std::string(kSoakAnnotation)] = std::to_string(soakSeconds);
  return core::okStatus();
}

core::Result<RolloutSpec> build(const json& doc, std::vector<ManifestObject> objects,
                                const std::string& src) {
  RolloutSpec spec;
  if (!doc.is_object()) return fieldError(src, "Rollout", "must be a mapping");
  if (doc.value("apiVersion", "") != "outpost.io/v1")
    return fieldError(src, "apiVersion", "must be outpost.io/v1");
  const json& meta = doc.contains("metadata") ? doc["metadata"] : json();
  if (!meta.is_object() || !meta.contains("name") || !meta["name"].is_string() ||
      !validation::dnsLabel("metadata.name", meta["name"].get<std::string>()).isOk())
    return fieldError(src, "metadata.name", "the rollout needs a name (a lowercase DNS label)");
  spec.name = meta["name"].get<std::string>();
  if (spec.name.size() > 50)
    return fieldError(src, "metadata.name", "at most 50 characters (it names objects too)");
  const json& s = doc.contains("spec") ? doc["spec"] : json();
  if (!s.is_object()) return fieldError(src, "spec", "missing");
  OUTPOST_RETURN_IF_ERROR(unknownFields(s, {"target", "strategy"}, src, "spec"));
  OUTPOST_RETURN_IF_ERROR(
      parseTarget(s.contains("target") ? s["target"] : json(), src, spec.target));
  OUTPOST_RETURN_IF_ERROR(
      parseStrategy(s.contains("strategy") ? s["strategy"] : json(), src, spec.strategy));
  std::set<std::string> keys, images;
  bool anyHealth = false;
  for (auto& o : objects) {
    auto slash = o.key.find('/');
    auto slash2 = o.key.find('/', slash + 1);
    if (slash == std::string::npos || slash2 == std::string::npos ||
        !validation::desiredKey(o.key.substr(0, slash), o.key.substr(slash + 1, slash2 - slash - 1),
                                o.key.substr(slash2 + 1))
             .isOk())
      return fieldError(src, validation::printable(o.key), "not a valid object key");
    if (o.type == "imageprepull" || o.type == "rollout")
      return fieldError(src, o.key, "a rollout cannot roll out a " + o.type);
    if (!keys.insert(o.key).second) return fieldError(src, o.key, "given twice");
    json j = json::parse(o.json, nullptr, false);
    if (!j.is_object()) return fieldError(src, o.key, "not a JSON object");
    if (o.type == "pod") {
      anyHealth = true;
      OUTPOST_RETURN_IF_ERROR(preparePod(j, src, o.key, spec.strategy.soakSeconds, images));
    } else if (o.type == "agentupgrade") {
      anyHealth = true;  // the node's upgrade status is its health, like a pod's
      if (auto up = upgrade::parseAgentUpgrade(o.json); !up.isOk())
        return fieldError(src, o.key, up.status().message());
    }
    spec.objects.push_back({o.key, j.dump()});
  }
  if (!anyHealth)
    return fieldError(src, "objects",
                      "a rollout needs at least one Pod or AgentUpgrade after the Rollout document "
                      "(its health decides each node's update)");
  spec.images.assign(images.begin(), images.end());
  return spec;
}

}  // namespace

size_t NodeCount::of(size_t total) const {
  if (!percent) return std::min<size_t>(total, static_cast<size_t>(value));
  return std::min<size_t>(total, (total * static_cast<size_t>(value) + 99) / 100);
}

std::string NodeCount::text() const { return std::to_string(value) + (percent ? "%" : ""); }

std::string onFailureText(OnFailure f) { return f == OnFailure::kPause ? "pause" : "rollback"; }
std::string onOfflineText(OnOffline o) { return o == OnOffline::kContinue ? "continue" : "fail"; }
std::string onHeldText(OnHeld h) { return h == OnHeld::kContinue ? "continue" : "wait"; }

core::Result<RolloutSpec> parseRolloutFile(const std::string& text, const std::string& source) {
  auto docs = parseManifests(text, source);
  if (!docs.isOk()) return docs.status();
  json rollout;
  std::vector<ManifestObject> objects;
  for (auto& d : *docs) {
    if (d.type == "rollout") {
      if (!rollout.is_null())
        return core::invalidArgument(source + ": more than one kind: Rollout document");
      rollout = json::parse(d.json, nullptr, false);
    } else {
      objects.push_back(std::move(d));
    }
  }
  if (rollout.is_null())
    return core::invalidArgument(source +
                                 ": no kind: Rollout document (docs/rollouts.md shows one)");
  return build(rollout, std::move(objects), source);
}

std::string specToJson(const RolloutSpec& spec) {
  const Strategy& s = spec.strategy;
  auto count = [](const NodeCount& c) -> json {
    return c.percent ? json(c.text()) : json(c.value);
  };
  json waves = json::array();
  for (const auto& w : s.waves) waves.push_back(count(w));
  json target = spec.target.group.empty() ? json{{"selector", spec.target.selector}}
                                          : json{{"group", spec.target.group}};
  json doc = {{"apiVersion", "outpost.io/v1"},
              {"kind", "Rollout"},
              {"metadata", {{"name", spec.name}}},
              {"spec",
               {{"target", target},
                {"strategy",
                 {{"canary", count(s.canary)},
                  {"waves", waves},
                  {"maxNodesPerMinute", s.maxNodesPerMinute},
                  {"soakSeconds", s.soakSeconds},
                  {"nodeTimeoutSeconds", s.nodeTimeoutSeconds},
                  {"prePullTimeoutSeconds", s.prePullTimeoutSeconds},
                  {"maxFailures",
                   {{"perWave", count(s.maxFailuresPerWave)}, {"overall", count(s.maxFailures)}}},
                  {"onFailure", onFailureText(s.onFailure)},
                  {"onOffline", onOfflineText(s.onOffline)},
                  {"onHeld", onHeldText(s.onHeld)}}}}}};
  json objects = json::array();
  for (const auto& o : spec.objects) objects.push_back(json::parse(o.json, nullptr, false));
  return json{{"rollout", doc}, {"objects", objects}}.dump();
}

core::Result<RolloutSpec> specFromJson(const std::string& text) {
  const std::string src = "the rollout's stored spec";
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("rollout") || !j.contains("objects") ||
      !j["objects"].is_array())
    return core::invalidArgument(src + ": not {\"rollout\": ..., \"objects\": [...]}");
  std::vector<ManifestObject> objects;
  for (const auto& o : j["objects"]) {
    if (!o.is_object() || !o.contains("kind") || !o["kind"].is_string() ||
        !o.contains("metadata") || !o["metadata"].is_object() || !o["metadata"].contains("name") ||
        !o["metadata"]["name"].is_string())
      return core::invalidArgument(src + ": an object without kind or metadata.name");
    std::string ns = o["metadata"].value("namespace", "default");
    std::string type = typeOfKind(o["kind"].get<std::string>());
    objects.push_back(
        {ns + "/" + type + "/" + o["metadata"]["name"].get<std::string>(), type, o.dump()});
  }
  return build(j["rollout"], std::move(objects), src);
}

}  // namespace outpost::agent::rollout
