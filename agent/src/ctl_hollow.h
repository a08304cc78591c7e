#pragma once
// outpostctl hollow clock (docs/hollow-nodes.md): a hollow node's simulated time, over the agent's
// control socket.

#include <CLI/CLI.hpp>
#include <string>

namespace outpost::agent {

struct HollowFlags {
  std::string socket;
  std::string time;  // clock set: RFC 3339 UTC ("...Z") or node local "YYYY-MM-DDTHH:MM[:SS]"
};

// Adds `hollow` and its subcommands to `app`; returns it.
CLI::App* addHollowCommand(CLI::App& app, HollowFlags& flags);
// Runs the subcommand that was parsed; returns the exit code.
int runHollowCommand(CLI::App& hollow, const HollowFlags& flags);

}  // namespace outpost::agent
