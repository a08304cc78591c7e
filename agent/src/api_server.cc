#include "outpost/agent/api_server.h"

#include <sys/stat.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <future>
#include <thread>

namespace outpost::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t kMaxBody = 1 << 20;

std::string urlDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

ApiRequest toRequest(const http::request<http::string_body>& req) {
  ApiRequest r;
  r.method = std::string(req.method_string());
  std::string target(req.target());
  auto q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) {
    std::string rest = target.substr(q + 1);
    size_t pos = 0;
    while (pos <= rest.size()) {
      size_t amp = rest.find('&', pos);
      std::string part = rest.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
      if (!part.empty()) {
        auto eq = part.find('=');
        try {
          r.query[urlDecode(part.substr(0, eq))] =
              eq == std::string::npos ? "" : urlDecode(part.substr(eq + 1));
        } catch (const std::exception&) {
          // a malformed escape: keep the raw text
          r.query[part.substr(0, eq)] = eq == std::string::npos ? "" : part.substr(eq + 1);
        }
      }
      if (amp == std::string::npos) break;
      pos = amp + 1;
    }
  }
  r.body = req.body();
  return r;
}

}  // namespace

class ApiServer::Impl {
 public:
  explicit Impl(core::Logger log) : log_(std::move(log)) {}

  struct Route {
    std::string method, path;
    Listener where;
    Handler handler;
  };

  ApiResponse dispatch(const ApiRequest& req, Listener from) {
    bool pathKnown = false;
    for (const auto& r : routes_) {
      if (r.path != req.path || (static_cast<int>(r.where) & static_cast<int>(from)) == 0) continue;
      pathKnown = true;
      if (r.method != req.method) continue;
      try {
        return r.handler(req);
      } catch (const std::exception& e) {
        log_.error("handler for ", req.method, " ", req.path, " failed: ", e.what());
        return {500, "application/json", R"({"error":"internal error"})"};
      }
    }
    if (pathKnown) return {405, "application/json", R"({"error":"method not allowed"})"};
    return {404, "application/json", R"({"error":"no such endpoint"})"};
  }

  template <typename Socket>
  class Session : public std::enable_shared_from_this<Session<Socket>> {
   public:
    Session(Socket socket, Impl& impl, Listener from)
        : socket_(std::move(socket)), impl_(impl), from_(from) {}
    void run() { read(); }

   private:
    void read() {
      parser_.emplace();
      parser_->body_limit(kMaxBody);
      parser_->header_limit(16 * 1024);
      http::async_read(
          socket_, buffer_, *parser_,
          [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
    }
    void onRead(beast::error_code ec) {
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::eof &&
            ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
          writeError(400, ec.message());
        }
        return;
      }
      auto req = parser_->release();
      ApiResponse r = impl_.dispatch(toRequest(req), from_);
      auto res = std::make_shared<http::response<http::string_body>>(
          static_cast<http::status>(r.status), req.version());
      res->set(http::field::server, "outpostd");
      res->set(http::field::content_type, r.contentType);
      res->keep_alive(req.keep_alive());
      res->body() = std::move(r.body);
      res->prepare_payload();
      http::async_write(socket_, *res,
                        [self = this->shared_from_this(), res](beast::error_code wec, size_t) {
                          if (wec || !res->keep_alive()) {
                            beast::error_code ignored;
                            self->socket_.shutdown(Socket::shutdown_send, ignored);
                            return;
                          }
                          self->read();
                        });
    }
    void writeError(int status, const std::string& why) {
      auto res = std::make_shared<http::response<http::string_body>>(
          static_cast<http::status>(status), 11);
      res->set(http::field::content_type, "application/json");
      res->body() = std::string(R"({"error":"bad request: )") + why + "\"}";
      res->keep_alive(false);
      res->prepare_payload();
      http::async_write(socket_, *res,
                        [self = this->shared_from_this(), res](beast::error_code, size_t) {
                          beast::error_code ignored;
                          self->socket_.shutdown(Socket::shutdown_send, ignored);
                        });
    }

    Socket socket_;
    Impl& impl_;
    Listener from_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
  };

  template <typename Acceptor>
  void accept(Acceptor& acceptor, Listener from) {
    acceptor.async_accept(
        [this, &acceptor, from](beast::error_code ec, typename Acceptor::protocol_type::socket s) {
          if (ec == asio::error::operation_aborted) return;
          if (!ec) {
            std::make_shared<Session<typename Acceptor::protocol_type::socket>>(std::move(s), *this,
                                                                                from)
                ->run();
          } else {
            log_.warn("accepting a local API connection failed: ", ec.message());
          }
          accept(acceptor, from);
        });
  }

