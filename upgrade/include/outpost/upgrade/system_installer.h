#pragma once
// The Installer of a real machine: dpkg or rpm for the installed version and the platform, and the
// helper (`outpostd --upgrade-helper`) launched as a transient systemd unit when systemd runs, so
// stopping outpost.service does not stop it; otherwise as a detached process (double fork,
// setsid). Programs are run by absolute path with an argument vector.

#include <filesystem>
#include <string>

#include "outpost/core/status.h"
#include "outpost/upgrade/upgrader.h"

namespace outpost::upgrade {

struct SystemInstallerOptions {
  std::filesystem::path helper;  // the outpostd binary (resolved at start, before any upgrade)
  std::filesystem::path store;   // the agent's SQLite file, for the helper's copy
  std::string packageName = "outpost";
};

// Finds dpkg (preferred) or rpm; UNAVAILABLE when neither is there.
core::Result<std::unique_ptr<Installer>> makeSystemInstaller(SystemInstallerOptions options);

// True when systemd is the init system (/run/systemd/system exists).
bool systemdRuns();

}  // namespace outpost::upgrade
