#pragma once
// The sessions of one tunnel connection: one per connect message, each on a thread of its own
// (serving may block on a CRI call or wait for a log file to grow), with the limits of
// TunnelLimits. Internal to the stream module.

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/stream/frame.h"
#include "outpost/stream/tunnel.h"

namespace outpost::stream {

// Where a session's messages go: the tunnel's current connection. send() blocks while too many
// bytes wait to be written, and says false once the connection is gone.
class Sender {
 public:
  virtual ~Sender() = default;
  virtual bool send(std::string message) = 0;
  // The same without waiting for room: for the connection's own thread, whose writes free it.
  virtual bool sendNow(std::string message) = 0;
};

struct SessionMetrics {
  SessionMetrics(core::MetricsRegistry& m, core::Logger logger);
  core::Logger log;
  core::Gauge& active;
  core::Counter& logs;
  core::Counter& exec;
  core::Counter& attach;
  core::Counter& metrics;
  core::Counter& bytesSent;
  core::Counter& refusedInvalid;
  core::Counter& refusedLimit;
  core::Counter& refusedNotFound;
  core::Counter& refusedUnavailable;
  core::Counter& idleClosed;
  core::Counter& malformed;
};

class Session {
 public:
  Session(uint64_t id, Sender& sender, const TunnelOptions& options, SessionMetrics& metrics);

  uint64_t id() const { return id_; }
  // Data toward the cloud, in parts within the session's rate; false once the session ended.
  bool sendData(std::string_view bytes);
  // The error a kubelet would answer, then the end of the session.
  void refuse(const core::Status& why, bool http);
  // Waits up to `d` or until the session is stopped; false when stopped.
  bool wait(std::chrono::milliseconds d);
  // Ends the session from outside: `byCloud` when the cloud sent RemoveConnect.
  void stop(bool byCloud);
  bool stopped() const;
  // No byte moved either way for the idle timeout.
  bool idle() const;
  void touch();
  // Bytes from the cloud for the relay (kept until the relay exists).
  void deliver(std::string bytes);
  void setRelay(RelaySession relay);
  void relayDone(const std::string& reason);
  bool relayEnded() const;
  // The session's end as seen by the cloud: RemoveConnect unless the cloud removed it.
  void finish();
  const TunnelOptions& options() const { return options_; }
  SessionMetrics& metrics() { return metrics_; }

 private:
  bool throttle(size_t n);

  const uint64_t id_;
  Sender& sender_;
  const TunnelOptions& options_;
  SessionMetrics& metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false, byCloud_ = false, finished_ = false, relayEnded_ = false;
  std::chrono::steady_clock::time_point lastActive_;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point refill_;
  RelaySession relay_;
  bool hasRelay_ = false;
  std::string pending_;  // from the cloud before the relay exists
};

// Serves a request on the session's thread.
void serveLogs(Session& s, const ConnectRequest& r, RuntimeStreams& streams);
void serveMetrics(Session& s, RuntimeStreams& streams);
void serveStream(Session& s, const ConnectRequest& r, RuntimeStreams& streams,
                 const RelayFactory& relays);

class SessionMux {
 public:
  SessionMux(const TunnelOptions& options, RuntimeStreams& streams, const RelayFactory& relays,
             SessionMetrics& metrics, Sender& sender);
  ~SessionMux();
  // One message from the connection's thread; never blocks on a session.
  void onMessage(std::string_view bytes);
  // Ends every session and joins their threads (not on the connection's thread).
  void endAll();
  size_t active() const;

 private:
  struct Entry {
    std::shared_ptr<Session> session;
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void connect(const Message& m);
  void reap();  // joins the threads of sessions that ended

  const TunnelOptions& options_;
  RuntimeStreams& streams_;
  const RelayFactory& relays_;
  SessionMetrics& metrics_;
  Sender& sender_;
  mutable std::mutex mu_;
  std::map<uint64_t, Entry> sessions_;
  bool ended_ = false;
};

}  // namespace outpost::stream
