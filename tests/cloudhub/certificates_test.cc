// The node's client certificate for KubeEdge (issue 9 item 3, PROTOCOL.md §1 "Certificate
// bootstrap"): bootstrap from a token against a real HTTPS certificate server with its own CA,
// rotation over mutual TLS driven by a ManualClock, expiry at start, wall clock jumps.

#include "outpost/cloudhub/certificates.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "bootstrap/https_client.h"
#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "support/cert_server.h"
#include "support/mosquitto.h"
#include "support/test_util.h"

namespace outpost::cloudhub {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::CertServer;
using test::readFile;
using test::TempDir;
using test::waitFor;
using test::writeFile;

constexpr auto kLifetime = std::chrono::seconds(3600);

struct Fixture {
  TempDir dir;
  CertServer server{dir / "server"};
  core::ManualClock clock{std::chrono::system_clock::now()};
  core::Logging logging;
  core::MetricsRegistry metrics;
  fs::path certs = dir / "certs";

  Fixture() {
    server.setLifetime(kLifetime);
    writeFile(dir / "token", server.token() + "\n");
  }

  CertificateOptions options(bool withToken = true) {
    CertificateOptions o;
    o.nodeName = "edge-1";
    o.certServer = server.url();
    o.caFile = (certs / "ca.crt").string();
    o.certFile = (certs / "edge.crt").string();
    o.keyFile = (certs / "edge.key").string();
    if (withToken) o.tokenFile = (dir / "token").string();
    o.seed = 7;
    return o;
  }
  CertificateManagerPtr make(CertificateOptions o) {
    return makeCertificateManager(std::move(o), clock, logging, metrics);
  }
  // The certificate's subject or another openssl x509 field, as the CLI prints it.
  std::string x509(const std::string& what) {
    std::string out;
    test::run({"/usr/bin/openssl", "x509", "-in", (certs / "edge.crt").string(), "-noout", what,
               "-nameopt", "RFC2253"},
              &out);
    return out;
  }
  bool verifiedByCa() {
    std::string out;
    return test::run({"/usr/bin/openssl", "verify", "-CAfile", server.caFile(),
                      (certs / "edge.crt").string()},
                     &out) == 0;
  }
  // Moves time on and waits until the manager looked at its schedule again.
  void advance(const CertificateManager& m, core::Duration d) {
    auto before = m.state().checks;
    clock.advance(d);
    REQUIRE(waitFor([&] { return m.state().checks > before; }));
  }
  // Starts the schedule and waits for its first look, so later checks are the ones a test caused.
  void start(
      CertificateManager& m, std::function<void()> onRotated = [] {}) {
    m.startRotation(std::move(onRotated));
    REQUIRE(waitFor([&] { return m.state().checks >= 1; }));
  }
  bool noFiles() const {
    return !fs::exists(certs / "ca.crt") && !fs::exists(certs / "edge.crt") &&
           !fs::exists(certs / "edge.key");
  }
};

int mode(const fs::path& p) {
  struct stat st {};
  REQUIRE(stat(p.c_str(), &st) == 0);
  return static_cast<int>(st.st_mode & 0777);
}

TEST_CASE("a token bootstraps the node's certificate: CA pinned, key 0600, node CN and O, signed") {
  Fixture f;
  auto m = f.make(f.options());
  auto s = m->ensure();
  REQUIRE_MESSAGE(s.isOk(), s.toString());

  CHECK(readFile(f.certs / "ca.crt") == readFile(f.server.caFile()));
  CHECK(mode(f.certs / "edge.key") == 0600);
  std::string subject = f.x509("-subject");
  CHECK(subject.find("CN=system:node:edge-1") != std::string::npos);
  CHECK(subject.find("O=system:nodes") != std::string::npos);
  CHECK(f.verifiedByCa());
  std::string key;
  test::run({"/usr/bin/openssl", "pkey", "-in", (f.certs / "edge.key").string(), "-noout", "-text"},
            &key);
  CHECK(key.find("prime256v1") != std::string::npos);

  auto reqs = f.server.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].target == "/ca.crt");
  CHECK(reqs[1].target == "/edge.crt");
  CHECK(reqs[1].headers["authorization"] == "Bearer " + f.server.jwt());
  CHECK(reqs[1].headers["nodename"] == "edge-1");
  CHECK(reqs[1].status == 200);

  auto st = m->state();
  CHECK(st.present);
  REQUIRE(f.server.issued().size() == 1);
  CHECK(st.serial == f.server.issued()[0]);
  REQUIRE(st.nextRotation);
  auto now = f.clock.wallNow();
  CHECK(*st.nextRotation >= now + kLifetime * 7 / 10 - 1s);
  CHECK(*st.nextRotation <= now + kLifetime * 9 / 10 + 1s);
  CHECK(f.metrics.render().find("outpost_cloud_certificate_expiry_timestamp_seconds") !=
        std::string::npos);

  // A second start keeps the valid certificate and asks nothing.
  auto again = f.make(f.options());
  REQUIRE(again->ensure().isOk());
  CHECK(f.server.requests().size() == 2);
}

