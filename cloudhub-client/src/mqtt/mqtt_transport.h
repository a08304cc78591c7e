#pragma once
// The MQTT transport: a Transport (session/transport.h) over one outpost::mqttc client with a
// persistent session (the broker keeps the node's subscriptions and queued messages while it is
// away). The channel of a message is its topic. Subscriptions are the MQTT protocol part's
// (mqtt/mqtt_protocol.h): they have no place in the Transport interface.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "outpost/mqttc/client.h"
#include "session/transport.h"

namespace outpost::cloudhub {

class MqttTransport final : public Transport {
 public:
  // `options` carry the will (published by the broker when the connection dies); at shutdown the
  // transport publishes it itself, since a clean disconnect does not fire it.
  explicit MqttTransport(mqttc::ConnectOptions options) : opts_(std::move(options)) {}
  ~MqttTransport() override { shutdown(); }

  const std::string& endpoint() const override { return opts_.uri; }
  // `deadline` is the options' connectTimeout, given when the client was made (Paho's own).
  core::Status connect(core::Duration deadline, TransportEvents events) override;
  void send(Outgoing out, std::function<void(core::Status)> done) override;
  void close() override;
  void shutdown() override;

  // QoS 1 for every filter; `done` (any thread) says whether the broker granted them all.
  void subscribe(const std::vector<std::string>& filters, std::function<void(core::Status)> done);
  void unsubscribe(const std::vector<std::string>& filters);
  const mqttc::ConnectOptions& options() const { return opts_; }

 private:
  // The events of the current attempt; Paho's callbacks, set once, forward to them.
  TransportEvents current();

  mqttc::ConnectOptions opts_;
  std::mutex mu_;
  TransportEvents events_;
  std::unique_ptr<mqttc::Client> client_;
};

}  // namespace outpost::cloudhub
