#include "outpost/agent/api_server.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include "support/test_util.h"

using namespace outpost::agent;
using outpost::test::TempDir;

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
