#include "service.h"

#include <cstdio>
#include <iterator>

namespace outpost::twin {

namespace {

constexpr std::string_view kDevicePrefix = "$hw/events/device/";
constexpr size_t kMaxPending = 10000;
// Documents and deltas carry a whole twin (up to maxPropertiesPerDevice values): the messages held
// while the broker is away are bounded in bytes too.
constexpr size_t kMaxPendingBytes = 16u << 20;

std::chrono::seconds toSeconds(core::Duration d) {
  return std::max(std::chrono::seconds(1), std::chrono::duration_cast<std::chrono::seconds>(d));
}

}  // namespace

TwinServiceImpl::TwinServiceImpl(TwinOptions options, metadb::Store& store, core::Bus& bus,
                                 core::Clock& clock, core::Logging& logging,
                                 core::MetricsRegistry& metrics)
    : opts_(std::move(options)),
      store_(store),
      bus_(bus),
      clock_(clock),
      log_(logging.get("twin")),
      loop_("twin", clock),
      backoff_(opts_.reconnectBase, opts_.reconnectCap, std::random_device{}()),
      rng_(std::random_device{}()),
      updatesOk_(metrics.counter("outpost_twin_updates_total",
                                 "Twin update requests from devices, by outcome",
                                 {{"result", "ok"}})),
      updatesError_(metrics.counter("outpost_twin_updates_total",
                                    "Twin update requests from devices, by outcome",
                                    {{"result", "error"}})),
      devicesGauge_(metrics.gauge("outpost_twin_devices", "Devices bound to this node")),
      linkUp_(metrics.gauge("outpost_twin_link_up", "1 while connected to the local broker")) {
  status_.broker = opts_.broker;
  static constexpr const char* kReasons[] = {"json", "max_devices", "max_properties",
                                             "max_value_bytes", "device_id"};
  static_assert(std::size(kReasons) == static_cast<size_t>(Refusal::kCount));
  for (size_t i = 0; i < std::size(kReasons); ++i) {
    refused_[i] = &metrics.counter("outpost_twin_refused_total",
                                   "Twin messages and changes refused by a limit or a check",
                                   {{"reason", kReasons[i]}});
  }
}

TwinServiceImpl::~TwinServiceImpl() { stop(); }

// ---- lifecycle

core::Status TwinServiceImpl::start() {
  if (started_) return core::failedPrecondition("the twin service is already started");
  if (opts_.nodeName.empty()) return core::invalidArgument("twin: the node name is empty");
  started_ = true;
  loop_.start();
  core::Status result = core::internalError("twin: the loop did not run the start");
  bool ran = loop_.runSync(
      [&] {
        result = loadAll();
        if (!result.isOk()) return;
        rekeyToForm();
        keysSub_ = bus_.subscribe(metadb::kKeysChanged, loop_,
                                  [this](const metadb::KeysChanged& ev) { onKeysChanged(ev); });
        reconcileAll();
        mqttc::ConnectOptions s;
        s.uri = opts_.broker;
        s.clientId = opts_.clientId.empty() ? "outpost-twin-" + opts_.nodeName : opts_.clientId;
        s.keepAlive = toSeconds(opts_.keepAlive);
        s.connectTimeout = toSeconds(opts_.connectTimeout);
        s.username = opts_.username;
        s.password = opts_.password;
        s.caFile = opts_.caFile;
        s.certFile = opts_.certFile;
        s.keyFile = opts_.keyFile;
        mqttc::Callbacks h;
        h.connected = [this] { loop_.post([this] { onConnected(); }); };
        h.down = [this](std::string why) { loop_.post([this, why] { onDown(why); }); };
        h.message = [this](std::string topic, std::string payload, bool) {
          loop_.post([this, topic = std::move(topic), payload = std::move(payload)] {
            onMessage(topic, payload);
          });
        };
        client_ = std::make_unique<mqttc::Client>(std::move(s), std::move(h));
        connect();
      },
      std::chrono::seconds(30));
  if (!ran) return core::deadlineExceeded("twin: start did not finish within 30 s");
  if (result.isOk()) {
    log_.info("started: node ", opts_.nodeName, ", ", devices_.size(), " devices, broker ",
              opts_.broker);
  }
  return result;
}

void TwinServiceImpl::stop() {
  if (!started_) return;
  started_ = false;
  loop_.runSync(
      [this] {
        stopping_ = true;
        keysSub_.reset();
        client_.reset();  // disconnects; no Paho callback runs after this
      },
      std::chrono::seconds(10));
  {
    // The store posts completions to our loop: let them arrive before the loop goes.
    std::unique_lock lock(writesMu_);
    writesCv_.wait_for(lock, std::chrono::seconds(10), [this] { return pendingWrites_ == 0; });
  }
  loop_.runSync([this] { reader_.reset(); }, std::chrono::seconds(10));
  loop_.stop();
  connected_ = false;
  linkUp_.set(0);
}

TwinStatus TwinServiceImpl::status() const {
  std::lock_guard lock(statusMu_);
  TwinStatus s = status_;
  s.connected = connected_.load();
  s.updatesOk = static_cast<int64_t>(updatesOk_.value());
  s.updatesFailed = static_cast<int64_t>(updatesError_.value());
  return s;
}

bool TwinServiceImpl::alive(std::chrono::milliseconds timeout) {
  return started_ && loop_.runSync([] {}, timeout);
}

void TwinServiceImpl::applyCloudTwin(CloudTwinMessage message,
                                     std::function<void(core::Status)> done) {
  loop_.post([this, message = std::move(message), done = std::move(done)]() mutable {
    onCloudTwinMessage(message, std::move(done));
  });
}

// ---- connection

void TwinServiceImpl::connect() {
  if (stopping_ || !client_) return;
  core::Status s = client_->connect();
  if (!s.isOk()) onDown(s.message());
}

void TwinServiceImpl::onConnected() {
  if (stopping_) return;
  backoff_.reset();
  std::vector<std::string> filters;
  if (opts_.deviceIdForm == DeviceIdForm::kNamespaced) {
    filters = {"$hw/events/device/+/+/twin/+", "$hw/events/device/+/+/state/update"};
  } else {
    filters = {"$hw/events/device/+/twin/+", "$hw/events/device/+/state/update"};
  }
  filters.push_back(membershipTopic("get"));
  // Up means subscribed: only then do device requests reach us.
  client_->subscribe(filters, [this](core::Status s) {
    loop_.post([this, s] {
      if (stopping_) return;
      if (!s.isOk()) {
        log_.error("subscribing on ", opts_.broker, " failed: ", s.message());
        // Connected but deaf: start over.
        client_->disconnect(std::chrono::milliseconds(500));
        connected_ = true;  // so onDown() says the link was lost
        onDown("subscribe: " + s.message());
        return;
      }
      connected_ = true;
      linkUp_.set(1);
      log_.info("connected to ", opts_.broker, pending_.empty() ? "" : ", sending ",
                pending_.empty() ? "" : std::to_string(pending_.size()) + " held messages");
      while (!pending_.empty() && connected_) {
        pendingBytes_ -= pending_.front().second.size();
        client_->publish(pending_.front().first, std::move(pending_.front().second), false,
                         nullptr);
        pending_.pop_front();
      }
    });
  });
}

void TwinServiceImpl::onDown(const std::string& why) {
  if (stopping_) return;
  bool was = connected_.exchange(false);
  linkUp_.set(0);
  {
    std::lock_guard lock(statusMu_);
    status_.lastError = why;
    status_.reconnects++;
  }
  auto wait = backoff_.next();
  if (was) {
    log_.warn("lost the broker ", opts_.broker, ": ", why);
  } else {
    log_.debug("broker ", opts_.broker, " unreachable: ", why);
  }
  loop_.runAfter(wait, [this] { connect(); });
}

std::string TwinServiceImpl::deviceTopic(const std::string& id, const std::string& tail) const {
  std::string t(kDevicePrefix);
  t.append(id).append("/").append(tail);
  return t;
}

std::string TwinServiceImpl::membershipTopic(const std::string& tail) const {
  return "$hw/events/node/" + opts_.nodeName + "/membership/" + tail;
}

void TwinServiceImpl::onMessage(const std::string& topic, const std::string& payload) {
  if (stopping_) return;
  if (topic == membershipTopic("get")) return onMembershipGet(payload);
  if (topic.rfind(kDevicePrefix, 0) != 0) return;
  std::string rest = topic.substr(kDevicePrefix.size());
  size_t segments = opts_.deviceIdForm == DeviceIdForm::kNamespaced ? 2 : 1;
  size_t pos = 0;
  for (size_t i = 0; i < segments; ++i) {
    pos = rest.find('/', pos);
    if (pos == std::string::npos) return;
    if (i + 1 < segments) ++pos;
  }
  std::string id = rest.substr(0, pos);
  std::string tail = rest.substr(pos + 1);
  if (tail != "twin/update" && tail != "twin/get" && tail != "state/update") return;
  std::string resultTopic = deviceTopic(id, tail + "/result");
  if (payload.size() > opts_.maxPayloadBytes) {
    if (tail == "twin/update") updatesError_.inc();
    return answerError({id, resultTopic, ""}, 400,
                       "payload of " + std::to_string(payload.size()) + " bytes exceeds " +
                           std::to_string(opts_.maxPayloadBytes));
  }
  if (core::Status s = checkTopicDeviceId(id); !s.isOk()) {
    if (tail == "twin/update") updatesError_.inc();
    refused(Refusal::kDeviceId, "request on " + validation::printable(topic), s.message());
    return answerError({id, resultTopic, ""}, 400, s.message());
  }
  if (tail == "twin/update") return onTwinUpdate(id, payload);
  if (tail == "twin/get") return onTwinGet(id, payload);
  if (tail == "state/update") return onStateUpdate(id, payload);
}

core::Status TwinServiceImpl::checkTopicDeviceId(const std::string& id) const {
  if (opts_.deviceIdForm == DeviceIdForm::kName) return validation::dnsSubdomain("device id", id);
  size_t slash = id.find('/');
  if (slash == std::string::npos) return core::invalidArgument("device id: no namespace");
  OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("device id namespace", id.substr(0, slash)));
  return validation::dnsSubdomain("device id name", id.substr(slash + 1));
}

