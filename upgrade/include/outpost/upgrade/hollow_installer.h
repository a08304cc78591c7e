#pragma once
// The Installer of a hollow node (docs/hollow-nodes.md): the download and verification are the
// real ones, the install and the restart are simulated. No package manager runs and the agent
// process keeps running: the "installed version" is a file in the upgrade directory, and a helper
// thread plays the helper's part (install, wait for the agent's `healthy` file, keep the package,
// or roll back) and writes outcome.json like the real helper. Only agent/ picks it, and only for
// a hollow runtime (runtime.endpoint hollow://); nothing else can select it.
//
// Staging a failure, by the version the AgentUpgrade names (as image tags do on a hollow node):
//   a version that contains "unhealthy"       the new agent never proves itself: rolled back
//                                             once upgrade.health_timeout has passed
//   a version that contains "install-fails"   the install fails at once: rolled back

#include <filesystem>
#include <memory>
#include <string>

#include "outpost/upgrade/upgrader.h"

namespace outpost::upgrade {

struct HollowInstallerOptions {
  std::filesystem::path dir;  // <state_dir>/upgrade, as UpgraderOptions::dir
  std::string version;        // installed before any simulated upgrade ("<agent version>-1")
};

// The simulated installer; its helper thread stops (leaving plan.json) when it is destroyed.
std::unique_ptr<Installer> makeHollowInstaller(HollowInstallerOptions options);

}  // namespace outpost::upgrade
