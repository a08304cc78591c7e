// The upgrader's state machine on a FakeInstaller, with real downloads from a loopback server and
// real signatures: what it reports, what it hands to the helper, and what it refuses.
#include "outpost/upgrade/upgrader.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/fake_installer.h"
#include "support/file_server.h"
#include "support/test_util.h"
#include "upgrade/upgrade_test_util.h"

namespace fs = std::filesystem;
using outpost::upgrade::Phase;

namespace {

const std::string kKey = "default/agentupgrade/to-0.2.0";

struct Fixture {
  outpost::test::TempDir dir;
  outpost::test::ReleaseKey release{dir.path(), "release"};
  outpost::test::FileServer server;
  outpost::test::FakeInstaller installer;
  outpost::test::RecordingStatusSink sink;
  outpost::core::SystemClock clock;
  std::unique_ptr<outpost::upgrade::Upgrader> upgrader;
  std::string newBody = std::string(300000, 'n'), oldBody = std::string(200000, 'o');

  Fixture() {
    server.put("/outpost_0.2.0-1_amd64.deb", newBody);
    server.put("/outpost_0.1.0-1_amd64.deb", oldBody);
    restart();
  }
  // A new agent on the same state directory (the old one stopped).
  void restart() {
    if (upgrader) upgrader->stop();
    upgrader.reset();
    outpost::upgrade::UpgraderOptions o;
    o.dir = dir / "upgrade";
    o.keys = *outpost::upgrade::parseTrustedKeys({release.publicPem()});
    o.healthTimeout = std::chrono::seconds(30);
    o.agentPid = 4242;
    o.retryBase = std::chrono::milliseconds(100);
    upgrader = std::make_unique<outpost::upgrade::Upgrader>(o, installer, sink, clock,
                                                            outpost::core::Logger());
    upgrader->start();
  }
  nlohmann::json package(const std::string& version, const std::string& body,
                         const std::string& signature = "") {
    auto file = dir / ("signed-" + version);
    outpost::test::writeFile(file, body);
    return {{"format", "deb"},
            {"arch", "amd64"},
            {"url", server.url("/outpost_" + version + "_amd64.deb")},
            {"sha256", outpost::test::sha256Hex(file)},
            {"signature", signature.empty() ? release.sign(file) : signature}};
  }
  nlohmann::json object(bool withRollback = true) {
    nlohmann::json spec{{"version", "0.2.0-1"}, {"packages", {package("0.2.0-1", newBody)}}};
    if (withRollback)
      spec["rollback"] = {{"version", "0.1.0-1"}, {"packages", {package("0.1.0-1", oldBody)}}};
    return {{"kind", "AgentUpgrade"}, {"spec", spec}};
  }
  bool reached(Phase p) {
    return outpost::test::waitFor([&] {
      auto l = sink.last();
      return l && l->phase == p;
    });
  }
};

}  // namespace