void TwinServiceImpl::publish(const std::string& topic, const json& payload) {
  if (!client_) return;
  if (!connected_) {
    std::string text = payload.dump();
    pendingBytes_ += text.size();
    pending_.emplace_back(topic, std::move(text));
    while (pending_.size() > 1 &&
           (pending_.size() > kMaxPending || pendingBytes_ > kMaxPendingBytes)) {
      pendingBytes_ -= pending_.front().second.size();
      pending_.pop_front();
    }
    return;
  }
  client_->publish(topic, payload.dump(), false, nullptr);
}

// ---- store

core::Status TwinServiceImpl::loadAll() {
  auto r = store_.openReader();
  if (!r.isOk()) return r.status().withContext("twin: opening a store reader");
  reader_ = std::move(r).value();
  auto devs = reader_->devices();
  if (!devs.isOk()) return devs.status().withContext("twin: reading devices");
  devices_.clear();
  for (auto& d : *devs) {
    auto twin = reader_->twin(d.id);
    if (!twin.isOk()) return twin.status().withContext("twin: reading the twin of " + d.id);
    DeviceEntry e;
    e.record = std::move(d);
    for (auto& p : *twin) e.twin.emplace(p.name, std::move(p));
    std::string id = e.record.id;
    devices_.emplace(id, std::move(e));
  }
  setDevicesGauge();
  return core::okStatus();
}

