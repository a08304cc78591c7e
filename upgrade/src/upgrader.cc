#include "outpost/upgrade/upgrader.h"

#include <map>
#include <nlohmann/json.hpp>

#include "files.h"
#include "outpost/upgrade/agent_upgrade.h"

namespace outpost::upgrade {

namespace fs = std::filesystem;

class Upgrader::Impl {
 public:
  Impl(UpgraderOptions o, Installer& i, StatusSink& s, core::Clock& clock, core::Logger l)
      : opt(std::move(o)), installer(i), sink(s), log(std::move(l)), loop("upgrade", clock) {}

  UpgraderOptions opt;
  Installer& installer;
  StatusSink& sink;
  core::Logger log;
  core::EventLoop loop;
  std::atomic<bool> cancel{false};
  bool started = false;
  core::TimerId watch = 0;
  // Per key: the newest object (what a retry acts on), the next retry's delay and its timer.
  std::map<std::string, std::string> latest;
  std::map<std::string, std::chrono::milliseconds> retryDelay;
  std::map<std::string, core::TimerId> retryTimer;

  fs::path planFile() const { return opt.dir / "plan.json"; }
  fs::path outcomeFile() const { return opt.dir / "outcome.json"; }

  void report(const std::string& key, UpgradeStatus s) {
    if (s.phase == Phase::kFailed || s.phase == Phase::kRolledBack) {
      log.warn(key, ": ", phaseName(s.phase), " (", s.version, "): ", s.reason);
    } else if (s.phase != Phase::kDownloading || s.bytes == 0) {
      log.info(key, ": ", phaseName(s.phase), " (", s.version, ")");
    }
    sink.upgradeStatus(key, s);
  }
  void fail(const std::string& key, const std::string& version, const std::string& reason) {
    report(key, {Phase::kFailed, version, 0, std::nullopt, reason});
  }

  std::optional<Plan> pendingPlan() {
    auto text = readSmallFile(planFile());
    if (!text) return std::nullopt;
    auto plan = Plan::fromJson(*text);
    if (!plan.isOk()) {
      log.error("ignoring ", planFile().string(), ": ", plan.status().message());
      return std::nullopt;
    }
    return *plan;
  }
  std::optional<Outcome> lastOutcome() {
    auto text = readSmallFile(outcomeFile());
    if (!text) return std::nullopt;
    auto o = Outcome::fromJson(*text);
    if (!o.isOk()) return std::nullopt;
    return *o;
  }
  // Outcomes already reported, by key (done.json): the last outcome.json only holds one.
  std::map<std::string, Outcome> doneOutcomes() {
    std::map<std::string, Outcome> out;
    auto text = readSmallFile(opt.dir / "done.json");
    if (!text) return out;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (!j.is_object()) return out;
    for (const auto& [k, v] : j.items()) {
      auto o = Outcome::fromJson(v.dump());
      if (o.isOk()) out[k] = *o;
    }
    return out;
  }
  void reportOutcome(const Outcome& o) {
    auto done = doneOutcomes();
    done[o.key] = o;
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : done) j[k] = nlohmann::json::parse(v.toJson());
    if (auto s = writeFileAtomic(opt.dir / "done.json", j.dump()); !s.isOk())
      log.error("recording the upgrade's outcome: ", s.message());
    report(o.key, {o.phase, o.version, 0, std::nullopt, o.reason});
  }
  static bool sameAttempt(const Outcome& o, const Plan& p) {
    return o.key == p.key && o.version == p.version && o.sha256 == p.sha256;
  }

  // At start, and every second while the helper has an upgrade: reports its outcome once written.
  void resume() {
    auto plan = pendingPlan();
    auto outcome = lastOutcome();
    if (plan && !(outcome && sameAttempt(*outcome, *plan)) && !installer.helperRunning(opt.dir)) {
      return cutOff(*plan);
    }
    if (plan && !(outcome && sameAttempt(*outcome, *plan))) {
      report(plan->key, {Phase::kRestarting, plan->version, 0, std::nullopt, ""});
      if (watch == 0) watch = loop.runEvery(std::chrono::seconds(1), [this] { watchHelper(); });
      return;
    }
    if (outcome) reportOutcome(*outcome);
  }
  // A plan without an outcome whose helper no longer runs (a power cut, the helper killed): no
  // outcome will come. Reported failed, naming what is installed now, and recorded as the object's
  // outcome (a new version or package is needed to try again); the plan goes, so that it holds up
  // no later upgrade. The store copy the helper took stays in snapshot/ for an operator.
  void cutOff(const Plan& plan) {
    auto installed = installer.installedVersion();
    std::string now =
        installed.isOk() ? *installed : "unknown (" + installed.status().message() + ")";
    std::string reason = "the upgrade to " + plan.version +
                         " was cut off before its end (its helper no longer runs, after a power "
                         "cut or a kill); the installed agent is " +
                         now;
    log.warn(plan.key, ": ", reason);
    std::error_code ec;
    fs::remove(planFile(), ec);
    fs::remove(opt.dir / "healthy", ec);
    reportOutcome(Outcome{plan.key, plan.version, plan.sha256, Phase::kFailed, reason});
  }

