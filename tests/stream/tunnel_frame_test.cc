// The tunnel's wire format and the checks of connect messages (docs/kubeedge.md, "The stream
// tunnel").
#include <doctest/doctest.h>

#include <string>

#include "outpost/stream/frame.h"

using namespace outpost;
using namespace outpost::stream;

namespace {

std::string logsConnect(const std::string& path, const std::string& query = "") {
  return R"({"url":{"Scheme":"http","Opaque":"","User":null,"Host":"127.0.0.1:10350","Path":")" +
         path + R"(","RawPath":"","ForceQuery":false,"RawQuery":")" + query +
         R"(","Fragment":"","RawFragment":""},"header":{"Accept":["*/*"]}})";
}

std::string refusal(MessageType type, const std::string& json) {
  auto r = parseConnect(type, json);
  REQUIRE_FALSE(r.isOk());
  return r.status().message();
}

}  // namespace

TEST_CASE("a tunnel message is uvarint id, uvarint type and the data, as Go's PutUvarint writes") {
  std::string bytes = encodeMessage(300, MessageType::kData, "hi");
  CHECK(bytes == std::string("\xac\x02\x03hi", 5));
  auto m = decodeMessage(bytes);
  REQUIRE(m.isOk());
  CHECK(m->id == 300);
  CHECK(m->type == 3);
  CHECK(m->data == "hi");

  auto big = decodeMessage(encodeMessage(UINT64_MAX, MessageType::kRemoveConnect, ""));
  REQUIRE(big.isOk());
  CHECK(big->id == UINT64_MAX);
  CHECK(big->data.empty());
}

TEST_CASE("a message too short for its numbers, or with a number over 64 bits, is refused") {
  CHECK_FALSE(decodeMessage("").isOk());
  CHECK_FALSE(decodeMessage("\x05").isOk());                   // no type
  CHECK_FALSE(decodeMessage("\x80").isOk());                   // the id goes on past the end
  CHECK_FALSE(decodeMessage(std::string(11, '\xff')).isOk());  // more than 10 bytes
  CHECK_FALSE(decodeMessage(std::string(9, '\xff') + "\x02\x03").isOk());  // bit 65
  CHECK(decodeMessage(std::string(9, '\xff') + "\x01\x03").isOk());
}

TEST_CASE("a logs connect names the container and kubelet's options, typed") {
  auto r = parseConnect(MessageType::kLogsConnect,
                        logsConnect("/containerLogs/default/web-1/nginx",
                                    "follow=true&tailLines=10&timestamps=1&sinceSeconds=60&"
                                    "limitBytes=500&container=nginx"));
  REQUIRE(r.isOk());
  CHECK(r->endpoint == Endpoint::kContainerLogs);
  CHECK(r->ref.ns == "default");
  CHECK(r->ref.pod == "web-1");
  CHECK(r->ref.container == "nginx");
  CHECK(r->logs.follow);
  CHECK(r->logs.timestamps);
  CHECK_FALSE(r->logs.previous);
  CHECK(r->logs.tailLines == 10);
  CHECK(r->logs.sinceSeconds == 60);
  CHECK(r->logs.limitBytes == 500);

  auto t = parseConnect(MessageType::kLogsConnect,
                        logsConnect("/containerLogs/a/b/c", "sinceTime=2026-12-06T22%3A15%3A41Z"));
  REQUIRE(t.isOk());
  CHECK(t->logs.sinceUnixSeconds == 1796595341);
}

TEST_CASE("exec and attach connects carry the command, the streams and the method") {
  std::string exec =
      R"({"url":{"Path":"/exec/kube-system/agent/shell","RawQuery":"command=sh&command=-c&command=echo+hi%3Bexit+3&stdin=1&stdout=1&tty=1"},"header":{"Connection":["Upgrade"],"Upgrade":["SPDY/3.1"]},"method":"POST"})";
  auto r = parseConnect(MessageType::kExecConnect, exec);
  REQUIRE(r.isOk());
  CHECK(r->endpoint == Endpoint::kExec);
  CHECK(r->command == std::vector<std::string>{"sh", "-c", "echo hi;exit 3"});
  CHECK(r->stdin);
  CHECK(r->stdout);
  CHECK(r->tty);
  CHECK_FALSE(r->stderr);
  CHECK(r->method == "POST");
  CHECK(r->headers.size() == 2);

  auto a = parseConnect(MessageType::kAttachConnect,
                        R"({"url":{"Path":"/attach/ns/p/c","RawQuery":"stdout=true"}})");
  REQUIRE(a.isOk());
  CHECK(a->endpoint == Endpoint::kAttach);
  CHECK(a->stdout);

  auto m = parseConnect(MessageType::kMetricConnect, R"({"url":{"Path":"/metrics/resource"}})");
  REQUIRE(m.isOk());
  CHECK(m->endpoint == Endpoint::kMetricsResource);
}

