// The WebSocket connection (outpost/cloudhub/ws_connection.h) against a real TLS
// WebSocket server on loopback (Boost.Beast, certificates made by openssl): what the link relies on
// when a server refuses, misbehaves or goes silent. The link's own behaviour is in
// websocket_link_test.
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "outpost/cloudhub/ws_connection.h"
#include "support/mosquitto.h"
#include "support/test_util.h"

using namespace outpost;
using namespace outpost::test;
using namespace std::chrono_literals;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

// What the server does once a client connected.
enum class Mode {
  kEcho,    // sends every text frame back
  kRefuse,  // answers the upgrade request 403 with a body
  kSilent,  // upgrades, then never reads again (the client's close frame stays unanswered)
  kBinary,  // upgrades and sends one binary frame
  kBig,     // upgrades and sends one text frame of `bigBytes`
  kFlood,   // upgrades and sends numbered text frames as fast as it can, until the client goes
};

// A TLS WebSocket server on 127.0.0.1 port 0 that requires a client certificate from its CA.
class TestServer {
 public:
  TestServer(const TlsFiles& tls, Mode mode, size_t bigBytes = 0,
             const std::string& address = "127.0.0.1")
      : mode_(mode), bigBytes_(bigBytes), address_(address) {
    ctx_.use_certificate_chain_file(tls.serverCert);
    ctx_.use_private_key_file(tls.serverKey, ssl::context::pem);
    ctx_.load_verify_file(tls.ca);
    ctx_.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    tcp::endpoint e(asio::ip::make_address(address_), 0);
    acceptor_.open(e.protocol());
    acceptor_.bind(e);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~TestServer() {
    asio::post(ioc_, [this] {
      stopped_ = true;
      ErrorCode ec;
      acceptor_.close(ec);
      for (auto& s : sessions_) beast::get_lowest_layer(s->ws).close(ec);
      sessions_.clear();
    });
    thread_.join();
  }

  std::string url() const {
    return "wss://" + address_ + ":" + std::to_string(port_) + "/p/node/events";
  }
  int port() const { return port_; }
  std::map<std::string, std::string> headers() const {
    std::lock_guard lock(mu_);
    return headers_;
  }
  int upgrades() const { return upgrades_; }

 private:
  struct Session {
    Session(tcp::socket s, ssl::context& ctx) : ws(std::move(s), ctx) {}
    websocket::stream<beast::ssl_stream<tcp::socket>> ws;
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
    std::string out;
    int sent = 0;
  };
  using SessionPtr = std::shared_ptr<Session>;

  void accept() {
    acceptor_.async_accept([this](ErrorCode ec, tcp::socket socket) {
      if (ec || stopped_) return;
      auto s = std::make_shared<Session>(std::move(socket), ctx_);
      sessions_.push_back(s);
      s->ws.next_layer().async_handshake(ssl::stream_base::server, [this, s](ErrorCode e) {
        if (e || stopped_) return;
        http::async_read(s->ws.next_layer(), s->buffer, s->request,
                         [this, s](ErrorCode e2, size_t) {
                           if (!e2 && !stopped_) upgrade(s);
                         });
      });
      accept();
    });
  }

  void upgrade(const SessionPtr& s) {
    {
      std::lock_guard lock(mu_);
      for (const auto& f : s->request)
        headers_[std::string(f.name_string())] = std::string(f.value());
    }
    if (mode_ == Mode::kRefuse) {
      s->response = {http::status::forbidden, s->request.version()};
      s->response.body() = "node edge-9 is not allowed here\n";
      s->response.keep_alive(false);
      s->response.prepare_payload();
      http::async_write(s->ws.next_layer(), s->response, [s](ErrorCode, size_t) {
        ErrorCode ignored;
        beast::get_lowest_layer(s->ws).close(ignored);
      });
      return;
    }
    s->ws.read_message_max(64u << 20);
    s->ws.async_accept(s->request, [this, s](ErrorCode ec) {
      if (ec || stopped_) return;
      ++upgrades_;
      switch (mode_) {
        case Mode::kEcho:
          return echo(s);
        case Mode::kSilent:
          return;
        case Mode::kBinary:
          s->ws.binary(true);
          s->out = "\x01\x02\x03";
          return s->ws.async_write(asio::buffer(s->out),
                                   [this, s](ErrorCode e, size_t) { drain(s, e); });
        case Mode::kBig:
          s->ws.text(true);
          s->out.assign(bigBytes_, 'x');
          return s->ws.async_write(asio::buffer(s->out),
                                   [this, s](ErrorCode e, size_t) { drain(s, e); });
        case Mode::kFlood:
          flood(s);
          return drain(s, {});
        case Mode::kRefuse:
          return;
      }
    });
  }

  void echo(const SessionPtr& s) {
    s->ws.async_read(s->buffer, [this, s](ErrorCode ec, size_t) {
      if (ec || stopped_) return;
      s->out = beast::buffers_to_string(s->buffer.data());
      s->buffer.consume(s->buffer.size());
      s->ws.text(true);
      s->ws.async_write(asio::buffer(s->out), [this, s](ErrorCode e, size_t) {
        if (!e) echo(s);
      });
    });
  }

  // Reads (and drops) what the client sends, so its pings and close are answered.
  void drain(const SessionPtr& s, ErrorCode ec) {
    if (ec || stopped_) return;
    s->ws.async_read(s->buffer, [this, s](ErrorCode e, size_t) {
      s->buffer.consume(s->buffer.size());
      drain(s, e);
    });
  }

  void flood(const SessionPtr& s) {
    s->out = "frame " + std::to_string(++s->sent);
    s->ws.text(true);
    s->ws.async_write(asio::buffer(s->out), [this, s](ErrorCode e, size_t) {
      if (!e && !stopped_) flood(s);
    });
  }

  const Mode mode_;
  const size_t bigBytes_;
  const std::string address_;
  asio::io_context ioc_;
  ssl::context ctx_{ssl::context::tls_server};
  tcp::acceptor acceptor_{ioc_};
  int port_ = 0;
  bool stopped_ = false;  // io thread
  std::vector<SessionPtr> sessions_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> headers_;
  std::atomic<int> upgrades_{0};
  std::thread thread_;
};

// Every event the transport delivered, and whether one came after close() returned.
struct Recorder {
  cloudhub::WsEvents events() {
    cloudhub::WsEvents e;
    e.opened = [this] { note("opened", ""); };
    e.failed = [this](std::string why) { note("failed", why); };
    e.closed = [this](std::string why) { note("closed", why); };
    e.pong = [this] { note("pong", ""); };
    e.text = [this](std::string text) { note("text", std::move(text)); };
    return e;
  }
  void note(const std::string& kind, std::string detail) {
    if (closeReturned) ++late;
    std::lock_guard lock(mu);
    if (kind == "text") {
      texts.push_back(std::move(detail));
    } else {
      seen.push_back(kind + (detail.empty() ? "" : ": " + detail));
    }
  }
  // The first event of `kind` with its detail, or "" when none came.
  std::string first(const std::string& kind) {
    std::lock_guard lock(mu);
    for (const auto& s : seen)
      if (s.rfind(kind, 0) == 0) return s;
    return "";
  }
  size_t textCount() {
    std::lock_guard lock(mu);
    return texts.size();
  }

