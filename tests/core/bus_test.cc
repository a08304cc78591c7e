#include "outpost/core/bus.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "support/test_util.h"

using namespace outpost::core;
using outpost::test::waitFor;

namespace {
struct KeysChanged {
  std::vector<std::string> keys;
};
constexpr Topic<KeysChanged> kKeys{"test.keys_changed"};
constexpr Topic<int> kNumbers{"test.numbers"};
}  // namespace

TEST_CASE("a published message reaches each subscriber on the subscriber's own loop, as a copy") {
  SystemClock clock;
  EventLoop a("a", clock), b("b", clock);
  a.start();
  b.start();
  Bus bus;
  std::mutex mu;
  std::vector<std::string> onA, onB;
  std::atomic<bool> wrongThread{false};
  auto subA = bus.subscribe(kKeys, a, [&](const KeysChanged& m) {
    if (!a.isInLoopThread()) wrongThread = true;
    std::lock_guard l(mu);
    onA = m.keys;
  });
  auto subB = bus.subscribe(kKeys, b, [&](const KeysChanged& m) {
    if (!b.isInLoopThread()) wrongThread = true;
    std::lock_guard l(mu);
    onB = m.keys;
  });
  KeysChanged msg{{"default/pod/web"}};
  bus.publish(kKeys, msg);
  msg.keys.push_back("changed after publish");  // subscribers must not see this
  REQUIRE(a.runSync([] {}));
  REQUIRE(b.runSync([] {}));
  std::lock_guard l(mu);
  CHECK(onA == std::vector<std::string>{"default/pod/web"});
  CHECK(onB == std::vector<std::string>{"default/pod/web"});
  CHECK_FALSE(wrongThread);
}

TEST_CASE("topics are separate and an ended subscription receives nothing more") {
  SystemClock clock;
  EventLoop loop("l", clock);
  loop.start();
  Bus bus;
  std::atomic<int> sum{0};
  std::atomic<int> keyMsgs{0};
  auto subNum = bus.subscribe(kNumbers, loop, [&](const int& v) { sum += v; });
  auto subKeys = bus.subscribe(kKeys, loop, [&](const KeysChanged&) { ++keyMsgs; });
  bus.publish(kNumbers, 2);
  bus.publish(kNumbers, 3);
  REQUIRE(waitFor([&] { return sum == 5; }));
  CHECK(keyMsgs == 0);
  subNum.reset();
  bus.publish(kNumbers, 100);
  REQUIRE(loop.runSync([] {}));
  CHECK(sum == 5);
}

TEST_CASE("publishing with no subscriber is harmless") {
  Bus bus;
  bus.publish(kNumbers, 1);
  CHECK(true);
}
