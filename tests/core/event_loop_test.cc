#include "outpost/core/event_loop.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "outpost/core/backoff.h"
#include "support/test_util.h"

using namespace outpost::core;
using namespace std::chrono_literals;
using outpost::test::waitFor;

TEST_CASE("tasks posted to a loop run on its thread in the order they were posted") {
  SystemClock clock;
  EventLoop loop("test", clock);
  loop.start();
  std::vector<int> seen;
  std::atomic<bool> onLoop{true};
  for (int i = 0; i < 100; ++i) {
    loop.post([&, i] {
      if (!loop.isInLoopThread()) onLoop = false;
      seen.push_back(i);
    });
  }
  REQUIRE(loop.runSync([] {}));
  REQUIRE(seen.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(seen[static_cast<size_t>(i)] == i);
  CHECK(onLoop);
  CHECK_FALSE(loop.isInLoopThread());
}

TEST_CASE("tasks posted from many threads all run, each thread's tasks in order") {
  SystemClock clock;
  EventLoop loop("test", clock);
  loop.start();
  constexpr int kThreads = 4, kEach = 500;
  std::vector<std::vector<int>> perThread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i)
        loop.post([&, t, i] { perThread[static_cast<size_t>(t)].push_back(i); });
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(loop.runSync([] {}));
  for (const auto& v : perThread) {
    REQUIRE(v.size() == kEach);
    for (int i = 0; i < kEach; ++i) CHECK(v[static_cast<size_t>(i)] == i);
  }
}

TEST_CASE("timers on a manual clock fire only when the clock reaches them, in deadline order") {
  ManualClock clock;
  EventLoop loop("test", clock);
  loop.start();
  std::mutex mu;
  std::vector<std::string> fired;
  auto record = [&](std::string s) {
    std::lock_guard l(mu);
    fired.push_back(std::move(s));
  };
  loop.runAfter(30s, [&] { record("30s"); });
  loop.runAfter(10s, [&] { record("10s"); });
  TimerId cancelled = loop.runAfter(20s, [&] { record("20s"); });
  loop.cancel(cancelled);
  auto count = [&] {
    std::lock_guard l(mu);
    return fired.size();
  };

  REQUIRE(loop.runSync([] {}));
  CHECK(count() == 0);
  clock.advance(10s);
  REQUIRE(waitFor([&] { return count() == 1; }));
  clock.advance(19s);
  REQUIRE(loop.runSync([] {}));
  CHECK(count() == 1);  // 29 s: the 30 s timer has not fired, the cancelled one never will
  clock.advance(1s);
  REQUIRE(waitFor([&] { return count() == 2; }));
  std::lock_guard l(mu);
  CHECK(fired == std::vector<std::string>{"10s", "30s"});
}

TEST_CASE("a periodic timer fires once per period until cancelled") {
  ManualClock clock;
  EventLoop loop("test", clock);
  loop.start();
  std::atomic<int> ticks{0};
  TimerId id = loop.runEvery(5s, [&] { ++ticks; });
  for (int i = 1; i <= 3; ++i) {
    clock.advance(5s);
    REQUIRE(waitFor([&] { return ticks == i; }));
  }
  loop.cancel(id);
  clock.advance(50s);
  REQUIRE(loop.runSync([] {}));
  CHECK(ticks == 3);
}

TEST_CASE("a timer on the system clock fires after its delay") {
  SystemClock clock;
  EventLoop loop("test", clock);
  loop.start();
  std::atomic<bool> fired{false};
  auto start = std::chrono::steady_clock::now();
  loop.runAfter(20ms, [&] { fired = true; });
  REQUIRE(waitFor([&] { return fired.load(); }));
  CHECK(std::chrono::steady_clock::now() - start >= 20ms);
}

TEST_CASE("stopping a loop runs what was queued, joins, and drops later posts") {
  SystemClock clock;
  EventLoop loop("test", clock);
  std::atomic<int> ran{0};
  loop.post([&] { ++ran; });  // before start: kept until the loop runs
  loop.start();
  loop.post([&] { ++ran; });
  loop.stop();
  CHECK(ran == 2);
  loop.post([&] { ++ran; });
  loop.stop();  // idempotent
  CHECK(ran == 2);
  CHECK_FALSE(loop.runSync([] {}, 50ms));
}

TEST_CASE(
    "back-off waits are random within a ceiling that doubles up to the cap, and reset starts "
    "over") {
  outpost::core::Backoff b(std::chrono::milliseconds(100), std::chrono::milliseconds(1000), 42);
  std::vector<Duration> ceilings = {100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms};
  bool varied = false;
  Duration previous{};
  for (auto ceiling : ceilings) {
    Duration d = b.next();
    CHECK(d >= Duration::zero());
    CHECK(d <= ceiling);
    varied = varied || (previous != Duration::zero() && d != previous);
    previous = d;
  }
  CHECK(varied);  // full jitter: not the same wait every time
  CHECK(b.attempts() == 6);
  b.reset();
  CHECK(b.next() <= 100ms);
}
