#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <memory>

// OpenSSL's BIO macros are C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

#include "paho_client.h"
#include "tls_probe.h"

namespace outpost::cloudhub {

namespace {
std::string opensslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "connection closed by the server";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}
}  // namespace

core::Status probeTls(const TlsProbeTarget& o, std::chrono::milliseconds timeout) {
  auto scheme = o.uri.find("://");
  if (scheme == std::string::npos) return core::invalidArgument("no scheme in " + o.uri);
  std::string hostPort = o.uri.substr(scheme + 3);
  if (auto slash = hostPort.find('/'); slash != std::string::npos) hostPort.resize(slash);
  auto colon = hostPort.rfind(':');
  std::string host = colon == std::string::npos ? hostPort : hostPort.substr(0, colon);
  if (colon == std::string::npos) hostPort += o.uri.rfind("wss://", 0) == 0 ? ":443" : ":8883";

  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return core::internalError("SSL_CTX_new: " + opensslError());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!o.caFile.empty() &&
      SSL_CTX_load_verify_locations(ctx.get(), o.caFile.c_str(), nullptr) != 1) {
    return core::invalidArgument("cannot load CA file " + o.caFile + ": " + opensslError());
  }
  if (o.caFile.empty()) SSL_CTX_set_default_verify_paths(ctx.get());
  if (!o.certFile.empty() &&
      SSL_CTX_use_certificate_chain_file(ctx.get(), o.certFile.c_str()) != 1) {
    return core::invalidArgument("cannot load client certificate " + o.certFile + ": " +
                                 opensslError());
  }
  if (!o.keyFile.empty() &&
      SSL_CTX_use_PrivateKey_file(ctx.get(), o.keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
    return core::invalidArgument("cannot load client key " + o.keyFile + ": " + opensslError());
  }
  std::unique_ptr<BIO, decltype(&BIO_free_all)> bio(BIO_new_ssl_connect(ctx.get()), BIO_free_all);
  SSL* ssl = nullptr;
  BIO_get_ssl(bio.get(), &ssl);
  SSL_set_tlsext_host_name(ssl, host.c_str());
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1)
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  BIO_set_conn_hostname(bio.get(), hostPort.c_str());
  (void)
      timeout;  // loopback and site brokers answer or refuse quickly; the kernel bounds the connect
  if (BIO_do_connect(bio.get()) != 1 || BIO_do_handshake(bio.get()) != 1) {
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      return core::unavailable(std::string("certificate verify failed: ") +
                               X509_verify_cert_error_string(verify));
    }
    return core::unavailable("TLS handshake failed: " + opensslError());
  }
  // With TLS 1.3 the server judges the client certificate after the client's handshake is done:
  // its refusal arrives as an alert on the first read. A server that accepted us waits for a
  // request, so the read times out.
  int fd = -1;
  BIO_get_fd(bio.get(), &fd);
  if (fd >= 0) {
    auto ms = std::min<std::chrono::milliseconds>(timeout, std::chrono::milliseconds(1000));
    timeval tv{static_cast<time_t>(ms.count() / 1000),
               static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char byte;
    if (SSL_read(ssl, &byte, 1) <= 0 && ERR_peek_error() != 0) {
      return core::unavailable("the server refused the client certificate: " + opensslError());
    }
  }
  return core::okStatus();
}

core::Status probeTls(const MqttConnectOptions& o, std::chrono::milliseconds timeout) {
  return probeTls(TlsProbeTarget{o.uri, o.caFile, o.certFile, o.keyFile}, timeout);
}

}  // namespace outpost::cloudhub
