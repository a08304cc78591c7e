// The CloudHub test double, checked with a client that is not ours (Boost.Beast's WebSocket client
// over OpenSSL): every fake has a test that proves it behaves like the real thing. Each case names
// the facts of PROTOCOL.md §1 it pins down.
#include "support/cloudhub_double.h"

#include <doctest/doctest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <nlohmann/json.hpp>

#include "support/mosquitto.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using boost::system::error_code;

constexpr const char* kNode = "edge-1";
constexpr const char* kProject = "e632aba927ea4ac2b575ec1603d56f10";
const std::string kPath = std::string("/") + kProject + "/" + kNode + "/events";

using Headers = std::vector<std::pair<std::string, std::string>>;
// The headers EdgeCore's Go client puts on the wire (canonicalised names).
const Headers kGoHeaders{{"Node_id", kNode}, {"Project_id", kProject}, {"Connectionuse", "msg"}};

// A KubeEdge-style client certificate (CN system:node:<node>, O system:nodes) and the server's.
struct Certs {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), std::string("system:node:") + kNode, "system:nodes");
};

// A WebSocket client on its own io_context, driven from the test thread by pump().
class Client {
 public:
  // Trusts `ca` for the server; presents `cert`/`key` unless they are empty.
  Client(const std::string& ca, const std::string& cert, const std::string& key) {
    ctx_.set_verify_mode(ssl::verify_peer);
    ctx_.load_verify_file(ca);
    if (!cert.empty()) {
      ctx_.use_certificate_chain_file(cert);
      ctx_.use_private_key_file(key, ssl::context::pem);
    }
    ws_.emplace(ioc_, ctx_);  // after the context is complete: the SSL object copies it
  }

  // TLS and WebSocket handshakes. Returns the HTTP status of the upgrade answer (101 when
  // accepted), or 0 when the connection failed before one arrived (`error` says why).
  int connect(int port, const std::string& target, const Headers& headers) {
    beast::get_lowest_layer(*ws_).connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    ws_->next_layer().set_verify_callback(ssl::host_name_verification("127.0.0.1"));
    error_code ec;
    ws_->next_layer().handshake(ssl::stream_base::client, ec);
    if (ec) {
      error = "TLS: " + ec.message();
      return 0;
    }
    ws_->set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
      for (const auto& [name, value] : headers) req.set(name, value);
    }));
    websocket::response_type res;
    ws_->handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
    if (ec && ec != websocket::error::upgrade_declined) {
      error = "WebSocket: " + ec.message();
      return 0;
    }
    status = res.result_int();
    if (status == 101) {
      ws_->control_callback([this](websocket::frame_type kind, beast::string_view) {
        if (kind == websocket::frame_type::pong) ++pongs;
      });
      read();
    }
    return status;
  }

  // The upgrade request as plain HTTP over TLS (Beast's WebSocket client hides a refusal's status):
  // returns the answer's status and keeps its body in `body`.
  int upgradeStatus(int port, const std::string& target, const Headers& headers) {
    beast::get_lowest_layer(*ws_).connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    ws_->next_layer().handshake(ssl::stream_base::client);
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::sec_websocket_version, "13");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    for (const auto& [name, value] : headers) req.set(name, value);
    http::write(ws_->next_layer(), req);
    http::response<http::string_body> res;
    beast::flat_buffer buffer;
    http::read(ws_->next_layer(), buffer, res);
    body = res.body();
    return res.result_int();
  }

  void send(const std::string& text) {
    bool done = false;
    ws_->text(true);
    ws_->async_write(net::buffer(text), [&](error_code ec, std::size_t) {
      REQUIRE_FALSE(ec);
      done = true;
    });
    REQUIRE(pump([&] { return done; }, 5s));
  }
  void send(const json& envelope) { send(envelope.dump() + "\n"); }  // EdgeCore ends with \n

  void ping() {
    bool done = false;
    ws_->async_ping({}, [&](error_code ec) {
      REQUIRE_FALSE(ec);
      done = true;
    });
    REQUIRE(pump([&] { return done; }, 5s));
  }

  // Runs the client's handlers until `cond` holds or `timeout` passed; returns cond().
  bool pump(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond()) {
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      ioc_.restart();
      ioc_.run_one_for(std::min<std::chrono::steady_clock::duration>(deadline - now, 20ms));
    }
    return true;
  }

  // The first message received whose header.parent_msg_id is `parent`.
  std::optional<json> answerTo(const std::string& parent) const {
    for (const auto& m : messages) {
      if (m["header"].value("parent_msg_id", "") == parent) return m;
    }
    return std::nullopt;
  }
  int copiesOf(const std::string& msgId) const {
    return static_cast<int>(std::count_if(messages.begin(), messages.end(), [&](const json& m) {
      return m["header"].value("msg_id", "") == msgId;
    }));
  }

  std::deque<json> messages;
  std::vector<std::chrono::steady_clock::time_point> arrivals;
  int pongs = 0;
  int status = 0;
  bool closed = false;
  websocket::close_code closeCode = websocket::close_code::none;
  std::string error;
  std::string body;

 private:
  void read() {
    ws_->async_read(buffer_, [this](error_code ec, std::size_t) {
      if (ec) {
        closed = true;
        closeCode = static_cast<websocket::close_code>(ws_->reason().code);
        return;
      }
      messages.push_back(json::parse(beast::buffers_to_string(buffer_.data())));
      arrivals.push_back(std::chrono::steady_clock::now());
      buffer_.consume(buffer_.size());
      read();
    });
  }

  net::io_context ioc_;
  ssl::context ctx_{ssl::context::tls_client};
  std::optional<websocket::stream<beast::ssl_stream<beast::tcp_stream>>> ws_;
  beast::flat_buffer buffer_;
};