  void watchHelper() {
    auto plan = pendingPlan();
    auto outcome = lastOutcome();
    if (plan && !(outcome && sameAttempt(*outcome, *plan))) return;
    loop.cancel(watch);
    watch = 0;
    if (outcome) reportOutcome(*outcome);
  }

  void markHealthy() {
    auto plan = pendingPlan();
    if (!plan) return;
    auto installed = installer.installedVersion();
    if (!installed.isOk() || *installed != plan->version) return;  // not the new agent
    if (fs::exists(opt.dir / "healthy")) return;
    auto s = writeFileAtomic(opt.dir / "healthy", *installed + "\n");
    if (!s.isOk())
      return log.error("telling the upgrade helper this agent is healthy: ", s.message());
    log.info("healthy after the upgrade to ", *installed, ": the helper is told");
  }

  // Downloads `p` into `dest` (resuming a ".part" beside it) and verifies it; the verified file
  // is renamed to `dest`. `progressKey` empty: no download status (the rollback package).
  core::Status fetch(const Package& p, const fs::path& dest, const std::string& progressKey,
                     const std::string& version) {
    if (fs::exists(dest)) return core::okStatus();
    auto part = dest;
    part += ".part";
    DownloadOptions d = opt.download;
    d.cancel = &cancel;
    uint64_t nextReport = 0;
    if (!progressKey.empty()) {
      d.progress = [&](uint64_t have, std::optional<uint64_t> total) {
        if (have < nextReport) return;
        // About every tenth of the package (every 8 MiB when its size is unknown).
        nextReport = have + (total ? std::max<uint64_t>(*total / 10, 1) : (8u << 20));
        report(progressKey, {Phase::kDownloading, version, have, total, ""});
      };
    }
    auto got = download(p.url, part, d);
    if (!got.isOk()) return got.status().withContext("downloading " + p.url);
    if (!progressKey.empty())
      report(progressKey, {Phase::kVerifying, version, 0, std::nullopt, ""});
    auto verified = verifyPackage(part, p.sha256, p.signature, opt.keys);
    if (!verified.isOk()) {
      std::error_code ec;
      fs::remove(part, ec);  // refused: never kept, never installed
      return verified.withContext("the package from " + p.url + " is refused");
    }
    std::error_code ec;
    fs::rename(part, dest, ec);
    if (ec) return core::unavailable("keeping " + dest.string() + ": " + ec.message());
    return core::okStatus();
  }

  // A download the network cut short: reported with the reason, tried again later (resuming).
  void retryLater(const std::string& key, const std::string& version, const std::string& why) {
    auto& delay = retryDelay[key];
    delay = delay.count() == 0 ? opt.retryBase : std::min(delay * 2, opt.retryCap);
    std::string after = delay.count() % 1000 == 0 ? std::to_string(delay.count() / 1000) + "s"
                                                  : std::to_string(delay.count()) + "ms";
    report(key, {Phase::kDownloading, version, 0, std::nullopt, why + "; again in " + after});
    retryTimer[key] = loop.runAfter(delay, [this, key] {
      retryTimer.erase(key);
      if (auto it = latest.find(key); it != latest.end()) handle(key, it->second);
    });
  }

