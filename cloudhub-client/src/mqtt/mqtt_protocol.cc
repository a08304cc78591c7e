// The MQTT scheme on the session (mqtt_protocol.h): the node's topics in, desired objects stored
// and then acknowledged (coalesced, batched), twin messages on `down` to the twins, the outbox out.

#include "mqtt/mqtt_protocol.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "bootstrap/tls_probe.h"
#include "codec/resource_change.h"
#include "outpost/validation/validation.h"

namespace outpost::cloudhub {

using nlohmann::json;

namespace {

constexpr std::string_view kOriginNode = "mqtt:node";

// Kinds of outbox rows that are the latest state of an object: published retained on its status
// topic.
bool isStatusKind(std::string_view kind) {
  return kind == "podstatus" || kind == "nodestatus" || kind == "devicestatus" ||
         kind == "agentupgradestatus" || kind == "objectstatus";
}

}  // namespace

MqttProtocol::MqttProtocol(const MqttLinkOptions& options, Session& session,
                           MqttTransport& transport)
    : opts_(options),
      topics_{opts_.prefix},
      session_(session),
      transport_(transport),
      log_(session.log()),
      clock_(session.clock()) {}

void MqttProtocol::opened() {
  session_.send(Outgoing{topics_.online(opts_.nodeName), "true", true}, {});
  subscribeAll();
}

// Subscribing (again) makes the broker send every retained desired object of the node's scopes.
void MqttProtocol::subscribeAll() {
  // The manifests first: a broker sends the retained messages of each filter in order and drops
  // what overflows its queue for us, and the manifests are what tells us something is missing.
  std::vector<std::string> subs = {topics_.manifest(opts_.nodeName)};
  for (const auto& g : opts_.groups) subs.push_back(topics_.groupManifest(g));
  subs.push_back(topics_.down(opts_.nodeName));
  subs.push_back(topics_.desired(opts_.nodeName, "#"));
  for (const auto& g : opts_.groups) subs.push_back(topics_.groupDesired(g, "#"));
  transport_.subscribe(subs, [this](core::Status s) {
    session_.loop().post([this, s] {
      if (!s.isOk()) log_.error("subscribing failed: ", s.message());
    });
  });
}

void MqttProtocol::closed() {
  ackInFlight_ = false;
  ++ackEpoch_;
}

void MqttProtocol::failed(const std::string& why, bool wasConnected, std::string& detail) {
  if (wasConnected) tlsFailure_.clear();
  if (mqttc::isTlsUri(opts_.broker) && !wasConnected && session_.attempts() == 0) {
    // Paho only says "TCP/TLS connect failure": find out why, once per outage, for the operator,
    // and keep it as the link's last error (outpostctl status) for the rest of the outage.
    core::Status probe = probeTls(transport_.options(), std::chrono::seconds(5));
    if (!probe.isOk()) {
      log_.error("TLS with ", opts_.broker, " failed: ", probe.message());
      tlsFailure_ = "TLS with " + opts_.broker + " failed: " + probe.message();
    }
  }
  if (!tlsFailure_.empty()) detail = why + "; " + tlsFailure_;
}

void MqttProtocol::stopping() {
  session_.loop().cancel(resyncTimer_);
  session_.loop().cancel(storeRetryTimer_);
}

// ---- in
void MqttProtocol::frame(const Incoming& in) {
  const std::string& topic = in.channel;
  if (in.oversizedBytes > 0) {
    return invalid(Session::Invalid::kTooLarge, topic,
                   "message of " + std::to_string(in.oversizedBytes) +
                       " bytes exceeds the limit of " + std::to_string(opts_.maxMessageBytes) +
                       "; not read");
  }
  const std::string& payload = in.payload;
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
  invalid(Session::Invalid::kAddress, topic, "not a topic of node " + opts_.nodeName);
}

void MqttProtocol::onDesired(const std::string& topic, const std::string& origin,
                             const std::string& key, const std::string& payload) {
  auto parts = metadb::parseKey(key);
  if (!parts.isOk()) return invalid(Session::Invalid::kAddress, topic, parts.status().message());
  if (auto v = validation::desiredKey(parts->ns, parts->type, parts->name); !v.isOk())
    return invalid(Session::Invalid::kAddress, topic, v.message());
  metadb::ResourceChange change;
  std::optional<Envelope> env;
  if (payload.empty()) {
    change.key = key;
    change.origin = origin;
    change.kind = metadb::ResourceChange::Kind::kDelete;  // the retained object was cleared
  } else {
    env = session_.decode(payload, opts_.maxMessageBytes, "message on " + topic);
    if (!env) return;
    if (!env->route.resource.empty() && env->route.resource != key) {
      return invalid(Session::Invalid::kAddress, topic,
                     "route.resource \"" + env->route.resource + "\" does not match the topic");
    }
    auto c = resourceChangeFrom(*env, key, origin);
    if (!c.isOk()) return invalid(Session::Invalid::kContent, topic, c.status().message());
    change = std::move(c).value();
  }
  metadb::WriteBatch batch;
  batch.apply(std::move(change));
  std::optional<PendingAck> toAck;
  if (env) {
    toAck = PendingAck{std::move(env->header.msgId), key, std::move(env->route.source),
                       std::move(env->route.group)};
  }
  session_.storeThenAck(
      std::move(batch), key,
      [this, toAck = std::move(toAck)](const metadb::WriteResult&) mutable {
        storeRetryDelay_ = kResyncInitial;  // the store takes writes again
        if (toAck) queueAck(std::move(*toAck));
        scheduleConvergenceCheck();
      },
      // Not acknowledged. The broker sends its retained copy again when asked for its topic: ask,
      // with a growing pause while the store keeps failing (a full disk).
      [this, topic] { refetchLater(topic); });
}

void MqttProtocol::onDown(const std::string& topic, const std::string& payload) {
  auto env = session_.decode(payload, opts_.maxMessageBytes, "message on " + topic);
  if (!env) return;
  if (isCloudTwinMessage(env->route))
    return session_.toTwins(std::move(*env), "message on " + topic);
  log_.debug("message on down: ", env->route.operation, " ", env->route.resource);
}

// ---- acks (docs/mqtt-link.md). The store hands back every write of one commit in one task, so
// the acks of a commit are queued together. At most one ack message awaits the broker's PUBACK
// at a time: acks of commits made meanwhile wait and leave together in the next message. A lone
// object is acked at once (no timer), while under load one message acks many commits, so the
// broker handles fewer messages per object. A message acking one object keeps the single form
// (parent_msg_id).

void MqttProtocol::queueAck(PendingAck a) {
  pendingAcks_.push_back(std::move(a));
  if (ackFlushPosted_ || ackInFlight_) return;
  ackFlushPosted_ = true;
  session_.loop().post([this] {
    ackFlushPosted_ = false;
    flushAcks();
  });
}

void MqttProtocol::flushAcks() {
  if (ackInFlight_ || pendingAcks_.empty()) return;
  // Stopping: the client goes away (commits still complete until stop() waited for them).
  if (session_.stopping() || !session_.connected()) {
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
      session_.send(a, topics_.up(opts_.nodeName),
                    [this, what, epoch](core::Status st) { onAckSent(what, epoch, st); });
    } else {
      session_.send(a, topics_.up(opts_.nodeName), [this, what](core::Status st) {
        if (!st.isOk()) log_.warn("acknowledging ", what, " failed: ", st.message());
      });
    }
  } while (!opts_.coalesceAcks && !pendingAcks_.empty());
}

