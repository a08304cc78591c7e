// outpostctl hold / release: POST /v1/holds and /v1/holds/release on the agent's control socket.

#include "ctl_hold.h"

#include <ctime>
#include <iostream>

#include "ctl_inspect.h"
#include "outpost/agent/api_server.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/core/clock.h"

namespace outpost::agent {
namespace {

using nlohmann::json;

// "30m", "2h", "1d12h", "90s" -> seconds; nullopt when it is not one.
std::optional<int64_t> durationSeconds(const std::string& text) {
  int64_t total = 0;
  int64_t n = -1;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      n = (n < 0 ? 0 : n) * 10 + (c - '0');
      if (n > 100000000) return std::nullopt;
      continue;
    }
    int64_t unit = c == 's' ? 1 : c == 'm' ? 60 : c == 'h' ? 3600 : c == 'd' ? 86400 : 0;
    if (unit == 0 || n < 0) return std::nullopt;
    total += n * unit;
    n = -1;
  }
  if (n >= 0 || total <= 0) return std::nullopt;
  return total;
}

int call(const HoldOptions& o, const std::string& target, const json& body) {
  json answer;
  if (int rc = callAgent(o.socket, "POST", target, body.dump(), answer); rc != kExitOk) return rc;
  printHolds(answer);
  if (answer.value("holds", json::array()).empty() && answer.value("held", json::array()).empty())
    std::cout << "No holds; no update waits.\n";
  return kExitOk;
}

}  // namespace

std::optional<int64_t> timeMillis(const std::string& text) {
  std::string t = text;
  bool utc = !t.empty() && (t.back() == 'Z' || t.back() == 'z');
  if (utc) t.pop_back();
  std::tm tm{};
  const char* end = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || *end) {
    tm = std::tm{};
    end = strptime(t.c_str(), "%Y-%m-%dT%H:%M", &tm);
  }
  if (!end || *end) return std::nullopt;
  tm.tm_isdst = -1;
  std::time_t secs = utc ? timegm(&tm) : std::mktime(&tm);
  if (secs <= 0) return std::nullopt;
  return static_cast<int64_t>(secs) * 1000;
}

int cmdHold(const HoldOptions& o) {
  json body = {{"pods", o.pods}};
  if (!o.until.empty() && !o.forDuration.empty()) {
    std::cerr << "outpostctl: give --until or --for, not both\n";
    return kExitUsage;
  }
  if (!o.until.empty()) {
    auto ms = timeMillis(o.until);
    if (!ms) {
      std::cerr << "outpostctl: --until \"" << o.until
                << "\" is not a time: 2026-05-01T06:00:00Z (UTC) or 2026-05-01T06:00 (local)\n";
      return kExitUsage;
    }
    body["until"] = *ms;
  }
  if (!o.forDuration.empty()) {
    auto secs = durationSeconds(o.forDuration);
    if (!secs) {
      std::cerr << "outpostctl: --for \"" << o.forDuration
                << "\" is not a duration such as 30m, 2h or 1d12h\n";
      return kExitUsage;
    }
    body["until"] = core::toUnixMillis(std::chrono::system_clock::now()) + *secs * 1000;
  }
  return call(o, "/v1/holds", body);
}

int cmdRelease(const HoldOptions& o) { return call(o, "/v1/holds/release", {{"pods", o.pods}}); }

void printHolds(const json& h) {
  if (!h.is_object()) return;
  for (const auto& hold : h.value("holds", json::array())) {
    std::string pod = hold.value("pod", "");
    std::cout << "Hold:     " << (pod == "*" ? "every pod" : pod) << ", "
              << (hold.contains("until") ? "until " + hold.value("until", "")
                                         : std::string("until released"))
              << "\n";
  }
  for (const auto& u : h.value("held", json::array())) {
    std::cout << "Waiting:  " << u.value("pod", "") << " "
              << (u.value("deletion", false) ? "deletion"
                                             : "version " + u.value("runningVersion", "") + " -> " +
                                                   u.value("pendingVersion", ""))
              << " (" << u.value("reason", "")
              << (u.contains("heldUntil") ? " until " + u.value("heldUntil", "") : "") << ")\n";
  }
}

}  // namespace outpost::agent
