#include "rollout/mqtt_fleet.h"

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/mqtt_link.h"
#include "outpost/mqttc/client.h"
#include "outpost/validation/validation.h"

namespace outpost::agent::rollout {

using nlohmann::json;

class MqttFleetView::Impl {
 public:
  explicit Impl(cloudhub::PublisherOptions o, std::string rollout)
      : opts(std::move(o)),
        name(std::move(rollout)),
        stem(opts.prefix + "/"),
        rolloutStem(opts.prefix + "/rollouts/" + name + "/") {}
  // The watcher first: its callbacks use the maps below, which go before it would.
  ~Impl() {
    client.reset();
    publisher.reset();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  core::Status start() {
    auto pub = cloudhub::DesiredPublisher::connect(opts);
    if (!pub.isOk()) return pub.status();
    publisher = std::move(pub).value();
    mqttc::ConnectOptions c;
    c.uri = opts.broker;
    c.clientId = "outpost-rollout-" + cloudhub::newMessageId().substr(0, 8);
    c.cleanSession = true;
    c.username = opts.username;
    c.password = opts.password;
    c.caFile = opts.caFile;
    c.certFile = opts.certFile;
    c.keyFile = opts.keyFile;
    c.connectTimeout = std::chrono::duration_cast<std::chrono::seconds>(opts.timeout);
    mqttc::Callbacks cb;
    cb.connected = [this] { signal(connected, core::okStatus()); };
    cb.down = [this](std::string why) {
      signal(connected, core::unavailable(why));
      std::lock_guard l(mu);
      lost = true;
      cv.notify_all();
    };
    cb.message = [this](std::string topic, std::string payload, bool) {
      onMessage(topic, payload);
    };
    client = std::make_unique<mqttc::Client>(c, std::move(cb));
    OUTPOST_RETURN_IF_ERROR(client->connect());
    OUTPOST_RETURN_IF_ERROR(wait(connected));
    auto w = std::make_shared<Waiter>();
    client->subscribe({stem + "nodes/+/status/#", stem + "nodes/+/online",
                       stem + "nodes/+/desired/#", stem + "groups/+/desired/#", rolloutStem + "#"},
                      [this, w](core::Status s) { signal(*w, std::move(s)); });
    OUTPOST_RETURN_IF_ERROR(wait(*w).withContext("subscribing"));
    return sync();
  }

  struct Waiter {
    bool done = false;
    core::Status status;
  };
  void signal(Waiter& w, core::Status s) {
    std::lock_guard l(mu);
    if (w.done) return;
    w.done = true;
    w.status = std::move(s);
    cv.notify_all();
  }
  core::Status wait(Waiter& w) {
    std::unique_lock l(mu);
    if (!cv.wait_for(l, opts.timeout, [&] { return w.done; }))
      return core::deadlineExceeded("no answer from " + opts.broker);
    return w.status;
  }

  core::Status publishRaw(const std::string& topic, std::string payload, bool retained) {
    if (lostConnection()) return core::unavailable("lost the connection to " + opts.broker);
    auto w = std::make_shared<Waiter>();
    client->publish(topic, std::move(payload), retained,
                    [this, w](core::Status s) { signal(*w, std::move(s)); });
    return wait(*w).withContext("publishing " + topic);
  }

  bool lostConnection() {
    std::lock_guard l(mu);
    return lost;
  }

  core::Status sync() {
    std::string token = cloudhub::newMessageId();
    OUTPOST_RETURN_IF_ERROR(publishRaw(rolloutStem + "sync", token, false));
    std::unique_lock l(mu);
    if (!cv.wait_for(l, opts.timeout, [&] { return synced.count(token) > 0; }))
      return core::deadlineExceeded("the broker did not echo a message within " +
                                    std::to_string(opts.timeout.count()) + " ms");
    synced.erase(token);
    return core::okStatus();
  }

  // What the envelope of a desired object or status carries: its version and its content object.
  static bool unwrap(const std::string& payload, cloudhub::Encoding enc, std::string& version,
                     std::string& content) {
    auto d = cloudhub::decode(payload, enc);
    if (!d.envelope) return false;
    version = d.envelope->header.resourceVersion;
    auto c = cloudhub::contentObject(*d.envelope);
    if (!c) return false;
    content = std::move(*c);
    if (version.empty()) {
      json j = json::parse(content, nullptr, false);
      if (j.is_object() && j.contains("metadata") && j["metadata"].is_object())
        version = j["metadata"].value("resourceVersion", "");
    }
    return true;
  }

  void onMessage(const std::string& topic, const std::string& payload) {
    if (topic.rfind(rolloutStem, 0) == 0) {
      std::string what = topic.substr(rolloutStem.size());
      std::lock_guard l(mu);
      if (what == "sync") {
        synced.insert(payload);
      } else if (what == "state" || what == "lease" || what == "command") {
        if (payload.empty()) {
          own.erase(what);
        } else {
          own[what] = payload;
        }
      }
      cv.notify_all();
      return;
    }
    if (topic.rfind(stem, 0) != 0) return;
    std::string rest = topic.substr(stem.size());
    bool isGroup = rest.rfind("groups/", 0) == 0;
    if (!isGroup && rest.rfind("nodes/", 0) != 0) return;
    rest = rest.substr(isGroup ? 7 : 6);
    auto slash = rest.find('/');
    if (slash == std::string::npos) return;
    std::string owner = rest.substr(0, slash);
    std::string tail = rest.substr(slash + 1);
    if (!validation::dnsSubdomain("node", owner).isOk()) return;
    std::lock_guard l(mu);
    if (!isGroup && tail == "online") {
      onlineFlags[owner] = payload == "true";
      return;
    }
    bool desired = tail.rfind("desired/", 0) == 0;
    bool status = !isGroup && tail.rfind("status/", 0) == 0;
    if (!desired && !status) return;
    std::string key = tail.substr(desired ? 8 : 7);
    auto id = owner + "|" + key;
    if (payload.empty()) {
      if (isGroup) {
        groupObjects.erase(id);
      } else if (desired) {
        nodeVersions.erase(id);
      } else {
        statuses.erase(id);
      }
      return;
    }
    std::string version, content;
    if (!unwrap(payload, opts.encoding, version, content)) return;
    if (isGroup) {
      if (desired) groupObjects[id] = content;
    } else if (desired) {
      nodeVersions[id] = version;
    } else if (key.find("/node/") != std::string::npos) {
      json j = json::parse(content, nullptr, false);
      NodeInfo& n = nodeInfo[owner];
      n.name = owner;
      n.labels.clear();
      if (j.is_object() && j.contains("metadata") && j["metadata"].is_object() &&
          j["metadata"].contains("labels") && j["metadata"]["labels"].is_object()) {
        for (const auto& [k, v] : j["metadata"]["labels"].items()) {
          if (v.is_string()) n.labels[k] = v.get<std::string>();
        }
      }
    } else {
      statuses[id] = content;
    }
  }

  cloudhub::PublisherOptions opts;
  std::string name, stem, rolloutStem;
  std::unique_ptr<cloudhub::DesiredPublisher> publisher;
  std::unique_ptr<mqttc::Client> client;
  std::mutex mu;
  std::condition_variable cv;
  Waiter connected;
  bool lost = false;
  std::set<std::string> synced;
  std::map<std::string, std::string> own;  // state, lease, command
  std::map<std::string, bool> onlineFlags;
  std::map<std::string, NodeInfo> nodeInfo;
  std::map<std::string, std::string> nodeVersions;  // node|key -> version
  std::map<std::string, std::string> groupObjects;  // group|key -> content
  std::map<std::string, std::string> statuses;      // node|key -> content

  // The last status content `node` reported for `key`, if any.
  std::optional<std::string> status(const std::string& node, const std::string& key) {
    std::lock_guard l(mu);
    auto it = statuses.find(node + "|" + key);
    if (it == statuses.end()) return std::nullopt;
    return it->second;
  }
};

MqttFleetView::MqttFleetView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MqttFleetView::~MqttFleetView() = default;

core::Result<std::unique_ptr<MqttFleetView>> MqttFleetView::connect(
    const cloudhub::PublisherOptions& options, const std::string& rollout) {
  auto impl = std::make_unique<Impl>(options, rollout);
  OUTPOST_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<MqttFleetView>(new MqttFleetView(std::move(impl)));
}

std::vector<NodeInfo> MqttFleetView::nodes() {
  std::lock_guard l(impl_->mu);
  std::vector<NodeInfo> out;
  for (const auto& [n, info] : impl_->nodeInfo) out.push_back(info);
  return out;
}

std::optional<bool> MqttFleetView::online(const std::string& node) {
  std::lock_guard l(impl_->mu);
  auto it = impl_->onlineFlags.find(node);
  if (it == impl_->onlineFlags.end()) return std::nullopt;
  return it->second;
}

std::optional<PodReport> MqttFleetView::pod(const std::string& node, const std::string& key) {
  auto content = impl_->status(node, key);
  if (!content) return std::nullopt;
  return podReportFrom(*content);
}

std::optional<PrePullReport> MqttFleetView::prePull(const std::string& node,
                                                    const std::string& key) {
  auto content = impl_->status(node, key);
  if (!content) return std::nullopt;
  return prePullReportFrom(*content);
}

std::optional<UpgradeReport> MqttFleetView::agentUpgrade(const std::string& node,
                                                         const std::string& key) {
  auto content = impl_->status(node, key);
  if (!content) return std::nullopt;
  return upgradeReportFrom(*content);
}

std::optional<std::string> MqttFleetView::nodeObjectVersion(const std::string& node,
                                                            const std::string& key) {
  std::lock_guard l(impl_->mu);
  auto it = impl_->nodeVersions.find(node + "|" + key);
  if (it == impl_->nodeVersions.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> MqttFleetView::groupObject(const std::string& group,
                                                      const std::string& key) {
  std::lock_guard l(impl_->mu);
  auto it = impl_->groupObjects.find(group + "|" + key);
  if (it == impl_->groupObjects.end()) return std::nullopt;
  return it->second;
}

core::Result<std::map<std::string, std::string>> MqttFleetView::publish(
    const Scope& scope, const std::vector<Object>& objects) {
  if (impl_->lostConnection()) return core::unavailable("lost the connection to the broker");
  std::vector<cloudhub::DesiredObject> desired;
  desired.reserve(objects.size());
  for (const auto& o : objects) desired.push_back({o.key, o.json});
  auto r = impl_->publisher->apply(
      {scope.group ? cloudhub::Scope::Kind::kGroup : cloudhub::Scope::Kind::kNode, scope.name},
      desired);
  if (!r.isOk()) return r.status();
  std::map<std::string, std::string> out;
  std::lock_guard l(impl_->mu);
  for (const auto& p : *r) {
    out[p.key] = p.resourceVersion;
    // What the watcher will see shortly; known now so the next look does not miss it.
    if (!scope.group) impl_->nodeVersions[scope.name + "|" + p.key] = p.resourceVersion;
  }
  return out;
}

core::Status MqttFleetView::withdraw(const Scope& scope, const std::vector<std::string>& keys) {
  if (impl_->lostConnection()) return core::unavailable("lost the connection to the broker");
  auto r = impl_->publisher->remove(
      {scope.group ? cloudhub::Scope::Kind::kGroup : cloudhub::Scope::Kind::kNode, scope.name},
      keys);
  if (!r.isOk()) return r.status();
  std::lock_guard l(impl_->mu);
  for (const auto& k : keys) {
    if (scope.group) {
      impl_->groupObjects.erase(scope.name + "|" + k);
    } else {
      impl_->nodeVersions.erase(scope.name + "|" + k);
    }
  }
  return core::okStatus();
}

core::Status MqttFleetView::saveState(const std::string& rollout, const std::string& text) {
  (void)rollout;
  OUTPOST_RETURN_IF_ERROR(impl_->publishRaw(impl_->rolloutStem + "state", text, true));
  std::lock_guard l(impl_->mu);
  impl_->own["state"] = text;
  return core::okStatus();
}

core::Status MqttFleetView::clearState() {
  OUTPOST_RETURN_IF_ERROR(impl_->publishRaw(impl_->rolloutStem + "state", "", true));
  std::lock_guard l(impl_->mu);
  impl_->own.erase("state");
  return core::okStatus();
}

core::Status MqttFleetView::prefetchNodes(const std::vector<std::string>& nodes) {
  std::vector<cloudhub::Scope> scopes;
  scopes.reserve(nodes.size());
  for (const auto& n : nodes) scopes.push_back({cloudhub::Scope::Kind::kNode, n});
  return impl_->publisher->prefetchManifests(scopes);
}

core::Status MqttFleetView::sync() { return impl_->sync(); }

std::optional<std::string> MqttFleetView::storedState() {
  std::lock_guard l(impl_->mu);
  auto it = impl_->own.find("state");
  if (it == impl_->own.end()) return std::nullopt;
  return it->second;
}

std::optional<Lease> MqttFleetView::lease() {
  std::string text;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->own.find("lease");
    if (it == impl_->own.end()) return std::nullopt;
    text = it->second;
  }
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("holder") || !j["holder"].is_string() ||
      !j.contains("expiresAt") || !j["expiresAt"].is_number_integer())
    return std::nullopt;
  Lease l;
  l.holder = validation::printable(j["holder"].get<std::string>(), 200);
  l.expiresAt = j["expiresAt"].get<int64_t>();
  return l;
}

core::Status MqttFleetView::takeLease(const std::string& holder, int64_t nowMs, int64_t ttlMs) {
  auto current = lease();
  if (current && current->holder != holder && current->expiresAt > nowMs)
    return core::failedPrecondition(
        "rollout " + impl_->name + " is driven by " + current->holder + " (its lease runs " +
        std::to_string((current->expiresAt - nowMs + 999) / 1000) + " s more)");
  json mine = {{"holder", holder}, {"expiresAt", nowMs + ttlMs}};
  OUTPOST_RETURN_IF_ERROR(impl_->publishRaw(impl_->rolloutStem + "lease", mine.dump(), true));
  // Two controllers that took it at the same moment: the broker kept one; both read it back.
  OUTPOST_RETURN_IF_ERROR(impl_->sync());
  auto after = lease();
  if (!after || after->holder != holder)
    return core::failedPrecondition("rollout " + impl_->name + ": " +
                                    (after ? after->holder : std::string("another controller")) +
                                    " took the lease at the same time");
  return core::okStatus();
}

core::Status MqttFleetView::releaseLease(const std::string& holder) {
  auto current = lease();
  if (!current || current->holder != holder) return core::okStatus();
  OUTPOST_RETURN_IF_ERROR(impl_->publishRaw(impl_->rolloutStem + "lease", "", true));
  std::lock_guard l(impl_->mu);
  impl_->own.erase("lease");
  return core::okStatus();
}

std::optional<std::string> MqttFleetView::takeCommand() {
  std::string text;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->own.find("command");
    if (it == impl_->own.end()) return std::nullopt;
    text = it->second;
    impl_->own.erase(it);
  }
  (void)impl_->publishRaw(impl_->rolloutStem + "command", "", true);
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("action") || !j["action"].is_string()) return std::nullopt;
  std::string a = j["action"].get<std::string>();
  if (a != "pause" && a != "abort") return std::nullopt;
  return a;
}

core::Status MqttFleetView::sendCommand(const std::string& action) {
  json j = {{"action", action}, {"id", cloudhub::newMessageId()}};
  return impl_->publishRaw(impl_->rolloutStem + "command", j.dump(), true);
}

}  // namespace outpost::agent::rollout
