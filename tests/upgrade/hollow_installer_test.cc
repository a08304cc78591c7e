// The hollow node's simulated installer behind the real Upgrader (real download, real signature):
// the version it reports moves with the simulated install, the new agent's health decides, and a
// version that stages a failure is rolled back.
#include "outpost/upgrade/hollow_installer.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "outpost/upgrade/upgrader.h"
#include "support/fake_installer.h"
#include "support/file_server.h"
#include "support/test_util.h"
#include "upgrade/upgrade_test_util.h"

namespace fs = std::filesystem;
using outpost::upgrade::Phase;

namespace {

const std::string kKey = "default/agentupgrade/agent";

struct HollowFixture {
  outpost::test::TempDir dir;
  outpost::test::ReleaseKey release{dir.path(), "release"};
  outpost::test::FileServer server;
  outpost::test::RecordingStatusSink sink;
  outpost::core::SystemClock clock;
  std::unique_ptr<outpost::upgrade::Installer> installer =
      outpost::upgrade::makeHollowInstaller({dir / "upgrade", "0.1.0-1"});
  std::unique_ptr<outpost::upgrade::Upgrader> upgrader;

  std::chrono::seconds healthTimeout;

  explicit HollowFixture(std::chrono::seconds health = std::chrono::seconds(1))
      : healthTimeout(health) {
    startAgent();
  }
  void startAgent() {
    outpost::upgrade::UpgraderOptions o;
    o.dir = dir / "upgrade";
    o.keys = *outpost::upgrade::parseTrustedKeys({release.publicPem()});
    o.healthTimeout = healthTimeout;
    upgrader = std::make_unique<outpost::upgrade::Upgrader>(o, *installer, sink, clock,
                                                            outpost::core::Logger());
    upgrader->start();
  }
  // The hollow agent stops (its simulated helper, a thread, with it) and starts again.
  void restartAgent() {
    upgrader->stop();
    upgrader.reset();
    installer.reset();
    installer = outpost::upgrade::makeHollowInstaller({dir / "upgrade", "0.1.0-1"});
    startAgent();
  }
  ~HollowFixture() { upgrader->stop(); }
  nlohmann::json package(const std::string& version) {
    std::string body = "hollow package " + version;
    server.put("/outpost_" + version + "_amd64.deb", body);
    auto file = dir / ("signed-" + version);
    outpost::test::writeFile(file, body);
    return {{"format", "deb"},
            {"arch", "amd64"},
            {"url", server.url("/outpost_" + version + "_amd64.deb")},
            {"sha256", outpost::test::sha256Hex(file)},
            {"signature", release.sign(file)}};
  }
  std::string object(const std::string& version) {
    nlohmann::json spec{{"version", version},
                        {"packages", {package(version)}},
                        {"rollback", {{"version", "0.1.0-1"}, {"packages", {package("0.1.0-1")}}}}};
    return nlohmann::json{{"kind", "AgentUpgrade"}, {"spec", spec}}.dump();
  }
  bool reached(Phase p) {
    return outpost::test::waitFor([&] {
      auto l = sink.last();
      return l && l->phase == p;
    });
  }
};

}  // namespace

TEST_CASE("hollow installer: the simulated install ends healthy once the agent proves itself") {
  HollowFixture f;
  CHECK(*f.installer->installedVersion() == "0.1.0-1");
  f.upgrader->onDesired(kKey, f.object("0.2.0-1"));
  REQUIRE(outpost::test::waitFor([&] { return *f.installer->installedVersion() == "0.2.0-1"; }));
  f.upgrader
      ->healthy();  // the agent's proof (store, runtime, link), as its periodic check gives it
  REQUIRE(f.reached(Phase::kHealthy));
  CHECK(f.sink.last()->version == "0.2.0-1");
  CHECK(fs::exists(f.dir / "upgrade" / "kept" / "0.2.0-1_amd64.deb"));
  CHECK_FALSE(fs::exists(f.dir / "upgrade" / "plan.json"));
}

TEST_CASE("hollow installer: without the agent's proof the upgrade is rolled back") {
  HollowFixture f;
  f.upgrader->onDesired(kKey, f.object("0.2.0-1"));
  REQUIRE(f.reached(Phase::kRolledBack));
  CHECK(f.sink.last()->reason == "the agent 0.2.0-1 was not healthy within 1s");
  CHECK(*f.installer->installedVersion() == "0.1.0-1");
}

TEST_CASE("hollow installer: a version that stages a failure is rolled back, whatever the agent") {
  HollowFixture f;
  std::atomic<bool> done{false};
  std::thread proving([&] {
    while (!done) {
      f.upgrader->healthy();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the agent's periodic check
    }
  });
  SUBCASE("unhealthy") {
    f.upgrader->onDesired(kKey, f.object("0.3.0-unhealthy1"));
    REQUIRE(f.reached(Phase::kRolledBack));
    CHECK(f.sink.last()->reason.find("not healthy within 1s (staged by the version") !=
          std::string::npos);
  }
  SUBCASE("install-fails") {
    f.upgrader->onDesired(kKey, f.object("0.3.0-install-fails1"));
    REQUIRE(f.reached(Phase::kRolledBack));
    CHECK(f.sink.last()->reason.find("dpkg exited with 1 (staged by the version") !=
          std::string::npos);
  }
  done = true;
  proving.join();
  CHECK(*f.installer->installedVersion() == "0.1.0-1");
}

TEST_CASE("a hollow agent restarted during its simulated install reports the upgrade cut off") {
  HollowFixture f(std::chrono::seconds(60));
  f.upgrader->onDesired(kKey, f.object("0.2.0-1"));
  REQUIRE(f.reached(Phase::kInstalling));
  // The simulated install is done, the health wait goes on: the agent stops now.
  REQUIRE(outpost::test::waitFor([&] {
    auto v = f.installer->installedVersion();
    return v.isOk() && *v == "0.2.0-1";
  }));
  f.restartAgent();
  REQUIRE(f.reached(Phase::kFailed));
  CHECK(f.sink.last()->reason ==
        "the upgrade to 0.2.0-1 was cut off before its end (its helper no longer runs, after a "
        "power cut or a kill); the installed agent is 0.2.0-1");
  CHECK_FALSE(fs::exists(f.dir / "upgrade/plan.json"));
  CHECK(f.sink.phases().find("restarting") == std::string::npos);
}