TEST_CASE(
    "the certificate server, as CloudCore's, reads the request as DER: a PEM one is refused") {
  // CloudCore hands the body of GET /edge.crt to Go's x509.ParseCertificateRequest, which reads
  // DER; a PEM request fails with "asn1: structure error: tags don't match" (HTTP 400), which is
  // how a real CloudCore refused the agent's bootstrap while it sent PEM.
  Fixture f;
  auto key = f.dir / "k.pem";
  auto pem = f.dir / "req.pem";
  auto der = f.dir / "req.der";
  REQUIRE(test::run({"/usr/bin/openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-nodes", "-keyout", key.string(), "-subj",
                     "/O=system:nodes/CN=system:node:edge-1", "-out", pem.string()}) == 0);
  REQUIRE(test::run({"/usr/bin/openssl", "req", "-in", pem.string(), "-outform", "DER", "-out",
                     der.string()}) == 0);
  auto ask = [&](const fs::path& body) {
    HttpsRequest r;
    r.server = f.server.url();
    r.target = "/edge.crt";
    r.body = readFile(body);
    r.headers = {{"Authorization", "Bearer " + f.server.jwt()}, {"NodeName", "edge-1"}};
    r.caPem = readFile(f.server.caFile());
    auto res = httpsGet(r);
    REQUIRE_MESSAGE(res.isOk(), res.status().toString());
    return *res;
  };
  auto refused = ask(pem);
  CHECK(refused.status == 400);
  CHECK(refused.body.find("asn1: structure error") != std::string::npos);
  CHECK(ask(der).status == 200);
}

TEST_CASE("a CA whose sha256 is not the token's is refused and nothing is written") {
  Fixture f;
  std::string token = f.server.token();
  token[0] = token[0] == '0' ? '1' : '0';
  writeFile(f.dir / "token", token);
  auto s = f.make(f.options())->ensure();
  CHECK(s.code() == core::Code::kPermissionDenied);
  CHECK(s.message().find("sha256") != std::string::npos);
  CHECK(s.message().find("nothing was written") != std::string::npos);
  CHECK(f.noFiles());
  auto reqs = f.server.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].target == "/ca.crt");
}

TEST_CASE("a JWT the certificate server refuses gives a clear error and writes nothing") {
  Fixture f;
  std::string token = f.server.token();
  writeFile(f.dir / "token", token.substr(0, token.find('.')) + ".eyJh.eyJi.c2ln");
  auto s = f.make(f.options())->ensure();
  CHECK(s.code() == core::Code::kUnauthenticated);
  CHECK(s.message().find("HTTP 401") != std::string::npos);
  CHECK(s.message().find("keadm gettoken") != std::string::npos);
  CHECK(f.noFiles());
  CHECK(f.server.requests().back().status == 401);
}

TEST_CASE("a malformed token is refused naming its file and the expected form") {
  Fixture f;
  for (const std::string& bad : std::vector<std::string>{
           "no-dot-at-all", "abc.eyJh.eyJi.c2ln", f.server.token().substr(0, 64) + ".not-a-jwt"}) {
    CAPTURE(bad);
    writeFile(f.dir / "token", bad);
    auto s = f.make(f.options())->ensure();
    CHECK(s.code() == core::Code::kInvalidArgument);
    CHECK(s.message().find((f.dir / "token").string()) != std::string::npos);
    CHECK(s.message().find("keadm gettoken") != std::string::npos);
  }
  CHECK(f.server.requests().empty());
  CHECK(f.noFiles());
}

TEST_CASE("an unreachable certificate server is named in the error") {
  Fixture f;
  auto o = f.options();
  o.certServer = "https://127.0.0.1:" + std::to_string(test::freePort());
  auto s = f.make(o)->ensure();
  CHECK(s.code() == core::Code::kUnavailable);
  CHECK(s.message().find("cannot connect to " + o.certServer) != std::string::npos);
  CHECK(f.noFiles());
}

TEST_CASE("rotation at 70-90 % of the lifetime over mutual TLS: new serial, new files, callback") {
  Fixture f;
  auto m = f.make(f.options());
  REQUIRE(m->ensure().isOk());
  std::string oldSerial = m->state().serial;
  std::string oldCert = readFile(f.certs / "edge.crt");
  std::string oldKey = readFile(f.certs / "edge.key");
  std::atomic<int> called{0};
  f.start(*m, [&] { called++; });

  f.advance(*m, kLifetime * 69 / 100);
  CHECK(m->state().rotations == 0);
  f.advance(*m, kLifetime * 22 / 100);
  REQUIRE(waitFor([&] { return m->state().rotations == 1; }));
  CHECK(called == 1);
  auto st = m->state();
  CHECK(st.serial != oldSerial);
  CHECK(st.lastError.empty());
  CHECK(readFile(f.certs / "edge.crt") != oldCert);
  CHECK(readFile(f.certs / "edge.key") != oldKey);
  CHECK(mode(f.certs / "edge.key") == 0600);
  CHECK(f.verifiedByCa());
  CHECK(f.x509("-serial").find(st.serial) != std::string::npos);

  auto last = f.server.requests().back();
  CHECK(last.target == "/edge.crt");
  CHECK(last.clientSerial == oldSerial);
  CHECK(last.headers.count("authorization") == 0);
  CHECK(last.headers["nodename"] == "edge-1");
  CHECK(f.metrics.render().find("outpost_cloud_certificate_rotations_total 1") !=
        std::string::npos);

  // The new certificate is due at 70-90 % of its own lifetime, not at once.
  for (int i = 0; i < 5; ++i) f.advance(*m, 1min);
  CHECK(m->state().rotations == 1);
  m->stop();
}

