// The MQTT cloud link: subscribes to the node's desired state, stores it durably, acknowledges it,
// prunes what the publisher no longer lists (the manifest), and drains the outbox upstream.

#include "outpost/cloudhub/mqtt_link.h"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/core/backoff.h"
#include "outpost/core/event_loop.h"
#include "outpost/metadb/types.h"
#include "outpost/mqttc/client.h"
#include "outpost/validation/validation.h"
#include "rate_limiter.h"
#include "session_common.h"
#include "tls_probe.h"

namespace outpost::cloudhub {

using nlohmann::json;

namespace {

constexpr size_t kDrainPage = 64;
constexpr std::string_view kOriginNode = "mqtt:node";

// Kinds of outbox rows that are the latest state of an object: published retained on its status
// topic.
bool isStatusKind(std::string_view kind) {
  return kind == "podstatus" || kind == "nodestatus" || kind == "devicestatus";
}

}  // namespace

std::string_view linkStateName(LinkState s) {
  switch (s) {
    case LinkState::kDisconnected:
      return "disconnected";
    case LinkState::kConnecting:
      return "connecting";
    case LinkState::kConnected:
      return "connected";
  }
  return "unknown";
}

class MqttLink final : public CloudLink {
 public:
  MqttLink(MqttLinkOptions o, metadb::Store& store, core::Bus& bus, core::Clock& clock,
           core::Logging& logging, core::MetricsRegistry& metrics)
      : opts_(std::move(o)),
        topics_{opts_.prefix},
        store_(store),
        bus_(bus),
        clock_(clock),
        log_(logging.get("cloudhub")),
        loop_("cloudhub", clock),
        backoff_(opts_.reconnectBase, opts_.reconnectCap),
        limiter_(clock, opts_.rateQps, opts_.rateBurst),
        linkUp_(metrics.gauge("outpost_cloud_link_up", "1 when the cloud link is connected.",
                              {{"transport", "mqtt"}})),
        reconnects_(metrics.counter("outpost_cloud_reconnects_total",
                                    "Connection attempts after the first.",
                                    {{"transport", "mqtt"}})),
        received_(metrics.counter("outpost_cloud_messages_received_total",
                                  "Messages received from the cloud.", {{"transport", "mqtt"}})),
        sent_(metrics.counter("outpost_cloud_messages_sent_total",
                              "Messages the cloud accepted from this node.",
                              {{"transport", "mqtt"}})),
        invalidTooLarge_(metrics.counter("outpost_cloud_messages_invalid_total",
                                         "Messages refused, by reason.",
                                         {{"reason", "too_large"}})),
        invalidMalformed_(metrics.counter("outpost_cloud_messages_invalid_total",
                                          "Messages refused, by reason.",
                                          {{"reason", "malformed"}})),
        invalidContent_(metrics.counter("outpost_cloud_messages_invalid_total",
                                        "Messages refused, by reason.", {{"reason", "invalid"}})),
        invalidAddress_(metrics.counter("outpost_cloud_messages_invalid_total",
                                        "Messages refused, by reason.",
                                        {{"reason", "misaddressed"}})),
        writes_(store),
        book_(clock, bus, linkUp_, loop_, writes_, log_, opts_.broker),
        drainer_(
            loop_, writes_, limiter_, log_,
            [this](const metadb::OutboxEntry& e, std::function<void(core::Status)> done) {
              sendRow(e, std::move(done));
            },
            kDrainPage) {
    drainer_.setRedrain([this] { drain(); });
    metrics.gaugeCallback("outpost_cloud_offline_seconds",
                          "Length of the current outage of the cloud link (0 when connected).",
                          [this] { return status().offlineSeconds; }, {{"transport", "mqtt"}});
    metrics.gaugeCallback("outpost_cloud_offline_seconds_total",
                          "Time the cloud link was down since start.",
                          [this] { return status().offlineSecondsTotal; }, {{"transport", "mqtt"}});
  }

