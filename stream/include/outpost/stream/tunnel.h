#pragma once
// The node's end of CloudCore's stream tunnel: one WebSocket connection to cloudstream's tunnel
// port, kept up with jittered back-off, over which the apiserver's requests for the node's kubelet
// endpoints arrive (kubectl logs, exec, attach, top). Each request is a session: checked
// (parseConnect), limited (count, bytes per second, idle time), and served from the CRI log files
// or through the runtime (RuntimeStreams, RelayFactory).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/core/status.h"
#include "outpost/stream/ports.h"

namespace outpost::stream {

// One open WebSocket connection to the tunnel server; agent/ makes it over cloudhub's Beast
// connection. Thread-safe.
class TunnelConnection {
 public:
  virtual ~TunnelConnection() = default;
  // Queues one binary message; `done` says (on the connection's thread) whether it was written.
  virtual void send(std::string message, std::function<void(bool written)> done) = 0;
  // A WebSocket ping; the server's pong arrives as TunnelConnectionEvents::heard.
  virtual void ping() = 0;
  // Ends the connection; no event follows once it returned.
  virtual void close() = 0;
};
using TunnelConnectionPtr = std::shared_ptr<TunnelConnection>;

// What happens on a connection, on its own thread, one at a time.
struct TunnelConnectionEvents {
  std::function<void()> opened;
  std::function<void(std::string message)> message;  // one binary message
  std::function<void()> heard;                       // a pong
  std::function<void(std::string why)> ended;        // the connect failed or the connection ended
};
// Starts connecting; fails at once when nothing can be started (TLS files unreadable).
using Dialer = std::function<core::Result<TunnelConnectionPtr>(TunnelConnectionEvents events)>;

struct TunnelLimits {
  size_t maxSessions = 16;  // stream.max_sessions
  uint64_t maxBytesPerSecond = uint64_t{1}
                               << 20;  // stream.max_bytes_per_second, each way, per session
  std::chrono::milliseconds idleTimeout{4 * 3600 * 1000};  // stream.idle_timeout
};

struct TunnelOptions {
  TunnelLimits limits;
  std::chrono::milliseconds backoffBase{1000};  // the first retry waits up to this
  std::chrono::milliseconds backoffCap{60000};
  // How often a follow looks at a log file that did not grow, and asks the runtime again whether
  // the container was replaced.
  std::chrono::milliseconds followPoll{250};
  // A ping this often, as EdgeCore's edgestream sends; a connection that answers nothing (no
  // message, no pong) for 3 intervals is given up as half-open and dialled again.
  std::chrono::milliseconds pingInterval{5000};
};

struct TunnelStatus {
  bool connected = false;
  std::string lastError;  // why the last connection ended or failed
  size_t sessions = 0;
  uint64_t connects = 0;  // connections opened so far
};

class Tunnel {
 public:
  // `streams`, `relays`' captures and `metrics` outlive the tunnel.
  static std::unique_ptr<Tunnel> make(TunnelOptions options, Dialer dialer, RuntimeStreams& streams,
                                      RelayFactory relays, core::MetricsRegistry& metrics,
                                      core::Logger log);
  virtual ~Tunnel() = default;
  // Starts connecting (on a thread of its own) and keeps the tunnel up until stop().
  virtual void start() = 0;
  // Ends every session and the connection; waits for their threads. Idempotent.
  virtual void stop() = 0;
  virtual TunnelStatus status() const = 0;
};

}  // namespace outpost::stream
