#include "rollout/controller.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace outpost::agent::rollout {

using nlohmann::json;

namespace {

std::string namespaceOf(const std::string& key) { return key.substr(0, key.find('/')); }

bool isPod(const std::string& key) {
  auto first = key.find('/');
  return key.compare(first + 1, 4, "pod/") == 0;
}

bool isAgentUpgrade(const std::string& key) {
  auto first = key.find('/');
  return key.compare(first + 1, 13, "agentupgrade/") == 0;
}

std::string secondsText(int64_t s) { return std::to_string(s) + " s"; }

}  // namespace

std::string prePullKey(const RolloutSpec& spec) {
  std::string ns = "default";
  for (const auto& o : spec.objects) {
    if (isPod(o.key)) {
      ns = namespaceOf(o.key);
      break;
    }
  }
  return ns + "/imageprepull/rollout-" + spec.name;
}

core::Result<RolloutState> planRollout(RolloutSpec spec, FleetView& fleet, int64_t nowMs) {
  std::vector<std::string> names;
  for (const auto& n : fleet.nodes()) {
    bool match = true;
    if (!spec.target.group.empty()) {
      auto it = n.labels.find(groupLabel(spec.target.group));
      match = it != n.labels.end() && it->second == "true";
    }
    for (const auto& [k, v] : spec.target.selector) {
      auto it = n.labels.find(k);
      match = match && it != n.labels.end() && it->second == v;
    }
    if (match) names.push_back(n.name);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string target = spec.target.group.empty() ? "the selector" : "group " + spec.target.group;
  if (names.empty())
    return core::failedPrecondition("no node of " + target +
                                    " has published its node status on the broker");
  for (const auto& name : names) {
    for (const auto& o : spec.objects) {
      if (fleet.nodeObjectVersion(name, o.key))
        return core::failedPrecondition(
            "node " + name + " has " + o.key +
            " in its own scope already (a rollout changes what nodes get from their group; "
            "withdraw it with outpostctl delete --node, or finish the rollout that put it there)");
    }
  }
  RolloutState s;
  s.spec = std::move(spec);
  s.createdAt = s.updatedAt = nowMs;
  for (size_t size : waveSizes(s.spec.strategy, names.size())) s.waves.push_back({size});
  size_t next = 0;
  for (size_t w = 0; w < s.waves.size(); ++w) {
    for (size_t i = 0; i < s.waves[w].size; ++i) {
      NodeRecord n;
      n.name = names[next++];
      n.wave = w;
      n.since = nowMs;
      s.nodes.push_back(std::move(n));
    }
  }
  if (!s.spec.target.group.empty()) {
    for (const auto& o : s.spec.objects) {
      auto prev = fleet.groupObject(s.spec.target.group, o.key);
      if (prev) {
        s.previous[o.key] = *prev;
      } else {
        s.previousAbsent.push_back(o.key);
      }
    }
  }
  return s;
}

Controller::Controller(FleetView& fleet, RolloutState state)
    : fleet_(fleet), state_(std::move(state)) {}

std::vector<std::string> Controller::keys() const {
  std::vector<std::string> k;
  for (const auto& o : state_.spec.objects) k.push_back(o.key);
  return k;
}

void Controller::setNode(NodeRecord& n, NodeState s, int64_t now, std::string reason,
                         std::string message) {
  if (n.state != s) n.since = now;
  n.state = s;
  n.reason = std::move(reason);
  n.message = std::move(message);
}

bool Controller::terminal(const NodeRecord& n) const {
  return n.state == NodeState::kHealthy || n.state == NodeState::kFailed ||
         n.state == NodeState::kRolledBack ||
         ((n.state == NodeState::kOffline || n.state == NodeState::kHeld) && n.counted);
}

void Controller::pause(const std::string& why) {
  if (state_.finished()) return;
  state_.pauseRequested = true;
  if (!why.empty()) state_.message = why;
}

core::Status Controller::resume() {
  if (state_.finished())
    return core::failedPrecondition("rollout " + state_.spec.name + " is " +
                                    phaseText(state_.phase) + ": nothing to resume");
  if (state_.phase == Phase::kPaused) {
    state_.phase = Phase::kProgressing;
    for (auto& n : state_.nodes) {
      if (n.state == NodeState::kFailed) n.counted = true;  // accepted by the operator
    }
    state_.reason.clear();
    state_.message.clear();
  }
  state_.pauseRequested = false;
  return core::okStatus();
}

core::Status Controller::abort(const std::string& why) {
  if (state_.finished())
    return core::failedPrecondition("rollout " + state_.spec.name + " is " +
                                    phaseText(state_.phase) +
                                    (state_.phase == Phase::kSucceeded ? ": use undo" : ""));
  state_.phase = Phase::kRollingBack;
  state_.pauseRequested = false;
  state_.reason = "Aborted";
  state_.message = why.empty() ? "aborted by the operator" : why;
  return core::okStatus();
}

core::Status Controller::save(int64_t now) {
  std::string text = stateToJson(state_);
  if (text == saved_) return core::okStatus();
  state_.updatedAt = now;
  text = stateToJson(state_);
  OUTPOST_RETURN_IF_ERROR(fleet_.saveState(state_.spec.name, text));
  saved_ = stateToJson(state_);
  return core::okStatus();
}

core::Status Controller::step(int64_t now) {
  lastError_ = core::okStatus();
  if (!state_.finished()) {
    if (state_.pauseRequested && state_.phase == Phase::kProgressing) {
      state_.phase = Phase::kPaused;
      state_.reason = "Paused";
      if (state_.message.empty()) state_.message = "paused by the operator";
      state_.pauseRequested = false;
    }
    if (state_.phase == Phase::kProgressing) progress(now);
    if (state_.phase == Phase::kRollingBack) rollBack(now);
  }
  auto saved = save(now);
  if (!lastError_.isOk()) return lastError_;
  return saved;
}

// ---- a wave in progress

void Controller::progress(int64_t now) {
  while (state_.wave < state_.waves.size()) {
    WaveRecord& w = state_.waves[state_.wave];
    if (w.startedAt == 0) w.startedAt = w.prePullStartedAt = now;
    size_t first = 0;
    for (size_t i = 0; i < state_.wave; ++i) first += state_.waves[i].size;
    auto begin = state_.nodes.begin() + static_cast<long>(first);
    auto end = begin + static_cast<long>(w.size);
    // Pre-pull first: every node of the wave is asked at once.
    for (auto it = begin; it != end; ++it) prePull(*it, now);
    for (auto it = begin; it != end && lastError_.isOk(); ++it) observe(*it, now);
    // The switch waits until each node has its images, failed, or is away.
    bool gateOpen = std::all_of(begin, end, [&](const NodeRecord& n) {
      return n.pulled || n.state != NodeState::kPrePulling;
    });
    for (auto it = begin; it != end && gateOpen && lastError_.isOk(); ++it) {
      if (it->state == NodeState::kPrePulling && it->pulled) switchNode(*it, now);
    }
    if (checkFailures()) return;
    if (!std::all_of(begin, end, [&](const NodeRecord& n) { return terminal(n); })) return;
    w.done = true;
    ++state_.wave;
  }
  finish(now);
}

void Controller::prePull(NodeRecord& n, int64_t now) {
  if (n.state != NodeState::kPending || !lastError_.isOk()) return;
  if (state_.spec.images.empty()) {  // nothing to pull (an AgentUpgrade alone)
    n.pulled = true;
    setNode(n, NodeState::kPrePulling, now);
    return;
  }
  std::string key = prePullKey(state_.spec);
  if (auto adopted = fleet_.nodeObjectVersion(n.name, key)) {
    n.prePullVersion = *adopted;  // published before a restart of the controller
  } else {
    json obj = {
        {"apiVersion", "outpost.io/v1"},
        {"kind", "ImagePrePull"},
        {"metadata", {{"name", "rollout-" + state_.spec.name}, {"namespace", namespaceOf(key)}}},
        {"spec", {{"images", state_.spec.images}}}};
    auto r = fleet_.publish({false, n.name}, {{key, obj.dump()}});
    if (!r.isOk()) {
      lastError_ = r.status();
      return;
    }
    n.prePullVersion = (*r)[key];
  }
  setNode(n, NodeState::kPrePulling, now);
}

void Controller::observe(NodeRecord& n, int64_t now) {
  if (terminal(n) || n.state == NodeState::kPending) return;
  const Strategy& st = state_.spec.strategy;
  auto on = fleet_.online(n.name);
  bool away = on.has_value() && !*on;
  if (n.state == NodeState::kOffline) {
    if (away) {
      if (now - n.since <= st.nodeTimeoutSeconds * 1000) return;
      std::string why = "offline for more than " + secondsText(st.nodeTimeoutSeconds);
      if (st.onOffline == OnOffline::kFail) {
        setNode(n, NodeState::kFailed, now, "Offline", why);
      } else {
        n.counted = true;
        n.message = why + "; the rollout went on without it";
      }
      return;
    }
    setNode(n, n.versions.empty() ? NodeState::kPrePulling : NodeState::kUpdating, now);
  } else if (away) {
    setNode(n, NodeState::kOffline, now, "Offline", "the node's online flag is false");
    return;
  }
  if (n.state == NodeState::kPrePulling) {
    if (!n.pulled) {
      auto r = fleet_.prePull(n.name, prePullKey(state_.spec));
      if (r && r->observedVersion == n.prePullVersion) {
        if (!r->failedImage.empty()) {
          setNode(n, NodeState::kFailed, now, r->reason.empty() ? "ErrImagePull" : r->reason,
                  "pre-pull of " + r->failedImage + " failed" +
                      (r->message.empty() ? "" : ": " + r->message) + "; not switched");
          return;
        }
        n.pulled = r->allPresent;
      }
      const WaveRecord& w = state_.waves[n.wave];
      if (!n.pulled && now - w.prePullStartedAt > st.prePullTimeoutSeconds * 1000) {
        setNode(n, NodeState::kFailed, now, "PrePullTimeout",
                "images not present within " + secondsText(st.prePullTimeoutSeconds) +
                    "; not switched");
        return;
      }
    }
    return;
  }
  // Updating or held: the node's pod reports decide.
  bool allHealthy = true, sawUnhealthy = false;
  for (const auto& o : state_.spec.objects) {
    if (isAgentUpgrade(o.key)) {
      // The node's agentupgradestatus for the version the object asks for decides; rolled back
      // and failed are final for that attempt (the node does not try it again).
      auto r = fleet_.agentUpgrade(n.name, o.key);
      if (!r || r->version != upgradeVersion(o)) {
        allHealthy = false;
      } else if (r->phase == "rolled back" || r->phase == "failed") {
        setNode(n, NodeState::kFailed, now, r->phase == "failed" ? "UpgradeFailed" : "RolledBack",
                o.key + ": " + r->reason);
        return;
      } else {
        allHealthy = allHealthy && r->phase == "healthy";
      }
      continue;
    }
    if (!isPod(o.key)) continue;
    auto version = n.versions.find(o.key);
    auto r = fleet_.pod(n.name, o.key);
    if (!r || version == n.versions.end()) {
      allHealthy = false;
      continue;
    }
    if (r->health == "held" && r->pendingVersion == version->second) {
      if (n.state != NodeState::kHeld)
        setNode(n, NodeState::kHeld, now, r->reason.empty() ? "Held" : r->reason,
                r->message + (r->heldUntil.empty() ? "" : " (until " + r->heldUntil + ")"));
      if (st.onHeld == OnHeld::kContinue) n.counted = true;
      return;
    }
    if (r->desiredVersion != version->second) {
      allHealthy = false;
      continue;
    }
    if (r->health == "unhealthy") {
      // Only a report that stands fails the node: a step the node retries (a container the
      // runtime refused once) may say unhealthy for one pass.
      auto since = unhealthySince_.emplace(n.name, now).first->second;
      if (now - since >= kUnhealthyConfirmMs) {
        unhealthySince_.erase(n.name);
        setNode(n, NodeState::kFailed, now, r->reason.empty() ? "Unhealthy" : r->reason,
                o.key + ": " + r->message);
        return;
      }
      allHealthy = false;
      sawUnhealthy = true;
      continue;
    }
    allHealthy = allHealthy && r->health == "healthy";
  }
  if (!sawUnhealthy) unhealthySince_.erase(n.name);
  if (allHealthy) {
    setNode(n, NodeState::kHealthy, now);
    return;
  }
  if (n.state == NodeState::kHeld) {
    setNode(n, NodeState::kUpdating, now);  // the window opened
  } else if (now - n.since > st.nodeTimeoutSeconds * 1000) {
    setNode(n, NodeState::kFailed, now, "Timeout",
            "not healthy within " + secondsText(st.nodeTimeoutSeconds));
  }
}

const std::string& Controller::upgradeVersion(const Object& o) {
  auto it = upgradeVersions_.find(o.key);
  if (it != upgradeVersions_.end()) return it->second;
  json j = json::parse(o.json, nullptr, false);
  std::string v;
  if (j.is_object() && j.contains("spec") && j["spec"].is_object() &&
      j["spec"].contains("version") && j["spec"]["version"].is_string())
    v = j["spec"]["version"].get<std::string>();
  return upgradeVersions_.emplace(o.key, v).first->second;
}

void Controller::switchNode(NodeRecord& n, int64_t now) {
  const Strategy& st = state_.spec.strategy;
  if (st.maxNodesPerMinute > 0 && now < state_.nextSwitchAt) return;
  std::map<std::string, std::string> adopted;
  for (const auto& o : state_.spec.objects) {
    if (auto v = fleet_.nodeObjectVersion(n.name, o.key)) adopted[o.key] = *v;
  }
  if (adopted.size() == state_.spec.objects.size()) {
    n.versions = adopted;  // switched before a restart of the controller
  } else {
    auto r = fleet_.publish({false, n.name}, state_.spec.objects);
    if (!r.isOk()) {
      lastError_ = r.status();
      return;
    }
    n.versions = *r;
    if (st.maxNodesPerMinute > 0) {
      int64_t interval = 60000 / st.maxNodesPerMinute;
      // Steps come every few hundred ms: a node may use time up to 1 s back, no more.
      state_.nextSwitchAt = std::max(state_.nextSwitchAt, now - 1000) + interval;
    }
  }
  setNode(n, NodeState::kUpdating, now);
}

bool Controller::checkFailures() {
  const Strategy& st = state_.spec.strategy;
  size_t total = 0, inWave = 0;
  std::string first;
  for (const auto& n : state_.nodes) {
    if (n.state != NodeState::kFailed || n.counted) continue;
    ++total;
    if (n.wave == state_.wave) {
      ++inWave;
      if (first.empty()) first = n.name + ": " + n.reason + ": " + n.message;
    }
  }
  size_t waveLimit = st.maxFailuresPerWave.of(state_.waves[state_.wave].size);
  size_t limit = st.maxFailures.of(state_.nodes.size());
  if (inWave <= waveLimit && total <= limit) return false;
  std::string waveName = state_.wave == 0 && st.canary.value > 0
                             ? "wave 0 (canary)"
                             : "wave " + std::to_string(state_.wave);
  state_.reason = "FailureThreshold";
  state_.message =
      inWave > waveLimit
          ? waveName + ": " + std::to_string(inWave) + " of " +
                std::to_string(state_.waves[state_.wave].size) + " nodes failed (allowed " +
                std::to_string(waveLimit) + ")"
          : std::to_string(total) + " nodes failed in all (allowed " + std::to_string(limit) + ")";
  if (!first.empty()) state_.message += "; first: " + first;
  state_.phase = st.onFailure == OnFailure::kPause ? Phase::kPaused : Phase::kRollingBack;
  return true;
}

// ---- the end

void Controller::rollBack(int64_t now) {
  std::string pp = prePullKey(state_.spec);
  // A node never goes back to an older version of a key: the group's objects are published again
  // (the same content, a newer version) before any node's own copy is cleared, so each switched
  // node then holds the group's (docs/mqtt-link.md, "Objects whose key is in both scopes").
  bool switched = std::any_of(state_.nodes.begin(), state_.nodes.end(),
                              [](const NodeRecord& n) { return !n.versions.empty(); });
  if (switched && !groupRestored_ && !state_.spec.target.group.empty()) {
    std::vector<Object> current;
    for (const auto& o : state_.spec.objects) {
      if (auto g = fleet_.groupObject(state_.spec.target.group, o.key))
        current.push_back({o.key, *g});
    }
    if (!current.empty()) {
      auto r = fleet_.publish({true, state_.spec.target.group}, current);
      if (!r.isOk()) {
        lastError_ = r.status();
        return;
      }
    }
    groupRestored_ = true;
  }
  for (auto& n : state_.nodes) {
    if (!lastError_.isOk()) return;
    if (n.versions.empty() && n.prePullVersion.empty()) continue;
    std::vector<std::string> k = keys();
    k.push_back(pp);
    if (auto s = fleet_.withdraw({false, n.name}, k); !s.isOk()) {
      lastError_ = s;
      return;
    }
    if (!n.versions.empty()) {
      // Keeps why a failed node failed.
      setNode(n, NodeState::kRolledBack, now, n.reason, n.message);
    } else if (n.state == NodeState::kPrePulling) {
      setNode(n, NodeState::kPending, now);
    }
    n.versions.clear();
    n.prePullVersion.clear();
    n.pulled = false;
  }
  state_.phase = Phase::kRolledBack;
}

void Controller::finish(int64_t now) {
  (void)now;
  bool group = !state_.spec.target.group.empty();
  if (group) {
    auto r = fleet_.publish({true, state_.spec.target.group}, state_.spec.objects);
    if (!r.isOk()) {
      lastError_ = r.status();
      return;
    }
  }
  std::string pp = prePullKey(state_.spec);
  for (auto& n : state_.nodes) {
    if (n.versions.empty() && n.prePullVersion.empty()) continue;
    std::vector<std::string> k = group ? keys() : std::vector<std::string>{};
    k.push_back(pp);
    if (auto s = fleet_.withdraw({false, n.name}, k); !s.isOk()) {
      lastError_ = s;
      return;
    }
    if (group) n.versions.clear();
    n.prePullVersion.clear();
  }
  state_.phase = Phase::kSucceeded;
  state_.reason = "Complete";
  state_.message.clear();
}

core::Status Controller::undo(int64_t now) {
  if (state_.phase == Phase::kRolledBack)
    return core::failedPrecondition("rollout " + state_.spec.name +
                                    " was rolled back already: nothing to undo");
  if (state_.phase != Phase::kSucceeded) return abort("undone by the operator");
  if (!state_.spec.target.group.empty()) {
    Scope g{true, state_.spec.target.group};
    std::vector<Object> previous;
    for (const auto& [k, v] : state_.previous) previous.push_back({k, v});
    if (!previous.empty()) {
      auto r = fleet_.publish(g, previous);
      if (!r.isOk()) return r.status();
    }
    if (!state_.previousAbsent.empty())
      OUTPOST_RETURN_IF_ERROR(fleet_.withdraw(g, state_.previousAbsent));
  } else {
    for (auto& n : state_.nodes) {
      if (n.versions.empty()) continue;
      OUTPOST_RETURN_IF_ERROR(fleet_.withdraw({false, n.name}, keys()));
      n.versions.clear();
      setNode(n, NodeState::kRolledBack, now, "Undone", "");
    }
  }
  state_.phase = Phase::kUndone;
  state_.reason = "Undone";
  state_.message = "the objects from before the rollout are desired again";
  return save(now);
}

}  // namespace outpost::agent::rollout
