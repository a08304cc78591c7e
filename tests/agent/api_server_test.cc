#include "outpost/agent/api_server.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "support/test_util.h"

using namespace outpost::agent;
using outpost::test::TempDir;
using outpost::test::waitFor;

TEST_CASE(
    "the local API serves routes on the unix socket and on a loopback port chosen at bind time") {
  TempDir dir;
  std::string sock = (dir / "run" / "api.sock").string();
  ApiServer server{outpost::core::Logger()};
  server.route("GET", "/v1/echo", Listener::kUnix, [](const ApiRequest& r) {
    return ApiResponse{200, "text/plain",
                       "name=" + (r.query.count("name") ? r.query.at("name") : "")};
  });
  server.route("GET", "/healthz", Listener::kBoth, [](const ApiRequest&) {
    return ApiResponse{200, "text/plain", "ok"};
  });
  REQUIRE(server.start(sock, "127.0.0.1:0").isOk());

  struct stat st {};
  REQUIRE(stat(sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0660);

  auto echo = callUnixSocket(sock, "GET", "/v1/echo?name=web%20server");
  REQUIRE(echo.isOk());
  CHECK(echo->status == 200);
  CHECK(echo->body == "name=web server");

  std::string tcp = server.tcpAddress();
  REQUIRE(tcp.rfind("127.0.0.1:", 0) == 0);
  CHECK(tcp != "127.0.0.1:0");
  auto health = callTcp(tcp, "GET", "/healthz");
  REQUIRE(health.isOk());
  CHECK(health->body == "ok");

  // Control routes are not offered to the TCP listener; unknown paths and methods are told apart.
  CHECK(callTcp(tcp, "GET", "/v1/echo")->status == 404);
  CHECK(callUnixSocket(sock, "GET", "/nope")->status == 404);
  CHECK(callUnixSocket(sock, "POST", "/healthz")->status == 405);

  server.stop();
  CHECK_FALSE(std::filesystem::exists(sock));
  auto gone = callUnixSocket(sock, "GET", "/healthz");
  CHECK_FALSE(gone.isOk());
  CHECK(gone.status().message().find(sock) != std::string::npos);
}

TEST_CASE("a stale socket file is replaced, but a regular file in its place is refused") {
  TempDir dir;
  std::string path = (dir / "api.sock").string();
  {
    ApiServer first{outpost::core::Logger()};
    REQUIRE(first.start(path, "").isOk());
    // Leave the socket file behind as a crashed agent would.
  }
  outpost::test::writeFile(dir / "api.sock", "");  // now a plain file
  ApiServer second{outpost::core::Logger()};
  auto s = second.start(path, "");
  CHECK(s.code() == outpost::core::Code::kFailedPrecondition);
  CHECK(s.message().find("not a socket") != std::string::npos);
}

TEST_CASE("a busy TCP address fails the start with the key that names it") {
  TempDir dir;
  ApiServer a{outpost::core::Logger()}, b{outpost::core::Logger()};
  REQUIRE(a.start((dir / "a.sock").string(), "127.0.0.1:0").isOk());
  auto s = b.start((dir / "b.sock").string(), a.tcpAddress());
  CHECK(s.code() == outpost::core::Code::kUnavailable);
  CHECK(s.message().find("api.metrics_address") != std::string::npos);
}

// ---- limits: connections, timeouts, accept failures (a local user must not hold the API)

namespace {

using namespace std::chrono_literals;

// A raw connection that sends nothing unless told: what a misbehaving local client holds open.
int rawUnix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

int rawTcp(const std::string& hostPort) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(hostPort.substr(hostPort.rfind(':') + 1))));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

// Reads until the server closes the connection; true when it did within `timeout`.
bool closedWithin(int fd, std::chrono::milliseconds timeout, std::string* got = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return true;  // EOF (or reset): closed
    if (got) got->append(buf, static_cast<size_t>(n));
  }
}

size_t countLines(const std::string& text, const std::string& fragment) {
  size_t n = 0;
  for (size_t at = text.find(fragment); at != std::string::npos; at = text.find(fragment, at + 1))
    ++n;
  return n;
}

double metricValue(outpost::core::MetricsRegistry& m, const std::string& series) {
  std::string text = m.render();
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(text.substr(at + series.size() + 2));
}

