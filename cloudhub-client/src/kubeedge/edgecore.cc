// EdgeCore's cadence on a CloudHub connection (PROTOCOL.md §1): keepalive, membership, the node's
// registration, its lease and status; and the outbox as the patches EdgeCore sends. See edgecore.h.

#include "kubeedge/edgecore.h"

#include <sys/utsname.h>

#include <cstdio>
#include <ctime>

#include "bootstrap/tls_probe.h"
#include "outpost/cloudhub/certificates.h"

namespace outpost::cloudhub {

using nlohmann::json;

namespace {

// Kubernetes' MicroTime: RFC 3339 with microseconds, UTC.
std::string microTime(core::WallTime t) { return core::formatRfc3339(t, 6); }

std::string goArch() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m.rfind("armv", 0) == 0) return "arm";
  return m;
}

}  // namespace

Answer parseAnswer(const Envelope& env) {
  Answer a;
  if (env.route.operation == "error") a.error = json::parse(env.content, nullptr, false);
  auto text = contentObject(env);
  if (!text) return a;
  json c = json::parse(*text, nullptr, false);
  if (c.contains("ErrStatus")) {
    a.error = c["ErrStatus"];
    const json& st = c["ErrStatus"];
    a.notFound = (st.is_object() && st.value("reason", "") == "NotFound") ||
                 (st.is_object() && st.contains("code") && st["code"] == 404);
    return a;
  }
  if (c.contains("Object") || c.contains("Err")) {
    if (c.contains("Object") && c["Object"].is_object()) a.object = c["Object"];
    if (c.contains("Err") && !c["Err"].is_null()) a.error = c["Err"];
    return a;
  }
  a.object = std::move(c);
  return a;
}

EdgeCore::EdgeCore(const WebsocketLinkOptions& options, Session& session)
    : opts_(options), session_(session), log_(session.log()), clock_(session.clock()) {}

void EdgeCore::started() { readMark(); }

void EdgeCore::opened() {
  explained_ = false;
  session_.every(opts_.heartbeat, [this] {
    sendKeepalive();
    session_.ping();
  });
  session_.every(std::max<core::Duration>(opts_.heartbeat / 4, std::chrono::milliseconds(50)),
                 [this] { checkResync(); });
  session_.every(opts_.leaseInterval, [this] { renewLease(); });
  session_.every(opts_.nodeQueryInterval, [this] { queryNode(); });
  session_.every(opts_.nodePatchInterval, [this] {
    if (clock_.now() - lastNodePatch_ >= opts_.nodePatchInterval / 2) sendNodePatch("{}", {});
  });
  // What EdgeCore sends on every connect, in its order (PROTOCOL.md §1).
  sendKeepalive();
  sendMembershipRequest();
  if (!registered_ && !registering_) registerNode();
  lease_.reset();
  queryLease();
  queryNode();
  if (registered_ && !nodePatchSent_) sendNodePatch("{}", {});
  lastDesiredRx_ = clock_.now();
  nodeAnswered_ = settled_ = false;
  readMark();
  if (markSet_ && !unresolved_.empty()) askUnresolved();
}

void EdgeCore::closed() {
  leaseBusy_ = false;
  registering_ = false;
  heldNodeRow_ = {};  // the drainer forgets the connection's rows in flight: sent again later
}

// Finds out why a connect failed, once per outage, in words an operator can act on: with TLS 1.3 a
// refused client certificate only shows as a broken upgrade, and the probe says so plainly.
void EdgeCore::failed(const std::string& why, bool wasConnected, std::string& detail) {
  if (wasConnected) return;
  // A client certificate outside its validity only shows as a failed handshake: the link's last
  // error names the file and the date at every attempt, the log once per outage.
  core::Status times = checkCertificateTimes(opts_.certFile, clock_.wallNow());
  if (times.code() == core::Code::kFailedPrecondition) {
    detail =
        "the client " + times.message() + ": CloudHub refuses it; renew it (docs/certificates.md)";
    if (!explained_) log_.error("cannot connect to ", opts_.server, ": ", detail);
    explained_ = true;
    return;
  }
  if (explained_) return;
  explained_ = true;
  core::Status probe = probeTls({opts_.server, opts_.caFile, opts_.certFile, opts_.keyFile},
                                std::chrono::seconds(5));
  if (!probe.isOk()) {
    log_.error("TLS with ", opts_.server, " failed: ", probe.message());
  } else if (why.find("refused the WebSocket upgrade") != std::string::npos) {
    log_.error("CloudHub at ", opts_.server, ": ", why, ". It accepts node ", opts_.nodeName,
               " only with a client certificate for CN system:node:", opts_.nodeName,
               " and project ", opts_.projectId);
  }
}

