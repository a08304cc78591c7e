#include "stream_module.h"

#include <utility>

#include "outpost/agent/stream_dialer.h"
#include "outpost/stream/relay.h"

namespace outpost::agent {

namespace {

// The tunnel's relay factory over stream::UpgradeRelay: the session's functions keep the relay.
core::Result<stream::RelaySession> startRelay(const std::string& runtimeUrl,
                                              const std::string& method,
                                              const stream::Headers& headers,
                                              stream::RelayEmit emit, stream::RelayDone done) {
  OUTPOST_ASSIGN_OR_RETURN(
      auto relay,
      stream::UpgradeRelay::start(runtimeUrl, method, headers, std::move(emit), std::move(done)));
  std::shared_ptr<stream::UpgradeRelay> shared = std::move(relay);
  return stream::RelaySession{[shared](std::string bytes) { shared->write(std::move(bytes)); },
                              [shared] { shared->close(); }};
}

}  // namespace

StreamModule::StreamModule(Context ctx, DeployModule* deploy) : ctx_(ctx) {
  DeployAccess access = [deploy](const auto& fn) -> core::Status {
    if (deploy == nullptr)
      return core::notFound("runtime.enabled is false: no pod is on this node");
    return deploy->withRuntime(fn);
  };
  streams_ = std::make_unique<DeployRuntimeStreams>(std::move(access), ctx_.clock);
}

StreamModule::~StreamModule() { stop(); }

core::Status StreamModule::start() {
  const Config& c = ctx_.config;
  if (c.cloud.websocket.streamServer.empty() || c.cloud.transport != "websocket") {
    return core::okStatus();
  }
  StreamDialerOptions d;
  d.server = c.cloud.websocket.streamServer;
  d.caFile = c.cloud.tls.ca;
  d.certFile = c.cloud.tls.cert;
  d.keyFile = c.cloud.tls.key;
  d.nodeName = c.node.name;
  d.nodeAddress = nodeReconcilerConfig(c).nodeAddress;
  stream::TunnelOptions o;
  o.limits.maxSessions = static_cast<size_t>(c.stream.maxSessions);
  o.limits.maxBytesPerSecond = static_cast<uint64_t>(c.stream.maxBytesPerSecond);
  o.limits.idleTimeout = c.stream.idleTimeout;
  o.backoffBase = c.cloud.reconnectBase;
  o.backoffCap = c.cloud.reconnectCap;
  tunnel_ = stream::Tunnel::make(o, makeStreamDialer(d), *streams_, startRelay, ctx_.metrics,
                                 ctx_.logging.get("stream"));
  tunnel_->start();
  return core::okStatus();
}

void StreamModule::stop() {
  if (tunnel_) tunnel_->stop();
}

std::optional<stream::TunnelStatus> StreamModule::status() const {
  if (!tunnel_) return std::nullopt;
  return tunnel_->status();
}

std::string StreamModule::describe() const {
  auto s = status();
  if (!s) return "off (cloud.websocket.stream_server is empty)";
  const std::string& server = ctx_.config.cloud.websocket.streamServer;
  if (s->connected) {
    return "connected to " + server + ", " + std::to_string(s->sessions) + " sessions";
  }
  return "connecting to " + server + (s->lastError.empty() ? "" : ": " + s->lastError);
}

}  // namespace outpost::agent
