#pragma once
// The upgrade helper: carries out a plan (upgrader.h) in a process that outlives the agent
// (`outpostd --upgrade-helper DIR`, launched by SystemInstaller). In order: stop the agent, copy
// its store aside, install the package (dpkg -i or rpm -U, an argument vector, never a shell),
// start the agent, wait up to the plan's health timeout for the new agent's `healthy` file; when
// it does not come (or the install failed): stop the agent, put the store copy back, reinstall the
// previous package, write the outcome "rolled back" with the reason and start the agent again.
// Containers are never touched: the agent's stop leaves them running.
//
// Starting the agent: with systemd, `systemctl start outpost`. Without it the supervisor restarts
// the agent whenever it exits; the helper writes `ready` in the upgrade directory once the agent
// may run, and an agent that starts during an upgrade waits for it first (waitForHelper). Before it
// writes `ready`, it stops an agent that waits (it may be the binary of before the install), so the
// agent that opens the store is the installed one.

#include <chrono>
#include <filesystem>
#include <string>

#include "outpost/core/status.h"
#include "outpost/upgrade/upgrader.h"

namespace outpost::upgrade {

struct HelperOptions {
  std::filesystem::path dir;    // the upgrade directory: plan.json, healthy, outcome.json, ...
  std::filesystem::path store;  // the agent's SQLite file (its -wal and -shm go with it)
  bool systemd = false;         // stop and start the agent with systemctl (unit `unit`)
  std::string unit = "outpost.service";
  // Programs, by absolute path (tests put stand-ins here).
  std::string dpkg = "/usr/bin/dpkg", rpm = "/usr/bin/rpm", systemctl = "/usr/bin/systemctl";
  std::chrono::milliseconds stopTimeout{std::chrono::seconds(30)};
  // Without systemd, a pid is signalled only while its /proc/<pid>/comm is this (a pid recorded
  // earlier may have been reused by another program since).
  std::string agentName = "outpostd";
};

// Carries out <dir>/plan.json and writes <dir>/outcome.json; returns that outcome. An error when
// there is no readable plan (nothing was done).
core::Result<Outcome> runHelper(const HelperOptions& options);

// For an agent starting up: when an upgrade is in progress (plan.json) and its helper runs but has
// not written `ready`, waits until it has (or the helper is gone, or `timeout`); records this
// agent's pid in <dir>/agent.pid for the helper. Returns at once when no upgrade is in progress.
void waitForHelper(const std::filesystem::path& dir, std::chrono::milliseconds timeout);

// Whether the helper of the upgrade in `dir` still runs: the pid in <dir>/helper.pid is a live
// process named `name` (the helper binary's file name, as /proc/<pid>/comm has it) other than this
// one. After a power cut the pid may belong to anything, this agent included: hence the checks.
bool helperRunning(const std::filesystem::path& dir, const std::string& name);

}  // namespace outpost::upgrade
