#pragma once
// One TLS WebSocket client connection on Boost.Beast over Asio's OpenSSL stream, behind types of
// our own (no Boost or OpenSSL type leaves ws_transport.cc). Each connection runs on a thread of
// its own, from open() until close() is done; nothing of it exists in a process that never opens
// one (an MQTT node). Public so that agent/ can give the stream tunnel (outpost::stream) its
// connection: CloudHub speaks text frames, cloudstream's tunnel binary ones (`binary`).

#include <chrono>
#include <cstddef>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>

#include "outpost/core/status.h"

namespace outpost::cloudhub {

// PEM texts read from the configured files at this connect.
struct WsTlsMaterial {
  std::string caPem;    // the only CA the server certificate may chain to
  std::string certPem;  // client certificate (and chain)
  std::string keyPem;   // its private key
};

// Larger frames from the server close the connection (a peer must not make us hold any size).
inline constexpr size_t kDefaultWsMaxFrameBytes = 4u << 20;

struct WsConnectOptions {
  std::string url;  // wss://host[:port]/path (port 443 when absent; [addr] for IPv6)
  std::map<std::string, std::string> headers;  // added to the upgrade request
  WsTlsMaterial tls;
  // Name lookup, TCP connect, TLS and upgrade handshakes together; then `failed`.
  std::chrono::milliseconds connectTimeout{10000};
  size_t maxFrameBytes = kDefaultWsMaxFrameBytes;
  // Messages are binary frames both ways (CloudCore's stream tunnel); text frames otherwise
  // (CloudHub). A frame of the other kind from the server closes the connection.
  bool binary = false;
};

// What happens on the connection. Called on the connection's own thread, never after close()
// returned, one at a time.
struct WsEvents {
  std::function<void()> opened;
  std::function<void(std::string why)> failed;  // the connect did not succeed
  std::function<void(std::string text)> text;   // one message (a binary one when `binary`)
  std::function<void()> pong;
  std::function<void(std::string why)> closed;  // an open connection ended
};

// Checks that the PEM texts parse and that the key matches the certificate; says which is wrong.
core::Status checkTlsMaterial(const WsTlsMaterial& tls);

class WsConnection {
 public:
  // Starts connecting; the outcome arrives as `opened` or `failed`. Fails at once (and starts
  // nothing) for a URL that is not wss:// or TLS material that does not parse.
  static core::Result<std::shared_ptr<WsConnection>> open(WsConnectOptions options,
                                                          WsEvents events);
  // Closes (as close() does) if close() was not called.
  virtual ~WsConnection() = default;

  // Queues one message (text frames, or binary ones when `binary`); messages go out in order.
  // `done` (on the connection's thread, never after close()) says whether it was written.
  virtual void sendText(std::string text, std::function<void(core::Status)> done) = 0;
  // Sends a ping frame; the peer's pong arrives as WsEvents::pong.
  virtual void ping() = 0;
  // Stops every event at once and closes in the background; the future is ready once the
  // connection and its thread are gone (a silent peer can take the close handshake's 5 s).
  virtual std::shared_future<void> close() = 0;
};
using WsConnectionPtr = std::shared_ptr<WsConnection>;

}  // namespace outpost::cloudhub
