#pragma once
// The agent's local API: HTTP/1.1 on a unix socket (control, for outpostctl) and, optionally, on a
// loopback TCP address (health and metrics for scrapers). Protocol: docs/local-api.md.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "outpost/core/log.h"
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

class ApiServer {
 public:
  using Handler = std::function<ApiResponse(const ApiRequest&)>;

  explicit ApiServer(core::Logger log);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Adds a route before start(). Handlers run on the API thread and must not block for long.
  void route(std::string method, std::string path, Listener where, Handler handler);

  // Binds the unix socket (mode 0660, parent made if missing, a stale socket replaced) and, when
  // `tcpAddress` is not empty, "host:port" (port 0 picks a free one), then serves on its own
  // thread.
  core::Status start(const std::string& unixPath, const std::string& tcpAddress);
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