TEST_CASE("an upgrade downloads and verifies both packages, then hands a plan to the helper") {
  Fixture f;
  f.upgrader->onDesired(kKey, f.object().dump());
  REQUIRE(f.reached(Phase::kInstalling));
  CHECK(f.sink.phases() == "downloading,verifying,installing");
  auto seen = f.sink.seen();
  bool sawBytes = false;
  for (const auto& [k, s] : seen) {
    CHECK(k == kKey);
    CHECK(s.version == "0.2.0-1");
    if (s.phase == Phase::kDownloading && s.bytes > 0) sawBytes = s.total == f.newBody.size();
  }
  CHECK(sawBytes);
  REQUIRE(f.installer.launched().size() == 1);
  auto plan = outpost::upgrade::Plan::fromJson(outpost::test::readFile(f.installer.launched()[0]));
  REQUIRE(plan.isOk());
  CHECK(plan->key == kKey);
  CHECK(plan->version == "0.2.0-1");
  CHECK(plan->previousVersion == "0.1.0-1");
  CHECK(plan->agentPid == 4242);
  CHECK(plan->healthTimeout == std::chrono::seconds(30));
  CHECK(outpost::test::readFile(plan->package) == f.newBody);
  CHECK(outpost::test::readFile(plan->previousPackage) == f.oldBody);
  CHECK(plan->previousPackage == (f.dir / "upgrade/kept/0.1.0-1_amd64.deb").string());

  SUBCASE("the new agent reports restarting, proves itself, then reports the helper's outcome") {
    f.installer.setInstalled("0.2.0-1");
    f.restart();
    REQUIRE(f.reached(Phase::kRestarting));
    CHECK_FALSE(fs::exists(f.dir / "upgrade/healthy"));
    f.upgrader->healthy();
    REQUIRE(outpost::test::waitFor([&] { return fs::exists(f.dir / "upgrade/healthy"); }));
    CHECK(outpost::test::readFile(f.dir / "upgrade/healthy") == "0.2.0-1\n");
    // The helper's side: the outcome, the plan done.
    outpost::upgrade::Outcome o{kKey, "0.2.0-1", plan->sha256, Phase::kHealthy, ""};
    outpost::test::writeFile(f.dir / "upgrade/outcome.json", o.toJson());
    fs::remove(f.dir / "upgrade/plan.json");
    REQUIRE(f.reached(Phase::kHealthy));
  }
  SUBCASE("the old agent after a rollback does not claim health and reports the rollback") {
    f.restart();
    f.upgrader->healthy();
    outpost::upgrade::Outcome o{kKey, "0.2.0-1", plan->sha256, Phase::kRolledBack,
                                "the new agent was not healthy within 30s"};
    outpost::test::writeFile(f.dir / "upgrade/outcome.json", o.toJson());
    fs::remove(f.dir / "upgrade/plan.json");
    REQUIRE(f.reached(Phase::kRolledBack));
    CHECK(f.sink.last()->reason == "the new agent was not healthy within 30s");
    CHECK_FALSE(fs::exists(f.dir / "upgrade/healthy"));
    // A later upgrade of another object ended since (outcome.json holds only the last one).
    outpost::upgrade::Outcome later{"default/agentupgrade/other", "0.3.0-1", std::string(64, 'b'),
                                    Phase::kHealthy, ""};
    outpost::test::writeFile(f.dir / "upgrade/outcome.json", later.toJson());
    // The same AgentUpgrade again (e.g. from the restored store): not tried a second time.
    f.upgrader->onDesired(kKey, f.object().dump());
    REQUIRE(outpost::test::waitFor([&] { return f.sink.seen().size() >= 3; }));
    f.upgrader->stop();
    CHECK(f.sink.last()->phase == Phase::kRolledBack);
    CHECK(f.installer.launched().size() == 1);
  }
  SUBCASE("an agent that starts while the plan's helper no longer runs reports it cut off") {
    // A power cut during the install: the helper is gone, no outcome will come.
    f.installer.setHelperRunning(false);
    f.restart();
    REQUIRE(f.reached(Phase::kFailed));
    CHECK(f.sink.last()->version == "0.2.0-1");
    CHECK(f.sink.last()->reason ==
          "the upgrade to 0.2.0-1 was cut off before its end (its helper no longer runs, after a "
          "power cut or a kill); the installed agent is 0.1.0-1");
    CHECK_FALSE(fs::exists(f.dir / "upgrade/plan.json"));
    CHECK(f.sink.phases().find("restarting") == std::string::npos);
    // The same object again is not tried a second time (a new version or package is).
    f.upgrader->onDesired(kKey, f.object().dump());
    REQUIRE(outpost::test::waitFor([&] { return f.sink.seen().size() >= 3; }));
    f.upgrader->stop();
    CHECK(f.sink.last()->phase == Phase::kFailed);
    CHECK(f.installer.launched().size() == 1);
  }
}

TEST_CASE("a package with a bad signature or digest is refused and nothing is installed") {
  Fixture f;
  auto obj = f.object();
  std::string reason;
  SUBCASE("signed by another key") {
    outpost::test::ReleaseKey other(f.dir.path(), "other");
    auto file = f.dir / "n";
    outpost::test::writeFile(file, f.newBody);
    obj["spec"]["packages"][0]["signature"] = other.sign(file);
    reason = "signature was made by none of the 1 key(s)";
  }
  SUBCASE("a digest that is not the package's") {
    obj["spec"]["packages"][0]["sha256"] = std::string(64, '0');
    reason = "the package's SHA-256 is ";
  }
  f.upgrader->onDesired(kKey, obj.dump());
  REQUIRE(f.reached(Phase::kFailed));
  CHECK(f.sink.phases() == "downloading,verifying,failed");
  CHECK(f.sink.last()->reason.find("is refused: ") != std::string::npos);
  CHECK(f.sink.last()->reason.find(reason) != std::string::npos);
  CHECK(f.installer.launched().empty());
  CHECK_FALSE(fs::exists(f.dir / "upgrade/plan.json"));
  CHECK(fs::is_empty(f.dir / "upgrade/packages"));  // the refused file is not kept
}