  std::mutex mu;
  std::vector<std::string> seen;
  std::vector<std::string> texts;
  std::atomic<bool> closeReturned{false};
  std::atomic<int> late{0};
};

struct Setup {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:edge-1", "system:nodes");

  cloudhub::WsConnectOptions options(const std::string& url) const {
    cloudhub::WsConnectOptions o;
    o.url = url;
    o.headers = {{"node_id", "edge-1"}, {"project_id", "p"}};
    o.tls = {readFile(tls.ca), readFile(tls.clientCert), readFile(tls.clientKey)};
    o.connectTimeout = 5s;
    return o;
  }
};

cloudhub::WsConnectionPtr openWs(cloudhub::WsConnectOptions o, Recorder& r) {
  auto c = cloudhub::WsConnection::open(std::move(o), r.events());
  REQUIRE(c.isOk());
  return std::move(c).value();
}

bool ready(const std::shared_future<void>& f) {
  return f.wait_for(0s) == std::future_status::ready;
}

}  // namespace

TEST_CASE("a 1 MiB text frame arrives whole both ways, after an upgrade with the given headers") {
  Setup s;
  TestServer server(s.tls, Mode::kEcho);
  Recorder r;
  auto conn = openWs(s.options(server.url()), r);
  REQUIRE(waitFor([&] { return !r.first("opened").empty(); }));
  CHECK(server.headers()["node_id"] == "edge-1");
  CHECK(server.headers()["project_id"] == "p");
  CHECK(server.headers()["Host"] == "127.0.0.1:" + std::to_string(server.port()));

  std::string big(1u << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  std::promise<core::Status> written;
  conn->sendText(big, [&](core::Status st) { written.set_value(st); });
  auto w = written.get_future();
  REQUIRE(w.wait_for(10s) == std::future_status::ready);
  CHECK(w.get().isOk());
  REQUIRE(waitFor([&] { return r.textCount() == 1; }));
  {
    std::lock_guard lock(r.mu);
    CHECK(r.texts[0].size() == big.size());
    CHECK(r.texts[0] == big);
  }
  // Frames queued back to back go out whole and in order.
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i)
    conn->sendText("m" + std::to_string(i), [&](core::Status st) { ok += st.isOk(); });
  REQUIRE(waitFor([&] { return r.textCount() == 21; }));
  CHECK(ok == 20);
  {
    std::lock_guard lock(r.mu);
    for (int i = 0; i < 20; ++i) CHECK(r.texts[1 + i] == "m" + std::to_string(i));
  }
  CHECK(waitFor([&] { return ready(conn->close()); }, 7s));
}

