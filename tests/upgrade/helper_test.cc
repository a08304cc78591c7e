// The real upgrade helper (runHelper) with a stand-in for dpkg and a child process as the agent:
// the test plays the supervisor and the new agent, so what the FakeInstaller's tests assume of
// the helper is checked here: the agent stopped, the store copied aside, the package installed,
// `ready` for the supervisor, then health or a rollback with the store put back.
#include "outpost/upgrade/helper.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>

#include <future>

#include "support/test_util.h"

namespace fs = std::filesystem;
using outpost::upgrade::Phase;

namespace {

struct HelperFixture {
  outpost::test::TempDir dir;
  fs::path up = dir / "upgrade";
  fs::path store = dir / "outpost.db";
  outpost::test::Child agent{{"/bin/sleep", "600"}};
  outpost::upgrade::HelperOptions opt;

  explicit HelperFixture(std::chrono::seconds healthTimeout,
                         const std::string& failOn = "never-matches") {
    fs::create_directories(up / "packages");
    fs::create_directories(up / "kept");
    outpost::test::writeFile(up / "packages/0.2.0-1_amd64.deb", "new");
    outpost::test::writeFile(up / "kept/0.1.0-1_amd64.deb", "old");
    outpost::test::writeFile(store, "store of 0.1.0-1");
    outpost::test::writeFile(store.string() + "-wal", "wal of 0.1.0-1");
    // dpkg's stand-in: records its arguments; fails for a package whose name contains `failOn`.
    fs::path dpkg = dir / "dpkg";
    outpost::test::writeFile(dpkg, "#!/bin/sh\necho \"$@\" >> " + (dir / "dpkg.calls").string() +
                                       "\ncase \"$3\" in *" + failOn +
                                       "*) echo broken >&2; exit 1;; esac\nexit 0\n");
    ::chmod(dpkg.c_str(), 0755);
    // The helper signals only a process named like the agent: the child must have exec'd first.
    REQUIRE(outpost::test::waitFor([&] {
      std::error_code ec;
      auto comm = fs::path("/proc") / std::to_string(agent.pid()) / "comm";
      return fs::exists(comm, ec) && outpost::test::readFile(comm) == "sleep\n";
    }));
    opt.dir = up;
    opt.store = store;
    opt.dpkg = dpkg.string();
    opt.stopTimeout = std::chrono::seconds(10);
    opt.agentName = "sleep";
    outpost::upgrade::Plan plan;
    plan.key = "default/agentupgrade/u";
    plan.version = "0.2.0-1";
    plan.sha256 = std::string(64, 'a');
    plan.package = (up / "packages/0.2.0-1_amd64.deb").string();
    plan.previousVersion = "0.1.0-1";
    plan.previousPackage = (up / "kept/0.1.0-1_amd64.deb").string();
    plan.healthTimeout = healthTimeout;
    plan.agentPid = agent.pid();
    outpost::test::writeFile(up / "plan.json", plan.toJson());
  }
  std::string calls() { return outpost::test::readFile(dir / "dpkg.calls"); }
};

}  // namespace

TEST_CASE(
    "the helper stops the agent, installs, and keeps the package once the new agent is healthy") {
  HelperFixture f(std::chrono::seconds(60));
  auto helper = std::async(std::launch::async, [&] { return outpost::upgrade::runHelper(f.opt); });
  // The supervisor: the old agent is stopped, then `ready` says the new one may start.
  CHECK(f.agent.wait(std::chrono::seconds(20)) == 128 + SIGTERM);
  REQUIRE(outpost::test::waitFor([&] { return fs::exists(f.up / "ready"); }));
  CHECK(f.calls() == "--force-confold -i " + (f.up / "packages/0.2.0-1_amd64.deb").string() + "\n");
  // The new agent migrates its store and proves itself.
  outpost::test::writeFile(f.store, "store of 0.2.0-1");
  outpost::test::writeFile(f.up / "healthy", "0.2.0-1\n");
  auto outcome = helper.get();
  REQUIRE(outcome.isOk());
  CHECK(outcome->phase == Phase::kHealthy);
  CHECK(outpost::test::readFile(f.store) == "store of 0.2.0-1");
  CHECK_FALSE(fs::exists(f.up / "plan.json"));
  CHECK_FALSE(fs::exists(f.up / "snapshot"));
  // Kept for the next rollback, instead of the older one.
  CHECK(fs::exists(f.up / "kept/0.2.0-1_amd64.deb"));
  CHECK_FALSE(fs::exists(f.up / "kept/0.1.0-1_amd64.deb"));
  auto written =
      outpost::upgrade::Outcome::fromJson(outpost::test::readFile(f.up / "outcome.json"));
  REQUIRE(written.isOk());
  CHECK(written->phase == Phase::kHealthy);
  CHECK(written->key == "default/agentupgrade/u");
}

