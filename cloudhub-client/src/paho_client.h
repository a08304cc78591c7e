#pragma once
// A thin adapter over Paho's asynchronous client: our callback types, Status instead of exceptions.
// Callbacks run on Paho's thread: receivers copy what they need and post to their own loop.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::cloudhub {

struct MqttConnectOptions {
  std::string uri;
  std::string clientId;
  bool cleanSession = false;
  std::chrono::seconds keepAlive{15};
  std::chrono::seconds connectTimeout{10};
  std::string username, password;
  std::string caFile, certFile, keyFile;
  // Published by the broker when the connection dies without a clean disconnect.
  std::string willTopic, willPayload;
  bool willRetained = true;
};

struct MqttCallbacks {
  std::function<void()> connected;
  std::function<void(std::string why)> failed;  // connect failed or connection lost
  std::function<void(std::string topic, std::string payload, bool retained)> message;
};

class PahoClient {
 public:
  PahoClient(MqttConnectOptions options, MqttCallbacks callbacks);
  ~PahoClient();  // disconnects and waits for Paho's threads
  PahoClient(const PahoClient&) = delete;
  PahoClient& operator=(const PahoClient&) = delete;

  // Starts one connection attempt; the outcome comes through connected() or failed().
  core::Status connect();
  void subscribe(const std::vector<std::string>& topics, std::function<void(core::Status)> done);
  // QoS 1; `done` fires when the broker acknowledged (PUBACK) or the publish failed.
  void publish(const std::string& topic, std::string payload, bool retained,
               std::function<void(core::Status)> done);
  // A clean disconnect (the will is not published), bounded by `timeout`.
  void disconnect(std::chrono::milliseconds timeout);
  bool connected() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Does one TLS handshake with the broker of `uri` (ssl://, wss://) as the client would, and says in
// OpenSSL's words why it fails ("certificate verify failed: unable to get local issuer
// certificate"), or OK. Used to explain a failed connection in the log; never on a hot path.
core::Status probeTls(const MqttConnectOptions& options, std::chrono::milliseconds timeout);

}  // namespace outpost::cloudhub
