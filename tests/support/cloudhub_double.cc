#include "support/cloudhub_double.h"

#include <openssl/bn.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

namespace outpost::test {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using boost::system::error_code;
using nlohmann::json;

// A TCP socket whose reads and writes can be held back. It sits below TLS, so while the gate is
// shut not one byte is read or written: no TLS records, no WebSocket pongs, no answers, yet the
// connection stays open. That is a silent drop (a blackholed link) as the edge sees it.
class GatedSocket {
 public:
  using executor_type = tcp::socket::executor_type;
  using lowest_layer_type = tcp::socket;

  GatedSocket(tcp::socket socket, bool open)
      : socket_(std::move(socket)), gate_(socket_.get_executor()), open_(open) {
    gate_.expires_at(net::steady_timer::time_point::max());
    socket_.non_blocking(true);
  }
  GatedSocket(GatedSocket&&) = default;

  executor_type get_executor() { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_; }

  void setOpen(bool open) {
    open_ = open;
    if (open) gate_.cancel();  // wakes the held operations; they re-check the gate
  }
  void stop() {
    stopped_ = true;
    gate_.cancel();
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  // Beast closes the lowest layer this way (found by argument-dependent lookup).
  friend void beast_close_socket(GatedSocket& s) { s.stop(); }

  template <class Buffers, class Handler>
  auto async_read_some(const Buffers& buffers, Handler&& handler) {
    return net::async_initiate<Handler, void(error_code, std::size_t)>(
        [this](auto h, const Buffers& b) { startRead(b, std::move(h)); }, handler, buffers);
  }
  template <class Buffers, class Handler>
  auto async_write_some(const Buffers& buffers, Handler&& handler) {
    return net::async_initiate<Handler, void(error_code, std::size_t)>(
        [this](auto h, const Buffers& b) { startWrite(b, std::move(h)); }, handler, buffers);
  }

 private:
  // Reads only while the gate is open: a non-blocking read, and when the kernel has nothing, a wait
  // for readability, after which the gate is checked again. So nothing is taken from the kernel
  // while shut (a read posted on the socket itself could not be held back). The read comes first
  // because the reactor is edge-triggered: a wait only fires for data arriving after it began.
  template <class Buffers, class H>
  void startRead(const Buffers& b, H h) {
    if (stopped_) return complete(std::move(h), net::error::operation_aborted, 0);
    if (!open_) {
      gate_.async_wait(
          [this, b, h = std::move(h)](error_code) mutable { startRead(b, std::move(h)); });
      return;
    }
    error_code ec;
    std::size_t n = socket_.read_some(b, ec);
    if (ec != net::error::would_block && ec != net::error::try_again) {
      return complete(std::move(h), ec, n);
    }
    socket_.async_wait(tcp::socket::wait_read, [this, b, h = std::move(h)](error_code e) mutable {
      if (e) return complete(std::move(h), e, 0);
      startRead(b, std::move(h));
    });
  }
  template <class Buffers, class H>
  void startWrite(const Buffers& b, H h) {
    if (stopped_) return complete(std::move(h), net::error::operation_aborted, 0);
    if (open_) return socket_.async_write_some(b, std::move(h));
    gate_.async_wait(
        [this, b, h = std::move(h)](error_code) mutable { startWrite(b, std::move(h)); });
  }
  template <class H>
  void complete(H h, error_code ec, std::size_t n) {
    net::post(socket_.get_executor(), beast::bind_front_handler(std::move(h), ec, n));
  }

  tcp::socket socket_;
  net::steady_timer gate_;  // never expires; cancelled to wake operations held at the gate
  bool open_ = true;
  bool stopped_ = false;
};

using WsStream = websocket::stream<ssl::stream<GatedSocket>>;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// route.<key> or header.<key> of an envelope as a string, "" when absent or not a string.
std::string field(const json& env, const char* part, const char* key) {
  if (!env.is_object()) return "";
  auto p = env.find(part);
  if (p == env.end() || !p->is_object()) return "";
  auto k = p->find(key);
  return k != p->end() && k->is_string() ? k->get<std::string>() : "";
}

std::vector<std::string> splitPath(const std::string& s) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t slash = s.find('/', start);
    parts.push_back(s.substr(start, slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return parts;
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Removes strategic-merge-patch directives ("$setElementOrder/...", "$patch", ...) so what is left
// applies as a JSON merge patch (RFC 7386). Lists are then replaced rather than merged by key:
// close enough for a double whose answers the edge does not read beyond their shape.
void stripDirectives(json& patch) {
  if (!patch.is_object()) return;
  for (auto it = patch.begin(); it != patch.end();) {
    if (!it.key().empty() && it.key()[0] == '$') {
      it = patch.erase(it);
    } else {
      stripDirectives(it.value());
      ++it;
    }
  }
}

struct CertInfo {
  std::string cn, o, serial;
};

std::string nameEntry(X509_NAME* name, int nid) {
  int i = X509_NAME_get_index_by_NID(name, nid, -1);
  if (i < 0) return "";
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (len < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

CertInfo peerCert(SSL* ssl) {
  CertInfo info;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return info;
  X509_NAME* subject = X509_get_subject_name(cert);
  info.cn = nameEntry(subject, NID_commonName);
  info.o = nameEntry(subject, NID_organizationName);
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      info.serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  X509_free(cert);
  return info;
}

}  // namespace

class CloudHubDouble::Impl {
 public:
  class Session;

  explicit Impl(CloudHubDoubleOptions options);
  ~Impl();

  // ---- called from any thread (state under mu_) ----
  std::string send(json envelope);
  std::string sendObject(const std::string& operation, const std::string& resource,
                         const json& object);
  void setForwarding(bool on);
  void closeConnections();

  // ---- io thread ----
  void doAccept();
  void tick();
  void refused(std::string reason);
  int opened(Session& s, HubConnection conn);
  void ended(Session& s);
  std::vector<std::string> onFrame(int connection, const std::string& text);
  void forget(int serial) { live_.erase(serial); }
  std::shared_ptr<Session> current() const;
  std::optional<std::string> checkUpgrade(const http::request<http::string_body>& req,
                                          const CertInfo& cert) const;
  void countPing() {
    std::lock_guard lock(mu_);
    ++pings_;
  }

  // ---- io thread, under mu_ ----
  std::string uuid4();
  std::optional<json> answer(const json& request);
  std::optional<json> answerPodDelete(const json& request, const std::string& resource);
  json stamp(json object);
  void registerLater(const json& request, const std::string& resource, const json& node);
  json notFound(const std::string& resource) const;
  json response(const json& request, json content) {
    return json{{"header",
                 {{"msg_id", uuid4()},
                  {"parent_msg_id", field(request, "header", "msg_id")},
                  {"timestamp", nowMs()}}},
                {"route",
                 {{"source", "edgecontroller"},
                  {"group", "resource"},
                  {"operation", "response"},
                  {"resource", field(request, "route", "resource")}}},
                {"content", std::move(content)}};
  }

  struct Pending {
    std::string msgId, text;
    std::chrono::steady_clock::time_point lastSent;
    int deliveredOn = 0;  // connection it was last written to
  };

  const CloudHubDoubleOptions options_;
  net::io_context ioc_;
  ssl::context ctx_{ssl::context::tls_server};
  tcp::acceptor acceptor_{ioc_};
  net::steady_timer resendTimer_{ioc_};
  int port_ = 0;
  bool stopping_ = false;                         // io thread
  int nextSerial_ = 0;                            // io thread
  std::map<int, std::shared_ptr<Session>> live_;  // io thread: every session not yet finished

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  uint64_t generation_ = 0;  // bumped on every change a waiter may look at
  std::mt19937_64 rng_;
  bool forwarding_ = true;
  int nextConnection_ = 0;
  std::vector<ReceivedFrame> frames_;
  std::map<int, HubConnection> connections_;
  std::vector<json> sent_;
  std::vector<std::string> refusals_;
  std::deque<Pending> pending_;
  std::map<std::string, int> acks_;
  std::map<std::string, json> objects_;
  std::vector<json> followUps_;           // cloud messages an answer causes, sent right after it
  std::vector<std::string> podsDeleted_;  // deletions the edge asked for and the double did
  std::vector<std::string> podDeletesIgnored_;  // delete requests CloudCore would not read
  std::vector<std::string> silentQueries_;      // resource prefixes whose queries get no answer
  uint64_t resourceVersion_ = 1000;
  int pings_ = 0;
  std::function<void(const std::string&)> ackListener_;
  int resends_ = 0;

  std::thread thread_;
};

class CloudHubDouble::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& hub, int serial, tcp::socket socket, bool open)
      : hub_(hub), serial_(serial), ws_(GatedSocket(std::move(socket), open), hub.ctx_) {}

  int connection() const { return connection_; }
  bool live() const { return connection_ != 0 && !ended_; }
  GatedSocket& gated() { return ws_.next_layer().next_layer(); }

  void start() {
    ws_.next_layer().async_handshake(
        ssl::stream_base::server,
        [self = shared_from_this()](error_code ec) { self->onHandshake(ec); });
  }

  void stop() {
    ended_ = true;
    writes_.clear();
    gated().stop();
  }

  void enqueue(std::string text, bool close = false) {
    if (ended_) return;
    writes_.push_back({std::move(text), close});
    if (writes_.size() == 1) doWrite();
  }

 private:
  struct Write {
    std::string text;
    bool close = false;
  };

  void onHandshake(error_code ec) {
    if (ec) return fail("TLS handshake failed: " + ec.message());
    cert_ = peerCert(ws_.next_layer().native_handle());
    http::async_read(
        ws_.next_layer(), buffer_, request_,
        [self = shared_from_this()](error_code e, std::size_t) { self->onRequest(e); });
  }

  void onRequest(error_code ec) {
    if (ec) return fail("reading the upgrade request failed: " + ec.message());
    if (auto reason = hub_.checkUpgrade(request_, cert_)) return refuse(*reason);
    websocket::stream_base::timeout none{};
    none.handshake_timeout = websocket::stream_base::none();
    none.idle_timeout = websocket::stream_base::none();
    none.keep_alive_pings = false;
    ws_.set_option(none);
    ws_.read_message_max(64u << 20);
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::ping) hub_.countPing();
    });
    ws_.async_accept(request_, [self = shared_from_this()](error_code e) { self->onAccept(e); });
  }

