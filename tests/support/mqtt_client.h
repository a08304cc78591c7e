#pragma once
// An MQTT client for tests, playing the cloud or a device: publishes, and records what it receives.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "support/mosquitto.h"

namespace outpost::test {

struct ReceivedMessage {
  std::string topic;
  std::string payload;
  bool retained = false;
};

class MqttTestClient {
 public:
  // Connects (clean session) to `uri`; with `tls`, using the client certificate.
  explicit MqttTestClient(const std::string& uri, const TlsFiles* tls = nullptr,
                          const std::string& clientId = "");
  ~MqttTestClient();

  void subscribe(const std::string& filter);
  // QoS 1; waits for the broker's acknowledgement.
  void publish(const std::string& topic, const std::string& payload, bool retained = false);

  std::vector<ReceivedMessage> messages() const;
  // Messages received on topics that match `filter` exactly or by the trailing "#".
  std::vector<ReceivedMessage> messagesOn(const std::string& filter) const;
  void clear();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::test