// Sends a request and calls `answered` with the cloud's answer, or with nullptr when none came
// within the request timeout or the connection went away.
void EdgeCore::request(const Envelope& env, std::function<void(const Envelope*)> answered) {
  session_.request(
      env, "", opts_.requestTimeout,
      [answered = std::move(answered)](const Envelope* a, const std::string&) { answered(a); });
}

// Keeps an answer of the cloud durably, then acknowledges it.
void EdgeCore::storeAndAck(const Envelope& answer, const char* kvKey,
                           const std::optional<json>& object) {
  metadb::WriteBatch batch;
  if (object) batch.putKv(kvKey, object->dump());
  session_.writes().write(std::move(batch), session_.loop(),
                          [this, answer](core::Result<metadb::WriteResult> r) {
                            if (!r.isOk()) {
                              log_.error("storing the cloud's answer to ", answer.route.resource,
                                         ": ", r.status().toString());
                              return;
                            }
                            ack(answer);
                          });
}

void EdgeCore::sendKeepalive() {
  Envelope e = message("websocket", "resource", "keepalive", "node");
  setContentString(e, "ping");
  send(e, {});
}

void EdgeCore::sendMembershipRequest() {
  Envelope e = message("twin", "resource", "get", "membership/detail");
  json body = {{"event_type", "group_membership_event"},
               {"event_id", newMessageId()},
               {"group_id", opts_.nodeName},
               {"operation", "detail"},
               {"timestamp", core::toUnixMillis(clock_.wallNow())}};
  setContentString(e, body.dump());
  send(e, {});
}

json EdgeCore::nodeObject() const {
  json labels = {{"kubernetes.io/arch", goArch()},
                 {"kubernetes.io/hostname", opts_.nodeName},
                 {"kubernetes.io/os", "linux"},
                 {"node-role.kubernetes.io/agent", ""},
                 {"node-role.kubernetes.io/edge", ""}};
  for (const auto& [k, v] : opts_.nodeLabels) labels[k] = v;
  // What deploy reported last, else the status the agent computed at start.
  const std::string& known = lastNodeStatus_.empty() ? opts_.initialNodeStatus : lastNodeStatus_;
  json status = json::parse(known, nullptr, false);
  if (!status.is_object()) status = json::object();
  if (!status.contains("nodeInfo")) {
    status["nodeInfo"] = {{"architecture", goArch()}, {"operatingSystem", "linux"}};
  }
  return {{"metadata", {{"name", opts_.nodeName}, {"labels", labels}}},
          {"spec", json::object()},
          {"status", status}};
}

// Once per process: the cloud creates the Node if it does not exist.
void EdgeCore::registerNode() {
  registering_ = true;
  Envelope e = message("edged", "meta", "insert", nodeKey("node"));
  e.content = nodeObject().dump();
  request(e, [this](const Envelope* answer) {
    registering_ = false;
    if (!answer) return;  // tried again at the next node query
    Answer a = parseAnswer(*answer);
    registered_ = true;
    if (a.error) {
      log_.warn("the cloud answered the node registration with an error: ", a.error->dump());
    } else {
      log_.info("node ", opts_.nodeName, " registered");
    }
    storeAndAck(*answer, kKvNode, a.object);
    sendStatusAfterRegistration();
  });
}

// The node exists now: its status goes at once, not at the next interval. A status row that
// waited for the registration is sent with its outcome; without one, what the node last reported
// (or an empty patch) is.
void EdgeCore::sendStatusAfterRegistration() {
  if (heldNodeRow_) {
    SendDone done = std::move(heldNodeRow_);
    heldNodeRow_ = {};
    return sendNodeStatus(lastNodeStatus_, std::move(done));
  }
  if (!lastNodeStatus_.empty()) return sendNodeStatus(lastNodeStatus_, {});
  if (!nodePatchSent_) sendNodePatch("{}", {});
}

json EdgeCore::leaseObject() const {
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", {{"name", opts_.nodeName}, {"namespace", "kube-node-lease"}}},
          {"spec",
           {{"holderIdentity", opts_.nodeName},
            {"leaseDurationSeconds", opts_.leaseDurationSeconds},
            {"renewTime", microTime(clock_.wallNow())}}}};
}

