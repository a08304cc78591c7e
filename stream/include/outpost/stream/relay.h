#pragma once
// UpgradeRelay: one exec or attach session between the cloud's stream tunnel and the container
// runtime's streaming server (plain HTTP on loopback, as containerd serves it). It writes the
// upgrade request for the runtime's URL with the allowed headers only, then relays bytes both ways
// verbatim, the runtime's own HTTP response (101 and its headers) included, as KubeEdge's edge
// does.
//
// Threads: each relay has one thread of its own (an Asio io_context) for its socket; Emit and Done
// run there. write() and close() may be called from any thread, Emit and Done included.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::stream {

class UpgradeRelay {  // one exec/attach session
 public:
  using Emit = std::function<void(std::string bytes)>;   // bytes toward the cloud, in order, from
                                                         // the relay's thread
  using Done = std::function<void(std::string reason)>;  // exactly once when the relay ends; empty
                                                         // reason on a normal close

  // Bytes from the cloud that may wait for the runtime to read them; past it the session ends.
  static constexpr size_t kMaxPendingBytes = size_t{1} << 20;

  // Connects to `runtimeUrl` (http://<loopback address>:<port>/<exec|attach|portforward>/<token>)
  // and writes the request. INVALID_ARGUMENT names a refused URL, method or header; UNAVAILABLE a
  // runtime that does not answer. Done follows only a relay that started.
  static core::Result<std::shared_ptr<UpgradeRelay>> start(
      const std::string& runtimeUrl, const std::string& method,
      const std::vector<std::pair<std::string, std::string>>& headers, Emit emit, Done done);
  void write(std::string bytes);  // bytes from the cloud, any thread, in order
  void close();                   // ends it (idempotent); Done follows
  virtual ~UpgradeRelay();        // closes and waits for the relay's thread (unless called on it)

  UpgradeRelay(const UpgradeRelay&) = delete;
  UpgradeRelay& operator=(const UpgradeRelay&) = delete;

  class Impl;

 private:
  explicit UpgradeRelay(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// The pieces of a runtime streaming URL the relay accepts (relay_request.cc).
struct RuntimeUrl {
  std::string host;  // a loopback address literal: 127.x.x.x or [::1]
  unsigned short port = 0;
  std::string path;  // /exec/<token>, /attach/<token> or /portforward/<token>
};
core::Result<RuntimeUrl> parseRuntimeUrl(const std::string& url);

// The request the relay writes for `url`: `method` checked (GET or POST), the upgrade headers kept
// (Connection, Upgrade, X-Stream-Protocol-Version, Sec-WebSocket-Key, -Version, -Protocol), every
// other header dropped, a control character or an oversized value in any header refused.
core::Result<std::string> upgradeRequest(
    const RuntimeUrl& url, const std::string& method,
    const std::vector<std::pair<std::string, std::string>>& headers);

}  // namespace outpost::stream
