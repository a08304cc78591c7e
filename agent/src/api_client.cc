// The local API's client side: one request over the unix socket or TCP, bounded in time.
#include <utility>

#include "outpost/agent/api_server.h"

// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

namespace outpost::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;

namespace {

// One request and its answer, asynchronously, so the whole exchange is bounded by `timeout`.
template <typename Socket, typename Endpoint>
core::Result<ApiCallResult> exchange(const Endpoint& endpoint, const std::string& host,
                                     const std::string& method, const std::string& target,
                                     const std::string& body, std::chrono::milliseconds timeout) {
  asio::io_context io;
  Socket socket(io);
  http::request<http::string_body> req(http::string_to_verb(method), target, 11);
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "outpostctl");
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.keep_alive(false);
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  beast::error_code result = asio::error::timed_out;
  bool done = false;
  socket.async_connect(endpoint, [&](beast::error_code ec) {
    if (ec) {
      result = ec;
      done = true;
      return;
    }
    http::async_write(socket, req, [&](beast::error_code wec, size_t) {
      if (wec) {
        result = wec;
        done = true;
        return;
      }
      http::async_read(socket, buffer, parser, [&](beast::error_code rec, size_t) {
        result = rec;
        done = true;
      });
    });
  });
  io.run_for(timeout);
  if (!done)
    return core::deadlineExceeded("no answer within " + std::to_string(timeout.count()) + " ms");
  if (result) return core::unavailable(result.message());
  auto res = parser.release();
  return ApiCallResult{static_cast<int>(res.result_int()), res.body()};
}

}  // namespace

core::Result<ApiCallResult> callUnixSocket(const std::string& socketPath, const std::string& method,
                                           const std::string& target, const std::string& body,
                                           std::chrono::milliseconds timeout) {
  auto r = exchange<local::socket>(local::endpoint(socketPath), "localhost", method, target, body,
                                   timeout);
  if (!r.isOk()) return r.status().withContext("talking to the agent at " + socketPath);
  return r;
}

core::Result<ApiCallResult> callTcp(const std::string& hostPort, const std::string& method,
                                    const std::string& target, std::chrono::milliseconds timeout) {
  auto colon = hostPort.rfind(':');
  std::string host = hostPort.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  try {
    tcp::endpoint ep(asio::ip::make_address(host),
                     static_cast<unsigned short>(std::stoi(hostPort.substr(colon + 1))));
    auto r = exchange<tcp::socket>(ep, hostPort, method, target, "", timeout);
    if (!r.isOk()) return r.status().withContext("reaching " + hostPort);
    return r;
  } catch (const std::exception& e) {
    return core::invalidArgument("bad address \"" + hostPort + "\": " + e.what());
  }
}

}  // namespace outpost::agent
