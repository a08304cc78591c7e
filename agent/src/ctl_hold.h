#pragma once
// outpostctl hold / release (docs/rollouts.md, "On the node"): someone on site defers a node's pod
// updates, or lets them through now, over the agent's control socket.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace outpost::agent {

struct HoldOptions {
  std::string socket;
  std::vector<std::string> pods;  // "<name>" or "<ns>/<name>"; none: every pod
  std::string until;              // hold: RFC 3339 UTC ("...Z") or node local "YYYY-MM-DDTHH:MM"
  std::string forDuration;        // hold: e.g. 30m, 2h, 1d12h
};

int cmdHold(const HoldOptions& o);
// RFC 3339 UTC "YYYY-MM-DDTHH:MM[:SS]Z", or node local "YYYY-MM-DDTHH:MM[:SS]" -> unix ms; nullopt
// when it is neither.
std::optional<int64_t> timeMillis(const std::string& text);
int cmdRelease(const HoldOptions& o);
// The "holds" of /v1/status as `outpostctl status` prints them (nothing when there are none).
void printHolds(const nlohmann::json& holds);

}  // namespace outpost::agent
