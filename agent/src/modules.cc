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
