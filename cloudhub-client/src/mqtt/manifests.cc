// Completeness of the MQTT scheme (docs/mqtt-link.md): each scope's manifest lists every desired
// key with its version; once all of it is stored, objects no manifest lists any more are pruned,
// and what the broker did not deliver is asked for by topic. See mqtt_protocol.h.

#include <algorithm>
#include <nlohmann/json.hpp>

#include "codec/resource_change.h"
#include "mqtt/mqtt_protocol.h"
#include "outpost/validation/validation.h"

namespace outpost::cloudhub {

using nlohmann::json;

void MqttProtocol::onManifest(const std::string& topic, const std::string& origin,
                              const std::string& payload) {
  if (payload.empty()) {
    manifests_.erase(origin);
    return;
  }
  if (auto limits =
          validation::jsonWithin(payload, {.maxDepth = 4, .maxBytes = opts_.maxMessageBytes});
      !limits.isOk())
    return invalid(Session::Invalid::kMalformed, topic, "manifest: " + limits.message());
  json j = json::parse(payload, nullptr, false);
  if (!j.is_object() || !j.contains("objects") || !j["objects"].is_object()) {
    return invalid(Session::Invalid::kMalformed, topic,
                   "a manifest must be {\"generation\": n, \"objects\": {key: version}}");
  }
  Manifest m;
  if (auto g = j.find("generation"); g != j.end() && g->is_number_integer())
    m.generation = g->get<int64_t>();
  for (const auto& [k, v] : j["objects"].items()) {
    std::string version = v.is_string()           ? v.get<std::string>()
                          : v.is_number_integer() ? std::to_string(v.get<int64_t>())
                                                  : "";
    auto parts = metadb::parseKey(k);
    if (!isDecimal(version) || !parts.isOk() ||
        !validation::desiredKey(parts->ns, parts->type, parts->name).isOk()) {
      return invalid(Session::Invalid::kContent, topic,
                     "manifest entry \"" + validation::printable(k) +
                         "\" is not a valid key with a decimal version");
    }
    m.objects[k] = std::stoll(version);
    m.version = std::max(m.version, m.objects[k]);
  }
  if (auto v = j.find("version");
      v != j.end() && v->is_string() && isDecimal(v->get<std::string>())) {
    m.version = std::max<int64_t>(m.version, std::stoll(v->get<std::string>()));
  }
  log_.debug("manifest for ", origin, ": generation ", m.generation, ", ", m.objects.size(),
             " objects");
  manifests_[origin] = std::move(m);
  scheduleConvergenceCheck();
}

void MqttProtocol::scheduleConvergenceCheck() {
  if (checkPosted_) return;
  bool pending = std::any_of(manifests_.begin(), manifests_.end(),
                             [](const auto& m) { return !m.second.converged; });
  if (!pending) return;
  checkPosted_ = true;
  session_.loop().post([this] {
    checkPosted_ = false;
    checkConvergence();
  });
}

// Once everything a manifest lists is stored at its version or newer, objects of that scope that
// no manifest lists any more were deleted while we were away: delete them too.
void MqttProtocol::checkConvergence() {
  if (session_.stopping() || !session_.reader()) return;
  auto all = session_.reader()->listPrefix("");
  if (!all.isOk()) {
    log_.error("reading desired state: ", all.status().toString());
    return;
  }
  std::map<std::string, const metadb::Resource*> stored;
  for (const auto& r : *all) stored[r.key] = &r;
  std::set<std::string> listed;
  for (const auto& [origin, m] : manifests_) {
    for (const auto& [k, v] : m.objects) listed.insert(k);
  }
  for (auto& [origin, m] : manifests_) {
    if (m.converged) continue;
    std::vector<std::string> missing;
    for (const auto& [k, v] : m.objects) {
      auto it = stored.find(k);
      if (it == stored.end() || it->second->version < v) missing.push_back(k);
    }
    if (!missing.empty()) {
      armResync(origin, missing);
      continue;
    }
    metadb::WriteBatch batch;
    size_t removed = 0;
    for (const auto& r : *all) {
      if (r.origin != origin || listed.count(r.key) || r.version > m.version) continue;
      batch.apply({metadb::ResourceChange::Kind::kDelete, r.key, "", "", "", origin});
      ++removed;
    }
    m.converged = true;
    if (!fetchTopics_.empty()) transport_.unsubscribe(std::exchange(fetchTopics_, {}));
    auto now = clock_.wallNow();
    batch.putKv("sync." + origin + ".generation", std::to_string(m.generation));
    batch.putKv(std::string(LinkStateBook::kLastSyncKey), std::to_string(core::toUnixMillis(now)));
    // Every scope with a manifest is complete: a store recovered empty holds the whole set again,
    // so deploy may collect pods that nobody wants (it keeps them while the mark is set).
    if (std::all_of(manifests_.begin(), manifests_.end(),
                    [](const auto& e) { return e.second.converged; })) {
      batch.eraseKv(std::string(metadb::kKvNeedsFullResync));
    }
    std::string scope = origin;
    int64_t generation = m.generation;
    session_.writes().write(
        std::move(batch), session_.loop(),
        [this, scope, generation, removed, now](core::Result<metadb::WriteResult> r) {
          if (!r.isOk()) {
            log_.error("pruning objects no longer desired failed: ", r.status().toString());
            auto it = manifests_.find(scope);
            if (it != manifests_.end()) it->second.converged = false;
            return;
          }
          session_.book().synced(now, /*storedByCaller=*/true);
          resyncDelay_ = kResyncInitial;
          log_.info("desired set of ", scope, " complete (generation ", generation, "), ", removed,
                    removed == 1 ? " object" : " objects", " no longer desired removed");
        });
  }
}

// A manifest lists objects we do not hold at its version yet. They normally arrive within moments
// (the broker resends every retained object on subscribe). But a broker sends a subscriber only
// as many retained messages as its queue for that client holds and drops the rest (mosquitto's
// max_queued_messages, 1000 by default; other brokers have a like limit), so a node with more
// objects would never converge by subscribing again to the whole set: ask for the missing ones by
// their exact topics, a page at a time, each page well under any such queue. Say which broker
// setting to change, once per episode.
void MqttProtocol::armResync(const std::string& origin, const std::vector<std::string>& missing) {
  std::string some;
  for (size_t i = 0; i < missing.size() && i < 3; ++i) some += (i ? ", " : "") + missing[i];
  log_.debug("desired set of ", origin, " not complete yet: ", missing.size(), " missing (", some,
             missing.size() > 3 ? ", ..." : "", ")");
  if (resyncTimer_ != 0) return;
  resyncTimer_ = session_.loop().runAfter(resyncDelay_, [this, origin] {
    resyncTimer_ = 0;
    auto it = manifests_.find(origin);
    if (session_.stopping() || it == manifests_.end() || it->second.converged) return;
    checkConvergence();
    if (it->second.converged || !session_.connected()) return;
    fetchMissing(origin, it->second);
  });
}

// The desired topic of `key` in the scope `origin` (the node's own or one of its groups).
std::string MqttProtocol::desiredTopic(const std::string& origin, const std::string& key) const {
  constexpr std::string_view kGroup = "mqtt:group:";
  if (origin.starts_with(kGroup)) return topics_.groupDesired(origin.substr(kGroup.size()), key);
  return topics_.desired(opts_.nodeName, key);
}

void MqttProtocol::fetchMissing(const std::string& origin, Manifest& m) {
  auto all = session_.reader()->listPrefix("");
  if (!all.isOk()) return;
  std::map<std::string, int64_t> stored;
  for (const auto& r : *all) stored[r.key] = r.version;
  std::vector<std::string> page;
  size_t missing = 0;
  for (const auto& [k, v] : m.objects) {
    auto it = stored.find(k);
    if (it != stored.end() && it->second >= v) continue;
    ++missing;
    if (page.size() < kFetchPage) page.push_back(desiredTopic(origin, k));
  }
  if (missing == 0) return;
  bool progress = m.lastMissing == 0 || missing < m.lastMissing;
  if (!m.warnedQueue) {
    m.warnedQueue = true;
    log_.warn("desired set of ", origin, ": the broker delivered ", m.objects.size() - missing,
              " of the ", m.objects.size(),
              " objects its manifest lists; a broker drops retained messages past its queue for "
              "one client (mosquitto: max_queued_messages, 1000 by default; set it above the "
              "number of objects a node holds). Fetching the ",
              missing, " missing by topic, ", kFetchPage, " at a time");
  } else {
    log_.info("desired set of ", origin, ": ", missing, " objects still missing; fetching ",
              page.size(), " by topic");
  }
  m.lastMissing = missing;
  // A page that brought something in is followed at once by the next; one that did not, later.
  resyncDelay_ = progress ? kResyncInitial : std::min(resyncDelay_ * 2, kResyncMax);
  refetch(std::move(page));
}

// Subscribes to the exact topics of `page` (the broker sends each one's retained copy) in place
// of the last page's subscriptions.
void MqttProtocol::refetch(std::vector<std::string> page) {
  auto previous = std::exchange(fetchTopics_, page);
  if (!previous.empty()) transport_.unsubscribe(previous);
  transport_.subscribe(page, [this](core::Status s) {
    session_.loop().post([this, s] {
      if (!s.isOk()) log_.error("subscribing to missing objects failed: ", s.message());
    });
  });
}

// An object the store refused (a full disk) is asked for again later, whether or not a manifest
// lists it, so it arrives once the store takes writes again, without a restart.
void MqttProtocol::refetchLater(const std::string& topic) {
  storeRetry_.insert(topic);
  if (storeRetryTimer_ != 0) return;
  storeRetryTimer_ = session_.loop().runAfter(storeRetryDelay_, [this] {
    storeRetryTimer_ = 0;
    if (session_.stopping() || storeRetry_.empty()) return;
    if (!session_.connected()) return;  // the next subscribe brings them all
    std::vector<std::string> page;
    while (!storeRetry_.empty() && page.size() < kFetchPage) {
      page.push_back(*storeRetry_.begin());
      storeRetry_.erase(storeRetry_.begin());
    }
    log_.info("asking the broker again for ", page.size(),
              page.size() == 1 ? " object" : " objects", " the store could not take");
    storeRetryDelay_ = std::min(storeRetryDelay_ * 2, kResyncMax);
    refetch(std::move(page));
  });
}

}  // namespace outpost::cloudhub
