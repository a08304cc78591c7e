// A hollow node's simulated time over the local API: set, read, refused on a real runtime.

#include "hollow_api.h"

#include <nlohmann/json.hpp>

#include "api_answers.h"

namespace outpost::agent {
namespace {

using nlohmann::json;

ApiResponse notHollow() {
  return errorAnswer(
      409,
      "only a hollow node has a simulated clock (runtime.endpoint hollow://, "
      "docs/hollow-nodes.md): this node runs real containers and keeps the host's clock");
}

}  // namespace

ApiResponse getHollowClock(DeployModule& deploy) {
  core::OffsetClock* clock = deploy.hollowClock();
  if (!clock) return notHollow();
  return jsonAnswer(
      200, json{{"time", core::formatRfc3339(clock->wallNow())},
                {"offsetSeconds",
                 std::chrono::duration_cast<std::chrono::seconds>(clock->wallOffset()).count()}});
}

ApiResponse postHollowClock(DeployModule& deploy, const ApiRequest& req, const core::Logger& log) {
  core::OffsetClock* clock = deploy.hollowClock();
  if (!clock) return notHollow();
  json body = json::parse(req.body, nullptr, false);
  if (!body.is_object() || !body.contains("time"))
    return errorAnswer(400, "bad request: the body must be {\"time\": <unix ms> | null}");
  const json& t = body["time"];
  if (t.is_null()) {
    clock->setWallOffset(core::Duration::zero());
    log.warn("hollow clock: the host's time again");
    return getHollowClock(deploy);
  }
  // From 1970 to the year 9999: a time the C library can print.
  constexpr int64_t kMaxMillis = 253402300799000;
  if (!t.is_number_integer() || t.get<int64_t>() <= 0 || t.get<int64_t>() > kMaxMillis)
    return errorAnswer(400, "bad request: time: unix milliseconds after 1970 and before 10000");
  core::WallTime at{std::chrono::milliseconds(t.get<int64_t>())};
  // The offset from the host's clock: the simulated time passes at the host's pace from here.
  core::Duration offset = at - (clock->wallNow() - clock->wallOffset());
  clock->setWallOffset(offset);
  log.warn("hollow clock set: the node's time is ", core::formatRfc3339(at), " (",
           std::chrono::duration_cast<std::chrono::seconds>(offset).count(),
           " s from the host's clock)");
  return getHollowClock(deploy);
}

}  // namespace outpost::agent
