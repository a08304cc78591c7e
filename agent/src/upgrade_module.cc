// The in-band agent upgrade wired to the store, the outbox and the agent's health.
#include <unistd.h>

#include <filesystem>

#include "modules.h"
#include "outpost/upgrade/system_installer.h"
#include "outpost/upgrade/upgrader.h"

namespace outpost::agent {

namespace {

constexpr std::string_view kType = "agentupgrade";

// The upgrade's status as an outbox row per AgentUpgrade (a newer one replaces an unsent one).
class OutboxUpgradeSink final : public upgrade::StatusSink {
 public:
  OutboxUpgradeSink(metadb::Store& store, core::EventLoop& loop, core::Logger log)
      : store_(store), loop_(loop), log_(std::move(log)) {}
  void upgradeStatus(const std::string& key, const upgrade::UpgradeStatus& s) override {
    metadb::WriteBatch batch;
    batch.enqueue({"agentupgradestatus", key, s.toJson(), 0});
    store_.write(std::move(batch), loop_, [log = log_, key](core::Result<metadb::WriteResult> r) {
      if (!r.isOk()) log.error("queueing the upgrade status of ", key, ": ", r.status().toString());
    });
  }

 private:
  metadb::Store& store_;
  core::EventLoop& loop_;
  core::Logger log_;
};

}  // namespace

class UpgradeModule::Impl {
 public:
  Impl(Context c, StoreModule& s, CloudModule& cl, DeployModule* d)
      : ctx(c),
        store(s),
        cloud(cl),
        deploy(d),
        log(c.logging.get("upgrade")),
        loop("upgrade-wire", c.clock) {}
  Context ctx;
  StoreModule& store;
  CloudModule& cloud;
  DeployModule* deploy;
  core::Logger log;
  core::EventLoop loop;  // reads the objects, checks health, receives the store's write callbacks
  std::unique_ptr<OutboxUpgradeSink> sink;
  std::unique_ptr<upgrade::Installer> installer;
  std::unique_ptr<upgrade::Upgrader> upgrader;
  metadb::StoreReaderPtr reader;
  core::Subscription keysChanged;
  core::TimerId healthTimer = 0;
  bool started = false;
  std::string installerProblem;

  bool healthyNow() const {
    if (deploy && !deploy->coldBootDone()) return false;
    cloudhub::CloudLink* link = cloud.link();
    return link && link->status().state == cloudhub::LinkState::kConnected;
  }

  void changed(const metadb::KeyChange& k) {
    if (!upgrader) {
      return sink->upgradeStatus(k.key,
                                 {upgrade::Phase::kFailed, "", 0, std::nullopt, installerProblem});
    }
    if (k.deleted) return upgrader->onDesired(k.key, std::nullopt);
    auto r = reader->get(k.key);
    if (!r.isOk()) return log.error("reading ", k.key, ": ", r.status().toString());
    upgrader->onDesired(k.key, *r ? std::optional<std::string>((*r)->object) : std::nullopt);
  }
};

UpgradeModule::UpgradeModule(Context ctx, StoreModule& store, CloudModule& cloud,
                             DeployModule* deploy)
    : impl_(std::make_unique<Impl>(ctx, store, cloud, deploy)) {}

UpgradeModule::~UpgradeModule() { stop(); }

core::Status UpgradeModule::start() {
  Impl& m = *impl_;
  const Config& c = m.ctx.config;
  m.loop.start();
  m.started = true;
  core::Status opened;
  m.loop.runSync([&] {
    auto r = m.store.store()->openReader();
    if (!r.isOk()) {
      opened = r.status();
      return;
    }
    m.reader = std::move(r).value();
  });
  OUTPOST_RETURN_IF_ERROR(opened.withContext("opening a store reader"));
  m.sink = std::make_unique<OutboxUpgradeSink>(*m.store.store(), m.loop, m.log);

  std::error_code ec;
  upgrade::SystemInstallerOptions io;
  io.helper = std::filesystem::read_symlink("/proc/self/exe", ec);
  io.store = m.store.path();
  auto installer = upgrade::makeSystemInstaller(io);
  if (!installer.isOk()) {
    m.installerProblem = installer.status().message();
    m.log.info("in-band upgrades are off: ", m.installerProblem);
  } else {
    m.installer = std::move(installer).value();
    upgrade::UpgraderOptions uo;
    uo.dir = std::filesystem::path(c.node.stateDir) / "upgrade";
    uo.keys = *upgrade::parseTrustedKeys(c.upgrade.trustedKeys);  // checked with the configuration
    uo.download.maxBytes = static_cast<uint64_t>(c.upgrade.maxPackageBytes);
    uo.download.caFile = c.upgrade.ca;
    uo.healthTimeout = std::chrono::duration_cast<std::chrono::seconds>(c.upgrade.healthTimeout);
    uo.agentPid = static_cast<int>(::getpid());
    m.upgrader = std::make_unique<upgrade::Upgrader>(std::move(uo), *m.installer, *m.sink,
                                                     m.ctx.clock, m.log);
    m.upgrader->start();
  }
  m.keysChanged =
      m.ctx.bus.subscribe(metadb::kKeysChanged, m.loop, [this](const metadb::KeysChanged& ev) {
        for (const auto& k : ev.keys)
          if (k.type == kType) impl_->changed(k);
      });
  // The objects already stored (a change while the agent was down, or an upgrade to resume).
  m.loop.post([this] {
    auto all = impl_->reader->list(std::string(kType));
    if (!all.isOk()) return impl_->log.error("reading AgentUpgrades: ", all.status().toString());
    for (const auto& r : *all) {
      auto parts = metadb::parseKey(r.key);
      if (parts.isOk()) impl_->changed({r.key, parts->ns, parts->type, parts->name, false});
    }
  });
  if (m.upgrader) {
    m.healthTimer = m.loop.runEvery(std::chrono::seconds(1), [this] {
      if (impl_->healthyNow()) impl_->upgrader->healthy();
    });
  }
  return core::okStatus();
}

void UpgradeModule::stop() {
  Impl& m = *impl_;
  if (!m.started) return;
  m.started = false;
  m.keysChanged.reset();
  if (m.upgrader) m.upgrader->stop();
  m.loop.runSync([&] { m.reader.reset(); }, std::chrono::seconds(2));
  m.loop.stop();
  m.upgrader.reset();
}

std::string UpgradeModule::describe() const {
  return impl_->upgrader ? "ready" : "off: " + impl_->installerProblem;
}

}  // namespace outpost::agent
