#pragma once
// A CloudHub test double: a TLS WebSocket server on loopback that behaves towards an edge node as
// KubeEdge's CloudHub does (PROTOCOL.md §1): it checks the upgrade request and the client
// certificate, records every envelope the edge sends, answers the edge's node, lease and patch
// requests in the cloud's shapes, sends cloud messages a test asks for, and resends those not yet
// acknowledged. It can stop forwarding without closing the connection (a silent drop).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "support/mosquitto.h"

namespace outpost::test {

struct CloudHubDoubleOptions {
  std::string caFile;    // CA that client certificates must chain to
  std::string certFile;  // the server's certificate (for 127.0.0.1 / localhost)
  std::string keyFile;   // and its key
  std::string projectId = "e632aba927ea4ac2b575ec1603d56f10";
  // Resend every cloud message the edge has not acknowledged this often (CloudHub: 5 s).
  std::chrono::milliseconds resendInterval{5000};
  // Answer the edge's node insert/query, lease query/insert/update and patches as the cloud does.
  bool answerRequests = true;
  // CloudCore creates the Node in the API server apart from the edge's other requests: the node
  // exists, and its insert is answered, only this long after the insert arrived. Until then a
  // nodepatch of it is answered NotFound (404), as the API server answers CloudCore's patch.
  std::chrono::milliseconds registrationDelay{200};
  // When set, the client certificate's CN must be exactly this (else the upgrade is refused 403).
  std::optional<std::string> requireCn;
  // When set, a service-account token lives at most this long (the API server's
  // --service-account-max-token-expiration): tests see a refresh without waiting 48 minutes.
  std::optional<std::chrono::seconds> maxTokenExpiration;
};

// Options that serve `tls`'s server certificate and take client certificates of its CA.
inline CloudHubDoubleOptions hubOptionsFor(const TlsFiles& tls) {
  CloudHubDoubleOptions h;
  h.caFile = tls.ca;
  h.certFile = tls.serverCert;
  h.keyFile = tls.serverKey;
  return h;
}

// One envelope received from the edge.
struct ReceivedFrame {
  nlohmann::json envelope;  // parsed; frames that are not JSON are kept as a string under "raw"
  std::chrono::steady_clock::time_point at;
  int connection = 0;  // which connection (1, 2, ...) it arrived on
};

// What the double saw of one accepted WebSocket connection.
struct HubConnection {
  int id = 0;
  std::string path;                            // the request target, e.g. /<project>/<node>/events
  std::map<std::string, std::string> headers;  // upgrade request headers, names lower-cased
  std::string clientCn, clientO;               // the client certificate's subject
  std::string clientSerial;                    // hex serial of the client certificate
  bool open = false;
};

class CloudHubDouble {
 public:
  explicit CloudHubDouble(CloudHubDoubleOptions options);
  ~CloudHubDouble();  // closes every connection and joins its threads
  CloudHubDouble(const CloudHubDouble&) = delete;
  CloudHubDouble& operator=(const CloudHubDouble&) = delete;

  int port() const;
  std::string url() const;  // wss://127.0.0.1:<port> (the server part; the edge appends the path)

