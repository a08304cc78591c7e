#include "outpost/upgrade/hollow_installer.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "files.h"

namespace outpost::upgrade {

namespace fs = std::filesystem;

namespace {

class HollowInstaller final : public Installer {
 public:
  explicit HollowInstaller(HollowInstallerOptions o) : opt_(std::move(o)) {}
  ~HollowInstaller() override {
    {
      std::lock_guard l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (helper_.joinable()) helper_.join();
  }

  Platform platform() override { return {"deb", "amd64"}; }

  core::Result<std::string> installedVersion() override {
    if (auto v = readSmallFile(installedFile())) {
      if (!v->empty() && v->back() == '\n') v->pop_back();
      return *v;
    }
    return opt_.version;
  }

  core::Status launch(const fs::path& planFile) override {
    auto text = readSmallFile(planFile);
    if (!text) return core::notFound("no " + planFile.string());
    OUTPOST_ASSIGN_OR_RETURN(Plan plan, Plan::fromJson(*text));
    if (helper_.joinable()) helper_.join();  // the last simulated upgrade ended (outcome written)
    running_ = true;
    helper_ = std::thread([this, plan = std::move(plan)] {
      run(plan);
      running_ = false;
    });
    return core::okStatus();
  }
  // The simulated helper is a thread of this agent: after a restart, none runs.
  bool helperRunning(const fs::path&) override { return running_; }

 private:
  fs::path installedFile() const { return opt_.dir / "hollow-installed"; }

  // Waits up to `timeout` for the agent's `healthy` naming `version`; false also when stopping.
  bool waitHealthy(const std::string& version, std::chrono::seconds timeout, bool proves) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock l(mu_);
    while (!stopping_) {
      if (proves) {
        auto h = readSmallFile(opt_.dir / "healthy");
        if (h && *h == version + "\n") return true;
      }
      if (std::chrono::steady_clock::now() >= deadline) return false;
      // The agent writes the file on its own loop; looked at every 200 ms, as the real helper does.
      cv_.wait_for(l, std::chrono::milliseconds(200));
    }
    return false;
  }

  void run(const Plan& plan) {
    std::error_code ec;
    std::string reason;
    if (plan.version.find("install-fails") != std::string::npos) {
      reason = "installing " + plan.version +
               " failed: dpkg exited with 1 (staged by the version, hollow node)";
    } else {
      writeFileAtomic(installedFile(), plan.version + "\n").ignore();
      bool proves = plan.version.find("unhealthy") == std::string::npos;
      if (!waitHealthy(plan.version, plan.healthTimeout, proves)) {
        {
          std::lock_guard l(mu_);
          if (stopping_) return;  // the agent stops: plan.json stays, like a helper cut off
        }
        reason = "the agent " + plan.version + " was not healthy within " +
                 std::to_string(plan.healthTimeout.count()) + "s" +
                 (proves ? "" : " (staged by the version, hollow node)");
      }
    }
    Phase phase = Phase::kHealthy;
    if (reason.empty()) {
      for (const auto& e : fs::directory_iterator(opt_.dir / "kept", ec)) fs::remove(e.path(), ec);
      fs::rename(plan.package, opt_.dir / "kept" / fs::path(plan.package).filename(), ec);
    } else {
      phase = Phase::kRolledBack;
      writeFileAtomic(installedFile(), plan.previousVersion + "\n").ignore();
    }
    Outcome o{plan.key, plan.version, plan.sha256, phase, reason};
    writeFileAtomic(opt_.dir / "outcome.json", o.toJson()).ignore();
    fs::remove(opt_.dir / "plan.json", ec);
  }

  HollowInstallerOptions opt_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<bool> running_{false};
  std::thread helper_;
};

}  // namespace

std::unique_ptr<Installer> makeHollowInstaller(HollowInstallerOptions options) {
  return std::make_unique<HollowInstaller>(std::move(options));
}

}  // namespace outpost::upgrade
