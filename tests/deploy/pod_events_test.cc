// A pod's events alone (PodEvents): what is recorded, what a repeat does, what is said once.

#include "pod_events.h"

#include <doctest/doctest.h>

#include "outpost/core/clock.h"
#include "outpost/core/metrics.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

struct Events {
  core::ManualClock clock;
  core::MetricsRegistry metrics;
  deploy::PodEvents events{clock, &metrics};
  const std::string pod = "default/pod/web";

  std::vector<deploy::PodEvent> list() {
    auto info = events.info(pod);
    return info ? info->events : std::vector<deploy::PodEvent>{};
  }
  double counted(const char* name, const char* label, const std::string& value) {
    return metrics.counter(name, "", {{label, value}}).value();
  }
};

deploy::ContainerStatus exited(const std::string& id, int code, const std::string& reason) {
  deploy::ContainerStatus st;
  st.container.id = id;
  st.exitCode = code;
  st.reason = reason;
  return st;
}

TEST_CASE_FIXTURE(Events, "a repeat of the newest event is counted on it, with its last time") {
  events.record(pod, deploy::kNormal, "Pulled", "app", "pulled");
  auto first = clock.wallNow();
  clock.advance(5s);
  events.record(pod, deploy::kNormal, "Pulled", "app", "pulled");
  events.record(pod, deploy::kNormal, "Created", "app", "created");
  events.record(pod, deploy::kNormal, "Pulled", "app", "pulled");  // not the newest: a new row
  auto l = list();
  REQUIRE(l.size() == 3);
  CHECK(l[0].count == 2);
  CHECK(l[0].first == first);
  CHECK(l[0].last == first + 5s);
  CHECK(l[2].count == 1);
  CHECK(counted("outpost_deploy_actions_total", "action", "Pulled") == 3);
  CHECK(counted("outpost_deploy_actions_total", "action", "Created") == 1);
}

TEST_CASE_FIXTURE(Events, "the ring keeps the newest events, oldest first") {
  for (size_t i = 0; i < deploy::PodRuntimeInfo::kMaxPodEvents + 5; ++i)
    events.record(pod, deploy::kWarning, "Failed", "", "attempt " + std::to_string(i));
  auto l = list();
  REQUIRE(l.size() == deploy::PodRuntimeInfo::kMaxPodEvents);
  CHECK(l.front().message == "attempt 5");
  CHECK(l.back().message == "attempt 24");
  CHECK(counted("outpost_deploy_errors_total", "reason", "Failed") == 25);
}

TEST_CASE_FIXTURE(Events, "a warning is recorded once per slot until its step succeeds") {
  CHECK(events.warnOnce(pod, "app", "Failed", "Error: no such file"));
  CHECK_FALSE(events.warnOnce(pod, "app", "Failed", "Error: no such file"));
  CHECK(events.warnOnce(pod, "side", "Failed", "Error: no such file"));  // another container
  CHECK(events.warnOnce(pod, "", "FailedMount", "not ready", "#volumes"));
  CHECK_FALSE(events.warnOnce(pod, "", "FailedMount", "not ready", "#volumes"));
  CHECK(list().size() == 3);
  events.clearWarning(pod, "app");
  CHECK(events.warnOnce(pod, "app", "Failed", "Error: no such file"));
  CHECK(events.warnOnce(pod, "app", "Failed", "Error: another"));  // a new cause
  CHECK(list().size() == 5);
  CHECK(list().back().type == "Warning");
}

TEST_CASE_FIXTURE(Events, "an exit is recorded once per container: Completed for 0, else Exited") {
  events.noteExit(pod, "app", exited("c1", 0, "Completed"));
  events.noteExit(pod, "app", exited("c1", 0, "Completed"));
  events.noteExit(pod, "app", exited("c2", 3, "Error"));
  auto l = list();
  REQUIRE(l.size() == 2);
  CHECK(l[0].type == "Normal");
  CHECK(l[0].reason == "Completed");
  CHECK(l[0].count == 1);  // the second pass that saw it recorded nothing
  CHECK(l[0].message == "Container app exited with code 0 (Completed)");
  CHECK(l[1].type == "Warning");
  CHECK(l[1].reason == "Exited");
  CHECK(l[1].container == "app");
  CHECK(l[1].message == "Container app exited with code 3 (Error)");
}

TEST_CASE_FIXTURE(Events, "a forgotten pod has no info, and its warnings are new again") {
  CHECK_FALSE(events.info(pod).has_value());
  events.setPod(pod, "uid-web", "/state/pods/uid-web/logs");
  CHECK(events.uidOf(pod) == "uid-web");
  REQUIRE(events.info(pod).has_value());
  CHECK(events.info(pod)->logDirectory == "/state/pods/uid-web/logs");
  CHECK(events.warnOnce(pod, "app", "Failed", "x"));
  events.forget(pod);
  CHECK_FALSE(events.info(pod).has_value());
  CHECK(events.uidOf(pod).empty());
  CHECK(events.warnOnce(pod, "app", "Failed", "x"));
}

}  // namespace
}  // namespace outpost::test
