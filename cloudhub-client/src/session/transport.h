#pragma once
// Transport: one way to reach the cloud, as the Session (session/session.h) uses it. Implemented by
// the KubeEdge WebSocket transport (kubeedge/websocket_transport.h) and the MQTT transport
// (mqtt/mqtt_transport.h); tests script their own (tests/support/fake_transport.h).

#include <cstddef>
#include <functional>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/status.h"

namespace outpost::cloudhub {

// One message from the cloud.
struct Incoming {
  std::string channel;  // where it came in: the MQTT topic; empty on a WebSocket
  std::string payload;
  // Not 0: a message of this many bytes was refused unread (over the transport's limit); the
  // payload is empty.
  size_t oversizedBytes = 0;
};

// One message to the cloud.
struct Outgoing {
  std::string channel;  // the MQTT topic; empty on a WebSocket
  std::string payload;
  bool retained = false;  // MQTT: the broker keeps it for later subscribers
};

// What happens on the connection an attempt made. Called on any thread, one at a time; the session
// posts them to its loop and ignores those of a connection it has forgotten.
struct TransportEvents {
  std::function<void()> opened;
  std::function<void(Incoming)> frame;
  // A sign of life that is no message (a WebSocket pong): it keeps the read deadline at bay.
  std::function<void()> heard;
  // The attempt failed or the open connection ended, with the reason in words.
  std::function<void(std::string why)> closed;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Where it connects, for the log and `outpostctl status`.
  virtual const std::string& endpoint() const = 0;
  // Starts one connection attempt, bounded by `deadline`: its outcome is `opened` or `closed`. An
  // error means no attempt started and no event of it comes. Called on the session's loop.
  virtual core::Status connect(core::Duration deadline, TransportEvents events) = 0;
  // Sends one message; `done` (any thread, at most once) says whether the peer has it (MQTT: the
  // broker's PUBACK) or it could not be written. Called on the session's loop.
  virtual void send(Outgoing out, std::function<void(core::Status)> done) = 0;
  // Asks the peer for a sign of life (answered by `heard`); nothing where the protocol has none.
  virtual void ping() {}
  // Gives up the current connection or attempt: it ends in the background. Called on the loop.
  virtual void close() = 0;
  // At stop, off the loop: says goodbye where the protocol has one, ends every connection and
  // returns once none of its threads runs and no event comes any more.
  virtual void shutdown() = 0;
};

}  // namespace outpost::cloudhub
