// The WebSocket transport on cpprestsdk's callback client. cpprestsdk keeps the system CA paths
// and its own host-name check (RFC 2818, IP SANs for addresses); the context callback below
// replaces the trust store with the configured CA alone, requires TLS 1.2 and adds the client
// certificate. Frames are ordered as they arrive on the client's own thread.
#define _TURN_OFF_PLATFORM_STRING
#include "ws_transport.h"

#include <cpprest/ws_client.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pplx/threadpool.h>

#include <mutex>
#include <vector>

// OpenSSL's SSL_CTX_add1_chain_cert is a macro with C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

namespace outpost::cloudhub {

namespace wsc = web::websockets::client;

namespace {

std::string opensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail from OpenSSL";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Parsed TLS material, shared with the context callback (which runs on the client's thread).
struct TlsObjects {
  std::vector<X509*> cas;
  X509* cert = nullptr;
  std::vector<X509*> chain;
  EVP_PKEY* key = nullptr;
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

core::Result<std::shared_ptr<TlsObjects>> parseTls(const WsTlsMaterial& m) {
  auto t = std::make_shared<TlsObjects>();
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

// Every event passes through here: once close() shut the gate, nothing reaches the link.
struct Gate {
  std::mutex mu;
  bool open = true;
  bool opened = false;  // `opened` was delivered
  WsEvents events;

  void fireOpened() {
    std::lock_guard lock(mu);
    if (!open || opened) return;
    opened = true;
    if (events.opened) events.opened();
  }
  void fireFailed(const std::string& why) {
    std::lock_guard lock(mu);
    if (!open || opened) return;
    open = false;
    if (events.failed) events.failed(why);
  }
  void fireText(std::string text) {
    fireOpened();  // the open callback runs on the task pool and may come after the first frame
    std::lock_guard lock(mu);
    if (open && events.text) events.text(std::move(text));
  }
  void firePong() {
    fireOpened();
    std::lock_guard lock(mu);
    if (open && events.pong) events.pong();
  }
  void fireClosed(const std::string& why) {
    std::lock_guard lock(mu);
    if (!open || !opened) return;  // a failed connect is reported as `failed`
    open = false;
    if (events.closed) events.closed(why);
  }
  void run(const std::function<void()>& f) {
    std::lock_guard lock(mu);
    if (open) f();
  }
  void shut() {
    std::lock_guard lock(mu);
    open = false;
  }
};

class CpprestConnection final : public WsConnection,
                                public std::enable_shared_from_this<CpprestConnection> {
 public:
  CpprestConnection(wsc::websocket_client_config config, std::shared_ptr<Gate> gate)
      : client_(std::move(config)), gate_(std::move(gate)) {
    closedFuture_ = closed_->get_future().share();
  }

  void start(const std::string& url) {
    std::shared_ptr<Gate> gate = gate_;
    client_.set_message_handler([gate](const wsc::websocket_incoming_message& m) {
      try {
        switch (m.message_type()) {
          case wsc::websocket_message_type::text_message:
            gate->fireText(m.extract_string().get());
            break;
          case wsc::websocket_message_type::binary_message: {
            auto bytes = m.body().streambuf().in_avail();
            std::string s(static_cast<size_t>(bytes), '\0');
            m.body().streambuf().getn(reinterpret_cast<uint8_t*>(s.data()), s.size()).get();
            gate->fireText(std::move(s));  // the codec refuses it if it is not an envelope
            break;
          }
          case wsc::websocket_message_type::pong:
            gate->firePong();
            break;
          default:
            break;
        }
      } catch (const std::exception& e) {
        gate->fireText(std::string());  // counted as a bad frame by the link
      }
    });
    client_.set_close_handler([gate](wsc::websocket_close_status status, const std::string& reason,
                                     const std::error_code& ec) {
      std::string why = "connection closed";
      if (ec) {
        why += ": " + ec.message();
      } else {
        why += " by the server (code " + std::to_string(static_cast<int>(status)) +
               (reason.empty() ? "" : ", " + reason) + ")";
      }
      gate->fireClosed(why);
    });
    try {
      connectTask_ = client_.connect(web::uri(url)).then([gate](pplx::task<void> t) {
        try {
          t.get();
          gate->fireOpened();
        } catch (const std::exception& e) {
          gate->fireFailed(e.what());
        }
      });
    } catch (const std::exception& e) {
      gate->fireFailed(e.what());
      connectTask_ = pplx::task_from_result();
    }
  }

  // ---- WsConnection
  void sendText(std::string text, std::function<void(core::Status)> done) override {
    std::shared_ptr<Gate> gate = gate_;
    try {
      wsc::websocket_outgoing_message msg;
      msg.set_utf8_message(std::move(text));
      client_.send(msg).then([gate, done = std::move(done)](pplx::task<void> t) {
        core::Status s;
        try {
          t.get();
        } catch (const std::exception& e) {
          s = core::unavailable(std::string("sending a frame: ") + e.what());
        }
        if (done) gate->run([&] { done(s); });
      });
    } catch (const std::exception& e) {
      core::Status s = core::unavailable(std::string("sending a frame: ") + e.what());
      if (done) gate->run([&] { done(s); });
    }
  }

  void ping() override {
    try {
      wsc::websocket_outgoing_message msg;
      msg.set_ping_message("outpost");
      client_.send(msg).then([](pplx::task<void> t) {
        try {
          t.get();
        } catch (const std::exception&) {
          // A dead connection is found by the read deadline, not here.
        }
      });
    } catch (const std::exception&) {
    }
  }

  std::shared_future<void> close() override {
    gate_->shut();
    std::call_once(closeOnce_, [this] {
      auto self = shared_from_this();
      // Close once the connect settled: closing a connection still being set up does nothing in
      // cpprestsdk, and the close would then never complete.
      connectTask_
          .then([self](pplx::task<void> t) {
            try {
              t.get();
            } catch (const std::exception&) {
            }
            return self->client_.close();
          })
          .then([self](pplx::task<void> t) mutable {
            try {
              t.get();
            } catch (const std::exception&) {
            }
            auto done = self->closed_;
            self.reset();  // the client goes with the last reference, here or in the caller
            done->set_value();
          });
    });
    return closedFuture_;
  }

 private:
  wsc::websocket_callback_client client_;
  std::shared_ptr<Gate> gate_;
  pplx::task<void> connectTask_ = pplx::task_from_result();
  std::once_flag closeOnce_;
  std::shared_ptr<std::promise<void>> closed_ = std::make_shared<std::promise<void>>();
  std::shared_future<void> closedFuture_;
};

}  // namespace

core::Status checkTlsMaterial(const WsTlsMaterial& tls) { return parseTls(tls).status(); }

void initWsThreadPool(size_t threads) {
  static std::once_flag once;
  std::call_once(once, [threads] {
    try {
      crossplat::threadpool::initialize_with_threads(threads);
    } catch (const std::exception&) {
      // Already in use with its own size: nothing to do.
    }
  });
}

core::Result<std::shared_ptr<WsConnection>> WsConnection::open(WsConnectOptions options,
                                                               WsEvents events) {
  auto tls = parseTls(options.tls);
  if (!tls.isOk()) return tls.status();
  std::shared_ptr<TlsObjects> objects = std::move(tls).value();
  wsc::websocket_client_config config;
  for (const auto& [name, value] : options.headers) config.headers().add(name, value);
  config.set_validate_certificates(true);
  config.set_ssl_context_callback([objects](boost::asio::ssl::context& ctx) {
    SSL_CTX* c = ctx.native_handle();
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    // Only the configured CA: drop the system paths cpprestsdk loaded.
    X509_STORE* store = X509_STORE_new();
    for (X509* ca : objects->cas) X509_STORE_add_cert(store, ca);
    SSL_CTX_set_cert_store(c, store);
    SSL_CTX_use_certificate(c, objects->cert);
    for (X509* x : objects->chain) SSL_CTX_add1_chain_cert(c, x);
    SSL_CTX_use_PrivateKey(c, objects->key);
  });
  auto gate = std::make_shared<Gate>();
  gate->events = std::move(events);
  std::shared_ptr<CpprestConnection> conn;
  try {
    conn = std::make_shared<CpprestConnection>(std::move(config), gate);
  } catch (const std::exception& e) {
    return core::internalError(std::string("creating the WebSocket client: ") + e.what());
  }
  conn->start(options.url);
  return std::shared_ptr<WsConnection>(std::move(conn));
}

}  // namespace outpost::cloudhub