  void onAccept(error_code ec) {
    if (ec) return fail("WebSocket accept failed: " + ec.message());
    HubConnection conn;
    conn.path = std::string(request_.target());
    for (const auto& f : request_)
      conn.headers[lower(std::string(f.name_string()))] = std::string(f.value());
    conn.clientCn = cert_.cn;
    conn.clientO = cert_.o;
    conn.clientSerial = cert_.serial;
    conn.open = true;
    connection_ = hub_.opened(*this, std::move(conn));
    doRead();
  }

  void doRead() {
    ws_.async_read(readBuffer_,
                   [self = shared_from_this()](error_code ec, std::size_t) { self->onRead(ec); });
  }

  void onRead(error_code ec) {
    if (ec) {
      ended_ = true;
      writes_.clear();
      hub_.ended(*this);
      hub_.forget(serial_);
      return;
    }
    std::string text = beast::buffers_to_string(readBuffer_.data());
    readBuffer_.consume(readBuffer_.size());
    for (auto& answer : hub_.onFrame(connection_, text)) enqueue(std::move(answer));
    doRead();
  }

  void doWrite() {
    auto done = [self = shared_from_this()](error_code ec, std::size_t = 0) { self->onWrite(ec); };
    if (writes_.front().close) {
      ws_.async_close(websocket::close_code::normal, [done](error_code ec) { done(ec); });
    } else {
      ws_.text(true);
      ws_.async_write(net::buffer(writes_.front().text), done);
    }
  }

