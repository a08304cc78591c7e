// OUTPOST_CHECK holds in every build type: a false invariant writes one line naming where and why,
// then aborts (so systemd restarts the agent), instead of going on in a state nobody designed for.

#include "outpost/core/check.h"

#include <doctest/doctest.h>

#include <csignal>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/status.h"
#include "support/test_util.h"

namespace outpost::core {
namespace {

TEST_CASE("a false check aborts with file, line, condition and message on stderr") {
  auto end = test::runInChild([&] {
    int topics = 3;
    OUTPOST_CHECK(topics == 2, "expected two topics, got ", topics);
  });
  CHECK(end.signal == SIGABRT);
  CHECK(end.err.find("check failed at ") != std::string::npos);
  CHECK(end.err.find("check_test.cc:") != std::string::npos);
  CHECK(end.err.find("topics == 2: expected two topics, got 3\n") != std::string::npos);
}

TEST_CASE("a true check does nothing and does not evaluate its message") {
  int calls = 0;
  OUTPOST_CHECK(calls == 0, "message ", ++calls);
  CHECK(calls == 0);
}

TEST_CASE("a check's message cannot forge a log line") {
  auto end = test::runInChild([] { OUTPOST_CHECK(false, "bad\nforged line"); });
  CHECK(end.signal == SIGABRT);
  CHECK(end.err.find("bad\\nforged line\n") != std::string::npos);
}

TEST_CASE("value() of a Result holding an error aborts with the error, in every build type") {
  auto end = test::runInChild([] {
    Result<int> r = notFound("no such pod");
    int v = r.value();
    (void)v;
  });
  CHECK(end.signal == SIGABRT);
  CHECK(end.err.find("value() of a Result holding NOT_FOUND: no such pod") != std::string::npos);
}

TEST_CASE("a Result built from an OK status aborts") {
  auto end = test::runInChild([] { Result<int> r = Status::ok(); });
  CHECK(end.signal == SIGABRT);
  CHECK(end.err.find("a Result built from a Status must hold an error") != std::string::npos);
}

TEST_CASE("runEvery with a period of zero aborts instead of spinning") {
  auto end = test::runInChild([] {
    SystemClock clock;
    EventLoop loop("check-test", clock);
    loop.runEvery(Duration::zero(), [] {});
  });
  CHECK(end.signal == SIGABRT);
  CHECK(end.err.find("runEvery needs a positive period") != std::string::npos);
}

}  // namespace
}  // namespace outpost::core
