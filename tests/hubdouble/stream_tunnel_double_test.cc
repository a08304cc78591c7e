// The stream tunnel double, checked with a client that is not ours (Boost.Beast's WebSocket client
// over OpenSSL, synchronous): it accepts a node as cloudstream's tunnel server does
// (cloud/pkg/cloudstream/tunnelserver.go) and speaks the tunnel's messages (pkg/stream/message.go).
#include "support/stream_tunnel_double.h"

#include <doctest/doctest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "support/mosquitto.h"
#include "support/test_util.h"

using namespace outpost::test;
using nlohmann::json;

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

struct Node {
  Node(const TlsFiles& tls, bool withCert) {
    ctx.set_verify_mode(ssl::verify_peer);
    ctx.load_verify_file(tls.ca);
    if (withCert) {
      ctx.use_certificate_chain_file(tls.clientCert);
      ctx.use_private_key_file(tls.clientKey, ssl::context::pem);
    }
    ws.emplace(ioc, ctx);
  }
  // The HTTP status of the upgrade's answer, or 0 when TLS failed.
  int connect(int port, const std::string& target, const std::string& node) {
    beast::get_lowest_layer(*ws).connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    boost::system::error_code ec;
    ws->next_layer().handshake(ssl::stream_base::client, ec);
    if (ec) return 0;
    ws->set_option(websocket::stream_base::decorator([node](websocket::request_type& req) {
      if (!node.empty()) req.set("SessionHostNameOverride", node);
      req.set("SessionInternalIP", "192.168.1.2");
    }));
    websocket::response_type res;
    ws->handshake(res, "127.0.0.1", target, ec);
    return ec && ec != websocket::error::upgrade_declined ? -1 : res.result_int();
  }
  // The upgrade request as plain HTTP over TLS (Beast's WebSocket client hides a refusal's status).
  int upgradeStatus(int port, const std::string& target, const std::string& node) {
    beast::get_lowest_layer(*ws).connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    ws->next_layer().handshake(ssl::stream_base::client);
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::sec_websocket_version, "13");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    if (!node.empty()) req.set("SessionHostNameOverride", node);
    http::write(ws->next_layer(), req);
    beast::flat_buffer b;
    http::response<http::string_body> res;
    http::read(ws->next_layer(), b, res);
    return res.result_int();
  }
  std::string read() {
    beast::flat_buffer b;
    ws->read(b);
    CHECK(ws->got_binary());
    return beast::buffers_to_string(b.data());
  }
  void write(const std::string& bytes) {
    ws->binary(true);
    ws->write(net::buffer(bytes));
  }
  net::io_context ioc;
  ssl::context ctx{ssl::context::tls_client};
  std::optional<websocket::stream<beast::ssl_stream<tcp::socket>>> ws;
};

uint64_t uvarint(const std::string& s, size_t& pos) {
  uint64_t v = 0;
  for (unsigned shift = 0; pos < s.size(); shift += 7) {
    auto b = static_cast<uint8_t>(s[pos++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (b < 0x80) break;
  }
  return v;
}

}  // namespace

TEST_CASE("the double takes a node with a CA client certificate on /v1/kubeedge/connect only") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:edge-1", "system:nodes");
  StreamTunnelDouble cloud(tls);
  // Without a client certificate the handshake fails (with TLS 1.3 the client hears it at its
  // first read, the upgrade).
  CHECK(Node(tls, false).connect(cloud.port(), "/v1/kubeedge/connect", "edge-1") <= 0);
  REQUIRE(waitFor([&] { return !cloud.refusals().empty(); }));
  CHECK(cloud.refusals()[0].rfind("TLS", 0) == 0);
  CHECK(Node(tls, true).upgradeStatus(cloud.port(), "/v1/other", "edge-1") == 404);
  CHECK(Node(tls, true).upgradeStatus(cloud.port(), "/v1/kubeedge/connect", "") == 400);
  CHECK_FALSE(cloud.connected());

  Node node(tls, true);
  REQUIRE(node.connect(cloud.port(), "/v1/kubeedge/connect", "edge-1") == 101);
  REQUIRE(cloud.waitConnected());
  CHECK(cloud.nodeName() == "edge-1");
  CHECK(cloud.internalIp() == "192.168.1.2");
  CHECK(cloud.clientCn() == "system:node:edge-1");
}

TEST_CASE(
    "a logs request reaches the node as cloudstream sends it; Data and RemoveConnect return") {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:edge-1", "system:nodes");
  StreamTunnelDouble cloud(tls);
  Node node(tls, true);
  REQUIRE(node.connect(cloud.port(), "/v1/kubeedge/connect", "edge-1") == 101);
  REQUIRE(cloud.waitConnected());

  auto session = cloud.logs("default", "web", "app", "follow=true");
  std::string m = node.read();
  size_t pos = 0;
  CHECK(uvarint(m, pos) == session->id());
  CHECK(uvarint(m, pos) == 0);  // LOGS_CONNECT
  json doc = json::parse(m.substr(pos));
  CHECK(doc["MessID"] == session->id());
  CHECK(doc["url"]["Path"] == "/containerLogs/default/web/app");
  CHECK(doc["url"]["RawQuery"] == "follow=true");
  CHECK(doc["url"]["Host"] == "127.0.0.1:10350");
  CHECK(doc["header"]["Accept"][0] == "*/*");

  std::string head;
  head.push_back(static_cast<char>(session->id()));
  node.write(head + '\x03' + "line\n");  // DATA
  node.write(head + '\x04');             // REMOVE_CONNECT
  REQUIRE(session->waitRemoved());
  CHECK(session->received() == "line\n");

  auto exec = cloud.exec("ns", "pod", "c", "command=sh&stdin=1");
  m = node.read();
  pos = 0;
  uvarint(m, pos);
  CHECK(uvarint(m, pos) == 1);  // EXEC_CONNECT
  doc = json::parse(m.substr(pos));
  CHECK(doc["method"] == "POST");
  CHECK(doc["header"]["Upgrade"][0] == "SPDY/3.1");

  cloud.closeTunnel("bye");
  m = node.read();
  CHECK(m == std::string("\x00\x05", 2) + "bye");  // CLOSE_CONNECT
}
