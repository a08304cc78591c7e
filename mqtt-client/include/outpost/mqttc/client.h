#pragma once
// An MQTT 3.1.1 client: our callback types and Status instead of the library's. One adapter for
// every MQTT connection of the agent (the cloud link, the device twins, outpostctl's publisher).
// Callbacks run on the library's threads: receivers copy what they need and post to their own loop.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::mqttc {

struct ConnectOptions {
  std::string uri;  // tcp://, ssl://, mqtts://, ws://, wss://
  std::string clientId;
  bool cleanSession = false;
  std::chrono::seconds keepAlive{15};
  std::chrono::seconds connectTimeout{10};
  std::string username, password;
  std::string caFile, certFile, keyFile;  // used for ssl://, mqtts:// and wss://
  // Published by the broker when the connection dies without a clean disconnect (none if empty).
  std::string willTopic, willPayload;
  bool willRetained = true;
  // A received payload larger than this is not copied out of the library's buffer: it goes to
  // Callbacks::oversized instead of message (0: no limit).
  size_t maxPayloadBytes = 0;
};

struct Callbacks {
  std::function<void()> connected;
  std::function<void(std::string why)> down;  // a connect attempt failed or the connection was lost
  std::function<void(std::string topic, std::string payload, bool retained)> message;
  std::function<void(std::string topic, size_t bytes)> oversized;  // see maxPayloadBytes
};

bool isTlsUri(const std::string& uri);

class Client {
 public:
  Client(ConnectOptions options, Callbacks callbacks);
  ~Client();  // disconnects (500 ms at most); no callback runs after it returns
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts one connection attempt; the outcome arrives through connected() or down(). An error
  // here (a URI the library refuses) means no attempt was made.
  core::Status connect();
  // QoS 1 for every filter; `done` says whether the broker granted them all.
  void subscribe(const std::vector<std::string>& filters, std::function<void(core::Status)> done);
  // Ends the subscriptions of `filters`; `done` (may be empty) runs at the broker's UNSUBACK.
  void unsubscribe(const std::vector<std::string>& filters, std::function<void(core::Status)> done);
  // QoS 1. `done` (may be empty) runs at the broker's PUBACK or when the publish failed.
  void publish(const std::string& topic, std::string payload, bool retained,
               std::function<void(core::Status)> done);
  // A clean disconnect (the will is not published), bounded by `timeout`.
  void disconnect(std::chrono::milliseconds timeout);
  bool connected() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Tells the library to leave OpenSSL's initialisation to OpenSSL, which initialises itself when a
// TLS connection first needs it. The library's own (configuration file, error strings, every cipher
// and digest) would otherwise run at the first client even with tcp:// brokers: ~1.5 MB of
// libcrypto paged in for nothing (docs/benchmarks.md, "Footprint"). Call once, before any thread or
// client exists: the library's global initialisation must not run while a client is alive.
void leaveOpensslInitToOpenssl();

}  // namespace outpost::mqttc
