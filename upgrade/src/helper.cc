#include "outpost/upgrade/helper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "files.h"
#include "process.h"

namespace outpost::upgrade {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

bool alive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

int readPid(const fs::path& file) {
  auto text = readSmallFile(file);
  if (!text) return 0;
  try {
    return std::stoi(*text);
  } catch (...) {
    return 0;
  }
}

class Helper {
 public:
  Helper(const HelperOptions& o, Plan p) : opt_(o), plan_(std::move(p)) {}

  Outcome run() {
    log("upgrade to " + plan_.version + " (from " + plan_.previousVersion + ")");
    if (auto s = stopAgent(); !s.isOk()) return finish(Phase::kFailed, s.message(), false);
    if (auto s = snapshot(); !s.isOk()) {
      startAgent();
      return finish(Phase::kFailed, "copying the store aside: " + s.message(), false);
    }
    if (auto s = install(plan_.package); !s.isOk())
      return rollBack("installing " + plan_.version + " failed: " + s.message());
    startAgent();
    if (!waitHealthy())
      return rollBack("the agent " + plan_.version + " was not healthy within " +
                      std::to_string(plan_.healthTimeout.count()) + "s");
    // Kept for the next upgrade's rollback; the older kept package goes.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(opt_.dir / "kept", ec)) fs::remove(e.path(), ec);
    fs::rename(plan_.package, opt_.dir / "kept" / fs::path(plan_.package).filename(), ec);
    return finish(Phase::kHealthy, "", false);
  }

 private:
  void log(const std::string& line) {
    // To stderr: the journal (systemd-run) or the supervisor's log.
    std::fprintf(stderr, "outpost-upgrade: %s\n", line.c_str());
  }

  bool isAgent(int pid) {
    if (!alive(pid)) return false;
    auto comm = readSmallFile("/proc/" + std::to_string(pid) + "/comm");
    return comm && *comm == opt_.agentName + "\n";
  }

  // SIGTERM, and SIGKILL when it is still there at `deadline`.
  void terminate(int pid, Clock::time_point deadline) {
    if (!isAgent(pid)) return;
    ::kill(pid, SIGTERM);
    while (alive(pid) && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a foreign process: no fd
    if (alive(pid)) ::kill(pid, SIGKILL);
  }

  core::Status stopAgent() {
    std::error_code ec;
    fs::remove(opt_.dir / "ready", ec);  // an agent restarted by its supervisor waits from now on
    if (opt_.systemd) {
      auto r = runProgram({opt_.systemctl, "stop", opt_.unit});
      if (!r.isOk() || r->exitCode != 0)
        return core::unavailable("systemctl stop " + opt_.unit + " failed");
      return core::okStatus();
    }
    // Each agent that runs: the one that launched us, or one its supervisor started meanwhile.
    auto deadline = Clock::now() + opt_.stopTimeout;
    terminate(plan_.agentPid, deadline);
    terminate(readPid(opt_.dir / "agent.pid"), deadline);
    return core::okStatus();
  }

  void startAgent() {
    std::error_code ec;
    fs::remove(opt_.dir / "healthy", ec);
    // An agent waiting for `ready` may be the binary of before the install: it goes first.
    if (!opt_.systemd) terminate(readPid(opt_.dir / "agent.pid"), Clock::now() + opt_.stopTimeout);
    writeFileAtomic(opt_.dir / "ready", "1\n").ignore();
    if (opt_.systemd) {
      auto r = runProgram({opt_.systemctl, "start", opt_.unit});
      if (!r.isOk() || r->exitCode != 0) log("systemctl start " + opt_.unit + " failed");
    }
  }

  core::Status snapshot() {
    std::error_code ec;
    fs::path dir = opt_.dir / "snapshot";
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    if (ec) return core::unavailable(ec.message());
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::path from = opt_.store.string() + suffix;
      if (!fs::exists(from)) continue;
      fs::copy_file(from, dir / from.filename(), fs::copy_options::overwrite_existing, ec);
      if (ec) return core::unavailable(from.string() + ": " + ec.message());
    }
    return core::okStatus();
  }

