// What EdgeCore receives on a CloudHub connection (PROTOCOL.md §1): desired state (stored, then
// acked), the cloud's answers to requests (to the session's request table), twin-group messages
// (to the twins); and the acks and error answers it sends back. See edgecore.h.

#include <algorithm>
#include <functional>
#include <string_view>

#include "codec/resource_change.h"
#include "kubeedge/edgecore.h"

namespace outpost::cloudhub {

void EdgeCore::frame(const Incoming& in) {
  size_t bytes = in.oversizedBytes ? in.oversizedBytes : in.payload.size();
  if (bytes > opts_.maxMessageBytes) {
    // The cloud resends what is not acknowledged (CloudHub: every 5 s): reported once per message,
    // and while it keeps coming the link is not in step.
    lastDesiredRx_ = clock_.now();
    size_t id = std::hash<std::string_view>{}(in.payload) ^ bytes;
    bool again = std::find(refused_.begin(), refused_.end(), id) != refused_.end();
    if (!again) {
      refused_.push_back(id);
      if (refused_.size() > 64) refused_.erase(refused_.begin());
    }
    return session_.invalid(Session::Invalid::kTooLarge, "cloud message frame",
                            std::to_string(bytes) + " bytes, more than cloud.max_message_bytes (" +
                                std::to_string(opts_.maxMessageBytes) + "); not acknowledged",
                            again);
  }
  auto decoded = session_.decode(in.payload, opts_.maxMessageBytes, "cloud message frame");
  if (!decoded) return;
  Envelope& env = *decoded;
  if (session_.resolve(env)) return;
  const std::string& op = env.route.operation;
  if (isCloudTwinMessage(env.route)) {
    lastDesiredRx_ = clock_.now();
    return session_.toTwins(std::move(env), "twin message");
  }
  if (op == "insert" || op == "update" || op == "patch" || op == "delete") {
    if (!metadb::parseKey(env.route.resource).isOk()) {
      return invalid(Session::Invalid::kAddress, env.route.resource,
                     "the resource is not <namespace>/<type>/<name>");
    }
    return onDesired(std::move(env));
  }
  log_.debug("cloud message not handled: ", env.route.group, " ", op, " ", env.route.resource);
}

void EdgeCore::onDesired(Envelope env) {
  lastDesiredRx_ = clock_.now();
  const std::string key = env.route.resource;
  auto change = resourceChangeFrom(env, key, kEdgeCoreOrigin);
  if (!change.isOk()) {
    invalid(Session::Invalid::kContent, key, change.status().message(), refusedBefore(env));
    return answerError(env, change.status().message());
  }
  if (auto other = misaddressed(env, *change)) {
    // The cloud is told, so it does not resend it.
    std::string why = "misaddressed: spec.nodeName is " + *other + ", this node is " +
                      opts_.nodeName + "; not run";
    invalid(Session::Invalid::kAddress, key, why, refusedBefore(env));
    return answerError(env, why);
  }
  // A delete names the object it removes by uid: a newer object under the same name stays.
  if (change->kind == metadb::ResourceChange::Kind::kDelete && !change->uid.empty()) {
    auto stored = session_.reader()->get(key);
    if (stored.isOk() && *stored && !(*stored)->uid.empty() && (*stored)->uid != change->uid) {
      log_.info("delete of ", key, " names uid ", change->uid, ", the stored object is ",
                (*stored)->uid, ": kept");
      return ackDesired(env);
    }
  }
  metadb::WriteBatch batch;
  batch.apply(std::move(change).value());
  session_.storeThenAck(
      std::move(batch), key,
      [this, env = std::move(env)](const metadb::WriteResult&) { ackDesired(env); });
}

bool EdgeCore::refusedBefore(const Envelope& env) {
  std::string version = env.header.resourceVersion;
  if (version.empty()) version = "#" + std::to_string(std::hash<std::string_view>{}(env.content));
  std::string tag = env.route.resource + "@" + version;
  if (std::find(refusedVersions_.begin(), refusedVersions_.end(), tag) != refusedVersions_.end())
    return true;
  refusedVersions_.push_back(tag);
  if (refusedVersions_.size() > 64) refusedVersions_.erase(refusedVersions_.begin());
  return false;
}

// A pod whose spec.nodeName names another node is not this node's to run.
std::optional<std::string> EdgeCore::misaddressed(const Envelope& env,
                                                  const metadb::ResourceChange& change) const {
  if (change.kind == metadb::ResourceChange::Kind::kDelete) return std::nullopt;
  auto parts = metadb::parseKey(env.route.resource);
  if (!parts.isOk() || parts->type != "pod") return std::nullopt;
  json pod = json::parse(change.object, nullptr, false);
  if (!pod.is_object() || !pod.contains("spec") || !pod["spec"].is_object()) return std::nullopt;
  auto name = pod["spec"].find("nodeName");
  if (name == pod["spec"].end() || !name->is_string()) return std::nullopt;
  std::string node = name->get<std::string>();
  if (node.empty() || node == opts_.nodeName) return std::nullopt;
  if (node.size() > 253) node = node.substr(0, 253) + "...";
  return node;
}

void EdgeCore::ackDesired(const Envelope& env) {
  auto parts = metadb::parseKey(env.route.resource);
  // EdgeCore acks devices and device models for its twin module (PROTOCOL.md §2).
  if (parts.isOk() && (parts->type == "device" || parts->type == "devicemodel"))
    return ack(env, "meta", "twin");
  ack(env);
}

// An ack (PROTOCOL.md §1): operation `response`, parent_msg_id = the cloud's msg_id, the same
// resource, content "OK".
void EdgeCore::ack(const Envelope& received, const std::string& source, const std::string& group) {
  Envelope a = message("", "", "response", received.route.resource);
  a.route.source = source;
  a.route.group = group;
  a.header.parentMsgId = received.header.msgId;
  setContentString(a, "OK");
  send(a, [this, resource = received.route.resource](core::Status s) {
    if (!s.isOk()) log_.warn("acknowledging ", resource, " failed: ", s.message());
  });
}

// What EdgeCore's meta manager answers to a cloud message it could not store: operation `error`,
// parent_msg_id the cloud's msg_id, the reason as content. Not an ack: nothing was stored.
void EdgeCore::answerError(const Envelope& received, const std::string& why) {
  Envelope a = message("", "", "error", received.route.resource);
  a.route.source = "metaManager";
  a.route.group = received.route.group;
  a.header.parentMsgId = received.header.msgId;
  setContentString(a, why);
  send(a, [this, resource = received.route.resource](core::Status s) {
    if (!s.isOk()) log_.warn("answering ", resource, " with an error failed: ", s.message());
  });
}

}  // namespace outpost::cloudhub