void EdgeCore::queryLease() {
  if (leaseBusy_) return;
  leaseBusy_ = true;
  Envelope e = message("edged", "meta", "query", leaseKey());
  request(e, [this](const Envelope* answer) {
    leaseBusy_ = false;
    if (!answer) return;
    Answer a = parseAnswer(*answer);
    storeAndAck(*answer, kKvLease, a.object);
    if (a.object && a.object->contains("metadata")) {
      lease_ = *a.object;
      renewLease();  // the lease may be stale: renew it at once
    } else if (a.notFound || !a.object) {
      leaseWrite("insert", leaseObject());
    }
  });
}

void EdgeCore::leaseWrite(const char* operation, json lease) {
  leaseBusy_ = true;
  Envelope e = message("edged", "meta", operation, leaseKey());
  e.content = lease.dump();
  request(e, [this, operation](const Envelope* answer) {
    leaseBusy_ = false;
    if (!answer) return;
    Answer a = parseAnswer(*answer);
    storeAndAck(*answer, kKvLease, a.object);
    if (a.error || !a.object) {
      log_.warn("the cloud refused the lease ", operation, ": ",
                a.error ? a.error->dump() : "no object in the answer");
      lease_.reset();  // query it again on the next round
      return;
    }
    lease_ = *a.object;
  });
}

void EdgeCore::renewLease() {
  if (leaseBusy_) return;
  if (!lease_) return queryLease();
  json lease = *lease_;
  lease["spec"]["holderIdentity"] = opts_.nodeName;
  lease["spec"]["leaseDurationSeconds"] = opts_.leaseDurationSeconds;
  lease["spec"]["renewTime"] = microTime(clock_.wallNow());
  leaseWrite("update", std::move(lease));
}

void EdgeCore::queryNode() {
  if (!registered_ && !registering_) registerNode();  // an insert that went unanswered
  Envelope e = message("edged", "meta", "query", nodeKey("node"));
  nodeQueries_++;
  request(e, [this](const Envelope* answer) {
    nodeQueries_--;
    if (!answer) return;
    Answer a = parseAnswer(*answer);
    if (a.notFound) log_.warn("the cloud does not know node ", opts_.nodeName);
    if (!a.error || a.notFound) onNodeAnswered();  // an error answer says nothing of the link
    storeAndAck(*answer, kKvNode, a.object);
  });
}

// A strategic-merge patch of the node (its status), as JSON text inside a JSON string.
void EdgeCore::sendNodePatch(const std::string& patch, SendDone done) {
  nodePatchSent_ = true;
  lastNodePatch_ = clock_.now();
  Envelope e = message("edged", "meta", "patch", nodeKey("nodepatch"));
  setContentString(e, patch);
  request(e, [this, done](const Envelope* answer) {
    if (!answer) {
      if (done) done(core::unavailable("no answer to the node patch"));
      return;
    }
    Answer a = parseAnswer(*answer);
    if (!a.error) {
      if (nodePatchFailures_ > 0)
        log_.info("the cloud took the node status patch after ", nodePatchFailures_, " refusals");
      nodePatchFailures_ = 0;
      if (done) done(core::okStatus());
      return;
    }
    // Refused (e.g. NotFound while the cloud is still creating the node): a status row goes back
    // to the outbox and is sent again after the store's back-off (1 s, doubling, bounded).
    std::string why = "the cloud refused the node status patch: " + a.error->dump();
    if (nodePatchFailures_++ == 0) {
      log_.warn(why, done ? "; sent again shortly" : "");
    } else {
      log_.debug(why);
    }
    if (done) done(core::unavailable(why));
  });
}

// A status row: held until the node is registered (a patch before that is answered NotFound).
void EdgeCore::sendNodeStatus(const std::string& payload, SendDone done) {
  json status = json::parse(payload, nullptr, false);
  if (!status.is_object()) {
    log_.warn("node status in the outbox is not a JSON object; dropped");
    if (done) done(core::okStatus());
    return;
  }
  sendNodePatch(json{{"status", status}}.dump(), std::move(done));
}

