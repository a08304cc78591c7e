#pragma once
// The agent's modules as lifecycle units: each builds its part from the configuration and the parts
// started before it. Only agent/ knows these concrete types.

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "outpost/agent/config.h"
#include "outpost/agent/lifecycle.h"
#include "outpost/cloudhub/certificates.h"
#include "outpost/cloudhub/link.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/deploy/reconciler.h"
#include "outpost/metadb/sqlite_store.h"
#include "outpost/twin/twin_service.h"

namespace outpost::agent {

// The node's labels: node.labels, and outpost.io/hollow=true on a hollow node.
std::map<std::string, std::string> nodeLabels(const Config& c);
// The node's part of deploy's configuration (name, address, reserved, reported version): the
// Node the link registers and the one deploy reports are the same.
deploy::ReconcilerConfig nodeReconcilerConfig(const Config& c);
// device.device_id_form, or when left out the form the cloud reads (name under KubeEdge).
twin::DeviceIdForm deviceIdForm(const Config& c);

// What every module gets from the agent.
struct Context {
  const Config& config;
  core::Logging& logging;
  core::Clock& clock;
  core::Bus& bus;
  core::MetricsRegistry& metrics;
  // The agent's loop for the routes between modules: a module's subscription to what another module
  // publishes, handed on to its own interface. Handlers there only pass the message on (each
  // module's interface posts to its own loop), so one thread serves every route.
  core::EventLoop& routes;
};

// The SQLite store under node.state_dir (store_module.cc).
class StoreModule final : public Module {
 public:
  explicit StoreModule(Context ctx) : ctx_(ctx) {}
  std::string name() const override { return "metadb"; }
  core::Status start() override;
  void stop() override;
  std::string describe() const override;
  metadb::SqliteStore* store() const { return store_.get(); }
  // A reader for the thread of `loop` (a reader belongs to one thread), opened on that thread.
  core::Result<metadb::StoreReaderPtr> openReaderOn(core::EventLoop& loop) const;
  std::string path() const;
  // Why the store can no longer be trusted, from any thread: its file was removed or replaced
  // since the start (the store then refuses writes). Nothing while it is the file opened.
  std::optional<std::string> vanished() const;

 private:
  // A store made empty at this start (no file, or an empty one) is marked needs_full_resync, so
  // deploy keeps the containers it finds until the cloud has sent the whole desired set.
  core::Status markFresh();

  Context ctx_;
  std::unique_ptr<metadb::SqliteStore> store_;
  std::atomic<bool> opened_{false};
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

// The cloud link: MQTT, or KubeEdge's WebSocket protocol (Boost.Beast), as cloud.transport says.
// Route: the store's outbox signal (metadb::kOutboxChanged) with queued rows -> outboxChanged().
class CloudModule final : public Module {
 public:
  CloudModule(Context ctx, StoreModule& store) : ctx_(ctx), store_(store) {}
  std::string name() const override { return "cloudhub"; }
  core::Status start() override;
  void stop() override;
  std::string describe() const override;
  bool alive(std::chrono::milliseconds timeout) override;
  // The link once started (nullptr before); safe from any thread.
  cloudhub::CloudLink* link() const { return started_.load(); }
  // The client certificate when the agent manages it (KubeEdge with cloud.websocket.cert_server),
  // nullopt otherwise; safe from any thread.
  std::optional<cloudhub::CertificateState> certificateState() const;

 private:
  void routeOutbox();

  Context ctx_;
  StoreModule& store_;
  cloudhub::CloudLinkPtr link_;
  std::atomic<cloudhub::CloudLink*> started_{nullptr};
  cloudhub::CertificateManagerPtr certs_;  // kept until destruction: the API thread may read it
  std::atomic<cloudhub::CertificateManager*> certsStarted_{nullptr};
  core::Subscription outboxChanged_;
};

// The pod reconciler on containerd, fed from the store, reporting into the outbox.
class DeployModule final : public Module {
 public:
  DeployModule(Context ctx, StoreModule& store, CloudModule& cloud);
  ~DeployModule() override;
  std::string name() const override { return "deploy"; }
  // The newest status the reconciler reported for the pod at `key` ("<ns>/pod/<name>"); any thread.
  std::optional<std::string> podStatus(const std::string& key) const;
  // The log directory and recent events of the pod at `key`; nullopt when deploy does not know the
  // pod (or is stopped). Any thread.
  std::optional<deploy::PodRuntimeInfo> podInfo(const std::string& key) const;
  // Runs `fn` with deploy's runtime and reconciler (the stream tunnel's logs, exec, attach and
  // top); stop() waits for it. UNAVAILABLE while deploy is stopped. Any thread.
  core::Status withRuntime(
      const std::function<core::Status(deploy::Runtime&, const deploy::Reconciler&)>& fn) const;
  // On-site holds (`outpostctl hold` / `release`, docs/rollouts.md); any thread. UNAVAILABLE
  // while deploy is stopped.
  core::Status hold(std::vector<std::string> pods, std::optional<core::WallTime> until);
  core::Status release(std::vector<std::string> pods);
  core::Result<std::pair<std::vector<deploy::PodHold>, std::vector<deploy::HeldUpdate>>> holds();
  // A hollow node's simulated calendar (docs/hollow-nodes.md), which deploy's loop and runtime
  // read; null when the runtime is not hollow. Any thread.
  core::OffsetClock* hollowClock();
  core::Status start() override;
  void stop() override;
  std::string describe() const override;
  bool alive(std::chrono::milliseconds timeout) override;
  // The cold boot reconcile is done: the runtime answered. Any thread.
  bool coldBootDone() const;
  // The runtime answered the reconciler's last listing (false before the first, and while down).
  bool runtimeReady() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Device twins on the local broker (KubeEdge topic tree), synced to the cloud through the outbox.
// Route: the twin-group messages every cloud link publishes (cloudhub::kCloudTwinMessages) ->
// TwinService::applyCloudTwin, whose outcome the link acks.
class TwinModule final : public Module {
 public:
  TwinModule(Context ctx, StoreModule& store);
  ~TwinModule() override;
  std::string name() const override { return "twin"; }
  core::Status start() override;
  void stop() override;
  std::string describe() const override;
  bool alive(std::chrono::milliseconds timeout) override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The in-band agent upgrade (upgrade_module.cc). Route: the store's changes of keys of type
// `agentupgrade` -> Upgrader::onDesired; its status goes to the outbox as kind
// "agentupgradestatus". While an upgrade waits for this agent's proof, a check each second tells
// the upgrader once the store is open, the runtime answered (deploy's cold boot, when the runtime
// is enabled) and the cloud link is up.
class UpgradeModule final : public Module {
 public:
  UpgradeModule(Context ctx, StoreModule& store, CloudModule& cloud, DeployModule* deploy);
  ~UpgradeModule() override;
  std::string name() const override { return "upgrade"; }
  core::Status start() override;
  void stop() override;
  std::string describe() const override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::agent