TEST_CASE("a ping is answered by a pong event") {
  Setup s;
  TestServer server(s.tls, Mode::kEcho);
  Recorder r;
  auto conn = openWs(s.options(server.url()), r);
  REQUIRE(waitFor([&] { return !r.first("opened").empty(); }));
  conn->ping();
  CHECK(waitFor([&] { return !r.first("pong").empty(); }));
  CHECK(waitFor([&] { return ready(conn->close()); }, 7s));
}

TEST_CASE("a server that refuses the upgrade: failed, naming the HTTP status and its reason") {
  Setup s;
  TestServer server(s.tls, Mode::kRefuse);
  Recorder r;
  auto conn = openWs(s.options(server.url()), r);
  REQUIRE(waitFor([&] { return !r.first("failed").empty(); }));
  std::string why = r.first("failed");
  CHECK(why.find("refused the WebSocket upgrade with HTTP 403 Forbidden") != std::string::npos);
  CHECK(why.find("node edge-9 is not allowed here") != std::string::npos);
  CHECK(r.first("opened").empty());
  CHECK(waitFor([&] { return ready(conn->close()); }, 7s));
}

TEST_CASE("a server certificate that chains to another CA: failed, naming the verification") {
  Setup s;
  TempDir other;
  TlsFiles stranger = makeTlsFiles(other.path(), "x");
  TestServer server(s.tls, Mode::kEcho);
  auto o = s.options(server.url());
  o.tls.caPem = readFile(stranger.ca);
  Recorder r;
  auto conn = openWs(o, r);
  REQUIRE(waitFor([&] { return !r.first("failed").empty(); }));
  std::string why = r.first("failed");
  CHECK(why.find("certificate verify failed") != std::string::npos);
  CHECK(server.upgrades() == 0);
  CHECK(waitFor([&] { return ready(conn->close()); }, 7s));
}

TEST_CASE("a server certificate that does not name the host: failed, naming the mismatch") {
  Setup s;
  // The certificate names 127.0.0.1 and localhost; the server listens on 127.0.0.2 (loopback).
  TestServer server(s.tls, Mode::kEcho, 0, "127.0.0.2");
  Recorder r;
  auto conn = openWs(s.options(server.url()), r);
  REQUIRE(waitFor([&] { return !r.first("failed").empty(); }));
  std::string why = r.first("failed");
  CHECK(why.find("certificate verify failed") != std::string::npos);
  CHECK(why.find("IP address mismatch") != std::string::npos);
  CHECK(server.upgrades() == 0);
  CHECK(waitFor([&] { return ready(conn->close()); }, 7s));
}

