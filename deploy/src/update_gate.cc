// On-site holds and maintenance windows: whether a running pod's update may happen now.

#include "update_gate.h"

#include <nlohmann/json.hpp>

#include "pod_status.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;

// A deletion's "pending version" in released_.
constexpr const char* kDeletion = "#deletion";

core::WallTime fromMillis(int64_t ms) { return core::WallTime(std::chrono::milliseconds(ms)); }

}  // namespace

UpdateGate::UpdateGate(std::vector<MaintenanceWindow> windows, core::Logger log)
    : windows_(std::move(windows)), log_(std::move(log)) {}

void UpdateGate::load(LocalState* state) {
  state_ = state;
  if (!state_) return;
  auto text = state_->get(kHoldsState);
  if (!text) return;
  auto j = json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    log_.warn(kHoldsState, " is not a JSON object: the on-site holds are lost");
    return;
  }
  const json holdsKept = j.value("holds", json::object());
  const json releasedKept = j.value("released", json::object());
  const json runningKept = j.value("running", json::object());
  for (const auto& [pod, until] : holdsKept.items()) {
    holds_[pod == "*" ? "" : pod] =
        until.is_number_integer() ? std::optional(fromMillis(until.get<int64_t>())) : std::nullopt;
  }
  for (const auto& [pod, version] : releasedKept.items()) {
    if (version.is_string()) released_[pod] = version.get<std::string>();
  }
  for (const auto& [pod, rec] : runningKept.items()) {
    if (rec.is_object() && rec.value("json", json()).is_string())
      kept_[pod] = PodRecord{pod, rec["json"].get<std::string>(), rec.value("version", "")};
  }
  if (!holds_.empty()) log_.info(holds_.size(), " on-site holds kept from before the restart");
}

void UpdateGate::save() {
  if (!state_) return;
  json holds = json::object();
  for (const auto& [pod, until] : holds_)
    holds[pod.empty() ? "*" : pod] = until ? json(core::toUnixMillis(*until)) : json(nullptr);
  json running = json::object();
  for (const auto& [pod, rec] : kept_)
    running[pod] = {{"version", rec.version}, {"json", rec.json}};
  state_->put(kHoldsState,
              json{{"holds", holds}, {"released", released_}, {"running", running}}.dump());
}

std::optional<HeldUpdate> UpdateGate::check(const std::string& key, const PodSpec& running,
                                            const std::string& runningVersion,
                                            const std::string& pendingVersion, bool deletion,
                                            core::WallTime now) const {
  if (auto r = released_.find(key);
      r != released_.end() && r->second == (deletion ? kDeletion : pendingVersion))
    return std::nullopt;
  HeldUpdate h{key,          runningVersion, deletion ? "" : pendingVersion, deletion, "", "",
               std::nullopt, false};
  const std::string what = deletion ? "deletion" : "update to version " + pendingVersion;
  for (const std::string& k : {key, std::string()}) {
    auto it = holds_.find(k);
    if (it == holds_.end() || (it->second && *it->second <= now)) continue;
    h.reason = "OnHold";
    h.heldUntil = it->second;
    h.message = "the " + what + " is held on site (outpostctl hold" +
                (k.empty() ? ", every pod" : "") + ")" +
                (it->second ? " until " + rfc3339(*it->second) : "");
    return h;
  }
  auto policy = running.annotations.find(kUpdatePolicyAnnotation);
  if (windows_.empty() || policy == running.annotations.end() ||
      policy->second != kMaintenanceWindowPolicy)
    return std::nullopt;
  auto state = windowState(windows_, now);
  if (state.open) return std::nullopt;
  h.reason = "MaintenanceWindow";
  h.window = true;
  h.heldUntil = state.nextOpen;
  h.message = "the " + what + " waits for the next maintenance window" +
              (state.nextOpen ? ", at " + rfc3339(*state.nextOpen) : "");
  return h;
}

void UpdateGate::hold(const std::vector<std::string>& keys, std::optional<core::WallTime> until) {
  if (keys.empty()) holds_[""] = until;
  for (const auto& k : keys) holds_[k] = until;
  log_.info("on-site hold of ", keys.empty() ? "every pod" : std::to_string(keys.size()) + " pods",
            until ? " until " + rfc3339(*until) : "");
  save();
}

void UpdateGate::release(const std::vector<std::string>& keys,
                         const std::map<std::string, std::string>& waiting) {
  if (keys.empty()) holds_.clear();
  for (const auto& k : keys) holds_.erase(k);
  for (const auto& [pod, version] : waiting) {
    bool named = keys.empty();
    for (const auto& k : keys) named = named || k == pod;
    if (named) released_[pod] = version.empty() ? kDeletion : version;
  }
  log_.info("released: ", keys.empty() ? "every pod" : std::to_string(keys.size()) + " pods");
  save();
}

void UpdateGate::applied(const std::string& key) {
  if (released_.erase(key) + kept_.erase(key) > 0) save();
}

void UpdateGate::keep(const PodRecord& running) {
  auto it = kept_.find(running.key);
  if (it != kept_.end() && it->second.version == running.version) return;
  kept_[running.key] = running;
  save();
}

std::optional<PodRecord> UpdateGate::kept(const std::string& key) const {
  auto it = kept_.find(key);
  if (it == kept_.end()) return std::nullopt;
  return it->second;
}

std::vector<PodHold> UpdateGate::holds(core::WallTime now) const {
  std::vector<PodHold> out;
  for (const auto& [pod, until] : holds_) {
    if (!until || *until > now) out.push_back({pod, until});
  }
  return out;
}

bool UpdateGate::admit(PodState& w, const std::optional<PodRecord>& rec, const Hooks& hooks) {
  std::string version = !rec                   ? ""
                        : rec->version.empty() ? metadataVersion(rec->json)
                                               : rec->version;
  if (!w.spec && rec) {
    // After a restart: the change that waited before it still does, the old version runs on.
    if (auto k = kept(w.key); k && k->version != version) hooks.apply(w, k);
  }
  bool running = w.spec && w.invalid.empty() && (w.phase == "Running" || kept_.count(w.key));
  if (!running || (rec && version == w.version)) {
    // A pod not running yet is never held; back at the running version, nothing waits.
    if (w.pending || kept_.count(w.key)) {
      w.pending.reset();
      w.held.reset();
      applied(w.key);
    }
    return false;
  }
  w.pending = PodState::Pending{rec, version};
  recheck(w, hooks);
  return true;
}

bool UpdateGate::recheck(PodState& w, const Hooks& hooks) {
  if (!w.pending) return false;
  auto now = hooks.clock.wallNow();
  auto was = w.held;
  w.held = check(w.key, *w.spec, w.version, w.pending->version, !w.pending->record, now);
  if (w.held) {
    if (!was || was->message != w.held->message) log_.info("pod ", w.key, ": ", w.held->message);
    keep({w.key, w.specJson, w.version});
    if (w.held->heldUntil) {
      hooks.wakeAt(w, hooks.clock.now() + std::max(core::Duration::zero(),
                                                   core::Duration(*w.held->heldUntil - now)));
    }
    return true;
  }
  auto rec = std::move(w.pending->record);
  w.pending.reset();
  applied(w.key);
  log_.info("pod ", w.key, ": the change that waited goes ahead");
  hooks.apply(w, rec);
  return false;
}

}  // namespace outpost::deploy
