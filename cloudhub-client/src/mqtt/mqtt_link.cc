// The MQTT cloud link (outpost/cloudhub/mqtt_link.h): the Session with the MQTT scheme's protocol
// part over the MQTT transport. It subscribes to the node's desired state, stores it durably,
// acknowledges it, prunes what the publisher no longer lists (the manifest), and drains the outbox
// upstream.

#include "outpost/cloudhub/mqtt_link.h"

#include "mqtt/mqtt_protocol.h"
#include "mqtt/mqtt_transport.h"
#include "session/session.h"

namespace outpost::cloudhub {

namespace {

mqttc::ConnectOptions connectOptions(const MqttLinkOptions& o) {
  MqttTopics topics{o.prefix};
  mqttc::ConnectOptions c;
  c.uri = o.broker;
  c.clientId = o.nodeName;
  c.cleanSession = false;
  c.keepAlive = std::chrono::duration_cast<std::chrono::seconds>(o.keepAlive);
  if (c.keepAlive.count() < 1) c.keepAlive = std::chrono::seconds(1);
  c.connectTimeout = std::chrono::duration_cast<std::chrono::seconds>(o.connectTimeout);
  c.username = o.username;
  c.password = o.password;
  c.caFile = o.caFile;
  c.certFile = o.certFile;
  c.keyFile = o.keyFile;
  c.willTopic = topics.online(o.nodeName);
  c.willPayload = "false";
  c.maxPayloadBytes = o.maxMessageBytes;
  return c;
}

SessionOptions sessionOptions(const MqttLinkOptions& o) {
  SessionOptions s;
  s.transport = "mqtt";
  s.loopName = "cloudhub";
  s.encoding = o.encoding;
  s.connectTimeout = o.connectTimeout;
  s.reconnectBase = o.reconnectBase;
  s.reconnectCap = o.reconnectCap;
  // No read deadline: the broker connection's keepalive (PINGREQ) finds a dead peer.
  s.rateQps = o.rateQps;
  s.rateBurst = o.rateBurst;
  return s;
}

class MqttLink final : public SessionLink {
 public:
  MqttLink(MqttLinkOptions o, metadb::Store& store, core::Bus& bus, core::Clock& clock,
           core::Logging& logging, core::MetricsRegistry& metrics)
      : SessionLink(session_),
        opts_(std::move(o)),
        transport_(connectOptions(opts_)),
        session_(sessionOptions(opts_), transport_, store, bus, clock, logging, metrics),
        protocol_(opts_, session_, transport_) {
    session_.setProtocol(protocol_);
  }
  ~MqttLink() override { stop(); }

 private:
  MqttLinkOptions opts_;
  MqttTransport transport_;
  Session session_;
  MqttProtocol protocol_;
};

}  // namespace

std::string_view linkStateName(LinkState s) {
  switch (s) {
    case LinkState::kDisconnected:
      return "disconnected";
    case LinkState::kConnecting:
      return "connecting";
    case LinkState::kConnected:
      return "connected";
  }
  return "unknown";
}

CloudLinkPtr makeMqttLink(MqttLinkOptions options, metadb::Store& store, core::Bus& bus,
                          core::Clock& clock, core::Logging& logging,
                          core::MetricsRegistry& metrics) {
  return std::make_unique<MqttLink>(std::move(options), store, bus, clock, logging, metrics);
}

}  // namespace outpost::cloudhub