  // Every envelope the edge sent so far, in arrival order (a copy; safe from any thread).
  std::vector<ReceivedFrame> received() const;
  // The envelopes whose route matches (empty strings match anything).
  std::vector<ReceivedFrame> receivedWhere(const std::string& operation,
                                           const std::string& resourcePrefix = "",
                                           const std::string& group = "") const;
  // Waits (real time, with a deadline) until `pred` holds for the received frames.
  bool waitFor(const std::function<bool(const std::vector<ReceivedFrame>&)>& pred,
               std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // Sends a cloud message to the current connection (and to later ones, until acknowledged):
  // fills header.msg_id (uuid) and timestamp when absent; returns the msg_id.
  std::string send(nlohmann::json envelope);
  // Convenience: a pod (or any object) insert/update/delete from the cloud, route
  // {source "edgecontroller", group "resource", operation, resource "<ns>/<type>/<name>"},
  // header.resourceversion from the object's metadata.resourceVersion.
  std::string sendObject(const std::string& operation, const std::string& resource,
                         const nlohmann::json& object);
  // True once the edge acked `msgId` (operation response with parent_msg_id = msgId).
  bool acked(const std::string& msgId) const;
  int ackCount(const std::string& msgId) const;  // how many acks arrived for it (resends ack again)

  // The objects the double holds as "the cloud's" state: the node the edge registered, the lease.
  // A Device object (sent with sendObject) is what the edge's twin updates are answered for, as
  // CloudCore 1.15 does: the one segment after device/ must name it (else no answer), and each
  // property's actual value lands in its status.twins[].reported.
  std::optional<nlohmann::json> object(const std::string& resource) const;

  // Silent drop: while false, nothing is read from or written to the connections (no pongs
  // either), yet the TCP connections stay open.
  void setForwarding(bool on);
  void closeConnections();  // a clean WebSocket close of every connection
  std::vector<HubConnection> connections() const;
  int openConnections() const;

  // Additions (after the first interface; nothing above changed):
  // Every envelope the double sent (its answers and the test's messages), once each, in order.
  std::vector<nlohmann::json> sent() const;
  // Every refused connection attempt with its reason: a failed TLS handshake (untrusted or missing
  // client certificate) or an upgrade answered 403 (wrong path, project, node_id or CN).
  std::vector<std::string> refusals() const;
  // WebSocket ping frames received from the edge (each answered with a pong while forwarding).
  int pings() const;
  // Puts an object into (or removes it from) the cloud's state, so the edge's query of
  // `resource` (e.g. "default/configmap/app-cfg") is answered with it (or NotFound). An object
  // without metadata.resourceVersion gets one, as every object of the API server has.
  void setObject(const std::string& resource, nlohmann::json object);
  void removeObject(const std::string& resource);
  // Messages sent with send()/sendObject() and not yet acknowledged, by msg_id.
  std::vector<std::string> unacked() const;
  // While off, the edge's queries (operations query and get) of resources starting with
  // `resourcePrefix` (every resource when empty) are recorded and answered by nothing: a cloud
  // that stays silent, for the edge's query timeout. Other requests are still answered. On again
  // clears every silenced prefix.
  void setAnswerQueries(bool on, const std::string& resourcePrefix = "");

  // `kubectl delete pod` as CloudCore carries it: the pod held at `resource` ("<ns>/pod/<name>",
  // put there by sendObject or setObject) gets metadata.deletionTimestamp and
  // deletionGracePeriodSeconds (its spec's terminationGracePeriodSeconds, else 30) and is sent as
  // an update. Only when the edge then asks for its deletion (operation delete from edged, the
  // content the pod's uid as a JSON string, as CloudCore reads it) is it deleted, with grace period
  // 0: the double answers "OK" and sends the delete. Any other content, or another uid, is never
  // answered (CloudCore logs it and goes on) and the pod stays Terminating. Returns the update's
  // msg_id.
  std::string deletePod(const std::string& resource);
  // The edge's delete requests of pods the double carried out (resources, in order).
  std::vector<std::string> podsDeleted() const;
  // The edge's delete requests of pods the double dropped unanswered (content not the pod's uid).
  std::vector<std::string> podDeletesIgnored() const;

  // Issue 17 item 3. A pod sent (sendObject, setObject) is the pod the API server stores
  // (kube_admission.h, admitPod): with the kube-api-access-<suffix> projected volume. The edge's
  // query of "<ns>/serviceaccounttoken/<name>" with a TokenRequest is answered as CloudCore
  // answers: the TokenRequest with status.token and status.expirationTimestamp, or an ErrStatus
  // when the API server refuses (answerTokenRequest). The service account "default" exists in
  // every namespace, others once setObject("<ns>/serviceaccount/<name>", ...). Every namespace
  // has the ConfigMap kube-root-ca.crt, ca.crt the CA file of the options (unless setObject put
  // another there). The answers the double gave to token queries, in order:
  std::vector<nlohmann::json> tokensIssued() const;

  // For benchmarks (bench/link_bench_ws.cc):
  // Called on the double's thread with the msg_id of every ack the edge sends for a message of
  // the double (send(), sendObject() or one of its answers; repeated acks too), as it is counted,
  // with the double's lock held: the listener must not call the double. An empty function removes
  // it.
  void setAckListener(std::function<void(const std::string& msgId)> listener);
  // Copies of unacknowledged messages written again so far (every resendInterval, and on each new
  // connection for those an earlier connection had already carried).
  int resends() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::test