struct LoggedServer {
  TempDir dir;
  std::string logPath = (dir / "api.log").string();
  outpost::core::Logging logging{{outpost::core::LogLevel::kDebug, false, logPath}};
  outpost::core::MetricsRegistry metrics;
  ApiServer server{logging.get("api"), &metrics};
  std::string sock = (dir / "api.sock").string();
  LoggedServer() {
    server.route("GET", "/healthz", Listener::kBoth, [](const ApiRequest&) {
      return ApiResponse{200, "text/plain", "ok"};
    });
  }
  std::string log() {
    logging.flush();
    return outpost::test::readFile(logPath);
  }
};

}  // namespace

TEST_CASE(
    "beyond api.max_connections new connections are closed at once, on the socket and the metrics "
    "port, and the API answers again once the silent ones time out") {
  LoggedServer s;
  ApiServerOptions o;
  o.maxConnections = 4;
  // Long enough that the silent connections still hold every slot while the 40 refused ones are
  // made, also on a loaded machine.
  o.headerTimeout = 5s;
  o.idleTimeout = 5s;
  REQUIRE(s.server.start(s.sock, "127.0.0.1:0", o).isOk());
  const std::string tcp = s.server.tcpAddress();

  std::vector<int> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(rawUnix(s.sock));
  for (int i = 0; i < 4; ++i) silent.push_back(rawTcp(tcp));
  REQUIRE(waitFor([&] {
    return metricValue(s.metrics, "outpost_api_connections{listener=\"unix\"}") == 4 &&
           metricValue(s.metrics, "outpost_api_connections{listener=\"tcp\"}") == 4;
  }));

  // Over the limit: many clients, each closed at once; one log line per listener, not one each.
  // Each refusal is counted by the time its client sees the close.
  for (int i = 0; i < 40; ++i) {
    int fd = i % 2 ? rawUnix(s.sock) : rawTcp(tcp);
    CHECK(closedWithin(fd, 1000ms));
    ::close(fd);
    std::string listener = i % 2 ? "unix" : "tcp";
    CHECK(metricValue(s.metrics, "outpost_api_connections_refused_total{listener=\"" + listener +
                                     "\"}") == i / 2 + 1);
  }
  CHECK(metricValue(s.metrics, "outpost_api_connections_refused_total{listener=\"unix\"}") == 20);
  CHECK(metricValue(s.metrics, "outpost_api_connections_refused_total{listener=\"tcp\"}") == 20);
  CHECK(countLines(s.log(), "closing new ones until some end") == 2);
  CHECK_FALSE(callUnixSocket(s.sock, "GET", "/healthz", "", 1000ms).isOk());

  // The silent connections are dropped by the header timeout; then the API answers.
  for (int fd : silent) {
    CHECK(closedWithin(fd, 20s));
    ::close(fd);
  }
  REQUIRE(waitFor([&] {
    auto r = callUnixSocket(s.sock, "GET", "/healthz", "", 1000ms);
    return r.isOk() && r->status == 200;
  }));
  auto health = callTcp(tcp, "GET", "/healthz", 1000ms);
  REQUIRE(health.isOk());
  CHECK(health->body == "ok");
  CHECK(metricValue(s.metrics, "outpost_api_connections_timed_out_total{listener=\"unix\"}") >= 4);
  CHECK(countLines(s.log(), "accepting connections again") >= 1);
}

