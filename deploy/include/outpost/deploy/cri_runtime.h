#pragma once
// The CRI v1 implementation of Runtime: unary gRPC calls over HTTP/2 on nghttp2 (src/grpc_h2.cc),
// no gRPC library. Only agent/ (and tests) include this header.

#include <chrono>
#include <string>

#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

struct CriConfig {
  // "unix:///run/containerd/containerd.sock" or a bare socket path.
  std::string endpoint = "unix:///run/containerd/containerd.sock";
  // Deadline of every call, added to the call's own timeout (stop grace, exec timeout).
  std::chrono::milliseconds callTimeout{10000};
  // Deadline of an image pull.
  std::chrono::milliseconds pullTimeout{300000};
};

// A Runtime speaking CRI v1 to `config.endpoint`. The connection is made lazily, so this
// succeeds while the runtime is down; calls then fail with UNAVAILABLE until it is back.
core::Result<RuntimePtr> makeCriRuntime(const CriConfig& config);

}  // namespace outpost::deploy
