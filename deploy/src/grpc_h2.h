#pragma once
// A unary gRPC caller over HTTP/2 on a unix socket (libnghttp2), enough for CRI: every CRI call we
// make is unary. Internal to deploy; no nghttp2 type leaves grpc_h2.cc and grpc_stream.cc
// (one call's response).

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::deploy::h2 {

using Deadline = std::chrono::steady_clock::time_point;

// The largest response message accepted (gRPC's usual receive limit for CRI clients).
inline constexpr std::size_t kMaxResponseBytes = 16 * 1024 * 1024;

// "unix:///run/x.sock", "unix:relative.sock" or a bare path -> the socket path; empty if `endpoint`
// names another scheme.
std::string socketPath(std::string_view endpoint);

// The HTTP status -> gRPC code mapping of gRPC's PROTOCOL-HTTP2.md, for a response that is not 200.
core::Code codeForHttpStatus(int httpStatus);

// Decodes grpc-message's percent-encoding; malformed escapes are kept as they are.
std::string percentDecode(std::string_view in);

// gRPC's grpc-timeout header value for `remaining` (at most 8 digits and a unit).
std::string grpcTimeout(std::chrono::nanoseconds remaining);

class Connection;

// Calls unary methods on one endpoint. Each call in flight has its own HTTP/2 connection, taken
// from a small pool of idle ones (or made), so a slow call never holds up another thread's.
// Constructing connects nothing. Thread-safe.
class Channel {
 public:
  explicit Channel(std::string endpoint, std::size_t maxIdle = 4);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Sends `request` (a serialised message) to `path` ("/runtime.v1.RuntimeService/Version") and
  // returns the serialised response message, or the call's status: the server's grpc-status and
  // grpc-message, DEADLINE_EXCEEDED when `deadline` passes, UNAVAILABLE when the transport fails.
  core::Result<std::string> call(std::string_view path, std::string_view request,
                                 Deadline deadline);

  // Connections made so far (for tests: the pool reuses them).
  std::size_t connectionsMade() const;

 private:
  std::unique_ptr<Connection> takeIdle();
  void giveBack(std::unique_ptr<Connection> c);

  std::string endpoint_;  // as configured, for messages
  std::string path_;      // the socket
  std::size_t maxIdle_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t made_ = 0;
};

}  // namespace outpost::deploy::h2