json edgeMessage(const std::string& id, const std::string& op, const std::string& resource,
                 json content, const std::string& source = "edged",
                 const std::string& group = "meta") {
  return json{
      {"header", {{"msg_id", id}, {"timestamp", 1}}},
      {"route", {{"source", source}, {"group", group}, {"operation", op}, {"resource", resource}}},
      {"content", std::move(content)}};
}

json ack(const json& cloudMessage) {
  return json{{"header",
               {{"msg_id", "ack-" + cloudMessage["header"]["msg_id"].get<std::string>()},
                {"parent_msg_id", cloudMessage["header"]["msg_id"]},
                {"timestamp", 2}}},
              {"route",
               {{"source", cloudMessage["route"]["source"]},
                {"group", cloudMessage["route"]["group"]},
                {"operation", "response"},
                {"resource", cloudMessage["route"]["resource"]}}},
              {"content", "OK"}};
}

}  // namespace

// §1 Connection: wss path /<project_id>/<node>/events, headers node_id, project_id, ConnectionUse
// (Go sends Node_id, Project_id, Connectionuse: matched case-insensitively), mutual TLS with a
// client certificate CN system:node:<node>, O system:nodes.
TEST_CASE(
    "the double accepts a client certificate from its CA and records path, headers and subject") {
  Certs certs;
  auto options = hubOptionsFor(certs.tls);
  options.requireCn = std::string("system:node:") + kNode;
  CloudHubDouble hub(options);
  CHECK(hub.url() == "wss://127.0.0.1:" + std::to_string(hub.port()));

  Client client(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  int status = client.connect(hub.port(), kPath, kGoHeaders);
  INFO(client.error);
  REQUIRE(status == 101);
  REQUIRE(waitFor([&] { return hub.openConnections() == 1; }));

  auto conns = hub.connections();
  REQUIRE(conns.size() == 1);
  CHECK(conns[0].id == 1);
  CHECK(conns[0].open);
  CHECK(conns[0].path == kPath);
  CHECK(conns[0].headers.at("node_id") == kNode);
  CHECK(conns[0].headers.at("project_id") == kProject);
  CHECK(conns[0].headers.at("connectionuse") == "msg");
  CHECK(conns[0].headers.count("Node_id") == 0);  // names are lower-cased
  CHECK(conns[0].clientCn == std::string("system:node:") + kNode);
  CHECK(conns[0].clientO == "system:nodes");
  std::string serial;
  REQUIRE(run({"/usr/bin/openssl", "x509", "-in", certs.tls.clientCert, "-noout", "-serial"},
              &serial) == 0);
  CHECK(serial == "serial=" + conns[0].clientSerial + "\n");
  CHECK(hub.refusals().empty());
}

// §1 Connection: mutual TLS 1.2+; a client whose certificate the cloud's CA did not sign, or
// without one, gets no connection at all.
TEST_CASE("a client certificate from another CA, or none, is refused in the TLS handshake") {
  Certs certs;
  TempDir otherDir;
  TlsFiles other =
      makeTlsFiles(otherDir.path(), std::string("system:node:") + kNode, "system:nodes");
  CloudHubDouble hub(hubOptionsFor(certs.tls));

  Client untrusted(certs.tls.ca, other.clientCert, other.clientKey);
  CHECK(untrusted.connect(hub.port(), kPath, kGoHeaders) == 0);
  CHECK(untrusted.error.find("alert") != std::string::npos);  // the server's TLS alert
  Client anonymous(certs.tls.ca, "", "");
  CHECK(anonymous.connect(hub.port(), kPath, kGoHeaders) == 0);

  REQUIRE(waitFor([&] { return hub.refusals().size() == 2; }));
  for (const auto& reason : hub.refusals()) CHECK(reason.find("TLS handshake") == 0);
  CHECK(hub.connections().empty());
  CHECK(hub.received().empty());
}

// §1 Connection: the path names the project and node; CloudHub serves only its project, and the
// certificate must belong to the node (CN system:node:<node>). Refused with 403 before upgrading.
TEST_CASE("a wrong CN, path, project or node_id is answered 403 before the upgrade") {
  Certs certs;
  TempDir wrongDir;
  TlsFiles wrongCn = makeTlsFiles(wrongDir.path(), "system:node:other", "system:nodes");
  // Same CA for both client certificates, so only the CN differs.
  std::string cnCert = (wrongDir / "cn.crt").string();
  std::string sh = "cd " + wrongDir.path().string() + " && openssl x509 -req -in client.csr -CA " +
                   certs.tls.ca + " -CAkey " + (certs.dir / "ca.key").string() +
                   " -CAcreateserial -days 1 -out cn.crt";
  REQUIRE(run({"/bin/sh", "-c", sh}) == 0);
  auto options = hubOptionsFor(certs.tls);
  options.requireCn = std::string("system:node:") + kNode;
  CloudHubDouble hub(options);

  Client cn(certs.tls.ca, cnCert, wrongCn.clientKey);
  CHECK(cn.upgradeStatus(hub.port(), kPath, kGoHeaders) == 403);
  CHECK(cn.body.find("CN system:node:other") != std::string::npos);
  Client path(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  CHECK(path.upgradeStatus(hub.port(), std::string("/") + kProject + "/" + kNode, kGoHeaders) ==
        403);
  Client project(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  CHECK(project.upgradeStatus(hub.port(), std::string("/0000/") + kNode + "/events", kGoHeaders) ==
        403);
  Client node(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  CHECK(node.upgradeStatus(hub.port(), kPath, {{"node_id", "edge-2"}, {"project_id", kProject}}) ==
        403);

  auto refusals = hub.refusals();
  REQUIRE(refusals.size() == 4);
  CHECK(refusals[0].find("CN system:node:other") != std::string::npos);
  CHECK(refusals[1].find("wrong path") != std::string::npos);
  CHECK(refusals[2].find("wrong project id 0000") != std::string::npos);
  CHECK(refusals[3].find("node_id header edge-2") != std::string::npos);
  CHECK(hub.connections().empty());
}

// §1 "What the cloud answers": source edgecontroller, group resource, operation response,
// parent_msg_id = the edge's msg_id; node insert, lease insert/update, node patch ->
// {"Object", "Err": null}; a query -> the plain object with header.resourceversion; not found ->
// {"ErrStatus": Status NotFound}. Keepalives get no answer. Framing: text frames ending in \n.
TEST_CASE("a lease query is NotFound until the edge inserts the lease, then answered with it") {
  Certs certs;
  CloudHubDouble hub(hubOptionsFor(certs.tls));
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);
  const std::string lease = std::string("kube-node-lease/lease/") + kNode;
  const std::string node = std::string("default/node/") + kNode;

  edge.send(edgeMessage("k1", "keepalive", "node", "ping", "websocket", "resource"));
  edge.send(edgeMessage("q1", "query", lease, nullptr));
  REQUIRE(edge.pump([&] { return edge.answerTo("q1").has_value(); }, 10s));
  json notFound = *edge.answerTo("q1");
  CHECK(notFound["route"] == json{{"source", "edgecontroller"},
                                  {"group", "resource"},
                                  {"operation", "response"},
                                  {"resource", lease}});
  CHECK(notFound["content"]["ErrStatus"]["kind"] == "Status");
  CHECK(notFound["content"]["ErrStatus"]["reason"] == "NotFound");
  CHECK(notFound["content"]["ErrStatus"]["code"] == 404);
  CHECK(notFound["header"]["msg_id"].get<std::string>().size() == 36);
  CHECK_FALSE(hub.object(lease).has_value());

  json leaseObject{{"metadata", {{"name", kNode}, {"namespace", "kube-node-lease"}}},
                   {"spec", {{"holderIdentity", kNode}, {"leaseDurationSeconds", 40}}}};
  edge.send(edgeMessage("i1", "insert", lease, leaseObject));
  edge.send(edgeMessage("q2", "query", lease, nullptr));
  REQUIRE(edge.pump([&] { return edge.answerTo("q2").has_value(); }, 10s));
  json inserted = *edge.answerTo("i1");
  CHECK(inserted["content"]["Err"].is_null());
  CHECK(inserted["content"]["Object"]["spec"] == leaseObject["spec"]);
  json found = *edge.answerTo("q2");
  CHECK(found["content"]["spec"] == leaseObject["spec"]);
  CHECK(found["header"]["resourceversion"] == found["content"]["metadata"]["resourceVersion"]);
  CHECK(hub.object(lease).has_value());

  // The node: insert, then a status patch (a JSON string, with a strategic-merge directive). As
  // with CloudCore, the node exists only once its insert is answered (registrationDelay): a patch
  // before that is answered NotFound.
  edge.send(edgeMessage("n1", "insert", node, {{"metadata", {{"name", kNode}}}}));
  edge.send(edgeMessage("p0", "patch", std::string("default/nodepatch/") + kNode,
                        R"({"status":{"phase":"Pending"}})"));
  REQUIRE(edge.pump([&] { return edge.answerTo("p0").has_value(); }, 10s));
  CHECK(edge.answerTo("p0")->at("content").at("ErrStatus").at("code") == 404);
  REQUIRE(edge.pump([&] { return edge.answerTo("n1").has_value(); }, 10s));
  CHECK(edge.answerTo("n1")->at("content").at("Object").at("metadata").at("name") == kNode);
  edge.send(edgeMessage("p1", "patch", std::string("default/nodepatch/") + kNode,
                        R"({"status":{"phase":"Running","$setElementOrder/conditions":[]}})"));
  REQUIRE(edge.pump([&] { return edge.answerTo("p1").has_value(); }, 10s));
  json patched = edge.answerTo("p1")->at("content");
  CHECK(patched["Err"].is_null());
  CHECK(patched["Object"]["status"] == json{{"phase", "Running"}});

  CHECK_FALSE(edge.answerTo("k1").has_value());  // keepalives are not answered
  CHECK(hub.receivedWhere("keepalive").size() == 1);
  CHECK(hub.receivedWhere("query", "kube-node-lease/").size() == 2);
  CHECK(hub.receivedWhere("", "", "meta").size() == 6);

  edge.send(std::string("not json"));
  REQUIRE(hub.waitFor([](const auto& frames) { return frames.size() == 8; }));
  CHECK(hub.received().back().envelope == json{{"raw", "not json"}});
  CHECK(hub.received().back().connection == 1);
}

// §1 Acknowledgement: the cloud resends an unacknowledged message every 5 s (here 300 ms) and on a
// new connection, and stops once the edge acks it (response, parent_msg_id = its msg_id, "OK").
TEST_CASE(
    "an unacked cloud message is resent after the interval, on reconnect, and not after the ack") {
  Certs certs;
  auto options = hubOptionsFor(certs.tls);
  options.resendInterval = 300ms;
  CloudHubDouble hub(options);
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);
  REQUIRE(waitFor([&] { return hub.openConnections() == 1; }));

  json pod{{"metadata", {{"name", "nginx"}, {"namespace", "default"}, {"resourceVersion", "7"}}}};
  auto sentAt = std::chrono::steady_clock::now();
  std::string id = hub.sendObject("insert", "default/pod/nginx", pod);
  REQUIRE(edge.pump([&] { return edge.copiesOf(id) == 2; }, 10s));
  CHECK(edge.arrivals[1] - sentAt >= 300ms);
  CHECK(edge.messages[0] == edge.messages[1]);  // the same message, same msg_id
  CHECK(edge.messages[0]["header"]["resourceversion"] == "7");
  CHECK(edge.messages[0]["route"]["source"] == "edgecontroller");
  CHECK(edge.messages[0]["content"] == pod);
  CHECK(hub.unacked() == std::vector<std::string>{id});
  CHECK_FALSE(hub.acked(id));

  // A new connection gets it at once.
  Client again(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(again.connect(hub.port(), kPath, kGoHeaders) == 101);
  REQUIRE(again.pump([&] { return again.copiesOf(id) == 1; }, 10s));
  again.send(ack(again.messages[0]));
  REQUIRE(hub.waitFor([&](const auto&) { return hub.acked(id); }));
  CHECK(hub.ackCount(id) == 1);
  CHECK(hub.unacked().empty());
  again.send(ack(again.messages[0]));  // the edge acks a resent copy again: counted, harmless
  REQUIRE(hub.waitFor([&](const auto&) { return hub.ackCount(id) == 2; }));

  // No more copies: three intervals pass without one (bounded wait for an absence).
  std::size_t before = again.messages.size();
  again.pump([] { return false; }, 900ms);
  CHECK(again.messages.size() == before);
  CHECK(hub.connections().size() == 2);
}

// §1 Liveness: a silent cloud (blackholed link) neither answers nor pongs, yet does not close the
// connection; EdgeCore 1.15 never notices, Outpost must by its read deadline.
TEST_CASE("silent drop stops pongs and answers without closing, and forwarding resumes them") {
  Certs certs;
  CloudHubDouble hub(hubOptionsFor(certs.tls));
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);
  edge.ping();
  REQUIRE(edge.pump([&] { return edge.pongs == 1; }, 10s));
  CHECK(hub.pings() == 1);

  hub.setForwarding(false);
  // setForwarding posts to the double's thread; a round trip through it proves it took effect.
  REQUIRE(waitFor([&] { return hub.openConnections() == 1; }));
  edge.ping();
  edge.send(edgeMessage("q1", "query", std::string("default/node/") + kNode, nullptr));
  edge.pump([] { return false; }, 1s);  // bounded wait for an absence
  CHECK(edge.pongs == 1);
  CHECK_FALSE(edge.answerTo("q1").has_value());
  CHECK(hub.pings() == 1);
  CHECK(hub.received().empty());
  CHECK_FALSE(edge.closed);
  CHECK(hub.openConnections() == 1);

  hub.setForwarding(true);
  REQUIRE(edge.pump([&] { return edge.pongs == 2 && edge.answerTo("q1").has_value(); }, 10s));
  CHECK(edge.answerTo("q1")->at("content").at("ErrStatus").at("reason") == "NotFound");
  CHECK(hub.pings() == 2);
}

// §1 Liveness: "after a clean close" - the cloud can close the session with a close frame.
TEST_CASE("closeConnections closes with a normal close frame") {
  Certs certs;
  CloudHubDouble hub(hubOptionsFor(certs.tls));
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);
  REQUIRE(waitFor([&] { return hub.openConnections() == 1; }));
  hub.closeConnections();
  REQUIRE(edge.pump([&] { return edge.closed; }, 10s));
  CHECK(edge.closeCode == websocket::close_code::normal);
  REQUIRE(waitFor([&] { return hub.openConnections() == 0; }));
  CHECK(hub.connections().size() == 1);
}

// The switch answerRequests=false: a cloud that records but answers nothing (for tests of the
// edge's query timeout and its fallback to the store).
TEST_CASE("with answerRequests off the double records the edge's requests and answers none") {
  Certs certs;
  auto options = hubOptionsFor(certs.tls);
  options.answerRequests = false;
  CloudHubDouble hub(options);
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);
  const std::string lease = std::string("kube-node-lease/lease/") + kNode;
  edge.send(edgeMessage("i1", "insert", lease, {{"metadata", {{"name", kNode}}}}));
  edge.send(edgeMessage("q1", "query", lease, nullptr));
  REQUIRE(hub.waitFor([](const auto& frames) { return frames.size() == 2; }));
  edge.pump([] { return false; }, 300ms);  // bounded wait for an absence
  CHECK(edge.messages.empty());
  CHECK(hub.sent().empty());
  CHECK_FALSE(hub.object(lease).has_value());
}

