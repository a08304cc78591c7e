// OffsetClock: a hollow node's simulated calendar over another clock.
#include "outpost/core/clock.h"

#include <doctest/doctest.h>

namespace outpost::core {
namespace {

using namespace std::chrono_literals;

TEST_CASE("an offset clock moves the wall time by its offset, and only the wall time") {
  ManualClock base;
  OffsetClock clock(base);
  CHECK(clock.wallNow() == base.wallNow());
  CHECK(clock.now() == base.now());

  clock.setWallOffset(72h);
  CHECK(clock.wallNow() == base.wallNow() + 72h);
  CHECK(clock.now() == base.now());
  CHECK(clock.wallOffset() == 72h);

  base.advance(5s);  // time passes for both
  CHECK(clock.wallNow() == base.wallNow() + 72h);
  CHECK(clock.now() == base.now());

  clock.setWallOffset(-1h);  // set back, like a host's clock
  CHECK(clock.wallNow() == base.wallNow() - 1h);
  clock.setWallOffset(Duration::zero());
  CHECK(clock.wallNow() == base.wallNow());
}

TEST_CASE("an offset clock hands its watchers to the clock it is based on") {
  ManualClock base;
  OffsetClock clock(base);
  int woken = 0;
  int token = clock.watch([&] { ++woken; });
  base.advance(1s);
  CHECK(woken == 1);
  clock.unwatch(token);
  base.advance(1s);
  CHECK(woken == 1);
}

TEST_CASE("formatRfc3339: UTC, whole seconds or cut to 3, 6 or 9 digits, also before 1970") {
  using namespace std::chrono;
  // 2026-12-07T02:03:52.123456789Z
  WallTime t{duration_cast<WallTime::duration>(seconds(1796609032) + nanoseconds(123456789))};
  CHECK(formatRfc3339(t) == "2026-12-07T02:03:52Z");
  CHECK(formatRfc3339(t, 3) == "2026-12-07T02:03:52.123Z");
  CHECK(formatRfc3339(t, 6) == "2026-12-07T02:03:52.123456Z");
  CHECK(formatRfc3339(t, 9) == "2026-12-07T02:03:52.123456789Z");
  CHECK(formatRfc3339(t, 12) == "2026-12-07T02:03:52.123456789Z");
  CHECK(formatRfc3339(WallTime{}) == "1970-01-01T00:00:00Z");
  CHECK(formatRfc3339(WallTime{} - milliseconds(1), 3) == "1969-12-31T23:59:59.999Z");
}

}  // namespace
}  // namespace outpost::core
