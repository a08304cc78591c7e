// A unary gRPC call's response, taken in part by part (grpc_stream.h).

#include "grpc_stream.h"

#include <nghttp2/nghttp2.h>

#include <charconv>
#include <system_error>
#include <utility>

#include "grpc_h2.h"

namespace outpost::deploy::h2 {

using core::Code;
using core::Result;
using core::Status;

// The gRPC code for a stream the server reset (PROTOCOL-HTTP2.md, "Errors").
Code codeForH2Error(uint32_t error) {
  switch (error) {
    case NGHTTP2_REFUSED_STREAM:
      return Code::kUnavailable;
    case NGHTTP2_CANCEL:
      return Code::kCancelled;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return Code::kResourceExhausted;
    case NGHTTP2_INADEQUATE_SECURITY:
      return Code::kPermissionDenied;
    default:
      return Code::kInternal;
  }
}

// Takes DATA bytes, cutting them into length-prefixed messages.
void Stream::feed(const uint8_t* data, std::size_t len) {
  received += len;
  if (refused) return;
  pending.append(reinterpret_cast<const char*>(data), len);
  while (pending.size() >= 5) {
    auto flag = static_cast<unsigned char>(pending[0]);
    uint32_t size = 0;
    for (int i = 1; i < 5; ++i) size = (size << 8) | static_cast<unsigned char>(pending[i]);
    if (flag == 1) {
      refused = Status(Code::kInternal, "the runtime sent a compressed message (grpc-encoding '" +
                                            encoding + "') though none was asked for");
      return;
    }
    if (flag != 0) {
      refused = Status(Code::kInternal,
                       "bad message prefix from the runtime (flag " + std::to_string(flag) + ")");
      return;
    }
    if (size > kMaxResponseBytes) {
      refused = Status(Code::kResourceExhausted, "response message of " + std::to_string(size) +
                                                     " bytes is larger than the limit of " +
                                                     std::to_string(kMaxResponseBytes) + " bytes");
      return;
    }
    if (pending.size() < 5 + std::size_t{size}) {
      pending.reserve(5 + std::size_t{size});
      return;
    }
    if (messages++ == 0) message.assign(pending, 5, size);
    pending.erase(0, 5 + std::size_t{size});
  }
}

// The call's outcome once the stream is closed.
Result<std::string> Stream::finish() {
  if (refused) return *refused;
  if (!headersSeen) {
    return Status(resetCode == NGHTTP2_NO_ERROR ? Code::kInternal : codeForH2Error(resetCode),
                  std::string("the runtime reset the stream without answering (") +
                      nghttp2_http2_strerror(resetCode) + ")");
  }
  if (httpStatus != 200) {
    std::string m = "HTTP status " + std::to_string(httpStatus);
    if (!grpcMessage.empty()) m += ": " + percentDecode(grpcMessage);
    return Status(codeForHttpStatus(httpStatus), std::move(m));
  }
  if (!grpcStatus) {
    if (resetCode != NGHTTP2_NO_ERROR) {
      return Status(codeForH2Error(resetCode), std::string("the runtime reset the stream (") +
                                                   nghttp2_http2_strerror(resetCode) + ")");
    }
    return Status(Code::kInternal, "the response ended without grpc-status");
  }
  int code = -1;
  const std::string& gs = *grpcStatus;
  auto [end, ec] = std::from_chars(gs.data(), gs.data() + gs.size(), code);
  if (ec != std::errc() || end != gs.data() + gs.size() || gs.empty() || code < 0) {
    return Status(Code::kUnknown, "bad grpc-status '" + gs + "' from the runtime");
  }
  // Codes beyond the canonical 16 are UNKNOWN, as gRPC's own clients do.
  if (code > static_cast<int>(Code::kUnauthenticated)) code = static_cast<int>(Code::kUnknown);
  if (code != 0) {
    wellFormed = true;
    return Status(static_cast<Code>(code), percentDecode(grpcMessage));
  }
  if (contentType.rfind("application/grpc", 0) != 0) {
    return Status(Code::kInternal,
                  "response content-type '" + contentType + "' is not application/grpc");
  }
  if (!pending.empty()) {
    return Status(Code::kInternal, "the response ended inside a message (" +
                                       std::to_string(pending.size()) + " bytes left over)");
  }
  if (messages != 1) {
    return Status(Code::kInternal, std::to_string(messages) + " response messages to a unary call");
  }
  wellFormed = true;
  return std::move(message);
}

}  // namespace outpost::deploy::h2
