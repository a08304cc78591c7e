#pragma once
// The hollow runtime: an in-memory Runtime for testing a control plane or a broker with many real
// agents on one machine (docs/hollow-nodes.md). Sandboxes and containers exist only as entries in
// maps; their states follow the clock (created -> running after the start latency -> exited when
// their image's tag says so), computed when the reconciler looks. No thread, no timer, no process.
// Only agent/ (and tests) include this header.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "outpost/core/clock.h"
#include "outpost/core/status.h"
#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

// The scheme of `runtime.endpoint` that selects the hollow runtime.
inline constexpr std::string_view kHollowScheme = "hollow://";
// The node label a hollow node reports, so it is never taken for a real one.
inline constexpr std::string_view kHollowLabel = "outpost.io/hollow";

struct HollowOptions {
  // From StartContainer until the container reports Running (before that: Created).
  std::chrono::milliseconds startLatency{0};
};

bool isHollowEndpoint(std::string_view endpoint);

// Parses "hollow://" with an optional query: "hollow://?start_latency=250ms". Durations are a
// whole number with ms, s or m. Anything else (a host or path, an unknown or repeated parameter,
// a bad duration) is an error naming it.
core::Result<HollowOptions> parseHollowEndpoint(std::string_view endpoint);

// What an image's tag stages on a hollow node. The tag (after the last ':' past the last '/',
// without a "@digest") is an ordinary one unless it starts with "pull-" or "exits-":
//   pull-fails                       the pull fails and the image is never present
//   exits-<code>                     the container exits with <code> (0-255) as soon as it runs
//   exits-<code>-after-<n><unit>     ... after running <n> ms, s or m (n <= 86400 of its unit)
// Other tags with these prefixes are refused, so a typo does not stage nothing.
struct HollowImage {
  bool pullFails = false;
  std::optional<int32_t> exitCode;
  std::chrono::milliseconds exitAfter{0};
};
core::Result<HollowImage> parseHollowImage(std::string_view image);

// The hollow runtime; `clock` must outlive it.
RuntimePtr makeHollowRuntime(const HollowOptions& options, core::Clock& clock);

}  // namespace outpost::deploy
