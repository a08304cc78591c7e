#include "modules.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "node_address.h"
#include "outpost/cloudhub/mqtt_link.h"
#include "outpost/cloudhub/websocket_link.h"
#include "outpost/deploy/cri_runtime.h"
#include "outpost/deploy/hollow_runtime.h"
#include "outpost/deploy/reconciler.h"
#include "outpost/twin/twin_service.h"
#include "version.h"

namespace outpost::agent {

namespace {
std::string readSecretFile(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}
}  // namespace

std::map<std::string, std::string> nodeLabels(const Config& c) {
  auto labels = c.node.labels;
  // Its groups, so that whoever watches the broker knows them (docs/rollouts.md: a rollout's
  // target group).
  for (const auto& g : c.node.groups) labels["group.outpost.io/" + g] = "true";
  // A node whose runtime is simulated says so (docs/hollow-nodes.md), whatever node.labels says.
  if (c.runtime.enabled && deploy::isHollowEndpoint(c.runtime.endpoint))
    labels[std::string(deploy::kHollowLabel)] = "true";
  return labels;
}

deploy::ReconcilerConfig nodeReconcilerConfig(const Config& c) {
  deploy::ReconcilerConfig rc;
  rc.nodeName = c.node.name;
  rc.nodeAddress = c.node.address;
  if (rc.nodeAddress.empty()) {
    rc.nodeAddress = discoverNodeAddress(
        urlHost(c.cloud.transport == "websocket" ? c.cloud.websocket.server : c.cloud.mqtt.broker));
  }
  auto reserved = deploy::parseNodeReserved(c.node.reserved);  // the configuration checked it
  if (reserved.isOk()) {
    rc.reservedMilliCpu = reserved->milliCpu;
    rc.reservedMemoryBytes = reserved->memoryBytes;
  }
  // EdgeCore's shape (v1.26.10-kubeedge-v1.15.4): the Kubernetes release the KubeEdge 1.15 it
  // stands in for is built on, then who reports it.
  rc.kubeletVersion = std::string("v1.26.10-outpost-v") + OUTPOST_VERSION;
  return rc;
}

twin::DeviceIdForm deviceIdForm(const Config& c) {
  // CloudCore up to 1.16 takes the one segment after device/ as the device's name: a namespaced id
  // would name a device "default" it does not have, and its twin updates would go unanswered.
  std::string form = c.device.deviceIdForm;
  if (form.empty()) form = c.cloud.transport == "websocket" ? "name" : "namespaced";
  return form == "name" ? twin::DeviceIdForm::kName : twin::DeviceIdForm::kNamespaced;
}

// ---- cloud

core::Status CloudModule::start() {
  const Config& c = ctx_.config;
  if (c.cloud.transport == "websocket") {
    // The client certificate first: a missing or expired one is bootstrapped with the token, or the
    // module fails with what the operator must do (docs/certificates.md).
    if (!c.cloud.websocket.certServer.empty()) {
      cloudhub::CertificateOptions co;
      co.nodeName = c.node.name;
      co.certServer = c.cloud.websocket.certServer;
      co.caFile = c.cloud.tls.ca;
      co.certFile = c.cloud.tls.cert;
      co.keyFile = c.cloud.tls.key;
      co.tokenFile = c.cloud.websocket.tokenFile;
      certs_ =
          cloudhub::makeCertificateManager(std::move(co), ctx_.clock, ctx_.logging, ctx_.metrics);
      OUTPOST_RETURN_IF_ERROR(certs_->ensure());
      certsStarted_ = certs_.get();
    }
    cloudhub::WebsocketLinkOptions w;
    w.nodeName = c.node.name;
    w.server = c.cloud.websocket.server;
    w.projectId = c.cloud.websocket.projectId;
    w.nodeNamespace = c.cloud.websocket.nodeNamespace;
    w.caFile = c.cloud.tls.ca;
    w.certFile = c.cloud.tls.cert;
    w.keyFile = c.cloud.tls.key;
    w.heartbeat = c.cloud.heartbeat;
    w.rateQps = c.cloud.rateLimitQps;
    w.rateBurst = c.cloud.rateLimitBurst;
    w.reconnectBase = c.cloud.reconnectBase;
    w.reconnectCap = c.cloud.reconnectCap;
    w.maxMessageBytes = static_cast<size_t>(c.cloud.maxMessageBytes);
    w.nodeLabels = nodeLabels(c);
    w.initialNodeStatus = deploy::initialNodeStatus(nodeReconcilerConfig(c), ctx_.clock.wallNow());
    link_ = cloudhub::makeWebsocketLink(std::move(w), *store_.store(), ctx_.bus, ctx_.clock,
                                        ctx_.logging, ctx_.metrics);
    OUTPOST_RETURN_IF_ERROR(link_->start());
    started_ = link_.get();
    routeOutbox();
    // Renewed files take effect by a reconnect; the manager's thread stops before the link does.
    if (certs_) certs_->startRotation([link = link_.get()] { link->credentialsChanged(); });
    return core::okStatus();
  }
  cloudhub::MqttLinkOptions o;
  o.nodeName = c.node.name;
  o.groups = c.node.groups;
  o.broker = c.cloud.mqtt.broker;
  o.prefix = c.cloud.mqtt.prefix;
  o.encoding = *cloudhub::parseEncoding(c.cloud.mqtt.encoding);
  o.username = c.cloud.mqtt.username;
  o.password = readSecretFile(c.cloud.mqtt.passwordFile);
  o.caFile = c.cloud.tls.ca;
  o.certFile = c.cloud.tls.cert;
  o.keyFile = c.cloud.tls.key;
  o.keepAlive = c.cloud.heartbeat;
  o.rateQps = c.cloud.rateLimitQps;
  o.rateBurst = c.cloud.rateLimitBurst;
  o.reconnectBase = c.cloud.reconnectBase;
  o.reconnectCap = c.cloud.reconnectCap;
  o.maxMessageBytes = static_cast<size_t>(c.cloud.maxMessageBytes);
  link_ = cloudhub::makeMqttLink(std::move(o), *store_.store(), ctx_.bus, ctx_.clock, ctx_.logging,
                                 ctx_.metrics);
  OUTPOST_RETURN_IF_ERROR(link_->start());
  started_ = link_.get();
  routeOutbox();
  return core::okStatus();
}

void CloudModule::routeOutbox() {
  // Whoever queued the rows (deploy's status, the twins, ...), the link sends them at once. Its own
  // acks and retries are no news to it.
  outboxChanged_ = ctx_.bus.subscribe(metadb::kOutboxChanged, ctx_.routes,
                                      [this](const metadb::OutboxChanged& e) {
                                        if (e.queued == 0) return;
                                        if (auto* link = started_.load()) link->outboxChanged();
                                      });
  // Rows queued before this route existed (while the link was starting) go now; a link not yet
  // connected drains when it connects.
  link_->outboxChanged();
}

void CloudModule::stop() {
  if (started_.load()) {
    outboxChanged_.reset();
    ctx_.routes.runSync([] {});  // a signal being handed on is through before the link stops
  }
  started_ = nullptr;
  if (certs_) certs_->stop();
  if (link_) link_->stop();
}

std::string CloudModule::describe() const {
  if (!link_) return "";
  auto s = link_->status();
  std::string d = std::string(cloudhub::linkStateName(s.state)) + " " + s.endpoint;
  if (s.state != cloudhub::LinkState::kConnected && !s.lastError.empty())
    d += " (" + s.lastError + ")";
  return d;
}

bool CloudModule::alive(std::chrono::milliseconds timeout) {
  return !link_ || link_->alive(timeout);
}

std::optional<cloudhub::CertificateState> CloudModule::certificateState() const {
  auto* certs = certsStarted_.load();
  if (!certs) return std::nullopt;
  return certs->state();
}

// ---- deploy

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
        loop("deploy", c.clock),
        desired(log) {}

