// Maintenance windows and on-site holds (docs/rollouts.md, "On the node"): the window syntax, where
// a time stands against windows in node local time (DST included), and a running pod's update
// held until its window opens or it is released, on the fake runtime with a manual clock.

#include "outpost/deploy/maintenance.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>

#include "agent_env.h"
#include "pod_status.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// Sets the process's time zone for one test case.
class TimeZone {
 public:
  explicit TimeZone(const char* tz) {
    if (const char* old = std::getenv("TZ")) old_ = old;
    ::setenv("TZ", tz, 1);
    ::tzset();
  }
  ~TimeZone() {
    if (old_) {
      ::setenv("TZ", old_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  TimeZone(const TimeZone&) = delete;
  TimeZone& operator=(const TimeZone&) = delete;

 private:
  std::optional<std::string> old_;
};

// Monday 2026-12-07 00:00 UTC.
const core::WallTime kMonday = core::WallTime(std::chrono::seconds(1796644800 - 12 * 3600));

std::vector<deploy::MaintenanceWindow> windows(std::initializer_list<const char*> texts) {
  std::vector<deploy::MaintenanceWindow> out;
  for (const char* t : texts) {
    auto w = deploy::parseMaintenanceWindow(t);
    REQUIRE_MESSAGE(w.isOk(), w.status().message());
    out.push_back(*w);
  }
  return out;
}

TEST_CASE("window syntax: days, ranges, lists, an optional time range; bad ones say why") {
  auto w = deploy::parseMaintenanceWindow("Mon-Sat 22:00-06:00");
  REQUIRE(w.isOk());
  CHECK(w->days == 0x3f);
  CHECK(!w->wholeDay);
  CHECK(w->startMinute == 22 * 60);
  CHECK(w->endMinute == 6 * 60);
  CHECK(deploy::parseMaintenanceWindow("Sun")->days == 0x40);
  CHECK(deploy::parseMaintenanceWindow("Sun")->wholeDay);
  CHECK(deploy::parseMaintenanceWindow("Mon,Wed 01:00-03:30")->days == 0x05);
  CHECK(deploy::parseMaintenanceWindow("Sat-Mon")->days == 0x61);  // wraps over the week's end
  struct Bad {
    const char* text;
    const char* says;
  };
  for (auto [text, says] :
       {Bad{"", "no days"}, Bad{"Mon-Sta 22:00-06:00", "\"Mon-Sta\" is not a day"},
        Bad{"monday", "\"monday\" is not a day"}, Bad{"Mon,", "ends with ','"},
        Bad{"Mon 22:00", "\"22:00\" is not a time range"},
        Bad{"Mon 24:00-01:00", "is not a time range"}, Bad{"Mon 22:00-22:00", "empty"},
        Bad{"Mon  22:00-23:00", "one time range"}, Bad{"Mon 1:00-2:00", "is not a time range"}}) {
    CAPTURE(text);
    auto r = deploy::parseMaintenanceWindow(text);
    REQUIRE(!r.isOk());
    CHECK(r.status().message().find(std::string("\"") + text + "\"") != std::string::npos);
    CHECK(r.status().message().find(says) != std::string::npos);
  }
}

TEST_CASE("where a time stands against windows, in node local time") {
  TimeZone utc("UTC");
  auto ws = windows({"Mon-Sat 22:00-06:00"});
  auto at = [](int day, int hour, int minute = 0) {
    return kMonday + std::chrono::hours(24 * day + hour) + std::chrono::minutes(minute);
  };
  auto s = deploy::windowState(ws, at(0, 12));
  CHECK(!s.open);
  CHECK(deploy::rfc3339(*s.nextOpen) == "2026-12-07T22:00:00Z");
  CHECK(deploy::windowState(ws, at(0, 22)).open);
  CHECK(deploy::windowState(ws, at(1, 5, 59)).open);  // Monday's window, crossing midnight
  CHECK(!deploy::windowState(ws, at(1, 6)).open);
  CHECK(deploy::windowState(ws, at(6, 3)).open);  // Sunday 03:00: Saturday's window
  s = deploy::windowState(ws, at(6, 12));         // Sunday noon: none until Monday night
  CHECK(!s.open);
  CHECK(deploy::rfc3339(*s.nextOpen) == "2026-12-14T22:00:00Z");
  CHECK(deploy::windowState(windows({"Mon-Sat 22:00-06:00", "Sun"}), at(6, 12)).open);
}

TEST_CASE("across daylight saving time the window follows the local clock") {
  TimeZone berlin("Europe/Berlin");
  // Sunday 2026-03-29: clocks go from 02:00 to 03:00 CEST. A window from 02:30 begins after the
  // gap.
  auto ws = windows({"Sun 02:30-04:00"});
  const core::WallTime saturdayNoonUtc = core::WallTime(std::chrono::seconds(1774699200));
  auto s = deploy::windowState(ws, saturdayNoonUtc);
  REQUIRE(s.nextOpen);
  CHECK(deploy::rfc3339(*s.nextOpen) == "2026-03-29T01:30:00Z");  // 03:30 CEST
  // A whole day is 23 hours long that Sunday: it ends at local midnight.
  auto sunday = windows({"Sun"});
  CHECK(deploy::windowState(sunday, saturdayNoonUtc + 12h).open);   // 00:00 UTC = 01:00 CET
  CHECK(deploy::windowState(sunday, saturdayNoonUtc + 33h).open);   // 21:00 UTC = 23:00 CEST
  CHECK(!deploy::windowState(sunday, saturdayNoonUtc + 34h).open);  // 22:00 UTC = Monday 00:00
}

json pod(const std::string& version, const std::string& image, bool windowPolicy = true) {
  json p = busyboxPod("web", "u-web", image, {{"c", "run"}});
  p["metadata"]["resourceVersion"] = version;
  if (windowPolicy) p["metadata"]["annotations"]["outpost.io/update-policy"] = "maintenance-window";
  return p;
}

struct WindowFixture {
  WindowFixture() : clock(kMonday + 12h) {
    for (const char* i : {"img:1", "img:2", "img:3"}) rt.addImage(i);
    cfg.stateDir = state.path().string();
    cfg.maintenanceWindows = windows({"Mon-Sat 22:00-06:00"});
  }
  std::unique_ptr<DeployAgent> agent() {
    auto a = std::make_unique<DeployAgent>(rt, desired, sink, clock, cfg, "", &local);
    REQUIRE(a->start());
    return a;
  }
  json outpost() { return sink.pod(key).value("outpost", json::object()); }
  std::string runningImage() {
    auto list = rt.listContainers({"", "", deploy::ContainerState::kRunning, {}});
    return list->size() == 1 ? list->front().image : "";
  }
  TimeZone utc{"UTC"};
  FakeRuntime rt;
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  MemoryLocalState local;
  TempDir state;
  deploy::ReconcilerConfig cfg;
  const std::string key = "default/pod/web";
};

TEST_CASE_FIXTURE(WindowFixture,
                  "an update of a running pod waits for its maintenance window; the desired object "
                  "is stored at once, the old version runs on and the status says until when") {
  desired.put(key, pod("1", "img:1").dump());
  auto a = agent();
  REQUIRE(runningImage() == "img:1");
  // A new pod is never held: it ran at once, outside any window.
  CHECK(outpost()["desiredVersion"] == "1");

  desired.put(key, pod("2", "img:2").dump());
  a->changed({key});
  CHECK(runningImage() == "img:1");
  CHECK(outpost()["health"] == "held");
  CHECK(outpost()["reason"] == "MaintenanceWindow");
  CHECK(outpost()["desiredVersion"] == "1");
  CHECK(outpost()["pendingVersion"] == "2");
  CHECK(outpost()["heldUntil"] == "2026-12-07T22:00:00Z");
  CHECK(a->reconciler().holds().second.size() == 1);
  a->pass();  // a resync re-reads the same desired object: it still waits
  CHECK(runningImage() == "img:1");

  // The window opens: the reconciler's own wake-up applies the update.
  clock.advance(10h);
  REQUIRE(waitFor([&] { return runningImage() == "img:2"; }, 5s));
  REQUIRE(waitFor([&] { return outpost().value("desiredVersion", "") == "2"; }, 5s));
  CHECK(outpost()["health"] == "healthy");
  CHECK(a->reconciler().holds().second.empty());

  // A deletion outside the window waits too.
  clock.advance(8h);  // Tuesday 06:00: closed
  desired.erase(key);
  a->changed({key});
  CHECK(runningImage() == "img:2");
  CHECK(outpost()["health"] == "held");
  CHECK(outpost()["pendingDeletion"] == true);
  CHECK(!sink.removed(key));
  clock.advance(16h);  // Tuesday 22:00
  a->pass();
  REQUIRE(waitFor(
      [&] {
        a->pass();
        return sink.removed(key);
      },
      5s));
}

TEST_CASE_FIXTURE(WindowFixture,
                  "an update without the annotation, or with no window configured, goes at once") {
  desired.put(key, pod("1", "img:1", /*windowPolicy=*/false).dump());
  auto a = agent();
  desired.put(key, pod("2", "img:2", false).dump());
  a->changed({key});
  CHECK(runningImage() == "img:2");
  CHECK(outpost()["desiredVersion"] == "2");
}

TEST_CASE_FIXTURE(WindowFixture,
                  "on-site hold defers any pod's update, release lets it through now (also one "
                  "that waits for a window); holds and the waiting change survive a restart") {
  cfg.maintenanceWindows.clear();
  desired.put(key, pod("1", "img:1", false).dump());
  auto a = agent();
  REQUIRE(a->reconciler().hold({key}, std::nullopt).isOk());
  desired.put(key, pod("2", "img:2", false).dump());
  a->changed({key});
  CHECK(runningImage() == "img:1");
  CHECK(outpost()["health"] == "held");
  CHECK(outpost()["reason"] == "OnHold");
  CHECK(!outpost().contains("heldUntil"));
  CHECK(outpost()["pendingVersion"] == "2");

  // The agent restarts: the hold and the version that ran are kept.
  a.reset();
  a = agent();
  CHECK(runningImage() == "img:1");
  CHECK(outpost()["health"] == "held");
  CHECK(outpost()["desiredVersion"] == "1");
  auto [holds, held] = a->reconciler().holds();
  REQUIRE(holds.size() == 1);
  CHECK(holds[0].pod == key);
  CHECK(held.size() == 1);

  REQUIRE(a->reconciler().release({}).isOk());
  REQUIRE(waitFor([&] { return runningImage() == "img:2"; }, 5s));
  CHECK(outpost()["desiredVersion"] == "2");
  CHECK(a->reconciler().holds().first.empty());

  // A hold with an end: the update goes when it ends.
  REQUIRE(a->reconciler().hold({}, clock.wallNow() + 1h).isOk());
  desired.put(key, pod("3", "img:3", false).dump());
  a->changed({key});
  CHECK(outpost()["reason"] == "OnHold");
  CHECK(runningImage() == "img:2");
  clock.advance(1h);
  REQUIRE(waitFor([&] { return runningImage() == "img:3"; }, 5s));
}

TEST_CASE_FIXTURE(WindowFixture, "release lets an update that waits for a window through now") {
  desired.put(key, pod("1", "img:1").dump());
  auto a = agent();
  desired.put(key, pod("2", "img:2").dump());
  a->changed({key});
  REQUIRE(outpost()["reason"] == "MaintenanceWindow");
  REQUIRE(a->reconciler().release({key}).isOk());
  REQUIRE(waitFor([&] { return runningImage() == "img:2"; }, 5s));
  // The next update waits for the window again.
  desired.put(key, pod("3", "img:3").dump());
  a->changed({key});
  CHECK(outpost()["reason"] == "MaintenanceWindow");
  CHECK(runningImage() == "img:2");
}

}  // namespace
}  // namespace outpost::test
