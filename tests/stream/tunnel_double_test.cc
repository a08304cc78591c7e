// The tunnel over the real TLS WebSocket connection (the agent's dialer on cloudhub's Beast
// client) against the stream-tunnel double, which accepts it as cloudstream does.
#include <doctest/doctest.h>

#include <fstream>

#include "outpost/agent/stream_dialer.h"
#include "support/stream_tunnel_double.h"
#include "support/test_util.h"
#include "tunnel_test_util.h"

using namespace outpost;
using namespace outpost::stream;
using namespace std::chrono_literals;

namespace {

void append(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::app | std::ios::binary);
  out << text;
}

struct Rig {
  explicit Rig(const std::string& node = "edge-1", TunnelLimits limits = {})
      : tls(test::makeTlsFiles(dir.path(), "system:node:" + node, "system:nodes")), cloud(tls) {
    agent::StreamDialerOptions d;
    d.server = cloud.address();
    d.caFile = tls.ca;
    d.certFile = tls.clientCert;
    d.keyFile = tls.clientKey;
    d.nodeName = node;
    d.nodeAddress = "10.1.2.3";
    TunnelOptions o;
    o.limits = limits;
    o.backoffBase = 20ms;
    o.backoffCap = 100ms;
    o.followPoll = 20ms;
    tunnel = Tunnel::make(o, agent::makeStreamDialer(d), streams, relays.factory(), metrics,
                          core::Logger());
    tunnel->start();
  }
  ~Rig() { tunnel->stop(); }

  test::TempDir dir;
  test::TlsFiles tls;
  test::StreamTunnelDouble cloud;
  test::FileStreams streams;
  test::EchoRelays relays;
  core::MetricsRegistry metrics;
  std::unique_ptr<Tunnel> tunnel;
};

}  // namespace

TEST_CASE("the node opens the tunnel with its certificate and the headers cloudstream reads") {
  Rig rig;
  REQUIRE(rig.cloud.waitConnected());
  CHECK(rig.cloud.nodeName() == "edge-1");
  CHECK(rig.cloud.internalIp() == "10.1.2.3");
  CHECK(rig.cloud.clientCn() == "system:node:edge-1");
  REQUIRE(test::waitFor([&] { return rig.tunnel->status().connected; }));
  CHECK(rig.metrics.render().find("outpost_stream_tunnel_connected 1") != std::string::npos);
}

TEST_CASE("kubectl logs through the tunnel, and a pod of another node refused") {
  Rig rig;
  REQUIRE(rig.cloud.waitConnected());
  append(rig.dir / "0.log",
         "2026-12-06T10:00:00Z stdout F hello\n2026-12-06T10:00:01Z stderr P wor\n"
         "2026-12-06T10:00:02Z stderr F ld\n");
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  auto s = rig.cloud.logs("default", "web", "app", "follow=true");
  REQUIRE(s->waitFor([](const std::string& r) { return r == "hello\nworld\n"; }));
  append(rig.dir / "0.log", "2026-12-06T10:00:03Z stdout F more\n");
  REQUIRE(s->waitFor([](const std::string& r) { return r == "hello\nworld\nmore\n"; }));
  append(rig.dir / "1.log", "2026-12-06T10:00:09Z stdout F after the restart\n");
  rig.streams.setLog("default/web/app", (rig.dir / "1.log").string(), "c2");
  REQUIRE(s->waitFor(
      [](const std::string& r) { return r == "hello\nworld\nmore\nafter the restart\n"; }));
  s->remove();

  auto other = rig.cloud.logs("default", "on-edge-2", "app");
  REQUIRE(other->waitRemoved());
  CHECK(other->received() == "pod default/on-edge-2 is not on this node\n");
}