void TwinServiceImpl::loadDevice(const std::string& id) {
  auto d = reader_->device(id);
  auto twin = reader_->twin(id);
  if (!d.isOk() || !twin.isOk()) {
    log_.error("rereading device ", id, " failed; keeping the cached copy");
    return;
  }
  if (!d->has_value()) {
    devices_.erase(id);
  } else {
    DeviceEntry& e = devices_[id];
    e.record = **d;
    e.twin.clear();
    for (auto& p : *twin) e.twin.emplace(p.name, std::move(p));
    e.reload = false;
  }
  setDevicesGauge();
}

void TwinServiceImpl::commit(const std::string& id, metadb::WriteBatch batch,
                             std::function<void(core::Status)> after) {
  if (auto it = devices_.find(id); it != devices_.end()) it->second.inflight++;
  {
    std::lock_guard lock(writesMu_);
    pendingWrites_++;
  }
  store_.write(std::move(batch), loop_,
               [this, id, after = std::move(after)](core::Result<metadb::WriteResult> r) {
                 struct Done {
                   TwinServiceImpl* self;
                   ~Done() {
                     std::lock_guard lock(self->writesMu_);
                     if (--self->pendingWrites_ == 0) self->writesCv_.notify_all();
                   }
                 } done{this};
                 core::Status s = r.status();
                 if (auto it = devices_.find(id); it != devices_.end()) {
                   DeviceEntry& e = it->second;
                   e.inflight--;
                   if (!s.isOk()) e.reload = true;
                   if (e.reload && e.inflight == 0 && reader_) loadDevice(id);
                 }
                 if (!s.isOk()) {
                   log_.error("storing a change of device ", id, " failed: ", s.toString());
                 }
                 if (after && !stopping_) after(s);
               });
}

void TwinServiceImpl::setDevicesGauge() {
  devicesGauge_.set(static_cast<double>(devices_.size()));
  std::lock_guard lock(statusMu_);
  status_.devices = static_cast<int64_t>(devices_.size());
}

std::string TwinServiceImpl::newEventId() {
  uint64_t a = rng_(), b = rng_();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
                static_cast<unsigned>(b >> 48),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

TwinServicePtr makeTwinService(TwinOptions options, metadb::Store& store, core::Bus& bus,
                               core::Clock& clock, core::Logging& logging,
                               core::MetricsRegistry& metrics) {
  return std::make_unique<TwinServiceImpl>(std::move(options), store, bus, clock, logging, metrics);
}

}  // namespace outpost::twin