  void onWrite(error_code ec) {
    if (ended_ || writes_.empty()) return;
    if (ec) {
      writes_.clear();  // the read side notices the broken stream and ends the session
      return;
    }
    writes_.pop_front();
    if (!writes_.empty()) doWrite();
  }

  void fail(std::string reason) {
    hub_.refused(std::move(reason));
    ended_ = true;
    gated().stop();
    hub_.forget(serial_);
  }

  void refuse(const std::string& reason) {
    hub_.refused("403: " + reason);
    response_ = {http::status::forbidden, request_.version()};
    response_.set(http::field::content_type, "text/plain");
    response_.keep_alive(false);
    response_.body() = reason + "\n";
    response_.prepare_payload();
    http::async_write(ws_.next_layer(), response_,
                      [self = shared_from_this()](error_code, std::size_t) {
                        self->ended_ = true;
                        self->gated().stop();
                        self->hub_.forget(self->serial_);
                      });
  }

  Impl& hub_;
  int serial_;
  int connection_ = 0;  // 0 until the upgrade is accepted
  bool ended_ = false;
  WsStream ws_;
  CertInfo cert_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  beast::flat_buffer readBuffer_;
  std::deque<Write> writes_;
};

CloudHubDouble::Impl::Impl(CloudHubDoubleOptions options) : options_(std::move(options)) {
  std::random_device rd;
  rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  SSL_CTX_set_min_proto_version(ctx_.native_handle(), TLS1_2_VERSION);
  auto load = [](const std::string& what, const std::string& file, auto&& fn) {
    if (file.empty()) throw std::invalid_argument("CloudHubDouble: " + what + " is not set");
    error_code ec;
    fn(file, ec);
    if (ec) throw std::runtime_error("CloudHubDouble: " + what + " " + file + ": " + ec.message());
  };
  load("caFile", options_.caFile,
       [&](const std::string& f, error_code& ec) { ctx_.load_verify_file(f, ec); });
  load("certFile", options_.certFile,
       [&](const std::string& f, error_code& ec) { ctx_.use_certificate_chain_file(f, ec); });
  load("keyFile", options_.keyFile, [&](const std::string& f, error_code& ec) {
    ctx_.use_private_key_file(f, ssl::context::pem, ec);
  });
  ctx_.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  if (options_.resendInterval.count() <= 0) {
    throw std::invalid_argument("CloudHubDouble: resendInterval must be positive");
  }

  tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(endpoint.protocol());
  acceptor_.bind(endpoint);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  doAccept();
  tick();
  thread_ = std::thread([this] {
    while (true) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "CloudHubDouble: handler threw: %s\n", e.what());
      }
    }
  });
}

