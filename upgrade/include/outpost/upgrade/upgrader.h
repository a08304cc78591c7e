#pragma once
// Upgrader: the node's side of an in-band agent upgrade. It reacts to the desired AgentUpgrade,
// downloads and verifies the package (and the running version's, for a rollback), then hands over
// to the helper that outlives the agent (helper.h), and reports each phase. What the helper and
// the agents across the restart share lives in files under <state_dir>/upgrade/ (layout below):
// the store itself is snapshotted and may be restored, so it cannot hold the outcome.
//
//   packages/<version>_<arch>.<format>   downloaded (".part" while incomplete), verified
//   kept/<version>_<arch>.<format>       the package of the installed version: what a rollback
//                                        reinstalls (each installed package is kept here)
//   plan.json                            the upgrade handed to the helper (Plan)
//   healthy                              the new agent's proof: its version, written once healthy
//   outcome.json                         how the last upgrade ended (Outcome), by the helper

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/status.h"
#include "outpost/upgrade/download.h"
#include "outpost/upgrade/verify.h"

namespace outpost::upgrade {

// What a node reports of an upgrade.
enum class Phase {
  kDownloading,
  kVerifying,
  kInstalling,
  kRestarting,
  kHealthy,
  kRolledBack,
  kFailed
};
// "downloading", "verifying", "installing", "restarting", "healthy", "rolled back", "failed".
std::string_view phaseName(Phase phase);
std::optional<Phase> parsePhase(std::string_view name);

struct UpgradeStatus {
  Phase phase = Phase::kDownloading;
  std::string version;            // the version the AgentUpgrade asks for
  uint64_t bytes = 0;             // downloading: bytes in the file so far
  std::optional<uint64_t> total;  // downloading: the package's size when the server said it
  std::string reason;             // failed, rolled back: why
  // {"phase":"downloading","version":"0.2.0-1","bytes":1024,"total":4096} ("reason" when set).
  std::string toJson() const;
};

// This machine's package format ("deb", "rpm") and architecture as the format names it.
struct Platform {
  std::string format, arch;
};

// The upgrade the helper carries out (plan.json). Paths are the upgrade directory's own.
struct Plan {
  std::string key;              // "<ns>/agentupgrade/<name>"
  std::string version;          // to install
  std::string sha256;           // of the package: with key and version, names the attempt
  std::string package;          // its file
  std::string previousVersion;  // installed now
  std::string previousPackage;  // its file under kept/, reinstalled on a rollback
  std::chrono::seconds healthTimeout{120};
  int agentPid = 0;  // the agent that launched the helper (no systemd: the helper stops it)
  std::string toJson() const;
  static core::Result<Plan> fromJson(std::string_view text);
};

// How the last upgrade ended (outcome.json), written by the helper.
struct Outcome {
  std::string key, version, sha256;
  Phase phase = Phase::kFailed;  // kHealthy, kRolledBack or kFailed
  std::string reason;
  std::string toJson() const;
  static core::Result<Outcome> fromJson(std::string_view text);
};

// The machine's package manager and the helper, as the upgrade needs them.
class Installer {
 public:
  virtual ~Installer() = default;
  virtual Platform platform() = 0;
  // The installed agent package's version ("0.1.0-1"), as dpkg or rpm reports it.
  virtual core::Result<std::string> installedVersion() = 0;
  // Starts the helper on `planFile` in a process that outlives the agent; returns once started.
  virtual core::Status launch(const std::filesystem::path& planFile) = 0;
  // Whether a helper launched on a plan in `dir` (by this agent or one before it) still runs. An
  // agent that starts with a plan whose helper is gone (a power cut mid-upgrade) reports the
  // attempt cut off instead of waiting for an outcome that will not come.
  virtual bool helperRunning(const std::filesystem::path& dir) = 0;
};

// Where the upgrade's status goes (the outbox, as kind "agentupgradestatus"); called on the
// upgrader's loop.
class StatusSink {
 public:
  virtual ~StatusSink() = default;
  virtual void upgradeStatus(const std::string& key, const UpgradeStatus& status) = 0;
};

struct UpgraderOptions {
  std::filesystem::path dir;  // <state_dir>/upgrade
  TrustedKeys keys;
  DownloadOptions download;  // maxBytes, ioTimeout, caFile (progress and cancel are the upgrader's)
  std::chrono::seconds healthTimeout{120};
  int agentPid = 0;
  // A download the network cut short (UNAVAILABLE) is tried again after this, doubling to the cap;
  // it resumes where it stopped.
  std::chrono::milliseconds retryBase{std::chrono::seconds(30)};
  std::chrono::milliseconds retryCap{std::chrono::minutes(10)};
};

class Upgrader {
 public:
  Upgrader(UpgraderOptions options, Installer& installer, StatusSink& sink, core::Clock& clock,
           core::Logger log);
  ~Upgrader();
  Upgrader(const Upgrader&) = delete;
  Upgrader& operator=(const Upgrader&) = delete;

  // Starts the upgrader's loop; reports how an earlier upgrade ended, or that one is restarting.
  void start();
  // Cancels a download and joins the loop. Idempotent.
  void stop();
  // A desired AgentUpgrade at `key` changed (`json`), or was deleted (nullopt). Any thread.
  void onDesired(std::string key, std::optional<std::string> json);
  // This agent is healthy (store opened, runtime reachable, link up when the network is): the
  // helper waiting on an upgrade is told so. Any thread; nothing happens without one pending.
  void healthy();
  // An upgrade waits for this agent's proof of health (plan.json there, `healthy` not yet
  // written). Any thread.
  bool awaitingHealth() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::upgrade
