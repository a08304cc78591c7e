#include "rollout/fleet_view.h"

#include <nlohmann/json.hpp>

#include "outpost/validation/validation.h"

namespace outpost::agent::rollout {

using nlohmann::json;

namespace {
constexpr size_t kMaxField = 1024;

std::string field(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return {};
  const auto& s = it->get_ref<const std::string&>();
  return s.size() > kMaxField ? s.substr(0, kMaxField) : s;
}

json parseBounded(const std::string& text) {
  if (!validation::jsonWithin(text, {.maxDepth = 32, .maxBytes = 4 << 20}).isOk()) return json();
  return json::parse(text, nullptr, false);
}
}  // namespace

std::optional<PodReport> podReportFrom(const std::string& podStatusJson) {
  json j = parseBounded(podStatusJson);
  if (!j.is_object() || !j.contains("outpost") || !j["outpost"].is_object()) return std::nullopt;
  const json& o = j["outpost"];
  PodReport r;
  r.desiredVersion = field(o, "desiredVersion");
  r.health = field(o, "health");
  r.reason = field(o, "reason");
  r.message = field(o, "message");
  r.pendingVersion = field(o, "pendingVersion");
  r.heldUntil = field(o, "heldUntil");
  if (r.health != "progressing" && r.health != "healthy" && r.health != "unhealthy" &&
      r.health != "held")
    return std::nullopt;
  return r;
}

std::optional<PrePullReport> prePullReportFrom(const std::string& statusJson) {
  json j = parseBounded(statusJson);
  if (!j.is_object() || !j.contains("images") || !j["images"].is_array()) return std::nullopt;
  PrePullReport r;
  r.observedVersion = field(j, "observedVersion");
  bool all = true;
  for (const auto& i : j["images"]) {
    if (!i.is_object()) return std::nullopt;
    std::string state = field(i, "state");
    if (state == "failed" && r.failedImage.empty()) {
      r.failedImage = field(i, "image");
      r.reason = field(i, "reason");
      r.message = field(i, "message");
    }
    all = all && state == "present";
  }
  r.allPresent = all && !j["images"].empty();
  return r;
}

std::optional<UpgradeReport> upgradeReportFrom(const std::string& statusJson) {
  json j = parseBounded(statusJson);
  if (!j.is_object()) return std::nullopt;
  UpgradeReport r{field(j, "phase"), field(j, "version"), field(j, "reason")};
  static const char* const kPhases[] = {"downloading", "verifying",   "installing", "restarting",
                                        "healthy",     "rolled back", "failed"};
  for (const char* p : kPhases)
    if (r.phase == p) return r;
  return std::nullopt;
}

}  // namespace outpost::agent::rollout
