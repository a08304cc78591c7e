#pragma once
// One unary gRPC call's stream on an HTTP/2 connection (grpc_h2.cc): the request it sends, and the
// response's headers, length-prefixed messages and trailers taken in and turned into the call's
// result as gRPC's PROTOCOL-HTTP2.md says.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "outpost/core/status.h"

namespace outpost::deploy::h2 {

// One call's stream: the request it sends and what came back.
struct Stream {
  int32_t id = -1;
  std::string request;     // length-prefixed message
  std::size_t sent = 0;    // request bytes handed to nghttp2
  bool delivered = false;  // ... and all of them taken by the socket
  bool headersSeen = false;
  int httpStatus = 0;
  std::string contentType;
  std::string encoding;
  std::optional<std::string> grpcStatus;
  std::string grpcMessage;
  std::size_t received = 0;  // DATA bytes
  std::string pending;       // DATA not yet a whole message
  std::string message;       // the first whole message
  int messages = 0;
  bool closed = false;
  uint32_t resetCode = 0;               // the stream's reset (RST_STREAM) code; 0: NO_ERROR
  std::optional<core::Status> refused;  // a response we will not take (too large, compressed)
  bool wellFormed = false;  // a proper gRPC response, OK or not: the connection is sound

  // Takes DATA bytes, cutting them into length-prefixed messages.
  void feed(const uint8_t* data, std::size_t len);
  // The call's outcome once the stream is closed.
  core::Result<std::string> finish();
};

// The gRPC code for a stream the server reset with the HTTP/2 error `error` (PROTOCOL-HTTP2.md,
// "Errors").
core::Code codeForH2Error(uint32_t error);

}  // namespace outpost::deploy::h2
