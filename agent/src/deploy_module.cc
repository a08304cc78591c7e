// DeployModule (modules.h): deploy's reconciler on the store, the runtime and the cloud link: the
// desired pods read from the store, status to the outbox, service-account tokens through the link.
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "modules.h"
#include "outpost/deploy/cri_runtime.h"
#include "outpost/deploy/hollow_runtime.h"
#include "outpost/deploy/reconciler.h"

namespace outpost::agent {

namespace {

// Desired pods and the objects they reference, read from the store on deploy's loop; deploy's
// own state (the on-site holds) in the store's key-values.
class StoreDesiredPods final : public deploy::DesiredPods, public deploy::LocalState {
 public:
  explicit StoreDesiredPods(core::Logger log) : log_(std::move(log)) {}
  void setReader(metadb::StoreReaderPtr reader) { reader_ = std::move(reader); }
  void setStore(metadb::Store* store, core::EventLoop* loop) {
    store_ = store;
    loop_ = loop;
  }

  // ---- deploy::LocalState
  std::optional<std::string> get(const std::string& name) override {
    auto v = reader_->getKv(name);
    if (!v.isOk()) {
      log_.error("reading ", name, ": ", v.status().toString());
      return std::nullopt;
    }
    return *v;
  }
  void put(const std::string& name, const std::string& value) override {
    metadb::WriteBatch batch;
    batch.putKv(name, value);
    store_->write(std::move(batch), *loop_,
                  [log = log_, name](core::Result<metadb::WriteResult> r) {
                    if (!r.isOk()) log.error("keeping ", name, ": ", r.status().toString());
                  });
  }

  // ---- deploy::DesiredPods
  std::vector<deploy::PodRecord> listPods() override {
    std::vector<deploy::PodRecord> out;
    auto pods = reader_->list("pod");
    if (!pods.isOk()) {
      log_.error("reading desired pods: ", pods.status().toString());
      return out;
    }
    for (auto& r : *pods) out.push_back({r.key, std::move(r.object), std::to_string(r.version)});
    return out;
  }
  std::vector<deploy::PodRecord> listObjects(const std::string& type) override {
    std::vector<deploy::PodRecord> out;
    auto all = reader_->list(type);
    if (!all.isOk()) {
      log_.error("reading desired ", type, " objects: ", all.status().toString());
      return out;
    }
    for (auto& r : *all) out.push_back({r.key, std::move(r.object), std::to_string(r.version)});
    return out;
  }
  std::optional<deploy::PodRecord> getPod(const std::string& key) override {
    auto r = reader_->get(key);
    if (!r.isOk()) {
      log_.error("reading ", key, ": ", r.status().toString());
      return std::nullopt;
    }
    if (!*r) return std::nullopt;
    return deploy::PodRecord{key, std::move((*r)->object), std::to_string((*r)->version)};
  }
  std::optional<std::string> getObject(const std::string& key) override {
    auto r = reader_->get(key);
    if (!r.isOk()) {
      log_.error("reading ", key, ": ", r.status().toString());
      return std::nullopt;
    }
    if (!*r) return std::nullopt;
    return (*r)->object;
  }
  // A key-value of the store (nullopt when absent or unreadable, which is logged).
  std::optional<std::string> kv(std::string_view key) {
    if (!reader_) return std::nullopt;
    auto v = reader_->getKv(key);
    if (!v.isOk()) {
      log_.error("reading ", key, ": ", v.status().toString());
      return std::nullopt;
    }
    return *v;
  }
  bool complete() override {
    auto mark = reader_->getKv(metadb::kKvNeedsFullResync);
    if (!mark.isOk()) {
      log_.error("reading ", metadb::kKvNeedsFullResync, ": ", mark.status().toString());
      return false;  // when in doubt, keep what runs
    }
    return !*mark || **mark != "1";
  }
  // Asks through the cloud link's query (its answer lands in the store, and KeysChanged brings
  // deploy back); keys asked before the link exists wait for its first state change.
  void fetchMissing(const std::string& key) override {
    if (!fetch_ || !fetch_(key)) waiting_.insert(key);
  }

  // The link's query; returns false while there is no link yet. On deploy's loop.
  void setFetcher(std::function<bool(const std::string&)> fetch) { fetch_ = std::move(fetch); }
  // The link came up (or changed state): ask for what waited.
  void askWaiting() {
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (const auto& key : waiting) fetchMissing(key);
  }

