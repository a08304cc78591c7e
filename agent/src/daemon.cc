// outpostd: command line, configuration, signals, systemd notification, and the agent's run.

#include <malloc.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>

#include "outpost/agent/agent.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/metadb/sqlite_store.h"
#include "outpost/mqttc/client.h"
#include "outpost/upgrade/helper.h"
#include "systemd_notify.h"
#include "version.h"

namespace outpost::agent {

namespace {

// How long the modules get to stop (the store's last commit and close included) before outpostd
// gives up and exits 70. Below the unit's TimeoutStopSec (15 s) so our own exit code and log line
// come before systemd's SIGKILL; 1.5 s was too short when fifty agents on one slow disk stopped at
// once (each store's last fsync waited its turn).
constexpr auto kStopDeadline = std::chrono::seconds(10);

// glibc gives every thread that allocates its own arena (up to 8 per core), each keeping freed
// memory of its own: with a dozen mostly idle threads (ours, Paho's, the WebSocket connection's
// Asio thread) that is ~1 MB of private dirty memory for no throughput (docs/benchmarks.md,
// "Footprint"). Two arenas, unless the operator chose otherwise (MALLOC_ARENA_MAX or GLIBC_TUNABLES
// in the environment).
constexpr int kMallocArenas = 2;

void limitMallocArenas() {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr || std::getenv("GLIBC_TUNABLES") != nullptr)
    return;
  mallopt(M_ARENA_MAX, kMallocArenas);
}

void notify(const std::string& state) { notifySystemd(state); }

}  // namespace

