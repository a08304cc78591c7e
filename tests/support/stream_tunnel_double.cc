#include "support/stream_tunnel_double.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/test_util.h"

namespace outpost::test {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using Headers = std::vector<std::pair<std::string, std::string>>;

void putUvarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool getUvarint(const std::string& in, size_t& pos, uint64_t& v) {
  v = 0;
  for (unsigned shift = 0; shift < 64 && pos < in.size(); shift += 7) {
    auto b = static_cast<uint8_t>(in[pos++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (b < 0x80) return true;
  }
  return false;
}

std::string message(uint64_t id, uint64_t type, const std::string& data) {
  std::string out;
  putUvarint(out, id);
  putUvarint(out, type);
  return out + data;
}

std::string certCn(SSL* s) {
  X509* cert = SSL_get1_peer_certificate(s);
  if (!cert) return "";
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  X509_free(cert);
  return buf;
}

}  // namespace

class StreamTunnelDouble::Impl {
 public:
  class Conn : public std::enable_shared_from_this<Conn> {
   public:
    Conn(Impl& impl, tcp::socket socket) : impl_(impl), ws_(std::move(socket), impl.ctx_) {}

    void start() {
      ws_.next_layer().async_handshake(ssl::stream_base::server,
                                       [self = shared_from_this()](error_code ec) {
                                         if (ec) return self->impl_.refused("TLS: " + ec.message());
                                         self->readRequest();
                                       });
    }

    void send(std::string bytes) {
      out_.push_back(std::move(bytes));
      if (out_.size() == 1) write();
    }

    void cut() {
      error_code ec;
      beast::get_lowest_layer(ws_).close(ec);
    }

   private:
    void readRequest() {
      http::async_read(ws_.next_layer(), buffer_, request_,
                       [self = shared_from_this()](error_code ec, size_t) {
                         if (ec) return self->impl_.refused("request: " + ec.message());
                         self->onRequest();
                       });
    }

    void onRequest() {
      std::string why;
      std::string target(request_.target());
      std::string node(request_["SessionHostNameOverride"]);
      if (target != "/v1/kubeedge/connect" && target != "/v1/kubeedge/connect/") {
        return refuse(http::status::not_found, "no tunnel at " + target);
      }
      if (!websocket::is_upgrade(request_)) {
        return refuse(http::status::bad_request, "not a WebSocket upgrade");
      }
      if (node.empty()) {
        return refuse(http::status::bad_request, "no SessionHostNameOverride header");
      }
      ws_.read_message_max(8u << 20);
      ws_.async_accept(request_, [self = shared_from_this(), node](error_code ec) {
        if (ec) return self->impl_.refused("accept: " + ec.message());
        self->impl_.opened(self, node, std::string(self->request_["SessionInternalIP"]),
                           certCn(self->ws_.next_layer().native_handle()));
        self->read();
      });
    }

    void refuse(http::status status, const std::string& why) {
      impl_.refused(why);
      auto res = std::make_shared<http::response<http::string_body>>(status, 11);
      res->body() = why;
      res->prepare_payload();
      http::async_write(ws_.next_layer(), *res,
                        [self = shared_from_this(), res](error_code, size_t) { self->cut(); });
    }

    void read() {
      ws_.async_read(rx_, [self = shared_from_this()](error_code ec, size_t) {
        if (ec) return self->impl_.closed(self.get());
        if (self->ws_.got_text()) {
          self->impl_.refused("a text frame on the tunnel");
          return self->cut();
        }
        self->impl_.received(beast::buffers_to_string(self->rx_.data()));
        self->rx_.consume(self->rx_.size());
        self->read();
      });
    }

    void write() {
      ws_.binary(true);
      ws_.async_write(net::buffer(out_.front()),
                      [self = shared_from_this()](error_code ec, size_t) {
                        self->out_.pop_front();
                        if (ec) return;
                        if (!self->out_.empty()) self->write();
                      });
    }

    Impl& impl_;
    websocket::stream<beast::ssl_stream<tcp::socket>> ws_;
    beast::flat_buffer buffer_, rx_;
    http::request<http::string_body> request_;
    std::deque<std::string> out_;
  };

  explicit Impl(const TlsFiles& tls) {
    SSL_CTX_set_min_proto_version(ctx_.native_handle(), TLS1_2_VERSION);
    ctx_.load_verify_file(tls.ca);
    ctx_.use_certificate_chain_file(tls.serverCert);
    ctx_.use_private_key_file(tls.serverKey, ssl::context::pem);
    ctx_.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~Impl() {
    net::post(ioc_, [this] {
      error_code ec;
      acceptor_.close(ec);
      if (conn_) conn_->cut();
      conn_.reset();
      work_.reset();
    });
    thread_.join();
  }

  void accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
      if (ec) return;
      std::make_shared<Conn>(*this, std::move(socket))->start();
      accept();
    });
  }

