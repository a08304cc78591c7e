#include "bootstrap/https_client.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "bootstrap/cert_crypto.h"

// OpenSSL's BIO macros are C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

namespace outpost::cloudhub {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

struct HostPort {
  std::string host, port;
};

core::Result<HostPort> splitServer(const std::string& server) {
  const std::string scheme = "https://";
  if (server.rfind(scheme, 0) != 0)
    return core::invalidArgument(server + " is not an https:// URL");
  std::string rest = server.substr(scheme.size());
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  HostPort hp{rest, "443"};
  if (!rest.empty() && rest[0] == '[') {  // [::1]:10002
    auto close = rest.find(']');
    if (close == std::string::npos) return core::invalidArgument("bad IPv6 address in " + server);
    hp.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') hp.port = rest.substr(close + 2);
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    hp.host = rest.substr(0, colon);
    hp.port = rest.substr(colon + 1);
  }
  if (hp.host.empty() || hp.port.empty()) return core::invalidArgument("no host in " + server);
  return hp;
}

core::Status addCaPem(SSL_CTX* ctx, const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
    ++added;
  }
  ERR_clear_error();  // the end of the PEM stream is reported as an error
  if (added == 0) return core::invalidArgument("the CA holds no PEM certificate");
  return core::okStatus();
}

bool isIpAddress(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// Runs the queued asynchronous operation to completion (the stream's timer bounds it).
void runOne(asio::io_context& ioc) {
  ioc.restart();
  ioc.run();
}

}  // namespace

core::Result<HttpsResponse> httpsGet(const HttpsRequest& r) {
  OUTPOST_ASSIGN_OR_RETURN(HostPort hp, splitServer(r.server));
  const std::string where = r.server + r.target;

  ssl::context ctx(ssl::context::tls_client);
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  if (r.verifyServer) {
    OUTPOST_RETURN_IF_ERROR(addCaPem(native, r.caPem));
    ctx.set_verify_mode(ssl::verify_peer);
  } else {
    ctx.set_verify_mode(ssl::verify_none);
  }
  if (!r.certFile.empty()) {
    if (SSL_CTX_use_certificate_chain_file(native, r.certFile.c_str()) != 1)
      return core::invalidArgument("cannot load client certificate " + r.certFile + ": " +
                                   crypto::opensslError());
    if (SSL_CTX_use_PrivateKey_file(native, r.keyFile.c_str(), SSL_FILETYPE_PEM) != 1)
      return core::invalidArgument("cannot load client key " + r.keyFile + ": " +
                                   crypto::opensslError());
  }

  asio::io_context ioc;
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  SSL* ssl = stream.native_handle();
  bool ip = isIpAddress(hp.host);
  if (!ip) SSL_set_tlsext_host_name(ssl, hp.host.c_str());
  if (r.verifyServer) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, hp.host.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, hp.host.c_str(), 0);
  }

  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(hp.host, hp.port, ec);
  if (ec) return core::unavailable("cannot resolve " + hp.host + ": " + ec.message());

  auto deadline = std::chrono::steady_clock::now() + r.timeout;
  beast::get_lowest_layer(stream).expires_at(deadline);
  ec = asio::error::would_block;
  beast::get_lowest_layer(stream).async_connect(
      endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
  runOne(ioc);
  if (ec) return core::unavailable("cannot connect to " + r.server + ": " + ec.message());

  ec = asio::error::would_block;
  stream.async_handshake(ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
  runOne(ioc);
  if (ec) {
    long verify = SSL_get_verify_result(ssl);
    if (r.verifyServer && verify != X509_V_OK)
      return core::unavailable("the certificate of " + r.server +
                               " is not trusted: " + X509_verify_cert_error_string(verify));
    return core::unavailable("TLS handshake with " + r.server + " failed: " + ec.message());
  }

  http::request<http::string_body> req{http::verb::get, r.target, 11};
  req.set(http::field::host, hp.host + ":" + hp.port);
  req.set(http::field::user_agent, "outpost");
  for (const auto& [name, value] : r.headers) req.set(name, value);
  req.body() = r.body;
  req.prepare_payload();
  ec = asio::error::would_block;
  http::async_write(stream, req, [&](beast::error_code e, size_t) { ec = e; });
  runOne(ioc);
  if (ec) return core::unavailable("sending GET " + where + ": " + ec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  ec = asio::error::would_block;
  http::async_read(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
  runOne(ioc);
  if (ec) return core::unavailable("reading the answer to GET " + where + ": " + ec.message());

  HttpsResponse out;
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  out.reason = std::string(res.reason());
  out.body = std::move(res.body());

  // A polite close, bounded by a short deadline; its outcome does not matter.
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
  stream.async_shutdown([](beast::error_code) {});
  runOne(ioc);
  return out;
}

}  // namespace outpost::cloudhub
