#pragma once
// The KubeEdge WebSocket transport: a Transport (session/transport.h) over one WsConnection
// (kubeedge/ws_transport.h) per connect, on CloudHub's path with the node's headers and client
// certificate. The TLS files are read again at every connect (rotation replaces them).

#include <future>
#include <string>
#include <vector>

#include "outpost/cloudhub/websocket_link.h"
#include "outpost/cloudhub/ws_connection.h"
#include "outpost/core/log.h"
#include "session/transport.h"

namespace outpost::cloudhub {

class WebsocketTransport final : public Transport {
 public:
  WebsocketTransport(const WebsocketLinkOptions& options, core::Logger log)
      : opts_(options), log_(std::move(log)) {}
  ~WebsocketTransport() override { shutdown(); }

  const std::string& endpoint() const override { return opts_.server; }
  core::Status connect(core::Duration deadline, TransportEvents events) override;
  void send(Outgoing out, std::function<void(core::Status)> done) override;
  void ping() override;
  void close() override;
  void shutdown() override;

  // wss://host:port/<project>/<node>/events
  std::string url() const;

 private:
  core::Result<WsTlsMaterial> readTls() const;

  const WebsocketLinkOptions& opts_;
  core::Logger log_;
  WsConnectionPtr conn_;
  std::vector<std::shared_future<void>> closing_;  // connections closing in the background
};

}  // namespace outpost::cloudhub
