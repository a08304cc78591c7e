// The WebSocket transport on Boost.Beast (header-only) over Asio's OpenSSL stream.
//
// Threads: each connection owns an io_context and one thread that runs it, from open() until its
// close is done. A link has one connection at a time, plus old ones still closing (at most 5 s
// each); a shared io_context would be process-wide state that someone must start and stop, and a
// thread per connection makes "ready once the connection and its thread are gone" exact. Every
// handler runs on that thread, so the connection's state needs no lock: the caller's thread only
// posts to it. Events pass through a gate that close() shuts.
//
// TLS: a context of our own, built from the PEM texts: only the configured CA is trusted (no
// system paths), TLS 1.2 or newer, the client certificate and its chain. SNI and the host-name
// check as in https_client.cc: OpenSSL's X509_VERIFY_PARAM host (or IP address for an address).
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "outpost/cloudhub/ws_connection.h"

// OpenSSL's SSL_CTX_add1_chain_cert and SSL_set_tlsext_host_name are macros with C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

namespace outpost::cloudhub {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

// A peer that does not answer the close handshake is cut off after this long.
constexpr std::chrono::seconds kCloseTimeout{5};
// Frames are read in parts of this size, the limit checked after each.
constexpr size_t kReadChunkBytes = size_t{64} * 1024;
// The read buffer grows to the largest frame; past this it is given back after the frame.
constexpr size_t kKeepReadBufferBytes = size_t{64} * 1024;

std::string opensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail from OpenSSL";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Parsed TLS material, until it is set on the connection's context (which keeps references).
struct TlsObjects {
  std::vector<X509*> cas;
  X509* cert = nullptr;
  std::vector<X509*> chain;
  EVP_PKEY* key = nullptr;
  TlsObjects() = default;
  TlsObjects(const TlsObjects&) = delete;
  TlsObjects& operator=(const TlsObjects&) = delete;
  ~TlsObjects() {
    for (auto* c : cas) X509_free(c);
    for (auto* c : chain) X509_free(c);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

std::vector<X509*> readCerts(const std::string& pem) {
  std::vector<X509*> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return out;
  while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) out.push_back(x);
  ERR_clear_error();  // the end of the text reads as an error
  BIO_free(bio);
  return out;
}

core::Result<std::unique_ptr<TlsObjects>> parseTls(const WsTlsMaterial& m) {
  auto t = std::make_unique<TlsObjects>();
  t->cas = readCerts(m.caPem);
  if (t->cas.empty()) return core::invalidArgument("the CA file holds no PEM certificate");
  auto certs = readCerts(m.certPem);
  if (certs.empty()) return core::invalidArgument("the certificate file holds no PEM certificate");
  t->cert = certs[0];
  t->chain.assign(certs.begin() + 1, certs.end());
  BIO* bio = BIO_new_mem_buf(m.keyPem.data(), static_cast<int>(m.keyPem.size()));
  if (bio) {
    t->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
  }
  if (!t->key)
    return core::invalidArgument("the key file holds no PEM private key: " + opensslError());
  if (X509_check_private_key(t->cert, t->key) != 1) {
    ERR_clear_error();
    return core::invalidArgument("the private key does not match the certificate");
  }
  return t;
}

// Only the configured CA, TLS 1.2 or newer, our certificate, its chain and key.
core::Status configureTls(ssl::context& ctx, const TlsObjects& t) {
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  X509_STORE* store = SSL_CTX_get_cert_store(c);
  for (X509* ca : t.cas) X509_STORE_add_cert(store, ca);  // takes its own reference
  ERR_clear_error();                                      // a CA listed twice is not an error
  if (SSL_CTX_use_certificate(c, t.cert) != 1)
    return core::invalidArgument("the client certificate cannot be used: " + opensslError());
  for (X509* x : t.chain) {
    if (SSL_CTX_add1_chain_cert(c, x) != 1)
      return core::invalidArgument("the certificate chain cannot be used: " + opensslError());
  }
  if (SSL_CTX_use_PrivateKey(c, t.key) != 1)
    return core::invalidArgument("the private key cannot be used: " + opensslError());
  ctx.set_verify_mode(ssl::verify_peer);
  return core::okStatus();
}

struct Url {
  std::string host, port, target;
  bool ip = false;  // host is an address: no SNI, the certificate must name the address
  std::string hostPort() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
  }
  // The Host header: the port only when it is not wss's default.
  std::string hostHeader() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return port == "443" ? h : h + ":" + port;
  }
};