  void handle(const std::string& key, const std::optional<std::string>& json) {
    if (auto t = retryTimer.find(key); t != retryTimer.end()) {
      loop.cancel(t->second);
      retryTimer.erase(t);
    }
    if (!json) {  // deleted: an upgrade in the helper's hands goes on; nothing else to do
      latest.erase(key);
      retryDelay.erase(key);
      return;
    }
    latest[key] = *json;
    auto parsed = parseAgentUpgrade(*json);
    if (!parsed.isOk())
      return fail(key, "", "the AgentUpgrade is refused: " + parsed.status().message());
    const AgentUpgrade& up = *parsed;
    const std::string& version = up.target.version;
    if (auto plan = pendingPlan()) {
      if (plan->key != key || plan->version != version)
        log.warn(key, ": waits, the upgrade to ", plan->version, " is still in progress");
      return;
    }
    auto installed = installer.installedVersion();
    if (!installed.isOk())
      return fail(key, version,
                  "the installed version is unknown: " + installed.status().message());
    Platform pf = installer.platform();
    auto pkg = pickPackage(up.target, pf.format, pf.arch);
    if (*installed == version) {
      report(key, {Phase::kHealthy, version, 0, std::nullopt, ""});
      return;
    }
    if (!pkg.isOk()) return fail(key, version, pkg.status().message());
    auto done = doneOutcomes();
    if (auto last = lastOutcome()) done[last->key] = *last;
    if (auto it = done.find(key);
        it != done.end() && it->second.version == version && it->second.sha256 == pkg->sha256) {
      const Outcome* o = &it->second;
      // Not tried again: a new attempt needs a new version or package (docs/operations.md).
      return report(key, {o->phase, o->version, 0, std::nullopt, o->reason});
    }
    if (opt.keys.keys.empty())
      return fail(key, version, "upgrade.trusted_keys is empty: in-band upgrades are refused");

    std::error_code ec;
    fs::create_directories(opt.dir / "packages", ec);
    fs::create_directories(opt.dir / "kept", ec);
    if (ec) return fail(key, version, "cannot make " + opt.dir.string() + ": " + ec.message());
    // The package a rollback reinstalls: kept from the last install, or spec.rollback's.
    fs::path previous = opt.dir / "kept" / packageFileName(*installed, pf.arch, pf.format);
    if (!fs::exists(previous)) {
      if (!up.rollback || up.rollback->version != *installed)
        return fail(key, version,
                    "no package of the installed version " + *installed +
                        " to roll back to: none is kept on the node, and spec.rollback does not "
                        "name that version");
      auto rb = pickPackage(*up.rollback, pf.format, pf.arch);
      if (!rb.isOk()) return fail(key, version, "spec.rollback: " + rb.status().message());
      if (auto s = fetch(*rb, previous, "", *installed); !s.isOk()) {
        if (s.code() == core::Code::kCancelled) return;
        if (s.code() == core::Code::kUnavailable)
          return retryLater(key, version, "the rollback package: " + s.message());
        return fail(key, version, "the rollback package: " + s.message());
      }
    }
    fs::path target = opt.dir / "packages" / packageFileName(version, pf.arch, pf.format);
    report(key, {Phase::kDownloading, version, 0, std::nullopt, ""});
    if (auto s = fetch(*pkg, target, key, version); !s.isOk()) {
      if (s.code() == core::Code::kCancelled) return;  // the agent stops; the next start resumes
      if (s.code() == core::Code::kUnavailable) return retryLater(key, version, s.message());
      return fail(key, version, s.message());
    }
    retryDelay.erase(key);

    Plan plan;
    plan.key = key;
    plan.version = version;
    plan.sha256 = pkg->sha256;
    plan.package = fs::absolute(target).string();
    plan.previousVersion = *installed;
    plan.previousPackage = fs::absolute(previous).string();
    plan.healthTimeout = opt.healthTimeout;
    plan.agentPid = opt.agentPid;
    fs::remove(opt.dir / "healthy", ec);
    if (auto s = writeFileAtomic(planFile(), plan.toJson()); !s.isOk())
      return fail(key, version, s.message());
    report(key, {Phase::kInstalling, version, 0, std::nullopt, ""});
    if (auto s = installer.launch(planFile()); !s.isOk()) {
      fs::remove(planFile(), ec);
      return fail(key, version, "the upgrade helper did not start: " + s.message());
    }
    if (watch == 0) watch = loop.runEvery(std::chrono::seconds(1), [this] { watchHelper(); });
  }
};

Upgrader::Upgrader(UpgraderOptions options, Installer& installer, StatusSink& sink,
                   core::Clock& clock, core::Logger log)
    : impl_(std::make_unique<Impl>(std::move(options), installer, sink, clock, std::move(log))) {}

Upgrader::~Upgrader() { stop(); }

void Upgrader::start() {
  impl_->started = true;
  impl_->loop.start();
  impl_->loop.post([this] { impl_->resume(); });
}

void Upgrader::stop() {
  if (!impl_->started) return;
  impl_->started = false;
  impl_->cancel = true;
  impl_->loop.stop();
}

void Upgrader::onDesired(std::string key, std::optional<std::string> json) {
  impl_->loop.post(
      [this, key = std::move(key), json = std::move(json)] { impl_->handle(key, json); });
}

bool Upgrader::awaitingHealth() const {
  std::error_code ec;
  return fs::exists(impl_->planFile(), ec) && !fs::exists(impl_->opt.dir / "healthy", ec);
}

void Upgrader::healthy() {
  impl_->loop.post([this] { impl_->markHealthy(); });
}

}  // namespace outpost::upgrade
