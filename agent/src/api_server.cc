#include "outpost/agent/api_server.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "outpost/validation/validation.h"

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
  Impl(core::Logger log, core::MetricsRegistry* metrics)
      : log_(std::move(log)), metrics_(metrics ? *metrics : ownMetrics_) {}
  // The pause timers belong to io_, which goes first (it is declared after them).
  ~Impl() {
    unixState_.pauseTimer.reset();
    tcpState_.pauseTimer.reset();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  struct Route {
    std::string method, path;
    Listener where;
    Handler handler;
  };

  // One listener's connections and accept troubles; used on the API thread only.
  struct ListenerState {
    ListenerState(const char* n, core::MetricsRegistry& m)
        : name(n),
          open(m.gauge("outpost_api_connections", "Open connections to the local API, by listener",
                       {{"listener", n}})),
          refused(m.counter("outpost_api_connections_refused_total",
                            "Connections to the local API closed at once because api."
                            "max_connections were open, by listener",
                            {{"listener", n}})),
          timedOut(m.counter("outpost_api_connections_timed_out_total",
                             "Connections to the local API closed by api.idle_timeout or "
                             "api.header_timeout, by listener",
                             {{"listener", n}})),
          acceptErrors(
              m.counter("outpost_api_accept_errors_total",
                        "Failed accepts on the local API (EMFILE, ENFILE, ...), by listener",
                        {{"listener", n}})) {}
    const char* name;
    Listener from = Listener::kUnix;
    size_t active = 0;
    uint64_t refusedNow = 0;   // refused since the limit was last reached; 0: not at the limit
    uint64_t failuresNow = 0;  // accept failures in the current episode; 0: none
    std::chrono::steady_clock::time_point failingSince;
    std::chrono::milliseconds pause{0};
    std::optional<asio::steady_timer> pauseTimer;
    core::Gauge& open;
    core::Counter& refused;
    core::Counter& timedOut;
    core::Counter& acceptErrors;
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
    Session(Socket socket, Impl& impl, ListenerState& ls)
        : socket_(std::move(socket)), timer_(socket_.get_executor()), impl_(impl), ls_(ls) {
      ls_.open.set(static_cast<double>(++ls_.active));
    }
    ~Session() { ls_.open.set(static_cast<double>(--ls_.active)); }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // The first request must arrive within the header timeout of the accept.
    void run() {
      arm(impl_.options_.headerTimeout);
      read();
    }

   private:
    // Closes the socket when `d` passes; the pending operation then ends the session. The timer
    // holds no reference, so a finished session goes at once.
    void arm(std::chrono::milliseconds d) {
      timer_.expires_after(d);
      timer_.async_wait([weak = this->weak_from_this()](beast::error_code ec) {
        if (ec) return;  // re-armed or the session ended
        if (auto self = weak.lock()) {
          self->closed_ = true;
          self->ls_.timedOut.inc();
          beast::error_code ignored;
          self->socket_.close(ignored);
        }
      });
    }

    // Between requests of a kept-alive connection: idle until a byte comes, then the header
    // timeout.
    void waitNext() {
      if (buffer_.size() > 0) {  // a pipelined request is already here
        arm(impl_.options_.headerTimeout);
        return read();
      }
      arm(impl_.options_.idleTimeout);
      socket_.async_wait(Socket::wait_read,
                         [self = this->shared_from_this()](beast::error_code ec) {
                           if (ec || self->closed_) return;
                           self->arm(self->impl_.options_.headerTimeout);
                           self->read();
                         });
    }

    void read() {
      parser_.emplace();
      parser_->body_limit(kMaxBody);
      parser_->header_limit(16 * 1024);
      http::async_read(
          socket_, buffer_, *parser_,
          [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
    }

    void onRead(beast::error_code ec) {
      if (closed_) return;
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::eof &&
            ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
          writeError(400, ec.message());
        }
        return;
      }
      auto req = parser_->release();
      ApiResponse r = bodyProblem(req);
      if (r.status == 0) r = impl_.dispatch(toRequest(req), ls_.from);
      auto res = std::make_shared<http::response<http::string_body>>(
          static_cast<http::status>(r.status), req.version());
      res->set(http::field::server, "outpostd");
      res->set(http::field::content_type, r.contentType);
      res->keep_alive(req.keep_alive());
      res->body() = std::move(r.body);
      res->prepare_payload();
      arm(impl_.options_.idleTimeout);  // a client that does not read its answer is dropped too
      http::async_write(socket_, *res,
                        [self = this->shared_from_this(), res](beast::error_code wec, size_t) {
                          if (self->closed_) return;
                          if (wec || !res->keep_alive()) {
                            beast::error_code ignored;
                            self->socket_.shutdown(Socket::shutdown_send, ignored);
                            return;
                          }
                          self->waitNext();
                        });
    }

    // A JSON body that nests too deep is refused before any handler parses it (status 0: none).
    static ApiResponse bodyProblem(const http::request<http::string_body>& req) {
      if (req.body().empty()) return {0, "", ""};
      auto type = req[http::field::content_type];
      if (!type.empty() && type.find("json") == beast::string_view::npos) return {0, "", ""};
      core::Status s = validation::jsonWithin(req.body(), {100, kMaxBody});
      if (s.isOk()) return {0, "", ""};
      return {400, "application/json",
              nlohmann::json{{"error", "bad request: body: " + s.message()}}.dump()};
    }

    void writeError(int status, const std::string& why) {
      auto res = std::make_shared<http::response<http::string_body>>(
          static_cast<http::status>(status), 11);
      res->set(http::field::content_type, "application/json");
      res->body() = nlohmann::json{{"error", "bad request: " + why}}.dump();
      res->keep_alive(false);
      res->prepare_payload();
      arm(impl_.options_.idleTimeout);
      http::async_write(socket_, *res,
                        [self = this->shared_from_this(), res](beast::error_code, size_t) {
                          beast::error_code ignored;
                          self->socket_.shutdown(Socket::shutdown_send, ignored);
                        });
    }

    Socket socket_;
    asio::steady_timer timer_;
    Impl& impl_;
    ListenerState& ls_;
    bool closed_ = false;  // a timeout closed the socket
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
  };

  // A failed accept (most often EMFILE or ENFILE: no descriptor left) would fail again at once:
  // the listener pauses, doubling up to acceptPauseMax, and says so once per episode.
  std::chrono::milliseconds acceptFailed(ListenerState& ls, const beast::error_code& ec) {
    ls.acceptErrors.inc();
    if (ls.failuresNow++ == 0) {
      ls.failingSince = std::chrono::steady_clock::now();
      ls.pause = std::chrono::milliseconds(50);
      log_.error("local API (", ls.name, "): accepting a connection failed: ", ec.message(),
                 "; not accepting new connections for a while, retrying every ",
                 options_.acceptPauseMax.count(), " ms at most (open connections: ", ls.active,
                 "; see api.max_connections and the service's LimitNOFILE)");
    } else {
      ls.pause = std::min(ls.pause * 2, options_.acceptPauseMax);
    }
    return std::min(ls.pause, options_.acceptPauseMax);
  }

  void acceptSucceeded(ListenerState& ls) {
    if (ls.failuresNow == 0) return;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - ls.failingSince);
    log_.info("local API (", ls.name, "): accepting connections again after ", ls.failuresNow,
              ls.failuresNow == 1 ? " failure" : " failures", " over ", ms.count(), " ms");
    ls.failuresNow = 0;
  }

  template <typename Acceptor>
  void accept(Acceptor& acceptor, ListenerState& ls) {
    acceptor.async_accept([this, &acceptor, &ls](beast::error_code ec,
                                                 typename Acceptor::protocol_type::socket s) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        auto pause = acceptFailed(ls, ec);
        ls.pauseTimer->expires_after(pause);
        ls.pauseTimer->async_wait([this, &acceptor, &ls](beast::error_code tec) {
          if (!tec) accept(acceptor, ls);
        });
        return;
      }
      acceptSucceeded(ls);
      if (ls.active >= options_.maxConnections) {
        // Counted and logged before the close, so whoever sees the close also sees it counted.
        ls.refused.inc();
        if (ls.refusedNow++ == 0) {
          log_.warn("local API (", ls.name, "): ", ls.active,
                    " connections are open (api.max_connections), closing new ones until some "
                    "end");
        }
        // Closed at once: the descriptor is free again before the next accept.
        beast::error_code ignored;
        s.close(ignored);
      } else {
        if (ls.refusedNow > 0) {
          log_.info("local API (", ls.name, "): accepting connections again, ", ls.refusedNow,
                    " closed at the limit");
          ls.refusedNow = 0;
        }
        std::make_shared<Session<typename Acceptor::protocol_type::socket>>(std::move(s), *this, ls)
            ->run();
      }
      accept(acceptor, ls);
    });
  }

  // chown to the configured group, mode 0660.
  core::Status setSocketOwner(const std::string& path) {
    if (::chmod(path.c_str(), 0660) != 0) {
      return core::unavailable("api.socket: cannot set the mode of \"" + path +
                               "\": " + std::strerror(errno));
    }
    if (options_.socketGroup.empty()) return core::okStatus();
    std::vector<char> buf(16384);
    group g{};
    group* found = nullptr;
    int rc = getgrnam_r(options_.socketGroup.c_str(), &g, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr) {
      return core::failedPrecondition("api.socket_group: no group \"" + options_.socketGroup +
                                      "\" on this system" +
                                      (rc != 0 ? std::string(" (") + std::strerror(rc) + ")" : ""));
    }
    if (::chown(path.c_str(), static_cast<uid_t>(-1), found->gr_gid) != 0) {
      return core::failedPrecondition("api.socket_group: cannot give \"" + path + "\" to group \"" +
                                      options_.socketGroup + "\": " + std::strerror(errno));
    }
    return core::okStatus();
  }

  core::Status start(const std::string& unixPath, const std::string& tcpAddress,
                     const ApiServerOptions& options) {
    namespace fs = std::filesystem;
    options_ = options;
    if (options_.maxConnections == 0) options_.maxConnections = 1;
    unixState_.from = Listener::kUnix;
    tcpState_.from = Listener::kTcp;
    unixState_.pauseTimer.emplace(io_);
    tcpState_.pauseTimer.emplace(io_);
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
      unixPath_ = unixPath;
      OUTPOST_RETURN_IF_ERROR(setSocketOwner(unixPath));
      unixAcceptor_->listen();
      accept(*unixAcceptor_, unixState_);
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
        accept(*tcpAcceptor_, tcpState_);
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
              options_.socketGroup.empty() ? "" : " (group " + options_.socketGroup + ")",
              tcpBound_.empty() ? "" : ", health and metrics on http://", tcpBound_, "; at most ",
              options_.maxConnections, " connections each");
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
  core::MetricsRegistry ownMetrics_;  // when the caller gives none
  core::MetricsRegistry& metrics_;
  std::vector<Route> routes_;
  ApiServerOptions options_;
  // Declared before io_: sessions still queued in io_ when it is destroyed count themselves out.
  ListenerState unixState_{"unix", metrics_};
  ListenerState tcpState_{"tcp", metrics_};
  asio::io_context io_{1};
  std::optional<local::acceptor> unixAcceptor_;
  std::optional<tcp::acceptor> tcpAcceptor_;
  std::string unixPath_;
  mutable std::mutex mu_;
  std::string tcpBound_;
  std::thread thread_;
};

ApiServer::ApiServer(core::Logger log, core::MetricsRegistry* metrics)
    : impl_(std::make_unique<Impl>(std::move(log), metrics)) {}
ApiServer::~ApiServer() { impl_->stop(); }

void ApiServer::route(std::string method, std::string path, Listener where, Handler handler) {
  impl_->routes_.push_back({std::move(method), std::move(path), where, std::move(handler)});
}

core::Status ApiServer::start(const std::string& unixPath, const std::string& tcpAddress,
                              const ApiServerOptions& options) {
  return impl_->start(unixPath, tcpAddress, options);
}
void ApiServer::stop() { impl_->stop(); }
std::string ApiServer::tcpAddress() const { return impl_->tcpAddress(); }
bool ApiServer::alive(std::chrono::milliseconds timeout) { return impl_->alive(timeout); }

}  // namespace outpost::agent