TEST_CASE("a new agent that does not become healthy is rolled back with the store put back") {
  HelperFixture f(std::chrono::seconds(1));
  auto helper = std::async(std::launch::async, [&] { return outpost::upgrade::runHelper(f.opt); });
  CHECK(f.agent.wait(std::chrono::seconds(20)) == 128 + SIGTERM);  // reaped, as a supervisor does
  REQUIRE(outpost::test::waitFor([&] { return fs::exists(f.up / "ready"); }));
  outpost::test::writeFile(f.store, "store of 0.2.0-1");  // migrated, then the agent fails
  fs::remove(f.store.string() + "-wal");
  outpost::test::writeFile(f.store.string() + "-shm", "shm of 0.2.0-1");
  auto outcome = helper.get();
  REQUIRE(outcome.isOk());
  CHECK(outcome->phase == Phase::kRolledBack);
  CHECK(outcome->reason == "the agent 0.2.0-1 was not healthy within 1s");
  CHECK(f.calls() == "--force-confold -i " + (f.up / "packages/0.2.0-1_amd64.deb").string() +
                         "\n--force-confold -i " + (f.up / "kept/0.1.0-1_amd64.deb").string() +
                         "\n");
  CHECK(outpost::test::readFile(f.store) == "store of 0.1.0-1");
  CHECK(outpost::test::readFile(f.store.string() + "-wal") == "wal of 0.1.0-1");
  CHECK_FALSE(fs::exists(f.store.string() + "-shm"));
  CHECK(fs::exists(f.up / "ready"));  // the old agent may start again
  CHECK(fs::exists(f.up / "kept/0.1.0-1_amd64.deb"));
  auto written =
      outpost::upgrade::Outcome::fromJson(outpost::test::readFile(f.up / "outcome.json"));
  REQUIRE(written.isOk());
  CHECK(written->phase == Phase::kRolledBack);
  CHECK(written->reason == outcome->reason);
}

TEST_CASE("a package dpkg refuses is rolled back at once, naming the exit code and the log") {
  HelperFixture f(std::chrono::seconds(60), "0.2.0");
  auto helper = std::async(std::launch::async, [&] { return outpost::upgrade::runHelper(f.opt); });
  CHECK(f.agent.wait(std::chrono::seconds(20)) == 128 + SIGTERM);
  auto outcome = helper.get();
  REQUIRE(outcome.isOk());
  CHECK(outcome->phase == Phase::kRolledBack);
  CHECK(outcome->reason ==
        "installing 0.2.0-1 failed: dpkg exited with 1 (" + (f.up / "install.log").string() + ")");
  CHECK(outpost::test::readFile(f.up / "install.log").find("broken") != std::string::npos);
}