  core::Status start(const std::string& unixPath, const std::string& tcpAddress) {
    namespace fs = std::filesystem;
    try {
      std::error_code fec;
      fs::path p(unixPath);
      if (p.has_parent_path()) fs::create_directories(p.parent_path(), fec);
      if (fs::is_socket(fs::symlink_status(p, fec)))
        fs::remove(p, fec);
      else if (fs::exists(fs::symlink_status(p, fec))) {
        return core::failedPrecondition("api.socket: \"" + unixPath +
                                        "\" exists and is not a socket");
      }
      unixAcceptor_.emplace(io_);
      unixAcceptor_->open();
      unixAcceptor_->bind(local::endpoint(unixPath));
      ::chmod(unixPath.c_str(), 0660);
      unixAcceptor_->listen();
      unixPath_ = unixPath;
      accept(*unixAcceptor_, Listener::kUnix);
    } catch (const std::exception& e) {
      return core::unavailable("api.socket: cannot listen on \"" + unixPath + "\": " + e.what());
    }
    if (!tcpAddress.empty()) {
      auto colon = tcpAddress.rfind(':');
      std::string host = tcpAddress.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      try {
        auto port = static_cast<unsigned short>(std::stoi(tcpAddress.substr(colon + 1)));
        tcp::endpoint ep(asio::ip::make_address(host), port);
        tcpAcceptor_.emplace(io_);
        tcpAcceptor_->open(ep.protocol());
        tcpAcceptor_->set_option(asio::socket_base::reuse_address(true));
        tcpAcceptor_->bind(ep);
        tcpAcceptor_->listen();
        auto bound = tcpAcceptor_->local_endpoint();
        std::string h = bound.address().to_string();
        if (bound.address().is_v6()) h = "[" + h + "]";
        {
          std::lock_guard lock(mu_);
          tcpBound_ = h + ":" + std::to_string(bound.port());
        }
        if (!bound.address().is_loopback()) {
          log_.warn("health and metrics listen on ", tcpBound_,
                    ", which is not a loopback address");
        }
        accept(*tcpAcceptor_, Listener::kTcp);
      } catch (const std::exception& e) {
        return core::unavailable("api.metrics_address: cannot listen on \"" + tcpAddress +
                                 "\": " + e.what());
      }
    }
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "api");
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
    log_.info("control API on unix:", unixPath,
              tcpBound_.empty() ? "" : ", health and metrics on http://", tcpBound_);
    return core::okStatus();
  }

  void stop() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    beast::error_code ec;
    if (unixAcceptor_) unixAcceptor_->close(ec);
    if (tcpAcceptor_) tcpAcceptor_->close(ec);
    if (!unixPath_.empty()) {
      std::error_code fec;
      std::filesystem::remove(unixPath_, fec);
      unixPath_.clear();
    }
  }

  bool alive(std::chrono::milliseconds timeout) {
    if (!thread_.joinable()) return true;
    auto p = std::make_shared<std::promise<void>>();
    auto f = p->get_future();
    asio::post(io_, [p] { p->set_value(); });
    return f.wait_for(timeout) == std::future_status::ready;
  }

  std::string tcpAddress() const {
    std::lock_guard lock(mu_);
    return tcpBound_;
  }

  core::Logger log_;
  std::vector<Route> routes_;
  asio::io_context io_{1};
  std::optional<local::acceptor> unixAcceptor_;
  std::optional<tcp::acceptor> tcpAcceptor_;
  std::string unixPath_;
  mutable std::mutex mu_;
  std::string tcpBound_;
  std::thread thread_;
};

ApiServer::ApiServer(core::Logger log) : impl_(std::make_unique<Impl>(std::move(log))) {}
ApiServer::~ApiServer() { impl_->stop(); }

void ApiServer::route(std::string method, std::string path, Listener where, Handler handler) {
  impl_->routes_.push_back({std::move(method), std::move(path), where, std::move(handler)});
}

core::Status ApiServer::start(const std::string& unixPath, const std::string& tcpAddress) {
  return impl_->start(unixPath, tcpAddress);
}
void ApiServer::stop() { impl_->stop(); }
std::string ApiServer::tcpAddress() const { return impl_->tcpAddress(); }
bool ApiServer::alive(std::chrono::milliseconds timeout) { return impl_->alive(timeout); }

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
