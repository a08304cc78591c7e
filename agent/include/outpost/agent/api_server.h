#pragma once
// The agent's local API: HTTP/1.1 on a unix socket (control, for outpostctl) and, optionally, on a
// loopback TCP address (health and metrics for scrapers). Protocol: docs/local-api.md.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/core/status.h"

namespace outpost::agent {

struct ApiRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::map<std::string, std::string> query;
  std::string body;
};

struct ApiResponse {
  int status = 200;
  std::string contentType = "application/json";
  std::string body;
};

// Which listener a route is offered on.
enum class Listener { kUnix = 1, kTcp = 2, kBoth = 3 };

// Limits that keep any local user from holding the API (and the agent's file descriptors): the
// api.* keys of docs/configuration.md.
struct ApiServerOptions {
  // Open connections per listener; one more is accepted and closed at once (counted in
  // outpost_api_connections_refused_total).
  size_t maxConnections = 64;
  // A kept-alive connection with no request in progress is closed after this.
  std::chrono::milliseconds idleTimeout = std::chrono::seconds(60);
  // One request (header and body) must have arrived this long after the connection was accepted or
  // its first byte came; a silent or slow client is closed.
  std::chrono::milliseconds headerTimeout = std::chrono::seconds(10);
  // Group that owns the unix socket (mode 0660); empty keeps root's group (root only).
  std::string socketGroup;
  // After a failed accept (EMFILE, ENFILE, ...) the listener pauses, doubling from 50 ms to this.
  std::chrono::milliseconds acceptPauseMax = std::chrono::seconds(1);
};

class ApiServer {
 public:
  using Handler = std::function<ApiResponse(const ApiRequest&)>;

  // `metrics` (optional) receives the connection gauges and counters; it must outlive the server.
  explicit ApiServer(core::Logger log, core::MetricsRegistry* metrics = nullptr);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Adds a route before start(). Handlers run on the API thread and must not block for long.
  void route(std::string method, std::string path, Listener where, Handler handler);

  // Binds the unix socket (mode 0660, group `options.socketGroup`, parent made if missing, a stale
  // socket replaced) and, when `tcpAddress` is not empty, "host:port" (port 0 picks a free one),
  // then serves on its own thread. Both listeners keep to `options`.
  core::Status start(const std::string& unixPath, const std::string& tcpAddress,
                     const ApiServerOptions& options = {});
  void stop();

  // The TCP address actually bound ("127.0.0.1:40123"), empty when off.
  std::string tcpAddress() const;
  bool alive(std::chrono::milliseconds timeout);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A small client for the unix socket, used by outpostctl and tests.
struct ApiCallResult {
  int status = 0;
  std::string body;
};
core::Result<ApiCallResult> callUnixSocket(
    const std::string& socketPath, const std::string& method, const std::string& target,
    const std::string& body = "", std::chrono::milliseconds timeout = std::chrono::seconds(10));
// The same over TCP ("127.0.0.1:port").
core::Result<ApiCallResult> callTcp(const std::string& hostPort, const std::string& method,
                                    const std::string& target,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace outpost::agent