// The coalesced ack's PUBACK (on the loop): the next message may leave.
void MqttProtocol::onAckSent(const std::string& what, uint64_t epoch, const core::Status& s) {
  if (epoch != ackEpoch_) return;  // from a connection that is gone
  ackInFlight_ = false;
  if (!s.isOk()) log_.warn("acknowledging ", what, " failed: ", s.message());
  flushAcks();
}

// An ack (PROTOCOL.md §1): operation `response`, `parent_msg_id` = the cloud's `msg_id`, content
// "OK".
Envelope MqttProtocol::singleAck(const std::string& msgId, const std::string& resource,
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

void MqttProtocol::ack(const std::string& msgId, const std::string& resource,
                       const std::string& source, const std::string& group) {
  if (session_.stopping() || !session_.connected()) return;
  // Stored already; the cloud resends or the manifest check covers a lost ack.
  session_.send(singleAck(msgId, resource, source, group), topics_.up(opts_.nodeName),
                [this, resource](core::Status s) {
                  if (!s.isOk()) log_.warn("acknowledging ", resource, " failed: ", s.message());
                });
}

// ---- out
std::string MqttProtocol::upstreamPayload(const metadb::OutboxEntry& e) {
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

// Status kinds go retained to their status topic, the rest to `up`; `done` runs on the loop once
// the broker accepted the row (PUBACK) or the publish failed.
void MqttProtocol::sendRow(const metadb::OutboxEntry& e, SendDone done) {
  if (e.kind == "poddelete") {
    // KubeEdge's request to delete a pod whose containers stopped for its deletion: the MQTT
    // scheme has no API server to ask. The pod's status (terminated) is published; whoever removes
    // its retained desired object removes it from the node (docs/mqtt-link.md).
    log_.debug("pod ", e.key, " stopped for its deletion; its removal waits for the cloud");
    return done(core::okStatus());
  }
  bool status = isStatusKind(e.kind);
  std::string topic = status ? topics_.status(opts_.nodeName, e.key) : topics_.up(opts_.nodeName);
  session_.send(Outgoing{topic, upstreamPayload(e), status},
                [this, done = std::move(done)](core::Status s) {
                  if (s.isOk()) session_.countSent();
                  done(s);
                });
}

}  // namespace outpost::cloudhub
