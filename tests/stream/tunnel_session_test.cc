// The tunnel's sessions over an in-memory connection: logs, metrics, exec dispatch, refusals, the
// limits, and a connection that drops under a session.
#include <doctest/doctest.h>

#include <fstream>

#include "support/test_util.h"
#include "tunnel_test_util.h"

using namespace outpost;
using namespace outpost::stream;
using namespace std::chrono_literals;

namespace {

std::string logsConnect(const std::string& path, const std::string& query = "") {
  return R"({"url":{"Path":")" + path + R"(","RawQuery":")" + query + R"("},"header":{}})";
}

void append(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::app | std::ios::binary);
  out << text;
}

struct Rig {
  explicit Rig(TunnelLimits limits = {}) {
    TunnelOptions o;
    o.limits = limits;
    o.backoffBase = 10ms;
    o.backoffCap = 50ms;
    o.followPoll = 20ms;
    o.pingInterval = 1h;
    tunnel = Tunnel::make(o, cloud.dialer(), streams, relays.factory(), metrics, core::Logger());
    tunnel->start();
    REQUIRE(cloud.waitConnected());
  }
  ~Rig() { tunnel->stop(); }

  test::TempDir dir;
  test::MemoryCloud cloud;
  test::FileStreams streams;
  test::EchoRelays relays;
  core::MetricsRegistry metrics;
  std::unique_ptr<Tunnel> tunnel;
};

const char* kLog =
    "2026-12-06T10:00:00.000000001Z stdout F first\n"
    "2026-12-06T10:00:01.000000000Z stdout P sec\n"
    "2026-12-06T10:00:01.500000000Z stdout F ond\n"
    "2026-12-06T10:00:02.000000000Z stderr F third\n";

}  // namespace

TEST_CASE("logs: the text of each line, partial entries joined, with tailLines and timestamps") {
  Rig rig;
  append(rig.dir / "0.log", kLog);
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");

  rig.cloud.send(1, MessageType::kLogsConnect, logsConnect("/containerLogs/default/web/app"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(1); }));
  CHECK(rig.cloud.data(1) == "first\nsecond\nthird\n");

  rig.cloud.send(2, MessageType::kLogsConnect,
                 logsConnect("/containerLogs/default/web/app", "tailLines=2&timestamps=true"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(2); }));
  CHECK(rig.cloud.data(2) ==
        "2026-12-06T10:00:01.000000000Z second\n2026-12-06T10:00:02.000000000Z third\n");

  rig.cloud.send(3, MessageType::kLogsConnect,
                 logsConnect("/containerLogs/default/web/app", "limitBytes=8"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(3); }));
  CHECK(rig.cloud.data(3) == "first\nse");

  rig.cloud.send(4, MessageType::kLogsConnect,
                 logsConnect("/containerLogs/default/web/app", "sinceSeconds=60"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(4); }));
  CHECK(rig.cloud.data(4).empty());  // every line is older than a minute
}

TEST_CASE("logs with follow go on as the file grows and into the next attempt's file") {
  Rig rig;
  append(rig.dir / "0.log", "2026-12-06T10:00:00Z stdout F before\n");
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  rig.cloud.send(7, MessageType::kLogsConnect,
                 logsConnect("/containerLogs/default/web/app", "follow=true"));
  REQUIRE(test::waitFor([&] { return rig.cloud.data(7) == "before\n"; }));
  append(rig.dir / "0.log", "2026-12-06T10:00:01Z stdout F grown\n");
  REQUIRE(test::waitFor([&] { return rig.cloud.data(7) == "before\ngrown\n"; }));

  // The container restarts: a new attempt with its own file.
  append(rig.dir / "1.log", "2026-12-06T10:00:05Z stdout F restarted\n");
  rig.streams.setLog("default/web/app", (rig.dir / "1.log").string(), "c2");
  REQUIRE(test::waitFor([&] { return rig.cloud.data(7) == "before\ngrown\nrestarted\n"; }));
  CHECK_FALSE(rig.cloud.removed(7));

  rig.cloud.send(7, MessageType::kRemoveConnect, "");
  REQUIRE(test::waitFor([&] { return rig.tunnel->status().sessions == 0; }));
  CHECK_FALSE(rig.cloud.removed(7));  // the cloud ended it: no RemoveConnect back
}

