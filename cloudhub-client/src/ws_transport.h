#pragma once
// One TLS WebSocket connection on cpprestsdk's client, behind types of our own (no cpprestsdk or
// Boost type leaves ws_transport.cc).

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

struct WsConnectOptions {
  std::string url;  // wss://host:port/path
  std::map<std::string, std::string> headers;
  WsTlsMaterial tls;
};

// What happens on the connection. Called on cpprestsdk's threads, never after close() returned.
struct WsEvents {
  std::function<void()> opened;
  std::function<void(std::string why)> failed;  // the connect did not succeed
  std::function<void(std::string text)> text;   // one text frame
  std::function<void()> pong;
  std::function<void(std::string why)> closed;  // an open connection ended
};

// Checks that the PEM texts parse and that the key matches the certificate; says which is wrong.
core::Status checkTlsMaterial(const WsTlsMaterial& tls);

// Sizes cpprestsdk's shared task pool (once per process; later calls do nothing). Its default is
// 40 threads; the WebSocket client needs only a few.
void initWsThreadPool(size_t threads);

class WsConnection {
 public:
  // Starts connecting; the outcome arrives as `opened` or `failed`.
  static core::Result<std::shared_ptr<WsConnection>> open(WsConnectOptions options,
                                                          WsEvents events);
  virtual ~WsConnection() = default;

  // Queues one text frame; `done` (on a cpprestsdk thread, possibly never after close()) says
  // whether it was written.
  virtual void sendText(std::string text, std::function<void(core::Status)> done) = 0;
  // Sends a ping frame; the peer's pong arrives as WsEvents::pong.
  virtual void ping() = 0;
  // Stops every event at once and closes in the background; the future is ready once the
  // connection and its thread are gone (a silent peer can take the close handshake's 5 s).
  virtual std::shared_future<void> close() = 0;
};
using WsConnectionPtr = std::shared_ptr<WsConnection>;

}  // namespace outpost::cloudhub