CloudHubDouble::Impl::~Impl() {
  net::post(ioc_, [this] {
    stopping_ = true;
    error_code ec;
    acceptor_.close(ec);
    resendTimer_.cancel();
    auto live = std::move(live_);
    live_.clear();
    for (auto& [serial, session] : live) session->stop();
  });
  thread_.join();
}

void CloudHubDouble::Impl::doAccept() {
  acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
    if (stopping_ || ec == net::error::operation_aborted) return;
    if (!ec) {
      bool open;
      {
        std::lock_guard lock(mu_);
        open = forwarding_;
      }
      int serial = ++nextSerial_;
      auto session = std::make_shared<Session>(*this, serial, std::move(socket), open);
      live_[serial] = session;
      session->start();
    }
    doAccept();
  });
}

// Resends every unacknowledged message whose last copy went out resendInterval ago.
void CloudHubDouble::Impl::tick() {
  if (stopping_) return;
  auto interval = options_.resendInterval;
  auto step = std::clamp<std::chrono::milliseconds>(interval / 10, std::chrono::milliseconds(5),
                                                    std::chrono::milliseconds(250));
  if (auto session = current()) {
    std::vector<std::string> due;
    {
      std::lock_guard lock(mu_);
      auto now = std::chrono::steady_clock::now();
      if (forwarding_) {
        for (auto& p : pending_) {
          if (p.deliveredOn == session->connection() && now - p.lastSent < interval) continue;
          if (p.deliveredOn != 0) ++resends_;
          p.lastSent = now;
          p.deliveredOn = session->connection();
          due.push_back(p.text);
        }
      }
    }
    for (auto& text : due) session->enqueue(std::move(text));
  }
  resendTimer_.expires_after(step);
  resendTimer_.async_wait([this](error_code ec) {
    if (!ec) tick();
  });
}

std::shared_ptr<CloudHubDouble::Impl::Session> CloudHubDouble::Impl::current() const {
  for (auto it = live_.rbegin(); it != live_.rend(); ++it) {
    if (it->second->live()) return it->second;
  }
  return nullptr;
}

void CloudHubDouble::Impl::refused(std::string reason) {
  std::lock_guard lock(mu_);
  refusals_.push_back(std::move(reason));
  ++generation_;
  changed_.notify_all();
}

int CloudHubDouble::Impl::opened(Session& s, HubConnection conn) {
  std::vector<std::string> texts;
  int id;
  {
    std::lock_guard lock(mu_);
    id = ++nextConnection_;
    conn.id = id;
    connections_[id] = std::move(conn);
    auto now = std::chrono::steady_clock::now();
    for (auto& p : pending_) {  // CloudHub sends what is unacknowledged on every new connection
      if (p.deliveredOn != 0) ++resends_;
      p.deliveredOn = id;
      p.lastSent = now;
      texts.push_back(p.text);
    }
    ++generation_;
    changed_.notify_all();
  }
  // The session's connection id is set by the caller from our return value; write after that.
  net::post(ioc_, [self = s.shared_from_this(), texts = std::move(texts)]() mutable {
    for (auto& t : texts) self->enqueue(std::move(t));
  });
  return id;
}

void CloudHubDouble::Impl::ended(Session& s) {
  std::lock_guard lock(mu_);
  auto it = connections_.find(s.connection());
  if (it != connections_.end()) it->second.open = false;
  ++generation_;
  changed_.notify_all();
}