core::Result<Url> parseUrl(const std::string& url) {
  const std::string scheme = "wss://";
  if (url.rfind(scheme, 0) != 0) return core::invalidArgument(url + " is not a wss:// URL");
  std::string rest = url.substr(scheme.size());
  Url u;
  u.target = "/";
  u.port = "443";
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    u.target = rest.substr(slash);
    rest.resize(slash);
  }
  if (!rest.empty() && rest[0] == '[') {  // [::1]:10000
    auto close = rest.find(']');
    if (close == std::string::npos) return core::invalidArgument("bad IPv6 address in " + url);
    u.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return core::invalidArgument("bad address in " + url);
      u.port = rest.substr(close + 2);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    u.host = rest.substr(0, colon);
    u.port = rest.substr(colon + 1);
  } else {
    u.host = rest;
  }
  if (u.host.empty()) return core::invalidArgument("no host in " + url);
  if (u.port.empty() || u.port.size() > 5 ||
      u.port.find_first_not_of("0123456789") != std::string::npos || std::stoi(u.port) == 0 ||
      std::stoi(u.port) > 65535)
    return core::invalidArgument("bad port in " + url);
  ErrorCode ec;
  asio::ip::make_address(u.host, ec);
  u.ip = !ec;
  return u;
}

// The first line of a refusal's body, short and printable, for the reason.
std::string excerpt(const std::string& body) {
  std::string line = body.substr(0, body.find('\n'));
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

// Every event passes through here: once close() shut the gate, nothing reaches the caller.
class Gate {
 public:
  explicit Gate(WsEvents events) : events_(std::move(events)) {}

  void opened() {
    std::lock_guard lock(mu_);
    if (!open_ || opened_) return;
    opened_ = true;
    if (events_.opened) events_.opened();
  }
  // The end: `failed` before the connection opened, `closed` after; once.
  void ended(const std::string& why) {
    std::lock_guard lock(mu_);
    if (!open_) return;
    open_ = false;
    if (opened_) {
      if (events_.closed) events_.closed(why);
    } else if (events_.failed) {
      events_.failed(why);
    }
  }
  void text(std::string text) {
    std::lock_guard lock(mu_);
    if (open_ && events_.text) events_.text(std::move(text));
  }
  void pong() {
    std::lock_guard lock(mu_);
    if (open_ && events_.pong) events_.pong();
  }
  void run(const std::function<void()>& f) {
    std::lock_guard lock(mu_);
    if (open_) f();
  }
  void shut() {
    std::lock_guard lock(mu_);
    open_ = false;
  }

 private:
  std::mutex mu_;
  bool open_ = true;
  bool opened_ = false;
  WsEvents events_;
};

// One connection and the thread that runs it. Its handlers capture `this`: they only run inside
// io_context::run(), and the thread holds a reference to the Core until run() returned.
class Core : public std::enable_shared_from_this<Core> {
 public:
  Core(Url url, WsConnectOptions options, WsEvents events)
      : url_(std::move(url)), opts_(std::move(options)), gate_(std::move(events)) {
    opts_.tls = {};  // parsed already; no copy of the key kept
  }

  core::Status configure(const TlsObjects& tls) { return configureTls(ctx_, tls); }

  // Starts connecting on a new thread.
  void start() {
    ws_.emplace(ioc_, ctx_);
    asio::post(ioc_, [this] { begin(); });
    std::thread([self = shared_from_this()]() mutable {
      pthread_setname_np(pthread_self(), "cloudhub-ws-io");
      for (;;) {
        try {
          self->ioc_.run();
          break;
        } catch (const std::exception&) {
          // A handler threw (allocation): the connection goes on as its state says.
        }
      }
      self->ws_.reset();  // the socket is closed before anyone hears that we are gone
      auto gone = self->gone_;
      self.reset();
      gone->set_value();
    }).detach();
  }

  void sendText(std::string text, std::function<void(core::Status)> done) {
    asio::post(ioc_, [this, text = std::move(text), done = std::move(done)]() mutable {
      if (!upgraded_ || broken_ || closing_) {
        core::Status s = core::unavailable("sending a frame: the WebSocket connection is not open");
        if (done) gate_.run([&] { done(s); });
        return;
      }
      out_.push_back({std::move(text), std::move(done)});
      if (!writing_) write();
    });
  }

  void ping() {
    asio::post(ioc_, [this] {
      if (!upgraded_ || broken_ || closing_ || pinging_) return;
      pinging_ = true;
      ws_->async_ping(websocket::ping_data("outpost"), [this](ErrorCode) { pinging_ = false; });
    });
  }

  std::shared_future<void> close() {
    gate_.shut();
    std::call_once(closeOnce_, [this] { asio::post(ioc_, [this] { doClose(); }); });
    return goneFuture_;
  }

 private:
  using Stream = websocket::stream<beast::ssl_stream<tcp::socket>>;
  struct Outgoing {
    std::string text;
    std::function<void(core::Status)> done;
  };

  // ---- connecting (each step checks that nothing ended the attempt meanwhile)
  bool finished() const { return broken_ || closing_; }

  void begin() {
    if (finished()) return;
    deadline_.expires_after(opts_.connectTimeout);
    deadline_.async_wait([this](ErrorCode ec) {
      if (!ec && !upgraded_ && !finished()) {
        fail("no WebSocket connection to " + url_.hostPort() + " within " +
             std::to_string(opts_.connectTimeout.count()) + " ms (" + phase_ + ")");
      }
    });
    resolve();
  }

  // getaddrinfo has no timeout and a site whose uplink is down can wait long for its DNS server:
  // the lookup runs on a thread of its own that holds no part of the connection, so neither the
  // deadline nor close() waits for it.
  void resolve() {
    phase_ = "looking up " + url_.host;
    std::weak_ptr<Core> weak = weak_from_this();
    try {
      std::thread([weak, host = url_.host, port = url_.port] {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
        std::vector<tcp::endpoint> endpoints;
        for (addrinfo* a = rc == 0 ? res : nullptr; a; a = a->ai_next) {
          if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
          tcp::endpoint e;
          if (a->ai_addrlen > e.capacity()) continue;
          std::memcpy(e.data(), a->ai_addr, a->ai_addrlen);
          e.resize(a->ai_addrlen);
          endpoints.push_back(e);
        }
        if (res) freeaddrinfo(res);
        if (auto self = weak.lock()) {
          Core* c = self.get();
          asio::post(c->ioc_, [c, rc, endpoints = std::move(endpoints)]() mutable {
            c->resolved(rc, std::move(endpoints));
          });
        }
      }).detach();
    } catch (const std::exception& e) {
      fail(std::string("cannot start the name lookup: ") + e.what());
    }
  }

  void resolved(int rc, std::vector<tcp::endpoint> endpoints) {
    if (finished()) return;
    if (rc != 0) return fail("cannot resolve " + url_.host + ": " + gai_strerror(rc));
    if (endpoints.empty()) return fail("cannot resolve " + url_.host + ": no IP address");
    phase_ = "connecting";
    asio::async_connect(beast::get_lowest_layer(*ws_), endpoints,
                        [this](ErrorCode ec, const tcp::endpoint&) { connected(ec); });
  }

  void connected(ErrorCode ec) {
    if (finished()) return;
    if (ec) return fail("cannot connect to " + url_.hostPort() + ": " + ec.message());
    SSL* s = ws_->next_layer().native_handle();
    if (!url_.ip) SSL_set_tlsext_host_name(s, url_.host.c_str());
    X509_VERIFY_PARAM* param = SSL_get0_param(s);
    if (url_.ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, url_.host.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, url_.host.c_str(), 0);
    phase_ = "TLS handshake";
    ws_->next_layer().async_handshake(ssl::stream_base::client,
                                      [this](ErrorCode e) { tlsDone(e); });
  }

  void tlsDone(ErrorCode ec) {
    if (finished()) return;
    if (ec) {
      long verify = SSL_get_verify_result(ws_->next_layer().native_handle());
      if (verify != X509_V_OK) {
        return fail("TLS handshake with " + url_.hostPort() +
                    " failed: certificate verify failed: " + X509_verify_cert_error_string(verify) +
                    " (the server's certificate must chain to the configured CA and name " +
                    url_.host + ")");
      }
      return fail("TLS handshake with " + url_.hostPort() + " failed: " + ec.message());
    }
    ws_->set_option(
        websocket::stream_base::decorator([headers = opts_.headers](websocket::request_type& req) {
          req.set(http::field::user_agent, "outpost");
          for (const auto& [name, value] : headers) req.set(name, value);
        }));
    // The frame limit is ours (onRead): Beast's own would end in a teardown whose error, not the
    // size, is what the read reports.
    ws_->read_message_max(0);
    ws_->control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::pong) gate_.pong();
    });
    phase_ = "WebSocket upgrade";
    ws_->async_handshake(response_, url_.hostHeader(), url_.target,
                         [this](ErrorCode e) { upgraded(e); });
  }

  void upgraded(ErrorCode ec) {
    if (finished()) return;
    if (ec == websocket::error::upgrade_declined) {
      std::string why = "the server refused the WebSocket upgrade with HTTP " +
                        std::to_string(response_.result_int()) + " " +
                        std::string(response_.reason());
      if (std::string body = excerpt(response_.body()); !body.empty()) why += ": " + body;
      return fail(why);
    }
    if (ec) return fail("WebSocket upgrade with " + url_.hostPort() + " failed: " + ec.message());
    response_ = {};
    upgraded_ = true;
    deadline_.cancel();
    gate_.opened();
    read();
  }

  // A connect that did not succeed, or an open connection that ended.
  void fail(const std::string& why) {
    if (broken_) return;
    broken_ = true;
    gate_.ended(why);
    closeSocket();
  }

  // ---- reading
  void read() {
    ws_->async_read_some(rx_, kReadChunkBytes, [this](ErrorCode ec, size_t) { onRead(ec); });
  }

  void onRead(ErrorCode ec) {
    if (finished()) return;
    if (ec == websocket::error::closed) {
      const websocket::close_reason& r = ws_->reason();
      std::string why = "connection closed by the server (code " + std::to_string(r.code);
      if (!r.reason.empty()) why += ", " + std::string(r.reason.data(), r.reason.size());
      return fail(why + ")");
    }
    if (ec) return fail("connection lost: " + ec.message());
    if (!opts_.binary && !ws_->got_text()) {
      // PROTOCOL.md §1: one message is one text frame. Say so, and close politely.
      return refuseFrame(
          "the server sent a binary frame, and CloudHub sends text frames only; connection closed",
          websocket::close_reason(websocket::close_code::policy_error, "text frames only"));
    }
    if (opts_.binary && ws_->got_text()) {
      return refuseFrame(
          "the server sent a text frame, and the stream tunnel sends binary frames only; "
          "connection closed",
          websocket::close_reason(websocket::close_code::policy_error, "binary frames only"));
    }
    if (rx_.size() > opts_.maxFrameBytes) {
      return refuseFrame(
          "the server sent a frame larger than " + std::to_string(opts_.maxFrameBytes) +
              " bytes, the limit; connection closed",
          websocket::close_reason(websocket::close_code::too_big, "frame too large"));
    }
    if (!ws_->is_message_done()) return read();
    std::string text = beast::buffers_to_string(rx_.data());
    rx_.consume(rx_.size());
    if (rx_.capacity() > kKeepReadBufferBytes) rx_.shrink_to_fit();
    gate_.text(std::move(text));
    read();
  }

  void refuseFrame(const std::string& why, const websocket::close_reason& reason) {
    rx_ = beast::flat_buffer();
    broken_ = true;
    gate_.ended(why);
    closeHandshake(reason);
  }

  // ---- writing: Beast allows one write at a time, so frames wait here in order
  void write() {
    writing_ = true;
    ws_->binary(opts_.binary);
    ws_->async_write(asio::buffer(out_.front().text),
                     [this](ErrorCode ec, size_t) { written(ec); });
  }

  void written(ErrorCode ec) {
    writing_ = false;
    Outgoing o = std::move(out_.front());
    out_.pop_front();
    if (closing_) return out_.clear();
    core::Status s = ec ? core::unavailable("sending a frame: " + ec.message()) : core::okStatus();
    if (o.done) gate_.run([&] { o.done(s); });
    if (ec) fail("connection lost: sending a frame: " + ec.message());
    if (broken_) {
      core::Status gone = core::unavailable("sending a frame: the WebSocket connection ended");
      for (auto& rest : out_)
        if (rest.done) gate_.run([&] { rest.done(gone); });
      return out_.clear();
    }
    if (!out_.empty()) write();
  }

  // ---- closing
  void doClose() {
    closing_ = true;
    work_.reset();  // run() returns once the last operation below is done
    if (closeStarted_) return;
    if (upgraded_ && !broken_ && ws_->is_open()) {
      closeHandshake(websocket::close_code::normal);
    } else {
      closeSocket();
    }
  }

  // The close handshake, bounded: a silent peer gets kCloseTimeout, then the socket is closed.
  void closeHandshake(const websocket::close_reason& reason) {
    closeStarted_ = true;
    deadline_.expires_after(kCloseTimeout);
    deadline_.async_wait([this](ErrorCode ec) {
      if (!ec) closeSocket();
    });
    ws_->async_close(reason, [this](ErrorCode) { closeSocket(); });
  }

  // Ends every pending operation (each completes with an error).
  void closeSocket() {
    deadline_.cancel();
    ErrorCode ignored;
    beast::get_lowest_layer(*ws_).close(ignored);
  }

  const Url url_;
  WsConnectOptions opts_;
  Gate gate_;
  // Destroyed in reverse order: the stream before the context and the io_context it uses.
  asio::io_context ioc_{1};
  ssl::context ctx_{ssl::context::tls_client};
  std::optional<Stream> ws_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{ioc_.get_executor()};
  asio::steady_timer deadline_{ioc_};  // the connect deadline, later the close bound
  // ---- connection thread only
  std::string phase_ = "starting";  // what the connect was doing, for the deadline's reason
  websocket::response_type response_;
  beast::flat_buffer rx_;
  std::deque<Outgoing> out_;
  bool upgraded_ = false;
  bool broken_ = false;  // failed or ended; no more events
  bool closing_ = false;
  bool closeStarted_ = false;
  bool writing_ = false;
  bool pinging_ = false;
  // ---- any thread
  std::once_flag closeOnce_;
  std::shared_ptr<std::promise<void>> gone_ = std::make_shared<std::promise<void>>();
  std::shared_future<void> goneFuture_ = gone_->get_future().share();
};