// §1 "What the cloud answers" for the edge's queries of configmaps and secrets: the plain object
// with header.resourceversion, {"ErrStatus": NotFound} for what the cloud does not hold; and the
// switch setAnswerQueries(false, prefix): those queries are recorded and never answered (the
// edge's query timeout), while other queries are still answered.
TEST_CASE("configmap and secret queries: the held object, NotFound, and silence when told") {
  Certs certs;
  CloudHubDouble hub(hubOptionsFor(certs.tls));
  const std::string cm = "default/configmap/app-cfg";
  const std::string secret = "default/secret/app-token";
  json cmObject{{"apiVersion", "v1"},
                {"kind", "ConfigMap"},
                {"metadata", {{"name", "app-cfg"}, {"namespace", "default"}}},
                {"data", {{"mode", "fast"}}}};
  hub.setObject(cm, cmObject);  // no resourceVersion: the double stamps one, as the API server
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);

  edge.send(edgeMessage("q1", "query", cm, nullptr));
  edge.send(edgeMessage("q2", "query", secret, nullptr));
  REQUIRE(edge.pump([&] { return edge.answerTo("q1") && edge.answerTo("q2"); }, 10s));
  json found = *edge.answerTo("q1");
  CHECK(found["route"]["operation"] == "response");
  CHECK(found["route"]["resource"] == cm);
  CHECK(found["content"]["data"] == cmObject["data"]);
  CHECK_FALSE(found["content"].contains("Object"));  // the plain object, not {"Object", "Err"}
  std::string version = found["content"]["metadata"]["resourceVersion"].get<std::string>();
  CHECK_FALSE(version.empty());
  CHECK(found["header"]["resourceversion"] == version);
  json missing = *edge.answerTo("q2");
  CHECK(missing["content"]["ErrStatus"]["reason"] == "NotFound");
  CHECK(missing["content"]["ErrStatus"]["code"] == 404);
  CHECK(missing["content"]["ErrStatus"]["message"] == "secrets \"app-token\" not found");

  hub.setAnswerQueries(false, "default/configmap/");
  edge.send(edgeMessage("q3", "query", cm, nullptr));
  edge.send(edgeMessage("q4", "query", secret, nullptr));
  REQUIRE(edge.pump([&] { return edge.answerTo("q4").has_value(); }, 10s));
  edge.pump([] { return false; }, 300ms);  // bounded wait for an absence
  CHECK_FALSE(edge.answerTo("q3").has_value());
  CHECK(hub.receivedWhere("query", cm).size() == 2);  // recorded all the same

  hub.setAnswerQueries(true);
  edge.send(edgeMessage("q5", "query", cm, nullptr));
  REQUIRE(edge.pump([&] { return edge.answerTo("q5").has_value(); }, 10s));
  CHECK(edge.answerTo("q5")->at("header").at("resourceversion") == version);
}

