#include "support/cert_server.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "support/mosquitto.h"
#include "support/test_util.h"

// OpenSSL's BIO macros are C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

namespace outpost::test {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::string hex(const unsigned char* p, size_t n) {
  std::string out;
  char buf[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", p[i]);
    out += buf;
  }
  return out;
}

std::string nameField(X509_NAME* name, int nid) {
  char buf[256] = {};
  if (X509_NAME_get_text_by_NID(name, nid, buf, sizeof buf) < 0) return "";
  return buf;
}

std::string serialHex(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  char* h = BN_bn2hex(bn);
  std::string out = h;
  OPENSSL_free(h);
  BN_free(bn);
  return out;
}

}  // namespace

class CertServer::Impl {
 public:
  Impl(const std::filesystem::path& dir, CertServerOptions o)
      : options_(std::move(o)), ctx_(ssl::context::tls_server), acceptor_(ioc_) {
    std::filesystem::create_directories(dir);
    TlsFiles tls = makeTlsFiles(dir, "unused-client");
    caFile_ = tls.ca;
    std::string caPem = readFile(tls.ca);
    BIO* bio = BIO_new_mem_buf(caPem.data(), static_cast<int>(caPem.size()));
    caCert_ = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    std::string keyPem = readFile(dir / "ca.key");
    bio = BIO_new_mem_buf(keyPem.data(), static_cast<int>(keyPem.size()));
    caKey_ = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (!caCert_ || !caKey_) throw std::runtime_error("cert server: cannot read its CA");
    unsigned char* der = nullptr;
    int n = i2d_X509(caCert_, &der);
    caDer_.assign(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);

    ctx_.use_certificate_chain_file(tls.serverCert);
    ctx_.use_private_key_file(tls.serverKey, ssl::context::pem);
    ctx_.load_verify_file(tls.ca);
    ctx_.set_verify_mode(ssl::verify_peer);  // a client certificate is optional, checked if sent

    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~Impl() {
    ioc_.stop();
    thread_.join();
    X509_free(caCert_);
    EVP_PKEY_free(caKey_);
  }

  // A TLS connection: one request, one answer, close.
  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(Impl& server, tcp::socket socket)
        : server_(server), stream_(std::move(socket), server.ctx_) {}

    void run() {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
      stream_.async_handshake(ssl::stream_base::server,
                              [self = shared_from_this()](beast::error_code ec) {
                                if (!ec) self->read();
                              });
    }

   private:
    void read() {
      http::async_read(stream_, buffer_, req_,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (!ec) self->answer();
                       });
    }

