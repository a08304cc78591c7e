// The rules every string and object from outside passes before Outpost acts on it.
#include "outpost/validation/validation.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

using namespace outpost;
namespace v = outpost::validation;

TEST_CASE("names follow Kubernetes' DNS-1123 rules") {
  CHECK(v::dnsLabel("n", "web-1").isOk());
  CHECK(v::dnsSubdomain("n", "web.example-1").isOk());
  for (const char* bad : {"", ".", "..", "a/b", "/srv", "-a", "a-", "A", "a_b", "a..b", ".a"}) {
    CAPTURE(bad);
    CHECK(v::dnsSubdomain("metadata.name", bad).code() == core::Code::kInvalidArgument);
  }
  CHECK_FALSE(v::dnsLabel("n", "a.b").isOk());
  CHECK_FALSE(v::dnsLabel("n", std::string(64, 'a')).isOk());
  CHECK(v::dnsLabel("n", std::string(63, 'a')).isOk());
  CHECK(v::dnsSubdomain("n", std::string(253, 'a').replace(60, 1, ".")).isOk());
  auto s = v::dnsSubdomain("metadata.name", std::string(60000, 'a'));
  CHECK_FALSE(s.isOk());
  CHECK(s.message().size() < 400);  // the value is cut in the message
  CHECK(s.message().find("metadata.name") == 0);
}

TEST_CASE("uids, keys and paths cannot leave a directory") {
  CHECK(v::uid("uid", "5c3b2a19-1d2e-4f3a-9b8c-7d6e5f4a3b21").isOk());
  CHECK(v::uid("uid", "uid-1").isOk());
  for (const char* bad : {"", "/srv/victim", "../../../../srv/victim", "..", ".", "a/b", "a\nb"}) {
    CAPTURE(bad);
    CHECK_FALSE(v::uid("metadata.uid", bad).isOk());
  }
  CHECK(v::configKey("k", "app.properties").isOk());
  CHECK(v::configKey("k", ".hidden").isOk());
  for (const char* bad : {"", ".", "..", "/etc/passwd", "a/b", "a b"}) {
    CAPTURE(bad);
    CHECK_FALSE(v::configKey("data key", bad).isOk());
  }
  CHECK(v::relativePath("p", "conf/app.yaml").isOk());
  CHECK(v::relativePath("p", "..data").isOk());  // an element that merely starts with two dots
  for (const char* bad : {"", "/etc", "..", "../x", "a/../../x", "a/.."}) {
    CAPTURE(bad);
    CHECK_FALSE(v::relativePath("subPath", bad).isOk());
  }
  CHECK(v::absolutePath("p", "/data").isOk());
  CHECK_FALSE(v::absolutePath("p", "data").isOk());
  CHECK_FALSE(v::absolutePath("p", "/data/../etc").isOk());
}