// Issue 17: kubectl delete pod. CloudCore sends the pod again with metadata.deletionTimestamp and
// deletes it (grace 0, uid precondition) only when the edge asks: operation delete from edged,
// the content the pod's uid as a string.
TEST_CASE(
    "a deleted pod comes as an update with deletionTimestamp; the delete only after the "
    "edge's request naming the pod's uid") {
  Certs certs;
  CloudHubDouble hub(hubOptionsFor(certs.tls));
  const std::string pod = "default/pod/web";
  json object{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", "web"}, {"namespace", "default"}, {"uid", "u-1"}}},
              {"spec", {{"terminationGracePeriodSeconds", 7}}}};
  hub.setObject(pod, object);
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);

  std::string updateId = hub.deletePod(pod);
  auto find = [&](const std::string& id) -> std::optional<json> {
    for (const auto& m : edge.messages)
      if (m["header"].value("msg_id", "") == id) return m;
    return std::nullopt;
  };
  REQUIRE(edge.pump([&] { return find(updateId).has_value(); }, 10s));
  json update = *find(updateId);
  CHECK(update["route"]["operation"] == "update");
  CHECK(update["content"]["metadata"].contains("deletionTimestamp"));
  CHECK(update["content"]["metadata"]["deletionGracePeriodSeconds"] == 7);

  // CloudCore reads the content as the pod's uid string: a DeleteOptions object, or another
  // uid, is logged there and never answered, and the pod stays.
  json options{{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"gracePeriodSeconds", 0}};
  options["preconditions"] = {{"uid", "u-1"}};
  edge.send(edgeMessage("d1", "delete", pod, options));
  edge.send(edgeMessage("d2", "delete", pod, "u-2"));
  REQUIRE(edge.pump([&] { return hub.podDeletesIgnored().size() == 2; }, 10s));
  CHECK(hub.podsDeleted().empty());
  CHECK(hub.object(pod).has_value());

  edge.send(edgeMessage("d3", "delete", pod, "u-1"));
  REQUIRE(edge.pump(
      [&] {
        for (const auto& m : edge.messages)
          if (m["route"].value("operation", "") == "delete") return true;
        return false;
      },
      10s));
  CHECK_FALSE(edge.answerTo("d1").has_value());
  CHECK_FALSE(edge.answerTo("d2").has_value());
  CHECK(edge.answerTo("d3")->at("content") == "OK");
  CHECK(hub.podsDeleted() == std::vector<std::string>{pod});
  CHECK_FALSE(hub.object(pod).has_value());
}