    void answer() {
      CertServerRequest rec;
      rec.target = std::string(req_.target());
      for (const auto& field : req_) {
        std::string name(field.name_string());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        rec.headers[name] = std::string(field.value());
      }
      X509* peer = SSL_get1_peer_certificate(stream_.native_handle());
      if (peer) {
        rec.clientCn = nameField(X509_get_subject_name(peer), NID_commonName);
        rec.clientSerial = serialHex(peer);
        X509_free(peer);
      }
      std::string body;
      rec.status = server_.handle(rec, req_.body(), body);
      res_.result(static_cast<unsigned>(rec.status));
      res_.version(11);
      res_.keep_alive(false);
      res_.body() = std::move(body);
      res_.prepare_payload();
      {
        std::lock_guard lock(server_.mu_);
        server_.requests_.push_back(std::move(rec));
      }
      http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec) return;
        self->stream_.async_shutdown([self](beast::error_code) {});
      });
    }

    Impl& server_;
    beast::ssl_stream<beast::tcp_stream> stream_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    http::response<http::string_body> res_;
  };

  void accept() {
    acceptor_.async_accept(ioc_, [this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;
      std::make_shared<Session>(*this, std::move(socket))->run();
      accept();
    });
  }

  // The endpoints' logic; returns the HTTP status and fills `out`.
  int handle(const CertServerRequest& r, const std::string& body, std::string& out) {
    if (r.target == "/ca.crt") {
      out = caDer_;
      return 200;
    }
    if (r.target != "/edge.crt") return 404;
    if (refuse_) {
      out = "certificate service unavailable";
      return 503;
    }
    auto node = r.headers.find("nodename");
    if (node == r.headers.end() || node->second.empty()) {
      out = "NodeName header missing";
      return 400;
    }
    auto auth = r.headers.find("authorization");
    bool tokenOk = auth != r.headers.end() && auth->second == "Bearer " + options_.jwt;
    bool certOk = false;
    if (!r.clientSerial.empty()) {
      std::lock_guard lock(mu_);
      certOk = std::find(issued_.begin(), issued_.end(), r.clientSerial) != issued_.end() &&
               r.clientCn == "system:node:" + node->second;
    }
    if (!tokenOk && !certOk) {
      out = auth == r.headers.end() ? "no token and no certificate issued here"
                                    : "token is invalid or expired";
      return 401;
    }
    return sign(body, out) ? 200 : 400;
  }

  // Signs the CSR in DER `csrDer` with the CA; `out` gets the certificate in DER. Like CloudCore
  // (Go's x509.ParseCertificateRequest on the raw body), a PEM request is refused with ASN.1's
  // complaint about its first byte.
  bool sign(const std::string& csrDer, std::string& out) {
    const auto* p = reinterpret_cast<const unsigned char*>(csrDer.data());
    X509_REQ* req = d2i_X509_REQ(nullptr, &p, static_cast<long>(csrDer.size()));
    if (!req || p != reinterpret_cast<const unsigned char*>(csrDer.data()) + csrDer.size()) {
      ERR_clear_error();
      X509_REQ_free(req);
      out = "asn1: structure error: tags don't match (the body is not a DER certificate request)";
      return false;
    }
    EVP_PKEY* pub = X509_REQ_get0_pubkey(req);
    if (!pub || X509_REQ_verify(req, pub) != 1) {
      ERR_clear_error();
      X509_REQ_free(req);
      out = "certificate request signature is invalid";
      return false;
    }
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    unsigned char rnd[8];
    RAND_bytes(rnd, sizeof rnd);
    rnd[0] &= 0x7f;
    BIGNUM* bn = BN_bin2bn(rnd, sizeof rnd, nullptr);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    long back = static_cast<long>(backdate_.load().count());
    X509_gmtime_adj(X509_getm_notBefore(cert), -back);
    X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(lifetime_.load().count()) - back);
    X509_set_subject_name(cert, X509_REQ_get_subject_name(req));
    X509_set_issuer_name(cert, X509_get_subject_name(caCert_));
    X509_set_pubkey(cert, pub);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, caCert_, cert, nullptr, nullptr, 0);
    X509_EXTENSION* eku = X509V3_EXT_conf_nid(nullptr, &v3, NID_ext_key_usage, "clientAuth");
    X509_add_ext(cert, eku, -1);
    X509_EXTENSION_free(eku);
    X509_sign(cert, caKey_, EVP_sha256());
    unsigned char* der = nullptr;
    int n = i2d_X509(cert, &der);
    out.assign(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);
    {
      std::lock_guard lock(mu_);
      issued_.push_back(serialHex(cert));
    }
    X509_free(cert);
    X509_REQ_free(req);
    return true;
  }

  CertServerOptions options_;
  std::atomic<std::chrono::seconds> lifetime_{options_.lifetime};
  std::atomic<std::chrono::seconds> backdate_{std::chrono::seconds(0)};
  std::atomic<bool> refuse_{false};
  std::string caFile_, caDer_;
  X509* caCert_ = nullptr;
  EVP_PKEY* caKey_ = nullptr;
  asio::io_context ioc_;
  ssl::context ctx_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<CertServerRequest> requests_;
  std::vector<std::string> issued_;
};

CertServer::CertServer(const std::filesystem::path& dir, CertServerOptions options)
    : impl_(std::make_unique<Impl>(dir, std::move(options))) {}
CertServer::~CertServer() = default;

int CertServer::port() const { return impl_->port_; }
std::string CertServer::url() const { return "https://127.0.0.1:" + std::to_string(port()); }
std::string CertServer::caFile() const { return impl_->caFile_; }
std::string CertServer::caDer() const { return impl_->caDer_; }
const std::string& CertServer::jwt() const { return impl_->options_.jwt; }

std::string CertServer::token() const {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(impl_->caDer_.data()), impl_->caDer_.size(), md);
  return hex(md, sizeof md) + "." + jwt();
}

void CertServer::setLifetime(std::chrono::seconds lifetime) { impl_->lifetime_ = lifetime; }
void CertServer::setBackdate(std::chrono::seconds backdate) { impl_->backdate_ = backdate; }
void CertServer::setRefuse(bool on) { impl_->refuse_ = on; }

std::vector<CertServerRequest> CertServer::requests() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->requests_;
}

std::vector<std::string> CertServer::issued() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->issued_;
}

}  // namespace outpost::test
