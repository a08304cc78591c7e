#pragma once
// The stream tunnel's connection (outpost::stream's Dialer) over cloudhub's TLS WebSocket client:
// wss://<cloud.websocket.stream_server>/v1/kubeedge/connect with the node's client certificate,
// the cloud's CA, and the headers cloudstream keys the node's session by (SessionHostNameOverride,
// SessionInternalIP); binary messages. The TLS files are read at each dial, so a rotated
// certificate is used from the next connection on.

#include <chrono>
#include <string>

#include "outpost/stream/tunnel.h"

namespace outpost::agent {

struct StreamDialerOptions {
  std::string server;  // host:port of cloudstream's tunnel port (10004 in CloudCore's default)
  std::string caFile, certFile, keyFile;
  std::string nodeName;
  std::string nodeAddress;  // the node's InternalIP; empty leaves the header out
  std::chrono::milliseconds connectTimeout{10000};
};

stream::Dialer makeStreamDialer(StreamDialerOptions options);

}  // namespace outpost::agent
