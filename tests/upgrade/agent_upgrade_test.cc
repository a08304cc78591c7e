// The AgentUpgrade object at the node: what is accepted, and what is refused with which field
// named.
#include "outpost/upgrade/agent_upgrade.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using outpost::upgrade::checkUrl;
using outpost::upgrade::checkVersion;
using outpost::upgrade::parseAgentUpgrade;

namespace {

nlohmann::json package(const std::string& format, const std::string& arch) {
  return {{"format", format},
          {"arch", arch},
          {"url", "https://releases.example.com/outpost_0.2.0-1_" + arch + "." + format},
          {"sha256", std::string(64, 'a')},
          {"signature", std::string(86, 'A') + "=="}};
}

nlohmann::json object() {
  return {{"kind", "AgentUpgrade"},
          {"metadata", {{"name", "to-0.2.0"}}},
          {"spec",
           {{"version", "0.2.0-1"},
            {"packages", {package("deb", "amd64"), package("rpm", "x86_64")}},
            {"rollback", {{"version", "0.1.0-1"}, {"packages", {package("deb", "amd64")}}}}}}};
}

std::string refusal(const nlohmann::json& o) {
  auto r = parseAgentUpgrade(o.dump());
  REQUIRE_FALSE(r.isOk());
  return r.status().message();
}

}  // namespace

TEST_CASE("an AgentUpgrade with packages per format and architecture and a rollback is read") {
  auto r = parseAgentUpgrade(object().dump());
  REQUIRE(r.isOk());
  CHECK(r->target.version == "0.2.0-1");
  REQUIRE(r->target.packages.size() == 2);
  CHECK(r->target.packages[1].format == "rpm");
  REQUIRE(r->rollback);
  CHECK(r->rollback->version == "0.1.0-1");

  auto deb = outpost::upgrade::pickPackage(r->target, "deb", "amd64");
  REQUIRE(deb.isOk());
  CHECK(deb->url == "https://releases.example.com/outpost_0.2.0-1_amd64.deb");
  auto none = outpost::upgrade::pickPackage(r->target, "deb", "arm64");
  REQUIRE_FALSE(none.isOk());
  CHECK(none.status().message() ==
        "no deb package for arm64 in version 0.2.0-1 (it has deb/amd64, rpm/x86_64)");
}

TEST_CASE("an AgentUpgrade with a bad field is refused naming the field") {
  auto o = object();
  o["spec"]["version"] = "1.0; rm -rf /";
  CHECK(refusal(o).starts_with("spec.version \"1.0; rm -rf /\": a package version"));

  o = object();
  o["spec"]["packages"][1]["url"] = "file:///etc/shadow";
  CHECK(refusal(o).starts_with("spec.packages[1].url \"file:///etc/shadow\": an http://"));

  o = object();
  o["spec"]["packages"][0]["sha256"] = std::string(64, 'A');
  CHECK(refusal(o).starts_with("spec.packages[0].sha256"));

  o = object();
  o["spec"]["packages"][0]["signature"] = "c2ln";
  CHECK(refusal(o).starts_with("spec.packages[0].signature \"c2ln\": base64 of a 64-byte"));

  o = object();
  o["spec"]["packages"][0]["format"] = "tar";
  CHECK(refusal(o) == "spec.packages[0].format \"tar\": deb or rpm");

  o = object();
  o["spec"]["packages"][0]["arch"] = "../x";
  CHECK(refusal(o).starts_with("spec.packages[0].arch"));

  o = object();
  o["spec"]["packages"][1] = package("deb", "amd64");
  CHECK(refusal(o) == "spec.packages[1]: a second deb package for amd64");

  o = object();
  o["spec"]["rollback"]["version"] = "-1";
  CHECK(refusal(o).starts_with("spec.rollback.version \"-1\""));

  o = object();
  o["spec"].erase("packages");
  CHECK(refusal(o) == "spec.packages: missing");

  CHECK(parseAgentUpgrade("[1]").status().message() == "the AgentUpgrade is not a JSON object");
  o = object();
  o["kind"] = "Pod";
  CHECK(refusal(o) == "kind: not AgentUpgrade");
}

TEST_CASE("versions are Debian and rpm version strings and nothing else") {
  for (const char* ok : {"0.2.0", "0.2.0-1", "1:0.2.0~rc1-1", "0.2.0+git20260101", "2.0_1"})
    CHECK_MESSAGE(checkVersion("v", ok).isOk(), ok);
  for (const char* bad :
       {"", "v1.0", "-1", "1.0 -1", "1.0/..", "1.0\n", ":1.0", "a:1.0", "1:", "1.0$(id)", "1.0'"})
    CHECK_MESSAGE(!checkVersion("v", bad).isOk(), bad);
  CHECK_FALSE(checkVersion("v", "1" + std::string(64, '0')).isOk());
}

TEST_CASE("package URLs are http or https with a host and URL characters only") {
  for (const char* ok : {"http://127.0.0.1:8080/p.deb", "https://dl.example.com/a/b.deb?x=1",
                         "https://[::1]:443/p.rpm", "http://host/p%20q.deb", "https://host"})
    CHECK_MESSAGE(checkUrl("u", ok).isOk(), ok);
  for (const char* bad :
       {"ftp://host/p.deb", "file:///p.deb", "http://", "http://user:pw@host/p", "http://host:x/p",
        "http://host:123456/p", "http://ho st/p", "http://host/p q", "http://host/p\r\nX: y",
        "http://[::1/p", "https://host/`id`", "HTTP://host/p"})
    CHECK_MESSAGE(!checkUrl("u", bad).isOk(), bad);
}