  ~MqttLink() override { stop(); }

  // ---- CloudLink
  core::Status start() override {
    {
      std::lock_guard lock(twinAcks_->mu);
      twinAcks_->link = this;
    }
    loop_.start();
    core::Status opened;
    if (!loop_.runSync([&] {
          auto r = store_.openReader();
          if (!r.isOk()) {
            opened = r.status();
            return;
          }
          reader_ = std::move(r).value();
          book_.restore(*reader_);
        })) {
      return core::internalError("cloudhub loop did not start");
    }
    OUTPOST_RETURN_IF_ERROR(opened.withContext("opening a store reader"));
    mqttc::ConnectOptions c;
    c.uri = opts_.broker;
    c.clientId = opts_.nodeName;
    c.cleanSession = false;
    c.keepAlive = std::chrono::duration_cast<std::chrono::seconds>(opts_.keepAlive);
    if (c.keepAlive.count() < 1) c.keepAlive = std::chrono::seconds(1);
    c.connectTimeout = std::chrono::duration_cast<std::chrono::seconds>(opts_.connectTimeout);
    c.username = opts_.username;
    c.password = opts_.password;
    c.caFile = opts_.caFile;
    c.certFile = opts_.certFile;
    c.keyFile = opts_.keyFile;
    c.willTopic = topics_.online(opts_.nodeName);
    c.willPayload = "false";
    mqttc::Callbacks cb;
    cb.connected = [this] { loop_.post([this] { onConnected(); }); };
    cb.down = [this](std::string why) { loop_.post([this, why] { onFailed(why); }); };
    cb.message = [this](std::string topic, std::string payload, bool) {
      loop_.post([this, topic = std::move(topic), payload = std::move(payload)] {
        onMessage(topic, payload);
      });
    };
    // A payload over the limit is refused in the library's callback, before any copy of it.
    c.maxPayloadBytes = opts_.maxMessageBytes;
    cb.oversized = [this](std::string topic, size_t bytes) {
      loop_.post([this, topic = std::move(topic), bytes] {
        received_.inc();
        book_.update([](LinkStatus& s) { s.messagesIn++; });
        invalid(invalidTooLarge_, topic,
                "message of " + std::to_string(bytes) + " bytes exceeds the limit of " +
                    std::to_string(opts_.maxMessageBytes) + "; not read");
      });
    };
    connectOptions_ = c;
    client_ = std::make_unique<mqttc::Client>(std::move(c), std::move(cb));
    pollTimer_ = loop_.runEvery(opts_.outboxPoll, [this] { drain(); });
    loop_.post([this] { connectNow(); });
    return core::okStatus();
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    {
      std::lock_guard lock(twinAcks_->mu);
      twinAcks_->link = nullptr;
    }
    loop_.runSync([this] {
      stopping_ = true;
      loop_.cancel(reconnectTimer_);
      loop_.cancel(pollTimer_);
      loop_.cancel(resyncTimer_);
      loop_.cancel(storeRetryTimer_);
    });
    if (client_) {
      if (client_->connected()) {
        // A clean disconnect does not fire the will: say "offline" ourselves.
        auto done = std::make_shared<std::promise<void>>();
        auto fut = done->get_future();
        client_->publish(topics_.online(opts_.nodeName), "false", true,
                         [done](core::Status) { done->set_value(); });
        fut.wait_for(std::chrono::milliseconds(300));
      }
      client_.reset();  // disconnects and joins Paho's threads: no callback runs after this
    }
    if (!writes_.waitIdle(std::chrono::seconds(10)))
      log_.error("store writes still pending at stop");
    loop_.runSync([this] { reader_.reset(); });
    loop_.stop();
  }

  LinkStatus status() const override { return book_.status(); }

  void outboxChanged() override {
    loop_.post([this] { drain(); });
  }

  bool alive(std::chrono::milliseconds timeout) override {
    return loop_.runSync([] {}, timeout);
  }

