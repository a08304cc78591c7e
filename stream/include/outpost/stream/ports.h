#pragma once
// What the stream tunnel needs of the node's runtime (RuntimeStreams) and of the byte relay to the
// runtime's streaming server (RelayFactory); both are implemented in agent/ over deploy, so this
// module never links deploy.

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::stream {

struct ContainerRef {
  std::string ns, pod, container;  // already validated as Kubernetes names
};
// The CRI log file of the container (current, or previous attempt).
struct ContainerLog {
  std::string path;
  std::string containerId;
};
struct ExecParams {
  ContainerRef ref;
  std::vector<std::string> command;
  bool stdin = false, stdout = true, stderr = true, tty = false;
};
struct AttachParams {
  ContainerRef ref;
  bool stdin = false, stdout = true, stderr = true, tty = false;
};

// What the tunnel needs of the node's runtime; implemented in agent/ over deploy. Thread-safe; may
// block (CRI calls).
class RuntimeStreams {
 public:
  virtual ~RuntimeStreams() = default;
  // NOT_FOUND when the pod is not on this node or has no such container.
  virtual core::Result<ContainerLog> containerLog(const ContainerRef& ref, bool previous) = 0;
  // The runtime's streaming URL for the exec/attach (CRI Exec/Attach answer), e.g.
  // http://127.0.0.1:PORT/exec/TOKEN
  virtual core::Result<std::string> execUrl(const ExecParams& params) = 0;
  virtual core::Result<std::string> attachUrl(const AttachParams& params) = 0;
  // kubelet's /metrics/resource in Prometheus text format (what metrics-server reads for
  // `kubectl top`)
  virtual core::Result<std::string> resourceMetrics() = 0;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// One exec/attach byte relay to the runtime's streaming server, as the tunnel drives it: agent/
// makes it from UpgradeRelay::start. `write` and `close` may be called from any thread and must
// not block (write is called on the tunnel connection's thread); close is idempotent and `done`
// follows it. `emit` may block while the tunnel has no room: it is called on the relay's thread.
struct RelaySession {
  std::function<void(std::string bytes)> write;
  std::function<void()> close;
};
using RelayEmit = std::function<void(std::string bytes)>;   // toward the cloud, in order
using RelayDone = std::function<void(std::string reason)>;  // once; empty on a normal close
// Connects to `runtimeUrl` (loopback only), writes the request with the upgrade headers it accepts
// of `headers`, then relays bytes both ways verbatim.
using RelayFactory = std::function<core::Result<RelaySession>(
    const std::string& runtimeUrl, const std::string& method, const Headers& headers,
    RelayEmit emit, RelayDone done)>;

}  // namespace outpost::stream