std::optional<std::string> CloudHubDouble::Impl::checkUpgrade(
    const http::request<http::string_body>& req, const CertInfo& cert) const {
  std::string target(req.target());
  auto parts = splitPath(target);
  if (!websocket::is_upgrade(req)) return "not a WebSocket upgrade request: " + target;
  if (parts.size() != 4 || !parts[0].empty() || parts[3] != "events" || parts[2].empty()) {
    return "wrong path " + target + ", expected /<project_id>/<node>/events";
  }
  if (parts[1] != options_.projectId) {
    return "wrong project id " + parts[1] + " in path, expected " + options_.projectId;
  }
  auto nodeId = req.find("node_id");
  if (nodeId == req.end()) return "no node_id header";
  if (nodeId->value() != parts[2]) {
    return "node_id header " + std::string(nodeId->value()) + " differs from the path's node " +
           parts[2];
  }
  auto project = req.find("project_id");
  if (project != req.end() && project->value() != options_.projectId) {
    return "project_id header " + std::string(project->value()) + ", expected " +
           options_.projectId;
  }
  if (options_.requireCn && cert.cn != *options_.requireCn) {
    return "client certificate CN " + cert.cn + ", expected " + *options_.requireCn;
  }
  return std::nullopt;
}

std::vector<std::string> CloudHubDouble::Impl::onFrame(int connection, const std::string& text) {
  std::string body = text;
  if (!body.empty() && body.back() == '\n') body.pop_back();
  json env = json::parse(body, nullptr, false);
  if (env.is_discarded()) env = json{{"raw", text}};

  std::vector<std::string> out;
  std::lock_guard lock(mu_);
  frames_.push_back({env, std::chrono::steady_clock::now(), connection});
  if (field(env, "route", "operation") == "response") {
    std::string parent = field(env, "header", "parent_msg_id");
    auto content = env.find("content");
    if (!parent.empty() && content != env.end() && *content == "OK" && acks_.count(parent)) {
      ++acks_[parent];
      if (ackListener_) ackListener_(parent);
      pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                    [&](const Pending& p) { return p.msgId == parent; }),
                     pending_.end());
    }
  }
  if (options_.answerRequests) {
    if (auto reply = answer(env)) {
      acks_.emplace(field(*reply, "header", "msg_id"), 0);
      out.push_back(reply->dump());
      sent_.push_back(std::move(*reply));
    }
    for (auto& f : followUps_) {  // resent until acked, as send() does
      std::string id = field(f, "header", "msg_id");
      pending_.push_back({id, f.dump(), std::chrono::steady_clock::now(), connection});
      acks_.emplace(id, 0);
      out.push_back(f.dump());
      sent_.push_back(std::move(f));
    }
    followUps_.clear();
  }
  ++generation_;
  changed_.notify_all();
  return out;
}

std::string CloudHubDouble::Impl::uuid4() {
  std::uniform_int_distribution<uint64_t> dist;
  uint64_t hi = dist(rng_), lo = dist(rng_);
  hi = (hi & ~uint64_t{0xF000}) | uint64_t{0x4000};            // version 4
  lo = (lo & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);  // variant 10xx
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFull));
  return buf;
}

// What the API server would add to an object it stores: a new resourceVersion, a uid once.
json CloudHubDouble::Impl::stamp(json object) {
  if (!object.is_object()) return object;
  json& meta = object["metadata"];
  if (!meta.is_object()) meta = json::object();
  if (!meta.contains("uid")) meta["uid"] = uuid4();
  meta["resourceVersion"] = std::to_string(++resourceVersion_);
  return object;
}

json CloudHubDouble::Impl::notFound(const std::string& resource) const {
  auto parts = splitPath(resource);
  std::string name = parts.back();
  std::string type = parts.size() >= 2 ? parts[parts.size() - 2] : resource;
  std::string kinds = type == "lease" ? "leases.coordination.k8s.io" : type + "s";
  return json{{"ErrStatus",
               {{"kind", "Status"},
                {"apiVersion", "v1"},
                {"metadata", json::object()},
                {"status", "Failure"},
                {"message", kinds + " \"" + name + "\" not found"},
                {"reason", "NotFound"},
                {"details", {{"name", name}, {"kind", kinds}}},
                {"code", 404}}}};
}