TEST_CASE(
    "a path that is not a served endpoint, or names that are not Kubernetes names, are refused") {
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/ns/pod"))
            .find("not a served endpoint") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/../etc/passwd"))
            .find("namespace") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/ns/../c")).find("pod") !=
        std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/ns/pod/Nginx"))
            .find("container") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/exec/ns/pod/c", "command=ls"))
            .find("not a served endpoint") != std::string::npos);
  CHECK(refusal(MessageType::kMetricConnect, logsConnect("/stats/../metrics/resource"))
            .find("not a served endpoint") != std::string::npos);
  CHECK(refusal(
            MessageType::kLogsConnect,
            R"({"url":{"Path":"/containerLogs/ns/pod/c","RawPath":"/containerLogs/ns/pod%2Fx/c"}})")
            .find("escaped") != std::string::npos);
}

TEST_CASE("query parameters are whitelisted per endpoint and typed") {
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/a/b/c", "follow=yes"))
            .find("follow") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/a/b/c", "tailLines=-1"))
            .find("tailLines") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/a/b/c", "path=/etc"))
            .find("\"path\" is not one") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/a/b/c", "follow=1&follow=0"))
            .find("twice") != std::string::npos);
  CHECK(
      refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/a/b/c", "sinceTime=yesterday"))
          .find("sinceTime") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, logsConnect("/containerLogs/a/b/c", "container=d"))
            .find("container") != std::string::npos);
  CHECK(
      refusal(MessageType::kExecConnect, R"({"url":{"Path":"/exec/a/b/c","RawQuery":"stdout=1"}})")
          .find("needs a command") != std::string::npos);
  CHECK(refusal(
            MessageType::kExecConnect,
            R"({"url":{"Path":"/exec/a/b/c","RawQuery":"command=ls&stdout=1"},"method":"DELETE"})")
            .find("method") != std::string::npos);
  // A TTY has no stderr (the kubelet drops it), so stderr alone with a TTY leaves no stream.
  CHECK(refusal(MessageType::kAttachConnect,
                R"({"url":{"Path":"/attach/a/b/c","RawQuery":"stderr=1&tty=1"}})")
            .find("at least one of stdin") != std::string::npos);
  CHECK(
      refusal(MessageType::kAttachConnect, R"({"url":{"Path":"/attach/a/b/c","RawQuery":"%zz=1"}})")
          .find("bad escape") != std::string::npos);
  CHECK(refusal(MessageType::kMetricConnect,
                R"({"url":{"Path":"/metrics/resource","RawQuery":"x=1"}})")
            .find("\"x\" is not one") != std::string::npos);
}

TEST_CASE("a connect message that is not small, shallow JSON of the expected shape is refused") {
  CHECK(refusal(MessageType::kLogsConnect, "not json").find("not a JSON object") !=
        std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, "{}").find("no url") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect, std::string(100, '[') + std::string(100, ']'))
            .find("deep") != std::string::npos);
  std::string huge = logsConnect("/containerLogs/a/b/c", std::string(70000, 'a'));
  CHECK(refusal(MessageType::kLogsConnect, huge).find("65536") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect,
                R"({"url":{"Path":"/containerLogs/a/b/c"},"header":{"X":"not a list"}})")
            .find("header") != std::string::npos);
  CHECK(refusal(MessageType::kLogsConnect,
                R"({"url":{"Path":"/containerLogs/a/b/c"},"header":{"X":["a\r\nInjected: 1"]}})")
            .find("CR, LF") != std::string::npos);
  CHECK(refusal(MessageType::kData, R"({"url":{"Path":"/metrics/resource"}})")
            .find("not a connect message") != std::string::npos);
}