// §2 and issue 17 item 4: CloudCore 1.15's devicecontroller takes the one segment after device/
// as the device's name; a namespaced id names a device "default" it does not have, and the twin
// update is only logged there, never answered.
TEST_CASE("a twin update is answered only when the segment after device/ names a held Device") {
  Certs certs;
  CloudHubDouble hub(hubOptionsFor(certs.tls));
  Client edge(certs.tls.ca, certs.tls.clientCert, certs.tls.clientKey);
  REQUIRE(edge.connect(hub.port(), kPath, kGoHeaders) == 101);
  hub.sendObject("insert", "default/device/thermo",
                 {{"apiVersion", "devices.kubeedge.io/v1beta1"},
                  {"kind", "Device"},
                  {"metadata", {{"name", "thermo"}, {"namespace", "default"}}},
                  {"spec", {{"nodeName", kNode}}}});
  json twin = {{"event_id", "e1"},
               {"timestamp", 1},
               {"twin", {{"temperature", {{"actual", {{"value", "21"}}}}}}}};
  edge.send(edgeMessage("t1", "update", "device/default/thermo/twin/edge_updated", twin, "edgehub",
                        "twin"));
  edge.send(
      edgeMessage("t2", "update", "device/thermo/twin/edge_updated", twin, "edgehub", "twin"));
  REQUIRE(edge.pump([&] { return edge.answerTo("t2").has_value(); }, 10s));
  CHECK(edge.answerTo("t2")->at("content") == "OK");
  CHECK_FALSE(edge.answerTo("t1").has_value());  // answered in order: t1 never will be
  auto device = hub.object("default/device/thermo");
  REQUIRE(device.has_value());
  CHECK((*device)["status"]["twins"] ==
        json::array({{{"propertyName", "temperature"}, {"reported", {{"value", "21"}}}}}));
}
