#pragma once
// The MQTT cloud link (PROTOCOL.md §3) on any broker. Only agent/ (and tests) include this header.

#include <string>
#include <vector>

#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/link.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/store.h"

namespace outpost::cloudhub {

struct MqttLinkOptions {
  std::string nodeName;                         // also the client id of the persistent session
  std::vector<std::string> groups;              // desired state for these groups applies here too
  std::string broker = "tcp://127.0.0.1:1883";  // tcp://, ssl://, ws://, wss://
  std::string prefix = "outpost/v1";
  Encoding encoding = Encoding::kJson;
  std::string username;
  std::string password;
  std::string caFile, certFile, keyFile;  // TLS (ssl://, wss://)
  core::Duration keepAlive = std::chrono::seconds(15);
  double rateQps = 30;  // outbox messages per second
  int rateBurst = 60;
  core::Duration reconnectBase = std::chrono::seconds(1);
  core::Duration reconnectCap = std::chrono::seconds(60);
  size_t maxMessageBytes = kDefaultMaxMessageBytes;
  core::Duration connectTimeout = std::chrono::seconds(10);
  // Desired objects stored in one commit are acked in one batch ack (docs/mqtt-link.md); false
  // sends one ack per object, for a publisher that reads only `parent_msg_id`.
  bool batchAcks = true;
  // At most one ack message awaits the broker's PUBACK; acks of commits made meanwhile leave
  // together in the next one (docs/mqtt-link.md). False sends each commit's ack at once (the
  // behaviour before, kept to compare in the benchmark).
  bool coalesceAcks = true;
};

CloudLinkPtr makeMqttLink(MqttLinkOptions options, metadb::Store& store, core::Bus& bus,
                          core::Clock& clock, core::Logging& logging,
                          core::MetricsRegistry& metrics);

// Topic names of the scheme, shared with outpostctl (which publishes desired state).
struct MqttTopics {
  std::string prefix;
  std::string desired(const std::string& node, const std::string& key) const {
    return prefix + "/nodes/" + node + "/desired/" + key;
  }
  std::string groupDesired(const std::string& group, const std::string& key) const {
    return prefix + "/groups/" + group + "/desired/" + key;
  }
  std::string manifest(const std::string& node) const {
    return prefix + "/nodes/" + node + "/manifest";
  }
  std::string groupManifest(const std::string& group) const {
    return prefix + "/groups/" + group + "/manifest";
  }
  std::string up(const std::string& node) const { return prefix + "/nodes/" + node + "/up"; }
  std::string down(const std::string& node) const { return prefix + "/nodes/" + node + "/down"; }
  std::string status(const std::string& node, const std::string& key) const {
    return prefix + "/nodes/" + node + "/status/" + key;
  }
  std::string online(const std::string& node) const {
    return prefix + "/nodes/" + node + "/online";
  }
};

}  // namespace outpost::cloudhub
