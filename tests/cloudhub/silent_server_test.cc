// A cloud endpoint that accepts TCP connections and then says nothing (a hung CloudCore or broker,
// a proxy without its upstream) must not stall the cloud link: it keeps retrying, explains the
// failure once, answers its liveness check and stops promptly.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outpost/cloudhub/mqtt_link.h"
#include "outpost/cloudhub/websocket_link.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/mosquitto.h"
#include "support/test_util.h"

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;

namespace {

// A loopback listener that never accepts: the kernel completes each TCP handshake and the client's
// TLS hello is never answered.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd_, 64) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

struct Node {
  explicit Node(TempDir& dir)
      : logPath((dir / "agent.log").string()), logging({core::LogLevel::kDebug, false, logPath}) {
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    REQUIRE(s.isOk());
    store = std::move(s).value();
  }
  std::string log() {
    logging.flush();
    return readFile(logPath);
  }
  // Starts the link, then checks what an operator relies on while the server stays silent.
  void expectLinkKeepsGoing(cloudhub::CloudLinkPtr l) {
    link = std::move(l);
    REQUIRE(link->start().isOk());
    // The first failure is explained (the probe gives up on the silent handshake in time) ...
    REQUIRE(waitFor(
        [&] { return log().find("did not answer the TLS handshake within") != std::string::npos; },
        20s));
    // ... and the link goes on retrying, its thread answering.
    int64_t seen = link->status().reconnects;
    REQUIRE(waitFor([&] { return link->status().reconnects > seen; }, 20s));
    CHECK(link->alive(2s));
    CHECK(link->status().state != cloudhub::LinkState::kConnected);
    auto t0 = std::chrono::steady_clock::now();
    link->stop();
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  }

  std::string logPath;
  core::SystemClock clock;
  core::Bus bus;
  core::Logging logging;
  core::MetricsRegistry metrics;
  std::unique_ptr<metadb::SqliteStore> store;
  cloudhub::CloudLinkPtr link;
};

// Both links' options: the client's TLS files, a short connect timeout and quick retries.
template <class Options>
Options fastRetryingTls(Options o, const TlsFiles& tls) {
  o.caFile = tls.ca;
  o.certFile = tls.clientCert;
  o.keyFile = tls.clientKey;
  o.connectTimeout = 500ms;
  o.reconnectBase = 50ms;
  o.reconnectCap = 200ms;
  return o;
}

}  // namespace

TEST_CASE("an MQTT broker that accepts TCP and never answers TLS does not stall the link") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path());
  SilentListener server;
  Node node(dir);
  cloudhub::MqttLinkOptions o;
  o.nodeName = "edge-silent";
  o.broker = "ssl://127.0.0.1:" + std::to_string(server.port());
  node.expectLinkKeepsGoing(cloudhub::makeMqttLink(fastRetryingTls(o, tls), *node.store, node.bus,
                                                   node.clock, node.logging, node.metrics));
}

TEST_CASE("a CloudHub that accepts TCP and never answers TLS does not stall the WebSocket link") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:edge-silent", "system:nodes");
  SilentListener server;
  Node node(dir);
  cloudhub::WebsocketLinkOptions o;
  o.nodeName = "edge-silent";
  o.server = "wss://127.0.0.1:" + std::to_string(server.port());
  node.expectLinkKeepsGoing(cloudhub::makeWebsocketLink(
      fastRetryingTls(o, tls), *node.store, node.bus, node.clock, node.logging, node.metrics));
}
