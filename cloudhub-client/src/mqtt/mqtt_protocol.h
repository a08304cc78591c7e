#pragma once
// The MQTT scheme's protocol part (PROTOCOL.md §3, docs/mqtt-link.md): what the MQTT link does
// besides what every session does. Runs on the session's loop.
//   mqtt_protocol.cc  topics in (desired objects, the down topic), acks (coalesced, batched) and
//   the
//                     outbox out (status retained on its topic, the rest on up)
//   manifests.cc      completeness: each scope's manifest, pruning what it no longer lists, and
//                     fetching what the broker did not deliver

#include <map>
#include <set>
#include <string>
#include <vector>

#include "mqtt/mqtt_transport.h"
#include "outpost/cloudhub/mqtt_link.h"
#include "session/session.h"

namespace outpost::cloudhub {

class MqttProtocol final : public SessionProtocol {
 public:
  MqttProtocol(const MqttLinkOptions& options, Session& session, MqttTransport& transport);

  // ---- SessionProtocol
  void opened() override;
  void frame(const Incoming& in) override;
  void closed() override;
  void failed(const std::string& why, bool wasConnected, std::string& detail) override;
  void sendRow(const metadb::OutboxEntry& e, SendDone done) override;
  void ackTwin(const Envelope& env) override {
    ack(env.header.msgId, env.route.resource, "meta", "twin");
  }
  void stopping() override;

 private:
  // ---- in and acks (mqtt_protocol.cc)
  struct PendingAck {
    std::string msgId, key, source, group;
  };
  void invalid(Session::Invalid kind, const std::string& topic, const std::string& why) {
    session_.invalid(kind, "message on " + topic, why);
  }
  void subscribeAll();
  void onDesired(const std::string& topic, const std::string& origin, const std::string& key,
                 const std::string& payload);
  void onDown(const std::string& topic, const std::string& payload);
  void queueAck(PendingAck a);
  void flushAcks();
  void onAckSent(const std::string& what, uint64_t epoch, const core::Status& s);
  Envelope singleAck(const std::string& msgId, const std::string& resource,
                     const std::string& source, const std::string& group);
  void ack(const std::string& msgId, const std::string& resource, const std::string& source,
           const std::string& group);
  std::string upstreamPayload(const metadb::OutboxEntry& e);

  // ---- completeness (manifests.cc)
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
  void onManifest(const std::string& topic, const std::string& origin, const std::string& payload);
  void scheduleConvergenceCheck();
  void checkConvergence();
  void armResync(const std::string& origin, const std::vector<std::string>& missing);
  std::string desiredTopic(const std::string& origin, const std::string& key) const;
  void fetchMissing(const std::string& origin, Manifest& m);
  void refetch(std::vector<std::string> page);
  void refetchLater(const std::string& topic);

  const MqttLinkOptions& opts_;
  MqttTopics topics_;
  Session& session_;
  MqttTransport& transport_;
  core::Logger& log_;
  core::Clock& clock_;

  std::string tlsFailure_;  // why TLS failed at the start of this outage, for the status
  std::map<std::string, Manifest> manifests_;
  bool checkPosted_ = false;
  std::vector<PendingAck> pendingAcks_;
  bool ackFlushPosted_ = false;
  bool ackInFlight_ = false;  // an ack message awaits its PUBACK
  uint64_t ackEpoch_ = 0;     // counts connections lost: a late PUBACK of an older one is ignored
  // A batch ack of a full commit (256 writes) stays around 10 KB.
  static constexpr size_t kMaxAcksPerMessage = 256;
  core::TimerId resyncTimer_ = 0;
  static constexpr core::Duration kResyncInitial = std::chrono::seconds(2);
  static constexpr core::Duration kResyncMax = std::chrono::seconds(60);
  static constexpr size_t kFetchPage = 200;  // missing objects asked for by topic at once
  std::set<std::string> storeRetry_;         // topics of objects the store refused, to ask again
  core::TimerId storeRetryTimer_ = 0;
  core::Duration storeRetryDelay_ = kResyncInitial;
  std::vector<std::string> fetchTopics_;  // the exact subscriptions of the last page
  core::Duration resyncDelay_ = kResyncInitial;
};

}  // namespace outpost::cloudhub