  core::Status restore() {
    std::error_code ec;
    fs::path dir = opt_.dir / "snapshot";
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::path to = opt_.store.string() + suffix;
      fs::path from = dir / to.filename();
      fs::remove(to, ec);
      if (!fs::exists(from)) continue;
      fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
      if (ec) return core::unavailable(to.string() + ": " + ec.message());
    }
    return core::okStatus();
  }

  core::Status install(const std::string& package) {
    std::vector<std::string> argv;
    if (package.ends_with(".deb")) {
      argv = {opt_.dpkg, "--force-confold", "-i", package};
    } else {
      argv = {opt_.rpm, "-U", "--oldpackage", "--replacepkgs", package};
    }
    auto r = runProgram(argv, opt_.dir / "install.log");
    if (!r.isOk()) return r.status();
    if (r->exitCode != 0)
      return core::unavailable(fs::path(argv[0]).filename().string() + " exited with " +
                               std::to_string(r->exitCode) + " (" +
                               (opt_.dir / "install.log").string() + ")");
    return core::okStatus();
  }

  bool waitHealthy() {
    auto deadline = Clock::now() + plan_.healthTimeout;
    while (Clock::now() < deadline) {
      auto text = readSmallFile(opt_.dir / "healthy");
      if (text && *text == plan_.version + "\n") return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // another process's file
    }
    return false;
  }

  Outcome rollBack(const std::string& reason) {
    log("rolling back to " + plan_.previousVersion + ": " + reason);
    std::string why = reason;
    if (auto s = stopAgent(); !s.isOk()) why += "; stopping the new agent: " + s.message();
    if (auto s = restore(); !s.isOk()) why += "; restoring the store: " + s.message();
    if (auto s = install(plan_.previousPackage); !s.isOk()) {
      why += "; reinstalling " + plan_.previousVersion + " failed too: " + s.message();
      return finish(Phase::kFailed, why, true);
    }
    return finish(Phase::kRolledBack, why, true);
  }

  Outcome finish(Phase phase, const std::string& reason, bool start) {
    Outcome o{plan_.key, plan_.version, plan_.sha256, phase, reason};
    writeFileAtomic(opt_.dir / "outcome.json", o.toJson()).ignore();
    std::error_code ec;
    fs::remove(opt_.dir / "plan.json", ec);
    fs::remove_all(opt_.dir / "snapshot", ec);
    log(std::string(phaseName(phase)) + (reason.empty() ? "" : ": " + reason));
    if (start) startAgent();
    fs::remove(opt_.dir / "helper.pid", ec);
    return o;
  }

  const HelperOptions& opt_;
  Plan plan_;
};

}  // namespace

core::Result<Outcome> runHelper(const HelperOptions& options) {
  auto text = readSmallFile(options.dir / "plan.json");
  if (!text) return core::notFound("no plan.json in " + options.dir.string());
  OUTPOST_ASSIGN_OR_RETURN(Plan plan, Plan::fromJson(*text));
  OUTPOST_RETURN_IF_ERROR(
      writeFileAtomic(options.dir / "helper.pid", std::to_string(::getpid()) + "\n"));
  return Helper(options, std::move(plan)).run();
}

bool helperRunning(const fs::path& dir, const std::string& name) {
  int pid = readPid(dir / "helper.pid");
  if (pid <= 0 || pid == ::getpid() || !alive(pid)) return false;
  auto comm = readSmallFile("/proc/" + std::to_string(pid) + "/comm");
  return comm && *comm == name.substr(0, 15) + "\n";  // the kernel keeps 15 characters
}

void waitForHelper(const fs::path& dir, std::chrono::milliseconds timeout) {
  if (!fs::exists(dir / "plan.json")) return;
  writeFileAtomic(dir / "agent.pid", std::to_string(::getpid()) + "\n").ignore();
  auto deadline = Clock::now() + timeout;
  while (!fs::exists(dir / "ready") && alive(readPid(dir / "helper.pid")) &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // another process's file
}

}  // namespace outpost::upgrade
