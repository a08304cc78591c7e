#pragma once
// FakeInstaller: the upgrade's Installer without a package manager: a version the test sets, and
// launch() only records the plan, so the test plays the helper (the real one: helper_test). Also
// RecordingStatusSink, which keeps every status the upgrader reported.

#include <filesystem>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "outpost/upgrade/upgrader.h"

namespace outpost::test {

class FakeInstaller final : public upgrade::Installer {
 public:
  void setInstalled(std::string v) {
    std::lock_guard lock(mu_);
    installed_ = std::move(v);
  }
  void failLaunch(bool on) {
    std::lock_guard lock(mu_);
    failLaunch_ = on;
  }
  // Whether the helper the test plays still runs (true until set otherwise).
  void setHelperRunning(bool on) {
    std::lock_guard lock(mu_);
    helperRunning_ = on;
  }
  std::vector<std::filesystem::path> launched() const {
    std::lock_guard lock(mu_);
    return launched_;
  }

  // ---- upgrade::Installer
  upgrade::Platform platform() override { return {"deb", "amd64"}; }
  core::Result<std::string> installedVersion() override {
    std::lock_guard lock(mu_);
    return installed_;
  }
  core::Status launch(const std::filesystem::path& planFile) override {
    std::lock_guard lock(mu_);
    if (failLaunch_) return core::unavailable("systemd-run: no such unit");
    launched_.push_back(planFile);
    return core::okStatus();
  }
  bool helperRunning(const std::filesystem::path&) override {
    std::lock_guard lock(mu_);
    return helperRunning_;
  }

 private:
  mutable std::mutex mu_;
  std::string installed_ = "0.1.0-1";
  bool failLaunch_ = false;
  bool helperRunning_ = true;
  std::vector<std::filesystem::path> launched_;
};

class RecordingStatusSink final : public upgrade::StatusSink {
 public:
  void upgradeStatus(const std::string& key, const upgrade::UpgradeStatus& s) override {
    std::lock_guard lock(mu_);
    seen_.emplace_back(key, s);
  }
  std::vector<std::pair<std::string, upgrade::UpgradeStatus>> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  // The phases reported so far, "downloading,verifying,...".
  std::string phases() const {
    std::lock_guard lock(mu_);
    std::string out;
    std::string last;
    for (const auto& [k, s] : seen_) {
      std::string p(upgrade::phaseName(s.phase));
      if (p == last) continue;  // progress repeats "downloading"
      out += (out.empty() ? "" : ",") + p;
      last = p;
    }
    return out;
  }
  std::optional<upgrade::UpgradeStatus> last() const {
    std::lock_guard lock(mu_);
    if (seen_.empty()) return std::nullopt;
    return seen_.back().second;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, upgrade::UpgradeStatus>> seen_;
};

}  // namespace outpost::test