 private:
  // ---- connection
  void setState(LinkState st, const std::string& detail) { book_.set(st, detail); }

  void connectNow() {
    if (stopping_) return;
    setState(LinkState::kConnecting, opts_.broker);
    log_.debug("connecting to ", opts_.broker, " as ", opts_.nodeName);
    core::Status s = client_->connect();
    if (!s.isOk()) onFailed(s.message());
  }

  void onConnected() {
    if (stopping_) return;
    backoff_.reset();
    setState(LinkState::kConnected, opts_.broker);
    log_.info("connected to ", opts_.broker);
    client_->publish(topics_.online(opts_.nodeName), "true", true, [](core::Status) {});
    subscribeAll();
    drain();
  }

  // Subscribing (again) makes the broker send every retained desired object of the node's scopes.
  void subscribeAll() {
    // The manifests first: a broker sends the retained messages of each filter in order and drops
    // what overflows its queue for us, and the manifests are what tells us something is missing.
    std::vector<std::string> subs = {topics_.manifest(opts_.nodeName)};
    for (const auto& g : opts_.groups) subs.push_back(topics_.groupManifest(g));
    subs.push_back(topics_.down(opts_.nodeName));
    subs.push_back(topics_.desired(opts_.nodeName, "#"));
    for (const auto& g : opts_.groups) subs.push_back(topics_.groupDesired(g, "#"));
    client_->subscribe(subs, [this](core::Status s) {
      loop_.post([this, s] {
        if (!s.isOk()) log_.error("subscribing failed: ", s.message());
      });
    });
  }

  void onFailed(const std::string& why) {
    if (stopping_) return;
    LinkState was = book_.state();
    bool wasConnected = was == LinkState::kConnected;
    if (was == LinkState::kDisconnected) return;  // already scheduled
    if (wasConnected) tlsFailure_.clear();
    if (mqttc::isTlsUri(opts_.broker) && !wasConnected && backoff_.attempts() == 0) {
      // Paho only says "TCP/TLS connect failure": find out why, once per outage, for the operator,
      // and keep it as the link's last error (outpostctl status) for the rest of the outage.
      core::Status probe = probeTls(connectOptions_, std::chrono::seconds(5));
      if (!probe.isOk()) {
        log_.error("TLS with ", opts_.broker, " failed: ", probe.message());
        tlsFailure_ = "TLS with " + opts_.broker + " failed: " + probe.message();
      }
    }
    setState(LinkState::kDisconnected, tlsFailure_.empty() ? why : why + "; " + tlsFailure_);
    drainer_.reset();
    ackInFlight_ = false;
    ++ackEpoch_;
    auto delay = backoff_.next();
    if (wasConnected) {
      log_.warn("cloud link down: ", why, "; reconnecting in ",
                std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(), " ms");
    } else {
      log_.warn(why, "; retrying in ",
                std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(), " ms");
    }
    reconnects_.inc();
    book_.update([](LinkStatus& s) { s.reconnects++; });
    reconnectTimer_ = loop_.runAfter(delay, [this] { connectNow(); });
  }

  // ---- downstream
  void invalid(core::Counter& counter, const std::string& topic, const std::string& why) {
    counter.inc();
    book_.update([](LinkStatus& s) { s.messagesInvalid++; });
    log_.warn("ignored message on ", topic, ": ", why);
  }

