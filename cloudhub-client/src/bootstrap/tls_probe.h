#pragma once
// Finds out why a TLS connection fails, in OpenSSL's words, for the operator's log: the client
// libraries only say "TLS handshake failed".

#include <chrono>
#include <string>

#include "outpost/core/status.h"
#include "outpost/mqttc/client.h"

namespace outpost::cloudhub {

struct TlsProbeTarget {
  std::string uri;  // scheme://host[:port][/path]
  std::string caFile, certFile, keyFile;
};

// Connects and runs one handshake (TLS 1.2 or newer, server checked against `caFile` and the
// host), then hangs up. Ok when the handshake succeeds. Returns within `timeout` (name lookup,
// connect and handshake included): a server that accepts and never answers, or a dropped SYN,
// must not hold the caller's thread.
core::Status probeTls(const TlsProbeTarget& target, std::chrono::milliseconds timeout);
// The same for an MQTT client's broker (ssl://, mqtts://, wss://) and TLS files.
core::Status probeTls(const mqttc::ConnectOptions& options, std::chrono::milliseconds timeout);

}  // namespace outpost::cloudhub
