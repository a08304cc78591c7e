#pragma once
// outpostctl rollout: start, status, pause, resume, abort, undo (docs/rollouts.md).

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace outpost::agent {

struct RolloutFlags {
  std::string config;  // the agent's configuration: broker, prefix and TLS files by default
  std::string broker, prefix, ca, cert, key;
  std::string file;  // start -f
  std::string name;  // the rollout
  std::string output = "table";
  int leaseSeconds = 15;
  double stepSeconds = 0.2;
};

// Adds `rollout` and its subcommands to `app`; returns it.
CLI::App* addRolloutCommand(CLI::App& app, RolloutFlags& flags);
// Runs the subcommand that was parsed; returns the exit code.
int runRolloutCommand(CLI::App& rollout, RolloutFlags& flags);

}  // namespace outpost::agent