  Context ctx;
  StoreModule& store;
  CloudModule& cloud;
  core::Logger log;
  core::EventLoop loop;
  StoreDesiredPods desired;
  std::unique_ptr<OutboxStatusSink> sink;
  std::unique_ptr<LinkTokenSource> tokens;
  deploy::RuntimePtr runtime;
  std::unique_ptr<deploy::Reconciler> reconciler;
  mutable std::mutex reconcilerMu;  // podInfo() on the API thread vs. stop()
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
    m.runtime = deploy::makeHollowRuntime(*hollow, m.ctx.clock);
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
  core::Status opened;
  m.loop.runSync([&] {
    auto r = m.store.store()->openReader();
    if (!r.isOk()) {
      opened = r.status();
      return;
    }
    m.desired.setReader(std::move(r).value());
    m.desired.setStore(m.store.store(), &m.loop);
  });
  OUTPOST_RETURN_IF_ERROR(opened.withContext("opening a store reader"));
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

std::string DeployModule::describe() const {
  return std::string(impl_->coldBootDone ? "reconciling" : "cold boot") + " via " +
         impl_->ctx.config.runtime.endpoint;
}

bool DeployModule::coldBootDone() const { return impl_->coldBootDone; }

bool DeployModule::alive(std::chrono::milliseconds timeout) {
  return impl_->loop.runSync([] {}, timeout);
}

// ---- device twins

class TwinModule::Impl {
 public:
  Impl(Context c, StoreModule& s) : ctx(c), store(s) {}
  Context ctx;
  StoreModule& store;
  twin::TwinServicePtr service;
  core::Subscription cloudTwins;
};

TwinModule::TwinModule(Context ctx, StoreModule& store)
    : impl_(std::make_unique<Impl>(ctx, store)) {}

TwinModule::~TwinModule() { stop(); }

core::Status TwinModule::start() {
  const Config& c = impl_->ctx.config;
  twin::TwinOptions o;
  o.nodeName = c.node.name;
  o.broker = c.device.broker;
  o.username = c.device.username;
  o.password = readSecretFile(c.device.passwordFile);
  o.caFile = c.device.tls.ca;
  o.certFile = c.device.tls.cert;
  o.keyFile = c.device.tls.key;
  o.deviceIdForm = deviceIdForm(c);
  o.reconnectBase = c.cloud.reconnectBase;
  o.reconnectCap = c.cloud.reconnectCap;
  // Twin limits (validated at least 1 by config.cc).
  o.maxDevices = static_cast<size_t>(c.device.maxDevices);
  o.maxPropertiesPerDevice = static_cast<size_t>(c.device.maxPropertiesPerDevice);
  o.maxValueBytes = static_cast<size_t>(c.device.maxValueBytes);
  // Twin changes wait in the outbox; the store announces them and the link sends them at once.
  impl_->service = twin::makeTwinService(std::move(o), *impl_->store.store(), impl_->ctx.bus,
                                         impl_->ctx.clock, impl_->ctx.logging, impl_->ctx.metrics);
  OUTPOST_RETURN_IF_ERROR(impl_->service->start());
  // The cloud's twin messages, from whichever link received them; the link acks on done(ok). The
  // cloud link starts after this module, so none is published before this subscription.
  twin::TwinService* service = impl_->service.get();
  impl_->cloudTwins = impl_->ctx.bus.subscribe(
      cloudhub::kCloudTwinMessages, impl_->ctx.routes,
      [service](const cloudhub::CloudTwinMessage& m) {
        const cloudhub::Route& r = m.envelope.route;
        service->applyCloudTwin({r.resource, r.operation, m.envelope.content}, m.done);
      });
  return core::okStatus();
}

void TwinModule::stop() {
  if (!impl_->service) return;
  impl_->cloudTwins.reset();
  impl_->ctx.routes.runSync([] {});  // a message being handed on is through before the service goes
  impl_->service->stop();
  impl_->service.reset();
}

std::string TwinModule::describe() const {
  if (!impl_->service) return "";
  auto s = impl_->service->status();
  std::string d = std::string(s.connected ? "connected " : "disconnected ") + s.broker + ", " +
                  std::to_string(s.devices) + (s.devices == 1 ? " device" : " devices");
  if (!s.connected && !s.lastError.empty()) d += " (" + s.lastError + ")";
  return d;
}

bool TwinModule::alive(std::chrono::milliseconds timeout) {
  return !impl_->service || impl_->service->alive(timeout);
}

}  // namespace outpost::agent
