// The image puller alone (ImagePuller, RetryBackoffs) on the fake runtime and a manual clock: when
// it pulls, how its back-off grows and resets, what it reports of a failed pull.

#include "image_puller.h"

#include <doctest/doctest.h>

#include "outpost/core/clock.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

struct Puller {
  Puller() { runtime.addImage("img:1"); }
  deploy::ContainerSpec spec(const std::string& image,
                             deploy::PullPolicy policy = deploy::PullPolicy::kIfNotPresent) {
    deploy::ContainerSpec s;
    s.name = "app";
    s.image = image;
    s.pullPolicy = policy;
    return s;
  }
  deploy::ImageOutcome image(const deploy::ContainerSpec& s) {
    return puller.containerImage(pod, pulls, s, clock.now());
  }
  std::vector<deploy::PodEvent> eventList() {
    auto info = events.info(pod);
    return info ? info->events : std::vector<deploy::PodEvent>{};
  }

  FakeRuntime runtime;
  core::ManualClock clock;
  deploy::PodEvents events{clock, nullptr};
  uint64_t pulled = 0;
  deploy::ImagePuller puller{runtime, events, core::Logger(), {10s, 40s}, pulled};
  deploy::RetryBackoffs pulls;
  const std::string pod = "default/pod/web";
};

TEST_CASE("a retry back-off doubles to its cap while the cause stays, and a new cause resets it") {
  deploy::RetryBackoffs b;
  core::MonoTime t{};
  CHECK(b.heldBack("app", "img:2", t) == nullptr);
  CHECK(b.failedAgain("app", "img:2", "no network", 10s, 40s, t));  // an episode begins
  for (auto expected : {20s, 40s, 40s}) {
    CHECK_FALSE(b.failedAgain("app", "img:2", "no network", 10s, 40s, t));
    CHECK(b.find("app")->delay == expected);
  }
  REQUIRE(b.heldBack("app", "img:2", t + 39s) != nullptr);
  CHECK(b.heldBack("app", "img:2", t + 39s)->message == "no network");
  CHECK(b.heldBack("app", "img:2", t + 40s) == nullptr);
  CHECK(b.heldBack("app", "img:3", t) == nullptr);  // another image: a new episode
  CHECK(b.find("app") == nullptr);
  CHECK(b.failedAgain("app", "img:3", "no network", 10s, 40s, t));
  CHECK(b.find("app")->delay == 10s);
  b.succeeded("app");
  CHECK(b.failedAgain("app", "img:3", "no network", 10s, 40s, t));
  CHECK(b.find("app")->delay == 10s);
}

TEST_CASE_FIXTURE(Puller, "a present image is used without a pull") {
  auto r = image(spec("img:1"));
  CHECK(r.ready);
  CHECK_FALSE(r.wakeAt.has_value());
  CHECK(runtime.calls("PullImage") == 0);
}

TEST_CASE_FIXTURE(Puller, "a failed pull is reported with the runtime's reason and backs off") {
  auto r = image(spec("img:2"));
  CHECK_FALSE(r.ready);
  CHECK(r.reason == "ErrImagePull");
  CHECK(r.message == "PullImage: failed to resolve img:2: no network");
  REQUIRE(r.wakeAt.has_value());
  CHECK(*r.wakeAt == clock.now() + 10s);
  auto e = eventList();
  REQUIRE(e.size() == 1);
  CHECK(e[0].type == "Warning");
  CHECK(e[0].reason == "Failed");
  CHECK(e[0].container == "app");
  CHECK(e[0].message ==
        "Failed to pull image \"img:2\": PullImage: failed to resolve img:2: no network; next "
        "attempt in 10 s");
  CHECK(pulled == 0);
}

TEST_CASE_FIXTURE(Puller, "the back-off grows 10, 20, 40 s to the cap; no pull while it holds") {
  size_t pullsMade = 0;
  for (auto wait : {10s, 20s, 40s, 40s}) {
    auto r = image(spec("img:2"));
    ++pullsMade;
    CHECK(r.reason == "ErrImagePull");
    clock.advance(wait - 1s);
    r = image(spec("img:2"));
    CHECK(r.reason == "ImagePullBackOff");
    CHECK(r.message.find("Back-off pulling image \"img:2\": ") == 0);
    CHECK(runtime.calls("PullImage") == pullsMade);
    clock.advance(1s);
  }
}

TEST_CASE_FIXTURE(Puller,
                  "a pull that succeeds resets the back-off; so does an image that appears") {
  image(spec("img:2"));
  clock.advance(10s);
  image(spec("img:2"));  // 20 s now
  clock.advance(20s);
  runtime.setPullable("img:2");
  CHECK(image(spec("img:2")).ready);
  CHECK(pulled == 1);
  CHECK(eventList().back().message == "Successfully pulled image \"img:2\"");
  CHECK(pulls.find("app") == nullptr);

  image(spec("img:3"));
  clock.advance(5s);
  runtime.addImage("img:3");  // imported while backing off: used at once, no pull
  auto r = image(spec("img:3"));
  CHECK(r.ready);
  CHECK(eventList().back().message == "Container image \"img:3\" is present now");
  CHECK(pulls.find("app") == nullptr);
  CHECK(runtime.calls("PullImage") == 4);  // none after the image appeared
}

TEST_CASE_FIXTURE(Puller, "Always pulls every time, and uses the local copy when the pull fails") {
  auto r = image(spec("img:1", deploy::PullPolicy::kAlways));
  CHECK(r.ready);
  CHECK(runtime.calls("PullImage") == 1);
  CHECK(pulls.find("app") == nullptr);
}

TEST_CASE_FIXTURE(Puller, "Never with an absent image waits, warns once and never pulls") {
  for (int i = 0; i < 3; ++i) {
    auto r = image(spec("img:2", deploy::PullPolicy::kNever));
    CHECK_FALSE(r.ready);
    CHECK(r.reason == "ErrImageNeverPull");
    CHECK(r.message == "Container image \"img:2\" is not present with pull policy of Never");
  }
  CHECK(runtime.calls("PullImage") == 0);
  CHECK(eventList().size() == 1);
}

TEST_CASE_FIXTURE(Puller, "the sandbox image is pulled only when absent") {
  CHECK(puller.ensurePresent("img:1").isOk());
  CHECK(runtime.calls("PullImage") == 0);
  CHECK_FALSE(puller.ensurePresent("pause:1").isOk());
  runtime.setPullable("pause:1");
  CHECK(puller.ensurePresent("pause:1").isOk());
  CHECK(puller.ensurePresent("pause:1").isOk());
  CHECK(runtime.calls("PullImage") == 2);
  CHECK(pulled == 1);
}

}  // namespace
}  // namespace outpost::test