// The cloud's answer to one message from the edge (PROTOCOL.md §1 "What the cloud answers").
std::optional<json> CloudHubDouble::Impl::answer(const json& request) {
  std::string op = field(request, "route", "operation");
  std::string resource = field(request, "route", "resource");
  if (op.empty() || op == "keepalive" || op == "response" || resource.empty()) return std::nullopt;
  auto parts = splitPath(resource);
  std::string type = parts.size() >= 2 ? parts[parts.size() - 2] : "";
  json content = request.value("content", json());

  // Twin changes from the edge: CloudCore's devicecontroller answers "OK" (§2).
  if (op == "update" && resource.starts_with("device/") &&
      resource.ends_with("/twin/edge_updated")) {
    json reply = response(request, "OK");
    reply["route"]["source"] = "devicecontroller";
    reply["route"]["group"] = "twin";
    reply["route"]["resource"] = "twin";
    return reply;
  }
  if (op == "query" || op == "get") {
    if (type.empty()) return std::nullopt;  // e.g. membership/detail: not answered here
    for (const auto& prefix : silentQueries_)
      if (resource.starts_with(prefix)) return std::nullopt;  // told to stay silent
    auto it = objects_.find(resource);
    if (it == objects_.end()) return response(request, notFound(resource));
    json reply = response(request, it->second);
    reply["header"]["resourceversion"] = it->second["metadata"].value("resourceVersion", "");
    return reply;
  }
  if (op == "delete" && type == "pod") return answerPodDelete(request, resource);
  if (op == "insert" && type == "node" && options_.registrationDelay.count() > 0 &&
      !objects_.count(resource)) {
    registerLater(request, resource, content);
    return std::nullopt;
  }
  if ((op == "insert" || op == "update") && (type == "node" || type == "lease")) {
    json& stored = objects_[resource] = stamp(content);
    return response(request, {{"Object", stored}, {"Err", nullptr}});
  }
  if (op == "patch" && (type == "nodepatch" || type == "podpatch")) {
    parts[parts.size() - 2] = type == "nodepatch" ? "node" : "pod";
    std::string target;
    for (std::size_t i = 0; i < parts.size(); ++i) target += (i ? "/" : "") + parts[i];
    json patch =
        content.is_string() ? json::parse(content.get<std::string>(), nullptr, false) : content;
    if (patch.is_discarded() || !patch.is_object()) {
      return response(request, {{"ErrStatus",
                                 {{"kind", "Status"},
                                  {"apiVersion", "v1"},
                                  {"status", "Failure"},
                                  {"message", "the patch is not a JSON object"},
                                  {"reason", "BadRequest"},
                                  {"code", 400}}}});
    }
    auto it = objects_.find(target);
    if (it == objects_.end()) return response(request, notFound(target));
    stripDirectives(patch);
    it->second.merge_patch(patch);
    it->second = stamp(it->second);
    return response(request, {{"Object", it->second}, {"Err", nullptr}});
  }
  return std::nullopt;
}

// The edge's request to delete a pod (edged through its meta manager), as CloudCore's upstream
// controller takes it: the content is the pod's uid as a JSON string, and the pod is deleted at the
// API server with grace period 0 and that uid as precondition. Anything else in the content
// (DeleteOptions, which only newer CloudCores also read) is logged by CloudCore and never
// answered; so is a delete the API server refuses (a uid that is not the pod's: 409). A pod that is
// already gone is answered "OK". Once deleted, CloudCore sends the delete to the edge.
std::optional<json> CloudHubDouble::Impl::answerPodDelete(const json& request,
                                                          const std::string& resource) {
  json content = request.value("content", json());
  if (field(request, "route", "source") != "edged" || !content.is_string()) {
    podDeletesIgnored_.push_back(resource);
    return std::nullopt;
  }
  auto it = objects_.find(resource);
  if (it == objects_.end()) return response(request, "OK");
  if (content.get<std::string>() != it->second["metadata"].value("uid", "")) {
    podDeletesIgnored_.push_back(resource);
    return std::nullopt;
  }
  json gone = it->second;
  objects_.erase(it);
  podsDeleted_.push_back(resource);
  json env{{"header", {{"msg_id", uuid4()}, {"timestamp", nowMs()}}},
           {"route",
            {{"source", "edgecontroller"},
             {"group", "resource"},
             {"operation", "delete"},
             {"resource", resource}}},
           {"content", gone}};
  env["header"]["resourceversion"] = gone["metadata"].value("resourceVersion", "");
  followUps_.push_back(std::move(env));
  return response(request, "OK");
}

// The node comes to exist, and its insert is answered, registrationDelay after the insert.
void CloudHubDouble::Impl::registerLater(const json& request, const std::string& resource,
                                         const json& node) {
  auto timer = std::make_shared<net::steady_timer>(ioc_, options_.registrationDelay);
  timer->async_wait([this, timer, request, resource, node](error_code ec) {
    if (ec || stopping_) return;
    std::string text;
    {
      std::lock_guard lock(mu_);
      json& stored = objects_[resource] = stamp(node);
      json reply = response(request, {{"Object", stored}, {"Err", nullptr}});
      acks_.emplace(field(reply, "header", "msg_id"), 0);
      text = reply.dump();
      sent_.push_back(std::move(reply));
      ++generation_;
      changed_.notify_all();
    }
    if (auto session = current()) session->enqueue(std::move(text));
  });
}

