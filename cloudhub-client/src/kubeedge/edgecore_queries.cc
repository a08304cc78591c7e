// Queries of one object (CloudLink::query: PROTOCOL.md §1, operation query answered by
// parent_msg_id) and the resync rule after a connect: lastSync and the needs_full_resync mark. See
// edgecore.h.

#include "codec/resource_change.h"
#include "kubeedge/edgecore.h"
#include "outpost/validation/validation.h"

namespace outpost::cloudhub {

using nlohmann::json;

bool EdgeCore::queryable(const std::string& resource) const {
  if (resource == nodeKey("node")) return true;
  auto parts = metadb::parseKey(resource);
  return parts.isOk() &&
         (parts->type == "configmap" || parts->type == "secret" || parts->type == "pod");
}
namespace {

bool isPodKey(const std::string& resource) {
  auto parts = metadb::parseKey(resource);
  return parts.isOk() && parts->type == "pod";
}

}  // namespace

void EdgeCore::startQuery(const std::string& resource, core::Duration timeout, QueryCallback done) {
  if (!session_.reader() || !queryable(resource)) {
    QueryResult r;
    r.status = session_.reader()
                   ? core::invalidArgument("cannot query \"" + resource +
                                           "\": expected <namespace>/configmap/<name>, "
                                           "<namespace>/secret/<name>, <namespace>/pod/<name> or " +
                                           nodeKey("node"))
                   : core::failedPrecondition("the cloud link is not started");
    r.reason = r.status.message();
    return done(std::move(r));
  }
  // While the store is marked incomplete, a pod someone asks about (deploy keeps it running
  // unnamed) must be settled by the cloud before the mark may go.
  if (markSet_ && isPodKey(resource)) unresolved_.insert(resource);
  if (!session_.connected()) {
    std::string why = session_.book().status().lastError;
    return done(fromStore(resource, why.empty() ? "offline" : "offline: " + why));
  }
  Envelope e = message("edged", "meta", "query", resource);
  session_.request(
      e, "", timeout,
      [this, resource, done = std::move(done)](const Envelope* answer, const std::string& why) {
        if (!answer) return done(fromStore(resource, why));
        onQueryAnswer(resource, *answer, done);
      });
}

// The cloud answered: a found object is stored as an insert from the cloud, then acked (as the
// node query's answer); NotFound is acked and leaves the store alone (deletes come as deletes).
void EdgeCore::onQueryAnswer(const std::string& resource, const Envelope& answer,
                             QueryCallback done) {
  Answer a = parseAnswer(answer);
  bool node = resource == nodeKey("node");
  if (node && (!a.error || a.notFound)) onNodeAnswered();
  if (a.error && !a.notFound) {
    return done(fromStore(resource, "the cloud answered with an error: " + a.error->dump()));
  }
  metadb::WriteBatch batch;
  if (a.object && node) {
    batch.putKv(kKvNode, a.object->dump());
  } else if (a.object) {
    Envelope insert = answer;
    insert.route.operation = "insert";
    insert.route.resource = resource;
    auto change = resourceChangeFrom(insert, resource, kEdgeCoreOrigin);
    if (!change.isOk()) {
      invalid(Session::Invalid::kContent, "answer to query " + resource, change.status().message());
      return done(fromStore(
          resource, "the cloud's answer is not a valid object: " + change.status().message()));
    }
    batch.apply(std::move(change).value());
  }
  bool found = a.object.has_value();
  session_.writes().write(
      std::move(batch), session_.loop(),
      [this, resource, answer, found, node, object = a.object,
       done](core::Result<metadb::WriteResult> r) {
        if (!r.isOk()) {
          log_.error("storing the cloud's answer to the query of ", resource, ": ",
                     r.status().toString());
          return done(
              fromStore(resource, "storing the cloud's answer failed: " + r.status().message()));
        }
        ack(answer);
        if (unresolved_.erase(resource)) {
          log_.info("the cloud settled ", resource, ": ", found ? "it is wanted" : "not found");
          maybeClearMark();
        }
        QueryResult q;
        if (node) {
          if (object) q.object = object->dump();
        } else if (found) {
          q = fromStore(resource, "");
          bool older = !r->changes.empty() && r->changes[0] == metadb::ApplyOutcome::kStale;
          q.reason = older ? "found; the store holds a newer version" : "found";
        }
        q.source = QuerySource::kCloud;
        if (q.reason.empty()) q.reason = found ? "found" : "not found";
        done(std::move(q));
      });
}

// A service-account token, asked as EdgeCore's meta manager asks (edged / meta / query
// <ns>/serviceaccounttoken/<name>, content the TokenRequest): CloudCore creates the token at the
// API server and answers with the TokenRequest and its status. Not stored here (deploy keeps its
// tokens); the answer is acknowledged as the other query answers are.
void EdgeCore::startTokenQuery(const std::string& ns, const std::string& serviceAccount,
                               const std::string& tokenRequest, core::Duration timeout,
                               TokenCallback done) {
  if (auto s = validation::dnsLabel("namespace", ns); !s.isOk()) return done(s);
  if (auto s = validation::dnsSubdomain("service account", serviceAccount); !s.isOk())
    return done(s);
  json content = json::parse(tokenRequest, nullptr, false);
  if (!content.is_object())
    return done(core::invalidArgument("the TokenRequest is not a JSON object"));
  if (!session_.connected()) {
    std::string why = session_.book().status().lastError;
    return done(core::unavailable(why.empty() ? "offline" : "offline: " + why));
  }
  std::string resource = ns + "/serviceaccounttoken/" + serviceAccount;
  Envelope e = message("edged", "meta", "query", resource);
  e.content = content.dump();
  session_.request(
      e, "", timeout,
      [this, resource, done = std::move(done)](const Envelope* answer, const std::string& why) {
        if (!answer) return done(core::deadlineExceeded(resource + ": " + why));
        Answer a = parseAnswer(*answer);
        ack(*answer);
        if (a.error) {
          std::string text = a.error->is_object() && a.error->contains("message")
                                 ? a.error->value("message", "")
                                 : a.error->dump();
          return done(a.notFound ? core::Status(core::notFound(text))
                                 : core::abortedError("the cloud answered " + resource +
                                                      " with an error: " + text));
        }
        if (!a.object || !a.object->is_object())
          return done(core::invalidArgument("the cloud's answer to " + resource +
                                            " is not a TokenRequest"));
        done(a.object->dump());
      });
}

QueryResult EdgeCore::fromStore(const std::string& resource, std::string reason) {
  QueryResult r;
  r.source = QuerySource::kStore;
  r.reason = std::move(reason);
  if (!session_.reader()) return r;
  if (resource == nodeKey("node")) {
    auto kv = session_.reader()->getKv(kKvNode);
    if (kv.isOk() && kv->has_value()) r.object = **kv;
    return r;
  }
  auto got = session_.reader()->get(resource);
  if (!got.isOk()) {
    r.reason += "; reading the store: " + got.status().toString();
  } else if (*got) {
    r.object = (*got)->object;
    r.resourceVersion = (*got)->version;
  }
  return r;
}

// ---- resync after a connect: lastSync and the needs_full_resync mark
// The cloud resends on connect what the node has not acknowledged and then goes quiet; the
// session counts as in step once no desired-state message came for resyncQuietHeartbeats
// heartbeats and the cloud answered a node query sent after that quiet began (a link that went
// silent is quiet too: its requests time out, and it is not in step). lastSync is that moment,
// then every later answer to the node query on the same connection. The mark goes only then, and
// only when every pod that was asked about while it was set (deploy keeps those running unnamed)
// was settled by the cloud (found and stored, or NotFound): a pod the cloud still wants is never
// collected.
void EdgeCore::readMark() {
  auto mark = session_.reader()->getKv(metadb::kKvNeedsFullResync);
  if (!mark.isOk()) {
    log_.error("reading ", metadb::kKvNeedsFullResync, ": ", mark.status().toString());
    return;  // keeps what it believed
  }
  markSet_ = mark->has_value() && **mark == "1";
}

void EdgeCore::onNodeAnswered() {
  nodeAnswered_ = true;
  lastNodeAnswer_ = clock_.now();
  if (!settled_) return;
  session_.book().synced(clock_.wallNow());
}

void EdgeCore::checkResync() {
  auto quiet = opts_.heartbeat * opts_.resyncQuietHeartbeats;
  auto now = clock_.now();
  if (settled_) {
    if (markSet_ && !unresolved_.empty() && now - lastAsked_ >= quiet) askUnresolved();
    return;
  }
  if (!nodeAnswered_ || now - lastDesiredRx_ < quiet) return;
  if (lastNodeAnswer_ < lastDesiredRx_ + quiet) {
    // Quiet, but is the cloud still there? Asks the node again; its answer decides.
    if (nodeQueries_ == 0) queryNode();
    return;
  }
  settled_ = true;
  session_.book().synced(clock_.wallNow());
  log_.info("in step with the cloud: no resend for ",
            std::chrono::duration_cast<std::chrono::milliseconds>(quiet).count(), " ms");
  if (markSet_ && !unresolved_.empty()) {
    std::string some;
    for (const auto& k : unresolved_) some += (some.empty() ? "" : ", ") + k;
    log_.warn("the store is marked ", metadb::kKvNeedsFullResync, " and the cloud has not settled ",
              unresolved_.size(), unresolved_.size() == 1 ? " pod" : " pods",
              " kept running unnamed (", some, "): the mark stays; asking again");
    askUnresolved();
  }
  maybeClearMark();
}

void EdgeCore::askUnresolved() {
  lastAsked_ = clock_.now();
  for (const auto& key : std::set<std::string>(unresolved_))
    startQuery(key, opts_.requestTimeout, [](QueryResult) {});
}

void EdgeCore::maybeClearMark() {
  if (!markSet_ || !settled_ || !unresolved_.empty() || clearingMark_) return;
  clearingMark_ = true;
  metadb::WriteBatch batch;
  batch.eraseKv(std::string(metadb::kKvNeedsFullResync));
  session_.writes().write(
      std::move(batch), session_.loop(), [this](core::Result<metadb::WriteResult> r) {
        clearingMark_ = false;
        if (!r.isOk()) {
          log_.error("clearing ", metadb::kKvNeedsFullResync, ": ", r.status().toString());
          return;
        }
        markSet_ = false;
        log_.info(metadb::kKvNeedsFullResync,
                  " cleared: the cloud's resend after connecting is over and every pod kept "
                  "unnamed was settled");
      });
}

}  // namespace outpost::cloudhub