TEST_CASE("a pod that is not on this node is refused with the reason, and the session ends") {
  Rig rig;
  rig.cloud.send(3, MessageType::kLogsConnect, logsConnect("/containerLogs/default/other/app"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(3); }));
  CHECK(rig.cloud.data(3) == "pod default/other is not on this node\n");

  rig.cloud.send(4, MessageType::kExecConnect,
                 R"({"url":{"Path":"/exec/default/other/app","RawQuery":"command=sh&stdout=1"}})");
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(4); }));
  CHECK(rig.cloud.data(4).rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
  CHECK(rig.relays.started() == 0);
  CHECK(rig.metrics.render().find("outpost_stream_refused_total{reason=\"not_found\"} 2") !=
        std::string::npos);
}

TEST_CASE("a bad connect is answered with what was wrong, counted, and a bad message dropped") {
  Rig rig;
  rig.cloud.send(5, MessageType::kLogsConnect, logsConnect("/containerLogs/../../etc"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(5); }));
  CHECK(rig.cloud.data(5).find("namespace") != std::string::npos);

  rig.cloud.send(6, static_cast<MessageType>(42), "x");
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(6); }));
  auto text = rig.metrics.render();
  CHECK(text.find("outpost_stream_refused_total{reason=\"invalid\"} 1") != std::string::npos);
  CHECK(text.find("outpost_stream_malformed_total 1") != std::string::npos);
  CHECK(rig.tunnel->status().connected);  // the tunnel goes on
}

TEST_CASE("top: the resource metrics come through a metrics connect") {
  Rig rig;
  rig.streams.setMetrics("node_cpu_usage_seconds_total 12.5 1700000000000\n");
  rig.cloud.send(9, MessageType::kMetricConnect, R"({"url":{"Path":"/metrics/resource"}})");
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(9); }));
  CHECK(rig.cloud.data(9) == "node_cpu_usage_seconds_total 12.5 1700000000000\n");
}

// A fast connection: it opens and the cloud's first connect arrives before the dialer has
// returned the connection to the tunnel. The session's answer waits for the handover; the tunnel
// used to drop it, and the cloud's `kubectl top` hung.
TEST_CASE("a connect that arrives before the dialer returned its connection is answered") {
  test::MemoryCloud cloud;
  test::FileStreams streams;
  test::EchoRelays relays;
  core::MetricsRegistry metrics;
  streams.setMetrics("node_memory_working_set_bytes 1024 1700000000000\n");
  std::unique_ptr<Tunnel> tunnel;
  auto inner = cloud.dialer();
  Dialer fast = [&](TunnelConnectionEvents events) {
    auto conn = inner(events);
    cloud.send(9, MessageType::kMetricConnect, R"({"url":{"Path":"/metrics/resource"}})");
    // Time for the session to answer before the handover (it waits for the handover now, so
    // this runs out; before, it ended at once with its answer dropped).
    test::waitFor(
        [&] { return metrics.render().find("outpost_stream_sessions 0") != std::string::npos; },
        500ms);
    return conn;
  };
  TunnelOptions o;
  o.backoffBase = 10ms;
  o.backoffCap = 50ms;
  o.pingInterval = 1h;
  tunnel = Tunnel::make(o, fast, streams, relays.factory(), metrics, core::Logger());
  tunnel->start();
  REQUIRE(cloud.waitConnected());
  REQUIRE(test::waitFor([&] { return cloud.removed(9); }));
  CHECK(cloud.data(9) == "node_memory_working_set_bytes 1024 1700000000000\n");
  CHECK(cloud.dials() == 1);
  tunnel->stop();
}

