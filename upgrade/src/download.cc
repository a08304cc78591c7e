#include "outpost/upgrade/download.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <fstream>
#include <variant>

#include "outpost/upgrade/agent_upgrade.h"

// OpenSSL's SNI macro is a C cast.
#pragma GCC diagnostic ignored "-Wold-style-cast"

namespace outpost::upgrade {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

struct Target {
  bool tls = false;
  std::string host, port, path;
};

Target splitUrl(const std::string& url) {  // `url` passed checkUrl
  Target t;
  t.tls = url.starts_with("https://");
  std::string rest = url.substr(t.tls ? 8 : 7);
  size_t slash = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, slash);
  t.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (auto hash = t.path.find('#'); hash != std::string::npos) t.path.resize(hash);
  if (t.path.empty() || t.path[0] != '/') t.path.insert(0, "/");
  t.port = t.tls ? "443" : "80";
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    t.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) t.port = authority.substr(close + 2);
  } else if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
    t.host = authority.substr(0, colon);
    t.port = authority.substr(colon + 1);
  } else {
    t.host = authority;
  }
  return t;
}

// Runs the queued asynchronous operation to completion (the stream's timer bounds it).
void runOne(asio::io_context& ioc) {
  ioc.restart();
  ioc.run();
}

std::optional<uint64_t> toNumber(std::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// "bytes 100-199/200" -> first 100, total 200; "bytes */200" -> total 200.
struct ContentRange {
  std::optional<uint64_t> first, total;
};
ContentRange parseContentRange(std::string_view v) {
  ContentRange out;
  if (!v.starts_with("bytes ")) return out;
  v.remove_prefix(6);
  size_t slash = v.find('/');
  if (slash == std::string_view::npos) return out;
  out.total = toNumber(v.substr(slash + 1));
  std::string_view range = v.substr(0, slash);
  if (size_t dash = range.find('-'); dash != std::string_view::npos)
    out.first = toNumber(range.substr(0, dash));
  return out;
}

core::Status tooLarge(const std::string& url, uint64_t max) {
  return core::resourceExhausted("GET " + url + ": the package has more than " +
                                 std::to_string(max) + " bytes (upgrade.max_package_bytes)");
}

struct Redirect {
  std::string location;
};
struct StartOver {};  // the server's answer does not continue the file: start from 0
using Outcome = std::variant<uint64_t, Redirect, StartOver>;

template <typename Stream>
core::Result<Outcome> fetch(Stream& stream, asio::io_context& ioc, const Target& t,
                            const std::string& url, const std::filesystem::path& dest,
                            const DownloadOptions& o) {
  std::error_code fsErr;
  uint64_t have =
      std::filesystem::exists(dest, fsErr) ? std::filesystem::file_size(dest, fsErr) : 0;
  if (fsErr)
    return core::unavailable("cannot read the size of " + dest.string() + ": " + fsErr.message());

  http::request<http::empty_body> req{http::verb::get, t.path, 11};
  req.set(http::field::host, t.port == (t.tls ? "443" : "80") ? t.host : t.host + ":" + t.port);
  req.set(http::field::user_agent, "outpost");
  if (have > 0) req.set(http::field::range, "bytes=" + std::to_string(have) + "-");
  beast::error_code ec = asio::error::would_block;
  beast::get_lowest_layer(stream).expires_after(o.ioTimeout);
  http::async_write(stream, req, [&](beast::error_code e, size_t) { ec = e; });
  runOne(ioc);
  if (ec) return core::unavailable("sending GET " + url + ": " + ec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  // Boost 1.74 compares a Content-Length with boost::none as with 0: the limit is a number.
  parser.body_limit(o.maxBytes);
  ec = asio::error::would_block;
  beast::get_lowest_layer(stream).expires_after(o.ioTimeout);
  http::async_read_header(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
  runOne(ioc);
  if (ec == http::error::body_limit) return tooLarge(url, o.maxBytes);
  if (ec) return core::unavailable("reading the answer to GET " + url + ": " + ec.message());
  const auto& head = parser.get();
  unsigned status = head.result_int();
  if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
    auto loc = head.find(http::field::location);
    if (loc == head.end())
      return core::unavailable("GET " + url + ": redirect " + std::to_string(status) +
                               " without a Location");
    std::string location(loc->value());
    if (location.starts_with("/")) {  // relative to this server
      std::string host = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
      location = std::string(t.tls ? "https://" : "http://") + host + ":" + t.port + location;
    }
    return Outcome{Redirect{location}};
  }
  std::optional<uint64_t> total;
  bool append = false;
  if (status == 416 && have > 0) {
    auto cr = parseContentRange(std::string(head[http::field::content_range]));
    if (cr.total && *cr.total == have) return Outcome{have};  // all of it was there already
    return Outcome{StartOver{}};
  }
  if (status == 206) {
    auto cr = parseContentRange(std::string(head[http::field::content_range]));
    if (!cr.first || *cr.first != have) return Outcome{StartOver{}};
    total = cr.total;
    append = true;
  } else if (status == 200) {
    if (auto len = parser.content_length()) total = *len;
  } else {
    std::string why =
        "GET " + url + ": " + std::to_string(status) + " " + std::string(head.reason());
    // The server answered, and asking again will not change a client error (404, 403, 410): the
    // object has to change. A timeout, throttling and the server's own errors are tried again.
    if (status >= 400 && status < 500 && status != 408 && status != 429)
      return core::failedPrecondition(why);
    return core::unavailable(why);
  }
  if (total && *total > o.maxBytes) return tooLarge(url, o.maxBytes);
  if (!append) have = 0;
  std::ofstream out(dest, std::ios::binary | (append ? std::ios::app : std::ios::trunc));
  if (!out) return core::unavailable("cannot write " + dest.string());
  if (o.progress) o.progress(have, total);

  std::vector<char> chunk(1 << 16);
  while (!parser.is_done()) {
    if (o.cancel && o.cancel->load())
      return core::cancelled("the download of " + url + " was cancelled");
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    ec = asio::error::would_block;
    beast::get_lowest_layer(stream).expires_after(o.ioTimeout);
    http::async_read(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
    runOne(ioc);
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::body_limit) return tooLarge(url, o.maxBytes);
    size_t got = chunk.size() - parser.get().body().size;
    if (have + got > o.maxBytes) return tooLarge(url, o.maxBytes);
    out.write(chunk.data(), static_cast<std::streamsize>(got));
    out.flush();
    if (!out) return core::unavailable("writing " + dest.string() + " failed");
    have += got;
    if (got > 0 && o.progress) o.progress(have, total);
    if (ec)
      return core::unavailable("GET " + url + ": the download stopped after " +
                               std::to_string(have) + " bytes: " + ec.message());
  }
  if (total && have != *total)
    return core::unavailable("GET " + url + ": " + std::to_string(have) + " of " +
                             std::to_string(*total) + " bytes arrived");
  return Outcome{have};
}

core::Result<Outcome> fetchUrl(const std::string& url, const std::filesystem::path& dest,
                               const DownloadOptions& o) {
  Target t = splitUrl(url);
  asio::io_context ioc;
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(t.host, t.port, ec);
  if (ec) return core::unavailable("cannot resolve " + t.host + ": " + ec.message());
  auto connect = [&](beast::tcp_stream& s) -> core::Status {
    ec = asio::error::would_block;
    s.expires_after(o.ioTimeout);
    s.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    runOne(ioc);
    if (ec)
      return core::unavailable("cannot connect to " + t.host + ":" + t.port + ": " + ec.message());
    return core::okStatus();
  };
  if (!t.tls) {
    beast::tcp_stream stream(ioc);
    OUTPOST_RETURN_IF_ERROR(connect(stream));
    return fetch(stream, ioc, t, url, dest, o);
  }
  ssl::context ctx(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  if (o.caFile.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(o.caFile, ec);
  }
  if (ec) return core::unavailable("cannot load the trusted CAs: " + ec.message());
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  SSL* native = stream.native_handle();
  boost::system::error_code addrErr;
  asio::ip::make_address(t.host, addrErr);
  X509_VERIFY_PARAM* param = SSL_get0_param(native);
  if (addrErr) {
    SSL_set_tlsext_host_name(native, t.host.c_str());
    X509_VERIFY_PARAM_set1_host(param, t.host.c_str(), 0);
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(param, t.host.c_str());
  }
  OUTPOST_RETURN_IF_ERROR(connect(beast::get_lowest_layer(stream)));
  ec = asio::error::would_block;
  beast::get_lowest_layer(stream).expires_after(o.ioTimeout);
  stream.async_handshake(ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
  runOne(ioc);
  if (ec) {
    long verify = SSL_get_verify_result(native);
    if (verify != X509_V_OK)
      return core::unavailable("the certificate of " + t.host +
                               " is not trusted: " + X509_verify_cert_error_string(verify));
    return core::unavailable("TLS handshake with " + t.host + " failed: " + ec.message());
  }
  return fetch(stream, ioc, t, url, dest, o);
}

}  // namespace

core::Result<uint64_t> download(const std::string& url, const std::filesystem::path& dest,
                                const DownloadOptions& options) {
  std::string current = url;
  bool startedOver = false;
  for (int hop = 0; hop <= options.maxRedirects; ++hop) {
    OUTPOST_RETURN_IF_ERROR(
        checkUrl(hop == 0 ? "the package URL" : "a redirect's Location", current));
    OUTPOST_ASSIGN_OR_RETURN(Outcome outcome, fetchUrl(current, dest, options));
    if (auto* size = std::get_if<uint64_t>(&outcome)) return *size;
    if (auto* redirect = std::get_if<Redirect>(&outcome)) {
      current = redirect->location;
      continue;
    }
    // The server did not continue what we have: once, from the start.
    if (startedOver)
      return core::unavailable("GET " + current +
                               ": the server does not resume, nor send the whole file");
    startedOver = true;
    std::error_code ec;
    std::filesystem::remove(dest, ec);
    --hop;
  }
  return core::unavailable("GET " + url + ": more than " + std::to_string(options.maxRedirects) +
                           " redirects");
}

}  // namespace outpost::upgrade