  void onMessage(const std::string& topic, const std::string& payload) {
    if (stopping_) return;
    received_.inc();
    book_.update([](LinkStatus& s) { s.messagesIn++; });
    std::string rest =
        topic.rfind(opts_.prefix + "/", 0) == 0 ? topic.substr(opts_.prefix.size() + 1) : "";
    std::string nodePrefix = "nodes/" + opts_.nodeName + "/";
    if (rest.rfind(nodePrefix, 0) == 0) {
      std::string tail = rest.substr(nodePrefix.size());
      if (tail.rfind("desired/", 0) == 0)
        return onDesired(topic, std::string(kOriginNode), tail.substr(8), payload);
      if (tail == "manifest") return onManifest(topic, std::string(kOriginNode), payload);
      if (tail == "down") return onDown(topic, payload);
    }
    for (const auto& g : opts_.groups) {
      std::string groupPrefix = "groups/" + g + "/";
      if (rest.rfind(groupPrefix, 0) != 0) continue;
      std::string tail = rest.substr(groupPrefix.size());
      if (tail.rfind("desired/", 0) == 0)
        return onDesired(topic, "mqtt:group:" + g, tail.substr(8), payload);
      if (tail == "manifest") return onManifest(topic, "mqtt:group:" + g, payload);
    }
    invalid(invalidAddress_, topic, "not a topic of node " + opts_.nodeName);
  }

  void onDesired(const std::string& topic, const std::string& origin, const std::string& key,
                 const std::string& payload) {
    auto parts = metadb::parseKey(key);
    if (!parts.isOk()) return invalid(invalidAddress_, topic, parts.status().message());
    if (auto v = validation::desiredKey(parts->ns, parts->type, parts->name); !v.isOk())
      return invalid(invalidAddress_, topic, v.message());
    metadb::ResourceChange change;
    std::optional<Envelope> env;
    if (payload.empty()) {
      change.key = key;
      change.origin = origin;
      change.kind = metadb::ResourceChange::Kind::kDelete;  // the retained object was cleared
    } else {
      Decoded d = decode(payload, opts_.encoding, opts_.maxMessageBytes);
      if (d.failure) {
        auto& counter = d.failure->kind == DecodeError::kTooLarge    ? invalidTooLarge_
                        : d.failure->kind == DecodeError::kMalformed ? invalidMalformed_
                                                                     : invalidContent_;
        return invalid(counter, topic, d.failure->reason);
      }
      env = std::move(d.envelope);
      if (!env->route.resource.empty() && env->route.resource != key) {
        return invalid(invalidAddress_, topic,
                       "route.resource \"" + env->route.resource + "\" does not match the topic");
      }
      auto c = resourceChangeFrom(*env, key, origin);
      if (!c.isOk()) return invalid(invalidContent_, topic, c.status().message());
      change = std::move(c).value();
    }
    metadb::WriteBatch batch;
    batch.apply(std::move(change));
    std::optional<PendingAck> toAck;
    if (env) {
      toAck = PendingAck{std::move(env->header.msgId), key, std::move(env->route.source),
                         std::move(env->route.group)};
    }
    writes_.write(
        std::move(batch), loop_,
        [this, key, topic, toAck = std::move(toAck)](core::Result<metadb::WriteResult> r) mutable {
          if (!r.isOk()) {
            // Not acknowledged. The broker sends its retained copy again when asked for its topic:
            // ask, with a growing pause while the store keeps failing (a full disk).
            log_.error("storing ", key, " failed: ", r.status().toString());
            refetchLater(topic);
            return;
          }
          const char* outcome = r->changes[0] == metadb::ApplyOutcome::kApplied ? "applied"
                                : r->changes[0] == metadb::ApplyOutcome::kStale ? "stale"
                                                                                : "deleted";
          log_.debug(key, ": ", outcome);
          storeRetryDelay_ = kResyncInitial;  // the store takes writes again
          if (toAck) queueAck(std::move(*toAck));
          scheduleConvergenceCheck();
        });
  }

  // ---- acks (docs/mqtt-link.md). The store hands back every write of one commit in one task, so
  // the acks of a commit are queued together. At most one ack message awaits the broker's PUBACK
  // at a time: acks of commits made meanwhile wait and leave together in the next message. A lone
  // object is acked at once (no timer), while under load one message acks many commits, so the
  // broker handles fewer messages per object. A message acking one object keeps the single form
  // (parent_msg_id).
  struct PendingAck {
    std::string msgId, key, source, group;
  };