// The caller's handle: closing it (or dropping it) closes the connection.
class BeastConnection final : public WsConnection {
 public:
  explicit BeastConnection(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~BeastConnection() override { core_->close(); }

  // ---- WsConnection
  void sendText(std::string text, std::function<void(core::Status)> done) override {
    core_->sendText(std::move(text), std::move(done));
  }
  void ping() override { core_->ping(); }
  std::shared_future<void> close() override { return core_->close(); }

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace

core::Status checkTlsMaterial(const WsTlsMaterial& tls) { return parseTls(tls).status(); }

core::Result<std::shared_ptr<WsConnection>> WsConnection::open(WsConnectOptions options,
                                                               WsEvents events) {
  OUTPOST_ASSIGN_OR_RETURN(Url url, parseUrl(options.url));
  OUTPOST_ASSIGN_OR_RETURN(std::unique_ptr<TlsObjects> tls, parseTls(options.tls));
  if (options.maxFrameBytes == 0) return core::invalidArgument("maxFrameBytes must be positive");
  if (options.connectTimeout.count() <= 0)
    return core::invalidArgument("connectTimeout must be positive");
  try {
    auto conn = std::make_shared<Core>(std::move(url), std::move(options), std::move(events));
    OUTPOST_RETURN_IF_ERROR(conn->configure(*tls));
    conn->start();
    return std::shared_ptr<WsConnection>(std::make_shared<BeastConnection>(std::move(conn)));
  } catch (const std::exception& e) {
    return core::internalError(std::string("starting the WebSocket connection: ") + e.what());
  }
}

}  // namespace outpost::cloudhub