TEST_CASE("JSON depth and size are bounded before a parser sees the text") {
  CHECK(v::jsonWithin(R"({"a":[1,{"b":"[[[[[[["}]})", {.maxDepth = 3}).isOk());
  CHECK_FALSE(v::jsonWithin(R"({"a":[[{"b":1}]]})", {.maxDepth = 3}).isOk());
  CHECK(v::jsonWithin(R"({"a":"\"[[[["})", {.maxDepth = 1}).isOk());  // escaped quote in a string
  std::string deep(70000, '[');
  deep += std::string(70000, ']');
  auto s = v::jsonWithin(deep);
  CHECK(s.code() == core::Code::kInvalidArgument);
  CHECK(s.message() == "JSON nests deeper than 100 levels");
  CHECK_FALSE(v::jsonWithin(std::string(11, ' '), {.maxBytes = 10}).isOk());
}

TEST_CASE("a desired object is refused when it could reach the host or lies about its key") {
  auto ok = [](const char* type, const std::string& obj) {
    return v::desiredObject("default", type, "web", obj).status();
  };
  CHECK(ok("pod", R"({"kind":"Pod","metadata":{"name":"web","namespace":"default","uid":"u-1"},
    "spec":{"volumes":[{"name":"conf","configMap":{"name":"c","items":[{"key":"a","path":"x/a"}]}}],
    "containers":[{"name":"app","volumeMounts":[{"name":"conf","mountPath":"/c","subPath":"x"}]}]}})")
            .isOk());
  struct Case {
    const char* type;
    std::string obj;
    const char* field;
  } cases[] = {
      {"pod", R"({"metadata":{"uid":"/srv/victim"}})", "metadata.uid"},
      {"pod", R"({"metadata":{"uid":"../../../../srv/victim"}})", "metadata.uid"},
      {"pod", R"({"metadata":"web"})", "metadata"},
      {"pod", R"({"metadata":{"name":"other"}})", "metadata.name"},
      {"pod", R"({"metadata":{"namespace":"kube-system"}})", "metadata.namespace"},
      {"pod", R"({"kind":"ConfigMap"})", "kind"},
      {"pod", R"({"spec":{"volumes":[{"name":"../x","emptyDir":{}}]}})", "spec.volumes[0].name"},
      {"pod", R"({"spec":{"volumes":[{"name":"a/b","emptyDir":{}}]}})", "spec.volumes[0].name"},
      {"pod", R"({"spec":{"volumes":[{"name":"a"},{"name":"a"}]}})", "spec.volumes[1].name"},
      {"pod", R"({"spec":{"volumes":[{"name":"h","hostPath":{"path":"/a/../etc"}}]}})",
       "spec.volumes[0].hostPath.path"},
      {"pod",
       R"({"spec":{"volumes":[{"name":"c","secret":{"items":[{"key":"k","path":"/etc/x"}]}}]}})",
       "spec.volumes[0].secret.items[0].path"},
      {"pod",
       R"({"spec":{"containers":[{"name":"a","volumeMounts":[{"name":"v","subPath":"/etc"}]}]}})",
       "spec.containers[0].volumeMounts[0].subPath"},
      {"pod",
       R"({"spec":{"containers":[{"name":"a","volumeMounts":[{"name":"v","subPath":"../x"}]}]}})",
       "spec.containers[0].volumeMounts[0].subPath"},
      {"pod", R"({"spec":{"containers":[{"name":"A/b"}]}})", "spec.containers[0].name"},
      {"configmap", R"({"data":{"/etc/cron.d/x":"y"}})", "data key"},
      {"configmap", R"({"data":{"..":"y"}})", "data key"},
      {"configmap", R"({"data":{".":"y"}})", "data key"},
      {"configmap", R"({"binaryData":{"/etc/x":"eQ=="}})", "binaryData key"},
      {"configmap", R"({"data":{"a":"1"},"binaryData":{"a":"eQ=="}})", "binaryData key"},
      {"configmap", R"({"data":{"a":1}})", "data.a"},
      {"secret", R"({"stringData":{"/root/.ssh/authorized_keys":"y"}})", "stringData key"},
      {"secret", R"({"data":{"../../x":"eQ=="}})", "data key"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.obj);
    auto s = ok(c.type, c.obj);
    CHECK(s.code() == core::Code::kInvalidArgument);
    CHECK(s.message().rfind(c.field, 0) == 0);
  }
  CHECK(v::desiredObject("default", "pod", "web", R"({"metadata":{"name":"web"}} x)")
            .status()
            .message()
            .rfind("not valid JSON at byte", 0) == 0);
  CHECK_FALSE(v::desiredObject("default", "pod", "..", "{}").isOk());
  CHECK_FALSE(v::desiredObject("default", "pod", "a/b", "{}").isOk());
  CHECK_FALSE(v::desiredObject("..", "pod", "web", "{}").isOk());
  CHECK_FALSE(v::desiredObject("default", "pod", std::string(60000, 'a'), "{}").isOk());
  CHECK_FALSE(v::desiredObject("default", "pod", "web", "[1]").isOk());
  CHECK(v::desiredObject("", "node", "edge-1", R"({"kind":"Node","metadata":{"name":"edge-1"}})")
            .isOk());
}

TEST_CASE("printable escapes what could forge a log line") {
  CHECK(v::printable("insert\n2026-12-06 [info] forged") == "insert\\n2026-12-06 [info] forged");
  CHECK(v::printable(std::string("a\x1b[31m", 6)) == "a\\x1b[31m");
  CHECK(v::printable(std::string(100, 'x'), 10) == std::string(10, 'x') + "...");
}

TEST_CASE("printable is valid UTF-8 whatever it quotes: messages are sent as JSON") {
  // The cut never splits a character ("a" and 39 of the 2-byte "é" fit in 80 bytes, not 40).
  std::string e = "\xc3\xa9";
  std::string name = "a";
  for (int i = 0; i < 50; ++i) name += e;
  std::string cut = "a";
  for (int i = 0; i < 39; ++i) cut += e;
  CHECK(v::printable(name) == cut + "...");
  // Bytes that are no well-formed character are escaped: stray, truncated, overlong, surrogate.
  CHECK(v::printable(std::string("\xff\x80"
                                 "a"
                                 "\xc3",
                                 4)) == "\\xff\\x80a\\xc3");
  CHECK(v::printable("\xc0\xaf") == "\\xc0\\xaf");
  CHECK(v::printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");
  CHECK(v::printable("\xf0\x9f\x99\x82") == "\xf0\x9f\x99\x82");
  // nlohmann's parse error quotes the byte it stopped at: half of a character here.
  auto r = v::desiredObject("default", "pod", "p", "{\"a\":\xc3\xa9}");
  REQUIRE_FALSE(r.isOk());
  CHECK_NOTHROW((void)nlohmann::json(r.status().message()).dump());
  auto k = v::desiredKey("default", "pod", name);
  REQUIRE_FALSE(k.isOk());
  CHECK_NOTHROW((void)nlohmann::json(k.message()).dump());
}

TEST_CASE("the door's one pass finds the uid and version, and names missing members and types") {
  auto facts =
      v::desiredObject("default", "pod", "web",
                       R"({"spec":{"template":{"metadata":{"uid":"nested","resourceVersion":"99"}}},
          "metadata":{"labels":{"uid":"label"},"uid":"u-1","resourceVersion":"7"}})");
  REQUIRE(facts.isOk());
  CHECK(facts->uid == "u-1");
  CHECK(facts->resourceVersion == "7");
  auto none = v::desiredObject("default", "configmap", "web", R"({"data":{"a":"b"}})");
  REQUIRE(none.isOk());
  CHECK_FALSE(none->uid.has_value());
  struct Case {
    const char* obj;
    const char* message;
  } cases[] = {
      {R"({"spec":{"volumes":[{"emptyDir":{}}]}})", "spec.volumes[0].name: missing"},
      {R"({"spec":{"volumes":[{"name":"a","hostPath":{}}]}})",
       "spec.volumes[0].hostPath.path: missing"},
      {R"({"spec":{"volumes":[{"name":"a","secret":{"items":[{"path":"x"}]}}]}})",
       "spec.volumes[0].secret.items[0].key: missing"},
      {R"({"spec":{"volumes":[{"name":"a","projected":{"sources":[{"configMap":{"items":[{"key":"k","path":"/x"}]}}]}}]}})",
       "spec.volumes[0].projected.sources[0].configMap.items[0].path \"/x\": must be a relative "
       "path"},
      {R"({"spec":{"volumes":[{"name":"a","projected":{"sources":[{"serviceAccountToken":{"path":"../t"}}]}}]}})",
       "spec.volumes[0].projected.sources[0].serviceAccountToken.path \"../t\": must not contain "
       "'..'"},
      {R"({"spec":{"containers":[{"name":"a"},{"name":"a"}]}})",
       "spec.containers[1].name \"a\": is used by another container"},
      {R"({"spec":{"containers":{"name":"a"}}})", "spec.containers: must be an array"},
      {R"({"spec":{"containers":[{"name":"a","volumeMounts":[{"name":7}]}]}})",
       "spec.containers[0].volumeMounts[0].name: must be a string"},
      {R"({"spec":"x"})", "spec: must be an object"},
      {R"({"metadata":{"uid":12}})", "metadata.uid: must be a string"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.obj);
    CHECK(v::desiredObject("default", "pod", "web", c.obj).status().message() == c.message);
  }
  // Fields the rules leave alone pass whatever their shape.
  CHECK(
      v::desiredObject(
          "default", "pod", "web",
          R"({"spec":{"volumes":null,"containers":[{"name":"a","volumeMounts":[{"name":"v","subPath":""}]}]},"status":[1,{"a":null}]})")
          .isOk());
  // A delete's object: no rule but the limits, the facts still found.
  auto del = v::objectFacts(R"({"metadata":{"uid":"/odd","resourceVersion":"3"},"data":{"/x":1}})");
  REQUIRE(del.isOk());
  CHECK(del->uid == "/odd");
  CHECK(del->resourceVersion == "3");
}
