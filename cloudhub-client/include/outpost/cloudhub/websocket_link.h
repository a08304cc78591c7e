#pragma once
// The KubeEdge CloudHub link over WebSocket (PROTOCOL.md §1): the node talks to a CloudCore as
// EdgeCore does. Only agent/ (and tests) include this header.

#include <chrono>
#include <map>
#include <string>

#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/link.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/store.h"

namespace outpost::cloudhub {

inline constexpr const char* kDefaultProjectId = "e632aba927ea4ac2b575ec1603d56f10";

struct WebsocketLinkOptions {
  std::string nodeName;
  std::string server;  // wss://host:port; the path /<project>/<node>/events is appended
  std::string projectId = kDefaultProjectId;
  std::string nodeNamespace = "default";  // of the node's own objects (node, nodepatch)
  // Mutual TLS; the files are read again at every connect (rotation replaces them).
  std::string caFile, certFile, keyFile;
  core::Duration heartbeat =
      std::chrono::seconds(15);  // keepalive; dead after 2 x heartbeat silent
  core::Duration leaseInterval = std::chrono::seconds(10);
  int leaseDurationSeconds = 40;
  core::Duration nodeQueryInterval = std::chrono::seconds(10);
  core::Duration nodePatchInterval = std::chrono::minutes(5);
  core::Duration requestTimeout = std::chrono::seconds(10);  // for the cloud's answers
  // After a connect, the cloud's resend of what it holds for the node counts as done once no
  // desired-state message arrived for this many heartbeats (and the node query was answered):
  // then `lastSync` is set and, if every pod asked about is settled, needs_full_resync cleared.
  int resyncQuietHeartbeats = 3;
  double rateQps = 30;  // outbox messages per second
  int rateBurst = 60;
  core::Duration reconnectBase = std::chrono::seconds(1);
  core::Duration reconnectCap = std::chrono::seconds(60);
  core::Duration connectTimeout = std::chrono::seconds(10);
  size_t maxMessageBytes = kDefaultMaxMessageBytes;
  std::map<std::string, std::string> nodeLabels;  // added to the registered Node's labels
  // The NodeStatus JSON the node registers with while deploy has reported none yet (EdgeCore's
  // insert carries the full Node: addresses, capacity, allocatable, daemonEndpoints, nodeInfo).
  std::string initialNodeStatus;
};

CloudLinkPtr makeWebsocketLink(WebsocketLinkOptions options, metadb::Store& store, core::Bus& bus,
                               core::Clock& clock, core::Logging& logging,
                               core::MetricsRegistry& metrics);

}  // namespace outpost::cloudhub