TEST_CASE("top and exec through the tunnel") {
  Rig rig;
  REQUIRE(rig.cloud.waitConnected());
  rig.streams.setMetrics("container_cpu_usage_seconds_total{container=\"app\"} 1.5\n");
  auto m = rig.cloud.metrics();
  REQUIRE(m->waitRemoved());
  CHECK(m->received() == "container_cpu_usage_seconds_total{container=\"app\"} 1.5\n");

  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  rig.streams.setExecUrl("http://127.0.0.1:9/exec/abc");
  auto e = rig.cloud.exec("default", "web", "app", "command=sh&stdin=1&stdout=1&tty=1");
  REQUIRE(test::waitFor([&] { return rig.relays.started() == 1; }));
  e->send("echo hi\r");
  REQUIRE(e->waitFor([](const std::string& r) { return r == "echo:echo hi\r"; }));
  e->remove();
  REQUIRE(test::waitFor([&] { return rig.relays.closed(); }));

  auto bad = rig.cloud.metrics("/stats/summary");
  REQUIRE(bad->waitRemoved());
  CHECK(bad->received().find("not a served endpoint") != std::string::npos);
}

TEST_CASE("the tunnel dropped mid-session is dialled again, and serves again") {
  Rig rig;
  REQUIRE(rig.cloud.waitConnected());
  append(rig.dir / "0.log", "2026-12-06T10:00:00Z stdout F one\n");
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  auto s = rig.cloud.logs("default", "web", "app", "follow=1");
  REQUIRE(s->waitFor([](const std::string& r) { return r == "one\n"; }));
  REQUIRE(rig.tunnel->status().sessions == 1);
  rig.cloud.dropTunnel();
  REQUIRE(rig.cloud.waitConnected(2));
  REQUIRE(test::waitFor([&] { return rig.tunnel->status().connected; }));
  CHECK(rig.tunnel->status().sessions == 0);  // the old session ended with its connection
  CHECK(rig.tunnel->status().connects == 2);
  auto again = rig.cloud.logs("default", "web", "app");
  REQUIRE(again->waitRemoved());
  CHECK(again->received() == "one\n");
}

TEST_CASE("cloudstream's CloseConnect ends the tunnel with its reason; the node dials again") {
  Rig rig;
  REQUIRE(rig.cloud.waitConnected());
  rig.cloud.closeTunnel("failed to Update KubeletEndpoint Port");
  REQUIRE(rig.cloud.waitConnected(2));
  CHECK(rig.tunnel->status().lastError ==
        "the cloud closed the tunnel: failed to Update KubeletEndpoint Port");
}

TEST_CASE("the double refuses as cloudstream: a certificate from another CA, no node name") {
  test::TempDir other;
  auto foreign = test::makeTlsFiles(other.path(), "system:node:edge-1", "system:nodes");
  Rig rig;
  REQUIRE(rig.cloud.waitConnected());
  size_t before = rig.cloud.refusals().size();

  agent::StreamDialerOptions d;
  d.server = rig.cloud.address();
  d.caFile = rig.tls.ca;
  d.certFile = foreign.clientCert;
  d.keyFile = foreign.clientKey;
  d.nodeName = "edge-1";
  test::MemoryCloud unused;
  core::MetricsRegistry metrics;
  auto t =
      Tunnel::make({}, agent::makeStreamDialer(d), rig.streams, nullptr, metrics, core::Logger());
  t->start();
  REQUIRE(test::waitFor([&] { return !t->status().lastError.empty(); }));
  CHECK_FALSE(t->status().connected);
  t->stop();
  REQUIRE(test::waitFor([&] { return rig.cloud.refusals().size() > before; }));
  CHECK(rig.cloud.refusals().back().rfind("TLS", 0) == 0);

  d.certFile = rig.tls.clientCert;
  d.keyFile = rig.tls.clientKey;
  d.nodeName = "";
  auto nameless =
      Tunnel::make({}, agent::makeStreamDialer(d), rig.streams, nullptr, metrics, core::Logger());
  nameless->start();
  REQUIRE(test::waitFor([&] { return !nameless->status().lastError.empty(); }));
  CHECK(nameless->status().lastError.find("HTTP 400") != std::string::npos);
  nameless->stop();
}