  void opened(const std::shared_ptr<Conn>& c, std::string node, std::string ip, std::string cn) {
    if (conn_) conn_->cut();  // cloudstream keeps one session per node: the newest
    conn_ = c;
    std::lock_guard lock(mu_);
    ++opened_;
    open_ = true;
    node_ = std::move(node);
    ip_ = std::move(ip);
    cn_ = std::move(cn);
    cv_.notify_all();
  }

  void closed(Conn* c) {
    if (conn_.get() != c) return;
    conn_.reset();
    std::lock_guard lock(mu_);
    open_ = false;
    cv_.notify_all();
  }

  void refused(const std::string& why) {
    std::lock_guard lock(mu_);
    refusals_.push_back(why);
  }

  void received(const std::string& bytes) {
    size_t pos = 0;
    uint64_t id = 0, type = 0;
    if (!getUvarint(bytes, pos, id) || !getUvarint(bytes, pos, type)) return refused("bad message");
    std::lock_guard lock(mu_);
    if (type == 3) data_[id] += bytes.substr(pos);
    if (type == 4) removed_[id] = true;
    cv_.notify_all();
  }

  void send(std::string bytes) {
    net::post(ioc_, [this, bytes = std::move(bytes)]() mutable {
      if (conn_) conn_->send(std::move(bytes));
    });
  }

  void cut() {
    net::post(ioc_, [this] {
      if (conn_) conn_->cut();
    });
  }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_{ioc_.get_executor()};
  ssl::context ctx_{ssl::context::tls_server};
  tcp::acceptor acceptor_{ioc_};
  int port_ = 0;
  std::thread thread_;
  std::shared_ptr<Conn> conn_;  // io thread only

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  uint64_t opened_ = 0, nextId_ = 0;
  bool open_ = false;
  std::string node_, ip_, cn_;
  std::vector<std::string> refusals_;
  std::map<uint64_t, std::string> data_;
  std::map<uint64_t, bool> removed_;
};

StreamTunnelDouble::StreamTunnelDouble(const TlsFiles& tls) : impl_(std::make_unique<Impl>(tls)) {}
StreamTunnelDouble::~StreamTunnelDouble() = default;

int StreamTunnelDouble::port() const { return impl_->port_; }
std::string StreamTunnelDouble::address() const { return "127.0.0.1:" + std::to_string(port()); }

bool StreamTunnelDouble::waitConnected(uint64_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu_);
  return impl_->cv_.wait_for(lock, timeout, [&] { return impl_->open_ && impl_->opened_ >= n; });
}

bool StreamTunnelDouble::connected() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->open_;
}

std::string StreamTunnelDouble::nodeName() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->node_;
}

std::string StreamTunnelDouble::internalIp() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->ip_;
}

std::string StreamTunnelDouble::clientCn() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->cn_;
}

std::vector<std::string> StreamTunnelDouble::refusals() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->refusals_;
}

