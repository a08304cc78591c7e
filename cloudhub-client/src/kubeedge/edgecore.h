#pragma once
// EdgeCore: the KubeEdge protocol part of the WebSocket link (PROTOCOL.md §1). What EdgeCore does
// on a CloudHub connection besides what every session does: its cadence (keepalive, membership,
// registration once, lease, node query, node patch), the cloud's desired state and answers,
// queries, the resync after a connect, and the outbox as pod and node patches. Runs on the
// session's loop.
//   edgecore.cc          the cadence, and the outbox as patches
//   edgecore_frames.cc   what arrives: desired state, answers, twin messages; acks
//   edgecore_queries.cc  queries of one object, and the resync rule (lastSync, needs_full_resync)

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "outpost/cloudhub/websocket_link.h"
#include "session/session.h"

namespace outpost::cloudhub {

class EdgeCore final : public SessionProtocol {
 public:
  EdgeCore(const WebsocketLinkOptions& options, Session& session);

  // CloudLink::query, on the loop.
  void startQuery(const std::string& resource, core::Duration timeout, QueryCallback done);
  // CloudLink::requestToken, on the loop.
  using TokenCallback = std::function<void(core::Result<std::string>)>;
  void startTokenQuery(const std::string& ns, const std::string& serviceAccount,
                       const std::string& tokenRequest, core::Duration timeout, TokenCallback done);

  // ---- SessionProtocol
  void started() override;
  void opened() override;
  void frame(const Incoming& in) override;
  void closed() override;
  void failed(const std::string& why, bool wasConnected, std::string& detail) override;
  void sendRow(const metadb::OutboxEntry& e, SendDone done) override;
  void ackTwin(const Envelope& env) override { ack(env, "meta", "twin"); }

 private:
  using json = nlohmann::json;

  // ---- sending (edgecore.cc)
  Envelope message(const char* source, const char* group, const char* operation,
                   const std::string& resource) const {
    return session_.message(source, group, operation, resource);
  }
  void send(const Envelope& env, SendDone done) { session_.send(env, "", std::move(done)); }
  void request(const Envelope& env, std::function<void(const Envelope*)> answered);
  std::string nodeKey(const char* type) const {
    return opts_.nodeNamespace + "/" + type + "/" + opts_.nodeName;
  }
  std::string leaseKey() const { return "kube-node-lease/lease/" + opts_.nodeName; }
  void storeAndAck(const Envelope& answer, const char* kvKey, const std::optional<json>& object);
  void sendKeepalive();
  void sendMembershipRequest();
  json nodeObject() const;
  void registerNode();
  json leaseObject() const;
  void queryLease();
  void leaseWrite(const char* operation, json lease);
  void renewLease();
  void queryNode();
  void sendNodePatch(const std::string& patch, SendDone done);
  void sendNodeStatus(const std::string& payload, SendDone done);
  void sendStatusAfterRegistration();
  void sendPodPatch(const metadb::OutboxEntry& e, SendDone done);
  void sendPodDelete(const metadb::OutboxEntry& e, SendDone done);

  // ---- receiving (edgecore_frames.cc)
  void invalid(Session::Invalid kind, const std::string& what, const std::string& why,
               bool again = false) {
    session_.invalid(kind, "cloud message " + what, why, again);
  }
  std::optional<std::string> misaddressed(const Envelope& env,
                                          const metadb::ResourceChange& change) const;
  // Whether the refusal of this object version (or content, when it has no version) was reported
  // lately: a refused object is reported once per version, not at each of the cloud's resends.
  bool refusedBefore(const Envelope& env);
  void onDesired(Envelope env);
  void ackDesired(const Envelope& env);
  void ack(const Envelope& received, const std::string& source, const std::string& group);
  void ack(const Envelope& received) { ack(received, received.route.source, received.route.group); }
  void answerError(const Envelope& received, const std::string& why);

  // ---- queries and the resync rule (edgecore_queries.cc)
  bool queryable(const std::string& resource) const;
  void onQueryAnswer(const std::string& resource, const Envelope& answer, QueryCallback done);
  QueryResult fromStore(const std::string& resource, std::string reason);
  void readMark();
  void onNodeAnswered();
  void checkResync();
  void askUnresolved();
  void maybeClearMark();

  const WebsocketLinkOptions& opts_;
  Session& session_;
  core::Logger& log_;
  core::Clock& clock_;

  core::MonoTime lastNodePatch_;
  std::string lastNodeStatus_;
  std::optional<json> lease_;
  bool leaseBusy_ = false;
  bool registered_ = false;
  bool registering_ = false;
  bool nodePatchSent_ = false;
  SendDone heldNodeRow_;       // a node status row waiting for the registration
  int nodePatchFailures_ = 0;  // refused node patches in a row
  bool explained_ = false;
  // The resync rule (see checkResync).
  bool markSet_ = false;              // the store carries needs_full_resync
  std::set<std::string> unresolved_;  // pods asked about while marked, not yet settled by the cloud
  core::MonoTime lastDesiredRx_, lastAsked_, lastNodeAnswer_;
  int nodeQueries_ = 0;
  std::vector<std::string> refusedVersions_;  // "<key>@<version>" of objects refused lately
  std::vector<size_t> refused_;  // hashes of the oversized frames reported lately  // node queries
                                 // not yet answered or timed out
  bool nodeAnswered_ = false, settled_ = false, clearingMark_ = false;
};

// The cloud's answer to a request (PROTOCOL.md §1): {"Object", "Err"}, the plain object, or
// {"ErrStatus"} when it is not there.
struct Answer {
  std::optional<nlohmann::json> object;
  std::optional<nlohmann::json> error;
  bool notFound = false;
};
Answer parseAnswer(const Envelope& env);

inline constexpr const char* kEdgeCoreOrigin = "cloud";
inline constexpr const char* kKvNode =
    "cloud.websocket.node";  // the cloud's last answer for our node
inline constexpr const char* kKvLease = "cloud.websocket.lease";  // and for our lease

}  // namespace outpost::cloudhub