TEST_CASE("under systemd the helper stops and starts the unit with systemctl, around dpkg") {
  HelperFixture f(std::chrono::seconds(1));
  // systemctl's stand-in: recorded in the same file as dpkg's calls, so their order shows; `stop`
  // ends the agent as systemd would. The helper itself signals nothing in this mode.
  fs::path systemctl = f.dir / "systemctl";
  outpost::test::writeFile(
      systemctl, "#!/bin/sh\necho systemctl \"$@\" >> " + (f.dir / "dpkg.calls").string() +
                     "\n[ \"$1\" = stop ] && kill " + std::to_string(f.agent.pid()) + "\nexit 0\n");
  ::chmod(systemctl.c_str(), 0755);
  f.opt.systemd = true;
  f.opt.systemctl = systemctl.string();
  f.opt.unit = "outpost.service";
  auto outcome = outpost::upgrade::runHelper(f.opt);  // the new agent never proves itself
  REQUIRE(outcome.isOk());
  CHECK(f.agent.wait(std::chrono::seconds(20)) == 128 + SIGTERM);
  CHECK(outcome->phase == Phase::kRolledBack);
  CHECK(f.calls() ==
        "systemctl stop outpost.service\n"
        "--force-confold -i " +
            (f.up / "packages/0.2.0-1_amd64.deb").string() +
            "\nsystemctl start outpost.service\n"
            "systemctl stop outpost.service\n"
            "--force-confold -i " +
            (f.up / "kept/0.1.0-1_amd64.deb").string() + "\nsystemctl start outpost.service\n");
  CHECK(outpost::test::readFile(f.store) == "store of 0.1.0-1");
}

TEST_CASE(
    "under systemd a systemctl that fails to stop the unit fails the upgrade, nothing installed") {
  HelperFixture f(std::chrono::seconds(60));
  fs::path systemctl = f.dir / "systemctl";
  outpost::test::writeFile(systemctl, "#!/bin/sh\necho 'Failed to stop' >&2\nexit 1\n");
  ::chmod(systemctl.c_str(), 0755);
  f.opt.systemd = true;
  f.opt.systemctl = systemctl.string();
  auto outcome = outpost::upgrade::runHelper(f.opt);
  REQUIRE(outcome.isOk());
  CHECK(outcome->phase == Phase::kFailed);
  CHECK(outcome->reason == "systemctl stop outpost.service failed");
  CHECK_FALSE(fs::exists(f.dir / "dpkg.calls"));
}

TEST_CASE("helperRunning: a live process of the helper's name in helper.pid, other than this one") {
  outpost::test::TempDir dir;
  CHECK_FALSE(outpost::upgrade::helperRunning(dir.path(), "outpostd"));  // no helper.pid
  outpost::test::writeFile(dir / "helper.pid", std::to_string(::getpid()) + "\n");
  CHECK_FALSE(outpost::upgrade::helperRunning(dir.path(), "outpostd"));  // this agent's own pid
  // A process named outpostd (sleep under that name) is taken for the helper; a sleep is not.
  fs::copy_file("/bin/sleep", dir / "outpostd");
  outpost::test::Child helper({(dir / "outpostd").string(), "600"});
  outpost::test::Child other({"/bin/sleep", "600"});
  REQUIRE(outpost::test::waitFor([&] {
    std::error_code ec;
    auto comm = fs::path("/proc") / std::to_string(helper.pid()) / "comm";
    return fs::exists(comm, ec) && outpost::test::readFile(comm) == "outpostd\n";
  }));
  outpost::test::writeFile(dir / "helper.pid", std::to_string(helper.pid()) + "\n");
  CHECK(outpost::upgrade::helperRunning(dir.path(), "outpostd"));
  outpost::test::writeFile(dir / "helper.pid", std::to_string(other.pid()) + "\n");
  CHECK_FALSE(outpost::upgrade::helperRunning(dir.path(), "outpostd"));
  outpost::test::writeFile(dir / "helper.pid", std::to_string(helper.pid()) + "\n");
  helper.signal(SIGKILL);
  helper.wait(std::chrono::seconds(10));
  CHECK_FALSE(outpost::upgrade::helperRunning(dir.path(), "outpostd"));  // gone
}

TEST_CASE("without a plan the helper does nothing") {
  outpost::test::TempDir dir;
  outpost::upgrade::HelperOptions o;
  o.dir = dir.path();
  auto r = outpost::upgrade::runHelper(o);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().message() == "no plan.json in " + dir.path().string());
}