  void queueAck(PendingAck a) {
    pendingAcks_.push_back(std::move(a));
    if (ackFlushPosted_ || ackInFlight_) return;
    ackFlushPosted_ = true;
    loop_.post([this] {
      ackFlushPosted_ = false;
      flushAcks();
    });
  }

  void flushAcks() {
    if (ackInFlight_ || pendingAcks_.empty()) return;
    // Stopping: the client goes away (commits still complete until stop() waited for them).
    if (stopping_ || book_.state() != LinkState::kConnected) {
      // Stored already: the broker sends the retained objects again on the next subscribe and
      // they are acked then (as stale copies).
      pendingAcks_.clear();
      return;
    }
    if (!opts_.batchAcks) {
      for (const PendingAck& a : pendingAcks_) ack(a.msgId, a.key, a.source, a.group);
      pendingAcks_.clear();
      return;
    }
    do {
      size_t n = std::min(pendingAcks_.size(), kMaxAcksPerMessage);
      std::string what;
      Envelope a;
      if (n == 1) {
        const PendingAck& one = pendingAcks_.front();
        a = singleAck(one.msgId, one.key, one.source, one.group);
        what = one.key;
      } else {
        json ids = json::array();
        for (size_t i = 0; i < n; ++i) ids.push_back(std::move(pendingAcks_[i].msgId));
        a.header.msgId = newMessageId();
        a.header.timestamp = core::toUnixMillis(clock_.wallNow());
        a.route.group = "resource";
        a.route.operation = "response";
        a.route.resource = std::string(kBatchAckResource);
        a.content = ids.dump();
        what = std::to_string(n) + " acks";
      }
      pendingAcks_.erase(pendingAcks_.begin(), pendingAcks_.begin() + static_cast<ptrdiff_t>(n));
      if (opts_.coalesceAcks) {
        ackInFlight_ = true;
        uint64_t epoch = ackEpoch_;
        client_->publish(topics_.up(opts_.nodeName), encode(a, opts_.encoding), false,
                         [this, what, epoch](core::Status st) {
                           loop_.post([this, what, epoch, st] { onAckSent(what, epoch, st); });
                         });
      } else {
        client_->publish(topics_.up(opts_.nodeName), encode(a, opts_.encoding), false,
                         [this, what](core::Status st) { onAckSent(what, st); });
      }
    } while (!opts_.coalesceAcks && !pendingAcks_.empty());
  }

  // The coalesced ack's PUBACK (on the loop): the next message may leave.
  void onAckSent(const std::string& what, uint64_t epoch, const core::Status& s) {
    if (epoch != ackEpoch_) return;  // from a connection that is gone
    ackInFlight_ = false;
    if (s.isOk()) {
      countSent();
    } else {
      log_.warn("acknowledging ", what, " failed: ", s.message());
    }
    flushAcks();
  }

  void onAckSent(const std::string& what, const core::Status& s) {
    if (s.isOk()) return countSent();
    // Stored already; the cloud resends or the manifest check covers it.
    loop_.post([this, what, s] { log_.warn("acknowledging ", what, " failed: ", s.message()); });
  }

  // An ack (PROTOCOL.md §1): operation `response`, `parent_msg_id` = the cloud's `msg_id`, content
  // "OK".
  Envelope singleAck(const std::string& msgId, const std::string& resource,
                     const std::string& source, const std::string& group) {
    Envelope a;
    a.header.msgId = newMessageId();
    a.header.parentMsgId = msgId;
    a.header.timestamp = core::toUnixMillis(clock_.wallNow());
    a.route.source = source;
    a.route.group = group;
    a.route.operation = "response";
    a.route.resource = resource;
    setContentString(a, "OK");
    return a;
  }

  void ack(const std::string& msgId, const std::string& resource, const std::string& source,
           const std::string& group) {
    if (stopping_ || book_.state() != LinkState::kConnected) return;
    client_->publish(topics_.up(opts_.nodeName),
                     encode(singleAck(msgId, resource, source, group), opts_.encoding), false,
                     [this, resource](core::Status s) { onAckSent(resource, s); });
  }