TEST_CASE("exec: the runtime's URL goes to the relay, data flows both ways, remove closes it") {
  Rig rig;
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  rig.streams.setExecUrl("http://127.0.0.1:1234/exec/token");
  rig.cloud.send(
      11, MessageType::kExecConnect,
      R"({"url":{"Path":"/exec/default/web/app","RawQuery":"command=sh&stdin=1&stdout=1&tty=1"},"method":"POST"})");
  REQUIRE(test::waitFor([&] { return rig.relays.started() == 1; }));
  CHECK(rig.relays.lastUrl() == "http://127.0.0.1:1234/exec/token");
  auto execs = rig.streams.execs();
  REQUIRE(execs.size() == 1);
  CHECK(execs[0].command == std::vector<std::string>{"sh"});
  CHECK(execs[0].tty);
  CHECK(execs[0].stdin);
  rig.cloud.send(11, MessageType::kData, "ls\n");
  REQUIRE(test::waitFor([&] { return rig.cloud.data(11) == "echo:ls\n"; }));
  rig.cloud.send(11, MessageType::kRemoveConnect, "");
  REQUIRE(test::waitFor([&] { return rig.relays.closed(); }));
  REQUIRE(test::waitFor([&] { return rig.tunnel->status().sessions == 0; }));
}

TEST_CASE("limits: sessions past stream.max_sessions are refused; an idle session is ended") {
  TunnelLimits limits;
  limits.maxSessions = 1;
  limits.idleTimeout = 300ms;
  Rig rig(limits);
  append(rig.dir / "0.log", "2026-12-06T10:00:00Z stdout F x\n");
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  rig.cloud.send(1, MessageType::kLogsConnect,
                 logsConnect("/containerLogs/default/web/app", "follow=1"));
  REQUIRE(test::waitFor([&] { return rig.cloud.data(1) == "x\n"; }));
  rig.cloud.send(2, MessageType::kLogsConnect, logsConnect("/containerLogs/default/web/app"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(2); }));
  CHECK(rig.cloud.data(2).find("stream.max_sessions") != std::string::npos);
  // Nothing more is written: the follow ends after the idle timeout.
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(1); }));
  CHECK(rig.metrics.render().find("outpost_stream_idle_closed_total 1") != std::string::npos);
}

TEST_CASE("limits: a session's data leaves in parts no larger than its bytes per second") {
  TunnelLimits limits;
  limits.maxBytesPerSecond = 4096;
  Rig rig(limits);
  std::string big;
  for (int i = 0; i < 200; ++i)
    big += "2026-12-06T10:00:00Z stdout F " + std::string(20, 'a') + "\n";
  append(rig.dir / "0.log", big);
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  rig.cloud.send(1, MessageType::kLogsConnect, logsConnect("/containerLogs/default/web/app"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(1); }));
  CHECK(rig.cloud.data(1).size() == 200 * 21);
  auto sizes = rig.cloud.dataSizes(1);
  CHECK(sizes.size() >= 2);
  for (auto n : sizes) CHECK(n <= 4096);
}

TEST_CASE("the tunnel dropped mid-session ends the session, and the tunnel comes back") {
  Rig rig;
  append(rig.dir / "0.log", "2026-12-06T10:00:00Z stdout F one\n");
  rig.streams.setLog("default/web/app", (rig.dir / "0.log").string(), "c1");
  rig.streams.setExecUrl("http://127.0.0.1:1/x");
  rig.cloud.send(
      1, MessageType::kExecConnect,
      R"({"url":{"Path":"/exec/default/web/app","RawQuery":"command=sh&stdin=1&stdout=1"}})");
  REQUIRE(test::waitFor([&] { return rig.relays.started() == 1; }));
  rig.cloud.drop();
  REQUIRE(test::waitFor([&] { return rig.relays.closed(); }));  // the exec's relay is closed
  REQUIRE(rig.cloud.waitConnected(2));
  REQUIRE(test::waitFor([&] { return rig.tunnel->status().connected; }));
  CHECK(rig.tunnel->status().lastError == "dropped by the test");
  rig.cloud.send(2, MessageType::kLogsConnect, logsConnect("/containerLogs/default/web/app"));
  REQUIRE(test::waitFor([&] { return rig.cloud.removed(2); }));
  CHECK(rig.cloud.data(2) == "one\n");
  CHECK(rig.metrics.render().find("outpost_stream_tunnel_connects_total 2") != std::string::npos);
}
