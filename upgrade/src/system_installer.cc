#include "outpost/upgrade/system_installer.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "outpost/upgrade/helper.h"
#include "process.h"

namespace outpost::upgrade {

namespace fs = std::filesystem;

namespace {

std::string firstLine(std::string s) {
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  return s;
}

class SystemInstaller final : public Installer {
 public:
  SystemInstaller(SystemInstallerOptions o, bool deb) : opt_(std::move(o)), deb_(deb) {}

  // ---- Installer
  Platform platform() override {
    auto r = deb_ ? runProgram({"/usr/bin/dpkg", "--print-architecture"})
                  : runProgram({"/usr/bin/rpm", "--eval", "%{_arch}"});
    return {deb_ ? "deb" : "rpm", r.isOk() ? firstLine(r->output) : ""};
  }
  core::Result<std::string> installedVersion() override {
    auto r =
        deb_
            ? runProgram({"/usr/bin/dpkg-query", "-W", "-f=${Version}", opt_.packageName})
            : runProgram({"/usr/bin/rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", opt_.packageName});
    if (!r.isOk()) return r.status();
    if (r->exitCode != 0 || r->output.empty())
      return core::notFound("the package " + opt_.packageName + " is not installed");
    return firstLine(r->output);
  }
  core::Status launch(const fs::path& planFile) override {
    std::vector<std::string> helper = {opt_.helper.string(), "--upgrade-helper",
                                       planFile.parent_path().string(), "--upgrade-store",
                                       opt_.store.string()};
    if (systemdRuns()) {
      helper.emplace_back("--upgrade-systemd");
      auto unit = "outpost-upgrade-" +
                  std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
      std::vector<std::string> argv = {
          "/usr/bin/systemd-run", "--unit", unit, "--collect", "--quiet", "--"};
      argv.insert(argv.end(), helper.begin(), helper.end());
      auto r = runProgram(argv);
      if (!r.isOk()) return r.status();
      if (r->exitCode != 0)
        return core::unavailable("systemd-run exited with " + std::to_string(r->exitCode));
      return core::okStatus();
    }
    return detach(helper);
  }
  bool helperRunning(const fs::path& dir) override {
    return upgrade::helperRunning(dir, opt_.helper.filename().string());
  }

 private:
  // Double fork and setsid: the helper is no child of ours and outlives our process group.
  static core::Status detach(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return core::unavailable("fork failed");
    if (pid == 0) {
      ::setsid();
      if (::fork() != 0) ::_exit(0);
      int devnull = ::open("/dev/null", O_RDWR);
      ::dup2(devnull, 0);
      // stdout and stderr stay: the supervisor's log gets the helper's lines.
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return core::unavailable("the helper's detaching fork failed");
    return core::okStatus();
  }

  SystemInstallerOptions opt_;
  bool deb_;
};

}  // namespace

bool systemdRuns() {
  std::error_code ec;
  return fs::is_directory("/run/systemd/system", ec);
}

core::Result<std::unique_ptr<Installer>> makeSystemInstaller(SystemInstallerOptions options) {
  std::error_code ec;
  if (fs::exists("/usr/bin/dpkg-query", ec))
    return std::unique_ptr<Installer>(std::make_unique<SystemInstaller>(std::move(options), true));
  if (fs::exists("/usr/bin/rpm", ec))
    return std::unique_ptr<Installer>(std::make_unique<SystemInstaller>(std::move(options), false));
  return core::unavailable("neither dpkg nor rpm is installed: the agent cannot upgrade itself");
}

}  // namespace outpost::upgrade