TEST_CASE("a binary frame from the server closes the connection, naming it") {
  Setup s;
  TestServer server(s.tls, Mode::kBinary);
  Recorder r;
  auto conn = openWs(s.options(server.url()), r);
  REQUIRE(waitFor([&] { return !r.first("closed").empty(); }));
  CHECK(r.first("closed").find("binary frame") != std::string::npos);
  CHECK(r.textCount() == 0);
  CHECK(waitFor([&] { return ready(conn->close()); }, 7s));
}

TEST_CASE("a frame over the limit closes the connection, naming the limit") {
  Setup s;
  TestServer server(s.tls, Mode::kBig, 200 * 1024);
  auto o = s.options(server.url());
  o.maxFrameBytes = 100 * 1024;
  Recorder r;
  auto conn = openWs(o, r);
  REQUIRE(waitFor([&] { return !r.first("closed").empty(); }));
  INFO(r.first("closed"));
  CHECK(r.first("closed").find("larger than 102400 bytes") != std::string::npos);
  CHECK(r.textCount() == 0);
  CHECK(waitFor([&] { return ready(conn->close()); }, 7s));
}

TEST_CASE("no TLS answer within the connect timeout: failed, naming the step") {
  Setup s;
  // Listens and never accepts: the kernel completes the TCP handshake, TLS gets no answer.
  asio::io_context ioc;
  tcp::acceptor silent(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto o = s.options("wss://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/x");
  o.connectTimeout = 300ms;
  Recorder r;
  auto t0 = std::chrono::steady_clock::now();
  auto conn = openWs(o, r);
  REQUIRE(waitFor([&] { return !r.first("failed").empty(); }));
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(r.first("failed").find("within 300 ms (TLS handshake)") != std::string::npos);
  CHECK(waitFor([&] { return ready(conn->close()); }, 2s));
}

TEST_CASE("close() against a peer that never answers the close handshake is done within 5 s") {
  Setup s;
  TestServer server(s.tls, Mode::kSilent);
  Recorder r;
  auto conn = openWs(s.options(server.url()), r);
  REQUIRE(waitFor([&] { return !r.first("opened").empty(); }));
  auto t0 = std::chrono::steady_clock::now();
  auto done = conn->close();
  r.closeReturned = true;
  REQUIRE(waitFor([&] { return ready(done); }, 8s));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 6500ms);
  CHECK(took > 4s);  // the close handshake was waited for, not skipped
  CHECK(r.first("closed").empty());
  CHECK(r.late == 0);
}

TEST_CASE("no event and no write completion after close() returned, frames still arriving") {
  Setup s;
  TestServer server(s.tls, Mode::kFlood);
  for (int round = 0; round < 5; ++round) {
    Recorder r;
    auto conn = openWs(s.options(server.url()), r);
    REQUIRE(waitFor([&] { return r.textCount() > 100; }));
    for (int i = 0; i < 50; ++i) conn->sendText("x", [&](core::Status) { r.note("done", ""); });
    conn->ping();
    auto done = conn->close();
    r.closeReturned = true;
    REQUIRE(waitFor([&] { return ready(done); }, 8s));
    CHECK(r.late == 0);
    CHECK(r.first("closed").empty());
  }
}

TEST_CASE("a URL that is not wss:// or TLS material that does not parse is refused at once") {
  Setup s;
  Recorder r;
  auto o = s.options("ws://127.0.0.1:1/x");
  auto c = cloudhub::WsConnection::open(o, r.events());
  REQUIRE_FALSE(c.isOk());
  CHECK(c.status().message().find("is not a wss:// URL") != std::string::npos);
  o = s.options("wss://127.0.0.1:99999/x");
  c = cloudhub::WsConnection::open(o, r.events());
  REQUIRE_FALSE(c.isOk());
  CHECK(c.status().message().find("bad port") != std::string::npos);
  o = s.options("wss://127.0.0.1:1/x");
  o.tls.keyPem = "not a key";
  c = cloudhub::WsConnection::open(o, r.events());
  REQUIRE_FALSE(c.isOk());
  CHECK(c.status().message().find("the key file holds no PEM private key") != std::string::npos);
}
