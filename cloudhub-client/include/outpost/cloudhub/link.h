#pragma once
// CloudLink: the node's session with the cloud, as agent/ drives it. Desired state in, status out.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "outpost/cloudhub/envelope.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/status.h"

namespace outpost::cloudhub {

enum class LinkState { kDisconnected, kConnecting, kConnected };
std::string_view linkStateName(LinkState s);

// Published whenever the link's state changes.
struct LinkEvent {
  LinkState state = LinkState::kDisconnected;
  std::string detail;  // the broker or server, or why the link went down
};
inline constexpr core::Topic<LinkEvent> kLinkEvents{"cloudhub.link"};

// A twin-group message from the cloud for the device twins (KubeEdge 1.14's forms, PROTOCOL.md §2):
// resource `device/<id>/twin/cloud_updated` (content {"twin": {...}}) or operation `update` on
// resource `membership` (content {"added_devices": [{"id", "name", "twin"?}], "removed_devices"}).
// Every cloud link publishes these as it receives them; the twin service subscribes. Nothing is
// acknowledged until `done` is called.
struct CloudTwinMessage {
  Envelope envelope;
  // Call exactly once, from any thread, when the message is handled: ok once its effect is durable
  // (also when the version rule rejected it: the edge's value is then on its way back), an error
  // when it could not be applied (unknown device, bad content). On ok the link that received it
  // acks it upstream (operation `response`, source `meta`, group `twin`, content "OK"); on an
  // error it logs and counts the message and does not ack, so the cloud sends it again. Safe to
  // call after that link stopped (then it does nothing).
  std::function<void(core::Status)> done;
};
inline constexpr core::Topic<CloudTwinMessage> kCloudTwinMessages{"cloudhub.cloud_twin"};

// What `outpostctl status` shows of the link.
struct LinkStatus {
  LinkState state = LinkState::kDisconnected;
  std::string endpoint;
  std::string lastError;
  int64_t reconnects = 0;
  double offlineSeconds = 0;               // length of the current outage (0 when connected)
  double offlineSecondsTotal = 0;          // all outages since start
  std::optional<core::WallTime> lastSync;  // when the desired set was last known complete
  int64_t messagesIn = 0, messagesOut = 0, messagesInvalid = 0;
  // Outbox rows the cloud has not taken after 5 attempts in a row (still retried with back-off),
  // and one of them: "<kind> <key>: <why> (<n> attempts)".
  int64_t rowsRefused = 0;
  std::string rowRefused;
};

// Where the answer to CloudLink::query came from.
enum class QuerySource { kCloud, kStore };
std::string_view querySourceName(QuerySource s);

// The answer to CloudLink::query.
struct QueryResult {
  core::Status status;  // an error only for a query the link cannot make (names no such object)
  QuerySource source = QuerySource::kStore;
  std::optional<std::string> object;  // the object's JSON; nullopt when not found
  int64_t resourceVersion = 0;        // of `object`
  std::string reason;  // why this source answered: "found", "not found", "offline: ...", "timeout"
};
using QueryCallback = std::function<void(QueryResult)>;

class CloudLink {
 public:
  virtual ~CloudLink() = default;
  // Starts connecting in the background; returns at once (being offline is normal).
  virtual core::Status start() = 0;
  // Disconnects (sending nothing more) and stops the link's thread.
  virtual void stop() = 0;
  virtual LinkStatus status() const = 0;
  // Tells the link the outbox has new rows: it drains now (nothing else polls the outbox).
  virtual void outboxChanged() = 0;
  // True when the link's thread answers within `timeout`.
  virtual bool alive(std::chrono::milliseconds timeout) = 0;
  // The CA, certificate or key files were replaced (rotation): reconnect with their new contents.
  virtual void credentialsChanged() {}
  // Asks the cloud for one object: "<ns>/configmap/<name>", "<ns>/secret/<name>",
  // "<ns>/pod/<name>" or the node's own "<ns>/node/<node>". An object the cloud has is stored as
  // an insert from the cloud would be (resource versions only move forward) before `done` runs;
  // offline, on a transport error or with no answer within `timeout`, the store's copy answers.
  // Never blocks; `done` runs once on the link's thread (copy and post), not at all after stop().
  // Links whose desired state is pushed (MQTT: retained) have nothing to ask; this default
  // answers at once from no store ("not supported") and the caller relies on the push.
  virtual void query(const std::string& resource, core::Duration timeout, QueryCallback done) {
    (void)timeout;
    QueryResult r;
    r.reason = "this transport has no queries (desired state is pushed): " + resource;
    done(std::move(r));
  }
  // Asks the cloud for a service-account token as EdgeCore's meta manager does (docs/kubeedge.md,
  // "Service-account tokens"): `serviceAccount` in `ns`, `tokenRequest` the TokenRequest JSON.
  // `done` gets the cloud's answer (the TokenRequest with its status, as JSON) or why there is
  // none: offline (UNAVAILABLE: nothing was sent), no answer within `timeout`
  // (DEADLINE_EXCEEDED), the cloud's refusal (NOT_FOUND, ABORTED). Nothing is stored. Never blocks;
  // `done` runs once on the link's thread, not at all after stop(). Links without a token service
  // (MQTT) answer UNIMPLEMENTED at once.
  virtual void requestToken(const std::string& ns, const std::string& serviceAccount,
                            const std::string& tokenRequest, core::Duration timeout,
                            std::function<void(core::Result<std::string>)> done) {
    (void)ns;
    (void)serviceAccount;
    (void)tokenRequest;
    (void)timeout;
    done(core::unimplemented(
        "this cloud transport has no service-account token service (desired state is pushed)"));
  }
};
using CloudLinkPtr = std::unique_ptr<CloudLink>;

}  // namespace outpost::cloudhub