 private:
  core::Logger log_;
  metadb::StoreReaderPtr reader_;
  metadb::Store* store_ = nullptr;
  core::EventLoop* loop_ = nullptr;
  std::function<bool(const std::string&)> fetch_;
  std::set<std::string> waiting_;
};

// Pod and node status go to the outbox (one row per object: a newer status replaces an unsent one).
// The store announces the rows; the cloud link's route sends them.
class OutboxStatusSink final : public deploy::StatusSink {
 public:
  // `labels`: added to every node status as metadata.labels (empty: none added).
  OutboxStatusSink(metadb::Store& store, core::EventLoop& loop, std::string nodeKey,
                   std::map<std::string, std::string> labels, core::Logger log)
      : store_(store),
        loop_(loop),
        nodeKey_(std::move(nodeKey)),
        labels_(std::move(labels)),
        log_(std::move(log)) {}

  // ---- deploy::StatusSink
  void podStatus(const std::string& key, const std::string& statusJson) override {
    {
      std::lock_guard lock(mu_);
      latest_[key] = statusJson;
    }
    enqueue("podstatus", key, statusJson);
  }
  void podRemoved(const std::string& key) override {
    {
      std::lock_guard lock(mu_);
      latest_.erase(key);
    }
    enqueue("podstatus", key, R"({"phase":"Removed"})");
  }
  // The pod's deletion is done on the node: the cloud is asked to delete it (the link sends the
  // row as EdgeCore's delete with grace period 0 and the uid as precondition, docs/kubeedge.md).
  // After the pod's last status, so the cloud has seen its containers terminated first.
  void podTerminated(const std::string& key, const std::string& uid) override {
    enqueue("poddelete", key, nlohmann::json{{"uid", uid}}.dump());
  }
  // The newest status reported for a pod (from any thread), for outpostctl get.
  std::optional<std::string> latest(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = latest_.find(key);
    if (it == latest_.end()) return std::nullopt;
    return it->second;
  }
  // An image pre-pull's status: published like a pod's, on its own status topic.
  void objectStatus(const std::string& key, const std::string& statusJson) override {
    enqueue("objectstatus", key, statusJson);
  }
  void nodeStatus(const std::string& statusJson) override {
    if (labels_.empty()) return enqueue("nodestatus", nodeKey_, statusJson, -1);
    auto status = nlohmann::json::parse(statusJson, nullptr, false);
    if (!status.is_object()) return enqueue("nodestatus", nodeKey_, statusJson, -1);
    status["metadata"]["labels"] = labels_;
    enqueue("nodestatus", nodeKey_, status.dump(), -1);
  }

 private:
  void enqueue(const char* kind, const std::string& key, const std::string& payload,
               int priority = 0) {
    metadb::WriteBatch batch;
    batch.enqueue({kind, key, payload, priority});
    // Offline (or before the link starts) the row simply waits in the outbox.
    store_.write(std::move(batch), loop_, [this, key](core::Result<metadb::WriteResult> r) {
      if (!r.isOk()) log_.error("queueing status of ", key, ": ", r.status().toString());
    });
  }
  metadb::Store& store_;
  core::EventLoop& loop_;
  std::string nodeKey_;
  std::map<std::string, std::string> labels_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> latest_;
  core::Logger log_;
};

// Service-account tokens: asked through the cloud link (EdgeCore's token query; the MQTT link has
// none and says so), kept in the store as one key-value so a restart without the cloud finds them.
class LinkTokenSource final : public deploy::TokenSource {
 public:
  static constexpr std::string_view kKvTokens = "deploy.serviceaccount_tokens";
  // As long as the link waits for its other requests' answers (WebsocketLinkOptions).
  static constexpr core::Duration kTimeout = std::chrono::seconds(10);

  LinkTokenSource(CloudModule& cloud, StoreDesiredPods& desired, StoreModule& store,
                  core::EventLoop& loop, core::Logger log)
      : cloud_(cloud), desired_(desired), store_(store), loop_(loop), log_(std::move(log)) {}

  // ---- deploy::TokenSource
  void request(const std::string& ns, const std::string& serviceAccount,
               const std::string& tokenRequest, Answer done) override {
    cloudhub::CloudLink* link = cloud_.link();
    if (!link) return done(core::unavailable("the cloud link is not started"));
    link->requestToken(ns, serviceAccount, tokenRequest, kTimeout, std::move(done));
  }
  std::string load() override { return desired_.kv(kKvTokens).value_or(""); }
  void save(std::string tokens) override {
    metadb::WriteBatch batch;
    batch.putKv(std::string(kKvTokens), std::move(tokens));
    store_.store()->write(
        std::move(batch), loop_, [log = log_](core::Result<metadb::WriteResult> r) {
          if (!r.isOk()) log.error("saving the service-account tokens: ", r.status().toString());
        });
  }

