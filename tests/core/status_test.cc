#include "outpost/core/status.h"

#include <doctest/doctest.h>

using namespace outpost::core;

namespace {
Result<int> parsePositive(int v) {
  if (v <= 0) return invalidArgument("must be positive, got " + std::to_string(v));
  return v;
}

Result<int> doubled(int v) {
  OUTPOST_ASSIGN_OR_RETURN(int x, parsePositive(v));
  return x * 2;
}

Status check(int v) {
  OUTPOST_RETURN_IF_ERROR(parsePositive(v));
  return okStatus();
}
}  // namespace

TEST_CASE("a Result holds either a value or the error that explains its absence") {
  auto good = parsePositive(3);
  REQUIRE(good.isOk());
  CHECK(*good == 3);
  CHECK(good.status().isOk());

  auto bad = parsePositive(-1);
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(bad.status().toString() == "INVALID_ARGUMENT: must be positive, got -1");
  CHECK(bad.valueOr(7) == 7);
}

TEST_CASE("errors propagate through the return-if-error helpers unchanged") {
  CHECK(*doubled(4) == 8);
  CHECK(doubled(0).status().code() == Code::kInvalidArgument);
  CHECK(check(1).isOk());
  CHECK(check(-2).message() == "must be positive, got -2");
}

TEST_CASE("context is prefixed to an error message and the code kept") {
  Status s = resourceExhausted("disk full").withContext("storing pod default/web");
  CHECK(s.code() == Code::kResourceExhausted);
  CHECK(s.toString() == "RESOURCE_EXHAUSTED: storing pod default/web: disk full");
  CHECK(okStatus().withContext("x").isOk());
}

TEST_CASE("code names follow gRPC's canonical names") {
  CHECK(codeName(Code::kUnavailable) == "UNAVAILABLE");
  CHECK(codeName(Code::kDeadlineExceeded) == "DEADLINE_EXCEEDED");
  CHECK(static_cast<int>(Code::kUnauthenticated) == 16);
}