std::string CloudHubDouble::Impl::send(json envelope) {
  if (!envelope.is_object()) throw std::invalid_argument("CloudHubDouble::send: not a JSON object");
  std::string id;
  {
    std::lock_guard lock(mu_);
    json& header = envelope["header"];
    if (!header.is_object()) header = json::object();
    if (!header.contains("msg_id")) header["msg_id"] = uuid4();
    if (!header.contains("timestamp")) header["timestamp"] = nowMs();
    if (!envelope.contains("content")) envelope["content"] = nullptr;
    id = header["msg_id"].get<std::string>();
    pending_.push_back({id, envelope.dump(), {}, 0});
    acks_.emplace(id, 0);
    sent_.push_back(std::move(envelope));
  }
  net::post(ioc_, [this, id] {
    auto session = current();
    if (!session) return;  // sent on the next connection
    std::string text;
    {
      std::lock_guard lock(mu_);
      auto it = std::find_if(pending_.begin(), pending_.end(),
                             [&](const Pending& p) { return p.msgId == id; });
      if (it == pending_.end() || it->deliveredOn == session->connection()) return;
      it->deliveredOn = session->connection();
      it->lastSent = std::chrono::steady_clock::now();
      text = it->text;
    }
    session->enqueue(std::move(text));
  });
  return id;
}

std::string CloudHubDouble::Impl::sendObject(const std::string& operation,
                                             const std::string& resource, const json& object) {
  json env{{"header", json::object()},
           {"route",
            {{"source", "edgecontroller"},
             {"group", "resource"},
             {"operation", operation},
             {"resource", resource}}},
           {"content", object}};
  if (object.is_object() && object.contains("metadata") && object["metadata"].is_object()) {
    auto rv = object["metadata"].find("resourceVersion");
    if (rv != object["metadata"].end() && rv->is_string()) env["header"]["resourceversion"] = *rv;
  }
  {
    std::lock_guard lock(mu_);
    if (operation == "delete") {
      objects_.erase(resource);
    } else if (operation == "insert" || operation == "update") {
      objects_[resource] = object;
    }
  }
  return send(std::move(env));
}

// Returns once the double's thread applied it, so what the edge sends next meets the new state.
void CloudHubDouble::Impl::setForwarding(bool on) {
  {
    std::lock_guard lock(mu_);
    forwarding_ = on;
  }
  std::promise<void> applied;
  net::post(ioc_, [this, on, &applied] {
    for (auto& [serial, session] : live_) session->gated().setOpen(on);
    applied.set_value();
  });
  applied.get_future().wait();
}

void CloudHubDouble::Impl::closeConnections() {
  net::post(ioc_, [this] {
    for (auto& [serial, session] : live_) {
      if (session->live()) session->enqueue("", true);
    }
  });
}

// ---- CloudHubDouble ----

CloudHubDouble::CloudHubDouble(CloudHubDoubleOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
CloudHubDouble::~CloudHubDouble() = default;

int CloudHubDouble::port() const { return impl_->port_; }
std::string CloudHubDouble::url() const { return "wss://127.0.0.1:" + std::to_string(port()); }

std::vector<ReceivedFrame> CloudHubDouble::received() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->frames_;
}

std::vector<ReceivedFrame> CloudHubDouble::receivedWhere(const std::string& operation,
                                                         const std::string& resourcePrefix,
                                                         const std::string& group) const {
  std::vector<ReceivedFrame> out;
  std::lock_guard lock(impl_->mu_);
  for (const auto& f : impl_->frames_) {
    if (!operation.empty() && field(f.envelope, "route", "operation") != operation) continue;
    if (!field(f.envelope, "route", "resource").starts_with(resourcePrefix)) continue;
    if (!group.empty() && field(f.envelope, "route", "group") != group) continue;
    out.push_back(f);
  }
  return out;
}

bool CloudHubDouble::waitFor(const std::function<bool(const std::vector<ReceivedFrame>&)>& pred,
                             std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    uint64_t seen;
    std::vector<ReceivedFrame> frames;
    {
      std::lock_guard lock(impl_->mu_);
      seen = impl_->generation_;
      frames = impl_->frames_;
    }
    // Called without the lock, so the predicate may ask the double anything (acked(), ...).
    if (pred(frames)) return true;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::unique_lock lock(impl_->mu_);
    // Also wake now and then: the predicate may look at things other than the double.
    impl_->changed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)),
                               [&] { return impl_->generation_ != seen; });
  }
}