StreamTunnelDouble::SessionPtr StreamTunnelDouble::connect(uint64_t type, const std::string& path,
                                                           const std::string& query,
                                                           const std::string& method, bool upgrade,
                                                           const Headers* headers) {
  uint64_t id;
  {
    std::lock_guard lock(impl_->mu_);
    id = impl_->nextId_++;
  }
  // As cloudstream marshals its Edged*Connection: the apiserver's URL (a Go url.URL) with
  // edged's host, the request's headers, and for exec/attach the method.
  nlohmann::json url = {{"Scheme", "http"},          {"Opaque", ""},      {"User", nullptr},
                        {"Host", "127.0.0.1:10350"}, {"Path", path},      {"RawPath", ""},
                        {"ForceQuery", false},       {"RawQuery", query}, {"Fragment", ""},
                        {"RawFragment", ""}};
  nlohmann::json header = {{"User-Agent", {"kubectl/v1.29.0"}}, {"Accept", {"*/*"}}};
  if (headers != nullptr) {
    for (const auto& [name, value] : *headers) header[name].push_back(value);
  } else if (upgrade) {
    header["Connection"] = {"Upgrade"};
    header["Upgrade"] = {"SPDY/3.1"};
    header["X-Stream-Protocol-Version"] = {"v4.channel.k8s.io", "v3.channel.k8s.io"};
  }
  nlohmann::json doc = {{"MessID", id}, {"url", url}, {"header", header}};
  if (!method.empty()) doc["method"] = method;
  impl_->send(message(id, type, doc.dump()));
  return SessionPtr(new Session(*this, id));
}

StreamTunnelDouble::SessionPtr StreamTunnelDouble::logs(const std::string& ns,
                                                        const std::string& pod,
                                                        const std::string& container,
                                                        const std::string& query) {
  return connect(0, "/containerLogs/" + ns + "/" + pod + "/" + container, query, "", false);
}

StreamTunnelDouble::SessionPtr StreamTunnelDouble::metrics(const std::string& path) {
  return connect(2, path, "", "", false);
}

StreamTunnelDouble::SessionPtr StreamTunnelDouble::exec(const std::string& ns,
                                                        const std::string& pod,
                                                        const std::string& container,
                                                        const std::string& query) {
  return connect(1, "/exec/" + ns + "/" + pod + "/" + container, query, "POST", true);
}

StreamTunnelDouble::SessionPtr StreamTunnelDouble::attach(const std::string& ns,
                                                          const std::string& pod,
                                                          const std::string& container,
                                                          const std::string& query) {
  return connect(6, "/attach/" + ns + "/" + pod + "/" + container, query, "POST", true);
}

StreamTunnelDouble::SessionPtr StreamTunnelDouble::upgrade(uint64_t type, const std::string& path,
                                                           const std::string& query,
                                                           const std::string& method,
                                                           const Headers& headers) {
  return connect(type, path, query, method, true, &headers);
}

StreamTunnelDouble::SessionPtr StreamTunnelDouble::raw(uint64_t type, const std::string& data) {
  uint64_t id;
  {
    std::lock_guard lock(impl_->mu_);
    id = impl_->nextId_++;
  }
  impl_->send(message(id, type, data));
  return SessionPtr(new Session(*this, id));
}

void StreamTunnelDouble::dropTunnel() { impl_->cut(); }

void StreamTunnelDouble::closeTunnel(const std::string& reason) {
  impl_->send(message(0, 5, reason));
}

std::string StreamTunnelDouble::Session::received() const {
  std::lock_guard lock(double_.impl_->mu_);
  auto it = double_.impl_->data_.find(id_);
  return it == double_.impl_->data_.end() ? "" : it->second;
}

bool StreamTunnelDouble::Session::removed() const {
  std::lock_guard lock(double_.impl_->mu_);
  auto it = double_.impl_->removed_.find(id_);
  return it != double_.impl_->removed_.end() && it->second;
}

bool StreamTunnelDouble::Session::waitFor(const std::function<bool(const std::string&)>& pred,
                                          std::chrono::milliseconds timeout) const {
  std::unique_lock lock(double_.impl_->mu_);
  return double_.impl_->cv_.wait_for(lock, timeout,
                                     [&] { return pred(double_.impl_->data_[id_]); });
}

bool StreamTunnelDouble::Session::waitRemoved(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(double_.impl_->mu_);
  return double_.impl_->cv_.wait_for(lock, timeout, [&] { return double_.impl_->removed_[id_]; });
}

void StreamTunnelDouble::Session::send(const std::string& bytes) {
  double_.impl_->send(message(id_, 3, bytes));
}

void StreamTunnelDouble::Session::remove() { double_.impl_->send(message(id_, 4, "")); }

}  // namespace outpost::test
