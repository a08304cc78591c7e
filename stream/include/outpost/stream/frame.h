#pragma once
// CloudCore's stream tunnel on the wire (docs/kubeedge.md, "The stream tunnel"): one binary
// WebSocket message is uvarint(connect id), uvarint(message type), then the data bytes. A connect
// message's data is JSON naming the kubelet URL the apiserver asked for; parseConnect checks it as
// any cloud input before anything acts on it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/status.h"
#include "outpost/stream/ports.h"

namespace outpost::stream {

// KubeEdge's MessageType values (pkg/stream): 0-4 since 1.3, 5 (close the tunnel) and 6 (attach)
// since 1.13. Port forwarding (7 in later versions) is not served.
enum class MessageType : uint64_t {
  kLogsConnect = 0,
  kExecConnect = 1,
  kMetricConnect = 2,
  kData = 3,
  kRemoveConnect = 4,
  kCloseConnect = 5,
  kAttachConnect = 6,
};
const char* typeName(uint64_t type);

struct Message {
  uint64_t id = 0;
  uint64_t type = 0;  // a MessageType, or what the cloud sent (unknown types are the caller's)
  std::string data;
};

// One tunnel message as its bytes.
std::string encodeMessage(uint64_t id, MessageType type, std::string_view data);
// INVALID_ARGUMENT for a message too short for its two numbers or a number that does not fit 64
// bits (more than 10 bytes, or the 10th above 1).
core::Result<Message> decodeMessage(std::string_view bytes);

// What a connect message may ask for: kubelet's endpoints that EdgeCore serves.
enum class Endpoint { kContainerLogs, kExec, kAttach, kMetricsResource };

struct LogOptions {
  bool follow = false, timestamps = false, previous = false;
  std::optional<int64_t> tailLines;         // >= 0
  std::optional<int64_t> sinceSeconds;      // > 0
  std::optional<int64_t> sinceUnixSeconds;  // sinceTime (RFC 3339), as seconds since the epoch
  std::optional<int64_t> limitBytes;        // > 0
};

struct ConnectRequest {
  Endpoint endpoint = Endpoint::kContainerLogs;
  ContainerRef ref;  // logs, exec, attach
  LogOptions logs;
  std::vector<std::string> command;                                 // exec
  bool stdin = false, stdout = false, stderr = false, tty = false;  // exec, attach
  std::string method;                                               // exec, attach: GET or POST
  Headers headers;  // as sent; the relay passes on only the upgrade headers
};

// The limits on a connect message: far above what an apiserver sends.
inline constexpr size_t kMaxConnectBytes = size_t{64} << 10;
inline constexpr size_t kMaxCommandArgs = 256;
inline constexpr size_t kMaxHeaders = 64;

// Checks a connect message of `type` (logs, exec, metrics, attach) and says what it asks for.
// INVALID_ARGUMENT names what was wrong: the JSON (depth, size, shape), a path that is not one of
// the served endpoints, a namespace, pod or container that is not a Kubernetes name, a query
// parameter that the endpoint does not take or whose value is not of its type.
core::Result<ConnectRequest> parseConnect(MessageType type, std::string_view json);

}  // namespace outpost::stream
