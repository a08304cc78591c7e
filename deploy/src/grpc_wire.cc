// The parts of gRPC over HTTP/2 (gRPC's PROTOCOL-HTTP2.md) that need no connection: endpoints,
// status mapping, grpc-message decoding, grpc-timeout. Declared in grpc_h2.h.

#include <chrono>
#include <string>
#include <string_view>

#include "grpc_h2.h"

namespace outpost::deploy::h2 {

using core::Code;

std::string socketPath(std::string_view endpoint) {
  if (endpoint.rfind("unix://", 0) == 0) return std::string(endpoint.substr(7));
  if (endpoint.rfind("unix:", 0) == 0) return std::string(endpoint.substr(5));
  if (endpoint.find("://") != std::string_view::npos) return {};
  return std::string(endpoint);
}

Code codeForHttpStatus(int httpStatus) {
  switch (httpStatus) {
    case 400:
      return Code::kInternal;
    case 401:
      return Code::kUnauthenticated;
    case 403:
      return Code::kPermissionDenied;
    case 404:
      return Code::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code::kUnavailable;
    default:
      return Code::kUnknown;
  }
}

std::string percentDecode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hex(in[i + 1]);
      int lo = hex(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

std::string grpcTimeout(std::chrono::nanoseconds remaining) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(remaining).count();
  if (ms < 1) ms = 1;
  if (ms <= 99999999) return std::to_string(ms) + "m";
  auto s = std::chrono::ceil<std::chrono::seconds>(remaining).count();
  if (s <= 99999999) return std::to_string(s) + "S";
  return "99999999S";
}

}  // namespace outpost::deploy::h2