TEST_CASE(
    "a silent or slow client is closed after api.header_timeout, a kept-alive one after "
    "api.idle_timeout") {
  LoggedServer s;
  ApiServerOptions o;
  o.headerTimeout = 300ms;
  o.idleTimeout = 1200ms;
  REQUIRE(s.server.start(s.sock, "", o).isOk());

  // Silent: closed after the header timeout.
  int silent = rawUnix(s.sock);
  auto began = std::chrono::steady_clock::now();
  CHECK(closedWithin(silent, 5s));
  CHECK(std::chrono::steady_clock::now() - began >= 250ms);
  ::close(silent);

  // A byte every 100 ms does not keep a request alive past the header timeout.
  int slow = rawUnix(s.sock);
  began = std::chrono::steady_clock::now();
  bool closed = false;
  for (char ch :
       std::string("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ") + std::string(60, 'a')) {
    if (::send(slow, &ch, 1, MSG_NOSIGNAL) != 1) {
      closed = true;
      break;
    }
    pollfd p{slow, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      closed = true;
      break;
    }
  }
  CHECK(closed);
  CHECK(std::chrono::steady_clock::now() - began < 3s);
  ::close(slow);

  // Kept alive after an answer: closed once idle for the idle timeout, not the header timeout.
  int kept = rawUnix(s.sock);
  std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::send(kept, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  began = std::chrono::steady_clock::now();
  std::string answer;
  CHECK(closedWithin(kept, 10s, &answer));
  auto idle = std::chrono::steady_clock::now() - began;
  CHECK(answer.find("200 OK") != std::string::npos);
  CHECK(idle >= 1000ms);
  ::close(kept);
}

TEST_CASE(
    "when accept fails (no descriptor left) the listener pauses and says so once, then once "
    "more when it recovers") {
  LoggedServer s;
  ApiServerOptions o;
  o.acceptPauseMax = 100ms;
  REQUIRE(s.server.start(s.sock, "", o).isOk());

  // Client sockets made while descriptors are plenty; then the soft limit leaves the server none.
  std::vector<int> clients;
  for (int i = 0; i < 8; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    clients.push_back(fd);
  }
  int highest = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    highest = std::max(highest, std::stoi(e.path().filename().string()));
  // Every lower number taken too (closed descriptors leave gaps that accept would fill).
  std::vector<int> fillers;
  while (true) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    if (fd > highest) {
      ::close(fd);
      break;
    }
    fillers.push_back(fd);
  }
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest + 1);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  struct Restore {
    rlimit r;
    ~Restore() { ::setrlimit(RLIMIT_NOFILE, &r); }
  } restore{saved};

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", s.sock.c_str());
  for (int fd : clients)
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(waitFor([&] {
    return metricValue(s.metrics, "outpost_api_accept_errors_total{listener=\"unix\"}") >= 5;
  }));
  ::setrlimit(RLIMIT_NOFILE, &saved);

  // Recovered: the waiting clients are taken, and the API answers.
  REQUIRE(waitFor([&] {
    auto r = callUnixSocket(s.sock, "GET", "/healthz", "", 1000ms);
    return r.isOk() && r->status == 200;
  }));
  std::string log = s.log();
  INFO(log);
  CHECK(countLines(log, "accepting a connection failed") == 1);
  CHECK(countLines(log, "Too many open files") == 1);
  CHECK(countLines(log, "accepting connections again after") == 1);
  for (int fd : clients) ::close(fd);
  for (int fd : fillers) ::close(fd);
}

TEST_CASE(
    "api.socket_group gives the socket to that group, mode 0660; an unknown group is refused") {
  TempDir dir;
  group* g = ::getgrnam("nogroup");
  if (!g) g = ::getgrnam("daemon");
  REQUIRE(g != nullptr);
  std::string name = g->gr_name;
  gid_t gid = g->gr_gid;
  std::string sock = (dir / "api.sock").string();
  ApiServer server{outpost::core::Logger()};
  ApiServerOptions o;
  o.socketGroup = name;
  REQUIRE(server.start(sock, "", o).isOk());
  struct stat st {};
  REQUIRE(::stat(sock.c_str(), &st) == 0);
  CHECK(st.st_gid == gid);
  CHECK((st.st_mode & 0777) == 0660);

  ApiServer other{outpost::core::Logger()};
  o.socketGroup = "no-such-group-here";
  auto s = other.start((dir / "b.sock").string(), "", o);
  CHECK_FALSE(s.isOk());
  CHECK(s.message().find("api.socket_group") != std::string::npos);
}

TEST_CASE("a JSON request body nested too deep is refused before any handler parses it") {
  TempDir dir;
  std::string sock = (dir / "api.sock").string();
  ApiServer server{outpost::core::Logger()};
  int called = 0;
  server.route("POST", "/v1/thing", Listener::kUnix, [&](const ApiRequest&) {
    ++called;
    return ApiResponse{200, "application/json", "{}"};
  });
  REQUIRE(server.start(sock, "").isOk());
  auto deep =
      callUnixSocket(sock, "POST", "/v1/thing", std::string(5000, '[') + std::string(5000, ']'));
  REQUIRE(deep.isOk());
  CHECK(deep->status == 400);
  CHECK(deep->body.find("deeper") != std::string::npos);
  CHECK(called == 0);
  auto fine = callUnixSocket(sock, "POST", "/v1/thing", R"({"a":[1,[2]]})");
  REQUIRE(fine.isOk());
  CHECK(fine->status == 200);
  CHECK(called == 1);
}
