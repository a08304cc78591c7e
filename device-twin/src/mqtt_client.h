#pragma once
// The twin's connection to the local broker: a small adapter over Paho's asynchronous client with
// our callback types and Status instead of exceptions. Callbacks run on Paho's threads: the service
// copies what they carry and posts it to its own loop.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::twin {

struct MqttSettings {
  std::string uri;
  std::string clientId;
  bool cleanSession = false;  // a persistent session: the broker keeps device requests for us
  std::chrono::seconds keepAlive{15};
  std::chrono::seconds connectTimeout{10};
  std::string username, password;
  std::string caFile, certFile, keyFile;
};

struct MqttHandlers {
  std::function<void()> connected;
  std::function<void(std::string why)> down;  // a connect attempt failed or the connection was lost
  std::function<void(std::string topic, std::string payload)> message;
};

class MqttClient {
 public:
  MqttClient(MqttSettings settings, MqttHandlers handlers);
  ~MqttClient();  // disconnects; no handler runs after it returns
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Starts one connection attempt; the outcome arrives through connected() or down().
  core::Status connect();
  // QoS 1 for every filter; `done` runs on Paho's thread.
  void subscribe(const std::vector<std::string>& filters, std::function<void(core::Status)> done);
  // QoS 1, not retained. `done` (may be empty) runs on Paho's thread at PUBACK or failure.
  void publish(const std::string& topic, std::string payload,
               std::function<void(core::Status)> done);
  void disconnect(std::chrono::milliseconds timeout);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::twin
