// The upgrade's records as JSON: the status the node reports, the plan and the outcome.
#include <nlohmann/json.hpp>

#include "outpost/upgrade/agent_upgrade.h"
#include "outpost/upgrade/upgrader.h"

namespace outpost::upgrade {

namespace {
constexpr std::string_view kPhaseNames[] = {
    "downloading", "verifying", "installing", "restarting", "healthy", "rolled back", "failed"};
}  // namespace

std::string_view phaseName(Phase phase) { return kPhaseNames[static_cast<int>(phase)]; }

std::optional<Phase> parsePhase(std::string_view name) {
  for (int i = 0; i < 7; ++i)
    if (kPhaseNames[i] == name) return static_cast<Phase>(i);
  return std::nullopt;
}

std::string UpgradeStatus::toJson() const {
  nlohmann::json j{{"phase", phaseName(phase)}, {"version", version}};
  if (phase == Phase::kDownloading) {
    j["bytes"] = bytes;
    if (total) j["total"] = *total;
  }
  if (!reason.empty()) j["reason"] = reason;
  return j.dump();
}

std::string Plan::toJson() const {
  return nlohmann::json{{"key", key},
                        {"version", version},
                        {"sha256", sha256},
                        {"package", package},
                        {"previous_version", previousVersion},
                        {"previous_package", previousPackage},
                        {"health_timeout_seconds", healthTimeout.count()},
                        {"agent_pid", agentPid}}
      .dump();
}

core::Result<Plan> Plan::fromJson(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return core::dataLoss("plan.json is not a JSON object");
  Plan p;
  try {
    p.key = j.at("key").get<std::string>();
    p.version = j.at("version").get<std::string>();
    p.sha256 = j.at("sha256").get<std::string>();
    p.package = j.at("package").get<std::string>();
    p.previousVersion = j.at("previous_version").get<std::string>();
    p.previousPackage = j.at("previous_package").get<std::string>();
    p.healthTimeout = std::chrono::seconds(j.at("health_timeout_seconds").get<int64_t>());
    p.agentPid = j.at("agent_pid").get<int>();
  } catch (const nlohmann::json::exception& e) {
    return core::dataLoss(std::string("plan.json: ") + e.what());
  }
  // Written by the agent from checked values; checked again, since the helper acts on them as root.
  OUTPOST_RETURN_IF_ERROR(checkVersion("plan.json version", p.version));
  OUTPOST_RETURN_IF_ERROR(checkVersion("plan.json previous_version", p.previousVersion));
  if (p.package.empty() || p.package[0] != '/' || p.previousPackage.empty() ||
      p.previousPackage[0] != '/')
    return core::dataLoss("plan.json: the package paths must be absolute");
  return p;
}

std::string Outcome::toJson() const {
  nlohmann::json j{
      {"key", key}, {"version", version}, {"sha256", sha256}, {"phase", phaseName(phase)}};
  if (!reason.empty()) j["reason"] = reason;
  return j.dump();
}

core::Result<Outcome> Outcome::fromJson(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return core::dataLoss("outcome.json is not a JSON object");
  Outcome o;
  try {
    o.key = j.at("key").get<std::string>();
    o.version = j.at("version").get<std::string>();
    o.sha256 = j.at("sha256").get<std::string>();
    auto phase = parsePhase(j.at("phase").get<std::string>());
    if (!phase) return core::dataLoss("outcome.json: unknown phase");
    o.phase = *phase;
    if (j.contains("reason")) o.reason = j.at("reason").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return core::dataLoss(std::string("outcome.json: ") + e.what());
  }
  return o;
}

}  // namespace outpost::upgrade
