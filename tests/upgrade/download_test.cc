// Downloads from a loopback HTTP server: whole, resumed after a cut, started over when the server
// does not resume, bounded in size, followed through a redirect.
#include "outpost/upgrade/download.h"

#include <doctest/doctest.h>

#include "support/file_server.h"
#include "support/test_util.h"

using outpost::core::Code;
using outpost::upgrade::download;

namespace {
std::string payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7919) % 251);
  return s;
}
}  // namespace

TEST_CASE("a download cut halfway resumes from where it stopped") {
  outpost::test::TempDir dir;
  outpost::test::FileServer server;
  const std::string body = payload(3 << 20);
  server.put("/outpost.deb", body);
  auto dest = dir / "outpost.deb";

  server.cutNextAfter(body.size() / 2);
  outpost::upgrade::DownloadOptions o;
  uint64_t lastHave = 0;
  o.progress = [&](uint64_t have, std::optional<uint64_t> total) {
    lastHave = have;
    CHECK(total == body.size());
  };
  auto first = download(server.url("/outpost.deb"), dest, o);
  REQUIRE_FALSE(first.isOk());
  CHECK(first.status().code() == Code::kUnavailable);
  CHECK(std::filesystem::file_size(dest) == body.size() / 2);  // what arrived is kept
  CHECK(lastHave == body.size() / 2);

  auto second = download(server.url("/outpost.deb"), dest, o);
  REQUIRE_MESSAGE(second.isOk(), second.status().toString());
  CHECK(*second == body.size());
  CHECK(outpost::test::readFile(dest) == body);
  // The second request asked only for the rest.
  auto ranges = server.ranges();
  REQUIRE(ranges.size() == 2);
  CHECK(ranges[0] == "");
  CHECK(ranges[1] == "bytes=" + std::to_string(body.size() / 2) + "-");

  // Complete already: the server's 416 says so, nothing is fetched again.
  auto third = download(server.url("/outpost.deb"), dest, o);
  REQUIRE(third.isOk());
  CHECK(*third == body.size());
  CHECK(outpost::test::readFile(dest) == body);
}

TEST_CASE("a server that does not resume sends the whole file again, which replaces the part") {
  outpost::test::TempDir dir;
  outpost::test::FileServer server;
  const std::string body = payload(200000);
  server.put("/p.deb", body);
  auto dest = dir / "p.deb";
  outpost::test::writeFile(dest, body.substr(0, 1000));
  server.setIgnoreRange(true);
  auto r = download(server.url("/p.deb"), dest, {});
  REQUIRE_MESSAGE(r.isOk(), r.status().toString());
  CHECK(outpost::test::readFile(dest) == body);
}

TEST_CASE("a part that is not the start of the file is replaced by the whole file") {
  outpost::test::TempDir dir;
  outpost::test::FileServer server;
  const std::string body = payload(1000);
  server.put("/p.deb", body);
  auto dest = dir / "p.deb";
  outpost::test::writeFile(dest, payload(5000));  // longer than the file: 416 with another size
  auto r = download(server.url("/p.deb"), dest, {});
  REQUIRE_MESSAGE(r.isOk(), r.status().toString());
  CHECK(outpost::test::readFile(dest) == body);
}

TEST_CASE("a package larger than the limit is refused") {
  outpost::test::TempDir dir;
  outpost::test::FileServer server;
  server.put("/big.deb", payload(10000));
  outpost::upgrade::DownloadOptions o;
  o.maxBytes = 9999;
  auto r = download(server.url("/big.deb"), dir / "big.deb", o);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kResourceExhausted);
  CHECK(r.status().message().find("more than 9999 bytes (upgrade.max_package_bytes)") !=
        std::string::npos);
}

TEST_CASE("a missing package, a redirect and a bad Location") {
  outpost::test::TempDir dir;
  outpost::test::FileServer server;
  server.put("/real.deb", payload(100));
  auto missing = download(server.url("/nothing.deb"), dir / "a.deb", {});
  REQUIRE_FALSE(missing.isOk());
  CHECK(missing.status().message() == "GET " + server.url("/nothing.deb") + ": 404 Not Found");
  // Not a network failure: asking again does not help (the upgrader does not retry it).
  CHECK(missing.status().code() == Code::kFailedPrecondition);

  server.redirect("/moved.deb", "/real.deb");
  auto moved = download(server.url("/moved.deb"), dir / "b.deb", {});
  REQUIRE_MESSAGE(moved.isOk(), moved.status().toString());
  CHECK(*moved == 100);

  server.redirect("/evil.deb", "file:///etc/shadow");
  auto evil = download(server.url("/evil.deb"), dir / "c.deb", {});
  REQUIRE_FALSE(evil.isOk());
  CHECK(evil.status().message().starts_with("a redirect's Location \"file:///etc/shadow\""));
}
