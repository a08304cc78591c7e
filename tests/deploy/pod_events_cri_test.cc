// A pod's recent events and log directory (Reconciler::podInfo, what `outpostctl describe` and
// `outpostctl logs` show), against a real containerd.

#include <doctest/doctest.h>

#include "cri_fixture.h"
#include "support/test_util.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

bool hasEvent(const deploy::PodRuntimeInfo& info, const std::string& reason,
              const std::string& text) {
  for (const auto& e : info.events) {
    if (e.reason == reason && e.message.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string eventList(const std::optional<deploy::PodRuntimeInfo>& info) {
  std::string out;
  if (!info) return "(no info)";
  for (const auto& e : info->events)
    out += e.type + " " + e.reason + " [" + e.container + "] " + e.message + " x" +
           std::to_string(e.count) + "\n";
  return out;
}

TEST_CASE(
    "a crashing container's events say it was created, started, exited with its code and backs "
    "off; its output is in the CRI log file the pod info names") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  f.config.backoffInitial = 30s;  // long enough that the back-off is observed, not passed
  const std::string key = "default/pod/crasher";
  f.desired.put(key, busyboxPod("crasher", "uid-crasher", ContainerdHarness::kBusybox,
                                {{"app", "echo to-stdout; echo to-stderr >&2; exit 3"}})
                         .dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  std::optional<deploy::PodRuntimeInfo> info;
  bool backedOff = waitFor(
      [&] {
        agent->pass();
        info = agent->reconciler().podInfo(key);
        return info && hasEvent(*info, "BackOff", "restarting failed container app");
      },
      30s);
  INFO("events:\n", eventList(info));
  REQUIRE(backedOff);
  CHECK(info->uid == "uid-crasher");
  CHECK(hasEvent(*info, "SandboxCreated", "attempt 0"));
  CHECK(hasEvent(*info, "Created", "Created container app (attempt 0)"));
  CHECK(hasEvent(*info, "Started", "Started container app"));
  CHECK(hasEvent(*info, "Exited", "Container app exited with code 3"));
  // Oldest first, in the order it happened; the exit is reported once however many passes see it.
  std::vector<std::string> reasons;
  for (const auto& e : info->events) reasons.push_back(e.reason);
  // The first restart is immediate, the next one waits (crash-loop back-off).
  CHECK(reasons == std::vector<std::string>{"SandboxCreated", "Created", "Started", "Exited",
                                            "Created", "Started", "Exited", "BackOff"});
  CHECK(hasEvent(*info, "Created", "Created container app (attempt 1)"));
  for (const auto& e : info->events) {
    CHECK(e.count == 1);
    CHECK(e.type == (e.reason == "Exited" || e.reason == "BackOff" ? "Warning" : "Normal"));
  }

  // The CRI log of attempt 0 holds both streams in containerd's format.
  std::string log = readFile(std::filesystem::path(info->logDirectory) / "app" / "0.log");
  CHECK(log.find(" stdout F to-stdout\n") != std::string::npos);
  CHECK(log.find(" stderr F to-stderr\n") != std::string::npos);

  // Removal forgets the pod's events.
  f.desired.erase(key);
  agent->changed({key});
  REQUIRE(waitFor([&] { return f.sink.removed(key); }, 30s));
  CHECK_FALSE(agent->reconciler().podInfo(key).has_value());
}

TEST_CASE("an image that cannot be pulled is one warning per attempt, not one per pass") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  f.config.pullBackoffInitial = 60s;
  const std::string key = "default/pod/nopull";
  f.desired.put(
      key,
      busyboxPod("nopull", "uid-nopull", "localhost/outpost/absent:1", {{"app", "true"}}).dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  for (int i = 0; i < 3; ++i) agent->pass();
  auto info = agent->reconciler().podInfo(key);
  INFO("events:\n", eventList(info));
  REQUIRE(info.has_value());
  int failed = 0;
  for (const auto& e : info->events) {
    if (e.reason == "Failed") {
      ++failed;
      CHECK(e.type == "Warning");
      CHECK(e.message.find("Failed to pull image \"localhost/outpost/absent:1\"") == 0);
      CHECK(e.message.find("next attempt in 60 s") != std::string::npos);
    }
  }
  CHECK(failed == 1);
  CHECK(info->events.size() <= deploy::PodRuntimeInfo::kMaxPodEvents);
  f.desired.erase(key);
  agent->changed({key});
  REQUIRE(waitFor([&] { return f.sink.removed(key); }, 30s));
}

}  // namespace
}  // namespace outpost::test