// ---- the outbox, as EdgeCore's patches and twin messages
void EdgeCore::sendRow(const metadb::OutboxEntry& e, SendDone done) {
  if (e.kind == "podstatus") return sendPodPatch(e, std::move(done));
  if (e.kind == "poddelete") return sendPodDelete(e, std::move(done));
  if (e.kind == "objectstatus" || e.kind == "agentupgradestatus") {
    // An image pre-pull's or an agent upgrade's status (docs/rollouts.md, docs/kubeedge.md):
    // objects of the MQTT scheme, none of KubeEdge's; CloudCore has nothing to patch. An upgrade's
    // phases stay on the node (the log, `outpostctl status`).
    log_.debug("status of ", e.key, " is not sent to CloudCore; dropped");
    if (done) done(core::okStatus());
    return;
  }
  if (e.kind == "nodestatus") {
    lastNodeStatus_ = e.payload;
    if (!registered_) {
      // A newer row replaced the held one in the outbox: the older one's outcome no longer counts.
      if (heldNodeRow_) heldNodeRow_(core::okStatus());
      heldNodeRow_ = std::move(done);
      log_.debug("node status waits for the node's registration");
      return;
    }
    return sendNodeStatus(e.payload, std::move(done));
  }
  bool twin = e.kind == "twin" || e.kind == "devicestatus";
  Envelope env = message(twin ? "twin" : "edged", "resource", "update", e.key);
  env.content = json::accept(e.payload) ? e.payload : json(e.payload).dump();
  if (e.kind == "twin") {
    // CloudCore answers edge_updated with "OK".
    return request(env, [done](const Envelope* answer) {
      done(answer ? core::okStatus() : core::unavailable("no answer to the twin update"));
    });
  }
  send(env, std::move(done));
}

void EdgeCore::sendPodPatch(const metadb::OutboxEntry& e, SendDone done) {
  auto parts = metadb::parseKey(e.key);
  json status = json::parse(e.payload, nullptr, false);
  if (!parts.isOk() || !status.is_object()) {
    log_.warn("pod status row for ", e.key, " is not a pod key with a JSON status; dropped");
    return done(core::okStatus());
  }
  auto stored = session_.reader()->get(e.key);
  if (!stored.isOk()) return done(stored.status());
  if (!*stored || status.value("phase", "") == "Removed") {
    // The pod is gone from the desired set: the cloud deleted it, there is nothing to patch.
    log_.debug("status of ", e.key, " not sent: the pod is no longer desired");
    return done(core::okStatus());
  }
  json patch = {{"metadata", {{"uid", (*stored)->uid}}}, {"status", status}};
  Envelope env = message("edged", "meta", "patch", parts->ns + "/podpatch/" + parts->name);
  setContentString(env, patch.dump());
  request(env, [this, key = e.key, done](const Envelope* answer) {
    if (!answer) return done(core::unavailable("no answer to the pod status patch"));
    Answer a = parseAnswer(*answer);
    if (a.error) log_.warn("the cloud refused the status patch of ", key, ": ", a.error->dump());
    done(core::okStatus());
  });
}

// A pod being deleted is down on the node: EdgeCore's edged then asks the cloud to delete it for
// good, with grace period 0 and the pod's uid as precondition (so a new pod of the same name is
// never deleted by it); CloudCore deletes it at the API server and sends the delete, which removes
// the pod from the store. Asked again (after the request timeout) until the pod has left the store.
void EdgeCore::sendPodDelete(const metadb::OutboxEntry& e, SendDone done) {
  auto parts = metadb::parseKey(e.key);
  json payload = json::parse(e.payload, nullptr, false);
  if (!parts.isOk() || parts->type != "pod" || !payload.is_object() ||
      !payload.value("uid", json()).is_string()) {
    log_.warn("pod delete row for ", e.key, " is not a pod key with a uid; dropped");
    return done(core::okStatus());
  }
  std::string uid = payload["uid"].get<std::string>();
  auto stored = session_.reader()->get(e.key);
  if (!stored.isOk()) return done(stored.status());
  if (!*stored || (*stored)->uid != uid) {
    log_.debug("delete of ", e.key, " not asked: the cloud has deleted the pod");
    return done(core::okStatus());
  }
  // The pod's last status goes first. Its row leaves the outbox only once the cloud has it, so a
  // row still there (waiting, being patched, or replaced by a newer status while the older one was
  // in flight) holds the delete back until it is sent.
  auto statusPending = session_.reader()->outboxHas("podstatus", e.key);
  if (!statusPending.isOk()) return done(statusPending.status());
  if (*statusPending) return done(core::unavailable("the pod's status goes first"));
  // The content is the pod's uid as a JSON string: CloudCore deletes the pod with grace period 0
  // and the uid as precondition. Older CloudCores read only this form (`msg.Content.(string)`);
  // newer ones also take DeleteOptions, which later EdgeCores send (docs/kubeedge.md).
  Envelope env = message("edged", "meta", "delete", e.key);
  setContentString(env, uid);
  log_.info("asking the cloud to delete pod ", e.key, ": its containers are down");
  request(env, [this, key = e.key, done](const Envelope* answer) {
    if (!answer) return done(core::unavailable("no answer to the pod delete"));
    Answer a = parseAnswer(*answer);
    if (a.error) log_.warn("the cloud refused the delete of pod ", key, ": ", a.error->dump());
    done(core::okStatus());
  });
}

}  // namespace outpost::cloudhub