  void onDown(const std::string& topic, const std::string& payload) {
    Decoded d = decode(payload, opts_.encoding, opts_.maxMessageBytes);
    if (d.failure) {
      auto& counter = d.failure->kind == DecodeError::kTooLarge    ? invalidTooLarge_
                      : d.failure->kind == DecodeError::kMalformed ? invalidMalformed_
                                                                   : invalidContent_;
      return invalid(counter, topic, d.failure->reason);
    }
    if (isCloudTwinMessage(d.envelope->route)) return toTwins(topic, std::move(*d.envelope));
    log_.debug("message on down: ", d.envelope->route.operation, " ", d.envelope->route.resource);
  }

  // ---- twin-group messages: handed to the twins over the bus, acked once they are durable
  void toTwins(const std::string& topic, Envelope env) {
    log_.debug("twin message on down: ", env.route.operation, " ", env.route.resource);
    CloudTwinMessage m;
    m.done = [sink = twinAcks_, env, topic](core::Status s) {
      std::lock_guard lock(sink->mu);
      if (!sink->link) return;  // stopped: the cloud sends it again to the next session
      MqttLink* link = sink->link;
      link->loop_.post([link, env, topic, s] { link->onTwinHandled(topic, env, s); });
    };
    m.envelope = std::move(env);
    bus_.publish(kCloudTwinMessages, m);
  }

  void onTwinHandled(const std::string& topic, const Envelope& env, const core::Status& s) {
    if (stopping_) return;
    if (!s.isOk()) {
      return invalid(invalidContent_, topic,
                     env.route.resource + " (msg_id " + env.header.msgId + "): " + s.message());
    }
    ack(env.header.msgId, env.route.resource, "meta", "twin");
  }

  // ---- completeness: the manifest lists every desired key of a scope with its version
  struct Manifest {
    int64_t generation = 0;
    // The newest resource version the publisher had assigned in this scope when it wrote the
    // manifest. An object stored at a newer version was published after the manifest and is not
    // pruned by it.
    int64_t version = 0;
    std::map<std::string, int64_t> objects;
    bool converged = false;
    size_t lastMissing = 0;    // objects missing when the last page was asked for
    bool warnedQueue = false;  // the broker's queue limit was named in the log
  };