std::string CloudHubDouble::send(nlohmann::json envelope) {
  return impl_->send(std::move(envelope));
}

std::string CloudHubDouble::deletePod(const std::string& resource) {
  json pod;
  {
    std::lock_guard lock(impl_->mu_);
    auto it = impl_->objects_.find(resource);
    if (it == impl_->objects_.end())
      throw std::invalid_argument("CloudHubDouble::deletePod: no pod " + resource);
    json& meta = it->second["metadata"];
    auto& spec = it->second["spec"];
    int64_t grace =
        spec.is_object() && spec.value("terminationGracePeriodSeconds", json()).is_number()
            ? spec["terminationGracePeriodSeconds"].get<int64_t>()
            : 30;
    std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char stampText[32];
    std::strftime(stampText, sizeof stampText, "%Y-%m-%dT%H:%M:%SZ", &utc);
    meta["deletionTimestamp"] = stampText;
    meta["deletionGracePeriodSeconds"] = grace;
    pod = it->second = impl_->stamp(it->second);
  }
  return impl_->sendObject("update", resource, pod);
}

std::vector<std::string> CloudHubDouble::podsDeleted() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->podsDeleted_;
}

std::vector<std::string> CloudHubDouble::podDeletesIgnored() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->podDeletesIgnored_;
}

std::string CloudHubDouble::sendObject(const std::string& operation, const std::string& resource,
                                       const nlohmann::json& object) {
  return impl_->sendObject(operation, resource, object);
}

bool CloudHubDouble::acked(const std::string& msgId) const { return ackCount(msgId) > 0; }

int CloudHubDouble::ackCount(const std::string& msgId) const {
  std::lock_guard lock(impl_->mu_);
  auto it = impl_->acks_.find(msgId);
  return it == impl_->acks_.end() ? 0 : it->second;
}

std::optional<nlohmann::json> CloudHubDouble::object(const std::string& resource) const {
  std::lock_guard lock(impl_->mu_);
  auto it = impl_->objects_.find(resource);
  if (it == impl_->objects_.end()) return std::nullopt;
  return it->second;
}

void CloudHubDouble::setForwarding(bool on) { impl_->setForwarding(on); }
void CloudHubDouble::closeConnections() { impl_->closeConnections(); }

std::vector<HubConnection> CloudHubDouble::connections() const {
  std::lock_guard lock(impl_->mu_);
  std::vector<HubConnection> out;
  for (const auto& [id, c] : impl_->connections_) out.push_back(c);
  return out;
}

int CloudHubDouble::openConnections() const {
  std::lock_guard lock(impl_->mu_);
  return static_cast<int>(std::count_if(impl_->connections_.begin(), impl_->connections_.end(),
                                        [](const auto& kv) { return kv.second.open; }));
}

std::vector<nlohmann::json> CloudHubDouble::sent() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->sent_;
}

std::vector<std::string> CloudHubDouble::refusals() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->refusals_;
}

int CloudHubDouble::pings() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->pings_;
}

void CloudHubDouble::setObject(const std::string& resource, nlohmann::json object) {
  std::lock_guard lock(impl_->mu_);
  if (object.is_object() && !object.value("metadata", json::object()).contains("resourceVersion"))
    object = impl_->stamp(std::move(object));
  impl_->objects_[resource] = std::move(object);
}

void CloudHubDouble::setAnswerQueries(bool on, const std::string& resourcePrefix) {
  std::lock_guard lock(impl_->mu_);
  if (on) {
    impl_->silentQueries_.clear();
  } else {
    impl_->silentQueries_.push_back(resourcePrefix);
  }
}

void CloudHubDouble::removeObject(const std::string& resource) {
  std::lock_guard lock(impl_->mu_);
  impl_->objects_.erase(resource);
}

std::vector<std::string> CloudHubDouble::unacked() const {
  std::lock_guard lock(impl_->mu_);
  std::vector<std::string> out;
  for (const auto& p : impl_->pending_) out.push_back(p.msgId);
  return out;
}

void CloudHubDouble::setAckListener(std::function<void(const std::string& msgId)> listener) {
  std::lock_guard lock(impl_->mu_);
  impl_->ackListener_ = std::move(listener);
}

int CloudHubDouble::resends() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->resends_;
}

}  // namespace outpost::test