TEST_CASE("an upgrade without a package to roll back to, or without trusted keys, is refused") {
  Fixture f;
  f.upgrader->onDesired(kKey, f.object(false).dump());
  REQUIRE(f.reached(Phase::kFailed));
  CHECK(f.sink.last()->reason ==
        "no package of the installed version 0.1.0-1 to roll back to: none is kept on the node, "
        "and spec.rollback does not name that version");
  CHECK(f.installer.launched().empty());

  // A package kept from the last install is enough.
  fs::create_directories(f.dir / "upgrade/kept");
  outpost::test::writeFile(f.dir / "upgrade/kept/0.1.0-1_amd64.deb", f.oldBody);
  f.upgrader->onDesired(kKey, f.object(false).dump());
  REQUIRE(f.reached(Phase::kInstalling));
}

TEST_CASE("what the upgrader reports for an object it cannot act on") {
  Fixture f;
  f.upgrader->onDesired(kKey, R"({"kind":"AgentUpgrade","spec":{"version":"1 2"}})");
  REQUIRE(f.reached(Phase::kFailed));
  CHECK(f.sink.last()->reason.starts_with("the AgentUpgrade is refused: spec.version \"1 2\""));

  auto obj = f.object();
  obj["spec"]["packages"][0]["arch"] = "arm64";
  f.upgrader->onDesired(kKey, obj.dump());
  REQUIRE(outpost::test::waitFor([&] {
    return f.sink.last()->reason ==
           "no deb package for amd64 in version 0.2.0-1 (it has deb/arm64)";
  }));

  // A package the server does not have: failed at once, not tried again as a network failure.
  auto missing = f.object();
  missing["spec"]["packages"][0]["url"] = f.server.url("/missing.deb");
  f.upgrader->onDesired(kKey, missing.dump());
  REQUIRE(outpost::test::waitFor([&] {
    auto l = f.sink.last();
    return l && l->reason.find("404 Not Found") != std::string::npos;
  }));
  CHECK(f.sink.last()->phase == Phase::kFailed);
  CHECK(f.sink.last()->reason.find("again in") == std::string::npos);

  f.installer.setInstalled("0.2.0-1");
  f.upgrader->onDesired(kKey, f.object().dump());
  REQUIRE(f.reached(Phase::kHealthy));

  f.installer.setInstalled("0.1.0-1");
  f.installer.failLaunch(true);
  f.upgrader->onDesired(kKey, f.object().dump());
  REQUIRE(f.reached(Phase::kFailed));
  CHECK(f.sink.last()->reason == "the upgrade helper did not start: systemd-run: no such unit");
  CHECK_FALSE(fs::exists(f.dir / "upgrade/plan.json"));
}

TEST_CASE("a download the network cut short is tried again and resumes where it stopped") {
  Fixture f;
  // The first download is the rollback package's (200000 bytes): cut at half.
  f.server.cutNextAfter(100000);
  f.upgrader->onDesired(kKey, f.object().dump());
  REQUIRE(f.reached(Phase::kInstalling));
  bool toldRetry = false;
  for (const auto& [k, s] : f.sink.seen())
    toldRetry = toldRetry || (s.phase == Phase::kDownloading &&
                              s.reason.find("the rollback package: downloading ") == 0 &&
                              s.reason.find("; again in 100ms") != std::string::npos);
  CHECK(toldRetry);
  auto ranges = f.server.ranges();
  REQUIRE(ranges.size() == 3);
  CHECK(ranges[0] == "");
  CHECK(ranges[1] == "bytes=100000-");  // the rest only
  CHECK(ranges[2] == "");               // then the new package
  CHECK(outpost::test::readFile(f.dir / "upgrade/kept/0.1.0-1_amd64.deb") == f.oldBody);
}