TEST_CASE("a certificate expired at start is re-bootstrapped when a token is configured") {
  Fixture f;
  f.server.setBackdate(kLifetime + 60s);  // issued already expired
  REQUIRE(f.make(f.options())->ensure().isOk());
  std::string expired = f.server.issued().back();
  f.server.setBackdate(0s);

  auto m = f.make(f.options());
  auto s = m->ensure();
  REQUIRE_MESSAGE(s.isOk(), s.toString());
  CHECK(f.server.issued().size() == 2);
  CHECK(m->state().serial != expired);
  CHECK(*m->state().notAfter > f.clock.wallNow());
  CHECK(f.server.requests().back().headers["authorization"] == "Bearer " + f.server.jwt());
}

TEST_CASE("without a token, a missing or expired certificate tells the operator what to do") {
  Fixture f;
  auto o = f.options(/*withToken=*/false);
  auto missing = f.make(o)->ensure();
  CHECK(missing.code() == core::Code::kFailedPrecondition);
  CHECK(missing.message().find("does not exist") != std::string::npos);
  CHECK(missing.message().find("cloud.websocket.token_file") != std::string::npos);
  CHECK(missing.message().find("keadm gettoken") != std::string::npos);

  f.server.setBackdate(kLifetime + 60s);
  REQUIRE(f.make(f.options())->ensure().isOk());
  auto expired = f.make(o)->ensure();
  CHECK(expired.code() == core::Code::kFailedPrecondition);
  CHECK(expired.message().find(o.certFile + " expired on") != std::string::npos);
  CHECK(expired.message().find("cloud.websocket.token_file") != std::string::npos);
  // cert_server is set: the advice is the token, not to set cert_server.
  CHECK(expired.message().find("set cloud.websocket.cert_server") == std::string::npos);
  CHECK(expired.message().find("cloud.websocket.cert_server is " + o.certServer) !=
        std::string::npos);
  // Without one, it says to set it.
  o.certServer.clear();
  auto noServer = f.make(o)->ensure();
  CHECK(noServer.message().find("expired on") != std::string::npos);
  CHECK(noServer.message().find("set cloud.websocket.cert_server") != std::string::npos);
  CHECK(expired.message().find("cloud.tls.cert") != std::string::npos);
  CHECK(f.server.issued().size() == 1);
}

TEST_CASE("a wall clock set forward renews once, not again and again") {
  Fixture f;
  auto m = f.make(f.options(/*withToken=*/false));
  REQUIRE(f.make(f.options())->ensure().isOk());  // bootstrap with the token; m itself has none
  REQUIRE(m->ensure().isOk());
  f.start(*m);
  f.clock.setWall(f.clock.wallNow() + std::chrono::hours(24 * 30));
  f.advance(*m, 1min);
  REQUIRE(waitFor([&] { return m->state().rotations == 1; }));
  for (int i = 0; i < 10; ++i) f.advance(*m, 1min);
  CHECK(m->state().rotations == 1);
  CHECK(f.server.issued().size() == 2);
  m->stop();
}

TEST_CASE("a wall clock set back does not stop rotation") {
  Fixture f;
  auto m = f.make(f.options());
  REQUIRE(m->ensure().isOk());
  f.start(*m);
  f.clock.setWall(f.clock.wallNow() - std::chrono::hours(24 * 30));
  f.advance(*m, kLifetime / 2);
  CHECK(m->state().rotations == 0);
  f.advance(*m, kLifetime * 45 / 100);
  REQUIRE(waitFor([&] { return m->state().rotations == 1; }));
  m->stop();
}

TEST_CASE("a failed renewal is recorded and retried with back-off until it succeeds") {
  Fixture f;
  auto m = f.make(f.options());
  REQUIRE(m->ensure().isOk());
  f.start(*m);
  f.server.setRefuse(true);
  f.advance(*m, kLifetime * 91 / 100);
  REQUIRE(waitFor([&] { return m->state().failures >= 1; }));
  CHECK(m->state().lastError.find("HTTP 503") != std::string::npos);
  CHECK(m->state().rotations == 0);

  f.server.setRefuse(false);
  f.advance(*m, 10min);  // past the longest first retry wait (retryBase 10 s)
  REQUIRE(waitFor([&] { return m->state().rotations == 1; }));
  CHECK(m->state().lastError.empty());
  m->stop();
}

}  // namespace
}  // namespace outpost::cloudhub
