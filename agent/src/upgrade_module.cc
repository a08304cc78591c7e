// The in-band agent upgrade wired to the store, the outbox and the agent's health.
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "modules.h"
#include "outpost/deploy/hollow_runtime.h"
#include "outpost/upgrade/hollow_installer.h"
#include "outpost/upgrade/system_installer.h"
#include "outpost/upgrade/upgrader.h"
#include "version.h"

namespace outpost::agent {

namespace {

constexpr std::string_view kType = "agentupgrade";

// Whether the network reaches the cloud: a TCP connection to the link's endpoint
// ("tcp://host:port", "ssl://...", "wss://host:port/path") opens within `timeout`. Empty: it does
// not, with why (name not resolved, refused, unreachable, no answer).
std::string unreachableWhy(const std::string& endpoint, std::chrono::milliseconds timeout) {
  auto scheme = endpoint.find("://");
  if (scheme == std::string::npos) return "no scheme in " + endpoint;
  std::string rest = endpoint.substr(scheme + 3);
  rest = rest.substr(0, rest.find('/'));
  std::string host = rest, port;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) return "a bad address in " + endpoint;
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port = rest.substr(close + 2);
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (port.empty()) {
    std::string s = endpoint.substr(0, scheme);
    port = s == "tcp" || s == "mqtt" ? "1883" : s == "ws" ? "80" : s == "wss" ? "443" : "8883";
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int e = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); e != 0)
    return host + ": " + ::gai_strerror(e);
  std::string why = "no address";
  for (addrinfo* a = found; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    int err = rc == 0 ? 0 : errno;
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      } else {
        err = ETIMEDOUT;
      }
    }
    ::close(fd);
    if (err == 0) {
      ::freeaddrinfo(found);
      return {};
    }
    why = std::string(std::strerror(err));
  }
  ::freeaddrinfo(found);
  return host + ":" + port + ": " + why;
}

// The upgrade's status as an outbox row per AgentUpgrade (a newer one replaces an unsent one).
class OutboxUpgradeSink final : public upgrade::StatusSink {
 public:
  OutboxUpgradeSink(metadb::Store& store, core::EventLoop& loop, core::Logger log)
      : store_(store), loop_(loop), log_(std::move(log)) {}
  void upgradeStatus(const std::string& key, const upgrade::UpgradeStatus& s) override {
    {
      std::lock_guard l(mu_);
      last_ = key + " " + std::string(upgrade::phaseName(s.phase)) +
              (s.version.empty() ? "" : " (" + s.version + ")") +
              (s.reason.empty() ? "" : ": " + s.reason);
    }
    metadb::WriteBatch batch;
    batch.enqueue({"agentupgradestatus", key, s.toJson(), 0});
    store_.write(std::move(batch), loop_, [log = log_, key](core::Result<metadb::WriteResult> r) {
      if (!r.isOk()) log.error("queueing the upgrade status of ", key, ": ", r.status().toString());
    });
  }

  // The last status reported, for `outpostctl status` (empty before any).
  std::string last() const {
    std::lock_guard l(mu_);
    return last_;
  }

 private:
  mutable std::mutex mu_;
  std::string last_;
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

  bool offlineNoted = false;

  // Store open (this module runs), runtime reachable (the cold boot reconcile done, and the
  // runtime's answer to its last listing), and the cloud link up when the network reaches the
  // cloud (docs/operations.md, "In-band upgrade"): a cloud whose address takes a TCP connection
  // but whose link is not up (TLS, credentials, protocol) is a failure; one the network does not
  // reach is no fault of the new agent.
  bool healthyNow() {
    if (deploy && (!deploy->coldBootDone() || !deploy->runtimeReady())) return false;
    cloudhub::CloudLink* link = cloud.link();
    if (!link) return false;
    auto st = link->status();
    if (st.state == cloudhub::LinkState::kConnected) return true;
    if (!upgrader->awaitingHealth()) return false;  // probe only while an upgrade waits
    std::string why = unreachableWhy(st.endpoint, std::chrono::seconds(2));
    if (why.empty()) return false;
    if (!offlineNoted)
      log.info("healthy without the cloud link: the network does not reach ", st.endpoint, " (",
               why, ")");
    offlineNoted = true;
    return true;
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
  auto reader = m.store.openReaderOn(m.loop);
  if (!reader.isOk()) return reader.status().withContext("opening a store reader");
  m.reader = std::move(reader).value();
  m.sink = std::make_unique<OutboxUpgradeSink>(*m.store.store(), m.loop, m.log);

  std::error_code ec;
  upgrade::SystemInstallerOptions io;
  io.helper = std::filesystem::read_symlink("/proc/self/exe", ec);
  io.store = m.store.path();
  // A hollow node simulates the install and the restart (docs/hollow-nodes.md); only it does.
  bool hollow = c.runtime.enabled && deploy::isHollowEndpoint(c.runtime.endpoint);
  auto installer =
      hollow ? core::Result<std::unique_ptr<upgrade::Installer>>(upgrade::makeHollowInstaller(
                   {std::filesystem::path(c.node.stateDir) / "upgrade", OUTPOST_VERSION "-1"}))
             : upgrade::makeSystemInstaller(io);
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
  std::string last = impl_->sink ? impl_->sink->last() : "";
  std::string state = impl_->upgrader ? "ready" : "off: " + impl_->installerProblem;
  return last.empty() ? state : state + "; last: " + last;
}

}  // namespace outpost::agent