  void onManifest(const std::string& topic, const std::string& origin, const std::string& payload) {
    if (payload.empty()) {
      manifests_.erase(origin);
      return;
    }
    if (auto limits =
            validation::jsonWithin(payload, {.maxDepth = 4, .maxBytes = opts_.maxMessageBytes});
        !limits.isOk())
      return invalid(invalidMalformed_, topic, "manifest: " + limits.message());
    json j = json::parse(payload, nullptr, false);
    if (!j.is_object() || !j.contains("objects") || !j["objects"].is_object()) {
      return invalid(invalidMalformed_, topic,
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
        return invalid(invalidContent_, topic,
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

  void scheduleConvergenceCheck() {
    if (checkPosted_) return;
    bool pending = std::any_of(manifests_.begin(), manifests_.end(),
                               [](const auto& m) { return !m.second.converged; });
    if (!pending) return;
    checkPosted_ = true;
    loop_.post([this] {
      checkPosted_ = false;
      checkConvergence();
    });
  }

  // Once everything a manifest lists is stored at its version or newer, objects of that scope that
  // no manifest lists any more were deleted while we were away: delete them too.
  void checkConvergence() {
    if (stopping_ || !reader_) return;
    auto all = reader_->listPrefix("");
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
      if (!fetchTopics_.empty()) client_->unsubscribe(std::exchange(fetchTopics_, {}), nullptr);
      auto now = clock_.wallNow();
      batch.putKv("sync." + origin + ".generation", std::to_string(m.generation));
      batch.putKv(std::string(LinkStateBook::kLastSyncKey),
                  std::to_string(core::toUnixMillis(now)));
      // Every scope with a manifest is complete: a store recovered empty holds the whole set again,
      // so deploy may collect pods that nobody wants (it keeps them while the mark is set).
      if (std::all_of(manifests_.begin(), manifests_.end(),
                      [](const auto& e) { return e.second.converged; })) {
        batch.eraseKv(std::string(metadb::kKvNeedsFullResync));
      }
      std::string scope = origin;
      int64_t generation = m.generation;
      writes_.write(
          std::move(batch), loop_,
          [this, scope, generation, removed, now](core::Result<metadb::WriteResult> r) {
            if (!r.isOk()) {
              log_.error("pruning objects no longer desired failed: ", r.status().toString());
              auto it = manifests_.find(scope);
              if (it != manifests_.end()) it->second.converged = false;
              return;
            }
            book_.synced(now, /*storedByCaller=*/true);
            resyncDelay_ = kResyncInitial;
            log_.info("desired set of ", scope, " complete (generation ", generation, "), ",
                      removed, removed == 1 ? " object" : " objects", " no longer desired removed");
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
  void armResync(const std::string& origin, const std::vector<std::string>& missing) {
    std::string some;
    for (size_t i = 0; i < missing.size() && i < 3; ++i) some += (i ? ", " : "") + missing[i];
    log_.debug("desired set of ", origin, " not complete yet: ", missing.size(), " missing (", some,
               missing.size() > 3 ? ", ..." : "", ")");
    if (resyncTimer_ != 0) return;
    resyncTimer_ = loop_.runAfter(resyncDelay_, [this, origin] {
      resyncTimer_ = 0;
      auto it = manifests_.find(origin);
      if (stopping_ || it == manifests_.end() || it->second.converged) return;
      checkConvergence();
      if (it->second.converged || book_.state() != LinkState::kConnected) return;
      fetchMissing(origin, it->second);
    });
  }

  // The desired topic of `key` in the scope `origin` (the node's own or one of its groups).
  std::string desiredTopic(const std::string& origin, const std::string& key) const {
    constexpr std::string_view kGroup = "mqtt:group:";
    if (origin.starts_with(kGroup)) return topics_.groupDesired(origin.substr(kGroup.size()), key);
    return topics_.desired(opts_.nodeName, key);
  }

  void fetchMissing(const std::string& origin, Manifest& m) {
    auto all = reader_->listPrefix("");
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
  void refetch(std::vector<std::string> page) {
    auto previous = std::exchange(fetchTopics_, page);
    if (!previous.empty()) client_->unsubscribe(previous, nullptr);
    client_->subscribe(page, [this](core::Status s) {
      loop_.post([this, s] {
        if (!s.isOk()) log_.error("subscribing to missing objects failed: ", s.message());
      });
    });
  }

  // An object the store refused (a full disk) is asked for again later, whether or not a manifest
  // lists it, so it arrives once the store takes writes again, without a restart.
  void refetchLater(const std::string& topic) {
    storeRetry_.insert(topic);
    if (storeRetryTimer_ != 0) return;
    storeRetryTimer_ = loop_.runAfter(storeRetryDelay_, [this] {
      storeRetryTimer_ = 0;
      if (stopping_ || storeRetry_.empty()) return;
      if (book_.state() != LinkState::kConnected) return;  // the next subscribe brings them all
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

  // ---- upstream
  void countSent() {
    sent_.inc();
    book_.update([](LinkStatus& s) { s.messagesOut++; });
  }

  std::string upstreamPayload(const metadb::OutboxEntry& e) {
    Envelope env;
    env.header.msgId = newMessageId();
    env.header.timestamp = core::toUnixMillis(clock_.wallNow());
    env.route.source = e.kind == "devicestatus" || e.kind.rfind("twin", 0) == 0 ? "twin" : "edged";
    env.route.group = "resource";
    env.route.operation = isStatusKind(e.kind) ? "patch" : "update";
    env.route.resource = e.key;
    env.content = json::accept(e.payload) ? e.payload : json(e.payload).dump();
    return encode(env, opts_.encoding);
  }

  void drain() {
    if (stopping_ || !reader_ || book_.state() != LinkState::kConnected) return;
    drainer_.drain(*reader_);
  }

  // Status kinds go retained to their status topic, the rest to `up`; `done` runs on the loop once
  // the broker accepted the row (PUBACK) or the publish failed.
  void sendRow(const metadb::OutboxEntry& e, std::function<void(core::Status)> done) {
    bool status = isStatusKind(e.kind);
    std::string topic = status ? topics_.status(opts_.nodeName, e.key) : topics_.up(opts_.nodeName);
    client_->publish(topic, upstreamPayload(e), status,
                     [this, done = std::move(done)](core::Status s) {
                       loop_.post([this, done, s] {
                         if (s.isOk()) countSent();
                         done(s);
                       });
                     });
  }

  MqttLinkOptions opts_;
  MqttTopics topics_;
  metadb::Store& store_;
  core::Bus& bus_;
  core::Clock& clock_;
  core::Logger log_;
  core::EventLoop loop_;
  core::Backoff backoff_;
  RateLimiter limiter_;
  core::Gauge& linkUp_;
  core::Counter& reconnects_;
  core::Counter& received_;
  core::Counter& sent_;
  core::Counter& invalidTooLarge_;
  core::Counter& invalidMalformed_;
  core::Counter& invalidContent_;
  core::Counter& invalidAddress_;
  StoreWrites writes_;
  LinkStateBook book_;
  OutboxDrainer drainer_;

  // Where the twins' `done` callbacks find this link; emptied at stop, so a late one does nothing.
  struct TwinAcks {
    std::mutex mu;
    MqttLink* link = nullptr;
  };
  std::shared_ptr<TwinAcks> twinAcks_ = std::make_shared<TwinAcks>();

  std::unique_ptr<mqttc::Client> client_;
  mqttc::ConnectOptions connectOptions_;
  std::string tlsFailure_;         // why TLS failed at the start of this outage, for the status
  metadb::StoreReaderPtr reader_;  // used on the loop only
  std::map<std::string, Manifest> manifests_;
  bool checkPosted_ = false;
  std::vector<PendingAck> pendingAcks_;
  bool ackFlushPosted_ = false;
  bool ackInFlight_ = false;  // an ack message awaits its PUBACK
  uint64_t ackEpoch_ = 0;     // counts connections lost: a late PUBACK of an older one is ignored
  // A batch ack of a full commit (256 writes) stays around 10 KB.
  static constexpr size_t kMaxAcksPerMessage = 256;
  bool stopping_ = false;
  std::atomic<bool> stopped_{false};
  core::TimerId reconnectTimer_ = 0, pollTimer_ = 0, resyncTimer_ = 0;
  static constexpr core::Duration kResyncInitial = std::chrono::seconds(2);
  static constexpr core::Duration kResyncMax = std::chrono::seconds(60);
  static constexpr size_t kFetchPage = 200;  // missing objects asked for by topic at once
  std::set<std::string> storeRetry_;  // topics of objects the store refused, to ask for again
  core::TimerId storeRetryTimer_ = 0;
  core::Duration storeRetryDelay_ = kResyncInitial;
  std::vector<std::string> fetchTopics_;  // the exact subscriptions of the last page
  core::Duration resyncDelay_ = kResyncInitial;
};

CloudLinkPtr makeMqttLink(MqttLinkOptions options, metadb::Store& store, core::Bus& bus,
                          core::Clock& clock, core::Logging& logging,
                          core::MetricsRegistry& metrics) {
  return std::make_unique<MqttLink>(std::move(options), store, bus, clock, logging, metrics);
}

}  // namespace outpost::cloudhub