 private:
  CloudModule& cloud_;
  StoreDesiredPods& desired_;
  StoreModule& store_;
  core::EventLoop& loop_;
  core::Logger log_;
};

}  // namespace

class DeployModule::Impl {
 public:
  Impl(Context c, StoreModule& s, CloudModule& cl)
      : ctx(c),
        store(s),
        cloud(cl),
        log(c.logging.get("deploy")),
        hollow(deploy::isHollowEndpoint(c.config.runtime.endpoint)),
        simulatedClock(c.clock),
        loop("deploy", hollow ? simulatedClock : c.clock),
        desired(log) {}

  Context ctx;
  StoreModule& store;
  CloudModule& cloud;
  core::Logger log;
  const bool hollow;
  // A hollow node's calendar, which a test may move (POST /v1/hollow/clock): deploy's loop and its
  // runtime read it, so maintenance windows, holds' ends and status times follow it.
  core::OffsetClock simulatedClock;
  core::EventLoop loop;
  StoreDesiredPods desired;
  std::unique_ptr<OutboxStatusSink> sink;
  std::unique_ptr<LinkTokenSource> tokens;
  deploy::RuntimePtr runtime;
  std::unique_ptr<deploy::Reconciler> reconciler;
  mutable std::mutex reconcilerMu;  // podInfo(), runtimeReady() on other threads vs. stop()
  core::Subscription keysChanged;
  core::Subscription linkEvents;
  std::atomic<bool> coldBootDone{false};
  bool started = false;
};

DeployModule::DeployModule(Context ctx, StoreModule& store, CloudModule& cloud)
    : impl_(std::make_unique<Impl>(ctx, store, cloud)) {}

DeployModule::~DeployModule() { stop(); }

core::Status DeployModule::start() {
  Impl& m = *impl_;
  const Config& c = m.ctx.config;
  if (deploy::isHollowEndpoint(c.runtime.endpoint)) {
    // Simulated containers (docs/hollow-nodes.md); the configuration's check parsed the endpoint.
    auto hollow = deploy::parseHollowEndpoint(c.runtime.endpoint);
    if (!hollow.isOk()) return hollow.status();
    m.runtime = deploy::makeHollowRuntime(*hollow, m.simulatedClock);
    m.log.warn("runtime ", c.runtime.endpoint,
               ": containers are simulated, nothing runs (a hollow node, docs/hollow-nodes.md)");
  } else {
    deploy::CriConfig cri;
    cri.endpoint = c.runtime.endpoint;
    cri.callTimeout = c.runtime.requestTimeout;
    auto rt = deploy::makeCriRuntime(cri);
    if (!rt.isOk()) return rt.status();
    m.runtime = std::move(rt).value();
  }

  m.loop.start();
  m.started = true;
  auto reader = m.store.openReaderOn(m.loop);
  if (!reader.isOk()) return reader.status().withContext("opening a store reader");
  // Nothing runs on the loop yet: the reader is handed over before deploy's first task.
  m.desired.setReader(std::move(reader).value());
  m.desired.setStore(m.store.store(), &m.loop);
  m.sink = std::make_unique<OutboxStatusSink>(
      *m.store.store(), m.loop, c.cloud.websocket.nodeNamespace + "/node/" + c.node.name,
      // KubeEdge's Node object carries the labels (above); the MQTT scheme's node status does.
      c.cloud.transport == "mqtt" ? nodeLabels(c) : std::map<std::string, std::string>{}, m.log);

  deploy::ReconcilerConfig rc = nodeReconcilerConfig(c);
  rc.stateDir = c.node.stateDir + "/pods";
  rc.cgroupParent = c.runtime.cgroupParent.empty() ? "" : "/" + c.runtime.cgroupParent;
  rc.sandboxImage = c.runtime.sandboxImage;
  rc.resyncInterval = c.runtime.resyncInterval;
  rc.nodeStatusInterval = c.runtime.nodeStatusInterval;
  rc.hostPathAllow = c.node.hostPathAllow;
  for (const auto& w : c.node.maintenanceWindows) {
    // The configuration's check parsed them.
    if (auto parsed = deploy::parseMaintenanceWindow(w); parsed.isOk())
      rc.maintenanceWindows.push_back(*parsed);
  }
  m.tokens = std::make_unique<LinkTokenSource>(m.cloud, m.desired, m.store, m.loop, m.log);
  {
    std::lock_guard lock(m.reconcilerMu);
    m.reconciler =
        std::make_unique<deploy::Reconciler>(m.loop, *m.runtime, m.desired, *m.sink, rc, m.log,
                                             &m.ctx.metrics, &m.desired, m.tokens.get());
  }
  m.keysChanged =
      m.ctx.bus.subscribe(metadb::kKeysChanged, m.loop, [this](const metadb::KeysChanged& ev) {
        std::vector<std::string> keys;
        for (const auto& k : ev.keys) {
          if (k.type == "pod" || k.type == "configmap" || k.type == "secret" ||
              k.type == "imageprepull")
            keys.push_back(k.key);
        }
        if (!keys.empty()) impl_->reconciler->onDesiredChanged(std::move(keys));
      });
  // A configmap, secret or (after a store recovery) kept pod deploy lacks: asked of the cloud.
  // As long as the link waits for its other requests' answers (WebsocketLinkOptions).
  constexpr core::Duration kQueryTimeout = std::chrono::seconds(10);
  m.desired.setFetcher([this, timeout = kQueryTimeout](const std::string& key) {
    cloudhub::CloudLink* link = impl_->cloud.link();
    if (!link) return false;
    link->query(key, timeout, [log = impl_->log, key](cloudhub::QueryResult r) {
      if (!r.status.isOk()) return log.warn("asking for ", key, ": ", r.status.message());
      log.info(key, " from the ", cloudhub::querySourceName(r.source), ": ",
               r.object ? "present" : "absent", " (", r.reason, ")");
    });
    return true;
  });
  m.linkEvents =
      m.ctx.bus.subscribe(cloudhub::kLinkEvents, m.loop,
                          [this](const cloudhub::LinkEvent&) { impl_->desired.askWaiting(); });
  // Offline cold boot: reconcile from the store before (and whatever) the cloud link does.
  m.reconciler->start([this] {
    impl_->coldBootDone = true;
    impl_->log.info("cold boot reconcile done");
  });
  return core::okStatus();
}

void DeployModule::stop() {
  Impl& m = *impl_;
  if (!m.started) return;
  m.started = false;
  m.keysChanged.reset();
  m.linkEvents.reset();
  if (m.reconciler) {
    m.reconciler->stop();
  }
  m.loop.runSync([&] { m.desired.setReader(nullptr); }, std::chrono::seconds(2));
  m.loop.stop();
  {
    std::lock_guard lock(m.reconcilerMu);
    m.reconciler.reset();
  }
  m.runtime.reset();
}

std::optional<std::string> DeployModule::podStatus(const std::string& key) const {
  if (!impl_->sink) return std::nullopt;
  return impl_->sink->latest(key);
}

std::optional<deploy::PodRuntimeInfo> DeployModule::podInfo(const std::string& key) const {
  std::lock_guard lock(impl_->reconcilerMu);
  if (!impl_->reconciler) return std::nullopt;
  return impl_->reconciler->podInfo(key);
}

core::Status DeployModule::withRuntime(
    const std::function<core::Status(deploy::Runtime&, const deploy::Reconciler&)>& fn) const {
  std::lock_guard lock(impl_->reconcilerMu);
  if (!impl_->reconciler || !impl_->runtime) return core::unavailable("deploy is not running");
  return fn(*impl_->runtime, *impl_->reconciler);
}

core::Status DeployModule::hold(std::vector<std::string> pods,
                                std::optional<core::WallTime> until) {
  std::lock_guard lock(impl_->reconcilerMu);
  if (!impl_->reconciler) return core::unavailable("deploy is not running");
  return impl_->reconciler->hold(std::move(pods), until);
}

core::Status DeployModule::release(std::vector<std::string> pods) {
  std::lock_guard lock(impl_->reconcilerMu);
  if (!impl_->reconciler) return core::unavailable("deploy is not running");
  return impl_->reconciler->release(std::move(pods));
}

core::Result<std::pair<std::vector<deploy::PodHold>, std::vector<deploy::HeldUpdate>>>
DeployModule::holds() {
  std::lock_guard lock(impl_->reconcilerMu);
  if (!impl_->reconciler) return core::unavailable("deploy is not running");
  return impl_->reconciler->holds();
}

core::OffsetClock* DeployModule::hollowClock() {
  return impl_->hollow ? &impl_->simulatedClock : nullptr;
}

std::string DeployModule::describe() const {
  return std::string(impl_->coldBootDone ? "reconciling" : "cold boot") + " via " +
         impl_->ctx.config.runtime.endpoint;
}

bool DeployModule::coldBootDone() const { return impl_->coldBootDone; }
bool DeployModule::runtimeReady() const {
  std::lock_guard lock(impl_->reconcilerMu);
  return impl_->reconciler && impl_->reconciler->runtimeReady();
}

bool DeployModule::alive(std::chrono::milliseconds timeout) {
  return impl_->loop.runSync([] {}, timeout);
}

}  // namespace outpost::agent