int runDaemon(int argc, char** argv) {
  limitMallocArenas();                 // before any thread exists
  mqttc::leaveOpensslInitToOpenssl();  // before any thread or MQTT client exists
  CLI::App app{"outpostd: the Outpost edge node agent", "outpostd"};
  std::string configPath = "/etc/outpost/outpost.yaml";
  std::string logLevel;
  bool checkOnly = false;
  upgrade::HelperOptions helper;
  std::string helperDir;
  app.add_option("-c,--config", configPath, "configuration file")->capture_default_str();
  app.add_flag("--check-config", checkOnly,
               "validate the configuration, print every problem, and exit");
  app.add_option("--log-level", logLevel,
                 "override log.level (trace, debug, info, warn, error, critical)");
  // The upgrade helper (docs/operations.md, "In-band upgrade"): the agent launches it; not for
  // people to run.
  app.add_option("--upgrade-helper", helperDir, "(internal) carry out the upgrade planned in DIR")
      ->group("");
  app.add_option("--upgrade-store", helper.store, "(internal) the store file the helper copies")
      ->group("");
  app.add_flag("--upgrade-systemd", helper.systemd, "(internal) stop and start outpost.service")
      ->group("");
  // The second line is the store schema this agent writes: an older agent refuses a newer one.
  app.set_version_flag("--version", std::string("outpostd ") + OUTPOST_VERSION + "\nstore schema " +
                                        std::to_string(metadb::storeSchemaVersion()));
  app.footer(
      "Exit codes: 0 stopped cleanly, 64 bad command line, 69 a module could not start,\n"
      "70 stop deadline exceeded, 78 invalid configuration (not restarted by systemd).\n"
      "Every key can be overridden by OUTPOST_<SECTION>_<KEY>, e.g. OUTPOST_LOG_LEVEL=debug.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (!helperDir.empty()) {
    helper.dir = helperDir;
    auto outcome = upgrade::runHelper(helper);
    if (!outcome.isOk()) {
      std::cerr << "outpostd --upgrade-helper: " << outcome.status().message() << "\n";
      return kExitFailure;
    }
    return outcome->phase == upgrade::Phase::kHealthy ? kExitOk : kExitFailure;
  }

  Environment env = processEnvironment();
  if (!logLevel.empty()) env["OUTPOST_LOG_LEVEL"] = logLevel;
  LoadResult loaded = loadConfigFile(configPath, env);
  if (!loaded.ok()) {
    std::cerr << "outpostd: invalid configuration in " << configPath << ":\n";
    for (const auto& e : loaded.errors.errors) std::cerr << "  " << e.toString() << "\n";
    notify("STATUS=invalid configuration, see the log");
    return kExitConfig;
  }
  if (checkOnly) {
    ConfigErrors dates = checkCertificateDates(loaded.config, std::chrono::system_clock::now());
    if (!dates.errors.empty()) {
      std::cerr << "outpostd: invalid configuration in " << configPath << ":\n";
      for (const auto& e : dates.errors) std::cerr << "  " << e.toString() << "\n";
      return kExitConfig;
    }
    std::cout << configPath << ": configuration is valid\n";
    return kExitOk;
  }
  Config config = loaded.config;
  // An upgrade in progress: this agent starts once its helper has put the package in place. Before
  // the signals are blocked, so the helper's SIGTERM ends a waiting agent at once.
  upgrade::waitForHelper(std::filesystem::path(config.node.stateDir) / "upgrade",
                         std::chrono::minutes(10));

  // Signals are taken synchronously by this thread; block them before any other thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  core::Logging logging({*core::parseLogLevel(config.log.level), std::nullopt, ""});
  core::Logger log = logging.get("agent");
  core::SystemClock clock;
  log.info("outpostd ", OUTPOST_VERSION, " starting as node ", config.node.name, " (config ",
           configPath, ")");

  Agent agent(config, logging, clock);
  auto began = std::chrono::steady_clock::now();
  core::Status started = agent.start([](const std::string& what) { notify("STATUS=" + what); });
  if (!started.isOk()) {
    log.critical("cannot start: ", started.toString());
    notify("STATUS=failed: " + started.toString());
    logging.flush();
    return kExitUnavailable;
  }
  auto readyMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
  notify("READY=1\nSTATUS=running");
  log.info("ready in ", readyMs, " ms");

  std::optional<std::chrono::microseconds> watchdogPeriod = systemdWatchdog();
  bool watchdog = watchdogPeriod.has_value();
  auto tick = watchdog ? *watchdogPeriod / 2 : std::chrono::microseconds(1'000'000);
  if (watchdog) log.info("systemd watchdog every ", watchdogPeriod->count() / 2000, " ms");

  int exitCode = kExitOk;
  std::optional<std::string> notReady;  // the last reason logged
  while (true) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(tick);
    timespec ts{secs.count(), static_cast<long>((tick - secs).count() * 1000)};
    siginfo_t info;
    int sig = sigtimedwait(&signals, &info, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      log.info("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT", ", stopping");
      break;
    }
    if (sig == SIGHUP) {
      LoadResult again = loadConfigFile(configPath, processEnvironment());
      if (!again.ok()) {
        log.error("SIGHUP: configuration not reloaded, it has problems:\n",
                  again.errors.toString());
      } else {
        if (!logLevel.empty()) again.config.log.level = logLevel;
        agent.reload(again.config);
      }
      continue;
    }
    // Readiness can be lost while running (the store's file removed): said once, and to systemd.
    if (auto why = agent.notReady(); why != notReady) {
      if (why) {
        log.error("not ready: ", *why);
        notify("STATUS=not ready: " + *why);
      } else {
        log.info("ready again");
        notify("STATUS=running");
      }
      notReady = why;
    }
    if (watchdog) {
      // Only pet the watchdog when every module's thread answers: a stuck loop gets us restarted.
      if (agent.alive(std::chrono::duration_cast<std::chrono::milliseconds>(tick) / 2)) {
        notify("WATCHDOG=1");
      }
    }
  }
  notify("STOPPING=1\nSTATUS=stopping");
  if (!agent.stop(kStopDeadline)) {
    log.error("modules did not stop within ", kStopDeadline.count(), " s; exiting anyway");
    exitCode = kExitSoftware;
  } else {
    log.info("stopped");
  }
  logging.flush();
  if (exitCode != kExitOk) _exit(exitCode);  // a stuck module thread must not keep us alive
  return exitCode;
}

}  // namespace outpost::agent
