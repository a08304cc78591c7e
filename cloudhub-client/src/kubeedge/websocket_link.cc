// The KubeEdge CloudHub link over WebSocket (outpost/cloudhub/websocket_link.h): the Session with
// EdgeCore's protocol part over the WebSocket transport. It talks to CloudCore as EdgeCore does
// (PROTOCOL.md §1): stores each cloud message before acknowledging it, sends pod and node status
// from the outbox as patches, keeps the node lease renewed, and finds a silent cloud by a read
// deadline (2 x heartbeat).

#include "outpost/cloudhub/websocket_link.h"

#include "kubeedge/edgecore.h"
#include "kubeedge/websocket_link_over.h"
#include "kubeedge/websocket_transport.h"
#include "session/session.h"

namespace outpost::cloudhub {

namespace {

SessionOptions sessionOptions(const WebsocketLinkOptions& o, std::optional<uint64_t> seed) {
  SessionOptions s;
  s.transport = "websocket";
  s.loopName = "cloudhub-ws";
  s.encoding = Encoding::kJson;
  s.connectTimeout = o.connectTimeout;
  s.reconnectBase = o.reconnectBase;
  s.reconnectCap = o.reconnectCap;
  s.readDeadline = 2 * o.heartbeat;
  s.readDeadlineRule = "2 x heartbeat";
  s.rateQps = o.rateQps;
  s.rateBurst = o.rateBurst;
  s.requests = true;
  s.seed = seed;
  return s;
}

class WebsocketLink final : public SessionLink {
 public:
  WebsocketLink(WebsocketLinkOptions o, std::unique_ptr<Transport> transport, metadb::Store& store,
                core::Bus& bus, core::Clock& clock, core::Logging& logging,
                core::MetricsRegistry& metrics, std::optional<uint64_t> seed)
      : SessionLink(session_),
        opts_(std::move(o)),
        transport_(transport
                       ? std::move(transport)
                       : std::make_unique<WebsocketTransport>(opts_, logging.get("cloudhub"))),
        session_(sessionOptions(opts_, seed), *transport_, store, bus, clock, logging, metrics),
        edgecore_(opts_, session_) {
    session_.setProtocol(edgecore_);
  }
  ~WebsocketLink() override { stop(); }

  void credentialsChanged() override { session_.reconnectNow("credentials changed"); }
  void query(const std::string& resource, core::Duration timeout, QueryCallback done) override {
    session_.post([this, resource, timeout, done = std::move(done)]() mutable {
      edgecore_.startQuery(resource, timeout, std::move(done));
    });
  }
  void requestToken(const std::string& ns, const std::string& serviceAccount,
                    const std::string& tokenRequest, core::Duration timeout,
                    std::function<void(core::Result<std::string>)> done) override {
    session_.post(
        [this, ns, serviceAccount, tokenRequest, timeout, done = std::move(done)]() mutable {
          edgecore_.startTokenQuery(ns, serviceAccount, tokenRequest, timeout, std::move(done));
        });
  }

 private:
  WebsocketLinkOptions opts_;
  std::unique_ptr<Transport> transport_;
  Session session_;
  EdgeCore edgecore_;
};

}  // namespace

std::string_view querySourceName(QuerySource s) {
  return s == QuerySource::kCloud ? "cloud" : "store";
}

CloudLinkPtr makeWebsocketLinkOver(WebsocketLinkOptions options,
                                   std::unique_ptr<Transport> transport, metadb::Store& store,
                                   core::Bus& bus, core::Clock& clock, core::Logging& logging,
                                   core::MetricsRegistry& metrics,
                                   std::optional<uint64_t> backoffSeed) {
  return std::make_unique<WebsocketLink>(std::move(options), std::move(transport), store, bus,
                                         clock, logging, metrics, backoffSeed);
}

CloudLinkPtr makeWebsocketLink(WebsocketLinkOptions options, metadb::Store& store, core::Bus& bus,
                               core::Clock& clock, core::Logging& logging,
                               core::MetricsRegistry& metrics) {
  return makeWebsocketLinkOver(std::move(options), nullptr, store, bus, clock, logging, metrics);
}

}  // namespace outpost::cloudhub
