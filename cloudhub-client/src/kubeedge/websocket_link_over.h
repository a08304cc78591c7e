#pragma once
// The KubeEdge link composed over any Transport: the factory of outpost/cloudhub/websocket_link.h
// passes the WebSocket transport; tests pass a FakeTransport (tests/support/fake_transport.h).

#include <cstdint>
#include <memory>
#include <optional>

#include "outpost/cloudhub/websocket_link.h"
#include "session/transport.h"

namespace outpost::cloudhub {

CloudLinkPtr makeWebsocketLinkOver(WebsocketLinkOptions options,
                                   std::unique_ptr<Transport> transport, metadb::Store& store,
                                   core::Bus& bus, core::Clock& clock, core::Logging& logging,
                                   core::MetricsRegistry& metrics,
                                   std::optional<uint64_t> backoffSeed = std::nullopt);

}  // namespace outpost::cloudhub
