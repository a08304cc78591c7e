// outpostctl hollow clock [set TIME | reset]: GET and POST /v1/hollow/clock.

#include "ctl_hollow.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "ctl_hold.h"
#include "ctl_inspect.h"
#include "outpost/agent/api_server.h"
#include "outpost/agent/exit_codes.h"

namespace outpost::agent {
namespace {

using nlohmann::json;

int call(const HollowFlags& f, const std::string& method, const std::string& body) {
  json answer;
  if (int rc = callAgent(f.socket, method, "/v1/hollow/clock", body, answer); rc != kExitOk)
    return rc;
  if (!answer.is_object()) {
    std::cerr << "outpostctl: the agent's answer is not an object\n";
    return kExitFailure;
  }
  std::cout << "Time:     " << answer.value("time", "") << " (" << answer.value("offsetSeconds", 0)
            << " s from the host's clock)\n";
  return kExitOk;
}

}  // namespace

CLI::App* addHollowCommand(CLI::App& app, HollowFlags& flags) {
  auto* hollow = app.add_subcommand("hollow", "a hollow node's simulation (docs/hollow-nodes.md)");
  hollow->require_subcommand(1);
  auto* clock = hollow->add_subcommand(
      "clock", "show a hollow node's simulated time, or move it (its maintenance windows follow)");
  clock->require_subcommand(0, 1);
  auto* set = clock->add_subcommand("set", "the node's time from now on");
  set->add_option("time", flags.time,
                  "TIME: 2026-05-01T06:00:00Z (UTC) or 2026-05-01T06:00 (node local time)")
      ->required();
  clock->add_subcommand("reset", "the host's time again");
  clock->footer(
      "\nExamples:\n"
      "  outpostctl hollow clock                            the node's time\n"
      "  outpostctl hollow clock set 2026-12-07T22:30:00Z   the node's windows see that time\n"
      "  outpostctl hollow clock reset\n"
      "Only on a hollow node (runtime.endpoint hollow://); any other node refuses (exit 1).");
  return hollow;
}

int runHollowCommand(CLI::App& hollow, const HollowFlags& flags) {
  CLI::App* clock = hollow.get_subcommand("clock");
  if (clock->get_subcommand("set")->parsed()) {
    auto ms = timeMillis(flags.time);
    if (!ms) {
      std::cerr << "outpostctl: \"" << flags.time
                << "\" is not a time: 2026-05-01T06:00:00Z (UTC) or 2026-05-01T06:00 (local)\n";
      return kExitUsage;
    }
    return call(flags, "POST", json{{"time", *ms}}.dump());
  }
  if (clock->get_subcommand("reset")->parsed())
    return call(flags, "POST", json{{"time", nullptr}}.dump());
  return call(flags, "GET", "");
}

}  // namespace outpost::agent
